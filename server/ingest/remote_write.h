#ifndef APM_REMOTE_WRITE_H
#define APM_REMOTE_WRITE_H

/*
 * Remote-write out (docs/architecture.md, "Remote-write"): every committed
 * sample of the exported metrics (common/wire/prom.h, as GET /metrics names them) goes to a
 * Prometheus remote-write 1.0 receiver. The writer's commit hook copies a batch's samples into a
 * bounded queue; one sender thread takes them, posts them (protobuf, snappy block compression,
 * libcurl) and records per series the last time sent, in the store: each request's pending record
 * (apm_store_rw_pending_put) commits the cursors of the one before, and the
 * cursors go alone (apm_store_rw_cursor_put) when the sender is idle. A run
 * that dies before a request's cursors are committed leaves its record,
 * and the next run sends that request again alone, first, so that no
 * request mixes samples the receiver has with new ones. At start, and
 * whenever the queue overflowed, the sender reads the store after each
 * series' cursor instead: the store is the source of truth, the queue only
 * saves reading it back. 5xx, 429 and transport errors are retried with
 * backoff and jitter, forever; another 4xx drops the request (counted).
 */
#include <stddef.h>
#include <stdint.h>

#include "common/base/counters.h"
#include "common/analysis/model.h"
#include "server/store/store.h"

#define APM_RW_HEADERS_MAX 16

struct apm_rw_options {
    const char *url;
    /* Extra headers, "Name: value" each (e.g. X-Scope-OrgID for Mimir). */
    const char *headers[APM_RW_HEADERS_MAX];
    size_t nheaders;
    const char *bearer_token; /* NULL: no Authorization header */
    unsigned batch_size;      /* samples per request at most; 0 = 2000 */
    unsigned queue_cap;       /* samples the queue holds; 0 = 100000 */
    int64_t timeout_ms;       /* per request; 0 = 10 s */
    int64_t backoff_min_ms;   /* first retry within this; 0 = 100 ms */
    int64_t backoff_max_ms;   /* retries at most this far apart; 0 = 30 s */
    /*
     * The verdict gauges (as GET /metrics gives them: apm_verdict_info,
     * apm_verdict_confidence, ...) of the processes judged in the last
     * verdict_live_ms are sent every verdict_period_ms, stamped with the
     * time of sending. 0 = 15 s and 2 min (process-grace); < 0 period: never.
     */
    int64_t verdict_period_ms;
    int64_t verdict_live_ms;
};

struct apm_rw_stats {
    uint64_t samples_sent;     /* stored samples accepted by the receiver */
    uint64_t requests;         /* requests accepted */
    uint64_t retries;          /* attempts that failed and were tried again */
    uint64_t rejected;         /* requests dropped on a 4xx other than 429 */
    uint64_t samples_rejected; /* samples in them */
    uint64_t overflows;        /* queue overflows (each makes the sender read the store) */
    uint64_t store_reads;      /* passes over the store after the cursors */
    uint64_t queued;           /* samples queued now */
    uint64_t last_status;      /* HTTP status of the last attempt (0: no answer) */
    uint64_t verdict_samples;  /* verdict gauge samples accepted (not in samples_sent) */
    uint64_t verdict_rounds;   /* rounds of verdict gauges sent */
    uint64_t resent;           /* requests in flight at a crash, sent again alone at the start */
    uint64_t resent_rejected;  /* of them, refused (4xx): taken as delivered before the crash */
};

struct apm_rw;

/* Starts the sender thread. Returns 0 and *out (free with apm_rw_free), or a code. */
int apm_rw_new(struct apm_store *store, const struct apm_rw_options *opt, struct apm_rw **out);

/* An apm_writer_commit_fn (ctx = the apm_rw): queues the batch's exported samples. */
void apm_rw_commit_hook(void *ctx, const struct apm_agent_ident *agent,
                        const struct apm_batch *batch);

void apm_rw_get_stats(struct apm_rw *rw, struct apm_rw_stats *out);

/* Adds the "remote_write" counters to r. */
int apm_rw_add_counters(struct apm_rw *rw, struct apm_counters *r);

/*
 * Stops the sender (an attempt in flight is aborted; what was not
 * acknowledged is sent again after the next start, from the cursor) and
 * frees. No commit hook may run any more. Accepts NULL.
 */
void apm_rw_free(struct apm_rw *rw);

#endif
