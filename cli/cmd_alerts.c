#include "cli/cmd_alerts.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/json.h"
#include "common/base/error.h"
#include "common/base/timeutil.h"

static const char alerts_usage[] =
    "usage: apm-cli alerts [--state firing|pending|resolved|active|all] [--check] [--json]\n"
    "  Lists alerts (default: active, i.e. pending and firing) with their sentence,\n"
    "  forecast and top suspect. --check prints the firing alerts nobody acknowledged\n"
    "  or silenced and exits 0 (none), 1 (warning), 2 (critical), 3 (collector\n"
    "  unreachable).\n";

static const char ack_usage[] =
    "usage: apm-cli ack ID [--for DURATION] [--comment TEXT] [--json]\n"
    "  Acknowledges alert ID for DURATION (default 2h; 0 removes the ack): it is not\n"
    "  notified again, `alerts --check` ignores it, and a new episode of the same rule\n"
    "  and process within that time starts acknowledged.\n";

int apm_cli_alerts_parse(int argc, char **argv, struct apm_cli_alerts_opts *o, char *err,
                         size_t errlen)
{
    static const char *const states[] = {"firing", "pending", "resolved", "active", "all"};
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int rc = apm_cli_args_value(argc, argv, &i, "--state", &v, err, errlen);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            bool ok = false;
            for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
                ok = ok || strcmp(v, states[k]) == 0;
            if (!ok) {
                snprintf(err, errlen,
                         "--state '%s' is not firing, pending, resolved, active or all", v);
                return APM_E_USAGE;
            }
            o->state = v;
        } else if (strcmp(argv[i], "--check") == 0) {
            o->check = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            o->help = true;
        } else {
            snprintf(err, errlen, "alerts: unexpected '%s' (see apm-cli alerts --help)", argv[i]);
            return APM_E_USAGE;
        }
    }
    if (o->check && o->state != NULL) {
        snprintf(err, errlen, "alerts: --check looks at firing alerts; drop --state");
        return APM_E_USAGE;
    }
    if (o->state == NULL)
        o->state = o->check ? "firing" : "active";
    return 0;
}

int apm_cli_ack_parse(int argc, char **argv, struct apm_cli_ack_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->for_ms = 2 * 3600 * 1000LL;
    o->comment = "";
    bool have_id = false;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int rc = apm_cli_args_value(argc, argv, &i, "--for", &v, err, errlen);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            if (apm_duration_parse(v, &o->for_ms) != 0 || o->for_ms < 0 ||
                o->for_ms > 365LL * 86400 * 1000) {
                snprintf(err, errlen,
                         "--for '%s' is not a duration (such as 90s, 2h or 1d12h; up to 365d)", v);
                return APM_E_USAGE;
            }
            continue;
        }
        rc = apm_cli_args_value(argc, argv, &i, "--comment", &v, err, errlen);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            o->comment = v;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            o->help = true;
            continue;
        }
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(argv[i], &end, 10);
        if (have_id || argv[i][0] < '0' || argv[i][0] > '9' || *end != '\0' || errno != 0 ||
            id == 0) {
            snprintf(err, errlen, "ack: unexpected '%s' (see apm-cli ack --help)", argv[i]);
            return APM_E_USAGE;
        }
        o->id = id;
        have_id = true;
    }
    if (!have_id && !o->help) {
        snprintf(err, errlen, "ack: which alert? (apm-cli ack ID; ids are in apm-cli alerts)");
        return APM_E_USAGE;
    }
    return 0;
}

static void print_alert(json_t *a, double now_s)
{
    char ago[32] = "";
    json_t *fired = json_object_get(a, "fired");
    json_t *since = json_is_number(fired) ? fired : json_object_get(a, "started");
    if (json_is_number(since))
        apm_duration_format(now_s - json_number_value(since), ago, sizeof(ago));
    apm_cli_line(stdout, "#%lld %s %s [%s] %s%s",
                 (long long)json_integer_value(json_object_get(a, "id")),
                 apm_cli_json_str(a, "state", ""), apm_cli_json_str(a, "severity", ""),
                 apm_cli_json_str(a, "rule", ""), ago[0] ? "since " : "", ago);
    apm_cli_line(stdout, "  %s", apm_cli_json_str(a, "summary", ""));
    apm_cli_line(stdout, "  forecast: %s",
                 apm_cli_json_str(json_object_get(a, "forecast"), "text", ""));
    apm_cli_line(stdout, "  suspect:  %s",
                 apm_cli_json_str(json_object_get(a, "suspect"), "text", ""));
    if (apm_cli_json_true(a, "acked")) {
        char left[32];
        apm_duration_format(json_number_value(json_object_get(a, "ack_until")) - now_s, left,
                            sizeof(left));
        apm_cli_line(stdout, "  acked for %s more: %s", left,
                     apm_cli_json_str(a, "ack_comment", ""));
    }
    if (apm_cli_json_true(a, "silenced"))
        apm_cli_line(stdout, "  silenced by #%lld (apm-cli silence list)",
                     (long long)json_integer_value(json_object_get(a, "silenced_by")));
}

int apm_cli_cmd_alerts(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct apm_cli_alerts_opts o;
    char err[256];
    if (apm_cli_alerts_parse(argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: %s\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (o.help) {
        fputs(alerts_usage, stdout);
        return APM_CLI_EXIT_OK;
    }
    int fail = o.check ? APM_CLI_CHECK_UNREACHABLE : APM_CLI_EXIT_COLLECTOR;
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return fail;
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/alerts?state=%s", o.state);
    json_t *doc = NULL;
    int rc = apm_cli_json_get(&c, path, g->json, &doc);
    apm_cli_client_close(&c);
    if (rc != 0)
        return fail;
    json_t *list = json_object_get(doc, "alerts");
    double now_s = (double)apm_now_ms() / 1000.0;
    int worst = 0;
    size_t i, shown = 0;
    json_t *a;
    json_array_foreach(list, i, a)
    {
        bool acked = apm_cli_json_true(a, "acked") || apm_cli_json_true(a, "silenced");
        if (o.check) {
            if (acked)
                continue;
            int sev = strcmp(apm_cli_json_str(a, "severity", ""), "critical") == 0 ? 2 : 1;
            worst = sev > worst ? sev : worst;
        }
        if (!g->json)
            print_alert(a, now_s);
        shown++;
    }
    if (!g->json && shown == 0)
        printf("no %s alerts\n", o.check ? "unacknowledged firing" : o.state);
    json_decref(doc);
    return o.check ? worst : APM_CLI_EXIT_OK;
}

int apm_cli_cmd_ack(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct apm_cli_ack_opts o;
    char err[256];
    if (apm_cli_ack_parse(argc, argv, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: %s\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (o.help) {
        fputs(ack_usage, stdout);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char path[96];
    snprintf(path, sizeof(path), "/api/v1/alerts/%llu/ack", (unsigned long long)o.id);
    char *text = NULL;
    json_t *doc = NULL;
    json_t *body = json_pack("{s:f, s:s}", "for", (double)o.for_ms / 1000.0, "comment", o.comment);
    int rc = apm_cli_client_post_json(&c, path, body, &text, &doc);
    json_decref(body);
    apm_cli_client_close(&c);
    if (rc != 0)
        return APM_CLI_EXIT_COLLECTOR;
    if (g->json)
        apm_cli_json_print(text);
    else
        print_alert(doc, (double)apm_now_ms() / 1000.0);
    free(text);
    json_decref(doc);
    return APM_CLI_EXIT_OK;
}
