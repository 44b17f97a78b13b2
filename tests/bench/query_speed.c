/*
 * Query speed with a full store: HOSTS x PROCS background rss series sampled
 * every BG seconds for DAYS days, ending now, plus one process ("leaky.py" on
 * query-host) sampled every second over the same days, written through the
 * store's API without fsync; one stored verdict per series (as the analyzer
 * keeps them); then maintenance passes until the rollups are built. Times,
 * through the API's own router (apm_api_route: parameters, store reads,
 * JSON; no socket):
 *   - GET /api/v1/forecasts?process=leaky.py (one process's forecast),
 *   - GET /api/v1/series/ID/samples?from=-DAYS&to=now&step=60 (a week of the
 *     1 s series at step 60: about 10k points),
 * REPS times each, and prints the median and the worst. Figures only.
 *
 *   query_speed DIR [DAYS [HOSTS [PROCS [BG [REPS]]]]]   (7 100 100 300 20)
 *
 * DIR must not exist or be empty; it is left filled (rerunning on it skips
 * the fill and the maintenance).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/api/api.h"
#include "server/api/api_forecast.h"
#include "server/net/http_reader.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"

#define TICKS 12 /* background ticks per batch and per transaction */
#define HOUR_S 3600

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int commit_or_abort(struct apm_store_txn *txn, int rc)
{
    if (rc == 0)
        return apm_store_txn_commit(txn);
    apm_store_txn_abort(txn);
    return rc;
}

/* One host's batch of TICKS ticks of its procs, from t0 every bg_ms. */
static int put_host(struct apm_store_txn *txn, int host, int procs, uint64_t seq, int64_t t0,
                    int64_t bg_ms, int ticks, uint64_t *rng)
{
    struct apm_agent_ident a = {.instance = 1};
    snprintf(a.agent_id, sizeof(a.agent_id), "qs-agent-%d", host);
    snprintf(a.host, sizeof(a.host), "qs-host-%d", host);
    struct apm_batch *b = apm_batch_new(seq);
    int rc = b ? 0 : -ENOMEM;
    for (int p = 0; rc == 0 && p < procs; p++) {
        struct apm_proc_desc d = {.pid = 1000 + p,
                                  .ppid = 1,
                                  .start_ms = 1700000000000,
                                  .name = "worker.py",
                                  .cmdline = "python3 worker.py"};
        uint32_t idx = 0;
        rc = apm_batch_add_proc(b, &d, &idx);
        for (int k = 0; rc == 0 && k < ticks; k++) {
            int64_t v = (int64_t)(256 + p) * 1048576 + (int64_t)(xorshift(rng) % 4096) * 4096;
            rc = apm_batch_add_sample(b, idx, APM_METRIC_RSS, t0 + k * bg_ms, v);
        }
    }
    if (rc == 0)
        rc = apm_store_txn_put_batch(txn, &a, b);
    apm_batch_free(b);
    return rc;
}

/* One hour of the 1 s series, from t0: a slow leak with noise. */
static int put_leaky_hour(struct apm_store_txn *txn, uint64_t seq, int64_t t0, int64_t t_end,
                          int64_t origin, uint64_t *rng)
{
    struct apm_agent_ident a = {.instance = 1, .agent_id = "qs-agent-query", .host = "query-host"};
    struct apm_batch *b = apm_batch_new(seq);
    struct apm_proc_desc d = {.pid = 4242,
                              .ppid = 1,
                              .start_ms = origin,
                              .name = "leaky.py",
                              .cmdline = "python3 leaky.py"};
    uint32_t idx = 0;
    int rc = b ? apm_batch_add_proc(b, &d, &idx) : -ENOMEM;
    for (int64_t t = t0; rc == 0 && t < t0 + HOUR_S * 1000 && t <= t_end; t += 1000) {
        int64_t v =
            200 * 1048576 + (t - origin) / 1000 * 64 + (int64_t)(xorshift(rng) % 256) * 4096;
        rc = apm_batch_add_sample(b, idx, APM_METRIC_RSS, t, v);
    }
    if (rc == 0)
        rc = apm_store_txn_put_batch(txn, &a, b);
    apm_batch_free(b);
    return rc;
}

static int fill(struct apm_store *s, int days, int hosts, int procs, int64_t bg_ms, int64_t now)
{
    int64_t span = (int64_t)days * 86400000;
    int64_t t0 = now - span;
    uint64_t rng = 0x9e3779b97f4a7c15ull, seq = 0;
    int rc = 0;
    for (int64_t t = t0; rc == 0 && t <= now; t += TICKS * bg_ms) {
        int ticks = (int)((now - t) / bg_ms + 1 < TICKS ? (now - t) / bg_ms + 1 : TICKS);
        struct apm_store_txn *txn = NULL;
        rc = apm_store_txn_begin(s, &txn);
        if (rc != 0)
            break;
        seq++;
        for (int h = 0; rc == 0 && h < hosts; h++)
            rc = put_host(txn, h, procs, seq, t, bg_ms, ticks, &rng);
        rc = commit_or_abort(txn, rc);
    }
    seq = 0;
    for (int64_t t = t0; rc == 0 && t <= now; t += 24 * HOUR_S * 1000) {
        struct apm_store_txn *txn = NULL;
        rc = apm_store_txn_begin(s, &txn);
        if (rc != 0)
            break;
        for (int h = 0; rc == 0 && h < 24; h++)
            rc = put_leaky_hour(txn, ++seq, t + (int64_t)h * HOUR_S * 1000, now, t0, &rng);
        rc = commit_or_abort(txn, rc);
    }
    return rc;
}

/* Collects the series to give a verdict: every one in the store. */
struct verdicts {
    struct apm_verdict_record *recs;
    size_t n, cap;
    double now_s;
};

static int add_verdict(void *ctx, const struct apm_series_info *si)
{
    struct verdicts *vs = ctx;
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 1024;
        void *p = realloc(vs->recs, cap * sizeof(*vs->recs));
        if (p == NULL)
            return 1;
        vs->recs = p;
        vs->cap = cap;
    }
    struct apm_verdict_record *r = &vs->recs[vs->n++];
    memset(r, 0, sizeof(*r));
    bool leaky = strcmp(si->process_name, "leaky.py") == 0;
    r->series_id = si->id;
    r->metric = si->metric;
    snprintf(r->host, sizeof(r->host), "%s", si->host);
    snprintf(r->process_id, sizeof(r->process_id), "%s", si->process_id);
    snprintf(r->name, sizeof(r->name), "%s", si->process_name);
    r->pid = si->pid;
    r->value = (double)si->last_value;
    r->limit_source = leaky ? APM_LIMIT_HOST : APM_LIMIT_NONE;
    r->evaluated_at = vs->now_s;
    r->v.cls = leaky ? APM_CLASS_LEAK : APM_CLASS_STABLE;
    r->v.confidence = 0.9;
    r->v.rate = leaky ? 64 : 0;
    r->v.has_forecast = leaky;
    r->v.forecast_t = vs->now_s + 86400;
    r->v.forecast_lo_t = vs->now_s + 43200;
    r->v.forecast_hi_t = vs->now_s + 172800;
    r->v.limit = leaky ? 16e9 : 0;
    r->v.t_last = vs->now_s;
    r->v.samples = (size_t)si->nsamples;
    r->v.growth_start_t = leaky ? vs->now_s - 7 * 86400 : NAN;
    r->v.doubt_until_t = NAN;
    return 0;
}

static int put_verdicts(struct apm_store *s, double now_s)
{
    struct verdicts vs = {.now_s = now_s};
    struct apm_series_filter f = {0};
    int rc = apm_store_list_series(s, &f, add_verdict, &vs);
    const struct apm_verdict_record **ptrs = calloc(vs.n ? vs.n : 1, sizeof(*ptrs));
    if (rc == 0 && ptrs == NULL)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < vs.n; i++)
        ptrs[i] = &vs.recs[i];
    if (rc == 0)
        rc = apm_store_verdict_put(s, ptrs, vs.n);
    free(ptrs);
    free(vs.recs);
    return rc;
}

static int find_leaky(void *ctx, const struct apm_series_info *si)
{
    *(uint64_t *)ctx = si->id;
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Routes GET target REPS times; prints the median, the worst and the answer's size. */
static int time_route(struct apm_api *api, const char *label, const char *target, int reps)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", target);
    char *q = strchr(path, '?');
    if (q != NULL)
        *q++ = '\0';
    struct apm_http_request req = {
        .method = "GET", .path = path, .query = q ? q : "", .body = "", .keep_alive = true};
    double *ms = calloc((size_t)reps, sizeof(*ms));
    size_t bytes = 0;
    int status = 0;
    double resolution = -1;
    for (int i = 0; ms != NULL && i < reps; i++) {
        json_t *out = NULL;
        double t = mono_ms();
        status = apm_api_route(api, &req, &out);
        char *text = json_dumps(out, JSON_COMPACT);
        ms[i] = mono_ms() - t;
        json_t *res = json_object_get(out, "resolution");
        resolution = json_is_number(res) ? json_number_value(res) : -1;
        bytes = text ? strlen(text) : 0;
        free(text);
        json_decref(out);
        if (status != 200)
            break;
    }
    if (ms == NULL || status != 200) {
        fprintf(stderr, "query_speed: %s answered %d\n", target, status);
        free(ms);
        return 1;
    }
    qsort(ms, (size_t)reps, sizeof(*ms), cmp_double);
    printf("%-9s median %.2f ms  worst %.2f ms  (%d runs, %zu bytes of JSON)  %s\n", label,
           ms[reps / 2], ms[reps - 1], reps, bytes, target);
    if (resolution >= 0)
        printf("          answered from resolution %.0f s (0: raw)\n", resolution);
    free(ms);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: query_speed DIR [DAYS [HOSTS [PROCS [BG_SECONDS [REPS]]]]]\n");
        return 2;
    }
    const char *dir = argv[1];
    int days = argc > 2 ? atoi(argv[2]) : 7;
    int hosts = argc > 3 ? atoi(argv[3]) : 100;
    int procs = argc > 4 ? atoi(argv[4]) : 100;
    int64_t bg_ms = (argc > 5 ? atoll(argv[5]) : 300) * 1000;
    int reps = argc > 6 ? atoi(argv[6]) : 20;
    if (days <= 0 || hosts <= 0 || procs <= 0 || bg_ms <= 0 || reps <= 0) {
        fprintf(stderr, "query_speed: DAYS, HOSTS, PROCS, BG_SECONDS and REPS must be > 0\n");
        return 2;
    }
    /* The collector's default retentions: raw 15 d, 1-minute rollups 90 d, 1-hour 1 y. */
    struct apm_store_options opt = {.dir = dir,
                                    .no_sync = true,
                                    .map_size = 8ull << 30,
                                    .retention_ms = 15 * 86400000ll,
                                    .rollup_1m_ms = 90 * 86400000ll,
                                    .rollup_1h_ms = 365 * 86400000ll};
    struct apm_store *s = NULL;
    int rc = apm_store_open(&opt, &s);
    if (rc != 0) {
        fprintf(stderr, "query_speed: %s: %s\n", dir, apm_strerror(rc));
        return 1;
    }
    int64_t now = apm_now_ms();
    uint64_t id = 0;
    struct apm_series_filter lf = {.process_name = "leaky.py"};
    rc = apm_store_list_series(s, &lf, find_leaky, &id);
    if (rc == 0 && id == 0) {
        double t = mono_ms();
        rc = fill(s, days, hosts, procs, bg_ms, now);
        if (rc == 0)
            rc = put_verdicts(s, (double)now / 1000.0);
        printf("fill: %.1f s\n", (mono_ms() - t) / 1000.0);
        t = mono_ms();
        /* Passes until one writes no rollup: a pass rolls a bounded slice of each series. */
        int passes = 0;
        uint64_t before = UINT64_MAX;
        struct apm_store_stats ms = {0};
        while (rc == 0 && ms.rollups_written != before) {
            before = ms.rollups_written;
            int m = 0;
            while (rc == 0 && m == 0) {
                m = apm_store_maintain(s, apm_now_ms(), 5000, 50000);
                rc = m < 0 ? m : 0;
            }
            passes++;
            if (rc == 0)
                rc = apm_store_stats(s, &ms);
        }
        printf("rollups: %.1f s, %d maintenance passes, %" PRIu64 " buckets\n",
               (mono_ms() - t) / 1000.0, passes, ms.rollups_written);
        if (rc == 0)
            rc = apm_store_list_series(s, &lf, find_leaky, &id);
    }
    struct apm_store_stats ss = {0};
    if (rc == 0)
        rc = apm_store_stats(s, &ss);
    if (rc != 0 || id == 0) {
        fprintf(stderr, "query_speed: %s\n", rc ? apm_strerror(rc) : "no leaky.py series");
        apm_store_free(s);
        return 1;
    }
    printf("store: %" PRIu64 " series, %" PRIu64 " samples, %" PRIu64 " MiB\n", ss.series,
           ss.samples, ss.bytes_on_disk >> 20);
    struct apm_api_config cfg = {.store = s};
    struct apm_api *api = NULL;
    rc = apm_api_new(&cfg, &api);
    if (rc == 0)
        rc = apm_api_forecast_register(api);
    char target[256];
    snprintf(target, sizeof(target),
             "/api/v1/series/%" PRIu64 "/samples?from=%.3f&to=%.3f&step=60&limit=100000", id,
             (double)(now - (int64_t)days * 86400000) / 1000.0, (double)now / 1000.0);
    if (rc == 0)
        rc = time_route(api, "forecast", "/api/v1/forecasts?process=leaky.py", reps);
    if (rc == 0)
        rc = time_route(api, "week", target, reps);
    apm_api_free(api);
    apm_store_free(s);
    return rc == 0 ? 0 : 1;
}
