#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <regex.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/log.h"

/* Points stderr at a temporary file; capture_end restores it and returns the text (owned). */
static FILE *capture_begin(int *saved)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    *saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    return tmp;
}

static char *capture_end(FILE *tmp, int saved)
{
    dup2(saved, STDERR_FILENO);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long n = ftell(tmp);
    rewind(tmp);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_log_count_groups_thousands(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(apm_log_count(0, buf, sizeof(buf)), "0");
    assert_string_equal(apm_log_count(999, buf, sizeof(buf)), "999");
    assert_string_equal(apm_log_count(1030, buf, sizeof(buf)), "1,030");
    assert_string_equal(apm_log_count(12345678, buf, sizeof(buf)), "12,345,678");
    assert_string_equal(apm_log_count(1030, buf, 4), "1,0");
}

/* 1,030 events in one window: 3 logged one by one, then one summary line. */
static void test_log_limit_summarises_a_flood(void **state)
{
    (void)state;
    apm_log_init("test", APM_LOG_INFO);
    struct apm_log_limit l = APM_LOG_LIMIT_INIT(APM_LOG_WARN, "ingest: refused",
                                                "unauthenticated connections", 10000, 3);
    int saved;
    FILE *tmp = capture_begin(&saved);
    int passed = 0;
    for (int i = 0; i < 1030; i++) {
        if (apm_log_limit_hit(&l, 1000000 + i)) {
            apm_warn("one by one %d", i);
            passed++;
        }
    }
    apm_log_limit_flush(&l, 1005000, false); /* window not over: nothing yet */
    apm_log_limit_flush(&l, 1010000, false);
    apm_log_limit_flush(&l, 1020000, false); /* nothing more to say */
    char *text = capture_end(tmp, saved);
    assert_int_equal(passed, 3);
    assert_int_equal(count_lines(text), 4);
    assert_non_null(strstr(text, "ingest: refused 1,030 unauthenticated connections in the last "
                                 "10 s (3 logged one by one)"));
    free(text);
}

/* A quiet window says nothing extra; a new window logs one by one again. */
static void test_log_limit_opens_a_new_window(void **state)
{
    (void)state;
    struct apm_log_limit l = APM_LOG_LIMIT_INIT(APM_LOG_WARN, "x:", "events", 1000, 1);
    int saved;
    FILE *tmp = capture_begin(&saved);
    assert_true(apm_log_limit_hit(&l, 5000));
    assert_false(apm_log_limit_hit(&l, 5100));
    assert_true(apm_log_limit_hit(&l, 7000)); /* closes the first window with its summary */
    apm_log_limit_flush(&l, 7200, true);      /* only the one event: no summary */
    char *text = capture_end(tmp, saved);
    assert_int_equal(count_lines(text), 1);
    assert_non_null(strstr(text, "x: 2 events in the last 1 s (1 logged one by one)"));
    free(text);
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("'%s' does not match /%s/", text, pattern);
}

#define RFC3339 "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

/* Outside journald: RFC 3339 time, program, level; a newline in the message becomes a space. */
static void test_log_text_has_time_and_program(void **state)
{
    (void)state;
    char line[256];
    size_t n = apm_log_format_line(APM_LOG_FORMAT_TEXT, false, "apm-agent", APM_LOG_WARN,
                                   "uplink: lost\nthe collector", line, sizeof(line));
    assert_int_equal(n, strlen(line));
    assert_matches(line, "^" RFC3339 " apm-agent warning: uplink: lost the collector\n$");
    /* The stamp is now, in UTC. */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char year[8];
    strftime(year, sizeof(year), "%Y-", &tm);
    assert_memory_equal(line, year, 5);
}

/* Under journald: the priority prefix alone; journald adds time and program. */
static void test_log_journal_keeps_priority_prefix(void **state)
{
    (void)state;
    char line[256];
    apm_log_format_line(APM_LOG_FORMAT_TEXT, true, "apm-collector", APM_LOG_ERROR, "no token", line,
                        sizeof(line));
    assert_string_equal(line, "<3>error: no token\n");
}

/* JSON: one object per line, the module split off, every byte of the message escaped right. */
static void test_log_json_one_object_per_line(void **state)
{
    (void)state;
    char line[512];
    const char *msg = "writer: host \"a\\b\"\n\x01 \xff\xfe caf\xc3\xa9";
    size_t n = apm_log_format_line(APM_LOG_FORMAT_JSON, true, "apm-collector", APM_LOG_INFO, msg,
                                   line, sizeof(line));
    assert_true(n > 0 && line[n - 1] == '\n');
    assert_null(memchr(line, '\n', n - 1));
    json_error_t e;
    json_t *o = json_loadb(line, n, 0, &e);
    if (o == NULL)
        fail_msg("not JSON (%s): %s", e.text, line);
    assert_matches(json_string_value(json_object_get(o, "ts")), "^" RFC3339 "$");
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "prog")), "apm-collector");
    assert_string_equal(json_string_value(json_object_get(o, "module")), "writer");
    assert_int_equal(json_integer_value(json_object_get(o, "pid")), getpid());
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "host \"a\\b\"\n\x01 \xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9");
    json_decref(o);
    /* No module prefix: no module field; a long message is cut, still one valid object. */
    char big[3000];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    n = apm_log_format_line(APM_LOG_FORMAT_JSON, false, "p", APM_LOG_DEBUG, big, line,
                            sizeof(line));
    assert_true(n > 0 && n < sizeof(line));
    o = json_loadb(line, n, 0, &e);
    assert_non_null(o);
    assert_null(json_object_get(o, "module"));
    assert_true(strlen(json_string_value(json_object_get(o, "msg"))) > 100);
    json_decref(o);
}

/* JOURNAL_STREAM counts only when it names the very file stderr is. */
static void test_log_journal_stream_detection(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    struct stat st;
    assert_int_equal(fstat(fileno(tmp), &st), 0);
    char env[64];
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    assert_true(apm_log_journal_stream(fileno(tmp)));
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", env, 1);
    assert_false(apm_log_journal_stream(fileno(tmp)));
    setenv("JOURNAL_STREAM", "garbage", 1);
    assert_false(apm_log_journal_stream(fileno(tmp)));
    unsetenv("JOURNAL_STREAM");
    assert_false(apm_log_journal_stream(fileno(tmp)));
    fclose(tmp);
}

/* apm_log end to end: text, then journald's form once stderr is the journal's stream, then JSON. */
static void test_log_writes_the_chosen_form(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(apm_log_setup("t", "loud", "text", err, sizeof(err)), APM_E_CONFIG);
    assert_string_equal(err, "log-level 'loud' is not error, warn, info or debug");
    assert_int_equal(apm_log_setup("t", "info", "xml", err, sizeof(err)), APM_E_CONFIG);
    assert_string_equal(err, "log-format 'xml' is not text or json");

    int saved;
    FILE *tmp = capture_begin(&saved);
    unsetenv("JOURNAL_STREAM");
    assert_int_equal(apm_log_setup("prog", "info", "text", err, sizeof(err)), 0);
    apm_info("one");
    apm_debug("not shown");
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char env[64];
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    assert_int_equal(apm_log_setup("prog", "info", "text", err, sizeof(err)), 0);
    apm_warn("two");
    assert_int_equal(apm_log_setup("prog", "info", "json", err, sizeof(err)), 0);
    apm_error("three");
    unsetenv("JOURNAL_STREAM");
    char *text = capture_end(tmp, saved);
    apm_log_setup("test", "info", "text", err, sizeof(err));
    assert_int_equal(count_lines(text), 3);
    assert_matches(text, "^" RFC3339 " prog info: one\n<4>warning: two\n\\{\"ts\":\"" RFC3339
                         "\",\"level\":\"error\",\"prog\":\"prog\",\"pid\":[0-9]+,"
                         "\"msg\":\"three\"\\}\n$");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_count_groups_thousands),
        cmocka_unit_test(test_log_limit_summarises_a_flood),
        cmocka_unit_test(test_log_limit_opens_a_new_window),
        cmocka_unit_test(test_log_text_has_time_and_program),
        cmocka_unit_test(test_log_journal_keeps_priority_prefix),
        cmocka_unit_test(test_log_json_one_object_per_line),
        cmocka_unit_test(test_log_journal_stream_detection),
        cmocka_unit_test(test_log_writes_the_chosen_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
