#ifndef APM_API_H
#define APM_API_H

/*
 * The collector's JSON API under /api/v1/ (docs/api.md). A table of routes
 * maps (method, path pattern) to a handler; a pattern is a '/'-separated list
 * of segments where "{}" matches any one segment, handed to the handler
 * percent-decoded. Modules that own later endpoints (forecasts, alerts, ...)
 * add their routes with apm_api_add_route() and answer with the helpers
 * below, so that every endpoint speaks the same dialect: JSON objects, time
 * in Unix seconds as floats, sizes in bytes, errors as {"error": "..."}.
 *
 * Threads: the loop thread. Reads go through the store's read API (each in
 * its own read transaction, memory-mapped, no disk writes). Every answer is
 * capped (APM_API_MAX_ITEMS rows or samples) so no query grows memory
 * without bound.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/wire/codec.h"
#include "common/base/counters.h"
#include "server/net/http.h"
#include "server/store/store.h"

/* Most rows (hosts, processes, series) or samples in one answer. */
#define APM_API_MAX_ITEMS 100000u
/* Most path segments of a route, and most routes added at run time. */
#define APM_API_MAX_SEGMENTS 8u
#define APM_API_MAX_ROUTES 64u

struct apm_api;

/*
 * Called for GET /api/v1/status with the answer object under construction,
 * after the counters: the collector adds what is not a counter (its
 * addresses). obj is borrowed. Loop thread.
 */
typedef void (*apm_api_status_fn)(void *ctx, json_t *obj);

/*
 * Sends m (a tracemalloc window or its end) to the agents connected for
 * host: the API cannot reach the ingest layer, so the collector lends it
 * this. Returns how many agents it was queued for (0: none connected) or a
 * negative code. Loop thread.
 */
typedef int (*apm_api_trace_fn)(void *ctx, const char *host, const struct apm_msg_control *m);

struct apm_api_config {
    struct apm_store *store; /* borrowed; must outlive the API */
    /*
     * Every module's counters (common/base/counters.h), one status object per
     * group; borrowed, may be NULL. Groups are read on the loop thread.
     */
    const struct apm_counters *counters;
    apm_api_status_fn status_fn; /* may be NULL */
    apm_api_trace_fn trace_fn;   /* may be NULL: no agent is ever reached */
    void *ctx;                   /* passed to status_fn and trace_fn */
    /*
     * When set (borrowed, outlives the API): every route but GET needs
     * "Authorization: Bearer TOKEN" with this token, else 401.
     */
    const uint8_t *write_token;
    size_t write_token_len;
    /*
     * PRODUCT.md's process-grace: a process is live while its last sample is
     * this recent (the "live" of /processes). 0 means the default, 2 minutes.
     */
    int64_t process_grace_ms;
};

/* What a route handler gets: the request and the decoded "{}" segments. */
struct apm_api_call {
    struct apm_api *api;
    struct apm_store *store;
    const struct apm_http_request *req;
    const char *params[APM_API_MAX_SEGMENTS]; /* decoded "{}" segments, in order */
    unsigned nparams;
    void *ctx; /* the route's ctx */
    /* The connection to answer on (apm_api_handle), NULL under apm_api_route. */
    struct apm_http_conn *conn;
};

/*
 * A route handler: sets *out to an owned JSON value (an object, or an error
 * object made with apm_api_error) and returns the HTTP status; or, with
 * call->conn set, returns APM_API_DEFERRED, leaves *out NULL and answers
 * later with apm_api_answer on the loop thread (work done on a worker).
 */
typedef int (*apm_api_route_fn)(const struct apm_api_call *call, json_t **out);
#define APM_API_DEFERRED 1

/*
 * Creates the API. cfg is copied; the store it names is borrowed. Returns 0
 * and *out owned (free with apm_api_free) or -ENOMEM. Loop thread.
 */
int apm_api_new(const struct apm_api_config *cfg, struct apm_api **out);

/* Frees the API. No request may be in progress. Accepts NULL. */
void apm_api_free(struct apm_api *api);

/* Adds the "api" counters (requests, errors) to r. */
int apm_api_add_counters(struct apm_api *api, struct apm_counters *r);

/* Calls the configured apm_api_trace_fn; 0 (no agent reached) without one. Loop thread. */
int apm_api_send_trace(struct apm_api *api, const char *host, const struct apm_msg_control *m);

/*
 * Adds a route served under /api/v1/: method ("GET", "POST"), pattern such
 * as "alerts/{}/ack" (borrowed; must outlive the API, normally a literal),
 * fn, and ctx handed to fn (borrowed). Routes added later are tried after
 * the built-in ones. Returns 0, -EINVAL for a malformed pattern, or
 * APM_E_LIMIT past APM_API_MAX_ROUTES. Loop thread, before serving.
 */
int apm_api_add_route(struct apm_api *api, const char *method, const char *pattern,
                      apm_api_route_fn fn, void *ctx);

/*
 * Routes one request: sets *out to the owned answer (free with json_decref)
 * and returns its HTTP status: the handler's, 404 for an unknown path, 405
 * for a known path with another method, 400 for a bad parameter, 500 when
 * out of memory (then *out may be NULL). Borrows req. Loop thread.
 */
int apm_api_route(struct apm_api *api, const struct apm_http_request *req, json_t **out);

/*
 * The HTTP handler (an apm_http_handler_fn; pass the API as its ctx):
 * answers a raw route, or routes the request and answers it on conn with
 * the JSON text. HEAD is answered as GET without the body; a 405 carries
 * Allow built from the route table. Loop thread.
 */
void apm_api_handle(void *api, struct apm_http_conn *conn, const struct apm_http_request *req);

/*
 * Answers a request on conn with obj as JSON text (takes ownership of obj;
 * NULL answers 500 "out of memory") and status. Loop thread, once per request.
 */
void apm_api_answer(struct apm_http_conn *conn, int status, json_t *obj);

/*
 * A route outside /api/v1/ that answers in its own format (GET /metrics):
 * sets *body (owned, malloc'd; may stay NULL with *len 0), *len and
 * *content_type (a literal; text/plain unless set) and returns the HTTP
 * status. Called for GET and HEAD; other methods get 405 with Allow.
 */
typedef int (*apm_api_raw_fn)(void *ctx, const struct apm_http_request *req, char **body,
                              size_t *len, const char **content_type);

#define APM_API_MAX_RAW_ROUTES 8u

/*
 * Adds a raw route at the exact path (borrowed, a literal, starting with
 * '/'; the query is the handler's). Returns 0, -EINVAL, or APM_E_LIMIT past
 * APM_API_MAX_RAW_ROUTES. Loop thread, before serving.
 */
int apm_api_add_raw_route(struct apm_api *api, const char *path, apm_api_raw_fn fn, void *ctx);

/*
 * Writes the methods the route table serves at path ("GET, HEAD, POST":
 * HEAD wherever GET is) into buf (size bytes), for a 405's Allow header.
 * Returns 1 when some route matches path, else 0 (buf is then "").
 */
int apm_api_allow(const struct apm_api *api, const char *path, char *buf, size_t size);

/*
 * Sets *out to a new {"error": <formatted message>} object and returns
 * status, so that a handler can `return apm_api_error(out, 400, "...")`.
 */
int apm_api_error(json_t **out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Why an answer could not be encoded as JSON: the first field that failed,
 * so that a 500 tells the truth ("could not encode field 'host' as JSON:
 * not valid UTF-8") instead of blaming memory. Zero it before use.
 */
struct apm_api_why {
    char text[160];
};

/*
 * A stored string as a JSON string for field (NULL is taken as ""), or NULL
 * with the reason in *why (kept if one is there already). Returns a new
 * reference; json_pack's "o" takes it, and fails on NULL.
 */
json_t *apm_api_str(struct apm_api_why *why, const char *field, const char *s);

/* The same, but JSON null for NULL or "". */
json_t *apm_api_str_or_null(struct apm_api_why *why, const char *field, const char *s);

/* Sets *out to the 500 answer for a failed encoding (why, or what) and returns 500. */
int apm_api_encode_error(json_t **out, const struct apm_api_why *why, const char *what);

/* Milliseconds as JSON Unix seconds (a real). Returns a new reference. */
json_t *apm_api_time(int64_t ms);

/*
 * Query parameters, read the same way by every route. Each helper returns 0
 * (with *present saying whether the parameter was given, and the value set
 * only then), or a 400 status with *out set to the error answer, so that a
 * handler chains them with `if (st == 0) st = ...` and returns st.
 */

/*
 * Refuses a query naming a parameter that is not in allowed (NULL-terminated),
 * so that a typo is never ignored: "unknown parameter 'NAME'". allowed NULL
 * means the route takes none: "this endpoint takes no parameters".
 */
int apm_api_check_params(const struct apm_api_call *call, const char *const *allowed, json_t **out);

/* A string parameter, decoded into buf (size bytes). */
int apm_api_param_str(const struct apm_api_call *call, const char *name, char *buf, size_t size,
                      bool *present, json_t **out);

/* A decimal integer parameter within [min, max]. */
int apm_api_param_int(const struct apm_api_call *call, const char *name, long long min,
                      long long max, bool *present, long long *value, json_t **out);

/* A number parameter (a float) within [lo, hi]. */
int apm_api_param_num(const struct apm_api_call *call, const char *name, double lo, double hi,
                      bool *present, double *value, json_t **out);

/* A time parameter in Unix seconds (a float), converted to milliseconds. */
int apm_api_param_time(const struct apm_api_call *call, const char *name, bool *present,
                       int64_t *ms, json_t **out);

/*
 * Parses an id from a path segment: decimal digits only, at most 2^64 - 1.
 * Returns 0 or APM_E_PARSE; the route words its own error.
 */
int apm_api_parse_id(const char *s, uint64_t *id);

#endif
