#ifndef APM_CLI_CMD_TOP_H
#define APM_CLI_CMD_TOP_H

/*
 * apm-cli top --pid P | --process NAME [--host H] [--window W] [--limit N]:
 * the allocation sites of a process that grew most over the window, with
 * growth per hour, count growth and a sparkline, from GET /api/v1/sites; --json prints
 * the API's JSON.
 */
#include <stddef.h>

#include "cli/args.h"
#include "cli/client.h"

/* Who a command is about: a pid or a name, optionally on one host. */
struct apm_cli_target {
    const char *host;    /* borrowed from argv; NULL = any */
    const char *process; /* name; NULL = by pid */
    long pid;
};

/*
 * Finds the process id ("host:pid:start") of the target: among the matching
 * processes, the one seen last (a pid reused later names the newer process).
 * Returns 0, 1 when none matches (after printing why) or 2 when the
 * collector could not be asked.
 */
int apm_cli_find_process(struct apm_cli_client *c, const struct apm_cli_target *t, char *id,
                         size_t size);

int apm_cli_cmd_top(const struct apm_cli_globals *g, int argc, char **argv);

#endif
