/*
 * apm-cli without a collector: option handling, sizes, sparklines, tables,
 * and the commands against a tiny canned HTTP server on loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/args.h"
#include "cli/client.h"
#include "cli/cmd_alerts.h"
#include "cli/cmd_forecast.h"
#include "cli/cmd_top.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "common/base/error.h"

/* ---- global options ---- */

static void test_cli_json_and_server_accepted_anywhere(void **state)
{
    (void)state;
    struct apm_cli_globals g;
    char err[256];
    char *argv[] = {
        "apm-cli", "series", "--host", "web-1", "--json", "--pid", "--server=http://h:1/",
        "42",      NULL};
    int argc = 8;
    assert_int_equal(apm_cli_globals_init(&g, NULL, NULL, err, sizeof(err)), 0);
    assert_string_equal(g.server, "http://127.0.0.1:7412");
    assert_false(g.json);
    assert_int_equal(apm_cli_globals_extract(&g, &argc, argv, err, sizeof(err)), 0);
    assert_true(g.json);
    assert_string_equal(g.server, "http://h:1");
    assert_int_equal(argc, 6);
    assert_string_equal(argv[1], "series");
    assert_string_equal(argv[2], "--host");
    assert_string_equal(argv[3], "web-1");
    assert_string_equal(argv[4], "--pid");
    assert_string_equal(argv[5], "42");
    assert_null(argv[6]);

    char *argv2[] = {"apm-cli", "--json", "--server", "https://c.example:7412", "hosts", NULL};
    argc = 5;
    assert_int_equal(apm_cli_globals_init(&g, "http://env:9", NULL, err, sizeof(err)), 0);
    assert_string_equal(g.server, "http://env:9");
    assert_int_equal(apm_cli_globals_extract(&g, &argc, argv2, err, sizeof(err)), 0);
    assert_string_equal(g.server, "https://c.example:7412");
    assert_int_equal(argc, 2);
    assert_string_equal(argv2[1], "hosts");
}

static void test_cli_token_file_and_cacert(void **state)
{
    (void)state;
    struct apm_cli_globals g;
    char err[256];
    char *argv[] = {"apm-cli", "ack", "--token-file", "/t/tok", "7", "--cacert=/t/ca.crt", NULL};
    int argc = 6;
    assert_int_equal(apm_cli_globals_init(&g, NULL, "/env/tok", err, sizeof(err)), 0);
    assert_string_equal(g.token_file, "/env/tok");
    assert_int_equal(apm_cli_globals_extract(&g, &argc, argv, err, sizeof(err)), 0);
    assert_string_equal(g.token_file, "/t/tok");
    assert_string_equal(g.cacert, "/t/ca.crt");
    assert_int_equal(argc, 3);
    assert_string_equal(argv[1], "ack");
    assert_string_equal(argv[2], "7");
    char *missing[] = {"apm-cli", "ack", "7", "--token-file", NULL};
    argc = 4;
    assert_int_equal(apm_cli_globals_extract(&g, &argc, missing, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "--token-file needs a value"));
    char *empty[] = {"apm-cli", "--cacert=", "status", NULL};
    argc = 3;
    assert_int_equal(apm_cli_globals_extract(&g, &argc, empty, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "--cacert"));
}

static void test_cli_words_after_double_dash_are_kept(void **state)
{
    (void)state;
    struct apm_cli_globals g;
    char err[256];
    char *argv[] = {"apm-cli", "analyze", "--", "--json", NULL};
    int argc = 4;
    assert_int_equal(apm_cli_globals_init(&g, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(apm_cli_globals_extract(&g, &argc, argv, err, sizeof(err)), 0);
    assert_false(g.json);
    assert_int_equal(argc, 4);
}

static void test_cli_bad_server_is_a_usage_error(void **state)
{
    (void)state;
    struct apm_cli_globals g;
    char err[256];
    char *missing[] = {"apm-cli", "status", "--server", NULL};
    int argc = 3;
    assert_int_equal(apm_cli_globals_init(&g, NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(apm_cli_globals_extract(&g, &argc, missing, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "--server needs a URL"));
    char *bad[] = {"apm-cli", "--server", "127.0.0.1:7412", "status", NULL};
    argc = 4;
    assert_int_equal(apm_cli_globals_extract(&g, &argc, bad, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "expected a URL"));
    assert_int_equal(apm_cli_globals_init(&g, "ftp://x", NULL, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "APM_SERVER"));
    assert_int_equal(apm_cli_globals_init(&g, "http://", NULL, err, sizeof(err)), APM_E_USAGE);
}

static void test_cli_series_options(void **state)
{
    (void)state;
    struct apm_cli_series_opts o;
    char err[256];
    char *ok[] = {"--host",   "web-1", "--pid=42", "--process", "worker",
                  "--metric", "pss",   "--window", "2h"};
    assert_int_equal(apm_cli_series_parse(9, ok, &o, err, sizeof(err)), 0);
    assert_string_equal(o.host, "web-1");
    assert_string_equal(o.process, "worker");
    assert_string_equal(o.metric, "pss");
    assert_int_equal(o.pid, 42);
    assert_int_equal(o.window_ms, 2 * 3600 * 1000);

    assert_int_equal(apm_cli_series_parse(0, NULL, &o, err, sizeof(err)), 0);
    assert_int_equal(o.window_ms, APM_CLI_DEFAULT_WINDOW_MS);
    assert_null(o.host);

    char *badpid[] = {"--pid", "-3"};
    assert_int_equal(apm_cli_series_parse(2, badpid, &o, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "--pid"));
    char *badmetric[] = {"--metric", "heap"};
    assert_int_equal(apm_cli_series_parse(2, badmetric, &o, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "unknown metric 'heap'"));
    char *badwin[] = {"--window", "10x"};
    assert_int_equal(apm_cli_series_parse(2, badwin, &o, err, sizeof(err)), APM_E_USAGE);
    char *cursor[] = {"--cursor", "1234"};
    assert_int_equal(apm_cli_series_parse(2, cursor, &o, err, sizeof(err)), 0);
    assert_string_equal(o.cursor, "1234");
    char *badcursors[] = {"-5", "12x", "", "99999999999999999999", "+3"};
    for (size_t k = 0; k < sizeof(badcursors) / sizeof(badcursors[0]); k++) {
        char *bad[] = {"--cursor", badcursors[k]};
        assert_int_equal(apm_cli_series_parse(2, bad, &o, err, sizeof(err)), APM_E_USAGE);
        assert_non_null(strstr(err, "--cursor"));
    }
    char *novalue[] = {"--host"};
    assert_int_equal(apm_cli_series_parse(1, novalue, &o, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "--host needs a value"));
    char *unknown[] = {"--hostname", "x"};
    assert_int_equal(apm_cli_series_parse(2, unknown, &o, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "unknown argument '--hostname'"));
    char *help[] = {"--help"};
    assert_int_equal(apm_cli_series_parse(1, help, &o, err, sizeof(err)), 0);
    assert_true(o.help);
    char *badstep[] = {"--step", "0"};
    assert_int_equal(apm_cli_series_parse(2, badstep, &o, err, sizeof(err)), APM_E_USAGE);
    assert_non_null(strstr(err, "--step"));
}

/* One point per character of the sparkline, in whole minutes or hours past them. */
static void test_cli_series_step(void **state)
{
    (void)state;
    struct apm_cli_series_opts o;
    char err[256];
    char *step[] = {"--step", "1h30m"};
    assert_int_equal(apm_cli_series_parse(2, step, &o, err, sizeof(err)), 0);
    assert_int_equal(apm_cli_series_step(&o), 5400000);
    char *week[] = {"--window", "7d"};
    assert_int_equal(apm_cli_series_parse(2, week, &o, err, sizeof(err)), 0);
    /* 7 d / 24 characters = 7 h exactly. */
    assert_int_equal(apm_cli_series_step(&o), 7 * 3600000);
    char *ten[] = {"--window", "10m"};
    assert_int_equal(apm_cli_series_parse(2, ten, &o, err, sizeof(err)), 0);
    assert_int_equal(apm_cli_series_step(&o), 25000);
    char *day[] = {"--window", "1d"};
    assert_int_equal(apm_cli_series_parse(2, day, &o, err, sizeof(err)), 0);
    assert_int_equal(apm_cli_series_step(&o), 3600000);
    char *hour[] = {"--window", "1h"};
    assert_int_equal(apm_cli_series_parse(2, hour, &o, err, sizeof(err)), 0);
    assert_int_equal(apm_cli_series_step(&o), 180000);
}

/* ---- formatting ---- */

static void test_cli_sparkline_spans_the_eight_levels(void **state)
{
    (void)state;
    char out[128];
    double ramp[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(apm_cli_sparkline(ramp, 8, 24, out, sizeof(out)), 8);
    assert_string_equal(out, "▁▂▃▄▅▆▇█");
    double flat[3] = {5, 5, 5};
    assert_int_equal(apm_cli_sparkline(flat, 3, 24, out, sizeof(out)), 3);
    assert_string_equal(out, "▄▄▄");
    assert_int_equal(apm_cli_sparkline(NULL, 0, 24, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

static void test_cli_sparkline_averages_down_to_width(void **state)
{
    (void)state;
    char out[128];
    /* 100 values, a step at the middle: 4 columns of 25 values each. */
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i < 50 ? 10 : 20;
    assert_int_equal(apm_cli_sparkline(v, 100, 4, out, sizeof(out)), 4);
    assert_string_equal(out, "▁▁██");
    /* A buffer for two glyphs only gets two. */
    char small[7];
    assert_int_equal(apm_cli_sparkline(v, 100, 4, small, sizeof(small)), 2);
    assert_int_equal(apm_cli_text_width(small), 2);
}

static void test_cli_table_aligns_utf8_cells(void **state)
{
    (void)state;
    struct apm_cli_table t;
    apm_cli_table_init(&t, 3);
    const char *r1[3] = {"ID", "TREND", "X"};
    const char *r2[3] = {"7", "▁▂▃", NULL};
    assert_int_equal(apm_cli_table_add(&t, r1), 0);
    assert_int_equal(apm_cli_table_add(&t, r2), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    apm_cli_table_print(&t, f);
    fclose(f);
    assert_string_equal(buf, "ID  TREND  X\n7   ▁▂▃    -\n");
    free(buf);
    apm_cli_table_close(&t);
    apm_cli_table_close(NULL);
}

static void test_cli_escape_shows_controls_as_escapes(void **state)
{
    (void)state;
    char out[128];
    /* ESC, BEL, DEL, C1 CSI (U+009B), a byte that is not UTF-8; UTF-8 text stays. */
    assert_string_equal(
        apm_cli_escape("a\x1b[2Jb\x07\x7f\xc2\x9b\xff caf\xc3\xa9 \xe2\x96\x81", out, sizeof(out)),
        "a\\x1b[2Jb\\x07\\x7f\\u009b\\xff caf\xc3\xa9 \xe2\x96\x81");
    /* Cut at an escape boundary, never inside one. */
    assert_string_equal(apm_cli_escape("ab\x1b", out, 5), "ab");
    char *d = apm_cli_escape_dup("\n\t");
    assert_non_null(d);
    assert_string_equal(d, "\\x0a\\x09");
    free(d);
}

/* True when text holds no control byte but newline and tab, and no C1 control. */
static void assert_terminal_safe(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f ||
            (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            fail_msg("control byte 0x%02x at offset %zu of:\n%s", *p,
                     (size_t)(p - (const unsigned char *)text), text);
    }
}

static void test_cli_table_escapes_control_characters(void **state)
{
    (void)state;
    struct apm_cli_table t;
    apm_cli_table_init(&t, 2);
    const char *r1[2] = {"NAME", "X"};
    const char *r2[2] = {"evil\x1b[2J", "y"};
    assert_int_equal(apm_cli_table_add(&t, r1), 0);
    assert_int_equal(apm_cli_table_add(&t, r2), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    apm_cli_table_print(&t, f);
    fclose(f);
    assert_string_equal(buf, "NAME         X\nevil\\x1b[2J  y\n");
    free(buf);
    apm_cli_table_close(&t);
}

/* ---- commands against a canned collector ---- */

struct canned {
    int listen_fd;
    int port;
    pthread_t thread;
    int requests;
    char last_path[512];
};

static const char *canned_answer(const char *path, int *status)
{
    *status = 200;
    if (strcmp(path, "/api/v1/series?metric=gc_collections&limit=200") == 0)
        return "{\"series\":[{\"id\":4,\"host\":\"web-1\",\"process\":\"web-1:42:1000\","
               "\"name\":\"worker\",\"pid\":42,\"metric\":\"gc_collections\",\"unit\":\"count\","
               "\"first\":100.0,\"last\":107.0,\"last_value\":28,\"samples\":2}],"
               "\"truncated\":false}";
    if (strncmp(path, "/api/v1/series/4/samples", 24) == 0)
        return "{\"series\":{\"id\":4},\"samples\":[[100.0,20],[107.0,28]],\"truncated\":false}";
    if (strncmp(path, "/api/v1/series?", 15) == 0 || strcmp(path, "/api/v1/series") == 0)
        return "{\"series\":[{\"id\":3,\"host\":\"web-1\",\"process\":\"web-1:42:1000\","
               "\"name\":\"worker\",\"pid\":42,\"metric\":\"rss\",\"first\":100.0,"
               "\"last\":107.0,\"last_value\":1572864,\"samples\":8}],\"truncated\":false}";
    if (strncmp(path, "/api/v1/series/3/samples", 24) == 0)
        return "{\"series\":{\"id\":3},\"samples\":[[100.0,1],[101.0,2],[102.0,3],[103.0,4],"
               "[104.0,5],[105.0,6],[106.0,7],[107.0,8]],\"truncated\":false}";
    /* Hostile strings, as an agent could have sent them (JSON-escaped by the collector). */
    if (strncmp(path, "/api/v1/alerts", 14) == 0)
        return "{\"alerts\":[{\"id\":5,\"state\":\"firing\",\"severity\":\"critical\","
               "\"rule\":\"leak\",\"fired\":100.0,\"summary\":\"evil\\u001b[2J leaks\","
               "\"forecast\":{\"text\":\"full in 5h\\u001b]0;pwned\\u0007\"},"
               "\"suspect\":{\"text\":\"app/\\u001b[31mcache.py:88\"},\"acked\":true,"
               "\"ack_until\":9999999999.0,\"ack_comment\":\"ok\\nFAKE LINE\\u009b\"}]}";
    if (strncmp(path, "/api/v1/forecasts", 17) == 0)
        return "{\"forecasts\":[{\"name\":\"evil\\u001b[2J\",\"pid\":42,\"host\":\"web\\u007f\","
               "\"value\":1048576,\"limit\":null,\"rate\":10.0,\"class\":\"leak\","
               "\"confidence\":0.9,\"suspects\":[{\"site\":\"app/\\u001b[31mcache.py:88\","
               "\"rate\":5.0}]}],\"truncated\":false}";
    if (strncmp(path, "/api/v1/processes", 17) == 0)
        return "{\"processes\":[{\"id\":\"web-1:42:1000\",\"name\":\"evil\\u001b[2J\","
               "\"pid\":42,\"last_seen\":100.0}],\"truncated\":false}";
    if (strncmp(path, "/api/v1/sites?", 14) == 0)
        return "{\"process\":\"web-1:42:1000\",\"window\":3600.0,\"sites\":[{\"site\":"
               "\"app/\\u001b[31mcache.py:88\",\"size\":2048,\"size_growth\":1024,"
               "\"rate_bytes_per_s\":1.0,\"count_growth\":3,\"points\":[[1.0,1],[2.0,2]]}]}";
    if (strcmp(path, "/api/v1/status") == 0)
        return "{\"version\":\"9.9\",\"time\":200.0,\"started\":100.0,"
               "\"store\":{\"bytes_on_disk\":2048,\"series\":3}}";
    *status = 404;
    return "{\"error\":\"no such endpoint\"}";
}

/* Serves one request per connection, then closes: enough for the client. */
static void *canned_run(void *arg)
{
    struct canned *c = arg;
    for (;;) {
        int fd = accept(c->listen_fd, NULL, NULL);
        if (fd < 0)
            return NULL;
        char req[4096];
        size_t len = 0;
        while (len < sizeof(req) - 1) {
            ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
            if (n <= 0)
                break;
            len += (size_t)n;
            req[len] = '\0';
            if (strstr(req, "\r\n\r\n") != NULL)
                break;
        }
        req[len] = '\0';
        char path[512] = "";
        sscanf(req, "GET %511s", path);
        snprintf(c->last_path, sizeof(c->last_path), "%s", path);
        c->requests++;
        int status = 0;
        const char *body = canned_answer(path, &status);
        char head[256];
        int hl = snprintf(head, sizeof(head),
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          status, strlen(body));
        send(fd, head, (size_t)hl, MSG_NOSIGNAL);
        send(fd, body, strlen(body), MSG_NOSIGNAL);
        close(fd);
    }
}

static void canned_start(struct canned *c)
{
    memset(c, 0, sizeof(*c));
    c->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(c->listen_fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(c->listen_fd, (struct sockaddr *)&sa, &sl);
    c->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&c->thread, NULL, canned_run, c), 0);
}

static void canned_stop(struct canned *c)
{
    shutdown(c->listen_fd, SHUT_RDWR);
    close(c->listen_fd);
    pthread_join(c->thread, NULL);
}

/* Runs a command with stdout and stderr captured into out/err. */
static int capture(int (*cmd)(const struct apm_cli_globals *, int, char **),
                   const struct apm_cli_globals *g, int argc, char **argv, char *out, size_t outsz,
                   char *err, size_t errsz)
{
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int rc = cmd(g, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    rewind(fo);
    rewind(fe);
    size_t n = fread(out, 1, outsz - 1, fo);
    out[n] = '\0';
    n = fread(err, 1, errsz - 1, fe);
    err[n] = '\0';
    fclose(fo);
    fclose(fe);
    return rc;
}

/* Runs apm-cli series (a table) against a canned collector, stopped before it returns. */
static int canned_series(struct canned *c, int argc, char **argv, char *out, size_t outsz,
                         char *err, size_t errsz)
{
    canned_start(c);
    struct apm_cli_globals g = {.json = false};
    snprintf(g.server, sizeof(g.server), "http://127.0.0.1:%d", c->port);
    int rc = capture(apm_cli_cmd_series, &g, argc, argv, out, outsz, err, errsz);
    canned_stop(c);
    return rc;
}

static void test_cli_series_prints_table_with_sparkline(void **state)
{
    (void)state;
    struct canned c;
    char out[4096], err[1024];
    char *argv[] = {"--process", "my worker", "--window", "1m"};
    assert_int_equal(canned_series(&c, 4, argv, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_non_null(strstr(out, "ID  HOST   PID  PROCESS  METRIC  VALUE    SAMPLES  LAST 1m 0s"));
    assert_non_null(strstr(out, "3   web-1  42   worker   rss     1.5 MiB  8        ▁▂▃▄▅▆▇█"));
    assert_int_equal(c.requests, 2);
    /* The last request asked for the window before the series' last sample, a point a character. */
    assert_string_equal(c.last_path, "/api/v1/series/3/samples?from=47.000&to=107.000&step=2.500");
}

static void test_cli_series_prints_counts_as_counts(void **state)
{
    (void)state;
    struct canned c;
    char out[4096], err[1024];
    char *argv[] = {"--metric", "gc_collections"};
    assert_int_equal(canned_series(&c, 2, argv, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(err, "");
    /* gc collections are a count (common/analysis/model.c's unit table), not "28 B". */
    assert_non_null(strstr(out, "gc_collections  28     2 "));
    assert_null(strstr(out, "28 B"));
}

/* Runs one command in text mode against the canned collector; returns its stdout. */
static void canned_text(int (*cmd)(const struct apm_cli_globals *, int, char **), int argc,
                        char **argv, char *out, size_t outsz)
{
    struct canned c;
    canned_start(&c);
    struct apm_cli_globals g = {.json = false};
    snprintf(g.server, sizeof(g.server), "http://127.0.0.1:%d", c.port);
    char err[1024];
    int rc = capture(cmd, &g, argc, argv, out, outsz, err, sizeof(err));
    canned_stop(&c);
    if (rc != 0)
        fail_msg("exit %d, stderr: %s", rc, err);
}

static void test_cli_top_forecast_alerts_never_write_control_characters(void **state)
{
    (void)state;
    char out[8192];
    char *top_argv[] = {"--pid", "42"};
    canned_text(apm_cli_cmd_top, 2, top_argv, out, sizeof(out));
    assert_terminal_safe(out);
    assert_non_null(strstr(out, "app/\\x1b[31mcache.py:88"));
    canned_text(apm_cli_cmd_forecast, 0, NULL, out, sizeof(out));
    assert_terminal_safe(out);
    assert_non_null(strstr(out, "evil\\x1b[2J"));
    assert_non_null(strstr(out, "web\\x7f"));
    canned_text(apm_cli_cmd_alerts, 0, NULL, out, sizeof(out));
    assert_terminal_safe(out);
    assert_non_null(strstr(out, "full in 5h\\x1b]0;pwned\\x07"));
    assert_non_null(strstr(out, "ok\\x0aFAKE LINE\\u009b"));
}

static void test_cli_processes_asks_for_live_ones_and_escapes_names(void **state)
{
    (void)state;
    struct canned c;
    canned_start(&c);
    struct apm_cli_globals g = {.json = false};
    snprintf(g.server, sizeof(g.server), "http://127.0.0.1:%d", c.port);
    char out[4096], err[1024];
    int rc = capture(apm_cli_cmd_processes, &g, 0, NULL, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(c.last_path, "/api/v1/processes?live=true");
    assert_terminal_safe(out);
    assert_non_null(strstr(out, "evil\\x1b[2J"));
    assert_non_null(strstr(out, "web-1:42:1000"));
    char *argv[] = {"--host", "web 1", "--all"};
    rc = capture(apm_cli_cmd_processes, &g, 3, argv, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_string_equal(c.last_path, "/api/v1/processes?host=web%201");
    char *live_host[] = {"--host", "web-1"};
    rc = capture(apm_cli_cmd_processes, &g, 2, live_host, out, sizeof(out), err, sizeof(err));
    canned_stop(&c);
    assert_int_equal(rc, 0);
    assert_string_equal(c.last_path, "/api/v1/processes?live=true&host=web-1");
    char *bad[] = {"--hots"};
    rc = capture(apm_cli_cmd_processes, &g, 1, bad, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, APM_CLI_EXIT_USAGE);
    assert_non_null(strstr(err, "unexpected argument '--hots'"));
}

static void test_cli_json_prints_the_api_answer(void **state)
{
    (void)state;
    struct canned c;
    canned_start(&c);
    struct apm_cli_globals g = {.json = true};
    snprintf(g.server, sizeof(g.server), "http://127.0.0.1:%d", c.port);
    char out[4096], err[1024];
    char *argv[] = {"--host", "web 1"};
    int rc = capture(apm_cli_cmd_series, &g, 2, argv, out, sizeof(out), err, sizeof(err));
    canned_stop(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(c.requests, 1);
    assert_string_equal(c.last_path, "/api/v1/series?host=web%201");
    assert_true(strncmp(out, "{\"series\":[{\"id\":3,", 19) == 0);
    assert_int_equal(out[strlen(out) - 1], '\n');
}

static void test_cli_status_table_and_collector_errors(void **state)
{
    (void)state;
    struct canned c;
    canned_start(&c);
    struct apm_cli_globals g = {.json = false};
    snprintf(g.server, sizeof(g.server), "http://127.0.0.1:%d", c.port);
    char out[4096], err[1024];
    int rc = capture(apm_cli_cmd_status, &g, 0, NULL, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "uptime               1m 40s\n"));
    assert_non_null(strstr(out, "store.bytes_on_disk  2.0 KiB\n"));
    assert_non_null(strstr(out, "version              9.9\n"));
    /* An error answer: exit 2 and the collector's reason on one line. */
    rc = capture(apm_cli_cmd_hosts, &g, 0, NULL, out, sizeof(out), err, sizeof(err));
    canned_stop(&c);
    assert_int_equal(rc, APM_CLI_EXIT_COLLECTOR);
    char want[1024];
    snprintf(want, sizeof(want), "apm-cli: collector at %s answered 404: no such endpoint\n",
             g.server);
    assert_string_equal(err, want);
    char *extra[] = {"extra"};
    rc = capture(apm_cli_cmd_hosts, &g, 1, extra, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, APM_CLI_EXIT_USAGE);
}

static void test_cli_unreachable_collector_exits_2(void **state)
{
    (void)state;
    /* A port that was just free: bind, read the number, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    struct apm_cli_globals g = {.json = false};
    snprintf(g.server, sizeof(g.server), "http://127.0.0.1:%d", ntohs(sa.sin_port));
    char out[1024], err[1024], want[1024];
    int rc = capture(apm_cli_cmd_status, &g, 0, NULL, out, sizeof(out), err, sizeof(err));
    assert_int_equal(rc, APM_CLI_EXIT_COLLECTOR);
    snprintf(want, sizeof(want), "apm-cli: cannot reach collector at %s: Connection refused\n",
             g.server);
    assert_string_equal(err, want);
    assert_string_equal(out, "");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_json_and_server_accepted_anywhere),
        cmocka_unit_test(test_cli_words_after_double_dash_are_kept),
        cmocka_unit_test(test_cli_token_file_and_cacert),
        cmocka_unit_test(test_cli_bad_server_is_a_usage_error),
        cmocka_unit_test(test_cli_series_options),
        cmocka_unit_test(test_cli_series_step),
        cmocka_unit_test(test_cli_sparkline_spans_the_eight_levels),
        cmocka_unit_test(test_cli_sparkline_averages_down_to_width),
        cmocka_unit_test(test_cli_table_aligns_utf8_cells),
        cmocka_unit_test(test_cli_series_prints_table_with_sparkline),
        cmocka_unit_test(test_cli_series_prints_counts_as_counts),
        cmocka_unit_test(test_cli_json_prints_the_api_answer),
        cmocka_unit_test(test_cli_processes_asks_for_live_ones_and_escapes_names),
        cmocka_unit_test(test_cli_escape_shows_controls_as_escapes),
        cmocka_unit_test(test_cli_table_escapes_control_characters),
        cmocka_unit_test(test_cli_top_forecast_alerts_never_write_control_characters),
        cmocka_unit_test(test_cli_status_table_and_collector_errors),
        cmocka_unit_test(test_cli_unreachable_collector_exits_2),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
