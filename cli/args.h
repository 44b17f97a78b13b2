#ifndef APM_CLI_ARGS_H
#define APM_CLI_ARGS_H

/*
 * Command-line handling shared by every apm-cli command: the global options
 * (--server URL, --json), which are accepted anywhere on the line, and a
 * helper for "--flag VALUE" / "--flag=VALUE" command options.
 */
#include <stdbool.h>
#include <stddef.h>

#define APM_CLI_DEFAULT_SERVER "http://127.0.0.1:7412"
#define APM_CLI_SERVER_MAX 512

/* Options every command sees; main creates it and passes it down. */
struct apm_cli_globals {
    char server[APM_CLI_SERVER_MAX]; /* base URL without a trailing '/' */
    bool json;                       /* print the API's JSON instead of a table */
    char token_file[4096];           /* API token for write requests ("" = none) */
    char cacert[4096];               /* CA file verifying an https collector ("" = system's) */
};

/*
 * Sets the defaults: env_server (the value of $APM_SERVER, borrowed, may be
 * NULL or empty) or APM_CLI_DEFAULT_SERVER, env_token_file ($APM_TOKEN_FILE,
 * may be NULL) and no JSON. Returns 0, or APM_E_USAGE with a one-line reason
 * in err when env_server is not a URL.
 */
int apm_cli_globals_init(struct apm_cli_globals *g, const char *env_server,
                         const char *env_token_file, char *err, size_t errlen);

/*
 * Removes the global options (--server, --json, --token-file, --cacert) from argv[1..*argc-1]
 * wherever they stand (up to a "--", which is kept) and applies them to g; the other words keep
 * their order and *argc shrinks. argv's strings are borrowed, the array is edited in place. Returns
 * 0, or APM_E_USAGE with a one-line reason in err (a missing or malformed --server value).
 */
int apm_cli_globals_extract(struct apm_cli_globals *g, int *argc, char **argv, char *err,
                            size_t errlen);

/*
 * Matches argv[*i] against a command option that takes a value: "--name V"
 * (consumes two words, *i advances past the first) or "--name=V". Returns 1
 * with *value borrowed from argv, 0 when argv[*i] is another word, or
 * APM_E_USAGE with a reason in err when the value is missing.
 */
int apm_cli_args_value(int argc, char **argv, int *i, const char *name, const char **value,
                       char *err, size_t errlen);

#endif
