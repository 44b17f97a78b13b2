#include "agent/spool.h"

#include <string.h>

#include "common/wire/codec.h"
#include "common/base/crc32c.h"
#include "common/base/error.h"

/* The spool's on-disk record format (agent/spool.h) and the batch payload inside a record: pure
 * functions, shared by the spool thread, the tests and the segment fuzz target. */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t record_crc(const uint8_t *hdr, const uint8_t *data, size_t len)
{
    /* hdr + 8: seq and nsamples, as written. */
    return apm_crc32c(apm_crc32c(0, hdr + 8, 12), data, len);
}

size_t apm_spool_parse_segment(const uint8_t *buf, size_t len, apm_spool_rec_fn fn, void *ctx,
                               bool *bad)
{
    const size_t magic = sizeof(APM_SPOOL_MAGIC) - 1;
    *bad = false;
    if (len < magic || memcmp(buf, APM_SPOOL_MAGIC, magic) != 0) {
        *bad = len > 0;
        return 0;
    }
    size_t off = magic;
    while (off < len) {
        if (len - off < APM_SPOOL_REC_HEADER) {
            *bad = true;
            break;
        }
        const uint8_t *h = buf + off;
        uint32_t n = get_u32(h);
        if (n > APM_SPOOL_REC_MAX || n > len - off - APM_SPOOL_REC_HEADER ||
            get_u32(h + 4) != record_crc(h, h + APM_SPOOL_REC_HEADER, n)) {
            *bad = true;
            break;
        }
        if (fn != NULL)
            fn(ctx, get_u64(h + 8), get_u32(h + 16), h + APM_SPOOL_REC_HEADER, n);
        off += APM_SPOOL_REC_HEADER + n;
    }
    return off;
}

int apm_spool_encode_batch(const struct apm_batch *b, uint8_t **out, size_t *len)
{
    struct apm_codec_enc enc;
    struct apm_frame_out f;
    apm_codec_enc_init(&enc);
    int rc = apm_codec_encode_batch(&enc, b, &f);
    apm_codec_enc_close(&enc);
    if (rc != 0)
        return rc;
    /* Keep the frame as it is: the 4-byte length header costs less than a copy. */
    *out = f.buf;
    *len = f.len;
    return 0;
}

int apm_spool_decode_batch(const uint8_t *data, size_t len, struct apm_batch **out)
{
    /* The record holds the whole frame: its big-endian length must match. */
    if (len < 4 || ((uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 |
                    (uint32_t)data[3]) != len - 4)
        return APM_E_DECODE;
    struct apm_codec_dec dec;
    struct apm_msg m;
    apm_codec_dec_init(&dec);
    int rc = apm_codec_decode(&dec, data + 4, len - 4, &m);
    apm_codec_dec_close(&dec);
    if (rc != 0)
        return rc;
    if (m.type != APM_MSG_BATCH) {
        apm_msg_clear(&m);
        return APM_E_DECODE;
    }
    *out = m.u.batch;
    return 0;
}

void apm_spool_record_header(uint8_t h[APM_SPOOL_REC_HEADER], uint64_t seq, uint32_t nsamples,
                             const uint8_t *data, size_t len)
{
    put_u32(h, (uint32_t)len);
    put_u64(h + 8, seq);
    put_u32(h + 16, nsamples);
    put_u32(h + 4, record_crc(h, data, len));
}
