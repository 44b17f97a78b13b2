#include "server/net/http.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>

#include <jansson.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/wire/tls.h"
#include "server/net/listener.h"

/* ------------------------------------------------------------------ */
/* Server and connections                                              */
/* ------------------------------------------------------------------ */

/* Input buffer per connection; the reader copies what it keeps. */
#define CONN_INBUF 16384u
/* Above this many queued response bytes a connection stops reading requests. */
#define CONN_WRITE_HIGH (256u * 1024u)
/* How long a closing connection may keep sending before it is cut. */
#define CONN_LINGER_MS 2000u

struct apm_http_server {
    uv_loop_t *loop;
    struct apm_listener *listener; /* NULL once closed */
    struct apm_http_options opt;
    apm_http_handler_fn handler;
    void *ctx;
    apm_http_close_cb close_cb;
    struct apm_http_conn *conns; /* doubly linked, open connections */
    struct apm_http_stats stats;
    struct apm_log_limit tls_log;
    /* Ciphertext of the TLS connection being read (the loop reads one socket at a time). */
    uint8_t cbuf[CONN_INBUF];
    struct apm_log_limit evict_log;
    bool closing;
};

struct apm_http_conn {
    struct apm_http_server *srv;
    struct apm_http_conn *prev;
    struct apm_http_conn *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct apm_http_reader *reader;
    unsigned pending_closes; /* handles whose close callback has not run */
    unsigned writes;         /* uv_write requests in flight */
    unsigned nrequests;
    uint64_t idle_since; /* uv_now when it last had nothing to do */
    bool busy;           /* a request waits for its answer */
    bool want_close;     /* no more requests: flush, then close */
    bool eof;            /* the client will send nothing more */
    bool draining;       /* FIN sent; discarding input until the client closes */
    bool reading;
    bool processing;     /* inside process(): answers made now must not recurse */
    bool closing;        /* uv_close called on both handles */
    bool started;        /* the first bytes were read: TLS or plain HTTP is decided */
    struct apm_tls *tls; /* NULL for plain HTTP */
    bool tls_dead;       /* the session failed: nothing more is read or sent through it */
    size_t in_off;
    size_t in_len;
    char in[CONN_INBUF];
};

struct write_req {
    uv_write_t req;
    struct apm_http_conn *conn;
    char *body;
    char head[1024]; /* the status line and headers, APM_HTTP_MAX_EXTRA_HEADERS included */
};

/* A connection over the cap: accepted only to be closed. */
struct refused_conn {
    uv_tcp_t tcp;
};

static void process(struct apm_http_conn *c);

static void server_maybe_finish(struct apm_http_server *s)
{
    if (!s->closing || s->listener != NULL || s->conns != NULL)
        return;
    if (s->close_cb != NULL)
        s->close_cb(s, s->ctx);
    free(s);
}

/* Only here is a connection freed: both handles closed and no answer owed. */
static void conn_maybe_free(struct apm_http_conn *c)
{
    if (!c->closing || c->pending_closes > 0 || c->busy)
        return;
    struct apm_http_server *s = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->stats.connections_open--;
    apm_http_reader_free(c->reader);
    apm_tls_free(c->tls);
    free(c);
    server_maybe_finish(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct apm_http_conn *c = h->data;
    c->pending_closes--;
    conn_maybe_free(c);
}

static void conn_close(struct apm_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
    struct apm_http_conn *c = t->data;
    if (c->busy)
        return;
    if (!c->draining && !c->want_close)
        c->srv->stats.timeouts++;
    conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct apm_http_conn *c = h->data;
    (void)suggested;
    if (c->draining) {
        *buf = uv_buf_init(c->in, CONN_INBUF);
        return;
    }
    if (c->tls != NULL || (!c->started && c->srv->opt.tls != NULL)) {
        *buf = uv_buf_init((char *)c->srv->cbuf, sizeof(c->srv->cbuf));
        return;
    }
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(CONN_INBUF - c->in_len));
}

static void on_write(uv_write_t *req, int status);
static void conn_update(struct apm_http_conn *c);

/* Queues bytes as they go on the wire (w->body, already sealed on TLS). Returns 0 or a code. */
static int conn_write(struct apm_http_conn *c, struct write_req *w, uv_buf_t *bufs, unsigned nbufs)
{
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc == 0)
        c->writes++;
    return rc;
}

/* Sends TLS's own records (handshake, alerts); takes out->buf. Returns 0 or a code. */
static int tls_send(struct apm_http_conn *c, struct apm_frame_out *out)
{
    if (out->buf == NULL)
        return 0;
    struct write_req *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(out->buf);
        return -ENOMEM;
    }
    w->conn = c;
    w->body = (char *)out->buf;
    uv_buf_t b = uv_buf_init(w->body, (unsigned)out->len);
    int rc = conn_write(c, w, &b, 1);
    if (rc != 0) {
        free(w->body);
        free(w);
    }
    return rc;
}

/* Ends a TLS connection that failed: counts it, sends the alert, closes. */
static void tls_fail(struct apm_http_conn *c, int rc, struct apm_frame_out *out)
{
    struct apm_http_server *s = c->srv;
    c->tls_dead = true;
    if (rc == APM_E_TLS) {
        s->stats.tls_failures++;
        if (apm_log_limit_hit(&s->tls_log, (int64_t)uv_now(s->loop)))
            apm_warn("http: TLS failed: %s; closing", apm_tls_error(c->tls));
    }
    tls_send(c, out);
    c->want_close = true;
    c->eof = true;
    conn_update(c);
    if (c->writes == 0)
        conn_close(c);
}

/* Moves what TLS has decrypted into the input buffer while it has room. Returns false on failure.
 */
static bool tls_fill(struct apm_http_conn *c)
{
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    while (c->in_len < CONN_INBUF) {
        size_t got = 0;
        struct apm_frame_out out;
        int rc =
            apm_tls_pull(c->tls, (uint8_t *)c->in + c->in_len, CONN_INBUF - c->in_len, &got, &out);
        if (rc == APM_E_CLOSED) {
            tls_send(c, &out);
            c->eof = true;
            return true;
        }
        if (rc != 0) {
            tls_fail(c, rc, &out);
            return false;
        }
        if (tls_send(c, &out) != 0) {
            conn_close(c);
            return false;
        }
        if (got == 0)
            break;
        c->in_len += got;
    }
    return true;
}

/*
 * The first bytes decide: a TLS handshake record, or plain HTTP (a method's
 * letters), refused under tls-required. Returns false when the connection
 * was closed.
 */
static bool conn_start(struct apm_http_conn *c, const uint8_t *p, size_t n)
{
    struct apm_http_server *s = c->srv;
    c->started = true;
    if (apm_tls_looks_like_handshake(p[0])) {
        if (apm_tls_new(s->opt.tls, NULL, &c->tls) != 0) {
            conn_close(c);
            return false;
        }
        return true;
    }
    if (s->opt.tls_required) {
        s->stats.plaintext_refused++;
        if (apm_log_limit_hit(&s->tls_log, (int64_t)uv_now(s->loop)))
            apm_warn("http: plain HTTP refused: this collector requires TLS (tls-required)");
        conn_close(c);
        return false;
    }
    memcpy(c->in, p, n); /* the first read: the input buffer is empty */
    c->in_len = n;
    return true;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct apm_http_conn *c = stream->data;
    (void)buf;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF || c->draining) {
            conn_close(c);
            return;
        }
        c->eof = true;
        process(c);
        return;
    }
    if (c->draining)
        return;
    if (!c->started && c->srv->opt.tls != NULL) {
        /* Read into the ciphertext buffer (on_alloc) until this decides. */
        if (!conn_start(c, c->srv->cbuf, (size_t)nread))
            return;
        if (c->tls == NULL) {
            process(c);
            return;
        }
    }
    if (c->tls != NULL) {
        struct apm_frame_out out;
        int rc = apm_tls_push(c->tls, c->srv->cbuf, (size_t)nread, &out);
        if (rc != 0) {
            tls_fail(c, rc, &out);
            return;
        }
        if (tls_send(c, &out) != 0) {
            conn_close(c);
            return;
        }
        process(c);
        return;
    }
    c->in_len += (size_t)nread;
    process(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct apm_http_conn *c = req->data;
    if (status < 0 && !c->closing)
        conn_close(c);
}

/*
 * Ends a connection politely: the FIN goes after the last answer and input
 * is read and dropped until the client closes, so that unread request bytes
 * do not turn the close into a reset that destroys the answer in flight.
 */
static void conn_drain(struct apm_http_conn *c)
{
    if (c->draining)
        return;
    c->draining = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_idle, CONN_LINGER_MS, 0);
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void set_reading(struct apm_http_conn *c, bool on)
{
    if (on == c->reading)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = on;
}

static bool write_queue_small(struct apm_http_conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < CONN_WRITE_HIGH;
}

/* Decides, after any change of state, whether to read, wait or close. */
static void conn_update(struct apm_http_conn *c)
{
    if (c->closing || c->draining)
        return;
    if (c->busy) {
        set_reading(c, false);
        return;
    }
    if (c->want_close || c->eof) {
        set_reading(c, false);
        if (c->writes > 0)
            return; /* on_write comes back here */
        if (c->eof || c->srv->closing)
            conn_close(c);
        else
            conn_drain(c);
        return;
    }
    set_reading(c, write_queue_small(c) && c->in_len - c->in_off < CONN_INBUF);
}

static void dispatch(struct apm_http_conn *c)
{
    struct apm_http_server *s = c->srv;
    c->busy = true;
    c->nrequests++;
    s->stats.requests++;
    uv_timer_stop(&c->timer);
    s->handler(s->ctx, c, apm_http_reader_request(c->reader));
}

static void reject(struct apm_http_conn *c)
{
    const char *message = NULL;
    int status = apm_http_reader_error(c->reader, &message);
    c->srv->stats.bad_requests++;
    apm_log(APM_LOG_DEBUG, "http: refused a request: %d %s", status, message);
    c->busy = true;
    c->want_close = true;
    apm_http_respond_error(c, status, message);
}

static void process(struct apm_http_conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    for (;;) {
        size_t before = c->in_len - c->in_off;
        if (c->tls != NULL && !c->tls_dead && !c->closing && !tls_fill(c)) {
            c->processing = false;
            return;
        }
        bool pulled = c->in_len - c->in_off > before;
        while (!c->closing && !c->busy && !c->want_close && c->in_off < c->in_len &&
               write_queue_small(c)) {
            size_t used = 0;
            int rc =
                apm_http_reader_feed(c->reader, c->in + c->in_off, c->in_len - c->in_off, &used);
            c->in_off += used;
            if (rc == 1)
                dispatch(c);
            else if (rc < 0)
                reject(c);
        }
        if (c->in_off == c->in_len)
            c->in_off = c->in_len = 0;
        /* TLS may hold more plaintext than the buffer took: go on while it gives some. */
        if (c->tls == NULL || !pulled || c->closing || c->busy || c->want_close ||
            !write_queue_small(c))
            break;
    }
    c->processing = false;
    conn_update(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct apm_http_conn *c = w->conn;
    free(w->body);
    free(w);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    process(c);
}

const char *apm_http_status_text(int status)
{
    static const struct {
        int status;
        const char *text;
    } texts[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Content Too Large"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (texts[i].status == status)
            return texts[i].text;
    }
    return "Unknown";
}

int apm_http_respond(struct apm_http_conn *c, int status, const char *content_type, char *body,
                     size_t len)
{
    return apm_http_respond_headers(c, status, content_type, NULL, body, len);
}

/* True when the caller's headers say how to cache: then no default "no-store". */
static bool cache_control_in(const char *h)
{
    while (h != NULL && *h != '\0') {
        if (strncasecmp(h, "Cache-Control:", 14) == 0)
            return true;
        h = strstr(h, "\r\n");
        h = h != NULL ? h + 2 : NULL;
    }
    return false;
}

/* True for a header block that fits the head and cannot split the answer (no blank line). */
static bool headers_ok(const char *h)
{
    return h == NULL || (strlen(h) <= APM_HTTP_MAX_EXTRA_HEADERS && strstr(h, "\r\n\r\n") == NULL &&
                         (h[0] == '\0' || strcmp(h + strlen(h) - 2, "\r\n") == 0));
}

int apm_http_respond_headers(struct apm_http_conn *c, int status, const char *content_type,
                             const char *headers, char *body, size_t len)
{
    if (!headers_ok(headers)) {
        free(body);
        return -EINVAL;
    }
    if (!c->busy) {
        free(body);
        return -EINVAL;
    }
    struct apm_http_server *s = c->srv;
    const struct apm_http_request *req = apm_http_reader_request(c->reader);
    bool keep_alive = req != NULL && req->keep_alive;
    /* HEAD: the same head, Content-Length included, and no body. */
    bool head_only = req != NULL && strcmp(req->method, "HEAD") == 0;
    c->busy = false;
    apm_http_reader_next(c->reader);
    if (c->closing) {
        free(body);
        conn_maybe_free(c);
        return APM_E_CLOSED;
    }
    if (status >= 400 && status < 500)
        s->stats.responses_4xx++;
    else if (status >= 500)
        s->stats.responses_5xx++;
    if (!keep_alive || c->nrequests >= s->opt.max_requests_per_conn || s->closing || c->eof)
        c->want_close = true;
    /* want_close may also be set by a refused request (reject). */
    struct write_req *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(body);
        conn_close(c);
        return -ENOMEM;
    }
    w->conn = c;
    w->body = body;
    int hl = snprintf(w->head, sizeof(w->head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "X-Content-Type-Options: nosniff\r\n%s%sConnection: %s\r\n\r\n",
                      status, apm_http_status_text(status),
                      content_type ? content_type : "application/octet-stream", len,
                      headers ? headers : "",
                      cache_control_in(headers) ? "" : "Cache-Control: no-store\r\n",
                      c->want_close ? "close" : "keep-alive");
    if (hl < 0 || (size_t)hl >= sizeof(w->head)) {
        free(body);
        free(w);
        conn_close(c);
        return -EINVAL;
    }
    if (head_only) {
        free(body);
        w->body = body = NULL;
        len = 0;
    }
    uv_buf_t bufs[2] = {uv_buf_init(w->head, (unsigned)hl), uv_buf_init(body, (unsigned)len)};
    unsigned nbufs = len ? 2 : 1;
    if (c->tls != NULL && c->tls_dead) {
        free(body);
        free(w);
        conn_close(c);
        return APM_E_CLOSED;
    }
    if (c->tls != NULL) {
        /* One record stream: head and body sealed together, sent as one buffer. */
        struct apm_frame_out f = {.buf = malloc((size_t)hl + len), .len = (size_t)hl + len};
        if (f.buf != NULL) {
            memcpy(f.buf, w->head, (size_t)hl);
            if (len > 0)
                memcpy(f.buf + hl, body, len);
        }
        free(body);
        w->body = NULL;
        if (f.buf == NULL || apm_tls_seal(c->tls, &f) != 0 || f.buf == NULL) {
            free(f.buf);
            free(w);
            conn_close(c);
            return -ENOMEM;
        }
        w->body = (char *)f.buf;
        bufs[0] = uv_buf_init(w->body, (unsigned)f.len);
        nbufs = 1;
    }
    int rc = conn_write(c, w, bufs, nbufs);
    if (rc != 0) {
        free(w->body);
        free(w);
        conn_close(c);
        return rc;
    }
    c->idle_since = uv_now(s->loop);
    if (!c->want_close)
        uv_timer_start(&c->timer, on_idle, s->opt.idle_timeout_ms, 0);
    if (!c->processing)
        process(c); /* a deferred answer: go on with buffered requests */
    return 0;
}

int apm_http_respond_error(struct apm_http_conn *c, int status, const char *message)
{
    json_t *obj = json_pack("{s:s}", "error", message ? message : apm_http_status_text(status));
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (body == NULL)
        return apm_http_respond(c, 500, "application/json", NULL, 0);
    size_t len = strlen(body);
    /* json_dumps memory comes from malloc (jansson's default allocator). */
    return apm_http_respond(c, status, "application/json", body, len);
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h->data);
}

static void refuse(struct apm_http_server *s)
{
    struct refused_conn *r = malloc(sizeof(*r));
    if (r == NULL)
        return;
    if (uv_tcp_init(s->loop, &r->tcp) != 0) {
        free(r);
        return;
    }
    r->tcp.data = r;
    apm_listener_accept(s->listener, &r->tcp);
    uv_close((uv_handle_t *)&r->tcp, on_refused_closed);
    s->stats.refused++;
}

/* Whether the peer has sent bytes the loop has not read yet (a request on its way in). */
static bool has_unread(struct apm_http_conn *c)
{
    uv_os_fd_t fd;
    int n = 0;
    return uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/*
 * At the cap, closes the connection idle the longest (no request being
 * answered, nothing being written, nothing sent and not yet read) so that
 * idle sockets cannot keep a real request out. A connection whose request
 * waits in the kernel while a flood of accepts keeps the loop busy is not
 * idle: it counts as active from now and the next oldest goes instead.
 * Returns false when every connection is busy.
 */
static bool evict_idle(struct apm_http_server *s)
{
    struct apm_http_conn *oldest = NULL;
    for (int tries = 0; tries < 8; tries++) {
        oldest = NULL;
        for (struct apm_http_conn *c = s->conns; c != NULL; c = c->next) {
            if (c->busy || c->writes > 0 || c->closing)
                continue;
            if (oldest == NULL || c->idle_since <= oldest->idle_since)
                oldest = c;
        }
        if (oldest == NULL || !has_unread(oldest))
            break;
        oldest->idle_since = uv_now(s->loop);
        oldest = NULL;
    }
    if (oldest == NULL)
        return false;
    s->stats.evicted++;
    if (apm_log_limit_hit(&s->evict_log, (int64_t)uv_now(s->loop)))
        apm_warn("http: closed a connection idle for %llu ms to admit a new one "
                 "(%u connections open)",
                 (unsigned long long)(uv_now(s->loop) - oldest->idle_since),
                 s->opt.max_connections);
    conn_close(oldest);
    return true;
}

static void on_connection(void *ctx, struct apm_listener *l, int status)
{
    struct apm_http_server *s = ctx;
    if (status < 0) {
        apm_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    /* Closed connections leave the count only in their close callback: count the live ones. */
    unsigned live = 0;
    for (struct apm_http_conn *c = s->conns; c != NULL; c = c->next)
        live += !c->closing;
    if (s->closing || (live >= s->opt.max_connections && !evict_idle(s))) {
        refuse(s);
        return;
    }
    struct apm_http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        refuse(s);
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->pending_closes = 2;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->stats.connections_open++;
    s->stats.connections++;
    if (apm_listener_accept(l, &c->tcp) != 0 || apm_http_reader_new(&s->opt, &c->reader) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->idle_since = uv_now(s->loop);
    uv_timer_start(&c->timer, on_idle, s->opt.idle_timeout_ms, 0);
    conn_update(c);
}

static void on_listener_closed(void *ctx)
{
    struct apm_http_server *s = ctx;
    s->listener = NULL;
    server_maybe_finish(s);
}

int apm_http_server_new_opts(uv_loop_t *loop, const char *listen,
                             const struct apm_http_options *opt, apm_http_handler_fn handler,
                             void *ctx, struct apm_http_server **out)
{
    if (listen == NULL || handler == NULL)
        return APM_E_CONFIG;
    struct apm_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->loop = loop;
    s->handler = handler;
    s->ctx = ctx;
    apm_http_options_fill(&s->opt, opt);
    s->evict_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "http: closed", "idle connections to admit newer ones", 10000, 5);
    s->tls_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(APM_LOG_WARN, "http: refused",
                                                          "connections for TLS", 10000, 5);
    int rc = apm_listener_new(loop, "http", listen, 128, on_connection, s, &s->listener);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int apm_http_server_new(uv_loop_t *loop, const char *listen, apm_http_handler_fn handler, void *ctx,
                        struct apm_http_server **out)
{
    return apm_http_server_new_opts(loop, listen, NULL, handler, ctx, out);
}

int apm_http_server_port(const struct apm_http_server *s)
{
    return apm_listener_port(s->listener);
}

void apm_http_server_stats(const struct apm_http_server *s, struct apm_http_stats *out)
{
    *out = s->stats;
}

void apm_http_server_close(struct apm_http_server *s, apm_http_close_cb cb)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    apm_log_limit_flush(&s->evict_log, (int64_t)uv_now(s->loop), true);
    apm_log_limit_flush(&s->tls_log, (int64_t)uv_now(s->loop), true);
    apm_listener_close(s->listener, on_listener_closed, s);
    for (struct apm_http_conn *c = s->conns; c != NULL; c = c->next) {
        if (c->busy)
            c->want_close = true; /* closes once answered */
        else
            conn_close(c);
    }
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_http_stats, connections, "connections", APM_COUNTER_TOTAL, "",
                "HTTP connections accepted and served."),
    APM_COUNTER(struct apm_http_stats, connections_open, "connections_open", APM_COUNTER_GAUGE, "",
                "HTTP connections open now."),
    APM_COUNTER(struct apm_http_stats, refused, "refused", APM_COUNTER_TOTAL, "",
                "HTTP connections closed at once because max-connections were open and busy."),
    APM_COUNTER(struct apm_http_stats, evicted, "evicted", APM_COUNTER_TOTAL, "",
                "Idle HTTP connections closed at max-connections to admit a new one."),
    APM_COUNTER(struct apm_http_stats, requests, "requests", APM_COUNTER_TOTAL, "",
                "Complete HTTP requests handed to the API."),
    APM_COUNTER(struct apm_http_stats, bad_requests, "bad_requests", APM_COUNTER_TOTAL, "",
                "HTTP requests refused by the reader (400, 413, 431, 505)."),
    APM_COUNTER(struct apm_http_stats, timeouts, "timeouts", APM_COUNTER_TOTAL, "",
                "HTTP connections closed by the idle timeout."),
    APM_COUNTER(struct apm_http_stats, responses_4xx, "responses_4xx", APM_COUNTER_TOTAL, "",
                "HTTP answers with a 4xx status."),
    APM_COUNTER(struct apm_http_stats, responses_5xx, "responses_5xx", APM_COUNTER_TOTAL, "",
                "HTTP answers with a 5xx status."),
    APM_COUNTER(struct apm_http_stats, tls_failures, "tls_failures", APM_COUNTER_TOTAL, "",
                "HTTPS handshakes or records that failed."),
    APM_COUNTER(struct apm_http_stats, plaintext_refused, "plaintext_refused", APM_COUNTER_TOTAL,
                "", "Plain HTTP connections closed because tls-required is set."),
    {.name = NULL},
};

int apm_http_server_add_counters(struct apm_http_server *s, struct apm_counters *r)
{
    struct apm_counter_group g = {
        .module = "http", .counters = counters, .size = sizeof(s->stats), .stats = &s->stats};
    return apm_counters_add(r, &g);
}
