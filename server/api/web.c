#include "server/api/web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The page's policy: its own scripts, styles and API only. No inline script
 * or style element can run, so a string that slipped into the markup could
 * not act; uPlot sets element styles through the DOM, which style-src does
 * not restrict. Images only from data: (uPlot draws on a canvas).
 */
#define WEB_CSP                                                                                    \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "              \
    "frame-ancestors 'none'\r\n"

const struct apm_web_asset *apm_web_find(const char *path)
{
    if (strcmp(path, "/index.html") == 0)
        path = "/";
    for (size_t i = 0; i < apm_web_nassets; i++) {
        if (strcmp(apm_web_assets[i].path, path) == 0)
            return &apm_web_assets[i];
    }
    return NULL;
}

bool apm_web_etag_matches(const char *if_none_match, const char *etag)
{
    if (if_none_match == NULL)
        return false;
    size_t elen = strlen(etag);
    const char *p = if_none_match;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 1 && *p == '*')
            return true;
        /* A weak validator matches too: If-None-Match compares weakly (RFC 9110, 13.1.2). */
        const char *tag = (n > 2 && p[0] == 'W' && p[1] == '/') ? p + 2 : p;
        size_t tlen = n - (size_t)(tag - p);
        if (tlen == elen && memcmp(tag, etag, elen) == 0)
            return true;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

bool apm_web_serve(struct apm_http_conn *conn, const struct apm_http_request *req)
{
    const struct apm_web_asset *a = apm_web_find(req->path);
    if (a == NULL)
        return false;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        char *msg = strdup("{\"error\":\"method not allowed on the web page: use GET\"}\n");
        apm_http_respond_headers(conn, 405, "application/json", "Allow: GET, HEAD\r\n", msg,
                                 msg ? strlen(msg) : 0);
        return true;
    }
    char headers[APM_HTTP_MAX_EXTRA_HEADERS];
    /*
     * no-cache: the browser keeps the file but asks each time, and gets a
     * 304 while the collector runs the same build; a new build's page is
     * never mixed with an old one's script.
     */
    snprintf(headers, sizeof(headers),
             "Cache-Control: no-cache\r\nETag: %s\r\nReferrer-Policy: no-referrer\r\n" WEB_CSP,
             a->etag);
    if (apm_web_etag_matches(req->if_none_match, a->etag)) {
        apm_http_respond_headers(conn, 304, a->content_type, headers, NULL, 0);
        return true;
    }
    /* HEAD gets the same head (Content-Length included); the server drops the body. */
    char *body = malloc(a->len);
    if (body == NULL) {
        apm_http_respond_error(conn, 500, "out of memory");
        return true;
    }
    memcpy(body, a->data, a->len);
    apm_http_respond_headers(conn, 200, a->content_type, headers, body, a->len);
    return true;
}
