/*
 * Published heads: what readers on other threads see of the samples that
 * are only in the write-ahead log and the writer's memory (docs/store.md,
 * "Write-ahead log").
 *
 * After each commit the writer copies, for every series the commit touched
 * or checkpointed, its open chunk and record fields here, under one of
 * HEAD_STRIPES mutexes picked by the series id. A reader opens its read
 * transaction, reads the series record (which holds the samples up to the
 * record's last_ms), then copies the published head: the samples of the head
 * after last_ms are those the record does not hold yet. The head remembers
 * the last_ms of the record last written for the series (ckpt_t): when that
 * is newer than the reader's record, a checkpoint (maybe a seal, which empties
 * the head) committed after the reader's snapshot, and the reader renews its
 * transaction and tries again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

#define HEAD_STRIPES 64u
/* A reader whose snapshot keeps losing the race this many times gives up (it cannot in practice).
 */
#define READ_TRIES 64

struct store_head {
    int64_t ckpt_t; /* last_ms of the series record in DB_SERIES, INT64_MIN without samples */
    int64_t first_ms, last_ms, last_value;
    uint64_t nsamples;
    int64_t head_first_t;
    uint32_t n, len, cap;
    uint8_t *buf;
};

struct store_heads {
    pthread_mutex_t mu[HEAD_STRIPES];
    struct apm_hashmap map[HEAD_STRIPES]; /* id (big-endian) -> struct store_head * */
};

int apm_store_heads_new(struct store_heads **out)
{
    struct store_heads *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < HEAD_STRIPES; i++) {
        pthread_mutex_init(&h->mu[i], NULL);
        apm_hashmap_init(&h->map[i]);
    }
    *out = h;
    return 0;
}

static void free_head(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    struct store_head *hd = (struct store_head *)(uintptr_t)value;
    free(hd->buf);
    free(hd);
}

void apm_store_heads_free(struct store_heads *h)
{
    if (h == NULL)
        return;
    for (unsigned i = 0; i < HEAD_STRIPES; i++) {
        apm_hashmap_foreach(&h->map[i], free_head, NULL);
        apm_hashmap_close(&h->map[i]);
        pthread_mutex_destroy(&h->mu[i]);
    }
    free(h);
}

static unsigned stripe(uint64_t id)
{
    return (unsigned)((id * 0x9e3779b97f4a7c15ull) >> 58) % HEAD_STRIPES;
}

int apm_store_head_publish(struct apm_store *s, struct store_series *ser)
{
    struct store_heads *h = s->heads;
    unsigned i = stripe(ser->id);
    uint8_t key[8];
    apm_store_put_be64(key, ser->id);
    uint32_t len = ser->head.n > 0 ? ser->head.len : 0;
    int rc = 0;
    pthread_mutex_lock(&h->mu[i]);
    struct store_head *hd = ser->pub;
    if (hd == NULL) {
        uint64_t p;
        if (apm_hashmap_get(&h->map[i], key, 8, &p) == 0) {
            hd = (struct store_head *)(uintptr_t)p;
        } else if ((hd = calloc(1, sizeof(*hd))) == NULL ||
                   (rc = apm_hashmap_put(&h->map[i], key, 8, (uint64_t)(uintptr_t)hd)) < 0) {
            free(hd);
            hd = NULL;
            rc = rc < 0 ? rc : -ENOMEM;
        }
        ser->pub = hd;
    }
    if (hd != NULL && len > hd->cap) {
        uint32_t ncap = len < 256 ? 256 : len * 2;
        uint8_t *nb = realloc(hd->buf, ncap);
        if (nb == NULL) {
            rc = -ENOMEM;
            len = 0; /* the head is still in DB_SERIES's record up to ckpt_t; see below */
        } else {
            hd->buf = nb;
            hd->cap = ncap;
        }
    }
    if (hd != NULL) {
        hd->ckpt_t = ser->rec_last;
        hd->first_ms = ser->first_ms;
        hd->last_ms = ser->last_ms;
        hd->last_value = ser->last_value;
        hd->nsamples = ser->nsamples;
        hd->head_first_t = ser->head.first_t;
        hd->n = len > 0 ? ser->head.n : 0;
        hd->len = len;
        if (len > 0)
            memcpy(hd->buf, ser->head.buf, len);
    }
    pthread_mutex_unlock(&h->mu[i]);
    return rc;
}

void apm_store_head_unpublish(struct apm_store *s, uint64_t id)
{
    struct store_heads *h = s->heads;
    unsigned i = stripe(id);
    uint8_t key[8];
    uint64_t p;
    apm_store_put_be64(key, id);
    pthread_mutex_lock(&h->mu[i]);
    if (apm_hashmap_get(&h->map[i], key, 8, &p) == 0) {
        apm_hashmap_del(&h->map[i], key, 8);
        free_head(NULL, NULL, 0, p);
    }
    pthread_mutex_unlock(&h->mu[i]);
}

/* Copies the published head of id into snap (buf owned). Returns 1, 0 (none) or -ENOMEM. */
static int head_copy(struct apm_store *s, uint64_t id, struct store_head_snap *snap)
{
    struct store_heads *h = s->heads;
    unsigned i = stripe(id);
    uint8_t key[8];
    uint64_t p;
    int rc = 0;
    apm_store_put_be64(key, id);
    free(snap->buf);
    memset(snap, 0, sizeof(*snap));
    pthread_mutex_lock(&h->mu[i]);
    if (apm_hashmap_get(&h->map[i], key, 8, &p) == 0) {
        const struct store_head *hd = (const struct store_head *)(uintptr_t)p;
        snap->ckpt_t = hd->ckpt_t;
        snap->first_ms = hd->first_ms;
        snap->last_ms = hd->last_ms;
        snap->last_value = hd->last_value;
        snap->nsamples = hd->nsamples;
        snap->head_first_t = hd->head_first_t;
        rc = 1;
        if (hd->len > 0 && (snap->buf = malloc(hd->len)) != NULL) {
            memcpy(snap->buf, hd->buf, hd->len);
            snap->len = hd->len;
        } else if (hd->len > 0) {
            rc = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&h->mu[i]);
    snap->found = rc == 1;
    return rc;
}

static int64_t rec_last(const struct store_series_record *rec)
{
    return rec->info.nsamples > 0 ? rec->info.last_ms : INT64_MIN;
}

void apm_store_head_overlay(const struct store_head_snap *snap, struct apm_series_info *info)
{
    if (!snap->found || snap->nsamples <= info->nsamples)
        return;
    if (info->nsamples == 0)
        info->first_ms = snap->first_ms;
    info->last_ms = snap->last_ms;
    info->last_value = snap->last_value;
    info->nsamples = snap->nsamples;
}

int apm_store_series_info_live(struct apm_store *s, struct apm_series_info *info)
{
    struct store_head_snap snap = {0};
    struct store_heads *h = s->heads;
    unsigned i = stripe(info->id);
    uint8_t key[8];
    uint64_t p;
    apm_store_put_be64(key, info->id);
    pthread_mutex_lock(&h->mu[i]);
    if (apm_hashmap_get(&h->map[i], key, 8, &p) == 0) {
        const struct store_head *hd = (const struct store_head *)(uintptr_t)p;
        snap = (struct store_head_snap){.found = true,
                                        .first_ms = hd->first_ms,
                                        .last_ms = hd->last_ms,
                                        .last_value = hd->last_value,
                                        .nsamples = hd->nsamples};
    }
    pthread_mutex_unlock(&h->mu[i]);
    apm_store_head_overlay(&snap, info);
    return 0;
}

void (*apm_store_test_read_hook)(uint64_t series_id);

int apm_store_read_record(struct apm_store *s, MDB_txn **txn, uint64_t id,
                          struct store_series_record *rec, struct store_head_snap *snap)
{
    memset(snap, 0, sizeof(*snap));
    for (int tries = 0;; tries++) {
        int rc = apm_store_get_record(s, *txn, id, rec);
        if (rc < 0)
            return rc;
        if (apm_store_test_read_hook != NULL)
            apm_store_test_read_hook(id);
        rc = head_copy(s, id, snap);
        if (rc < 0)
            return rc;
        if (!snap->found || snap->ckpt_t <= rec_last(rec))
            return 0;
        if (tries == READ_TRIES)
            return APM_E_STORE;
        /* A checkpoint committed after this snapshot: read again from a newer one. */
        apm_store_read_end(s, *txn);
        *txn = NULL;
        rc = apm_store_read_begin(s, txn);
        if (rc < 0)
            return rc;
    }
}

int apm_store_head_emit(const struct store_head_snap *snap, const struct store_series_record *rec,
                        int64_t from_ms, int64_t to_ms, apm_store_sample_cb cb, void *ctx)
{
    if (!snap->found || snap->len == 0)
        return 0;
    int64_t after = rec_last(rec);
    struct apm_chunk_iter it;
    int64_t t, v;
    if (apm_chunk_iter_init(&it, snap->buf, snap->len, snap->head_first_t) < 0)
        return APM_E_STORE;
    int rc;
    while ((rc = apm_chunk_iter_next(&it, &t, &v)) == 1) {
        if (t > to_ms)
            return 0;
        if (t > after && t >= from_ms && cb(ctx, t, v) != 0)
            return 1;
    }
    return rc < 0 ? APM_E_STORE : 0;
}

void apm_store_head_snap_free(struct store_head_snap *snap)
{
    free(snap->buf);
    snap->buf = NULL;
}
