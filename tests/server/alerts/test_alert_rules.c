/* Alert rule parsing: every error names the file, the line and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/error.h"
#include "server/alerts/alert_rules.h"

static char path[64];

/* Loads text as a rules file; returns the code and the error in err. */
static int load(const char *text, char *err, size_t errlen, struct apm_alert_config **out)
{
    snprintf(path, sizeof(path), "/tmp/apm-test-rules-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct apm_alert_config *c = apm_alert_config_new();
    err[0] = '\0';
    int rc = apm_alert_config_load_file(c, path, err, errlen);
    if (rc == 0)
        rc = apm_alert_config_finish(c, err, errlen);
    unlink(path);
    if (out != NULL && rc == 0)
        *out = c;
    else
        apm_alert_config_free(c);
    return rc;
}

static void expect_error(const char *text, int line, const char *key, const char *section)
{
    char err[512], want[256];
    assert_int_equal(load(text, err, sizeof(err), NULL), APM_E_CONFIG);
    snprintf(want, sizeof(want), "%s:%d: key '%s' in [%s]: ", path, line, key, section);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got '%s', want prefix '%s'", err, want);
}

static void test_alert_rules_errors_name_file_line_key(void **state)
{
    (void)state;
    expect_error("[rule a]\nkind = leak\nconfidence = 2\n", 3, "confidence", "rule a");
    expect_error("[rule a]\nkind = drip\n", 2, "kind", "rule a");
    expect_error("[rule a]\nkind = leak\nprocess = ([\n", 3, "process", "rule a");
    expect_error("[rule a]\nseverity = page\n", 2, "severity", "rule a");
    expect_error("# c\n[rule a]\nkind = leak\nfor = soon\n", 4, "for", "rule a");
    expect_error("[rule a]\nkind = leak\nlabels = team\n", 3, "labels", "rule a");
    expect_error("[rule a]\nkind = leak\ncolour = red\n", 3, "colour", "rule a");
    /* Checks that need the whole section still point at the right line. */
    expect_error("\n[rule a]\nseverity = critical\n", 2, "kind", "rule a");
    expect_error("[rule a]\nkind = leak\n\nhorizon = 1h\n", 4, "horizon", "rule a");
    expect_error("[rule t]\nkind = threshold\n", 1, "above", "rule t");
    expect_error("[notify x]\ntype = exec\ncommand = hook.sh\n", 3, "command", "notify x");
    expect_error("[notify x]\ntype = webhook\n", 1, "url", "notify x");
    expect_error("[notify x]\ntype = webhook\nurl = ftp://h/\n", 3, "url", "notify x");
    expect_error("[alerts]\nstale = 0\n", 2, "stale", "alerts");
    expect_error("[collector]\nlisten = :1\n", 2, "listen", "collector");
}

static void test_alert_rules_defaults_and_values(void **state)
{
    (void)state;
    char err[512];
    struct apm_alert_config *c = NULL;
    assert_int_equal(load("[rule t]\nkind = threshold\nabove = 1.5G\nfor = 5m\n"
                          "host = web-.*\nlabels = team=infra,env=prod\n"
                          "[rule p]\nkind = threshold\nabove = 90%\n"
                          "[notify am]\ntype = alertmanager\nurl = http://127.0.0.1:9093\n",
                          err, sizeof(err), &c),
                     0);
    assert_int_equal(c->nrules, 2);
    assert_false(c->defaults);
    assert_int_equal(c->rules[0].for_ms, 300000);
    assert_true(c->rules[0].above == 1.5 * 1024 * 1024 * 1024);
    assert_false(c->rules[0].above_pct);
    assert_true(c->rules[0].has_host);
    assert_string_equal(c->rules[0].metric, "rss");
    assert_true(c->rules[1].above_pct);
    assert_true(c->rules[1].above > 0.89 && c->rules[1].above < 0.91);
    assert_int_equal(c->ntargets, 1);
    assert_int_equal(c->targets[0].type, APM_NOTIFY_ALERTMANAGER);
    apm_alert_config_free(c);
}

static void test_alert_rules_builtin_when_none_configured(void **state)
{
    (void)state;
    char err[512];
    struct apm_alert_config *c = NULL;
    assert_int_equal(load("[alerts]\nstale = 1m\n", err, sizeof(err), &c), 0);
    assert_true(c->defaults);
    assert_int_equal(c->nrules, 2);
    assert_int_equal(c->rules[0].kind, APM_ALERT_LEAK);
    assert_int_equal(c->rules[1].kind, APM_ALERT_EXHAUSTION);
    assert_int_equal(c->rules[1].severity, APM_SEVERITY_CRITICAL);
    assert_int_equal(c->stale_ms, 60000);
    apm_alert_config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alert_rules_errors_name_file_line_key),
        cmocka_unit_test(test_alert_rules_defaults_and_values),
        cmocka_unit_test(test_alert_rules_builtin_when_none_configured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
