#ifndef APM_CLI_CMD_TRACE_H
#define APM_CLI_CMD_TRACE_H

/*
 * apm-cli trace --pid P | --process NAME [--host H] [--for D] [--stop]:
 * asks the collector to have the process traced (tracemalloc) for D
 * (default 20m) through POST /api/v1/processes/{id}/trace.
 */
#include "cli/args.h"

int apm_cli_cmd_trace(const struct apm_cli_globals *g, int argc, char **argv);

#endif
