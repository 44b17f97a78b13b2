#include "common/analysis/model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/text.h"

/* Each metric's contract name and the unit of its values, in one place. */
static const struct {
    const char *name;
    enum apm_unit unit;
} metrics[APM_METRIC_COUNT] = {
    [APM_METRIC_RSS] = {"rss", APM_UNIT_BYTES},
    [APM_METRIC_PSS] = {"pss", APM_UNIT_BYTES},
    [APM_METRIC_USS] = {"uss", APM_UNIT_BYTES},
    [APM_METRIC_SWAP] = {"swap", APM_UNIT_BYTES},
    [APM_METRIC_CGROUP_USAGE] = {"cgroup_usage", APM_UNIT_BYTES},
    [APM_METRIC_CGROUP_LIMIT] = {"cgroup_limit", APM_UNIT_BYTES},
    [APM_METRIC_MEM_AVAILABLE] = {"mem_available", APM_UNIT_BYTES},
    [APM_METRIC_MEM_TOTAL] = {"mem_total", APM_UNIT_BYTES},
    [APM_METRIC_TRACED] = {"traced", APM_UNIT_BYTES},
    [APM_METRIC_SITE_SIZE] = {"site_size", APM_UNIT_BYTES},
    [APM_METRIC_SITE_COUNT] = {"site_count", APM_UNIT_COUNT},
    [APM_METRIC_GC_COLLECTIONS] = {"gc_collections", APM_UNIT_COUNT},
    [APM_METRIC_GC_COLLECTED] = {"gc_collected", APM_UNIT_COUNT},
    [APM_METRIC_GC_UNCOLLECTABLE] = {"gc_uncollectable", APM_UNIT_COUNT},
    [APM_METRIC_GC_GARBAGE] = {"gc_garbage", APM_UNIT_COUNT},
    [APM_METRIC_SITE_VAR] = {"site_var", APM_UNIT_COUNT},
};

const char *apm_metric_name(enum apm_metric m)
{
    if ((int)m <= 0 || m >= APM_METRIC_COUNT)
        return NULL;
    return metrics[m].name;
}

enum apm_unit apm_metric_unit(enum apm_metric m)
{
    if ((int)m <= 0 || m >= APM_METRIC_COUNT)
        return APM_UNIT_BYTES;
    return metrics[m].unit;
}

int apm_metric_parse(const char *name, enum apm_metric *out)
{
    for (int m = 1; m < APM_METRIC_COUNT; m++) {
        if (strcmp(metrics[m].name, name) == 0) {
            *out = (enum apm_metric)m;
            return 0;
        }
    }
    return APM_E_NOTFOUND;
}

bool apm_metric_is_host(enum apm_metric m)
{
    return m == APM_METRIC_MEM_AVAILABLE || m == APM_METRIC_MEM_TOTAL;
}

bool apm_health_name_valid(const char *s, size_t len)
{
    if (len == 0 || len >= APM_HEALTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

int apm_health_add(struct apm_health *h, const char *name, uint64_t value, bool gauge)
{
    size_t len = strlen(name);
    if (!apm_health_name_valid(name, len))
        return -EINVAL;
    if (h->n >= APM_HEALTH_MAX)
        return APM_E_LIMIT;
    struct apm_health_counter *c = &h->c[h->n++];
    memcpy(c->name, name, len + 1);
    c->value = value;
    c->gauge = gauge;
    return 0;
}

struct apm_batch *apm_batch_new(uint64_t seq)
{
    struct apm_batch *b = calloc(1, sizeof(*b));
    if (b != NULL)
        b->seq = seq;
    return b;
}

void apm_batch_free(struct apm_batch *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->nprocs; i++) {
        free(b->procs[i].name);
        free(b->procs[i].cmdline);
        free(b->procs[i].cgroup);
    }
    free(b->procs);
    apm_hashmap_close(&b->proc_index);
    for (uint32_t i = 0; i < b->nseries; i++) {
        if (b->series[i].pooled)
            continue;
        free(b->series[i].t_ms);
        free(b->series[i].value);
    }
    free(b->series);
    free(b->slab);
    for (uint32_t i = 0; i < b->ndiffs; i++) {
        for (uint32_t k = 0; k < b->diffs[i].nsites; k++) {
            struct apm_site_stat *st = &b->diffs[i].sites[k];
            free(st->file);
            for (uint32_t f = 0; f < st->nframes; f++)
                free(st->frames[f].file);
            free(st->frames);
        }
        free(b->diffs[i].sites);
    }
    free(b->diffs);
    free(b->gc);
    free(b->health);
    free(b);
}

/* Batches keep only clean strings (common/base/text.h), whoever builds them. */
static char *dup_or_empty(const char *s)
{
    return apm_text_dup(s, APM_MODEL_STRING_MAX, NULL);
}

struct proc_key {
    int64_t start_ms;
    int32_t pid;
    int32_t pad;
};

int apm_batch_add_proc(struct apm_batch *b, const struct apm_proc_desc *p, uint32_t *out_index)
{
    struct proc_key key = {p->start_ms, p->pid, 0};
    uint64_t v;
    if (apm_hashmap_get(&b->proc_index, &key, sizeof(key), &v) == 0) {
        *out_index = (uint32_t)v;
        return 0;
    }
    int rc = apm_batch_append_proc(b, p, out_index);
    if (rc == 0 && apm_hashmap_put(&b->proc_index, &key, sizeof(key), *out_index) != 0) {
        /* The process is in the batch; only the shortcut to it is missing. */
        return 0;
    }
    return rc;
}

int apm_batch_append_proc(struct apm_batch *b, const struct apm_proc_desc *p, uint32_t *out_index)
{
    if (b->nprocs == b->procs_cap) {
        uint32_t cap = b->procs_cap ? b->procs_cap * 2 : 16;
        struct apm_proc_desc *np = realloc(b->procs, cap * sizeof(*np));
        if (np == NULL)
            return -ENOMEM;
        b->procs = np;
        b->procs_cap = cap;
    }
    struct apm_proc_desc *d = &b->procs[b->nprocs];
    d->pid = p->pid;
    d->ppid = p->ppid;
    d->start_ms = p->start_ms;
    d->name = dup_or_empty(p->name);
    d->cmdline = dup_or_empty(p->cmdline);
    d->cgroup = dup_or_empty(p->cgroup);
    if (d->name == NULL || d->cmdline == NULL || d->cgroup == NULL) {
        free(d->name);
        free(d->cmdline);
        free(d->cgroup);
        return -ENOMEM;
    }
    *out_index = b->nprocs++;
    return 0;
}

static struct apm_series_block *find_block(struct apm_batch *b, uint32_t proc,
                                           enum apm_metric metric)
{
    /*
     * Look at the most recent blocks only: samples of one tick are added
     * process by process, so a full search would make a tick quadratic. A
     * series may therefore appear in several blocks of one batch.
     */
    uint32_t stop = b->nseries > 16 ? b->nseries - 16 : 0;
    for (uint32_t i = b->nseries; i-- > stop;) {
        if (b->series[i].proc == proc && b->series[i].metric == metric)
            return &b->series[i];
    }
    return NULL;
}

static struct apm_series_block *new_block(struct apm_batch *b, uint32_t proc,
                                          enum apm_metric metric)
{
    if (b->nseries == b->series_cap) {
        uint32_t cap = b->series_cap ? b->series_cap * 2 : 32;
        struct apm_series_block *ns = realloc(b->series, cap * sizeof(*ns));
        if (ns == NULL)
            return NULL;
        b->series = ns;
        b->series_cap = cap;
    }
    struct apm_series_block *s = &b->series[b->nseries++];
    memset(s, 0, sizeof(*s));
    s->proc = proc;
    s->metric = metric;
    return s;
}

static int reserve_samples(struct apm_series_block *s, uint32_t need)
{
    if (need <= s->cap)
        return 0;
    uint32_t cap = s->cap ? s->cap : 4;
    while (cap < need)
        cap *= 2;
    if (s->pooled) {
        /* Outgrows its place in the slab: move to allocations of its own. */
        int64_t *nt = malloc(cap * sizeof(*nt)), *nv = malloc(cap * sizeof(*nv));
        if (nt == NULL || nv == NULL) {
            free(nt);
            free(nv);
            return -ENOMEM;
        }
        memcpy(nt, s->t_ms, s->n * sizeof(*nt));
        memcpy(nv, s->value, s->n * sizeof(*nv));
        s->t_ms = nt;
        s->value = nv;
        s->cap = cap;
        s->pooled = false;
        return 0;
    }
    int64_t *nt = realloc(s->t_ms, cap * sizeof(*nt));
    if (nt == NULL)
        return -ENOMEM;
    s->t_ms = nt;
    int64_t *nv = realloc(s->value, cap * sizeof(*nv));
    if (nv == NULL)
        return -ENOMEM;
    s->value = nv;
    s->cap = cap;
    return 0;
}

int apm_batch_reserve(struct apm_batch *b, size_t n)
{
    if (b->slab != NULL || n == 0 || n > SIZE_MAX / (2 * sizeof(int64_t)))
        return 0;
    b->slab = malloc(2 * n * sizeof(int64_t));
    if (b->slab == NULL)
        return -ENOMEM;
    b->slab_cap = 2 * n;
    b->slab_used = 0;
    return 0;
}

int apm_batch_append_block(struct apm_batch *b, uint32_t proc, enum apm_metric metric, uint32_t n,
                           struct apm_series_block **out)
{
    if ((proc != APM_PROC_HOST && proc >= b->nprocs) || apm_metric_name(metric) == NULL)
        return -EINVAL;
    struct apm_series_block *s = new_block(b, proc, metric);
    if (s == NULL)
        return -ENOMEM;
    if (n > 0 && b->slab_cap - b->slab_used >= 2 * (size_t)n) {
        s->t_ms = b->slab + b->slab_used;
        s->value = s->t_ms + n;
        s->cap = n;
        s->pooled = true;
        b->slab_used += 2 * (size_t)n;
        *out = s;
        return 0;
    }
    int rc = reserve_samples(s, n);
    if (rc != 0)
        return rc;
    *out = s;
    return 0;
}

int apm_batch_add_sample(struct apm_batch *b, uint32_t proc, enum apm_metric metric, int64_t t_ms,
                         int64_t value)
{
    if ((proc != APM_PROC_HOST && proc >= b->nprocs) || apm_metric_name(metric) == NULL)
        return -EINVAL;
    struct apm_series_block *s = find_block(b, proc, metric);
    if (s == NULL) {
        s = new_block(b, proc, metric);
        if (s == NULL)
            return -ENOMEM;
    }
    int rc = reserve_samples(s, s->n + 1);
    if (rc != 0)
        return rc;
    s->t_ms[s->n] = t_ms;
    s->value[s->n] = value;
    s->n++;
    b->nsamples++;
    return 0;
}

int apm_batch_append_diff(struct apm_batch *b, uint32_t proc, uint32_t nsites,
                          struct apm_trace_diff **out)
{
    if (proc >= b->nprocs || nsites > 65535u)
        return -EINVAL;
    if (b->ndiffs == b->diffs_cap) {
        uint32_t cap = b->diffs_cap ? b->diffs_cap * 2 : 4;
        struct apm_trace_diff *nd = realloc(b->diffs, cap * sizeof(*nd));
        if (nd == NULL)
            return -ENOMEM;
        b->diffs = nd;
        b->diffs_cap = cap;
    }
    struct apm_site_stat *sites = calloc(nsites ? nsites : 1, sizeof(*sites));
    if (sites == NULL)
        return -ENOMEM;
    struct apm_trace_diff *d = &b->diffs[b->ndiffs++];
    memset(d, 0, sizeof(*d));
    d->proc = proc;
    d->nsites = nsites;
    d->sites = sites;
    *out = d;
    return 0;
}

int apm_site_set(struct apm_site_stat *s, const char *file, uint32_t line, uint32_t nframes)
{
    if (nframes > APM_SITE_FRAMES_MAX || s->file != NULL)
        return -EINVAL;
    s->file = dup_or_empty(file);
    if (s->file == NULL)
        return -ENOMEM;
    s->line = line;
    if (nframes > 0) {
        s->frames = calloc(nframes, sizeof(*s->frames));
        if (s->frames == NULL)
            return -ENOMEM;
        s->nframes = nframes;
    }
    return 0;
}

int apm_site_set_frame(struct apm_site_stat *s, uint32_t i, const char *file, uint32_t line)
{
    if (i >= s->nframes || s->frames[i].file != NULL)
        return -EINVAL;
    s->frames[i].file = dup_or_empty(file);
    if (s->frames[i].file == NULL)
        return -ENOMEM;
    s->frames[i].line = line;
    return 0;
}

int apm_batch_add_gc(struct apm_batch *b, const struct apm_gc_stats *g)
{
    if (g->proc >= b->nprocs || g->ngen > APM_GC_GENERATIONS_MAX)
        return -EINVAL;
    if (b->ngc == b->gc_cap) {
        uint32_t cap = b->gc_cap ? b->gc_cap * 2 : 4;
        struct apm_gc_stats *ng = realloc(b->gc, cap * sizeof(*ng));
        if (ng == NULL)
            return -ENOMEM;
        b->gc = ng;
        b->gc_cap = cap;
    }
    b->gc[b->ngc++] = *g;
    return 0;
}

bool apm_batch_has_data(const struct apm_batch *b)
{
    return b->nsamples > 0 || b->ndiffs > 0 || b->ngc > 0;
}

const enum apm_metric apm_gc_metrics[APM_GC_METRICS] = {
    APM_METRIC_GC_COLLECTIONS, APM_METRIC_GC_COLLECTED, APM_METRIC_GC_UNCOLLECTABLE,
    APM_METRIC_GC_GARBAGE};

void apm_gc_totals(const struct apm_gc_stats *g, int64_t out[APM_GC_METRICS])
{
    out[0] = out[1] = out[2] = 0;
    out[3] = g->garbage;
    for (uint32_t i = 0; i < g->ngen && i < APM_GC_GENERATIONS_MAX; i++) {
        out[0] += g->gen[i].collections;
        out[1] += g->gen[i].collected;
        out[2] += g->gen[i].uncollectable;
    }
}
