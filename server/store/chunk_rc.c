#include "server/store/chunk_rc.h"

#include <string.h>

/*
 * LZMA's binary range coder: probabilities of a 0 in 1/2048ths, moved by
 * 1/2^shift of the distance after each decision. A chunk holds about a
 * hundred samples, so each context starts from a trained probability
 * (prior, below) and learns fast at first: shift RATE_FIRST + 1 on its first
 * use, one more per use up to RATE_LAST (format 2) or RATE_LAST_F3 (format
 * 3: a settled context moves by 1/16 rather than 1/8, which costs a little
 * at the start and gains over the rest, measured on the leakbench halves).
 */
#define PROB_BITS 11u
#define PROB_ONE (1u << PROB_BITS)
#define GRID_A 2u /* the offset keeps 3/4 of the error */
#define GRID_B 6u /* the step moves by 1/64 of it */
#define GRID_FRAC 8u
#define GRID_HALF (1u << (GRID_FRAC - 1))
#define RATE_FIRST 1u
#define RATE_LAST 3u
#define RATE_LAST_F3 4u
_Static_assert(RATE_LAST_F3 - RATE_FIRST <= 3, "the step fits in 2 bits");
#define TOP (1u << 24)

/*
 * Context offsets in apm_chunk_model.p, per stream (time, then value), each
 * conditioned on that stream's previous number.
 */
#define EXP_POS APM_CHUNK_RC_EXP_POS
#define ZERO 0u                        /* 4: by the last two numbers being 0 */
#define SIGN 4u                        /* 3: by the previous number's sign (or 0) */
#define EXP (SIGN + 3u)                /* BUCKETS x EXP_POS: unary exponent, by position */
#define MANT (EXP + BUCKETS * EXP_POS) /* EXP_POS: first bit below the leading one, by exponent */
#define BUCKETS APM_CHUNK_RC_BUCKETS
_Static_assert(MANT + EXP_POS == APM_CHUNK_RC_STREAM_PROBS, "context table size");

/*
 * Where each context starts: the mean of its final probability over the
 * chunks of the even-numbered leakbench traces, coded from 1/2 (printed by
 * `tests/bench/chunk_codec.sh "" 120 priors`; a second run differs a little,
 * as the interval estimates carried between chunks depend on the table).
 * Part of formats 2 and 3 (trained with format 2's rates; retrained for
 * format 3's they gained nothing): chunks written with one table decode
 * only with it.
 */
static const uint16_t prior[APM_CHUNK_RC_PROBS] = {
    1197, 1549, 436,  2017, 1298, 748,  1157, 455,  454,  456,  467,  463,  475,  478,  513,  560,
    610,  617,  543,  472,  676,  1019, 1382, 948,  756,  615,  591,  402,  401,  404,  409,  428,
    465,  529,  640,  949,  1023, 1276, 1273, 1077, 467,  467,  497,  1513, 1061, 1024, 1024, 162,
    163,  166,  169,  180,  194,  234,  318,  556,  782,  889,  865,  665,  739,  951,  1116, 1350,
    1340, 547,  599,  1024, 1014, 1071, 1035, 1023, 1030, 1002, 1037, 1051, 1273, 1329, 1418, 1440,
    1056, 1107, 774,  874,  1192, 500,  889,  194,  1035, 633,  1829, 1109, 876,  1453, 498,  505,
    508,  505,  518,  553,  627,  681,  734,  805,  910,  998,  1142, 1167, 1165, 1361, 1472, 990,
    1058, 1024, 348,  362,  385,  386,  414,  495,  654,  818,  956,  1003, 1045, 1228, 1220, 1372,
    841,  1040, 1536, 1024, 1024, 1024, 31,   31,   31,   37,   60,   127,  297,  434,  647,  815,
    958,  1276, 1336, 1392, 1087, 1234, 1406, 883,  1146, 1523, 1024, 1049, 1033, 1037, 993,  1002,
    1109, 1096, 1156, 1203, 1219, 1297, 1447, 1445, 1380, 1214, 1299, 1494, 488,  1515};

void apm_chunk_model_init(struct apm_chunk_model *m, uint64_t dt, uint8_t format)
{
    m->interval = dt << GRID_FRAC;
    m->offset = 0;
    m->rate_last = format >= 3 ? RATE_LAST_F3 : RATE_LAST;
    m->gap_grid = format >= 3;
    m->after_gap = 0;
    /* Step 1: a trained start is moved by 1/4 on first use, not 1/2. */
    for (unsigned i = 0; i < APM_CHUNK_RC_PROBS; i++)
        m->p[i] = (uint16_t)(prior[i] << 2 | 1u);
    memset(m->hist, 0, sizeof(m->hist));
}

void apm_chunk_rc_enc_init(struct apm_chunk_rc *rc, uint32_t pos)
{
    memset(rc, 0, sizeof(*rc));
    rc->range = 0xffffffffu;
    rc->pending = 1;
    rc->skip = 1;
    rc->pos = rc->start = rc->nonzero_end = pos;
}

void apm_chunk_rc_dec_init(struct apm_chunk_rc *rc, const uint8_t *buf, uint32_t pos, uint32_t len)
{
    memset(rc, 0, sizeof(*rc));
    rc->range = 0xffffffffu;
    rc->decoding = 1;
    rc->pos = rc->start = pos;
    rc->end = len;
    for (int i = 0; i < 4; i++, rc->pos++)
        rc->code = rc->code << 8 | (rc->pos < len ? buf[rc->pos] : 0u);
}

/*
 * The encoder's output, as in LZMA: bytes before pos are final; then come
 * the pending bytes a carry may still change, a cache byte and 0xff bytes,
 * already written to buf (so that a flush costs the same however long the
 * run; the very first cache byte is always 0 and never written: skip).
 */
static uint32_t run_bytes(const struct apm_chunk_rc *rc)
{
    return rc->pending - rc->skip;
}

/* Makes the first n pending bytes final. */
static void commit(struct apm_chunk_rc *rc, const uint8_t *buf, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++, rc->pos++)
        if (buf[rc->pos] != 0)
            rc->nonzero_end = rc->pos + 1;
}

/* Adds the carry out of low to the pending bytes: cache + 1, then 0x00s. */
static void add_carry(struct apm_chunk_rc *rc, uint8_t *buf)
{
    for (uint32_t i = 0; i < run_bytes(rc); i++)
        buf[rc->pos + i] = i == 0 && !rc->skip ? (uint8_t)(buf[rc->pos] + 1) : 0;
    rc->low &= 0xffffffffu;
}

/* Moves the top byte of low out, holding 0xff bytes back until a carry is settled. */
static void shift_low(struct apm_chunk_rc *rc, uint8_t *buf)
{
    if ((uint32_t)rc->low < 0xff000000u || (rc->low >> 32) != 0) {
        if (rc->low >> 32)
            add_carry(rc, buf);
        commit(rc, buf, run_bytes(rc));
        rc->skip = 0;
        rc->pending = 1;
        buf[rc->pos] = (uint8_t)(rc->low >> 24);
    } else {
        buf[rc->pos + run_bytes(rc)] = 0xff;
        rc->pending++;
    }
    rc->low = (rc->low & 0x00ffffffu) << 8;
}

static void normalize(struct apm_chunk_rc *rc, uint8_t *buf)
{
    while (rc->range < TOP) {
        rc->range <<= 8;
        if (rc->decoding) {
            rc->code = rc->code << 8 | (rc->pos < rc->end ? buf[rc->pos] : 0u);
            rc->low = (rc->low & 0x00ffffffu) << 8; /* mirrored for the end check */
            rc->pos++;
        } else {
            shift_low(rc, buf);
        }
    }
}

/* Codes one decision with adaptive context ctx of model m; returns the bit. */
static unsigned code_bit(struct apm_chunk_rc *rc, uint8_t *buf, struct apm_chunk_model *m,
                         unsigned ctx, unsigned bit)
{
    /* A context is its probability, shifted left by 2, and its shift - RATE_FIRST. */
    unsigned p = m->p[ctx] >> 2, step = m->p[ctx] & 3u, shift = RATE_FIRST + step;
    uint32_t bound = (rc->range >> PROB_BITS) * p;
    if (rc->decoding)
        bit = rc->code >= bound;
    if (bit == 0) {
        rc->range = bound;
        p += (PROB_ONE - p) >> shift;
    } else {
        if (rc->decoding)
            rc->code -= bound;
        rc->low += bound;
        rc->range -= bound;
        p -= p >> shift;
    }
    step += shift < m->rate_last;
    m->p[ctx] = (uint16_t)(p << 2 | step);
    normalize(rc, buf);
    return bit;
}

/*
 * Codes the low nbits of v at probability 1/2 each, up to 8 at a time (the
 * range stays >= 2^24 between decisions, so 2^8 equal parts keep 16 bits of
 * precision).
 */
static uint64_t code_direct(struct apm_chunk_rc *rc, uint8_t *buf, uint64_t v, unsigned nbits)
{
    uint64_t out = 0;
    while (nbits > 0) {
        unsigned take = nbits < 8 ? nbits : 8;
        nbits -= take;
        uint32_t part = rc->range >> take, digit = (uint32_t)(v >> nbits) & ((1u << take) - 1);
        if (rc->decoding) {
            digit = rc->code / part;
            if (digit >> take) /* only a damaged stream gets here */
                digit = (1u << take) - 1;
            rc->code -= digit * part;
        }
        rc->low += (uint64_t)digit * part;
        rc->range = part;
        out = out << take | digit;
        normalize(rc, buf);
    }
    return out;
}

/* The contexts one integer is coded with (indices into the model). */
struct int_ctx {
    unsigned zero;
    unsigned sign;
    unsigned exp;  /* EXP_POS */
    unsigned mant; /* EXP_POS */
};

/*
 * Codes an int64 (two's complement in x): a zero flag, then the sign, the
 * exponent e of the magnitude (Elias gamma: e in unary, one context per
 * position), the first bit below the leading one (context by e) and the
 * remaining e - 1 bits directly. Returns the value and sets *size to 0 for
 * zero, e + 1 otherwise.
 */
static uint64_t code_int(struct apm_chunk_rc *rc, uint8_t *buf, struct apm_chunk_model *md,
                         const struct int_ctx *c, uint64_t x, unsigned *size)
{
    *size = 0;
    if (code_bit(rc, buf, md, c->zero, x != 0) == 0)
        return 0;
    unsigned neg = code_bit(rc, buf, md, c->sign, (int64_t)x < 0);
    uint64_t mag = neg ? 0 - x : x;
    unsigned e = mag ? 63u - (unsigned)__builtin_clzll(mag) : 0;
    unsigned j = 0;
    while (j < 63 && code_bit(rc, buf, md, c->exp + (j < EXP_POS ? j : EXP_POS - 1), j < e))
        j++;
    e = j;
    uint64_t m = 1;
    if (e >= 1) {
        unsigned top = code_bit(rc, buf, md, c->mant + (e < EXP_POS ? e : EXP_POS - 1),
                                (unsigned)(mag >> (e - 1)) & 1u);
        m = m << 1 | top;
        m = m << (e - 1) | code_direct(rc, buf, mag, e - 1);
    }
    *size = e + 1;
    return neg ? 0 - m : m;
}

#define BUCKET_SMALL 4u /* numbers below 16: small */

/* Codes one number of a stream and moves the stream's history on. */
static uint64_t code_stream(struct apm_chunk_rc *rc, uint8_t *buf, struct apm_chunk_model *m,
                            unsigned stream, uint64_t x)
{
    struct apm_chunk_history *h = &m->hist[stream];
    unsigned base = stream * APM_CHUNK_RC_STREAM_PROBS, size;
    struct int_ctx c = {base + ZERO + h->zeros, base + SIGN + h->sign,
                        base + EXP + h->bucket * EXP_POS, base + MANT};
    x = code_int(rc, buf, m, &c, x, &size);
    h->zeros = (uint8_t)((h->zeros << 1 | (size == 0)) & 3u);
    h->sign = size == 0 ? 0 : ((int64_t)x < 0 ? 2 : 1);
    /* 0: the previous number was 0; small and large ones learn apart. */
    h->bucket = size == 0 ? 0 : (size <= BUCKET_SMALL ? 1 : 2);
    return x;
}

/*
 * Format 3: an interval of k >= 2 whole steps (within a quarter step) after
 * a sample that was not such a gap is samples missing on the same grid: the
 * offset follows the error against k steps and the step stays, instead of
 * the grid restarting with the gap as its step. A second one in a row is a
 * new interval (the grid restarts).
 */
static bool gap_on_grid(struct apm_chunk_model *m, uint64_t dt, uint64_t step)
{
    if (!m->gap_grid || m->after_gap || (int64_t)step <= 0 || (int64_t)dt <= 0)
        return false;
    uint64_t k = (dt + step / 2) / step;
    if (k < 2 || k > (1u << 20) || step > (1ull << 34)) /* k * interval stays below 2^63 */
        return false;
    uint64_t pred = (uint64_t)((int64_t)(k * m->interval - m->offset + GRID_HALF) >> GRID_FRAC);
    uint64_t e = dt - pred, mag = (int64_t)e < 0 ? 0 - e : e;
    if (mag >= step / 4)
        return false;
    m->offset = e * ((1u << GRID_FRAC) - (1u << (GRID_FRAC - GRID_A)));
    m->after_gap = 1;
    return true;
}

void apm_chunk_rc_sample(struct apm_chunk_rc *rc, struct apm_chunk_model *m, uint8_t *buf,
                         uint64_t *dt, uint64_t *dv)
{
    /*
     * Time: samples sit on a grid of step D with jitter, so the next
     * interval is D minus the previous sample's offset from the grid. Both
     * are estimates that follow the error e (fixed point, GRID_FRAC bits):
     * the offset becomes (1 - 1/2^GRID_A) e, D moves by e / 2^GRID_B. An
     * error of half an interval or more (a gap, a new interval) restarts
     * the grid at this sample.
     */
    uint64_t pred = (uint64_t)((int64_t)(m->interval - m->offset + GRID_HALF) >> GRID_FRAC);
    *dt = pred + code_stream(rc, buf, m, 0, *dt - pred);
    uint64_t e = *dt - pred;
    uint64_t mag = (int64_t)e < 0 ? 0 - e : e, step = m->interval >> GRID_FRAC;
    if ((int64_t)step > 0 && mag < step / 2) {
        m->offset = e * ((1u << GRID_FRAC) - (1u << (GRID_FRAC - GRID_A)));
        m->interval += e << (GRID_FRAC - GRID_B);
        m->after_gap = 0;
    } else if (!gap_on_grid(m, *dt, step)) {
        m->offset = 0;
        m->interval = *dt << GRID_FRAC;
        m->after_gap = 0;
    }
    *dv = code_stream(rc, buf, m, 1, *dv);
}

/*
 * Any number in [low, low + range) decodes the same. The flush writes the
 * one with the most trailing zero bytes below 2^32 (no carry): a multiple
 * of 2^24 unless low is within 2^24 of 2^32 (range >= 2^24). The decoder
 * reads missing bytes as zero, so those are not written, and checks at the
 * end that the stream held exactly this number.
 */
static uint32_t flush_point(uint64_t low)
{
    low &= 0xffffffffu;
    for (unsigned k = 24; k > 0; k -= 8) {
        uint64_t up = (low + ((1ull << k) - 1)) & ~((1ull << k) - 1);
        if (up < (1ull << 32))
            return (uint32_t)up;
    }
    return (uint32_t)low;
}

uint64_t apm_chunk_model_interval(const struct apm_chunk_model *m)
{
    return (uint64_t)((int64_t)(m->interval + GRID_HALF) >> GRID_FRAC);
}

uint32_t apm_chunk_rc_flush(struct apm_chunk_rc *rc, uint8_t *buf)
{
    /* A carry already in low is certain: settle it (the output stays the same). */
    uint32_t run = run_bytes(rc);
    if ((rc->low >> 32) != 0 && run > 0) {
        add_carry(rc, buf);
        commit(rc, buf, run - 1);
        rc->skip = 0;
        rc->pending = 1;
    }
    uint32_t x = flush_point(rc->low), tail = rc->pos + run_bytes(rc), end = tail + 4;
    for (int i = 0; i < 4; i++)
        buf[tail + i] = (uint8_t)(x >> (24 - 8 * i));
    while (end > rc->pos && buf[end - 1] == 0)
        end--;
    return end > rc->pos ? end : rc->nonzero_end;
}

bool apm_chunk_rc_dec_done(const struct apm_chunk_rc *rc)
{
    /* The decoder's low mirrors the encoder's within the 32-bit window. */
    uint32_t value = (uint32_t)rc->low + rc->code;
    return rc->code < rc->range && value == flush_point(rc->low) && rc->pos >= rc->end;
}
