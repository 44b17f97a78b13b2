/*
 * Writes the seed corpus for fuzz_chunk: real chunks (8 bytes of first_t,
 * then the encoded chunk) of a steady series, a growing one and extremes,
 * in format 1 (steady, growing-jitter, extremes), format 2 (*-f2) and
 * format 3 (*-f3).
 * Run with the corpus directory as its argument; the files are checked in.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store/chunk.h"

static void write_format(const char *dir, const char *name, uint8_t format, const int64_t *t,
                         const int64_t *v, int n)
{
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
    apm_chunk_enc_set_format(&e, format);
    for (int i = 0; i < n; i++)
        if (apm_chunk_enc_append(&e, t[i], v[i]) != 0)
            exit(1);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        exit(1);
    fwrite(&t[0], 8, 1, f);
    fwrite(e.buf, 1, e.len, f);
    fclose(f);
    apm_chunk_enc_close(&e);
}

static void write_chunk(const char *dir, const char *name, const int64_t *t, const int64_t *v,
                        int n)
{
    char f2[256], f3[256];
    snprintf(f2, sizeof(f2), "%s-f2", name);
    snprintf(f3, sizeof(f3), "%s-f3", name);
    write_format(dir, name, APM_CHUNK_FORMAT_RICE, t, v, n);
    write_format(dir, f2, APM_CHUNK_FORMAT_RC2, t, v, n);
    write_format(dir, f3, APM_CHUNK_FORMAT, t, v, n);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int64_t t[120], v[120];
    for (int i = 0; i < 120; i++) {
        t[i] = 1700000000000LL + i * 1000;
        v[i] = 50000000;
    }
    write_chunk(argv[1], "steady", t, v, 120);
    for (int i = 0; i < 120; i++) {
        t[i] = 1700000000000LL + i * 10000 + (i % 3) * 7;
        v[i] = 50000000 + (int64_t)i * 4096 * 3 - (i % 7) * 4096;
    }
    write_chunk(argv[1], "growing-jitter", t, v, 120);
    int64_t xt[4] = {INT64_MIN / 2, 0, 1, INT64_MAX / 2};
    int64_t xv[4] = {INT64_MIN, INT64_MAX, -1, 0};
    write_chunk(argv[1], "extremes", xt, xv, 4);
    /* Formats 2 and 3 only: page noise and a shift that shrinks twice (a rebuild). */
    uint64_t x = 7;
    for (int i = 0; i < 120; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t[i] = 1700000000000LL + i * 30000 + (int64_t)(x % 1500);
        v[i] = 80000000 + (int64_t)(x >> 40) * 4096 + (i > 60 ? 2048 : 0) + (i > 100);
    }
    write_format(argv[1], "noise-rebuild-f2", APM_CHUNK_FORMAT_RC2, t, v, 120);
    write_format(argv[1], "noise-rebuild-f3", APM_CHUNK_FORMAT, t, v, 120);
    /* Format 3's gap rule: whole steps missing on a jittered grid, then a new interval. */
    int64_t grid = 1700000000000LL;
    for (int i = 0; i < 120; i++) {
        grid += i < 100 ? (i % 20 == 19 ? 3 : 1) * 60000LL : 120000LL;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t[i] = grid + (int64_t)(x % 6001) - 3000;
        v[i] = 80000000 + (int64_t)(x >> 58) * 4096;
    }
    write_format(argv[1], "gaps-f3", APM_CHUNK_FORMAT, t, v, 120);
    return 0;
}
