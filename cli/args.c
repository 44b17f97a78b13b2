#include "cli/args.h"

#include <stdio.h>
#include <string.h>

#include "common/base/error.h"

static int set_server(struct apm_cli_globals *g, const char *url, const char *from, char *err,
                      size_t errlen)
{
    const char *host = strncmp(url, "http://", 7) == 0    ? url + 7
                       : strncmp(url, "https://", 8) == 0 ? url + 8
                                                          : NULL;
    if (host == NULL || *host == '\0' || *host == '/') {
        snprintf(err, errlen, "%s: expected a URL like http://HOST:PORT, got '%s'", from, url);
        return APM_E_USAGE;
    }
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (len >= sizeof(g->server)) {
        snprintf(err, errlen, "%s: URL too long", from);
        return APM_E_USAGE;
    }
    memcpy(g->server, url, len);
    g->server[len] = '\0';
    return 0;
}

int apm_cli_globals_init(struct apm_cli_globals *g, const char *env_server,
                         const char *env_token_file, char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    if (env_token_file != NULL)
        snprintf(g->token_file, sizeof(g->token_file), "%s", env_token_file);
    if (env_server != NULL && *env_server != '\0')
        return set_server(g, env_server, "APM_SERVER", err, errlen);
    snprintf(g->server, sizeof(g->server), "%s", APM_CLI_DEFAULT_SERVER);
    return 0;
}

int apm_cli_globals_extract(struct apm_cli_globals *g, int *argc, char **argv, char *err,
                            size_t errlen)
{
    int out = 1;
    bool rest = false; /* after "--" every word is kept as it is */
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!rest && strcmp(a, "--") == 0) {
            rest = true;
        } else if (!rest && strcmp(a, "--json") == 0) {
            g->json = true;
            continue;
        } else if (!rest && strcmp(a, "--server") == 0) {
            if (i + 1 >= *argc) {
                snprintf(err, errlen, "--server needs a URL, e.g. --server %s",
                         APM_CLI_DEFAULT_SERVER);
                return APM_E_USAGE;
            }
            int rc = set_server(g, argv[++i], "--server", err, errlen);
            if (rc != 0)
                return rc;
            continue;
        } else if (!rest && strncmp(a, "--server=", 9) == 0) {
            int rc = set_server(g, a + 9, "--server", err, errlen);
            if (rc != 0)
                return rc;
            continue;
        } else if (!rest) {
            static const char *const names[] = {"--token-file", "--cacert"};
            char *dest[] = {g->token_file, g->cacert};
            size_t size[] = {sizeof(g->token_file), sizeof(g->cacert)};
            int got = 0;
            for (size_t k = 0; k < 2 && got == 0; k++) {
                const char *v = NULL;
                got = apm_cli_args_value(*argc, argv, &i, names[k], &v, err, errlen);
                if (got < 0)
                    return got;
                if (got == 1 && (v[0] == '\0' || strlen(v) >= size[k])) {
                    snprintf(err, errlen, "%s: want a file path", names[k]);
                    return APM_E_USAGE;
                }
                if (got == 1)
                    snprintf(dest[k], size[k], "%s", v);
            }
            if (got == 1)
                continue;
        }
        argv[out++] = argv[i];
    }
    for (int i = out; i < *argc; i++)
        argv[i] = NULL;
    *argc = out;
    return 0;
}

int apm_cli_args_value(int argc, char **argv, int *i, const char *name, const char **value,
                       char *err, size_t errlen)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value", name);
        return APM_E_USAGE;
    }
    *value = argv[++*i];
    return 1;
}
