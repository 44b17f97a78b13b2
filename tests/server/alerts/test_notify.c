/*
 * Delivery payloads and the exec hook: hostile telemetry strings reach the
 * hook as data, never as shell code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/alerts/notify.h"

static const char hostile[] = "$(touch PWNED); rm -rf /nonexistent `id` ;\nnext line";

static struct apm_alert sample_alert(void)
{
    struct apm_alert a = {.id = 12,
                          .kind = APM_ALERT_LEAK,
                          .severity = APM_SEVERITY_CRITICAL,
                          .state = APM_ALERT_FIRING,
                          .pid = 42,
                          .native = -1,
                          .started_ms = 1700000000000LL,
                          .fired_ms = 1700000001000LL};
    snprintf(a.rule, sizeof(a.rule), "leak");
    snprintf(a.host, sizeof(a.host), "web-3");
    snprintf(a.process_id, sizeof(a.process_id), "web-3:42:1");
    snprintf(a.process_name, sizeof(a.process_name), "%s", hostile);
    snprintf(a.summary, sizeof(a.summary), "`%s` leaks", hostile);
    snprintf(a.labels, sizeof(a.labels), "team=infra");
    return a;
}

static void test_notify_exec_passes_hostile_strings_as_data(void **state)
{
    (void)state;
    char dir[] = "/tmp/apm-test-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char script[96], cmd[512];
    snprintf(script, sizeof(script), "%s/hook.sh", dir);
    snprintf(cmd, sizeof(cmd),
             "printf '#!/bin/sh\\ncd %s\\nprintf %%s \"$APM_ALERT_PROCESS\" > env\\n"
             "printf %%s \"$1 $2\" > args\\ncat > stdin\\n' > %s",
             dir, script);
    assert_int_equal(system(cmd), 0);
    chmod(script, 0755);
    struct apm_notify_target t = {.type = APM_NOTIFY_EXEC, .timeout_ms = 5000, .nargs = 1};
    snprintf(t.command, sizeof(t.command), "%s", script);
    snprintf(t.args[0], sizeof(t.args[0]), "%s", hostile);
    struct apm_alert a = sample_alert();
    char *body = apm_notify_webhook_body(&a, APM_ALERT_FIRING, 1700000002000LL);
    assert_non_null(body);
    assert_int_equal(apm_notify_exec(&t, &a, APM_ALERT_FIRING, body, 1700000002000LL), 0);
    char path[128], buf[512];
    snprintf(path, sizeof(path), "%s/env", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, hostile);
    snprintf(path, sizeof(path), "%s/PWNED", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/stdin", dir);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "event")), "firing");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "alert"), "name")),
                        hostile);
    json_decref(doc);
    free(body);
    /* A hook that fails or hangs is an error, not a hang. */
    snprintf(t.command, sizeof(t.command), "/bin/false");
    assert_int_not_equal(apm_notify_exec(&t, &a, APM_ALERT_FIRING, "{}", 0), 0);
    snprintf(cmd, sizeof(cmd), "printf '#!/bin/sh\\nexec sleep 10\\n' > %s", script);
    assert_int_equal(system(cmd), 0);
    snprintf(t.command, sizeof(t.command), "%s", script);
    t.timeout_ms = 200;
    uint64_t t0 = (uint64_t)time(NULL);
    assert_int_equal(apm_notify_exec(&t, &a, APM_ALERT_FIRING, "{}", 0), -ETIMEDOUT);
    assert_true((uint64_t)time(NULL) - t0 < 5);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_notify_alertmanager_body_has_labels_annotations_and_times(void **state)
{
    (void)state;
    struct apm_alert a = sample_alert();
    char *body = apm_notify_alertmanager_body(&a, APM_ALERT_FIRING, 1700000010000LL, 240000,
                                              "http://127.0.0.1:7412");
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    assert_true(json_is_array(doc));
    json_t *al = json_array_get(doc, 0);
    json_t *labels = json_object_get(al, "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "alertname")), "leak");
    assert_string_equal(json_string_value(json_object_get(labels, "severity")), "critical");
    assert_string_equal(json_string_value(json_object_get(labels, "host")), "web-3");
    assert_string_equal(json_string_value(json_object_get(labels, "process")), hostile);
    assert_string_equal(json_string_value(json_object_get(labels, "pid")), "42");
    assert_string_equal(json_string_value(json_object_get(labels, "team")), "infra");
    json_t *ann = json_object_get(al, "annotations");
    assert_non_null(json_object_get(ann, "summary"));
    assert_non_null(json_object_get(ann, "forecast"));
    assert_non_null(json_object_get(ann, "suspect"));
    assert_string_equal(json_string_value(json_object_get(al, "startsAt")),
                        "2023-11-14T22:13:21.000Z");
    assert_string_equal(json_string_value(json_object_get(al, "endsAt")),
                        "2023-11-14T22:17:30.000Z");
    assert_non_null(json_object_get(al, "generatorURL"));
    json_decref(doc);
    free(body);
    body = apm_notify_alertmanager_body(&a, APM_ALERT_RESOLVED, 1700000010000LL, 240000, NULL);
    assert_non_null(strstr(body, "\"endsAt\":\"2023-11-14T22:13:30.000Z\""));
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_exec_passes_hostile_strings_as_data),
        cmocka_unit_test(test_notify_alertmanager_body_has_labels_annotations_and_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
