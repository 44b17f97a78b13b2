#include "cli/cmd_backup.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/json.h"
#include "common/base/units.h"

static const char usage[] =
    "usage: apm-cli backup DIR [--json]\n"
    "  Asks the running collector to copy its store, compacted, into DIR while it\n"
    "  goes on ingesting. DIR is an absolute path on the collector's host, absent or\n"
    "  empty; it is created 0700 and becomes a data directory of its own (restore:\n"
    "  stop the collector, put DIR in place of its data directory, start it). With the\n"
    "  collector stopped, use apm-collector --backup DIR instead.\n";

/* "2026-12-03 15:04:05 UTC" for a Unix time in seconds, "-" for none. */
static void utc_text(const json_t *t, char *buf, size_t size)
{
    struct tm tm;
    time_t s = (time_t)json_number_value(t);
    if (!json_is_number(t) || gmtime_r(&s, &tm) == NULL ||
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, size, "-");
}

static void print_backup(const json_t *doc)
{
    char size[32], other[32], newest[40], started[40];
    apm_units_bytes((double)json_integer_value(json_object_get(doc, "bytes")), 0, size,
                    sizeof(size));
    apm_units_bytes((double)json_integer_value(json_object_get(doc, "other_bytes")), 0, other,
                    sizeof(other));
    utc_text(json_object_get(doc, "last_sample"), newest, sizeof(newest));
    utc_text(json_object_get(doc, "started"), started, sizeof(started));
    apm_cli_line(stdout, "backup in %s: %s of store (+%s other files) in %.2f s",
                 json_string_value(json_object_get(doc, "dir")), size, other,
                 json_number_value(json_object_get(doc, "duration")));
    apm_cli_line(stdout, "  started %s; holds every sample committed before, newest %s", started,
                 newest);
    apm_cli_line(stdout, "  %lld series, %lld samples",
                 (long long)json_integer_value(json_object_get(doc, "series")),
                 (long long)json_integer_value(json_object_get(doc, "samples")));
}

int apm_cli_cmd_backup(const struct apm_cli_globals *g, int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return APM_CLI_EXIT_OK;
        }
        if (argv[i][0] == '-' || dir != NULL) {
            fprintf(stderr, "apm-cli: backup: unexpected argument '%s'\n%s", argv[i], usage);
            return APM_CLI_EXIT_USAGE;
        }
        dir = argv[i];
    }
    if (dir == NULL || dir[0] != '/') {
        fprintf(stderr, "apm-cli: backup: %s\n%s",
                dir == NULL ? "give the backup directory"
                            : "DIR must be an absolute path (it is on the collector's host)",
                usage);
        return APM_CLI_EXIT_USAGE;
    }
    struct apm_cli_client c;
    if (apm_cli_client_init(&c, g) != 0)
        return APM_CLI_EXIT_COLLECTOR;
    /* The answer comes when the copy ends: minutes for a large store. */
    curl_easy_setopt(c.curl, CURLOPT_TIMEOUT_MS, 0L);
    char *text = NULL;
    json_t *doc = NULL;
    json_t *body = json_pack("{s:s}", "dir", dir);
    int rc = apm_cli_client_post_json(&c, "/api/v1/backup", body, &text, &doc);
    json_decref(body);
    apm_cli_client_close(&c);
    if (rc != 0)
        return APM_CLI_EXIT_COLLECTOR;
    if (g->json)
        apm_cli_json_print(text);
    else
        print_backup(doc);
    free(text);
    json_decref(doc);
    return APM_CLI_EXIT_OK;
}
