#include "server/http.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "common/log.h"

/* ------------------------------------------------------------------ */
/* Request reader                                                      */
/* ------------------------------------------------------------------ */

struct apm_http_reader {
    http_parser parser;
    size_t max_header;
    size_t max_body;
    size_t header_bytes; /* request line and header bytes of the current request */
    char *url;           /* raw request target, NUL-terminated */
    size_t url_len;
    size_t url_cap;
    char *body;
    size_t body_len;
    size_t body_cap;
    char *target; /* path '\0' query '\0', split from url at completion */
    size_t target_cap;
    struct apm_http_request req;
    bool complete;
    int status; /* nonzero once the reader has failed */
    const char *message;
    char message_buf[96];
};

static void options_fill(struct apm_http_options *dst, const struct apm_http_options *src)
{
    memset(dst, 0, sizeof(*dst));
    if (src != NULL)
        *dst = *src;
    if (dst->max_header_bytes == 0)
        dst->max_header_bytes = APM_HTTP_MAX_HEADER_BYTES;
    if (dst->max_body_bytes == 0)
        dst->max_body_bytes = APM_HTTP_MAX_BODY_BYTES;
    if (dst->max_connections == 0)
        dst->max_connections = APM_HTTP_MAX_CONNECTIONS;
    if (dst->max_requests_per_conn == 0)
        dst->max_requests_per_conn = APM_HTTP_MAX_REQUESTS_PER_CONNECTION;
    if (dst->idle_timeout_ms == 0)
        dst->idle_timeout_ms = APM_HTTP_IDLE_TIMEOUT_MS;
}

static int fail(struct apm_http_reader *r, int status, const char *message)
{
    if (r->status == 0) {
        r->status = status;
        r->message = message;
    }
    return -1;
}

/*
 * Appends to a buffer that never grows past cap bytes plus a NUL. The caller
 * has checked the cap, so growth here is bounded by the request caps.
 */
static int append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 256;
        while (ncap < *len + n + 1)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -ENOMEM;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int count_header(struct apm_http_reader *r, size_t n)
{
    r->header_bytes += n;
    if (r->header_bytes > r->max_header)
        return fail(r, 431, "request header too large");
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct apm_http_reader *r = p->data;
    r->header_bytes = 0;
    r->url_len = 0;
    r->body_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct apm_http_reader *r = p->data;
    if (count_header(r, n) != 0)
        return -1;
    if (append(&r->url, &r->url_len, &r->url_cap, at, n) != 0)
        return fail(r, 500, "out of memory");
    return 0;
}

static int on_header_bytes(http_parser *p, const char *at, size_t n)
{
    (void)at;
    return count_header(p->data, n);
}

static int on_headers_complete(http_parser *p)
{
    struct apm_http_reader *r = p->data;
    if (p->upgrade)
        return fail(r, 400, "protocol upgrade is not supported");
    if (p->content_length != ULLONG_MAX && p->content_length > r->max_body)
        return fail(r, 413, "request body too large");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct apm_http_reader *r = p->data;
    if (r->body_len + n > r->max_body)
        return fail(r, 413, "request body too large");
    if (append(&r->body, &r->body_len, &r->body_cap, at, n) != 0)
        return fail(r, 500, "out of memory");
    return 0;
}

/* Splits the request target into path and query; only origin-form is served. */
static int split_target(struct apm_http_reader *r)
{
    if (r->url_len == 0 || r->url[0] != '/')
        return fail(r, 400, "bad request target");
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url, r->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
        return fail(r, 400, "bad request target");
    if (r->target_cap < r->url_len + 2) {
        char *nt = realloc(r->target, r->url_len + 2);
        if (nt == NULL)
            return fail(r, 500, "out of memory");
        r->target = nt;
        r->target_cap = r->url_len + 2;
    }
    size_t plen = u.field_data[UF_PATH].len;
    memcpy(r->target, r->url + u.field_data[UF_PATH].off, plen);
    r->target[plen] = '\0';
    char *query = r->target + plen + 1;
    query[0] = '\0';
    if (u.field_set & (1 << UF_QUERY)) {
        size_t qlen = u.field_data[UF_QUERY].len;
        memcpy(query, r->url + u.field_data[UF_QUERY].off, qlen);
        query[qlen] = '\0';
    }
    r->req.path = r->target;
    r->req.query = query;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct apm_http_reader *r = p->data;
    if (split_target(r) != 0)
        return -1;
    r->req.method = http_method_str((enum http_method)p->method);
    r->req.body = r->body_len ? r->body : "";
    r->req.body_len = r->body_len;
    r->req.keep_alive = http_should_keep_alive(p) != 0;
    r->complete = true;
    /* Stop after this request: the caller handles it before reading on. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings reader_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_bytes,
    .on_header_value = on_header_bytes,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int apm_http_reader_new(const struct apm_http_options *opt, struct apm_http_reader **out)
{
    struct apm_http_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    struct apm_http_options o;
    options_fill(&o, opt);
    r->max_header = o.max_header_bytes;
    r->max_body = o.max_body_bytes;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    *out = r;
    return 0;
}

void apm_http_reader_free(struct apm_http_reader *r)
{
    if (r == NULL)
        return;
    free(r->url);
    free(r->body);
    free(r->target);
    free(r);
}

static int reader_code(const struct apm_http_reader *r)
{
    if (r->status == 413 || r->status == 431)
        return APM_E_LIMIT;
    if (r->status == 500)
        return -ENOMEM;
    return APM_E_PARSE;
}

int apm_http_reader_feed(struct apm_http_reader *r, const char *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (r->status != 0)
        return reader_code(r);
    if (r->complete)
        return 1;
    if (len == 0) /* http_parser reads an empty buffer as end of stream */
        return 0;
    size_t n = http_parser_execute(&r->parser, &reader_settings, data, len);
    *consumed = n;
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
        return 1;
    }
    if (e == HPE_OK && r->parser.upgrade)
        fail(r, 400, "protocol upgrade is not supported");
    if (e == HPE_HEADER_OVERFLOW)
        fail(r, 431, "request header too large");
    if (e != HPE_OK && r->status == 0) {
        snprintf(r->message_buf, sizeof(r->message_buf), "bad request: %s",
                 http_errno_description(e));
        fail(r, 400, r->message_buf);
    }
    if (r->status != 0)
        return reader_code(r);
    return 0;
}

const struct apm_http_request *apm_http_reader_request(const struct apm_http_reader *r)
{
    return r->complete ? &r->req : NULL;
}

void apm_http_reader_next(struct apm_http_reader *r)
{
    r->complete = false;
    memset(&r->req, 0, sizeof(r->req));
}

int apm_http_reader_error(const struct apm_http_reader *r, const char **message)
{
    if (message != NULL)
        *message = r->status ? r->message : NULL;
    return r->status;
}

/* ------------------------------------------------------------------ */
/* Query strings                                                       */
/* ------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int apm_http_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return APM_E_PARSE;
            int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return APM_E_PARSE;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (o + 1 >= size)
            return APM_E_LIMIT;
        out[o++] = c;
    }
    if (size == 0)
        return APM_E_LIMIT;
    out[o] = '\0';
    return 0;
}

int apm_http_query_foreach(const char *query, int (*fn)(void *ctx, const char *name, size_t len),
                           void *ctx)
{
    const char *p = query;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (seg > 0) {
            const char *eq = memchr(p, '=', seg);
            size_t nlen = eq ? (size_t)(eq - p) : seg;
            int rc = fn(ctx, p, nlen);
            if (rc != 0)
                return rc;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

int apm_http_query_get(const char *query, const char *name, char *out, size_t size)
{
    size_t want = strlen(name);
    const char *p = query;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', seg);
        size_t nlen = eq ? (size_t)(eq - p) : seg;
        if (nlen == want && memcmp(p, name, want) == 0) {
            const char *v = eq ? eq + 1 : p + seg;
            return apm_http_decode(v, (size_t)(p + seg - v), true, out, size);
        }
        p = end ? end + 1 : NULL;
    }
    return APM_E_NOTFOUND;
}

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
    uv_tcp_t listener;
    struct apm_http_options opt;
    apm_http_handler_fn handler;
    void *ctx;
    apm_http_close_cb close_cb;
    struct apm_http_conn *conns; /* doubly linked, open connections */
    struct apm_http_stats stats;
    bool closing;
    bool listener_closed;
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
    bool busy;       /* a request waits for its answer */
    bool want_close; /* no more requests: flush, then close */
    bool eof;        /* the client will send nothing more */
    bool draining;   /* FIN sent; discarding input until the client closes */
    bool reading;
    bool processing; /* inside process(): answers made now must not recurse */
    bool closing;    /* uv_close called on both handles */
    size_t in_off;
    size_t in_len;
    char in[CONN_INBUF];
};

struct write_req {
    uv_write_t req;
    struct apm_http_conn *conn;
    char *body;
    char head[256];
};

/* A connection over the cap: accepted only to be closed. */
struct refused_conn {
    uv_tcp_t tcp;
};

static void process(struct apm_http_conn *c);

static void server_maybe_finish(struct apm_http_server *s)
{
    if (!s->closing || !s->listener_closed || s->conns != NULL)
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
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(CONN_INBUF - c->in_len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct apm_http_conn *c = stream->data;
    (void)buf;
    if (nread == 0)
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
    while (!c->closing && !c->busy && !c->want_close && c->in_off < c->in_len &&
           write_queue_small(c)) {
        size_t used = 0;
        int rc = apm_http_reader_feed(c->reader, c->in + c->in_off, c->in_len - c->in_off, &used);
        c->in_off += used;
        if (rc == 1)
            dispatch(c);
        else if (rc < 0)
            reject(c);
    }
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
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
    if (!c->busy) {
        free(body);
        return -EINVAL;
    }
    struct apm_http_server *s = c->srv;
    const struct apm_http_request *req = apm_http_reader_request(c->reader);
    bool keep_alive = req != NULL && req->keep_alive;
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
                      "Cache-Control: no-store\r\nConnection: %s\r\n\r\n",
                      status, apm_http_status_text(status),
                      content_type ? content_type : "application/octet-stream", len,
                      c->want_close ? "close" : "keep-alive");
    if (hl < 0 || (size_t)hl >= sizeof(w->head)) {
        free(body);
        free(w);
        conn_close(c);
        return -EINVAL;
    }
    uv_buf_t bufs[2] = {uv_buf_init(w->head, (unsigned)hl), uv_buf_init(body, (unsigned)len)};
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, len ? 2 : 1, on_write);
    if (rc != 0) {
        free(body);
        free(w);
        conn_close(c);
        return rc;
    }
    c->writes++;
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
    uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, on_refused_closed);
    s->stats.refused++;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct apm_http_server *s = server->data;
    if (status < 0) {
        apm_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    if (s->closing || s->stats.connections_open >= s->opt.max_connections) {
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
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        apm_http_reader_new(&s->opt, &c->reader) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_idle, s->opt.idle_timeout_ms, 0);
    conn_update(c);
}

/* Parses "HOST:PORT" or "[V6]:PORT". Returns 0 or APM_E_CONFIG. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon == listen)
        return APM_E_CONFIG;
    size_t hlen = (size_t)(colon - listen);
    const char *h = listen;
    if (h[0] == '[') {
        if (hlen < 3 || h[hlen - 1] != ']')
            return APM_E_CONFIG;
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        return APM_E_CONFIG;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535)
        return APM_E_CONFIG;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return APM_E_CONFIG;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct apm_http_server *s = h->data;
    s->listener_closed = true;
    server_maybe_finish(s);
}

int apm_http_server_new_opts(uv_loop_t *loop, const char *listen,
                             const struct apm_http_options *opt, apm_http_handler_fn handler,
                             void *ctx, struct apm_http_server **out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (listen == NULL || handler == NULL || parse_listen(listen, &ss) != 0)
        return APM_E_CONFIG;
    struct apm_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->loop = loop;
    s->handler = handler;
    s->ctx = ctx;
    options_fill(&s->opt, opt);
    int rc = uv_tcp_init(loop, &s->listener);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rc != 0) {
        /* The handle is open: it is freed by its close callback, with no user callback. */
        s->closing = true;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
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
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
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
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (struct apm_http_conn *c = s->conns; c != NULL; c = c->next) {
        if (c->busy)
            c->want_close = true; /* closes once answered */
        else
            conn_close(c);
    }
}
