#ifndef APM_HTTP_H
#define APM_HTTP_H

/*
 * A small HTTP/1.1 server on libuv, for the collector's JSON API.
 *
 * Two layers. The request reader (apm_http_reader_*) is the decoder: it turns
 * a byte stream into requests with http_parser and enforces the caps (header
 * bytes, body bytes) before it allocates; it knows nothing of sockets, so the
 * fuzzer drives it directly. The server (apm_http_server_*) owns the listening
 * socket and the connections: keep-alive, pipelining (one request handled at
 * a time per connection, in order), a request cap per connection, an idle
 * timeout, a connection cap, and JSON error answers for what the reader
 * refuses (400, 413, 431, 505).
 *
 * A handler answers each request exactly once with apm_http_respond*(),
 * either before it returns or later on the loop thread (work done on a
 * worker). While a request waits for its answer, the connection reads no
 * further requests.
 *
 * Threads: everything here runs on the loop thread of the loop given to
 * apm_http_server_new(); the reader is a plain object usable on any thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/counters.h"
#include "server/net/http_reader.h"

/* ---- server ---- */

struct apm_http_server;
struct apm_http_conn; /* the connection a request arrived on; answer through it */

/*
 * Called on the loop thread for each complete request. req is borrowed and
 * valid until the request is answered; conn must be answered exactly once.
 */
typedef void (*apm_http_handler_fn)(void *ctx, struct apm_http_conn *conn,
                                    const struct apm_http_request *req);

/* Called once when the server has closed every handle, just before it frees itself. */
typedef void (*apm_http_close_cb)(struct apm_http_server *s, void *ctx);

struct apm_http_stats {
    uint64_t connections;      /* accepted and served */
    uint64_t connections_open; /* open now */
    uint64_t refused;          /* closed at once because of max_connections, none idle */
    uint64_t evicted;          /* idle ones closed at max_connections to admit a newcomer */
    uint64_t requests;         /* complete requests handed to the handler */
    uint64_t bad_requests;     /* refused by the reader: 400, 413, 431, 505 */
    uint64_t timeouts;         /* connections closed by the idle timeout */
    uint64_t responses_4xx;    /* every 4xx answer, the handler's included */
    uint64_t responses_5xx;
    uint64_t tls_failures;      /* TLS handshakes or records that failed */
    uint64_t plaintext_refused; /* plain HTTP closed under tls-required */
};

/*
 * Starts listening on listen ("HOST:PORT", "[IPv6]:PORT"; port 0 picks a
 * free port, see apm_http_server_port) with the default options. handler is
 * called with ctx (borrowed; must outlive the server). Returns 0 and *out
 * owned (ends with apm_http_server_close), APM_E_CONFIG for a malformed
 * address, or a negative libuv/errno code (-EADDRINUSE, ...) after logging
 * one line (server/net/listener.h); on failure the caller holds nothing, and
 * the loop must run once more to release the handle. Loop thread.
 */
int apm_http_server_new(uv_loop_t *loop, const char *listen, apm_http_handler_fn handler, void *ctx,
                        struct apm_http_server **out);

/* As apm_http_server_new, with options (borrowed; copied; NULL = defaults). */
int apm_http_server_new_opts(uv_loop_t *loop, const char *listen,
                             const struct apm_http_options *opt, apm_http_handler_fn handler,
                             void *ctx, struct apm_http_server **out);

/* The port actually bound (useful after port 0), or a negative code. Loop thread. */
int apm_http_server_port(const struct apm_http_server *s);

/* Copies the counters. Loop thread. */
void apm_http_server_stats(const struct apm_http_server *s, struct apm_http_stats *out);

/* Adds the "http" counters to r (registered only while the server is open). Loop thread. */
int apm_http_server_add_counters(struct apm_http_server *s, struct apm_counters *r);

/*
 * Stops listening and closes every connection (one waiting for a deferred
 * answer closes once answered), then calls cb (may be NULL) with the ctx
 * given at creation and frees the server. Accepts NULL. Loop thread; the
 * server must not be used after this call.
 */
void apm_http_server_close(struct apm_http_server *s, apm_http_close_cb cb);

/*
 * Answers the current request of conn: status, a content type (borrowed,
 * e.g. "application/json") and body. Takes ownership of body (malloc'd,
 * may be NULL when len is 0) in every case, also on failure. Returns 0, or
 * -ENOMEM / APM_E_CLOSED (the client left; nothing is sent) and the
 * connection is closed. Loop thread; exactly once per handled request.
 */
int apm_http_respond(struct apm_http_conn *conn, int status, const char *content_type, char *body,
                     size_t len);

/* Most bytes of extra header lines apm_http_respond_headers() takes. */
#define APM_HTTP_MAX_EXTRA_HEADERS 640u

/*
 * As apm_http_respond, with more header lines (borrowed; NULL for none):
 * each ends with "\r\n", at most APM_HTTP_MAX_EXTRA_HEADERS bytes in all,
 * e.g. "Allow: GET, HEAD\r\n". Returns -EINVAL (body freed, nothing sent,
 * the request still waits) for headers that do not fit or hold an empty line.
 * Every answer says "X-Content-Type-Options: nosniff", and
 * "Cache-Control: no-store" unless headers give a Cache-Control of their own
 * (the web page's files: server/api/web.c).
 *
 * A HEAD request is answered with the head alone: the Content-Length of
 * the body that GET would get, and no body (RFC 9110, 9.3.2).
 */
int apm_http_respond_headers(struct apm_http_conn *conn, int status, const char *content_type,
                             const char *headers, char *body, size_t len);

/*
 * Answers with {"error": message} (message borrowed) and the given status.
 * Returns as apm_http_respond.
 */
int apm_http_respond_error(struct apm_http_conn *conn, int status, const char *message);

/* The reason phrase of a status code ("Not Found"), "Unknown" for others. */
const char *apm_http_status_text(int status);

#endif
