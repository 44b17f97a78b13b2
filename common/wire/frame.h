#ifndef APM_FRAME_H
#define APM_FRAME_H

/*
 * Stream framing: a 4-byte big-endian length, then that many bytes of
 * payload. The reader reassembles frames from arbitrary read boundaries and
 * checks each length against its current maximum as soon as the 4 length
 * bytes are in, before it buffers or allocates anything for the payload.
 */
#include <stddef.h>
#include <stdint.h>

#define APM_FRAME_HEADER 4u
#define APM_FRAME_HELLO_MAX 4096u           /* the only frame decoded before auth */
#define APM_FRAME_MAX (16u * 1024u * 1024u) /* hard maximum after auth */

/*
 * Called for each complete frame; payload is valid during the call only.
 * Return 0 to go on, or a negative code to stop feeding (it is returned by
 * apm_frame_reader_feed).
 */
typedef int (*apm_frame_cb)(void *ctx, const uint8_t *payload, size_t len);

struct apm_frame_reader {
    uint8_t *buf; /* partial frame, header included */
    size_t len;
    size_t cap;
    uint32_t max_frame;
};

/* Caller-owned. max_frame is the largest payload accepted. */
void apm_frame_reader_init(struct apm_frame_reader *r, uint32_t max_frame);
void apm_frame_reader_close(struct apm_frame_reader *r);

/* Changes the maximum for frames not yet started (e.g. after authentication). */
void apm_frame_reader_set_max(struct apm_frame_reader *r, uint32_t max_frame);

/*
 * Consumes n bytes, calling cb once per complete frame. Returns 0, the
 * callback's negative code, APM_E_FRAME_TOO_BIG (a declared length above the
 * maximum), APM_E_FRAME_EMPTY (a declared length of zero) or -ENOMEM. After an error the reader
 * must not be fed again.
 */
int apm_frame_reader_feed(struct apm_frame_reader *r, const uint8_t *data, size_t n,
                          apm_frame_cb cb, void *ctx);

/* Writes the 4-byte big-endian header for a payload of len bytes. */
void apm_frame_put_header(uint8_t out[APM_FRAME_HEADER], uint32_t len);

#endif
