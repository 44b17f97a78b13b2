/* apm-cli forecast: its options and the time-to-exhaustion text. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli/cmd_forecast.h"
#include "common/error.h"

static int parse(struct apm_cli_forecast_opts *o, char *err, int argc, char **argv)
{
    return apm_cli_forecast_parse(argc, argv, o, err, 256);
}

static void test_forecast_parses_host_and_process(void **state)
{
    (void)state;
    struct apm_cli_forecast_opts o;
    char err[256];
    char *argv[] = {"--host", "web-3", "--process=worker"};
    assert_int_equal(parse(&o, err, 3, argv), 0);
    assert_string_equal(o.host, "web-3");
    assert_string_equal(o.process, "worker");
    assert_int_equal(o.pid, 0);
}

static void test_forecast_refuses_a_bad_pid_and_both_selectors(void **state)
{
    (void)state;
    struct apm_cli_forecast_opts o;
    char err[256];
    char *bad[] = {"--pid", "12x"};
    assert_int_equal(parse(&o, err, 2, bad), APM_E_USAGE);
    char *both[] = {"--pid", "12", "--process", "worker"};
    assert_int_equal(parse(&o, err, 4, both), APM_E_USAGE);
    char *stray[] = {"worker"};
    assert_int_equal(parse(&o, err, 1, stray), APM_E_USAGE);
    char *missing[] = {"--host"};
    assert_int_equal(parse(&o, err, 1, missing), APM_E_USAGE);
}

static void test_forecast_formats_time_to_exhaustion_with_bounds(void **state)
{
    (void)state;
    char buf[96];
    assert_string_equal(apm_cli_forecast_eta(18600, 13200, 27000, buf, sizeof(buf)),
                        "5h 10m (3h 40m - 7h 30m)");
    assert_string_equal(apm_cli_forecast_eta(600, 300, INFINITY, buf, sizeof(buf)),
                        "10m 0s (5m 0s - no bound)");
    assert_string_equal(apm_cli_forecast_eta(NAN, NAN, NAN, buf, sizeof(buf)), "-");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forecast_parses_host_and_process),
        cmocka_unit_test(test_forecast_refuses_a_bad_pid_and_both_selectors),
        cmocka_unit_test(test_forecast_formats_time_to_exhaustion_with_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
