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
 * refuses (400, 413, 431).
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

/* Defaults of struct apm_http_options, used for every field left 0. */
#define APM_HTTP_MAX_HEADER_BYTES (16u * 1024u)
#define APM_HTTP_MAX_BODY_BYTES (64u * 1024u)
#define APM_HTTP_MAX_CONNECTIONS 256u
#define APM_HTTP_MAX_REQUESTS_PER_CONNECTION 1000u
#define APM_HTTP_IDLE_TIMEOUT_MS 30000u

struct apm_http_options {
    size_t max_header_bytes;        /* request line + headers; above it: 431 */
    size_t max_body_bytes;          /* declared or received body; above it: 413 */
    unsigned max_connections;       /* open connections; more are accepted and closed */
    unsigned max_requests_per_conn; /* the last answer says "Connection: close" */
    unsigned idle_timeout_ms;       /* time allowed to send the next whole request */
};

/* One parsed request. Strings are NUL-terminated and owned by the reader. */
struct apm_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* raw path, still percent-encoded, starts with '/' */
    const char *query;  /* raw query after '?', "" when there is none */
    const char *body;   /* body_len bytes plus a NUL; "" when there is none */
    size_t body_len;
    bool keep_alive; /* the client allows another request on this connection */
};

/* ---- request reader (the decoder) ---- */

struct apm_http_reader;

/*
 * Creates a reader with the caps of opt (borrowed; NULL or 0 fields mean the
 * defaults above). Returns 0 and *out owned (free with apm_http_reader_free)
 * or -ENOMEM. Any thread.
 */
int apm_http_reader_new(const struct apm_http_options *opt, struct apm_http_reader **out);

/* Frees the reader and its current request. Accepts NULL. */
void apm_http_reader_free(struct apm_http_reader *r);

/*
 * Feeds len bytes (borrowed) and stops after at most one complete request.
 * Sets *consumed to the bytes used; the caller feeds the rest again after
 * apm_http_reader_next(). Returns 1 when a request is complete (see
 * apm_http_reader_request), 0 when every byte was used and more are needed,
 * or a negative code (APM_E_PARSE, APM_E_LIMIT, -ENOMEM) after which the
 * reader is dead: apm_http_reader_error() gives the status to answer with
 * and every later feed fails the same way.
 */
int apm_http_reader_feed(struct apm_http_reader *r, const char *data, size_t len, size_t *consumed);

/*
 * The request completed by the last feed that returned 1, or NULL. Borrowed:
 * valid until apm_http_reader_next() or apm_http_reader_free().
 */
const struct apm_http_request *apm_http_reader_request(const struct apm_http_reader *r);

/* Forgets the completed request so that the next feed starts a new one. */
void apm_http_reader_next(struct apm_http_reader *r);

/*
 * After a failed feed: returns the HTTP status to answer (400, 413, 431, or
 * 500 when out of memory) and sets *message (may be NULL) to a reason a
 * person can read, borrowed from the reader until it is freed. Returns 0
 * while the reader has not failed.
 */
int apm_http_reader_error(const struct apm_http_reader *r, const char **message);

/* ---- query strings ---- */

/*
 * Finds the first parameter called name in a raw query string ("a=1&b=x%20y")
 * and copies its percent-decoded value into out (size bytes, NUL-terminated;
 * '+' decodes to a space). Returns 0, APM_E_NOTFOUND when absent, APM_E_LIMIT
 * when the value does not fit, or APM_E_PARSE for a bad %-escape or a decoded
 * NUL. Borrows everything. Any thread.
 */
int apm_http_query_get(const char *query, const char *name, char *out, size_t size);

/*
 * Percent-decodes len bytes of in into out (size bytes, NUL-terminated).
 * plus_is_space selects query-string rules. Returns 0, APM_E_LIMIT or
 * APM_E_PARSE (as apm_http_query_get). Any thread.
 */
int apm_http_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t size);

/*
 * Calls fn for each parameter of a raw query string with the raw (still
 * encoded) name and its length; stops and returns fn's value when it is
 * nonzero, else returns 0. Lets a caller refuse parameters it does not know.
 */
int apm_http_query_foreach(const char *query, int (*fn)(void *ctx, const char *name, size_t len),
                           void *ctx);

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
    uint64_t refused;          /* closed at once because of max_connections */
    uint64_t requests;         /* complete requests handed to the handler */
    uint64_t bad_requests;     /* refused by the reader: 400, 413, 431 */
    uint64_t timeouts;         /* connections closed by the idle timeout */
    uint64_t responses_4xx;    /* every 4xx answer, the handler's included */
    uint64_t responses_5xx;
};

/*
 * Starts listening on listen ("HOST:PORT", "[IPv6]:PORT"; port 0 picks a
 * free port, see apm_http_server_port) with the default options. handler is
 * called with ctx (borrowed; must outlive the server). Returns 0 and *out
 * owned (ends with apm_http_server_close), APM_E_CONFIG for a malformed
 * address, or a negative libuv/errno code (-EADDRINUSE, ...); on failure
 * nothing is left open. Loop thread.
 */
int apm_http_server_new(uv_loop_t *loop, const char *listen, apm_http_handler_fn handler, void *ctx,
                        struct apm_http_server **out);

/* As apm_http_server_new, with options (borrowed; copied; NULL = defaults). */
int apm_http_server_new_opts(uv_loop_t *loop, const char *listen,
                             const struct apm_http_options *opt, apm_http_handler_fn handler,
                             void *ctx, struct apm_http_server **out);

/* The port actually bound (useful after port 0), or 0 on error. Loop thread. */
int apm_http_server_port(const struct apm_http_server *s);

/* Copies the counters. Loop thread. */
void apm_http_server_stats(const struct apm_http_server *s, struct apm_http_stats *out);

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

/*
 * Answers with {"error": message} (message borrowed) and the given status.
 * Returns as apm_http_respond.
 */
int apm_http_respond_error(struct apm_http_conn *conn, int status, const char *message);

/* The reason phrase of a status code ("Not Found"), "Unknown" for others. */
const char *apm_http_status_text(int status);

#endif
