#include "cli/cmd_trace.h"

#include <errno.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/cmd_top.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/json.h"
#include "common/base/error.h"
#include "common/base/timeutil.h"

static const char usage[] =
    "usage: apm-cli trace --pid P | --process NAME [--host H] [--for D | --stop] [--exact]\n"
    "                     [--json]\n"
    "  Asks the process's probe to look closer for D (default 20m, at most 7d), or to\n"
    "  stop. A sampling probe samples 16 times as often for D; with --exact (and where\n"
    "  the probe cannot sample) it traces with tracemalloc instead, exact but slow.\n"
    "  Its growing sites then show in apm-cli top.\n";

int apm_cli_cmd_trace(const struct apm_cli_globals *g, int argc, char **argv)
{
    struct apm_cli_target t = {0};
    int64_t for_ms = 20 * 60 * 1000;
    bool help = false, stop = false, exact = false;
    char err[256] = "";
    for (int i = 0; i < argc && err[0] == '\0'; i++) {
        const char *v = NULL;
        int rc;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help = true;
        } else if (strcmp(argv[i], "--stop") == 0) {
            stop = true;
        } else if (strcmp(argv[i], "--exact") == 0) {
            exact = true;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--host", &v, err, sizeof(err))) != 0) {
            t.host = rc > 0 ? v : NULL;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--process", &v, err, sizeof(err))) !=
                   0) {
            t.process = rc > 0 ? v : NULL;
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--pid", &v, err, sizeof(err))) != 0) {
            char *end = NULL;
            errno = 0;
            t.pid = rc > 0 ? strtol(v, &end, 10) : 0;
            if (rc > 0 &&
                (v[0] == '\0' || *end != '\0' || errno != 0 || t.pid < 1 || t.pid > INT32_MAX))
                snprintf(err, sizeof(err), "--pid: '%s' is not a process id", v);
        } else if ((rc = apm_cli_args_value(argc, argv, &i, "--for", &v, err, sizeof(err))) != 0) {
            if (rc > 0 && (apm_duration_parse(v, &for_ms) != 0 || for_ms < 1000 ||
                           for_ms > 7 * 86400 * 1000LL))
                snprintf(err, sizeof(err), "--for: '%s' is not a duration from 1s to 7d", v);
        } else {
            snprintf(err, sizeof(err), "unexpected argument '%s'", argv[i]);
        }
    }
    if (err[0] == '\0' && !help && (t.process == NULL) == (t.pid == 0))
        snprintf(err, sizeof(err), "give either --pid P or --process NAME");
    if (err[0] != '\0') {
        fprintf(stderr, "apm-cli: trace: %s (see apm-cli trace --help)\n", err);
        return APM_CLI_EXIT_USAGE;
    }
    if (help) {
        printf("%s", usage);
        return APM_CLI_EXIT_OK;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    char id[400];
    int rc = apm_cli_find_process(&c, &t, id, sizeof(id));
    char *esc = rc == 0 ? apm_cli_client_escape(&c, id) : NULL;
    if (rc == 0 && esc == NULL)
        rc = APM_CLI_EXIT_COLLECTOR;
    char *text = NULL;
    json_t *doc = NULL;
    if (rc == 0) {
        char path[1100], body[80];
        snprintf(path, sizeof(path), "/api/v1/processes/%.900s/trace", esc);
        snprintf(body, sizeof(body), "{\"for\": %lld%s}", stop ? 0LL : (long long)(for_ms / 1000),
                 exact && !stop ? ", \"exact\": true" : "");
        if (apm_cli_client_post(&c, path, body, g->json ? &text : NULL, &doc) != 0)
            rc = APM_CLI_EXIT_COLLECTOR;
    }
    curl_free(esc);
    apm_cli_client_close(&c);
    if (rc != 0)
        return rc;
    if (g->json) {
        apm_cli_json_print(text);
    } else if (stop) {
        apm_cli_line(stdout, "%s: asked its agent to stop tracing", id);
    } else {
        char d[32];
        apm_duration_format((double)for_ms / 1000.0, d, sizeof(d));
        apm_cli_line(stdout, "%s: %s for %s (apm-cli top --pid %d shows its growing sites)", id,
                     exact ? "tracing with tracemalloc" : "looking closer", d,
                     (int)json_integer_value(json_object_get(doc, "pid")));
    }
    free(text);
    json_decref(doc);
    return rc;
}
