#ifndef APM_WRITER_H
#define APM_WRITER_H

/*
 * Group commit: one thread takes the batches of every connection, stores as
 * many as are waiting in one LMDB transaction, commits, and then reports each
 * batch's outcome back on the loop thread (uv_async_send), where the
 * connection acks it. The loop never touches disk for writes.
 */
#include <stdint.h>
#include <uv.h>

#include "common/base/counters.h"
#include "common/analysis/model.h"
#include "server/store/store.h"

struct apm_writer;

/*
 * Outcome of one submitted batch, called on the loop thread exactly once:
 * status 0 = stored and committed, 1 = duplicate (already stored; ack it too),
 * negative = not stored (the connection must not ack it).
 */
typedef void (*apm_writer_done_cb)(void *ctx, uint64_t seq, int status);
typedef void (*apm_writer_close_cb)(struct apm_writer *w);

/*
 * Sees each batch stored by a successful commit (not duplicates, not
 * failures), on the writer thread, before the batch goes back to the loop.
 * agent and batch are borrowed for the call. It must be quick: the writer is
 * the ingest bottleneck (copy what is needed and return).
 */
typedef void (*apm_writer_commit_fn)(void *ctx, const struct apm_agent_ident *agent,
                                     const struct apm_batch *batch);

struct apm_writer_stats {
    uint64_t batches;
    uint64_t duplicates;
    uint64_t failures;
    uint64_t commits;
    uint64_t samples;
    uint64_t queued; /* batches waiting now */
    /* How long each group commit took (store rounds, retries and commit), observed per group. */
    struct apm_histogram commit_seconds;
};

/*
 * Starts the writer thread on store (borrowed; must outlive the writer).
 * max_queue caps waiting batches (0 = default 4096). Returns 0 and *out owned
 * (ends with apm_writer_close), or a negative code.
 */
int apm_writer_new(uv_loop_t *loop, struct apm_store *store, unsigned max_queue,
                   struct apm_writer **out);

/*
 * Queues a batch. Takes ownership of batch on success (0); on failure
 * (APM_E_FULL when the queue is full, APM_E_CLOSED after close) the caller
 * keeps it and cb is never called. agent is copied.
 */
int apm_writer_submit(struct apm_writer *w, const struct apm_agent_ident *agent,
                      struct apm_batch *batch, apm_writer_done_cb cb, void *ctx);

/* Sets the commit hook (fn NULL removes it); ctx is borrowed. Any thread. */
void apm_writer_set_commit_hook(struct apm_writer *w, apm_writer_commit_fn fn, void *ctx);

/*
 * Runs the store's maintenance (apm_store_maintain: rollups, retention, the
 * disk budget) on the writer thread: a pass over every series every
 * period_ms, in slices between rounds of batches. 0 turns it off (the
 * default). Any thread.
 */
void apm_writer_set_maintenance(struct apm_writer *w, int64_t period_ms);

/* Adds the "writer" counters to r (registered only while the writer runs). */
int apm_writer_add_counters(struct apm_writer *w, struct apm_counters *r);

void apm_writer_get_stats(struct apm_writer *w, struct apm_writer_stats *out);

/*
 * Drains: commits everything already submitted, reports it, stops the
 * thread, closes its handle and then calls cb (which may free nothing: the
 * writer frees itself after cb). Loop thread only.
 */
void apm_writer_close(struct apm_writer *w, apm_writer_close_cb cb);

#endif
