#include "cli/cmd_silence.h"

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

static const char silence_usage[] =
    "usage: apm-cli silence add MATCHER... [--for DURATION] [--comment TEXT] [--author NAME]\n"
    "usage: apm-cli silence list\n"
    "usage: apm-cli silence expire ID\n"
    "  A silence mutes every alert whose labels match all its MATCHERs, alerts that do\n"
    "  not exist yet included, for DURATION (default 2h): they are listed as silenced\n"
    "  and not notified; one still firing when the silence ends is notified then.\n"
    "  MATCHER is LABEL=VALUE, LABEL!=VALUE, LABEL=~REGEX or LABEL!~REGEX (a regex\n"
    "  matches the whole value); labels: alertname (the rule), severity, kind, host,\n"
    "  process (the name), process_id, pid, metric and the rule's labels. --author\n"
    "  defaults to $USER. list shows pending, active and recently ended silences;\n"
    "  expire ends one now.\n";

static int parse_id(const char *s, uint64_t *id)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v == 0)
        return APM_E_USAGE;
    *id = v;
    return 0;
}

/* The options of "silence add"; the other words are matchers. */
static int parse_add(int argc, char **argv, struct apm_cli_silence_opts *o, char *err,
                     size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int rc = apm_cli_args_value(argc, argv, &i, "--for", &v, err, errlen);
        if (rc == 1 && (apm_duration_parse(v, &o->for_ms) != 0 || o->for_ms <= 0 ||
                        o->for_ms > 365LL * 86400 * 1000)) {
            snprintf(err, errlen,
                     "--for '%s' is not a duration (such as 90m, 2h or 1d12h; up to 365d)", v);
            return APM_E_USAGE;
        }
        if (rc == 0 && (rc = apm_cli_args_value(argc, argv, &i, "--comment", &v, err, errlen)) == 1)
            o->comment = v;
        if (rc == 0 && (rc = apm_cli_args_value(argc, argv, &i, "--author", &v, err, errlen)) == 1)
            o->author = v;
        if (rc != 0) {
            if (rc < 0)
                return rc;
            continue;
        }
        if (argv[i][0] == '-') {
            snprintf(err, errlen, "silence add: unexpected '%s' (see apm-cli silence --help)",
                     argv[i]);
            return APM_E_USAGE;
        }
        if (o->nmatchers == APM_CLI_SILENCE_MAX_MATCHERS) {
            snprintf(err, errlen, "silence add: at most %d matchers", APM_CLI_SILENCE_MAX_MATCHERS);
            return APM_E_USAGE;
        }
        o->matchers[o->nmatchers++] = argv[i];
    }
    if (o->nmatchers == 0) {
        snprintf(err, errlen, "silence add: give at least one matcher, such as alertname=leak");
        return APM_E_USAGE;
    }
    return 0;
}

int apm_cli_silence_parse(int argc, char **argv, const char *default_author,
                          struct apm_cli_silence_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->for_ms = 2 * 3600 * 1000LL;
    o->comment = "";
    o->author = default_author != NULL ? default_author : "";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            o->help = true;
            return 0;
        }
    }
    if (argc == 0) {
        snprintf(err, errlen, "silence: add, list or expire? (see apm-cli silence --help)");
        return APM_E_USAGE;
    }
    if (strcmp(argv[0], "add") == 0) {
        o->action = APM_CLI_SILENCE_ADD;
        return parse_add(argc, argv, o, err, errlen);
    }
    if (strcmp(argv[0], "list") == 0 && argc == 1) {
        o->action = APM_CLI_SILENCE_LIST;
        return 0;
    }
    if (strcmp(argv[0], "expire") == 0) {
        o->action = APM_CLI_SILENCE_EXPIRE;
        if (argc == 2 && parse_id(argv[1], &o->id) == 0)
            return 0;
        snprintf(err, errlen,
                 "silence expire: which silence? (apm-cli silence expire ID; ids "
                 "are in apm-cli silence list)");
        return APM_E_USAGE;
    }
    snprintf(err, errlen, "silence: unexpected '%s' (see apm-cli silence --help)",
             argc > 1 && strcmp(argv[0], "list") == 0 ? argv[1] : argv[0]);
    return APM_E_USAGE;
}

static void print_silence(json_t *s, double now_s)
{
    char line[1024] = "";
    size_t w = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(s, "matchers"), i, m)
    {
        int n = snprintf(line + w, sizeof(line) - w, "%s%s", i > 0 ? " " : "",
                         apm_cli_json_str(m, "text", ""));
        if (n < 0 || (size_t)n >= sizeof(line) - w)
            break;
        w += (size_t)n;
    }
    const char *state = apm_cli_json_str(s, "state", "");
    double starts = json_number_value(json_object_get(s, "starts_at"));
    double ends = json_number_value(json_object_get(s, "ends_at"));
    char when[32];
    if (strcmp(state, "expired") == 0)
        apm_duration_format(now_s - ends, when, sizeof(when));
    else
        apm_duration_format((strcmp(state, "pending") == 0 ? starts : ends) - now_s, when,
                            sizeof(when));
    const char *how = strcmp(state, "expired") == 0   ? "ended %s ago"
                      : strcmp(state, "pending") == 0 ? "starts in %s"
                                                      : "ends in %s";
    char timing[64];
    snprintf(timing, sizeof(timing), how, when);
    apm_cli_line(stdout, "#%lld %s, %s: %s",
                 (long long)json_integer_value(json_object_get(s, "id")), state, timing, line);
    const char *by = apm_cli_json_str(s, "created_by", "");
    const char *comment = apm_cli_json_str(s, "comment", "");
    if (by[0] != '\0' || comment[0] != '\0')
        apm_cli_line(stdout, "  by %s: %s", by[0] ? by : "?", comment);
}

static int run_add(struct apm_cli_client *c, const struct apm_cli_silence_opts *o, char **text,
                   json_t **doc)
{
    json_t *ms = json_array();
    for (int i = 0; ms != NULL && i < o->nmatchers; i++)
        json_array_append_new(ms, json_string(o->matchers[i]));
    char dur[32];
    snprintf(dur, sizeof(dur), "%lldms", (long long)o->for_ms);
    json_t *body = json_pack("{s:o*, s:s, s:s, s:s}", "matchers", ms, "duration", dur, "comment",
                             o->comment, "created_by", o->author);
    int rc = apm_cli_client_post_json(c, "/api/v1/silences", body, text, doc);
    json_decref(body);
    return rc;
}

int apm_cli_cmd_silence(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct apm_cli_silence_opts o;
    char err[256];
    if (apm_cli_silence_parse(argc, argv, getenv("USER"), &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: %s\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (o.help) {
        fputs(silence_usage, stdout);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char *text = NULL;
    json_t *doc = NULL;
    int rc = 0;
    if (o.action == APM_CLI_SILENCE_ADD) {
        rc = run_add(&c, &o, &text, &doc);
    } else if (o.action == APM_CLI_SILENCE_EXPIRE) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/silences/%llu", (unsigned long long)o.id);
        rc = apm_cli_client_delete(&c, path, &text, &doc);
    } else {
        rc = apm_cli_client_get(&c, "/api/v1/silences", &text, &doc);
    }
    apm_cli_client_close(&c);
    if (rc != 0)
        return APM_CLI_EXIT_COLLECTOR;
    double now_s = (double)apm_now_ms() / 1000.0;
    if (g->json) {
        apm_cli_json_print(text);
    } else if (o.action != APM_CLI_SILENCE_LIST) {
        print_silence(doc, now_s);
    } else {
        size_t i;
        json_t *s;
        json_t *list = json_object_get(doc, "silences");
        json_array_foreach(list, i, s) print_silence(s, now_s);
        if (json_array_size(list) == 0)
            printf("no silences\n");
    }
    free(text);
    json_decref(doc);
    return APM_CLI_EXIT_OK;
}
