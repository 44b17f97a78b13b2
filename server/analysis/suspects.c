/*
 * Suspects and the native verdict from the stored probe series. The sites
 * are ranked by server/analysis/sites.c; this file only decides which of them track
 * the process's growth. Traced memory restarts near zero each time tracing
 * starts (tracemalloc counts only what was allocated since), so its rate is
 * taken over the samples since the last restart, and the first quarter of
 * that span is skipped: right after a start, traced memory climbs while the
 * program's steady churn becomes traced, which is not growth.
 */
#include "server/analysis/suspects.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/analysis/sites.h"

#define MIN_WINDOW_S 600.0
#define MAX_WINDOW_S (6 * 3600.0)
#define DEFAULT_WINDOW_S 3600.0
#define WINDOW_INTERVALS 60.0
/* Every site of a process is looked at (the store keeps at most a thousand by default). */
#define MAX_RANKED 100000u
/* Traced samples read per call at most; the newest are kept. */
#define MAX_TRACED 4096u

double apm_suspects_window_s(double interval_s)
{
    if (!(interval_s > 0))
        return DEFAULT_WINDOW_S;
    double w = WINDOW_INTERVALS * interval_s;
    return w < MIN_WINDOW_S ? MIN_WINDOW_S : w > MAX_WINDOW_S ? MAX_WINDOW_S : w;
}

/* True when the site's size rose in both halves of its points (three or more). */
static bool in_line(const struct apm_site_rank *r)
{
    if (r->npoints < 3)
        return false;
    unsigned mid = r->npoints / 2, last = r->npoints - 1;
    return r->points_v[mid] > r->points_v[0] && r->points_v[last] > r->points_v[mid];
}

/* A site tracks the process when it grows fast enough and, given three points, in line. */
static bool tracks(const struct apm_site_rank *r, double rate)
{
    if (r->size_growth <= 0 || r->rate <= 0)
        return false;
    if (rate > 0 && r->rate < APM_SUSPECTS_MIN_SHARE * rate)
        return false;
    return r->npoints < 3 || in_line(r);
}

static int by_rate(const void *pa, const void *pb)
{
    const struct apm_suspect *a = pa, *b = pb;
    if (a->rate != b->rate)
        return a->rate > b->rate ? -1 : 1;
    return strcmp(a->site, b->site);
}

static int pick_sites(struct apm_store *s, const char *process_id, int64_t from_ms, int64_t to_ms,
                      double rate, struct apm_suspects *out)
{
    struct apm_site_rank *r = NULL;
    size_t n = 0;
    int rc = apm_sites_rank(s, process_id, from_ms, to_ms, MAX_RANKED, &r, &n);
    if (rc != 0)
        return rc;
    /* Keep the fastest APM_SUSPECTS_MAX: the array is small, so replace its slowest. */
    for (size_t i = 0; i < n; i++) {
        if (!tracks(&r[i], rate))
            continue;
        size_t slot = out->n;
        if (out->n == APM_SUSPECTS_MAX) {
            slot = 0;
            for (size_t k = 1; k < out->n; k++)
                if (out->top[k].rate < out->top[slot].rate)
                    slot = k;
            if (out->top[slot].rate >= r[i].rate)
                continue;
        } else {
            out->n++;
        }
        struct apm_suspect *x = &out->top[slot];
        snprintf(x->site, sizeof(x->site), "%s", r[i].site);
        x->rate = r[i].rate;
        x->size = r[i].size_end;
        x->growth = r[i].size_growth;
        x->rate_err = r[i].rate_err;
        x->line = in_line(&r[i]);
    }
    apm_sites_free(r, n);
    if (out->n > 1)
        qsort(out->top, out->n, sizeof(out->top[0]), by_rate);
    return 0;
}

struct traced {
    unsigned n, head;
    double t[MAX_TRACED], v[MAX_TRACED];
};

static int each_traced(void *ctx, int64_t t_ms, int64_t value)
{
    struct traced *tr = ctx;
    unsigned i = (tr->head + tr->n) % MAX_TRACED;
    if (tr->n == MAX_TRACED)
        tr->head = (tr->head + 1) % MAX_TRACED;
    else
        tr->n++;
    tr->t[i] = (double)t_ms / 1000.0;
    tr->v[i] = (double)value;
    return 0;
}

/* Least-squares slope of the samples since the last restart, after its first quarter. */
static bool traced_slope(const struct traced *tr, double *slope)
{
#define AT(k) ((tr->head + (k)) % MAX_TRACED)
    unsigned start = 0;
    for (unsigned k = 1; k < tr->n; k++)
        if (tr->v[AT(k)] < 0.5 * tr->v[AT(k - 1)])
            start = k;
    if (tr->n - start < 2)
        return false;
    double t0 = tr->t[AT(start)], t1 = tr->t[AT(tr->n - 1)];
    if (tr->n - start >= 4)
        while (start < tr->n - 2 && tr->t[AT(start)] < t0 + 0.25 * (t1 - t0))
            start++;
    double n = 0, st = 0, sv = 0, stt = 0, stv = 0;
    for (unsigned k = start; k < tr->n; k++) {
        double t = tr->t[AT(k)] - t1, v = tr->v[AT(k)];
        n++;
        st += t;
        sv += v;
        stt += t * t;
        stv += t * v;
    }
    double den = n * stt - st * st;
    if (!(den > 0))
        return false;
    *slope = (n * stv - st * sv) / den;
    return true;
#undef AT
}

static int traced_rate(struct apm_store *s, const char *process_id, int64_t from_ms, int64_t to_ms,
                       struct apm_suspects *out)
{
    uint64_t id = 0;
    int rc = apm_store_find_series(s, NULL, process_id, APM_METRIC_TRACED, NULL, &id);
    if (rc == APM_E_NOTFOUND)
        return 0;
    struct traced *tr = rc == 0 ? calloc(1, sizeof(*tr)) : NULL;
    if (rc == 0 && tr == NULL)
        rc = -ENOMEM;
    if (rc == 0)
        rc = apm_store_read_samples(s, id, from_ms, to_ms, each_traced, tr);
    if (rc == 0)
        out->has_traced = traced_slope(tr, &out->traced_rate);
    free(tr);
    return rc;
}

int apm_suspects_find(struct apm_store *s, const char *process_id, int64_t to_ms, double window_s,
                      double rate, struct apm_suspects *out)
{
    memset(out, 0, sizeof(*out));
    int64_t from_ms = to_ms - (int64_t)(window_s * 1000.0);
    int rc = pick_sites(s, process_id, from_ms, to_ms, rate, out);
    if (rc == 0)
        rc = traced_rate(s, process_id, from_ms, to_ms, out);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int apm_suspects_native(const struct apm_suspects *sus, double rate)
{
    if (!sus->has_traced || !(rate > 0))
        return -1;
    return sus->traced_rate < APM_SUSPECTS_NATIVE_RATIO * rate ? 1 : 0;
}
