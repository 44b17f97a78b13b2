#ifndef APM_ANALYZER_H
#define APM_ANALYZER_H

/*
 * The collector's live analysis: one apm_analysis (common/analysis/analysis.h) per
 * analysed series, created when the series is first seen, warmed from the
 * store's recent samples, and fed with every committed sample. It keeps the
 * latest verdict of each series, chooses the limit a forecast aims at
 * (cgroup, configured or host memory), persists changed verdicts in the
 * store (server/store/store_verdict.h), and asks for a tracemalloc window when a
 * process turns suspicious. docs/architecture.md, "Live analysis".
 *
 * Analysed now: rss of every process. Limits come from the same batches:
 * each process's cgroup_limit and its host's mem_total.
 *
 * Thread: an apm_analyzer is not thread-safe. server/analysis/analyzer_worker.c runs
 * one on its own thread; tests and benchmarks call it directly.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/analysis/analysis.h"
#include "common/analysis/model.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"

/* Most series analysed at once; more are counted and ignored. */
#define APM_ANALYZER_DEFAULT_MAX_SERIES 100000u

#define APM_ANALYZER_CGROUP_MAX 256u

/*
 * The analyzer's message to the alert rules about one series: its verdict
 * as the store keeps it, and what only the rules use (their cgroup matchers,
 * their hysteresis in sampling intervals), which the store does not keep.
 * Every pointer is borrowed for the duration of the call that hands it over.
 */
struct apm_analyzer_verdict {
    const struct apm_verdict_record *rec;
    const char *cgroup; /* the process's memory cgroup; "" when unknown */
    double interval_s;  /* the series' sampling interval, estimated; 0 = unknown */
};

/*
 * Called on the analyzer's thread with each series' verdict after every batch
 * fed to it (the alert rules judge it: server/alerts/alert_feed.h). msg is
 * borrowed.
 */
typedef void (*apm_analyzer_verdict_fn)(void *ctx, const struct apm_analyzer_verdict *msg);

struct apm_analyzer_options {
    struct apm_analysis_config analysis;
    int64_t memory_limit;    /* bytes; 0 = none (then host memory) */
    double trace_window_s;   /* tracemalloc window asked for; 0 = never ask */
    double trace_confidence; /* least leak confidence that asks for a window, 0..1 */
    double idle_s;           /* forget a series silent this long (sample time); 0 = 1 h */
    unsigned max_series;     /* 0 = APM_ANALYZER_DEFAULT_MAX_SERIES */
    apm_analyzer_verdict_fn verdict_fn; /* may be NULL */
    void *verdict_ctx;
};

/* Fills o with the library's analysis defaults, no limit, a 20 min window at 0.6. */
void apm_analyzer_options_init(struct apm_analyzer_options *o);

/* A request for a tracemalloc window in one process. */
struct apm_analyzer_trace {
    char host[APM_VERDICT_HOST_MAX];
    char process_id[APM_VERDICT_PROCESS_MAX];
    int32_t pid;
    int64_t start_ms;
    uint32_t duration_s;
    double confidence;
    enum apm_class cls; /* leak, or growing (rising with no verdict yet) */
};

/*
 * Called on the analyzer's thread when a process's rss verdict becomes a leak
 * with at least trace_confidence, or growing (rising, no verdict yet): once
 * per episode (until the verdict is neither), and never twice within
 * trace_window_s. t is borrowed.
 */
typedef void (*apm_analyzer_trace_fn)(void *ctx, const struct apm_analyzer_trace *t);

struct apm_analyzer_stats {
    uint64_t series;          /* analysed now */
    uint64_t samples;         /* fed (warm-up samples included) */
    uint64_t warmed;          /* series warmed from the store */
    uint64_t refused_series;  /* over max_series */
    uint64_t evicted;         /* forgotten after idle_s */
    uint64_t verdicts_stored; /* records written */
    uint64_t store_errors;
    uint64_t trace_requests;
};

struct apm_analyzer;

/*
 * Creates an analyzer. store is borrowed (must outlive it; NULL keeps
 * everything in memory: no warm-up, no persistence). opt is copied (NULL =
 * defaults). fn may be NULL. Returns 0 and *out owned (free with
 * apm_analyzer_free), -EINVAL for a bad analysis configuration, or -ENOMEM.
 */
int apm_analyzer_new(struct apm_store *store, const struct apm_analyzer_options *opt,
                     apm_analyzer_trace_fn fn, void *ctx, struct apm_analyzer **out);

/* Frees a without flushing. Accepts NULL. */
void apm_analyzer_free(struct apm_analyzer *a);

/*
 * Feeds the samples of one committed batch from host (both borrowed). Blocks
 * of metrics that are not analysed are read only for limits. Returns 0 or
 * -ENOMEM (the batch is then partly fed).
 */
int apm_analyzer_feed(struct apm_analyzer *a, const char *host, const struct apm_batch *b);

/*
 * Writes the verdicts that changed since the last flush in one transaction,
 * and forgets series idle for idle_s. Returns the number of records written
 * or a negative code (they stay pending for the next flush).
 */
int apm_analyzer_flush(struct apm_analyzer *a);

/*
 * The current (possibly unflushed) verdict of series (host, process_id,
 * metric) into *out. Returns 0 or APM_E_NOTFOUND.
 */
int apm_analyzer_get(const struct apm_analyzer *a, const char *host, const char *process_id,
                     enum apm_metric metric, struct apm_verdict_record *out);

void apm_analyzer_get_stats(const struct apm_analyzer *a, struct apm_analyzer_stats *out);

#endif
