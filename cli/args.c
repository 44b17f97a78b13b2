#include "cli/args.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"

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

int apm_cli_globals_init(struct apm_cli_globals *g, const char *env_server, char *err,
                         size_t errlen)
{
    memset(g, 0, sizeof(*g));
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
