#include "server/analysis/sites.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"

/* Most sites of one process looked at (the store caps sites per process far below). */
#define MAX_SITES 100000u
/* Samples kept per site while reading, before thinning to APM_SITES_POINTS. */
#define MAX_READ_POINTS 4096u

struct site_list {
    struct apm_site_rank *r;
    uint64_t *ids;
    size_t n, cap;
};

static int collect(void *ctx, const struct apm_series_info *info)
{
    struct site_list *l = ctx;
    if (l->n == MAX_SITES)
        return 1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct apm_site_rank *nr = realloc(l->r, cap * sizeof(*nr));
        if (nr == NULL)
            return -ENOMEM;
        l->r = nr;
        uint64_t *ni = realloc(l->ids, cap * sizeof(*ni));
        if (ni == NULL)
            return -ENOMEM;
        l->ids = ni;
        l->cap = cap;
    }
    struct apm_site_rank *r = &l->r[l->n];
    memset(r, 0, sizeof(*r));
    r->site = strdup(info->site);
    if (r->site == NULL)
        return -ENOMEM;
    l->ids[l->n++] = info->id;
    return 0;
}

/* What one series says about [from, to]. */
struct span {
    int64_t from;
    bool have_start, in_window;
    int64_t t_start, v_start, t_end, v_end;
    unsigned n;
    int64_t t[MAX_READ_POINTS], v[MAX_READ_POINTS];
};

static int each_sample(void *ctx, int64_t t, int64_t v)
{
    struct span *s = ctx;
    /* The start is the last sample at or before from, else the first one after it. */
    if (t <= s->from || !s->have_start) {
        s->t_start = t;
        s->v_start = v;
        s->have_start = true;
    }
    if (t > s->from)
        s->in_window = true;
    s->t_end = t;
    s->v_end = v;
    if (s->n < MAX_READ_POINTS) {
        s->t[s->n] = t;
        s->v[s->n++] = v;
    }
    return 0;
}

static int read_span(struct apm_store *st, uint64_t id, int64_t from, int64_t to, struct span *s)
{
    memset(s, 0, offsetof(struct span, t));
    s->from = from;
    /*
     * The start value is the last sample at or before from: a diff stores each site's size at
     * the previous snapshot, which may lie up to an interval (and clock jitter) before from.
     * Two windows and a minute back covers it without reading a site's whole history.
     */
    int64_t back = from - 2 * (to - from) - 60000;
    return apm_store_read_samples(st, id, back < from ? back : from, to, each_sample, s);
}

static void thin_points(const struct span *s, struct apm_site_rank *r)
{
    unsigned first = 0;
    while (first < s->n && s->t[first] < s->t_start)
        first++;
    unsigned n = s->n - first;
    r->npoints = n < APM_SITES_POINTS ? n : APM_SITES_POINTS;
    for (unsigned i = 0; i < r->npoints; i++) {
        unsigned k =
            first +
            (r->npoints == 1 ? n - 1 : (unsigned)((uint64_t)i * (n - 1) / (r->npoints - 1)));
        r->points_t[i] = s->t[k];
        r->points_v[i] = s->v[k];
    }
}

/*
 * The standard error of a sampled site's growth over the window: the root of the variance
 * its running variance gained in the window. A running variance that went down restarted
 * (a new sampling session): all of its end value counts then.
 */
static void sampled_error(const struct span *var, struct apm_site_rank *r)
{
    int64_t gained = var->v_end - var->v_start;
    if (gained < 0)
        gained = var->v_end;
    r->sampled = true;
    r->growth_err = llround(sqrt((double)gained));
    r->rate_err = r->t_end > r->t_start
                      ? (double)r->growth_err * 1000.0 / (double)(r->t_end - r->t_start)
                      : 0.0;
}

static int64_t abs64(int64_t v)
{
    return v < 0 ? -v : v;
}

/* "file:line" split at the last ':' so that lines compare as numbers. */
static int cmp_site(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
    if (ca == NULL || cb == NULL)
        return strcmp(a, b);
    size_t la = (size_t)(ca - a), lb = (size_t)(cb - b);
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c != 0)
        return c;
    if (la != lb)
        return la < lb ? -1 : 1;
    long long x = atoll(ca + 1), y = atoll(cb + 1);
    return x < y ? -1 : x > y;
}

#define DESC(x, y)                                                                                 \
    do {                                                                                           \
        if ((x) != (y))                                                                            \
            return (x) > (y) ? -1 : 1;                                                             \
    } while (0)

static int by_growth(const void *pa, const void *pb)
{
    const struct apm_site_rank *a = pa, *b = pb;
    DESC(abs64(a->size_growth), abs64(b->size_growth));
    DESC(a->size_end, b->size_end);
    DESC(abs64(a->count_growth), abs64(b->count_growth));
    DESC(a->count_end, b->count_end);
    return -cmp_site(a->site, b->site);
}

void apm_sites_free(struct apm_site_rank *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(r[i].site);
    free(r);
}

int apm_sites_rank(struct apm_store *s, const char *process_id, int64_t from_ms, int64_t to_ms,
                   size_t limit, struct apm_site_rank **out, size_t *n)
{
    struct site_list l = {0};
    struct span *sp = malloc(sizeof(*sp));
    int rc = sp ? apm_store_list_process_series(s, process_id, APM_METRIC_SITE_SIZE, collect, &l)
                : -ENOMEM;
    size_t kept = 0, i = 0;
    for (; i < l.n && rc == 0; i++) {
        struct apm_site_rank *r = &l.r[i];
        rc = read_span(s, l.ids[i], from_ms, to_ms, sp);
        if (rc != 0 || !sp->in_window) {
            free(r->site);
            continue;
        }
        r->t_start = sp->t_start;
        r->t_end = sp->t_end;
        r->size_start = sp->v_start;
        r->size_end = sp->v_end;
        r->size_growth = r->size_end - r->size_start;
        r->rate = r->t_end > r->t_start
                      ? (double)r->size_growth * 1000.0 / (double)(r->t_end - r->t_start)
                      : 0.0;
        thin_points(sp, r);
        uint64_t cid;
        if (apm_store_find_series(s, NULL, process_id, APM_METRIC_SITE_COUNT, r->site, &cid) == 0 &&
            read_span(s, cid, from_ms, to_ms, sp) == 0 && sp->have_start) {
            r->count_start = sp->v_start;
            r->count_end = sp->v_end;
            r->count_growth = r->count_end - r->count_start;
        }
        if (apm_store_find_series(s, NULL, process_id, APM_METRIC_SITE_VAR, r->site, &cid) == 0 &&
            read_span(s, cid, from_ms, to_ms, sp) == 0 && sp->have_start)
            sampled_error(sp, r);
        l.r[kept++] = *r;
    }
    if (rc != 0) {
        /* Entries up to i were kept (moved before kept) or freed; the rest were not reached. */
        for (; i < l.n; i++)
            free(l.r[i].site);
        apm_sites_free(l.r, kept);
        free(l.ids);
        free(sp);
        return rc;
    }
    if (kept > 1)
        qsort(l.r, kept, sizeof(*l.r), by_growth);
    for (size_t j = limit; j < kept; j++)
        free(l.r[j].site);
    *n = kept < limit ? kept : limit;
    *out = l.r;
    free(l.ids);
    free(sp);
    return 0;
}
