/*
 * Remote-write out (remote_write.h). The commit hook (writer thread) copies
 * each exported block of a committed batch into a queue under a mutex; the
 * sender thread takes up to batch_size samples, groups them per series,
 * drops what its cursor has passed, posts the request and, once the
 * receiver answered 2xx (or refused it for good), moves the series' cursors
 * in memory and in the store (with the next request's pending record, see
 * apm_rw_flush). A start first resends the request a dead run left pending
 * (apm_rw_resend_pending). A queue overflow or the start sets `rescan`:
 * the sender then empties the queue and reads every exported series after
 * its cursor from the store, a bounded slice at a time, with no read
 * transaction held across a request.
 *
 * This file holds the commit hook, the sender thread's loop, the verdict
 * gauges and the setup; remote_write_request.c builds and sends a request
 * and moves the cursors, remote_write_scan.c reads the store after them,
 * remote_write_http.c posts, remote_write_encode.c encodes.
 */
#include "server/ingest/remote_write.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/fault.h"
#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/ingest/remote_write_encode.h"
#include "server/ingest/remote_write_priv.h"
#include "server/store/store_verdict.h"

#define DEFAULT_BATCH 2000u
#define DEFAULT_QUEUE 100000u
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MIN_MS 100
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_VERDICT_PERIOD_MS 15000
#define DEFAULT_VERDICT_LIVE_MS 120000

void apm_rw_copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* ---- the commit hook (writer thread) ---- */

void apm_rw_free_entries(struct qentry *e)
{
    while (e != NULL) {
        struct qentry *next = e->next;
        free(e);
        e = next;
    }
}

/* The queue a commit hook builds before it takes the lock once. */
struct hook_list {
    struct qentry *head, *last, **tailp;
    uint64_t n;
    bool oom;
};

/* Appends n samples of (proc, m) to l. proc is an index of batch or APM_PROC_HOST. */
static void hook_add(struct hook_list *l, const struct apm_agent_ident *agent,
                     const struct apm_batch *batch, uint32_t proc, enum apm_metric m, uint32_t n,
                     const int64_t *t, const int64_t *v)
{
    if (l->oom || n == 0 || apm_prom_metric_name(m) == NULL ||
        (proc != APM_PROC_HOST && proc >= batch->nprocs))
        return;
    struct qentry *e = malloc(sizeof(*e) + 2 * n * sizeof(int64_t));
    if (e == NULL) {
        l->oom = true; /* as an overflow: the store has it */
        return;
    }
    e->next = NULL;
    e->metric = m;
    e->n = n;
    e->t = (int64_t *)(e + 1);
    e->v = e->t + n;
    memcpy(e->t, t, n * sizeof(int64_t));
    memcpy(e->v, v, n * sizeof(int64_t));
    apm_rw_copy_str(e->host, sizeof(e->host), agent->host);
    if (proc == APM_PROC_HOST) {
        e->pid = 0;
        e->process_id[0] = e->name[0] = '\0';
    } else {
        const struct apm_proc_desc *p = &batch->procs[proc];
        e->pid = p->pid;
        apm_store_process_id(e->process_id, sizeof(e->process_id), agent->host, p->pid,
                             p->start_ms);
        apm_rw_copy_str(e->name, sizeof(e->name), p->name);
    }
    *l->tailp = l->last = e;
    l->tailp = &e->next;
    l->n += n;
}

void apm_rw_commit_hook(void *ctx, const struct apm_agent_ident *agent,
                        const struct apm_batch *batch)
{
    struct apm_rw *rw = ctx;
    struct hook_list l = {.tailp = &l.head};
    for (uint32_t i = 0; i < batch->nseries; i++) {
        const struct apm_series_block *b = &batch->series[i];
        hook_add(&l, agent, batch, b->proc, b->metric, b->n, b->t_ms, b->value);
    }
    /* The probe's series, as server/store/store_probe.c stores them (per-site ones are not
     * exported). */
    for (uint32_t i = 0; i < batch->ndiffs; i++) {
        const struct apm_trace_diff *d = &batch->diffs[i];
        hook_add(&l, agent, batch, d->proc, APM_METRIC_TRACED, 1, &d->t_ms, &d->traced_current);
    }
    for (uint32_t i = 0; i < batch->ngc; i++) {
        const struct apm_gc_stats *g = &batch->gc[i];
        int64_t sum[APM_GC_METRICS];
        apm_gc_totals(g, sum);
        for (int k = 0; k < APM_GC_METRICS; k++)
            hook_add(&l, agent, batch, g->proc, apm_gc_metrics[k], 1, &g->t_ms, &sum[k]);
    }
    struct qentry *head = l.head, *last = l.last;
    uint64_t n = l.n;
    bool oom = l.oom;
    bool overflow = false;
    pthread_mutex_lock(&rw->mu);
    if (rw->stats.queued + n > rw->opt.queue_cap || oom) {
        overflow = !rw->rescan;
        rw->rescan = true;
        rw->stats.overflows += overflow;
    } else if (head != NULL) {
        if (rw->tail != NULL)
            rw->tail->next = head;
        else
            rw->head = head;
        rw->tail = last;
        rw->stats.queued += n;
        head = NULL;
    }
    pthread_cond_signal(&rw->cond);
    pthread_mutex_unlock(&rw->mu);
    apm_rw_free_entries(head);
    if (overflow)
        apm_warn("remote-write: queue full (%u samples): reading from the store after the cursor",
                 rw->opt.queue_cap);
}

/* ---- the verdict gauges ---- */

struct verdicts {
    struct apm_verdict_record *r;
    size_t n, cap;
    int64_t live_from_ms;
};

static int on_verdict(void *ctx, const struct apm_verdict_record *rec)
{
    struct verdicts *vs = ctx;
    /* A process's verdict is its rss series' (as GET /metrics takes it). */
    if (rec->metric != APM_METRIC_RSS || rec->process_id[0] == '\0' ||
        rec->evaluated_at * 1000.0 < (double)vs->live_from_ms)
        return 0;
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 64;
        struct apm_verdict_record *r = realloc(vs->r, cap * sizeof(*r));
        if (r == NULL)
            return 1;
        vs->r = r;
        vs->cap = cap;
    }
    vs->r[vs->n++] = *rec;
    return 0;
}

/* Sends the verdict gauges of the live processes, stamped now. Returns 0 or APM_E_CLOSED. */
static int send_verdicts(struct apm_rw *rw)
{
    int64_t now_ms = apm_now_ms();
    struct verdicts vs = {.live_from_ms = now_ms - rw->opt.verdict_live_ms};
    int rc = apm_store_verdict_list(rw->store, on_verdict, &vs);
    size_t per = rw->opt.batch_size / APM_RW_VERDICT_FAMILIES
                     ? rw->opt.batch_size / APM_RW_VERDICT_FAMILIES
                     : 1;
    struct apm_rw_series *s = calloc(per * APM_RW_VERDICT_FAMILIES, sizeof(*s));
    struct apm_prom_process_labels *pl = calloc(per, sizeof(*pl));
    double *val = calloc(per * APM_RW_VERDICT_FAMILIES, sizeof(*val));
    if (rc < 0 || s == NULL || pl == NULL || val == NULL) {
        if (rc < 0)
            apm_warn("remote-write: reading the verdicts: %s", apm_strerror(rc));
        rc = 0;
        vs.n = 0;
    }
    for (size_t from = 0; from < vs.n && rc == 0; from += per) {
        size_t n = 0;
        for (size_t i = from; i < vs.n && i < from + per; i++)
            n += apm_rw_verdict_series(&vs.r[i], (double)now_ms / 1000.0, &pl[i - from], &s[n],
                                       &val[n]);
        for (size_t i = 0; i < n; i++)
            s[i].t_ms = &now_ms;
        uint8_t *body = NULL;
        size_t len = 0;
        bool refused = false;
        if (apm_rw_encode(s, n, &body, &len) == 0)
            rc = apm_rw_deliver(rw, body, len, n, APM_RW_GAUGES, &refused);
        free(body);
    }
    free(val);
    free(pl);
    free(s);
    free(vs.r);
    pthread_mutex_lock(&rw->mu);
    rw->stats.verdict_rounds++;
    pthread_mutex_unlock(&rw->mu);
    return rc;
}

/* Waits for work or until the next round of verdicts is due (mu held). True when it is due. */
static bool wait_work(struct apm_rw *rw, uint64_t due_ns)
{
    while (!rw->stopping && !rw->rescan && rw->head == NULL) {
        if (rw->opt.verdict_period_ms < 0) {
            pthread_cond_wait(&rw->cond, &rw->mu);
            continue;
        }
        uint64_t now = apm_mono_ns();
        if (now >= due_ns)
            return true;
        struct timespec until = apm_realtime_after_ns(due_ns - now);
        pthread_cond_timedwait(&rw->cond, &rw->mu, &until);
    }
    return rw->opt.verdict_period_ms >= 0 && apm_mono_ns() >= due_ns;
}

static void *sender_main(void *arg)
{
    struct apm_rw *rw = arg;
    if (apm_rw_resend_pending(rw) == APM_E_CLOSED)
        return NULL;
    uint64_t due_ns = apm_mono_ns() + (uint64_t)rw->opt.verdict_period_ms * 1000000u;
    for (;;) {
        pthread_mutex_lock(&rw->mu);
        if (rw->settle_n > 0 && !rw->stopping && !rw->rescan && rw->head == NULL) {
            /* Nothing more to send now: the last request's cursors go alone. */
            pthread_mutex_unlock(&rw->mu);
            apm_rw_settle(rw);
            continue;
        }
        bool verdicts = wait_work(rw, due_ns);
        if (rw->stopping) {
            pthread_mutex_unlock(&rw->mu);
            break;
        }
        if (verdicts) {
            pthread_mutex_unlock(&rw->mu);
            due_ns = apm_mono_ns() + (uint64_t)rw->opt.verdict_period_ms * 1000000u;
            if (send_verdicts(rw) == APM_E_CLOSED)
                break;
            continue;
        }
        if (rw->rescan) {
            pthread_mutex_unlock(&rw->mu);
            if (apm_rw_scan_store(rw) == APM_E_CLOSED)
                break;
            continue;
        }
        /* Takes about a request's worth of entries. */
        struct qentry *take = rw->head, *e = take;
        uint64_t n = e->n;
        while (e->next != NULL && n + e->next->n <= rw->opt.batch_size) {
            e = e->next;
            n += e->n;
        }
        rw->head = e->next;
        if (rw->head == NULL)
            rw->tail = NULL;
        e->next = NULL;
        rw->stats.queued -= n;
        pthread_mutex_unlock(&rw->mu);
        int rc = apm_rw_send_entries(rw, take);
        apm_rw_free_entries(take);
        if (rc == APM_E_CLOSED)
            break;
    }
    apm_rw_settle(rw); /* a request answered before the stop: its cursors */
    return NULL;
}

/* ---- setup ---- */

static void free_state(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    free((void *)(uintptr_t)value);
}

static void rw_destroy(struct apm_rw *rw)
{
    apm_rw_settle_drop(rw);
    apm_rw_free_entries(rw->head);
    apm_hashmap_foreach(&rw->series, free_state, NULL);
    apm_hashmap_close(&rw->series);
    for (size_t i = 0; i < rw->req_cap; i++) {
        free(rw->req[i].t);
        free(rw->req[i].v);
    }
    free(rw->req);
    curl_slist_free_all(rw->headers);
    free(rw->url);
    pthread_cond_destroy(&rw->cond);
    pthread_mutex_destroy(&rw->mu);
    free(rw);
}

int apm_rw_new(struct apm_store *store, const struct apm_rw_options *opt, struct apm_rw **out)
{
    if (opt->url == NULL || opt->url[0] == '\0')
        return -EINVAL;
    struct apm_rw *rw = calloc(1, sizeof(*rw));
    if (rw == NULL)
        return -ENOMEM;
    rw->store = store;
    rw->opt = *opt;
    if (rw->opt.batch_size == 0)
        rw->opt.batch_size = DEFAULT_BATCH;
    if (rw->opt.queue_cap == 0)
        rw->opt.queue_cap = DEFAULT_QUEUE;
    if (rw->opt.timeout_ms <= 0)
        rw->opt.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (rw->opt.backoff_min_ms <= 0)
        rw->opt.backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
    if (rw->opt.backoff_max_ms <= 0)
        rw->opt.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
    if (rw->opt.verdict_period_ms == 0)
        rw->opt.verdict_period_ms = DEFAULT_VERDICT_PERIOD_MS;
    if (rw->opt.verdict_live_ms <= 0)
        rw->opt.verdict_live_ms = DEFAULT_VERDICT_LIVE_MS;
    rw->rescan = true; /* the first pass resends from the cursors */
    apm_hashmap_init(&rw->series);
    pthread_mutex_init(&rw->mu, NULL);
    pthread_cond_init(&rw->cond, NULL);
    rw->url = strdup(opt->url);
    bool ok = rw->url != NULL;
    static const char *const fixed[] = {"Content-Encoding: snappy",
                                        "Content-Type: application/x-protobuf",
                                        "X-Prometheus-Remote-Write-Version: 0.1.0", "Expect:"};
    for (size_t i = 0; ok && i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        struct curl_slist *h = curl_slist_append(rw->headers, fixed[i]);
        ok = h != NULL;
        rw->headers = ok ? h : rw->headers;
    }
    for (size_t i = 0; ok && i < opt->nheaders; i++) {
        struct curl_slist *h = curl_slist_append(rw->headers, opt->headers[i]);
        ok = h != NULL;
        rw->headers = ok ? h : rw->headers;
    }
    if (ok && opt->bearer_token != NULL && opt->bearer_token[0] != '\0') {
        char *line = NULL;
        ok = asprintf(&line, "Authorization: Bearer %s", opt->bearer_token) > 0;
        struct curl_slist *h = ok ? curl_slist_append(rw->headers, line) : NULL;
        ok = h != NULL;
        rw->headers = ok ? h : rw->headers;
        free(line);
    }
    /* The copies of the caller's strings are not kept: only url and the header list are used. */
    rw->opt.url = NULL;
    rw->opt.nheaders = 0;
    rw->opt.bearer_token = NULL;
    int rc = ok ? -pthread_create(&rw->thread, NULL, sender_main, rw) : -ENOMEM;
    if (rc < 0) {
        rw_destroy(rw);
        return rc;
    }
    *out = rw;
    return 0;
}

void apm_rw_get_stats(struct apm_rw *rw, struct apm_rw_stats *out)
{
    pthread_mutex_lock(&rw->mu);
    *out = rw->stats;
    pthread_mutex_unlock(&rw->mu);
}

void apm_rw_free(struct apm_rw *rw)
{
    if (rw == NULL)
        return;
    pthread_mutex_lock(&rw->mu);
    rw->stopping = true;
    pthread_cond_broadcast(&rw->cond);
    pthread_mutex_unlock(&rw->mu);
    pthread_join(rw->thread, NULL);
    rw_destroy(rw);
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_rw_stats, samples_sent, "samples_sent", APM_COUNTER_TOTAL, "",
                "Stored samples the remote-write receiver accepted."),
    APM_COUNTER(struct apm_rw_stats, requests, "requests", APM_COUNTER_TOTAL, "",
                "Remote-write requests accepted."),
    APM_COUNTER(struct apm_rw_stats, retries, "retries", APM_COUNTER_TOTAL, "",
                "Remote-write attempts that failed (5xx, 429, no answer) and were tried again."),
    APM_COUNTER(struct apm_rw_stats, rejected, "rejected", APM_COUNTER_TOTAL, "",
                "Remote-write requests dropped on a 4xx other than 429."),
    APM_COUNTER(struct apm_rw_stats, samples_rejected, "samples_rejected", APM_COUNTER_TOTAL, "",
                "Samples in the requests dropped on a 4xx."),
    APM_COUNTER(struct apm_rw_stats, overflows, "overflows", APM_COUNTER_TOTAL, "",
                "Times the remote-write queue overflowed (the sender then reads the store)."),
    APM_COUNTER(struct apm_rw_stats, store_reads, "store_reads", APM_COUNTER_TOTAL, "",
                "Passes over the store after the remote-write cursors (start, overflows)."),
    APM_COUNTER(struct apm_rw_stats, queued, "queued", APM_COUNTER_GAUGE, "",
                "Samples waiting in the remote-write queue now."),
    APM_COUNTER(struct apm_rw_stats, verdict_samples, "verdict_samples", APM_COUNTER_TOTAL, "",
                "Verdict gauge samples the receiver accepted (not in samples_sent)."),
    APM_COUNTER(struct apm_rw_stats, verdict_rounds, "verdict_rounds", APM_COUNTER_TOTAL, "",
                "Rounds of verdict gauges sent (apm_verdict_info and the forecasts)."),
    APM_COUNTER(struct apm_rw_stats, last_status, "last_status", APM_COUNTER_GAUGE, "",
                "HTTP status of the last remote-write attempt (0: no answer)."),
    APM_COUNTER(struct apm_rw_stats, resent, "resent", APM_COUNTER_TOTAL, "",
                "Remote-write requests in flight when the last run died, sent again alone at "
                "the start."),
    APM_COUNTER(struct apm_rw_stats, resent_rejected, "resent_rejected", APM_COUNTER_TOTAL, "",
                "Of them, refused (4xx): taken as delivered before the last run died."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    apm_rw_get_stats(obj, out);
    return 0;
}

int apm_rw_add_counters(struct apm_rw *rw, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "remote_write",
                                  .counters = counters,
                                  .size = sizeof(struct apm_rw_stats),
                                  .read = read_counters,
                                  .obj = rw};
    return apm_counters_add(r, &g);
}
