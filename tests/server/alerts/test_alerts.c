/*
 * The alert engine: lifecycle with hysteresis, one alert per episode, acks,
 * persistence across a reopen without a second notification, the sentence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/text.h"
#include "server/alerts/alert_rules.h"
#include "server/alerts/alert_text.h"
#include "server/alerts/alerts.h"
#include "server/alerts/notify.h"
#include "server/alerts/silence.h"
#include "server/store/store.h"

#define T0 1700000000000LL

struct fx {
    char dir[64];
    struct apm_store *store;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/apm-test-alerts-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char data[128];
    snprintf(data, sizeof(data), "%s/data", f->dir);
    struct apm_store_options so = {.dir = data, .no_sync = true};
    assert_int_equal(apm_store_open(&so, &f->store), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    apm_store_free(f->store);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Parses rules from text written to a file in the fixture's directory. */
static void rules_from(struct fx *f, struct apm_alerts *e, const char *text)
{
    char path[128], err[512] = "";
    snprintf(path, sizeof(path), "%s/rules.conf", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    struct apm_alert_config *c = apm_alert_config_new();
    int rc = apm_alert_config_load_file(c, path, err, sizeof(err));
    if (rc == 0)
        rc = apm_alert_config_finish(c, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    struct apm_alert_rule *rules;
    size_t n;
    apm_alert_config_take_rules(c, &rules, &n);
    apm_alert_config_free(c);
    apm_alerts_set_rules(e, rules, n);
}

static struct apm_alerts *engine(struct fx *f, struct apm_notify *n)
{
    struct apm_alerts_options o = {
        .store = f->store, .notify = n, .manual = true, .stale_ms = 600000};
    struct apm_alerts *e = NULL;
    assert_int_equal(apm_alerts_new(&o, &e), 0);
    return e;
}

static struct apm_alert_input leak_input(const char *name, enum apm_class cls, double conf)
{
    struct apm_alert_input in = {
        .series_id = 7,
        .metric = "rss",
        .host = "web-3",
        .process_id = "web-3:42:1699999940000",
        .process_name = name,
        .pid = 42,
        .value = 1.5 * 1024 * 1024 * 1024,
        .limit_source = "cgroup",
    };
    in.verdict.cls = cls;
    in.verdict.confidence = conf;
    in.verdict.rate = 38.0 * 1024 * 1024 / 3600;
    return in;
}

static size_t listed(struct apm_alerts *e, enum apm_alert_filter flt, struct apm_alert *out)
{
    return apm_alerts_list(e, flt, out, 8);
}

static void observe_at(struct apm_alerts *e, enum apm_class cls, double conf, int64_t s)
{
    struct apm_alert_input in = leak_input("worker", cls, conf);
    apm_alerts_observe(e, &in, T0 + s * 1000);
}

static void test_alerts_pending_firing_resolved_with_hysteresis(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\nfor = 10s\nresolve-for = 20s\n");
    struct apm_alert a[8];
    observe_at(e, APM_CLASS_LEAK, 0.9, 0);
    assert_int_equal(listed(e, APM_FILTER_PENDING, a), 1);
    observe_at(e, APM_CLASS_LEAK, 0.9, 5);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 0);
    observe_at(e, APM_CLASS_LEAK, 0.9, 10);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    uint64_t first = a[0].id;
    /* Within the band below the firing confidence nothing changes. */
    observe_at(e, APM_CLASS_LEAK, 0.5, 12);
    observe_at(e, APM_CLASS_STABLE, 0.9, 15);
    observe_at(e, APM_CLASS_STABLE, 0.9, 30);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    /* A flap back on resets the off timer. */
    observe_at(e, APM_CLASS_LEAK, 0.9, 31);
    observe_at(e, APM_CLASS_STABLE, 0.9, 32);
    observe_at(e, APM_CLASS_STABLE, 0.9, 50);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    observe_at(e, APM_CLASS_STABLE, 0.9, 52);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 0);
    assert_int_equal(listed(e, APM_FILTER_RESOLVED, a), 1);
    assert_int_equal(a[0].id, first);
    /* A new episode is a new alert. */
    observe_at(e, APM_CLASS_LEAK, 0.9, 60);
    observe_at(e, APM_CLASS_LEAK, 0.9, 70);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_true(a[0].id != first);
    apm_alerts_free(e);
}

static void test_alerts_pending_that_ends_is_forgotten(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\nfor = 1m\n");
    struct apm_alert a[8];
    observe_at(e, APM_CLASS_LEAK, 0.9, 0);
    observe_at(e, APM_CLASS_BLOAT, 0.9, 5);
    assert_int_equal(listed(e, APM_FILTER_ALL, a), 0);
    assert_int_equal(apm_alerts_run_once(e, T0 + 6000), 0);
    apm_alerts_free(e);
}

static void test_alerts_late_verdict_does_not_reopen_a_stale_episode(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    struct apm_alert a[8];
    struct apm_alert_input in = leak_input("worker", APM_CLASS_LEAK, 0.9);
    in.verdict.t_last = (double)T0 / 1000.0;
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    /* The series goes silent for an hour: the alert ends as stale. */
    const int64_t hour = 3600 * 1000;
    assert_int_equal(apm_alerts_run_once(e, T0 + hour), 0);
    assert_int_equal(listed(e, APM_FILTER_RESOLVED, a), 1);
    /* A verdict on data from before that end arrives late: no new episode. */
    in.verdict.t_last = (double)(T0 + 3000) / 1000.0;
    apm_alerts_observe(e, &in, T0 + hour + 1000);
    assert_int_equal(listed(e, APM_FILTER_ACTIVE, a), 0);
    /* Data from after the end does start one. */
    in.verdict.t_last = (double)(T0 + hour + 2000) / 1000.0;
    apm_alerts_observe(e, &in, T0 + hour + 2000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    apm_alerts_free(e);
}

static void test_alerts_unjudged_series_neither_fires_nor_resolves(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\nresolve-for = 1s\n");
    struct apm_alert a[8];
    observe_at(e, APM_CLASS_LEAK, 0.9, 0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    /* After a restart the analysis warms up: stable with no confidence is no opinion. */
    observe_at(e, APM_CLASS_STABLE, 0.0, 10);
    observe_at(e, APM_CLASS_STABLE, 0.0, 20);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    apm_alerts_free(e);
}

static void test_alerts_matchers_select_processes(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule api]\nkind = leak\nprocess = api|web\nhost = web-.*\n");
    struct apm_alert a[8];
    struct apm_alert_input in = leak_input("worker", APM_CLASS_LEAK, 0.9);
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_ALL, a), 0);
    in.process_name = "api";
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_string_equal(a[0].process_name, "api");
    apm_alerts_free(e);
}

static void test_alerts_ack_expires(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    struct apm_alert a[8];
    observe_at(e, APM_CLASS_LEAK, 0.9, 0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_int_equal(apm_alerts_ack(e, a[0].id, 3600 * 1000, "deploy at 5", T0), 0);
    assert_int_equal(apm_alerts_ack(e, 999, 1000, "", T0), APM_E_NOTFOUND);
    assert_int_equal(apm_alerts_get(e, a[0].id, &a[1]), 0);
    assert_true(apm_alert_acked(&a[1], T0 + 3599 * 1000));
    assert_false(apm_alert_acked(&a[1], T0 + 3600 * 1000));
    assert_string_equal(a[1].ack_comment, "deploy at 5");
    apm_alerts_free(e);
}

/* What an alert shows reaches terminals, webhooks and hook environments: never a control byte. */
static void test_alerts_strings_are_kept_free_of_control_characters(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    struct apm_alert a[8];
    /* A name stored before ingest cleaned strings, then an ack comment from the API. */
    struct apm_alert_input in = leak_input("evil\x1b[2J\xff", APM_CLASS_LEAK, 0.9);
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_int_equal(apm_alerts_ack(e, a[0].id, 3600 * 1000, "ok\nFAKE: resolved\x07", T0), 0);
    assert_int_equal(apm_alerts_get(e, a[0].id, &a[1]), 0);
    assert_string_equal(a[1].process_name, "evil" APM_TEXT_REPLACEMENT "[2J" APM_TEXT_REPLACEMENT);
    assert_string_equal(a[1].ack_comment,
                        "ok" APM_TEXT_REPLACEMENT "FAKE: resolved" APM_TEXT_REPLACEMENT);
    for (const unsigned char *p = (const unsigned char *)a[1].summary; *p; p++)
        assert_true(*p >= 0x20 && *p != 0x7f);
    apm_alerts_free(e);
}

static void test_alerts_threshold_and_exhaustion(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e,
               "[rule big]\nkind = threshold\nabove = 70%\n"
               "[rule soon]\nkind = exhaustion\nhorizon = 2h\n");
    struct apm_alert a[8];
    struct apm_alert_input in = leak_input("worker", APM_CLASS_LEAK, 0.9);
    in.verdict.limit = 2.0 * 1024 * 1024 * 1024;
    in.verdict.has_forecast = true;
    in.verdict.t_last = (double)T0 / 1000;
    in.verdict.forecast_t = in.verdict.t_last + 5 * 3600;
    in.verdict.forecast_lo_t = in.verdict.t_last + 3 * 3600;
    in.verdict.forecast_hi_t = in.verdict.t_last + 8 * 3600;
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_string_equal(a[0].rule, "big");
    in.verdict.forecast_lo_t = in.verdict.t_last + 3600;
    apm_alerts_observe(e, &in, T0 + 1000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 2);
    assert_int_equal(a[0].severity, APM_SEVERITY_CRITICAL);
    apm_alerts_free(e);
}

/* A steady growth that will exhaust host memory is urgent before the analysis calls it a leak. */
static void test_alerts_exhaustion_fires_on_a_steady_growth_without_a_verdict(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\n[rule exhaustion]\nkind = exhaustion\n");
    struct apm_alert a[8];
    struct apm_alert_input in = leak_input("app.py", APM_CLASS_GROWING, 0.5);
    in.limit_source = "host";
    in.verdict.rate = 10e6;
    in.verdict.limit = 24.0 * 1024 * 1024 * 1024;
    in.verdict.has_forecast = true;
    in.verdict.t_last = (double)T0 / 1000;
    in.verdict.forecast_t = in.verdict.t_last + 2500;
    in.verdict.forecast_lo_t = in.verdict.t_last + 2000;
    in.verdict.forecast_hi_t = INFINITY;
    in.verdict.growth_start_t = in.verdict.t_last - 110;
    in.verdict.doubt = APM_DOUBT_WARMUP;
    in.verdict.doubt_until_t = in.verdict.t_last + 240;
    /* Not steady yet: the rate is not trusted, nothing fires. */
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_ALL, a), 0);
    in.verdict.steady = true;
    apm_alerts_observe(e, &in, T0 + 1000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_string_equal(a[0].rule, "exhaustion");
    assert_string_equal(a[0].cls, "growing");
    assert_string_equal(a[0].doubt, "warm-up");
    assert_non_null(strstr(a[0].summary, "grows ~34 GiB/h"));
    assert_non_null(strstr(a[0].summary, "; growing for 1m 50s, no leak verdict yet (warm-up "
                                         "doubt for 4m 0s more)"));
    assert_false(a[0].site_steady);
    /* A verdict between buckets without a forecast holds while it grows. */
    in.verdict.has_forecast = false;
    for (int s = 2; s < 100; s++)
        apm_alerts_observe(e, &in, T0 + s * 1000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    /* A verdict that wavers to "not judged" for a moment changes neither state nor sentence. */
    struct apm_alert_input waver = in;
    waver.verdict.cls = APM_CLASS_STABLE;
    waver.verdict.confidence = 0;
    waver.verdict.rate = 0;
    waver.verdict.steady = false;
    apm_alerts_observe(e, &waver, T0 + 100000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_string_equal(a[0].doubt, "warm-up");
    assert_non_null(strstr(a[0].summary, "grows ~34 GiB/h"));
    apm_alerts_free(e);
}

/* A start-up growth the probe shows piling up at one line is urgent before its warm-up doubt ends.
 */
static void test_alerts_exhaustion_fires_when_a_python_site_explains_a_startup_growth(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule exhaustion]\nkind = exhaustion\n");
    struct apm_alert a[8];
    struct apm_alert_input in = leak_input("app.py", APM_CLASS_GROWING, 1.0);
    in.limit_source = "host";
    in.verdict.rate = 10e6;
    in.verdict.limit = 24.0 * 1024 * 1024 * 1024;
    in.verdict.has_forecast = true;
    in.verdict.t_last = (double)T0 / 1000;
    in.verdict.forecast_t = in.verdict.t_last + 2500;
    in.verdict.forecast_lo_t = in.verdict.t_last + 2400;
    in.verdict.forecast_hi_t = in.verdict.t_last + 2600;
    in.verdict.growth_start_t = in.verdict.t_last - 90;
    in.verdict.doubt = APM_DOUBT_WARMUP;
    in.verdict.doubt_until_t = in.verdict.t_last + 1100;
    in.suspect_site = "app.py:12";
    in.suspect_rate = 9.8e6;
    apm_alerts_observe(e, &in, T0); /* two points so far: a rate, not yet a line */
    assert_int_equal(listed(e, APM_FILTER_ALL, a), 0);
    in.suspect_line = true;
    apm_alerts_observe(e, &in, T0 + 1000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_true(a[0].site_steady);
    assert_non_null(strstr(a[0].summary, "; growing for 1m 30s, no leak verdict yet (warm-up "
                                         "doubt for 18m 20s more); top suspect `app.py:12` +33 "
                                         "GiB/h accounts for 98 % of the growth, which makes its "
                                         "rate trusted"));
    apm_alerts_free(e);
}

/*
 * A leak whose verdict falls back to growing, or whose confidence dips, while
 * the leak goes on does not resolve (and fire again as a second alert).
 */
static void test_alerts_leak_holds_while_the_series_still_grows(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\nresolve-for = 5s\n");
    struct apm_alert a[8];
    observe_at(e, APM_CLASS_LEAK, 0.9, 0);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    uint64_t id = a[0].id;
    for (int s = 1; s < 60; s++)
        observe_at(e, s % 2 ? APM_CLASS_GROWING : APM_CLASS_LEAK, s % 2 ? 0.4 : 0.2, s);
    observe_at(e, APM_CLASS_LEAK, 0.9, 60);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_int_equal(a[0].id, id);
    assert_int_equal(listed(e, APM_FILTER_RESOLVED, a), 0);
    apm_alerts_free(e);
}

/* One Python site growing in a line with most of a steady growth confirms the leak. */
static void test_alerts_leak_confirmed_by_a_python_site_says_so(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    struct apm_alert a[8];
    struct apm_alert_input in = leak_input("app.py", APM_CLASS_GROWING, 0.5);
    in.verdict.rate = 10e6;
    in.verdict.steady = true;
    in.verdict.doubt = APM_DOUBT_EVIDENCE;
    in.verdict.doubt_until_t = NAN;
    in.verdict.t_last = (double)T0 / 1000;
    in.verdict.growth_start_t = in.verdict.t_last - 120;
    in.suspect_site = "app.py:12";
    in.suspect_rate = 9.5e6;
    apm_alerts_observe(e, &in, T0);
    assert_int_equal(listed(e, APM_FILTER_ALL, a), 0); /* not yet seen in a line */
    in.suspect_line = true;
    apm_alerts_observe(e, &in, T0 + 1000);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_string_equal(a[0].confirmed, "python-site");
    assert_non_null(
        strstr(a[0].summary, "; growing for 2m 0s, no leak verdict yet (evidence doubt)"));
    assert_non_null(strstr(a[0].summary, "; top suspect `app.py:12` +32 GiB/h accounts for 95 % of "
                                         "the growth, which confirms the leak"));
    apm_alerts_free(e);
}

static void test_alerts_sentence_names_rate_limit_forecast_and_suspect(void **state)
{
    (void)state;
    struct apm_alert a = {.kind = APM_ALERT_LEAK, .pid = 42, .native = -1};
    snprintf(a.process_id, sizeof(a.process_id), "web-3:42:1");
    snprintf(a.process_name, sizeof(a.process_name), "worker");
    snprintf(a.host, sizeof(a.host), "web-3");
    snprintf(a.limit_source, sizeof(a.limit_source), "cgroup");
    snprintf(a.suspect, sizeof(a.suspect), "app/cache.py:88");
    a.rate = 38.0 * 1024 * 1024 / 3600;
    a.suspect_rate = 31.0 * 1024 * 1024 / 3600;
    a.value = 1.5 * 1024 * 1024 * 1024;
    a.limit = 2.0 * 1024 * 1024 * 1024;
    a.seen_ms = T0;
    a.has_forecast = true;
    double now = (double)T0 / 1000;
    a.forecast_t = now + 5 * 3600 + 600;
    a.forecast_lo_t = now + 3 * 3600 + 2400;
    a.forecast_hi_t = now + 7 * 3600 + 1800;
    char buf[APM_ALERT_SUMMARY_MAX];
    apm_alert_text_summary(&a, buf, sizeof(buf));
    assert_string_equal(buf, "`worker` (pid 42) on `web-3` leaks ~38 MiB/h (now 1.5 GiB), will hit "
                             "its 2.0 GiB cgroup limit in 5h 10m (3h 40m - 7h 30m); top suspect "
                             "`app/cache.py:88` +31 MiB/h");
    a.native = 1;
    a.forecast_hi_t = INFINITY;
    apm_alert_text_summary(&a, buf, sizeof(buf));
    assert_non_null(strstr(buf, "(3h 40m at the earliest)"));
    assert_non_null(strstr(buf, "native code or fragmentation"));
    assert_null(strstr(buf, "replaced"));
    a.restarted_at_limit = true;
    apm_alert_text_summary(&a, buf, sizeof(buf));
    assert_non_null(strstr(buf, "; it replaced a process of its name that reached its limit"));
    /* A sampled suspect is an estimate, and says so. */
    a.suspect_rate_err = 0.04 * a.suspect_rate;
    apm_alert_text_summary(&a, buf, sizeof(buf));
    assert_non_null(strstr(buf, "top suspect `app/cache.py:88` +31 MiB/h \u00b1 4 %"));
}

/* An exec hook that appends one line per call: counts notifications. */
static struct apm_notify *counting_notify(struct fx *f)
{
    char script[128], cmd[512];
    snprintf(script, sizeof(script), "%s/hook.sh", f->dir);
    snprintf(cmd, sizeof(cmd), "printf '#!/bin/sh\\necho \"$1 $APM_ALERT_ID\" >> %s/calls\\n' > %s",
             f->dir, script);
    assert_int_equal(system(cmd), 0);
    chmod(script, 0755);
    struct apm_notify_target t = {.type = APM_NOTIFY_EXEC,
                                  .timeout_ms = 5000,
                                  .max_attempts = 1,
                                  .backoff_ms = 10,
                                  .backoff_max_ms = 10};
    snprintf(t.name, sizeof(t.name), "hook");
    snprintf(t.command, sizeof(t.command), "%s", script);
    struct apm_notify_options o = {.targets = &t, .ntargets = 1};
    struct apm_notify *n = NULL;
    assert_int_equal(apm_notify_new(&o, &n), 0);
    return n;
}

static int count_calls(struct fx *f)
{
    char path[128], line[128];
    snprintf(path, sizeof(path), "%s/calls", f->dir);
    FILE *fp = fopen(path, "r");
    int n = 0;
    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL)
        n++;
    if (fp != NULL)
        fclose(fp);
    return n;
}

static void test_alerts_persisted_firing_survives_reopen_without_renotify(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, counting_notify(f));
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    struct apm_alert_input in = leak_input("worker", APM_CLASS_LEAK, 0.9);
    in.restarted_at_limit = true;
    apm_alerts_observe(e, &in, T0);
    struct apm_alert a[8];
    for (int i = 0;
         i < 200 && (listed(e, APM_FILTER_FIRING, a) != 1 || a[0].notified != APM_ALERT_FIRING);
         i++) {
        assert_int_equal(apm_alerts_run_once(e, T0 + 1000), 0);
        usleep(20000);
    }
    assert_int_equal(a[0].notified, APM_ALERT_FIRING);
    assert_int_equal(apm_alerts_run_once(e, T0 + 1000), 0);
    assert_int_equal(count_calls(f), 1);
    apm_alerts_free(e);

    e = engine(f, counting_notify(f));
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_true(a[0].restarted_at_limit);
    assert_non_null(strstr(a[0].summary, "it replaced a process of its name"));
    observe_at(e, APM_CLASS_LEAK, 0.9, 2);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(apm_alerts_run_once(e, T0 + 3000), 0);
        usleep(20000);
    }
    assert_int_equal(count_calls(f), 1);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    apm_alerts_free(e);
}

/* Runs rounds at now until the hook has been called want times (or gives up). */
static void rounds_until_calls(struct fx *f, struct apm_alerts *e, int64_t now, int want)
{
    for (int i = 0; i < 200 && count_calls(f) < want; i++) {
        assert_int_equal(apm_alerts_run_once(e, now), 0);
        usleep(20000);
    }
    /* A few more rounds: nothing more may go out. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(apm_alerts_run_once(e, now), 0);
        usleep(20000);
    }
}

static void add_silence(struct apm_alerts *e, const char *m0, const char *m1, int64_t now,
                        int64_t for_ms, uint64_t *id)
{
    struct apm_silence s;
    memset(&s, 0, sizeof(s));
    char err[256] = "";
    assert_int_equal(apm_silence_matcher_parse(m0, &s.m[0], err, sizeof(err)), 0);
    assert_int_equal(apm_silence_matcher_parse(m1, &s.m[1], err, sizeof(err)), 0);
    s.n = 2;
    s.starts_ms = now;
    s.ends_ms = now + for_ms;
    if (apm_alerts_silence_add(e, &s, now, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    *id = s.id;
}

static void test_alerts_silence_mutes_until_it_is_expired_and_survives_reopen(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, counting_notify(f));
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    /* A silence made before the alert exists mutes it. */
    uint64_t sid = 0;
    add_silence(e, "alertname=leak", "process=~work.*", T0, 3600000, &sid);
    assert_int_equal(sid, 1);
    observe_at(e, APM_CLASS_LEAK, 0.9, 1);
    rounds_until_calls(f, e, T0 + 2000, 1);
    struct apm_alert a[8];
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_int_equal(a[0].silenced_by, sid);
    assert_int_equal(a[0].notified, APM_ALERT_PENDING);
    assert_int_equal(count_calls(f), 0);
    struct apm_alerts_stats st;
    apm_alerts_get_stats(e, &st);
    assert_int_equal(st.silenced, 1);
    assert_int_equal(st.silences_active, 1);
    /* A silence that does not match leaves other alerts alone. */
    uint64_t other = 0;
    add_silence(e, "alertname=leak", "host=db-1", T0 + 2000, 3600000, &other);
    /* A manual engine has no last round at free: this one writes the silence. */
    assert_int_equal(apm_alerts_run_once(e, T0 + 2500), 0);
    apm_alerts_free(e);

    /* Both silences are in the store: after a reopen the alert is still silenced. */
    e = engine(f, counting_notify(f));
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    observe_at(e, APM_CLASS_LEAK, 0.9, 3);
    rounds_until_calls(f, e, T0 + 4000, 1);
    assert_int_equal(count_calls(f), 0);
    struct apm_silence sl[4];
    assert_int_equal(apm_alerts_silence_list(e, sl, 4), 2);
    assert_int_equal(sl[0].id, other);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_int_equal(a[0].silenced_by, sid);
    /* Expired early: the still firing alert is notified now, once. */
    assert_int_equal(apm_alerts_silence_expire(e, sid, T0 + 5000), 0);
    assert_int_equal(apm_alerts_silence_expire(e, sid, T0 + 5000), 1);
    rounds_until_calls(f, e, T0 + 6000, 1);
    assert_int_equal(count_calls(f), 1);
    assert_int_equal(listed(e, APM_FILTER_FIRING, a), 1);
    assert_int_equal(a[0].silenced_by, 0);
    assert_int_equal(a[0].notified, APM_ALERT_FIRING);
    apm_alerts_free(e);
}

/* The engine matches an alert again only when something changed: each such change is seen. */
static void test_alerts_silence_follows_its_start_end_and_rule_labels(void **state)
{
    struct fx *f = *state;
    struct apm_alerts *e = engine(f, NULL);
    rules_from(f, e, "[rule leak]\nkind = leak\n");
    observe_at(e, APM_CLASS_LEAK, 0.9, 0);
    assert_int_equal(apm_alerts_run_once(e, T0 + 500), 0);
    /* Starts in 10 s, lasts 10 s. */
    struct apm_silence s;
    memset(&s, 0, sizeof(s));
    char err[256] = "";
    assert_int_equal(apm_silence_matcher_parse("team=payments", &s.m[0], err, sizeof(err)), 0);
    s.n = 1;
    s.starts_ms = T0 + 10000;
    s.ends_ms = T0 + 20000;
    assert_int_equal(apm_alerts_silence_add(e, &s, T0 + 1000, err, sizeof(err)), 0);
    struct apm_alert a[8];
    int64_t at[] = {2000, 11000, 15000, 21000};
    uint64_t want[] = {0, 0, 0, 0};
    for (size_t i = 0; i < 4; i++) {
        if (i == 2) /* the rule gains the label the silence matches */
            rules_from(f, e, "[rule leak]\nkind = leak\nlabels = team=payments\n");
        want[i] = i == 2 ? s.id : 0;
        assert_int_equal(apm_alerts_run_once(e, T0 + at[i]), 0);
        assert_int_equal(listed(e, APM_FILTER_ACTIVE, a), 1);
        assert_int_equal(a[0].silenced_by, want[i]);
    }
    apm_alerts_free(e);
}

static void test_alerts_silences_over_the_cap_are_refused_and_counted(void **state)
{
    struct fx *f = *state;
    struct apm_alerts_options o = {.store = f->store, .manual = true, .silences_max = 1};
    struct apm_alerts *e = NULL;
    assert_int_equal(apm_alerts_new(&o, &e), 0);
    uint64_t id = 0;
    add_silence(e, "alertname=leak", "host=a", T0, 60000, &id);
    struct apm_silence s;
    memset(&s, 0, sizeof(s));
    char err[256] = "";
    assert_int_equal(apm_silence_matcher_parse("host=b", &s.m[0], err, sizeof(err)), 0);
    s.n = 1;
    s.starts_ms = T0;
    s.ends_ms = T0 + 60000;
    assert_int_equal(apm_alerts_silence_add(e, &s, T0, err, sizeof(err)), APM_E_LIMIT);
    assert_non_null(strstr(err, "silences-max"));
    /* Validation names the field before the cap is looked at. */
    s.ends_ms = T0 - 1;
    assert_int_equal(apm_alerts_silence_add(e, &s, T0, err, sizeof(err)), APM_E_PARSE);
    assert_non_null(strstr(err, "ends_at"));
    struct apm_alerts_stats st;
    apm_alerts_get_stats(e, &st);
    assert_int_equal(st.silences_refused, 1);
    apm_alerts_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alerts_pending_firing_resolved_with_hysteresis, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_alerts_pending_that_ends_is_forgotten, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_alerts_late_verdict_does_not_reopen_a_stale_episode,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_unjudged_series_neither_fires_nor_resolves,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_matchers_select_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_strings_are_kept_free_of_control_characters,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_ack_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_alerts_exhaustion_fires_on_a_steady_growth_without_a_verdict, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_alerts_exhaustion_fires_when_a_python_site_explains_a_startup_growth, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_alerts_leak_holds_while_the_series_still_grows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_alerts_leak_confirmed_by_a_python_site_says_so, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_alerts_threshold_and_exhaustion, setup, teardown),
        cmocka_unit_test(test_alerts_sentence_names_rate_limit_forecast_and_suspect),
        cmocka_unit_test_setup_teardown(
            test_alerts_persisted_firing_survives_reopen_without_renotify, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_alerts_silence_mutes_until_it_is_expired_and_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_silence_follows_its_start_end_and_rule_labels,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_silences_over_the_cap_are_refused_and_counted,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
