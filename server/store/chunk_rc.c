#include "server/store/chunk_rc.h"

#include <string.h>

/*
 * LZMA's binary range coder: probabilities of a 0 in 1/2048ths, moved by
 * 1/2^ADAPT of the distance after each decision (fast: a chunk holds about
 * a hundred samples, so the model must learn in a few dozen).
 */
#define PROB_BITS 11u
#define PROB_ONE (1u << PROB_BITS)
#define ADAPT 4u
#define TOP (1u << 24)

/* Context offsets in apm_chunk_model.p. */
#define EXP_POS APM_CHUNK_RC_EXP_POS
#define T_ZERO 0u                 /* 2: by whether the previous delta-of-delta was 0 */
#define T_SIGN 2u                 /* 1 */
#define T_EXP (T_SIGN + 1u)       /* EXP_POS: unary exponent, by position */
#define T_MANT (T_EXP + EXP_POS)  /* EXP_POS: first bit below the leading one, by exponent */
#define V_ZERO (T_MANT + EXP_POS) /* 4: by the last two value deltas being 0 */
#define V_SIGN (V_ZERO + 4u)      /* 3: by the previous delta's sign */
#define V_EXP (V_SIGN + 3u)       /* VBUCKETS x EXP_POS: by the previous delta's size, position */
#define V_MANT (V_EXP + APM_CHUNK_RC_VBUCKETS * EXP_POS)
_Static_assert(V_MANT + EXP_POS == APM_CHUNK_RC_PROBS, "context table size");

void apm_chunk_model_init(struct apm_chunk_model *m)
{
    for (unsigned i = 0; i < APM_CHUNK_RC_PROBS; i++)
        m->p[i] = PROB_ONE / 2;
    m->t_zero = 0;
    m->v_zero = 0;
    m->v_sign = 0;
    m->v_exp = 0;
}

void apm_chunk_rc_enc_init(struct apm_chunk_rc *rc, uint32_t pos)
{
    memset(rc, 0, sizeof(*rc));
    rc->range = 0xffffffffu;
    rc->pending = 1;
    rc->skip = 1;
    rc->pos = rc->start = pos;
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

/* Moves the top byte of low out, holding 0xff bytes back until a carry is settled. */
static void shift_low(struct apm_chunk_rc *rc, uint8_t *buf)
{
    if ((uint32_t)rc->low < 0xff000000u || (rc->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(rc->low >> 32);
        uint8_t byte = rc->cache;
        do {
            if (rc->skip)
                rc->skip = 0;
            else
                buf[rc->pos++] = (uint8_t)(byte + carry);
            byte = 0xff;
        } while (--rc->pending != 0);
        rc->cache = (uint8_t)(rc->low >> 24);
    }
    rc->pending++;
    rc->low = (rc->low & 0x00ffffffu) << 8;
}

static void normalize(struct apm_chunk_rc *rc, uint8_t *buf)
{
    while (rc->range < TOP) {
        rc->range <<= 8;
        if (rc->decoding) {
            rc->code = rc->code << 8 | (rc->pos < rc->end ? buf[rc->pos] : 0u);
            rc->pos++;
        } else {
            shift_low(rc, buf);
        }
    }
}

/* Codes one decision with an adaptive probability; returns the bit. */
static unsigned code_bit(struct apm_chunk_rc *rc, uint8_t *buf, uint16_t *p, unsigned bit)
{
    uint32_t bound = (rc->range >> PROB_BITS) * *p;
    if (rc->decoding)
        bit = rc->code >= bound;
    if (bit == 0) {
        rc->range = bound;
        *p = (uint16_t)(*p + ((PROB_ONE - *p) >> ADAPT));
    } else {
        if (rc->decoding)
            rc->code -= bound;
        else
            rc->low += bound;
        rc->range -= bound;
        *p = (uint16_t)(*p - (*p >> ADAPT));
    }
    normalize(rc, buf);
    return bit;
}

/* Codes the low nbits of v at probability 1/2 each, most significant first. */
static uint64_t code_direct(struct apm_chunk_rc *rc, uint8_t *buf, uint64_t v, unsigned nbits)
{
    uint64_t out = 0;
    while (nbits-- > 0) {
        unsigned bit = (unsigned)(v >> nbits) & 1u;
        rc->range >>= 1;
        if (rc->decoding) {
            bit = rc->code >= rc->range;
            if (bit)
                rc->code -= rc->range;
        } else if (bit) {
            rc->low += rc->range;
        }
        out = out << 1 | bit;
        normalize(rc, buf);
    }
    return out;
}

/* The contexts one integer is coded with. */
struct int_ctx {
    uint16_t *zero;
    uint16_t *sign;
    uint16_t *exp;  /* EXP_POS */
    uint16_t *mant; /* EXP_POS */
};

/*
 * Codes an int64 (two's complement in x): a zero flag, then the sign, the
 * exponent e of the magnitude (Elias gamma: e in unary, one context per
 * position), the first bit below the leading one (context by e) and the
 * remaining e - 1 bits directly. Returns the value and sets *size to 0 for
 * zero, e + 1 otherwise.
 */
static uint64_t code_int(struct apm_chunk_rc *rc, uint8_t *buf, const struct int_ctx *c, uint64_t x,
                         unsigned *size)
{
    *size = 0;
    if (code_bit(rc, buf, c->zero, x != 0) == 0)
        return 0;
    unsigned neg = code_bit(rc, buf, c->sign, (int64_t)x < 0);
    uint64_t mag = neg ? 0 - x : x;
    unsigned e = mag ? 63u - (unsigned)__builtin_clzll(mag) : 0;
    unsigned j = 0;
    while (j < 63 && code_bit(rc, buf, &c->exp[j < EXP_POS ? j : EXP_POS - 1], j < e))
        j++;
    e = j;
    uint64_t m = 1;
    if (e >= 1) {
        unsigned top = code_bit(rc, buf, &c->mant[e < EXP_POS ? e : EXP_POS - 1],
                                (unsigned)(mag >> (e - 1)) & 1u);
        m = m << 1 | top;
        m = m << (e - 1) | code_direct(rc, buf, mag, e - 1);
    }
    *size = e + 1;
    return neg ? 0 - m : m;
}

static uint8_t value_bucket(unsigned size)
{
    /* size 0: the previous delta was 0; small and large steps learn apart. */
    return size == 0 ? 0 : (size <= 6 ? 1 : 2);
}

void apm_chunk_rc_sample(struct apm_chunk_rc *rc, struct apm_chunk_model *m, uint8_t *buf,
                         uint64_t *dod, uint64_t *dv)
{
    uint16_t *p = m->p;
    unsigned size;
    struct int_ctx tc = {&p[T_ZERO + m->t_zero], &p[T_SIGN], &p[T_EXP], &p[T_MANT]};
    *dod = code_int(rc, buf, &tc, *dod, &size);
    m->t_zero = size == 0;

    struct int_ctx vc = {&p[V_ZERO + m->v_zero], &p[V_SIGN + m->v_sign],
                         &p[V_EXP + m->v_exp * EXP_POS], &p[V_MANT]};
    *dv = code_int(rc, buf, &vc, *dv, &size);
    m->v_zero = (uint8_t)((m->v_zero << 1 | (size == 0)) & 3u);
    m->v_sign = size == 0 ? 0 : ((int64_t)*dv < 0 ? 2 : 1);
    m->v_exp = value_bucket(size);
}

uint32_t apm_chunk_rc_flush(const struct apm_chunk_rc *rc, uint8_t *buf)
{
    /*
     * Any number in [low, low + range) decodes the same; the one with the
     * most trailing zero bytes is a multiple of 2^24 (range >= 2^24), and
     * the decoder reads missing bytes as zero, so only its top byte is
     * written.
     */
    struct apm_chunk_rc c = *rc;
    c.low = (c.low + (TOP - 1)) & ~(uint64_t)(TOP - 1);
    shift_low(&c, buf);
    shift_low(&c, buf);
    uint32_t end = c.pos;
    while (end > rc->start && buf[end - 1] == 0)
        end--;
    return end;
}

bool apm_chunk_rc_dec_done(const struct apm_chunk_rc *rc)
{
    return rc->code < TOP && rc->pos >= rc->end;
}
