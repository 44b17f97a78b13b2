#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "common/log.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_count_groups_thousands),
        cmocka_unit_test(test_log_limit_summarises_a_flood),
        cmocka_unit_test(test_log_limit_opens_a_new_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
