#ifndef APM_API_PRIV_H
#define APM_API_PRIV_H

/*
 * Inside the API (api.h): the API object and its route table, shared by
 * api.c (the router, GET /status) and api_listings.c (the built-in listings
 * of hosts, processes, series and samples). Not for other modules: later
 * endpoints go through api.h alone.
 */
#include <stdint.h>

#include "server/api/api.h"

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

/* The built-in listings (api_listings.c), in the route table of apm_api_new. */
int apm_api_get_hosts(const struct apm_api_call *call, json_t **out);
int apm_api_get_processes(const struct apm_api_call *call, json_t **out);
int apm_api_get_series(const struct apm_api_call *call, json_t **out);
int apm_api_get_samples(const struct apm_api_call *call, json_t **out);

#endif
