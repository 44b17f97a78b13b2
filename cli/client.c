#include "cli/client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/format.h"
#include "common/base/error.h"
#include "common/base/token.h"

struct body {
    char *data;
    size_t len;
    size_t cap;
    bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx)
{
    struct body *b = ctx;
    size_t n = size * nmemb;
    if (b->len + n + 1 > APM_CLI_MAX_RESPONSE) {
        b->too_big = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 16384;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *nd = realloc(b->data, ncap);
        if (nd == NULL)
            return 0;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Reads the API token into c->auth as a header line. Returns 0 or a code after saying why. */
static int load_token(struct apm_cli_client *c, const char *path)
{
    uint8_t tok[APM_TOKEN_MAX];
    size_t len = 0;
    char err[512];
    int rc = apm_token_load(path, false, tok, sizeof(tok), &len, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "apm-cli: %s\n", err);
        return rc;
    }
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < 0x21 || tok[i] > 0x7e) {
            fprintf(stderr, "apm-cli: token file %s: byte %zu is not printable\n", path, i + 1);
            return APM_E_CONFIG;
        }
    }
    snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %.*s", (int)len, (const char *)tok);
    return 0;
}

int apm_cli_client_init(struct apm_cli_client *c, const struct apm_cli_globals *g)
{
    memset(c, 0, sizeof(*c));
    c->server = g->server;
    if (g->token_file[0] != '\0') {
        int rc = load_token(c, g->token_file);
        if (rc != 0)
            return rc;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        fprintf(stderr, "apm-cli: cannot set up an HTTP client: out of memory\n");
        return -ENOMEM;
    }
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, APM_CLI_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, APM_CLI_TIMEOUT_MS);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "apm-cli/" APM_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (g->cacert[0] != '\0')
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, g->cacert);
    return 0;
}

void apm_cli_client_close(struct apm_cli_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

char *apm_cli_client_escape(struct apm_cli_client *c, const char *s)
{
    return curl_easy_escape(c->curl, s, 0);
}

/* Says why a transfer failed in the words of the system where possible. */
static void report_transport(struct apm_cli_client *c, CURLcode rc)
{
    long oserr = 0;
    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_COULDNT_CONNECT && oserr != 0)
        why = strerror((int)oserr);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        why = "timed out";
    else if (rc == CURLE_COULDNT_RESOLVE_HOST)
        why = "unknown host";
    fprintf(stderr, "apm-cli: cannot reach collector at %s: %s\n", c->server, why);
}

static int perform(struct apm_cli_client *c, const char *path, char **text, json_t **json)
{
    if (text != NULL)
        *text = NULL;
    if (json != NULL)
        *json = NULL;
    size_t ulen = strlen(c->server) + strlen(path) + 1;
    char *url = malloc(ulen);
    if (url == NULL)
        return -ENOMEM;
    snprintf(url, ulen, "%s%s", c->server, path);
    struct body b = {0};
    c->errbuf[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(c->curl);
    free(url);
    int ret = 0;
    long status = 0;
    json_t *doc = NULL;
    if (b.too_big) {
        fprintf(stderr, "apm-cli: the collector's answer is larger than %u MiB\n",
                APM_CLI_MAX_RESPONSE >> 20);
        ret = APM_E_LIMIT;
        goto out;
    }
    if (rc != CURLE_OK) {
        report_transport(c, rc);
        ret = -EIO;
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    json_error_t jerr;
    doc = b.data ? json_loadb(b.data, b.len, 0, &jerr) : NULL;
    if (status >= 400) {
        json_t *msg = json_is_object(doc) ? json_object_get(doc, "error") : NULL;
        apm_cli_line(stderr, "apm-cli: collector at %s answered %ld: %s", c->server, status,
                     json_is_string(msg) ? json_string_value(msg) : "no reason given");
        ret = APM_E_PROTO;
        goto out;
    }
    if (!json_is_object(doc)) {
        fprintf(stderr, "apm-cli: collector at %s sent an answer that is not a JSON object\n",
                c->server);
        ret = APM_E_PARSE;
        goto out;
    }
    if (json != NULL) {
        *json = doc;
        doc = NULL;
    }
    if (text != NULL) {
        *text = b.data;
        b.data = NULL;
    }
out:
    json_decref(doc);
    free(b.data);
    return ret;
}

int apm_cli_client_get(struct apm_cli_client *c, const char *path, char **text, json_t **json)
{
    return perform(c, path, text, json);
}

/* A write request (POST with body, or DELETE when body is NULL) with the token's header. */
static int write_request(struct apm_cli_client *c, const char *path, const char *body, char **text,
                         json_t **json)
{
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (hdr != NULL && c->auth[0] != '\0') {
        struct curl_slist *more = curl_slist_append(hdr, c->auth);
        if (more == NULL)
            curl_slist_free_all(hdr);
        hdr = more;
    }
    if (hdr == NULL)
        return -ENOMEM;
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdr);
    if (body != NULL)
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    else
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    int rc = perform(c, path, text, json);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    curl_slist_free_all(hdr);
    return rc;
}

int apm_cli_client_post(struct apm_cli_client *c, const char *path, const char *body, char **text,
                        json_t **json)
{
    return write_request(c, path, body != NULL ? body : "", text, json);
}

int apm_cli_client_delete(struct apm_cli_client *c, const char *path, char **text, json_t **json)
{
    return write_request(c, path, NULL, text, json);
}

int apm_cli_client_post_json(struct apm_cli_client *c, const char *path, const json_t *body,
                             char **text, json_t **json)
{
    char *btext = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    if (btext == NULL) {
        fprintf(stderr, "apm-cli: out of memory\n");
        return -ENOMEM;
    }
    int rc = apm_cli_client_post(c, path, btext, text, json);
    free(btext);
    return rc;
}

int apm_cli_client_add_param(struct apm_cli_client *c, char *q, size_t size, const char *name,
                             const char *value)
{
    if (value == NULL)
        return 0;
    char *esc = apm_cli_client_escape(c, value);
    if (esc == NULL)
        return -1;
    size_t len = strlen(q);
    int n = snprintf(q + len, size - len, "%s%s=%s", strchr(q, '?') ? "&" : "?", name, esc);
    curl_free(esc);
    return n < 0 || (size_t)n >= size - len ? -1 : 0;
}
