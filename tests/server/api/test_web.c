/* The web page's files: lookup, ETag matching, and the answers over a real loopback server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/api/web.h"
#include "server/net/http.h"

static void test_web_find_serves_the_page_and_its_files(void **state)
{
    (void)state;
    const struct apm_web_asset *page = apm_web_find("/");
    assert_non_null(page);
    assert_ptr_equal(apm_web_find("/index.html"), page);
    assert_string_equal(page->content_type, "text/html; charset=utf-8");
    assert_true(page->len > 100 && strncmp((const char *)page->data, "<!doctype html>", 15) == 0);
    assert_non_null(apm_web_find("/app.js"));
    assert_non_null(apm_web_find("/style.css"));
    const struct apm_web_asset *uplot = apm_web_find("/uplot.js");
    assert_non_null(uplot);
    assert_string_equal(uplot->content_type, "text/javascript; charset=utf-8");
    assert_true(uplot->len > 10000); /* the real uPlot from npm, not a placeholder */
    assert_non_null(apm_web_find("/uplot.css"));
    assert_null(apm_web_find("/api/v1/status"));
    assert_null(apm_web_find("/../index.html"));
    assert_null(apm_web_find("/app.js/"));
    assert_null(apm_web_find(""));
    /* Every ETag is quoted and the files differ, so do their tags. */
    for (size_t i = 0; i < apm_web_nassets; i++) {
        const char *t = apm_web_assets[i].etag;
        assert_true(strlen(t) == 18 && t[0] == '"' && t[17] == '"');
    }
    assert_string_not_equal(page->etag, uplot->etag);
}

/* The CSP allows no inline script: every <script> of the page must load a file. */
static void test_web_page_has_no_inline_script(void **state)
{
    (void)state;
    const struct apm_web_asset *page = apm_web_find("/");
    char *html = strndup((const char *)page->data, page->len);
    assert_non_null(html);
    unsigned scripts = 0;
    for (const char *p = strstr(html, "<script"); p != NULL; p = strstr(p + 1, "<script")) {
        const char *end = strchr(p, '>');
        const char *src = strstr(p, " src=");
        assert_non_null(end);
        assert_true(src != NULL && src < end);
        assert_int_equal(strncmp(end, "></script>", 10), 0);
        scripts++;
    }
    assert_int_equal(scripts, 2);
    assert_null(strstr(html, " on"
                             "click="));
    free(html);
}

static void test_web_etag_matching(void **state)
{
    (void)state;
    const char *tag = "\"0123456789abcdef\"";
    assert_true(apm_web_etag_matches("\"0123456789abcdef\"", tag));
    assert_true(apm_web_etag_matches("W/\"0123456789abcdef\"", tag));
    assert_true(apm_web_etag_matches("\"x\", \"0123456789abcdef\"", tag));
    assert_true(apm_web_etag_matches(" \"0123456789abcdef\" ,\"y\"", tag));
    assert_true(apm_web_etag_matches("*", tag));
    assert_false(apm_web_etag_matches(NULL, tag));
    assert_false(apm_web_etag_matches("", tag));
    assert_false(apm_web_etag_matches("\"0123456789abcde\"", tag));
    assert_false(apm_web_etag_matches("\"0123456789abcdef0\"", tag));
    assert_false(apm_web_etag_matches("0123456789abcdef", tag));
    assert_false(apm_web_etag_matches(",,, ", tag));
}

/* ---- through the HTTP server ---- */

#define NREQ 6

struct run {
    uv_loop_t loop;
    uv_async_t done;
    struct apm_http_server *srv;
    int port;
    const char *req[NREQ];
    char answer[NREQ][131072];
    size_t len[NREQ];
};

static void handler(void *ctx, struct apm_http_conn *conn, const struct apm_http_request *req)
{
    (void)ctx;
    if (!apm_web_serve(conn, req))
        apm_http_respond_error(conn, 404, "not the web page");
}

static void fetch(int port, const char *req, char *out, size_t size, size_t *len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    *len = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        send(fd, req, strlen(req), MSG_NOSIGNAL);
        ssize_t n;
        while ((n = recv(fd, out + *len, size - 1 - *len, 0)) > 0)
            *len += (size_t)n;
    }
    out[*len] = '\0';
    close(fd);
}

static void client(void *arg)
{
    struct run *r = arg;
    for (int i = 0; i < NREQ; i++)
        fetch(r->port, r->req[i], r->answer[i], sizeof(r->answer[i]), &r->len[i]);
    uv_async_send(&r->done);
}

static void on_done(uv_async_t *a)
{
    struct run *r = a->data;
    apm_http_server_close(r->srv, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static const char *header_end(const char *answer)
{
    const char *p = strstr(answer, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

static void test_web_answers_over_http(void **state)
{
    (void)state;
    const struct apm_web_asset *page = apm_web_find("/");
    const struct apm_web_asset *js = apm_web_find("/app.js");
    char revalidate[256];
    snprintf(revalidate, sizeof(revalidate),
             "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\nConnection: close\r\n\r\n",
             js->etag);
    struct run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->req[0] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    r->req[1] = revalidate;
    r->req[2] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    r->req[3] = "GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    r->req[4] = "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"stale\"\r\n"
                "Connection: close\r\n\r\n";
    r->req[5] = "HEAD /uplot.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(uv_loop_init(&r->loop), 0);
    assert_int_equal(apm_http_server_new(&r->loop, "127.0.0.1:0", handler, NULL, &r->srv), 0);
    r->port = apm_http_server_port(r->srv);
    assert_int_equal(uv_async_init(&r->loop, &r->done, on_done), 0);
    r->done.data = r;
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, client, r), 0);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_thread_join(&t);
    assert_int_equal(uv_loop_close(&r->loop), 0);

    const char *a = r->answer[0];
    assert_int_equal(strncmp(a, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(a, "Content-Type: text/html; charset=utf-8\r\n"));
    assert_non_null(strstr(a, "Content-Security-Policy: default-src 'none'; script-src 'self';"));
    assert_non_null(strstr(a, "X-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(a, "Cache-Control: no-cache\r\n"));
    char etag[64];
    snprintf(etag, sizeof(etag), "ETag: %s\r\n", page->etag);
    assert_non_null(strstr(a, etag));
    const char *body = header_end(a);
    assert_int_equal((size_t)(r->len[0] - (size_t)(body - a)), page->len);
    assert_memory_equal(body, page->data, page->len);

    a = r->answer[1];
    assert_int_equal(strncmp(a, "HTTP/1.1 304 Not Modified\r\n", 27), 0);
    assert_string_equal(header_end(a), "");

    a = r->answer[2];
    assert_int_equal(strncmp(a, "HTTP/1.1 405 ", 13), 0);
    assert_non_null(strstr(a, "Allow: GET, HEAD\r\n"));

    a = r->answer[3];
    assert_int_equal(strncmp(a, "HTTP/1.1 404 ", 13), 0);
    assert_non_null(strstr(a, "Cache-Control: no-store\r\n"));
    assert_non_null(strstr(a, "X-Content-Type-Options: nosniff\r\n"));

    a = r->answer[4];
    assert_int_equal(strncmp(a, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(a, "Content-Type: text/javascript; charset=utf-8\r\n"));
    assert_int_equal(strlen(header_end(a)), js->len);

    /* HEAD: GET's head, its Content-Length included, and no body. */
    a = r->answer[5];
    char length[64];
    snprintf(length, sizeof(length), "Content-Length: %zu\r\n", apm_web_find("/uplot.css")->len);
    assert_int_equal(strncmp(a, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(a, length));
    assert_non_null(strstr(a, "Cache-Control: no-cache\r\n"));
    assert_null(strstr(a, "no-store"));
    assert_string_equal(header_end(a), "");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_web_find_serves_the_page_and_its_files),
        cmocka_unit_test(test_web_page_has_no_inline_script),
        cmocka_unit_test(test_web_etag_matching),
        cmocka_unit_test(test_web_answers_over_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
