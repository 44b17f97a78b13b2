/*
 * What an agent's connection reads (ingest_priv.h): TLS or plaintext,
 * decided by the first byte; frames; the Hello (token, protocol version,
 * connection cap, the watermark it gets back); batches, checked against the
 * agent's limits and handed to the writer, acked once committed; reading
 * paused while too many of them are in flight.
 */
#include <errno.h>
#include <stdbool.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "common/wire/frame.h"
#include "common/base/log.h"
#include "common/base/token.h"
#include "server/ingest/agent_limits.h"
#include "server/ingest/ingest_priv.h"

#define STRINGS_LOG_EVERY_MS 60000u

/*
 * Refuses a batch that would take its agent over a cardinality limit: a
 * permanent Error{LIMIT} naming the limit and the batch, which the agent
 * drops instead of resending. Returns APM_E_LIMIT, or another failure.
 */
static int admit_batch(struct conn *c, const struct apm_batch *b)
{
    struct apm_ingest *in = c->in;
    uint64_t now = uv_now(in->loop);
    apm_agent_limits_sweep(in->limits, now);
    struct apm_msg_error e = {.code = APM_WIRE_ERR_LIMIT, .retryable = false, .seq = b->seq};
    enum apm_agent_limit which;
    int rc = apm_agent_limits_admit(in->limits, c->ident.agent_id, b, now, &which, e.text,
                                    sizeof(e.text));
    if (rc == APM_E_LIMIT) {
        if (which == APM_AGENT_LIMIT_PROCESSES)
            in->stats.refused_processes++;
        else if (which == APM_AGENT_LIMIT_SERIES)
            in->stats.refused_series++;
        else
            in->stats.refused_sites++;
        apm_ingest_conn_send_error(c, &e);
    } else if (rc != 0) {
        apm_ingest_conn_fail(c, APM_WIRE_ERR_OVERLOADED, true,
                             "out of memory checking the agent's limits");
    }
    return rc;
}

void apm_ingest_on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->authed) {
        c->in->stats.idle_timeouts++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_PROTOCOL, true, "idle timeout");
    } else {
        c->in->stats.handshake_timeouts++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_PROTOCOL, true,
                             "no Hello within the handshake timeout");
    }
}

static void conn_resume(struct conn *c)
{
    if (c->paused && !c->closing && !c->draining) {
        c->paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, apm_ingest_on_alloc, apm_ingest_on_read);
    }
}

static void on_committed(void *ctx, uint64_t seq, int status)
{
    struct conn *c = ctx;
    struct apm_ingest *in = c->in;
    c->inflight--;
    /* While draining, the last ack closes the connection once it is written. */
    bool last = c->draining && c->inflight == 0;
    if (status >= 0) {
        if (status == 1)
            in->stats.duplicates++;
        if (!c->closing && !c->failing) {
            struct apm_frame_out f;
            if (apm_codec_encode_ack(seq, &f) == 0) {
                in->stats.acks++;
                apm_ingest_conn_send(c, &f, last);
                last = false;
            }
        }
    } else {
        in->stats.store_errors++;
        if (!c->closing)
            apm_ingest_conn_fail(c, APM_WIRE_ERR_STORE, true,
                                 "store could not commit batch %llu: %s", (unsigned long long)seq,
                                 status == APM_E_FULL ? "the store is full (disk or map-size)"
                                                      : apm_strerror(status));
    }
    if (c->closing) {
        apm_ingest_conn_maybe_free(c);
        return;
    }
    if (last && !c->failing) {
        apm_ingest_conn_close(c);
        return;
    }
    if (c->inflight <= in->opt.max_inflight / 2)
        conn_resume(c);
}

/*
 * Counts the strings the decoder cleaned since *before and says so in the
 * log, at most once per STRINGS_LOG_EVERY_MS for the whole ingest: a peer
 * sending bad strings in every batch must not flood the log.
 */
static void count_fixes(struct conn *c, const struct apm_text_fixes *before,
                        const struct apm_text_fixes *now)
{
    struct apm_ingest *in = c->in;
    uint64_t utf8 = now->invalid_utf8 - before->invalid_utf8;
    uint64_t ctl = now->control - before->control;
    uint64_t len = now->too_long - before->too_long;
    if (utf8 + ctl + len == 0)
        return;
    in->stats.strings_invalid_utf8 += utf8;
    in->stats.strings_control += ctl;
    in->stats.strings_too_long += len;
    uint64_t t = uv_now(in->loop);
    if (in->strings_logged_ms != 0 && t - in->strings_logged_ms < STRINGS_LOG_EVERY_MS) {
        in->strings_unlogged++;
        return;
    }
    apm_warn("ingest: peer %s (agent '%s'): replaced strings: %llu invalid UTF-8, %llu with "
             "control characters, %llu cut to length (%llu reports from peers not logged "
             "since the last)",
             c->peer, c->authed ? c->ident.agent_id : "-", (unsigned long long)utf8,
             (unsigned long long)ctl, (unsigned long long)len,
             (unsigned long long)in->strings_unlogged);
    in->strings_logged_ms = t != 0 ? t : 1;
    in->strings_unlogged = 0;
}

static int handle_hello(struct conn *c, const uint8_t *p, size_t len)
{
    struct apm_ingest *in = c->in;
    struct apm_msg m;
    int rc = apm_codec_decode(NULL, p, len, &m);
    if (rc != 0 || m.type != APM_MSG_HELLO) {
        apm_msg_clear(&m);
        in->stats.protocol_errors++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_PROTOCOL, false,
                             "the first frame must be a valid Hello");
        return APM_E_PROTO;
    }
    if (!apm_token_equal(m.u.hello.token, m.u.hello.token_len, in->opt.token, in->opt.token_len)) {
        in->stats.auth_failures++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_AUTH, false,
                             "wrong token from agent '%s' on host '%s'", m.u.hello.ident.agent_id,
                             m.u.hello.ident.host);
        return APM_E_AUTH;
    }
    if (m.u.hello.protocol != APM_PROTOCOL_VERSION) {
        in->stats.protocol_errors++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_PROTOCOL, false,
                             "protocol version %u not supported (want %u)", m.u.hello.protocol,
                             APM_PROTOCOL_VERSION);
        return APM_E_PROTO;
    }
    if (in->nauthed >= in->opt.max_connections) {
        in->stats.refused_over_cap++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_OVERLOADED, true,
                             "agent '%s' on host '%s' refused: connection cap (%u) reached",
                             m.u.hello.ident.agent_id, m.u.hello.ident.host,
                             in->opt.max_connections);
        return APM_E_LIMIT;
    }
    apm_ingest_waiting_remove(c);
    c->ident = m.u.hello.ident;
    c->authed = true;
    in->nauthed++;
    uv_timer_start(&c->timer, apm_ingest_on_timeout, in->opt.idle_timeout_ms,
                   in->opt.idle_timeout_ms);
    struct apm_text_fixes none = {0};
    count_fixes(c, &none, &m.u.hello.fixes);
    apm_frame_reader_set_max(&c->reader, in->opt.max_frame);
    uint64_t last = 0;
    rc = apm_store_watermark(in->store, c->ident.agent_id, c->ident.instance, &last);
    if (rc != 0) {
        in->stats.store_errors++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_STORE, true, "cannot read watermark: %s",
                             apm_strerror(rc));
        return rc;
    }
    apm_info("ingest: agent '%s' on host '%s' (%s) connected from %s, last committed seq %llu",
             c->ident.agent_id, c->ident.host, c->ident.version, c->peer, (unsigned long long)last);
    struct apm_frame_out f;
    if (apm_codec_encode_hello_ack(last, in->opt.max_frame, &f) == 0)
        apm_ingest_conn_send(c, &f, false);
    return 0;
}

static int handle_batch(struct conn *c, const uint8_t *p, size_t len)
{
    struct apm_ingest *in = c->in;
    struct apm_msg m;
    struct apm_text_fixes before = c->dec.fixes;
    int rc = apm_codec_decode(&c->dec, p, len, &m);
    count_fixes(c, &before, &c->dec.fixes);
    if (rc != 0) {
        in->stats.decode_errors++;
        apm_ingest_conn_fail(c, rc == APM_E_LIMIT ? APM_WIRE_ERR_OVERLOADED : APM_WIRE_ERR_PROTOCOL,
                             rc == APM_E_LIMIT, "bad frame: %s", apm_strerror(rc));
        return rc;
    }
    if (m.type != APM_MSG_BATCH) {
        apm_msg_clear(&m);
        in->stats.protocol_errors++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_PROTOCOL, false, "unexpected message type %d",
                             (int)m.type);
        return APM_E_PROTO;
    }
    struct apm_batch *b = m.u.batch;
    uint64_t nsamples = b->nsamples;
    /* The agent's own counters, whatever becomes of the samples; a best effort when out of memory.
     */
    if (b->health != NULL && in->opt.health != NULL)
        (void)apm_agent_health_put(in->opt.health, &c->ident, b->health, apm_now_ms());
    rc = admit_batch(c, b);
    if (rc != 0) {
        apm_batch_free(b);
        return rc;
    }
    rc = apm_writer_submit(in->writer, &c->ident, b, on_committed, c);
    if (rc != 0) {
        apm_batch_free(b);
        in->stats.overloaded++;
        apm_ingest_conn_fail(c,
                             rc == APM_E_CLOSED ? APM_WIRE_ERR_SHUTDOWN : APM_WIRE_ERR_OVERLOADED,
                             true, "collector busy: %s", apm_strerror(rc));
        return rc;
    }
    in->stats.batches++;
    in->stats.samples += nsamples;
    c->inflight++;
    if (c->inflight >= in->opt.max_inflight && !c->paused) {
        c->paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    return 0;
}

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    struct conn *c = ctx;
    if (c->closing || c->failing)
        return APM_E_CLOSED;
    if (!c->authed)
        return handle_hello(c, p, len);
    uv_timer_again(&c->timer);
    return handle_batch(c, p, len);
}

void apm_ingest_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)c->in->rbuf, sizeof(c->in->rbuf));
}

/* Frames the plaintext of a connection. Returns 0 or the code that stopped it (reported). */
static int feed_plain(void *ctx, const uint8_t *p, size_t n)
{
    struct conn *c = ctx;
    int rc = apm_frame_reader_feed(&c->reader, p, n, on_frame, c);
    if (rc == APM_E_FRAME_TOO_BIG) {
        c->in->stats.frames_too_big++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_TOO_BIG, false, "frame length above the %s maximum",
                             c->authed ? "frame" : "Hello");
    } else if (rc == APM_E_FRAME_EMPTY) {
        c->in->stats.protocol_errors++;
        apm_ingest_conn_fail(c, APM_WIRE_ERR_PROTOCOL, false, "empty frame (length 0)");
    } else if (rc == -ENOMEM) {
        apm_ingest_conn_fail(c, APM_WIRE_ERR_OVERLOADED, true, "out of memory");
    }
    /* Other errors were reported where they happened. */
    return rc;
}

/*
 * Decides from the first byte whether the peer speaks TLS (a handshake
 * record) or plaintext frames (a length, whose first byte is 0 for any
 * Hello). Returns false when the connection was refused.
 */
static bool conn_start(struct conn *c, uint8_t first)
{
    struct apm_ingest *in = c->in;
    c->started = true;
    if (in->opt.tls != NULL && apm_tls_looks_like_handshake(first)) {
        if (apm_tls_new(in->opt.tls, NULL, &c->tls) != 0) {
            apm_ingest_conn_close(c);
            return false;
        }
        return true;
    }
    if (in->opt.tls != NULL && in->opt.tls_required) {
        in->stats.plaintext_refused++;
        apm_ingest_conn_fail(
            c, APM_WIRE_ERR_AUTH, false,
            "plaintext connection refused: this collector requires TLS (tls-required)");
        return false;
    }
    return true;
}

/* Decrypts what a TLS peer sent, frames the plaintext, sends what TLS answers. */
static void feed_tls(struct conn *c, const uint8_t *p, size_t n)
{
    struct apm_ingest *in = c->in;
    bool was_established = apm_tls_established(c->tls);
    struct apm_frame_out out;
    int rc = apm_tls_feed(c->tls, p, n, feed_plain, c, &out);
    if (!was_established && apm_tls_established(c->tls)) {
        in->stats.tls_sessions++;
        apm_debug("ingest: peer %s: %s session", c->peer, apm_tls_version(c->tls));
    }
    if (rc == APM_E_TLS) {
        in->stats.tls_failures++;
        if (apm_log_limit_hit(&in->stranger_log, (int64_t)uv_now(in->loop)))
            apm_warn("ingest: peer %s (agent '%s'): TLS %s failed: %s; closing", c->peer,
                     c->authed ? c->ident.agent_id : "-", was_established ? "session" : "handshake",
                     apm_tls_error(c->tls));
        apm_ingest_waiting_remove(c);
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->failing = true;
        if (out.buf != NULL)
            apm_ingest_conn_write(c, &out, true); /* the alert, then close */
        else
            apm_ingest_conn_close(c);
        return;
    }
    if (out.buf != NULL)
        apm_ingest_conn_write(c, &out, false);
    if (rc == APM_E_CLOSED || rc == -ENOMEM)
        apm_ingest_conn_close(c);
}

void apm_ingest_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            apm_debug("ingest: peer %s: read error: %s", c->peer, uv_strerror((int)nread));
        apm_ingest_conn_close(c);
        return;
    }
    if (!c->started && !conn_start(c, c->in->rbuf[0]))
        return;
    if (c->tls != NULL)
        feed_tls(c, c->in->rbuf, (size_t)nread);
    else
        feed_plain(c, c->in->rbuf, (size_t)nread);
}
