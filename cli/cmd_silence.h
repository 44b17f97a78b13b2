#ifndef APM_CLI_CMD_SILENCE_H
#define APM_CLI_CMD_SILENCE_H

/*
 * apm-cli silence add MATCHER... [--for D] [--comment C] [--author A],
 * apm-cli silence list and apm-cli silence expire ID, over POST and GET
 * /api/v1/silences and DELETE /api/v1/silences/{id}. A matcher is written
 * as amtool writes it: alertname=leak, host=~"web-.*", process!=worker.
 * The collector parses and validates the matchers, so the CLI and the web
 * page get the same answers.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/args.h"

#define APM_CLI_SILENCE_MAX_MATCHERS 16

enum apm_cli_silence_action { APM_CLI_SILENCE_ADD, APM_CLI_SILENCE_LIST, APM_CLI_SILENCE_EXPIRE };

struct apm_cli_silence_opts {
    enum apm_cli_silence_action action;
    const char *matchers[APM_CLI_SILENCE_MAX_MATCHERS]; /* borrowed from argv */
    int nmatchers;
    int64_t for_ms;      /* default 2h */
    const char *comment; /* borrowed; "" by default */
    const char *author;  /* borrowed; $USER (the caller passes it) or "" */
    uint64_t id;         /* expire */
    bool help;
};

/*
 * Parses the words after "silence"; default_author ($USER, may be NULL) is
 * the author unless --author is given. Returns 0 or APM_E_USAGE with a
 * reason in err.
 */
int apm_cli_silence_parse(int argc, char **argv, const char *default_author,
                          struct apm_cli_silence_opts *o, char *err, size_t errlen);

/* The command; g is borrowed, argv holds the words after "silence". */
int apm_cli_cmd_silence(const struct apm_cli_globals *g, int argc, char **argv);

#endif
