/*
 * Rollups: per series, buckets of 1 minute and 1 hour with the min, max,
 * sum, count and last value of the raw samples in them (docs/store.md).
 * store_retention.c builds them as the writer's maintenance goes by; this
 * file holds their layout and the step queries answered from them.
 *
 * Layout 2 (written now): one entry per (resolution, block start, series)
 * holding a block of consecutive buckets (60 one-minute buckets, an hour;
 * 24 one-hour buckets, a day), delta-coded bucket to bucket. Layout 1 (one
 * entry per bucket, keyed by series first) is still read, and moved into
 * blocks by the maintenance (store_retention.c).
 */
#include <errno.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/store_priv.h"
#include "server/store/varint.h"

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

void apm_rollup_block_key(uint8_t key[ROLLUP_BLOCK_KEY_LEN], int res_i, int64_t start, uint64_t id)
{
    key[0] = ROLLUP_TAG;
    apm_store_put_be64(key + 1, (uint64_t)ROLLUP_KEY_TIME(res_i, start) ^ (1ull << 63));
    key[9] = (uint8_t)res_i;
    apm_store_put_be64(key + 10, id);
}

int apm_rollup_block_key_parse(const MDB_val *k, int *res_i, int64_t *start, uint64_t *id)
{
    const uint8_t *p = k->mv_data;
    if (k->mv_size != ROLLUP_BLOCK_KEY_LEN || p[0] != ROLLUP_TAG || p[9] > 1)
        return -1;
    *res_i = p[9];
    *start = (int64_t)(apm_store_get_be64(p + 1) ^ (1ull << 63)) - ROLLUP_BLOCK(*res_i) -
             ROLLUP_GRACE(*res_i);
    *id = apm_store_get_be64(p + 10);
    return 0;
}

/* ---- layout 1's value: varints of zigzag(min), max - min, last - min, count, sum - min x count
 * ---- */

int apm_rollup_decode(const void *buf, size_t len, struct apm_rollup *out)
{
    uint64_t u[5];
    size_t pos = 0;
    for (int i = 0; i < 5; i++)
        if (apm_varint_get(buf, len, &pos, &u[i]) != 0)
            return APM_E_DECODE;
    if (pos != len || u[3] == 0)
        return APM_E_DECODE;
    uint64_t min = (uint64_t)apm_unzigzag(u[0]);
    out->min = (int64_t)min;
    out->max = (int64_t)(min + u[1]);
    out->last = (int64_t)(min + u[2]);
    out->count = u[3];
    out->sum = (int64_t)(u[4] + min * u[3]);
    return 0;
}

/*
 * A block: a varint shift, the trailing zero bits every min, max, last and
 * sum of the block share (RSS and most sizes are whole pages: 12), then for
 * each bucket present, in time order, with those divided by 2^shift,
 * varints of its index less
 * the previous one's less 1, zigzag(min - the previous bucket's last), max -
 * min, max - last, zigzag(count - the previous count), and zigzag(sum - mid
 * x count) where mid = min + (max - min) / 2 (the first bucket's "previous"
 * last and count are 0). Growth makes max - last and the sum's term small.
 */
static int64_t sum_guess(uint64_t min, uint64_t spread, uint64_t count)
{
    return (int64_t)((min + spread / 2) * count);
}

/* Most shift a block may have, so that 2^shift is an int64_t. */
#define BLOCK_SHIFT_MAX 62u

size_t apm_rollup_block_encode(const struct apm_rollup *b, int n, uint8_t *buf)
{
    uint64_t bits = 0;
    for (int i = 0; i < n; i++)
        if (b[i].count > 0)
            bits |=
                (uint64_t)b[i].min | (uint64_t)b[i].max | (uint64_t)b[i].last | (uint64_t)b[i].sum;
    unsigned shift = bits == 0 ? 0 : (unsigned)__builtin_ctzll(bits);
    if (shift > BLOCK_SHIFT_MAX)
        shift = BLOCK_SHIFT_MAX;
    int64_t unit = (int64_t)1 << shift;
    size_t len = apm_varint_put(buf, shift);
    int prev_i = -1;
    int64_t prev_last = 0;
    uint64_t prev_count = 0;
    for (int i = 0; i < n; i++) {
        if (b[i].count == 0)
            continue;
        const struct apm_rollup scaled = {.min = b[i].min / unit,
                                          .max = b[i].max / unit,
                                          .last = b[i].last / unit,
                                          .sum = b[i].sum / unit,
                                          .count = b[i].count};
        const struct apm_rollup *r = &scaled;
        uint64_t min = (uint64_t)r->min;
        len += apm_varint_put(buf + len, (uint64_t)(i - prev_i - 1));
        len += apm_varint_put(buf + len, apm_zigzag((int64_t)(min - (uint64_t)prev_last)));
        uint64_t spread = (uint64_t)r->max - min;
        len += apm_varint_put(buf + len, spread);
        len += apm_varint_put(buf + len, (uint64_t)r->max - (uint64_t)r->last);
        len += apm_varint_put(buf + len, apm_zigzag((int64_t)(r->count - prev_count)));
        len += apm_varint_put(
            buf + len,
            apm_zigzag((int64_t)((uint64_t)r->sum - (uint64_t)sum_guess(min, spread, r->count))));
        prev_i = i;
        prev_last = r->last;
        prev_count = r->count;
    }
    return len;
}

int apm_rollup_block_decode(const void *buf, size_t len, int n, struct apm_rollup *b)
{
    memset(b, 0, sizeof(*b) * (size_t)n);
    size_t pos = 0;
    uint64_t shift;
    if (apm_varint_get(buf, len, &pos, &shift) != 0 || shift > BLOCK_SHIFT_MAX)
        return APM_E_DECODE;
    int i = -1;
    int64_t prev_last = 0;
    uint64_t prev_count = 0;
    while (pos < len) {
        uint64_t u[6];
        for (int f = 0; f < 6; f++)
            if (apm_varint_get(buf, len, &pos, &u[f]) != 0)
                return APM_E_DECODE;
        if (u[0] >= (uint64_t)(n - 1 - i))
            return APM_E_DECODE;
        i += (int)u[0] + 1;
        uint64_t count = prev_count + (uint64_t)apm_unzigzag(u[4]);
        if (count == 0 || count > (uint64_t)INT64_MAX)
            return APM_E_DECODE;
        uint64_t min = (uint64_t)prev_last + (uint64_t)apm_unzigzag(u[1]);
        struct apm_rollup *r = &b[i];
        r->min = (int64_t)min;
        r->max = (int64_t)(min + u[2]);
        r->last = (int64_t)(min + u[2] - u[3]);
        r->count = count;
        r->sum = (int64_t)((uint64_t)apm_unzigzag(u[5]) + (uint64_t)sum_guess(min, u[2], count));
        prev_last = r->last;
        prev_count = count;
    }
    for (int j = 0; j < n && shift > 0; j++) {
        b[j].min = (int64_t)((uint64_t)b[j].min << shift);
        b[j].max = (int64_t)((uint64_t)b[j].max << shift);
        b[j].last = (int64_t)((uint64_t)b[j].last << shift);
        b[j].sum = (int64_t)((uint64_t)b[j].sum << shift);
    }
    return i >= 0 ? 0 : APM_E_DECODE;
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

/* Layout-1 buckets of a series (one entry each), from_ms <= start <= to_ms. */
static int read_old_rollups(struct apm_store *s, MDB_txn *txn, uint64_t id, int res_i,
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

/* Calls cb for the buckets of one block in [from_ms, to_ms]; returns its nonzero return. */
static int emit_block(const MDB_val *v, int res_i, int64_t start, int64_t from_ms, int64_t to_ms,
                      apm_store_rollup_cb cb, void *ctx)
{
    struct apm_rollup b[ROLLUP_BLOCK_MAX];
    int n = ROLLUP_BLOCK_BUCKETS(res_i);
    if (apm_rollup_block_decode(v->mv_data, v->mv_size, n, b) != 0)
        return APM_E_STORE;
    for (int i = 0; i < n; i++) {
        int64_t t = start + i * ROLLUP_RES(res_i);
        if (b[i].count == 0 || t < from_ms)
            continue;
        if (t > to_ms)
            break;
        int stop = cb(ctx, t, &b[i]);
        if (stop != 0)
            return stop;
    }
    return 0;
}

/*
 * The series' blocks that may hold buckets in [from_ms, to_ms], a seek each:
 * a key of another series or resolution at the same key time moves to the
 * next block, a later key time (no block has one in between) jumps to it.
 */
static int read_blocks(struct apm_store *s, MDB_txn *txn, uint64_t id, int res_i, int64_t seek_ms,
                       int64_t from_ms, int64_t to_ms, apm_store_rollup_cb cb, void *ctx)
{
    int64_t span = ROLLUP_BLOCK(res_i);
    int64_t b = apm_rollup_floor(seek_ms, span);
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, s->dbi[DB_ROLLUPS], &cur);
    int stop = 0;
    while (rc == 0 && stop == 0 && b <= to_ms) {
        uint8_t key[ROLLUP_BLOCK_KEY_LEN];
        apm_rollup_block_key(key, res_i, b, id);
        MDB_val k = {sizeof(key), key}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        int kres;
        int64_t start;
        uint64_t kid;
        if (rc != 0 || apm_rollup_block_key_parse(&k, &kres, &start, &kid) != 0)
            break;
        int64_t kt = ROLLUP_KEY_TIME(kres, start);
        if (kres == res_i && start == b && kid == id)
            stop = emit_block(&v, res_i, start, from_ms, to_ms, cb, ctx);
        if (kt <= ROLLUP_KEY_TIME(res_i, b))
            b += span;
        else /* the first block of this resolution with a key time at or after kt */
            b = apm_rollup_floor(kt - ROLLUP_GRACE(res_i) - 1, span);
    }
    mdb_cursor_close(cur);
    if (stop != 0)
        return stop;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : apm_store_mdb_error(rc, "rollups");
}

int apm_store_txn_read_rollups(struct apm_store *s, MDB_txn *txn, uint64_t id, int res_i,
                               int64_t from_ms, int64_t to_ms, apm_store_rollup_cb cb, void *ctx)
{
    /* Blocks lie within the series' samples: no seek before its first or after its last. */
    struct store_series_record rec;
    int rc = apm_store_get_record(s, txn, id, &rec);
    if (rc == APM_E_NOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    int64_t lo = from_ms > rec.info.first_ms ? from_ms : rec.info.first_ms;
    int64_t hi = to_ms < rec.info.last_ms ? to_ms : rec.info.last_ms;
    if (from_ms < lo)
        from_ms = apm_rollup_floor(lo, ROLLUP_RES(res_i)); /* the first sample's bucket */
    /*
     * The blocks first: layout-1 buckets left are the newest rolled ones (the
     * maintenance moves a series' old buckets oldest first, and rolls none of
     * its new samples before all are moved).
     */
    rc = lo <= hi ? read_blocks(s, txn, id, res_i, lo, from_ms, hi, cb, ctx) : 0;
    if (rc == 0)
        rc = read_old_rollups(s, txn, id, res_i, from_ms, to_ms, cb, ctx);
    return rc;
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
    /*
     * Rollups hold the samples before their watermark: the resolution the
     * step selects, then a finer one from its first whole bucket after (the
     * 1-minute blocks close an hour after theirs, the 1-hour ones a day),
     * the samples in between raw; then raw samples.
     */
    for (int i = res_index(res); rc == 0 && i >= 0 && raw_from <= to_ms; i--) {
        if (wm[i] == INT64_MIN || wm[i] <= raw_from)
            continue;
        int64_t start = raw_from == lo ? lo : -apm_rollup_floor(-raw_from, ROLLUP_RES(i));
        if (start > raw_from)
            rc =
                apm_store_txn_read_samples(s, txn, series_id, &rec, raw_from,
                                           start - 1 < to_ms ? start - 1 : to_ms, step_sample, &st);
        if (rc == 0 && start < wm[i] && start <= to_ms) {
            used = used != 0 ? used : ROLLUP_RES(i);
            rc =
                apm_store_txn_read_rollups(s, txn, series_id, i, start,
                                           wm[i] - 1 < to_ms ? wm[i] - 1 : to_ms, step_rollup, &st);
        }
        raw_from = wm[i] > start ? wm[i] : start;
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
