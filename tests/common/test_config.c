/* Config: INI files and flags, with every error naming file:line:key or the flag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/base/config.h"
#include "common/base/timeutil.h"
#include "common/base/error.h"

struct cfg {
    char listen[64];
    char dir[128];
    int64_t interval_ms;
    int64_t conns;
    int64_t size;
    bool fg;
    char config[128];
};

#define O(k, t, f, lo, hi)                                                                         \
    {                                                                                              \
        "collector", k, t, offsetof(struct cfg, f), sizeof(((struct cfg *)0)->f), lo, hi, true, k  \
    }

static const struct apm_opt opts[] = {
    O("listen", APM_OPT_ENDPOINT, listen, 0, 0),
    O("data-dir", APM_OPT_STRING, dir, 0, 0),
    O("interval", APM_OPT_DURATION, interval_ms, 100, 86400000),
    O("max-connections", APM_OPT_INT, conns, 1, 1000),
    O("map-size", APM_OPT_SIZE, size, 1024, INT64_MAX),
    O("foreground", APM_OPT_BOOL, fg, 0, 1),
    O("config", APM_OPT_STRING, config, 0, 0),
    {.key = NULL},
};

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/apm-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static int load(const char *text, struct cfg *c, char *err, size_t errlen)
{
    char *path = write_file(text);
    int rc = apm_config_load(path, opts, c, NULL, NULL, err, errlen);
    unlink(path);
    return rc;
}

static void test_config_loads_every_type(void **state)
{
    (void)state;
    struct cfg c = {0};
    char err[512] = "";
    int rc = load("# comment\n[collector]\nlisten = [::1]:7411\ndata-dir = /var/lib/apm\n"
                  "interval = 1.5m\nmax-connections = 12\nmap-size = 2G\nforeground = yes\n",
                  &c, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(c.listen, "[::1]:7411");
    assert_string_equal(c.dir, "/var/lib/apm");
    assert_int_equal(c.interval_ms, 90000);
    assert_int_equal(c.conns, 12);
    assert_int_equal(c.size, 2LL << 30);
    assert_true(c.fg);
}

/* Durations add up their terms ("1h30m"); a bare number is seconds only alone. */
static void test_config_compound_durations(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(apm_duration_parse("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(apm_duration_parse("15d", &ms), 0);
    assert_int_equal(ms, 15LL * 86400000);
    assert_int_equal(apm_duration_parse("60", &ms), 0);
    assert_int_equal(ms, 60000);
    assert_int_equal(apm_duration_parse("1d2h3m4.5s", &ms), 0);
    assert_int_equal(ms, 86400000 + 7200000 + 180000 + 4500);
    assert_int_equal(apm_duration_parse("1h30", &ms), APM_E_PARSE);
    assert_int_equal(apm_duration_parse("1h-30m", &ms), APM_E_PARSE);
    assert_int_equal(apm_duration_parse("1h 30m", &ms), APM_E_PARSE);
    assert_int_equal(apm_duration_parse("1x", &ms), APM_E_PARSE);
}

/* Go and Prometheus spellings: ms, us, ns, w, y, and units in decreasing order. */
static void test_config_go_prometheus_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        {"500ms", 500},
        {"90s", 90000},
        {"7d", 7LL * 86400000},
        {"1w", 7LL * 86400000},
        {"2w3d", 17LL * 86400000},
        {"1y", 365LL * 86400000},
        {"1m30s", 90000},
        {"1s500ms", 1500},
        {"1500us", 2},
        {"2000000ns", 2},
        {"1.5h", 5400000},
        {"0", 0},
        {"0.25", 250},
        {"1h0m", 3600000},
        {"3\xc2\xb5s", 0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t ms = -1;
        if (apm_duration_parse(ok[i].text, &ms) != 0 || ms != ok[i].ms)
            fail_msg("'%s' gave %lld, want %lld", ok[i].text, (long long)ms, (long long)ok[i].ms);
    }
    static const char *const bad[] = {
        "",    "ms",  "5m5m", "30m1h", "1ms1s",  "1e3s", "0x10s", "inf", "nan", "1h ",
        " 1h", "+5m", "-5m",  "1mss",  "1.5.5s", "s5",   "1hm",   "1d2", "5 m", "9999999999y",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 0;
        if (apm_duration_parse(bad[i], &ms) != APM_E_PARSE)
            fail_msg("'%s' was accepted as %lld ms", bad[i], (long long)ms);
    }
}

static void test_config_error_names_file_line_and_key(void **state)
{
    (void)state;
    struct cfg c = {0};
    char err[512] = "";
    char *path = write_file("[collector]\nlisten = 127.0.0.1:7411\n\nmax-connections = lots\n");
    assert_int_equal(apm_config_load(path, opts, &c, NULL, NULL, err, sizeof(err)), APM_E_CONFIG);
    char want[256];
    snprintf(want, sizeof(want),
             "%s:4: key 'max-connections' in [collector]: 'lots' is not an integer", path);
    assert_string_equal(err, want);
    unlink(path);
}

static void test_config_refuses_unknown_key_section_and_range(void **state)
{
    (void)state;
    struct cfg c = {0};
    char err[512];
    assert_int_equal(load("[collector]\nlisen = 1.2.3.4:5\n", &c, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, ":2: key 'lisen' in [collector]: unknown key"));
    assert_int_equal(load("[colector]\nlisten = 1.2.3.4:5\n", &c, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "unknown section"));
    assert_int_equal(load("[collector]\nmax-connections = 5000\n", &c, err, sizeof(err)),
                     APM_E_CONFIG);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(load("[collector]\nlisten = nowhere\n", &c, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "is not HOST:PORT"));
    assert_int_equal(load("[collector]\ninterval = 5 parsecs\n", &c, err, sizeof(err)),
                     APM_E_CONFIG);
    assert_non_null(strstr(err, "not a duration"));
    assert_int_equal(load("[collector]\nthis line has no equals sign\n", &c, err, sizeof(err)),
                     APM_E_CONFIG);
    assert_non_null(strstr(err, ":2: syntax error"));
}

static void test_config_missing_file_is_named(void **state)
{
    (void)state;
    struct cfg c = {0};
    char err[512];
    int rc = apm_config_load("/nonexistent/apm.conf", opts, &c, NULL, NULL, err, sizeof(err));
    assert_true(rc < 0);
    assert_string_equal(err, "/nonexistent/apm.conf: No such file or directory");
}

/* From memory: the same parse as from a file, unterminated text, the name in every error. */
static void test_config_load_mem_reads_like_a_file(void **state)
{
    (void)state;
    struct cfg c = {0};
    char err[512] = "";
    const char text[] = "[collector]\nmax-connections = 12\ndata-dir = /a\n\nlisten = nowhere\n";
    /* Up to the blank line only: what follows must not be read. */
    size_t len = (size_t)(strstr(text, "\n\n") - text) + 1;
    assert_int_equal(
        apm_config_load_mem("mem.ini", text, len, opts, &c, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(c.conns, 12);
    assert_string_equal(c.dir, "/a");
    assert_int_equal(apm_config_load_mem("mem.ini", text, sizeof(text) - 1, opts, &c, NULL, NULL,
                                         err, sizeof(err)),
                     APM_E_CONFIG);
    assert_non_null(strstr(err, "mem.ini:5: key 'listen' in [collector]: "));
    assert_int_equal(apm_config_load_mem("mem.ini", "", 0, opts, &c, NULL, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(
        apm_config_load_mem("mem.ini", "[x", 2, opts, &c, NULL, NULL, err, sizeof(err)),
        APM_E_CONFIG);
    assert_string_equal(err, "mem.ini:1: syntax error (expected [section] or key = value)");
}

static void test_config_flags_override_and_name_the_flag(void **state)
{
    (void)state;
    struct cfg c = {0};
    char *ok[] = {"prog", "--listen", "0.0.0.0:1", "--interval=2s", "--foreground", NULL};
    assert_int_equal(apm_config_args("prog", 5, ok, opts, &c, APM_ARGS_REST), 0);
    assert_string_equal(c.listen, "0.0.0.0:1");
    assert_int_equal(c.interval_ms, 2000);
    assert_true(c.fg);
    char *cfgpass[] = {"prog", "--listen", "0.0.0.0:2", "--config", "/etc/x.conf", NULL};
    memset(&c, 0, sizeof(c));
    assert_int_equal(apm_config_args("prog", 5, cfgpass, opts, &c, APM_ARGS_CONFIG), 0);
    assert_string_equal(c.config, "/etc/x.conf");
    assert_string_equal(c.listen, ""); /* applied in the second pass only */
    char *bad[] = {"prog", "--max-connections", "0", NULL};
    assert_int_equal(apm_config_args("prog", 3, bad, opts, &c, APM_ARGS_REST), APM_E_USAGE);
    char *unknown[] = {"prog", "--listn", "x", NULL};
    assert_int_equal(apm_config_args("prog", 3, unknown, opts, &c, APM_ARGS_REST), APM_E_USAGE);
    char *missing[] = {"prog", "--listen", NULL};
    assert_int_equal(apm_config_args("prog", 2, missing, opts, &c, APM_ARGS_REST), APM_E_USAGE);
    char *stray[] = {"prog", "listen", NULL};
    assert_int_equal(apm_config_args("prog", 2, stray, opts, &c, APM_ARGS_REST), APM_E_USAGE);
}

static void test_config_endpoint_split(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(apm_endpoint_split("127.0.0.1:7411", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7411);
    assert_int_equal(apm_endpoint_split("[::1]:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(apm_endpoint_split(":9", host, sizeof(host), &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(apm_endpoint_split("::1:80", host, sizeof(host), &port), APM_E_CONFIG);
    assert_int_equal(apm_endpoint_split("h:99999", host, sizeof(host), &port), APM_E_CONFIG);
    assert_int_equal(apm_endpoint_split("h:", host, sizeof(host), &port), APM_E_CONFIG);
    assert_int_equal(apm_endpoint_split("[::1]80", host, sizeof(host), &port), APM_E_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_loads_every_type),
        cmocka_unit_test(test_config_compound_durations),
        cmocka_unit_test(test_config_go_prometheus_durations),
        cmocka_unit_test(test_config_error_names_file_line_and_key),
        cmocka_unit_test(test_config_refuses_unknown_key_section_and_range),
        cmocka_unit_test(test_config_missing_file_is_named),
        cmocka_unit_test(test_config_load_mem_reads_like_a_file),
        cmocka_unit_test(test_config_flags_override_and_name_the_flag),
        cmocka_unit_test(test_config_endpoint_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
