#ifndef APM_TESTS_SERVER_STORE_FIXTURE_H
#define APM_TESTS_SERVER_STORE_FIXTURE_H

/*
 * The store tests' fixture (test_store.c, test_store_log.c): a store in a fresh
 * directory (a subdirectory of a mkdtemp one, so that open creates it), an agent, a
 * batch of one process's rss and the host's mem_available, and collectors of series
 * and samples. Include after cmocka.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store/store.h"
#include "tests/tmpdir.h"

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_agent_ident agent;
};

static inline void open_store(struct fixture *f, unsigned chunk_samples, size_t map_size)
{
    struct apm_store_options opt = {
        .dir = f->dir, .chunk_samples = chunk_samples, .map_size = map_size, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
}

static inline int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    /* A subdirectory checks that open creates the data directory. */
    strcat(f->dir, "/data");
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    strcpy(f->agent.boot_id, "boot-a");
    strcpy(f->agent.version, "0.1.0");
    f->agent.instance = 77;
    open_store(f, 8, 0);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    *strrchr(f->dir, '/') = '\0';
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

/* A batch with one process (rss samples) and the host's mem_available. */
static inline struct apm_batch *make_batch(uint64_t seq, int64_t t0, int nsamples)
{
    struct apm_batch *b = apm_batch_new(seq);
    struct apm_proc_desc p = {.pid = 4242,
                              .ppid = 1,
                              .start_ms = 1700000000123,
                              .name = "worker.py",
                              .cmdline = "python3 worker.py --fast",
                              .cgroup = "/system.slice/worker.service"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    for (int i = 0; i < nsamples; i++) {
        int64_t t = t0 + i * 1000;
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t, 100000 + t / 1000), 0);
        assert_int_equal(apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t, -t),
                         0);
    }
    return b;
}

/* Stores one batch in its own transaction; returns put_batch's result. */
static inline int store_batch(struct fixture *f, uint64_t seq, int64_t t0, int nsamples)
{
    struct apm_batch *b = make_batch(seq, t0, nsamples);
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    int rc = apm_store_txn_put_batch(t, &f->agent, b);
    if (rc >= 0)
        assert_int_equal(apm_store_txn_commit(t), 0);
    else
        apm_store_txn_abort(t);
    apm_batch_free(b);
    return rc;
}

struct collected {
    int n;
    uint64_t ids[8];
    struct apm_series_info last;
    char name[64];
    char host[64];
    int64_t t[4096];
    int64_t v[4096];
    int stop_after;
};

static inline int collect_series(void *ctx, const struct apm_series_info *s)
{
    struct collected *c = ctx;
    if (c->n < 8)
        c->ids[c->n] = s->id;
    c->n++;
    c->last = *s;
    snprintf(c->name, sizeof(c->name), "%s", s->process_name);
    snprintf(c->host, sizeof(c->host), "%s", s->host);
    return 0;
}

static inline int collect_sample(void *ctx, int64_t t, int64_t v)
{
    struct collected *c = ctx;
    if (c->n < 4096) {
        c->t[c->n] = t;
        c->v[c->n] = v;
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static inline uint64_t find_series(struct fixture *f, enum apm_metric metric)
{
    struct collected c = {0};
    struct apm_series_filter filter = {.host = "web-3", .metric = metric};
    assert_int_equal(apm_store_list_series(f->store, &filter, collect_series, &c), 0);
    assert_int_equal(c.n, 1);
    return c.ids[0];
}

#endif
