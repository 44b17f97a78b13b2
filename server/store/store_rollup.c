/*
 * Rollups: per series, buckets of 1 minute and 1 hour with the min, max,
 * sum, count and last value of the raw samples in them (docs/store.md).
 * store_retention.c builds them as the writer's maintenance goes by; this
 * file holds their layout and the step queries answered from them.
 */
#include <errno.h>
#include <string.h>

#include "common/error.h"
#include "server/store/store_priv.h"

int64_t apm_rollup_floor(int64_t t, int64_t r)
{
    int64_t q = t / r;
    if (t % r != 0 && t < 0)
        q--;
    return q * r;
}

void apm_rollup_add(struct apm_rollup *r, int64_t v)
{
    if (r->count == 0 || v < r->min)
        r->min = v;
    if (r->count == 0 || v > r->max)
        r->max = v;
    r->sum = (int64_t)((uint64_t)r->sum + (uint64_t)v);
    r->last = v;
    r->count++;
}

void apm_rollup_merge(struct apm_rollup *a, const struct apm_rollup *b)
{
    if (b->count == 0)
        return;
    if (a->count == 0) {
        *a = *b;
        return;
    }
    if (b->min < a->min)
        a->min = b->min;
    if (b->max > a->max)
        a->max = b->max;
    a->sum = (int64_t)((uint64_t)a->sum + (uint64_t)b->sum);
    a->last = b->last;
    a->count += b->count;
}

void apm_rollup_key(uint8_t key[ROLLUP_KEY_LEN], uint64_t id, int res_i, int64_t start)
{
    apm_store_put_be64(key, id);
    key[8] = (uint8_t)res_i;
    apm_store_put_be64(key + 9, (uint64_t)start ^ (1ull << 63));
}

/* ---- value layout: varints of min, max - min, last - min, count, sum - min * count ---- */

static uint64_t zz(int64_t x)
{
    return ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
}

static int64_t unzz(uint64_t u)
{
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

static size_t put_varint(uint8_t *p, uint64_t u)
{
    size_t n = 0;
    while (u >= 0x80) {
        p[n++] = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    p[n++] = (uint8_t)u;
    return n;
}

static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t u = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = p[(*pos)++];
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = u;
            return 0;
        }
    }
    return APM_E_DECODE;
}

size_t apm_rollup_encode(const struct apm_rollup *r, uint8_t *buf)
{
    size_t n = 0;
    uint64_t min = (uint64_t)r->min;
    n += put_varint(buf + n, zz(r->min));
    n += put_varint(buf + n, (uint64_t)r->max - min);
    n += put_varint(buf + n, (uint64_t)r->last - min);
    n += put_varint(buf + n, r->count);
    n += put_varint(buf + n, (uint64_t)r->sum - min * r->count);
    return n;
}

int apm_rollup_decode(const void *buf, size_t len, struct apm_rollup *out)
{
    uint64_t u[5];
    size_t pos = 0;
    for (int i = 0; i < 5; i++)
        if (get_varint(buf, len, &pos, &u[i]) != 0)
            return APM_E_DECODE;
    if (pos != len || u[3] == 0)
        return APM_E_DECODE;
    uint64_t min = (uint64_t)unzz(u[0]);
    out->min = (int64_t)min;
    out->max = (int64_t)(min + u[1]);
    out->last = (int64_t)(min + u[2]);
    out->count = u[3];
    out->sum = (int64_t)(u[4] + min * u[3]);
    return 0;
}

/* ---- reading ---- */

int apm_store_rollup_wm(struct apm_store *s, MDB_txn *txn, uint64_t id, int64_t wm[2])
{
    uint8_t key[8];
    apm_store_put_be64(key, id);
    MDB_val k = {sizeof(key), key}, v;
    wm[0] = wm[1] = INT64_MIN;
    int rc = mdb_get(txn, s->dbi[DB_ROLLUP_WM], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0 && v.mv_size == 2 * sizeof(int64_t))
        memcpy(wm, v.mv_data, 2 * sizeof(int64_t));
    return apm_store_mdb_error(rc, "rollup watermark");
}

int apm_store_txn_read_rollups(struct apm_store *s, MDB_txn *txn, uint64_t id, int res_i,
                               int64_t from_ms, int64_t to_ms, apm_store_rollup_cb cb, void *ctx)
{
    MDB_cursor *cur = NULL;
    uint8_t key[ROLLUP_KEY_LEN];
    apm_rollup_key(key, id, res_i, from_ms);
    int rc = mdb_cursor_open(txn, s->dbi[DB_ROLLUPS], &cur);
    MDB_val k = {sizeof(key), key}, v;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int stop = 0;
    while (rc == 0 && stop == 0) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size != ROLLUP_KEY_LEN || memcmp(kp, key, 9) != 0)
            break;
        int64_t start = (int64_t)(apm_store_get_be64(kp + 9) ^ (1ull << 63));
        if (start > to_ms)
            break;
        struct apm_rollup r;
        if (apm_rollup_decode(v.mv_data, v.mv_size, &r) != 0)
            stop = APM_E_STORE;
        else
            stop = cb(ctx, start, &r);
        if (stop == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (stop != 0)
        return stop;
    return rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "rollups");
}

static int res_index(int64_t res_ms)
{
    return res_ms == APM_ROLLUP_1M ? 0 : res_ms == APM_ROLLUP_1H ? 1 : -1;
}

int apm_store_read_rollups(struct apm_store *s, uint64_t series_id, int64_t res_ms, int64_t from_ms,
                           int64_t to_ms, apm_store_rollup_cb cb, void *ctx)
{
    int res_i = res_index(res_ms);
    if (res_i < 0)
        return -EINVAL;
    MDB_txn *txn = NULL;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = apm_store_txn_read_rollups(s, txn, series_id, res_i, from_ms, to_ms, cb, ctx);
    apm_store_read_end(s, txn);
    return rc > 0 ? 0 : rc;
}

int apm_store_agg_parse(const char *name, enum apm_store_agg *out)
{
    static const char *const names[] = {"mean", "min", "max", "last"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (enum apm_store_agg)i;
            return 0;
        }
    return APM_E_PARSE;
}

int64_t apm_store_step_resolution(int64_t step_ms)
{
    if (step_ms % APM_ROLLUP_1H == 0)
        return APM_ROLLUP_1H;
    if (step_ms % APM_ROLLUP_1M == 0)
        return APM_ROLLUP_1M;
    return 0;
}

/* Folds rollup buckets and raw samples into step buckets, emitting each as it closes. */
struct stepper {
    int64_t step;
    enum apm_store_agg agg;
    int64_t bucket;
    struct apm_rollup acc;
    apm_store_point_cb cb;
    void *ctx;
};

static int step_flush(struct stepper *st)
{
    if (st->acc.count == 0)
        return 0;
    const struct apm_rollup *a = &st->acc;
    double v = st->agg == APM_AGG_MIN    ? (double)a->min
               : st->agg == APM_AGG_MAX  ? (double)a->max
               : st->agg == APM_AGG_LAST ? (double)a->last
                                         : (double)a->sum / (double)a->count;
    st->acc = (struct apm_rollup){0};
    return st->cb(st->ctx, st->bucket, v) ? 1 : 0;
}

static int step_rollup(void *ctx, int64_t start, const struct apm_rollup *r)
{
    struct stepper *st = ctx;
    int64_t b = apm_rollup_floor(start, st->step);
    if (b != st->bucket && st->acc.count > 0 && step_flush(st) != 0)
        return 1;
    st->bucket = b;
    apm_rollup_merge(&st->acc, r);
    return 0;
}

static int step_sample(void *ctx, int64_t t, int64_t v)
{
    struct apm_rollup one = {0};
    apm_rollup_add(&one, v);
    return step_rollup(ctx, t, &one);
}

int apm_store_read_steps(struct apm_store *s, uint64_t series_id, int64_t from_ms, int64_t to_ms,
                         int64_t step_ms, enum apm_store_agg agg, apm_store_point_cb cb, void *ctx,
                         int64_t *res_ms)
{
    if (step_ms <= 0)
        return -EINVAL;
    struct stepper st = {.step = step_ms, .agg = agg, .cb = cb, .ctx = ctx};
    int64_t lo = apm_rollup_floor(from_ms, step_ms);
    int64_t res = apm_store_step_resolution(step_ms), used = 0;
    MDB_txn *txn = NULL;
    struct store_series_record rec;
    struct store_head_snap head;
    int rc = apm_store_read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = apm_store_read_record(s, &txn, series_id, &rec, &head); /* the log's samples too */
    int64_t wm[2] = {INT64_MIN, INT64_MIN}, raw_from = lo;
    if (rc == 0 && res > 0)
        rc = apm_store_rollup_wm(s, txn, series_id, wm);
    int res_i = res_index(res);
    /* Rollups hold the samples before the watermark; the rest is read raw. */
    if (rc == 0 && res_i >= 0 && wm[res_i] != INT64_MIN && wm[res_i] > lo) {
        used = res;
        rc = apm_store_txn_read_rollups(s, txn, series_id, res_i, lo,
                                        wm[res_i] - 1 < to_ms ? wm[res_i] - 1 : to_ms, step_rollup,
                                        &st);
        raw_from = wm[res_i];
    }
    if (rc == 0)
        rc = apm_store_txn_read_samples(s, txn, series_id, &rec, raw_from, to_ms, step_sample, &st);
    if (rc == 0)
        rc = apm_store_head_emit(&head, &rec, raw_from, to_ms, step_sample, &st);
    if (rc == 0)
        rc = step_flush(&st);
    apm_store_head_snap_free(&head);
    apm_store_read_end(s, txn);
    if (res_ms != NULL)
        *res_ms = used;
    return rc > 0 ? 0 : rc;
}
