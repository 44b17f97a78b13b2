#ifndef APM_CLI_JSON_H
#define APM_CLI_JSON_H

/*
 * How apm-cli reads the collector's JSON answers (jansson): one getter per
 * kind of member, each forgiving of a member that is absent or of another
 * type, so that a table shows "-" or nothing rather than failing on an older
 * or newer collector. Pure functions of their input; any thread.
 */
#include <jansson.h>
#include <stdbool.h>

#include "cli/client.h"

/*
 * The string member key of o (borrowed, lives as long as o), or absent when
 * o is not an object or the member is missing or not a string.
 */
const char *apm_cli_json_str(const json_t *o, const char *key, const char *absent);

/* The number member key of o (integer or real), or NaN when absent or not a number. */
double apm_cli_json_num(const json_t *o, const char *key);

/* Whether the member key of o is JSON true (false when absent). */
bool apm_cli_json_true(const json_t *o, const char *key);

/*
 * Prints an answer's text (borrowed) on stdout as it came, ending it with a
 * newline when it has none: what every command does with --json.
 */
void apm_cli_json_print(const char *text);

/*
 * GETs path through c and reads the answer: *doc gets its parse (returns
 * owned, json_decref). With print (--json), the answer's text is printed as
 * it came first. Returns 0, or a negative code after the client said why on
 * stderr (*doc is then NULL).
 */
int apm_cli_json_get(struct apm_cli_client *c, const char *path, bool print, json_t **doc);

#endif
