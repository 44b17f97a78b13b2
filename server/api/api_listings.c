/*
 * The built-in listings of the API (docs/api.md): GET /api/v1/hosts,
 * /processes, /series and /series/{id}/samples, read from the store and
 * capped at a limit, with a cursor to the next page where one is cut.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/analysis/model.h"
#include "common/base/timeutil.h"
#include "common/base/units.h"
#include "server/api/api_priv.h"

/* Maps a store failure to an answer. */
static int store_error(json_t **out, int rc)
{
    if (rc == -ENOMEM)
        return apm_api_error(out, 500, "out of memory");
    return apm_api_error(out, 500, "store: %s", apm_strerror(rc));
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

int apm_api_get_hosts(const struct apm_api_call *call, json_t **out)
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

int apm_api_get_processes(const struct apm_api_call *call, json_t **out)
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

int apm_api_get_series(const struct apm_api_call *call, json_t **out)
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

int apm_api_get_samples(const struct apm_api_call *call, json_t **out)
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
