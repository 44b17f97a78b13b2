#ifndef APM_SERVER_STORE_VARINT_H
#define APM_SERVER_STORE_VARINT_H

/*
 * The store's byte codes for integers: zigzag (signed to unsigned, small magnitudes small)
 * and LEB128 varints (7 bits a byte, low first, at most 10 bytes). Used by the chunk
 * headers, the write-ahead log's entries and the rollup blocks.
 */

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define APM_VARINT_MAX 10u /* bytes of the longest varint (a u64) */

static inline uint64_t apm_zigzag(int64_t x)
{
    return ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
}

static inline int64_t apm_unzigzag(uint64_t u)
{
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

/* Writes u at p (room for APM_VARINT_MAX bytes); returns the bytes written. */
static inline size_t apm_varint_put(uint8_t *p, uint64_t u)
{
    size_t n = 0;
    while (u >= 0x80) {
        p[n++] = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    p[n++] = (uint8_t)u;
    return n;
}

/* Reads a varint at p[*pos], never past len; 0, or APM_E_DECODE when cut short or too long. */
static inline int apm_varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
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

#endif
