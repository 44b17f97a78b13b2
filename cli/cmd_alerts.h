#ifndef APM_CLI_CMD_ALERTS_H
#define APM_CLI_CMD_ALERTS_H

/*
 * apm-cli alerts [--state firing|pending|resolved|active|all] [--check] and
 * apm-cli ack ID [--for D] [--comment C], over GET /api/v1/alerts and
 * POST /api/v1/alerts/{id}/ack. `alerts` prints each alert's sentence with
 * its forecast and suspect lines (or the API's JSON with --json).
 * `alerts --check` prints the firing alerts that are not acknowledged and
 * exits 0 (none), 1 (a warning), 2 (a critical one) or 3 (the collector is
 * unreachable or answers an error).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/args.h"

#define APM_CLI_CHECK_UNREACHABLE 3

struct apm_cli_alerts_opts {
    const char *state; /* borrowed; "active" by default, "firing" with --check */
    bool check;
    bool help;
};

/* Parses the words after "alerts". Returns 0 or APM_E_USAGE with a reason in err. */
int apm_cli_alerts_parse(int argc, char **argv, struct apm_cli_alerts_opts *o, char *err,
                         size_t errlen);

struct apm_cli_ack_opts {
    uint64_t id;
    int64_t for_ms;      /* default 2h */
    const char *comment; /* borrowed; "" by default */
    bool help;
};

/* Parses the words after "ack". Returns 0 or APM_E_USAGE with a reason in err. */
int apm_cli_ack_parse(int argc, char **argv, struct apm_cli_ack_opts *o, char *err, size_t errlen);

/* The commands; g is borrowed, argv holds the words after the command name. */
int apm_cli_cmd_alerts(const struct apm_cli_globals *g, int argc, char **argv);
int apm_cli_cmd_ack(const struct apm_cli_globals *g, int argc, char **argv);

#endif
