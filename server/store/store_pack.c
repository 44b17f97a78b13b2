/*
 * The packed tier (docs/store.md, "Packed periods"): maintenance moves the
 * sealed chunks of a closed time period out of DB_CHUNKS, where every series
 * appends in its own key range and pages split in the middle (~60 % full),
 * into DB_PACKED under (period start, series id, first t). A pass packs one
 * period for every series in id order, so its keys only ever go at the end
 * of the database: MDB_APPEND fills every page. A series' samples of the
 * period are re-encoded (chunk.c's public API) into pieces that fill an
 * overflow page exactly, the remainder into pieces small enough for a leaf.
 *
 * Per series the packed samples are a time prefix of its samples: a pass
 * takes the oldest sealed chunks, and whatever is left (newer) stays in
 * DB_CHUNKS and the open chunk. Samples of an already packed period that
 * arrive later (a slow series' chunk sealed after its period was packed) go
 * to the period that holds their time, with an ordinary put.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"

/*
 * LMDB's leaf pages (mdb.c): a page header, then per entry an index slot
 * (2 bytes) and a node of 8 bytes of header, the key and the value, rounded
 * up to even; a value too large for a leaf node (more than half a page) goes
 * to overflow pages and leaves its page number in the node.
 */
#define PAGE_HEADER 16u
#define NODE_COST (8u + PACK_KEY_LEN + 2u) /* node header, key and index slot of one piece */
#define OVERFLOW_REF 8u                    /* an overflow page number in its node */
/* Below this many bytes a remainder is one piece; above, it is cut in pieces about this long. */
#define PIECE_LEAF_DIV 4u /* a leaf page holds about this many remainder pieces */
/* A piece that fills the rest of a leaf page must hold this many bytes; less stays slack. */
#define PIECE_MIN_FILL 64u

void apm_store_pack_key(uint8_t key[PACK_KEY_LEN], int64_t period, uint64_t id, int64_t t)
{
    apm_store_put_be64(key, (uint64_t)period ^ (1ull << 63));
    apm_store_put_be64(key + 8, id);
    apm_store_put_be64(key + 16, (uint64_t)t ^ (1ull << 63));
}

int64_t apm_store_pack_key_period(const MDB_val *k)
{
    return (int64_t)(apm_store_get_be64(k->mv_data) ^ (1ull << 63));
}

/* The period start of the first key at or after (period, id, t), or INT64_MAX at the end. */
static int64_t period_from(MDB_cursor *cur, int64_t period, uint64_t id, int64_t t, int *err)
{
    uint8_t key[PACK_KEY_LEN];
    apm_store_pack_key(key, period, id, t);
    MDB_val k = {sizeof(key), key}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == PACK_KEY_LEN)
        return apm_store_pack_key_period(&k);
    if (rc != 0 && rc != MDB_NOTFOUND)
        *err = apm_store_mdb_error(rc, "packed");
    return INT64_MAX;
}

int64_t apm_store_pack_next_period(MDB_cursor *cur, int64_t period, int *err)
{
    if (period == INT64_MAX)
        return INT64_MAX;
    return period_from(cur, period + 1, 0, INT64_MIN, err);
}

/* The largest period start present at or before t, or INT64_MIN; *next the first after t. */
static int64_t period_at(MDB_cursor *cur, int64_t t, int64_t *next, int *err)
{
    *next = t == INT64_MAX ? INT64_MAX : period_from(cur, t + 1, 0, INT64_MIN, err);
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, *next == INT64_MAX ? MDB_LAST : MDB_PREV);
    if (rc == 0 && k.mv_size == PACK_KEY_LEN)
        return apm_store_pack_key_period(&k);
    if (rc != 0 && rc != MDB_NOTFOUND)
        *err = apm_store_mdb_error(rc, "packed");
    return INT64_MIN;
}

/* ---- reading ---- */

int apm_store_packed_read(struct apm_store *s, MDB_txn *txn, uint64_t id, int64_t from_ms,
                          int64_t to_ms, int (*emit)(void *ctx, const MDB_val *v, int64_t first_t),
                          void *ctx)
{
    MDB_cursor *cur = NULL;
    int rc = apm_store_mdb_error(mdb_cursor_open(txn, s->dbi[DB_PACKED], &cur), "packed");
    if (rc < 0)
        return rc;
    int64_t next;
    int err = 0;
    int64_t p = period_at(cur, from_ms, &next, &err);
    if (p == INT64_MIN)
        p = next;
    while (err == 0 && rc == 0 && p <= to_ms && p != INT64_MAX) {
        /* The series' pieces of period p: from the last one starting at or before from. */
        uint8_t key[PACK_KEY_LEN];
        apm_store_pack_key(key, p, id, from_ms);
        MDB_val k = {sizeof(key), key}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        bool exact = mrc == 0 && k.mv_size == PACK_KEY_LEN && memcmp(k.mv_data, key, 24) == 0;
        if (!exact) {
            int prc = mdb_cursor_get(cur, &k, &v, mrc == 0 ? MDB_PREV : MDB_LAST);
            bool mine = prc == 0 && k.mv_size == PACK_KEY_LEN && memcmp(k.mv_data, key, 16) == 0;
            if (!mine && prc == 0)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            else if (!mine && prc == MDB_NOTFOUND)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
            else
                mrc = prc;
        }
        while (mrc == 0 && rc == 0) {
            if (k.mv_size != PACK_KEY_LEN || memcmp(k.mv_data, key, 16) != 0)
                break;
            int64_t first = (int64_t)(apm_store_get_be64((uint8_t *)k.mv_data + 16) ^ (1ull << 63));
            if (first > to_ms)
                break;
            rc = emit(ctx, &v, first);
            if (rc == 0)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
            rc = apm_store_mdb_error(mrc, "packed");
        if (rc == 0)
            p = apm_store_pack_next_period(cur, p, &err);
    }
    mdb_cursor_close(cur);
    return rc != 0 ? rc : err;
}

/* ---- packing ---- */

struct samples {
    int64_t *t, *v;
    size_t n, cap;
    int64_t dt0; /* the interval before the first sample */
};

static int samples_add(struct samples *s, int64_t t, int64_t v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 512;
        int64_t *nt = realloc(s->t, cap * sizeof(*nt));
        if (nt == NULL)
            return -ENOMEM;
        s->t = nt;
        int64_t *nv = realloc(s->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    s->t[s->n] = t;
    s->v[s->n] = v;
    s->n++;
    return 0;
}

/* The interval before sample i: the hint a chunk starting there carries. */
static int64_t dt_before(const struct samples *s, size_t i)
{
    return i > 0 ? s->t[i] - s->t[i - 1] : s->dt0;
}

/* Encodes samples [i, j) into e. */
static int encode(struct apm_chunk_enc *e, const struct samples *s, size_t i, size_t j)
{
    apm_chunk_enc_reset(e, APM_CHUNK_SHIFT_NONE, dt_before(s, i));
    int rc = 0;
    for (size_t k = i; k < j && rc == 0; k++)
        rc = apm_chunk_enc_append(e, s->t[k], s->v[k]);
    return rc;
}

struct packer {
    struct apm_store_txn *t;
    MDB_cursor *cur; /* on DB_PACKED */
    uint64_t id;
    struct apm_chunk_enc enc;
    size_t page_room;  /* bytes for nodes in an empty leaf page */
    size_t leaf_max;   /* the largest value LMDB keeps in a leaf node */
    size_t piece_max;  /* a value of this many bytes fills one overflow page */
    size_t piece_leaf; /* without a known room, a remainder above this is cut in pieces this long */
    unsigned *keys;
};

/* Bytes a piece of len bytes takes in its leaf page. */
static long leaf_cost(const struct packer *pk, size_t len)
{
    size_t data = len > pk->leaf_max ? OVERFLOW_REF : len;
    return (long)((NODE_COST + data + 1u) & ~(size_t)1u);
}

/*
 * Puts the encoder's piece. An append goes into the last leaf page if it
 * fits there, else starts a new one alone (MDB_APPEND does not split in the
 * middle): the store follows the room left in that page (s->pack_room),
 * checked against LMDB's count of leaf pages after every put, and forgets
 * it (-1) on any surprise, until the next new page.
 */
static int put_piece(struct packer *pk, int64_t period, int64_t first_t, bool append)
{
    struct apm_store *s = pk->t->s;
    uint8_t key[PACK_KEY_LEN];
    apm_store_pack_key(key, period, pk->id, first_t);
    MDB_val k = {sizeof(key), key}, v = {pk->enc.len, pk->enc.buf};
    MDB_dbi dbi = s->dbi[DB_PACKED];
    MDB_stat before, after;
    long cost = leaf_cost(pk, pk->enc.len);
    bool track = append && mdb_stat(pk->t->txn, dbi, &before) == 0;
    int rc = append ? mdb_cursor_put(pk->cur, &k, &v, MDB_APPEND) : MDB_KEYEXIST;
    if (rc == MDB_KEYEXIST) { /* not after the last key (a restarted pass, late samples) */
        track = false;
        rc = mdb_cursor_put(pk->cur, &k, &v, 0);
    }
    if (rc == 0 && track && mdb_stat(pk->t->txn, dbi, &after) == 0) {
        if (after.ms_leaf_pages == before.ms_leaf_pages + 1)
            s->pack_room = (long)pk->page_room - cost;
        else if (after.ms_leaf_pages == before.ms_leaf_pages && s->pack_room >= cost)
            s->pack_room -= cost;
        else
            s->pack_room = -1;
    } else {
        s->pack_room = -1;
    }
    (*pk->keys)++;
    return apm_store_mdb_error(rc, "packed");
}

/*
 * The end of the next piece of samples [i, j), left encoded in pk->enc:
 * as many as fill an overflow page while the rest does not fit one; else
 * with the last leaf page's room known (room >= 0), the rest if it fits
 * there, or the longest prefix that fills it; with no such prefix of
 * PIECE_MIN_FILL bytes the piece starts a new page (*room becomes an empty
 * page's). With the room unknown, the rest cut in pieces of at most
 * piece_leaf bytes.
 */
static int cut_piece(struct packer *pk, const struct samples *s, size_t i, size_t j, long *room,
                     size_t *cut)
{
    struct apm_chunk_enc *e = &pk->enc;
    for (;;) {
        apm_chunk_enc_reset(e, APM_CHUNK_SHIFT_NONE, dt_before(s, i));
        size_t k = i, fit = i, fit_len = 0;
        int rc;
        while (k < j && e->n < APM_CHUNK_MAX_SAMPLES) {
            if ((rc = apm_chunk_enc_append(e, s->t[k], s->v[k])) < 0)
                return rc;
            if (e->len > pk->piece_max)
                break;
            k++;
            if (e->len <= pk->leaf_max && leaf_cost(pk, e->len) <= *room) {
                fit = k;
                fit_len = e->len;
            }
        }
        if (k < j) {
            /* Full: the samples before the one that overflowed fill the page. */
            *cut = k > i ? k : i + 1;
        } else if (*room < 0) {
            *cut = j;
            if (e->len > pk->piece_leaf) {
                size_t pieces = (e->len + pk->piece_leaf - 1) / pk->piece_leaf;
                *cut = i + (j - i) / pieces > i ? i + (j - i) / pieces : i + 1;
            }
        } else if (fit == j) {
            return 0;
        } else if (fit > i && fit_len >= PIECE_MIN_FILL) {
            *cut = fit;
        } else if (*room < (long)pk->page_room) {
            *room = (long)pk->page_room; /* this page stays as it is */
            continue;
        } else {
            *cut = fit > i ? fit : i + 1;
        }
        return *cut == j && k == j ? 0 : encode(e, s, i, *cut);
    }
}

/* Writes samples [i, j), all of one period, as pieces (cut_piece). */
static int put_run(struct packer *pk, const struct samples *s, size_t i, size_t j, int64_t period,
                   bool append)
{
    while (i < j) {
        long room = append ? pk->t->s->pack_room : -1;
        size_t cut = j;
        int rc = cut_piece(pk, s, i, j, &room, &cut);
        if (rc == 0)
            rc = put_piece(pk, period, s->t[i], append);
        if (rc < 0)
            return rc;
        i = cut;
    }
    return 0;
}

/*
 * Reads the series' sealed chunks starting before end into out, stopping at
 * a damaged one (left in place). Returns the number of chunks read.
 */
static int take_chunks(MDB_txn *txn, MDB_dbi dbi, uint64_t id, int64_t end, struct samples *out,
                       unsigned *nchunks)
{
    MDB_cursor *cur = NULL;
    uint8_t key[16];
    apm_store_chunk_key(key, id, INT64_MIN);
    MDB_val k = {sizeof(key), key}, v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    *nchunks = 0;
    while (rc == 0) {
        if (k.mv_size != 16 || apm_store_get_be64(k.mv_data) != id ||
            apm_store_chunk_key_t(&k) >= end)
            break;
        struct apm_chunk_iter it;
        size_t n0 = out->n;
        int64_t ts, vs;
        int irc = apm_chunk_iter_init(&it, v.mv_data, v.mv_size, apm_store_chunk_key_t(&k));
        if (irc == 0 && n0 == 0)
            out->dt0 = (int64_t)it.dt;
        while (irc == 0 && (irc = apm_chunk_iter_next(&it, &ts, &vs)) == 1)
            irc = samples_add(out, ts, vs);
        if (irc == -ENOMEM) {
            mdb_cursor_close(cur);
            return irc;
        }
        if (irc < 0 || (out->n > n0 && out->t[n0] != apm_store_chunk_key_t(&k)) ||
            (n0 > 0 && out->n > n0 && out->t[n0] <= out->t[n0 - 1])) {
            out->n = n0; /* damaged, or out of order: stays where it is */
            break;
        }
        (*nchunks)++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "chunks");
}

/* Deletes the series' first n sealed chunks. */
static int drop_chunks(MDB_txn *txn, MDB_dbi dbi, uint64_t id, unsigned n)
{
    MDB_cursor *cur = NULL;
    uint8_t key[16];
    apm_store_chunk_key(key, id, INT64_MIN);
    int rc = mdb_cursor_open(txn, dbi, &cur);
    for (unsigned i = 0; i < n && rc == 0; i++) {
        MDB_val k = {sizeof(key), key}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && (k.mv_size != 16 || apm_store_get_be64(k.mv_data) != id))
            rc = MDB_NOTFOUND;
        if (rc == 0)
            rc = mdb_cursor_del(cur, 0);
    }
    mdb_cursor_close(cur);
    return apm_store_mdb_error(rc, "chunks");
}

int apm_store_pack_series(struct apm_store_txn *t, uint64_t id, int64_t period, int64_t end,
                          unsigned *keys)
{
    struct apm_store *s = t->s;
    struct samples sm = {0};
    unsigned nchunks = 0;
    int rc = take_chunks(t->txn, s->dbi[DB_CHUNKS], id, end, &sm, &nchunks);
    if (rc < 0 || nchunks == 0) {
        free(sm.t);
        free(sm.v);
        return rc;
    }
    MDB_stat st;
    rc = apm_store_mdb_error(mdb_env_stat(s->env, &st), "stat");
    struct packer pk = {.t = t, .id = id, .keys = keys};
    apm_chunk_enc_init(&pk.enc);
    pk.page_room = st.ms_psize - PAGE_HEADER;
    /* LMDB's me_nodemax: half an empty page, less an index slot, holds a leaf node. */
    pk.leaf_max = ((pk.page_room / 2) & ~(size_t)1u) - 2u - (NODE_COST - 2u);
    pk.piece_max = pk.page_room;
    pk.piece_leaf = pk.page_room / PIECE_LEAF_DIV - NODE_COST;
    if (rc == 0)
        rc = apm_store_mdb_error(mdb_cursor_open(t->txn, s->dbi[DB_PACKED], &pk.cur), "packed");
    size_t i = 0;
    /* Late samples, before the period: to the period holding their time. */
    while (rc == 0 && i < sm.n && sm.t[i] < period) {
        int64_t next;
        int64_t p = period_at(pk.cur, sm.t[i], &next, &rc);
        if (p == INT64_MIN)
            p = apm_rollup_floor(sm.t[i], end - period);
        int64_t stop = next < period ? next : period;
        size_t j = i;
        while (j < sm.n && sm.t[j] < stop)
            j++;
        if (rc == 0)
            rc = put_run(&pk, &sm, i, j, p, false);
        i = j;
    }
    size_t j = i;
    while (j < sm.n && sm.t[j] < end)
        j++;
    if (rc == 0 && j > i)
        rc = put_run(&pk, &sm, i, j, period, true);
    if (rc == 0)
        rc = drop_chunks(t->txn, s->dbi[DB_CHUNKS], id, nchunks);
    *keys += nchunks;
    /* Samples past the period (of the chunk that straddles its end) go back as one chunk. */
    if (rc == 0 && j < sm.n && (rc = encode(&pk.enc, &sm, j, sm.n)) == 0) {
        uint8_t key[16];
        apm_store_chunk_key(key, id, sm.t[j]);
        MDB_val k = {sizeof(key), key}, v = {pk.enc.len, pk.enc.buf};
        rc = apm_store_mdb_error(mdb_put(t->txn, s->dbi[DB_CHUNKS], &k, &v, 0), "chunk");
        (*keys)++;
    }
    if (rc == 0)
        atomic_fetch_add(&s->m[MC_CHUNKS_PACKED], nchunks);
    mdb_cursor_close(pk.cur);
    apm_chunk_enc_close(&pk.enc);
    free(sm.t);
    free(sm.v);
    return rc;
}

int apm_store_pack_cut_head(struct apm_store_txn *t, struct store_series *ser, int64_t end,
                            unsigned *keys)
{
    struct apm_chunk_enc *h = &ser->head;
    if (h->n < 2 || h->first_t >= end || h->last_t < end)
        return 0;
    struct samples sm = {0};
    struct apm_chunk_iter it;
    int64_t ts, vs;
    int rc = apm_chunk_iter_init(&it, h->buf, h->len, h->first_t);
    sm.dt0 = (int64_t)it.dt;
    while (rc == 0 && (rc = apm_chunk_iter_next(&it, &ts, &vs)) == 1)
        rc = samples_add(&sm, ts, vs);
    size_t j = 0;
    while (j < sm.n && sm.t[j] < end)
        j++;
    struct apm_chunk_enc prefix;
    apm_chunk_enc_init(&prefix);
    if (rc == 0 && j > 0 && j < sm.n)
        rc = encode(&prefix, &sm, 0, j);
    if (rc == 0 && j > 0 && j < sm.n) {
        uint8_t key[16];
        apm_store_chunk_key(key, ser->id, sm.t[0]);
        MDB_val k = {sizeof(key), key}, v = {prefix.len, prefix.buf};
        rc = apm_store_mdb_error(mdb_put(t->txn, t->s->dbi[DB_CHUNKS], &k, &v, 0), "chunk");
        (*keys)++;
        /* The head keeps the rest, as if its chunk had been sealed before them. */
        uint8_t shift = h->shift;
        apm_chunk_enc_reset(h, shift, sm.t[j] - sm.t[j - 1]);
        for (size_t i = j; i < sm.n && rc == 0; i++)
            rc = apm_chunk_enc_append(h, sm.t[i], sm.v[i]);
    }
    apm_chunk_enc_close(&prefix);
    free(sm.t);
    free(sm.v);
    return rc < 0 ? (rc == APM_E_DECODE ? APM_E_STORE : rc) : 0;
}
