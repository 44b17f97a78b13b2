/*
 * Packed periods (server/store/store_pack.c): maintenance moves a closed
 * period's sealed chunks into DB_PACKED. The samples read back equal the
 * samples stored, across the packed pieces, the sealed chunks left and the
 * open chunk, for any range; rollups equal them; a restart goes on where it
 * stood; retention and removal see the packed pieces; remote-write's cursor
 * keeps them. Real LMDB files in /tmp.
 */
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

#include "common/base/error.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#define T0 1800000000000LL /* the first sample */
#define PERIOD 60000LL     /* a short pack period, so that tests pack many */
#define NSERIES 3
#define MAXN 4096

/* Sampling intervals: fast, medium, and slower than the period (its chunks span periods). */
static const int64_t interval[NSERIES] = {1000, 7000, 37000};

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_store_options opt;
    struct apm_agent_ident agent;
    uint64_t seq;
    /* What was stored, per series. */
    int64_t t[NSERIES][MAXN], v[NSERIES][MAXN];
    int n[NSERIES];
    int64_t next_t[NSERIES];
};

static void open_store(struct fixture *f)
{
    f->opt.dir = f->dir;
    assert_int_equal(apm_store_open(&f->opt, &f->store), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-pack-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    f->agent.instance = 5;
    f->opt = (struct apm_store_options){.no_sync = true,
                                        .chunk_samples = 8,
                                        .pack_period_ms = PERIOD,
                                        .rollup_1m_ms = -1,
                                        .rollup_1h_ms = -1};
    for (int i = 0; i < NSERIES; i++)
        f->next_t[i] = T0 + i * 13;
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

/* A value with noise in its low bits now and then, so that chunk shifts vary. */
static int64_t value(int i, int k)
{
    uint64_t x =
        (uint64_t)(k + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    int64_t v = (int64_t)(100 << 20) + (int64_t)k * 4096 + (int64_t)(x % 64) * 4096;
    return x % 7 == 0 ? v + (int64_t)(x % 4096) : v;
}

/* Stores every series' samples before until (one batch), as the collector receives them. */
static void put_until(struct fixture *f, int64_t until)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    for (int i = 0; i < NSERIES; i++) {
        struct apm_proc_desc p = {.pid = 100 + i, .ppid = 1, .start_ms = 1, .name = "job.py"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
        while (f->next_t[i] < until) {
            assert_true(f->n[i] < MAXN);
            int k = f->n[i]++;
            f->t[i][k] = f->next_t[i];
            f->v[i][k] = value(i, k);
            assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, f->t[i][k], f->v[i][k]),
                             0);
            f->next_t[i] += interval[i];
        }
    }
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_true(apm_store_txn_put_batch(t, &f->agent, b) >= 0);
    assert_int_equal(apm_store_txn_commit(t), 0);
    apm_batch_free(b);
}

static void pass(struct fixture *f, int64_t now, unsigned max_keys)
{
    int rc, slices = 0;
    do {
        rc = apm_store_maintain(f->store, now, max_keys, 1000000);
        assert_true(rc >= 0);
        assert_true(++slices < 100000);
    } while (rc == 0);
}

/* Data up to until, 10 s a batch, a maintenance pass each 30 s of data with its clock as now. */
static void run_until(struct fixture *f, int64_t from, int64_t until, unsigned max_keys)
{
    for (int64_t t = from + 10000; t <= until; t += 10000) {
        put_until(f, t);
        if ((t - from) % 30000 == 0)
            pass(f, t, max_keys);
    }
}

static uint64_t series_id(struct fixture *f, int i)
{
    char id[128];
    uint64_t sid = 0;
    apm_store_process_id(id, sizeof(id), "web-3", 100 + i, 1);
    assert_int_equal(apm_store_find_series(f->store, NULL, id, APM_METRIC_RSS, NULL, &sid), 0);
    return sid;
}

struct got {
    int n;
    int64_t t[MAXN], v[MAXN];
};

static int collect(void *ctx, int64_t t, int64_t v)
{
    struct got *g = ctx;
    if (g->n >= MAXN)
        return 1;
    g->t[g->n] = t;
    g->v[g->n] = v;
    g->n++;
    return 0;
}

/* The store's samples of series i in [from, to] equal the stored ones there. */
static void check_range(struct fixture *f, int i, int64_t from, int64_t to)
{
    static struct got g;
    g.n = 0;
    assert_int_equal(apm_store_read_samples(f->store, series_id(f, i), from, to, collect, &g), 0);
    int k = 0;
    for (int j = 0; j < f->n[i]; j++) {
        if (f->t[i][j] < from || f->t[i][j] > to)
            continue;
        assert_true(k < g.n);
        assert_int_equal(g.t[k], f->t[i][j]);
        assert_int_equal(g.v[k], f->v[i][j]);
        k++;
    }
    assert_int_equal(g.n, k);
}

static void check_all(struct fixture *f)
{
    for (int i = 0; i < NSERIES; i++) {
        check_range(f, i, INT64_MIN, INT64_MAX);
        int64_t last = f->t[i][f->n[i] - 1];
        /* Ranges starting and ending inside periods, on period bounds, and past the end. */
        for (int64_t from = T0 - 5000; from < last; from += 23000) {
            check_range(f, i, from, from + 41000);
            check_range(f, i, from, from + PERIOD);
            check_range(f, i, from, INT64_MAX);
        }
        check_range(f, i, T0 + 2 * PERIOD, T0 + 4 * PERIOD - 1);
    }
}

/* Re-packing keeps every sample: reads across packed pieces, sealed chunks and the open chunk. */
static void test_packed_reads_equal_stored(void **state)
{
    struct fixture *f = *state;
    open_store(f);
    run_until(f, T0, T0 + 20 * PERIOD, 2000);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    /* Everything two periods old is packed: at least 16 periods of the 1 s series' chunks. */
    assert_true(st.chunks_packed >= 16 * PERIOD / 1000 / 8);
    assert_int_equal(st.samples, (uint64_t)(f->n[0] + f->n[1] + f->n[2]));
    check_all(f);
    /* A day later every closed period is packed, one a pass; reads still equal. */
    for (int p = 0; p < 4; p++)
        pass(f, T0 + 86400000, 2000);
    check_all(f);
}

/* Slices of a few keys pack the same samples. */
static void test_packing_in_small_slices(void **state)
{
    struct fixture *f = *state;
    open_store(f);
    run_until(f, T0, T0 + 12 * PERIOD, 5);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_packed > 0);
    check_all(f);
}

/* A restart reloads the open chunks and the next period to pack; appending goes on. */
static void test_packing_across_restart(void **state)
{
    struct fixture *f = *state;
    open_store(f);
    run_until(f, T0, T0 + 8 * PERIOD, 2000);
    apm_store_free(f->store);
    f->store = NULL;
    open_store(f);
    check_all(f);
    f->agent.instance++;
    f->seq = 0;
    run_until(f, T0 + 8 * PERIOD, T0 + 16 * PERIOD, 2000);
    check_all(f);
}

static int add_rollup(void *ctx, int64_t start, const struct apm_rollup *r)
{
    (void)start;
    struct apm_rollup *sum = ctx;
    sum->count += r->count;
    sum->sum += r->sum;
    return 0;
}

/* The 1-minute rollups, built while periods get packed, equal the raw samples. */
static void test_rollups_equal_packed_raw(void **state)
{
    struct fixture *f = *state;
    f->opt.rollup_1m_ms = 86400000;
    open_store(f);
    run_until(f, T0, T0 + 10 * PERIOD, 2000);
    pass(f, T0 + 86400000, 2000);
    struct apm_rollup sum = {0};
    assert_int_equal(apm_store_read_rollups(f->store, series_id(f, 0), APM_ROLLUP_1M, INT64_MIN,
                                            INT64_MAX, add_rollup, &sum),
                     0);
    int64_t want = 0;
    for (int j = 0; j < f->n[0]; j++)
        want += f->v[0][j];
    assert_int_equal(sum.count, (uint64_t)f->n[0]);
    assert_int_equal(sum.sum, want);
    check_all(f);
}

/*
 * Retention deletes packed pieces that end before the cut and nothing newer;
 * a series whose samples are all gone leaves, packed pieces included.
 */
static void test_retention_across_tiers(void **state)
{
    struct fixture *f = *state;
    f->opt.retention_ms = 5 * PERIOD;
    open_store(f);
    run_until(f, T0, T0 + 12 * PERIOD, 2000);
    int64_t now = T0 + 12 * PERIOD;
    pass(f, now, 2000);
    for (int i = 0; i < NSERIES; i++) {
        static struct got g;
        g.n = 0;
        assert_int_equal(
            apm_store_read_samples(f->store, series_id(f, i), INT64_MIN, INT64_MAX, collect, &g),
            0);
        assert_true(g.n > 0);
        /* What is left is a suffix of what was stored, holding every sample after the cut. */
        int skip = f->n[i] - g.n;
        assert_true(skip > 0);
        for (int k = 0; k < g.n; k++)
            assert_int_equal(g.t[k], f->t[i][skip + k]);
        assert_true(f->t[i][skip - 1] < now - 5 * PERIOD);
    }
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_packed > 0);
    assert_true(st.chunks_deleted > 0);
    /* Long after the last sample: every series leaves, and nothing is left. */
    pass(f, now + 20 * PERIOD, 2000);
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.series, 0);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.series_removed, NSERIES);
}

/* Remote-write's cursor keeps packed pieces past the retention until it passes them. */
static void test_unsent_packed_pieces_stay(void **state)
{
    struct fixture *f = *state;
    f->opt.retention_ms = 2 * PERIOD;
    f->opt.rw_hold = true;
    open_store(f);
    run_until(f, T0, T0 + 10 * PERIOD, 2000);
    uint64_t id = series_id(f, 0);
    int64_t sent = T0 + 6 * PERIOD;
    assert_int_equal(apm_store_rw_cursor_put(f->store, &id, &sent, 1), 0);
    pass(f, T0 + 10 * PERIOD, 2000);
    static struct got g;
    g.n = 0;
    assert_int_equal(apm_store_read_samples(f->store, id, INT64_MIN, INT64_MAX, collect, &g), 0);
    /* Everything after the cursor stays, though older than the retention. */
    assert_true(g.n > 0);
    assert_true(g.t[0] <= sent + 1000);
    assert_int_equal(g.t[g.n - 1], f->t[0][f->n[0] - 1]);
    check_range(f, 0, sent + 1, INT64_MAX);
}

/* A backup holds the packed periods: the restored store reads the same samples and goes on. */
static void test_backup_restores_packed(void **state)
{
    struct fixture *f = *state;
    open_store(f);
    run_until(f, T0, T0 + 10 * PERIOD, 2000);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_packed > 0);
    char copy[sizeof(f->dir)], err[256];
    assert_true(snprintf(copy, sizeof(copy), "%.40s/backup", f->dir) < (int)sizeof(copy));
    struct apm_store_backup_info info;
    assert_int_equal(apm_store_backup(f->store, copy, &info, err, sizeof(err)), 0);
    apm_store_free(f->store);
    f->store = NULL;
    /* The copy alone: a data directory of its own. */
    char orig[sizeof(f->dir)];
    memcpy(orig, f->dir, sizeof(orig));
    memcpy(f->dir, copy, sizeof(copy));
    open_store(f);
    check_all(f);
    f->agent.instance++;
    f->seq = 0;
    run_until(f, T0 + 10 * PERIOD, T0 + 14 * PERIOD, 2000);
    check_all(f);
    apm_store_free(f->store);
    f->store = NULL;
    memcpy(f->dir, orig, sizeof(orig));
}

/* One batch: a minute of process pid's rss at 1 s from t, values a function of time. */
static int put_minute(struct fixture *f, int32_t pid, int64_t t)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    struct apm_proc_desc p = {.pid = pid, .ppid = 1, .start_ms = 1, .name = "job.py"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    for (int i = 0; i < 60; i++)
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t + i * 1000,
                                              value(pid, (int)((t / 1000 + i) % 100000))),
                         0);
    struct apm_store_txn *t_ = NULL;
    int rc = apm_store_txn_begin(f->store, &t_);
    if (rc == 0)
        rc = apm_store_txn_put_batch(t_, &f->agent, b);
    if (rc >= 0)
        rc = apm_store_txn_commit(t_);
    else
        apm_store_txn_abort(t_);
    apm_batch_free(b);
    return rc;
}

static int count_one(void *ctx, int64_t t, int64_t v)
{
    (void)v;
    int64_t *c = ctx; /* count, first, last */
    if (c[0]++ == 0)
        c[1] = t;
    c[2] = t;
    return 0;
}

/* Count, first and last time of process pid's rss samples (put_minute's). */
static void count_pid(struct fixture *f, int32_t pid, int64_t c[3])
{
    char id[128];
    uint64_t sid = 0;
    apm_store_process_id(id, sizeof(id), "web-3", pid, 1);
    assert_int_equal(apm_store_find_series(f->store, NULL, id, APM_METRIC_RSS, NULL, &sid), 0);
    c[0] = c[1] = c[2] = 0;
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_one, c), 0);
}

/*
 * At the disk budget the oldest raw samples go first, from the packed
 * periods too, and the newest are always taken: what is left of a series
 * is one unbroken run that ends with its last sample.
 */
static void test_budget_prunes_packed_oldest_first(void **state)
{
    struct fixture *f = *state;
    f->opt.map_size = 256 << 10;
    f->opt.max_disk = 1 << 20;
    f->opt.pack_period_ms = 10 * 60000;
    f->opt.chunk_samples = 120;
    open_store(f);
    int64_t t = T0;
    for (int round = 0; round < 600; round++, t += 60000) {
        for (int32_t pid = 1; pid <= 10; pid++) {
            int rc;
            while ((rc = put_minute(f, pid, t)) == APM_E_FULL)
                assert_int_equal(apm_store_make_room(f->store, t), 1);
            assert_int_equal(rc, 0);
        }
        /* A pass as the writer runs it: a slice that meets a full map is tried again later. */
        int rc;
        while ((rc = apm_store_maintain(f->store, t + 60000, 2000, 1000000)) != 1) {
            if (rc == APM_E_FULL)
                assert_int_equal(apm_store_make_room(f->store, t + 60000), 1);
            else
                assert_int_equal(rc, 0);
        }
    }
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_packed > 0);
    assert_true(st.chunks_pruned > 0);
    assert_int_equal(st.full, 0);
    assert_true(st.bytes_on_disk <= 1 << 20);
    for (int32_t pid = 1; pid <= 10; pid++) {
        int64_t c[3];
        count_pid(f, pid, c);
        assert_int_equal(c[2], t - 60000 + 59000);
        assert_true(c[1] > T0);
        assert_int_equal((c[2] - c[1]) / 1000 + 1, c[0]);
    }
}

/*
 * Packing fills DB_PACKED's leaf pages: each series' run of a period goes
 * into the room left in the last page, cut where it would overflow it (an
 * earlier cut at a quarter of a page left them 90 % full here). Counted as
 * LMDB lays a leaf out: 2 bytes of index and an 8-byte node header, key
 * and value rounded up to even, after 16 bytes of page header.
 */
static void test_packed_pages_full(void **state)
{
    struct fixture *f = *state;
    f->opt.pack_period_ms = 10 * 60000;
    f->opt.chunk_samples = 120;
    open_store(f);
    int64_t t = T0;
    for (int round = 0; round < 70; round++, t += 60000) {
        for (int32_t pid = 1; pid <= 12; pid++)
            assert_int_equal(put_minute(f, pid, t), 0);
        pass(f, t + 60000, 2000);
    }
    pass(f, t + 86400000, 2000);
    pass(f, t + 86400000, 2000);
    for (int32_t pid = 1; pid <= 12; pid++) {
        int64_t c[3];
        count_pid(f, pid, c);
        assert_int_equal(c[0], 70 * 60);
        assert_int_equal(c[1], T0);
        assert_int_equal(c[2], t - 1000);
    }
    apm_store_free(f->store);
    f->store = NULL;

    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur = NULL;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_RDONLY, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "packed", 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k, v;
    size_t used = 0, pieces = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), pieces++)
        used += 2 + ((8 + k.mv_size + v.mv_size + 1) & ~(size_t)1);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    /* Every run of a period (12 series x 7) and some cuts; no overflow pages at this size. */
    assert_true(pieces >= 12 * 7);
    assert_int_equal(st.ms_overflow_pages, 0);
    assert_true(st.ms_leaf_pages >= 8);
    size_t room = (size_t)st.ms_leaf_pages * (st.ms_psize - 16);
    printf("packed: %zu pieces, %zu of %zu bytes of %zu leaf pages used\n", pieces, used, room,
           (size_t)st.ms_leaf_pages);
    /* All but the last page within a piece's minimum of full. */
    assert_true(used >= room - (size_t)(st.ms_psize - 16) - st.ms_leaf_pages * (64 + 34));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_packed_reads_equal_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packing_in_small_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packing_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollups_equal_packed_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_across_tiers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsent_packed_pieces_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_prunes_packed_oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_restores_packed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packed_pages_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
