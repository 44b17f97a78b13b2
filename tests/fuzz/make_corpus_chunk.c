/*
 * Writes the seed corpus for fuzz_chunk: real chunks (8 bytes of first_t,
 * then the encoded chunk) of a steady series, a growing one and extremes.
 * Run with the corpus directory as its argument; the files are checked in.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store/chunk.h"

static void write_chunk(const char *dir, const char *name, const int64_t *t, const int64_t *v,
                        int n)
{
    struct apm_chunk_enc e;
    apm_chunk_enc_init(&e);
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
    return 0;
}
