/*
 * Store benchmark: bytes per stored sample and durable ingest rate of the
 * store alone (no network, no writer thread). Figures only, no pass/fail;
 * tests/bench/store_bytes.sh builds and runs it.
 *
 *   store_bytes bytes TRACE_DIR   leakbench traces (t_seconds,rss_bytes,...)
 *   store_bytes synth [N [S]]     synthetic 1 s samples, N a series (default 7200), S series
 *                                 (default 100), generated as they are stored (not held in memory)
 *   store_bytes rate              500 series x 1 sample a batch, 100 batches a commit
 *   store_bytes openmetrics bytes|synth ...   the same samples as OpenMetrics text (stdout)
 *
 * Samples go in the way the collector receives them: in time order, one
 * transaction per 10 s of data (an agent's batch interval) holding every
 * series' samples of those 10 s, so open chunks are rewritten and pages split
 * as in production, and a maintenance pass runs every 60 s of data time (the
 * collector's maintenance-period) with the data's clock as its "now", so
 * packed periods (docs/store.md) form as they would. Each data set is stored
 * twice: without rollups (the raw samples' whole file) and with them (their
 * extra). Bytes are reported as the data file's size, the used pages
 * ((last_pgno + 1) * page size), LMDB's free pages, and each database's
 * branch, leaf and overflow pages. APM_BENCH_PACK_MS sets the store's
 * pack_period_ms (0 = the default, -1 = no packing).
 */
#include <dirent.h>
#include <inttypes.h>
#include <lmdb.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "tests/bench/bench_traces.h"
#include "common/base/timeutil.h"
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
    snprintf(path, sizeof(path), "%s/apm.lock", dir);
    unlink(path);
    rmdir(dir);
}

/* Pages of each named database, read with LMDB directly after the store is closed. */
static void print_db_pages(const char *dir, uint64_t nsamples)
{
    static const char *names[] = {"meta",  "series_key", "series",  "chunks",    "packed",
                                  "hosts", "processes",  "rollups", "rollup_wm", "watermarks"};
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
    uint64_t payload = 0, rollup_payload = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        MDB_dbi dbi;
        MDB_stat st;
        if (mdb_dbi_open(txn, names[i], 0, &dbi) != 0 || mdb_stat(txn, dbi, &st) != 0)
            continue;
        uint64_t pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
        printf("  db %-11s %8zu entries %6" PRIu64 " pages (%zu branch %zu leaf %zu overflow)"
               " %8.3f bytes/sample\n",
               names[i], st.ms_entries, pages, st.ms_branch_pages, st.ms_leaf_pages,
               st.ms_overflow_pages, (double)(pages * st.ms_psize) / (double)nsamples);
        bool rollups = strcmp(names[i], "rollups") == 0;
        if (strcmp(names[i], "chunks") == 0 || strcmp(names[i], "packed") == 0 || rollups) {
            MDB_cursor *cur;
            MDB_val k, v;
            if (mdb_cursor_open(txn, dbi, &cur) == 0) {
                MDB_cursor_op op = MDB_FIRST;
                while (mdb_cursor_get(cur, &k, &v, op) == 0) {
                    *(rollups ? &rollup_payload : &payload) += v.mv_size;
                    op = MDB_NEXT;
                }
                mdb_cursor_close(cur);
            }
        }
    }
    MDB_stat main_st;
    MDB_envinfo info;
    if (mdb_env_stat(env, &main_st) == 0 && mdb_env_info(env, &info) == 0) {
        /* The free list: each value is a page number list, its length first. */
        MDB_cursor *cur;
        MDB_val k, v;
        uint64_t free_pages = 0;
        MDB_stat fst = {0};
        mdb_stat(txn, 0, &fst);
        if (mdb_cursor_open(txn, 0, &cur) == 0) {
            MDB_cursor_op op = MDB_FIRST;
            while (mdb_cursor_get(cur, &k, &v, op) == 0) {
                size_t n = 0;
                if (v.mv_size >= sizeof(n))
                    memcpy(&n, v.mv_data, sizeof(n));
                free_pages += n;
                op = MDB_NEXT;
            }
            mdb_cursor_close(cur);
        }
        printf("  file %" PRIu64 " pages: %" PRIu64 " free (%.3f bytes/sample), free list %zu"
               " pages, main db %zu pages, 2 meta pages\n",
               (uint64_t)info.me_last_pgno + 1, free_pages,
               (double)(free_pages * main_st.ms_psize) / (double)nsamples,
               fst.ms_branch_pages + fst.ms_leaf_pages + fst.ms_overflow_pages,
               main_st.ms_branch_pages + main_st.ms_leaf_pages + main_st.ms_overflow_pages);
        printf("  sealed chunk payload (chunks + packed values): %.3f bytes/sample\n",
               (double)payload / (double)nsamples);
        if (rollup_payload > 0)
            printf("  rollup payload (values): %.3f bytes/sample\n",
                   (double)rollup_payload / (double)nsamples);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static int count_read(void *ctx, int64_t t, int64_t v)
{
    (void)t;
    (void)v;
    (*(uint64_t *)ctx)++;
    return 0;
}

/* One maintenance pass over every series with the data's clock as now. */
static int maintain_pass(struct apm_store *store, int64_t now)
{
    int rc;
    while ((rc = apm_store_maintain(store, now, 2000, 10000)) == 0)
        ;
    return rc < 0 ? rc : 0;
}

static void print_file(const char *what, const char *dir, uint64_t used, uint64_t samples)
{
    char path[4200];
    struct stat fst = {0};
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    stat(path, &fst);
    printf("  %s: data.mdb %lld bytes %.3f bytes/sample (used pages %.3f bytes/sample)\n", what,
           (long long)fst.st_size, (double)fst.st_size / (double)samples,
           (double)used / (double)samples);
}

/*
 * Where the samples come from: series loaded in memory (the traces), or
 * synthetic ones generated as they are taken (the fleet), each with its next
 * sample at hand.
 */
struct source {
    size_t n;
    struct series_data *series; /* loaded, or NULL */
    size_t len;                 /* synthetic: samples a series */
    struct synth *gen;
    int64_t *t, *v; /* the next sample of each series */
    bool *has;
    size_t *pos; /* loaded: its index */
};

static void src_next(struct source *src, size_t i)
{
    if (src->series != NULL) {
        struct series_data *d = &src->series[i];
        src->has[i] = src->pos[i] < d->n;
        if (src->has[i]) {
            src->t[i] = d->t[src->pos[i]];
            src->v[i] = d->v[src->pos[i]++];
        }
    } else {
        src->has[i] = synth_next(&src->gen[i], &src->t[i], &src->v[i]) == 1;
    }
}

/* Every series back at its first sample. */
static void src_rewind(struct source *src)
{
    for (size_t i = 0; i < src->n; i++) {
        if (src->series != NULL)
            src->pos[i] = 0;
        else
            synth_init(&src->gen[i], (unsigned)i, src->len);
        src_next(src, i);
    }
}

static int src_open(struct source *src, struct series_data *series, size_t n, size_t len)
{
    *src = (struct source){.n = n, .series = series, .len = len};
    src->t = calloc(n, sizeof(*src->t));
    src->v = calloc(n, sizeof(*src->v));
    src->has = calloc(n, sizeof(*src->has));
    src->pos = calloc(n, sizeof(*src->pos));
    src->gen = series == NULL ? calloc(n, sizeof(*src->gen)) : NULL;
    if (!src->t || !src->v || !src->has || !src->pos || (series == NULL && !src->gen))
        return -1;
    src_rewind(src);
    return 0;
}

static void src_close(struct source *src)
{
    free(src->t);
    free(src->v);
    free(src->has);
    free(src->pos);
    free(src->gen);
}

static void src_name(const struct source *src, size_t i, char *buf, size_t size)
{
    if (src->series != NULL)
        snprintf(buf, size, "%s", src->series[i].name);
    else
        snprintf(buf, size, "synth-%zu", i);
}

/*
 * Stores every series in time order (one transaction per 10 s of data, a
 * maintenance pass per 60 s) and prints the figures.
 */
static int store_ticks(const char *label, struct source *src, bool rollups)
{
    size_t nseries = src->n;
    src_rewind(src);
    char dir[4096];
    make_tmpdir(dir, sizeof(dir));
    /* The collector's rollups (their retention long enough to keep everything here), or none. */
    int64_t keep = rollups ? 100LL * 365 * 86400000 : -1;
    const char *pack = getenv("APM_BENCH_PACK_MS");
    struct apm_store_options opt = {.dir = dir,
                                    .no_sync = true,
                                    .rollup_1m_ms = keep,
                                    .rollup_1h_ms = keep,
                                    .pack_period_ms = pack ? atoll(pack) : 0};
    struct apm_store *store = NULL;
    int rc = apm_store_open(&opt, &store);
    if (rc < 0) {
        fprintf(stderr, "open: %s\n", apm_strerror(rc));
        return 1;
    }
    struct apm_agent_ident agent = {.agent_id = "bench", .host = "bench", .instance = 1};
    int64_t first = INT64_MAX, last = INT64_MIN;
    for (size_t i = 0; i < nseries; i++) {
        if (src->has[i] && src->t[i] < first)
            first = src->t[i];
        if (src->series != NULL && src->series[i].n > 0 &&
            src->series[i].t[src->series[i].n - 1] > last)
            last = src->series[i].t[src->series[i].n - 1];
        if (src->series == NULL && src->len > 0 &&
            src->gen[i].t0 + (int64_t)(src->len - 1) * 1000 > last)
            last = src->gen[i].t0 + (int64_t)(src->len - 1) * 1000;
    }
    uint64_t total = 0, commits = 0, seq = 0;
    double maint_s = 0;
    uint64_t t0 = apm_mono_ns();
    for (int64_t end = first + 10000; rc >= 0 && end <= last + 10000; end += 10000) {
        struct apm_batch *b = apm_batch_new(++seq);
        for (size_t i = 0; i < nseries && rc >= 0; i++) {
            if (!src->has[i] || src->t[i] >= end)
                continue;
            char name[128];
            src_name(src, i, name, sizeof(name));
            struct apm_proc_desc p = {.pid = (int32_t)(i + 1), .start_ms = 1, .name = name};
            uint32_t idx;
            rc = apm_batch_add_proc(b, &p, &idx);
            while (rc == 0 && src->has[i] && src->t[i] < end) {
                rc = apm_batch_add_sample(b, idx, APM_METRIC_RSS, src->t[i], src->v[i]);
                src_next(src, i);
            }
        }
        struct apm_store_txn *txn = NULL;
        if (rc >= 0 && b->nsamples > 0) {
            rc = apm_store_txn_begin(store, &txn);
            if (rc >= 0)
                rc = apm_store_txn_put_batch(txn, &agent, b);
            if (rc >= 0)
                rc = apm_store_txn_commit(txn);
            else
                apm_store_txn_abort(txn);
            commits++;
        }
        total += b->nsamples;
        apm_batch_free(b);
        if (rc >= 0 && (end - first) % 60000 == 0) {
            uint64_t m0 = apm_mono_ns();
            rc = maintain_pass(store, end);
            maint_s += (double)(apm_mono_ns() - m0) / 1e9;
        }
    }
    double secs = (double)(apm_mono_ns() - t0) / 1e9;
    struct apm_store_stats st = {0}, rolled = {0};
    if (rc >= 0)
        rc = apm_store_stats(store, &st);
    if (rc >= 0)
        printf("%s%s: %zu series, %" PRIu64 " samples (%" PRIu64 " stored, %" PRIu64
               " dropped), %" PRIu64 " commits in %.2f s (maintenance %.2f s of it)\n",
               label, rollups ? ", with rollups" : "", nseries, total, st.samples, st.dropped,
               commits, secs, maint_s);
    if (rc >= 0)
        print_file("at the last sample", dir, st.bytes_on_disk, st.samples);
    /*
     * Then the writer's maintenance two days after the data: every closed period packed,
     * every rollup block written (a day block is written 2 h after its end).
     */
    uint64_t m0 = apm_mono_ns();
    uint64_t packed = st.chunks_packed;
    for (int pass = 0; rc >= 0 && pass < 1000; pass++) {
        rc = maintain_pass(store, last + 2 * 86400000LL);
        if (rc >= 0)
            rc = apm_store_stats(store, &rolled);
        if (rc < 0 || (rolled.chunks_packed == packed && pass > 1))
            break;
        packed = rolled.chunks_packed;
    }
    double msecs = (double)(apm_mono_ns() - m0) / 1e9;
    /* Reads: every sample of every series, then each series' last hour, 5 times each. */
    uint64_t nread = 0, r0 = apm_mono_ns();
    for (int rep = 0; rc >= 0 && rep < 5; rep++)
        for (uint64_t id = 1; rc >= 0 && id <= nseries; id++)
            rc = apm_store_read_samples(store, id, INT64_MIN, INT64_MAX, count_read, &nread);
    double read_all = (double)(apm_mono_ns() - r0) / 5e6;
    uint64_t nlast = 0;
    r0 = apm_mono_ns();
    for (int rep = 0; rc >= 0 && rep < 5; rep++)
        for (uint64_t id = 1; rc >= 0 && id <= nseries; id++)
            rc = apm_store_read_samples(store, id, last - 3600000, INT64_MAX, count_read, &nlast);
    double read_last = (double)(apm_mono_ns() - r0) / 5e6;
    apm_store_free(store);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", label, apm_strerror(rc));
        return 1;
    }
    print_file("two days later", dir, rolled.bytes_on_disk, st.samples);
    printf("  %" PRIu64 " chunks packed, %" PRIu64
           " rollup buckets (%.2f s): rollup database %" PRIu64 " bytes (%.3f bytes/sample)\n",
           rolled.chunks_packed, rolled.rollups_written, msecs, rolled.rollup_bytes,
           (double)rolled.rollup_bytes / (double)st.samples);
    printf("  reads: every sample of every series %.2f ms (%" PRIu64 " samples), the last hour of"
           " every series %.2f ms (%" PRIu64 " samples)\n",
           read_all, nread / 5, read_last, nlast / 5);
    print_db_pages(dir, st.samples);
    remove_dir(dir);
    return 0;
}

/* 100 agents x 500 series (100 processes x 5 metrics), one sample each per batch. */
/* Bytes this process caused to be written to storage so far (/proc/self/io), or 0. */
static uint64_t io_write_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    unsigned long long v = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "write_bytes: %llu", &v) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return v;
}

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
    uint64_t samples = 0, first_ns = 0, t0 = apm_mono_ns(), w0 = 0;
    uint64_t x = 88172645463325252ull;
    /* Samples of now, as agents send them (the store writes a series idle by its samples' time at
     * once). */
    int64_t base = apm_now_ms() / 1000 * 1000;
    for (unsigned r = 0; r < rounds && rc >= 0; r++) {
        for (int a = 0; a < AGENTS; a++) {
            batches[a]->seq = r + 1;
            for (uint32_t s = 0; s < batches[a]->nseries; s++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                batches[a]->series[s].t_ms[0] = base + (int64_t)r * 1000;
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
            w0 = io_write_bytes();
        } else {
            samples += (uint64_t)AGENTS * PROCS * METRICS;
        }
    }
    double secs = (double)(apm_mono_ns() - t0) / 1e9;
    uint64_t written = io_write_bytes() - w0;
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
    printf("rate: written to storage (/proc/self/io write_bytes) %.0f KiB a commit, %.1f bytes a "
           "sample\n",
           (double)written / 1024 / (rounds - 1), samples ? (double)written / (double)samples : 0);
    return 0;
}

/* The same samples as OpenMetrics text, for promtool tsdb create-blocks-from openmetrics. */
static int print_openmetrics(struct source *src)
{
    printf("# TYPE rss gauge\n");
    for (size_t i = 0; i < src->n; i++) {
        char name[128];
        src_name(src, i, name, sizeof(name));
        for (; src->has[i]; src_next(src, i))
            printf("rss{series=\"%s\"} %" PRId64 " %" PRId64 ".%03d\n", name, src->v[i],
                   src->t[i] / 1000, (int)(src->t[i] % 1000));
    }
    printf("# EOF\n");
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static struct series_data series[MAX_TRACES];
    bool om = argc >= 2 && strcmp(argv[1], "openmetrics") == 0;
    if (om) {
        argv++;
        argc--;
    }
    struct source src;
    int rc = -1;
    if (argc >= 3 && strcmp(argv[1], "bytes") == 0) {
        size_t n = load_dir(argv[2], series);
        if (n == 0) {
            fprintf(stderr, "no traces in %s\n", argv[2]);
            return 1;
        }
        if (src_open(&src, series, n, 0) == 0)
            rc = om ? print_openmetrics(&src)
                    : store_ticks("leakbench", &src, false) || store_ticks("leakbench", &src, true);
        src_close(&src);
        return rc == 0 ? 0 : 1;
    }
    if (argc >= 2 && strcmp(argv[1], "synth") == 0) {
        size_t len = argc >= 3 ? (size_t)atol(argv[2]) : 7200;
        size_t n = argc >= 4 ? (size_t)atol(argv[3]) : 100;
        char label[64];
        snprintf(label, sizeof(label), "synthetic 1 s, %zu series", n);
        if (src_open(&src, NULL, n, len) == 0)
            rc = om ? print_openmetrics(&src)
                    : store_ticks(label, &src, false) || store_ticks(label, &src, true);
        src_close(&src);
        return rc == 0 ? 0 : 1;
    }
    if (argc >= 2 && strcmp(argv[1], "rate") == 0)
        return bench_rate(argc >= 3 ? (unsigned)atoi(argv[2]) : 21);
    fprintf(stderr,
            "usage: store_bytes [openmetrics] bytes TRACE_DIR | [openmetrics] synth [N [S]] |"
            " rate [ROUNDS]\n");
    return 1;
}
