/*
 * Cost of the collector's live analysis when new data arrive: 10,000
 * processes (rss series) on 20 hosts, each round one batch per host with one
 * new sample per process, committed to a real store (untimed, as the writer
 * does) and then fed to the analyzer and flushed (timed: what the analysis
 * thread does per sampling interval). Every series has a history long enough
 * to be judged. The agents sample in step, so without the analyzer's
 * per-series phase every series would close a bucket (and be judged) on the
 * same rounds; the worst round shows how well the phases spread them.
 *
 * run: BUILD/tests/analyzer_speed [ROUNDS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/analysis/analyzer.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#define HOSTS 20
#define PER_HOST 500
#define WARM_ROUNDS 120
#define MIB (1024.0 * 1024.0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Every seventh process leaks; the others wander around their level. */
static double value(uint64_t *seed, unsigned p, unsigned round)
{
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    double noise = ((double)(*seed >> 40) / 16777216.0 - 0.5) * 4 * MIB;
    double base = 100 * MIB + (double)(p % 50) * 4 * MIB;
    return base + noise + (p % 7 == 0 ? (double)round * 0.5 * MIB : 0);
}

static struct apm_batch *host_batch(unsigned h, unsigned round, uint64_t *seed)
{
    struct apm_batch *b = apm_batch_new(round + 1);
    int64_t t = 1700000000000LL + (int64_t)round * 10000;
    for (unsigned i = 0; b != NULL && i < PER_HOST; i++) {
        unsigned p = h * PER_HOST + i;
        char name[32];
        snprintf(name, sizeof(name), "svc-%u", p % 40);
        struct apm_proc_desc d = {
            .pid = (int32_t)(1000 + i), .start_ms = 1690000000000LL, .name = name};
        uint32_t idx;
        if (apm_batch_append_proc(b, &d, &idx) < 0 ||
            apm_batch_add_sample(b, idx, APM_METRIC_RSS, t, (int64_t)value(seed, p, round)) < 0) {
            apm_batch_free(b);
            return NULL;
        }
    }
    if (b != NULL &&
        apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_TOTAL, t, 64LL << 30) < 0) {
        apm_batch_free(b);
        return NULL;
    }
    return b;
}

int main(int argc, char **argv)
{
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 100;
    char dir[] = "/tmp/apm-bench-analyzer-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    struct apm_store_options so = {.dir = dir, .no_sync = true};
    struct apm_store *store = NULL;
    struct apm_analyzer *an = NULL;
    struct apm_analyzer_options o;
    apm_analyzer_options_init(&o);
    o.analysis.bucket_samples = 2; /* the collector's defaults */
    o.analysis.min_buckets = 32;
    if (apm_store_open(&so, &store) != 0 || apm_analyzer_new(store, &o, NULL, NULL, &an) != 0)
        return 1;
    struct apm_agent_ident agent[HOSTS];
    memset(agent, 0, sizeof(agent));
    for (unsigned h = 0; h < HOSTS; h++) {
        snprintf(agent[h].agent_id, sizeof(agent[h].agent_id), "agent-%u", h);
        snprintf(agent[h].host, sizeof(agent[h].host), "host-%u", h);
        agent[h].instance = 1;
    }
    uint64_t seed = 42;
    double total = 0, worst = 0, flush_total = 0;
    for (unsigned r = 0; r < WARM_ROUNDS + rounds; r++) {
        struct apm_batch *b[HOSTS];
        struct apm_store_txn *txn = NULL;
        if (apm_store_txn_begin(store, &txn) != 0)
            return 1;
        for (unsigned h = 0; h < HOSTS; h++) {
            b[h] = host_batch(h, r, &seed);
            if (b[h] == NULL || apm_store_txn_put_batch(txn, &agent[h], b[h]) != 0)
                return 1;
        }
        if (apm_store_txn_commit(txn) != 0)
            return 1;
        double t0 = now_s();
        for (unsigned h = 0; h < HOSTS; h++)
            if (apm_analyzer_feed(an, agent[h].host, b[h]) != 0)
                return 1;
        double t1 = now_s();
        if (apm_analyzer_flush(an) < 0)
            return 1;
        double t2 = now_s();
        for (unsigned h = 0; h < HOSTS; h++)
            apm_batch_free(b[h]);
        if (r < WARM_ROUNDS)
            continue;
        total += t2 - t0;
        flush_total += t2 - t1;
        if (getenv("BENCH_VERBOSE"))
            printf("round %u: feed %.1f ms flush %.1f ms\n", r, 1e3 * (t1 - t0), 1e3 * (t2 - t1));
        if (t2 - t0 > worst)
            worst = t2 - t0;
    }
    struct apm_analyzer_stats st;
    apm_analyzer_get_stats(an, &st);
    printf("analyzer: %llu series, %u rounds of one new sample each: mean %.1f ms per round "
           "(flush %.1f ms), worst %.1f ms; %llu verdicts stored\n",
           (unsigned long long)st.series, rounds, 1e3 * total / rounds, 1e3 * flush_total / rounds,
           1e3 * worst, (unsigned long long)st.verdicts_stored);
    apm_analyzer_free(an);
    apm_store_free(store);
    apm_test_rmtree(dir);
    return 0;
}
