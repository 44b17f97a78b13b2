/*
 * A store in a temporary directory and a helper that stores probe diffs of
 * one process (pid 42 on host web-3), shared by the tests of the modules that
 * read site series (sites, suspects). Header only: each test includes it once.
 */
#ifndef APM_TEST_PROBE_FIXTURE_H
#define APM_TEST_PROBE_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store/store.h"
#include "tests/tmpdir.h"

#define T0 1700000000000LL
#define PID_ID "web-3:42:1699999000000"

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_agent_ident agent;
    uint64_t seq;
    uint64_t sample_bytes;     /* nonzero: the diffs are sampled estimates */
    const int64_t *growth_var; /* with them: each site's running variance */
};

struct site {
    const char *file;
    uint32_t line;
    int64_t size, size_diff;
};

/* A fresh store keeping at most max_sites sites per process (0: the default). */
static struct fixture *fixture_open(unsigned max_sites)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/apm-test-probe-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    strcpy(f->agent.boot_id, "boot-a");
    strcpy(f->agent.version, "0.1.0");
    f->agent.instance = 7;
    struct apm_store_options opt = {
        .dir = f->dir, .no_sync = true, .max_sites_per_process = max_sites};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    return f;
}

static void fixture_close(struct fixture *f)
{
    apm_store_free(f->store);
    apm_test_rmtree(f->dir);
    free(f);
}

/*
 * Stores one diff of process 42 made at t_ms, interval_ms after the previous
 * snapshot, with the traced total and the sites given (a site's count is its
 * size / 100, alike for the diffs).
 */
static void put_probe_diff(struct fixture *f, int64_t t_ms, int64_t interval_ms, int64_t traced,
                           const struct site *sites, uint32_t nsites)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    struct apm_proc_desc p = {.pid = 42,
                              .ppid = 1,
                              .start_ms = 1699999000000LL,
                              .name = "worker.py",
                              .cmdline = "python3 worker.py",
                              .cgroup = "/system.slice/worker.service"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t_ms, 50000000), 0);
    struct apm_trace_diff *d = NULL;
    assert_int_equal(apm_batch_append_diff(b, idx, nsites, &d), 0);
    d->t_ms = t_ms;
    d->probe_seq = f->seq;
    d->session = 1;
    d->frames = 1;
    d->interval_ms = interval_ms;
    d->traced_current = traced;
    d->traced_peak = traced;
    d->sample_bytes = f->sample_bytes;
    for (uint32_t i = 0; i < nsites; i++) {
        assert_int_equal(apm_site_set(&d->sites[i], sites[i].file, sites[i].line, 0), 0);
        d->sites[i].size = sites[i].size;
        d->sites[i].size_diff = sites[i].size_diff;
        d->sites[i].count = sites[i].size / 100;
        d->sites[i].count_diff = sites[i].size_diff / 100;
        d->sites[i].growth_var = f->growth_var ? f->growth_var[i] : 0;
    }
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
    assert_int_equal(apm_store_txn_commit(t), 0);
    apm_batch_free(b);
}

#endif
