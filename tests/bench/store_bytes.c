/*
 * Store benchmark: bytes per stored sample and durable ingest rate of the
 * store alone (no network, no writer thread). Figures only, no pass/fail;
 * tests/bench/store_bytes.sh builds and runs it.
 *
 *   store_bytes bytes TRACE_DIR   leakbench traces (t_seconds,rss_bytes,...)
 *   store_bytes synth             synthetic 1 s samples
 *   store_bytes rate              500 series x 1 sample a batch, 100 batches a commit
 *
 * Samples go in the way the collector receives them: one tick of every series
 * per transaction, so open chunks are rewritten and pages split as in
 * production. Bytes are reported three ways: the data file's size, the used
 * pages ((last_pgno + 1) * page size) and the pages of each database.
 */
#include <dirent.h>
#include <inttypes.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "tests/bench/bench_traces.h"
#include "common/timeutil.h"
#include "server/store/store.h"

static void make_tmpdir(char *dir, size_t size)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, size, "%s/apm-bench-store-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
}

static void remove_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

/* Pages of each named database, read with LMDB directly after the store is closed. */
static void print_db_pages(const char *dir, uint64_t nsamples)
{
    static const char *names[] = {"meta",      "series_key", "series",  "chunks",   "hosts",
                                  "processes", "watermarks", "rollups", "rollup_wm"};
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    if (mdb_env_create(&env) != 0)
        return;
    mdb_env_set_maxdbs(env, 16);
    if (mdb_env_open(env, dir, MDB_RDONLY, 0) != 0 ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0) {
        mdb_env_close(env);
        return;
    }
    uint64_t payload = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        MDB_dbi dbi;
        MDB_stat st;
        if (mdb_dbi_open(txn, names[i], 0, &dbi) != 0 || mdb_stat(txn, dbi, &st) != 0)
            continue;
        uint64_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
        printf("  db %-11s %8zu entries %6" PRIu64 " pages %8.3f bytes/sample\n", names[i],
               st.ms_entries, pages, (double)(pages * st.ms_psize) / (double)nsamples);
        if (strcmp(names[i], "chunks") == 0) {
            MDB_cursor *cur;
            MDB_val k, v;
            if (mdb_cursor_open(txn, dbi, &cur) == 0) {
                while (mdb_cursor_get(cur, &k, &v, payload ? MDB_NEXT : MDB_FIRST) == 0)
                    payload += v.mv_size ? v.mv_size : 1;
                mdb_cursor_close(cur);
            }
        }
    }
    MDB_stat main_st;
    if (mdb_env_stat(env, &main_st) == 0)
        printf("  sealed chunk payload: %.3f bytes/sample\n", (double)payload / (double)nsamples);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* Stores every series tick by tick (one transaction a tick) and prints the figures. */
static int store_ticks(const char *label, struct series_data *series, size_t nseries)
{
    char dir[4096];
    make_tmpdir(dir, sizeof(dir));
    /* The collector's rollups (their retention long enough to keep everything here). */
    struct apm_store_options opt = {.dir = dir,
                                    .no_sync = true,
                                    .rollup_1m_ms = 100LL * 365 * 86400000,
                                    .rollup_1h_ms = 100LL * 365 * 86400000};
    struct apm_store *store = NULL;
    int rc = apm_store_open(&opt, &store);
    if (rc < 0) {
        fprintf(stderr, "open: %s\n", apm_strerror(rc));
        return 1;
    }
    struct apm_agent_ident agent = {.agent_id = "bench", .host = "bench", .instance = 1};
    size_t longest = 0;
    for (size_t i = 0; i < nseries; i++)
        longest = series[i].n > longest ? series[i].n : longest;
    uint64_t total = 0;
    uint64_t t0 = apm_mono_ns();
    for (size_t tick = 0; tick < longest && rc >= 0; tick++) {
        struct apm_batch *b = apm_batch_new(tick + 1);
        for (size_t i = 0; i < nseries && rc >= 0; i++) {
            if (tick >= series[i].n)
                continue;
            struct apm_proc_desc p = {
                .pid = (int32_t)(i + 1), .start_ms = 1, .name = series[i].name};
            uint32_t idx;
            rc = apm_batch_add_proc(b, &p, &idx);
            if (rc == 0)
                rc = apm_batch_add_sample(b, idx, APM_METRIC_RSS, series[i].t[tick],
                                          series[i].v[tick]);
        }
        struct apm_store_txn *txn = NULL;
        if (rc >= 0)
            rc = apm_store_txn_begin(store, &txn);
        if (rc >= 0)
            rc = apm_store_txn_put_batch(txn, &agent, b);
        if (rc >= 0)
            rc = apm_store_txn_commit(txn);
        else
            apm_store_txn_abort(txn);
        total += b->nsamples;
        apm_batch_free(b);
    }
    double secs = (double)(apm_mono_ns() - t0) / 1e9;
    struct apm_store_stats st = {0}, rolled = {0};
    if (rc >= 0)
        rc = apm_store_stats(store, &st);
    /* Then the writer's maintenance, a day after the data: every series rolled up. */
    int64_t last = 0;
    for (size_t i = 0; i < nseries; i++)
        if (series[i].n > 0 && series[i].t[series[i].n - 1] > last)
            last = series[i].t[series[i].n - 1];
    uint64_t m0 = apm_mono_ns();
    while (rc >= 0 && (rc = apm_store_maintain(store, last + 86400000, 2000, 10000)) == 0)
        ;
    double msecs = (double)(apm_mono_ns() - m0) / 1e9;
    if (rc >= 0)
        rc = apm_store_stats(store, &rolled);
    apm_store_free(store);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", label, apm_strerror(rc));
        return 1;
    }
    char path[4200];
    struct stat fst = {0};
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    stat(path, &fst);
    printf("%s: %zu series, %" PRIu64 " samples (%" PRIu64 " stored, %" PRIu64
           " dropped), %zu commits in %.2f s\n",
           label, nseries, total, st.samples, st.dropped, longest, secs);
    printf("  used pages:       %10" PRIu64 " bytes  %.3f bytes/sample\n", st.bytes_on_disk,
           (double)st.bytes_on_disk / (double)st.samples);
    printf("  data.mdb size:    %10lld bytes  %.3f bytes/sample\n", (long long)fst.st_size,
           (double)fst.st_size / (double)st.samples);
    printf("  data.mdb blocks:  %10lld bytes  %.3f bytes/sample\n", (long long)fst.st_blocks * 512,
           (double)fst.st_blocks * 512.0 / (double)st.samples);
    printf("  after rollups (%" PRIu64 " buckets, %.2f s): used pages %" PRIu64
           " bytes (%.3f bytes/sample), of which the rollup database %" PRIu64
           " bytes (%.3f bytes/sample)\n",
           rolled.rollups_written, msecs, rolled.bytes_on_disk,
           (double)rolled.bytes_on_disk / (double)st.samples, rolled.rollup_bytes,
           (double)rolled.rollup_bytes / (double)st.samples);
    print_db_pages(dir, st.samples);
    remove_dir(dir);
    return 0;
}

/* 100 agents x 500 series (100 processes x 5 metrics), one sample each per batch. */
static int bench_rate(unsigned rounds)
{
    enum { AGENTS = 100, PROCS = 100, METRICS = 5 };
    static const enum apm_metric metrics[METRICS] = {APM_METRIC_RSS, APM_METRIC_PSS, APM_METRIC_USS,
                                                     APM_METRIC_SWAP, APM_METRIC_CGROUP_USAGE};
    char dir[4096];
    make_tmpdir(dir, sizeof(dir));
    struct apm_store_options opt = {.dir = dir};
    struct apm_store *store = NULL;
    struct apm_batch *batches[AGENTS];
    struct apm_agent_ident agents[AGENTS];
    int rc = apm_store_open(&opt, &store);
    for (int a = 0; a < AGENTS && rc == 0; a++) {
        memset(&agents[a], 0, sizeof(agents[a]));
        snprintf(agents[a].agent_id, sizeof(agents[a].agent_id), "agent-%d", a);
        snprintf(agents[a].host, sizeof(agents[a].host), "host-%d", a);
        agents[a].instance = 1;
        batches[a] = apm_batch_new(0);
        for (int p = 0; p < PROCS && rc == 0; p++) {
            struct apm_proc_desc d = {.pid = 1000 + p,
                                      .ppid = 1,
                                      .start_ms = 1700000000000,
                                      .name = "worker.py",
                                      .cmdline = "python3 worker.py",
                                      .cgroup = "/system.slice/app.service"};
            uint32_t idx;
            rc = apm_batch_add_proc(batches[a], &d, &idx);
            for (int m = 0; m < METRICS && rc == 0; m++)
                rc = apm_batch_add_sample(batches[a], idx, metrics[m], 0, 0);
        }
    }
    if (rc < 0) {
        fprintf(stderr, "rate: %s\n", apm_strerror(rc));
        return 1;
    }
    uint64_t samples = 0, first_ns = 0, t0 = apm_mono_ns();
    uint64_t x = 88172645463325252ull;
    for (unsigned r = 0; r < rounds && rc >= 0; r++) {
        for (int a = 0; a < AGENTS; a++) {
            batches[a]->seq = r + 1;
            for (uint32_t s = 0; s < batches[a]->nseries; s++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                batches[a]->series[s].t_ms[0] = 1700000000000 + (int64_t)r * 1000;
                batches[a]->series[s].value[0] = (int64_t)(200 << 20) + (int64_t)(x % 64) * 4096;
            }
        }
        uint64_t c0 = apm_mono_ns();
        struct apm_store_txn *txn = NULL;
        rc = apm_store_txn_begin(store, &txn);
        for (int a = 0; a < AGENTS && rc >= 0; a++)
            rc = apm_store_txn_put_batch(txn, &agents[a], batches[a]);
        if (rc >= 0)
            rc = apm_store_txn_commit(txn);
        else
            apm_store_txn_abort(txn);
        if (r == 0) {
            first_ns = apm_mono_ns() - c0;
            t0 = apm_mono_ns();
        } else {
            samples += (uint64_t)AGENTS * PROCS * METRICS;
        }
    }
    double secs = (double)(apm_mono_ns() - t0) / 1e9;
    for (int a = 0; a < AGENTS; a++)
        apm_batch_free(batches[a]);
    apm_store_free(store);
    remove_dir(dir);
    if (rc < 0) {
        fprintf(stderr, "rate: %s\n", apm_strerror(rc));
        return 1;
    }
    printf("rate: first commit (creates 50000 series) %.1f ms\n", (double)first_ns / 1e6);
    printf("rate: %u durable commits of 100 batches x 500 series x 1 sample: %.0f samples/s"
           " (%.2f ms a commit)\n",
           rounds - 1, (double)samples / secs, secs * 1e3 / (rounds - 1));
    return 0;
}

int main(int argc, char **argv)
{
    static struct series_data series[MAX_TRACES];
    if (argc >= 3 && strcmp(argv[1], "bytes") == 0) {
        size_t n = load_dir(argv[2], series);
        if (n == 0) {
            fprintf(stderr, "no traces in %s\n", argv[2]);
            return 1;
        }
        return store_ticks("leakbench", series, n);
    }
    if (argc >= 2 && strcmp(argv[1], "synth") == 0) {
        size_t n = 100;
        for (size_t i = 0; i < n; i++)
            make_synthetic(&series[i], (unsigned)i, 7200);
        return store_ticks("synthetic 1 s", series, n);
    }
    if (argc >= 2 && strcmp(argv[1], "rate") == 0)
        return bench_rate(argc >= 3 ? (unsigned)atoi(argv[2]) : 21);
    fprintf(stderr, "usage: store_bytes bytes TRACE_DIR | synth | rate [ROUNDS]\n");
    return 1;
}
