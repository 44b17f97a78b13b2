#ifndef APM_CLI_COMMANDS_H
#define APM_CLI_COMMANDS_H

/*
 * The apm-cli commands that query the collector: status, hosts, series.
 * Each takes the global options and the words after its name, prints its
 * answer (a table, or the API's JSON with --json) and returns the exit code:
 * 0 ok, 1 usage error, 2 collector unreachable or answering an error.
 */
#include <stdint.h>

#include "cli/args.h"

#define APM_CLI_EXIT_OK 0
#define APM_CLI_EXIT_USAGE 1
#define APM_CLI_EXIT_COLLECTOR 2

/* Default --window of `series`: how much recent history each sparkline shows. */
#define APM_CLI_DEFAULT_WINDOW_MS (10 * 60 * 1000)
/* Glyphs per sparkline. */
#define APM_CLI_SPARK_WIDTH 24

struct apm_cli_series_opts {
    const char *host;    /* borrowed from argv; NULL = any */
    const char *process; /* process name */
    const char *metric;
    long pid; /* 0 = any */
    int64_t window_ms;
    int64_t step_ms; /* one sparkline point per step; 0 = the window over the sparkline's width */
    const char *cursor; /* the "next" of a previous page (series with larger ids); NULL = first */
    bool help;
};

/*
 * The step the sparkline asks for: step_ms when set, else the window over
 * APM_CLI_SPARK_WIDTH (one point per character), rounded up to whole minutes
 * or hours past them so that the collector answers from its rollups.
 */
int64_t apm_cli_series_step(const struct apm_cli_series_opts *o);

/*
 * Parses the words after "series". Returns 0, or APM_E_USAGE with a one-line
 * reason in err (unknown option, bad pid, unknown metric, bad window, bad
 * cursor).
 */
int apm_cli_series_parse(int argc, char **argv, struct apm_cli_series_opts *o, char *err,
                         size_t errlen);

/* The commands; g is borrowed, argv holds the words after the command name. */
int apm_cli_cmd_status(const struct apm_cli_globals *g, int argc, char **argv);
int apm_cli_cmd_hosts(const struct apm_cli_globals *g, int argc, char **argv);

/* apm-cli processes [--host H] [--all]: the live processes (all with --all). */
int apm_cli_cmd_processes(const struct apm_cli_globals *g, int argc, char **argv);
int apm_cli_cmd_series(const struct apm_cli_globals *g, int argc, char **argv);

#endif
