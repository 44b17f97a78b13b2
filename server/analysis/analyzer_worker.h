#ifndef APM_ANALYZER_WORKER_H
#define APM_ANALYZER_WORKER_H

/*
 * Runs an apm_analyzer on its own thread, off both the loop and the
 * group-commit writer. The writer's commit hook (apm_analyzer_worker_hook)
 * copies the samples the analysis needs out of each committed batch into a
 * bounded queue and returns; the analysis thread feeds them, persists
 * changed verdicts every flush interval, and hands trace requests to the
 * loop thread through a uv_async_t, where trace_fn is called.
 */
#include <stdint.h>
#include <uv.h>

#include "common/base/counters.h"
#include "server/analysis/analyzer.h"

/* Samples waiting for analysis at most; beyond, batches are dropped and counted. */
#define APM_ANALYZER_WORKER_MAX_QUEUED (4u << 20)
/* Trace requests waiting for the loop at most. */
#define APM_ANALYZER_WORKER_MAX_TRACES 1024u

struct apm_analyzer_worker;

struct apm_analyzer_worker_stats {
    struct apm_analyzer_stats analyzer; /* as of the last flush */
    uint64_t batches;                   /* fed */
    uint64_t dropped_batches;           /* queue full: not analysed */
    uint64_t skipped_at_stop;           /* still queued when the worker stopped */
    uint64_t queued_samples;            /* waiting now */
    uint64_t traces_dropped;            /* the loop's queue was full */
    /* How long each round took: feeding what was queued, and the flush when one was due. */
    struct apm_histogram round_seconds;
};

typedef void (*apm_analyzer_worker_close_cb)(void *ctx);

/*
 * Creates the analyzer (store borrowed, opt copied; see apm_analyzer_new)
 * and starts its thread. trace_fn (may be NULL) is called on the loop thread
 * with each trace request. flush_s: seconds between verdict flushes (0 = 2).
 * Returns 0 and *out (ends with apm_analyzer_worker_close), or a negative
 * code. Loop thread.
 */
int apm_analyzer_worker_new(uv_loop_t *loop, struct apm_store *store,
                            const struct apm_analyzer_options *opt, double flush_s,
                            apm_analyzer_trace_fn trace_fn, void *ctx,
                            struct apm_analyzer_worker **out);

/*
 * An apm_writer_commit_fn (ctx is the worker): copies the rss, cgroup_limit
 * and mem_total samples of batch and queues them. Any thread; never blocks
 * on analysis.
 */
void apm_analyzer_worker_hook(void *worker, const struct apm_agent_ident *agent,
                              const struct apm_batch *batch);

void apm_analyzer_worker_get_stats(struct apm_analyzer_worker *w,
                                   struct apm_analyzer_worker_stats *out);

/* Adds the "analysis" counters to r. Their read runs on any thread. */
int apm_analyzer_worker_add_counters(struct apm_analyzer_worker *w, struct apm_counters *r);

/*
 * Stops promptly: the batch being fed finishes, batches still queued are not
 * analysed (counted in skipped_at_stop and logged: the store holds them, and
 * the next start warms up from it), the verdicts are flushed; then closes the
 * handle and calls cb(ctx) (may be NULL). A queue full under heavy ingest
 * would otherwise hold the stop for tens of seconds. Hook calls after this
 * are counted as dropped. Loop thread; idempotent.
 */
void apm_analyzer_worker_close(struct apm_analyzer_worker *w, apm_analyzer_worker_close_cb cb,
                               void *ctx);

/*
 * Frees a closed worker (its close callback has run) once nothing can call
 * the hook any more (the writer's thread has been joined), typically after
 * the loop has ended. Accepts NULL.
 */
void apm_analyzer_worker_free(struct apm_analyzer_worker *w);

#endif
