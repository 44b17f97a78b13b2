#ifndef APM_CHUNK_RC_H
#define APM_CHUNK_RC_H

/*
 * Chunk formats 2 and 3's entropy coder: an adaptive binary range coder (LZMA's,
 * 11-bit probabilities) and the model that turns one sample's interval
 * (against a predicted one) and scaled value delta into binary decisions. The same code
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

/*
 * Bytes a sample may add: per number at most 66 adaptive decisions, each
 * under 8.2 bits (a probability stays within 7/2048 of 0 and 1), and 62
 * direct bits, so under 151 bytes for the two.
 */
#define APM_CHUNK_RC_MAX_SAMPLE_BYTES 160u

#define APM_CHUNK_RC_EXP_POS 20u /* unary exponent positions with their own context */
#define APM_CHUNK_RC_BUCKETS 3u  /* exponent contexts: by the previous number's size */
#define APM_CHUNK_RC_STREAM_PROBS (4u + 3u + (APM_CHUNK_RC_BUCKETS + 1u) * APM_CHUNK_RC_EXP_POS)
#define APM_CHUNK_RC_PROBS (2u * APM_CHUNK_RC_STREAM_PROBS) /* time, value */

/* What a stream's contexts know of its previous numbers. */
struct apm_chunk_history {
    uint8_t zeros;  /* the last two numbers were 0, one bit each */
    uint8_t sign;   /* previous number: 0 zero, 1 positive, 2 negative */
    uint8_t bucket; /* size class of the previous number */
};

/* Adaptive probabilities and the little history the contexts use. */
struct apm_chunk_model {
    uint16_t p[APM_CHUNK_RC_PROBS]; /* probability of a 0 in 1/2048ths << 2 | adaptation step */
    struct apm_chunk_history hist[2];
    uint64_t interval; /* time grid: estimated step, fixed point */
    uint64_t offset;   /* estimated offset of the last sample from the grid, fixed point */
    uint8_t rate_last; /* the slowest adaptation, by format */
    uint8_t gap_grid;  /* format 3: a gap of whole steps keeps the grid */
    uint8_t after_gap; /* the last sample was such a gap */
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
    uint32_t pending;     /* bytes held back for a carry: the cache and 0xff bytes */
    uint32_t nonzero_end; /* encoder: end of the last nonzero final byte */
    uint32_t pos;         /* encoder: bytes written; decoder: next byte to read */
    uint32_t end;         /* decoder: length of the buffer */
    uint32_t start;       /* where the stream begins in the buffer */
    uint8_t skip;         /* the encoder's first byte is always 0 and not written */
    uint8_t decoding;
};

/*
 * Starts a model for chunk format 2 or 3 (chunk.h); dt is the interval
 * expected before the first coded sample.
 */
void apm_chunk_model_init(struct apm_chunk_model *m, uint64_t dt, uint8_t format);

/* The model's estimate of the series' interval, rounded. */
uint64_t apm_chunk_model_interval(const struct apm_chunk_model *m);

/* Starts encoding at offset pos. */
void apm_chunk_rc_enc_init(struct apm_chunk_rc *rc, uint32_t pos);

/* Starts decoding buf[pos..len). */
void apm_chunk_rc_dec_init(struct apm_chunk_rc *rc, const uint8_t *buf, uint32_t pos, uint32_t len);

/*
 * Codes one sample's interval since the previous sample and its scaled value
 * delta: encoding reads *dt and *dv, decoding writes them. buf is the chunk
 * buffer (written when encoding, read when decoding).
 */
void apm_chunk_rc_sample(struct apm_chunk_rc *rc, struct apm_chunk_model *m, uint8_t *buf,
                         uint64_t *dt, uint64_t *dv);

/*
 * Writes the shortest tail after the encoder's bytes that makes the stream
 * decode alone and returns the stream's end (its trailing zero bytes
 * dropped). Coding goes on afterwards as if there had been no flush (a
 * certain carry is settled, which does not change the output). Constant
 * time; needs pending + 4 bytes of room after rc->pos.
 */
uint32_t apm_chunk_rc_flush(struct apm_chunk_rc *rc, uint8_t *buf);

/*
 * After the last sample: true when the stream ends in exactly the number the
 * encoder's flush writes for the decoder's final state, and every byte was
 * used. A damaged or cut stream fails this but by chance (its number must
 * land on a multiple of 2^24, about 1 in 2^24 for random bytes).
 */
bool apm_chunk_rc_dec_done(const struct apm_chunk_rc *rc);

#endif
