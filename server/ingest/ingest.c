/*
 * The ingest object (ingest.h): its start (options' defaults, the agents'
 * limits, the listener, the log summaries' timer), its counters, control
 * frames to a host's agents, and its close, which drains every connection
 * first. A connection's life is in ingest_conn.c, what it reads in
 * ingest_read.c (ingest_priv.h).
 */
#include "server/ingest/ingest.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/wire/frame.h"
#include "server/ingest/agent_limits.h"
#include "server/ingest/ingest_priv.h"
#include "server/net/listener.h"

/* How often the summaries of refused and closed strangers are logged. */
#define LOG_WINDOW_MS 10000
/* Lines per window logged one by one before a summary takes over. */
#define LOG_BURST 5

void apm_ingest_maybe_finish_close(struct apm_ingest *in)
{
    if (in->closing && in->listener == NULL && in->conns == NULL && !in->log_timer_open) {
        apm_ingest_close_cb cb = in->close_cb;
        void *ctx = in->close_ctx;
        apm_agent_limits_free(in->limits);
        apm_hashmap_close(&in->waiting_by_addr);
        free(in);
        if (cb != NULL)
            cb(ctx);
    }
}

/* Ends the summaries' windows, so that a flood's count appears after the flood too. */
static void on_log_timer(uv_timer_t *t)
{
    struct apm_ingest *in = t->data;
    int64_t now = (int64_t)uv_now(in->loop);
    apm_log_limit_flush(&in->stranger_log, now, false);
    apm_log_limit_flush(&in->evict_log, now, false);
    apm_log_limit_flush(&in->store_log, now, false);
}

static void on_log_timer_closed(uv_handle_t *h)
{
    struct apm_ingest *in = h->data;
    in->log_timer_open = false;
    apm_ingest_maybe_finish_close(in);
}

int apm_ingest_new(uv_loop_t *loop, struct apm_store *store, struct apm_writer *writer,
                   const struct apm_ingest_options *opt, struct apm_ingest **out)
{
    struct apm_ingest *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return -ENOMEM;
    in->loop = loop;
    in->store = store;
    in->writer = writer;
    in->opt = *opt;
    if (in->opt.max_connections == 0)
        in->opt.max_connections = 1024;
    if (in->opt.handshake_timeout_ms == 0)
        in->opt.handshake_timeout_ms = 5000;
    if (in->opt.max_unauthenticated == 0)
        in->opt.max_unauthenticated = 64;
    if (in->opt.max_unauthenticated_per_address == 0 ||
        in->opt.max_unauthenticated_per_address > in->opt.max_unauthenticated)
        in->opt.max_unauthenticated_per_address = in->opt.max_unauthenticated;
    apm_hashmap_init(&in->waiting_by_addr);
    in->stranger_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "ingest: refused", "unauthenticated connections", LOG_WINDOW_MS, LOG_BURST);
    in->evict_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "ingest: closed", "unauthenticated connections to admit newer ones",
        LOG_WINDOW_MS, LOG_BURST);
    in->store_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "ingest: closed", "agent connections for a failed commit", LOG_WINDOW_MS, 1);
    if (in->opt.idle_timeout_ms == 0)
        in->opt.idle_timeout_ms = 300000;
    if (in->opt.max_frame == 0 || in->opt.max_frame > APM_FRAME_MAX)
        in->opt.max_frame = APM_FRAME_MAX;
    if (in->opt.max_inflight == 0)
        in->opt.max_inflight = 64;
    struct apm_agent_limits_options lo = {.grace_ms = opt->process_grace_ms,
                                          .max_processes = opt->max_processes_per_agent,
                                          .max_series = opt->max_series_per_agent,
                                          .max_sites = opt->max_sites_per_agent};
    int rc = apm_agent_limits_new(&lo, &in->limits);
    if (rc != 0) {
        apm_hashmap_close(&in->waiting_by_addr);
        free(in);
        return rc;
    }
    rc = apm_listener_new(loop, "ingest", opt->listen, 511, apm_ingest_on_connection, in,
                          &in->listener);
    if (rc != 0) {
        apm_agent_limits_free(in->limits);
        apm_hashmap_close(&in->waiting_by_addr);
        free(in);
        return rc;
    }
    uv_timer_init(loop, &in->log_timer);
    in->log_timer.data = in;
    in->log_timer_open = true;
    uv_timer_start(&in->log_timer, on_log_timer, LOG_WINDOW_MS, LOG_WINDOW_MS);
    uv_unref((uv_handle_t *)&in->log_timer);
    apm_info("ingest: listening on %s", opt->listen);
    *out = in;
    return 0;
}

int apm_ingest_port(const struct apm_ingest *in)
{
    return apm_listener_port(in->listener);
}

void apm_ingest_get_stats(const struct apm_ingest *in, struct apm_ingest_stats *out)
{
    *out = in->stats;
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_ingest_stats, accepted, "connections_accepted", APM_COUNTER_TOTAL, "",
                "Agent connections accepted."),
    APM_COUNTER(struct apm_ingest_stats, active, "connections_active", APM_COUNTER_GAUGE, "",
                "Agent connections open now."),
    APM_COUNTER(struct apm_ingest_stats, refused_over_cap, "refused_over_cap", APM_COUNTER_TOTAL,
                "", "Agents refused at their Hello because max-connections agents were connected."),
    APM_COUNTER(struct apm_ingest_stats, unauthenticated, "connections_unauthenticated",
                APM_COUNTER_GAUGE, "", "Connections open now that have not sent a valid Hello."),
    APM_COUNTER(struct apm_ingest_stats, evicted_unauthenticated, "evicted_unauthenticated",
                APM_COUNTER_TOTAL, "",
                "Unauthenticated connections closed to admit newer ones (max-unauthenticated)."),
    APM_COUNTER(struct apm_ingest_stats, auth_failures, "auth_failures", APM_COUNTER_TOTAL, "",
                "Agents refused for a wrong or missing token."),
    APM_COUNTER(struct apm_ingest_stats, frames_too_big, "frames_too_big", APM_COUNTER_TOTAL, "",
                "Frames refused for a length above the maximum."),
    APM_COUNTER(struct apm_ingest_stats, decode_errors, "decode_errors", APM_COUNTER_TOTAL, "",
                "Frames that did not decode."),
    APM_COUNTER(struct apm_ingest_stats, protocol_errors, "protocol_errors", APM_COUNTER_TOTAL, "",
                "Messages not allowed in the state of their connection."),
    APM_COUNTER(struct apm_ingest_stats, handshake_timeouts, "handshake_timeouts",
                APM_COUNTER_TOTAL, "", "Connections closed for sending no Hello in time."),
    APM_COUNTER(struct apm_ingest_stats, idle_timeouts, "idle_timeouts", APM_COUNTER_TOTAL, "",
                "Connections closed after the idle timeout."),
    APM_COUNTER(struct apm_ingest_stats, batches, "batches", APM_COUNTER_TOTAL, "",
                "Batches received and handed to the writer."),
    APM_COUNTER(struct apm_ingest_stats, samples, "samples", APM_COUNTER_TOTAL, "",
                "Samples in the batches received."),
    APM_COUNTER(struct apm_ingest_stats, acks, "acks", APM_COUNTER_TOTAL, "",
                "Batches acknowledged after their commit."),
    APM_COUNTER(struct apm_ingest_stats, duplicates, "duplicates", APM_COUNTER_TOTAL, "",
                "Batches stored before and acknowledged again."),
    APM_COUNTER(struct apm_ingest_stats, store_errors, "store_errors", APM_COUNTER_TOTAL, "",
                "Batches the store failed to commit."),
    APM_COUNTER(struct apm_ingest_stats, overloaded, "overloaded", APM_COUNTER_TOTAL, "",
                "Batches refused because the writer queue was full."),
    APM_COUNTER(struct apm_ingest_stats, strings_invalid_utf8, "strings_invalid_utf8",
                APM_COUNTER_TOTAL, "",
                "Peer strings whose invalid UTF-8 was replaced with U+FFFD."),
    APM_COUNTER(struct apm_ingest_stats, strings_control, "strings_control", APM_COUNTER_TOTAL, "",
                "Peer strings whose control characters were replaced with U+FFFD."),
    APM_COUNTER(struct apm_ingest_stats, strings_too_long, "strings_too_long", APM_COUNTER_TOTAL,
                "", "Peer strings cut to their length bound."),
    APM_COUNTER(struct apm_ingest_stats, refused_processes, "refused_processes", APM_COUNTER_TOTAL,
                "", "Batches refused for taking their agent over max-processes-per-agent."),
    APM_COUNTER(struct apm_ingest_stats, refused_series, "refused_series", APM_COUNTER_TOTAL, "",
                "Batches refused for taking their agent over max-series-per-agent."),
    APM_COUNTER(struct apm_ingest_stats, refused_sites, "refused_sites", APM_COUNTER_TOTAL, "",
                "Batches refused for taking their agent over max-sites-per-agent."),
    APM_COUNTER(struct apm_ingest_stats, controls_sent, "controls_sent", APM_COUNTER_TOTAL, "",
                "Control frames (trace requests) sent to agents."),
    APM_COUNTER(struct apm_ingest_stats, tls_sessions, "tls_sessions", APM_COUNTER_TOTAL, "",
                "TLS handshakes completed."),
    APM_COUNTER(struct apm_ingest_stats, tls_failures, "tls_failures", APM_COUNTER_TOTAL, "",
                "TLS handshakes (bad or missing client certificate, old protocol) or records "
                "that failed."),
    APM_COUNTER(struct apm_ingest_stats, plaintext_refused, "plaintext_refused", APM_COUNTER_TOTAL,
                "", "Plaintext connections refused because tls-required is set."),
    {.name = NULL},
};

int apm_ingest_add_counters(struct apm_ingest *in, struct apm_counters *r)
{
    struct apm_counter_group g = {
        .module = "ingest", .counters = counters, .size = sizeof(in->stats), .stats = &in->stats};
    return apm_counters_add(r, &g);
}

int apm_ingest_send_control(struct apm_ingest *in, const char *host,
                            const struct apm_msg_control *ctl)
{
    int sent = 0;
    for (struct conn *c = in->conns; c != NULL; c = c->next) {
        if (!c->authed || c->closing || strcmp(c->ident.host, host) != 0)
            continue;
        struct apm_frame_out f;
        int rc = apm_codec_encode_control(ctl, &f);
        if (rc != 0)
            return rc;
        apm_ingest_conn_send(c, &f, false);
        in->stats.controls_sent++;
        sent++;
    }
    return sent;
}

static void on_listener_closed(void *ctx)
{
    struct apm_ingest *in = ctx;
    in->listener = NULL;
    apm_ingest_maybe_finish_close(in);
}

void apm_ingest_close(struct apm_ingest *in, apm_ingest_close_cb cb, void *ctx)
{
    in->closing = true;
    in->close_cb = cb;
    in->close_ctx = ctx;
    int64_t now = (int64_t)uv_now(in->loop);
    apm_log_limit_flush(&in->stranger_log, now, true);
    apm_log_limit_flush(&in->evict_log, now, true);
    apm_log_limit_flush(&in->store_log, now, true);
    uv_close((uv_handle_t *)&in->log_timer, on_log_timer_closed);
    /* Drain: stop reading, let the writer report what it holds, ack it, close. */
    for (struct conn *c = in->conns; c != NULL;) {
        struct conn *next = c->next;
        c->draining = true;
        if (!c->closing) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            if (c->inflight == 0)
                apm_ingest_conn_close(c);
        }
        c = next;
    }
    apm_listener_close(in->listener, on_listener_closed, in);
}
