/*
 * The agents' latest health reports: one per agent id, a newer report
 * replaces it, an older one (replayed from the spool) does not, and an agent
 * silent past the grace leaves at the next walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "server/ingest/agent_health.h"

struct seen {
    char text[512];
    unsigned n;
};

/* Writes "agent@host:name=value ..." for each agent visited. */
static void visit(void *ctx, const char *agent_id, const char *host, const struct apm_health *h)
{
    struct seen *s = ctx;
    s->n++;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof(s->text) - used, "%s@%s:", agent_id, host);
    for (uint32_t i = 0; i < h->n; i++) {
        used = strlen(s->text);
        snprintf(s->text + used, sizeof(s->text) - used, "%s=%llu ", h->c[i].name,
                 (unsigned long long)h->c[i].value);
    }
}

static void report(struct apm_agent_health *t, const char *agent, const char *host, int64_t t_ms,
                   uint64_t scans, int64_t now_ms)
{
    struct apm_agent_ident id = {.instance = 1};
    snprintf(id.agent_id, sizeof(id.agent_id), "%s", agent);
    snprintf(id.host, sizeof(id.host), "%s", host);
    struct apm_health h = {.t_ms = t_ms};
    assert_int_equal(apm_health_add(&h, "scans", scans, false), 0);
    assert_int_equal(apm_agent_health_put(t, &id, &h, now_ms), 0);
}

static void test_agent_health_keeps_the_newest_report_per_agent(void **state)
{
    (void)state;
    struct apm_agent_health *t = NULL;
    assert_int_equal(apm_agent_health_new(60000, &t), 0);
    report(t, "a1", "web-1", 1000, 5, 1000);
    report(t, "a1", "web-1", 2000, 9, 2000);
    /* Replayed from the spool: older, ignored (the agent is still seen). */
    report(t, "a1", "web-1", 1500, 7, 2500);
    report(t, "a2", "web-2", 2000, 1, 2500);
    assert_int_equal(apm_agent_health_count(t), 2);
    struct seen s = {.text = ""};
    apm_agent_health_walk(t, 3000, visit, &s);
    assert_int_equal(s.n, 2);
    assert_non_null(strstr(s.text, "a1@web-1:scans=9 "));
    assert_non_null(strstr(s.text, "a2@web-2:scans=1 "));
    apm_agent_health_free(t);
}

static void test_agent_health_drops_agents_silent_past_the_grace(void **state)
{
    (void)state;
    struct apm_agent_health *t = NULL;
    assert_int_equal(apm_agent_health_new(60000, &t), 0);
    report(t, "old", "web-1", 1000, 5, 1000);
    report(t, "new", "web-2", 50000, 5, 50000);
    struct seen s = {.text = ""};
    apm_agent_health_walk(t, 61001, visit, &s);
    assert_int_equal(s.n, 1);
    assert_non_null(strstr(s.text, "new@web-2:"));
    assert_null(strstr(s.text, "old@"));
    assert_int_equal(apm_agent_health_count(t), 1);
    /* It comes back with its next report. */
    report(t, "old", "web-1", 70000, 6, 70000);
    s = (struct seen){.text = ""};
    apm_agent_health_walk(t, 70000, visit, &s);
    assert_int_equal(s.n, 2);
    apm_agent_health_free(t);
    apm_agent_health_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_health_keeps_the_newest_report_per_agent),
        cmocka_unit_test(test_agent_health_drops_agents_silent_past_the_grace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
