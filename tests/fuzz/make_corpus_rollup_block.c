/*
 * Writes the seed corpus for fuzz_rollup_block: real blocks (a byte of the
 * bucket count, then the encoded block) of 60 one-minute buckets of a
 * growing series in whole pages, 24 one-hour buckets with gaps and
 * negative values, and extremes. Run with the corpus directory as its
 * argument; the files are checked in.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store/store.h"

static void write_block(const char *dir, const char *name, const struct apm_rollup *b, int n)
{
    uint8_t buf[APM_ROLLUP_BLOCK_MAX * APM_ROLLUP_BLOCK_BYTES + 10];
    size_t len = apm_rollup_block_encode(b, n, buf);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        exit(1);
    uint8_t nb = (uint8_t)(n - 1);
    fwrite(&nb, 1, 1, f);
    fwrite(buf, 1, len, f);
    fclose(f);
}

static void bucket(struct apm_rollup *r, int64_t first, int64_t step, int count)
{
    *r = (struct apm_rollup){0};
    for (int k = 0; k < count; k++) {
        int64_t v = first + step * k;
        if (r->count == 0 || v < r->min)
            r->min = v;
        if (r->count == 0 || v > r->max)
            r->max = v;
        r->sum = (int64_t)((uint64_t)r->sum + (uint64_t)v);
        r->last = v;
        r->count++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus_rollup_block DIR\n");
        return 2;
    }
    struct apm_rollup b[APM_ROLLUP_BLOCK_MAX];
    for (int i = 0; i < 60; i++)
        bucket(&b[i], (100000 + i * 7) * 4096LL, 4096, 60);
    write_block(argv[1], "minutes-pages", b, 60);
    for (int i = 0; i < 24; i++)
        bucket(&b[i], -5000000 + i * 1234567, i % 3 == 0 ? -17 : 3, i % 5 == 2 ? 0 : 3600 / 20);
    write_block(argv[1], "hours-gaps-negative", b, 24);
    memset(b, 0, sizeof(b));
    b[0] = (struct apm_rollup){INT64_MIN, INT64_MAX, INT64_MAX, 0, UINT64_MAX / 2};
    b[59] = (struct apm_rollup){INT64_MAX, INT64_MAX, -1, INT64_MAX, 1};
    write_block(argv[1], "extremes", b, 60);
    return 0;
}
