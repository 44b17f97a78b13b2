#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/cgroup.h"
#include "common/base/error.h"

#define V1 APM_TEST_FIXTURES "/cgroup-v1"
#define V2 APM_TEST_FIXTURES "/cgroup-v2"
#define HYBRID APM_TEST_FIXTURES "/cgroup-hybrid"

static void parse(const char *text, struct apm_cgroup_membership *m)
{
    assert_int_equal(apm_cgroup_parse(text, strlen(text), m), 0);
}

/* Parses text, resolves it in set and reads it at tick. */
static int read_text(struct apm_cgroup_set *set, const char *text, uint64_t tick,
                     struct apm_cgroup_mem *mem, char *path, size_t size)
{
    struct apm_cgroup_membership m;
    struct apm_cgroup *cg;
    parse(text, &m);
    int rc = apm_cgroup_get(set, &m, &cg);
    if (rc < 0)
        return rc;
    snprintf(path, size, "%s", apm_cgroup_path(cg));
    rc = apm_cgroup_read(set, cg, tick, mem);
    apm_cgroup_put(set, cg);
    return rc;
}

static void test_cgroup_parses_v2_line(void **state)
{
    (void)state;
    struct apm_cgroup_membership m;
    parse("0::/system.slice/app.service\n", &m);
    assert_true(m.has_v2);
    assert_false(m.has_v1);
    assert_string_equal(m.v2, "/system.slice/app.service");
}

static void test_cgroup_parses_v1_memory_line_among_others(void **state)
{
    (void)state;
    struct apm_cgroup_membership m;
    parse("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/d532\n3:cpu,cpuacct:/x\n0::/\n", &m);
    assert_true(m.has_v1);
    assert_string_equal(m.v1_memory, "/process_api/d532");
    assert_true(m.has_v2);
    assert_string_equal(m.v2, "/");
}

static void test_cgroup_parses_comounted_memory_controller(void **state)
{
    (void)state;
    struct apm_cgroup_membership m;
    parse("5:cpu,memory:/batch\n", &m);
    assert_true(m.has_v1);
    assert_string_equal(m.v1_memory, "/batch");
    parse("5:memoryx:/batch\n", &m);
    assert_false(m.has_v1);
}

static void test_cgroup_ignores_paths_outside_our_namespace(void **state)
{
    (void)state;
    struct apm_cgroup_membership m;
    parse("0::/../../escape\n4:memory:/a/..\n", &m);
    assert_false(m.has_v2);
    assert_false(m.has_v1);
    parse("0::/a..b/c\n", &m);
    assert_true(m.has_v2);
}

static void test_cgroup_rejects_malformed_line(void **state)
{
    (void)state;
    struct apm_cgroup_membership m;
    assert_int_equal(apm_cgroup_parse("garbage\n", 8, &m), APM_E_PARSE);
}

static void test_cgroup_parses_limits(void **state)
{
    (void)state;
    uint64_t limit = 1;
    bool has = true;
    assert_int_equal(apm_cgroup_parse_limit("max\n", 4, &limit, &has), 0);
    assert_false(has);
    assert_int_equal(apm_cgroup_parse_limit("9223372036854771712\n", 20, &limit, &has), 0);
    assert_false(has);
    assert_int_equal(apm_cgroup_parse_limit("536870912\n", 10, &limit, &has), 0);
    assert_true(has);
    assert_int_equal(limit, 536870912);
    assert_int_equal(apm_cgroup_parse_limit("maximum\n", 8, &limit, &has), APM_E_PARSE);
    assert_int_equal(apm_cgroup_parse_limit("", 0, &limit, &has), APM_E_PARSE);
    assert_int_equal(apm_cgroup_parse_limit("99999999999999999999999\n", 24, &limit, &has),
                     APM_E_PARSE);
}

static void test_cgroup_detects_each_layout(void **state)
{
    (void)state;
    struct {
        const char *root;
        enum apm_cgroup_layout want;
    } cases[] = {
        {V1, APM_CGROUP_LAYOUT_V1},
        {V2, APM_CGROUP_LAYOUT_V2},
        {HYBRID, APM_CGROUP_LAYOUT_HYBRID},
        {APM_TEST_FIXTURES "/no-such-dir", APM_CGROUP_LAYOUT_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct apm_cgroup_set *set;
        assert_int_equal(apm_cgroup_set_new(cases[i].root, 16, &set), 0);
        assert_int_equal(apm_cgroup_set_layout(set), cases[i].want);
        apm_cgroup_set_free(set);
    }
}

static void test_cgroup_reads_v2_usage_and_limit(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V2, 16, &set), 0);
    assert_int_equal(read_text(set, "0::/system.slice/app.service\n", 1, &mem, path, sizeof(path)),
                     0);
    assert_string_equal(path, "/system.slice/app.service");
    assert_int_equal(mem.usage, 123456789);
    assert_true(mem.has_limit);
    assert_int_equal(mem.limit, 536870912);
    apm_cgroup_set_free(set);
}

static void test_cgroup_v2_limit_comes_from_a_limited_parent(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V2, 16, &set), 0);
    assert_int_equal(read_text(set, "0::/system.slice/big.service\n", 1, &mem, path, sizeof(path)),
                     0);
    assert_int_equal(mem.usage, 1000);
    assert_true(mem.has_limit);
    assert_int_equal(mem.limit, 1073741824);
    apm_cgroup_set_free(set);
}

static void test_cgroup_reads_v2_max_as_unlimited(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V2, 16, &set), 0);
    assert_int_equal(
        read_text(set, "0::/user.slice/session-1.scope/\n", 1, &mem, path, sizeof(path)), 0);
    assert_string_equal(path, "/user.slice/session-1.scope");
    assert_int_equal(mem.usage, 22222222);
    assert_false(mem.has_limit);
    apm_cgroup_set_free(set);
}

static void test_cgroup_reads_v1_limit(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V1, 16, &set), 0);
    assert_int_equal(
        read_text(set, "7:cpu:/\n6:memory:/docker/abc123\n", 1, &mem, path, sizeof(path)), 0);
    assert_string_equal(path, "/docker/abc123");
    assert_int_equal(mem.usage, 104857600);
    assert_true(mem.has_limit);
    assert_int_equal(mem.limit, 268435456);
    apm_cgroup_set_free(set);
}

static void test_cgroup_reads_v1_limit_unlimited(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V1, 16, &set), 0);
    assert_int_equal(read_text(set, "6:memory:/batch\n", 1, &mem, path, sizeof(path)), 0);
    assert_int_equal(mem.usage, 7777);
    assert_false(mem.has_limit);
    /* The v1 root has usage too: the whole host. */
    assert_int_equal(read_text(set, "6:memory:/\n", 1, &mem, path, sizeof(path)), 0);
    assert_int_equal(mem.usage, 5000000000ULL);
    assert_false(mem.has_limit);
    apm_cgroup_set_free(set);
}

static void test_cgroup_hybrid_uses_the_v1_memory_line(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(HYBRID, 16, &set), 0);
    assert_int_equal(
        read_text(set, "4:memory:/process_api/d532\n0::/user.slice\n", 1, &mem, path, sizeof(path)),
        0);
    assert_string_equal(path, "/process_api/d532");
    assert_int_equal(mem.usage, 249864192);
    /* Unlimited itself, limited by its parent. */
    assert_true(mem.has_limit);
    assert_int_equal(mem.limit, 2147483648ULL);
    apm_cgroup_set_free(set);
}

static void test_cgroup_hybrid_falls_back_to_unified_without_memory_line(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(HYBRID, 16, &set), 0);
    assert_int_equal(read_text(set, "1:cpu:/\n0::/app\n", 1, &mem, path, sizeof(path)), 0);
    assert_int_equal(mem.usage, 4096);
    assert_int_equal(mem.limit, 8192);
    /* A unified cgroup without the memory controller has no figures. */
    assert_int_equal(read_text(set, "0::/user.slice\n", 1, &mem, path, sizeof(path)), -ENOENT);
    apm_cgroup_set_free(set);
}

static void test_cgroup_missing_files_are_errors_not_crashes(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V2, 16, &set), 0);
    /* The v2 root has no memory.current. */
    assert_int_equal(read_text(set, "0::/\n", 1, &mem, path, sizeof(path)), -ENOENT);
    assert_int_equal(read_text(set, "0::/gone.scope\n", 1, &mem, path, sizeof(path)), -ENOENT);
    /* A v1-only membership on a v2 host has no cgroup here. */
    assert_int_equal(read_text(set, "4:memory:/x\n", 1, &mem, path, sizeof(path)), APM_E_NOTFOUND);
    apm_cgroup_set_free(set);

    assert_int_equal(apm_cgroup_set_new(APM_TEST_FIXTURES "/no-such-dir", 16, &set), 0);
    assert_int_equal(read_text(set, "0::/a\n", 1, &mem, path, sizeof(path)), APM_E_NOTFOUND);
    apm_cgroup_set_free(set);
}

static void test_cgroup_reads_once_per_tick_for_many_processes(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_membership m;
    struct apm_cgroup *cgs[100];
    struct apm_cgroup_mem mem;
    assert_int_equal(apm_cgroup_set_new(V2, 16, &set), 0);
    parse("0::/system.slice/app.service\n", &m);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(apm_cgroup_get(set, &m, &cgs[i]), 0);
        assert_ptr_equal(cgs[i], cgs[0]);
    }
    for (int i = 0; i < 100; i++) {
        assert_int_equal(apm_cgroup_read(set, cgs[i], 7, &mem), 0);
        assert_int_equal(mem.usage, 123456789);
    }
    /* usage, own limit, parent's limit and the root's absent limit. */
    uint64_t one_tick = apm_cgroup_set_reads(set);
    assert_true(one_tick <= 4);
    for (int i = 0; i < 100; i++)
        assert_int_equal(apm_cgroup_read(set, cgs[i], 8, &mem), 0);
    /* The next tick reads again, but the absent root file is not retried. */
    assert_int_equal(apm_cgroup_set_reads(set), one_tick + 3);
    assert_int_equal(apm_cgroup_set_open_fds(set), 3);
    for (int i = 0; i < 100; i++)
        apm_cgroup_put(set, cgs[i]);
    assert_int_equal(apm_cgroup_set_open_fds(set), 0);
    apm_cgroup_set_free(set);
}

static void test_cgroup_reads_without_a_descriptor_budget(void **state)
{
    (void)state;
    struct apm_cgroup_set *set;
    struct apm_cgroup_mem mem;
    char path[APM_CGROUP_PATH_MAX];
    assert_int_equal(apm_cgroup_set_new(V1, 0, &set), 0);
    for (uint64_t tick = 1; tick <= 3; tick++) {
        assert_int_equal(
            read_text(set, "6:memory:/docker/abc123\n", tick, &mem, path, sizeof(path)), 0);
        assert_int_equal(mem.limit, 268435456);
        assert_int_equal(apm_cgroup_set_open_fds(set), 0);
    }
    apm_cgroup_set_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cgroup_parses_v2_line),
        cmocka_unit_test(test_cgroup_parses_v1_memory_line_among_others),
        cmocka_unit_test(test_cgroup_parses_comounted_memory_controller),
        cmocka_unit_test(test_cgroup_ignores_paths_outside_our_namespace),
        cmocka_unit_test(test_cgroup_rejects_malformed_line),
        cmocka_unit_test(test_cgroup_parses_limits),
        cmocka_unit_test(test_cgroup_detects_each_layout),
        cmocka_unit_test(test_cgroup_reads_v2_usage_and_limit),
        cmocka_unit_test(test_cgroup_v2_limit_comes_from_a_limited_parent),
        cmocka_unit_test(test_cgroup_reads_v2_max_as_unlimited),
        cmocka_unit_test(test_cgroup_reads_v1_limit),
        cmocka_unit_test(test_cgroup_reads_v1_limit_unlimited),
        cmocka_unit_test(test_cgroup_hybrid_uses_the_v1_memory_line),
        cmocka_unit_test(test_cgroup_hybrid_falls_back_to_unified_without_memory_line),
        cmocka_unit_test(test_cgroup_missing_files_are_errors_not_crashes),
        cmocka_unit_test(test_cgroup_reads_once_per_tick_for_many_processes),
        cmocka_unit_test(test_cgroup_reads_without_a_descriptor_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
