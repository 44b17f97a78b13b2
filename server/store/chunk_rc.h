#ifndef APM_CHUNK_RC_H
#define APM_CHUNK_RC_H

/*
 * Chunk format 2's entropy coder: an adaptive binary range coder (LZMA's,
 * 11-bit probabilities) and the model that turns one sample's time
 * delta-of-delta and scaled value delta into binary decisions. The same code
 * runs both ways, so the encoder and the decoder cannot drift apart.
 * docs/store.md describes the binarisation and why.
 *
 * Pure computation: the encoder writes into a buffer the caller has
 * reserved room in (APM_CHUNK_RC_MAX_SAMPLE_BYTES + pending bytes); the
 * decoder never reads outside its buffer (missing bytes read as zero, and
 * the end check catches a stream that ended early).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Binary decisions per sample are bounded (2 x (2 + 64 + 63)), so is their size. */
#define APM_CHUNK_RC_MAX_SAMPLE_BYTES 160u

#define APM_CHUNK_RC_EXP_POS 20u /* unary exponent positions with their own context */
#define APM_CHUNK_RC_VBUCKETS 3u /* value exponent contexts: by the previous delta */
#define APM_CHUNK_RC_PROBS                                                                         \
    (2u + 1u + 2u * APM_CHUNK_RC_EXP_POS + 4u + 3u +                                               \
     (APM_CHUNK_RC_VBUCKETS + 1u) * APM_CHUNK_RC_EXP_POS)

/* Adaptive probabilities and the little history the contexts use. */
struct apm_chunk_model {
    uint16_t p[APM_CHUNK_RC_PROBS];
    uint8_t t_zero; /* the previous delta-of-delta was 0 */
    uint8_t v_zero; /* the last two value deltas were 0, one bit each */
    uint8_t v_sign; /* previous value delta: 0 zero, 1 positive, 2 negative */
    uint8_t v_exp;  /* context bucket of the previous value delta's size */
};

/*
 * One range coder, encoding or decoding. Positions are offsets into the
 * chunk buffer, which the caller passes on each call (it may move between
 * calls while encoding).
 */
struct apm_chunk_rc {
    uint64_t low;
    uint32_t range;
    uint32_t code;
    uint32_t pending; /* bytes held back for a carry: the cache and 0xff bytes */
    uint32_t pos;     /* encoder: bytes written; decoder: next byte to read */
    uint32_t end;     /* decoder: length of the buffer */
    uint32_t start;   /* where the stream begins in the buffer */
    uint8_t cache;
    uint8_t skip; /* the encoder's first byte is always 0 and not written */
    uint8_t decoding;
};

void apm_chunk_model_init(struct apm_chunk_model *m);

/* Starts encoding at offset pos. */
void apm_chunk_rc_enc_init(struct apm_chunk_rc *rc, uint32_t pos);

/* Starts decoding buf[pos..len). */
void apm_chunk_rc_dec_init(struct apm_chunk_rc *rc, const uint8_t *buf, uint32_t pos, uint32_t len);

/*
 * Codes one sample: encoding reads *dod and *dv, decoding writes them. buf is
 * the chunk buffer (written when encoding, read when decoding).
 */
void apm_chunk_rc_sample(struct apm_chunk_rc *rc, struct apm_chunk_model *m, uint8_t *buf,
                         uint64_t *dod, uint64_t *dv);

/*
 * Writes the shortest tail after the encoder's bytes that makes the stream
 * decode alone, without changing the encoder; returns the stream's end (its
 * trailing zero bytes dropped). Needs pending + 1 bytes of room after rc->pos.
 */
uint32_t apm_chunk_rc_flush(const struct apm_chunk_rc *rc, uint8_t *buf);

/*
 * After the last sample: true when the decoder ended where the encoder's
 * flush leaves it and used every byte. A damaged or cut stream fails this
 * but for a 1 in 256 chance.
 */
bool apm_chunk_rc_dec_done(const struct apm_chunk_rc *rc);

#endif
