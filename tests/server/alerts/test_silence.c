/*
 * Silences (server/alerts/silence.c): the matcher syntax, validation with the
 * field named, anchored and bounded regexes, matching an alert's labels, the
 * stored record, and the set's cap, expiry and pruning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/alerts/silence.h"

#define T0 1700000000000LL
#define HOUR 3600000LL

static struct apm_silence_matcher parsed(const char *text)
{
    struct apm_silence_matcher m;
    char err[160] = "";
    if (apm_silence_matcher_parse(text, &m, err, sizeof(err)) != 0)
        fail_msg("%s: %s", text, err);
    return m;
}

static void refused(const char *text, const char *why)
{
    struct apm_silence_matcher m;
    char err[160] = "";
    assert_int_equal(apm_silence_matcher_parse(text, &m, err, sizeof(err)), APM_E_PARSE);
    if (strstr(err, why) == NULL)
        fail_msg("%s: '%s' does not say '%s'", text, err, why);
}

static void test_silence_matcher_syntax(void **state)
{
    (void)state;
    struct apm_silence_matcher m = parsed("alertname=leak");
    assert_string_equal(m.name, "alertname");
    assert_int_equal(m.op, APM_SILENCE_EQ);
    assert_string_equal(m.value, "leak");
    m = parsed("host!=web-3");
    assert_int_equal(m.op, APM_SILENCE_NE);
    assert_string_equal(m.value, "web-3");
    m = parsed("process=~\"work.*\"");
    assert_int_equal(m.op, APM_SILENCE_RE);
    assert_string_equal(m.value, "work.*");
    m = parsed("name!~\"a \\\"b\\\" \\\\ c\"");
    assert_int_equal(m.op, APM_SILENCE_NRE);
    assert_string_equal(m.value, "a \"b\" \\ c");
    m = parsed("pid=");
    assert_string_equal(m.value, "");
    /* The value's '=' stays in the value. */
    m = parsed("team=a=b");
    assert_string_equal(m.value, "a=b");
    char buf[APM_SILENCE_MATCHER_TEXT_MAX];
    m = parsed("name!~\"a \\\"b\\\"\"");
    assert_string_equal(apm_silence_matcher_format(&m, buf, sizeof(buf)), "name!~\"a \\\"b\\\"\"");
    assert_string_equal(parsed(buf).value, m.value);

    refused("", "starts with a label name");
    refused("=leak", "starts with a label name");
    refused("9x=1", "starts with a label name");
    refused("host~web", "operator");
    refused("host", "operator");
    refused("host=\"web", "not closed");
    refused("host=\"web\"x", "after the closing quote");
    refused("host=\"a\\nb\"", "escapes");
    char longv[400];
    memset(longv, 'v', sizeof(longv));
    memcpy(longv, "host=", 5);
    longv[sizeof(longv) - 1] = '\0';
    refused(longv, "longer than");
}

static struct apm_silence silence_of(const char *const *ms, unsigned n)
{
    struct apm_silence s;
    memset(&s, 0, sizeof(s));
    for (unsigned i = 0; i < n; i++)
        s.m[i] = parsed(ms[i]);
    s.n = n;
    s.starts_ms = T0;
    s.ends_ms = T0 + 2 * HOUR;
    snprintf(s.created_by, sizeof(s.created_by), "ops");
    snprintf(s.comment, sizeof(s.comment), "deploy");
    return s;
}

static void invalid(const struct apm_silence *s, const char *field)
{
    char err[256] = "";
    assert_int_equal(apm_silence_validate(s, T0, err, sizeof(err)), APM_E_PARSE);
    if (strstr(err, field) == NULL)
        fail_msg("'%s' does not name '%s'", err, field);
}

static void test_silence_validation_names_the_field(void **state)
{
    (void)state;
    char err[256];
    const char *ok[] = {"alertname=leak", "host=~web-.*"};
    struct apm_silence s = silence_of(ok, 2);
    assert_int_equal(apm_silence_validate(&s, T0, err, sizeof(err)), 0);

    struct apm_silence none = s;
    none.n = 0;
    invalid(&none, "matchers:");
    /* A silence of everything is refused: each matcher matches an empty label. */
    const char *all[] = {"host=~.*", "team=", "x!=y"};
    struct apm_silence every = silence_of(all, 3);
    invalid(&every, "every one matches an empty label");
    const char *bad_re[] = {"alertname=leak", "host=~(web"};
    struct apm_silence b = silence_of(bad_re, 2);
    invalid(&b, "matchers[1]: bad regular expression");
    /* Bounded like the rules' regexes: an empty part repeated with '+' is refused. */
    const char *costly[] = {"host=~a*+++++"};
    struct apm_silence c = silence_of(costly, 1);
    invalid(&c, "matchers[0]");
    struct apm_silence t = s;
    t.ends_ms = t.starts_ms;
    invalid(&t, "ends_at: must be after");
    t = s;
    t.starts_ms = T0 - 3 * HOUR;
    t.ends_ms = T0 - HOUR;
    invalid(&t, "ends_at: is in the past");
    t = s;
    t.ends_ms = T0 + 400LL * 24 * HOUR;
    invalid(&t, "at most 365 days");
    t = s;
    snprintf(t.comment, sizeof(t.comment), "two\nlines");
    invalid(&t, "comment:");
    t = s;
    snprintf(t.created_by, sizeof(t.created_by), "\x1b[31mred");
    invalid(&t, "created_by:");
    t = s;
    snprintf(t.m[0].name, sizeof(t.m[0].name), "bad-name");
    invalid(&t, "matchers[0]: label name");
}

static struct apm_alert an_alert(void)
{
    struct apm_alert a;
    memset(&a, 0, sizeof(a));
    snprintf(a.rule, sizeof(a.rule), "leak");
    a.kind = APM_ALERT_LEAK;
    a.severity = APM_SEVERITY_WARNING;
    a.state = APM_ALERT_FIRING;
    snprintf(a.host, sizeof(a.host), "web-3");
    snprintf(a.process_id, sizeof(a.process_id), "web-3:42:1699999940000");
    snprintf(a.process_name, sizeof(a.process_name), "worker");
    snprintf(a.metric, sizeof(a.metric), "rss");
    snprintf(a.labels, sizeof(a.labels), "team=payments,tier=1");
    a.pid = 42;
    return a;
}

/* Whether a set holding one silence of these matchers silences a. */
static bool mutes(const struct apm_alert *a, const char *const *ms, unsigned n)
{
    struct apm_silences *set = apm_silences_new(4, HOUR);
    assert_non_null(set);
    struct apm_silence s = silence_of(ms, n);
    uint64_t next = 1;
    assert_int_equal(apm_silences_add(set, &s, &next), 0);
    uint64_t id = apm_silences_match(set, a, T0 + 1000);
    apm_silences_free(set);
    return id != 0;
}

static void test_silence_matches_labels_with_anchored_regexes(void **state)
{
    (void)state;
    struct apm_alert a = an_alert();
    const char *m1[] = {"alertname=leak", "host=web-3", "process=worker"};
    assert_true(mutes(&a, m1, 3));
    const char *m2[] = {"rule=leak", "pid=42", "metric=rss", "severity=warning", "kind=leak"};
    assert_true(mutes(&a, m2, 5));
    /* Every matcher must hold. */
    const char *m3[] = {"alertname=leak", "host=web-4"};
    assert_false(mutes(&a, m3, 2));
    /* A regex matches the whole value, not a part of it. */
    const char *m4[] = {"host=~web"};
    assert_false(mutes(&a, m4, 1));
    const char *m5[] = {"host=~web-[0-9]+"};
    assert_true(mutes(&a, m5, 1));
    const char *m6[] = {"host!~web-.*"};
    assert_false(mutes(&a, m6, 1));
    const char *m7[] = {"host!=db-1"};
    assert_true(mutes(&a, m7, 1));
    /* The rule's labels, as Alertmanager gets them; an absent label is empty. */
    const char *m8[] = {"team=payments", "tier=1"};
    assert_true(mutes(&a, m8, 2));
    const char *m9[] = {"alertname=leak", "owner="};
    assert_true(mutes(&a, m9, 2));
    const char *m10[] = {"owner=me"};
    assert_false(mutes(&a, m10, 1));
    const char *m11[] = {"process_id=~web-3:42:.*"};
    assert_true(mutes(&a, m11, 1));
    /* A host series (no process) has no pid. */
    struct apm_alert h = an_alert();
    h.process_id[0] = '\0';
    const char *m12[] = {"pid=42"};
    assert_false(mutes(&h, m12, 1));
}

static void test_silence_is_active_only_between_start_and_end(void **state)
{
    (void)state;
    struct apm_silences *set = apm_silences_new(4, HOUR);
    const char *ms[] = {"alertname=leak"};
    struct apm_silence s = silence_of(ms, 1);
    s.starts_ms = T0 + HOUR;
    uint64_t next = 1;
    assert_int_equal(apm_silences_add(set, &s, &next), 0);
    assert_int_equal(s.id, 1);
    assert_int_equal(next, 2);
    struct apm_alert a = an_alert();
    assert_int_equal(apm_silences_match(set, &a, T0), 0);
    assert_int_equal(apm_silence_state_at(&s, T0), APM_SILENCE_PENDING);
    assert_int_equal(apm_silences_match(set, &a, T0 + HOUR), 1);
    assert_int_equal(apm_silences_match(set, &a, T0 + 2 * HOUR), 0);
    assert_int_equal(apm_silence_state_at(&s, T0 + 2 * HOUR), APM_SILENCE_EXPIRED);
    /* Expired early: it ends now, and a second expiry changes nothing. */
    assert_int_equal(apm_silences_expire(set, 1, T0 + HOUR + 5), 0);
    assert_int_equal(apm_silences_match(set, &a, T0 + HOUR + 10), 0);
    assert_int_equal(apm_silences_expire(set, 1, T0 + HOUR + 10), 1);
    assert_int_equal(apm_silences_expire(set, 9, T0), APM_E_NOTFOUND);
    struct apm_silence got;
    assert_int_equal(apm_silences_get(set, 1, &got), 0);
    assert_int_equal(got.ends_ms, T0 + HOUR + 5);
    apm_silences_free(set);
}

static void test_silence_set_caps_persists_and_prunes(void **state)
{
    (void)state;
    struct apm_silences *set = apm_silences_new(2, HOUR);
    const char *ms[] = {"alertname=leak", "host=~web-.*"};
    uint64_t next = 1;
    for (int i = 0; i < 2; i++) {
        struct apm_silence s = silence_of(ms, 2);
        assert_int_equal(apm_silences_add(set, &s, &next), 0);
    }
    struct apm_silence over = silence_of(ms, 2);
    assert_int_equal(apm_silences_add(set, &over, &next), APM_E_LIMIT);

    /* Both are new: both are written, once. */
    struct apm_silence_rec *recs = NULL;
    size_t n = 0;
    assert_int_equal(apm_silences_changed(set, &recs, &n), 0);
    assert_int_equal(n, 2);
    struct apm_silence back;
    assert_int_equal(apm_silence_record_decode(recs[1].buf, recs[1].len, &back), 0);
    assert_int_equal(back.id, 2);
    assert_int_equal(back.n, 2);
    assert_int_equal(back.m[1].op, APM_SILENCE_RE);
    assert_string_equal(back.m[1].value, "web-.*");
    assert_string_equal(back.comment, "deploy");
    assert_int_equal(back.ends_ms, T0 + 2 * HOUR);
    apm_silences_persisted(set, recs, n);
    apm_silences_recs_free(recs, n);
    assert_int_equal(apm_silences_changed(set, &recs, &n), 0);
    assert_int_equal(n, 0);
    /* An expiry is a change to write. */
    assert_int_equal(apm_silences_expire(set, 1, T0 + 10), 0);
    assert_int_equal(apm_silences_changed(set, &recs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(recs[0].id, 1);
    apm_silences_recs_free(recs, n);

    /* Ended silences are kept for keep_ms (here an hour), then removed. */
    uint64_t *del = NULL;
    size_t ndel = 0;
    assert_int_equal(apm_silences_prune(set, T0 + HOUR, &del, &ndel), 0);
    assert_int_equal(ndel, 0);
    assert_int_equal(apm_silences_prune(set, T0 + HOUR + 20, &del, &ndel), 0);
    assert_int_equal(ndel, 1);
    assert_int_equal(del[0], 1);
    free(del);
    uint64_t c[3];
    apm_silences_count(set, T0 + HOUR + 20, c);
    assert_int_equal(c[APM_SILENCE_ACTIVE], 1);
    assert_int_equal(c[APM_SILENCE_EXPIRED], 0);
    /* Room again under the cap. */
    assert_int_equal(apm_silences_add(set, &over, &next), 0);
    assert_int_equal(over.id, 3);

    /* Damaged records are refused, not half-read. */
    const char *bad[] = {
        "",
        "{}",
        "{\"v\":1,\"id\":3,\"matchers\":[]}",
        "{\"v\":1,\"id\":3,\"matchers\":[{\"name\":\"a-b\",\"op\":0,\"value\":\"\"}],"
        "\"created_by\":\"\",\"comment\":\"\"}",
        "{\"v\":1,\"id\":3,\"matchers\":[{\"name\":\"a\",\"op\":7,\"value\":\"\"}],"
        "\"created_by\":\"\",\"comment\":\"\"}",
        "{\"v\":2,\"id\":3}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(apm_silence_record_decode(bad[i], strlen(bad[i]), &back), APM_E_PARSE);
    apm_silences_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silence_matcher_syntax),
        cmocka_unit_test(test_silence_validation_names_the_field),
        cmocka_unit_test(test_silence_matches_labels_with_anchored_regexes),
        cmocka_unit_test(test_silence_is_active_only_between_start_and_end),
        cmocka_unit_test(test_silence_set_caps_persists_and_prunes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
