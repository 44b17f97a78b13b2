#include "server/collector.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "common/wire/codec.h"
#include "common/base/error.h"
#include "common/wire/frame.h"
#include "common/base/log.h"
#include "common/base/sdnotify.h"
#include "common/wire/tls.h"
#include "common/base/token.h"
#include "server/alerts/alert_feed.h"
#include "server/analysis/analyzer_worker.h"
#include "server/api/api.h"
#include "server/api/api_alerts.h"
#include "server/api/api_silences.h"
#include "server/api/api_backup.h"
#include "server/api/api_forecast.h"
#include "server/api/api_sites.h"
#include "server/api/metrics.h"
#include "server/net/http.h"
#include "server/net/listener.h"
#include "server/ingest/ingest.h"
#include "server/store/store.h"
#include "server/ingest/remote_write.h"
#include "server/ingest/writer.h"

#define DAY_MS (86400LL * 1000)

#define OPT(sec, k, t, field, lo, hi, fl, h)                                                       \
    {                                                                                              \
        sec, k, t, offsetof(struct apm_collector_config, field),                                   \
            sizeof(((struct apm_collector_config *)0)->field), lo, hi, fl, h                       \
    }

static const struct apm_opt collector_opts[] = {
    OPT("collector", "config", APM_OPT_STRING, config, 0, 0, true, "INI file to read first"),
    OPT("collector", "data-dir", APM_OPT_STRING, data_dir, 0, 0, true,
        "directory of the LMDB store (default /var/lib/apm)"),
    OPT("collector", "listen", APM_OPT_ENDPOINT, listen, 0, 0, true,
        "agent ingest address (default 0.0.0.0:7411)"),
    OPT("collector", "http", APM_OPT_ENDPOINT, http, 0, 0, true,
        "HTTP API address (default 127.0.0.1:7412)"),
    OPT("collector", "token-file", APM_OPT_STRING, token_file, 0, 0, true,
        "shared token; generated (0600) if missing (default DATA-DIR/token)"),
    OPT("collector", "tls", APM_OPT_BOOL, tls, 0, 1, true,
        "TLS on the ingest port, with the certificate the package made (DATA-DIR/tls/server.crt "
        "and .key) unless tls-cert and tls-key say otherwise"),
    OPT("collector", "tls-cert", APM_OPT_STRING, tls_cert, 0, 0, true,
        "PEM certificate (chain) of the ingest and HTTP listeners; turns TLS on"),
    OPT("collector", "tls-key", APM_OPT_STRING, tls_key, 0, 0, true, "PEM private key of tls-cert"),
    OPT("collector", "tls-ca", APM_OPT_STRING, tls_ca, 0, 0, true,
        "PEM CA that signs agents' client certificates (mTLS)"),
    OPT("collector", "tls-client-certs", APM_OPT_STRING, tls_client_certs, 0, 0, true,
        "off, optional or required: agents' certificates checked against tls-ca (default "
        "required when tls-ca is set, else off)"),
    OPT("collector", "tls-required", APM_OPT_BOOL, tls_required, 0, 1, true,
        "refuse plaintext agents (and plain HTTP) once TLS is on"),
    OPT("collector", "http-tls-cert", APM_OPT_STRING, http_tls_cert, 0, 0, true,
        "PEM certificate (chain) of the HTTP API: turns HTTPS on (may be tls-cert's file)"),
    OPT("collector", "http-tls-key", APM_OPT_STRING, http_tls_key, 0, 0, true,
        "PEM private key of http-tls-cert"),
    OPT("collector", "api-token-file", APM_OPT_STRING, api_token_file, 0, 0, true,
        "token the HTTP API's write routes (POST, PUT, DELETE) ask for as \"Authorization: "
        "Bearer\"; generated (0600) if missing. Default: none on a loopback http address, "
        "else DATA-DIR/api-token"),
    OPT("collector", "daemon", APM_OPT_BOOL, daemon, 0, 1, true,
        "detach from the terminal (default: stay in the foreground; once detached, start-up "
        "errors reach only the log and the exit code is 0)"),
    OPT("collector", "foreground", APM_OPT_BOOL, foreground, 0, 1, true,
        "stay in the foreground, even with daemon set (the default)"),
    OPT("collector", "log-level", APM_OPT_STRING, log_level, 0, 0, true,
        "error, warn, info (default) or debug"),
    OPT("collector", "log-format", APM_OPT_STRING, log_format, 0, 0, true,
        "text (default: RFC 3339 time and program; the short form under journald) or json "
        "(one object per line)"),
    OPT("collector", "max-connections", APM_OPT_INT, max_connections, 1, 100000, true,
        "authenticated agent connections at once (default 1024)"),
    OPT("collector", "max-unauthenticated", APM_OPT_INT, max_unauthenticated, 1, 100000, true,
        "connections that have not sent their Hello yet; the oldest is closed to admit a new "
        "one (default 64)"),
    OPT("collector", "max-unauthenticated-per-address", APM_OPT_INT,
        max_unauthenticated_per_address, 1, 100000, true,
        "of those, from one address (default 16)"),
    OPT("collector", "handshake-timeout", APM_OPT_DURATION, handshake_timeout_ms, 100, DAY_MS, true,
        "time a new connection has to send its Hello (default 5s)"),
    OPT("collector", "idle-timeout", APM_OPT_DURATION, idle_timeout_ms, 1000, 7 * DAY_MS, true,
        "close an agent connection silent this long (default 5m)"),
    OPT("collector", "max-frame", APM_OPT_SIZE, max_frame, 4096, APM_FRAME_MAX, true,
        "largest frame accepted from an agent (default 16M)"),
    OPT("collector", "max-inflight", APM_OPT_INT, max_inflight, 1, 100000, true,
        "batches per connection waiting for commit before reading pauses (default 64)"),
    OPT("collector", "map-size", APM_OPT_SIZE, map_size, 64 << 10, INT64_MAX, true,
        "initial LMDB map size; it doubles as needed up to max-disk (default 8G)"),
    OPT("collector", "max-disk", APM_OPT_SIZE, max_disk, 0, INT64_MAX, true,
        "disk budget of the store; near it the oldest raw samples go first (default 0: 80% of "
        "the free space at start)"),
    OPT("collector", "retention", APM_OPT_DURATION, retention_ms, 1000, 100 * 365 * DAY_MS, true,
        "how long raw samples are kept (default 15d)"),
    OPT("collector", "rollup-1m-retention", APM_OPT_DURATION, rollup_1m_retention_ms, 0,
        100 * 365 * DAY_MS, true, "how long 1-minute rollups are kept (default 90d; 0 = none)"),
    OPT("collector", "rollup-1h-retention", APM_OPT_DURATION, rollup_1h_retention_ms, 0,
        100 * 365 * DAY_MS, true, "how long 1-hour rollups are kept (default 365d; 0 = none)"),
    OPT("collector", "pack-period", APM_OPT_DURATION, pack_period_ms, 0, 365 * DAY_MS, true,
        "length of the closed periods whose raw chunks maintenance re-packs into full pages "
        "(default 2h; 0 = no re-packing)"),
    OPT("collector", "checkpoint", APM_OPT_DURATION, checkpoint_ms, 100, 3600 * 1000LL, true,
        "a series' record is written within this of the first commit that logged samples newer "
        "than it; the write-ahead log keeps them meanwhile (default 30s)"),
    OPT("collector", "maintenance-period", APM_OPT_DURATION, maintenance_period_ms, 100, DAY_MS,
        true, "how often the writer starts a pass of rollups and deletions (default 60s)"),
    OPT("collector", "no-sync", APM_OPT_BOOL, no_sync, 0, 1, false,
        "skip fsync at commit (benchmarks only: acks are then not durable)"),
    OPT("collector", "max-sites-per-process", APM_OPT_INT, max_sites_per_process, 1, 1000000, true,
        "allocation sites stored per process; new ones beyond are refused and counted "
        "(default 1000)"),
    OPT("collector", "process-grace", APM_OPT_DURATION, process_grace_ms, 1000, 7 * DAY_MS, true,
        "a process is live until its agent has not reported it this long; then its in-memory "
        "state is forgotten (default 2m)"),
    OPT("collector", "max-processes-per-agent", APM_OPT_INT, max_processes_per_agent, 1, 10000000,
        true, "live processes one agent may report; a batch beyond is refused (default 10000)"),
    OPT("collector", "max-series-per-agent", APM_OPT_INT, max_series_per_agent, 1, 100000000, true,
        "live series one agent may report; a batch beyond is refused (default 100000)"),
    OPT("collector", "max-sites-per-agent", APM_OPT_INT, max_sites_per_agent, 1, 100000000, true,
        "live allocation sites (per process) one agent may report; a batch beyond is refused "
        "(default 100000)"),
    OPT("collector", "max-analysed-series", APM_OPT_INT, max_analysed_series, 1, 10000000, true,
        "series analysed at once, all agents together; more are counted and not analysed "
        "(default 100000)"),
    OPT("collector", "memory-limit", APM_OPT_SIZE, memory_limit, 0, INT64_MAX, true,
        "limit forecasts aim at for processes without a cgroup limit (default 0: host memory)"),
    OPT("collector", "trace-on-suspicion", APM_OPT_DURATION, trace_on_suspicion_ms, 0, DAY_MS, true,
        "tracemalloc window asked of a process suspected of leaking or growing (default 20m; 0 = "
        "never)"),
    OPT("collector", "trace-confidence", APM_OPT_INT, trace_confidence, 0, 100, true,
        "least leak confidence, in percent, that asks for a trace (default 60)"),
    OPT("remote_write", "url", APM_OPT_STRING, rw.url, 0, 0, false,
        "Prometheus remote-write 1.0 receiver to send every sample to (default none: off)"),
    OPT("remote_write", "remote-write-url", APM_OPT_STRING, rw.url, 0, 0, true,
        "the same as url in [remote_write]"),
    OPT("remote_write", "headers", APM_OPT_STRING, rw.headers, 0, 0, false,
        "extra request headers, \"Name: value\" separated by ';' (e.g. X-Scope-OrgID: tenant)"),
    OPT("remote_write", "remote-write-headers", APM_OPT_STRING, rw.headers, 0, 0, true,
        "the same as headers in [remote_write]"),
    OPT("remote_write", "bearer-token-file", APM_OPT_STRING, rw.bearer_token_file, 0, 0, false,
        "file holding the token sent as Authorization: Bearer (mode 0600)"),
    OPT("remote_write", "remote-write-bearer-token-file", APM_OPT_STRING, rw.bearer_token_file, 0,
        0, true, "the same as bearer-token-file in [remote_write]"),
    OPT("remote_write", "batch-size", APM_OPT_INT, rw.batch_size, 1, 1000000, false,
        "samples per remote-write request at most (default 2000)"),
    OPT("remote_write", "remote-write-batch-size", APM_OPT_INT, rw.batch_size, 1, 1000000, true,
        "the same as batch-size in [remote_write]"),
    OPT("remote_write", "queue-cap", APM_OPT_INT, rw.queue_cap, 1, 100000000, false,
        "samples queued for remote-write at most; past it the sender reads the store "
        "(default 100000)"),
    OPT("remote_write", "remote-write-queue-cap", APM_OPT_INT, rw.queue_cap, 1, 100000000, true,
        "the same as queue-cap in [remote_write]"),
    OPT("analysis", "bucket-samples", APM_OPT_INT, analysis.bucket_samples, 1, 10000, false,
        "no longer used: buckets close on time (kept so that configurations parse)"),
    OPT("analysis", "history-buckets", APM_OPT_INT, analysis.history_buckets, 32, 512, false,
        "buckets of history kept per series, even (default 192)"),
    OPT("analysis", "min-buckets", APM_OPT_INT, analysis.min_buckets, 8, 512, false,
        "no longer used: no verdict waits for a count (kept so that configurations parse)"),
    OPT("analysis", "bucket-min", APM_OPT_DURATION, analysis.bucket_min_ms, 0, 30 * DAY_MS, false,
        "a bucket also spans at least this long (default 0)"),
    OPT("analysis", "min-history", APM_OPT_DURATION, analysis.min_history_ms, 0, 365 * DAY_MS,
        false, "no leak alert before a series spans this long (default 0)"),
    OPT("analysis", "startup", APM_OPT_DURATION, analysis.startup_ms, 0, 365 * DAY_MS, false,
        "growth since a process started is a start-up fill, not a leak, until it has lived this "
        "long, unless a Python site explains it (default 6h)"),
    OPT("analysis", "sensitivity", APM_OPT_STRING, analysis.sensitivity, 0, 0, false,
        "early, balanced (default) or quiet"),
    {.key = NULL},
};

const struct apm_opt *apm_collector_options(void)
{
    return collector_opts;
}

void apm_collector_config_defaults(struct apm_collector_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data_dir, sizeof(c->data_dir), "/var/lib/apm");
    snprintf(c->listen, sizeof(c->listen), "0.0.0.0:7411");
    snprintf(c->http, sizeof(c->http), "127.0.0.1:7412");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    snprintf(c->log_format, sizeof(c->log_format), "text");
    c->max_connections = 1024;
    c->max_unauthenticated = 64;
    c->max_unauthenticated_per_address = 16;
    c->handshake_timeout_ms = 5000;
    c->idle_timeout_ms = 300000;
    c->max_frame = APM_FRAME_MAX;
    c->max_inflight = 64;
    c->map_size = 8LL << 30;
    c->retention_ms = 15 * DAY_MS;
    c->rollup_1m_retention_ms = 90 * DAY_MS;
    c->rollup_1h_retention_ms = 365 * DAY_MS;
    c->pack_period_ms = 2 * 3600 * 1000LL;
    c->checkpoint_ms = 30000;
    c->maintenance_period_ms = 60000;
    c->rw.batch_size = 2000;
    c->rw.queue_cap = 100000;
    c->max_sites_per_process = 1000;
    c->process_grace_ms = 120000;
    c->max_processes_per_agent = 10000;
    c->max_series_per_agent = 100000;
    c->max_sites_per_agent = 100000;
    c->max_analysed_series = APM_ANALYZER_DEFAULT_MAX_SERIES;
    c->trace_on_suspicion_ms = 20 * 60 * 1000;
    c->trace_confidence = 60;
    c->analysis.bucket_samples = 2;
    c->analysis.startup_ms = (int64_t)APM_ANALYSIS_STARTUP_S * 1000;
    c->analysis.history_buckets = 192;
    c->analysis.min_buckets = 32;
    snprintf(c->analysis.sensitivity, sizeof(c->analysis.sensitivity), "balanced");
}

int apm_collector_config_read(struct apm_collector_config *cfg, struct apm_alert_config **alerts,
                              char *err, size_t errlen)
{
    *alerts = NULL;
    struct apm_alert_config *ac = apm_alert_config_new();
    if (ac == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    if (cfg->config[0] != '\0') {
        apm_alert_config_set_file(ac, cfg->config);
        rc = apm_config_load(cfg->config, collector_opts, cfg, apm_alert_config_section, ac, err,
                             errlen);
    }
    if (rc == 0)
        rc = apm_alert_config_finish(ac, err, errlen);
    if (rc != 0) {
        apm_alert_config_free(ac);
        return rc;
    }
    *alerts = ac;
    return 0;
}

struct apm_collector {
    uv_loop_t *loop;
    struct apm_collector_config cfg;
    struct apm_store *store;
    struct apm_writer *writer;
    struct apm_analyzer_worker *analyzer;
    struct apm_alert_feed *alerts;
    struct apm_ingest *ingest;
    struct apm_api *api;
    struct apm_metrics_config metrics; /* GET /metrics reads through it */
    struct apm_agent_health *health;   /* the agents' latest health reports */
    struct apm_http_server *http;
    struct apm_rw *rw; /* NULL: remote-write off */
    /* Every module's counters, for status; a module leaves when it closes. Loop thread. */
    struct apm_counters counters;
    uv_signal_t sigterm, sigint, sighup;
    int signals_open;
    bool stopping;
    uint8_t token[APM_TOKEN_MAX];
    size_t token_len;
    struct apm_tls_ctx *tls;      /* NULL: plaintext only */
    struct apm_tls_ctx *http_tls; /* NULL: plain HTTP only */
    uint8_t api_token[APM_TOKEN_MAX];
    size_t api_token_len; /* 0: the API's write routes are open (loopback only) */
};

static void on_signal_closed(uv_handle_t *h)
{
    struct apm_collector *c = h->data;
    c->signals_open--;
}

static void on_writer_closed(struct apm_writer *w)
{
    (void)w;
}

static void on_ingest_closed(void *ctx)
{
    struct apm_collector *c = ctx;
    c->ingest = NULL;
    apm_counters_remove(&c->counters, "ingest");
    apm_counters_remove(&c->counters, "writer");
    /* Every connection is gone; the writer drains what it still holds. */
    if (c->writer != NULL) {
        apm_writer_close(c->writer, on_writer_closed);
        c->writer = NULL;
    }
    /* Flushes its verdicts; batches the writer commits from now on are not analysed. */
    apm_analyzer_worker_close(c->analyzer, NULL, NULL);
}

void apm_collector_stop(struct apm_collector *c)
{
    if (c->stopping)
        return;
    c->stopping = true;
    apm_info("collector: stopping: draining connections and committing");
    apm_sd_stopping("stopping: draining connections and committing");
    /* The server frees itself once closed; the api it calls stays until apm_collector_free. */
    apm_http_server_close(c->http, NULL);
    c->http = NULL;
    apm_counters_remove(&c->counters, "http");
    if (c->ingest != NULL)
        apm_ingest_close(c->ingest, on_ingest_closed, c);
    else
        on_ingest_closed(c);
    uv_close((uv_handle_t *)&c->sigterm, on_signal_closed);
    uv_close((uv_handle_t *)&c->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&c->sighup, on_signal_closed);
}

/*
 * Reads the config file again the way main did; only its alert sections take
 * effect now (the other settings need a restart). On any error the current
 * rules stay.
 */
static void reload(struct apm_collector *c)
{
    char err[1024] = "";
    struct apm_alert_config *ac = NULL;
    struct apm_collector_config scratch = c->cfg;
    int rc = apm_collector_config_read(&scratch, &ac, err, sizeof(err));
    if (rc != 0) {
        apm_error("alerts: %s", err[0] ? err : apm_strerror(rc));
        apm_error("alerts: reload failed; the current rules stay");
        return;
    }
    apm_alert_feed_reload(c->alerts, ac);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct apm_collector *c = s->data;
    if (signum == SIGHUP) {
        apm_info("collector: SIGHUP: reloading alert rules");
        reload(c);
        return;
    }
    apm_info("collector: signal %d", signum);
    apm_collector_stop(c);
}

/* The writer's commit hook: the analysis, then remote-write. Writer thread. */
static void on_commit(void *ctx, const struct apm_agent_ident *agent, const struct apm_batch *batch)
{
    struct apm_collector *c = ctx;
    apm_analyzer_worker_hook(c->analyzer, agent, batch);
    if (c->rw != NULL)
        apm_rw_commit_hook(c->rw, agent, batch);
}

/* Starts remote-write from cfg->rw. Returns 0 or a code, after logging why. */
static int start_remote_write(struct apm_collector *c, const struct apm_collector_config *cfg)
{
    struct apm_rw_options o = {.url = cfg->rw.url,
                               .batch_size = (unsigned)cfg->rw.batch_size,
                               .queue_cap = (unsigned)cfg->rw.queue_cap,
                               .verdict_live_ms = cfg->process_grace_ms};
    char headers[sizeof(cfg->rw.headers)], *save = NULL;
    snprintf(headers, sizeof(headers), "%s", cfg->rw.headers);
    for (char *h = strtok_r(headers, ";", &save); h != NULL; h = strtok_r(NULL, ";", &save)) {
        while (*h == ' ' || *h == '\t')
            h++;
        if (*h == '\0')
            continue;
        if (o.nheaders == APM_RW_HEADERS_MAX || strchr(h, ':') == NULL) {
            apm_error("collector: remote_write headers: '%s': %s", h,
                      o.nheaders == APM_RW_HEADERS_MAX ? "too many headers (16 at most)"
                                                       : "not \"Name: value\"");
            return APM_E_CONFIG;
        }
        o.headers[o.nheaders++] = h;
    }
    uint8_t token[APM_TOKEN_MAX + 1];
    size_t tlen = 0;
    if (cfg->rw.bearer_token_file[0] != '\0') {
        char err[512];
        int rc = apm_token_load(cfg->rw.bearer_token_file, false, token, APM_TOKEN_MAX, &tlen, err,
                                sizeof(err));
        if (rc != 0) {
            apm_error("collector: remote_write bearer-token-file: %s", err);
            return rc;
        }
        token[tlen] = '\0';
        o.bearer_token = (const char *)token;
    }
    int rc = apm_rw_new(c->store, &o, &c->rw);
    if (rc != 0)
        apm_error("collector: cannot start remote-write to %s: %s", cfg->rw.url, apm_strerror(rc));
    else
        apm_info("collector: remote-write to %s", cfg->rw.url);
    return rc;
}

/* Adds what is not a counter to GET /api/v1/status (the counters come from c->counters). */
static void status_fn(void *ctx, json_t *obj)
{
    struct apm_collector *c = ctx;
    json_object_set_new(obj, "listen", json_string(c->cfg.listen));
    json_object_set_new(obj, "data_dir", json_string(c->cfg.data_dir));
    const char *full = apm_store_full_reason(c->store);
    if (full != NULL)
        json_object_set_new(obj, "store_full", json_string(full));
}

/*
 * Loop thread: sends a trace control (a tracemalloc window or its end) to the
 * agents of host. The one way up to the agents, for the analyzer's suspicion
 * and for the API (an apm_api_trace_fn). Returns the agents reached.
 */
static int send_trace(void *ctx, const char *host, const struct apm_msg_control *m)
{
    struct apm_collector *c = ctx;
    if (c->ingest == NULL || c->stopping)
        return 0;
    return apm_ingest_send_control(c->ingest, host, m);
}

/* Loop thread: asks a suspected process's agent for a tracemalloc window. */
static void on_trace_request(void *ctx, const struct apm_analyzer_trace *t)
{
    struct apm_collector *c = ctx;
    if (c->ingest == NULL || c->stopping)
        return;
    struct apm_msg_control m = {.action = APM_CONTROL_TRACE,
                                .pid = t->pid,
                                .start_ms = t->start_ms,
                                .duration_s = t->duration_s};
    int n = send_trace(c, t->host, &m);
    apm_info("collector: %s %s (confidence %.2f): tracing for %us %s", t->process_id,
             t->cls == APM_CLASS_GROWING ? "grows with no verdict yet" : "looks like a leak",
             t->confidence, (unsigned)t->duration_s,
             n > 0 ? "requested" : "not requested (its agent is not connected)");
}

static int analyzer_options(const struct apm_collector_config *cfg, struct apm_analyzer_options *o)
{
    apm_analyzer_options_init(o);
    struct apm_analysis_config *a = &o->analysis;
    if (apm_analysis_sensitivity_parse(cfg->analysis.sensitivity, &a->sensitivity) != 0) {
        apm_error("collector: key 'sensitivity' in [analysis]: '%s' is not early, balanced or "
                  "quiet",
                  cfg->analysis.sensitivity);
        return APM_E_CONFIG;
    }
    a->bucket_samples = (unsigned)cfg->analysis.bucket_samples;
    a->history_buckets = (unsigned)cfg->analysis.history_buckets;
    a->min_buckets = (unsigned)cfg->analysis.min_buckets;
    a->bucket_min_s = (double)cfg->analysis.bucket_min_ms / 1000.0;
    a->min_history_s = (double)cfg->analysis.min_history_ms / 1000.0;
    a->startup_s = (double)cfg->analysis.startup_ms / 1000.0;
    o->memory_limit = cfg->memory_limit;
    o->trace_window_s = (double)cfg->trace_on_suspicion_ms / 1000.0;
    o->trace_confidence = (double)cfg->trace_confidence / 100.0;
    /* One definition of live (PRODUCT.md): a stopped process's state goes after process-grace. */
    o->idle_s = (double)cfg->process_grace_ms / 1000.0;
    o->max_series = (unsigned)cfg->max_analysed_series;
    return 0;
}

/* Registers every module's counters, in the order status shows them. */
static int add_counters(struct apm_collector *c)
{
    apm_counters_init(&c->counters);
    int rc = apm_store_add_counters(c->store, &c->counters);
    if (rc == 0)
        rc = apm_api_add_counters(c->api, &c->counters);
    if (rc == 0)
        rc = apm_alert_feed_add_counters(c->alerts, &c->counters);
    if (rc == 0)
        rc = apm_ingest_add_counters(c->ingest, &c->counters);
    if (rc == 0)
        rc = apm_writer_add_counters(c->writer, &c->counters);
    if (rc == 0)
        rc = apm_analyzer_worker_add_counters(c->analyzer, &c->counters);
    if (rc == 0)
        rc = apm_http_server_add_counters(c->http, &c->counters);
    if (rc == 0 && c->rw != NULL)
        rc = apm_rw_add_counters(c->rw, &c->counters);
    return rc;
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        apm_error("collector: cannot create data directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    return 0;
}

/*
 * Builds the TLS context when any tls- key is set (a half-done setting is an
 * error, never a silent plaintext), and warns when agents would cross the
 * network in clear. Returns 0 or APM_E_CONFIG after logging why.
 */
static int start_tls(struct apm_collector *c, const struct apm_collector_config *cfg)
{
    bool wanted = cfg->tls || cfg->tls_cert[0] != '\0' || cfg->tls_key[0] != '\0' ||
                  cfg->tls_ca[0] != '\0' || cfg->tls_client_certs[0] != '\0' || cfg->tls_required;
    if (!wanted) {
        if (!apm_listener_is_loopback(cfg->listen))
            apm_warn("collector: ingest listens on %s beyond loopback without TLS: tokens and "
                     "samples cross the network in clear (set tls-cert and tls-key, see "
                     "docs/operations.md)",
                     cfg->listen);
        return 0;
    }
    char cert[4200], key[4200];
    snprintf(cert, sizeof(cert), "%s", cfg->tls_cert);
    snprintf(key, sizeof(key), "%s", cfg->tls_key);
    if (cfg->tls && cert[0] == '\0' && key[0] == '\0') {
        snprintf(cert, sizeof(cert), "%s/tls/server.crt", cfg->data_dir);
        snprintf(key, sizeof(key), "%s/tls/server.key", cfg->data_dir);
    }
    struct apm_tls_options to = {
        .cert = cert,
        .key = key,
        .ca = cfg->tls_ca,
        .client_certs =
            cfg->tls_ca[0] != '\0' ? APM_TLS_CLIENT_CERTS_REQUIRED : APM_TLS_CLIENT_CERTS_OFF,
    };
    if (cfg->tls_client_certs[0] != '\0' &&
        apm_tls_client_certs_parse(cfg->tls_client_certs, &to.client_certs) != 0) {
        apm_error("collector: tls-client-certs '%s': want off, optional or required",
                  cfg->tls_client_certs);
        return APM_E_CONFIG;
    }
    char err[512];
    int rc = apm_tls_ctx_new(true, &to, &c->tls, err, sizeof(err));
    if (rc != 0) {
        apm_error("collector: %s", err);
        return APM_E_CONFIG;
    }
    static const char *const certs[] = {"off", "optional", "required"};
    if (!apm_listener_is_loopback(cfg->listen) && !cfg->tls_required)
        apm_info("collector: plaintext agents are still accepted beyond loopback; set "
                 "tls-required once every agent has tls-ca");
    apm_info("collector: TLS on (certificate %s, client certificates %s%s%s, plaintext %s)", cert,
             certs[to.client_certs], to.client_certs ? " against " : "",
             to.client_certs ? cfg->tls_ca : "", cfg->tls_required ? "refused" : "accepted");
    return 0;
}

/* Builds the HTTPS context when http-tls-cert is set. Returns 0 or APM_E_CONFIG after logging. */
static int start_http_tls(struct apm_collector *c, const struct apm_collector_config *cfg)
{
    if (cfg->http_tls_cert[0] == '\0' && cfg->http_tls_key[0] == '\0') {
        if (!apm_listener_is_loopback(cfg->http))
            apm_warn("collector: HTTP API listens on %s beyond loopback without TLS (set "
                     "http-tls-cert and http-tls-key)",
                     cfg->http);
        return 0;
    }
    struct apm_tls_options to = {.cert = cfg->http_tls_cert, .key = cfg->http_tls_key};
    char err[512];
    if (apm_tls_ctx_new(true, &to, &c->http_tls, err, sizeof(err)) != 0) {
        apm_error("collector: HTTP API: %s", err);
        return APM_E_CONFIG;
    }
    apm_info("collector: HTTP API over TLS (certificate %s, plain HTTP %s)", cfg->http_tls_cert,
             cfg->tls_required ? "refused" : "accepted");
    return 0;
}

/*
 * Loads the token of the API's write routes: api-token-file when set, else
 * DATA-DIR/api-token when the HTTP address is reachable beyond loopback.
 * Returns 0 or a code after logging why.
 */
static int load_api_token(struct apm_collector *c, const struct apm_collector_config *cfg)
{
    char path[4200];
    if (cfg->api_token_file[0] != '\0')
        snprintf(path, sizeof(path), "%s", cfg->api_token_file);
    else if (!apm_listener_is_loopback(cfg->http))
        snprintf(path, sizeof(path), "%s/api-token", cfg->data_dir);
    else
        return 0;
    char err[512];
    int rc = apm_token_load(path, true, c->api_token, sizeof(c->api_token), &c->api_token_len, err,
                            sizeof(err));
    if (rc != 0) {
        apm_error("collector: API token: %s", err);
        return rc;
    }
    apm_info("collector: the HTTP API's write routes need the token in %s", path);
    return 0;
}

/* 80 % of the free space of the data directory's file system, plus the store there now. */
static uint64_t default_max_disk(const char *dir)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return 0;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    uint64_t have = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    return free_bytes / 10 * 8 + have;
}

static int start_signals(struct apm_collector *c)
{
    uv_signal_t *sig[] = {&c->sigterm, &c->sigint, &c->sighup};
    int num[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(c->loop, sig[i]);
        sig[i]->data = c;
        c->signals_open++;
        uv_signal_start(sig[i], on_signal, num[i]);
    }
    return 0;
}

int apm_collector_start(uv_loop_t *loop, const struct apm_collector_config *cfg,
                        struct apm_alert_config *alerts, struct apm_collector **out)
{
    struct apm_collector *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        apm_alert_config_free(alerts);
        return -ENOMEM;
    }
    c->loop = loop;
    c->cfg = *cfg;
    char err[512];
    int rc = ensure_dir(cfg->data_dir);
    if (rc != 0)
        goto fail;
    char token_path[4200];
    if (cfg->token_file[0] != '\0')
        snprintf(token_path, sizeof(token_path), "%s", cfg->token_file);
    else
        snprintf(token_path, sizeof(token_path), "%s/token", cfg->data_dir);
    rc = apm_token_load(token_path, true, c->token, sizeof(c->token), &c->token_len, err,
                        sizeof(err));
    if (rc != 0) {
        apm_error("collector: %s", err);
        goto fail;
    }
    rc = start_tls(c, cfg);
    if (rc == 0)
        rc = start_http_tls(c, cfg);
    if (rc == 0)
        rc = load_api_token(c, cfg);
    if (rc != 0)
        goto fail;
    struct apm_store_options so = {
        .dir = cfg->data_dir,
        .map_size = (size_t)cfg->map_size,
        .no_sync = cfg->no_sync,
        .max_sites_per_process = (unsigned)cfg->max_sites_per_process,
        .forget_after_ms = cfg->process_grace_ms,
        .retention_ms = cfg->retention_ms,
        .rollup_1m_ms = cfg->rollup_1m_retention_ms,
        .rollup_1h_ms = cfg->rollup_1h_retention_ms,
        .pack_period_ms = cfg->pack_period_ms > 0 ? cfg->pack_period_ms : -1,
        .checkpoint_ms = cfg->checkpoint_ms,
        .max_disk = cfg->max_disk > 0 ? (uint64_t)cfg->max_disk : default_max_disk(cfg->data_dir),
        .rw_hold = cfg->rw.url[0] != '\0',
    };
    rc = apm_store_open(&so, &c->store);
    if (rc != 0) {
        if (rc != -EBUSY) /* a locked directory has said so, with the holder's pid */
            apm_error("collector: cannot open store in %s: %s", cfg->data_dir, apm_strerror(rc));
        goto fail;
    }
    rc = apm_alert_feed_new(c->store, alerts, cfg->http, &c->alerts);
    alerts = NULL;
    if (rc != 0)
        goto fail;
    struct apm_analyzer_options ao;
    rc = analyzer_options(cfg, &ao);
    ao.verdict_fn = apm_alert_feed_verdict;
    ao.verdict_ctx = c->alerts;
    if (rc == 0) {
        rc = apm_analyzer_worker_new(loop, c->store, &ao, 0, on_trace_request, c, &c->analyzer);
        if (rc != 0)
            apm_error("collector: cannot start analysis: %s (check [analysis] in the config)",
                      apm_strerror(rc));
    }
    if (rc != 0)
        goto fail;
    rc = apm_writer_new(loop, c->store, 0, &c->writer);
    if (rc != 0) {
        apm_error("collector: cannot start writer: %s", apm_strerror(rc));
        goto fail;
    }
    if (cfg->rw.url[0] != '\0' && (rc = start_remote_write(c, cfg)) != 0)
        goto fail_writer;
    apm_writer_set_commit_hook(c->writer, on_commit, c);
    apm_writer_set_maintenance(c->writer, cfg->maintenance_period_ms);
    rc = apm_agent_health_new(cfg->process_grace_ms, &c->health);
    if (rc != 0)
        goto fail_writer;
    struct apm_ingest_options io = {
        .listen = cfg->listen,
        .token = c->token,
        .token_len = c->token_len,
        .max_connections = (unsigned)cfg->max_connections,
        .max_unauthenticated = (unsigned)cfg->max_unauthenticated,
        .max_unauthenticated_per_address = (unsigned)cfg->max_unauthenticated_per_address,
        .handshake_timeout_ms = (uint64_t)cfg->handshake_timeout_ms,
        .idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms,
        .max_frame = (uint32_t)cfg->max_frame,
        .max_inflight = (unsigned)cfg->max_inflight,
        .tls = c->tls,
        .tls_required = cfg->tls_required,
        .process_grace_ms = (uint64_t)cfg->process_grace_ms,
        .max_processes_per_agent = (uint64_t)cfg->max_processes_per_agent,
        .max_series_per_agent = (uint64_t)cfg->max_series_per_agent,
        .max_sites_per_agent = (uint64_t)cfg->max_sites_per_agent,
        .health = c->health,
    };
    rc = apm_ingest_new(loop, c->store, c->writer, &io, &c->ingest);
    if (rc != 0)
        goto fail_writer;
    struct apm_api_config ac = {.store = c->store,
                                .counters = &c->counters,
                                .status_fn = status_fn,
                                .trace_fn = send_trace,
                                .ctx = c,
                                .write_token = c->api_token_len > 0 ? c->api_token : NULL,
                                .write_token_len = c->api_token_len,
                                .process_grace_ms = cfg->process_grace_ms};
    rc = apm_api_new(&ac, &c->api);
    if (rc == 0)
        rc = apm_api_forecast_register(c->api);
    if (rc == 0)
        rc = apm_api_sites_register(c->api);
    if (rc == 0)
        rc = apm_api_alerts_register(c->api, apm_alert_feed_engine(c->alerts));
    if (rc == 0)
        rc = apm_api_silences_register(c->api, apm_alert_feed_engine(c->alerts));
    c->metrics = (struct apm_metrics_config){.store = c->store,
                                             .counters = &c->counters,
                                             .alerts = apm_alert_feed_engine(c->alerts),
                                             .process_grace_ms = cfg->process_grace_ms,
                                             .health = c->health};
    if (rc == 0)
        rc = apm_api_add_raw_route(c->api, "/metrics", apm_metrics_handle, &c->metrics);
    if (rc == 0)
        rc = apm_api_backup_register(c->api, loop);
    if (rc == 0)
        rc = apm_http_server_new_opts(
            loop, cfg->http,
            &(struct apm_http_options){.tls = c->http_tls, .tls_required = cfg->tls_required},
            apm_api_handle, c->api, &c->http);
    if (rc == 0 && (rc = add_counters(c)) != 0) {
        apm_http_server_close(c->http, NULL);
        c->http = NULL;
    }
    if (rc != 0) {
        apm_ingest_close(c->ingest, NULL, NULL);
        c->ingest = NULL;
        goto fail_writer;
    }
    start_signals(c);
    apm_info("collector: store %s, ingest %s, http %s", cfg->data_dir, cfg->listen, cfg->http);
    *out = c;
    return 0;

fail_writer:
    apm_writer_close(c->writer, on_writer_closed);
    c->writer = NULL;
fail:
    if (c->analyzer != NULL)
        apm_analyzer_worker_close(c->analyzer, NULL, NULL);
    /* Runs the closes started above (listeners included) to their end. */
    uv_run(loop, UV_RUN_DEFAULT);
    apm_rw_free(c->rw);
    apm_analyzer_worker_free(c->analyzer);
    apm_alert_config_free(alerts);
    apm_alert_feed_free(c->alerts);
    apm_api_free(c->api);
    apm_agent_health_free(c->health);
    apm_store_free(c->store);
    apm_tls_ctx_free(c->tls);
    apm_tls_ctx_free(c->http_tls);
    free(c);
    return rc;
}

const struct apm_counters *apm_collector_counters(const struct apm_collector *c)
{
    return &c->counters;
}

void apm_collector_free(struct apm_collector *c)
{
    if (c == NULL)
        return;
    apm_counters_remove(&c->counters, "remote_write");
    apm_rw_free(c->rw); /* the writer is gone: no commit hook runs any more */
    apm_analyzer_worker_free(c->analyzer);
    apm_alert_feed_free(c->alerts);
    apm_api_free(c->api);
    apm_agent_health_free(c->health);
    apm_store_free(c->store);
    apm_tls_ctx_free(c->tls);
    apm_tls_ctx_free(c->http_tls);
    free(c);
}
