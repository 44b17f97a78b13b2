/*
 * Fuzzes the HTTP request reader: the input is split into chunks at sizes
 * taken from its first byte (so one input exercises many ways a stream can
 * arrive), fed through a reader with small caps, and every request that
 * comes out has its query string picked apart the way the API does.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void poke_request(const struct apm_http_request *req)
{
    static const char *const names[] = {"host", "pid", "process", "from", "to", "limit", ""};
    char value[64];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        (void)apm_http_query_get(req->query, names[i], value, sizeof(value));
    char path[256];
    (void)apm_http_decode(req->path, strlen(req->path), false, path, sizeof(path));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)(data[0] % 17) + 1;
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    struct apm_http_options opt = {.max_header_bytes = 2048, .max_body_bytes = 1024};
    struct apm_http_reader *r = NULL;
    if (apm_http_reader_new(&opt, &r) != 0)
        return 0;
    while (left > 0) {
        size_t n = left < chunk ? left : chunk;
        size_t used = 0;
        int rc = apm_http_reader_feed(r, p, n, &used);
        if (rc < 0) {
            const char *msg = NULL;
            int status = apm_http_reader_error(r, &msg);
            if (status < 400 || msg == NULL)
                __builtin_trap();
            break;
        }
        if (used > n)
            __builtin_trap();
        if (rc == 1) {
            const struct apm_http_request *req = apm_http_reader_request(r);
            if (req == NULL || req->path[0] != '/')
                __builtin_trap();
            poke_request(req);
            apm_http_reader_next(r);
        } else if (used != n) {
            __builtin_trap(); /* "need more" must consume everything */
        }
        p += used;
        left -= used;
    }
    apm_http_reader_free(r);
    return 0;
}
