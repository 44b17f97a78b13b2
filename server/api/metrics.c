/*
 * GET /metrics. Three passes, each short: the series index (the latest value
 * of every live process's and host's memory series), the stored verdicts, and
 * the firing alerts; then the counters registry. Rows are collected first and
 * written after, sorted by family, because the text format wants every sample
 * of a family together under its HELP and TYPE lines.
 */
#include "server/api/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/analysis/analysis.h"
#include "common/base/error.h"
#include "common/wire/prom.h"
#include "common/base/timeutil.h"
#include "common/base/units.h"
#include "server/store/store_verdict.h"

/* The latest value of one live series. */
struct gauge {
    const char *family; /* apm_prom_metric_name */
    enum apm_metric metric;
    char *host, *process, *name; /* owned; process "" for a host's series */
    int32_t pid;
    double value;
};

/* What the verdict families say of one live process. */
struct verdict {
    char host[APM_VERDICT_HOST_MAX];
    char process[APM_VERDICT_PROCESS_MAX];
    char name[APM_VERDICT_NAME_MAX];
    int32_t pid;
    struct apm_verdict v;
};

/* A live host's agent. */
struct agent {
    char *host, *agent_id, *version;
    double last_seen;
};

/* One counter of one agent's latest health report. */
struct health_row {
    char family[APM_HEALTH_NAME_MAX + 16]; /* apm_agent_<name>[_total] */
    bool gauge;
    char *agent_id, *host; /* owned */
    double value;
};

struct scrape {
    const struct apm_metrics_config *cfg;
    int64_t now_ms;
    int64_t live_from_ms; /* a sample at or after this is live */
    struct gauge *g;
    size_t ng, capg;
    struct verdict *v;
    size_t nv, capv;
    struct agent *a;
    size_t na, capa;
    struct health_row *h;
    size_t nh, caph;
    char **firing; /* process ids with a firing alert, sorted */
    size_t nfiring;
    char **silenced; /* process ids with a firing alert a silence mutes, sorted */
    size_t nsilenced;
    bool oom;
};

/* Makes room for one more element of size bytes in *arr. Returns 0 or -ENOMEM. */
static int grow(void **arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, c * size);
    if (p == NULL)
        return -ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s != NULL ? s : "");
}

static int series_row(void *ctx, const struct apm_series_info *s)
{
    struct scrape *sc = ctx;
    const char *family = apm_prom_metric_name(s->metric);
    if (family == NULL || s->last_ms < sc->live_from_ms)
        return 0;
    if (grow((void **)&sc->g, sc->ng, &sc->capg, sizeof(*sc->g)) != 0) {
        sc->oom = true;
        return 1;
    }
    struct gauge *g = &sc->g[sc->ng];
    *g = (struct gauge){.family = family,
                        .metric = s->metric,
                        .host = dup_or_empty(s->host),
                        .process = dup_or_empty(s->process_id),
                        .name = dup_or_empty(s->process_name),
                        .pid = s->pid,
                        .value = (double)s->last_value};
    sc->ng++;
    if (g->host == NULL || g->process == NULL || g->name == NULL) {
        sc->oom = true;
        return 1;
    }
    return 0;
}

static int verdict_row(void *ctx, const struct apm_verdict_record *r)
{
    struct scrape *sc = ctx;
    /* The process's verdict is its rss series' (the one the analysis judges for leaks). */
    if (r->metric != APM_METRIC_RSS || r->process_id[0] == '\0' ||
        r->evaluated_at * 1000.0 < (double)sc->live_from_ms)
        return 0;
    if (grow((void **)&sc->v, sc->nv, &sc->capv, sizeof(*sc->v)) != 0) {
        sc->oom = true;
        return 1;
    }
    struct verdict *v = &sc->v[sc->nv++];
    memcpy(v->host, r->host, sizeof(v->host));
    memcpy(v->process, r->process_id, sizeof(v->process));
    memcpy(v->name, r->name, sizeof(v->name));
    v->pid = r->pid;
    v->v = r->v;
    return 0;
}

static int host_row(void *ctx, const struct apm_host_info *h)
{
    struct scrape *sc = ctx;
    if (h->last_seen_ms < sc->live_from_ms)
        return 0;
    if (grow((void **)&sc->a, sc->na, &sc->capa, sizeof(*sc->a)) != 0) {
        sc->oom = true;
        return 1;
    }
    struct agent *a = &sc->a[sc->na++];
    a->host = dup_or_empty(h->host);
    a->agent_id = dup_or_empty(h->agent_id);
    a->version = dup_or_empty(h->version);
    a->last_seen = (double)h->last_seen_ms / 1000.0;
    if (a->host == NULL || a->agent_id == NULL || a->version == NULL) {
        sc->oom = true;
        return 1;
    }
    return 0;
}

static void health_agent(void *ctx, const char *agent_id, const char *host,
                         const struct apm_health *h)
{
    struct scrape *sc = ctx;
    for (uint32_t i = 0; i < h->n && !sc->oom; i++) {
        struct apm_counter c = {.name = h->c[i].name,
                                .kind = h->c[i].gauge ? APM_COUNTER_GAUGE : APM_COUNTER_TOTAL,
                                .unit = ""};
        if (grow((void **)&sc->h, sc->nh, &sc->caph, sizeof(*sc->h)) != 0) {
            sc->oom = true;
            return;
        }
        struct health_row *r = &sc->h[sc->nh];
        /* Names were checked at decode ([a-z0-9_]): this cannot fail, but a bad one is skipped. */
        if (apm_prom_counter_name(r->family, sizeof(r->family), "agent", &c) != 0)
            continue;
        r->gauge = h->c[i].gauge;
        r->value = (double)h->c[i].value;
        r->agent_id = strdup(agent_id);
        r->host = strdup(host);
        sc->nh++;
        sc->oom = r->agent_id == NULL || r->host == NULL;
    }
}

static int compare_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the process ids of the firing alerts, sorted for lookups. */
static int read_firing(struct scrape *sc)
{
    if (sc->cfg->alerts == NULL)
        return 0;
    size_t n = apm_alerts_list(sc->cfg->alerts, APM_FILTER_FIRING, NULL, 0);
    if (n == 0)
        return 0;
    struct apm_alert *list = calloc(n, sizeof(*list));
    sc->firing = calloc(n, sizeof(*sc->firing));
    sc->silenced = calloc(n, sizeof(*sc->silenced));
    if (list == NULL || sc->firing == NULL || sc->silenced == NULL) {
        free(list);
        return -ENOMEM;
    }
    /* More may fire between the two calls: take what fits. */
    size_t got = apm_alerts_list(sc->cfg->alerts, APM_FILTER_FIRING, list, n);
    int rc = 0;
    for (size_t i = 0; i < got && i < n && rc == 0; i++) {
        if (list[i].process_id[0] == '\0')
            continue;
        sc->firing[sc->nfiring] = strdup(list[i].process_id);
        rc = sc->firing[sc->nfiring] != NULL ? 0 : -ENOMEM;
        sc->nfiring += rc == 0;
        if (rc == 0 && list[i].silenced_by != 0) {
            sc->silenced[sc->nsilenced] = strdup(list[i].process_id);
            rc = sc->silenced[sc->nsilenced] != NULL ? 0 : -ENOMEM;
            sc->nsilenced += rc == 0;
        }
    }
    free(list);
    qsort(sc->firing, sc->nfiring, sizeof(*sc->firing), compare_str);
    qsort(sc->silenced, sc->nsilenced, sizeof(*sc->silenced), compare_str);
    return rc;
}

/* Whether process is in ids[0..n) (sorted). */
static bool listed(char *const *ids, size_t n, const char *process)
{
    return n > 0 && bsearch(&process, ids, n, sizeof(*ids), compare_str) != NULL;
}

static void scrape_free(struct scrape *sc)
{
    for (size_t i = 0; i < sc->ng; i++) {
        free(sc->g[i].host);
        free(sc->g[i].process);
        free(sc->g[i].name);
    }
    for (size_t i = 0; i < sc->na; i++) {
        free(sc->a[i].host);
        free(sc->a[i].agent_id);
        free(sc->a[i].version);
    }
    for (size_t i = 0; i < sc->nfiring; i++)
        free(sc->firing[i]);
    for (size_t i = 0; i < sc->nsilenced; i++)
        free(sc->silenced[i]);
    for (size_t i = 0; i < sc->nh; i++) {
        free(sc->h[i].agent_id);
        free(sc->h[i].host);
    }
    free(sc->h);
    free(sc->g);
    free(sc->v);
    free(sc->a);
    free(sc->firing);
    free(sc->silenced);
}

/* By family, then host and process, so a family's samples come together in a stable order. */
static int compare_gauge(const void *pa, const void *pb)
{
    const struct gauge *a = pa, *b = pb;
    int c = strcmp(a->family, b->family);
    if (c == 0)
        c = strcmp(a->host, b->host);
    if (c == 0)
        c = strcmp(a->process, b->process);
    return c;
}

static void write_gauges(FILE *f, const struct scrape *sc)
{
    for (size_t i = 0; i < sc->ng; i++) {
        const struct gauge *g = &sc->g[i];
        if (i == 0 || strcmp(g->family, sc->g[i - 1].family) != 0) {
            char help[128];
            bool host = g->process[0] == '\0';
            snprintf(help, sizeof(help), "The last %s sample of each live %s, in %s.",
                     apm_metric_name(g->metric), host ? "host" : "process",
                     apm_units_name(apm_metric_unit(g->metric)));
            apm_prom_family(f, g->family, "gauge", help);
        }
        if (g->process[0] == '\0') {
            struct apm_prom_label l = {"host", g->host};
            apm_prom_sample(f, g->family, &l, 1, g->value);
            continue;
        }
        struct apm_prom_process_labels pl;
        size_t n = apm_prom_process_labels(&pl, g->host, g->process, g->name, g->pid);
        apm_prom_sample(f, g->family, pl.l, n, g->value);
    }
}

static void write_verdicts(FILE *f, const struct scrape *sc)
{
    struct apm_prom_process_labels pl;
    apm_prom_family(f, APM_PROM_VERDICT_INFO, "gauge",
                    "The analysis verdict of each live process: 1, with the class as a label "
                    "(leak, growing, bloat, sawtooth, warmup, stable).");
    for (size_t i = 0; i < sc->nv; i++) {
        const struct verdict *v = &sc->v[i];
        struct apm_prom_label l[APM_PROM_PROCESS_NLABELS + 1];
        size_t n = apm_prom_process_labels(&pl, v->host, v->process, v->name, v->pid);
        /* "class" sorts before "host": it goes first, keeping the labels sorted. */
        l[0] = (struct apm_prom_label){"class", apm_analysis_class_name(v->v.cls)};
        memcpy(&l[1], pl.l, n * sizeof(pl.l[0]));
        apm_prom_sample(f, APM_PROM_VERDICT_INFO, l, n + 1, 1);
    }
    double now_s = (double)sc->now_ms / 1000.0;
    for (size_t k = 0; k < APM_PROM_VERDICT_NFAMILIES; k++) {
        const struct apm_prom_verdict_family *fam = &apm_prom_verdict_families[k];
        apm_prom_family(f, fam->name, "gauge", fam->help);
        for (size_t i = 0; i < sc->nv; i++) {
            const struct verdict *v = &sc->v[i];
            double value = 0;
            if (!apm_prom_verdict_value(&v->v, now_s, k, &value))
                continue;
            size_t n = apm_prom_process_labels(&pl, v->host, v->process, v->name, v->pid);
            apm_prom_sample(f, fam->name, pl.l, n, value);
        }
    }
}

/* One 0-or-1 gauge for every live process (from its rss series): is it in ids[0..n)? */
static void write_alert_family(FILE *f, const struct scrape *sc, const char *name, const char *help,
                               char *const *ids, size_t nids)
{
    apm_prom_family(f, name, "gauge", help);
    for (size_t i = 0; i < sc->ng; i++) {
        const struct gauge *g = &sc->g[i];
        if (g->metric != APM_METRIC_RSS || g->process[0] == '\0')
            continue;
        struct apm_prom_process_labels pl;
        size_t n = apm_prom_process_labels(&pl, g->host, g->process, g->name, g->pid);
        apm_prom_sample(f, name, pl.l, n, listed(ids, nids, g->process) ? 1 : 0);
    }
}

/* apm_alert_firing and apm_alert_silenced for every live process. */
static void write_alerts(FILE *f, const struct scrape *sc)
{
    write_alert_family(f, sc, APM_PROM_ALERT_FIRING,
                       "1 while an alert fires for the live process, else 0.", sc->firing,
                       sc->nfiring);
    write_alert_family(f, sc, "apm_alert_silenced",
                       "1 while a firing alert of the live process is silenced, else 0.",
                       sc->silenced, sc->nsilenced);
}

static void write_agents(FILE *f, const struct scrape *sc)
{
    apm_prom_family(f, "apm_agent_last_report_timestamp_seconds", "gauge",
                    "When the agent of each live host last reported, Unix seconds.");
    for (size_t i = 0; i < sc->na; i++) {
        const struct agent *a = &sc->a[i];
        struct apm_prom_label l[] = {
            {"agent_id", a->agent_id}, {"host", a->host}, {"version", a->version}};
        apm_prom_sample(f, "apm_agent_last_report_timestamp_seconds", l, 3, a->last_seen);
    }
}

static int compare_health(const void *pa, const void *pb)
{
    const struct health_row *a = pa, *b = pb;
    int c = strcmp(a->family, b->family);
    return c != 0 ? c : strcmp(a->agent_id, b->agent_id);
}

/*
 * The agents' own counters, one family per name. A name reported as a gauge
 * by one agent and a counter by another keeps the kind of the first (sorted)
 * row; the others are left out rather than mixing types in a family.
 */
static void write_health(FILE *f, struct scrape *sc)
{
    if (sc->nh > 1)
        qsort(sc->h, sc->nh, sizeof(*sc->h), compare_health);
    bool gauge = false;
    for (size_t i = 0; i < sc->nh; i++) {
        const struct health_row *r = &sc->h[i];
        if (i == 0 || strcmp(r->family, sc->h[i - 1].family) != 0) {
            gauge = r->gauge;
            apm_prom_family(f, r->family, gauge ? "gauge" : "counter",
                            "A health counter of the agent, as it last reported it.");
        }
        if (r->gauge != gauge)
            continue;
        struct apm_prom_label l[] = {{"agent_id", r->agent_id}, {"host", r->host}};
        apm_prom_sample(f, r->family, l, 2, r->value);
    }
}

struct counters_out {
    FILE *f;
    unsigned failed; /* groups whose read failed */
    unsigned skipped;
};

static void write_group(void *ctx, const struct apm_counter_group *g, int rc, const void *stats)
{
    struct counters_out *co = ctx;
    if (rc != 0) {
        co->failed++;
        return;
    }
    for (const struct apm_counter *c = g->counters; c->name != NULL; c++) {
        char name[128];
        if (apm_prom_counter_name(name, sizeof(name), g->module, c) != 0) {
            co->skipped++;
            continue;
        }
        if (c->kind == APM_COUNTER_HISTOGRAM) {
            struct apm_histogram h;
            apm_counter_histogram(c, stats, &h);
            apm_prom_family(co->f, name, "histogram", c->help);
            apm_prom_histogram(co->f, name, NULL, 0, &h);
            continue;
        }
        apm_prom_family(co->f, name, c->kind == APM_COUNTER_TOTAL ? "counter" : "gauge", c->help);
        apm_prom_sample(co->f, name, NULL, 0,
                        (double)apm_counter_value(c, stats) * apm_prom_counter_scale(c));
    }
}

static void write_counters(FILE *f, const struct apm_counters *counters)
{
    struct counters_out co = {.f = f};
    if (counters != NULL)
        apm_counters_walk(counters, write_group, &co);
    apm_prom_family(f, "apm_metrics_unreadable_groups", "gauge",
                    "Counter groups that could not be read for this scrape (their families are "
                    "absent).");
    apm_prom_sample(f, "apm_metrics_unreadable_groups", NULL, 0, co.failed);
    apm_prom_family(f, "apm_metrics_invalid_names", "gauge",
                    "Counters left out of this scrape for a name that is not a valid metric name.");
    apm_prom_sample(f, "apm_metrics_invalid_names", NULL, 0, co.skipped);
    struct apm_prom_label l[] = {{"commit", APM_GIT_COMMIT}, {"version", APM_VERSION}};
    apm_prom_family(f, "apm_collector_info", "gauge", "The collector's version and commit: 1.");
    apm_prom_sample(f, "apm_collector_info", l, 2, 1);
}

int apm_metrics_render(const struct apm_metrics_config *cfg, int64_t now_ms, char **text,
                       size_t *len)
{
    struct scrape sc = {
        .cfg = cfg, .now_ms = now_ms, .live_from_ms = now_ms - cfg->process_grace_ms};
    *text = NULL;
    *len = 0;
    int rc = apm_store_list_series(cfg->store, &(struct apm_series_filter){0}, series_row, &sc);
    if (rc == 0 && !sc.oom)
        rc = apm_store_verdict_list(cfg->store, verdict_row, &sc);
    if (rc == 0 && !sc.oom)
        rc = apm_store_list_hosts(cfg->store, host_row, &sc);
    if (rc == 0 && !sc.oom)
        rc = read_firing(&sc);
    if (rc == 0 && cfg->health != NULL)
        apm_agent_health_walk(cfg->health, now_ms, health_agent, &sc);
    if (rc == 0 && sc.oom)
        rc = -ENOMEM;
    if (rc != 0) {
        scrape_free(&sc);
        return rc;
    }
    if (sc.ng > 1)
        qsort(sc.g, sc.ng, sizeof(*sc.g), compare_gauge);
    FILE *f = open_memstream(text, len);
    if (f == NULL) {
        scrape_free(&sc);
        return -ENOMEM;
    }
    write_gauges(f, &sc);
    write_verdicts(f, &sc);
    write_alerts(f, &sc);
    write_agents(f, &sc);
    write_health(f, &sc);
    write_counters(f, cfg->counters);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(*text);
        *text = NULL;
        *len = 0;
        rc = -ENOMEM;
    }
    scrape_free(&sc);
    return rc;
}

/* A short plain-text error answer (owned), or NULL. */
static char *error_text(const char *fmt, const char *arg, size_t *len)
{
    char *s = NULL;
    int n = asprintf(&s, fmt, arg);
    *len = n > 0 ? (size_t)n : 0;
    return n > 0 ? s : NULL;
}

int apm_metrics_handle(void *ctx, const struct apm_http_request *req, char **body, size_t *len,
                       const char **content_type)
{
    const struct apm_metrics_config *cfg = ctx;
    *content_type = "text/plain; charset=utf-8";
    if (req->query[0] != '\0') {
        *body = error_text("%s", "/metrics takes no parameters\n", len);
        return 400;
    }
    int rc = apm_metrics_render(cfg, apm_now_ms(), body, len);
    if (rc != 0) {
        *body = error_text("cannot render /metrics: %s\n", apm_strerror(rc), len);
        return 500;
    }
    *content_type = APM_PROM_CONTENT_TYPE;
    return 200;
}
