/*
 * The collector's live analysis: batches of a synthetic leaking process and
 * a flat one are committed to a real store and fed to the analyzer as the
 * writer's commit hook would; then verdicts, limits, persistence across a
 * reopen, trace requests, the forecast endpoints and the worker thread.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/analysis/analyzer.h"
#include "server/analysis/analyzer_worker.h"
#include "server/api/api.h"
#include "server/api/api_forecast.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"
#include "server/ingest/writer.h"
#include "tests/tmpdir.h"

#define MIB (1024.0 * 1024.0)
#define HOST_TOTAL (4096 * MIB)
/* The worker's cgroup limit: its leak, from 200 MiB at 1 MiB/s, reaches it in 440 s. */
#define CG_LIMIT (640 * MIB)
#define T0_MS 1700000000000LL

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_analyzer *an;
    struct apm_agent_ident agent;
    int traces;
    struct apm_analyzer_trace last_trace;
    uint64_t seq;
    /* What the analyzer last told the alert rules of each process (pid 100, pid 200). */
    char cgroup[2][256];
    double interval_s[2];
};

static void on_verdict(void *ctx, const struct apm_analyzer_verdict *msg)
{
    struct fixture *f = ctx;
    int i = msg->rec->pid == 100 ? 0 : msg->rec->pid == 200 ? 1 : -1;
    if (i < 0)
        return;
    snprintf(f->cgroup[i], sizeof(f->cgroup[i]), "%s", msg->cgroup);
    f->interval_s[i] = msg->interval_s;
}

static void on_trace(void *ctx, const struct apm_analyzer_trace *t)
{
    struct fixture *f = ctx;
    f->traces++;
    f->last_trace = *t;
}

/*
 * The collector's defaults: a verdict after 64 samples. The worker leaks from its first sample;
 * these tests are about the analyzer's plumbing, so its growth is judged at once, without the
 * start-up doubt that growth since a series began gets (test_analysis covers that rule).
 */
static void options(struct apm_analyzer_options *o)
{
    apm_analyzer_options_init(o);
    o->analysis.bucket_samples = 2;
    o->analysis.min_buckets = 32;
    o->analysis.startup_s = 0;
    o->trace_window_s = 600;
}

static void open_store(struct fixture *f)
{
    struct apm_store_options so = {.dir = f->dir, .no_sync = true};
    assert_int_equal(apm_store_open(&so, &f->store), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-analyzer-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    open_store(f);
    struct apm_analyzer_options o;
    options(&o);
    o.verdict_fn = on_verdict;
    o.verdict_ctx = f;
    assert_int_equal(apm_analyzer_new(f->store, &o, on_trace, f, &f->an), 0);
    snprintf(f->agent.agent_id, sizeof(f->agent.agent_id), "agent-1");
    snprintf(f->agent.host, sizeof(f->agent.host), "web-3");
    f->agent.instance = 7;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_analyzer_free(f->an);
    apm_store_free(f->store);
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

/* Pseudo-random noise of +-1 MiB, the same on every run. */
static double noise(unsigned i)
{
    unsigned x = i * 2654435761u;
    return ((double)(x >> 16 & 0xffff) / 65535.0 - 0.5) * 2 * MIB;
}

/*
 * One tick: "worker" (pid 100) leaks 1 MiB/s from 200 MiB under a cgroup
 * limit of cg_limit (0 = none), "idle" (pid 200) stays at 150 MiB.
 */
static struct apm_batch *tick(struct fixture *f, unsigned i, double cg_limit)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    assert_non_null(b);
    int64_t t = T0_MS + (int64_t)i * 1000;
    struct apm_proc_desc leaky = {.pid = 100,
                                  .start_ms = T0_MS - 5000,
                                  .name = "worker",
                                  .cgroup = "/system.slice/w.service"};
    struct apm_proc_desc flat = {.pid = 200, .start_ms = T0_MS - 9000, .name = "idle"};
    uint32_t a, c;
    assert_int_equal(apm_batch_add_proc(b, &leaky, &a), 0);
    assert_int_equal(apm_batch_add_proc(b, &flat, &c), 0);
    assert_int_equal(
        apm_batch_add_sample(b, a, APM_METRIC_RSS, t, (int64_t)(200 * MIB + i * MIB + noise(i))),
        0);
    if (cg_limit > 0)
        assert_int_equal(apm_batch_add_sample(b, a, APM_METRIC_CGROUP_LIMIT, t, (int64_t)cg_limit),
                         0);
    assert_int_equal(
        apm_batch_add_sample(b, c, APM_METRIC_RSS, t, (int64_t)(150 * MIB + noise(i + 7))), 0);
    assert_int_equal(
        apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_TOTAL, t, (int64_t)HOST_TOTAL), 0);
    return b;
}

/* Commits the batch, then feeds it: what the writer and its hook do. */
static void commit_and_feed(struct fixture *f, struct apm_batch *b)
{
    struct apm_store_txn *txn = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &txn), 0);
    assert_int_equal(apm_store_txn_put_batch(txn, &f->agent, b), 0);
    assert_int_equal(apm_store_txn_commit(txn), 0);
    assert_int_equal(apm_analyzer_feed(f->an, f->agent.host, b), 0);
    apm_batch_free(b);
}

static void run(struct fixture *f, unsigned from, unsigned to, double cg_limit)
{
    for (unsigned i = from; i < to; i++)
        commit_and_feed(f, tick(f, i, cg_limit));
}

static void verdict_of(struct fixture *f, int pid, int64_t start_ms, struct apm_verdict_record *r)
{
    char id[128];
    snprintf(id, sizeof(id), "web-3:%d:%lld", pid, (long long)start_ms);
    assert_int_equal(apm_analyzer_get(f->an, "web-3", id, APM_METRIC_RSS, r), 0);
}

static void test_analyzer_calls_steady_growth_a_leak_and_flat_memory_not(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r;
    run(f, 0, 300, CG_LIMIT);
    verdict_of(f, 100, T0_MS - 5000, &r);
    assert_int_equal(r.v.cls, APM_CLASS_LEAK);
    assert_true(r.v.confidence > 0.5);
    assert_true(r.v.has_forecast);
    /* About 1 MiB/s; the limit is reached some 7 to 8 minutes after the start. */
    assert_true(fabs(r.v.rate - MIB) < 0.2 * MIB);
    double eta = r.v.forecast_t - (double)T0_MS / 1000;
    assert_true(eta > 380 && eta < 500);
    assert_true(r.v.forecast_lo_t <= r.v.forecast_t && r.v.forecast_t <= r.v.forecast_hi_t);
    assert_string_equal(r.name, "worker");
    assert_int_equal(r.pid, 100);
    assert_true(r.series_id != 0);

    verdict_of(f, 200, T0_MS - 9000, &r);
    assert_int_not_equal(r.v.cls, APM_CLASS_LEAK);
    assert_false(r.v.has_forecast);
    assert_false(r.v.alert);
}

static void test_analyzer_tells_the_alert_rules_the_cgroup_and_interval(void **state)
{
    struct fixture *f = *state;
    run(f, 0, 20, 0);
    assert_string_equal(f->cgroup[0], "/system.slice/w.service");
    assert_true(fabs(f->interval_s[0] - 1.0) < 1e-9);
    assert_string_equal(f->cgroup[1], "");
    /* A slower agent: the estimate follows it. */
    for (unsigned i = 20; i < 80; i += 3)
        commit_and_feed(f, tick(f, i, 0));
    assert_true(fabs(f->interval_s[1] - 3.0) < 0.1);
}

static void test_analyzer_prefers_a_cgroup_limit_below_host_memory(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r;
    run(f, 0, 80, CG_LIMIT);
    verdict_of(f, 100, T0_MS - 5000, &r);
    assert_int_equal(r.limit_source, APM_LIMIT_CGROUP);
    assert_true(r.v.limit == CG_LIMIT);
    /* No cgroup limit: the host's memory. */
    verdict_of(f, 200, T0_MS - 9000, &r);
    assert_int_equal(r.limit_source, APM_LIMIT_HOST);
    assert_true(r.v.limit == HOST_TOTAL);
}

static void test_analyzer_ignores_a_cgroup_limit_above_host_memory(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r;
    run(f, 0, 10, 8.0 * HOST_TOTAL);
    verdict_of(f, 100, T0_MS - 5000, &r);
    assert_int_equal(r.limit_source, APM_LIMIT_HOST);
    assert_true(r.v.limit == HOST_TOTAL);
}

static void test_analyzer_uses_the_configured_limit_without_a_cgroup(void **state)
{
    struct fixture *f = *state;
    apm_analyzer_free(f->an);
    struct apm_analyzer_options o;
    options(&o);
    o.memory_limit = (int64_t)(512 * MIB);
    assert_int_equal(apm_analyzer_new(f->store, &o, on_trace, f, &f->an), 0);
    struct apm_verdict_record r;
    run(f, 0, 10, CG_LIMIT);
    verdict_of(f, 200, T0_MS - 9000, &r);
    assert_int_equal(r.limit_source, APM_LIMIT_CONFIGURED);
    assert_true(r.v.limit == 512 * MIB);
    verdict_of(f, 100, T0_MS - 5000, &r);
    assert_int_equal(r.limit_source, APM_LIMIT_CGROUP);
}

static int count_row(void *ctx, const struct apm_verdict_record *r)
{
    (void)r;
    (*(int *)ctx)++;
    return 0;
}

static void test_analyzer_verdicts_survive_a_reopen_of_the_store(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record live, stored;
    run(f, 0, 300, CG_LIMIT);
    assert_true(apm_analyzer_flush(f->an) >= 2);
    verdict_of(f, 100, T0_MS - 5000, &live);
    apm_analyzer_free(f->an);
    f->an = NULL;
    apm_store_free(f->store);
    open_store(f);
    assert_int_equal(apm_store_verdict_get(f->store, live.series_id, &stored), 0);
    assert_int_equal(stored.v.cls, APM_CLASS_LEAK);
    assert_true(stored.v.has_forecast);
    assert_true(stored.v.forecast_t == live.v.forecast_t);
    assert_int_equal(stored.limit_source, APM_LIMIT_CGROUP);
    assert_string_equal(stored.process_id, live.process_id);
    assert_string_equal(stored.name, "worker");
    int n = 0;
    assert_int_equal(apm_store_verdict_list(f->store, count_row, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(apm_store_verdict_get(f->store, 999, &stored), APM_E_NOTFOUND);
}

static void test_analyzer_warms_a_new_series_from_the_store(void **state)
{
    struct fixture *f = *state;
    run(f, 0, 300, CG_LIMIT);
    /* A restarted collector: a fresh analyzer sees one more batch. */
    apm_analyzer_free(f->an);
    struct apm_analyzer_options o;
    options(&o);
    assert_int_equal(apm_analyzer_new(f->store, &o, on_trace, f, &f->an), 0);
    run(f, 300, 301, CG_LIMIT);
    struct apm_verdict_record r;
    verdict_of(f, 100, T0_MS - 5000, &r);
    assert_int_equal(r.v.samples, 301);
    assert_int_equal(r.v.cls, APM_CLASS_LEAK);
    struct apm_analyzer_stats st;
    apm_analyzer_get_stats(f->an, &st);
    assert_int_equal(st.warmed, 2);
}

static int count_raw(void *ctx, int64_t t, int64_t v)
{
    (void)t;
    (void)v;
    (*(int *)ctx)++;
    return 0;
}

/*
 * Raw samples past the store's retention are in its 1-minute rollups: a
 * restarted collector replays those (a mean a minute) before the raw ones.
 */
static void test_analyzer_warms_up_from_rollups_past_the_raw_retention(void **state)
{
    struct fixture *f = *state;
    run(f, 0, 300, CG_LIMIT);
    struct apm_verdict_record before;
    verdict_of(f, 100, T0_MS - 5000, &before);
    assert_int_equal(before.v.cls, APM_CLASS_LEAK);
    apm_analyzer_free(f->an);
    apm_store_free(f->store);
    struct apm_store_options so = {.dir = f->dir,
                                   .no_sync = true,
                                   .retention_ms = 100000,
                                   .rollup_1m_ms = 86400000,
                                   .rollup_1h_ms = 86400000};
    assert_int_equal(apm_store_open(&so, &f->store), 0);
    int rc;
    while ((rc = apm_store_maintain(f->store, T0_MS + 300000, 4000, 1000000)) == 0)
        ;
    assert_int_equal(rc, 1);
    uint64_t sid = 0;
    char id[128];
    snprintf(id, sizeof(id), "web-3:100:%lld", (long long)(T0_MS - 5000));
    assert_int_equal(apm_store_find_series(f->store, NULL, id, APM_METRIC_RSS, NULL, &sid), 0);
    int raw = 0;
    assert_int_equal(apm_store_read_samples(f->store, sid, INT64_MIN, INT64_MAX, count_raw, &raw),
                     0);
    assert_true(raw >= 100 && raw < 250);
    assert_true(raw < 300);
    struct apm_analyzer_options o;
    options(&o);
    assert_int_equal(apm_analyzer_new(f->store, &o, on_trace, f, &f->an), 0);
    run(f, 300, 301, CG_LIMIT);
    struct apm_verdict_record r;
    verdict_of(f, 100, T0_MS - 5000, &r);
    /* One point a minute from the first sample's minute to the one the raw samples begin in. */
    int64_t raw_first = T0_MS + (300 - raw) * 1000LL;
    int64_t minutes = (raw_first / 60000 * 60000 - T0_MS / 60000 * 60000) / 60000;
    assert_true(minutes >= 2);
    assert_int_equal(r.v.samples, (uint64_t)raw + 1 + (uint64_t)minutes);
    /* The restarted analysis comes to the verdict the running one had. */
    assert_int_equal(r.v.cls, before.v.cls);
}

/* One sample of process pid (name, cgroup, start) at value v under a 640 MiB cgroup limit. */
static void put_proc(struct fixture *f, unsigned i, int32_t pid, int64_t start_ms, char *name,
                     char *cgroup, double v)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    assert_non_null(b);
    int64_t t = T0_MS + (int64_t)i * 1000;
    struct apm_proc_desc d = {.pid = pid, .start_ms = start_ms, .name = name, .cgroup = cgroup};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &d, &idx), 0);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t, (int64_t)(v + noise(i))), 0);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_CGROUP_LIMIT, t, (int64_t)CG_LIMIT),
                     0);
    commit_and_feed(f, b);
}

/*
 * "api" grows into its cgroup limit and is gone; a new "api" starts in the same cgroup and leaks
 * the same way as "batch" (another service, no such past). The new api's leak is not taken for
 * a warm-up: it alerts well before batch's, which the analysis watches for longer.
 */
static void test_analyzer_judges_a_restart_after_the_limit_without_warmup_doubt(void **state)
{
    struct fixture *f = *state;
    char api[] = "api", batch[] = "batch", other_cg[] = "/system.slice/other.service";
    char api_cg[] = "/system.slice/api.service", batch_cg[] = "/system.slice/batch.service";
    for (unsigned i = 0; i < 200; i++)
        put_proc(f, i, 300, T0_MS - 1000, api, api_cg, 200 * MIB + i * 2 * MIB);
    int64_t started = T0_MS + 200500;
    unsigned api_alert = 0, batch_alert = 0;
    for (unsigned i = 201; i < 600 && (api_alert == 0 || batch_alert == 0); i++) {
        double v = 200 * MIB + (i - 201) * MIB;
        put_proc(f, i, 301, started, api, api_cg, v);
        put_proc(f, i, 400, started, batch, batch_cg, v);
        struct apm_verdict_record r;
        verdict_of(f, 301, started, &r);
        assert_true(r.restarted_at_limit);
        if (r.v.alert && api_alert == 0)
            api_alert = i;
        verdict_of(f, 400, started, &r);
        assert_false(r.restarted_at_limit);
        if (r.v.alert && batch_alert == 0)
            batch_alert = i;
    }
    assert_int_not_equal(api_alert, 0);
    assert_int_not_equal(batch_alert, 0);
    assert_true(api_alert + 60 < batch_alert);
    /* The store keeps it with the verdict. */
    assert_true(apm_analyzer_flush(f->an) >= 0);
    struct apm_verdict_record r, stored;
    verdict_of(f, 301, started, &r);
    assert_int_equal(apm_store_verdict_get(f->store, r.series_id, &stored), 0);
    assert_true(stored.restarted_at_limit);
    verdict_of(f, 400, started, &r);
    assert_int_equal(apm_store_verdict_get(f->store, r.series_id, &stored), 0);
    assert_false(stored.restarted_at_limit);
    /* A process of the same name in another cgroup, or long after, is not a restart. */
    put_proc(f, 700, 302, T0_MS + 700000, api, other_cg, 200 * MIB);
    put_proc(f, 701, 303, T0_MS + 701000, api, api_cg, 200 * MIB);
    verdict_of(f, 302, T0_MS + 700000, &r);
    assert_false(r.restarted_at_limit);
    verdict_of(f, 303, T0_MS + 701000, &r);
    assert_false(r.restarted_at_limit);
}

/* A process renamed by its exec is stored under its new name, though its verdict is the same. */
static void test_analyzer_stores_a_new_name_at_once(void **state)
{
    struct fixture *f = *state;
    char before[] = "python3", after[] = "worker.py", cg[] = "/system.slice/w.service";
    for (unsigned i = 0; i < 80; i++)
        put_proc(f, i, 500, T0_MS - 1000, before, cg, 100 * MIB);
    assert_true(apm_analyzer_flush(f->an) >= 1);
    struct apm_verdict_record r, stored;
    verdict_of(f, 500, T0_MS - 1000, &r);
    assert_int_equal(apm_store_verdict_get(f->store, r.series_id, &stored), 0);
    assert_string_equal(stored.name, "python3");
    put_proc(f, 80, 500, T0_MS - 1000, after, cg, 100 * MIB);
    assert_int_equal(apm_analyzer_flush(f->an), 1);
    assert_int_equal(apm_store_verdict_get(f->store, r.series_id, &stored), 0);
    assert_string_equal(stored.name, "worker.py");
}

static void test_analyzer_asks_for_a_trace_once_per_episode(void **state)
{
    struct fixture *f = *state;
    run(f, 0, 300, CG_LIMIT);
    assert_int_equal(f->traces, 1);
    assert_int_equal(f->last_trace.pid, 100);
    assert_int_equal(f->last_trace.start_ms, T0_MS - 5000);
    assert_string_equal(f->last_trace.host, "web-3");
    assert_int_equal(f->last_trace.duration_s, 600);
    assert_true(f->last_trace.confidence >= 0.6);
    /* Still the same episode well past the window: no second request. */
    run(f, 300, 1000, 0);
    assert_int_equal(f->traces, 1);
}

static void test_analyzer_never_asks_with_tracing_disabled(void **state)
{
    struct fixture *f = *state;
    apm_analyzer_free(f->an);
    struct apm_analyzer_options o;
    options(&o);
    o.trace_window_s = 0;
    assert_int_equal(apm_analyzer_new(f->store, &o, on_trace, f, &f->an), 0);
    run(f, 0, 300, CG_LIMIT);
    struct apm_verdict_record r;
    verdict_of(f, 100, T0_MS - 5000, &r);
    assert_int_equal(r.v.cls, APM_CLASS_LEAK);
    assert_int_equal(f->traces, 0);
}

/* A batch of one process (pid 300) with one rss sample at second i. */
static struct apm_batch *newcomer(struct fixture *f, unsigned i)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    assert_non_null(b);
    struct apm_proc_desc p = {.pid = 300, .start_ms = T0_MS, .name = "newcomer"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    assert_int_equal(
        apm_batch_add_sample(b, idx, APM_METRIC_RSS, T0_MS + (int64_t)i * 1000, 100 << 20), 0);
    return b;
}

/*
 * A full analysis forgets series silent for idle_s (process-grace) even when
 * the only samples still coming are of series it refused: their time is the
 * clock that shows the others stopped.
 */
static void test_analyzer_when_full_forgets_the_silent_for_a_newcomer(void **state)
{
    struct fixture *f = *state;
    apm_analyzer_free(f->an);
    struct apm_analyzer_options o;
    options(&o);
    o.max_series = 2;
    o.idle_s = 10;
    assert_int_equal(apm_analyzer_new(f->store, &o, NULL, NULL, &f->an), 0);
    run(f, 0, 5, 0); /* worker and idle: full */
    commit_and_feed(f, newcomer(f, 30));
    struct apm_analyzer_stats st;
    apm_analyzer_get_stats(f->an, &st);
    assert_int_equal(st.series, 2);
    assert_int_equal(st.refused_series, 1);
    assert_true(apm_analyzer_flush(f->an) >= 0);
    apm_analyzer_get_stats(f->an, &st);
    assert_int_equal(st.evicted, 2);
    commit_and_feed(f, newcomer(f, 31));
    struct apm_verdict_record r;
    char id[128];
    snprintf(id, sizeof(id), "web-3:300:%lld", (long long)T0_MS);
    assert_int_equal(apm_analyzer_get(f->an, "web-3", id, APM_METRIC_RSS, &r), 0);
}

static void test_analyzer_refuses_a_bad_analysis_config(void **state)
{
    (void)state;
    struct apm_analyzer_options o;
    options(&o);
    o.analysis.min_buckets = 2;
    struct apm_analyzer *an = NULL;
    assert_int_equal(apm_analyzer_new(NULL, &o, NULL, NULL, &an), -EINVAL);
    assert_null(an);
}

/* ---- the endpoints ---- */

static int get(struct apm_api *api, const char *path, const char *query, json_t **out)
{
    struct apm_http_request req = {.method = "GET", .path = path, .query = query, .body = ""};
    return apm_api_route(api, &req, out);
}

static void test_api_serves_forecasts_and_one_series_analysis(void **state)
{
    struct fixture *f = *state;
    run(f, 0, 300, CG_LIMIT);
    assert_true(apm_analyzer_flush(f->an) >= 2);
    struct apm_api *api = NULL;
    struct apm_api_config cfg = {.store = f->store};
    assert_int_equal(apm_api_new(&cfg, &api), 0);
    assert_int_equal(apm_api_forecast_register(api), 0);

    json_t *o = NULL;
    assert_int_equal(get(api, "/api/v1/forecasts", "", &o), 200);
    json_t *rows = json_object_get(o, "forecasts");
    assert_int_equal(json_array_size(rows), 2);
    /* The leak with a forecast comes first. */
    json_t *first = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(first, "class")), "leak");
    assert_string_equal(json_string_value(json_object_get(first, "name")), "worker");
    assert_string_equal(json_string_value(json_object_get(first, "limit_source")), "cgroup");
    assert_true(json_is_real(json_object_get(first, "exhaustion_t")));
    assert_true(json_real_value(json_object_get(first, "time_to_exhaustion")) > 0);
    assert_true(json_is_array(json_object_get(first, "suspects")));
    json_int_t id = json_integer_value(json_object_get(first, "series"));
    json_decref(o);

    assert_int_equal(get(api, "/api/v1/forecasts", "process=idle", &o), 200);
    rows = json_object_get(o, "forecasts");
    assert_int_equal(json_array_size(rows), 1);
    assert_true(json_is_null(json_object_get(json_array_get(rows, 0), "exhaustion_t")));
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/forecasts", "class=leak&host=web-3&pid=100", &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "forecasts")), 1);
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/forecasts", "host=web-4", &o), 200);
    assert_int_equal(json_array_size(json_object_get(o, "forecasts")), 0);
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/forecasts", "class=leaky", &o), 400);
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/forecasts", "colour=red", &o), 400);
    json_decref(o);

    char path[64];
    snprintf(path, sizeof(path), "/api/v1/series/%lld/analysis", (long long)id);
    assert_int_equal(get(api, path, "", &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "class")), "leak");
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/series/99999/analysis", "", &o), 404);
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/series/x1/analysis", "", &o), 400);
    json_decref(o);
    apm_api_free(api);
}

/* ---- the worker thread behind the writer ---- */

struct loop_fixture {
    uv_loop_t loop;
    uv_timer_t timer;
    struct fixture *f;
    struct apm_writer *writer;
    struct apm_analyzer_worker *worker;
    unsigned next;
    int done;
    int traces;
    int closed;
};

static void on_loop_trace(void *ctx, const struct apm_analyzer_trace *t)
{
    struct loop_fixture *lf = ctx;
    assert_int_equal(t->pid, 100);
    lf->traces++;
}

static void on_done(void *ctx, uint64_t seq, int status)
{
    struct loop_fixture *lf = ctx;
    (void)seq;
    assert_int_equal(status, 0);
    lf->done++;
}

static void on_writer_closed(struct apm_writer *w)
{
    (void)w;
}

static void on_worker_closed(void *ctx)
{
    struct loop_fixture *lf = ctx;
    lf->closed++;
}

static void on_timer(uv_timer_t *t)
{
    struct loop_fixture *lf = t->data;
    if (lf->next < 300) {
        for (unsigned k = 0; k < 50; k++, lf->next++)
            assert_int_equal(apm_writer_submit(lf->writer, &lf->f->agent,
                                               tick(lf->f, lf->next, CG_LIMIT), on_done, lf),
                             0);
        return;
    }
    if (lf->done < 300 || lf->traces == 0)
        return;
    /* Closing skips what is still queued: wait until the worker has fed all 300. */
    struct apm_analyzer_worker_stats st;
    apm_analyzer_worker_get_stats(lf->worker, &st);
    if (st.batches < 300)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    apm_writer_close(lf->writer, on_writer_closed);
    apm_analyzer_worker_close(lf->worker, on_worker_closed, lf);
}

static void test_worker_analyses_committed_batches_off_the_loop(void **state)
{
    struct fixture *f = *state;
    struct loop_fixture lf = {.f = f};
    assert_int_equal(uv_loop_init(&lf.loop), 0);
    struct apm_analyzer_options o;
    options(&o);
    assert_int_equal(
        apm_analyzer_worker_new(&lf.loop, f->store, &o, 0.05, on_loop_trace, &lf, &lf.worker), 0);
    assert_int_equal(apm_writer_new(&lf.loop, f->store, 0, &lf.writer), 0);
    apm_writer_set_commit_hook(lf.writer, apm_analyzer_worker_hook, lf.worker);
    uv_timer_init(&lf.loop, &lf.timer);
    lf.timer.data = &lf;
    uv_timer_start(&lf.timer, on_timer, 1, 5);
    assert_int_equal(uv_run(&lf.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&lf.loop), 0);
    assert_int_equal(lf.traces, 1);
    assert_int_equal(lf.closed, 1);
    struct apm_analyzer_worker_stats st;
    apm_analyzer_worker_get_stats(lf.worker, &st);
    assert_int_equal(st.batches, 300);
    assert_int_equal(st.dropped_batches, 0);
    assert_int_equal(st.skipped_at_stop, 0);
    assert_int_equal(st.analyzer.series, 2);
    apm_analyzer_worker_free(lf.worker);
    /* The verdicts were flushed before the thread ended. */
    int n = 0;
    assert_int_equal(apm_store_verdict_list(f->store, count_row, &n), 0);
    assert_int_equal(n, 2);
}

/*
 * A stop does not wait for the queue: 20,000 batches handed to the worker at once (handing one
 * over is a copy; analysing it takes ten times longer or more) and the worker closed right
 * after. Every batch is either analysed or counted as skipped, and some are skipped.
 */
static void test_worker_stop_skips_the_queue_and_counts_it(void **state)
{
    struct fixture *f = *state;
    struct loop_fixture lf = {.f = f};
    assert_int_equal(uv_loop_init(&lf.loop), 0);
    struct apm_analyzer_options o;
    options(&o);
    assert_int_equal(apm_analyzer_worker_new(&lf.loop, f->store, &o, 60.0, NULL, NULL, &lf.worker),
                     0);
    enum { N = 20000 };
    for (unsigned i = 0; i < N; i++) {
        struct apm_batch *b = tick(f, i, CG_LIMIT);
        apm_analyzer_worker_hook(lf.worker, &f->agent, b);
        apm_batch_free(b);
    }
    uint64_t t0 = apm_mono_ns();
    apm_analyzer_worker_close(lf.worker, on_worker_closed, &lf);
    assert_int_equal(uv_run(&lf.loop, UV_RUN_DEFAULT), 0);
    uint64_t took_ms = (apm_mono_ns() - t0) / 1000000u;
    assert_int_equal(uv_loop_close(&lf.loop), 0);
    assert_int_equal(lf.closed, 1);
    struct apm_analyzer_worker_stats st;
    apm_analyzer_worker_get_stats(lf.worker, &st);
    assert_int_equal(st.batches + st.skipped_at_stop + st.dropped_batches, N);
    assert_int_equal(st.queued_samples, 0);
    assert_true(st.skipped_at_stop > 0);
    print_message("worker stop: %llu fed, %llu skipped, %llu dropped, closed in %llu ms\n",
                  (unsigned long long)st.batches, (unsigned long long)st.skipped_at_stop,
                  (unsigned long long)st.dropped_batches, (unsigned long long)took_ms);
    apm_analyzer_worker_free(lf.worker);
}

/* A series that rises with no verdict yet shows as growing, with its rate and why no verdict. */
static void test_api_shows_a_growing_series_with_its_rate_and_doubt(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r = {.series_id = 77, .metric = APM_METRIC_RSS, .pid = 7};
    snprintf(r.host, sizeof(r.host), "web-3");
    snprintf(r.process_id, sizeof(r.process_id), "web-3:7:1700000000000");
    snprintf(r.name, sizeof(r.name), "app.py");
    r.v.cls = APM_CLASS_GROWING;
    r.v.confidence = 0.4;
    r.v.rate = 10e6;
    r.v.t_last = 1700000070.0;
    r.v.growth_start_t = 1700000000.0;
    r.v.steady = true;
    r.v.doubt = APM_DOUBT_WARMUP;
    r.v.doubt_until_t = 1700000310.0;
    r.v.forecast_t = r.v.forecast_lo_t = r.v.forecast_hi_t = NAN;
    r.evaluated_at = r.v.t_last;
    const struct apm_verdict_record *recs[] = {&r};
    assert_int_equal(apm_store_verdict_put(f->store, recs, 1), 0);
    struct apm_api *api = NULL;
    struct apm_api_config cfg = {.store = f->store};
    assert_int_equal(apm_api_new(&cfg, &api), 0);
    assert_int_equal(apm_api_forecast_register(api), 0);
    json_t *o = NULL;
    assert_int_equal(get(api, "/api/v1/forecasts", "class=growing", &o), 200);
    json_t *row = json_array_get(json_object_get(o, "forecasts"), 0);
    assert_non_null(row);
    assert_string_equal(json_string_value(json_object_get(row, "class")), "growing");
    assert_true(json_real_value(json_object_get(row, "rate")) == 10e6);
    assert_string_equal(json_string_value(json_object_get(row, "doubt")), "warm-up");
    assert_true(json_real_value(json_object_get(row, "verdict_by")) == 1700000310.0);
    assert_true(json_real_value(json_object_get(row, "growing_since")) == 1700000000.0);
    assert_true(json_is_true(json_object_get(row, "steady")));
    json_decref(o);
    assert_int_equal(get(api, "/api/v1/series/77/analysis", "", &o), 200);
    assert_string_equal(json_string_value(json_object_get(o, "doubt")), "warm-up");
    json_decref(o);
    apm_api_free(api);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_analyzer_calls_steady_growth_a_leak_and_flat_memory_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_tells_the_alert_rules_the_cgroup_and_interval,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_prefers_a_cgroup_limit_below_host_memory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_ignores_a_cgroup_limit_above_host_memory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_uses_the_configured_limit_without_a_cgroup,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_verdicts_survive_a_reopen_of_the_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_warms_up_from_rollups_past_the_raw_retention,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_warms_a_new_series_from_the_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_analyzer_judges_a_restart_after_the_limit_without_warmup_doubt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_stores_a_new_name_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_asks_for_a_trace_once_per_episode, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_never_asks_with_tracing_disabled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_analyzer_when_full_forgets_the_silent_for_a_newcomer,
                                        setup, teardown),
        cmocka_unit_test(test_analyzer_refuses_a_bad_analysis_config),
        cmocka_unit_test_setup_teardown(test_api_serves_forecasts_and_one_series_analysis, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_api_shows_a_growing_series_with_its_rate_and_doubt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_analyses_committed_batches_off_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_worker_stop_skips_the_queue_and_counts_it, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
