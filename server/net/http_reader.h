#ifndef APM_HTTP_READER_H
#define APM_HTTP_READER_H

/*
 * The HTTP request decoder: turns a byte stream into requests with
 * http_parser and enforces the caps (header bytes, body bytes) before it
 * allocates. It knows nothing of sockets, so the fuzzer drives it directly;
 * server/net/http.c feeds it from each connection. Also the query-string helpers
 * the API uses. Any thread: a reader is a plain object.
 */
#include <stdbool.h>
#include <stddef.h>

struct apm_tls_ctx;
#include <stdint.h>

/* Defaults of struct apm_http_options, used for every field left 0. */
#define APM_HTTP_MAX_HEADER_BYTES (16u * 1024u)
#define APM_HTTP_MAX_BODY_BYTES (64u * 1024u)
#define APM_HTTP_MAX_CONNECTIONS 256u
#define APM_HTTP_MAX_REQUESTS_PER_CONNECTION 1000u
#define APM_HTTP_IDLE_TIMEOUT_MS 10000u

struct apm_http_options {
    size_t max_header_bytes;        /* request line + headers; above it: 431 */
    size_t max_body_bytes;          /* declared or received body; above it: 413 */
    unsigned max_connections;       /* open connections; at the cap the longest idle one is
                                       closed for a newcomer, or, none idle, the newcomer */
    unsigned max_requests_per_conn; /* the last answer says "Connection: close" */
    unsigned idle_timeout_ms;       /* time allowed to send the next whole request */
    struct apm_tls_ctx *tls;        /* borrowed; NULL = plain HTTP only (server only) */
    bool tls_required;              /* with tls: plain HTTP connections are closed */
};

/* One parsed request. Strings are NUL-terminated and owned by the reader. */
struct apm_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* raw path, still percent-encoded, starts with '/' */
    const char *query;  /* raw query after '?', "" when there is none */
    const char *body;   /* body_len bytes plus a NUL; "" when there is none */
    size_t body_len;
    bool keep_alive; /* the client allows another request on this connection */
    /* The Authorization header's value ("" when absent); longer than 1 KiB: cut there. */
    const char *authorization;
    /* The If-None-Match header's value ("" when absent); longer than 128 bytes: cut there. */
    const char *if_none_match;
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
 * After a failed feed: returns the HTTP status to answer (400, 413, 431, 505, or
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

/* Fills every 0 field of dst from src (NULL: none) and then from the defaults above. */
void apm_http_options_fill(struct apm_http_options *dst, const struct apm_http_options *src);

#endif
