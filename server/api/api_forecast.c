/*
 * GET /api/v1/forecasts and GET /api/v1/series/{id}/analysis. Rows come from
 * the stored verdicts; /forecasts sorts them so that the soonest exhaustion
 * comes first, then leaks without a forecast, then everything else.
 */
#include "server/api/api_forecast.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_verdict.h"
#include "server/analysis/suspects.h"

#define VALUE_MAX 512u
#define SUSPECTS_MAX 3u

static json_t *time_or_null(double t)
{
    return isfinite(t) ? json_real(t) : json_null();
}

/* Seconds from the last evaluation to t, or null when t is not finite. */
static json_t *seconds_until(double t, double from)
{
    return isfinite(t) ? json_real(t > from ? t - from : 0) : json_null();
}

/*
 * The allocation sites that grow with a leaking or growing process
 * (server/analysis/suspects.h), fastest first, and the native-or-Python
 * verdict into *native (-1 unknown). Only such series pay for the ranking;
 * others get an empty list.
 */
static json_t *suspects(struct apm_store *store, const struct apm_verdict_record *r, int *native)
{
    json_t *arr = json_array();
    *native = -1;
    bool grows = r->v.cls == APM_CLASS_LEAK || r->v.cls == APM_CLASS_GROWING;
    if (arr == NULL || !grows || r->process_id[0] == '\0')
        return arr;
    struct apm_suspects sus;
    /* A stored verdict has no sampling interval: the default window. */
    if (apm_suspects_find(store, r->process_id, (int64_t)(r->evaluated_at * 1000),
                          apm_suspects_window_s(0), r->v.rate, &sus) != 0)
        return arr;
    for (size_t i = 0; i < sus.n && i < SUSPECTS_MAX; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:f, s:f, s:I, s:I}", "site", sus.top[i].site, "rate",
                           sus.top[i].rate, "rate_err", sus.top[i].rate_err, "size",
                           (json_int_t)sus.top[i].size, "growth", (json_int_t)sus.top[i].growth));
    *native = apm_suspects_native(&sus, r->v.rate);
    return arr;
}

static json_t *record_json(struct apm_store *store, const struct apm_verdict_record *r)
{
    const struct apm_verdict *v = &r->v;
    bool fc = v->has_forecast;
    const char *metric = apm_metric_name(r->metric);
    const char *src = apm_limit_source_name(r->limit_source);
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "series", json_integer((json_int_t)r->series_id));
    json_object_set_new(o, "host", json_string(r->host));
    json_object_set_new(o, "process", json_string(r->process_id));
    json_object_set_new(o, "name", json_string(r->name));
    json_object_set_new(o, "pid", json_integer(r->pid));
    json_object_set_new(o, "metric", json_string(metric ? metric : "unknown"));
    json_object_set_new(o, "value", json_integer((json_int_t)r->value));
    json_object_set_new(o, "time", json_real(v->t_last));
    json_object_set_new(o, "limit",
                        v->limit > 0 ? json_integer((json_int_t)v->limit) : json_null());
    json_object_set_new(o, "limit_source", src ? json_string(src) : json_null());
    json_object_set_new(o, "restarted_at_limit", json_boolean(r->restarted_at_limit));
    json_object_set_new(o, "rate", json_real(v->rate));
    json_object_set_new(o, "class", json_string(apm_analysis_class_name(v->cls)));
    json_object_set_new(o, "confidence", json_real(v->confidence));
    json_object_set_new(o, "alert", json_boolean(v->alert));
    /* Growth under way: since when, whether its rate is steady, and why no verdict yet. */
    bool growth = isfinite(v->growth_start_t);
    json_object_set_new(o, "growing_since", growth ? json_real(v->growth_start_t) : json_null());
    json_object_set_new(o, "steady", json_boolean(v->steady));
    bool doubt = v->cls == APM_CLASS_GROWING && v->doubt != APM_DOUBT_NONE;
    json_object_set_new(o, "doubt",
                        doubt ? json_string(apm_analysis_doubt_name(v->doubt)) : json_null());
    json_object_set_new(o, "verdict_by", doubt ? time_or_null(v->doubt_until_t) : json_null());
    json_object_set_new(o, "exhaustion_t", fc ? time_or_null(v->forecast_t) : json_null());
    json_object_set_new(o, "exhaustion_lo_t", fc ? time_or_null(v->forecast_lo_t) : json_null());
    json_object_set_new(o, "exhaustion_hi_t", fc ? time_or_null(v->forecast_hi_t) : json_null());
    json_object_set_new(o, "time_to_exhaustion",
                        fc ? seconds_until(v->forecast_t, r->evaluated_at) : json_null());
    json_object_set_new(o, "time_to_exhaustion_lo",
                        fc ? seconds_until(v->forecast_lo_t, r->evaluated_at) : json_null());
    json_object_set_new(o, "time_to_exhaustion_hi",
                        fc ? seconds_until(v->forecast_hi_t, r->evaluated_at) : json_null());
    json_object_set_new(o, "evaluated_at", json_real(r->evaluated_at));
    json_object_set_new(o, "samples", json_integer((json_int_t)v->samples));
    int native = -1;
    json_object_set_new(o, "suspects", suspects(store, r, &native));
    json_object_set_new(o, "native", native < 0 ? json_null() : json_boolean(native == 1));
    return o;
}

/* ---- GET /api/v1/forecasts ---- */

struct filter {
    char host[VALUE_MAX];
    char name[VALUE_MAX];
    char process_id[VALUE_MAX];
    bool has_host, has_name, has_process_id, has_class;
    long pid;
    enum apm_class cls;
};

struct rows {
    const struct filter *f;
    struct apm_verdict_record *recs;
    size_t n, cap;
    bool truncated;
    bool oom;
};

static bool matches(const struct filter *f, const struct apm_verdict_record *r)
{
    return (!f->has_host || strcmp(f->host, r->host) == 0) &&
           (!f->has_name || strcmp(f->name, r->name) == 0) &&
           (!f->has_process_id || strcmp(f->process_id, r->process_id) == 0) &&
           (f->pid == 0 || f->pid == r->pid) && (!f->has_class || f->cls == r->v.cls);
}

static int row(void *ctx, const struct apm_verdict_record *r)
{
    struct rows *rs = ctx;
    if (!matches(rs->f, r))
        return 0;
    if (rs->n == APM_API_MAX_ITEMS) {
        rs->truncated = true;
        return 1;
    }
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        void *p = realloc(rs->recs, cap * sizeof(*rs->recs));
        if (p == NULL) {
            rs->oom = true;
            return 1;
        }
        rs->recs = p;
        rs->cap = cap;
    }
    rs->recs[rs->n++] = *r;
    return 0;
}

/* Soonest exhaustion first, then leaks, then growing series without a forecast, then by id. */
static int rank(const struct apm_verdict_record *r)
{
    if (r->v.has_forecast)
        return 0;
    return r->v.cls == APM_CLASS_LEAK ? 1 : r->v.cls == APM_CLASS_GROWING ? 2 : 3;
}

static int compare(const void *pa, const void *pb)
{
    const struct apm_verdict_record *a = pa, *b = pb;
    int ra = rank(a), rb = rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra == 0 && a->v.forecast_t != b->v.forecast_t)
        return a->v.forecast_t < b->v.forecast_t ? -1 : 1;
    return a->series_id < b->series_id ? -1 : a->series_id > b->series_id;
}

static int parse_filter(const struct apm_api_call *call, struct filter *f, json_t **out)
{
    static const char *const allowed[] = {"host", "process", "process_id", "pid", "class", NULL};
    char buf[VALUE_MAX];
    bool has_pid = false, has_class = false;
    long long pid = 0;
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = apm_api_param_str(call, "host", f->host, VALUE_MAX, &f->has_host, out);
    if (st == 0)
        st = apm_api_param_str(call, "process", f->name, VALUE_MAX, &f->has_name, out);
    if (st == 0)
        st = apm_api_param_str(call, "process_id", f->process_id, VALUE_MAX, &f->has_process_id,
                               out);
    if (st == 0)
        st = apm_api_param_int(call, "pid", 1, INT32_MAX, &has_pid, &pid, out);
    f->pid = (long)pid;
    if (st == 0)
        st = apm_api_param_str(call, "class", buf, VALUE_MAX, &has_class, out);
    if (st == 0 && has_class) {
        f->has_class = true;
        bool known = false;
        for (int c = APM_CLASS_STABLE; c <= APM_CLASS_GROWING && !known; c++) {
            known = strcmp(buf, apm_analysis_class_name((enum apm_class)c)) == 0;
            if (known)
                f->cls = (enum apm_class)c;
        }
        if (!known)
            st = apm_api_error(
                out, 400, "unknown class '%.64s' (leak, growing, bloat, sawtooth, warmup, stable)",
                buf);
    }
    return st;
}

static int get_forecasts(const struct apm_api_call *call, json_t **out)
{
    struct filter *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return apm_api_error(out, 500, "out of memory");
    int st = parse_filter(call, f, out);
    if (st != 0) {
        free(f);
        return st;
    }
    struct rows rs = {.f = f};
    int rc = apm_store_verdict_list(call->store, row, &rs);
    free(f);
    if (rs.oom || rc != 0) {
        free(rs.recs);
        return rs.oom || rc == -ENOMEM ? apm_api_error(out, 500, "out of memory")
                                       : apm_api_error(out, 500, "store: %s", apm_strerror(rc));
    }
    if (rs.n > 1)
        qsort(rs.recs, rs.n, sizeof(*rs.recs), compare);
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < rs.n; i++) {
        if (json_array_append_new(arr, record_json(call->store, &rs.recs[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(rs.recs);
    *out = arr ? json_pack("{s:o, s:b}", "forecasts", arr, "truncated", rs.truncated) : NULL;
    return *out ? 200 : apm_api_error(out, 500, "out of memory");
}

/* ---- GET /api/v1/series/{id}/analysis ---- */

static int get_analysis(const struct apm_api_call *call, json_t **out)
{
    uint64_t id = 0;
    if (apm_api_parse_id(call->params[0], &id) != 0)
        return apm_api_error(out, 400, "bad series id '%.64s': expected a decimal number",
                             call->params[0]);
    int st = apm_api_check_params(call, NULL, out);
    if (st != 0)
        return st;
    struct apm_verdict_record *r = malloc(sizeof(*r));
    if (r == NULL)
        return apm_api_error(out, 500, "out of memory");
    int rc = apm_store_verdict_get(call->store, id, r);
    if (rc == 0)
        *out = record_json(call->store, r);
    free(r);
    if (rc == APM_E_NOTFOUND)
        return apm_api_error(out, 404, "no analysis of series %llu (not analysed, or too new)",
                             (unsigned long long)id);
    if (rc != 0)
        return apm_api_error(out, 500, "store: %s", apm_strerror(rc));
    return *out ? 200 : apm_api_error(out, 500, "out of memory");
}

int apm_api_forecast_register(struct apm_api *api)
{
    int rc = apm_api_add_route(api, "GET", "forecasts", get_forecasts, NULL);
    if (rc == 0)
        rc = apm_api_add_route(api, "GET", "series/{}/analysis", get_analysis, NULL);
    return rc;
}
