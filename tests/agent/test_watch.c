#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "agent/watch.h"
#include "common/base/error.h"

static void test_watch_without_rules_watches_everything(void **state)
{
    (void)state;
    struct apm_watch *w;
    assert_int_equal(apm_watch_new(&w), 0);
    assert_true(apm_watch_is_all(w));
    assert_true(apm_watch_match(w, "anything", ""));
    assert_true(apm_watch_match(NULL, "anything", "/x"));
    assert_true(apm_watch_is_all(NULL));
    apm_watch_free(w);
    apm_watch_free(NULL);
}

static void test_watch_name_regex_is_extended_and_unanchored(void **state)
{
    (void)state;
    struct apm_watch *w;
    char err[128];
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_name(w, "work(er|horse)", err, sizeof(err)), 0);
    assert_false(apm_watch_is_all(w));
    assert_true(apm_watch_match(w, "worker.py", "/a"));
    assert_true(apm_watch_match(w, "my-workhorse", NULL));
    assert_false(apm_watch_match(w, "http.server", "/a"));
    assert_false(apm_watch_match(w, NULL, NULL));
    apm_watch_free(w);
}

static void test_watch_name_rules_widen_the_selection(void **state)
{
    (void)state;
    struct apm_watch *w;
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_name(w, "^celery$", NULL, 0), 0);
    assert_int_equal(apm_watch_add_name(w, "^api\\.py$", NULL, 0), 0);
    assert_true(apm_watch_match(w, "celery", ""));
    assert_true(apm_watch_match(w, "api.py", ""));
    assert_false(apm_watch_match(w, "celery-beat", ""));
    assert_false(apm_watch_match(w, "apixpy", ""));
    apm_watch_free(w);
}

static void test_watch_rejects_bad_regex_with_a_reason(void **state)
{
    (void)state;
    struct apm_watch *w;
    char err[256] = "";
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_name(w, "worker(", err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "worker("));
    /* The failed rule is not half-added. */
    assert_true(apm_watch_is_all(w));
    apm_watch_free(w);
}

static void test_watch_cgroup_prefix_matches_whole_components(void **state)
{
    (void)state;
    struct apm_watch *w;
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_cgroup(w, "/system.slice/", NULL, 0), 0);
    assert_true(apm_watch_match(w, "x", "/system.slice"));
    assert_true(apm_watch_match(w, "x", "/system.slice/app.service"));
    assert_false(apm_watch_match(w, "x", "/system.slice2"));
    assert_false(apm_watch_match(w, "x", "/user.slice"));
    assert_false(apm_watch_match(w, "x", ""));
    apm_watch_free(w);
}

static void test_watch_root_cgroup_rule_matches_any_known_cgroup(void **state)
{
    (void)state;
    struct apm_watch *w;
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_cgroup(w, "/", NULL, 0), 0);
    assert_true(apm_watch_match(w, "x", "/"));
    assert_true(apm_watch_match(w, "x", "/a/b"));
    assert_false(apm_watch_match(w, "x", ""));
    apm_watch_free(w);
}

static void test_watch_name_and_cgroup_rules_narrow_each_other(void **state)
{
    (void)state;
    struct apm_watch *w;
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_name(w, "^worker", NULL, 0), 0);
    assert_int_equal(apm_watch_add_cgroup(w, "/system.slice/app.service", NULL, 0), 0);
    assert_true(apm_watch_match(w, "worker.py", "/system.slice/app.service"));
    assert_false(apm_watch_match(w, "worker.py", "/system.slice/other.service"));
    assert_false(apm_watch_match(w, "nginx", "/system.slice/app.service"));
    apm_watch_add_all(w);
    assert_true(apm_watch_is_all(w));
    assert_true(apm_watch_match(w, "nginx", ""));
    apm_watch_free(w);
}

static void test_watch_rejects_relative_cgroup_and_too_many_rules(void **state)
{
    (void)state;
    struct apm_watch *w;
    char err[128] = "";
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_cgroup(w, "system.slice", err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "absolute"));
    for (int i = 0; i < APM_WATCH_MAX_RULES; i++)
        assert_int_equal(apm_watch_add_name(w, "a", NULL, 0), 0);
    assert_int_equal(apm_watch_add_name(w, "a", err, sizeof(err)), APM_E_LIMIT);
    char long_rule[APM_WATCH_MAX_LEN + 2];
    memset(long_rule, '/', sizeof(long_rule) - 1);
    long_rule[sizeof(long_rule) - 1] = '\0';
    assert_int_equal(apm_watch_add_cgroup(w, long_rule, err, sizeof(err)), APM_E_LIMIT);
    apm_watch_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_without_rules_watches_everything),
        cmocka_unit_test(test_watch_name_regex_is_extended_and_unanchored),
        cmocka_unit_test(test_watch_name_rules_widen_the_selection),
        cmocka_unit_test(test_watch_rejects_bad_regex_with_a_reason),
        cmocka_unit_test(test_watch_cgroup_prefix_matches_whole_components),
        cmocka_unit_test(test_watch_root_cgroup_rule_matches_any_known_cgroup),
        cmocka_unit_test(test_watch_name_and_cgroup_rules_narrow_each_other),
        cmocka_unit_test(test_watch_rejects_relative_cgroup_and_too_many_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
