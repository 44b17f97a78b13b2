/*
 * Rollups (server/store/store_rollup.c, built by store_retention.c): every
 * bucket equals the raw samples it covers, whatever the passes' timing; the
 * resolution a step is answered from; a rollup no coarser than the series'
 * interval is not kept. Real LMDB files in /tmp.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#define T0 1800000000000LL /* a whole hour */
#define MAXS 8192

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_agent_ident agent;
    uint64_t seq;
    uint64_t sid;
    /* Every sample stored, to compare with. */
    int n;
    int64_t t[MAXS], v[MAXS];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-rollup-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    strcpy(f->agent.boot_id, "boot-a");
    strcpy(f->agent.version, "0.1.0");
    f->agent.instance = 77;
    struct apm_store_options opt = {.dir = f->dir,
                                    .no_sync = true,
                                    .chunk_samples = 16,
                                    .rollup_1m_ms = 400LL * 86400000,
                                    .rollup_1h_ms = 400LL * 86400000};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

static uint64_t rng = 88172645463325252ull;
static int64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int64_t)(rng >> 1);
}

/* Stores n samples of the host's mem_available from t, every step_ms plus jitter. */
static int64_t put(struct fixture *f, int64_t t, int n, int64_t step_ms)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    for (int i = 0; i < n; i++) {
        int64_t v = next_rand() % 2000001 - 1000000;
        assert_int_equal(apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t, v), 0);
        assert_true(f->n < MAXS);
        f->t[f->n] = t;
        f->v[f->n++] = v;
        t += step_ms + (step_ms > 10 ? next_rand() % (step_ms / 5) : 0);
    }
    struct apm_store_txn *txn = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &txn), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &f->agent, b), 0);
    assert_int_equal(apm_store_txn_commit(txn), 0);
    apm_batch_free(b);
    if (f->sid == 0)
        assert_int_equal(
            apm_store_find_series(f->store, "web-3", "", APM_METRIC_MEM_AVAILABLE, NULL, &f->sid),
            0);
    return t;
}

static void pass(struct fixture *f, int64_t now)
{
    int rc;
    while ((rc = apm_store_maintain(f->store, now, 50, 1000000)) == 0)
        ;
    assert_int_equal(rc, 1);
}

/* The aggregate of the recorded samples in [from, to). */
static struct apm_rollup raw_agg(const struct fixture *f, int64_t from, int64_t to)
{
    struct apm_rollup r = {0};
    for (int i = 0; i < f->n; i++) {
        if (f->t[i] < from || f->t[i] >= to)
            continue;
        if (r.count == 0 || f->v[i] < r.min)
            r.min = f->v[i];
        if (r.count == 0 || f->v[i] > r.max)
            r.max = f->v[i];
        r.sum += f->v[i];
        r.last = f->v[i];
        r.count++;
    }
    return r;
}

struct check {
    const struct fixture *f;
    int64_t res;
    uint64_t covered;
    int buckets;
};

static int check_bucket(void *ctx, int64_t start, const struct apm_rollup *r)
{
    struct check *c = ctx;
    assert_int_equal(start % c->res, 0);
    struct apm_rollup want = raw_agg(c->f, start, start + c->res);
    assert_int_equal(r->count, want.count);
    assert_int_equal(r->min, want.min);
    assert_int_equal(r->max, want.max);
    assert_int_equal(r->sum, want.sum);
    assert_int_equal(r->last, want.last);
    c->covered += r->count;
    c->buckets++;
    return 0;
}

/* Every stored bucket equals its raw samples; returns how many samples they cover. */
static uint64_t check_res(struct fixture *f, int64_t res, int *buckets)
{
    struct check c = {.f = f, .res = res};
    assert_int_equal(
        apm_store_read_rollups(f->store, f->sid, res, INT64_MIN, INT64_MAX, check_bucket, &c), 0);
    if (buckets != NULL)
        *buckets = c.buckets;
    return c.covered;
}

/*
 * Three hours at ~7 s with jitter, stored in batches with passes at
 * uneven times in between: each bucket equals the raw samples it covers,
 * and once the series is idle every sample is in exactly one bucket.
 */
static void test_rollup_equals_raw_it_covers(void **state)
{
    struct fixture *f = *state;
    int64_t t = T0 + 1234;
    for (int round = 0; round < 30; round++) {
        t = put(f, t, 50, 7000);
        pass(f, t + (round % 3) * 20000);
        check_res(f, APM_ROLLUP_1M, NULL);
        check_res(f, APM_ROLLUP_1H, NULL);
    }
    /*
     * While live, only whole blocks before the last sample's bucket are
     * rolled (an hour of 1-minute buckets; a day of 1-hour ones).
     */
    int64_t last = f->t[f->n - 1];
    int64_t closed = (last + 1) / 60000 * 60000 / 3600000 * 3600000;
    assert_int_equal(check_res(f, APM_ROLLUP_1M, NULL), raw_agg(f, INT64_MIN, closed).count);
    assert_true(closed > T0 + 3600000 && closed <= last);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, NULL), 0);
    /* Idle for two hours: everything is rolled, mid-bucket. */
    pass(f, t + 2 * 3600000);
    int buckets = 0;
    assert_int_equal(check_res(f, APM_ROLLUP_1M, &buckets), f->n);
    assert_true(buckets >= 170);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, &buckets), f->n);
    assert_true(buckets >= 3 && buckets <= 5);
    /* Late samples into the bucket rolled while idle are merged into it. */
    t = put(f, f->t[f->n - 1] + 1, 3, 1);
    pass(f, t + 2 * 3600000);
    assert_int_equal(check_res(f, APM_ROLLUP_1M, NULL), f->n);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, NULL), f->n);
}

/*
 * A series sampled every 20 s (3 samples a minute) keeps no 1-minute rollup;
 * the 1-hour one is kept.
 */
static void test_rollup_not_finer_than_interval(void **state)
{
    struct fixture *f = *state;
    int64_t t = put(f, T0, 400, 20000);
    pass(f, t + 2 * 3600000);
    int buckets = -1;
    assert_int_equal(check_res(f, APM_ROLLUP_1M, &buckets), 0);
    assert_int_equal(buckets, 0);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, &buckets), f->n);
    assert_true(buckets > 0);
}

struct points {
    int n;
    int64_t t[4096];
    double v[4096];
};

static int collect_point(void *ctx, int64_t t, double v)
{
    struct points *p = ctx;
    if (p->n < 4096) {
        p->t[p->n] = t;
        p->v[p->n] = v;
    }
    p->n++;
    return 0;
}

/* Checks read_steps against the raw samples for one step and aggregate. */
static void check_steps(struct fixture *f, int64_t from, int64_t to, int64_t step,
                        enum apm_store_agg agg, int64_t want_res)
{
    struct points p = {0};
    int64_t res = -1;
    assert_int_equal(
        apm_store_read_steps(f->store, f->sid, from, to, step, agg, collect_point, &p, &res), 0);
    assert_int_equal(res, want_res);
    int expect = 0;
    int64_t lo = from - ((from % step) + step) % step;
    for (int64_t b = lo; b <= to; b += step) {
        struct apm_rollup r = raw_agg(f, b, b + step < to + 1 ? b + step : to + 1);
        if (r.count == 0)
            continue;
        assert_true(expect < p.n);
        assert_int_equal(p.t[expect], b);
        double want = agg == APM_AGG_MIN    ? (double)r.min
                      : agg == APM_AGG_MAX  ? (double)r.max
                      : agg == APM_AGG_LAST ? (double)r.last
                                            : (double)r.sum / (double)r.count;
        assert_true(fabs(p.v[expect] - want) < 1e-6);
        expect++;
    }
    assert_int_equal(p.n, expect);
}

/*
 * A step is answered from the coarsest resolution dividing it, plus the raw
 * samples not rolled up yet, and gives what the raw samples would.
 */
static void test_step_selection(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(apm_store_step_resolution(1000), 0);
    assert_int_equal(apm_store_step_resolution(90000), 0);
    assert_int_equal(apm_store_step_resolution(60000), APM_ROLLUP_1M);
    assert_int_equal(apm_store_step_resolution(600000), APM_ROLLUP_1M);
    assert_int_equal(apm_store_step_resolution(3600000), APM_ROLLUP_1H);
    assert_int_equal(apm_store_step_resolution(86400000), APM_ROLLUP_1H);
    enum apm_store_agg a;
    assert_int_equal(apm_store_agg_parse("max", &a), 0);
    assert_int_equal(a, APM_AGG_MAX);
    assert_int_equal(apm_store_agg_parse("median", &a), APM_E_PARSE);

    int64_t t = put(f, T0 + 500, 1500, 5000); /* ~2 h 5 min */
    pass(f, t);                               /* live: the last minute and hour stay raw */
    t = put(f, t, 40, 5000);                  /* not rolled at all yet */
    int64_t end = t + 1;
    /* The 1-hour rollup's first block (a day) is not closed: raw answers, rollups used none. */
    for (int a2 = 0; a2 < 4; a2++) {
        check_steps(f, T0, end, 60000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0 + 7 * 60000 + 13, end, 300000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0, end, 3600000, (enum apm_store_agg)a2, 0);
        check_steps(f, T0, end, 90000, (enum apm_store_agg)a2, 0);
    }
    /* Idle: everything rolled, at both resolutions, steps across the blocks' edges. */
    pass(f, t + 2 * 3600000);
    for (int a2 = 0; a2 < 4; a2++) {
        check_steps(f, T0, end, 60000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0 + 59 * 60000 + 13, T0 + 61 * 60000 - 1, 60000, (enum apm_store_agg)a2,
                    APM_ROLLUP_1M);
        check_steps(f, T0 + 7 * 60000 + 13, end, 1200000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0, end, 3600000, (enum apm_store_agg)a2, APM_ROLLUP_1H);
        check_steps(f, T0 - 86400000, end, 86400000, (enum apm_store_agg)a2, APM_ROLLUP_1H);
    }
}

static int count_raw(void *ctx, int64_t t, int64_t v)
{
    (void)t;
    (void)v;
    (*(int *)ctx)++;
    return 0;
}

/* With raw samples gone past their retention, steps still come from the rollups. */
static void test_steps_after_raw_is_gone(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    struct apm_store_options opt = {.dir = f->dir,
                                    .no_sync = true,
                                    .chunk_samples = 16,
                                    .retention_ms = 600000,
                                    .rollup_1m_ms = 400LL * 86400000,
                                    .rollup_1h_ms = 400LL * 86400000};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    int64_t t = put(f, T0, 1000, 3000);
    pass(f, t + 3600000);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_deleted > 0);
    assert_int_equal(st.heads_dropped, 1);
    int raw = 0;
    assert_int_equal(
        apm_store_read_samples(f->store, f->sid, INT64_MIN, INT64_MAX, count_raw, &raw), 0);
    assert_int_equal(raw, 0);
    check_steps(f, T0, t, 60000, APM_AGG_MEAN, APM_ROLLUP_1M);
    check_steps(f, T0, t, 3600000, APM_AGG_MAX, APM_ROLLUP_1H);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollup_equals_raw_it_covers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollup_not_finer_than_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_selection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_after_raw_is_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
