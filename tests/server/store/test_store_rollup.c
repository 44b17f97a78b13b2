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
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
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

/*
 * Opens the store of f, 16 samples a chunk, with raw samples kept
 * retention_ms (0: the default) and the 1-minute and 1-hour rollups
 * rollup_1m_ms and rollup_1h_ms.
 */
static void open_store(struct fixture *f, int64_t retention_ms, int64_t rollup_1m_ms,
                       int64_t rollup_1h_ms)
{
    struct apm_store_options opt = {.dir = f->dir,
                                    .no_sync = true,
                                    .chunk_samples = 16,
                                    .retention_ms = retention_ms,
                                    .rollup_1m_ms = rollup_1m_ms,
                                    .rollup_1h_ms = rollup_1h_ms};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
}

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
    open_store(f, 0, 400LL * 86400000, 400LL * 86400000);
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

/* Values whole pages when set (as RSS is), else any. */
static int64_t page_unit;

/* Stores n samples of the host's mem_available from t, every step_ms plus jitter. */
static int64_t put(struct fixture *f, int64_t t, int n, int64_t step_ms)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    for (int i = 0; i < n; i++) {
        int64_t v = next_rand() % 2000001 - 1000000;
        if (page_unit > 0)
            v = (1000 + v / 100000) * page_unit;
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
    int64_t upto; /* the rollups hold the samples before this (0: all) */
    uint64_t covered;
    int buckets;
};

static int check_bucket(void *ctx, int64_t start, const struct apm_rollup *r)
{
    struct check *c = ctx;
    assert_int_equal(start % c->res, 0);
    int64_t end = start + c->res;
    if (c->upto != 0 && c->upto < end)
        end = c->upto;
    struct apm_rollup want = raw_agg(c->f, start, end);
    assert_int_equal(r->count, want.count);
    assert_int_equal(r->min, want.min);
    assert_int_equal(r->max, want.max);
    assert_int_equal(r->sum, want.sum);
    assert_int_equal(r->last, want.last);
    c->covered += r->count;
    c->buckets++;
    return 0;
}

/*
 * Every stored bucket equals its raw samples (before upto, unless 0: a
 * watermark mid-bucket); returns how many samples they cover.
 */
static uint64_t check_upto(struct fixture *f, int64_t res, int64_t upto, int *buckets)
{
    struct check c = {.f = f, .res = res, .upto = upto};
    assert_int_equal(
        apm_store_read_rollups(f->store, f->sid, res, INT64_MIN, INT64_MAX, check_bucket, &c), 0);
    if (buckets != NULL)
        *buckets = c.buckets;
    return c.covered;
}

static uint64_t check_res(struct fixture *f, int64_t res, int *buckets)
{
    return check_upto(f, res, 0, buckets);
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
    int64_t now = 0;
    for (int round = 0; round < 30; round++) {
        t = put(f, t, 50, 7000);
        now = t + (round % 3) * 20000;
        pass(f, now);
        check_res(f, APM_ROLLUP_1M, NULL);
        check_res(f, APM_ROLLUP_1H, NULL);
    }
    /*
     * While live, only whole blocks before the last sample's bucket are
     * rolled (an hour of 1-minute buckets; a day of 1-hour ones), 10 minutes
     * after their end.
     */
    int64_t last = f->t[f->n - 1];
    int64_t closed = (last + 1) / 60000 * 60000 / 3600000 * 3600000;
    if ((now - 600000) / 3600000 * 3600000 < closed)
        closed = (now - 600000) / 3600000 * 3600000;
    assert_int_equal(check_res(f, APM_ROLLUP_1M, NULL), raw_agg(f, INT64_MIN, closed).count);
    assert_true(closed > T0 + 3600000 && closed <= last);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, NULL), 0);
    /* Idle for two days (past the day block's key time): everything is rolled, mid-bucket. */
    pass(f, t + 2 * 86400000LL);
    int buckets = 0;
    assert_int_equal(check_res(f, APM_ROLLUP_1M, &buckets), f->n);
    assert_true(buckets >= 170);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, &buckets), f->n);
    assert_true(buckets >= 3 && buckets <= 5);
    /* Late samples into the bucket rolled while idle are merged into it. */
    t = put(f, f->t[f->n - 1] + 1, 3, 1);
    pass(f, t + 2 * 86400000LL);
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
    pass(f, t + 2 * 86400000LL);
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
    /*
     * The 1-hour rollup's first block (a day) is not closed: hour steps come
     * from the 1-minute blocks, then raw samples.
     */
    for (int a2 = 0; a2 < 4; a2++) {
        check_steps(f, T0, end, 60000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0 + 7 * 60000 + 13, end, 300000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0, end, 3600000, (enum apm_store_agg)a2, APM_ROLLUP_1M);
        check_steps(f, T0, end, 90000, (enum apm_store_agg)a2, 0);
    }
    /* Idle: everything rolled, at both resolutions, steps across the blocks' edges. */
    pass(f, t + 2 * 86400000LL);
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
    open_store(f, 600000, 400LL * 86400000, 400LL * 86400000);
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

/*
 * Each resolution keeps its blocks for its own retention: a 1-minute block
 * (an hour) goes once it ended more than rollup_1m_ms ago, the 1-hour ones
 * later; what is left still equals its raw samples, and a series with
 * nothing left at any resolution leaves the index.
 */
static void test_block_retention(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    open_store(f, 600000, 3 * 3600000LL, 2 * 86400000LL);
    int64_t t = T0 + 777;
    for (int i = 0; i < 6; i++)
        t = put(f, t, 600, 5000); /* ~5 h */
    int64_t now = f->t[f->n - 1] + 120000;
    pass(f, now);
    /*
     * 1 minute: the blocks ending after now - 3 h, every sample in them up to
     * the raw retention's cut (the hour of the last sample is not closed).
     */
    int64_t cut = now - 3 * 3600000LL;
    int64_t kept_from = (cut - 3600000) / 3600000 * 3600000 + 3600000;
    assert_true(kept_from > T0 + 3600000);
    assert_int_equal(check_upto(f, APM_ROLLUP_1M, now - 600000, NULL),
                     raw_agg(f, kept_from, now - 600000).count);
    /* 1 hour: rolled through the raw retention's cut (the day's block is not closed). */
    assert_int_equal(check_upto(f, APM_ROLLUP_1H, now - 600000, NULL),
                     raw_agg(f, INT64_MIN, now - 600000).count);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.rollups_deleted >= 2);
    assert_int_equal(st.series, 1);
    /* Three days on: raw, then 1-minute, then 1-hour blocks gone; so is the series. */
    pass(f, now + 3 * 86400000LL);
    pass(f, now + 3 * 86400000LL);
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.series, 0);
    uint64_t id = 0;
    assert_int_equal(
        apm_store_find_series(f->store, "web-3", "", APM_METRIC_MEM_AVAILABLE, NULL, &id),
        APM_E_NOTFOUND);
    struct check c = {.f = f, .res = APM_ROLLUP_1H};
    assert_int_equal(apm_store_read_rollups(f->store, f->sid, APM_ROLLUP_1H, INT64_MIN, INT64_MAX,
                                            check_bucket, &c),
                     0);
    assert_int_equal(c.buckets, 0);
}

/*
 * Whole pages (a block's values divided by 4096 are stored): each bucket
 * still equals its samples, also one whose sum or inner samples are not
 * whole pages, and negative values.
 */
static void test_blocks_of_page_sized_values(void **state)
{
    struct fixture *f = *state;
    page_unit = 4096;
    int64_t t = put(f, T0 + 1000, 1500, 5000);
    page_unit = -4096;
    t = put(f, t, 500, 5000);
    page_unit = 0;
    t = put(f, t, 7, 1000); /* one bucket with odd inner values */
    page_unit = 4096;
    t = put(f, t, 700, 5000);
    page_unit = 0;
    pass(f, t + 2 * 86400000LL);
    assert_int_equal(check_res(f, APM_ROLLUP_1M, NULL), f->n);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, NULL), f->n);
    check_steps(f, T0, t, 300000, APM_AGG_MEAN, APM_ROLLUP_1M);
    check_steps(f, T0, t, 3600000, APM_AGG_LAST, APM_ROLLUP_1H);
}

/*
 * An hour step after the 1-hour watermark (mid-minute: raw deleted up to
 * it) takes the raw samples to the next minute, the 1-minute blocks up to
 * theirs, then raw samples: what the raw samples would give.
 */
static void test_hour_steps_from_both_resolutions(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    open_store(f, 2 * 3600000LL, 400LL * 86400000, 400LL * 86400000);
    int64_t t = T0 + 333;
    for (int i = 0; i < 4; i++)
        t = put(f, t, 600, 5000); /* ~3.7 h */
    int64_t now = f->t[f->n - 1] + 30000 + 777;
    pass(f, now);
    /* The 1-hour rollups end mid-minute at the raw cut; the 1-minute ones at a closed hour. */
    int64_t cut = now - 2 * 3600000LL;
    assert_true(cut % 60000 != 0);
    assert_int_equal(check_upto(f, APM_ROLLUP_1H, cut, NULL), raw_agg(f, INT64_MIN, cut).count);
    int64_t hour = (now - 600000) / 3600000 * 3600000;
    assert_true(hour > cut);
    assert_int_equal(check_res(f, APM_ROLLUP_1M, NULL), raw_agg(f, INT64_MIN, hour).count);
    for (int a = 0; a < 4; a++) {
        check_steps(f, T0, t, 3600000, (enum apm_store_agg)a, APM_ROLLUP_1H);
        check_steps(f, T0 + 1800000, t, 7200000, (enum apm_store_agg)a, APM_ROLLUP_1H);
        check_steps(f, cut + 1, t, 3600000, (enum apm_store_agg)a, APM_ROLLUP_1H);
    }
}

/* ---- layout 1: one entry per bucket, as stores written before blocks hold them ---- */

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static size_t varint(uint8_t *p, uint64_t u)
{
    size_t n = 0;
    for (; u >= 0x80; u >>= 7)
        p[n++] = (uint8_t)(u | 0x80);
    p[n++] = (uint8_t)u;
    return n;
}

/*
 * Writes the layout-1 rollups of the samples before wm (its last buckets
 * partial, as a watermark mid-bucket left them) and the watermark, with the
 * store closed, and opens it again.
 */
static void write_layout1(struct fixture *f, int64_t wm)
{
    apm_store_free(f->store);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi ru, rw;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "rollups", 0, &ru), 0);
    assert_int_equal(mdb_dbi_open(txn, "rollup_wm", 0, &rw), 0);
    static const int64_t res[2] = {APM_ROLLUP_1M, APM_ROLLUP_1H};
    for (int i = 0; i < 2; i++)
        for (int64_t b = T0 - res[i]; b < wm; b += res[i]) {
            struct apm_rollup r = raw_agg(f, b, b + res[i] < wm ? b + res[i] : wm);
            if (r.count == 0)
                continue;
            uint8_t key[17], val[60];
            be64(key, f->sid);
            key[8] = (uint8_t)i;
            be64(key + 9, (uint64_t)b ^ (1ull << 63));
            uint64_t min = (uint64_t)r.min;
            size_t n = varint(val, ((uint64_t)r.min << 1) ^ (uint64_t)(r.min >> 63));
            n += varint(val + n, (uint64_t)r.max - min);
            n += varint(val + n, (uint64_t)r.last - min);
            n += varint(val + n, r.count);
            n += varint(val + n, (uint64_t)r.sum - min * r.count);
            MDB_val k = {sizeof(key), key}, v = {n, val};
            assert_int_equal(mdb_put(txn, ru, &k, &v, 0), 0);
        }
    uint8_t idkey[8];
    be64(idkey, f->sid);
    int64_t wms[2] = {wm, wm};
    MDB_val k = {8, idkey}, v = {sizeof(wms), wms};
    assert_int_equal(mdb_put(txn, rw, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    open_store(f, 0, 400LL * 86400000, 400LL * 86400000);
}

/* Keys of the rollup database in layout 1 (first byte below 0xf0) and in blocks. */
static void count_layouts(struct fixture *f, int *old, int *blocks)
{
    apm_store_free(f->store);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_dbi ru;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_RDONLY, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "rollups", 0, &ru), 0);
    assert_int_equal(mdb_cursor_open(txn, ru, &cur), 0);
    MDB_val k, v;
    *old = *blocks = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        (*(((const uint8_t *)k.mv_data)[0] >= 0xf0 ? blocks : old))++;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    open_store(f, 0, 400LL * 86400000, 400LL * 86400000);
}

/*
 * A store whose rollups are in layout 1 (one entry per bucket) reads them,
 * and the maintenance moves them into blocks in bounded slices: before, in
 * the middle and after the move, every bucket equals its raw samples and
 * step queries give what the raw samples would.
 */
static void test_layout1_read_and_moved(void **state)
{
    struct fixture *f = *state;
    int64_t t = T0 + 4321;
    for (int i = 0; i < 4; i++)
        t = put(f, t, 700, 5000);          /* ~4 h */
    int64_t wm = T0 + 150 * 60000 + 30000; /* mid-bucket at both resolutions */
    write_layout1(f, wm);
    int old = 0, blocks = 0;
    count_layouts(f, &old, &blocks);
    assert_true(old > 150 && blocks == 0);
    uint64_t before_wm = raw_agg(f, INT64_MIN, wm).count;
    assert_int_equal(check_upto(f, APM_ROLLUP_1M, wm, NULL), before_wm);
    assert_int_equal(check_upto(f, APM_ROLLUP_1H, wm, NULL), before_wm);
    check_steps(f, T0, t, 60000, APM_AGG_MEAN, APM_ROLLUP_1M);
    check_steps(f, T0, t, 3600000, APM_AGG_MAX, APM_ROLLUP_1H);
    /* One slice of 40 keys: part moved, nothing new rolled meanwhile. */
    int64_t now = t + 2 * 86400000LL;
    assert_int_equal(apm_store_maintain(f->store, now, 40, 1000000), 0);
    assert_int_equal(check_upto(f, APM_ROLLUP_1M, wm, NULL), before_wm);
    assert_int_equal(check_upto(f, APM_ROLLUP_1H, wm, NULL), before_wm);
    check_steps(f, T0, t, 60000, APM_AGG_MIN, APM_ROLLUP_1M);
    check_steps(f, T0 + 3 * 60000, t, 1800000, APM_AGG_LAST, APM_ROLLUP_1M);
    count_layouts(f, &old, &blocks);
    assert_true(old > 0 && blocks > 0);
    /* The whole pass: every bucket moved, the rest rolled (idle), layout 1 gone. */
    pass(f, now);
    assert_int_equal(check_res(f, APM_ROLLUP_1M, NULL), f->n);
    assert_int_equal(check_res(f, APM_ROLLUP_1H, NULL), f->n);
    for (int a = 0; a < 4; a++) {
        check_steps(f, T0, t, 60000, (enum apm_store_agg)a, APM_ROLLUP_1M);
        check_steps(f, T0, t, 3600000, (enum apm_store_agg)a, APM_ROLLUP_1H);
    }
    count_layouts(f, &old, &blocks);
    assert_int_equal(old, 0);
    assert_true(blocks >= 4 && blocks <= 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollup_equals_raw_it_covers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollup_not_finer_than_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_selection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_after_raw_is_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocks_of_page_sized_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hour_steps_from_both_resolutions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout1_read_and_moved, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
