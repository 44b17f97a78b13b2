/*
 * The JSON API over a real store in a temporary directory, filled through
 * the store's write transactions; one test goes through the HTTP server on
 * loopback as the collector wires it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/analysis/model.h"
#include "server/api/api.h"
#include "server/net/http.h"
#include "server/store/store.h"

#define T0 1700000000000LL /* ms */

struct env {
    char dir[64];
    struct apm_store *store;
    struct apm_api *api;
    struct apm_counters counters;
    int status_calls;
};

static void status_fn(void *ctx, json_t *obj)
{
    struct env *e = ctx;
    e->status_calls++;
    json_object_set_new(obj, "ingest", json_pack("{s:i}", "connections", 3));
}

static void add_proc(struct apm_batch *b, int32_t pid, const char *name, uint32_t *idx)
{
    struct apm_proc_desc p = {.pid = pid,
                              .ppid = 1,
                              .start_ms = T0 - 60000,
                              .name = (char *)name,
                              .cmdline = (char *)"python3 app.py",
                              .cgroup = (char *)"/system.slice/app.service"};
    assert_int_equal(apm_batch_add_proc(b, &p, idx), 0);
}

/*
 * web-1: worker (pid 42) rss 100 samples growing by 1 MiB/s, gunicorn (pid
 * 43) rss 10 flat samples, and the host's mem_available; web-2: one process.
 */
static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "/tmp/apm-test-api-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    struct apm_store_options opt = {.dir = e->dir, .map_size = 64u << 20, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &e->store), 0);

    struct apm_agent_ident a1 = {.agent_id = "agent-1",
                                 .host = "web-1",
                                 .boot_id = "boot-1",
                                 .version = "0.1.0",
                                 .instance = 7};
    struct apm_batch *b = apm_batch_new(1);
    uint32_t worker = 0, gunicorn = 0;
    add_proc(b, 42, "worker", &worker);
    add_proc(b, 43, "gunicorn", &gunicorn);
    for (int i = 0; i < 100; i++) {
        int64_t t = T0 + i * 1000;
        assert_int_equal(apm_batch_add_sample(b, worker, APM_METRIC_RSS, t, (100 + i) << 20), 0);
        if (i < 10)
            assert_int_equal(apm_batch_add_sample(b, gunicorn, APM_METRIC_RSS, t, 50 << 20), 0);
        assert_int_equal(
            apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t, 4000LL << 20), 0);
    }
    struct apm_agent_ident a2 = {.agent_id = "agent-2",
                                 .host = "web-2",
                                 .boot_id = "boot-2",
                                 .version = "0.1.0",
                                 .instance = 9};
    struct apm_batch *b2 = apm_batch_new(1);
    uint32_t other = 0;
    add_proc(b2, 42, "worker", &other);
    assert_int_equal(apm_batch_add_sample(b2, other, APM_METRIC_RSS, T0, 1 << 20), 0);

    struct apm_store_txn *txn = NULL;
    assert_int_equal(apm_store_txn_begin(e->store, &txn), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &a1, b), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &a2, b2), 0);
    assert_int_equal(apm_store_txn_commit(txn), 0);
    apm_batch_free(b);
    apm_batch_free(b2);

    apm_counters_init(&e->counters);
    assert_int_equal(apm_store_add_counters(e->store, &e->counters), 0);
    struct apm_api_config cfg = {
        .store = e->store, .counters = &e->counters, .status_fn = status_fn, .ctx = e};
    assert_int_equal(apm_api_new(&cfg, &e->api), 0);
    assert_int_equal(apm_api_add_counters(e->api, &e->counters), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    apm_api_free(e->api);
    apm_store_free(e->store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

/* Routes "METHOD /path?query" and returns the status; *out is owned. */
static int call(struct env *e, const char *method, const char *target, json_t **out)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", target);
    char *q = strchr(path, '?');
    if (q != NULL)
        *q++ = '\0';
    struct apm_http_request req = {
        .method = method, .path = path, .query = q ? q : "", .body = "", .keep_alive = true};
    int status = apm_api_route(e->api, &req, out);
    assert_non_null(*out);
    return status;
}

static void expect_error(struct env *e, const char *method, const char *target, int status,
                         const char *fragment)
{
    json_t *doc = NULL;
    assert_int_equal(call(e, method, target, &doc), status);
    const char *msg = json_string_value(json_object_get(doc, "error"));
    assert_non_null(msg);
    if (strstr(msg, fragment) == NULL)
        fail_msg("error '%s' lacks '%s'", msg, fragment);
    json_decref(doc);
}

static uint64_t find_series(struct env *e, const char *query)
{
    json_t *doc = NULL;
    char target[256];
    snprintf(target, sizeof(target), "/api/v1/series?%s", query);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    json_t *list = json_object_get(doc, "series");
    assert_int_equal(json_array_size(list), 1);
    uint64_t id = (uint64_t)json_integer_value(json_object_get(json_array_get(list, 0), "id"));
    json_decref(doc);
    return id;
}

static void test_api_status_has_version_store_and_collector_counters(void **state)
{
    struct env *e = *state;
    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/status", &doc), 200);
    assert_string_equal(json_string_value(json_object_get(doc, "version")), APM_VERSION);
    assert_true(json_is_real(json_object_get(doc, "time")));
    json_t *store = json_object_get(doc, "store");
    assert_int_equal(json_integer_value(json_object_get(store, "series")), 4);
    assert_int_equal(json_integer_value(json_object_get(store, "samples")), 211);
    /* Every counter of a group is there, also those status once left out. */
    assert_true(json_is_integer(json_object_get(store, "dropped")));
    json_t *api = json_object_get(doc, "api");
    assert_int_equal(json_integer_value(json_object_get(api, "requests")), 1);
    assert_int_equal(json_integer_value(json_object_get(api, "errors")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(doc, "ingest"), "connections")), 3);
    assert_int_equal(e->status_calls, 1);
    json_decref(doc);
    expect_error(e, "GET", "/api/v1/status?verbose=1", 400, "unknown parameter 'verbose'");
}

static void test_api_hosts_lists_each_host_once(void **state)
{
    struct env *e = *state;
    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/hosts", &doc), 200);
    json_t *hosts = json_object_get(doc, "hosts");
    assert_int_equal(json_array_size(hosts), 2);
    json_t *h = json_array_get(hosts, 0);
    assert_string_equal(json_string_value(json_object_get(h, "host")), "web-1");
    assert_string_equal(json_string_value(json_object_get(h, "agent_id")), "agent-1");
    assert_int_equal(json_integer_value(json_object_get(h, "processes")), 2);
    assert_true(json_is_real(json_object_get(h, "last_seen")));
    assert_false(json_is_true(json_object_get(doc, "truncated")));
    json_decref(doc);
    assert_int_equal(call(e, "GET", "/api/v1/hosts?limit=1", &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "hosts")), 1);
    assert_true(json_is_true(json_object_get(doc, "truncated")));
    json_decref(doc);
}

static void test_api_processes_filter_by_host(void **state)
{
    struct env *e = *state;
    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/processes?host=web-1", &doc), 200);
    json_t *list = json_object_get(doc, "processes");
    assert_int_equal(json_array_size(list), 2);
    json_t *p = json_array_get(list, 0);
    char want[64];
    snprintf(want, sizeof(want), "web-1:42:%lld", T0 - 60000);
    assert_string_equal(json_string_value(json_object_get(p, "id")), want);
    assert_string_equal(json_string_value(json_object_get(p, "name")), "worker");
    assert_int_equal(json_integer_value(json_object_get(p, "pid")), 42);
    assert_true(json_real_value(json_object_get(p, "start_time")) == (double)(T0 - 60000) / 1000);
    assert_string_equal(json_string_value(json_object_get(p, "cmdline")), "python3 app.py");
    json_decref(doc);
    assert_int_equal(call(e, "GET", "/api/v1/processes", &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "processes")), 3);
    json_decref(doc);
    assert_int_equal(call(e, "GET", "/api/v1/processes?host=web", &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "processes")), 0);
    json_decref(doc);
}

/*
 * "live" is PRODUCT.md's: seen within process-grace of now (the collector's
 * clock, as the store records last_seen). A grace of 500 ms here: the setup's
 * processes age past it, a process stored afterwards does not.
 */
static void test_api_processes_say_which_are_live(void **state)
{
    struct env *e = *state;
    apm_api_free(e->api);
    struct apm_api_config cfg = {.store = e->store, .process_grace_ms = 500};
    assert_int_equal(apm_api_new(&cfg, &e->api), 0);
    usleep(700 * 1000);
    struct apm_agent_ident a3 = {.agent_id = "agent-3",
                                 .host = "web-3",
                                 .boot_id = "boot-3",
                                 .version = "0.1.0",
                                 .instance = 11};
    struct apm_batch *b = apm_batch_new(1);
    uint32_t idx = 0;
    add_proc(b, 77, "fresh", &idx);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, T0, 1 << 20), 0);
    struct apm_store_txn *txn = NULL;
    assert_int_equal(apm_store_txn_begin(e->store, &txn), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &a3, b), 0);
    assert_int_equal(apm_store_txn_commit(txn), 0);
    apm_batch_free(b);

    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/processes?live=true", &doc), 200);
    json_t *list = json_object_get(doc, "processes");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")),
                        "fresh");
    assert_true(json_is_true(json_object_get(json_array_get(list, 0), "live")));
    json_decref(doc);
    assert_int_equal(call(e, "GET", "/api/v1/processes?live=0&host=web-1", &doc), 200);
    list = json_object_get(doc, "processes");
    assert_int_equal(json_array_size(list), 2);
    assert_true(json_is_false(json_object_get(json_array_get(list, 0), "live")));
    json_decref(doc);
    /* The limit counts the rows kept, not those passed over. */
    assert_int_equal(call(e, "GET", "/api/v1/processes?live=1&limit=1", &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "processes")), 1);
    assert_true(json_is_false(json_object_get(doc, "truncated")));
    json_decref(doc);
    assert_int_equal(call(e, "GET", "/api/v1/processes", &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "processes")), 4);
    json_decref(doc);
    expect_error(e, "GET", "/api/v1/processes?live=yes", 400, "must be true or false");
}

static void test_api_series_filters_and_shape(void **state)
{
    struct env *e = *state;
    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/series?host=web-1&process=worker&metric=rss", &doc),
                     200);
    json_t *list = json_object_get(doc, "series");
    assert_int_equal(json_array_size(list), 1);
    json_t *s = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(s, "metric")), "rss");
    assert_string_equal(json_string_value(json_object_get(s, "name")), "worker");
    assert_int_equal(json_integer_value(json_object_get(s, "pid")), 42);
    assert_int_equal(json_integer_value(json_object_get(s, "samples")), 100);
    assert_int_equal(json_integer_value(json_object_get(s, "last_value")), 199 << 20);
    assert_string_equal(json_string_value(json_object_get(s, "unit")), "bytes");
    assert_true(json_real_value(json_object_get(s, "first")) == 1700000000.0);
    assert_true(json_real_value(json_object_get(s, "last")) == 1700000099.0);
    json_decref(doc);

    /* A host series has no process. */
    assert_int_equal(call(e, "GET", "/api/v1/series?metric=mem_available", &doc), 200);
    s = json_array_get(json_object_get(doc, "series"), 0);
    assert_true(json_is_null(json_object_get(s, "process")));
    assert_true(json_is_null(json_object_get(s, "pid")));
    json_decref(doc);

    assert_int_equal(call(e, "GET", "/api/v1/series?pid=42", &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "series")), 2); /* web-1 and web-2 */
    json_decref(doc);
    find_series(e, "pid=43");
    find_series(e, "host=web-2");
    find_series(e, "process_id=web-1%3A43%3A1699999940000");

    expect_error(e, "GET", "/api/v1/series?metric=heap", 400, "unknown metric 'heap'");
    expect_error(e, "GET", "/api/v1/series?pid=abc", 400, "'pid' must be an integer");
    expect_error(e, "GET", "/api/v1/series?pid=0", 400, "'pid' must be an integer");
    expect_error(e, "GET", "/api/v1/series?hots=web-1", 400, "unknown parameter 'hots'");
    expect_error(e, "GET", "/api/v1/series?host=%zz", 400, "not properly encoded");
    expect_error(e, "GET", "/api/v1/series?limit=0", 400, "'limit'");
    expect_error(e, "GET", "/api/v1/series?limit=100001", 400, "'limit'");
}

static void test_api_samples_window_and_limit(void **state)
{
    struct env *e = *state;
    uint64_t id = find_series(e, "process=worker&host=web-1");
    json_t *doc = NULL;
    char target[256];
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?from=1700000010.5&to=1700000013",
             (unsigned long long)id);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    json_t *samples = json_object_get(doc, "samples");
    assert_int_equal(json_array_size(samples), 3); /* t = 11, 12, 13 */
    json_t *first = json_array_get(samples, 0);
    assert_true(json_real_value(json_array_get(first, 0)) == 1700000011.0);
    assert_int_equal(json_integer_value(json_array_get(first, 1)), 111 << 20);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "series"), "id")),
                     (json_int_t)id);
    assert_true(json_real_value(json_object_get(doc, "from")) == 1700000010.5);
    assert_false(json_is_true(json_object_get(doc, "truncated")));
    json_decref(doc);

    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?limit=5", (unsigned long long)id);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "samples")), 5);
    assert_true(json_is_true(json_object_get(doc, "truncated")));
    assert_true(json_is_null(json_object_get(doc, "to")));
    json_decref(doc);

    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples", (unsigned long long)id);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    assert_int_equal(json_array_size(json_object_get(doc, "samples")), 100);
    json_decref(doc);

    expect_error(e, "GET", "/api/v1/series/999999/samples", 404, "no series 999999");
    expect_error(e, "GET", "/api/v1/series/x1/samples", 400, "bad series id 'x1'");
    expect_error(e, "GET", "/api/v1/series/99999999999999999999999/samples", 400, "bad series id");
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?from=20&to=10",
             (unsigned long long)id);
    expect_error(e, "GET", target, 400, "'from' is after 'to'");
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?from=yesterday",
             (unsigned long long)id);
    expect_error(e, "GET", target, 400, "'from' must be Unix seconds");
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?from=nan",
             (unsigned long long)id);
    expect_error(e, "GET", target, 400, "'from' must be Unix seconds");
}

/* The series listing pages with a cursor: every series once, in id order. */
static void test_api_series_pages_with_a_cursor(void **state)
{
    struct env *e = *state;
    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/series", &doc), 200);
    size_t all = json_array_size(json_object_get(doc, "series"));
    assert_true(json_is_null(json_object_get(doc, "next")));
    json_decref(doc);
    assert_true(all >= 4);
    size_t seen = 0;
    json_int_t last = 0;
    char target[128] = "/api/v1/series?limit=1";
    for (int page = 0; page < 20; page++) {
        assert_int_equal(call(e, "GET", target, &doc), 200);
        json_t *list = json_object_get(doc, "series");
        for (size_t i = 0; i < json_array_size(list); i++, seen++) {
            json_int_t id = json_integer_value(json_object_get(json_array_get(list, i), "id"));
            assert_true(id > last);
            last = id;
        }
        json_t *next = json_object_get(doc, "next");
        bool more = json_is_string(next);
        if (more)
            snprintf(target, sizeof(target), "/api/v1/series?limit=1&cursor=%s",
                     json_string_value(next));
        json_decref(doc);
        if (!more)
            break;
    }
    assert_int_equal(seen, all);
    expect_error(e, "GET", "/api/v1/series?cursor=-4", 400, "bad cursor");
}

/* One point per step (mean by default), and pages that go on from a cursor. */
static void test_api_samples_step_agg_and_cursor(void **state)
{
    struct env *e = *state;
    uint64_t id = find_series(e, "process=worker&host=web-1");
    json_t *doc = NULL;
    char target[256];
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?step=10", (unsigned long long)id);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    json_t *pts = json_object_get(doc, "samples");
    assert_int_equal(json_array_size(pts), 10);
    for (size_t k = 0; k < 10; k++) {
        json_t *p = json_array_get(pts, k);
        assert_true(json_real_value(json_array_get(p, 0)) == 1700000000.0 + 10.0 * (double)k);
        /* The mean of 100 + 10k .. 109 + 10k MiB. */
        assert_true(json_real_value(json_array_get(p, 1)) ==
                    (100.0 + 10.0 * (double)k + 4.5) * 1048576.0);
    }
    assert_true(json_real_value(json_object_get(doc, "resolution")) == 0.0);
    assert_true(json_is_null(json_object_get(doc, "next")));
    json_decref(doc);

    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?step=10&agg=max&limit=3",
             (unsigned long long)id);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    pts = json_object_get(doc, "samples");
    assert_int_equal(json_array_size(pts), 3);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(pts, 2), 1)), 129 << 20);
    assert_true(json_is_true(json_object_get(doc, "truncated")));
    assert_string_equal(json_string_value(json_object_get(doc, "next")), "1700000030000");
    json_decref(doc);
    snprintf(target, sizeof(target),
             "/api/v1/series/%llu/samples?step=10&agg=max&limit=3&cursor=1700000030000",
             (unsigned long long)id);
    assert_int_equal(call(e, "GET", target, &doc), 200);
    pts = json_object_get(doc, "samples");
    assert_true(json_real_value(json_array_get(json_array_get(pts, 0), 0)) == 1700000030.0);
    assert_int_equal(json_integer_value(json_array_get(json_array_get(pts, 0), 1)), 139 << 20);
    json_decref(doc);

    /* Raw pages: every sample once, in order, whatever the page size. */
    int total = 0;
    char cursor[32] = "";
    for (int page = 0; page < 30; page++) {
        snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?limit=7%s%s",
                 (unsigned long long)id, cursor[0] ? "&cursor=" : "", cursor);
        assert_int_equal(call(e, "GET", target, &doc), 200);
        pts = json_object_get(doc, "samples");
        for (size_t i = 0; i < json_array_size(pts); i++, total++)
            assert_int_equal(json_integer_value(json_array_get(json_array_get(pts, i), 1)),
                             (100 + total) << 20);
        json_t *next = json_object_get(doc, "next");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(doc);
        if (!more)
            break;
    }
    assert_int_equal(total, 100);

    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?agg=max", (unsigned long long)id);
    expect_error(e, "GET", target, 400, "'agg' needs 'step'");
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?step=60&agg=median",
             (unsigned long long)id);
    expect_error(e, "GET", target, 400, "not min, max, mean or last");
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?cursor=abc",
             (unsigned long long)id);
    expect_error(e, "GET", target, 400, "bad cursor");
    snprintf(target, sizeof(target), "/api/v1/series/%llu/samples?step=0", (unsigned long long)id);
    expect_error(e, "GET", target, 400, "'step'");
}

static void test_api_unknown_routes_and_methods(void **state)
{
    struct env *e = *state;
    expect_error(e, "GET", "/api/v1/nothing", 404, "no such endpoint");
    expect_error(e, "GET", "/api/v2/status", 404, "no such endpoint");
    expect_error(e, "GET", "/", 404, "no such endpoint");
    expect_error(e, "GET", "/api/v1/series/", 404, "no such endpoint");
    expect_error(e, "GET", "/api/v1//series", 404, "no such endpoint");
    expect_error(e, "GET", "/api/v1/a/b/c/d/e/f/g/h/i/j", 404, "no such endpoint");
    expect_error(e, "POST", "/api/v1/series", 405, "method POST not allowed");
    expect_error(e, "DELETE", "/api/v1/series/1/samples", 405, "not allowed");
}

/* A store written before ingest cleaned strings may hold invalid UTF-8: say so, not "OOM". */
static void test_api_unencodable_string_is_a_true_500(void **state)
{
    struct env *e = *state;
    struct apm_agent_ident bad = {.agent_id = "agent-3",
                                  .host = "web\xff",
                                  .boot_id = "b",
                                  .version = "0.1.0",
                                  .instance = 3};
    struct apm_batch *b = apm_batch_new(1);
    uint32_t idx = 0;
    add_proc(b, 77, "app", &idx);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, T0, 1 << 20), 0);
    struct apm_store_txn *txn = NULL;
    assert_int_equal(apm_store_txn_begin(e->store, &txn), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &bad, b), 0);
    assert_int_equal(apm_store_txn_commit(txn), 0);
    apm_batch_free(b);
    expect_error(e, "GET", "/api/v1/hosts", 500,
                 "could not encode field 'host' as JSON: not valid UTF-8");
    /* The process id holds the host too: either field may be named first. */
    expect_error(e, "GET", "/api/v1/processes", 500, "as JSON: not valid UTF-8");
    expect_error(e, "GET", "/api/v1/series", 500, "as JSON: not valid UTF-8");
    /* Filtering to the good hosts still answers. */
    json_t *doc = NULL;
    assert_int_equal(call(e, "GET", "/api/v1/processes?host=web-1", &doc), 200);
    json_decref(doc);
    /* An error quoting bad bytes from the request is encodable too. */
    expect_error(e, "GET", "/api/v1/series/%ff/samples", 400, "bad series id");
}

static int trace_route(const struct apm_api_call *c, json_t **out)
{
    int *calls = c->ctx;
    (*calls)++;
    if (c->req->body_len == 0)
        return apm_api_error(out, 400, "a body is required");
    *out = json_pack("{s:s, s:i}", "process", c->params[0], "nparams", (int)c->nparams);
    return 202;
}

static void test_api_routes_can_be_added(void **state)
{
    struct env *e = *state;
    int calls = 0;
    assert_int_equal(apm_api_add_route(e->api, "POST", "processes/{}/trace", trace_route, &calls),
                     0);
    assert_int_equal(apm_api_add_route(e->api, "POST", "/bad", trace_route, NULL), -EINVAL);
    assert_int_equal(apm_api_add_route(e->api, "POST", "a//b", trace_route, NULL), -EINVAL);
    assert_int_equal(apm_api_add_route(e->api, "POST", "a/", trace_route, NULL), -EINVAL);
    struct apm_http_request req = {.method = "POST",
                                   .path = "/api/v1/processes/web-1%3A42%3A1000/trace",
                                   .query = "",
                                   .body = "{\"for\": 60}",
                                   .body_len = 11};
    json_t *doc = NULL;
    assert_int_equal(apm_api_route(e->api, &req, &doc), 202);
    assert_string_equal(json_string_value(json_object_get(doc, "process")), "web-1:42:1000");
    assert_int_equal(json_integer_value(json_object_get(doc, "nparams")), 1);
    json_decref(doc);
    expect_error(e, "GET", "/api/v1/processes/x/trace", 405, "not allowed");
    expect_error(e, "POST", "/api/v1/processes/x/trace", 400, "a body is required");
    expect_error(e, "POST", "/api/v1/processes/%00/trace", 400, "bad path segment");
    assert_int_equal(calls, 2);
    /* The built-in route still answers. */
    assert_int_equal(call(e, "GET", "/api/v1/processes", &doc), 200);
    json_decref(doc);
}

/* ---- through the HTTP server ---- */

struct http_run {
    uv_loop_t loop;
    struct apm_http_server *srv;
    int port;
    const char *request; /* sent as is */
    char answer[65536];
    size_t len;
};

static void on_server_closed(struct apm_http_server *s, void *ctx)
{
    (void)s;
    (void)ctx;
}

static void client_thread(void *arg)
{
    struct http_run *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        send(fd, r->request, strlen(r->request), MSG_NOSIGNAL);
        ssize_t n;
        while ((n = recv(fd, r->answer + r->len, sizeof(r->answer) - 1 - r->len, 0)) > 0)
            r->len += (size_t)n;
        r->answer[r->len] = '\0';
    }
    close(fd);
}

static void on_client_done(uv_async_t *a)
{
    struct http_run *r = a->data;
    apm_http_server_close(r->srv, on_server_closed);
    uv_close((uv_handle_t *)a, NULL);
}

struct client_ctx {
    struct http_run *run;
    uv_async_t *done;
};

static void client_then_signal(void *arg)
{
    struct client_ctx *c = arg;
    client_thread(c->run);
    uv_async_send(c->done);
}

/* Serves e->api on loopback for one client that sends request; returns the answer (owned). */
static struct http_run *http_exchange(struct env *e, const char *request)
{
    struct http_run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->request = request;
    assert_int_equal(uv_loop_init(&r->loop), 0);
    assert_int_equal(apm_http_server_new(&r->loop, "127.0.0.1:0", apm_api_handle, e->api, &r->srv),
                     0);
    r->port = apm_http_server_port(r->srv);
    uv_async_t done;
    assert_int_equal(uv_async_init(&r->loop, &done, on_client_done), 0);
    done.data = r;
    struct client_ctx cc = {r, &done};
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, client_then_signal, &cc), 0);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_thread_join(&t);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    return r;
}

static void test_api_answers_over_http(void **state)
{
    struct env *e = *state;
    struct http_run *r =
        http_exchange(e, "GET /api/v1/series?metric=mem_available HTTP/1.1\r\nHost: x\r\n"
                         "Connection: close\r\n\r\n");
    assert_true(strncmp(r->answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(r->answer, "Content-Type: application/json\r\n"));
    char *body = strstr(r->answer, "\r\n\r\n");
    assert_non_null(body);
    json_error_t err;
    json_t *doc = json_loads(body + 4, 0, &err);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "series")), 1);
    json_decref(doc);
    free(r);
}

/* The value of header name (with its ": ") in an answer, up to the line's end, into buf. */
static const char *header(const char *answer, const char *name, char *buf, size_t size)
{
    const char *h = strstr(answer, name);
    if (h == NULL)
        return NULL;
    h += strlen(name);
    size_t n = strcspn(h, "\r");
    snprintf(buf, size, "%.*s", (int)n, h);
    return buf;
}

static void test_api_head_answers_as_get_without_the_body(void **state)
{
    struct env *e = *state;
    struct http_run *get = http_exchange(e, "GET /api/v1/hosts HTTP/1.1\r\nHost: x\r\n"
                                            "Connection: close\r\n\r\n");
    struct http_run *head = http_exchange(e, "HEAD /api/v1/hosts HTTP/1.1\r\nHost: x\r\n"
                                             "Connection: close\r\n\r\n");
    assert_true(strncmp(head->answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    char want[32], got[32];
    assert_non_null(header(get->answer, "Content-Length: ", want, sizeof(want)));
    assert_non_null(header(head->answer, "Content-Length: ", got, sizeof(got)));
    /* The same length as GET's body, which is not sent. */
    assert_string_equal(got, want);
    assert_true(atoi(got) > 10);
    const char *end = strstr(head->answer, "\r\n\r\n");
    assert_non_null(end);
    assert_string_equal(end + 4, "");
    assert_non_null(strstr(head->answer, "Content-Type: application/json\r\n"));
    /* An unknown path: 404 and its length, no body either. */
    struct http_run *miss = http_exchange(e, "HEAD /api/v1/nothing HTTP/1.1\r\nHost: x\r\n"
                                             "Connection: close\r\n\r\n");
    assert_true(strncmp(miss->answer, "HTTP/1.1 404 ", 13) == 0);
    assert_string_equal(strstr(miss->answer, "\r\n\r\n") + 4, "");
    free(get);
    free(head);
    free(miss);
}

static void test_api_405_carries_allow_from_the_route_table(void **state)
{
    struct env *e = *state;
    char allow[96];
    assert_int_equal(apm_api_allow(e->api, "/api/v1/status", allow, sizeof(allow)), 1);
    assert_string_equal(allow, "GET, HEAD");
    /* A path served by two routes of different methods lists both, once each. */
    int calls = 0;
    assert_int_equal(apm_api_add_route(e->api, "POST", "series/{}/samples", trace_route, &calls),
                     0);
    assert_int_equal(apm_api_allow(e->api, "/api/v1/series/7/samples", allow, sizeof(allow)), 1);
    assert_string_equal(allow, "GET, HEAD, POST");
    assert_int_equal(apm_api_allow(e->api, "/api/v1/nothing", allow, sizeof(allow)), 0);
    assert_string_equal(allow, "");
    /* Over HTTP: the header on the 405, none on a 404. */
    struct http_run *r = http_exchange(e, "DELETE /api/v1/status HTTP/1.1\r\nHost: x\r\n"
                                          "Connection: close\r\n\r\n");
    assert_true(strncmp(r->answer, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    char got[96];
    assert_non_null(header(r->answer, "\r\nAllow: ", got, sizeof(got)));
    assert_string_equal(got, "GET, HEAD");
    assert_non_null(strstr(r->answer, "method DELETE not allowed"));
    free(r);
    r = http_exchange(e, "DELETE /api/v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_true(strncmp(r->answer, "HTTP/1.1 404 ", 13) == 0);
    assert_null(strstr(r->answer, "Allow:"));
    free(r);
}

static int raw_route(void *ctx, const struct apm_http_request *req, char **body, size_t *len,
                     const char **content_type)
{
    int *calls = ctx;
    (*calls)++;
    *body = strdup(req->query[0] != '\0' ? "query\n" : "plain text\n");
    *len = strlen(*body);
    *content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 200;
}

static void test_api_raw_routes_answer_get_and_head_only(void **state)
{
    struct env *e = *state;
    int calls = 0;
    assert_int_equal(apm_api_add_raw_route(e->api, "/metrics", raw_route, &calls), 0);
    assert_int_equal(apm_api_add_raw_route(e->api, "metrics", raw_route, &calls), -EINVAL);
    struct http_run *r =
        http_exchange(e, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_true(strncmp(r->answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(
        strstr(r->answer, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_string_equal(strstr(r->answer, "\r\n\r\n") + 4, "plain text\n");
    free(r);
    r = http_exchange(e, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_non_null(strstr(r->answer, "Content-Length: 11\r\n"));
    assert_string_equal(strstr(r->answer, "\r\n\r\n") + 4, "");
    free(r);
    r = http_exchange(e, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n");
    assert_true(strncmp(r->answer, "HTTP/1.1 405 ", 13) == 0);
    char got[96];
    assert_non_null(header(r->answer, "\r\nAllow: ", got, sizeof(got)));
    assert_string_equal(got, "GET, HEAD");
    free(r);
    assert_int_equal(calls, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_status_has_version_store_and_collector_counters,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_hosts_lists_each_host_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_processes_filter_by_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_processes_say_which_are_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_unencodable_string_is_a_true_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_series_filters_and_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_samples_window_and_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_samples_step_agg_and_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_series_pages_with_a_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_unknown_routes_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_routes_can_be_added, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_answers_over_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_head_answers_as_get_without_the_body, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_api_405_carries_allow_from_the_route_table, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_api_raw_routes_answer_get_and_head_only, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
