/*
 * Config regexes are costed before regcomp: stacked or nested repetitions
 * that would make glibc build millions of nodes are refused with a reason,
 * while every ordinary pattern still compiles and matches.
 */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/error.h"
#include "common/base/regex_limit.h"

static void test_regex_cost_counts_atoms_groups_and_repeats(void **state)
{
    (void)state;
    assert_int_equal(apm_regex_cost(""), 0);
    assert_int_equal(apm_regex_cost("abc"), 3);
    assert_int_equal(apm_regex_cost("a*"), 2);
    assert_int_equal(apm_regex_cost("a+"), 3);
    assert_int_equal(apm_regex_cost("a{3}"), 5);
    assert_int_equal(apm_regex_cost("a{2,5}"), 7);
    assert_int_equal(apm_regex_cost("[]a-z[:digit:]]"), 1);
    assert_int_equal(apm_regex_cost("\\.\\+"), 2);
    /* a bound that is not one is a literal "{" */
    assert_int_equal(apm_regex_cost("a{x}"), 4);
    assert_true(apm_regex_cost("^(gunicorn|celery|worker\\.py)$") < 40);
}

static void test_regex_cost_multiplies_stacked_and_nested_repeats(void **state)
{
    (void)state;
    char stacked[64] = "(un";
    memset(stacked + 3, '+', 40);
    assert_true(apm_regex_cost(stacked) > APM_REGEX_MAX_COST);
    assert_true(apm_regex_cost("((a{100}){100}){100}") > 1000000);
    assert_true(apm_regex_cost("a{32767}") > APM_REGEX_MAX_COST);
    assert_true(apm_regex_cost("(a{100}){100}") <= APM_REGEX_MAX_COST);
    /* Stars stacked or nested over a part that already matches nothing (found by fuzz_silence:
     * 255 bytes of them took minutes in regcomp). */
    char stars[128] = "]";
    memset(stars + 1, '*', 100);
    assert_true(apm_regex_cost(stars) > APM_REGEX_MAX_COST);
    assert_true(apm_regex_cost("((((((((((((((((a*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*)*") >
                APM_REGEX_MAX_COST);
    assert_true(apm_regex_cost("(a*)*") < 20);
    assert_true(apm_regex_cost("a**") < 20);
    /* unbalanced groups and a trailing backslash are costed, not overrun */
    assert_true(apm_regex_cost("((((a") >= 1);
    assert_true(apm_regex_cost("a)\\") >= 3);
    assert_true(apm_regex_cost("[[:alpha:") >= 1);
}

static void test_regex_repeats_empty_finds_plus_or_count_over_nullable(void **state)
{
    (void)state;
    assert_true(apm_regex_repeats_empty("a*+"));
    assert_true(apm_regex_repeats_empty("^a*+++++"));
    assert_true(apm_regex_repeats_empty("(a?|b)+"));
    assert_true(apm_regex_repeats_empty("(a|)+"));
    assert_true(apm_regex_repeats_empty("(x*){2,5}"));
    assert_true(apm_regex_repeats_empty("(x*){1,}"));
    assert_true(apm_regex_repeats_empty("(a*b*)+"));
    assert_true(apm_regex_repeats_empty("(^)+"));
    assert_false(apm_regex_repeats_empty("a+"));
    assert_false(apm_regex_repeats_empty("(a*b)+"));
    assert_false(apm_regex_repeats_empty("(a|b+)+"));
    assert_false(apm_regex_repeats_empty("(a*)*"));
    assert_false(apm_regex_repeats_empty("(a?)?"));
    assert_false(apm_regex_repeats_empty("(a*){0,}"));
    assert_false(apm_regex_repeats_empty("(a*){1}"));
    assert_false(apm_regex_repeats_empty("[*+]+"));
    assert_false(apm_regex_repeats_empty("\\*+"));
    assert_false(apm_regex_repeats_empty("^(gunicorn|celery|worker\\.py)+$"));
}

static void test_regex_compile_refuses_costly_and_bad_patterns(void **state)
{
    (void)state;
    regex_t re;
    char err[256] = "";
    char stacked[64] = "(un";
    memset(stacked + 3, '+', 40);
    /* This one asked glibc for terabytes: found by tests/fuzz/fuzz_config.c. */
    assert_int_equal(apm_regex_compile(&re, stacked, REG_EXTENDED | REG_NOSUB, err, sizeof(err)),
                     APM_E_LIMIT);
    assert_non_null(strstr(err, "repetitions"));
    assert_int_equal(apm_regex_compile(&re, "((a{100}){100}){100}", REG_EXTENDED, err, sizeof(err)),
                     APM_E_LIMIT);
    /* ~9 s of regcomp before, found by tests/fuzz/fuzz_alert_rules.c. */
    assert_int_equal(apm_regex_compile(&re, "^a*+++++", REG_EXTENDED, err, sizeof(err)),
                     APM_E_LIMIT);
    assert_non_null(strstr(err, "write '*'"));
    assert_int_equal(apm_regex_compile(&re, "(unclosed", REG_EXTENDED, err, sizeof(err)),
                     APM_E_CONFIG);
    assert_true(strlen(err) > 0);
    assert_int_equal(apm_regex_compile(&re, "^(gunicorn|worker\\.py)+$", REG_EXTENDED | REG_NOSUB,
                                       err, sizeof(err)),
                     0);
    assert_int_equal(regexec(&re, "worker.pygunicorn", 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, "workerXpy", 0, NULL, 0), REG_NOMATCH);
    regfree(&re);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regex_cost_counts_atoms_groups_and_repeats),
        cmocka_unit_test(test_regex_cost_multiplies_stacked_and_nested_repeats),
        cmocka_unit_test(test_regex_repeats_empty_finds_plus_or_count_over_nullable),
        cmocka_unit_test(test_regex_compile_refuses_costly_and_bad_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
