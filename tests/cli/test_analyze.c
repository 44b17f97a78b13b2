/* CSV replay: good files give a result, malformed ones a FILE:LINE reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/analyze.h"
#include "common/base/error.h"

/* Writes text to a fresh temporary file named after tag; returns its path in buf. */
static void write_file(char *buf, size_t size, const char *tag, const char *text)
{
    snprintf(buf, size, "/tmp/apm-test-analyze-%ld-%s.csv", (long)getpid(), tag);
    FILE *f = fopen(buf, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_error(const char *tag, const char *text, const char *where, const char *why)
{
    char path[256], err[512], want[300];
    struct apm_analyze_result r;
    write_file(path, sizeof(path), tag, text);
    assert_int_equal(apm_cli_analyze_file(path, NULL, &r, err, sizeof(err)), APM_E_PARSE);
    snprintf(want, sizeof(want), "%s:%s: ", path, where);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, why));
    unlink(path);
}

static void test_analyze_reports_bad_header_at_line_1(void **state)
{
    (void)state;
    expect_error("header", "time,rss\n1,2\n", "1", "header");
    expect_error("empty", "", "1", "empty file");
}

static void test_analyze_reports_bad_number_with_its_line(void **state)
{
    (void)state;
    expect_error("number", "t_seconds,rss_bytes,limit_bytes\n0,100,1000\n10,abc,1000\n", "3",
                 "rss_bytes");
    expect_error("fields", "t_seconds,rss_bytes\n0,100\n10,100,5\n", "3", "fields");
    expect_error("negative", "t_seconds,rss_bytes\n0,100\n10,-5\n", "3", "negative");
    expect_error("missing", "t_seconds,rss_bytes,limit_bytes\n0,100,1000\n1,2,3\n4,5\n", "4",
                 "3 fields");
}

static void test_analyze_rejects_overlong_line(void **state)
{
    (void)state;
    size_t n = APM_ANALYZE_MAX_LINE + 100;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "t_seconds,rss_bytes\n0,");
    size_t len = strlen(text);
    memset(text + len, '1', n);
    strcpy(text + len + n, "\n");
    expect_error("long", text, "2", "longer than");
    free(text);
}

static void test_analyze_replays_a_good_file(void **state)
{
    (void)state;
    char path[256], err[512];
    struct apm_analyze_result r;
    write_file(path, sizeof(path), "good",
               "t_seconds,rss_bytes,limit_bytes\r\n0,100,1000\r\n10,101,\r\n\r\n20,102,1000\r\n");
    assert_int_equal(apm_cli_analyze_file(path, NULL, &r, err, sizeof(err)), 0);
    assert_int_equal(r.rows, 3);
    assert_false(r.alerted);
    assert_null(strstr(r.trace, ".csv"));
    unlink(path);
}

static void test_analyze_missing_file_is_an_errno(void **state)
{
    (void)state;
    char err[512];
    struct apm_analyze_result r;
    assert_int_equal(apm_cli_analyze_file("/nonexistent/x.csv", NULL, &r, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x.csv: "));
}

static void test_analyze_command_exit_codes(void **state)
{
    (void)state;
    char good[256], bad[256];
    write_file(good, sizeof(good), "cmd-good", "t_seconds,rss_bytes\n0,100\n10,100\n");
    write_file(bad, sizeof(bad), "cmd-bad", "t_seconds,rss_bytes\n0,x\n");
    char *ok_args[] = {"--sensitivity", "quiet", good};
    assert_int_equal(apm_cli_analyze(3, ok_args, true), 0);
    char *mixed[] = {good, bad};
    assert_int_equal(apm_cli_analyze(2, mixed, true), 1);
    char *usage_args[] = {"--sensitivity", "loud", good};
    assert_int_equal(apm_cli_analyze(3, usage_args, false), 1);
    assert_int_equal(apm_cli_analyze(0, NULL, false), 1);
    unlink(good);
    unlink(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analyze_reports_bad_header_at_line_1),
        cmocka_unit_test(test_analyze_reports_bad_number_with_its_line),
        cmocka_unit_test(test_analyze_rejects_overlong_line),
        cmocka_unit_test(test_analyze_replays_a_good_file),
        cmocka_unit_test(test_analyze_missing_file_is_an_errno),
        cmocka_unit_test(test_analyze_command_exit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
