/*
 * The alert feed between the analysis and the engine: a leak verdict of a
 * process whose probe data sits in a real store becomes an alert that names
 * the top suspect site with its rate, says native or Python, matches rules
 * on the cgroup, and takes the sampling interval for its hysteresis.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/alerts/alert_feed.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#define PID_ID "web-3:42:1699999000000"
#define LEAK_RATE 10240.0 /* bytes per second */
#define GIB (1024.0 * 1024.0 * 1024.0)

struct fixture {
    char dir[64];
    char conf[96];
    struct apm_store *store;
    struct apm_alert_feed *feed;
    struct apm_agent_ident agent;
    uint64_t seq;
};

/* The history ends a second ago: the sentence counts time left from now. */
static int64_t t0;

static const char *const RULES = "[rule leak]\n"
                                 "kind = leak\n"
                                 "[rule native]\n"
                                 "kind = native\n"
                                 "[rule service-cgroup]\n"
                                 "kind = leak\n"
                                 "cgroup = /system\\.slice/.*\\.service\n"
                                 "[rule other-cgroup]\n"
                                 "kind = leak\n"
                                 "cgroup = /kubepods/.*\n";

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    t0 = apm_now_ms() - 61000;
    strcpy(f->dir, "/tmp/apm-test-alert-feed-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->conf, sizeof(f->conf), "%s/collector.conf", f->dir);
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fputs(RULES, fp);
    fclose(fp);
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    strcpy(f->agent.boot_id, "boot-a");
    strcpy(f->agent.version, "0.1.0");
    f->agent.instance = 7;
    struct apm_store_options opt = {.dir = f->dir, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    char err[512] = "";
    struct apm_alert_config *ac = apm_alert_config_new();
    assert_non_null(ac);
    assert_int_equal(apm_alert_config_load_file(ac, f->conf, err, sizeof(err)), 0);
    assert_int_equal(apm_alert_config_finish(ac, err, sizeof(err)), 0);
    assert_int_equal(apm_alert_feed_new(f->store, ac, "127.0.0.1:7412", &f->feed), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_alert_feed_free(f->feed);
    apm_store_free(f->store);
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

/*
 * Sixty one-second diffs of process 42: app/cache.py:88 leaks at LEAK_RATE,
 * app/db.py:10 stays flat; traced memory grows traced_growth bytes a second.
 */
static void put_probe_history(struct fixture *f, double traced_growth)
{
    for (int i = 1; i <= 60; i++) {
        struct apm_batch *b = apm_batch_new(++f->seq);
        struct apm_proc_desc p = {.pid = 42, .start_ms = 1699999000000LL, .name = "worker.py"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
        struct apm_trace_diff *d = NULL;
        assert_int_equal(apm_batch_append_diff(b, idx, 2, &d), 0);
        d->t_ms = t0 + i * 1000LL;
        d->probe_seq = (uint64_t)i;
        d->session = 1;
        d->frames = 1;
        d->interval_ms = 1000;
        d->traced_current = 8000000 + (int64_t)(i * traced_growth);
        assert_int_equal(apm_site_set(&d->sites[0], "app/cache.py", 88, 0), 0);
        d->sites[0].size = (int64_t)(i * LEAK_RATE);
        d->sites[0].size_diff = (int64_t)LEAK_RATE;
        assert_int_equal(apm_site_set(&d->sites[1], "app/db.py", 10, 0), 0);
        d->sites[1].size = 500000;
        struct apm_store_txn *t = NULL;
        assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
        assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
        assert_int_equal(apm_store_txn_commit(t), 0);
        apm_batch_free(b);
    }
}

/* A leak verdict of process 42 at the end of the history, as the analyzer hands it over. */
static void leak_verdict(struct apm_verdict_record *r)
{
    memset(r, 0, sizeof(*r));
    r->series_id = 9;
    r->metric = APM_METRIC_RSS;
    strcpy(r->host, "web-3");
    strcpy(r->process_id, PID_ID);
    strcpy(r->name, "worker.py");
    r->pid = 42;
    r->start_ms = 1699999000000LL;
    r->value = 0.5 * GIB;
    r->limit_source = APM_LIMIT_CGROUP;
    double now = (double)(t0 + 60000) / 1000.0;
    /* 20 s more than the round figures, so that the second since then does not show. */
    r->v = (struct apm_verdict){.cls = APM_CLASS_LEAK,
                                .confidence = 0.9,
                                .rate = LEAK_RATE,
                                .alert = true,
                                .has_forecast = true,
                                .forecast_t = now + 5 * 3600 + 600 + 20,
                                .forecast_lo_t = now + 3 * 3600 + 2400 + 20,
                                .forecast_hi_t = now + 7 * 3600 + 1800 + 20,
                                .limit = GIB,
                                .t_last = now,
                                .samples = 600};
    r->evaluated_at = now;
}

/* Hands r to the feed with what the analyzer adds: the cgroup and a 1 s interval. */
static void judge(struct fixture *f, const struct apm_verdict_record *r)
{
    struct apm_analyzer_verdict msg = {
        .rec = r, .cgroup = "/system.slice/worker.service", .interval_s = 1.0};
    apm_alert_feed_verdict(f->feed, &msg);
}

static bool firing(struct fixture *f, const char *rule, struct apm_alert *out)
{
    struct apm_alert list[16];
    size_t n = apm_alerts_list(apm_alert_feed_engine(f->feed), APM_FILTER_FIRING, list, 16);
    for (size_t i = 0; i < n && i < 16; i++) {
        if (strcmp(list[i].rule, rule) == 0) {
            *out = list[i];
            return true;
        }
    }
    return false;
}

static void test_leak_alert_names_the_top_suspect_and_says_python(void **state)
{
    struct fixture *f = *state;
    put_probe_history(f, LEAK_RATE);
    struct apm_verdict_record r;
    leak_verdict(&r);
    judge(f, &r);
    struct apm_alert a;
    assert_true(firing(f, "leak", &a));
    assert_string_equal(a.suspect, "app/cache.py:88");
    assert_true(fabs(a.suspect_rate - LEAK_RATE) < 0.1 * LEAK_RATE);
    assert_int_equal(a.native, 0);
    assert_true(a.interval_s == 1.0);
    assert_string_equal(a.cgroup, "/system.slice/worker.service");
    /* PRODUCT.md's sentence: process, host, rate, limit, time left with bounds, suspect. */
    assert_non_null(strstr(a.summary, "`worker.py` (pid 42) on `web-3` leaks ~35 MiB/h"));
    assert_non_null(
        strstr(a.summary, "will hit its 1.0 GiB cgroup limit in 5h 10m (3h 40m - 7h 30m)"));
    assert_non_null(strstr(a.summary, "; top suspect `app/cache.py:88` +35 MiB/h"));
    assert_non_null(strstr(a.summary, "; Python's heap grows with it"));
    assert_null(strstr(a.summary, "native"));
    /* Python's traced memory grows with RSS: the native rule stays quiet. */
    assert_false(firing(f, "native", &a));
}

static void test_native_rule_fires_when_traced_memory_stays_flat(void **state)
{
    struct fixture *f = *state;
    put_probe_history(f, 0);
    struct apm_verdict_record r;
    leak_verdict(&r);
    judge(f, &r);
    struct apm_alert a;
    assert_true(firing(f, "native", &a));
    assert_int_equal(a.native, 1);
    assert_non_null(strstr(a.summary, "native code or fragmentation"));
}

static void test_no_probe_data_no_suspect_and_no_native_verdict(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r;
    leak_verdict(&r);
    judge(f, &r);
    struct apm_alert a;
    assert_true(firing(f, "leak", &a));
    assert_string_equal(a.suspect, "");
    assert_int_equal(a.native, -1);
    assert_false(firing(f, "native", &a));
}

static void test_cgroup_matchers_select_by_the_process_cgroup(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r;
    leak_verdict(&r);
    judge(f, &r);
    struct apm_alert a;
    assert_true(firing(f, "service-cgroup", &a));
    assert_false(firing(f, "other-cgroup", &a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_leak_alert_names_the_top_suspect_and_says_python,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_native_rule_fires_when_traced_memory_stays_flat, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_probe_data_no_suspect_and_no_native_verdict, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_matchers_select_by_the_process_cgroup, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
