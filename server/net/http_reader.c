#include "server/net/http_reader.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/error.h"

/* ------------------------------------------------------------------ */
/* Request reader                                                      */
/* ------------------------------------------------------------------ */

#define AUTH_NAME_MAX 16
#define AUTH_VALUE_MAX 1024
/* An If-None-Match longer than this is cut there (our ETags are 18 bytes). */
#define ETAG_VALUE_MAX 128

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
    /* The header being read: its name (up to AUTH_NAME_MAX), whether it is Authorization. */
    char field[AUTH_NAME_MAX + 1];
    size_t field_len;
    bool in_value; /* the last bytes were a value: a field's bytes start a new header */
    bool is_auth;
    char auth[AUTH_VALUE_MAX + 1];
    size_t auth_len;
    bool is_etag; /* the header being read is If-None-Match */
    char etag[ETAG_VALUE_MAX + 1];
    size_t etag_len;
    bool complete;
    int status; /* nonzero once the reader has failed */
    const char *message;
    char message_buf[96];
};

void apm_http_options_fill(struct apm_http_options *dst, const struct apm_http_options *src)
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
    r->field_len = 0;
    r->in_value = false;
    r->is_auth = false;
    r->is_etag = false;
    r->auth_len = 0;
    r->etag_len = 0;
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

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct apm_http_reader *r = p->data;
    if (r->in_value) {
        r->in_value = false;
        r->field_len = 0;
    }
    for (size_t i = 0; i < n && r->field_len <= AUTH_NAME_MAX; i++) {
        if (r->field_len < AUTH_NAME_MAX)
            r->field[r->field_len] = at[i];
        r->field_len++;
    }
    return count_header(r, n);
}

/* Appends what fits of n bytes to a kept header value of at most max bytes. */
static void keep_value(char *buf, size_t *len, size_t max, const char *at, size_t n)
{
    size_t room = max - *len;
    size_t take = n < room ? n : room;
    memcpy(buf + *len, at, take);
    *len += take;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct apm_http_reader *r = p->data;
    if (!r->in_value) {
        r->in_value = true;
        r->is_auth = r->field_len == 13 && strncasecmp(r->field, "authorization", 13) == 0;
        if (r->is_auth)
            r->auth_len = 0; /* a repeated header: the last one counts */
        r->is_etag = r->field_len == 13 && strncasecmp(r->field, "if-none-match", 13) == 0;
        if (r->is_etag)
            r->etag_len = 0;
    }
    if (r->is_auth)
        keep_value(r->auth, &r->auth_len, AUTH_VALUE_MAX, at, n);
    if (r->is_etag)
        keep_value(r->etag, &r->etag_len, ETAG_VALUE_MAX, at, n);
    return count_header(r, n);
}

static int on_headers_complete(http_parser *p)
{
    struct apm_http_reader *r = p->data;
    /* http_parser reads a request line without a version as HTTP/0.9. */
    if (p->http_major == 0)
        return fail(r, 400, "request line without an HTTP version");
    if (p->http_major != 1)
        return fail(r, 505, "HTTP version not supported (HTTP/1.x only)");
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
    r->auth[r->auth_len] = '\0';
    r->req.authorization = r->auth;
    r->etag[r->etag_len] = '\0';
    r->req.if_none_match = r->etag;
    r->complete = true;
    /* Stop after this request: the caller handles it before reading on. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings reader_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
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
    apm_http_options_fill(&o, opt);
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
