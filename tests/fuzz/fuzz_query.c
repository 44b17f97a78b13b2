/*
 * Fuzz target for the query-string parser and the API's parameter parsing:
 * the input after its first byte is a request target ("series/7/samples?
 * from=1.5&limit=10") under /api/v1/, routed (GET, or POST when the first
 * byte is odd) through the real API with every route module on a small real
 * store in a temporary directory, so each route reads its parameters its own
 * way. The query is also read by the parameter helpers directly. Any bad
 * parameter must be a 400 with an error object, never a crash.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/alerts/alerts.h"
#include "server/api/api.h"
#include "server/api/api_alerts.h"
#include "server/api/api_forecast.h"
#include "server/api/api_sites.h"
#include "server/store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    char dir[64];
    struct apm_store *store;
    struct apm_alerts *alerts;
    struct apm_api *api;
} env;

static void env_free(void)
{
    apm_api_free(env.api);
    apm_alerts_free(env.alerts);
    apm_store_free(env.store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", env.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_query: cannot remove %s\n", env.dir);
}

/* One host with a growing process, so that the routes have rows to read. */
static void env_fill(void)
{
    struct apm_agent_ident id = {
        .agent_id = "agent-1", .host = "web-1", .boot_id = "b", .version = "0.1.0", .instance = 1};
    struct apm_batch *b = apm_batch_new(1);
    struct apm_proc_desc p = {
        .pid = 42, .ppid = 1, .start_ms = 1000, .name = "worker", .cmdline = "python3 app.py"};
    uint32_t proc = 0;
    if (b == NULL || apm_batch_add_proc(b, &p, &proc) != 0)
        abort();
    for (int i = 0; i < 50; i++)
        apm_batch_add_sample(b, proc, APM_METRIC_RSS, 1700000000000LL + i * 1000,
                             (100LL + i) << 20);
    struct apm_store_txn *txn = NULL;
    if (apm_store_txn_begin(env.store, &txn) != 0 || apm_store_txn_put_batch(txn, &id, b) != 0 ||
        apm_store_txn_commit(txn) != 0)
        abort();
    apm_batch_free(b);
}

static void env_init(void)
{
    snprintf(env.dir, sizeof(env.dir), "/tmp/apm-fuzz-query-XXXXXX");
    if (mkdtemp(env.dir) == NULL)
        abort();
    struct apm_store_options so = {.dir = env.dir, .map_size = 64u << 20, .no_sync = true};
    struct apm_alerts_options ao = {.manual = true};
    if (apm_store_open(&so, &env.store) != 0 || apm_alerts_new(&ao, &env.alerts) != 0)
        abort();
    env_fill();
    struct apm_api_config cfg = {.store = env.store};
    if (apm_api_new(&cfg, &env.api) != 0 || apm_api_alerts_register(env.api, env.alerts) != 0 ||
        apm_api_forecast_register(env.api) != 0 || apm_api_sites_register(env.api) != 0)
        abort();
    atexit(env_free);
}

static void check_answer(int status, json_t *out);

/* The parameter helpers on their own, on names routes use and on none. */
static void params(const struct apm_http_request *req)
{
    static const char *const allowed[] = {"host", "from", "to", "limit", NULL};
    struct apm_api_call call = {.req = req};
    bool present = false;
    char buf[32];
    long long i = 0;
    double d = 0;
    int64_t ms = 0;
    for (int k = 0; k < 6; k++) {
        json_t *out = NULL;
        int st = 0;
        switch (k) {
        case 0:
            st = apm_api_check_params(&call, allowed, &out);
            break;
        case 1:
            st = apm_api_param_str(&call, "host", buf, sizeof(buf), &present, &out);
            break;
        case 2:
            st = apm_api_param_int(&call, "limit", 1, 100000, &present, &i, &out);
            break;
        case 3:
            st = apm_api_param_num(&call, "confidence", 0, 100, &present, &d, &out);
            break;
        case 4:
            st = apm_api_param_time(&call, "from", &present, &ms, &out);
            break;
        default:
            st = apm_api_param_time(&call, "", &present, &ms, &out);
            break;
        }
        if (st != 0)
            check_answer(st, out);
        else if (out != NULL)
            __builtin_trap(); /* an accepted parameter leaves no answer */
        json_decref(out);
    }
}

static void check_answer(int status, json_t *out)
{
    if (status >= 400 && status != 500 && json_object_get(out, "error") == NULL)
        __builtin_trap(); /* every refusal says why */
    if (status < 200 || status > 599)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (env.api == NULL)
        env_init();
    /*
     * "/api/v1/" + the target up to the first newline, cut at a NUL as the
     * HTTP reader would never pass one; what follows the newline is the body.
     */
    const char *target = (const char *)data + 1;
    const char *nl = memchr(target, '\n', size - 1);
    size_t tlen = nl ? (size_t)(nl - target) : size - 1;
    char body[1024] = "";
    size_t blen = 0;
    if (nl != NULL) {
        blen = size - 1 - tlen - 1;
        if (blen > sizeof(body) - 1)
            blen = sizeof(body) - 1;
        memcpy(body, nl + 1, blen);
        body[blen] = '\0';
    }
    char path[1100] = "/api/v1/";
    size_t n = strnlen(target, tlen);
    if (n > sizeof(path) - 9)
        n = sizeof(path) - 9;
    memcpy(path + 8, target, n);
    path[8 + n] = '\0';
    char *q = strchr(path, '?');
    if (q != NULL)
        *q++ = '\0';
    struct apm_http_request req = {.method = (data[0] & 1) ? "POST" : "GET",
                                   .path = path,
                                   .query = q ? q : "",
                                   .body = body,
                                   .body_len = blen,
                                   .keep_alive = true};
    params(&req);
    json_t *out = NULL;
    int status = apm_api_route(env.api, &req, &out);
    check_answer(status, out);
    json_decref(out);
    return 0;
}
