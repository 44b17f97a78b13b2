#include "agent/uplink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/config.h"
#include "common/base/error.h"
#include "common/wire/frame.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"

struct entry {
    struct entry *next;
    struct apm_batch *b;
    size_t bytes;
    bool sent; /* written on the current link */
};

/* One connection attempt. Owned by the uplink until closed; freed in on_link_closed. */
struct link {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct apm_uplink *u;
    struct apm_frame_reader reader;
    struct apm_codec_enc enc;
    bool ready; /* HelloAck received */
    bool closing;
    struct apm_tls *tls; /* NULL on a plaintext link */
    uint8_t rbuf[16384];
};

struct write_req {
    uv_write_t req;
    struct link *link;
    uint8_t *buf;
};

enum timer_state { TIMER_IDLE, TIMER_RECONNECT, TIMER_HANDSHAKE, TIMER_ACK };

struct apm_uplink {
    uv_loop_t *loop;
    char host[256];
    char port[16];
    char server_name[256]; /* what the collector's certificate must name */
    uint8_t token[APM_TOKEN_MAX];
    size_t token_len;
    struct apm_agent_ident ident;
    struct apm_uplink_options opt;
    uv_timer_t timer;
    enum timer_state timer_state;
    uv_getaddrinfo_t gai;
    bool resolving;
    struct link *link;
    struct entry *head, *tail, *cursor; /* cursor: first entry not yet sent on this link */
    uint64_t next_seq;
    unsigned unacked;
    unsigned attempt;
    struct apm_uplink_stats stats;
    apm_uplink_control_cb on_control;
    void *ctx;
    bool closing;
    int pending; /* handles and requests still to finish after close */
    apm_uplink_close_cb close_cb;
    void *close_ctx;
};

static void start_connect(struct apm_uplink *u);
static void pump(struct apm_uplink *u);

static void maybe_finish_close(struct apm_uplink *u)
{
    if (!u->closing || u->pending > 0)
        return;
    while (u->head != NULL) {
        struct entry *e = u->head;
        u->head = e->next;
        apm_batch_free(e->b);
        free(e);
    }
    apm_uplink_close_cb cb = u->close_cb;
    void *ctx = u->close_ctx;
    free(u);
    if (cb != NULL)
        cb(ctx);
}

static size_t batch_bytes(const struct apm_batch *b)
{
    size_t n = sizeof(*b) + (size_t)b->nseries * sizeof(struct apm_series_block) +
               (size_t)b->nsamples * 2 * sizeof(int64_t);
    for (uint32_t i = 0; i < b->nprocs; i++)
        n += sizeof(struct apm_proc_desc) + strlen(b->procs[i].name) + strlen(b->procs[i].cmdline) +
             strlen(b->procs[i].cgroup) + 3;
    for (uint32_t i = 0; i < b->ndiffs; i++)
        for (uint32_t k = 0; k < b->diffs[i].nsites; k++)
            n += sizeof(struct apm_site_stat) + strlen(b->diffs[i].sites[k].file) + 1 +
                 b->diffs[i].sites[k].nframes * (sizeof(struct apm_site_frame) + 64);
    n += (size_t)b->ndiffs * sizeof(struct apm_trace_diff) +
         (size_t)b->ngc * sizeof(struct apm_gc_stats);
    return n;
}

/* Unlinks e, whose predecessor is prev (NULL for the head), and frees it. */
static void drop_entry(struct apm_uplink *u, struct entry *prev, struct entry *e)
{
    if (prev != NULL)
        prev->next = e->next;
    else
        u->head = e->next;
    if (u->tail == e)
        u->tail = prev;
    if (u->cursor == e)
        u->cursor = e->next;
    if (e->sent)
        u->unacked--;
    u->stats.queue_len--;
    u->stats.queue_bytes -= e->bytes;
    apm_batch_free(e->b);
    free(e);
}

static void drop_head(struct apm_uplink *u)
{
    drop_entry(u, NULL, u->head);
}

/*
 * The collector refused batch seq for good (a cardinality limit): it was not
 * stored and resending it would be refused again, so it is dropped, counted.
 */
static void drop_refused(struct apm_uplink *u, uint64_t seq)
{
    struct entry *prev = NULL;
    for (struct entry *e = u->head; e != NULL; prev = e, e = e->next) {
        if (e->b->seq == seq) {
            u->stats.batches_refused++;
            u->stats.samples_refused += e->b->nsamples;
            drop_entry(u, prev, e);
            return;
        }
    }
}

static void on_timer(uv_timer_t *t);

static void schedule_reconnect(struct apm_uplink *u)
{
    if (u->closing)
        return;
    /* Full jitter: uniform in [0, min(cap, base * 2^attempt)]. */
    uint64_t delay = apm_backoff_ms(u->attempt, u->opt.backoff_min_ms, u->opt.backoff_max_ms);
    if (u->attempt < 64)
        u->attempt++;
    u->timer_state = TIMER_RECONNECT;
    uv_timer_start(&u->timer, on_timer, delay, 0);
}

static void on_link_closed(uv_handle_t *h)
{
    struct link *l = h->data;
    struct apm_uplink *u = l->u;
    apm_frame_reader_close(&l->reader);
    apm_codec_enc_close(&l->enc);
    apm_tls_free(l->tls);
    free(l);
    u->pending--;
    maybe_finish_close(u);
}

/* Drops the current link; everything unacked will be sent again on the next one. */
static void link_fail(struct link *l, const char *why)
{
    struct apm_uplink *u = l->u;
    if (l->closing)
        return;
    l->closing = true;
    if (u->link == l) {
        u->link = NULL;
        if (u->stats.connected || !u->closing)
            apm_warn("uplink: collector %s:%s: %s", u->host, u->port, why);
        u->stats.connected = false;
        for (struct entry *e = u->head; e != NULL; e = e->next)
            e->sent = false;
        u->cursor = u->head;
        u->unacked = 0;
        if (u->timer_state == TIMER_HANDSHAKE || u->timer_state == TIMER_ACK) {
            uv_timer_stop(&u->timer);
            u->timer_state = TIMER_IDLE;
        }
        schedule_reconnect(u);
    }
    uv_close((uv_handle_t *)&l->tcp, on_link_closed);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct link *l = w->link;
    free(w->buf);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        link_fail(l, uv_strerror(status));
}

/* Writes bytes as they go on the wire; takes f->buf. */
static int link_write(struct link *l, struct apm_frame_out *f)
{
    struct write_req *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        free(f->buf);
        return -ENOMEM;
    }
    w->link = l;
    w->buf = f->buf;
    uv_buf_t b = uv_buf_init((char *)f->buf, (unsigned)f->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, on_write);
    if (rc != 0) {
        free(w->buf);
        free(w);
    }
    return rc;
}

/* Sends a frame, encrypted on a TLS link (kept until the handshake ends); takes f->buf. */
static int link_send(struct link *l, struct apm_frame_out *f)
{
    if (l->tls != NULL) {
        int rc = apm_tls_seal(l->tls, f);
        if (rc != 0 || f->buf == NULL)
            return rc;
    }
    return link_write(l, f);
}

/*
 * While batches are unacked on a ready link, the timer waits for the next
 * ack: a link that stays silent that long (a blackholed route, a peer that
 * stopped reading) is dropped and everything resent on a new one.
 */
static void arm_ack_timer(struct apm_uplink *u)
{
    if (u->link == NULL || !u->link->ready)
        return;
    if (u->unacked == 0) {
        if (u->timer_state == TIMER_ACK) {
            uv_timer_stop(&u->timer);
            u->timer_state = TIMER_IDLE;
        }
        return;
    }
    u->timer_state = TIMER_ACK;
    uv_timer_start(&u->timer, on_timer, u->opt.ack_timeout_ms, 0);
}

static void pump(struct apm_uplink *u)
{
    struct link *l = u->link;
    if (l == NULL || !l->ready)
        return;
    bool was_idle = u->unacked == 0;
    while (u->cursor != NULL && u->unacked < u->opt.max_unacked) {
        struct entry *e = u->cursor;
        struct apm_frame_out f;
        int rc = apm_codec_encode_batch(&l->enc, e->b, &f);
        if (rc == 0)
            rc = link_send(l, &f);
        if (rc != 0) {
            link_fail(l, apm_strerror(rc));
            return;
        }
        e->sent = true;
        u->unacked++;
        u->cursor = e->next;
        u->stats.batches_sent++;
    }
    if (was_idle && u->unacked > 0)
        arm_ack_timer(u);
    /* Interning tables only grow on one connection; start afresh well before the caps. */
    if (apm_codec_enc_full(&l->enc) && u->unacked == 0)
        link_fail(l, "renewing the connection to reset its string tables");
}

static void acked_head(struct apm_uplink *u)
{
    uint64_t seq = u->head->b->seq;
    u->stats.batches_acked++;
    u->stats.samples_acked += u->head->b->nsamples;
    drop_head(u);
    if (u->opt.on_acked != NULL)
        u->opt.on_acked(u->opt.acked_ctx, seq);
}

static void handle_ack(struct apm_uplink *u, uint64_t seq)
{
    while (u->head != NULL && u->head->b->seq <= seq && u->head->sent)
        acked_head(u);
}

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    struct link *l = ctx;
    struct apm_uplink *u = l->u;
    struct apm_msg m;
    int rc = apm_codec_decode(NULL, p, len, &m);
    if (rc != 0) {
        link_fail(l, "malformed frame from the collector");
        return rc;
    }
    switch (m.type) {
    case APM_MSG_HELLO_ACK:
        if (l->ready) {
            link_fail(l, "second HelloAck");
            return APM_E_PROTO;
        }
        l->ready = true;
        u->attempt = 0;
        u->stats.connected = true;
        if (u->timer_state == TIMER_HANDSHAKE) {
            uv_timer_stop(&u->timer);
            u->timer_state = TIMER_IDLE;
        }
        /* What the collector already committed is not sent again. */
        while (u->head != NULL && u->head->b->seq <= m.u.hello_ack.last_seq)
            acked_head(u);
        apm_info("uplink: connected to collector %s:%s (committed up to %llu, %llu queued)",
                 u->host, u->port, (unsigned long long)m.u.hello_ack.last_seq,
                 (unsigned long long)u->stats.queue_len);
        pump(u);
        break;
    case APM_MSG_ACK:
        handle_ack(u, m.u.ack_seq);
        arm_ack_timer(u);
        pump(u);
        break;
    case APM_MSG_ERROR: {
        u->stats.errors_received++;
        char why[448];
        snprintf(why, sizeof(why), "collector refused: %s (%s)", m.u.error.text,
                 m.u.error.retryable ? "retrying" : "permanent; retrying slowly");
        if (!m.u.error.retryable)
            u->attempt = 32; /* back off to the maximum */
        if (m.u.error.code == APM_WIRE_ERR_LIMIT && m.u.error.seq != 0) {
            drop_refused(u, m.u.error.seq);
            snprintf(why, sizeof(why),
                     "collector refused: %s (batch dropped, %llu refused so far; raise the limit "
                     "on the collector or watch fewer processes)",
                     m.u.error.text, (unsigned long long)u->stats.batches_refused);
        }
        link_fail(l, why);
        return APM_E_CLOSED;
    }
    case APM_MSG_CONTROL:
        u->stats.controls_received++;
        if (u->on_control != NULL)
            u->on_control(u->ctx, &m.u.control);
        break;
    default:
        link_fail(l, "unexpected frame from the collector");
        return APM_E_PROTO;
    }
    return l->closing ? APM_E_CLOSED : 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct link *l = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)l->rbuf, sizeof(l->rbuf));
}

/* Frames what the collector sent. Returns 0 or the code that stopped it (reported). */
static int feed_plain(void *ctx, const uint8_t *p, size_t n)
{
    struct link *l = ctx;
    int rc = apm_frame_reader_feed(&l->reader, p, n, on_frame, l);
    if (rc == APM_E_FRAME_TOO_BIG)
        link_fail(l, "oversized frame from the collector");
    else if (rc == APM_E_FRAME_EMPTY)
        link_fail(l, "empty frame (length 0) from the collector");
    return rc;
}

/* Decrypts what the collector sent, frames the plaintext, sends what TLS answers. */
static void feed_tls(struct link *l, size_t n)
{
    bool was_established = apm_tls_established(l->tls);
    struct apm_frame_out out;
    int rc = apm_tls_feed(l->tls, l->rbuf, n, feed_plain, l, &out);
    if (out.buf != NULL && !l->closing && link_write(l, &out) != 0)
        link_fail(l, "cannot write to the collector");
    if (rc == APM_E_TLS) {
        char why[400];
        snprintf(why, sizeof(why), "TLS %s failed: %s",
                 was_established ? "session" : "handshake with the collector",
                 apm_tls_error(l->tls));
        link_fail(l, why);
    } else if (rc == APM_E_CLOSED && !l->closing) {
        link_fail(l, "TLS session closed by the collector");
    } else if (rc == -ENOMEM) {
        link_fail(l, "out of memory");
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct link *l = s->data;
    (void)buf;
    if (nread == 0 || l->closing)
        return;
    if (nread < 0) {
        link_fail(l,
                  nread == UV_EOF ? "connection closed by the collector" : uv_strerror((int)nread));
        return;
    }
    if (l->tls != NULL)
        feed_tls(l, (size_t)nread);
    else
        feed_plain(l, l->rbuf, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct link *l = req->data;
    struct apm_uplink *u = l->u;
    if (l->closing)
        return;
    if (status < 0) {
        link_fail(l, uv_strerror(status));
        return;
    }
    if (u->opt.tls != NULL) {
        struct apm_frame_out first = {.buf = NULL};
        int trc = apm_tls_new(u->opt.tls, u->server_name, &l->tls);
        if (trc == 0)
            trc = apm_tls_start(l->tls, &first);
        if (trc == 0)
            trc = link_write(l, &first);
        else
            free(first.buf);
        if (trc != 0) {
            link_fail(l, "cannot start TLS");
            return;
        }
    }
    struct apm_msg_hello h;
    memset(&h, 0, sizeof(h));
    h.protocol = APM_PROTOCOL_VERSION;
    h.ident = u->ident;
    memcpy(h.token, u->token, u->token_len);
    h.token_len = u->token_len;
    struct apm_frame_out f;
    int rc = apm_codec_encode_hello(&h, &f);
    if (rc == 0)
        rc = link_send(l, &f);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read);
    if (rc != 0)
        link_fail(l, "cannot send Hello");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct apm_uplink *u = req->data;
    u->resolving = false;
    u->pending--;
    if (u->closing) {
        uv_freeaddrinfo(res);
        maybe_finish_close(u);
        return;
    }
    if (status < 0 || res == NULL) {
        apm_warn("uplink: cannot resolve collector host '%s': %s", u->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        schedule_reconnect(u);
        return;
    }
    struct link *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        uv_freeaddrinfo(res);
        schedule_reconnect(u);
        return;
    }
    l->u = u;
    apm_frame_reader_init(&l->reader, APM_FRAME_MAX);
    apm_codec_enc_init(&l->enc);
    uv_tcp_init(u->loop, &l->tcp);
    l->tcp.data = l;
    l->connect_req.data = l;
    u->pending++;
    u->link = l;
    uv_tcp_nodelay(&l->tcp, 1);
    int rc = uv_tcp_connect(&l->connect_req, &l->tcp, res->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        link_fail(l, uv_strerror(rc));
        return;
    }
    /* The same timer bounds connect + handshake. */
    u->timer_state = TIMER_HANDSHAKE;
    uv_timer_start(&u->timer, on_timer, u->opt.connect_timeout_ms, 0);
}

static void start_connect(struct apm_uplink *u)
{
    if (u->closing || u->resolving || u->link != NULL)
        return;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    u->gai.data = u;
    int rc = uv_getaddrinfo(u->loop, &u->gai, on_resolved, u->host, u->port, &hints);
    if (rc != 0) {
        apm_warn("uplink: cannot resolve '%s': %s", u->host, uv_strerror(rc));
        schedule_reconnect(u);
        return;
    }
    u->resolving = true;
    u->pending++;
}

static void on_timer(uv_timer_t *t)
{
    struct apm_uplink *u = t->data;
    enum timer_state st = u->timer_state;
    u->timer_state = TIMER_IDLE;
    if (st == TIMER_RECONNECT) {
        u->stats.reconnects++;
        start_connect(u);
    } else if (st == TIMER_HANDSHAKE && u->link != NULL) {
        link_fail(u->link, "no answer to Hello within the connect timeout");
    } else if (st == TIMER_ACK && u->link != NULL) {
        u->stats.ack_timeouts++;
        link_fail(u->link, "no ack within the ack timeout: reconnecting");
    }
}

int apm_uplink_new(uv_loop_t *loop, const struct apm_uplink_options *opt,
                   apm_uplink_control_cb on_control, void *ctx, struct apm_uplink **out)
{
    if (opt->token_len == 0 || opt->token_len > APM_TOKEN_MAX)
        return APM_E_CONFIG;
    struct apm_uplink *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    int port;
    if (apm_endpoint_split(opt->collector, u->host, sizeof(u->host), &port) != 0 ||
        u->host[0] == '\0') {
        free(u);
        return APM_E_CONFIG;
    }
    snprintf(u->port, sizeof(u->port), "%d", port);
    snprintf(u->server_name, sizeof(u->server_name), "%s",
             opt->tls_server_name != NULL && opt->tls_server_name[0] != '\0' ? opt->tls_server_name
                                                                             : u->host);
    u->loop = loop;
    u->opt = *opt;
    u->opt.collector = NULL;
    u->opt.token = NULL;
    u->opt.tls_server_name = NULL;
    memcpy(u->token, opt->token, opt->token_len);
    u->token_len = opt->token_len;
    u->ident = opt->ident;
    if (u->opt.max_queue_bytes == 0)
        u->opt.max_queue_bytes = 64u << 20;
    if (u->opt.max_unacked == 0)
        u->opt.max_unacked = 32;
    if (u->opt.backoff_min_ms == 0)
        u->opt.backoff_min_ms = 200;
    if (u->opt.backoff_max_ms == 0)
        u->opt.backoff_max_ms = 30000;
    if (u->opt.connect_timeout_ms == 0)
        u->opt.connect_timeout_ms = 10000;
    if (u->opt.ack_timeout_ms == 0)
        u->opt.ack_timeout_ms = 60000;
    u->on_control = on_control;
    u->ctx = ctx;
    u->next_seq = 1;
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    u->pending = 1; /* the timer */
    start_connect(u);
    *out = u;
    return 0;
}

static void enqueue(struct apm_uplink *u, struct apm_batch *b);

uint64_t apm_uplink_push(struct apm_uplink *u, struct apm_batch *b)
{
    uint64_t seq = b->seq = u->next_seq++;
    enqueue(u, b);
    return seq;
}

void apm_uplink_push_seq(struct apm_uplink *u, struct apm_batch *b)
{
    if (b->seq >= u->next_seq)
        u->next_seq = b->seq + 1;
    enqueue(u, b);
}

static void enqueue(struct apm_uplink *u, struct apm_batch *b)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (e == NULL || u->closing) {
        free(e);
        u->stats.batches_dropped++;
        u->stats.samples_dropped += b->nsamples;
        apm_batch_free(b);
        return;
    }
    e->b = b;
    e->bytes = batch_bytes(b);
    if (u->tail != NULL)
        u->tail->next = e;
    else
        u->head = e;
    u->tail = e;
    if (u->cursor == NULL)
        u->cursor = e;
    u->stats.batches_queued++;
    u->stats.samples_queued += b->nsamples;
    u->stats.queue_len++;
    u->stats.queue_bytes += e->bytes;
    while (u->stats.queue_bytes > u->opt.max_queue_bytes && u->head != e) {
        u->stats.batches_dropped++;
        u->stats.samples_dropped += u->head->b->nsamples;
        if (u->stats.batches_dropped == 1 || u->stats.batches_dropped % 100 == 0)
            apm_warn("uplink: queue full (%zu bytes): dropped the oldest batch (%llu so far)",
                     u->opt.max_queue_bytes, (unsigned long long)u->stats.batches_dropped);
        drop_head(u);
    }
    pump(u);
}

void apm_uplink_get_stats(const struct apm_uplink *u, struct apm_uplink_stats *out)
{
    *out = u->stats;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct apm_uplink *u = h->data;
    u->pending--;
    maybe_finish_close(u);
}

void apm_uplink_close(struct apm_uplink *u, apm_uplink_close_cb cb, void *ctx)
{
    u->closing = true;
    u->close_cb = cb;
    u->close_ctx = ctx;
    if (u->resolving)
        uv_cancel((uv_req_t *)&u->gai);
    if (u->link != NULL)
        link_fail(u->link, "agent stopping");
    uv_close((uv_handle_t *)&u->timer, on_timer_closed);
}
