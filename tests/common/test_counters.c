/*
 * The counters registry: groups read in order through a pointer or a getter, a failed read
 * reported, a closed module removed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/counters.h"
#include "common/base/error.h"

struct pair_stats {
    uint64_t open;
    uint64_t served;
};

static const struct apm_counter pair_counters[] = {
    APM_COUNTER(struct pair_stats, open, "open", APM_COUNTER_GAUGE, "", "Open now."),
    APM_COUNTER(struct pair_stats, served, "served", APM_COUNTER_TOTAL, "", "Served so far."),
    {.name = NULL},
};

static int read_pair(void *obj, void *out)
{
    memcpy(out, obj, sizeof(struct pair_stats));
    return 0;
}

static int read_fails(void *obj, void *out)
{
    (void)obj;
    (void)out;
    return APM_E_STORE;
}

/* Writes "module.name=value" per counter, or "module:error" for a failed read. */
static void visit(void *ctx, const struct apm_counter_group *g, int rc, const void *stats)
{
    char *text = ctx;
    size_t n = strlen(text);
    if (rc != 0) {
        snprintf(text + n, 256 - n, "%s:error ", g->module);
        return;
    }
    for (const struct apm_counter *c = g->counters; c->name != NULL; c++) {
        n = strlen(text);
        snprintf(text + n, 256 - n, "%s.%s=%llu ", g->module, c->name,
                 (unsigned long long)apm_counter_value(c, stats));
    }
}

static void test_counters_walks_groups_in_order_and_reports_failed_reads(void **state)
{
    (void)state;
    struct apm_counters r;
    apm_counters_init(&r);
    struct pair_stats a = {.open = 2, .served = 40}, b = {.open = 0, .served = 7};
    /* One group by pointer, one by getter, one whose getter fails. */
    struct apm_counter_group ga = {
        .module = "http", .counters = pair_counters, .size = sizeof(a), .stats = &a};
    struct apm_counter_group gb = {.module = "ingest",
                                   .counters = pair_counters,
                                   .size = sizeof(b),
                                   .read = read_pair,
                                   .obj = &b};
    struct apm_counter_group gs = {
        .module = "store", .counters = pair_counters, .size = sizeof(b), .read = read_fails};
    assert_int_equal(apm_counters_add(&r, &ga), 0);
    assert_int_equal(apm_counters_add(&r, &gs), 0);
    assert_int_equal(apm_counters_add(&r, &gb), 0);
    char text[256] = "";
    apm_counters_walk(&r, visit, text);
    assert_string_equal(text, "http.open=2 http.served=40 store:error ingest.open=0 "
                              "ingest.served=7 ");
    /* The values are read at each walk, not at registration. */
    a.served = 41;
    apm_counters_remove(&r, "store");
    apm_counters_remove(&r, "nothing");
    text[0] = '\0';
    apm_counters_walk(&r, visit, text);
    assert_string_equal(text, "http.open=2 http.served=41 ingest.open=0 ingest.served=7 ");
}

static void test_counters_refuses_past_its_caps(void **state)
{
    (void)state;
    struct apm_counters r;
    apm_counters_init(&r);
    struct pair_stats a = {0};
    struct apm_counter_group g = {
        .module = "http", .counters = pair_counters, .size = sizeof(a), .stats = &a};
    /* Either the pointer or the getter, not both, not none. */
    g.read = read_pair;
    assert_int_equal(apm_counters_add(&r, &g), -EINVAL);
    g.read = NULL;
    g.stats = NULL;
    assert_int_equal(apm_counters_add(&r, &g), -EINVAL);
    g.stats = &a;
    for (unsigned i = 0; i < APM_COUNTERS_MAX_GROUPS; i++)
        assert_int_equal(apm_counters_add(&r, &g), 0);
    assert_int_equal(apm_counters_add(&r, &g), APM_E_LIMIT);
    apm_counters_init(&r);
    g.size = APM_COUNTERS_STATS_MAX + 8;
    assert_int_equal(apm_counters_add(&r, &g), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_walks_groups_in_order_and_reports_failed_reads),
        cmocka_unit_test(test_counters_refuses_past_its_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
