/*
 * A connection's life (ingest_priv.h): accepting it, its peer's name, the
 * budget of unauthenticated strangers (the oldest makes room for the
 * newest), writes and their TLS sealing, the Error that ends it, closing
 * its two handles and freeing it once both are closed and no commit is in
 * flight.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/wire/frame.h"
#include "server/ingest/ingest_priv.h"
#include "server/net/listener.h"

struct write_req {
    uv_write_t req;
    struct conn *c;
    bool close_after;
    uint8_t *buf;
};

/* Takes c off the unauthenticated list and its address's budget. Idempotent. */
void apm_ingest_waiting_remove(struct conn *c)
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

void apm_ingest_conn_maybe_free(struct conn *c)
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
    apm_ingest_maybe_finish_close(in);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->handles_open--;
    apm_ingest_conn_maybe_free(c);
}

void apm_ingest_conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    apm_ingest_waiting_remove(c);
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
        apm_ingest_conn_close(c);
}

/* Queues bytes as they go on the wire; takes ownership of f->buf. */
void apm_ingest_conn_write(struct conn *c, struct apm_frame_out *f, bool close_after)
{
    if (c->closing) {
        free(f->buf);
        return;
    }
    struct write_req *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        free(f->buf);
        apm_ingest_conn_close(c);
        return;
    }
    w->c = c;
    w->buf = f->buf;
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init((char *)f->buf, (unsigned)f->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(w->buf);
        free(w);
        apm_ingest_conn_close(c);
    }
}

/* Queues an encoded frame, encrypted on a TLS connection; takes ownership of f->buf. */
void apm_ingest_conn_send(struct conn *c, struct apm_frame_out *f, bool close_after)
{
    if (c->tls != NULL && !c->closing) {
        if (apm_tls_seal(c->tls, f) != 0) {
            apm_ingest_conn_close(c);
            return;
        }
        if (f->buf == NULL) { /* kept until the handshake ends */
            if (close_after)
                apm_ingest_conn_close(c);
            return;
        }
    }
    apm_ingest_conn_write(c, f, close_after);
}

/* Sends Error e, then closes: nothing more is read from the peer. */
void apm_ingest_conn_send_error(struct conn *c, const struct apm_msg_error *e)
{
    if (c->closing || c->failing)
        return;
    c->failing = true;
    apm_ingest_waiting_remove(c);
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
        apm_ingest_conn_send(c, &f, true);
    else
        apm_ingest_conn_close(c);
}

void apm_ingest_conn_fail(struct conn *c, enum apm_wire_error code, bool retryable, const char *fmt,
                          ...)
{
    struct apm_msg_error e = {.code = code, .retryable = retryable};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.text, sizeof(e.text), fmt, ap);
    va_end(ap);
    apm_ingest_conn_send_error(c, &e);
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
        apm_ingest_waiting_remove(victim);
        apm_ingest_conn_close(victim);
    }
    uint64_t n = 0;
    size_t klen = strlen(c->addr);
    apm_hashmap_get(&in->waiting_by_addr, c->addr, klen, &n);
    if (apm_hashmap_put(&in->waiting_by_addr, c->addr, klen, n + 1) != 0) {
        apm_ingest_conn_close(c);
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

void apm_ingest_on_connection(void *ctx, struct apm_listener *l, int status)
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
        apm_ingest_conn_close(c);
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
    uv_timer_start(&c->timer, apm_ingest_on_timeout, in->opt.handshake_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&c->tcp, apm_ingest_on_alloc, apm_ingest_on_read);
}
