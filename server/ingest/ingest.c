#include "server/ingest/ingest.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "common/wire/frame.h"
#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/base/token.h"
#include "server/ingest/agent_limits.h"
#include "server/net/listener.h"

#define READ_BUF_SIZE (64u * 1024u)
#define STRINGS_LOG_EVERY_MS 60000u

/* How often the summaries of refused and closed strangers are logged. */
#define LOG_WINDOW_MS 10000
/* Lines per window logged one by one before a summary takes over. */
#define LOG_BURST 5

struct conn {
    uv_tcp_t tcp; /* first member: the handle's address is the conn's */
    uv_timer_t timer;
    struct apm_ingest *in;
    struct conn *prev, *next;
    /* Unauthenticated connections, oldest first, while `waiting`. */
    struct conn *wprev, *wnext;
    int handles_open;
    unsigned inflight;
    bool waiting; /* on the unauthenticated list, counted in its address's budget */
    bool authed;
    bool closing;        /* handles closing or closed */
    bool draining;       /* collector stopping: wait for commits, then close */
    bool paused;         /* reading stopped for backpressure */
    bool failing;        /* an Error frame is on its way; close follows */
    bool started;        /* the first bytes were read: TLS or plaintext is decided */
    struct apm_tls *tls; /* NULL on a plaintext connection */
    struct apm_frame_reader reader;
    struct apm_codec_dec dec;
    struct apm_agent_ident ident;
    char peer[64];
    char addr[48]; /* peer's address without the port: the per-address budget's key */
};

struct write_req {
    uv_write_t req;
    struct conn *c;
    bool close_after;
    uint8_t *buf;
};

struct apm_ingest {
    uv_loop_t *loop;
    struct apm_listener *listener; /* NULL once closed */
    struct apm_store *store;
    struct apm_writer *writer;
    struct apm_ingest_options opt;
    struct conn *conns;
    struct conn *wait_head, *wait_tail; /* unauthenticated, oldest first */
    unsigned nwaiting;
    unsigned nauthed;
    struct apm_hashmap waiting_by_addr; /* address -> unauthenticated connections from it */
    uv_timer_t log_timer;               /* flushes the summaries below */
    bool log_timer_open;
    struct apm_log_limit stranger_log; /* failures of unauthenticated peers */
    struct apm_log_limit evict_log;    /* evictions for newer strangers */
    struct apm_log_limit store_log;    /* agents closed for a failed commit */
    /* One read buffer for every connection: the loop reads one socket at a time. */
    uint8_t rbuf[READ_BUF_SIZE];
    struct apm_ingest_stats stats;
    struct apm_agent_limits *limits;
    bool closing;
    uint64_t strings_logged_ms; /* loop time of the last cleaned-strings report, 0 never */
    uint64_t strings_unlogged;  /* reports held back since */
    apm_ingest_close_cb close_cb;
    void *close_ctx;
};

static void conn_close(struct conn *c);
static void conn_fail(struct conn *c, enum apm_wire_error code, bool retryable, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static void maybe_finish_close(struct apm_ingest *in)
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

/* Takes c off the unauthenticated list and its address's budget. Idempotent. */
static void waiting_remove(struct conn *c)
{
    if (!c->waiting)
        return;
    struct apm_ingest *in = c->in;
    c->waiting = false;
    if (c->wprev != NULL)
        c->wprev->wnext = c->wnext;
    else
        in->wait_head = c->wnext;
    if (c->wnext != NULL)
        c->wnext->wprev = c->wprev;
    else
        in->wait_tail = c->wprev;
    c->wprev = c->wnext = NULL;
    in->nwaiting--;
    in->stats.unauthenticated = in->nwaiting;
    uint64_t n = 0;
    size_t klen = strlen(c->addr);
    if (apm_hashmap_get(&in->waiting_by_addr, c->addr, klen, &n) == 0) {
        if (n <= 1)
            apm_hashmap_del(&in->waiting_by_addr, c->addr, klen);
        else
            apm_hashmap_put(&in->waiting_by_addr, c->addr, klen, n - 1);
    }
}

static void conn_maybe_free(struct conn *c)
{
    if (c->handles_open > 0 || c->inflight > 0)
        return;
    struct apm_ingest *in = c->in;
    if (c->authed)
        in->nauthed--;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        in->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    in->stats.active--;
    apm_frame_reader_close(&c->reader);
    apm_codec_dec_close(&c->dec);
    apm_tls_free(c->tls);
    free(c);
    maybe_finish_close(in);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->handles_open--;
    conn_maybe_free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    waiting_remove(c);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = w->c;
    free(w->buf);
    bool close_after = w->close_after;
    free(w);
    if (status < 0 || close_after)
        conn_close(c);
}

/* Queues bytes as they go on the wire; takes ownership of f->buf. */
static void conn_write(struct conn *c, struct apm_frame_out *f, bool close_after)
{
    if (c->closing) {
        free(f->buf);
        return;
    }
    struct write_req *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        free(f->buf);
        conn_close(c);
        return;
    }
    w->c = c;
    w->buf = f->buf;
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init((char *)f->buf, (unsigned)f->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(w->buf);
        free(w);
        conn_close(c);
    }
}

/* Queues an encoded frame, encrypted on a TLS connection; takes ownership of f->buf. */
static void conn_send(struct conn *c, struct apm_frame_out *f, bool close_after)
{
    if (c->tls != NULL && !c->closing) {
        if (apm_tls_seal(c->tls, f) != 0) {
            conn_close(c);
            return;
        }
        if (f->buf == NULL) { /* kept until the handshake ends */
            if (close_after)
                conn_close(c);
            return;
        }
    }
    conn_write(c, f, close_after);
}

/* Sends Error e, then closes: nothing more is read from the peer. */
static void conn_send_error(struct conn *c, const struct apm_msg_error *e)
{
    if (c->closing || c->failing)
        return;
    c->failing = true;
    waiting_remove(c);
    uv_timer_stop(&c->timer);
    /*
     * A stranger can make us fail once per packet, a failing disk once per
     * batch of every agent: those lines are rate-limited.
     */
    struct apm_log_limit *limit = e->code == APM_WIRE_ERR_STORE ? &c->in->store_log
                                  : !c->authed                  ? &c->in->stranger_log
                                                                : NULL;
    if (limit == NULL || apm_log_limit_hit(limit, (int64_t)uv_now(c->in->loop)))
        apm_warn("ingest: peer %s (agent '%s'): %s; closing", c->peer,
                 c->authed ? c->ident.agent_id : "-", e->text);
    uv_read_stop((uv_stream_t *)&c->tcp);
    struct apm_frame_out f;
    if (apm_codec_encode_error(e, &f) == 0)
        conn_send(c, &f, true);
    else
        conn_close(c);
}

static void conn_fail(struct conn *c, enum apm_wire_error code, bool retryable, const char *fmt,
                      ...)
{
    struct apm_msg_error e = {.code = code, .retryable = retryable};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.text, sizeof(e.text), fmt, ap);
    va_end(ap);
    conn_send_error(c, &e);
}

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
        conn_send_error(c, &e);
    } else if (rc != 0) {
        conn_fail(c, APM_WIRE_ERR_OVERLOADED, true, "out of memory checking the agent's limits");
    }
    return rc;
}

static void on_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->authed) {
        c->in->stats.idle_timeouts++;
        conn_fail(c, APM_WIRE_ERR_PROTOCOL, true, "idle timeout");
    } else {
        c->in->stats.handshake_timeouts++;
        conn_fail(c, APM_WIRE_ERR_PROTOCOL, true, "no Hello within the handshake timeout");
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void conn_resume(struct conn *c)
{
    if (c->paused && !c->closing && !c->draining) {
        c->paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
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
                conn_send(c, &f, last);
                last = false;
            }
        }
    } else {
        in->stats.store_errors++;
        if (!c->closing)
            conn_fail(c, APM_WIRE_ERR_STORE, true, "store could not commit batch %llu: %s",
                      (unsigned long long)seq,
                      status == APM_E_FULL ? "the store is full (disk or map-size)"
                                           : apm_strerror(status));
    }
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (last && !c->failing) {
        conn_close(c);
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
        conn_fail(c, APM_WIRE_ERR_PROTOCOL, false, "the first frame must be a valid Hello");
        return APM_E_PROTO;
    }
    if (!apm_token_equal(m.u.hello.token, m.u.hello.token_len, in->opt.token, in->opt.token_len)) {
        in->stats.auth_failures++;
        conn_fail(c, APM_WIRE_ERR_AUTH, false, "wrong token from agent '%s' on host '%s'",
                  m.u.hello.ident.agent_id, m.u.hello.ident.host);
        return APM_E_AUTH;
    }
    if (m.u.hello.protocol != APM_PROTOCOL_VERSION) {
        in->stats.protocol_errors++;
        conn_fail(c, APM_WIRE_ERR_PROTOCOL, false, "protocol version %u not supported (want %u)",
                  m.u.hello.protocol, APM_PROTOCOL_VERSION);
        return APM_E_PROTO;
    }
    if (in->nauthed >= in->opt.max_connections) {
        in->stats.refused_over_cap++;
        conn_fail(c, APM_WIRE_ERR_OVERLOADED, true,
                  "agent '%s' on host '%s' refused: connection cap (%u) reached",
                  m.u.hello.ident.agent_id, m.u.hello.ident.host, in->opt.max_connections);
        return APM_E_LIMIT;
    }
    waiting_remove(c);
    c->ident = m.u.hello.ident;
    c->authed = true;
    in->nauthed++;
    uv_timer_start(&c->timer, on_timeout, in->opt.idle_timeout_ms, in->opt.idle_timeout_ms);
    struct apm_text_fixes none = {0};
    count_fixes(c, &none, &m.u.hello.fixes);
    apm_frame_reader_set_max(&c->reader, in->opt.max_frame);
    uint64_t last = 0;
    rc = apm_store_watermark(in->store, c->ident.agent_id, c->ident.instance, &last);
    if (rc != 0) {
        in->stats.store_errors++;
        conn_fail(c, APM_WIRE_ERR_STORE, true, "cannot read watermark: %s", apm_strerror(rc));
        return rc;
    }
    apm_info("ingest: agent '%s' on host '%s' (%s) connected from %s, last committed seq %llu",
             c->ident.agent_id, c->ident.host, c->ident.version, c->peer, (unsigned long long)last);
    struct apm_frame_out f;
    if (apm_codec_encode_hello_ack(last, in->opt.max_frame, &f) == 0)
        conn_send(c, &f, false);
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
        conn_fail(c, rc == APM_E_LIMIT ? APM_WIRE_ERR_OVERLOADED : APM_WIRE_ERR_PROTOCOL,
                  rc == APM_E_LIMIT, "bad frame: %s", apm_strerror(rc));
        return rc;
    }
    if (m.type != APM_MSG_BATCH) {
        apm_msg_clear(&m);
        in->stats.protocol_errors++;
        conn_fail(c, APM_WIRE_ERR_PROTOCOL, false, "unexpected message type %d", (int)m.type);
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
        conn_fail(c, rc == APM_E_CLOSED ? APM_WIRE_ERR_SHUTDOWN : APM_WIRE_ERR_OVERLOADED, true,
                  "collector busy: %s", apm_strerror(rc));
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
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
        conn_fail(c, APM_WIRE_ERR_TOO_BIG, false, "frame length above the %s maximum",
                  c->authed ? "frame" : "Hello");
    } else if (rc == APM_E_FRAME_EMPTY) {
        c->in->stats.protocol_errors++;
        conn_fail(c, APM_WIRE_ERR_PROTOCOL, false, "empty frame (length 0)");
    } else if (rc == -ENOMEM) {
        conn_fail(c, APM_WIRE_ERR_OVERLOADED, true, "out of memory");
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
            conn_close(c);
            return false;
        }
        return true;
    }
    if (in->opt.tls != NULL && in->opt.tls_required) {
        in->stats.plaintext_refused++;
        conn_fail(c, APM_WIRE_ERR_AUTH, false,
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
        waiting_remove(c);
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->failing = true;
        if (out.buf != NULL)
            conn_write(c, &out, true); /* the alert, then close */
        else
            conn_close(c);
        return;
    }
    if (out.buf != NULL)
        conn_write(c, &out, false);
    if (rc == APM_E_CLOSED || rc == -ENOMEM)
        conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            apm_debug("ingest: peer %s: read error: %s", c->peer, uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (!c->started && !conn_start(c, c->in->rbuf[0]))
        return;
    if (c->tls != NULL)
        feed_tls(c, c->in->rbuf, (size_t)nread);
    else
        feed_plain(c, c->in->rbuf, (size_t)nread);
}

static void peer_name(struct conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof(host));
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof(host));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
    snprintf(c->addr, sizeof(c->addr), "%s", host);
}

/* True when the peer has bytes waiting that the loop has not read yet (its Hello, maybe). */
static bool has_unread_bytes(struct conn *c)
{
    uv_os_fd_t fd;
    char b;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return false;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/*
 * Picks the unauthenticated connection to close for a newcomer from addr:
 * the oldest from addr when that address has used its own budget, else the
 * oldest of all when the whole budget is used, else none. A connection whose
 * bytes are already waiting (an agent's Hello the loop will read next) is
 * passed over while an idle one is left.
 */
static struct conn *eviction_victim(struct apm_ingest *in, const char *addr)
{
    uint64_t from_addr = 0;
    apm_hashmap_get(&in->waiting_by_addr, addr, strlen(addr), &from_addr);
    bool same_addr = from_addr >= in->opt.max_unauthenticated_per_address;
    if (!same_addr && in->nwaiting < in->opt.max_unauthenticated)
        return NULL;
    struct conn *first = NULL;
    for (struct conn *c = in->wait_head; c != NULL; c = c->wnext) {
        if (same_addr && strcmp(c->addr, addr) != 0)
            continue;
        if (first == NULL)
            first = c;
        if (!has_unread_bytes(c))
            return c;
    }
    return first;
}

/* Puts c at the end of the unauthenticated list, evicting one to make room if needed. */
static void waiting_add(struct apm_ingest *in, struct conn *c)
{
    struct conn *victim = eviction_victim(in, c->addr);
    if (victim != NULL) {
        in->stats.evicted_unauthenticated++;
        if (apm_log_limit_hit(&in->evict_log, (int64_t)uv_now(in->loop)))
            apm_warn("ingest: closed unauthenticated connection from %s to admit one from %s "
                     "(max-unauthenticated %u, %u per address)",
                     victim->peer, c->peer, in->opt.max_unauthenticated,
                     in->opt.max_unauthenticated_per_address);
        waiting_remove(victim);
        conn_close(victim);
    }
    uint64_t n = 0;
    size_t klen = strlen(c->addr);
    apm_hashmap_get(&in->waiting_by_addr, c->addr, klen, &n);
    if (apm_hashmap_put(&in->waiting_by_addr, c->addr, klen, n + 1) != 0) {
        conn_close(c);
        return;
    }
    c->waiting = true;
    c->wprev = in->wait_tail;
    c->wnext = NULL;
    if (in->wait_tail != NULL)
        in->wait_tail->wnext = c;
    else
        in->wait_head = c;
    in->wait_tail = c;
    in->nwaiting++;
    in->stats.unauthenticated = in->nwaiting;
}

static void on_connection(void *ctx, struct apm_listener *l, int status)
{
    struct apm_ingest *in = ctx;
    if (status < 0) {
        apm_warn("ingest: accept failed: %s", uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->in = in;
    uv_tcp_init(in->loop, &c->tcp);
    uv_timer_init(in->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    apm_frame_reader_init(&c->reader, APM_FRAME_HELLO_MAX);
    apm_codec_dec_init(&c->dec);
    c->next = in->conns;
    if (in->conns != NULL)
        in->conns->prev = c;
    in->conns = c;
    in->stats.active++;
    if (apm_listener_accept(l, &c->tcp) != 0) {
        conn_close(c);
        return;
    }
    in->stats.accepted++;
    peer_name(c);
    /*
     * Until its Hello, a connection counts only against the small budget of
     * strangers (max-unauthenticated), never against max-connections: the
     * oldest stranger makes room for the newest, so idle sockets cannot
     * keep an agent out.
     */
    waiting_add(in, c);
    if (c->closing)
        return;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_timeout, in->opt.handshake_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
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
    maybe_finish_close(in);
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
    rc = apm_listener_new(loop, "ingest", opt->listen, 511, on_connection, in, &in->listener);
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
        conn_send(c, &f, false);
        in->stats.controls_sent++;
        sent++;
    }
    return sent;
}

static void on_listener_closed(void *ctx)
{
    struct apm_ingest *in = ctx;
    in->listener = NULL;
    maybe_finish_close(in);
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
                conn_close(c);
        }
        c = next;
    }
    apm_listener_close(in->listener, on_listener_closed, in);
}
