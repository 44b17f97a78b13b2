/*
 * GET /metrics over a real store in a temporary directory: live processes'
 * gauges with escaped labels, verdict families, a process past process-grace
 * left out, and every registry counter (a histogram among them) written with
 * HELP and TYPE. `promtool check metrics` on the real output runs in
 * tests/integration/test_prometheus.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/counters.h"
#include "common/analysis/model.h"
#include "common/base/timeutil.h"
#include "server/api/metrics.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"
#include "tests/tmpdir.h"

#define GRACE_MS 120000

/* The store stamps hosts with the wall clock: the scrape runs at the real now. */
static int64_t NOW;

struct env {
    char dir[64];
    struct apm_store *store;
    struct apm_counters counters;
    struct apm_agent_health *health;
    struct {
        uint64_t done;
        struct apm_histogram took;
    } stats;
};

static const struct apm_counter test_counters[] = {
    {"done", APM_COUNTER_TOTAL, "", "Things done.", 0},
    {"took", APM_COUNTER_HISTOGRAM, "seconds", "How long a thing took.", sizeof(uint64_t)},
    {.name = NULL},
};

static void add_proc(struct apm_batch *b, int32_t pid, const char *name, int64_t start_ms,
                     uint32_t *idx)
{
    struct apm_proc_desc p = {.pid = pid,
                              .ppid = 1,
                              .start_ms = start_ms,
                              .name = (char *)name,
                              .cmdline = (char *)"python3 app.py",
                              .cgroup = (char *)"/app"};
    assert_int_equal(apm_batch_add_proc(b, &p, idx), 0);
}

static void put_verdict(struct env *e, int32_t pid, const char *name, double at_s, bool forecast)
{
    struct apm_verdict_record *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->series_id = (uint64_t)pid;
    r->metric = APM_METRIC_RSS;
    snprintf(r->host, sizeof(r->host), "web-1");
    snprintf(r->process_id, sizeof(r->process_id), "web-1:%d:1000", pid);
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->pid = pid;
    r->evaluated_at = at_s;
    r->v.cls = APM_CLASS_LEAK;
    r->v.confidence = 0.9;
    r->v.rate = 1048576;
    r->v.limit = 1e9;
    r->v.has_forecast = forecast;
    r->v.forecast_t = at_s + 600;
    r->v.forecast_lo_t = at_s + 300;
    r->v.forecast_hi_t = INFINITY;
    const struct apm_verdict_record *recs[] = {r};
    assert_int_equal(apm_store_verdict_put(e->store, recs, 1), 0);
    free(r);
}

/*
 * web-1: "app \"x\" \\ y" (pid 42) reported just now, rss and cgroup_usage;
 * old.py (pid 43) last reported 10 minutes ago (past process-grace); the
 * host's mem_total. Both processes have a leak verdict.
 */
static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    NOW = apm_now_ms() / 1000 * 1000;
    snprintf(e->dir, sizeof(e->dir), "/tmp/apm-test-metrics-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    struct apm_store_options opt = {.dir = e->dir, .map_size = 64u << 20, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &e->store), 0);
    struct apm_agent_ident a = {
        .agent_id = "agent-1", .host = "web-1", .boot_id = "b", .version = "0.1.0", .instance = 1};
    struct apm_batch *b = apm_batch_new(1);
    uint32_t live = 0, old = 0;
    add_proc(b, 42, "app \"x\" \\ y", 1000, &live);
    add_proc(b, 43, "old.py", 1000, &old);
    assert_int_equal(apm_batch_add_sample(b, old, APM_METRIC_RSS, NOW - 600000, 5 << 20), 0);
    assert_int_equal(apm_batch_add_sample(b, live, APM_METRIC_RSS, NOW - 1000, 300 << 20), 0);
    assert_int_equal(apm_batch_add_sample(b, live, APM_METRIC_CGROUP_USAGE, NOW - 1000, 400 << 20),
                     0);
    assert_int_equal(
        apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_TOTAL, NOW - 1000, 8LL << 30), 0);
    struct apm_store_txn *txn = NULL;
    assert_int_equal(apm_store_txn_begin(e->store, &txn), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &a, b), 0);
    assert_int_equal(apm_store_txn_commit(txn), 0);
    apm_batch_free(b);
    put_verdict(e, 42, "app \"x\" \\ y", (double)(NOW - 1000) / 1000.0, true);
    put_verdict(e, 43, "old.py", (double)(NOW - 600000) / 1000.0, true);

    apm_counters_init(&e->counters);
    e->stats.done = 7;
    apm_histogram_observe(&e->stats.took, 2000);
    apm_histogram_observe(&e->stats.took, 20000000);
    struct apm_counter_group g = {
        .module = "thing", .counters = test_counters, .size = sizeof(e->stats), .stats = &e->stats};
    assert_int_equal(apm_counters_add(&e->counters, &g), 0);
    assert_int_equal(apm_store_add_counters(e->store, &e->counters), 0);
    /* Two agents' health: one reported just now, one past the grace. */
    assert_int_equal(apm_agent_health_new(GRACE_MS, &e->health), 0);
    struct apm_health h = {.t_ms = NOW - 1000};
    assert_int_equal(apm_health_add(&h, "uplink_samples_acked", 1234, false), 0);
    assert_int_equal(apm_health_add(&h, "watched", 12, true), 0);
    assert_int_equal(apm_agent_health_put(e->health, &a, &h, NOW - 1000), 0);
    struct apm_agent_ident gone = {.agent_id = "agent-gone", .host = "web-9", .instance = 1};
    assert_int_equal(apm_agent_health_put(e->health, &gone, &h, NOW - 10 * GRACE_MS), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    apm_store_free(e->store);
    apm_agent_health_free(e->health);
    apm_test_rmtree(e->dir);
    free(e);
    return 0;
}

static char *render(struct env *e)
{
    struct apm_metrics_config cfg = {.store = e->store,
                                     .counters = &e->counters,
                                     .process_grace_ms = GRACE_MS,
                                     .health = e->health};
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(apm_metrics_render(&cfg, NOW, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

#define LIVE "{host=\"web-1\",name=\"app \\\"x\\\" \\\\ y\",pid=\"42\",process=\"web-1:42:1000\"}"

static void test_metrics_live_process_gauges_and_verdicts_with_escaped_labels(void **state)
{
    struct env *e = *state;
    char *text = render(e);
    assert_non_null(strstr(text, "# TYPE apm_process_rss_bytes gauge\n"));
    assert_non_null(strstr(text, "\napm_process_rss_bytes" LIVE " 314572800\n"));
    assert_non_null(strstr(text, "\napm_process_cgroup_usage_bytes" LIVE " 419430400\n"));
    assert_non_null(strstr(text, "\napm_host_mem_total_bytes{host=\"web-1\"} 8589934592\n"));
    assert_non_null(strstr(text, "\napm_verdict_info{class=\"leak\",host=\"web-1\",name=\"app "
                                 "\\\"x\\\" \\\\ y\",pid=\"42\",process=\"web-1:42:1000\"} 1\n"));
    assert_non_null(strstr(text, "\napm_verdict_confidence" LIVE " 0.9\n"));
    assert_non_null(strstr(text, "\napm_growth_rate_bytes_per_second" LIVE " 1048576\n"));
    /* Evaluated 1 s ago: 599 s left, 299 at the earliest, maybe never. */
    assert_non_null(strstr(text, "\napm_time_to_exhaustion_seconds" LIVE " 599\n"));
    assert_non_null(strstr(text, "\napm_time_to_exhaustion_lower_seconds" LIVE " 299\n"));
    assert_non_null(strstr(text, "\napm_time_to_exhaustion_upper_seconds" LIVE " +Inf\n"));
    assert_non_null(strstr(text, "\napm_alert_firing" LIVE " 0\n"));
    assert_non_null(strstr(text, "\napm_alert_silenced" LIVE " 0\n"));
    assert_non_null(strstr(text, "\napm_agent_last_report_timestamp_seconds{agent_id=\"agent-1\","
                                 "host=\"web-1\",version=\"0.1.0\"} 1"));
    free(text);
}

static void test_metrics_agents_health_counters_as_reported(void **state)
{
    struct env *e = *state;
    char *text = render(e);
    assert_non_null(strstr(text, "# TYPE apm_agent_uplink_samples_acked_total counter\n"));
    assert_non_null(strstr(text, "\napm_agent_uplink_samples_acked_total{agent_id=\"agent-1\","
                                 "host=\"web-1\"} 1234\n"));
    assert_non_null(strstr(text, "# TYPE apm_agent_watched gauge\n"));
    assert_non_null(strstr(text, "\napm_agent_watched{agent_id=\"agent-1\",host=\"web-1\"} 12\n"));
    /* The agent silent past the grace is gone. */
    assert_null(strstr(text, "agent-gone"));
    free(text);
}

static void test_metrics_leave_out_processes_past_process_grace(void **state)
{
    struct env *e = *state;
    char *text = render(e);
    assert_null(strstr(text, "old.py"));
    assert_null(strstr(text, "pid=\"43\""));
    free(text);
}

/* Every family has HELP then TYPE before its first sample, and appears once. */
static void test_metrics_every_family_has_help_and_type_once(void **state)
{
    struct env *e = *state;
    char *text = render(e);
    char *save = NULL;
    char families[64][96];
    size_t nf = 0;
    char help_of[96] = "", type_of[96] = "";
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%95s", help_of);
            for (size_t i = 0; i < nf; i++)
                assert_string_not_equal(families[i], help_of);
            assert_true(nf < 64);
            snprintf(families[nf++], sizeof(families[0]), "%s", help_of);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%95s", type_of);
            assert_string_equal(type_of, help_of);
            continue;
        }
        /* A sample belongs to the family announced last (a histogram's by its suffixes). */
        size_t n = strcspn(line, "{ ");
        assert_true(n >= strlen(type_of));
        assert_memory_equal(line, type_of, strlen(type_of));
    }
    assert_true(nf > 20);
    free(text);
}

static void test_metrics_write_every_registry_counter_and_histogram(void **state)
{
    struct env *e = *state;
    char *text = render(e);
    assert_non_null(strstr(text, "# TYPE apm_thing_done_total counter\napm_thing_done_total 7\n"));
    assert_non_null(strstr(text, "# TYPE apm_thing_took_seconds histogram\n"));
    assert_non_null(strstr(text, "\napm_thing_took_seconds_bucket{le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(text, "\napm_thing_took_seconds_bucket{le=\"10\"} 1\n"));
    assert_non_null(strstr(text, "\napm_thing_took_seconds_bucket{le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(text, "\napm_thing_took_seconds_sum 20.002\n"));
    assert_non_null(strstr(text, "\napm_thing_took_seconds_count 2\n"));
    /* The store's group, without a list here: its map size in bytes, a slice time in seconds. */
    assert_non_null(strstr(text, "# TYPE apm_store_map_size_bytes gauge\n"));
    assert_non_null(strstr(text, "# TYPE apm_store_samples_total counter\n"));
    assert_non_null(strstr(text, "# TYPE apm_store_slice_max_seconds gauge\n"));
    assert_non_null(strstr(text, "\napm_metrics_unreadable_groups 0\n"));
    free(text);
}

static void test_metrics_handler_refuses_a_query(void **state)
{
    struct env *e = *state;
    struct apm_metrics_config cfg = {.store = e->store, .process_grace_ms = GRACE_MS};
    struct apm_http_request req = {.method = "GET", .path = "/metrics", .query = "x=1", .body = ""};
    char *body = NULL;
    size_t len = 0;
    const char *type = NULL;
    assert_int_equal(apm_metrics_handle(&cfg, &req, &body, &len, &type), 400);
    assert_non_null(strstr(body, "no parameters"));
    free(body);
    req.query = "";
    assert_int_equal(apm_metrics_handle(&cfg, &req, &body, &len, &type), 200);
    assert_string_equal(type, "text/plain; version=0.0.4; charset=utf-8");
    assert_true(len > 100);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_metrics_live_process_gauges_and_verdicts_with_escaped_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_agents_health_counters_as_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_metrics_leave_out_processes_past_process_grace, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_metrics_every_family_has_help_and_type_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_metrics_write_every_registry_counter_and_histogram,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_handler_refuses_a_query, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
