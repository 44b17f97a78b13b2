#ifndef APM_BENCH_TRACES_H
#define APM_BENCH_TRACES_H

/*
 * Series for the store benchmarks (store_bytes.c, chunk_codec.c): the
 * leakbench traces (t_seconds,rss_bytes,... CSV files) and a synthetic 1 s
 * fleet. Header-only: each benchmark is one translation unit.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRACES 1024

struct series_data {
    char name[128];
    size_t n;
    size_t cap;
    int64_t *t;
    int64_t *v;
};

static int add_sample(struct series_data *s, int64_t t, int64_t v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        int64_t *nt = realloc(s->t, cap * sizeof(*nt));
        int64_t *nv = nt ? realloc(s->v, cap * sizeof(*nv)) : NULL;
        if (nt)
            s->t = nt;
        if (nv == NULL)
            return -1;
        s->v = nv;
        s->cap = cap;
    }
    s->t[s->n] = t;
    s->v[s->n] = v;
    s->n++;
    return 0;
}

static int load_csv(const char *path, struct series_data *s)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    char line[256];
    int rc = 0;
    if (fgets(line, sizeof(line), fp) == NULL)
        rc = -1;
    while (rc == 0 && fgets(line, sizeof(line), fp) != NULL) {
        double ts;
        long long rss;
        if (sscanf(line, "%lf,%lld", &ts, &rss) != 2)
            continue;
        rc = add_sample(s, (int64_t)llround(ts * 1000.0), rss);
    }
    fclose(fp);
    return rc;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct series_data *)a)->name, ((const struct series_data *)b)->name);
}

static size_t load_dir(const char *dir, struct series_data *out)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL && n < MAX_TRACES) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".csv") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        memset(&out[n], 0, sizeof(out[n]));
        snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)(len - 4), de->d_name);
        if (load_csv(path, &out[n]) == 0 && out[n].n > 0)
            n++;
    }
    if (d != NULL)
        closedir(d);
    qsort(out, n, sizeof(*out), cmp_name);
    return n;
}

/*
 * A steady 1 s series: a slow leak, page-sized noise and an occasional GC
 * drop, generated one sample at a time (the fleet of store_bytes does not fit
 * in memory as arrays comfortably: 1000 series x 24 h is 1.4 GB).
 */
struct synth {
    uint64_t x;
    int64_t v, t0;
    size_t i, n;
};

static void synth_init(struct synth *g, unsigned idx, size_t n)
{
    g->x = 0x9e3779b97f4a7c15ull * (idx + 1);
    g->v = (int64_t)(64 + idx % 512) << 20;
    g->t0 = 1700000000000;
    g->i = 0;
    g->n = n;
}

/* The next sample into *t, *v: 1, or 0 after the last. */
static int synth_next(struct synth *g, int64_t *t, int64_t *v)
{
    if (g->i >= g->n)
        return 0;
    g->x ^= g->x << 13;
    g->x ^= g->x >> 7;
    g->x ^= g->x << 17;
    if (g->x % 10 < 3)
        g->v += ((int64_t)(g->x >> 8) % 9 - 4) * 4096;
    if (g->x % 997 == 0)
        g->v -= 256 * 4096;
    g->v += (g->i % 60 == 0) ? 4096 : 0;
    *t = g->t0 + (int64_t)g->i * 1000;
    *v = g->v;
    g->i++;
    return 1;
}

/* A synthetic series held in memory (inline: store_bytes generates its fleet as it goes). */
static inline void make_synthetic(struct series_data *s, unsigned idx, size_t n)
{
    struct synth g;
    int64_t t, v;
    synth_init(&g, idx, n);
    snprintf(s->name, sizeof(s->name), "synth-%u", idx);
    while (synth_next(&g, &t, &v))
        add_sample(s, t, v);
}

#endif
