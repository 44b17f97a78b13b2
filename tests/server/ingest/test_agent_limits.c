/* Cardinality limits per agent: live processes, series and sites, forgotten after the grace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/error.h"
#include "server/ingest/agent_limits.h"

#define GRACE_MS 10000u

/* A batch of nprocs processes from pid0, each with an rss sample (and a pss one if asked). */
static struct apm_batch *procs_batch(uint64_t seq, int pid0, int nprocs, int pss)
{
    struct apm_batch *b = apm_batch_new(seq);
    assert_non_null(b);
    for (int i = 0; i < nprocs; i++) {
        struct apm_proc_desc p = {.pid = pid0 + i, .start_ms = 1000, .name = "w.py"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 5000, 1 << 20), 0);
        /* A second sample of the same series is still one series. */
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 6000, 1 << 20), 0);
        if (pss)
            assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_PSS, 5000, 1 << 19), 0);
    }
    return b;
}

static struct apm_agent_limits *limits(uint64_t procs, uint64_t series, uint64_t sites)
{
    struct apm_agent_limits_options o = {
        .grace_ms = GRACE_MS, .max_processes = procs, .max_series = series, .max_sites = sites};
    struct apm_agent_limits *l = NULL;
    assert_int_equal(apm_agent_limits_new(&o, &l), 0);
    return l;
}

static int admit(struct apm_agent_limits *l, const char *agent, struct apm_batch *b, uint64_t now,
                 enum apm_agent_limit *which, char *why, size_t whylen)
{
    int rc = apm_agent_limits_admit(l, agent, b, now, which, why, whylen);
    apm_batch_free(b);
    return rc;
}

static void test_agent_limits_refuse_processes_over_the_limit_naming_it(void **state)
{
    (void)state;
    struct apm_agent_limits *l = limits(5, 0, 0);
    enum apm_agent_limit which;
    char why[256];
    assert_int_equal(admit(l, "a1", procs_batch(1, 100, 4, 0), 1000, &which, why, sizeof(why)), 0);
    /* The same four again and one more: five, at the limit. */
    assert_int_equal(admit(l, "a1", procs_batch(2, 100, 5, 0), 2000, &which, why, sizeof(why)), 0);
    assert_int_equal(admit(l, "a1", procs_batch(3, 200, 1, 0), 3000, &which, why, sizeof(why)),
                     APM_E_LIMIT);
    assert_int_equal(which, APM_AGENT_LIMIT_PROCESSES);
    assert_non_null(strstr(why, "max-processes-per-agent (5)"));
    assert_non_null(strstr(why, "batch 3"));
    assert_non_null(strstr(why, "'a1'"));
    /* Refused means not recorded; another agent has its own budget. */
    struct apm_agent_live live;
    apm_agent_limits_live(l, "a1", &live);
    assert_int_equal(live.processes, 5);
    assert_int_equal(live.series, 5);
    assert_int_equal(admit(l, "a2", procs_batch(1, 200, 5, 0), 3000, &which, why, sizeof(why)), 0);
    assert_int_equal(apm_agent_limits_agents(l), 2);
    apm_agent_limits_free(l);
}

static void test_agent_limits_forget_what_is_not_reported_for_the_grace(void **state)
{
    (void)state;
    struct apm_agent_limits *l = limits(5, 0, 0);
    enum apm_agent_limit which;
    char why[256];
    assert_int_equal(admit(l, "a1", procs_batch(1, 100, 5, 0), 1000, &which, why, sizeof(why)), 0);
    /* Within the grace the dead five still count... */
    assert_int_equal(
        admit(l, "a1", procs_batch(2, 300, 5, 0), 1000 + GRACE_MS, &which, why, sizeof(why)),
        APM_E_LIMIT);
    /* ...after it they are gone, and new processes fit. */
    assert_int_equal(
        admit(l, "a1", procs_batch(3, 300, 5, 0), 1001 + GRACE_MS, &which, why, sizeof(why)), 0);
    struct apm_agent_live live;
    apm_agent_limits_live(l, "a1", &live);
    assert_int_equal(live.processes, 5);
    /* An agent that stops reporting is forgotten whole by the sweep. */
    apm_agent_limits_sweep(l, 2002 + 2 * GRACE_MS);
    assert_int_equal(apm_agent_limits_agents(l), 0);
    apm_agent_limits_free(l);
}

static void test_agent_limits_count_series_and_sites(void **state)
{
    (void)state;
    struct apm_agent_limits *l = limits(100, 5, 2);
    enum apm_agent_limit which;
    char why[256];
    /* Three processes with rss and pss: six series. */
    assert_int_equal(admit(l, "a1", procs_batch(1, 100, 3, 1), 1000, &which, why, sizeof(why)),
                     APM_E_LIMIT);
    assert_int_equal(which, APM_AGENT_LIMIT_SERIES);
    assert_non_null(strstr(why, "max-series-per-agent (5)"));
    /* Sites: three distinct sites of one process, two allowed. */
    struct apm_batch *b = procs_batch(2, 100, 1, 0);
    struct apm_trace_diff *d = NULL;
    assert_int_equal(apm_batch_append_diff(b, 0, 3, &d), 0);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(apm_site_set(&d->sites[i], "app.py", 10 + i, 0), 0);
    assert_int_equal(admit(l, "a1", b, 1000, &which, why, sizeof(why)), APM_E_LIMIT);
    assert_int_equal(which, APM_AGENT_LIMIT_SITES);
    assert_non_null(strstr(why, "max-sites-per-agent (2)"));
    apm_agent_limits_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_limits_refuse_processes_over_the_limit_naming_it),
        cmocka_unit_test(test_agent_limits_forget_what_is_not_reported_for_the_grace),
        cmocka_unit_test(test_agent_limits_count_series_and_sites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
