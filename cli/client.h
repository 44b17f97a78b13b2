#ifndef APM_CLI_CLIENT_H
#define APM_CLI_CLIENT_H

/*
 * apm-cli's HTTP client for the collector's JSON API (libcurl, one easy
 * handle reused so that successive requests share a kept-alive connection).
 * Every failure is reported here, as one line on stderr, so that commands
 * only pass the exit code on.
 */
#include <jansson.h>
#include <stddef.h>

#include <curl/curl.h>

#include "cli/args.h"
#include "common/wire/codec.h"

/* Longest answer accepted; a larger one is an error, not an allocation. */
#define APM_CLI_MAX_RESPONSE (64u * 1024u * 1024u)
#define APM_CLI_CONNECT_TIMEOUT_MS 3000L
#define APM_CLI_TIMEOUT_MS 30000L

struct apm_cli_client {
    CURL *curl;
    const char *server;            /* borrowed base URL, no trailing '/' */
    char auth[APM_TOKEN_MAX + 32]; /* "Authorization: Bearer TOKEN", "" without a token */
    char errbuf[CURL_ERROR_SIZE];
};

/*
 * Prepares a client for g's server (borrowed; g must outlive the client),
 * with g's CA file for https and g's API token (read now, checked as the
 * collector checks its own: mode 0600, at least 16 bytes) for POSTs.
 * Returns 0, or a negative code after saying why on stderr. Caller-owned:
 * end with apm_cli_client_close(). The caller (main) has called
 * curl_global_init().
 */
int apm_cli_client_init(struct apm_cli_client *c, const struct apm_cli_globals *g);

/* Releases the curl handle. Accepts NULL. */
void apm_cli_client_close(struct apm_cli_client *c);

/*
 * GETs server + path (path starts with "/api/v1/", query already escaped).
 * On success returns 0 with *text (returns owned, free with free()) holding
 * the body and *json (returns owned, json_decref) its parse. On failure
 * prints "apm-cli: ..." on stderr (collector unreachable, an error status
 * with the collector's message, or an answer that is not JSON) and returns a
 * negative code; *text and *json are then NULL. json may be NULL when only
 * the text is wanted, text may be NULL when only the JSON is.
 */
int apm_cli_client_get(struct apm_cli_client *c, const char *path, char **text, json_t **json);

/*
 * POSTs body (a JSON text, borrowed) to server + path; answers and errors as
 * apm_cli_client_get. The handle goes back to GET afterwards.
 */
int apm_cli_client_post(struct apm_cli_client *c, const char *path, const char *body, char **text,
                        json_t **json);

/* DELETEs server + path (with the API token, as a POST); answers and errors as apm_cli_client_get.
 */
int apm_cli_client_delete(struct apm_cli_client *c, const char *path, char **text, json_t **json);

/* The same with a JSON body (NULL, from a failed json_pack, is reported as out of memory). */
int apm_cli_client_post_json(struct apm_cli_client *c, const char *path, const json_t *body,
                             char **text, json_t **json);

/*
 * Percent-encodes s for a query string. Returns owned (free with
 * curl_free()) or NULL when out of memory.
 */
char *apm_cli_client_escape(struct apm_cli_client *c, const char *s);

/*
 * Appends "name=value" to the path q (size bytes) under construction, value
 * (borrowed) percent-encoded, after '?' for the first parameter and '&' for
 * the others; a NULL value appends nothing. Returns 0, or -1 when out of
 * memory or when q would not hold it (q is then unchanged or cut).
 */
int apm_cli_client_add_param(struct apm_cli_client *c, char *q, size_t size, const char *name,
                             const char *value);

#endif
