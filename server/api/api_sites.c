#include "server/api/api_sites.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/analysis/sites.h"

#define DEFAULT_WINDOW_S 3600.0
#define DEFAULT_LIMIT 25
#define MAX_LIMIT 1000
#define DEFAULT_TRACE_S 1200
#define MAX_TRACE_S 604800 /* the probe's own cap: 7 days */

static json_t *site_json(struct apm_api_why *why, const struct apm_site_rank *r)
{
    json_t *pts = json_array();
    for (unsigned i = 0; i < r->npoints; i++)
        json_array_append_new(
            pts, json_pack("[o,I]", apm_api_time(r->points_t[i]), (json_int_t)r->points_v[i]));
    const char *colon = strrchr(r->site, ':');
    json_t *o = json_pack("{s:o,s:o,s:o,s:I,s:I,s:I,s:f,s:f,s:I,s:I,s:o}", "site",
                          apm_api_str(why, "site", r->site), "from", apm_api_time(r->t_start), "to",
                          apm_api_time(r->t_end), "size", (json_int_t)r->size_end, "size_start",
                          (json_int_t)r->size_start, "size_growth", (json_int_t)r->size_growth,
                          "rate_bytes_per_s", r->rate, "rate_mb_per_h", r->rate * 3600.0 / 1e6,
                          "count", (json_int_t)r->count_end, "count_growth",
                          (json_int_t)r->count_growth, "points", pts);
    if (o != NULL) {
        json_object_set_new(o, "source", json_string(r->sampled ? "sampled" : "tracemalloc"));
        json_object_set_new(o, "size_growth_err", json_integer((json_int_t)r->growth_err));
        json_object_set_new(o, "rate_err_bytes_per_s", json_real(r->rate_err));
    }
    if (o != NULL && colon != NULL && strchr(r->site, ';') == NULL) {
        json_object_set_new(o, "file", json_stringn(r->site, (size_t)(colon - r->site)));
        json_object_set_new(o, "line", json_integer(atoll(colon + 1)));
    }
    return o;
}

static int get_sites(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {"process", "window", "from", "to", "limit", NULL};
    char process[400];
    double window = DEFAULT_WINDOW_S, from = 0, to = 0, limit = DEFAULT_LIMIT;
    bool has_process = false, has_window = false, has_from = false, has_to = false,
         has_limit = false;
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = apm_api_param_str(call, "process", process, sizeof(process), &has_process, out);
    if (st == 0 && !has_process)
        st = apm_api_error(out, 400, "parameter 'process' (a process id) is required");
    if (st == 0)
        st = apm_api_param_num(call, "window", 0.001, 3.2e8, &has_window, &window, out);
    if (st == 0)
        st = apm_api_param_num(call, "from", 0, 1e11, &has_from, &from, out);
    if (st == 0)
        st = apm_api_param_num(call, "to", 0, 1e11, &has_to, &to, out);
    if (st == 0)
        st = apm_api_param_num(call, "limit", 1, MAX_LIMIT, &has_limit, &limit, out);
    if (st != 0)
        return st;
    int64_t to_ms = has_to ? llround(to * 1000) : apm_now_ms();
    int64_t from_ms = has_from ? llround(from * 1000) : to_ms - llround(window * 1000);
    if (from_ms >= to_ms)
        return apm_api_error(out, 400, "'from' must be before 'to'");
    struct apm_site_rank *r = NULL;
    size_t n = 0;
    int rc = apm_sites_rank(call->store, process, from_ms, to_ms, (size_t)limit, &r, &n);
    if (rc != 0)
        return apm_api_error(out, 500, "reading sites: %s", apm_strerror(rc));
    struct apm_api_why why = {0};
    json_t *sites = json_array();
    bool failed = sites == NULL;
    for (size_t i = 0; !failed && i < n; i++)
        failed = json_array_append_new(sites, site_json(&why, &r[i])) != 0;
    apm_sites_free(r, n);
    if (failed) {
        json_decref(sites);
        return apm_api_encode_error(out, &why, "the sites");
    }
    *out = json_pack("{s:o,s:o,s:o,s:f,s:o}", "process", apm_api_str(&why, "process", process),
                     "from", apm_api_time(from_ms), "to", apm_api_time(to_ms), "window",
                     (double)(to_ms - from_ms) / 1000.0, "sites", sites);
    return *out ? 200 : apm_api_encode_error(out, &why, "the sites");
}

struct find_proc {
    const char *id;
    struct apm_process_info info;
    char host[256];
    bool found;
};

static int match_proc(void *ctx, const struct apm_process_info *p)
{
    struct find_proc *f = ctx;
    if (strcmp(p->id, f->id) != 0)
        return 0;
    f->info = *p;
    snprintf(f->host, sizeof(f->host), "%s", p->host);
    f->found = true;
    return 1;
}

static int post_trace(const struct apm_api_call *call, json_t **out)
{
    double dur = DEFAULT_TRACE_S;
    bool exact = false;
    if (call->req->body_len > 0) {
        json_t *body = json_loadb(call->req->body, call->req->body_len, 0, NULL);
        json_t *f = json_object_get(body, "for"), *e = json_object_get(body, "exact");
        bool ok = json_is_object(body) && json_object_size(body) == (f ? 1u : 0u) + (e ? 1u : 0u) &&
                  (f == NULL || (json_is_number(f) && json_number_value(f) >= 0 &&
                                 json_number_value(f) <= MAX_TRACE_S)) &&
                  (e == NULL || json_is_boolean(e));
        if (ok && f != NULL)
            dur = json_number_value(f);
        exact = ok && json_is_true(e);
        json_decref(body);
        if (!ok)
            return apm_api_error(out, 400,
                                 "the body must be {\"for\": SECONDS, \"exact\": BOOL} with 0 <= "
                                 "SECONDS <= %d (0 stops tracing), exact optional",
                                 MAX_TRACE_S);
    }
    struct find_proc fp = {.id = call->params[0]};
    int rc = apm_store_list_processes(call->store, NULL, match_proc, &fp);
    if (rc != 0)
        return apm_api_error(out, 500, "reading processes: %s", apm_strerror(rc));
    if (!fp.found)
        return apm_api_error(out, 404, "no process '%s'", call->params[0]);
    struct apm_msg_control m = {.action = dur > 0 ? APM_CONTROL_TRACE : APM_CONTROL_STOP,
                                .pid = fp.info.pid,
                                .start_ms = fp.info.start_ms,
                                .duration_s = (uint32_t)ceil(dur),
                                .exact = exact};
    int n = apm_api_send_trace(call->api, fp.host, &m);
    if (n < 0)
        return apm_api_error(out, 500, "sending the control: %s", apm_strerror(n));
    if (n == 0)
        return apm_api_error(out, 404, "the agent of host '%s' is not connected", fp.host);
    *out = json_pack("{s:s,s:s,s:i,s:s,s:i,s:b,s:i}", "process", fp.info.id, "host", fp.host, "pid",
                     (int)fp.info.pid, "action", dur > 0 ? "trace" : "stop", "duration_s",
                     (int)m.duration_s, "exact", exact, "agents", n);
    return *out ? 202 : 500;
}

int apm_api_sites_register(struct apm_api *api)
{
    int rc = apm_api_add_route(api, "GET", "sites", get_sites, NULL);
    if (rc == 0)
        rc = apm_api_add_route(api, "POST", "processes/{}/trace", post_trace, NULL);
    return rc;
}
