#include "common/wire/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"

void apm_frame_reader_init(struct apm_frame_reader *r, uint32_t max_frame)
{
    memset(r, 0, sizeof(*r));
    r->max_frame = max_frame;
}

void apm_frame_reader_close(struct apm_frame_reader *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

void apm_frame_reader_set_max(struct apm_frame_reader *r, uint32_t max_frame)
{
    r->max_frame = max_frame;
}

void apm_frame_put_header(uint8_t out[APM_FRAME_HEADER], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

static uint32_t get_header(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int check_len(const struct apm_frame_reader *r, uint32_t len)
{
    if (len == 0)
        return APM_E_FRAME_EMPTY;
    return len > r->max_frame ? APM_E_FRAME_TOO_BIG : 0;
}

static int reserve(struct apm_frame_reader *r, size_t need)
{
    if (need <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *nb = realloc(r->buf, cap);
    if (nb == NULL)
        return -ENOMEM;
    r->buf = nb;
    r->cap = cap;
    return 0;
}

/* Appends up to want bytes from the input into the partial buffer. */
static int take(struct apm_frame_reader *r, const uint8_t **data, size_t *n, size_t want)
{
    size_t k = want < *n ? want : *n;
    int rc = reserve(r, r->len + k);
    if (rc != 0)
        return rc;
    memcpy(r->buf + r->len, *data, k);
    r->len += k;
    *data += k;
    *n -= k;
    return 0;
}

int apm_frame_reader_feed(struct apm_frame_reader *r, const uint8_t *data, size_t n,
                          apm_frame_cb cb, void *ctx)
{
    while (n > 0) {
        if (r->len == 0) {
            /* Fast path: whole frames straight from the input, no copy. */
            if (n >= APM_FRAME_HEADER) {
                uint32_t len = get_header(data);
                int rc = check_len(r, len);
                if (rc != 0)
                    return rc;
                if (n - APM_FRAME_HEADER >= len) {
                    rc = cb(ctx, data + APM_FRAME_HEADER, len);
                    if (rc != 0)
                        return rc;
                    data += APM_FRAME_HEADER + len;
                    n -= APM_FRAME_HEADER + len;
                    continue;
                }
            }
        }
        if (r->len < APM_FRAME_HEADER) {
            int rc = take(r, &data, &n, APM_FRAME_HEADER - r->len);
            if (rc != 0)
                return rc;
            if (r->len < APM_FRAME_HEADER)
                return 0;
            rc = check_len(r, get_header(r->buf));
            if (rc != 0)
                return rc;
        }
        uint32_t len = get_header(r->buf);
        size_t total = APM_FRAME_HEADER + (size_t)len;
        int rc = take(r, &data, &n, total - r->len);
        if (rc != 0)
            return rc;
        if (r->len < total)
            return 0;
        r->len = 0;
        rc = cb(ctx, r->buf + APM_FRAME_HEADER, len);
        if (rc != 0)
            return rc;
    }
    return 0;
}
