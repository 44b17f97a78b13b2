/*
 * The cost of remote-write's pending record (server/store/store_rwcursor.c)
 * per request: ROUNDS requests of SERIES series each, recorded the old way
 * (one transaction with the cursors after the answer) and the new way (one
 * transaction with the last request's cursors and this request's pending
 * record, before it goes), interleaved in blocks of 10 so that the
 * machine's load falls on both alike. Durable commits (fsync) unless NOSYNC is 1. Prints
 * microseconds per request, median and 90th percentile of the blocks. Figures only.
 *
 *   rw_pending DIR [SERIES [ROUNDS [NOSYNC]]]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/store/store.h"

#define BLOCK 10

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One block of BLOCK requests; returns its time in ns per request, or 0 on an error. */
static uint64_t block(struct apm_store *s, uint64_t *ids, int64_t *ts, size_t n, int64_t *t,
                      int pending)
{
    uint64_t t0 = apm_mono_ns();
    for (int r = 0; r < BLOCK; r++) {
        for (size_t i = 0; i < n; i++)
            ts[i] = *t;
        (*t)++;
        /* The sender's transaction per request: before, the cursors after the answer;
         * now, the last request's cursors and this one's pending record before it goes. */
        int rc = pending ? apm_store_rw_pending_put(s, ids, ts, n, ids, ts, n)
                         : apm_store_rw_cursor_put(s, ids, ts, n);
        if (rc < 0) {
            fprintf(stderr, "rw_pending: %s\n", apm_strerror(rc));
            return 0;
        }
    }
    return (apm_mono_ns() - t0) / BLOCK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: rw_pending DIR [SERIES [ROUNDS [NOSYNC]]]\n");
        return 2;
    }
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    int rounds = argc > 3 ? atoi(argv[3]) : 500;
    int nosync = argc > 4 ? atoi(argv[4]) : 0;
    int blocks = rounds / BLOCK > 0 ? rounds / BLOCK : 1;
    struct apm_store_options opt = {.dir = argv[1], .no_sync = nosync != 0, .rw_hold = true};
    struct apm_store *s = NULL;
    int rc = apm_store_open(&opt, &s);
    if (rc < 0) {
        fprintf(stderr, "rw_pending: %s: %s\n", argv[1], apm_strerror(rc));
        return 1;
    }
    uint64_t *ids = calloc(n, sizeof(*ids));
    int64_t *ts = calloc(n, sizeof(*ts));
    uint64_t *old = calloc((size_t)blocks, sizeof(*old));
    uint64_t *new = calloc((size_t)blocks, sizeof(*new));
    if (!ids || !ts || !old || !new)
        return 1;
    for (size_t i = 0; i < n; i++)
        ids[i] = 1 + i * 7;
    int64_t t = 1;
    for (int b = 0; b < blocks; b++) {
        old[b] = block(s, ids, ts, n, &t, 0);
        new[b] = block(s, ids, ts, n, &t, 1);
        if (old[b] == 0 || new[b] == 0)
            return 1;
    }
    qsort(old, (size_t)blocks, sizeof(*old), cmp_u64);
    qsort(new, (size_t)blocks, sizeof(*new), cmp_u64);
    size_t p90 = (size_t)blocks * 9 / 10;
    printf("series %zu, requests %d each way, %s: cursor alone %.1f us (p90 %.1f), "
           "cursor + pending %.1f us (p90 %.1f) per request\n",
           n, blocks * BLOCK, nosync ? "no fsync" : "fsync", old[blocks / 2] / 1e3, old[p90] / 1e3,
           new[blocks / 2] / 1e3, new[p90] / 1e3);
    free(new);
    free(old);
    free(ts);
    free(ids);
    apm_store_free(s);
    return 0;
}
