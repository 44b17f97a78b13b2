#ifndef APM_FEED_H
#define APM_FEED_H

/*
 * Hands batches to the uplink, through the disk spool when there is one.
 * With a spool every batch is appended to disk and numbered from the
 * spool's lease; it also goes to the uplink's memory unless the spool holds
 * older batches not handed over yet (FIFO: what earlier runs left goes
 * first) or the uplink already holds max_queue bytes, in which case it is
 * read back from disk in its turn. Acks move the spool's cursor.
 *
 * Thread: loop thread only. Set up in this order: apm_feed_init, then
 * apm_spool_open(.., apm_feed_on_spool_read, feed, ..) and apm_uplink_new
 * with .on_acked = apm_feed_on_acked, .acked_ctx = feed, then apm_feed_attach.
 */
#include <stdbool.h>
#include <stdint.h>

#include "agent/spool.h"
#include "agent/uplink.h"

struct apm_feed {
    struct apm_uplink *uplink;
    struct apm_spool *spool; /* NULL: memory only */
    uint64_t max_queue;
    uint64_t next_seq;       /* with a spool: the seq of the next batch */
    uint64_t spool_last_seq; /* the last seq appended to the spool */
    uint64_t mem_last_seq;   /* the last seq handed to the uplink (from memory or replayed) */
    bool backlog;            /* the spool holds batches the uplink has not been given */
    bool stopping;
    uint64_t replay_decode_errors;
    /* Optional: told of each ack after the spool (the fault-matrix test agent logs them). */
    void (*on_acked)(void *ctx, uint64_t seq);
    void *ctx;
};

void apm_feed_init(struct apm_feed *f, uint64_t max_queue);

/* Starts handing over what the spool holds (spool may be NULL). */
void apm_feed_attach(struct apm_feed *f, struct apm_uplink *u, struct apm_spool *spool);

/* Takes ownership of b; returns the seq it was given. */
uint64_t apm_feed_push(struct apm_feed *f, struct apm_batch *b);

/* Callbacks to give the spool and the uplink (ctx = the feed). */
void apm_feed_on_spool_read(void *ctx, struct apm_spool_record *list, uint64_t through,
                            bool at_end);
void apm_feed_on_acked(void *ctx, uint64_t seq);

#endif
