#include "server/store/chunk.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "server/store/varint.h"

/*
 * Rice codes with a parameter k chosen from the mean of the recent values
 * (LOCO-I's rule: the smallest k with count * 2^k >= sum), so a stream of
 * zeros costs one bit a value and a noisy stream about its entropy plus a
 * fraction of a bit. Quotients of RICE_ESCAPE or more are sent as an escape
 * followed by the value's bit length and the value itself, which bounds the
 * worst case (any 64-bit value) at RICE_ESCAPE + 6 + 64 bits.
 */
#define RICE_ESCAPE 24u
#define RICE_INIT_SUM 4u
#define RICE_HALVE_AT 16u
#define RICE_SUM_CAP (1ull << 56)
#define HEADER_FIXED 4u
#define LEN_CHECK 4u /* formats 2 and 3: byte 4 is the chunk's length mod 256 (catches a cut) */
#define MAX_BYTES_PER_SAMPLE 24u /* two escaped codes: 2 * (24 + 6 + 64) bits */
#define MAX_SAMPLE_BYTES APM_CHUNK_RC_MAX_SAMPLE_BYTES /* either format */
_Static_assert(MAX_BYTES_PER_SAMPLE <= MAX_SAMPLE_BYTES, "room for a format 1 sample");

/* Formats 2 and 3: range-coded (chunk_rc.c). */
static bool range_coded(uint8_t format)
{
    return format == APM_CHUNK_FORMAT || format == APM_CHUNK_FORMAT_RC2;
}

static void rice_init(struct apm_chunk_rice *r)
{
    r->sum = RICE_INIT_SUM;
    r->count = 1;
}

static unsigned rice_k(const struct apm_chunk_rice *r)
{
    unsigned k = 0;
    while (((uint64_t)r->count << k) < r->sum && k < 60)
        k++;
    return k;
}

static void rice_update(struct apm_chunk_rice *r, uint64_t u)
{
    r->sum += u < RICE_SUM_CAP ? u : RICE_SUM_CAP;
    if (++r->count >= RICE_HALVE_AT) {
        r->sum >>= 1;
        r->count >>= 1;
    }
}

/* ---- writing ---- */

static int reserve(struct apm_chunk_enc *e, size_t need)
{
    if (need <= e->cap)
        return 0;
    size_t cap = e->cap ? e->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *nb = realloc(e->buf, cap);
    if (nb == NULL)
        return -ENOMEM;
    e->buf = nb;
    e->cap = (uint32_t)cap;
    return 0;
}

/*
 * Makes room for one more sample and its flush: a range coder writes from
 * its own position (past a flush's dropped zero bytes) and may release held
 * back bytes. A first sample writes the header (at most 24 bytes).
 */
static int reserve_sample(struct apm_chunk_enc *e)
{
    size_t used = e->len, extra = MAX_SAMPLE_BYTES + 32;
    if (range_coded(e->format) && e->n > 0) {
        used = e->rc.pos > used ? e->rc.pos : used;
        extra += e->rc.pending;
    }
    return reserve(e, used + extra);
}

/* Appends the low nbits of v, least significant bit first. Space is reserved. */
static void put_bits(struct apm_chunk_enc *e, uint64_t v, unsigned nbits)
{
    while (nbits > 0) {
        if (e->bit_pos == 0)
            e->buf[e->len++] = 0;
        unsigned room = 8u - e->bit_pos;
        unsigned take = nbits < room ? nbits : room;
        e->buf[e->len - 1] |= (uint8_t)((v & ((1u << take) - 1)) << e->bit_pos);
        v >>= take;
        nbits -= take;
        e->bit_pos = (uint8_t)((e->bit_pos + take) & 7u);
    }
}

static void rice_put(struct apm_chunk_enc *e, struct apm_chunk_rice *r, uint64_t u)
{
    unsigned k = rice_k(r);
    uint64_t q = u >> k;
    if (q < RICE_ESCAPE) {
        put_bits(e, (1ull << q) - 1, (unsigned)q);
        put_bits(e, 0, 1);
        put_bits(e, u, k);
    } else {
        unsigned width = 64u - (unsigned)__builtin_clzll(u);
        put_bits(e, (1ull << RICE_ESCAPE) - 1, RICE_ESCAPE);
        put_bits(e, width - 1, 6);
        put_bits(e, u, width);
    }
    rice_update(r, u);
}

static void put_count(struct apm_chunk_enc *e)
{
    e->buf[2] = (uint8_t)(e->n & 0xff);
    e->buf[3] = (uint8_t)(e->n >> 8);
}

void apm_chunk_enc_init(struct apm_chunk_enc *e)
{
    memset(e, 0, sizeof(*e));
    e->new_format = APM_CHUNK_FORMAT;
    apm_chunk_enc_reset(e, APM_CHUNK_SHIFT_NONE, 0);
}

void apm_chunk_enc_close(struct apm_chunk_enc *e)
{
    if (e == NULL)
        return;
    free(e->buf);
    e->buf = NULL;
    e->cap = 0;
    e->len = 0;
}

void apm_chunk_enc_reset(struct apm_chunk_enc *e, uint8_t shift_hint, int64_t dt_hint)
{
    e->len = 0;
    e->n = 0;
    e->bit_pos = 0;
    e->shift = APM_CHUNK_SHIFT_NONE;
    e->format = e->new_format;
    e->shift_hint = shift_hint > APM_CHUNK_SHIFT_NONE ? APM_CHUNK_SHIFT_NONE : shift_hint;
    e->first_t = e->last_t = e->last_v = 0;
    e->base_dt = dt_hint;
    e->last_dt = (uint64_t)dt_hint;
    rice_init(&e->rice_t);
    rice_init(&e->rice_v);
}

int apm_chunk_enc_set_format(struct apm_chunk_enc *e, uint8_t format)
{
    if (!range_coded(format) && format != APM_CHUNK_FORMAT_RICE)
        return -EINVAL;
    e->new_format = format;
    if (e->n == 0)
        e->format = format;
    return 0;
}

static void put_varint(struct apm_chunk_enc *e, uint64_t u)
{
    e->len += apm_varint_put(e->buf + e->len, u);
}

static void append_first(struct apm_chunk_enc *e, int64_t t, int64_t v)
{
    e->buf[0] = e->format;
    e->buf[1] = APM_CHUNK_SHIFT_NONE;
    e->len = HEADER_FIXED;
    if (range_coded(e->format))
        e->len++;
    put_varint(e, apm_zigzag(v));
    put_varint(e, apm_zigzag(e->base_dt));
    if (range_coded(e->format)) {
        apm_chunk_rc_enc_init(&e->rc, e->len);
        apm_chunk_model_init(&e->model, (uint64_t)e->base_dt, e->format);
        e->buf[LEN_CHECK] = (uint8_t)e->len;
    }
    e->first_t = e->last_t = t;
    e->last_v = v;
    e->n = 1;
    put_count(e);
}

static void append_next(struct apm_chunk_enc *e, int64_t t, int64_t v)
{
    uint64_t dt = (uint64_t)t - (uint64_t)e->last_t;
    uint64_t dv = (uint64_t)v - (uint64_t)e->last_v;
    uint64_t dod = dt - e->last_dt;
    int64_t scaled = 0;
    if (dv != 0) {
        if (e->shift == APM_CHUNK_SHIFT_NONE) {
            unsigned tz = (unsigned)__builtin_ctzll(dv);
            e->shift = (uint8_t)(tz < e->shift_hint ? tz : e->shift_hint);
            e->buf[1] = e->shift;
        }
        /* Exact: dv is a multiple of 2^shift (the caller rebuilds otherwise). */
        scaled = (int64_t)dv >> e->shift;
    }
    if (range_coded(e->format)) {
        uint64_t sv = (uint64_t)scaled, coded_dt = dt;
        apm_chunk_rc_sample(&e->rc, &e->model, e->buf, &coded_dt, &sv);
        e->len = apm_chunk_rc_flush(&e->rc, e->buf);
        e->buf[LEN_CHECK] = (uint8_t)e->len;
    } else {
        rice_put(e, &e->rice_t, apm_zigzag((int64_t)dod));
        rice_put(e, &e->rice_v, apm_zigzag(scaled));
    }
    e->last_dt = dt;
    e->last_t = t;
    e->last_v = v;
    e->n++;
    put_count(e);
}

/*
 * A delta with fewer trailing zero bits than the chunk's shift arrived: the
 * chunk is re-encoded with the smaller shift. The shift only ever shrinks,
 * so this happens a handful of times per chunk at most.
 */
static int rebuild(struct apm_chunk_enc *e, uint8_t shift, int64_t t, int64_t v)
{
    struct apm_chunk_iter it;
    uint8_t *old = malloc(e->len);
    if (old == NULL)
        return -ENOMEM;
    memcpy(old, e->buf, e->len);
    size_t old_len = e->len;
    int rc = apm_chunk_iter_init(&it, old, old_len, e->first_t);
    if (rc < 0)
        goto out;
    /* Same format, smaller shift; on failure the encoder is left empty. */
    uint8_t new_format = e->new_format;
    e->new_format = e->format;
    apm_chunk_enc_reset(e, shift, e->base_dt);
    e->new_format = new_format;
    int64_t ot, ov;
    while ((rc = apm_chunk_iter_next(&it, &ot, &ov)) == 1) {
        if ((rc = reserve_sample(e)) < 0)
            break;
        if (e->n == 0)
            append_first(e, ot, ov);
        else
            append_next(e, ot, ov);
    }
    if (rc == 0 && (rc = reserve_sample(e)) == 0)
        append_next(e, t, v);
out:
    free(old);
    return rc;
}

int apm_chunk_enc_append(struct apm_chunk_enc *e, int64_t t, int64_t v)
{
    if (e->n >= APM_CHUNK_MAX_SAMPLES)
        return APM_E_LIMIT;
    if (reserve_sample(e) < 0)
        return -ENOMEM;
    if (e->n == 0) {
        append_first(e, t, v);
        return 0;
    }
    uint64_t dv = (uint64_t)v - (uint64_t)e->last_v;
    if (dv != 0 && e->shift != APM_CHUNK_SHIFT_NONE) {
        unsigned tz = (unsigned)__builtin_ctzll(dv);
        if (tz < e->shift)
            return rebuild(e, (uint8_t)tz, t, v);
    }
    append_next(e, t, v);
    return 0;
}

int apm_chunk_enc_load(struct apm_chunk_enc *e, const void *buf, size_t len, int64_t first_t)
{
    struct apm_chunk_iter it;
    int rc = apm_chunk_iter_init(&it, buf, len, first_t);
    if (rc < 0)
        return rc;
    /* Re-encoding with the stored shift as the hint yields the same bytes. */
    apm_chunk_enc_reset(e, it.shift, (int64_t)it.dt);
    e->format = it.format; /* this chunk only: the next one is new_format */
    if (reserve(e, len + MAX_SAMPLE_BYTES + 32) < 0)
        return -ENOMEM;
    int64_t t, v;
    while ((rc = apm_chunk_iter_next(&it, &t, &v)) == 1) {
        rc = apm_chunk_enc_append(e, t, v);
        if (rc < 0)
            break;
    }
    if (rc == 0 && (e->len != len || memcmp(e->buf, buf, len) != 0))
        rc = APM_E_DECODE;
    if (rc < 0)
        apm_chunk_enc_reset(e, APM_CHUNK_SHIFT_NONE, 0);
    return rc;
}

/* ---- reading ---- */

static int get_bits(struct apm_chunk_iter *it, unsigned nbits, uint64_t *out)
{
    uint64_t v = 0;
    unsigned got = 0;
    while (got < nbits) {
        if (it->pos >= it->len)
            return APM_E_DECODE;
        unsigned room = 8u - it->bit_pos;
        unsigned take = nbits - got < room ? nbits - got : room;
        uint64_t bits = (it->buf[it->pos] >> it->bit_pos) & ((1u << take) - 1);
        v |= bits << got;
        got += take;
        it->bit_pos = (uint8_t)(it->bit_pos + take);
        if (it->bit_pos == 8) {
            it->bit_pos = 0;
            it->pos++;
        }
    }
    *out = v;
    return 0;
}

static int rice_get(struct apm_chunk_iter *it, struct apm_chunk_rice *r, uint64_t *out)
{
    unsigned k = rice_k(r);
    uint64_t q = 0, bit = 1, low = 0;
    while (q < RICE_ESCAPE) {
        if (get_bits(it, 1, &bit) < 0)
            return APM_E_DECODE;
        if (bit == 0)
            break;
        q++;
    }
    if (q < RICE_ESCAPE) {
        if (get_bits(it, k, &low) < 0)
            return APM_E_DECODE;
        *out = (q << k) | low;
    } else {
        uint64_t width;
        if (get_bits(it, 6, &width) < 0 || get_bits(it, (unsigned)width + 1, out) < 0)
            return APM_E_DECODE;
    }
    rice_update(r, *out);
    return 0;
}

uint32_t apm_chunk_count(const void *buf, size_t len)
{
    const uint8_t *b = buf;
    if (len < HEADER_FIXED + 1 || (!range_coded(b[0]) && b[0] != APM_CHUNK_FORMAT_RICE) ||
        b[1] > APM_CHUNK_SHIFT_NONE)
        return 0;
    return (uint32_t)b[2] | (uint32_t)b[3] << 8;
}

int apm_chunk_iter_init(struct apm_chunk_iter *it, const void *buf, size_t len, int64_t first_t)
{
    memset(it, 0, sizeof(*it));
    it->buf = buf;
    it->len = len;
    it->n = apm_chunk_count(buf, len);
    if (it->n == 0)
        return APM_E_DECODE;
    it->format = it->buf[0];
    it->shift = it->buf[1];
    size_t pos = HEADER_FIXED;
    if (range_coded(it->format) && it->buf[LEN_CHECK] != (uint8_t)len)
        return APM_E_DECODE;
    pos += range_coded(it->format);
    uint64_t first_v, base_dt;
    if (apm_varint_get(it->buf, len, &pos, &first_v) < 0 ||
        apm_varint_get(it->buf, len, &pos, &base_dt) < 0)
        return APM_E_DECODE;
    it->pos = pos;
    it->t = first_t;
    it->v = apm_unzigzag(first_v);
    it->dt = (uint64_t)apm_unzigzag(base_dt);
    rice_init(&it->rice_t);
    rice_init(&it->rice_v);
    if (range_coded(it->format)) {
        if (len > UINT32_MAX)
            return APM_E_DECODE;
        apm_chunk_rc_dec_init(&it->rc, it->buf, (uint32_t)pos, (uint32_t)len);
        apm_chunk_model_init(&it->model, it->dt, it->format);
    }
    return 0;
}

/* The next sample's interval and scaled value delta, as int64 bits. */
static int next_deltas(struct apm_chunk_iter *it, uint64_t *dt, uint64_t *scaled)
{
    if (range_coded(it->format)) {
        /* Decoding only reads the buffer. */
        apm_chunk_rc_sample(&it->rc, &it->model, (uint8_t *)(uintptr_t)it->buf, dt, scaled);
        /* The code stays inside the coder's interval unless the bytes are damaged. */
        return it->rc.code < it->rc.range ? 0 : APM_E_DECODE;
    }
    uint64_t dod;
    if (rice_get(it, &it->rice_t, &dod) < 0 || rice_get(it, &it->rice_v, scaled) < 0)
        return APM_E_DECODE;
    *dt = it->dt + (uint64_t)apm_unzigzag(dod);
    *scaled = (uint64_t)apm_unzigzag(*scaled);
    return 0;
}

int apm_chunk_iter_next(struct apm_chunk_iter *it, int64_t *t, int64_t *v)
{
    if (it->i >= it->n)
        return 0;
    if (it->i > 0) {
        uint64_t dt = 0, scaled = 0;
        if (next_deltas(it, &dt, &scaled) < 0)
            return APM_E_DECODE;
        it->dt = dt;
        it->t = (int64_t)((uint64_t)it->t + it->dt);
        if (scaled != 0) {
            if (it->shift == APM_CHUNK_SHIFT_NONE)
                return APM_E_DECODE;
            it->v = (int64_t)((uint64_t)it->v + (scaled << it->shift));
        }
    }
    it->i++;
    if (it->i == it->n && range_coded(it->format) && !apm_chunk_rc_dec_done(&it->rc))
        return APM_E_DECODE;
    *t = it->t;
    *v = it->v;
    return 1;
}

void apm_chunk_enc_restart(struct apm_chunk_enc *e)
{
    uint8_t shift = e->shift != APM_CHUNK_SHIFT_NONE ? e->shift : e->shift_hint;
    /* Formats 2 and 3 pass on their estimate of the series' interval, not the last (jittered) one.
     */
    uint64_t dt = e->last_dt;
    if (range_coded(e->format) && e->n > 1)
        dt = apm_chunk_model_interval(&e->model);
    apm_chunk_enc_reset(e, shift, (int64_t)dt);
}
