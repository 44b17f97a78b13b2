#ifndef APM_MODEL_H
#define APM_MODEL_H

/*
 * The data model shared by agent, codec, collector and store: metrics, process
 * descriptions and batches of samples. Nothing here knows the wire format;
 * common/wire/codec.c converts between these structs and protobuf.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/hashmap.h"
#include "common/base/units.h"

enum apm_metric {
    APM_METRIC_NONE = 0,
    APM_METRIC_RSS = 1,
    APM_METRIC_PSS = 2,
    APM_METRIC_USS = 3,
    APM_METRIC_SWAP = 4,
    APM_METRIC_CGROUP_USAGE = 5,
    APM_METRIC_CGROUP_LIMIT = 6,
    APM_METRIC_MEM_AVAILABLE = 7, /* host */
    APM_METRIC_MEM_TOTAL = 8,     /* host */
    APM_METRIC_TRACED = 9,        /* probe: tracemalloc total */
    APM_METRIC_SITE_SIZE = 10,    /* probe: per allocation site */
    APM_METRIC_SITE_COUNT = 11,   /* probe: per allocation site */
    /* Probe gc statistics, summed over generations; stored from gc records, never sent as series.
     */
    APM_METRIC_GC_COLLECTIONS = 12,
    APM_METRIC_GC_COLLECTED = 13,
    APM_METRIC_GC_UNCOLLECTABLE = 14,
    APM_METRIC_GC_GARBAGE = 15, /* len(gc.garbage) */
    APM_METRIC_SITE_VAR = 16,   /* probe, sampled: running variance of a site's changes */
    APM_METRIC_COUNT
};

/* Returns the metric's contract name ("rss", "cgroup_usage", ...) or NULL. */
const char *apm_metric_name(enum apm_metric m);

/* The unit of the metric's values (bytes for an unknown metric). */
enum apm_unit apm_metric_unit(enum apm_metric m);

/* Parses a contract name. Returns 0 or APM_E_NOTFOUND. */
int apm_metric_parse(const char *name, enum apm_metric *out);

/* True for metrics that describe the host rather than a process. */
bool apm_metric_is_host(enum apm_metric m);

/* Longest string a batch keeps (command lines, names, cgroup paths); longer ones are cut. */
#define APM_MODEL_STRING_MAX 4096u

/* Index meaning "the host itself" in apm_series_block.proc. */
#define APM_PROC_HOST UINT32_MAX

/*
 * A process as the agent sees it. Identity is (pid, start_ms): a reused pid
 * with another start time is another process. Strings are owned by the batch.
 */
struct apm_proc_desc {
    int32_t pid;
    int32_t ppid;
    int64_t start_ms; /* process start, Unix milliseconds */
    char *name;       /* what a person calls it: Python script or module, else comm */
    char *cmdline;    /* full command line, arguments separated by spaces */
    char *cgroup;     /* memory cgroup path, "" when unknown */
};

/*
 * Samples of one series (process or host, metric) in time order. One batch
 * may hold several blocks of the same series; readers must not assume one.
 */
struct apm_series_block {
    uint32_t proc;          /* index into apm_batch.procs, or APM_PROC_HOST */
    enum apm_metric metric; /* never a SITE_* metric here */
    uint32_t n;
    uint32_t cap;
    bool pooled; /* t_ms and value live in the batch's slab, not in their own allocations */
    int64_t *t_ms;
    int64_t *value;
};

/* Longest traceback a site keeps (frames), as in the probe protocol. */
#define APM_SITE_FRAMES_MAX 65535u
/* Most generations a gc record carries (CPython has 3). */
#define APM_GC_GENERATIONS_MAX 4u

/* One frame of a traceback site key. */
struct apm_site_frame {
    char *file; /* owned by the batch */
    uint32_t line;
};

/*
 * One allocation site of a tracemalloc diff: where (file:line, or a
 * traceback with the allocating line last) and how much. Strings are owned
 * by the batch; file is never NULL once set with apm_site_set.
 */
struct apm_site_stat {
    char *file;
    uint32_t line;
    uint32_t nframes;              /* 0 for "lineno" keys */
    struct apm_site_frame *frames; /* oldest call first, nframes of them */
    int64_t size;                  /* bytes now allocated at the site */
    int64_t size_diff;             /* change since the previous snapshot */
    int64_t count;                 /* blocks */
    int64_t count_diff;
    /* Sampled diffs only: standard error of size, and the running variance of the
     * site's changes since its sampling session began (bytes^2; the error of the
     * growth between two diffs is the root of the difference of theirs). */
    int64_t size_err;
    int64_t growth_var;
};

/*
 * One tracemalloc snapshot compared with the previous one of a process
 * (Snapshot.compare_to order: the largest |size_diff| first).
 */
struct apm_trace_diff {
    uint32_t proc; /* index into apm_batch.procs (never APM_PROC_HOST) */
    int64_t t_ms;
    uint64_t probe_seq;
    uint64_t session;
    bool traceback; /* key type "traceback", else "lineno" */
    uint32_t frames;
    int64_t interval_ms;
    int64_t traced_current;
    int64_t traced_peak;
    int64_t tracemalloc_memory;
    int64_t total_size;
    int64_t total_count;
    int64_t total_size_diff;
    int64_t total_count_diff;
    uint64_t groups;
    uint64_t truncated;
    uint64_t sample_bytes; /* 0: tracemalloc, exact; else sampled estimates */
    uint64_t samples;      /* live samples behind a sampled diff */
    uint32_t nsites;
    struct apm_site_stat *sites;
};

struct apm_gc_generation {
    int64_t collections; /* cumulative since the process started */
    int64_t collected;
    int64_t uncollectable;
    int64_t count; /* gc.get_count(): allocations since the last collection */
};

/* Python gc statistics of one process at one instant. */
struct apm_gc_stats {
    uint32_t proc; /* index into apm_batch.procs */
    int64_t t_ms;
    uint32_t ngen;
    struct apm_gc_generation gen[APM_GC_GENERATIONS_MAX];
    int64_t garbage; /* len(gc.garbage) */
};

/* The agent's own counters, sent now and then in a batch (proto Health). */
#define APM_HEALTH_MAX 64u
#define APM_HEALTH_NAME_MAX 48u /* bytes with the NUL: names of 1 to 47 of [a-z0-9_] */

struct apm_health_counter {
    char name[APM_HEALTH_NAME_MAX];
    uint64_t value;
    bool gauge; /* a level now; else a running total */
};

struct apm_health {
    int64_t t_ms; /* when the values were read, Unix ms */
    uint32_t n;
    struct apm_health_counter c[APM_HEALTH_MAX];
};

/* True for a valid health counter name: 1 to 47 bytes of [a-z0-9_]. */
bool apm_health_name_valid(const char *s, size_t len);

/*
 * Adds a counter to h (name copied). Returns 0, -EINVAL for an invalid name,
 * or APM_E_LIMIT past APM_HEALTH_MAX.
 */
int apm_health_add(struct apm_health *h, const char *name, uint64_t value, bool gauge);

/*
 * A batch: what the agent sends under one sequence number and what the
 * collector commits in one piece. Library-allocated (apm_batch_new/free);
 * the batch owns every array and string it points to.
 */
struct apm_batch {
    uint64_t seq;
    uint32_t nprocs;
    uint32_t procs_cap;
    struct apm_proc_desc *procs;
    struct apm_hashmap proc_index; /* (pid, start_ms) -> index, for apm_batch_add_proc */
    uint32_t nseries;
    uint32_t series_cap;
    struct apm_series_block *series;
    uint64_t nsamples; /* total over all blocks */
    int64_t *slab;     /* one allocation for the samples of apm_batch_append_block */
    size_t slab_used;
    size_t slab_cap;
    uint32_t ndiffs;
    uint32_t diffs_cap;
    struct apm_trace_diff *diffs;
    uint32_t ngc;
    uint32_t gc_cap;
    struct apm_gc_stats *gc;
    struct apm_health *health; /* owned; NULL when the batch carries none */
};

/* Returns owned (free with apm_batch_free), or NULL when out of memory. */
struct apm_batch *apm_batch_new(uint64_t seq);

/* Frees the batch and everything it owns. Accepts NULL. */
void apm_batch_free(struct apm_batch *b);

/*
 * Adds a process (copies the strings; NULL strings become "") and returns its
 * index through out_index. A process with the same (pid, start_ms) already in
 * the batch is not added twice. Returns 0 or -ENOMEM.
 */
int apm_batch_add_proc(struct apm_batch *b, const struct apm_proc_desc *p, uint32_t *out_index);

/*
 * Appends one sample to the series (proc, metric), creating the block on
 * first use. proc is an index from apm_batch_add_proc or APM_PROC_HOST.
 * Returns 0, -EINVAL (bad index or metric) or -ENOMEM.
 */
int apm_batch_add_sample(struct apm_batch *b, uint32_t proc, enum apm_metric metric, int64_t t_ms,
                         int64_t value);

/*
 * Appends a process without looking for an earlier copy (the caller knows it
 * is new, e.g. the decoder). Same contract as apm_batch_add_proc otherwise.
 */
int apm_batch_append_proc(struct apm_batch *b, const struct apm_proc_desc *p, uint32_t *out_index);

/*
 * Sets aside room for n samples in one allocation, which the following
 * apm_batch_append_block calls use instead of two allocations a block (the
 * decoder knows a batch's sample count up front). Returns 0 or -ENOMEM.
 */
int apm_batch_reserve(struct apm_batch *b, size_t n);

/*
 * Appends an empty block for (proc, metric) with room for n samples, without
 * looking for an existing one, and returns it through out (valid until the
 * next change to the batch). The caller fills t_ms/value and sets ->n, then
 * adds n to b->nsamples. Returns 0, -EINVAL or -ENOMEM.
 */
int apm_batch_append_block(struct apm_batch *b, uint32_t proc, enum apm_metric metric, uint32_t n,
                           struct apm_series_block **out);

/*
 * Appends a diff of process proc with nsites zeroed sites and returns it
 * through out (valid until the next diff is appended). The caller fills the
 * fields and each site (apm_site_set). Returns 0, -EINVAL (bad index, more
 * than 65535 sites) or -ENOMEM.
 */
int apm_batch_append_diff(struct apm_batch *b, uint32_t proc, uint32_t nsites,
                          struct apm_trace_diff **out);

/*
 * Sets a site's file (copied, cut at APM_MODEL_STRING_MAX), line and room
 * for nframes traceback frames (zeroed; fill each with apm_site_set_frame).
 * Returns 0, -EINVAL (nframes > APM_SITE_FRAMES_MAX) or -ENOMEM.
 */
int apm_site_set(struct apm_site_stat *s, const char *file, uint32_t line, uint32_t nframes);

/* Sets frame i (< s->nframes) of a site; copies file. Returns 0, -EINVAL or -ENOMEM. */
int apm_site_set_frame(struct apm_site_stat *s, uint32_t i, const char *file, uint32_t line);

/*
 * What the collector stores of a gc record, summed over its generations: the
 * values of APM_METRIC_GC_COLLECTIONS, _COLLECTED, _UNCOLLECTABLE and
 * _GARBAGE, in that order.
 */
#define APM_GC_METRICS 4
extern const enum apm_metric apm_gc_metrics[APM_GC_METRICS];
void apm_gc_totals(const struct apm_gc_stats *g, int64_t out[APM_GC_METRICS]);

/* Appends a copy of g. Returns 0, -EINVAL (bad index or ngen) or -ENOMEM. */
int apm_batch_add_gc(struct apm_batch *b, const struct apm_gc_stats *g);

/* True when the batch carries anything to store: samples, diffs or gc records. */
bool apm_batch_has_data(const struct apm_batch *b);

/* Identity of the agent on the other end of a connection (from its Hello). */
struct apm_agent_ident {
    char agent_id[128];
    char host[256];
    char boot_id[64];
    char version[64];
    uint64_t instance; /* random per agent run; sequence numbers restart with it */
};

#endif
