#include "agent/feed.h"

#include <stdlib.h>

#include "common/base/log.h"

#define REPLAY_READ_BYTES (1u << 20)

void apm_feed_init(struct apm_feed *f, uint64_t max_queue)
{
    f->uplink = NULL;
    f->spool = NULL;
    f->max_queue = max_queue;
    f->next_seq = 1;
    f->spool_last_seq = f->mem_last_seq = 0;
    f->backlog = false;
    f->stopping = false;
    f->replay_decode_errors = 0;
}

static uint64_t uplink_queue_bytes(const struct apm_feed *f)
{
    struct apm_uplink_stats us;
    apm_uplink_get_stats(f->uplink, &us);
    return us.queue_bytes;
}

/* Asks the spool for the next batches while the uplink's queue has room. */
static void maybe_replay(struct apm_feed *f)
{
    if (f->spool == NULL || f->uplink == NULL || !f->backlog || f->stopping ||
        uplink_queue_bytes(f) >= f->max_queue / 2)
        return;
    (void)apm_spool_read(f->spool, f->mem_last_seq, REPLAY_READ_BYTES);
}

void apm_feed_attach(struct apm_feed *f, struct apm_uplink *u, struct apm_spool *spool)
{
    f->uplink = u;
    f->spool = spool;
    if (spool == NULL)
        return;
    f->next_seq = apm_spool_first_seq(spool);
    f->backlog = true; /* until the spool has handed over what earlier runs left */
    maybe_replay(f);
}

void apm_feed_on_spool_read(void *ctx, struct apm_spool_record *list, uint64_t through, bool at_end)
{
    struct apm_feed *f = ctx;
    for (struct apm_spool_record *r = list; r != NULL; r = r->next) {
        if (r->seq <= f->mem_last_seq || f->uplink == NULL)
            continue;
        struct apm_batch *b = NULL;
        if (apm_spool_decode_batch(r->data, r->len, &b) != 0 || b->seq != r->seq) {
            apm_batch_free(b);
            if (f->replay_decode_errors++ == 0)
                apm_warn("agent: spool: batch %llu cannot be decoded: dropped",
                         (unsigned long long)r->seq);
            continue;
        }
        f->mem_last_seq = r->seq;
        apm_uplink_push_seq(f->uplink, b);
    }
    apm_spool_records_free(list);
    if (through > f->mem_last_seq)
        f->mem_last_seq = through;
    if (at_end && f->mem_last_seq >= f->spool_last_seq)
        f->backlog = false;
    maybe_replay(f);
}

void apm_feed_on_acked(void *ctx, uint64_t seq)
{
    struct apm_feed *f = ctx;
    if (f->spool != NULL && !f->stopping)
        apm_spool_ack(f->spool, seq);
    if (f->on_acked != NULL)
        f->on_acked(f->ctx, seq);
    maybe_replay(f);
}

uint64_t apm_feed_push(struct apm_feed *f, struct apm_batch *b)
{
    if (f->spool == NULL)
        return apm_uplink_push(f->uplink, b);
    uint64_t seq = b->seq = f->next_seq++;
    bool direct = !f->backlog && uplink_queue_bytes(f) < f->max_queue;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = apm_spool_encode_batch(b, &buf, &len);
    if (rc == 0)
        rc = apm_spool_append(f->spool, b->seq, (uint32_t)b->nsamples, buf, len, direct);
    free(buf);
    if (rc != 0 && !f->backlog)
        direct = true; /* not on disk: memory is all that is left */
    if (rc == 0)
        f->spool_last_seq = b->seq;
    if (direct) {
        f->mem_last_seq = b->seq;
        apm_uplink_push_seq(f->uplink, b);
        return seq;
    }
    f->backlog = true;
    apm_batch_free(b);
    maybe_replay(f);
    return seq;
}
