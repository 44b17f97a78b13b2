/*
 * apm-cli: asks the collector about hosts, processes and series, and
 * analyses recorded traces offline. Global options (--server URL, --json)
 * are accepted anywhere on the line; each command lives in its own module
 * and is reached through the table below.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/analyze.h"
#include "cli/args.h"
#include "cli/cmd_alerts.h"
#include "cli/cmd_backup.h"
#include "cli/cmd_silence.h"
#include "cli/cmd_forecast.h"
#include "cli/cmd_top.h"
#include "cli/cmd_trace.h"
#include "cli/commands.h"
#include "common/base/error.h"

struct command {
    const char *name;
    int (*run)(const struct apm_cli_globals *g, int argc, char **argv);
    const char *summary;
};

static int run_analyze(const struct apm_cli_globals *g, int argc, char **argv)
{
    return apm_cli_analyze(argc, argv, g->json);
}

static const struct command commands[] = {
    {"status", apm_cli_cmd_status, "the collector's version and counters"},
    {"hosts", apm_cli_cmd_hosts, "hosts whose agents report to the collector"},
    {"processes", apm_cli_cmd_processes, "live processes (all with --all), by host"},
    {"series", apm_cli_cmd_series, "stored series with a sparkline of recent samples"},
    {"alerts", apm_cli_cmd_alerts, "alerts with their sentence, forecast and suspect"},
    {"ack", apm_cli_cmd_ack, "acknowledge an alert for a while, with a comment"},
    {"silence", apm_cli_cmd_silence, "mute alerts by label matchers: add, list, expire"},
    {"forecast", apm_cli_cmd_forecast, "leak verdicts and time to exhaustion per process"},
    {"top", apm_cli_cmd_top, "allocation sites of a process that grew most"},
    {"trace", apm_cli_cmd_trace, "trace a Python process with tracemalloc for a while"},
    {"backup", apm_cli_cmd_backup, "copy the collector's store into a directory, online"},
    {"analyze", run_analyze, "analyse recorded traces (CSV files) offline"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: apm-cli [--server URL] [--json] COMMAND [ARGS]\n\n"
            "Queries the memory-leak collector (default %s, or $APM_SERVER).\n\n"
            "Commands:\n",
            APM_CLI_DEFAULT_SERVER);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s  %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nOptions (anywhere on the line):\n"
                 "  --server URL  the collector's HTTP address\n"
                 "  --json        print the API's JSON instead of a table\n"
                 "  --token-file FILE  the collector's API token, sent as \"Authorization:\n"
                 "                Bearer\" with write requests (ack, silence, trace, backup);\n"
                 "                or $APM_TOKEN_FILE\n"
                 "  --cacert FILE the CA that signs an https collector's certificate\n"
                 "  --help        this text; COMMAND --help for a command's options\n"
                 "  --version     print the version\n\n"
                 "Exit status: 0 ok, 1 usage or input error, 2 collector unreachable or\n"
                 "answering an error.\n");
}

int main(int argc, char **argv)
{
    struct apm_cli_globals g;
    char err[512];
    if (apm_cli_globals_init(&g, getenv("APM_SERVER"), getenv("APM_TOKEN_FILE"), err,
                             sizeof(err)) != 0 ||
        apm_cli_globals_extract(&g, &argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-cli: %s\n", err);
        return 1;
    }
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *word = argv[1];
    if (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0 || strcmp(word, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(word, "--version") == 0) {
        printf("apm-cli %s (%s)\n", APM_VERSION, APM_GIT_COMMIT);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(word, commands[i].name) != 0)
            continue;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "apm-cli: cannot initialise libcurl\n");
            return 2;
        }
        int rc = commands[i].run(&g, argc - 2, argv + 2);
        curl_global_cleanup();
        return rc;
    }
    if (word[0] == '-')
        fprintf(stderr, "apm-cli: unknown option '%s' (see apm-cli --help)\n", word);
    else
        fprintf(stderr, "apm-cli: unknown command '%s' (see apm-cli --help)\n", word);
    return 1;
}
