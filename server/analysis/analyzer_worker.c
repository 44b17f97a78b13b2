/*
 * The analysis thread. The writer's commit hook copies the few blocks the
 * analysis reads (rss and cgroup_limit of processes, mem_total of the host)
 * into a small batch of their own, so the writer frees its batch as before
 * and spends microseconds here. The thread takes every queued job, feeds
 * them, and flushes changed verdicts at most every flush interval, so the
 * store sees one small transaction per interval whatever the ingest rate.
 * Trace requests go to the loop through a mutex-protected queue and the
 * async handle; closing mirrors server/ingest/writer.c (the thread says it exited
 * through the same handle, then the loop joins it and closes the handle).
 */
#include "server/analysis/analyzer_worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/log.h"

#define DEFAULT_FLUSH_S 2.0

struct job {
    struct job *next;
    char host[APM_VERDICT_HOST_MAX];
    struct apm_batch *batch;
};

struct apm_analyzer_worker {
    uv_async_t async;
    struct apm_analyzer *an; /* the analysis thread only, once started */
    double flush_s;
    struct apm_log_limit store_log; /* the analysis thread only */
    apm_analyzer_trace_fn trace_fn;
    void *trace_ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Guarded by mu. */
    struct job *head, *tail;
    struct apm_analyzer_worker_stats stats;
    struct apm_analyzer_trace traces[APM_ANALYZER_WORKER_MAX_TRACES];
    unsigned ntraces;
    bool stopping;
    bool exited;
    /* Set with stopping; read without mu between jobs, so the stop skips what is queued. */
    atomic_bool halt;
    /* Loop thread only. */
    bool closing;
    bool free_on_close;
    apm_analyzer_worker_close_cb close_cb;
    void *close_ctx;
};

/* ---- writer thread: the hook ---- */

static bool wanted(const struct apm_series_block *blk)
{
    if (blk->n == 0)
        return false;
    if (blk->proc == APM_PROC_HOST)
        return blk->metric == APM_METRIC_MEM_TOTAL;
    return blk->metric == APM_METRIC_RSS || blk->metric == APM_METRIC_CGROUP_LIMIT;
}

/* Copies the wanted blocks of b (and their processes, without command lines). */
static struct apm_batch *copy_wanted(const struct apm_batch *b)
{
    struct apm_batch *c = apm_batch_new(b->seq);
    uint32_t *map = calloc((size_t)b->nprocs + 1, sizeof(*map));
    if (c == NULL || map == NULL)
        goto fail;
    for (uint32_t i = 0; i < b->nseries; i++) {
        const struct apm_series_block *blk = &b->series[i];
        if (!wanted(blk) || (blk->proc != APM_PROC_HOST && blk->proc >= b->nprocs))
            continue;
        uint32_t proc = APM_PROC_HOST;
        if (blk->proc != APM_PROC_HOST) {
            /* map holds index + 1, so 0 means "not copied yet". */
            if (map[blk->proc] == 0) {
                struct apm_proc_desc d = b->procs[blk->proc];
                d.cmdline = NULL;
                if (apm_batch_append_proc(c, &d, &map[blk->proc]) < 0)
                    goto fail;
                map[blk->proc]++;
            }
            proc = map[blk->proc] - 1;
        }
        struct apm_series_block *dst = NULL;
        if (apm_batch_append_block(c, proc, blk->metric, blk->n, &dst) < 0)
            goto fail;
        memcpy(dst->t_ms, blk->t_ms, blk->n * sizeof(*blk->t_ms));
        memcpy(dst->value, blk->value, blk->n * sizeof(*blk->value));
        dst->n = blk->n;
        c->nsamples += blk->n;
    }
    free(map);
    return c;
fail:
    free(map);
    apm_batch_free(c);
    return NULL;
}

void apm_analyzer_worker_hook(void *worker, const struct apm_agent_ident *agent,
                              const struct apm_batch *batch)
{
    struct apm_analyzer_worker *w = worker;
    struct job *j = calloc(1, sizeof(*j));
    struct apm_batch *c = j != NULL ? copy_wanted(batch) : NULL;
    bool queued = false;
    if (c != NULL && c->nsamples > 0) {
        snprintf(j->host, sizeof(j->host), "%s", agent->host);
        j->batch = c;
        pthread_mutex_lock(&w->mu);
        if (!w->stopping &&
            w->stats.queued_samples + c->nsamples <= APM_ANALYZER_WORKER_MAX_QUEUED) {
            if (w->tail != NULL)
                w->tail->next = j;
            else
                w->head = j;
            w->tail = j;
            w->stats.queued_samples += c->nsamples;
            queued = true;
            pthread_cond_signal(&w->cond);
        }
        pthread_mutex_unlock(&w->mu);
    } else if (c != NULL) {
        /* Nothing the analysis reads: not a drop. */
        apm_batch_free(c);
        free(j);
        return;
    }
    if (!queued) {
        pthread_mutex_lock(&w->mu);
        w->stats.dropped_batches++;
        pthread_mutex_unlock(&w->mu);
        apm_batch_free(c);
        free(j);
    }
}

/* ---- analysis thread ---- */

/* Called by the analyzer on the analysis thread: queue for the loop. */
static void on_trace(void *ctx, const struct apm_analyzer_trace *t)
{
    struct apm_analyzer_worker *w = ctx;
    pthread_mutex_lock(&w->mu);
    if (w->ntraces < APM_ANALYZER_WORKER_MAX_TRACES)
        w->traces[w->ntraces++] = *t;
    else
        w->stats.traces_dropped++;
    pthread_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void flush(struct apm_analyzer_worker *w)
{
    int rc = apm_analyzer_flush(w->an);
    if (rc < 0 && apm_log_limit_hit(&w->store_log, (int64_t)(mono_s() * 1000)))
        apm_warn("analyzer: cannot store verdicts: %s", apm_strerror(rc));
    struct apm_analyzer_stats s;
    apm_analyzer_get_stats(w->an, &s);
    pthread_mutex_lock(&w->mu);
    w->stats.analyzer = s;
    pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
    struct apm_analyzer_worker *w = arg;
    double next_flush = mono_s() + w->flush_s;
    uint64_t skipped_batches = 0, skipped_samples = 0; /* at the stop, over its rounds */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stopping && mono_s() < next_flush) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&w->cond, &w->mu, &until);
        }
        struct job *jobs = w->head;
        bool stop = w->stopping && jobs == NULL;
        w->head = w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        double round_start = mono_s();
        bool worked = jobs != NULL;
        uint64_t fed = 0, samples = 0;
        struct job *next;
        uint64_t skipped = 0;
        for (struct job *j = jobs; j != NULL; j = next) {
            next = j->next;
            if (atomic_load_explicit(&w->halt, memory_order_relaxed)) {
                skipped++;
                skipped_samples += j->batch->nsamples;
            } else {
                if (apm_analyzer_feed(w->an, j->host, j->batch) < 0)
                    apm_warn("analyzer: out of memory feeding a batch");
                fed++;
            }
            samples += j->batch->nsamples;
            apm_batch_free(j->batch);
            free(j);
        }
        skipped_batches += skipped;
        if (stop || mono_s() >= next_flush) {
            flush(w);
            next_flush = mono_s() + w->flush_s;
            worked = true;
        }
        double took_s = mono_s() - round_start;
        pthread_mutex_lock(&w->mu);
        if (worked)
            apm_histogram_observe(&w->stats.round_seconds, (uint64_t)(took_s * 1e6));
        w->stats.batches += fed;
        w->stats.skipped_at_stop += skipped;
        w->stats.queued_samples -= samples;
        if (stop)
            break;
    }
    w->exited = true;
    pthread_mutex_unlock(&w->mu);
    if (skipped_batches > 0)
        apm_info("analyzer: stopping: %llu queued batches (%llu samples) not analysed; "
                 "they are stored, and the next start warms up from the store",
                 (unsigned long long)skipped_batches, (unsigned long long)skipped_samples);
    uv_async_send(&w->async);
    return NULL;
}

/* ---- loop thread ---- */

void apm_analyzer_worker_free(struct apm_analyzer_worker *w)
{
    if (w == NULL)
        return;
    apm_analyzer_free(w->an);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void on_close(uv_handle_t *h)
{
    struct apm_analyzer_worker *w = h->data;
    if (w->close_cb != NULL)
        w->close_cb(w->close_ctx);
    if (w->free_on_close)
        apm_analyzer_worker_free(w);
}

static void on_async(uv_async_t *a)
{
    struct apm_analyzer_worker *w = a->data;
    /* Copied out so trace_fn runs without the lock; requests are rare. */
    static const unsigned batch = 64;
    struct apm_analyzer_trace t[64];
    bool exited;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        unsigned n = w->ntraces < batch ? w->ntraces : batch;
        memcpy(t, w->traces, n * sizeof(t[0]));
        memmove(w->traces, w->traces + n, (w->ntraces - n) * sizeof(t[0]));
        w->ntraces -= n;
        exited = w->exited;
        pthread_mutex_unlock(&w->mu);
        for (unsigned i = 0; i < n && w->trace_fn != NULL; i++)
            w->trace_fn(w->trace_ctx, &t[i]);
        if (n < batch)
            break;
    }
    if (exited && w->closing && !uv_is_closing((uv_handle_t *)&w->async)) {
        pthread_join(w->thread, NULL);
        uv_close((uv_handle_t *)&w->async, on_close);
    }
}

int apm_analyzer_worker_new(uv_loop_t *loop, struct apm_store *store,
                            const struct apm_analyzer_options *opt, double flush_s,
                            apm_analyzer_trace_fn trace_fn, void *ctx,
                            struct apm_analyzer_worker **out)
{
    struct apm_analyzer_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->flush_s = flush_s > 0 ? flush_s : DEFAULT_FLUSH_S;
    w->store_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "analyzer:", "failures to store verdicts", 10000, 1);
    w->trace_fn = trace_fn;
    w->trace_ctx = ctx;
    int rc = apm_analyzer_new(store, opt, on_trace, w, &w->an);
    if (rc < 0) {
        free(w);
        return rc;
    }
    rc = -pthread_mutex_init(&w->mu, NULL);
    if (rc < 0) {
        apm_analyzer_free(w->an);
        free(w);
        return rc;
    }
    rc = -pthread_cond_init(&w->cond, NULL);
    if (rc < 0) {
        pthread_mutex_destroy(&w->mu);
        apm_analyzer_free(w->an);
        free(w);
        return rc;
    }
    w->async.data = w;
    rc = uv_async_init(loop, &w->async, on_async);
    if (rc == 0)
        rc = -pthread_create(&w->thread, NULL, worker_main, w);
    if (rc < 0) {
        /* The thread never ran: the handle (if any) frees the worker once closed. */
        if (uv_is_active((uv_handle_t *)&w->async)) {
            w->free_on_close = true;
            uv_close((uv_handle_t *)&w->async, on_close);
        } else {
            apm_analyzer_worker_free(w);
        }
        return rc;
    }
    *out = w;
    return 0;
}

void apm_analyzer_worker_get_stats(struct apm_analyzer_worker *w,
                                   struct apm_analyzer_worker_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

void apm_analyzer_worker_close(struct apm_analyzer_worker *w, apm_analyzer_worker_close_cb cb,
                               void *ctx)
{
    if (w == NULL || w->closing)
        return;
    w->closing = true;
    w->close_cb = cb;
    w->close_ctx = ctx;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    atomic_store_explicit(&w->halt, true, memory_order_relaxed);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.series, "series", APM_COUNTER_GAUGE, "",
                "Series analysed now."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.samples, "samples", APM_COUNTER_TOTAL,
                "", "Samples fed to the analysis, warm-up included."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.warmed, "warmed", APM_COUNTER_TOTAL, "",
                "Series warmed up from the store."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.refused_series, "refused_series",
                APM_COUNTER_TOTAL, "",
                "Series not analysed because the analyzer held its maximum."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.evicted, "evicted", APM_COUNTER_TOTAL,
                "", "Series forgotten after staying silent."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.verdicts_stored, "verdicts_stored",
                APM_COUNTER_TOTAL, "", "Verdict records written to the store."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.store_errors, "store_errors",
                APM_COUNTER_TOTAL, "", "Verdict writes that failed."),
    APM_COUNTER(struct apm_analyzer_worker_stats, analyzer.trace_requests, "trace_requests",
                APM_COUNTER_TOTAL, "", "Tracemalloc windows asked of suspected processes."),
    APM_COUNTER(struct apm_analyzer_worker_stats, batches, "batches", APM_COUNTER_TOTAL, "",
                "Batches analysed."),
    APM_COUNTER(struct apm_analyzer_worker_stats, dropped_batches, "dropped_batches",
                APM_COUNTER_TOTAL, "", "Batches not analysed because the queue was full."),
    APM_COUNTER(struct apm_analyzer_worker_stats, skipped_at_stop, "skipped_at_stop",
                APM_COUNTER_TOTAL, "",
                "Batches still queued at the stop, not analysed (stored all the same)."),
    APM_COUNTER(struct apm_analyzer_worker_stats, queued_samples, "queued_samples",
                APM_COUNTER_GAUGE, "", "Samples waiting for the analysis now."),
    APM_COUNTER(struct apm_analyzer_worker_stats, traces_dropped, "traces_dropped",
                APM_COUNTER_TOTAL, "", "Trace requests lost because the loop queue was full."),
    APM_COUNTER(struct apm_analyzer_worker_stats, round_seconds, "round", APM_COUNTER_HISTOGRAM,
                "seconds", "Time of one analysis round: the queued batches fed, verdicts flushed."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    apm_analyzer_worker_get_stats(obj, out);
    return 0;
}

int apm_analyzer_worker_add_counters(struct apm_analyzer_worker *obj, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "analysis",
                                  .counters = counters,
                                  .size = sizeof(struct apm_analyzer_worker_stats),
                                  .read = read_counters,
                                  .obj = obj};
    return apm_counters_add(r, &g);
}
