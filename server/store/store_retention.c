/*
 * The store's maintenance, run by the writer thread between ingest
 * transactions in short slices (docs/store.md, "Retention"): rollups built
 * from raw samples, sealed chunks deleted past the retention (or, near the
 * disk budget, oldest first), rollups past theirs, and series, processes and
 * hosts with nothing left removed from the index. The disk budget (the map's
 * growth, refusing when full) is in store_budget.c. Every slice is one write
 * transaction; no read transaction is held across slices.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/wire/prom.h"
#include "common/base/timeutil.h"
#include "server/store/store_priv.h"

/* Raw samples one series rolls up in a slice at most (a first pass over an old store). */
#define ROLL_MAX_SAMPLES 100000u
/* Chunks one series deletes in a slice at most; the next slice goes on with it. */
#define DELETE_MAX_CHUNKS 1024u
#define PRUNE_LOG_EVERY_MS 60000
/* Least samples a rollup bucket holds on average for its resolution to be kept. */
#define ROLLUP_MIN_SAMPLES 4
/* A slice longer than this (ingest waited for it) is logged, at most once a minute. */
#define SLOW_SLICE_US 50000u

static void count(struct apm_store *s, enum store_mcounter c, uint64_t n)
{
    if (n > 0)
        atomic_fetch_add(&s->m[c], n);
}

/* ---- one series ---- */

/* What a slice learns of a series before changing it (the record's pointers die at the first
 * write). */
struct series_view {
    uint64_t id;
    int64_t first_ms, last_ms;
    uint64_t nsamples;
    enum apm_metric metric;
    bool has_head;
    char host[STORE_HOST_MAX];
    char process_id[PROCESS_ID_MAX];
    char site[512];
};

struct roller {
    struct apm_store_txn *t;
    uint64_t id;
    int res_i;
    int64_t res;
    int64_t wm;    /* the watermark before: a block starting before it may hold buckets */
    int64_t block; /* the block being filled */
    struct apm_rollup b[ROLLUP_BLOCK_MAX];
    unsigned filled; /* buckets of b with samples */
    uint64_t samples;
    bool stopped; /* at the sample cap: block is where to go on */
    unsigned *keys;
    int err;
};

/*
 * Writes the block in progress, merged with what the stored block holds
 * when it starts before the watermark (rolled in part already: the idle
 * series' last samples, raw about to be deleted, or moved from layout 1).
 */
static int roll_flush(struct roller *r)
{
    if (r->filled == 0)
        return 0;
    struct apm_store *s = r->t->s;
    int n = ROLLUP_BLOCK_BUCKETS(r->res_i);
    uint8_t key[ROLLUP_BLOCK_KEY_LEN], val[ROLLUP_BLOCK_MAX * APM_ROLLUP_BLOCK_BYTES + 10];
    apm_rollup_block_key(key, r->res_i, r->block, r->id);
    MDB_val k = {sizeof(key), key}, v;
    int rc = 0;
    if (r->block < r->wm) {
        struct apm_rollup old[ROLLUP_BLOCK_MAX];
        rc = mdb_get(r->t->txn, s->dbi[DB_ROLLUPS], &k, &v);
        if (rc == 0 && apm_rollup_block_decode(v.mv_data, v.mv_size, n, old) == 0) {
            for (int i = 0; i < n; i++) {
                apm_rollup_merge(&old[i], &r->b[i]);
                r->b[i] = old[i];
            }
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            return apm_store_mdb_error(rc, "rollup");
        } /* a damaged block is rebuilt from what is left */
    }
    v = (MDB_val){apm_rollup_block_encode(r->b, n, val), val};
    /* After every key (a pass's blocks, in key time then id order): appended, pages fill. */
    rc = mdb_put(r->t->txn, s->dbi[DB_ROLLUPS], &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST)
        rc = mdb_put(r->t->txn, s->dbi[DB_ROLLUPS], &k, &v, 0);
    memset(r->b, 0, sizeof(r->b));
    count(s, MC_ROLLUPS_WRITTEN, r->filled);
    r->filled = 0;
    (*r->keys)++;
    return apm_store_mdb_error(rc, "rollup");
}

/* Adds one bucket's worth (a sample, or a layout-1 bucket) at time t. */
static int roll_add(struct roller *r, int64_t t, const struct apm_rollup *add)
{
    int64_t blk = apm_rollup_floor(t, ROLLUP_BLOCK(r->res_i));
    if (blk != r->block && r->filled > 0) {
        if ((r->err = roll_flush(r)) != 0)
            return 1;
        if (r->samples >= ROLL_MAX_SAMPLES) {
            r->stopped = true;
            r->block = blk;
            return 1;
        }
    }
    r->block = blk;
    struct apm_rollup *b = &r->b[(apm_rollup_floor(t, r->res) - blk) / r->res];
    r->filled += b->count == 0;
    apm_rollup_merge(b, add);
    r->samples += add->count;
    return 0;
}

static int roll_sample(void *ctx, int64_t t, int64_t v)
{
    struct apm_rollup one = {0};
    apm_rollup_add(&one, v);
    return roll_add(ctx, t, &one);
}

/*
 * Rolls the raw samples in [wm[i], limit) into resolution i and moves the
 * watermark. Blocks are merged with what they hold, so a watermark in the
 * middle of a block or bucket (an idle series, or raw about to be deleted)
 * is fine.
 */
static int roll(struct apm_store_txn *t, const struct series_view *sv,
                const struct store_series_record *rec, int res_i, int64_t limit, int64_t wm[2],
                unsigned *keys)
{
    if (limit <= wm[res_i])
        return 0;
    struct roller r = {.t = t,
                       .id = sv->id,
                       .res_i = res_i,
                       .res = ROLLUP_RES(res_i),
                       .wm = wm[res_i],
                       .keys = keys};
    int rc = apm_store_txn_read_samples(t->s, t->txn, sv->id, rec, wm[res_i], limit - 1,
                                        roll_sample, &r);
    if (r.err != 0)
        return r.err;
    if (rc < 0)
        return rc;
    if (!r.stopped && (rc = roll_flush(&r)) != 0)
        return rc;
    wm[res_i] = r.stopped ? r.block : limit;
    return 0;
}

/*
 * How far resolution i may roll: through the last block no future sample
 * can reach (samples only come newer than last_ms), or through last_ms
 * itself once its block's key time passed (an idle series; a sample later
 * in that block is merged into it), in both cases only blocks that ended
 * ROLLUP_GRACE ago, so that a pass writes every series' block of the same
 * key time, in id order, and the keys fill pages; and at least through
 * force (raw samples about to be deleted). A block is written once, when
 * closed; its newer samples are read raw meanwhile.
 */
static int64_t roll_limit(const struct series_view *sv, int res_i, int64_t now, int64_t force)
{
    int64_t res = ROLLUP_RES(res_i), block = ROLLUP_BLOCK(res_i);
    int64_t limit = now >= ROLLUP_KEY_TIME(res_i, apm_rollup_floor(sv->last_ms, block))
                        ? sv->last_ms + 1
                        : apm_rollup_floor(apm_rollup_floor(sv->last_ms + 1, res), block);
    int64_t settled = apm_rollup_floor(now - ROLLUP_GRACE(res_i), block);
    if (settled < limit)
        limit = settled;
    return force > limit ? force : limit;
}

/*
 * Moves the series' layout-1 buckets (one entry each) into blocks, oldest
 * first, deleting those past their retention (cut[i]); at most max entries.
 * Sets *left when some remain: the series rolls nothing new until none do,
 * so that its layout-1 buckets stay the newest rolled ones (store_rollup.c
 * reads the blocks, then them).
 */
static int migrate_old(struct apm_store_txn *t, uint64_t id, const int64_t cut[2], unsigned max,
                       bool *left, unsigned *keys)
{
    struct apm_store *s = t->s;
    MDB_cursor *cur = NULL;
    uint8_t prefix[8];
    apm_store_put_be64(prefix, id);
    MDB_val k = {sizeof(prefix), prefix}, v;
    int rc = mdb_cursor_open(t->txn, s->dbi[DB_ROLLUPS], &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    struct roller r = {.t = t, .id = id, .res_i = -1, .wm = INT64_MAX, .keys = keys};
    unsigned n = 0;
    while (rc == 0 && r.err == 0) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size != ROLLUP_KEY_LEN || memcmp(kp, prefix, 8) != 0 || kp[8] > 1)
            break;
        if (n >= max) {
            *left = true;
            break;
        }
        int res_i = kp[8];
        int64_t start = (int64_t)(apm_store_get_be64(kp + 9) ^ (1ull << 63));
        struct apm_rollup b;
        bool keep = start <= cut[res_i] - ROLLUP_RES(res_i) ? false : true;
        if (keep && apm_rollup_decode(v.mv_data, v.mv_size, &b) == 0) {
            if (res_i != r.res_i && (r.err = roll_flush(&r)) != 0)
                break;
            r.res_i = res_i;
            r.res = ROLLUP_RES(res_i);
            r.samples = 0; /* no sample cap here: max bounds the entries */
            if (roll_add(&r, start, &b) != 0)
                break;
        } else {
            count(s, MC_ROLLUPS_DELETED, 1); /* expired, or damaged */
        }
        rc = mdb_cursor_del(cur, 0);
        n++;
        k = (MDB_val){sizeof(prefix), prefix};
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (r.err != 0)
        return r.err;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return apm_store_mdb_error(rc, "rollups");
    *keys += n;
    return roll_flush(&r);
}

/*
 * True when resolution i is kept for the series: its buckets must hold
 * ROLLUP_MIN_SAMPLES samples of the series' interval or more. A rollup no
 * coarser than the interval would repeat the raw samples, and one of two or
 * three samples costs more than they do (an entry is ~40 bytes; measured on
 * leakbench's 20 s traces, 1-minute rollups took 13 bytes per raw sample).
 */
static bool rollup_kept(const struct apm_store *s, const struct series_view *sv, int res_i)
{
    if (s->rollup_ms[res_i] <= 0)
        return false;
    if (sv->nsamples < 2)
        return true;
    int64_t interval = (sv->last_ms - sv->first_ms) / (int64_t)(sv->nsamples - 1);
    return interval * ROLLUP_MIN_SAMPLES <= ROLLUP_RES(res_i);
}

/* The last sample's time of a sealed chunk (decoding it), or INT64_MAX when damaged. */
static int64_t chunk_last_t(const MDB_val *v, int64_t first)
{
    struct apm_chunk_iter it;
    int64_t t = INT64_MAX, ts, vs;
    if (apm_chunk_iter_init(&it, v->mv_data, v->mv_size, first) < 0)
        return INT64_MAX;
    int rc;
    while ((rc = apm_chunk_iter_next(&it, &ts, &vs)) == 1)
        t = ts;
    return rc < 0 ? INT64_MAX : t;
}

/* Samples of a sealed chunk after sent (remote-write's cursor). */
static uint64_t unsent_samples(const MDB_val *v, int64_t first, int64_t sent)
{
    struct apm_chunk_iter it;
    int64_t ts, vs;
    uint64_t n = 0;
    if (apm_chunk_iter_init(&it, v->mv_data, v->mv_size, first) < 0)
        return 0;
    while (apm_chunk_iter_next(&it, &ts, &vs) == 1)
        n += ts > sent;
    return n;
}

/*
 * Deletes the series' sealed chunks that end before cut, oldest first, at
 * most max, in db: DB_CHUNKS (prefix: the series id) or DB_PACKED (period
 * start and series id); the chunk's first t follows the prefix in its key.
 * Sets *left when chunks remain, *more when the cap stopped it, and notes
 * the oldest chunk left.
 */
static int delete_chunks(struct apm_store_txn *t, enum store_db db, const uint8_t *prefix,
                         size_t plen, int64_t cut, bool pressure, int64_t sent, unsigned max,
                         bool *left, bool *more, unsigned *keys)
{
    struct apm_store *s = t->s;
    MDB_cursor *cur = NULL;
    uint8_t key[PACK_KEY_LEN];
    size_t klen = plen + 8;
    memcpy(key, prefix, plen);
    apm_store_put_be64(key + plen, 0); /* INT64_MIN with its sign bit flipped */
    MDB_val k = {klen, key}, v;
    int rc = mdb_cursor_open(t->txn, s->dbi[db], &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    unsigned n = 0, pruned = 0;
    while (rc == 0) {
        if (k.mv_size != klen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        int64_t first =
            (int64_t)(apm_store_get_be64((const uint8_t *)k.mv_data + plen) ^ (1ull << 63));
        int64_t last = first >= cut ? INT64_MAX : chunk_last_t(&v, first);
        if (last >= cut) {
            *left = true;
            if (first < s->pass_oldest_ms)
                s->pass_oldest_ms = first;
            if (db == DB_CHUNKS && first < s->pass_oldest_live)
                s->pass_oldest_live = first;
            break;
        }
        if (n >= max) {
            *left = *more = true;
            break;
        }
        /* Past the retention or not, a chunk deleted for the budget is counted as pruned. */
        bool expired = s->retention_ms > 0 && last < s->maint_now - s->retention_ms;
        pruned += pressure && !expired;
        if (last > sent) /* remote-write had not sent all of it: only the budget does this */
            count(s, MC_RW_UNSENT_DROPPED, unsent_samples(&v, first, sent));
        rc = mdb_cursor_del(cur, 0);
        n++;
        k = (MDB_val){klen, key};
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    *keys += n;
    count(s, MC_CHUNKS_DELETED, n - pruned);
    count(s, MC_CHUNKS_PRUNED, pruned);
    if (pruned > 0 && s->maint_now - s->last_prune_log_ms >= PRUNE_LOG_EVERY_MS) {
        s->last_prune_log_ms = s->maint_now;
        apm_warn("store: near the disk budget (%" PRIu64 " bytes): deleting the oldest raw "
                 "chunks before their retention (%" PRIu64 " so far)",
                 s->max_disk, (uint64_t)atomic_load(&s->m[MC_CHUNKS_PRUNED]));
    }
    return rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "delete chunks");
}

/*
 * delete_chunks over the series' pieces in DB_PACKED, period by period from
 * the oldest, in periods starting at or before limit. The packed pieces are
 * the series' oldest samples, so a piece left ends the walk.
 */
static int delete_packed(struct apm_store_txn *t, uint64_t id, int64_t cut, int64_t limit,
                         bool pressure, int64_t sent, unsigned max, bool *left, bool *more,
                         unsigned *keys)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = apm_store_mdb_error(mdb_cursor_open(t->txn, t->s->dbi[DB_PACKED], &cur), "packed");
    if (rc < 0)
        return rc;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    int64_t p = mrc == 0 && k.mv_size == PACK_KEY_LEN ? apm_store_pack_key_period(&k) : INT64_MAX;
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = apm_store_mdb_error(mrc, "packed");
    unsigned start = *keys;
    while (rc == 0 && p <= limit && !*left && !*more) {
        uint8_t prefix[PACK_KEY_LEN];
        apm_store_pack_key(prefix, p, id, 0);
        unsigned used = *keys - start;
        rc = delete_chunks(t, DB_PACKED, prefix, 16, cut, pressure, sent,
                           max > used ? max - used : 1, left, more, keys);
        if (rc == 0)
            p = apm_store_pack_next_period(cur, p, &rc);
    }
    mdb_cursor_close(cur);
    return rc;
}

/*
 * Deletes rollup blocks past their retention, oldest first, at most max.
 * Blocks are keyed by their key time, all series and both resolutions
 * together: each resolution walks its blocks from where it stood in the pass
 * (s->rollup_expire; each pass starts from the oldest key, so that a block
 * written late behind it goes too), a seek each, jumping over ends where
 * no block is.
 */
static int expire_rollups(struct apm_store_txn *t, unsigned max, unsigned *keys)
{
    struct apm_store *s = t->s;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(t->txn, s->dbi[DB_ROLLUPS], &cur);
    unsigned n = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        int64_t span = ROLLUP_BLOCK(i);
        /* Blocks starting at or before last ended more than their retention ago. */
        int64_t last = s->rollup_ms[i] > 0 ? s->maint_now - s->rollup_ms[i] - span : INT64_MAX;
        int64_t *b = &s->rollup_expire[i];
        while (rc == 0 && n < max && (*b == INT64_MIN || *b <= last)) {
            uint8_t key[ROLLUP_BLOCK_KEY_LEN] = {ROLLUP_TAG}; /* before every block */
            if (*b != INT64_MIN)
                apm_rollup_block_key(key, i, *b, 0);
            MDB_val k = {sizeof(key), key}, v;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            int kres;
            int64_t start;
            uint64_t id;
            if (rc == 0 && apm_rollup_block_key_parse(&k, &kres, &start, &id) != 0)
                rc = MDB_NOTFOUND;
            if (rc != 0)
                break;
            int64_t kt = ROLLUP_KEY_TIME(kres, start);
            if (*b == INT64_MIN || kt > ROLLUP_KEY_TIME(i, *b)) {
                /* no block of i has a key time before kt */
                *b = apm_rollup_floor(kt - ROLLUP_GRACE(i) - 1, span);
            } else if (kres == i) {
                rc = mdb_cursor_del(cur, 0);
                n++;
            } else {
                *b += span; /* the other resolution's blocks: none of i ends here any more */
            }
        }
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    mdb_cursor_close(cur);
    *keys += n;
    count(s, MC_ROLLUPS_DELETED, n);
    return apm_store_mdb_error(rc, "delete rollups");
}

/* True when some key of db starts with prefix. */
static int has_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t plen)
{
    MDB_cursor *cur = NULL;
    MDB_val k = {plen, (void *)prefix}, v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    bool found = rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0;
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return apm_store_mdb_error(rc, "index");
    return found ? 1 : 0;
}

static int del_key(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "delete");
}

/* Removes a series with nothing left, then its process and host when they have no series left. */
static int remove_series(struct apm_store_txn *t, const struct series_view *sv, unsigned *keys)
{
    struct apm_store *s = t->s;
    char key[STORE_KEY_BUF];
    size_t klen = apm_store_series_key(key, sv->host, sv->process_id, sv->metric,
                                       apm_store_metric_has_site(sv->metric) ? sv->site : NULL);
    uint8_t idkey[8];
    apm_store_put_be64(idkey, sv->id);
    /* The key is rebuilt from the record: it must name this series, or nothing is removed. */
    MDB_val k = {klen, key}, v;
    int rc = klen > 0 ? mdb_get(t->txn, s->dbi[DB_SERIES_KEY], &k, &v) : MDB_NOTFOUND;
    if (rc != 0 || v.mv_size != 8 || memcmp(v.mv_data, idkey, 8) != 0) {
        apm_warn("store: series %" PRIu64 ": its key does not lead back to it; kept",
                 (uint64_t)sv->id);
        return rc == 0 || rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "series key");
    }
    rc = del_key(t->txn, s->dbi[DB_SERIES_KEY], key, klen);
    if (rc == 0)
        rc = del_key(t->txn, s->dbi[DB_SERIES], idkey, 8);
    if (rc == 0)
        rc = del_key(t->txn, s->dbi[DB_VERDICTS], idkey, 8);
    if (rc == 0)
        rc = del_key(t->txn, s->dbi[DB_ROLLUP_WM], idkey, 8);
    if (rc == 0)
        rc = del_key(t->txn, s->dbi[DB_RW_CURSOR], idkey, 8);
    if (rc == 0)
        rc = del_key(t->txn, s->dbi[DB_RW_PENDING], idkey, 8);
    if (rc < 0)
        return rc;
    *keys += 6;
    count(s, MC_SERIES_REMOVED, 1);
    /* The writer's index is a cache: drop the series; an abort only makes it reload. */
    uint64_t ptr;
    if (klen > 0 && apm_hashmap_get(&s->index, key, klen, &ptr) == 0)
        apm_store_series_gone(t, (struct store_series *)(uintptr_t)ptr);
    apm_hashmap_close(&s->seen);
    apm_hashmap_init(&s->seen);
    apm_hashmap_close(&s->site_counts);
    apm_hashmap_init(&s->site_counts);
    /* host \0 process id \0 is the prefix of the process's series; host \0 of the host's. */
    size_t hl = strlen(sv->host) + 1, pl = strlen(sv->process_id) + 1;
    if (sv->process_id[0] != '\0') {
        rc = has_prefix(t->txn, s->dbi[DB_SERIES_KEY], key, hl + pl);
        if (rc == 0 && (rc = del_key(t->txn, s->dbi[DB_PROCESSES], sv->process_id, pl)) == 0) {
            count(s, MC_PROCESSES_REMOVED, 1);
            (*keys)++;
        }
        if (rc < 0)
            return rc;
    }
    rc = has_prefix(t->txn, s->dbi[DB_SERIES_KEY], key, hl);
    if (rc == 0 && (rc = del_key(t->txn, s->dbi[DB_HOSTS], sv->host, hl)) == 0) {
        count(s, MC_HOSTS_REMOVED, 1);
        (*keys)++;
    }
    return rc < 0 ? rc : 0;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* The writer's copy of a series (marked dirty), or *out NULL when its key does not lead to it. */
static int writer_series(struct apm_store_txn *t, const struct series_view *sv,
                         struct store_series **out)
{
    char key[STORE_KEY_BUF];
    size_t klen = apm_store_series_key(key, sv->host, sv->process_id, sv->metric,
                                       apm_store_metric_has_site(sv->metric) ? sv->site : NULL);
    *out = NULL;
    /* Only a series the key leads to: series_get would create one for a key that does not. */
    int rc = klen > 0 ? apm_store_series_exists(t, key, klen) : 0;
    if (rc == 1)
        rc = apm_store_series_get(t, key, klen, "", 0, sv->metric, out);
    if (rc == 0 && *out != NULL && (*out)->id != sv->id)
        *out = NULL;
    return rc;
}

/*
 * Moves the series' samples of the period this pass packs into DB_PACKED
 * (store_pack.c): first those of an open chunk that also holds later ones,
 * so that a slow series' samples are packed with their period rather than
 * late. rec's open chunk follows.
 */
static int pack_series(struct apm_store_txn *t, const struct series_view *sv,
                       struct store_series_record *rec, unsigned *keys)
{
    struct apm_store *s = t->s;
    int64_t end = s->pack_cur + s->pack_ms;
    int rc = 0;
    if (sv->has_head && rec->head_first_t < end && sv->last_ms >= end) {
        struct store_series *ser = NULL;
        rc = writer_series(t, sv, &ser);
        if (rc == 0 && ser != NULL)
            rc = apm_store_pack_cut_head(t, ser, end, keys);
        if (rc == 0 && ser != NULL) {
            rec->head = ser->head.buf;
            rec->head_len = ser->head.n > 0 ? ser->head.len : 0;
            rec->head_first_t = ser->head.first_t;
        }
    }
    if (rc == 0)
        rc = apm_store_pack_series(t, sv->id, s->pack_cur, end, keys);
    return rc;
}

/*
 * Maintains one series. Sets *again when the series has more to do than a
 * slice allows (the pass stays on it).
 */
static int maintain_series(struct apm_store_txn *t, uint64_t id, unsigned max_keys, bool *again,
                           unsigned *keys)
{
    struct apm_store *s = t->s;
    int64_t now = s->maint_now;
    struct store_series_record rec;
    int rc = apm_store_get_record(s, t->txn, id, &rec);
    /* Samples only in the write-ahead log go into the record first (store_log.c). */
    if (rc == 0)
        rc = apm_store_series_sync(t, id, &rec);
    if (rc < 0)
        return rc == APM_E_NOTFOUND ? 0 : rc;
    struct series_view sv = {.id = id,
                             .first_ms = rec.info.first_ms,
                             .last_ms = rec.info.last_ms,
                             .nsamples = rec.info.nsamples,
                             .metric = rec.info.metric,
                             .has_head = rec.head_len > 0};
    copy_str(sv.host, sizeof(sv.host), rec.info.host);
    copy_str(sv.process_id, sizeof(sv.process_id), rec.info.process_id);
    copy_str(sv.site, sizeof(sv.site), rec.info.site);
    /* The sealed chunks of the period this pass packs move to DB_PACKED (store_pack.c). */
    if (s->pack_cur != INT64_MIN && (rc = pack_series(t, &sv, &rec, keys)) < 0)
        return rc;
    int64_t cut = s->retention_ms > 0 ? now - s->retention_ms : INT64_MIN;
    bool pressure = s->pressure_cutoff > cut;
    if (pressure)
        cut = s->pressure_cutoff;
    int64_t rcut[2];
    for (int i = 0; i < 2; i++)
        rcut[i] = s->rollup_ms[i] > 0 ? now - s->rollup_ms[i] : INT64_MAX;
    /* Layout-1 buckets first (a store written before blocks): until all moved, nothing is rolled.
     */
    bool old_left = false;
    rc = migrate_old(t, id, rcut, max_keys > *keys ? max_keys - *keys : 1, &old_left, keys);
    /* Roll up what is complete, and everything the deletion below will take. */
    int64_t wm[2] = {INT64_MIN, INT64_MIN};
    if (rc == 0)
        rc = apm_store_rollup_wm(s, t->txn, id, wm);
    int64_t old_wm[2] = {wm[0], wm[1]};
    int64_t force = cut == INT64_MIN ? INT64_MIN : (cut < sv.last_ms + 1 ? cut : sv.last_ms + 1);
    bool kept[2] = {false, false};
    for (int i = 0; i < 2 && rc == 0; i++) {
        kept[i] = rollup_kept(s, &sv, i);
        if (kept[i] && sv.nsamples > 0 && !old_left)
            rc = roll(t, &sv, &rec, i, roll_limit(&sv, i, now, force), wm, keys);
    }
    if (rc == 0 && (wm[0] != old_wm[0] || wm[1] != old_wm[1])) {
        uint8_t idkey[8];
        apm_store_put_be64(idkey, id);
        MDB_val k = {8, idkey}, v = {sizeof(wm), wm};
        rc = apm_store_mdb_error(mdb_put(t->txn, s->dbi[DB_ROLLUP_WM], &k, &v, 0), "watermark");
        (*keys)++;
    }
    if (rc < 0)
        return rc;
    /* Raw data goes only once it is rolled up, at every resolution kept. */
    int64_t raw_cut = cut;
    for (int i = 0; i < 2; i++)
        if (kept[i] && wm[i] < raw_cut)
            raw_cut = wm[i];
    /* ... and remote-write sent it, unless the budget forces it out (then counted). */
    int64_t sent = INT64_MAX;
    /* Only series remote-write exports have a cursor to wait for (per-site ones never do). */
    if (s->rw_hold && apm_prom_metric_name(sv.metric) != NULL) {
        rc = apm_store_txn_rw_cursor(s, t->txn, id, &sent);
        if (rc == APM_E_NOTFOUND)
            sent = INT64_MIN;
        else if (rc < 0)
            return rc;
        if (!pressure && sent != INT64_MAX && sent + 1 < raw_cut)
            raw_cut = sent == INT64_MIN ? INT64_MIN : sent + 1;
    }
    bool chunks_left = false, more = false, rollups_left = false;
    unsigned room = max_keys > *keys ? max_keys - *keys : 1;
    /*
     * The packed pieces first (the oldest samples), in the periods that may
     * end before the cut, or every period up to the last sample when the
     * series may go (then whatever it has left must be known).
     */
    int64_t limit = sv.last_ms < cut ? sv.last_ms : raw_cut == INT64_MIN ? INT64_MIN : raw_cut - 1;
    rc = delete_packed(t, id, raw_cut, limit, pressure, sent,
                       room < DELETE_MAX_CHUNKS ? room : DELETE_MAX_CHUNKS, &chunks_left, &more,
                       keys);
    room = max_keys > *keys ? max_keys - *keys : 1;
    uint8_t idkey[8];
    apm_store_put_be64(idkey, id);
    if (rc == 0 && !more)
        rc = delete_chunks(t, DB_CHUNKS, idkey, 8, raw_cut, pressure, sent,
                           room < DELETE_MAX_CHUNKS ? room : DELETE_MAX_CHUNKS, &chunks_left, &more,
                           keys);
    /*
     * Blocks past their retention go in expire_rollups, all series together;
     * the series' newest block ends after its watermark's last time.
     */
    rollups_left = old_left;
    for (int i = 0; i < 2; i++)
        if (wm[i] != INT64_MIN &&
            apm_rollup_floor(wm[i] - 1, ROLLUP_BLOCK(i)) + ROLLUP_BLOCK(i) > rcut[i])
            rollups_left = true;
    if (rc < 0)
        return rc;
    *again = more || old_left;
    /*
     * The open chunk holds the series' newest samples: it goes for the
     * retention only, never for the disk budget, which takes sealed chunks.
     */
    int64_t ret_cut = s->retention_ms > 0 ? now - s->retention_ms : INT64_MIN;
    bool head_old = sv.has_head && !chunks_left && sv.last_ms < raw_cut && sv.last_ms < ret_cut;
    if (!chunks_left && (!sv.has_head || head_old) && !rollups_left && sv.last_ms < cut) {
        count(s, MC_HEADS_DROPPED, head_old);
        return remove_series(t, &sv, keys);
    }
    if (head_old) {
        /* An idle series' open chunk is past the retention too: empty it, keep the record. */
        struct store_series *ser = NULL;
        rc = writer_series(t, &sv, &ser);
        if (ser != NULL) {
            apm_chunk_enc_restart(&ser->head);
            count(s, MC_HEADS_DROPPED, 1);
            (*keys)++;
        }
    }
    if (sv.has_head && !head_old && rec.head_first_t < s->pass_oldest_ms && !chunks_left)
        s->pass_oldest_ms = rec.head_first_t;
    return rc;
}

/* ---- slices and passes ---- */

/*
 * The period this pass packs: the oldest not packed yet that holds a sealed
 * chunk, once it ended a period ago (late samples are rare by then).
 */
static void choose_pack(struct apm_store *s, int64_t now)
{
    s->pack_cur = INT64_MIN;
    if (s->pack_ms <= 0 || s->oldest_live_ms == INT64_MAX)
        return;
    int64_t w = apm_rollup_floor(s->oldest_live_ms, s->pack_ms);
    if (s->pack_next != INT64_MIN && s->pack_next > w)
        w = s->pack_next;
    if (w <= now - 2 * s->pack_ms)
        s->pack_cur = w;
}

/*
 * The last slice of a pass: notes the period it packed in DB_META, and the
 * oldest packed period as the oldest raw time (the disk budget's start).
 */
static int pass_end(struct apm_store_txn *t)
{
    struct apm_store *s = t->s;
    int rc = 0;
    if (s->pack_cur != INT64_MIN)
        rc = apm_store_mdb_error(
            apm_store_meta_put(t->txn, s->dbi[DB_META], "pack_next",
                               (uint64_t)(s->pack_cur + s->pack_ms) ^ (1ull << 63)),
            "pack_next");
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    if (rc == 0)
        rc = apm_store_mdb_error(mdb_cursor_open(t->txn, s->dbi[DB_PACKED], &cur), "packed");
    int mrc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    if (mrc == 0 && k.mv_size == PACK_KEY_LEN && apm_store_pack_key_period(&k) < s->pass_oldest_ms)
        s->pass_oldest_ms = apm_store_pack_key_period(&k);
    else if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = apm_store_mdb_error(mrc, "packed");
    mdb_cursor_close(cur);
    return rc;
}

int apm_store_maintain(struct apm_store *s, int64_t now_ms, unsigned max_keys, int64_t max_us)
{
    uint64_t t0 = apm_mono_ns();
    s->maint_now = now_ms;
    int rc = 0;
    if (s->maint_next_id == 0) {
        rc = apm_store_budget_check(s, now_ms);
        s->maint_next_id = 1;
        s->pass_oldest_ms = INT64_MAX;
        s->pass_oldest_live = INT64_MAX;
        s->rollup_expire[0] = s->rollup_expire[1] = INT64_MIN;
        choose_pack(s, now_ms);
    }
    struct apm_store_txn *t = NULL;
    if (rc == 0)
        rc = apm_store_txn_begin(s, &t);
    if (rc < 0)
        return rc;
    /* A slice that does not commit changed nothing: its counts and its place in the pass undone. */
    uint64_t counts[MC_COUNT];
    for (int i = 0; i < MC_COUNT; i++)
        counts[i] = atomic_load(&s->m[i]);
    uint64_t next_id = s->maint_next_id;
    int64_t pass_oldest = s->pass_oldest_ms, pass_oldest_live = s->pass_oldest_live;
    int64_t expire[2] = {s->rollup_expire[0], s->rollup_expire[1]};
    unsigned keys = 0;
    int done = 0;
    /* Rollup blocks past their retention, half the slice at most (the next slice goes on). */
    rc = expire_rollups(t, max_keys / 2 > 0 ? max_keys / 2 : 1, &keys);
    while (rc == 0 && keys < max_keys && (int64_t)((apm_mono_ns() - t0) / 1000) < max_us) {
        MDB_cursor *cur = NULL;
        uint8_t key[8];
        apm_store_put_be64(key, s->maint_next_id);
        MDB_val k = {8, key}, v;
        int mrc = mdb_cursor_open(t->txn, s->dbi[DB_SERIES], &cur);
        if (mrc == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        uint64_t id = mrc == 0 && k.mv_size == 8 ? apm_store_get_be64(k.mv_data) : 0;
        mdb_cursor_close(cur);
        if (mrc == MDB_NOTFOUND) {
            done = 1;
            break;
        }
        if (mrc != 0) {
            rc = apm_store_mdb_error(mrc, "series");
            break;
        }
        bool again = false;
        rc = maintain_series(t, id, max_keys, &again, &keys);
        if (!again)
            s->maint_next_id = id + 1;
    }
    if (rc == 0 && done)
        rc = pass_end(t);
    if (rc < 0)
        apm_store_txn_abort(t);
    uint64_t t_commit = apm_mono_ns();
    if (rc == 0)
        rc = apm_store_txn_commit(t);
    if (rc < 0) {
        for (int i = 0; i < MC_COUNT; i++)
            if (i != MC_SLICE_US_MAX && i != MC_MAP_GROWS)
                atomic_store(&s->m[i], counts[i]);
        s->maint_next_id = next_id;
        s->pass_oldest_ms = pass_oldest;
        s->pass_oldest_live = pass_oldest_live;
        s->rollup_expire[0] = expire[0];
        s->rollup_expire[1] = expire[1];
        /* A full map: this pass goes on without packing, which needs room before it frees any. */
        if (rc == APM_E_FULL)
            s->pack_cur = INT64_MIN;
        return rc;
    }
    if (done) {
        s->maint_next_id = 0;
        count(s, MC_PASSES, 1);
        s->oldest_live_ms = s->pass_oldest_live;
        if (s->pack_cur != INT64_MIN)
            s->pack_next = s->pack_cur + s->pack_ms;
    }
    count(s, MC_SLICES, 1);
    uint_fast64_t us = (apm_mono_ns() - t0) / 1000;
    if (us > SLOW_SLICE_US && now_ms - s->last_slow_log_ms >= PRUNE_LOG_EVERY_MS) {
        s->last_slow_log_ms = now_ms;
        apm_warn("store: a maintenance slice took %.1f ms (%u keys, commit %.1f ms)",
                 (double)us / 1000, keys, (double)(apm_mono_ns() - t_commit) / 1e6);
    }
    uint_fast64_t max = atomic_load(&s->m[MC_SLICE_US_MAX]);
    while (us > max && !atomic_compare_exchange_weak(&s->m[MC_SLICE_US_MAX], &max, us))
        ;
    return done;
}
