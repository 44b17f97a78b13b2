#include "server/api/api.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/log.h"
#include "common/model.h"
#include "common/text.h"
#include "common/timeutil.h"
#include "common/token.h"
#include "common/units.h"
#include "server/api/web.h"

#define API_PREFIX "/api/v1/"
/* Longest decoded path segment or query value we accept. */
#define API_VALUE_MAX 512u

struct route {
    const char *method;
    const char *pattern;
    apm_api_route_fn fn;
    void *ctx;
};

/* A route answered outside /api/v1/ in its own format (GET /metrics). */
struct raw_route {
    const char *path;
    apm_api_raw_fn fn;
    void *ctx;
};

struct apm_api_stats {
    uint64_t requests;
    uint64_t errors;
    uint64_t unauthorized; /* write requests refused for a missing or wrong token */
};

struct apm_api {
    struct apm_store *store;
    const struct apm_counters *counters;
    apm_api_status_fn status_fn;
    apm_api_trace_fn trace_fn;
    void *status_ctx;           /* the ctx of status_fn and trace_fn */
    const uint8_t *write_token; /* NULL: write routes open */
    size_t write_token_len;
    int64_t process_grace_ms;
    int64_t started_ms;
    struct apm_api_stats stats;
    unsigned nroutes;
    struct route routes[APM_API_MAX_ROUTES];
    unsigned nraw;
    struct raw_route raw[APM_API_MAX_RAW_ROUTES];
};

static int get_status(const struct apm_api_call *call, json_t **out);
static void respond_json(struct apm_api *api, struct apm_http_conn *conn,
                         const struct apm_http_request *req, int status, json_t *obj);
static int get_hosts(const struct apm_api_call *call, json_t **out);
static int get_processes(const struct apm_api_call *call, json_t **out);
static int get_series(const struct apm_api_call *call, json_t **out);
static int get_samples(const struct apm_api_call *call, json_t **out);

/* The built-in routes; later endpoints join with apm_api_add_route(). */
static const struct route builtin_routes[] = {
    {"GET", "status", get_status, NULL},
    {"GET", "hosts", get_hosts, NULL},
    {"GET", "processes", get_processes, NULL},
    {"GET", "series", get_series, NULL},
    {"GET", "series/{}/samples", get_samples, NULL},
};

/* ------------------------------------------------------------------ */
/* Helpers shared by handlers                                          */
/* ------------------------------------------------------------------ */

int apm_api_error(json_t **out, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote what the client sent: keep them encodable and free of controls. */
    char clean[sizeof(msg)];
    apm_text_clean(clean, sizeof(clean), msg, strlen(msg));
    *out = json_pack("{s:s}", "error", clean);
    return *out ? status : 500;
}

json_t *apm_api_time(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

json_t *apm_api_str(struct apm_api_why *why, const char *field, const char *s)
{
    if (s == NULL)
        s = "";
    json_t *j = json_string(s);
    if (j == NULL && why->text[0] == '\0')
        snprintf(why->text, sizeof(why->text), "could not encode field '%s' as JSON: %s", field,
                 apm_text_utf8_valid(s, strlen(s)) ? "out of memory" : "not valid UTF-8");
    return j;
}

json_t *apm_api_str_or_null(struct apm_api_why *why, const char *field, const char *s)
{
    return (s != NULL && *s != '\0') ? apm_api_str(why, field, s) : json_null();
}

int apm_api_encode_error(json_t **out, const struct apm_api_why *why, const char *what)
{
    if (why->text[0] != '\0')
        return apm_api_error(out, 500, "%s", why->text);
    return apm_api_error(out, 500, "could not encode %s as JSON: out of memory", what);
}

/* Maps a store failure to an answer. */
static int store_error(json_t **out, int rc)
{
    if (rc == -ENOMEM)
        return apm_api_error(out, 500, "out of memory");
    return apm_api_error(out, 500, "store: %s", apm_strerror(rc));
}

struct param_check {
    const char *const *allowed;
    char bad[64];
};

static int check_one_param(void *ctx, const char *name, size_t len)
{
    struct param_check *pc = ctx;
    for (const char *const *a = pc->allowed; *a != NULL; a++) {
        if (strlen(*a) == len && memcmp(*a, name, len) == 0)
            return 0;
    }
    snprintf(pc->bad, sizeof(pc->bad), "%.*s", (int)(len > 40 ? 40 : len), name);
    return 1;
}

int apm_api_check_params(const struct apm_api_call *call, const char *const *allowed, json_t **out)
{
    if (allowed == NULL) {
        if (call->req->query[0] != '\0')
            return apm_api_error(out, 400, "this endpoint takes no parameters");
        return 0;
    }
    struct param_check pc = {.allowed = allowed, .bad = ""};
    if (apm_http_query_foreach(call->req->query, check_one_param, &pc) != 0)
        return apm_api_error(out, 400, "unknown parameter '%s'", pc.bad);
    return 0;
}

int apm_api_param_str(const struct apm_api_call *call, const char *name, char *buf, size_t size,
                      bool *present, json_t **out)
{
    int rc = apm_http_query_get(call->req->query, name, buf, size);
    *present = rc == 0;
    if (rc == 0 || rc == APM_E_NOTFOUND)
        return 0;
    if (rc == APM_E_LIMIT)
        return apm_api_error(out, 400, "parameter '%s' is too long", name);
    return apm_api_error(out, 400, "parameter '%s' is not properly encoded", name);
}

int apm_api_param_int(const struct apm_api_call *call, const char *name, long long min,
                      long long max, bool *present, long long *value, json_t **out)
{
    char buf[64];
    int st = apm_api_param_str(call, name, buf, sizeof(buf), present, out);
    if (st != 0 || !*present)
        return st;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (buf[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return apm_api_error(out, 400, "parameter '%s' must be an integer from %lld to %lld", name,
                             min, max);
    *value = v;
    return 0;
}

int apm_api_param_num(const struct apm_api_call *call, const char *name, double lo, double hi,
                      bool *present, double *value, json_t **out)
{
    char buf[64];
    int rc = apm_http_query_get(call->req->query, name, buf, sizeof(buf));
    *present = rc == 0;
    if (rc == APM_E_NOTFOUND)
        return 0;
    char *end = NULL;
    double d = rc == 0 ? strtod(buf, &end) : NAN;
    if (rc != 0 || end == buf || *end != '\0' || !isfinite(d) || d < lo || d > hi)
        return apm_api_error(out, 400, "parameter '%s' must be a number from %g to %g", name, lo,
                             hi);
    *value = d;
    return 0;
}

int apm_api_param_time(const struct apm_api_call *call, const char *name, bool *present,
                       int64_t *ms, json_t **out)
{
    char buf[64];
    int st = apm_api_param_str(call, name, buf, sizeof(buf), present, out);
    if (st != 0 || !*present)
        return st;
    char *end = NULL;
    double v = strtod(buf, &end);
    if (buf[0] == '\0' || *end != '\0' || !isfinite(v) || v < 0 || v > 9.0e12)
        return apm_api_error(out, 400, "parameter '%s' must be Unix seconds, e.g. 1700000000.5",
                             name);
    *ms = (int64_t)llround(v * 1000.0);
    return 0;
}

int apm_api_parse_id(const char *s, uint64_t *id)
{
    if (*s == '\0' || strlen(s) > 20)
        return APM_E_PARSE;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return APM_E_PARSE;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return APM_E_PARSE;
        v = v * 10 + d;
    }
    *id = v;
    return 0;
}

static int param_limit(const struct apm_api_call *call, unsigned *limit, json_t **out)
{
    bool present = false;
    long long v = APM_API_MAX_ITEMS;
    int st = apm_api_param_int(call, "limit", 1, APM_API_MAX_ITEMS, &present, &v, out);
    *limit = (unsigned)v;
    return st;
}

/*
 * Collects rows from a store listing into an array, up to a limit. A nonzero
 * return from the callbacks stops the listing (limit reached or no memory).
 */
struct collect {
    json_t *array;
    unsigned limit;
    bool truncated;
    bool failed; /* a row could not be encoded: why says which field, else memory */
    struct apm_api_why why;
};

static int collect_add(struct collect *c, json_t *item)
{
    if (json_array_size(c->array) >= c->limit) {
        json_decref(item);
        c->truncated = true;
        return 1;
    }
    if (item == NULL || json_array_append_new(c->array, item) != 0) {
        c->failed = true;
        return 1;
    }
    return 0;
}

/* Reads the route's limit and starts the array. Returns 0 or an error status with *out set. */
static int collect_begin(const struct apm_api_call *call, struct collect *c, json_t **out)
{
    int st = param_limit(call, &c->limit, out);
    if (st != 0)
        return st;
    c->array = json_array();
    return c->array != NULL ? 0 : apm_api_error(out, 500, "out of memory");
}

/* Wraps collected rows as {name: [...], "truncated": bool}. */
static int collect_finish(struct collect *c, int rc, const char *name, json_t **out)
{
    if (c->failed) {
        json_decref(c->array);
        return apm_api_encode_error(out, &c->why, name);
    }
    if (rc != 0) {
        json_decref(c->array);
        return store_error(out, rc);
    }
    *out = json_pack("{s:o, s:b}", name, c->array, "truncated", c->truncated);
    return *out ? 200 : apm_api_error(out, 500, "out of memory");
}

/* ------------------------------------------------------------------ */
/* Handlers                                                            */
/* ------------------------------------------------------------------ */

/* Adds one group's counters to the status object, as {"module": {"name": value, ...}}. */
static void counters_json(void *ctx, const struct apm_counter_group *g, int rc, const void *stats)
{
    json_t *o = json_object();
    if (rc != 0)
        json_object_set_new(o, "error", json_string(apm_strerror(rc)));
    for (const struct apm_counter *c = g->counters; rc == 0 && c->name != NULL; c++)
        json_object_set_new(o, c->name, json_integer((json_int_t)apm_counter_value(c, stats)));
    json_object_set_new(ctx, g->module, o);
}

static int get_status(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {NULL};
    int st = apm_api_check_params(call, allowed, out);
    if (st != 0)
        return st;
    struct apm_api *api = call->api;
    json_t *obj =
        json_pack("{s:s, s:s, s:o, s:o}", "version", APM_VERSION, "commit", APM_GIT_COMMIT, "time",
                  apm_api_time(apm_now_ms()), "started", apm_api_time(api->started_ms));
    if (obj == NULL)
        return apm_api_error(out, 500, "out of memory");
    if (api->counters != NULL)
        apm_counters_walk(api->counters, counters_json, obj);
    if (api->status_fn != NULL)
        api->status_fn(api->status_ctx, obj);
    *out = obj;
    return 200;
}

static int host_row(void *ctx, const struct apm_host_info *h)
{
    struct collect *c = ctx;
    struct apm_api_why *w = &c->why;
    json_t *o = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "host", apm_api_str(w, "host", h->host), "agent_id",
        apm_api_str_or_null(w, "agent_id", h->agent_id), "boot_id",
        apm_api_str_or_null(w, "boot_id", h->boot_id), "version",
        apm_api_str_or_null(w, "version", h->version), "first_seen", apm_api_time(h->first_seen_ms),
        "last_seen", apm_api_time(h->last_seen_ms), "processes", (json_int_t)h->nprocesses);
    return collect_add(c, o);
}

static int get_hosts(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {"limit", NULL};
    struct collect c = {0};
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = collect_begin(call, &c, out);
    if (st != 0)
        return st;
    int rc = apm_store_list_hosts(call->store, host_row, &c);
    return collect_finish(&c, rc, "hosts", out);
}

/* The processes listing: its rows, and which of them it keeps. */
struct process_page {
    struct collect c;
    int64_t live_from_ms; /* a process last seen at or after this is live */
    int want_live;        /* -1: every process; 0: only those no longer live; 1: only live */
};

static int process_row(void *ctx, const struct apm_process_info *p)
{
    struct process_page *pg = ctx;
    struct apm_api_why *w = &pg->c.why;
    bool live = p->last_seen_ms >= pg->live_from_ms;
    if (pg->want_live >= 0 && live != (pg->want_live == 1))
        return 0;
    json_t *o = json_pack(
        "{s:o, s:o, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "id",
        apm_api_str(w, "id", p->id), "host", apm_api_str(w, "host", p->host), "pid", (int)p->pid,
        "ppid", (int)p->ppid, "start_time", apm_api_time(p->start_ms), "name",
        apm_api_str(w, "name", p->name), "cmdline", apm_api_str(w, "cmdline", p->cmdline), "cgroup",
        apm_api_str(w, "cgroup", p->cgroup), "first_seen", apm_api_time(p->first_seen_ms),
        "last_seen", apm_api_time(p->last_seen_ms), "live", live);
    return collect_add(&pg->c, o);
}

/* The "live" parameter: true or false (also 1 or 0); absent: every process. */
static int param_live(const struct apm_api_call *call, int *want, json_t **out)
{
    char buf[8];
    bool present = false;
    int st = apm_api_param_str(call, "live", buf, sizeof(buf), &present, out);
    *want = -1;
    if (st != 0 || !present)
        return st;
    if (strcmp(buf, "true") == 0 || strcmp(buf, "1") == 0)
        *want = 1;
    else if (strcmp(buf, "false") == 0 || strcmp(buf, "0") == 0)
        *want = 0;
    else
        return apm_api_error(out, 400, "parameter 'live' must be true or false");
    return 0;
}

static int get_processes(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {"host", "live", "limit", NULL};
    struct process_page pg = {.live_from_ms = apm_now_ms() - call->api->process_grace_ms};
    char host[API_VALUE_MAX];
    bool has_host = false;
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = apm_api_param_str(call, "host", host, sizeof(host), &has_host, out);
    if (st == 0)
        st = param_live(call, &pg.want_live, out);
    if (st == 0)
        st = collect_begin(call, &pg.c, out);
    if (st != 0)
        return st;
    int rc = apm_store_list_processes(call->store, has_host ? host : NULL, process_row, &pg);
    return collect_finish(&pg.c, rc, "processes", out);
}

static json_t *series_json(struct apm_api_why *w, const struct apm_series_info *s)
{
    bool host_series = s->process_id == NULL || s->process_id[0] == '\0';
    const char *metric = apm_metric_name(s->metric);
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:s, s:s, s:o, s:o, s:I, s:I}", "id",
                     (json_int_t)s->id, "host", apm_api_str(w, "host", s->host), "process",
                     apm_api_str_or_null(w, "process", s->process_id), "name",
                     apm_api_str_or_null(w, "name", s->process_name), "pid",
                     host_series ? json_null() : json_integer(s->pid), "metric",
                     metric ? metric : "unknown", "unit",
                     apm_units_name(apm_metric_unit(s->metric)), "first", apm_api_time(s->first_ms),
                     "last", apm_api_time(s->last_ms), "last_value", (json_int_t)s->last_value,
                     "samples", (json_int_t)s->nsamples);
}

static int series_row(void *ctx, const struct apm_series_info *s)
{
    struct collect *c = ctx;
    return collect_add(c, series_json(&c->why, s));
}

/* The page to go on from: a cursor handed out by a previous answer ("next"). */
static int param_cursor(const struct apm_api_call *call, bool *present, int64_t *from, json_t **out)
{
    char buf[32];
    int st = apm_api_param_str(call, "cursor", buf, sizeof(buf), present, out);
    if (st != 0 || !*present)
        return st;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end != '\0' || errno != 0)
        return apm_api_error(out, 400, "bad cursor '%.31s': pass the 'next' of the previous page",
                             buf);
    *from = v;
    return 0;
}

/* A series listing's rows, and the id of the last one (the next page starts after it). */
struct series_page {
    struct collect c;
    uint64_t last_id;
};

static int series_page_row(void *ctx, const struct apm_series_info *s)
{
    struct series_page *p = ctx;
    int rc = series_row(&p->c, s);
    if (!p->c.truncated && !p->c.failed)
        p->last_id = s->id;
    return rc;
}

static int get_series(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {"host",   "pid",   "process", "process_id",
                                          "metric", "limit", "cursor",  NULL};
    struct series_page page = {0};
    char host[API_VALUE_MAX], name[API_VALUE_MAX], pid_id[API_VALUE_MAX], metric[64];
    bool has_host = false, has_name = false, has_id = false, has_pid = false, has_metric = false;
    bool has_cursor = false;
    long long pid = 0;
    int64_t cursor = 0;
    struct apm_series_filter f;
    memset(&f, 0, sizeof(f));
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = apm_api_param_str(call, "host", host, sizeof(host), &has_host, out);
    if (st == 0)
        st = apm_api_param_str(call, "process", name, sizeof(name), &has_name, out);
    if (st == 0)
        st = apm_api_param_str(call, "process_id", pid_id, sizeof(pid_id), &has_id, out);
    if (st == 0)
        st = apm_api_param_int(call, "pid", 1, INT32_MAX, &has_pid, &pid, out);
    if (st == 0)
        st = apm_api_param_str(call, "metric", metric, sizeof(metric), &has_metric, out);
    if (st == 0 && has_metric && apm_metric_parse(metric, &f.metric) != 0)
        st = apm_api_error(out, 400,
                           "unknown metric '%.64s' (rss, pss, uss, swap, cgroup_usage, "
                           "cgroup_limit, mem_available, mem_total, traced, site_size, site_count)",
                           metric);
    if (st == 0)
        st = param_cursor(call, &has_cursor, &cursor, out);
    if (st == 0 && has_cursor && cursor < 0)
        st = apm_api_error(out, 400, "bad cursor: pass the 'next' of the previous page");
    if (st == 0)
        st = collect_begin(call, &page.c, out);
    if (st != 0)
        return st;
    f.host = has_host ? host : NULL;
    f.process_name = has_name ? name : NULL;
    f.process_id = has_id ? pid_id : NULL;
    f.pid = (int32_t)pid;
    f.after_id = (uint64_t)cursor;
    int rc = apm_store_list_series(call->store, &f, series_page_row, &page);
    st = collect_finish(&page.c, rc, "series", out);
    if (st == 200) {
        char next[32];
        snprintf(next, sizeof(next), "%llu", (unsigned long long)page.last_id);
        json_object_set_new(*out, "next", page.c.truncated ? json_string(next) : json_null());
    }
    return st;
}

struct series_one {
    json_t *series;
    bool found;
    struct apm_api_why why;
};

static int series_one(void *ctx, const struct apm_series_info *s)
{
    struct series_one *one = ctx;
    one->found = true;
    one->series = series_json(&one->why, s);
    return 1;
}

struct sample_ctx {
    json_t *array;
    unsigned limit;
    size_t n;
    bool truncated;
    bool oom;
    int64_t next_ms; /* when truncated: the time of the first point left out */
    bool integral;   /* step points: min, max and last are integers; the mean is not */
};

/* Appends one [time, value] pair, or notes where the next page starts. */
static int sample_add(struct sample_ctx *sc, int64_t t_ms, json_t *value)
{
    if (sc->n >= sc->limit) {
        json_decref(value);
        sc->truncated = true;
        sc->next_ms = t_ms;
        return 1;
    }
    json_t *pair = value != NULL ? json_pack("[o, o]", apm_api_time(t_ms), value) : NULL;
    if (pair == NULL || json_array_append_new(sc->array, pair) != 0) {
        sc->oom = true;
        return 1;
    }
    sc->n++;
    return 0;
}

static int sample_row(void *ctx, int64_t t_ms, int64_t value)
{
    return sample_add(ctx, t_ms, json_integer((json_int_t)value));
}

static int point_row(void *ctx, int64_t t_ms, double value)
{
    struct sample_ctx *sc = ctx;
    return sample_add(sc, t_ms, sc->integral ? json_integer((json_int_t)value) : json_real(value));
}

/*
 * Optional step (seconds) and agg: with a step, one point per step from the
 * rollups (docs/api.md). Returns 0 or an error status with *out set.
 */
static int param_step(const struct apm_api_call *call, int64_t *step_ms, enum apm_store_agg *agg,
                      json_t **out)
{
    bool has_step = false, has_agg = false;
    double step = 0;
    char name[16];
    *step_ms = 0;
    *agg = APM_AGG_MEAN;
    int st = apm_api_param_num(call, "step", 0.001, 1e9, &has_step, &step, out);
    if (st == 0)
        st = apm_api_param_str(call, "agg", name, sizeof(name), &has_agg, out);
    if (st != 0)
        return st;
    if (has_agg && !has_step)
        return apm_api_error(out, 400, "'agg' needs 'step'");
    if (has_agg && apm_store_agg_parse(name, agg) != 0)
        return apm_api_error(out, 400, "agg '%.16s' is not min, max, mean or last", name);
    if (has_step)
        *step_ms = (int64_t)(step * 1000.0 + 0.5) > 0 ? (int64_t)(step * 1000.0 + 0.5) : 1;
    return 0;
}

static int get_samples(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {"from", "to", "limit", "step", "agg", "cursor", NULL};
    uint64_t id = 0;
    int64_t from = 0, to = INT64_MAX, step_ms = 0, res_ms = 0;
    enum apm_store_agg agg = APM_AGG_MEAN;
    bool has_from = false, has_to = false, has_cursor = false;
    struct sample_ctx sc = {0};
    if (apm_api_parse_id(call->params[0], &id) != 0)
        return apm_api_error(out, 400, "bad series id '%.64s': expected a decimal number",
                             call->params[0]);
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = apm_api_param_time(call, "from", &has_from, &from, out);
    if (st == 0)
        st = apm_api_param_time(call, "to", &has_to, &to, out);
    if (st == 0 && from > to)
        st = apm_api_error(out, 400, "'from' is after 'to'");
    if (st == 0)
        st = param_limit(call, &sc.limit, out);
    if (st == 0)
        st = param_step(call, &step_ms, &agg, out);
    if (st == 0)
        st = param_cursor(call, &has_cursor, &from, out);
    if (st != 0)
        return st;

    struct series_one one = {0};
    int rc = apm_store_get_series(call->store, id, series_one, &one);
    if (rc == APM_E_NOTFOUND || (rc == 0 && !one.found))
        return apm_api_error(out, 404, "no series %llu", (unsigned long long)id);
    if (rc != 0)
        return store_error(out, rc);
    if (one.series == NULL)
        return apm_api_encode_error(out, &one.why, "the series");
    json_t *series = one.series;
    sc.array = json_array();
    json_t *obj = json_pack("{s:o, s:o, s:o, s:O}", "series", series, "from",
                            has_from ? apm_api_time(from) : json_null(), "to",
                            has_to ? apm_api_time(to) : json_null(), "samples", sc.array);
    json_decref(sc.array); /* obj holds it now, or the pack failed */
    if (obj == NULL)
        return apm_api_error(out, 500, "out of memory");
    sc.integral = agg != APM_AGG_MEAN;
    if (step_ms > 0)
        rc = apm_store_read_steps(call->store, id, from, to, step_ms, agg, point_row, &sc, &res_ms);
    else
        rc = apm_store_read_samples(call->store, id, from, to, sample_row, &sc);
    if (sc.oom || rc != 0) {
        json_decref(obj);
        return sc.oom ? apm_api_error(out, 500, "out of memory") : store_error(out, rc);
    }
    json_object_set_new(obj, "truncated", json_boolean(sc.truncated));
    char next[32];
    snprintf(next, sizeof(next), "%lld", (long long)sc.next_ms);
    json_object_set_new(obj, "next", sc.truncated ? json_string(next) : json_null());
    if (step_ms > 0) {
        json_object_set_new(obj, "step", json_real((double)step_ms / 1000.0));
        json_object_set_new(obj, "resolution", json_real((double)res_ms / 1000.0));
    }
    *out = obj;
    return 200;
}

/* ------------------------------------------------------------------ */
/* Router                                                              */
/* ------------------------------------------------------------------ */

static int valid_pattern(const char *p)
{
    unsigned n = 1;
    if (*p == '\0' || *p == '/' || p[strlen(p) - 1] == '/')
        return 0;
    for (const char *c = p; *c; c++) {
        if (*c == '/' && (c[1] == '/' || ++n > APM_API_MAX_SEGMENTS))
            return 0;
    }
    return 1;
}

int apm_api_new(const struct apm_api_config *cfg, struct apm_api **out)
{
    struct apm_api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return -ENOMEM;
    api->store = cfg->store;
    api->counters = cfg->counters;
    api->status_fn = cfg->status_fn;
    api->trace_fn = cfg->trace_fn;
    api->status_ctx = cfg->ctx;
    api->write_token = cfg->write_token;
    api->write_token_len = cfg->write_token_len;
    api->process_grace_ms = cfg->process_grace_ms > 0 ? cfg->process_grace_ms : 120000;
    api->started_ms = apm_now_ms();
    for (size_t i = 0; i < sizeof(builtin_routes) / sizeof(builtin_routes[0]); i++)
        api->routes[api->nroutes++] = builtin_routes[i];
    *out = api;
    return 0;
}

void apm_api_free(struct apm_api *api)
{
    free(api);
}

int apm_api_add_counters(struct apm_api *api, struct apm_counters *r)
{
    static const struct apm_counter counters[] = {
        APM_COUNTER(struct apm_api_stats, requests, "requests", APM_COUNTER_TOTAL, "",
                    "API requests routed."),
        APM_COUNTER(struct apm_api_stats, errors, "errors", APM_COUNTER_TOTAL, "",
                    "API requests answered with an error status."),
        APM_COUNTER(struct apm_api_stats, unauthorized, "unauthorized", APM_COUNTER_TOTAL, "",
                    "Write requests refused (401) for a missing or wrong bearer token."),
        {.name = NULL},
    };
    struct apm_counter_group g = {
        .module = "api", .counters = counters, .size = sizeof(api->stats), .stats = &api->stats};
    return apm_counters_add(r, &g);
}

int apm_api_send_trace(struct apm_api *api, const char *host, const struct apm_msg_control *m)
{
    return api->trace_fn != NULL ? api->trace_fn(api->status_ctx, host, m) : 0;
}

int apm_api_add_route(struct apm_api *api, const char *method, const char *pattern,
                      apm_api_route_fn fn, void *ctx)
{
    if (method == NULL || pattern == NULL || fn == NULL || !valid_pattern(pattern))
        return -EINVAL;
    if (api->nroutes >= APM_API_MAX_ROUTES)
        return APM_E_LIMIT;
    api->routes[api->nroutes++] = (struct route){method, pattern, fn, ctx};
    return 0;
}

struct segments {
    const char *at[APM_API_MAX_SEGMENTS];
    size_t len[APM_API_MAX_SEGMENTS];
    unsigned n;
};

/* Splits what follows the prefix; empty segments (a//b, trailing /) never match. */
static int split_path(const char *rest, struct segments *sg)
{
    sg->n = 0;
    const char *p = rest;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || sg->n == APM_API_MAX_SEGMENTS)
            return -1;
        sg->at[sg->n] = p;
        sg->len[sg->n] = len;
        sg->n++;
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
}

/* Returns 1 when the path matches pattern (the "{}" segments are noted). */
static int match(const char *pattern, const struct segments *sg, unsigned *captures,
                 unsigned *ncaptures)
{
    const char *p = pattern;
    *ncaptures = 0;
    for (unsigned i = 0; i < sg->n; i++) {
        if (*p == '\0')
            return 0;
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '{' && p[1] == '}')
            captures[(*ncaptures)++] = i;
        else if (len != sg->len[i] || memcmp(p, sg->at[i], len) != 0)
            return 0;
        p = slash ? slash + 1 : p + len;
    }
    return *p == '\0';
}

/*
 * Checks a write request's "Authorization: Bearer TOKEN" when write routes
 * are protected. Returns 0, or 401 with the reason in *out.
 */
static int check_write_token(struct apm_api *api, const struct apm_http_request *req, json_t **out)
{
    if (api->write_token == NULL || strcmp(req->method, "GET") == 0 ||
        strcmp(req->method, "HEAD") == 0)
        return 0;
    const char *h = req->authorization != NULL ? req->authorization : "";
    static const char scheme[] = "Bearer ";
    bool bearer = strncasecmp(h, scheme, sizeof(scheme) - 1) == 0;
    if (bearer) {
        h += sizeof(scheme) - 1;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
            n--;
        if (apm_token_equal((const uint8_t *)h, n, api->write_token, api->write_token_len))
            return 0;
    }
    api->stats.unauthorized++;
    if (!bearer)
        return apm_api_error(out, 401,
                             "%s %.200s needs the API token: send \"Authorization: Bearer TOKEN\" "
                             "(apm-cli --token-file FILE)",
                             req->method, req->path);
    return apm_api_error(out, 401, "wrong API token for %s %.200s", req->method, req->path);
}

/* HEAD is served by the GET route: the same answer, which the server sends without its body. */
static bool head_of_get(const char *route_method, const char *method)
{
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

/* Adds method to the comma-separated list in buf unless it is there already. */
static void allow_add(char *buf, size_t size, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = buf; (p = strstr(p, method)) != NULL; p += n) {
        if ((p == buf || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return;
    }
    size_t used = strlen(buf);
    snprintf(buf + used, size - used, "%s%s", used > 0 ? ", " : "", method);
}

int apm_api_allow(const struct apm_api *api, const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    for (unsigned i = 0; i < api->nraw; i++) {
        if (strcmp(api->raw[i].path, path) == 0) {
            allow_add(buf, size, "GET");
            allow_add(buf, size, "HEAD");
        }
    }
    size_t plen = strlen(API_PREFIX);
    struct segments sg = {0};
    if (strncmp(path, API_PREFIX, plen) == 0 && split_path(path + plen, &sg) == 0) {
        for (unsigned r = 0; r < api->nroutes; r++) {
            unsigned caps[APM_API_MAX_SEGMENTS], ncaps = 0;
            if (!match(api->routes[r].pattern, &sg, caps, &ncaps))
                continue;
            allow_add(buf, size, api->routes[r].method);
            if (strcmp(api->routes[r].method, "GET") == 0)
                allow_add(buf, size, "HEAD");
        }
    }
    return buf[0] != '\0';
}

int apm_api_add_raw_route(struct apm_api *api, const char *path, apm_api_raw_fn fn, void *ctx)
{
    if (path == NULL || path[0] != '/' || fn == NULL)
        return -EINVAL;
    if (api->nraw >= APM_API_MAX_RAW_ROUTES)
        return APM_E_LIMIT;
    api->raw[api->nraw++] = (struct raw_route){path, fn, ctx};
    return 0;
}

static int route(struct apm_api *api, const struct apm_http_request *req,
                 struct apm_http_conn *conn, json_t **out)
{
    *out = NULL;
    api->stats.requests++;
    size_t plen = strlen(API_PREFIX);
    struct segments sg = {0};
    int status = 0;
    if (strncmp(req->path, API_PREFIX, plen) != 0 || split_path(req->path + plen, &sg) != 0)
        status = apm_api_error(out, 404, "no such endpoint: %.200s", req->path);

    bool path_known = false;
    char values[APM_API_MAX_SEGMENTS][API_VALUE_MAX];
    for (unsigned r = 0; status == 0 && r < api->nroutes; r++) {
        const struct route *rt = &api->routes[r];
        unsigned caps[APM_API_MAX_SEGMENTS], ncaps = 0;
        if (!match(rt->pattern, &sg, caps, &ncaps))
            continue;
        path_known = true;
        if (strcmp(rt->method, req->method) != 0 && !head_of_get(rt->method, req->method))
            continue;
        status = check_write_token(api, req, out);
        if (status != 0)
            break;
        struct apm_api_call call = {.api = api,
                                    .store = api->store,
                                    .req = req,
                                    .nparams = ncaps,
                                    .ctx = rt->ctx,
                                    .conn = conn};
        for (unsigned i = 0; i < ncaps && status == 0; i++) {
            unsigned s = caps[i];
            if (apm_http_decode(sg.at[s], sg.len[s], false, values[i], API_VALUE_MAX) != 0)
                status = apm_api_error(out, 400, "bad path segment: %.64s", sg.at[s]);
            call.params[i] = values[i];
        }
        if (status == 0)
            status = rt->fn(&call, out);
        break;
    }
    if (status == 0 && path_known)
        status = apm_api_error(out, 405, "method %s not allowed on %.200s", req->method, req->path);
    else if (status == 0)
        status = apm_api_error(out, 404, "no such endpoint: %.200s", req->path);
    if (status >= 400)
        api->stats.errors++;
    return status;
}

int apm_api_route(struct apm_api *api, const struct apm_http_request *req, json_t **out)
{
    return route(api, req, NULL, out);
}

/* Answers a raw route: GET and HEAD only. Returns 1 when req's path is one, else 0. */
static int handle_raw(struct apm_api *api, struct apm_http_conn *conn,
                      const struct apm_http_request *req)
{
    const struct raw_route *rr = NULL;
    for (unsigned i = 0; i < api->nraw && rr == NULL; i++)
        rr = strcmp(api->raw[i].path, req->path) == 0 ? &api->raw[i] : NULL;
    if (rr == NULL)
        return 0;
    api->stats.requests++;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        api->stats.errors++;
        json_t *obj = NULL;
        apm_api_error(&obj, 405, "method %s not allowed on %.200s", req->method, req->path);
        respond_json(api, conn, req, 405, obj);
        return 1;
    }
    char *body = NULL;
    size_t len = 0;
    const char *type = "text/plain; charset=utf-8";
    int status = rr->fn(rr->ctx, req, &body, &len, &type);
    if (status >= 400)
        api->stats.errors++;
    apm_http_respond(conn, status, type, body, len);
    return 1;
}

void apm_api_handle(void *ctx, struct apm_http_conn *conn, const struct apm_http_request *req)
{
    struct apm_api *api = ctx;
    /* The web page's files (server/api/web.h), then raw routes such as /metrics. */
    if (apm_web_serve(conn, req) || handle_raw(api, conn, req))
        return;
    json_t *obj = NULL;
    int status = route(api, req, conn, &obj);
    if (status != APM_API_DEFERRED)
        respond_json(api, conn, req, status, obj);
}

void apm_api_answer(struct apm_http_conn *conn, int status, json_t *obj)
{
    respond_json(NULL, conn, NULL, status, obj);
}

/*
 * Sends obj (taken) as the JSON answer; a 405 carries Allow from the route
 * table (api and req may be NULL for an answer given later: never a 405).
 */
static void respond_json(struct apm_api *api, struct apm_http_conn *conn,
                         const struct apm_http_request *req, int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(obj);
    if (text == NULL) {
        apm_http_respond_error(conn, 500,
                               obj ? "could not encode the answer as JSON: out of memory"
                                   : "out of memory");
        return;
    }
    size_t len = strlen(text);
    /* A final newline keeps terminals tidy for people using curl. */
    char *body = realloc(text, len + 2);
    if (body == NULL) {
        free(text);
        apm_http_respond_error(conn, 500, "out of memory");
        return;
    }
    body[len] = '\n';
    body[len + 1] = '\0';
    char allow[96], header[112];
    const char *headers = NULL;
    if (status == 405 && api != NULL && apm_api_allow(api, req->path, allow, sizeof(allow))) {
        snprintf(header, sizeof(header), "Allow: %s\r\n", allow);
        headers = header;
    }
    apm_http_respond_headers(conn, status, "application/json", headers, body, len + 1);
}
