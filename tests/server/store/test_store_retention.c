/*
 * The store's maintenance (server/store/store_retention.c): deletion in
 * bounded slices, series, processes and hosts leaving the index, pages
 * reused, the map growing up to the budget and the oldest raw data going
 * first at it. Real LMDB files in /tmp.
 */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#define NOW 1800000000000LL /* a fixed "now" for the maintenance */

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_agent_ident agent;
    uint64_t seq;
};

static void open_store(struct fixture *f, const struct apm_store_options *base)
{
    struct apm_store_options opt = *base;
    opt.dir = f->dir;
    opt.no_sync = true;
    if (opt.chunk_samples == 0)
        opt.chunk_samples = 8;
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-retention-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    strcpy(f->agent.boot_id, "boot-a");
    strcpy(f->agent.version, "0.1.0");
    f->agent.instance = 77;
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

/* A value that does not compress much: about 20 bits of noise, in pages. */
static int64_t noise(int64_t t, int32_t pid)
{
    uint64_t x = (uint64_t)t * 0x9e3779b97f4a7c15ull ^ (uint64_t)pid * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    return (int64_t)(x % 1000003) * 4096;
}

/*
 * Stores n samples at 1 s from t0: rss of process pid (when pid != 0) and the
 * host's mem_available (when host_too), each value a function of t.
 */
static int put(struct fixture *f, int32_t pid, bool host_too, int64_t t0, int n)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    uint32_t idx = 0;
    if (pid != 0) {
        struct apm_proc_desc p = {.pid = pid,
                                  .ppid = 1,
                                  .start_ms = 1700000000000 + pid,
                                  .name = "job.py",
                                  .cmdline = "python3 job.py",
                                  .cgroup = "/"};
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    }
    for (int i = 0; i < n; i++) {
        int64_t t = t0 + i * 1000;
        if (pid != 0)
            assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t, noise(t, pid)), 0);
        if (host_too)
            assert_int_equal(
                apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t, t / 1000), 0);
    }
    struct apm_store_txn *t = NULL;
    int rc = apm_store_txn_begin(f->store, &t);
    if (rc == 0)
        rc = apm_store_txn_put_batch(t, &f->agent, b);
    if (rc >= 0)
        rc = apm_store_txn_commit(t);
    else
        apm_store_txn_abort(t);
    apm_batch_free(b);
    return rc;
}

/* Runs slices until the pass ends; returns how many it took. */
static int pass(struct fixture *f, int64_t now, unsigned max_keys)
{
    int slices = 0, rc;
    do {
        rc = apm_store_maintain(f->store, now, max_keys, 1000000);
        assert_true(rc >= 0);
        slices++;
        assert_true(slices < 100000);
    } while (rc == 0);
    return slices;
}

struct samples {
    int n;
    int64_t first, last;
};

static int count_sample(void *ctx, int64_t t, int64_t v)
{
    (void)v;
    struct samples *s = ctx;
    if (s->n++ == 0)
        s->first = t;
    s->last = t;
    return 0;
}

static int count_series(void *ctx, const struct apm_series_info *s)
{
    (void)s;
    (*(int *)ctx)++;
    return 0;
}

static int count_process(void *ctx, const struct apm_process_info *p)
{
    (void)p;
    (*(int *)ctx)++;
    return 0;
}

static int count_host(void *ctx, const struct apm_host_info *h)
{
    (void)h;
    (*(int *)ctx)++;
    return 0;
}

static uint64_t find(struct fixture *f, int32_t pid)
{
    char id[128];
    uint64_t sid = 0;
    if (pid == 0) {
        assert_int_equal(
            apm_store_find_series(f->store, "web-3", "", APM_METRIC_MEM_AVAILABLE, NULL, &sid), 0);
        return sid;
    }
    apm_store_process_id(id, sizeof(id), "web-3", pid, 1700000000000 + pid);
    assert_int_equal(apm_store_find_series(f->store, NULL, id, APM_METRIC_RSS, NULL, &sid), 0);
    return sid;
}

/*
 * Ten minutes of one series at 1 s, retention 60 s: slices of at most a few
 * keys each delete every chunk that ends before now - 60 s and nothing newer.
 */
static void test_deletion_in_bounded_slices(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {.retention_ms = 60000};
    open_store(f, &o);
    for (int i = 0; i < 10; i++)
        assert_int_equal(put(f, 0, true, NOW - 600000 + i * 60000, 60), 0);
    uint64_t sid = find(f, 0);
    struct apm_store_stats before, after;
    assert_int_equal(apm_store_stats(f->store, &before), 0);
    assert_int_equal(before.chunks, 75); /* 600 samples in chunks of 8 */
    /* 4 keys per slice: ~67 chunks to delete take many slices, each small. */
    int slices = pass(f, NOW, 4);
    assert_true(slices >= 67 / 4);
    assert_int_equal(apm_store_stats(f->store, &after), 0);
    assert_true(after.chunks_deleted >= 66 && after.chunks_deleted <= 68);
    assert_int_equal(after.chunks, before.chunks - after.chunks_deleted);
    struct samples s = {0};
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_sample, &s),
                     0);
    /* What is left starts less than one chunk (8 s) before the cut, and reaches the end. */
    assert_true(s.first >= NOW - 60000 - 8000 && s.first <= NOW - 60000);
    assert_int_equal(s.last, NOW - 1000);
    assert_int_equal(after.series_removed, 0);
    assert_true(after.slices >= (uint64_t)slices);
    assert_int_equal(after.passes, 1);
    /* A second pass finds nothing more to delete. */
    pass(f, NOW, 4);
    struct apm_store_stats again;
    assert_int_equal(apm_store_stats(f->store, &again), 0);
    assert_int_equal(again.chunks_deleted, after.chunks_deleted);
}

/*
 * A process that ended long ago leaves with its series; its host stays while
 * another series of the host has data; then the host goes too.
 */
static void test_empty_series_process_host_leave(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {.retention_ms = 60000};
    open_store(f, &o);
    assert_int_equal(put(f, 111, false, NOW - 300000, 50), 0); /* ended 250 s ago */
    assert_int_equal(put(f, 222, true, NOW - 30000, 30), 0);   /* alive */
    int n = 0;
    assert_int_equal(apm_store_list_series(f->store, NULL, count_series, &n), 0);
    assert_int_equal(n, 3);
    pass(f, NOW, 1000);
    n = 0;
    assert_int_equal(apm_store_list_series(f->store, NULL, count_series, &n), 0);
    assert_int_equal(n, 2);
    char id[128];
    uint64_t sid;
    apm_store_process_id(id, sizeof(id), "web-3", 111, 1700000000111);
    assert_int_equal(apm_store_find_series(f->store, NULL, id, APM_METRIC_RSS, NULL, &sid),
                     APM_E_NOTFOUND);
    n = 0;
    assert_int_equal(apm_store_list_processes(f->store, NULL, count_process, &n), 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(apm_store_list_hosts(f->store, count_host, &n), 0);
    assert_int_equal(n, 1);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.series_removed, 1);
    assert_int_equal(st.processes_removed, 1);
    assert_int_equal(st.hosts_removed, 0);
    /* Ten minutes later everything is past the retention: the host leaves too. */
    uint64_t old222 = find(f, 222);
    int64_t until = NOW; /* a remote-write pending record of the series leaves with it */
    assert_int_equal(apm_store_rw_pending_put(f->store, NULL, NULL, 0, &old222, &until, 1), 0);
    pass(f, NOW + 600000, 1000);
    uint64_t *pids = NULL;
    int64_t *pts = NULL;
    size_t npending = 9;
    assert_int_equal(apm_store_rw_pending_get(f->store, &pids, &pts, &npending), 0);
    assert_int_equal(npending, 0);
    n = 0;
    assert_int_equal(apm_store_list_hosts(f->store, count_host, &n), 0);
    assert_int_equal(n, 0);
    n = 0;
    assert_int_equal(apm_store_list_series(f->store, NULL, count_series, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.series_removed, 3);
    assert_int_equal(st.hosts_removed, 1);
    /* The writer's index forgot them: new data makes new series, with new ids. */
    assert_int_equal(put(f, 222, true, NOW + 600000, 3), 0);
    assert_true(find(f, 222) > old222);
}

/* A series with rollups left keeps its record when its raw data is gone. */
static void test_series_stays_while_rollups_remain(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {.retention_ms = 60000, .rollup_1m_ms = 3600000};
    open_store(f, &o);
    assert_int_equal(put(f, 111, false, NOW - 600000, 300), 0);
    uint64_t sid = find(f, 111);
    pass(f, NOW, 1000);
    struct samples s = {0};
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_sample, &s),
                     0);
    assert_int_equal(s.n, 0);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.heads_dropped, 1);
    assert_int_equal(st.series_removed, 0);
    /* An hour later the rollups are past theirs: the series leaves. */
    pass(f, NOW + 3600000, 1000);
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.series_removed, 1);
    assert_int_equal(apm_store_find_series(f->store, NULL, "web-3:111:1700000000111",
                                           APM_METRIC_RSS, NULL, &sid),
                     APM_E_NOTFOUND);
}

/* With retention, a steady stream keeps the file at the same size: pages are reused. */
static void test_file_stays_flat(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {.retention_ms = 120000};
    open_store(f, &o);
    uint64_t sizes[12];
    int64_t t = NOW;
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < 6; i++, t += 10000)
            for (int32_t pid = 1; pid <= 20; pid++)
                assert_int_equal(put(f, pid, pid == 1, t, 10), 0);
        pass(f, t, 2000);
        struct apm_store_stats st;
        assert_int_equal(apm_store_stats(f->store, &st), 0);
        sizes[round] = st.bytes_on_disk;
    }
    /* After the first retention span (2 rounds), growth stops within 10 %. */
    assert_true(sizes[11] <= sizes[4] + sizes[4] / 10);
}

/*
 * A 64 KiB map with a 1 MiB budget: a full map doubles (4 times), then the
 * oldest raw chunks go, counted, and the newest data is always taken.
 */
static void test_map_grows_then_oldest_go(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {.map_size = 256 << 10, .max_disk = 1 << 20, .chunk_samples = 120};
    open_store(f, &o);
    int64_t t = NOW;
    int fulls = 0;
    for (int round = 0; round < 600; round++, t += 60000) {
        for (int32_t pid = 1; pid <= 10; pid++) {
            int rc;
            while ((rc = put(f, pid, pid == 1, t, 60)) == APM_E_FULL) {
                fulls++;
                assert_int_equal(apm_store_make_room(f->store, t), 1);
            }
            /* The batch is acked: its samples are there. */
            assert_int_equal(rc, 0);
        }
    }
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(fulls > 0);
    assert_int_equal(st.map_grows, 2);
    assert_int_equal(st.map_size, 1 << 20);
    assert_true(st.chunks_pruned > 0);
    assert_true(st.bytes_on_disk <= 1 << 20);
    assert_int_equal(st.full, 0);
    assert_null(apm_store_full_reason(f->store));
    /* The newest samples are all there; the oldest went first. */
    struct samples s = {0};
    uint64_t sid = find(f, 0);
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_sample, &s),
                     0);
    assert_int_equal(s.last, t - 60000 + 59000);
    assert_true(s.first > NOW);
    assert_int_equal((s.last - s.first) / 1000 + 1, s.n);
}

/*
 * Remote-write on (rw_hold): raw samples a series' cursor has not passed stay
 * past the retention; once the cursor moves, what it passed goes.
 */
static void test_unsent_samples_stay(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {.retention_ms = 60000, .rw_hold = true};
    open_store(f, &o);
    assert_int_equal(put(f, 7, false, NOW - 600000, 600), 0);
    uint64_t sid = find(f, 7);
    pass(f, NOW, 1000);
    struct samples s = {0};
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_sample, &s),
                     0);
    assert_int_equal(s.n, 600); /* nothing sent: nothing deleted */
    int64_t cursor = NOW - 300000;
    assert_int_equal(apm_store_rw_cursor_put(f->store, &sid, &cursor, 1), 0);
    pass(f, NOW, 1000);
    s = (struct samples){0};
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_sample, &s),
                     0);
    /* Every sample after the cursor is there; chunks wholly before it are gone. */
    assert_true(s.first <= cursor + 1000);
    assert_true(s.first > cursor - 8000);
    assert_int_equal(s.last, NOW - 1000);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_deleted > 0);
    assert_int_equal(st.rw_unsent_dropped, 0);
}

/* At the disk budget unsent raw samples go too, and each one is counted. */
static void test_budget_drops_unsent_counted(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options o = {
        .map_size = 256 << 10, .max_disk = 1 << 20, .chunk_samples = 120, .rw_hold = true};
    open_store(f, &o);
    int64_t t = NOW;
    for (int round = 0; round < 600; round++, t += 60000) {
        for (int32_t pid = 1; pid <= 10; pid++) {
            int rc;
            while ((rc = put(f, pid, false, t, 60)) == APM_E_FULL)
                assert_int_equal(apm_store_make_room(f->store, t), 1);
            assert_int_equal(rc, 0);
        }
    }
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_true(st.chunks_pruned > 0);
    /* No cursor anywhere: every sample of every deleted chunk was unsent. */
    assert_int_equal(st.rw_unsent_dropped, (st.chunks_pruned + st.chunks_deleted) * 120);
}

/*
 * A full disk (here: writes past RLIMIT_FSIZE, as the fault matrix's full
 * tmpfs fails them) while the map and the budget have room. The writer asks
 * the store to make room after every failed round, for as long as the disk
 * stays full; each call used to grow the map and move the disk-budget
 * cut-off an eighth closer to now, so that the pass after the disk came back
 * emptied the open chunk of a live series: acked samples gone, no chunk
 * counted as pruned. A full disk is refused, retryably, and nothing goes.
 */
static void test_full_disk_deletes_nothing(void **state)
{
    struct fixture *f = *state;
    /* The collector's defaults: retention 15 d, rollups 90 d and 1 y. */
    struct apm_store_options o = {.map_size = 1 << 20,
                                  .max_disk = 256 << 20,
                                  .chunk_samples = 120,
                                  .retention_ms = 15 * 86400000LL,
                                  .rollup_1m_ms = 90 * 86400000LL,
                                  .rollup_1h_ms = 365 * 86400000LL};
    open_store(f, &o);
    /* 40 samples of 64 series, all in their open chunks (120 per chunk). */
    for (int32_t pid = 1; pid <= 64; pid++)
        assert_int_equal(put(f, pid, false, NOW, 40), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    struct stat fst;
    assert_int_equal(stat(path, &fst), 0);
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)fst.st_size; /* the file may not grow: a full disk */
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
    /* Batches go on while LMDB's free pages last (each one acked), until one is refused. */
    int taken[65] = {0}, put_rc = 0, pid = 0;
    int64_t t = NOW + 40000;
    for (int i = 0; i < 100000 && put_rc == 0; i++) {
        pid = 1 + i % 64;
        t = NOW + (40 + i / 64) * 1000;
        put_rc = put(f, pid, false, t, 1);
        taken[pid] += put_rc == 0;
    }
    /* A few seconds of a full disk at the writer's pace: every round asks for room, in vain. */
    int room[2] = {0, 0}, refused = 0;
    for (int i = 0; i < 200; i++) {
        room[apm_store_make_room(f->store, t + 20000) == 1]++;
        refused += put(f, pid, false, t, 1) == APM_E_FULL;
    }
    struct apm_store_stats full;
    assert_int_equal(apm_store_stats(f->store, &full), 0);
    const char *reason = apm_store_full_reason(f->store);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);
    /*
     * Space is back between a refused round and the writer's call for room:
     * that call, then the refused batch again, then a maintenance pass. None
     * of them may take anything acked.
     */
    room[apm_store_make_room(f->store, t + 20000) == 1]++;
    taken[pid] += put(f, pid, false, t, 1) == 0;
    pass(f, t + 20000, 2000);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    for (int32_t p = 1; p <= 64; p++) {
        struct samples got = {0};
        assert_int_equal(
            apm_store_read_samples(f->store, find(f, p), INT64_MIN, INT64_MAX, count_sample, &got),
            0);
        assert_int_equal(got.n, 40 + taken[p]);
        assert_int_equal(got.first, NOW);
    }
    assert_int_equal(st.chunks_pruned + st.chunks_deleted + st.heads_dropped, 0);
    /* While full: a retryable refusal that says it is the disk, and the map left alone. */
    assert_int_equal(put_rc, APM_E_FULL);
    assert_int_equal(refused, 200);
    assert_int_equal(room[1], 0);
    assert_int_equal(full.map_grows, 0);
    assert_int_equal(full.full, 1);
    assert_non_null(reason);
    assert_non_null(strstr(reason, "disk"));
    assert_int_equal(st.full, 0);
    assert_null(apm_store_full_reason(f->store));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deletion_in_bounded_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_series_process_host_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_series_stays_while_rollups_remain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_stays_flat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows_then_oldest_go, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsent_samples_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_drops_unsent_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_deletes_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
