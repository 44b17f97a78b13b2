/*
 * Fills a data directory with a store of a given size for the backup
 * benchmark (tests/bench/backup_stall.sh): HOSTS agents x PROCS processes,
 * one rss series each, sampled at 1 s and ending now, with page-sized noise
 * (about 4 bytes a sample stored), written through the store's own API
 * without fsync, TICKS ticks of every series per transaction. Prints the
 * file size. Figures only.
 *
 *   store_fill DIR MEGABYTES [HOSTS [PROCS]]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/store/store.h"

#define TICKS 20

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int put_tick(struct apm_store_txn *txn, int host, int procs, uint64_t seq, int64_t t,
                    uint64_t *rng)
{
    struct apm_agent_ident a = {.instance = 1};
    snprintf(a.agent_id, sizeof(a.agent_id), "fill-agent-%d", host);
    snprintf(a.host, sizeof(a.host), "fill-host-%d", host);
    struct apm_batch *b = apm_batch_new(seq);
    int rc = b ? 0 : -1;
    for (int p = 0; rc == 0 && p < procs; p++) {
        struct apm_proc_desc d = {.pid = 1000 + p,
                                  .ppid = 1,
                                  .start_ms = 1700000000000,
                                  .name = "worker.py",
                                  .cmdline = "python3 worker.py"};
        uint32_t idx = 0;
        rc = apm_batch_add_proc(b, &d, &idx);
        int64_t v = (int64_t)(256 + p) * 1048576 + (int64_t)(xorshift(rng) % 4096) * 4096;
        if (rc == 0)
            rc = apm_batch_add_sample(b, idx, APM_METRIC_RSS, t, v);
    }
    if (rc == 0)
        rc = apm_store_txn_put_batch(txn, &a, b);
    apm_batch_free(b);
    return rc < 0 ? rc : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: store_fill DIR MEGABYTES [HOSTS [PROCS]]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t want = strtoull(argv[2], NULL, 10) << 20;
    int hosts = argc > 3 ? atoi(argv[3]) : 100;
    int procs = argc > 4 ? atoi(argv[4]) : 100;
    struct apm_store_options opt = {.dir = dir, .no_sync = true, .map_size = 8ull << 30};
    struct apm_store *s = NULL;
    if (apm_store_open(&opt, &s) != 0)
        return 1;
    char path[4200];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    /* About 4 bytes a sample: enough ticks for the size, ending now. */
    int64_t ticks = (int64_t)(want / 4 / ((uint64_t)hosts * (uint64_t)procs)) + TICKS;
    int64_t t0 = apm_now_ms() - ticks * 1000;
    uint64_t rng = 0x9e3779b97f4a7c15ull, seq = 0;
    struct stat st = {0};
    int rc = 0;
    for (int64_t tick = 0; rc == 0 && tick < ticks; tick += TICKS) {
        struct apm_store_txn *txn = NULL;
        rc = apm_store_txn_begin(s, &txn);
        for (int k = 0; rc == 0 && k < TICKS; k++) {
            seq++;
            for (int h = 0; rc == 0 && h < hosts; h++)
                rc = put_tick(txn, h, procs, seq, t0 + (tick + k) * 1000, &rng);
        }
        if (rc == 0)
            rc = apm_store_txn_commit(txn);
        else
            apm_store_txn_abort(txn);
        if (rc == 0 && stat(path, &st) == 0 && (uint64_t)st.st_size >= want)
            break;
    }
    struct apm_store_stats ss = {0};
    apm_store_stats(s, &ss);
    apm_store_free(s);
    if (rc != 0) {
        fprintf(stderr, "store_fill: %s\n", apm_strerror(rc));
        return 1;
    }
    printf("filled %s: %" PRIu64 " MiB file, %" PRIu64 " series, %" PRIu64 " samples\n", dir,
           (uint64_t)st.st_size >> 20, ss.series, ss.samples);
    return 0;
}
