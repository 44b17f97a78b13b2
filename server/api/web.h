#ifndef APM_WEB_H
#define APM_WEB_H

/*
 * The web page at "/" (docs/web.md): a few static files (web/ in the source
 * tree, uPlot from npm) embedded in the collector at build time by
 * web/embed.cmake, so the page needs no file on disk and always matches the
 * API it reads. The page reads only the JSON API; this module only serves
 * its files, with an ETag (revalidated with If-None-Match), a
 * Content-Security-Policy that allows no inline script and no other origin,
 * and nosniff (server/net/http.c sends that on every answer).
 *
 * Threads: the loop thread.
 */
#include <stdbool.h>
#include <stddef.h>

#include "server/net/http.h"

/* One embedded file. Everything is static data of the generated file. */
struct apm_web_asset {
    const char *path; /* URL path: "/", "/app.js", ... */
    const char *content_type;
    const unsigned char *data;
    size_t len;
    const char *etag; /* quoted, as sent: "\"0123456789abcdef\"" */
};

/* The generated table (web_assets.c in the build tree). */
extern const struct apm_web_asset apm_web_assets[];
extern const size_t apm_web_nassets;

/* The asset served for path ("/index.html" is "/"), or NULL. Borrowed. */
const struct apm_web_asset *apm_web_find(const char *path);

/*
 * True when if_none_match (a header value, may be NULL) names etag, so the
 * answer is 304: "*", or a comma-separated list holding it (weak or not).
 */
bool apm_web_etag_matches(const char *if_none_match, const char *etag);

/*
 * Answers req on conn when its path is one of the page's files: GET with
 * the file (or 304), HEAD with the same head and no body, another method
 * with 405 and Allow.
 * Returns true when it answered, false (nothing sent) for any other path,
 * which the caller then routes. Loop thread.
 */
bool apm_web_serve(struct apm_http_conn *conn, const struct apm_http_request *req);

#endif
