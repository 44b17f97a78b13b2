/*
 * The HTTP server on a real loopback socket. The server runs its loop on a
 * thread of its own; the test talks to it with plain blocking sockets, which
 * makes byte-at-a-time and pipelined clients easy to write.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/base/error.h"
#include "server/net/http.h"

struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    struct apm_http_server *srv;
    int port;
    atomic_int handled;
    int closed;
    struct apm_http_stats stats; /* copied in the close callback */
};

struct deferred {
    uv_timer_t timer;
    struct apm_http_conn *conn;
    char path[64];
};

static char *echo_body(const struct apm_http_request *req)
{
    char *body = malloc(512 + req->body_len);
    if (body == NULL)
        return NULL;
    snprintf(body, 512 + req->body_len, "%s %s ?%s [%zu:%s]", req->method, req->path, req->query,
             req->body_len, req->body);
    return body;
}

static void on_deferred_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_deferred(uv_timer_t *t)
{
    struct deferred *d = t->data;
    char *body = strdup(d->path);
    apm_http_respond(d->conn, 200, "text/plain", body, strlen(body));
    uv_close((uv_handle_t *)&d->timer, on_deferred_closed);
}

/* Echoes the request; "/slow" answers 30 ms later from a timer. */
static void handler(void *ctx, struct apm_http_conn *conn, const struct apm_http_request *req)
{
    struct fixture *f = ctx;
    atomic_fetch_add(&f->handled, 1);
    if (strcmp(req->path, "/slow") == 0) {
        struct deferred *d = calloc(1, sizeof(*d));
        assert_non_null(d);
        d->conn = conn;
        snprintf(d->path, sizeof(d->path), "%s", req->path);
        uv_timer_init(&f->loop, &d->timer);
        d->timer.data = d;
        uv_timer_start(&d->timer, on_deferred, 30, 0);
        return;
    }
    if (strcmp(req->path, "/missing") == 0) {
        apm_http_respond_error(conn, 404, "no such thing");
        return;
    }
    char *body = echo_body(req);
    apm_http_respond(conn, 200, "text/plain", body, strlen(body));
}

static void on_server_closed(struct apm_http_server *s, void *ctx)
{
    struct fixture *f = ctx;
    apm_http_server_stats(s, &f->stats);
    f->closed++;
}

static void on_stop(uv_async_t *a)
{
    struct fixture *f = a->data;
    apm_http_server_close(f->srv, on_server_closed);
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void run_loop(void *arg)
{
    struct fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static struct fixture *start(const struct apm_http_options *opt)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(apm_http_server_new_opts(&f->loop, "127.0.0.1:0", opt, handler, f, &f->srv),
                     0);
    f->port = apm_http_server_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, on_stop), 0);
    f->stop.data = f;
    assert_int_equal(uv_thread_create(&f->thread, run_loop, f), 0);
    return f;
}

/* Stops the server and checks every handle is gone; the caller frees f. */
static void stop(struct fixture *f)
{
    uv_async_send(&f->stop);
    uv_thread_join(&f->thread);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* ---- a blocking client ---- */

struct client {
    int fd;
    char buf[65536];
    size_t len;
};

struct response {
    int status;
    bool close;
    char body[8192];
};

static void client_open(struct client *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void client_send(struct client *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void client_sends(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Reads more bytes; returns 0 at end of stream (or reset), else the count. */
static ssize_t client_fill(struct client *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0 && errno == ECONNRESET)
        return 0;
    assert_true(n >= 0); /* a timeout fails the test */
    c->len += (size_t)n;
    return n;
}

/* Reads one whole response; returns false when the stream ended first. */
static bool client_response(struct client *c, struct response *r)
{
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL) {
            size_t head = (size_t)(end - c->buf) + 4;
            char headers[4096];
            assert_true(head < sizeof(headers));
            memcpy(headers, c->buf, head);
            headers[head] = '\0';
            char *cl = strstr(headers, "Content-Length: ");
            assert_non_null(cl);
            size_t blen = strtoul(cl + 16, NULL, 10);
            if (c->len >= head + blen) {
                assert_int_equal(sscanf(headers, "HTTP/1.1 %d", &r->status), 1);
                r->close = strstr(headers, "Connection: close") != NULL;
                assert_true(blen < sizeof(r->body));
                memcpy(r->body, c->buf + head, blen);
                r->body[blen] = '\0';
                memmove(c->buf, c->buf + head + blen, c->len - head - blen);
                c->len -= head + blen;
                return true;
            }
        }
        if (client_fill(c) == 0)
            return false;
    }
}

/* True when the server closes the connection (after any pending bytes). */
static bool client_sees_eof(struct client *c)
{
    for (;;) {
        ssize_t n = client_fill(c);
        if (n == 0)
            return true;
        if (n < 0)
            return false;
    }
}

static void client_close(struct client *c)
{
    close(c->fd);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- tests over sockets ---- */

static void test_http_keep_alive_serves_several_requests(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    for (int i = 0; i < 3; i++) {
        client_sends(&c, "GET /a/b?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_true(client_response(&c, &r));
        assert_int_equal(r.status, 200);
        assert_false(r.close);
        assert_string_equal(r.body, "GET /a/b ?x=1 [0:]");
    }
    client_sends(&c, "GET /missing HTTP/1.1\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\":\"no such thing\"}");
    client_close(&c);
    stop(f);
    assert_int_equal(f->handled, 4);
    assert_int_equal(f->stats.requests, 4);
    assert_int_equal(f->stats.responses_4xx, 1);
    assert_int_equal(f->stats.bad_requests, 0);
    free(f);
}

static void test_http_pipelined_answers_keep_request_order(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_sends(&c, "GET /one HTTP/1.1\r\n\r\n"
                     "GET /slow HTTP/1.1\r\n\r\n"
                     "POST /three HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                     "GET /four HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_string_equal(r.body, "GET /one ? [0:]");
    assert_true(client_response(&c, &r));
    assert_string_equal(r.body, "/slow");
    assert_true(client_response(&c, &r));
    assert_string_equal(r.body, "POST /three ? [5:hello]");
    assert_true(client_response(&c, &r));
    assert_string_equal(r.body, "GET /four ? [0:]");
    assert_true(r.close);
    assert_true(client_sees_eof(&c));
    client_close(&c);
    stop(f);
    assert_int_equal(f->handled, 4);
    free(f);
}

static void test_http_request_sent_byte_at_a_time(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    const char *req = "POST /api/v1/x?q=%20 HTTP/1.1\r\nHost: localhost\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    for (size_t i = 0; req[i] != '\0'; i++) {
        client_send(&c, req + i, 1);
        if (i % 8 == 0)
            sleep_ms(1);
    }
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /api/v1/x ?q=%20 [5:abcde]");
    client_close(&c);
    stop(f);
    assert_int_equal(f->handled, 1);
    free(f);
}

/* Sends raw bytes on a new connection and expects one error answer, then EOF. */
static void expect_refusal(struct fixture *f, const char *data, size_t len, int status,
                           const char *error)
{
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_send(&c, data, len);
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, status);
    assert_true(r.close);
    assert_non_null(strstr(r.body, error));
    assert_true(client_sees_eof(&c));
    client_close(&c);
}

static void expect_served(struct fixture *f)
{
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_sends(&c, "GET /ok HTTP/1.1\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, 200);
    client_close(&c);
}

static void test_http_bad_input_is_refused_and_server_stays_up(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
    expect_refusal(f, garbage, sizeof(garbage) - 1, 400, "{\"error\":\"bad request");
    expect_served(f);

    char *big = malloc(20000);
    assert_non_null(big);
    int n = snprintf(big, 20000, "GET / HTTP/1.1\r\nX-Filler: ");
    memset(big + n, 'a', 17000);
    memcpy(big + n + 17000, "\r\n\r\n", 4);
    expect_refusal(f, big, (size_t)n + 17004, 431, "request header too large");
    free(big);
    expect_served(f);

    const char *body = "POST /x HTTP/1.1\r\nContent-Length: 70000\r\n\r\n";
    expect_refusal(f, body, strlen(body), 413, "request body too large");
    const char *upgrade = "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    expect_refusal(f, upgrade, strlen(upgrade), 400, "upgrade");
    const char *abs = "GET * HTTP/1.1\r\n\r\n";
    expect_refusal(f, abs, strlen(abs), 400, "bad request target");
    expect_served(f);
    stop(f);
    assert_int_equal(f->stats.bad_requests, 5);
    assert_int_equal(f->handled, 3);
    assert_int_equal(f->stats.connections_open, 0);
    free(f);
}

static void test_http_request_cap_closes_connection(void **state)
{
    (void)state;
    struct apm_http_options opt = {.max_requests_per_conn = 2};
    struct fixture *f = start(&opt);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_sends(&c, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_false(r.close);
    assert_true(client_response(&c, &r));
    assert_true(r.close);
    assert_string_equal(r.body, "GET /2 ? [0:]");
    assert_false(client_response(&c, &r));
    client_close(&c);
    stop(f);
    assert_int_equal(f->handled, 2);
    free(f);
}

static void test_http_http10_without_keep_alive_closes(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_sends(&c, "GET /old HTTP/1.0\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_true(r.close);
    assert_true(client_sees_eof(&c));
    client_close(&c);
    stop(f);
    free(f);
}

static void test_http_idle_connection_times_out(void **state)
{
    (void)state;
    struct apm_http_options opt = {.idle_timeout_ms = 100};
    struct fixture *f = start(&opt);
    struct client c;
    client_open(&c, f->port);
    client_sends(&c, "GET /never-finished HTTP/1.1\r\n"); /* a slow client */
    assert_true(client_sees_eof(&c));
    client_close(&c);
    stop(f);
    assert_int_equal(f->stats.timeouts, 1);
    assert_int_equal(f->handled, 0);
    free(f);
}

/*
 * At the cap a newcomer closes the connection idle the longest; only when
 * every connection is busy answering is the newcomer refused.
 */
static void test_http_connection_cap_evicts_idle_then_refuses(void **state)
{
    (void)state;
    struct apm_http_options opt = {.max_connections = 1};
    struct fixture *f = start(&opt);
    struct client a, b, c;
    struct response r;
    client_open(&a, f->port);
    client_sends(&a, "GET /slow HTTP/1.1\r\n\r\n");
    sleep_ms(5); /* a's request waits for its answer: a is busy */
    client_open(&b, f->port);
    assert_true(client_sees_eof(&b));
    client_close(&b);
    assert_true(client_response(&a, &r)); /* a is idle now, kept alive */
    assert_string_equal(r.body, "/slow");
    client_open(&c, f->port);
    client_sends(&c, "GET /newcomer HTTP/1.1\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, 200);
    assert_true(client_sees_eof(&a)); /* closed to admit c */
    client_close(&a);
    client_close(&c);
    stop(f);
    assert_int_equal(f->stats.refused, 1);
    assert_int_equal(f->stats.evicted, 1);
    assert_int_equal(f->handled, 2);
    free(f);
}

static void test_http_close_waits_for_deferred_answer(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_sends(&c, "GET /slow HTTP/1.1\r\n\r\n");
    sleep_ms(5);
    uv_async_send(&f->stop); /* closes the server while /slow is waiting */
    assert_true(client_response(&c, &r));
    assert_string_equal(r.body, "/slow");
    assert_true(r.close);
    assert_true(client_sees_eof(&c));
    uv_thread_join(&f->thread);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    assert_int_equal(f->handled, 1);
    client_close(&c);
    free(f);
}

static void test_http_bad_listen_address_fails(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct apm_http_server *s = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(apm_http_server_new(&loop, "nohost", handler, NULL, &s), APM_E_CONFIG);
    assert_int_equal(apm_http_server_new(&loop, "127.0.0.1:99999", handler, NULL, &s),
                     APM_E_CONFIG);
    assert_int_equal(apm_http_server_new(&loop, "not-an-ip:80", handler, NULL, &s), APM_E_CONFIG);
    assert_null(s);
    /* A port in use fails with the system's error and leaves nothing open. */
    struct apm_http_server *first = NULL;
    assert_int_equal(apm_http_server_new(&loop, "[::1]:0", handler, NULL, &first), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "[::1]:%d", apm_http_server_port(first));
    assert_int_equal(apm_http_server_new(&loop, addr, handler, NULL, &s), UV_EADDRINUSE);
    apm_http_server_close(first, NULL);
    apm_http_server_close(NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- the reader and query helpers, without sockets ---- */

static void test_http_reader_splits_pipelined_stream(void **state)
{
    (void)state;
    struct apm_http_reader *r = NULL;
    assert_int_equal(apm_http_reader_new(NULL, &r), 0);
    const char *in = "GET /a?b=c HTTP/1.1\r\n\r\nDELETE /d HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy";
    size_t len = strlen(in), used = 0;
    assert_int_equal(apm_http_reader_feed(r, in, len, &used), 1);
    const struct apm_http_request *req = apm_http_reader_request(r);
    assert_string_equal(req->method, "GET");
    assert_string_equal(req->path, "/a");
    assert_string_equal(req->query, "b=c");
    assert_true(req->keep_alive);
    apm_http_reader_next(r);
    assert_null(apm_http_reader_request(r));
    size_t used2 = 0;
    assert_int_equal(apm_http_reader_feed(r, in + used, len - used, &used2), 1);
    assert_int_equal(used + used2, len);
    req = apm_http_reader_request(r);
    assert_string_equal(req->method, "DELETE");
    assert_int_equal(req->body_len, 2);
    assert_string_equal(req->body, "xy");
    apm_http_reader_next(r);
    assert_int_equal(apm_http_reader_feed(r, "GET /partial", 12, &used), 0);
    assert_int_equal(used, 12);
    assert_int_equal(apm_http_reader_error(r, NULL), 0);
    apm_http_reader_free(r);
    apm_http_reader_free(NULL);
}

static void test_http_reader_keeps_the_authorization_header(void **state)
{
    (void)state;
    struct apm_http_reader *r = NULL;
    assert_int_equal(apm_http_reader_new(NULL, &r), 0);
    /* Split inside the header's name and value, among look-alike names; case-insensitive. */
    const char *in = "POST /x HTTP/1.1\r\nAuthorization-Extra: no\r\nauthORIZATION: Bearer "
                     "abc123\r\nAuthorizatio: no\r\nContent-Length: 0\r\n\r\n"
                     "GET /y HTTP/1.1\r\nX-Authorization: Bearer zzz\r\n\r\n";
    size_t len = strlen(in), used = 0, off = 0;
    int rc = 0;
    for (size_t step = 0; off < len && rc == 0; step++) {
        size_t n = step % 3 + 1 < len - off ? step % 3 + 1 : len - off;
        rc = apm_http_reader_feed(r, in + off, n, &used);
        off += used;
    }
    assert_int_equal(rc, 1);
    assert_string_equal(apm_http_reader_request(r)->authorization, "Bearer abc123");
    apm_http_reader_next(r);
    assert_int_equal(apm_http_reader_feed(r, in + off, len - off, &used), 1);
    assert_string_equal(apm_http_reader_request(r)->authorization, "");
    apm_http_reader_free(r);
}

static void test_http_reader_keeps_if_none_match_and_cuts_it(void **state)
{
    (void)state;
    struct apm_http_reader *r = NULL;
    assert_int_equal(apm_http_reader_new(NULL, &r), 0);
    char in[1024];
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(in, sizeof(in),
             "GET / HTTP/1.1\r\nIf-None-Match: \"old\"\r\nif-none-match: \"0123\", W/\"x\"\r\n\r\n"
             "GET / HTTP/1.1\r\nIf-None-Match: %s\r\n\r\nGET / HTTP/1.1\r\n\r\n",
             big);
    size_t len = strlen(in), used = 0, off = 0;
    assert_int_equal(apm_http_reader_feed(r, in, len, &used), 1);
    off += used;
    /* A repeated header: the last one counts, as for Authorization. */
    assert_string_equal(apm_http_reader_request(r)->if_none_match, "\"0123\", W/\"x\"");
    apm_http_reader_next(r);
    assert_int_equal(apm_http_reader_feed(r, in + off, len - off, &used), 1);
    off += used;
    assert_int_equal(strlen(apm_http_reader_request(r)->if_none_match), 128);
    apm_http_reader_next(r);
    assert_int_equal(apm_http_reader_feed(r, in + off, len - off, &used), 1);
    assert_string_equal(apm_http_reader_request(r)->if_none_match, "");
    apm_http_reader_free(r);
}

static void test_http_reader_caps_are_checked(void **state)
{
    (void)state;
    struct apm_http_options opt = {.max_header_bytes = 64, .max_body_bytes = 4};
    struct apm_http_reader *r = NULL;
    const char *msg = NULL;
    size_t used = 0;
    assert_int_equal(apm_http_reader_new(&opt, &r), 0);
    const char *chunked =
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n";
    assert_int_equal(apm_http_reader_feed(r, chunked, strlen(chunked), &used), APM_E_LIMIT);
    assert_int_equal(apm_http_reader_error(r, &msg), 413);
    assert_string_equal(msg, "request body too large");
    /* A failed reader stays failed. */
    assert_int_equal(apm_http_reader_feed(r, "GET / HTTP/1.1\r\n\r\n", 18, &used), APM_E_LIMIT);
    apm_http_reader_free(r);

    assert_int_equal(apm_http_reader_new(&opt, &r), 0);
    char url[128] = "GET /";
    memset(url + 5, 'u', 80);
    assert_int_equal(apm_http_reader_feed(r, url, strlen(url), &used), APM_E_LIMIT);
    assert_int_equal(apm_http_reader_error(r, &msg), 431);
    apm_http_reader_free(r);

    assert_int_equal(apm_http_reader_new(NULL, &r), 0);
    assert_int_equal(apm_http_reader_feed(r, "BREW /pot HTTP/1.1\r\n\r\n", 22, &used), APM_E_PARSE);
    assert_int_equal(apm_http_reader_error(r, &msg), 400);
    assert_non_null(strstr(msg, "bad request"));
    apm_http_reader_free(r);
}

/* Only HTTP/1.x is answered: a later version gets 505, a request line without one 400. */
static void test_http_reader_checks_the_version(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET /api/v1/status HTTP/9.9\r\n\r\n", 505}, {"GET /api/v1/status HTTP/2.0\r\n\r\n", 505},
        {"GET /api/v1/status\r\n\r\n", 400},          {"GET /api/v1/status HTTP/1.0\r\n\r\n", 0},
        {"GET /api/v1/status HTTP/1.1\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct apm_http_reader *r = NULL;
        const char *msg = NULL;
        size_t used = 0;
        assert_int_equal(apm_http_reader_new(NULL, &r), 0);
        int rc = apm_http_reader_feed(r, cases[i].req, strlen(cases[i].req), &used);
        if (cases[i].status == 0) {
            assert_int_equal(rc, 1);
        } else {
            assert_int_equal(rc, APM_E_PARSE);
            assert_int_equal(apm_http_reader_error(r, &msg), cases[i].status);
        }
        apm_http_reader_free(r);
    }
}

/* The server answers them so, with the status text and a close. */
static void test_http_answers_505_to_http_9_9(void **state)
{
    (void)state;
    struct fixture *f = start(NULL);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_sends(&c, "GET /x HTTP/9.9\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, 505);
    assert_true(client_sees_eof(&c));
    client_close(&c);
    client_open(&c, f->port);
    client_sends(&c, "GET /x\r\n\r\n");
    assert_true(client_response(&c, &r));
    assert_int_equal(r.status, 400);
    client_close(&c);
    stop(f);
    assert_int_equal(f->handled, 0);
    assert_int_equal(f->stats.bad_requests, 2);
    free(f);
}

static void test_http_query_get_decodes_values(void **state)
{
    (void)state;
    char v[16];
    const char *q = "host=web%2D1&process=my+app&empty=&flag&pid=42";
    assert_int_equal(apm_http_query_get(q, "host", v, sizeof(v)), 0);
    assert_string_equal(v, "web-1");
    assert_int_equal(apm_http_query_get(q, "process", v, sizeof(v)), 0);
    assert_string_equal(v, "my app");
    assert_int_equal(apm_http_query_get(q, "empty", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    assert_int_equal(apm_http_query_get(q, "flag", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    assert_int_equal(apm_http_query_get(q, "pi", v, sizeof(v)), APM_E_NOTFOUND);
    assert_int_equal(apm_http_query_get("a=%zz", "a", v, sizeof(v)), APM_E_PARSE);
    assert_int_equal(apm_http_query_get("a=%2", "a", v, sizeof(v)), APM_E_PARSE);
    assert_int_equal(apm_http_query_get("a=%00", "a", v, sizeof(v)), APM_E_PARSE);
    assert_int_equal(apm_http_query_get("a=0123456789abcdef", "a", v, sizeof(v)), APM_E_LIMIT);
    assert_int_equal(apm_http_decode("a+b%2Fc", 7, false, v, sizeof(v)), 0);
    assert_string_equal(v, "a+b/c");
    assert_int_equal(apm_http_query_get("", "a", v, sizeof(v)), APM_E_NOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_keep_alive_serves_several_requests),
        cmocka_unit_test(test_http_pipelined_answers_keep_request_order),
        cmocka_unit_test(test_http_request_sent_byte_at_a_time),
        cmocka_unit_test(test_http_bad_input_is_refused_and_server_stays_up),
        cmocka_unit_test(test_http_request_cap_closes_connection),
        cmocka_unit_test(test_http_http10_without_keep_alive_closes),
        cmocka_unit_test(test_http_idle_connection_times_out),
        cmocka_unit_test(test_http_connection_cap_evicts_idle_then_refuses),
        cmocka_unit_test(test_http_close_waits_for_deferred_answer),
        cmocka_unit_test(test_http_bad_listen_address_fails),
        cmocka_unit_test(test_http_reader_splits_pipelined_stream),
        cmocka_unit_test(test_http_reader_keeps_the_authorization_header),
        cmocka_unit_test(test_http_reader_keeps_if_none_match_and_cuts_it),
        cmocka_unit_test(test_http_reader_caps_are_checked),
        cmocka_unit_test(test_http_reader_checks_the_version),
        cmocka_unit_test(test_http_answers_505_to_http_9_9),
        cmocka_unit_test(test_http_query_get_decodes_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
