#ifndef APM_CLI_CMD_FORECAST_H
#define APM_CLI_CMD_FORECAST_H

/*
 * apm-cli forecast [--host H] [--process NAME|--pid P]: each analysed
 * process's memory, limit, growth rate, class with its confidence and time
 * to exhaustion with its bounds, from GET /api/v1/forecasts; a table, or the
 * API's JSON with --json.
 */
#include <jansson.h>
#include <stddef.h>

#include "cli/args.h"

struct apm_cli_forecast_opts {
    const char *host;    /* borrowed from argv; NULL = any */
    const char *process; /* process name; NULL = any */
    long pid;            /* 0 = any */
    bool help;
};

/*
 * Parses the words after "forecast". Returns 0, or APM_E_USAGE with a
 * one-line reason in err (unknown option, bad pid, --process with --pid).
 */
int apm_cli_forecast_parse(int argc, char **argv, struct apm_cli_forecast_opts *o, char *err,
                           size_t errlen);

/*
 * Formats a time to exhaustion with its bounds (seconds; NaN or infinite =
 * unknown) as "5h 10m (3h 40m - 7h 30m)", or "-" without one. Returns buf.
 */
char *apm_cli_forecast_eta(double tte, double lo, double hi, char *buf, size_t size);

/*
 * The CLASS cell of one /api/v1/forecasts row (borrowed): "leak (93%)", or
 * for a growing series its rate, how long it has grown and why no verdict:
 * "growing +34 GiB/h for 1m 10s, warm-up doubt until +4m 0s". A trailing
 * " ALERT" marks an active leak alert. Returns buf.
 */
char *apm_cli_forecast_class(json_t *row, char *buf, size_t size);

/* The command; g is borrowed, argv holds the words after "forecast". Returns the exit code. */
int apm_cli_cmd_forecast(const struct apm_cli_globals *g, int argc, char **argv);

#endif
