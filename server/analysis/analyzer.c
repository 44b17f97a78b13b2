/*
 * Live analysis of committed samples. Each analysed series has a state with
 * its apm_analysis, its latest verdict record and what was last persisted;
 * a hash map finds it by the store's series key (host, process id, metric),
 * and a list of every state lets the idle sweep run without the map. A
 * verdict is persisted when its judgement (class, confidence, rate,
 * forecast) changes, which the library does only when a bucket closes, so
 * the store sees a fraction of the sample rate.
 */
#include "server/analysis/analyzer.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/mem.h"

#define DEFAULT_IDLE_S 3600.0
/* Series forgotten in one sweep worth returning memory to the kernel for. */
#define SWEEP_RELEASE_MIN 256u
/* Most stored samples replayed into a new series. */
#define WARM_MAX_SAMPLES 4096u
/* A process at this share of its limit or above is "at its limit". */
#define AT_LIMIT 0.9
/* A process that starts within this long after one of its name and cgroup was last seen at its
 * limit replaces it (systemd restarts within seconds; its back-off stays under a minute). */
#define RESTART_WINDOW_S 300.0
/* Most (host, name, cgroup) entries remembered at their limit before the memory starts over. */
#define AT_LIMIT_MAX 100000u
#define PLACE_MAX (APM_VERDICT_HOST_MAX + APM_VERDICT_NAME_MAX + APM_ANALYZER_CGROUP_MAX)

struct aseries {
    struct aseries *prev, *next; /* every series */
    struct aseries *next_dirty;
    struct apm_analysis *an;
    struct apm_verdict_record rec;
    char cgroup[APM_ANALYZER_CGROUP_MAX]; /* told to the alert rules, not stored */
    double interval_s;                    /* likewise */
    struct apm_verdict stored;            /* the judgement last persisted */
    double cgroup_limit;                  /* the process's last cgroup_limit, 0 = none */
    double trace_at;                      /* sample time of the last trace request, 0 = never */
    double last_t;                        /* time of the last sample fed, seconds; 0 = none */
    bool episode;                         /* a trace was asked for in the current leak episode */
    bool dirty;
    char key[APM_STORE_KEY_MAX];
    size_t klen;
};

struct apm_analyzer {
    struct apm_store *store;
    struct apm_analyzer_options opt;
    apm_analyzer_trace_fn trace_fn;
    void *trace_ctx;
    struct apm_hashmap index;    /* series key -> struct aseries * */
    struct apm_hashmap hosts;    /* host -> mem_total bytes */
    struct apm_hashmap at_limit; /* host, name, cgroup -> last sample time at the limit (bits) */
    struct aseries *all;
    struct aseries *dirty;
    double newest_t; /* the latest sample time seen, seconds */
    struct apm_analyzer_stats stats;
};

void apm_analyzer_options_init(struct apm_analyzer_options *o)
{
    memset(o, 0, sizeof(*o));
    apm_analysis_config_init(&o->analysis);
    o->trace_window_s = 20 * 60;
    o->trace_confidence = 0.6;
    o->idle_s = DEFAULT_IDLE_S;
    o->max_series = APM_ANALYZER_DEFAULT_MAX_SERIES;
}

int apm_analyzer_new(struct apm_store *store, const struct apm_analyzer_options *opt,
                     apm_analyzer_trace_fn fn, void *ctx, struct apm_analyzer **out)
{
    struct apm_analyzer_options o;
    if (opt != NULL)
        o = *opt;
    else
        apm_analyzer_options_init(&o);
    if (o.idle_s <= 0)
        o.idle_s = DEFAULT_IDLE_S;
    if (o.max_series == 0)
        o.max_series = APM_ANALYZER_DEFAULT_MAX_SERIES;
    /* Validate the analysis configuration once, here, rather than per series. */
    struct apm_analysis *probe = NULL;
    int rc = apm_analysis_new(&o.analysis, &probe);
    if (rc < 0)
        return rc;
    apm_analysis_free(probe);
    struct apm_analyzer *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->store = store;
    a->opt = o;
    a->trace_fn = fn;
    a->trace_ctx = ctx;
    apm_hashmap_init(&a->index);
    apm_hashmap_init(&a->hosts);
    apm_hashmap_init(&a->at_limit);
    *out = a;
    return 0;
}

static void series_free(struct aseries *s)
{
    apm_analysis_free(s->an);
    free(s);
}

void apm_analyzer_free(struct apm_analyzer *a)
{
    if (a == NULL)
        return;
    struct aseries *next;
    for (struct aseries *s = a->all; s != NULL; s = next) {
        next = s->next;
        series_free(s);
    }
    apm_hashmap_close(&a->index);
    apm_hashmap_close(&a->hosts);
    apm_hashmap_close(&a->at_limit);
    free(a);
}

static double host_total(const struct apm_analyzer *a, const char *host)
{
    uint64_t bits;
    double v = 0;
    if (apm_hashmap_get(&a->hosts, host, strlen(host), &bits) == 0)
        memcpy(&v, &bits, sizeof(v));
    return v;
}

/*
 * The limit a process's memory runs into: its cgroup limit when it has one
 * below host memory (a larger one cannot be reached first), else the
 * configured limit, else the host's memory.
 */
static double choose_limit(const struct apm_analyzer *a, const struct aseries *s,
                           enum apm_limit_source *src)
{
    double host = host_total(a, s->rec.host);
    if (s->cgroup_limit > 0 && (host <= 0 || s->cgroup_limit < host)) {
        *src = APM_LIMIT_CGROUP;
        return s->cgroup_limit;
    }
    if (a->opt.memory_limit > 0) {
        *src = APM_LIMIT_CONFIGURED;
        return (double)a->opt.memory_limit;
    }
    *src = host > 0 ? APM_LIMIT_HOST : APM_LIMIT_NONE;
    return host;
}

struct warm {
    struct apm_analysis *an;
    double limit;
    uint64_t n;
};

static int warm_sample(void *ctx, int64_t t_ms, int64_t value)
{
    struct warm *w = ctx;
    if (apm_analysis_add(w->an, (double)t_ms / 1000.0, (double)value, w->limit) == 0)
        w->n++;
    return 0;
}

struct span {
    int64_t first_ms, last_ms;
    uint64_t n;
};

static int series_span(void *ctx, const struct apm_series_info *info)
{
    struct span *sp = ctx;
    sp->first_ms = info->first_ms;
    sp->last_ms = info->last_ms;
    sp->n = info->nsamples;
    return 1;
}

static int warm_point(void *ctx, int64_t t_ms, double value)
{
    struct warm *w = ctx;
    if (apm_analysis_add(w->an, (double)t_ms / 1000.0, value, w->limit) == 0)
        w->n++;
    return 0;
}

/* Notes the first sample's time and stops. */
static int first_sample(void *ctx, int64_t t_ms, int64_t value)
{
    struct span *sp = ctx;
    (void)value;
    sp->first_ms = t_ms;
    sp->n = 1;
    return 1;
}

/*
 * Replays the series' recent stored samples older than before_ms, so that a
 * restarted collector (or a series first seen mid-life) judges from history
 * rather than from nothing. Reads at most about WARM_MAX_SAMPLES samples.
 */
static void warm_up(struct apm_analyzer *a, struct aseries *s, int64_t before_ms, double limit)
{
    struct span sp = {0};
    if (apm_store_get_series(a->store, s->rec.series_id, series_span, &sp) != 0 || sp.n < 2 ||
        sp.first_ms >= before_ms)
        return;
    double interval = (double)(sp.last_ms - sp.first_ms) / (double)(sp.n - 1);
    s->interval_s = interval / 1000.0;
    int64_t from = before_ms - (int64_t)(interval * WARM_MAX_SAMPLES);
    struct warm w = {s->an, limit, 0};
    /*
     * Raw samples past the store's retention are only in its rollups: the
     * part of the window before the oldest raw sample is replayed from them,
     * one point (the mean) per rollup bucket, then the raw samples.
     */
    struct span raw = {0};
    int rc =
        apm_store_read_samples(a->store, s->rec.series_id, from, before_ms - 1, first_sample, &raw);
    int64_t raw_from = raw.n > 0 ? raw.first_ms : before_ms;
    int64_t step = interval < 60000 ? 60000 : 3600000;
    int64_t whole = raw_from / step * step; /* a bucket with raw samples in it is left out */
    if (rc == 0 && whole > from && sp.first_ms < whole)
        rc = apm_store_read_steps(a->store, s->rec.series_id, from, whole - 1, step, APM_AGG_MEAN,
                                  warm_point, &w, NULL);
    if (rc == 0 && raw.n > 0)
        rc = apm_store_read_samples(a->store, s->rec.series_id, raw_from, before_ms - 1,
                                    warm_sample, &w);
    if (rc != 0)
        a->stats.store_errors++;
    if (w.n > 0) {
        a->stats.warmed++;
        a->stats.samples += w.n;
    }
}

/* Looks up the store's id of s; 0 while the store does not know it. */
static void resolve_id(struct apm_analyzer *a, struct aseries *s)
{
    if (a->store == NULL || s->rec.series_id != 0)
        return;
    uint64_t id = 0;
    int rc =
        apm_store_find_series(a->store, s->rec.host, s->rec.process_id, s->rec.metric, NULL, &id);
    if (rc == 0)
        s->rec.series_id = id;
    else if (rc != APM_E_NOTFOUND)
        a->stats.store_errors++;
}

/* The key of a service's place on a host: host, name and cgroup, NUL-separated. */
static size_t place_key(char *key, const char *host, const char *name, const char *cgroup)
{
    int n =
        snprintf(key, PLACE_MAX, "%s%c%s%c%s", host, 0, name ? name : "", 0, cgroup ? cgroup : "");
    return n < 0 ? 0 : (size_t)n < PLACE_MAX ? (size_t)n : PLACE_MAX - 1;
}

/* Remembers that the series' process was at its limit at its last sample. */
static void note_at_limit(struct apm_analyzer *a, const struct aseries *s, double limit)
{
    if (limit <= 0 || s->rec.value < AT_LIMIT * limit)
        return;
    char key[PLACE_MAX];
    size_t klen = place_key(key, s->rec.host, s->rec.name, s->cgroup);
    if (a->at_limit.len >= AT_LIMIT_MAX) {
        apm_hashmap_close(&a->at_limit);
        apm_hashmap_init(&a->at_limit);
    }
    uint64_t bits;
    memcpy(&bits, &s->last_t, sizeof(bits));
    (void)apm_hashmap_put(&a->at_limit, key, klen, bits); /* out of memory: not remembered */
}

/*
 * True when a process of the same name and cgroup on the host was last seen at its limit
 * before p started, and not long before: p replaces it.
 */
static bool replaces_one_at_limit(const struct apm_analyzer *a, const char *host,
                                  const struct apm_proc_desc *p)
{
    char key[PLACE_MAX];
    size_t klen = place_key(key, host, p->name, p->cgroup);
    uint64_t bits;
    if (apm_hashmap_get(&a->at_limit, key, klen, &bits) != 0)
        return false;
    double t;
    memcpy(&t, &bits, sizeof(t));
    double since = (double)p->start_ms / 1000.0 - t;
    return since >= 0 && since <= RESTART_WINDOW_S;
}

/* Returns 0 with *out, APM_E_LIMIT past max_series (counted) or -ENOMEM. */
static int series_new(struct apm_analyzer *a, const char *key, size_t klen, const char *host,
                      const char *process_id, const struct apm_proc_desc *p, enum apm_metric m,
                      struct aseries **out)
{
    if (a->stats.series >= a->opt.max_series) {
        if (a->stats.refused_series++ == 0)
            apm_warn("analyzer: more than %u series; the others are not analysed",
                     a->opt.max_series);
        return APM_E_LIMIT;
    }
    /* Each series its own phase: series that start together are not all judged on one round. */
    struct apm_analysis_config cfg = a->opt.analysis;
    cfg.phase = (unsigned)(apm_hash_bytes(key, klen) >> 32);
    cfg.after_exhaustion = replaces_one_at_limit(a, host, p);
    struct aseries *s = calloc(1, sizeof(*s));
    if (s == NULL || apm_analysis_new(&cfg, &s->an) < 0) {
        free(s);
        return -ENOMEM;
    }
    memcpy(s->key, key, klen);
    s->klen = klen;
    struct apm_verdict_record *r = &s->rec;
    r->metric = m;
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->process_id, sizeof(r->process_id), "%s", process_id);
    snprintf(r->name, sizeof(r->name), "%s", p->name ? p->name : "");
    r->pid = p->pid;
    r->start_ms = p->start_ms;
    r->restarted_at_limit = cfg.after_exhaustion;
    snprintf(s->cgroup, sizeof(s->cgroup), "%s", p->cgroup ? p->cgroup : "");
    if (apm_hashmap_put(&a->index, key, klen, (uint64_t)(uintptr_t)s) < 0) {
        series_free(s);
        return -ENOMEM;
    }
    s->next = a->all;
    if (a->all != NULL)
        a->all->prev = s;
    a->all = s;
    a->stats.series++;
    resolve_id(a, s);
    *out = s;
    return 0;
}

static bool same_time(double x, double y)
{
    return x == y || (isnan(x) && isnan(y));
}

static bool same_judgement(const struct apm_verdict *x, const struct apm_verdict *y)
{
    return x->cls == y->cls && x->alert == y->alert && x->has_forecast == y->has_forecast &&
           x->steady == y->steady && x->doubt == y->doubt &&
           same_time(x->growth_start_t, y->growth_start_t) &&
           same_time(x->doubt_until_t, y->doubt_until_t) && x->confidence == y->confidence &&
           x->rate == y->rate && x->limit == y->limit &&
           (!x->has_forecast ||
            (x->forecast_t == y->forecast_t && x->forecast_lo_t == y->forecast_lo_t &&
             x->forecast_hi_t == y->forecast_hi_t));
}

/*
 * Asks for a tracemalloc window once per episode of growth, not twice within
 * the window. A series that grows with no verdict yet is suspicious too: its
 * suspects then arrive while the analysis still weighs it, and the evidence
 * they bring (server/analysis/evidence.h) can confirm the leak sooner.
 */
static void check_suspicion(struct apm_analyzer *a, struct aseries *s)
{
    const struct apm_verdict *v = &s->rec.v;
    bool suspicious = (v->cls == APM_CLASS_LEAK && v->confidence >= a->opt.trace_confidence) ||
                      v->cls == APM_CLASS_GROWING;
    /* An episode lasts while the series grows: a verdict that wavers does not start another. */
    if (!suspicious) {
        if (!(isfinite(v->growth_start_t) || v->cls == APM_CLASS_LEAK))
            s->episode = false;
        return;
    }
    if (s->episode)
        return;
    /* A window asked for a moment ago (before the verdict wavered) covers this episode too. */
    s->episode = true;
    if (a->opt.trace_window_s <= 0 || s->rec.metric != APM_METRIC_RSS ||
        (s->trace_at > 0 && v->t_last - s->trace_at < a->opt.trace_window_s))
        return;
    s->trace_at = v->t_last;
    a->stats.trace_requests++;
    if (a->trace_fn == NULL)
        return;
    struct apm_analyzer_trace t = {
        .pid = s->rec.pid,
        .start_ms = s->rec.start_ms,
        .duration_s = (uint32_t)fmin(a->opt.trace_window_s, UINT32_MAX),
        .confidence = v->confidence,
        .cls = v->cls,
    };
    snprintf(t.host, sizeof(t.host), "%s", s->rec.host);
    snprintf(t.process_id, sizeof(t.process_id), "%s", s->rec.process_id);
    a->trace_fn(a->trace_ctx, &t);
}

/* Queues s's record for the next flush. */
static void mark_dirty(struct apm_analyzer *a, struct aseries *s)
{
    if (s->dirty)
        return;
    s->dirty = true;
    s->next_dirty = a->dirty;
    a->dirty = s;
}

static void feed_block(struct apm_analyzer *a, struct aseries *s,
                       const struct apm_series_block *blk, double limit, enum apm_limit_source src)
{
    for (uint32_t i = 0; i < blk->n; i++) {
        double t = (double)blk->t_ms[i] / 1000.0;
        if (apm_analysis_add(s->an, t, (double)blk->value[i], limit) == 0)
            a->stats.samples++;
        /* The sampling interval, smoothed over jitter: alert timings count in intervals. */
        double gap = t - s->last_t;
        if (s->last_t > 0 && gap > 0)
            s->interval_s = s->interval_s > 0 ? 0.8 * s->interval_s + 0.2 * gap : gap;
        s->last_t = t;
    }
    if (blk->n == 0)
        return;
    s->rec.value = (double)blk->value[blk->n - 1];
    s->rec.limit_source = src;
    note_at_limit(a, s, limit);
    apm_analysis_verdict(s->an, &s->rec.v);
    s->rec.evaluated_at = s->rec.v.t_last;
    if (s->rec.v.t_last > a->newest_t)
        a->newest_t = s->rec.v.t_last;
    if (!same_judgement(&s->rec.v, &s->stored))
        mark_dirty(a, s);
    check_suspicion(a, s);
    if (a->opt.verdict_fn != NULL) {
        struct apm_analyzer_verdict msg = {
            .rec = &s->rec, .cgroup = s->cgroup, .interval_s = s->interval_s};
        a->opt.verdict_fn(a->opt.verdict_ctx, &msg);
    }
}

/* Remembers the host's memory and each process's cgroup limit from b. */
static int read_limits(struct apm_analyzer *a, const char *host, const struct apm_batch *b,
                       double *cg)
{
    for (uint32_t i = 0; i < b->nseries; i++) {
        const struct apm_series_block *blk = &b->series[i];
        if (blk->n == 0)
            continue;
        double last = (double)blk->value[blk->n - 1];
        if (blk->metric == APM_METRIC_MEM_TOTAL && blk->proc == APM_PROC_HOST) {
            uint64_t bits;
            memcpy(&bits, &last, sizeof(bits));
            if (apm_hashmap_put(&a->hosts, host, strlen(host), bits) < 0)
                return -ENOMEM;
        } else if (blk->metric == APM_METRIC_CGROUP_LIMIT && blk->proc < b->nprocs) {
            cg[blk->proc] = last;
        }
    }
    return 0;
}

int apm_analyzer_feed(struct apm_analyzer *a, const char *host, const struct apm_batch *b)
{
    double *cg = calloc((size_t)b->nprocs + 1, sizeof(*cg));
    if (cg == NULL)
        return -ENOMEM;
    int rc = read_limits(a, host, b, cg);
    char key[APM_STORE_KEY_MAX], pid_id[APM_VERDICT_PROCESS_MAX];
    for (uint32_t i = 0; rc == 0 && i < b->nseries; i++) {
        const struct apm_series_block *blk = &b->series[i];
        /*
         * Every sample moves the clock that decides which series went silent,
         * analysed or not: when the analysis is full, only the samples of
         * series it refused show that the others stopped.
         */
        if (blk->n > 0 && (double)blk->t_ms[blk->n - 1] / 1000.0 > a->newest_t)
            a->newest_t = (double)blk->t_ms[blk->n - 1] / 1000.0;
        if (blk->metric != APM_METRIC_RSS || blk->proc >= b->nprocs || blk->n == 0)
            continue;
        const struct apm_proc_desc *p = &b->procs[blk->proc];
        apm_store_process_id(pid_id, sizeof(pid_id), host, p->pid, p->start_ms);
        size_t klen = apm_store_series_key(key, host, pid_id, blk->metric, NULL);
        uint64_t ptr;
        struct aseries *s = NULL;
        bool fresh = false;
        if (apm_hashmap_get(&a->index, key, klen, &ptr) == 0) {
            s = (struct aseries *)(uintptr_t)ptr;
        } else {
            int st = series_new(a, key, klen, host, pid_id, p, blk->metric, &s);
            if (st == -ENOMEM)
                rc = st;
            if (st < 0)
                continue;
            fresh = true;
        }
        if (cg[blk->proc] > 0)
            s->cgroup_limit = cg[blk->proc];
        /* A process may be moved to another cgroup, or renamed by its exec. */
        if (p->cgroup != NULL && strcmp(p->cgroup, s->cgroup) != 0)
            snprintf(s->cgroup, sizeof(s->cgroup), "%s", p->cgroup);
        if (p->name != NULL && p->name[0] != '\0' && strcmp(p->name, s->rec.name) != 0) {
            snprintf(s->rec.name, sizeof(s->rec.name), "%s", p->name);
            mark_dirty(a, s); /* the stored record names the process too */
        }
        enum apm_limit_source src = APM_LIMIT_NONE;
        double limit = choose_limit(a, s, &src);
        if (fresh && a->store != NULL && s->rec.series_id != 0)
            warm_up(a, s, blk->t_ms[0], limit);
        feed_block(a, s, blk, limit, src);
    }
    free(cg);
    return rc;
}

static void unlink_series(struct apm_analyzer *a, struct aseries *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        a->all = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    (void)apm_hashmap_del(&a->index, s->key, s->klen);
    a->stats.series--;
    a->stats.evicted++;
    series_free(s);
}

/* Forgets series that stopped (a process that exited); their records stay in the store. */
static void sweep_idle(struct apm_analyzer *a)
{
    struct aseries *next;
    size_t n = 0;
    for (struct aseries *s = a->all; s != NULL; s = next) {
        next = s->next;
        if (!s->dirty && a->newest_t - s->rec.v.t_last > a->opt.idle_s) {
            unlink_series(a, s);
            n++;
        }
    }
    /* A flood that ended leaves its pages in the allocator: give them back. */
    if (n >= SWEEP_RELEASE_MIN)
        apm_mem_release();
}

int apm_analyzer_flush(struct apm_analyzer *a)
{
    size_t n = 0;
    for (struct aseries *s = a->dirty; s != NULL; s = s->next_dirty)
        n++;
    int rc = 0;
    if (a->store != NULL && n > 0) {
        const struct apm_verdict_record **recs = malloc(n * sizeof(*recs));
        if (recs == NULL)
            return -ENOMEM;
        size_t k = 0;
        for (struct aseries *s = a->dirty; s != NULL; s = s->next_dirty) {
            resolve_id(a, s);
            if (s->rec.series_id != 0)
                recs[k++] = &s->rec;
        }
        rc = apm_store_verdict_put(a->store, recs, k);
        free(recs);
        if (rc < 0) {
            a->stats.store_errors++;
            return rc;
        }
        a->stats.verdicts_stored += k;
        rc = (int)k;
    }
    /* A series the store does not know yet stays dirty and is written next time. */
    struct aseries *next, *keep = NULL;
    for (struct aseries *s = a->dirty; s != NULL; s = next) {
        next = s->next_dirty;
        if (a->store != NULL && s->rec.series_id == 0) {
            s->next_dirty = keep;
            keep = s;
            continue;
        }
        s->next_dirty = NULL;
        s->dirty = false;
        s->stored = s->rec.v;
    }
    a->dirty = keep;
    sweep_idle(a);
    return rc;
}

int apm_analyzer_get(const struct apm_analyzer *a, const char *host, const char *process_id,
                     enum apm_metric metric, struct apm_verdict_record *out)
{
    char key[APM_STORE_KEY_MAX];
    size_t klen = apm_store_series_key(key, host, process_id, metric, NULL);
    uint64_t ptr;
    if (apm_hashmap_get(&a->index, key, klen, &ptr) != 0)
        return APM_E_NOTFOUND;
    *out = ((const struct aseries *)(uintptr_t)ptr)->rec;
    return 0;
}

void apm_analyzer_get_stats(const struct apm_analyzer *a, struct apm_analyzer_stats *out)
{
    *out = a->stats;
}
