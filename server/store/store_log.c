/*
 * The write-ahead log (docs/store.md, "Write-ahead log").
 *
 * Each commit appends its new samples to DB_LOG, compactly, instead of
 * rewriting the record (with the open chunk) of every series it touched. A
 * series record is written (a checkpoint) when its open chunk seals, when the
 * series is new or renamed or maintenance changed it, and otherwise within
 * ckpt_ms of the first log entry that holds samples newer than the record:
 * the writer keeps those series in a queue (fifo) in the order of that entry
 * and writes the oldest ones a few at a time, spread over the commits. Log
 * entries older than the queue's first are deleted in the same transaction.
 * At open the log is replayed into the series' open chunks.
 *
 * An entry is a run of groups: zigzag varint of (series id - previous group's
 * id), varint n, then n samples as zigzag varints of (t - previous t, value -
 * previous value). The previous id, t and value carry across the groups of an
 * entry (a commit's samples are close in time) and start from 0 in each.
 * Entries are cut at group boundaries past LOG_ENTRY_MAX.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/store/store_priv.h"
#include "server/store/varint.h"

#define LOG_ENTRY_MAX (32u << 10)
/* Records the spreading writes in one commit at most (beyond: the next commits). */
#define CKPT_MAX 4096u

/* ---- building the entry ---- */

static int reserve(struct apm_store_txn *t, size_t more)
{
    if (t->log_len + more <= t->log_cap)
        return 0;
    size_t ncap = t->log_cap ? t->log_cap : 64u << 10;
    while (ncap < t->log_len + more)
        ncap *= 2;
    uint8_t *nb = realloc(t->log, ncap);
    if (nb == NULL)
        return -ENOMEM;
    t->log = nb;
    t->log_cap = ncap;
    return 0;
}

static int push_cut(struct apm_store_txn *t)
{
    if (t->ncuts == t->cuts_cap) {
        size_t ncap = t->cuts_cap ? t->cuts_cap * 2 : 16;
        size_t *nc = realloc(t->cuts, ncap * sizeof(*nc));
        if (nc == NULL)
            return -ENOMEM;
        t->cuts = nc;
        t->cuts_cap = ncap;
    }
    t->cuts[t->ncuts++] = t->log_len;
    t->log_entry_start = t->log_len;
    t->log_id = 0;
    t->log_t = 0;
    t->log_v = 0;
    return 0;
}

int apm_store_log_group(struct apm_store_txn *t, const struct store_series *ser, uint32_t n)
{
    if (t->log_len - t->log_entry_start >= LOG_ENTRY_MAX && push_cut(t) < 0)
        return -ENOMEM;
    if (reserve(t, 2 * APM_VARINT_MAX + (size_t)n * 2 * APM_VARINT_MAX) < 0)
        return -ENOMEM;
    t->log_len += apm_varint_put(t->log + t->log_len, apm_zigzag((int64_t)(ser->id - t->log_id)));
    t->log_len += apm_varint_put(t->log + t->log_len, n);
    t->log_id = ser->id;
    return 0;
}

void apm_store_log_sample(struct apm_store_txn *t, int64_t ts, int64_t v)
{
    /* Room was reserved by apm_store_log_group. */
    t->log_len += apm_varint_put(t->log + t->log_len,
                                 apm_zigzag((int64_t)((uint64_t)ts - (uint64_t)t->log_t)));
    t->log_len += apm_varint_put(t->log + t->log_len,
                                 apm_zigzag((int64_t)((uint64_t)v - (uint64_t)t->log_v)));
    t->log_t = ts;
    t->log_v = v;
}

void apm_store_checkpoint_later(struct apm_store_txn *t, struct store_series *ser)
{
    if (ser->ckpt)
        return;
    ser->ckpt = true;
    ser->next_ckpt = t->ckpt;
    t->ckpt = ser;
}

/* ---- the checkpoint queue ---- */

void apm_store_fifo_unlink(struct apm_store *s, struct store_series *ser)
{
    if (ser->log_seq == 0)
        return;
    if (ser->fifo_prev != NULL)
        ser->fifo_prev->fifo_next = ser->fifo_next;
    else
        s->fifo_first = ser->fifo_next;
    if (ser->fifo_next != NULL)
        ser->fifo_next->fifo_prev = ser->fifo_prev;
    else
        s->fifo_last = ser->fifo_prev;
    ser->fifo_prev = ser->fifo_next = NULL;
    ser->log_seq = 0;
    s->fifo_len--;
}

static void fifo_push(struct apm_store *s, struct store_series *ser, uint64_t seq, int64_t now)
{
    ser->log_seq = seq;
    ser->log_ms = now;
    ser->fifo_next = NULL;
    ser->fifo_prev = s->fifo_last;
    if (s->fifo_last != NULL)
        s->fifo_last->fifo_next = ser;
    else
        s->fifo_first = ser;
    s->fifo_last = ser;
    s->fifo_len++;
}

/*
 * The oldest logged series, enough of them that the whole queue is written
 * in half of ckpt_ms at this commit rate, and every one logged for ckpt_ms
 * or longer, CKPT_MAX at most.
 */
static void choose_checkpoints(struct apm_store_txn *t, int64_t now)
{
    struct apm_store *s = t->s;
    if (s->fifo_len == 0)
        return;
    int64_t dt = now - s->last_ckpt_ms;
    dt = dt < 0 ? 0 : dt > s->ckpt_ms ? s->ckpt_ms : dt;
    int64_t half = s->ckpt_ms / 2 > 0 ? s->ckpt_ms / 2 : 1;
    uint64_t quota = (uint64_t)s->fifo_len * (uint64_t)dt / (uint64_t)half + 1;
    unsigned taken = 0;
    for (struct store_series *ser = s->fifo_first; ser != NULL && taken < CKPT_MAX;
         ser = ser->fifo_next, taken++) {
        if (taken >= quota && ser->log_ms > now - s->ckpt_ms)
            break;
        apm_store_checkpoint_later(t, ser);
    }
}

static int del_before(struct apm_store_txn *t, uint64_t front)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[DB_LOG], &cur);
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || apm_store_get_be64(k.mv_data) >= front)
            break;
        rc = mdb_cursor_del(cur, 0);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    return apm_store_mdb_error(rc == MDB_NOTFOUND ? 0 : rc, "log");
}

int apm_store_log_commit(struct apm_store_txn *t, uint64_t *first_seq)
{
    struct apm_store *s = t->s;
    int64_t now = apm_now_ms();
    choose_checkpoints(t, now);
    /* What changed without new samples (maintenance, duplicates): the record, as before. */
    bool logged_new = false;
    for (struct store_series *ser = t->dirty; ser != NULL; ser = ser->next_dirty) {
        /* ... and a series already idle by its samples' time: the writer forgets it next. */
        if ((!ser->appended || ser->last_ms < now - s->forget_after_ms) && !ser->gone)
            apm_store_checkpoint_later(t, ser);
        logged_new |= ser->appended && !ser->ckpt && ser->log_seq == 0;
    }
    int rc = 0;
    for (struct store_series *ser = t->ckpt; ser != NULL && rc == 0; ser = ser->next_ckpt)
        if (!ser->gone) {
            rc = apm_store_write_series(t, ser);
            t->ckpt_logged |= ser->log_seq != 0;
        }
    uint64_t seq = s->log_next;
    *first_seq = seq;
    if (rc == 0 && t->log_len > t->log_entry_start)
        rc = push_cut(t);
    size_t start = 0;
    for (size_t i = 0; i < t->ncuts && rc == 0; i++) {
        uint8_t key[8];
        apm_store_put_be64(key, seq++);
        MDB_val k = {8, key}, v = {t->cuts[i] - start, t->log + start};
        rc = apm_store_mdb_error(mdb_put(t->txn, s->dbi[DB_LOG], &k, &v, MDB_APPEND), "log");
        start = t->cuts[i];
    }
    if (rc < 0)
        return rc;
    /* Entries before the first one a series still needs go. */
    uint64_t front = logged_new ? *first_seq : seq;
    for (struct store_series *ser = s->fifo_first; ser != NULL; ser = ser->fifo_next)
        if (!ser->ckpt && !ser->gone) {
            front = ser->log_seq;
            break;
        }
    rc = del_before(t, front);
    if (rc == 0)
        s->log_next = seq;
    return rc;
}

/* A series removed from the store in t goes onto *gone (once), out of the queue. */
static void take_gone(struct apm_store *s, struct store_series *ser, struct store_series **gone)
{
    ser->gone = false;
    apm_store_fifo_unlink(s, ser);
    ser->fifo_next = *gone;
    *gone = ser;
}

struct store_series *apm_store_log_committed(struct apm_store_txn *t, uint64_t first_seq,
                                             int64_t now_ms)
{
    struct apm_store *s = t->s;
    struct store_series *next, *gone = NULL;
    /* One walk over each list: with 50,000 series a commit, each walk is cache misses. */
    for (struct store_series *ser = t->dirty; ser != NULL; ser = next) {
        next = ser->next_dirty;
        ser->next_dirty = NULL;
        ser->dirty = false;
        if (ser->appended && !ser->ckpt && !ser->gone && ser->log_seq == 0)
            fifo_push(s, ser, first_seq, now_ms);
        ser->appended = false;
        if (ser->gone && !ser->ckpt)
            take_gone(s, ser, &gone);
        else if (!ser->ckpt)
            (void)apm_store_head_publish(s, ser);
    }
    for (struct store_series *ser = t->ckpt; ser != NULL; ser = next) {
        next = ser->next_ckpt;
        ser->next_ckpt = NULL;
        ser->ckpt = false;
        apm_store_fifo_unlink(s, ser);
        if (ser->gone) {
            take_gone(s, ser, &gone);
            continue;
        }
        ser->rec_last = ser->nsamples > 0 ? ser->last_ms : INT64_MIN;
        (void)apm_store_head_publish(s, ser);
    }
    if (t->ckpt != NULL || s->fifo_len == 0)
        s->last_ckpt_ms = now_ms;
    t->dirty = t->ckpt = NULL;
    return gone;
}

void apm_store_checkpoint_all(struct apm_store *s)
{
    struct apm_store_txn *t = NULL;
    if (s->fifo_len == 0 || s->txn != NULL || apm_store_txn_begin(s, &t) < 0)
        return;
    size_t n = s->fifo_len;
    for (struct store_series *ser = s->fifo_first; ser != NULL; ser = ser->fifo_next)
        apm_store_checkpoint_later(t, ser);
    int rc = apm_store_txn_commit(t);
    if (rc < 0)
        apm_warn("store: writing %zu series records at close: %s (the log keeps their samples)", n,
                 apm_strerror(rc));
}

int apm_store_series_sync(struct apm_store_txn *t, uint64_t id, struct store_series_record *rec)
{
    struct apm_store *s = t->s;
    char key[STORE_KEY_BUF];
    const struct apm_series_info *i = &rec->info;
    size_t klen = apm_store_series_key(key, i->host, i->process_id, i->metric,
                                       apm_store_metric_has_site(i->metric) ? i->site : NULL);
    uint64_t p;
    if (klen == 0 || apm_hashmap_get(&s->index, key, klen, &p) != 0)
        return 0;
    struct store_series *ser = (struct store_series *)(uintptr_t)p;
    if (ser->id != id || (ser->log_seq == 0 && !ser->dirty))
        return 0;
    int rc = apm_store_write_series(t, ser);
    if (rc == 0) {
        apm_store_checkpoint_later(t, ser);
        rc = apm_store_get_record(s, t->txn, id, rec);
    }
    return rc;
}

void apm_store_series_gone(struct apm_store_txn *t, struct store_series *ser)
{
    if (ser->dirty || ser->ckpt) {
        ser->gone = true;
        return;
    }
    apm_hashmap_del(&t->s->index, ser->key, ser->klen);
    apm_store_fifo_unlink(t->s, ser);
    apm_store_series_release(t->s, ser, true);
}

/* ---- replay ---- */

/* The key of series id in DB_SERIES_KEY: rebuilt from its record, else searched. */
static int find_key(struct apm_store *s, MDB_txn *txn, uint64_t id,
                    const struct store_series_record *rec, char *key, size_t *klen)
{
    const struct apm_series_info *i = &rec->info;
    *klen = apm_store_series_key(key, i->host, i->process_id, i->metric,
                                 apm_store_metric_has_site(i->metric) ? i->site : NULL);
    MDB_val k = {*klen, key}, v;
    if (*klen > 0 && mdb_get(txn, s->dbi[DB_SERIES_KEY], &k, &v) == 0 && v.mv_size == 8 &&
        apm_store_get_be64(v.mv_data) == id)
        return 0;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->dbi[DB_SERIES_KEY], &cur);
    int op = MDB_FIRST;
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0) {
        op = MDB_NEXT;
        if (v.mv_size == 8 && apm_store_get_be64(v.mv_data) == id && k.mv_size <= STORE_KEY_BUF) {
            memcpy(key, k.mv_data, k.mv_size);
            *klen = k.mv_size;
            break;
        }
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? APM_E_NOTFOUND : apm_store_mdb_error(rc, "series key");
}

/* The writer's series id for replay at open: loaded into the index, or NULL (gone). */
static int replay_series(struct apm_store *s, MDB_txn *txn, struct apm_hashmap *loaded, uint64_t id,
                         struct store_series **out)
{
    uint8_t idkey[8];
    uint64_t p;
    apm_store_put_be64(idkey, id);
    *out = NULL;
    if (apm_hashmap_get(loaded, idkey, 8, &p) == 0) {
        *out = (struct store_series *)(uintptr_t)p;
        return 0;
    }
    struct store_series_record rec;
    char key[STORE_KEY_BUF];
    size_t klen = 0;
    int rc = apm_store_get_record(s, txn, id, &rec);
    if (rc == 0)
        rc = find_key(s, txn, id, &rec, key, &klen);
    if (rc == APM_E_NOTFOUND)
        return apm_hashmap_put(loaded, idkey, 8, 0); /* removed since: its samples went too */
    struct store_series *ser = NULL;
    if (rc == 0)
        rc = apm_store_series_from_record(key, klen, id, &rec, &ser);
    if (rc == 0 && (rc = apm_hashmap_put(&s->index, key, klen, (uint64_t)(uintptr_t)ser)) < 0)
        apm_store_series_release(s, ser, false);
    if (rc == 0 && (rc = apm_hashmap_put(loaded, idkey, 8, (uint64_t)(uintptr_t)ser)) < 0) {
        apm_hashmap_del(&s->index, key, klen);
        apm_store_series_release(s, ser, false);
    }
    if (rc == 0)
        *out = ser;
    return rc;
}

static void publish_one(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)key;
    (void)klen;
    struct store_series *ser = (struct store_series *)(uintptr_t)value;
    if (ser != NULL)
        (void)apm_store_head_publish(ctx, ser);
}

int apm_store_log_decode(const void *buf, size_t len, const struct store_log_visitor *v)
{
    const uint8_t *p = buf;
    size_t pos = 0;
    uint64_t id = 0;
    int64_t t = 0, val = 0;
    while (pos < len) {
        uint64_t did, n;
        if (apm_varint_get(p, len, &pos, &did) < 0 || apm_varint_get(p, len, &pos, &n) < 0)
            return APM_E_DECODE;
        id += (uint64_t)apm_unzigzag(did);
        int rc = v->group != NULL ? v->group(v->ctx, id) : 0;
        if (rc < 0)
            return rc;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t dt, dv;
            if (apm_varint_get(p, len, &pos, &dt) < 0 || apm_varint_get(p, len, &pos, &dv) < 0)
                return APM_E_DECODE;
            t = (int64_t)((uint64_t)t + (uint64_t)apm_unzigzag(dt));
            val = (int64_t)((uint64_t)val + (uint64_t)apm_unzigzag(dv));
            if ((rc = v->sample(v->ctx, t, val)) < 0)
                return rc;
        }
    }
    return 0;
}

struct replay {
    struct apm_store *s;
    MDB_txn *txn;
    uint64_t seq;
    struct apm_hashmap *only, *loaded;
    int64_t now;
    struct store_series *ser; /* the group's, NULL to skip it */
};

static int replay_group(void *ctx, uint64_t id)
{
    struct replay *r = ctx;
    uint8_t idkey[8];
    uint64_t ptr;
    apm_store_put_be64(idkey, id);
    r->ser = NULL;
    if (r->only == NULL)
        return replay_series(r->s, r->txn, r->loaded, id, &r->ser);
    if (apm_hashmap_get(r->only, idkey, 8, &ptr) == 0)
        r->ser = (struct store_series *)(uintptr_t)ptr;
    return 0;
}

/* Appends a logged sample newer than the series' record to its head. */
static int replay_sample(void *ctx, int64_t t, int64_t val)
{
    struct replay *r = ctx;
    struct store_series *ser = r->ser;
    if (ser == NULL || (ser->nsamples > 0 && t <= ser->last_ms))
        return 0;
    /* No seal: a seal writes the record, so what follows a record never filled a chunk. */
    int rc = apm_chunk_enc_append(&ser->head, t, val);
    if (rc < 0)
        return rc;
    if (ser->nsamples++ == 0)
        ser->first_ms = t;
    ser->last_ms = t;
    ser->last_value = val;
    if (ser->log_seq == 0)
        fifo_push(r->s, ser, r->seq, r->now);
    return 0;
}

int apm_store_log_replay(struct apm_store *s, struct apm_hashmap *only)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    struct apm_hashmap loaded;
    apm_hashmap_init(&loaded);
    uint64_t t0 = apm_mono_ns(), entries = 0, last = 0;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_LOG], &cur);
    MDB_val k, v;
    int op = MDB_FIRST;
    struct replay r = {.s = s, .txn = txn, .only = only, .loaded = &loaded, .now = apm_now_ms()};
    const struct store_log_visitor vis = {replay_group, replay_sample, &r};
    while (mrc == 0 && rc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0) {
        op = MDB_NEXT;
        if (k.mv_size != 8) {
            rc = APM_E_DECODE;
            break;
        }
        last = apm_store_get_be64(k.mv_data);
        r.seq = last;
        rc = apm_store_log_decode(v.mv_data, v.mv_size, &vis);
        if (rc < 0)
            apm_error("store: log entry %" PRIu64 ": %s", last, apm_strerror(rc));
        entries++;
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = apm_store_mdb_error(mrc, "log");
    if (cur != NULL)
        mdb_cursor_close(cur);
    apm_store_read_end(s, txn);
    if (only == NULL) {
        if (last >= s->log_next)
            s->log_next = last + 1;
        apm_hashmap_foreach(&loaded, publish_one, s);
    } else {
        apm_hashmap_foreach(only, publish_one, s);
    }
    apm_hashmap_close(&loaded);
    if (rc == 0 && only == NULL && entries > 0)
        apm_info("store: replayed %" PRIu64 " log entries into %zu series in %.1f ms", entries,
                 s->fifo_len, (double)(apm_mono_ns() - t0) / 1e6);
    return rc;
}
