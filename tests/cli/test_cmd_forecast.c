/* apm-cli forecast: its options and the time-to-exhaustion text. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli/cmd_forecast.h"
#include "common/base/error.h"

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

static void test_forecast_shows_a_growing_process_with_rate_and_doubt(void **state)
{
    (void)state;
    char buf[160];
    json_t *row =
        json_pack("{s:s, s:f, s:f, s:f, s:f, s:s, s:f, s:b}", "class", "growing", "confidence", 0.4,
                  "rate", 10e6, "time", 1700000070.0, "growing_since", 1700000000.0, "doubt",
                  "warm-up", "verdict_by", 1700000310.0, "alert", 0);
    assert_string_equal(apm_cli_forecast_class(row, buf, sizeof(buf)),
                        "growing +34 GiB/h for 1m 10s, warm-up doubt until +4m 0s");
    json_object_set_new(row, "verdict_by", json_null());
    assert_string_equal(apm_cli_forecast_class(row, buf, sizeof(buf)),
                        "growing +34 GiB/h for 1m 10s, warm-up doubt");
    /* Never "stable (0%)" for it; the other classes keep their confidence. */
    json_object_set_new(row, "class", json_string("leak"));
    json_object_set_new(row, "confidence", json_real(0.93));
    json_object_set_new(row, "alert", json_true());
    assert_string_equal(apm_cli_forecast_class(row, buf, sizeof(buf)), "leak (93%) ALERT");
    json_decref(row);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forecast_parses_host_and_process),
        cmocka_unit_test(test_forecast_shows_a_growing_process_with_rate_and_doubt),
        cmocka_unit_test(test_forecast_refuses_a_bad_pid_and_both_selectors),
        cmocka_unit_test(test_forecast_formats_time_to_exhaustion_with_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
