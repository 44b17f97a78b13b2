#ifndef APM_UPLINK_H
#define APM_UPLINK_H

/*
 * The agent's connection to the collector: connects (names resolved off the
 * loop), sends Hello, then sends queued batches and drops each one only when
 * the collector acks it. On any failure it reconnects with exponential
 * backoff and full jitter and resends everything unacked; what the collector
 * already committed (HelloAck's last_seq) is dropped instead of resent. The
 * queue is bounded in bytes: when full, the oldest batches are dropped and
 * counted.
 *
 * Thread: loop thread only.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/wire/codec.h"
#include "common/analysis/model.h"
#include "common/wire/tls.h"

struct apm_uplink;

struct apm_uplink_options {
    const char *collector; /* "HOST:PORT"; copied */
    const uint8_t *token;  /* copied */
    size_t token_len;
    struct apm_agent_ident ident;
    size_t max_queue_bytes;      /* 0 = 64 MiB */
    unsigned max_unacked;        /* batches sent and not yet acked; 0 = 32 */
    uint64_t backoff_min_ms;     /* 0 = 200 ms */
    uint64_t backoff_max_ms;     /* 0 = 30 s */
    uint64_t connect_timeout_ms; /* 0 = 10 s */
    struct apm_tls_ctx *tls;     /* borrowed, outlives the uplink; NULL = plaintext */
    const char *tls_server_name; /* name the collector's certificate carries; NULL = HOST */
    uint64_t ack_timeout_ms;     /* batches unacked this long on a link: reconnect; 0 = 60 s */
    /* Called on the loop thread with the highest seq acked so far (the disk spool's cursor). */
    void (*on_acked)(void *ctx, uint64_t seq);
    void *acked_ctx;
};

struct apm_uplink_stats {
    uint64_t batches_queued; /* pushed since start */
    uint64_t samples_queued;
    uint64_t batches_sent; /* frames written, resends included */
    uint64_t batches_acked;
    uint64_t samples_acked;
    uint64_t batches_dropped; /* oldest dropped because the queue was full */
    uint64_t samples_dropped;
    uint64_t batches_refused; /* refused for good by the collector (a limit), dropped */
    uint64_t samples_refused;
    uint64_t reconnects;
    uint64_t ack_timeouts;
    uint64_t errors_received;
    uint64_t controls_received;
    uint64_t queue_len;
    uint64_t queue_bytes;
    bool connected;
};

/* Called on the loop thread for each Control frame from the collector. */
typedef void (*apm_uplink_control_cb)(void *ctx, const struct apm_msg_control *c);
typedef void (*apm_uplink_close_cb)(void *ctx);

/*
 * Starts connecting at once. Returns 0 and *out (ends with
 * apm_uplink_close), or a negative code.
 */
int apm_uplink_new(uv_loop_t *loop, const struct apm_uplink_options *opt,
                   apm_uplink_control_cb on_control, void *ctx, struct apm_uplink **out);

/*
 * Queues a batch: assigns its sequence number and sends it when the
 * connection allows. Takes ownership of b always (it may be dropped later,
 * counted, if the queue overflows).
 */
uint64_t apm_uplink_push(struct apm_uplink *u, struct apm_batch *b); /* returns the seq given */

/*
 * Like apm_uplink_push, but b->seq is already set (the disk spool numbers
 * batches itself): it must be above every seq pushed before.
 */
void apm_uplink_push_seq(struct apm_uplink *u, struct apm_batch *b);

void apm_uplink_get_stats(const struct apm_uplink *u, struct apm_uplink_stats *out);

/* Closes the connection and timers, frees the queue, then calls cb. */
void apm_uplink_close(struct apm_uplink *u, apm_uplink_close_cb cb, void *ctx);

#endif
