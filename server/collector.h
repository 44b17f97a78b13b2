#ifndef APM_COLLECTOR_H
#define APM_COLLECTOR_H

/*
 * apm-collector as an object: settings, and the parts it owns (store,
 * group-commit writer, TCP ingest, HTTP API) wired on one loop. main.c only
 * parses arguments and runs it; tests can run two in one process.
 */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/config.h"
#include "common/base/counters.h"
#include "server/alerts/alert_rules.h"

struct apm_collector_config {
    char config[4096];
    char data_dir[4096];
    char listen[256];
    char http[256];
    char token_file[4096];
    bool tls; /* TLS with DATA-DIR/tls/server.{crt,key} unless tls-cert is set */
    char tls_cert[4096];
    char tls_key[4096];
    char tls_ca[4096];
    char tls_client_certs[16]; /* off, optional, required; "" = required with tls-ca, else off */
    bool tls_required;
    char http_tls_cert[4096];
    char http_tls_key[4096];
    char api_token_file[4096];
    bool daemon;     /* detach (--daemon) */
    bool foreground; /* never detach, even with daemon set */
    char log_level[16];
    char log_format[8]; /* "text" or "json" */
    int64_t max_connections;
    int64_t max_unauthenticated;
    int64_t max_unauthenticated_per_address;
    int64_t handshake_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t max_frame;
    int64_t max_inflight;
    int64_t map_size;
    int64_t max_disk; /* 0: 80 % of the free space at start */
    int64_t retention_ms;
    int64_t rollup_1m_retention_ms;
    int64_t rollup_1h_retention_ms;
    int64_t pack_period_ms; /* closed periods re-packed (docs/store.md); 0 = off */
    int64_t checkpoint_ms;  /* a logged series' record is written within this (docs/store.md) */
    int64_t maintenance_period_ms;
    bool no_sync;
    int64_t max_sites_per_process;
    /* Cardinality per agent (server/ingest/agent_limits.h) and what "live" means. */
    int64_t process_grace_ms;
    int64_t max_processes_per_agent;
    int64_t max_series_per_agent;
    int64_t max_sites_per_agent;
    int64_t max_analysed_series;
    /* Live analysis ([collector] keys, then the [analysis] section). */
    int64_t memory_limit;
    int64_t trace_on_suspicion_ms;
    int64_t trace_confidence; /* percent */
    /* Remote-write out ([remote_write]; off while url is ""). */
    struct {
        char url[2048];
        char headers[4096]; /* "Name: value; Name: value" */
        char bearer_token_file[4096];
        int64_t batch_size;
        int64_t queue_cap;
    } rw;
    struct {
        int64_t bucket_samples;
        int64_t history_buckets;
        int64_t min_buckets;
        int64_t bucket_min_ms;
        int64_t min_history_ms;
        int64_t startup_ms;
        char sensitivity[16];
    } analysis;
};

/* The option table for [collector] and its flags, terminated by {.key = NULL}. */
const struct apm_opt *apm_collector_options(void);

/* Fills defaults (PRODUCT.md's ports, /var/lib/apm). */
void apm_collector_config_defaults(struct apm_collector_config *c);

/*
 * Reads the INI file cfg->config ("" = none) once: the [collector] and
 * [analysis] keys into cfg, the alert sections into *alerts (returns owned,
 * finished: free with apm_alert_config_free; the built-in rules when the
 * file has none). main calls it at the start and the collector again on
 * SIGHUP. Returns 0, or APM_E_CONFIG / -errno with one line in err
 * ("FILE:LINE: key 'K' in [S]: reason"). Any thread.
 */
int apm_collector_config_read(struct apm_collector_config *cfg, struct apm_alert_config **alerts,
                              char *err, size_t errlen);

struct apm_collector;

/*
 * Opens the store, starts the writer, analysis and alerts, binds ingest and
 * HTTP on loop. cfg is copied; alerts (from apm_collector_config_read) is
 * taken over in every case. Returns 0 and *out (ends with
 * apm_collector_stop and the loop running dry, then apm_collector_free), or
 * a negative code after logging why.
 */
int apm_collector_start(uv_loop_t *loop, const struct apm_collector_config *cfg,
                        struct apm_alert_config *alerts, struct apm_collector **out);

/*
 * Graceful stop on the loop thread: stop accepting, let the writer commit and
 * ack what it holds, close every handle. Idempotent. The loop ends by itself.
 */
void apm_collector_stop(struct apm_collector *c);

/*
 * Every module's counters, as GET /api/v1/status shows them (borrowed; a
 * module leaves as it closes). Loop thread.
 */
const struct apm_counters *apm_collector_counters(const struct apm_collector *c);

/* Frees after the loop has ended. Accepts NULL. */
void apm_collector_free(struct apm_collector *c);

#endif
