#ifndef APM_CHUNK_H
#define APM_CHUNK_H

/*
 * Chunk encoding: a run of samples of one series packed into a few bits per
 * sample, losslessly, for any int64 timestamps and values.
 *
 * Layout (docs/store.md says why):
 *   byte 0      format (APM_CHUNK_FORMAT)
 *   byte 1      value shift s: every value delta is a multiple of 2^s
 *               (APM_CHUNK_SHIFT_NONE while every delta so far is zero)
 *   bytes 2-3   number of samples n, little-endian u16
 *   varint      zigzag of the first value
 *   varint      zigzag of the interval before the first sample (the last
 *               interval of the previous chunk, so the first delta-of-delta
 *               is small; 0 for a series' first chunk)
 *   format 1: bits, for each later sample: the zigzag of the timestamp's
 *               delta-of-delta, then the zigzag of (value delta >> s), each
 *               as an adaptive Rice code (one adaptive state per stream)
 *   format 2: a range-coded stream per later sample of the interval's
 *               error against a predicted one and of (value delta >> s)
 *               (chunk_rc.h), flushed so that the chunk decodes alone; the
 *               interval varint is the predictor's step, byte 4 (before
 *               the varints) the chunk's length mod 256
 *   format 3: format 2's layout and model, its probabilities settling at a
 *               slower rate (chunk_rc.h)
 * The first timestamp is not in the chunk: the store keeps it in the key.
 *
 * The encoder appends one sample at a time without re-reading what it has
 * written, so an open chunk grows across transactions for the cost of the
 * new sample. Everything here is pure computation: no locks, no I/O; any
 * thread may use its own encoder or iterator.
 */
#include <stddef.h>
#include <stdint.h>

#include "server/store/chunk_rc.h"

#define APM_CHUNK_FORMAT 3     /* new chunks: range-coded, slower settled adaptation (chunk_rc.h) */
#define APM_CHUNK_FORMAT_RC2 2 /* range-coded: still read, and written on request */
#define APM_CHUNK_FORMAT_RICE 1 /* still read, and written on request */
#define APM_CHUNK_MAX_SAMPLES 65535u
#define APM_CHUNK_SHIFT_NONE 64

/* Adaptive Rice parameter state: running sum and count of coded values. */
struct apm_chunk_rice {
    uint64_t sum;
    uint32_t count;
};

/*
 * An open chunk being written. Caller-owned: apm_chunk_enc_init() then
 * apm_chunk_enc_close(). buf (owned by the encoder) holds len valid bytes
 * once n >= 1; it is the chunk as stored.
 */
struct apm_chunk_enc {
    uint8_t *buf;
    uint32_t len;
    uint32_t cap;
    uint32_t n;
    uint8_t bit_pos;    /* bits used in buf[len - 1] by the bitstream; 0 = none */
    uint8_t shift;      /* APM_CHUNK_SHIFT_NONE until a nonzero value delta */
    uint8_t shift_hint; /* upper bound for the shift the first nonzero delta sets */
    uint8_t format;     /* of the chunk being written */
    uint8_t new_format; /* for the next chunk (reset, restart) */
    int64_t first_t;
    int64_t last_t;
    int64_t last_v;
    uint64_t last_dt;
    int64_t base_dt; /* the interval written in the header */
    struct apm_chunk_rice rice_t;
    struct apm_chunk_rice rice_v;
    struct apm_chunk_rc rc; /* formats 2 and 3: the live coder, before its flush */
    struct apm_chunk_model model;
};

/* Prepares an empty encoder (no allocation) writing APM_CHUNK_FORMAT. */
void apm_chunk_enc_init(struct apm_chunk_enc *e);

/* Frees the buffer. Accepts NULL. The encoder may be initialised again. */
void apm_chunk_enc_close(struct apm_chunk_enc *e);

/*
 * Empties the encoder, keeping its buffer. shift_hint (0..64) caps the shift
 * the next chunk may choose and dt_hint is the interval assumed before its
 * first sample: pass the previous chunk's shift and last interval
 * (apm_chunk_enc_restart does that) so a series continues without a rebuild and
 * without a large first delta-of-delta.
 */
void apm_chunk_enc_reset(struct apm_chunk_enc *e, uint8_t shift_hint, int64_t dt_hint);

/*
 * Chooses the format of the chunks started from now on (APM_CHUNK_FORMAT,
 * APM_CHUNK_FORMAT_RC2 or APM_CHUNK_FORMAT_RICE); an open chunk keeps its
 * own. Returns 0 or -EINVAL.
 */
int apm_chunk_enc_set_format(struct apm_chunk_enc *e, uint8_t format);

/* Empties a full encoder to start the series' next chunk, carrying the hints. */
void apm_chunk_enc_restart(struct apm_chunk_enc *e);

/*
 * Appends one sample. Timestamps need not increase (the store decides what
 * order it accepts); the codec is lossless for any int64 pair. Returns 0,
 * APM_E_LIMIT when the chunk already holds APM_CHUNK_MAX_SAMPLES, or -ENOMEM
 * (the encoder is then unchanged).
 */
int apm_chunk_enc_append(struct apm_chunk_enc *e, int64_t t, int64_t v);

/*
 * Rebuilds an encoder from a stored chunk (an open chunk read back after a
 * restart): afterwards appending continues exactly as if the samples had
 * been appended here, in the chunk's own format. Returns 0, APM_E_DECODE or -ENOMEM.
 */
int apm_chunk_enc_load(struct apm_chunk_enc *e, const void *buf, size_t len, int64_t first_t);

/* Reads a chunk in time order. Borrows buf, which must outlive the iterator. */
struct apm_chunk_iter {
    const uint8_t *buf;
    size_t len;
    size_t pos; /* next byte of the bitstream */
    uint8_t bit_pos;
    uint8_t format;
    uint8_t shift;
    uint32_t n;
    uint32_t i;
    int64_t t;
    int64_t v;
    uint64_t dt;
    struct apm_chunk_rice rice_t;
    struct apm_chunk_rice rice_v;
    struct apm_chunk_rc rc;
    struct apm_chunk_model model;
};

/* Checks the header. Returns 0 or APM_E_DECODE. */
int apm_chunk_iter_init(struct apm_chunk_iter *it, const void *buf, size_t len, int64_t first_t);

/*
 * Gives the next sample: returns 1 with *t and *v set, 0 at the end, or
 * APM_E_DECODE on a damaged chunk (never reads outside buf).
 */
int apm_chunk_iter_next(struct apm_chunk_iter *it, int64_t *t, int64_t *v);

/* Number of samples in an encoded chunk, or 0 when the header is bad. */
uint32_t apm_chunk_count(const void *buf, size_t len);

#endif
