/*
 * The API object and its router (api.h): the route table and matching a
 * path against it, the write token, raw routes, the answer sent as JSON
 * text, and GET /api/v1/status. The query-parameter and JSON helpers every
 * handler uses are in api_params.c; the built-in listings (hosts, processes,
 * series, samples) in api_listings.c.
 */
#include "server/api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "common/base/token.h"
#include "server/api/api_priv.h"
#include "server/api/web.h"

#define API_PREFIX "/api/v1/"

static int get_status(const struct apm_api_call *call, json_t **out);
static void respond_json(struct apm_api *api, struct apm_http_conn *conn,
                         const struct apm_http_request *req, int status, json_t *obj);

/* The built-in routes; later endpoints join with apm_api_add_route(). */
static const struct route builtin_routes[] = {
    {"GET", "status", get_status, NULL},
    {"GET", "hosts", apm_api_get_hosts, NULL},
    {"GET", "processes", apm_api_get_processes, NULL},
    {"GET", "series", apm_api_get_series, NULL},
    {"GET", "series/{}/samples", apm_api_get_samples, NULL},
};

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
