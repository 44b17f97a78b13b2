/*
 * Fuzz target for the agent's side of the wire: what a collector (or
 * anything listening on its address) sends back. The bytes go through the
 * frame reader with the uplink's cap, and each frame through the decoder
 * without connection state, as agent/uplink.c does; Ack and Error frames
 * are then used the way the uplink uses them (an Error's text in a message).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/wire/codec.h"
#include "common/wire/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    uint64_t *acked = ctx;
    struct apm_msg m;
    if (apm_codec_decode(NULL, p, len, &m) != 0)
        return 0;
    switch (m.type) {
    case APM_MSG_ACK:
        if (m.u.ack_seq > *acked)
            *acked = m.u.ack_seq;
        break;
    case APM_MSG_ERROR: {
        if (memchr(m.u.error.text, '\0', sizeof(m.u.error.text)) == NULL)
            __builtin_trap(); /* the text is always terminated */
        char why[320];
        snprintf(why, sizeof(why), "collector refused: %s (%s)", m.u.error.text,
                 m.u.error.retryable ? "retrying" : "permanent; retrying slowly");
        break;
    }
    case APM_MSG_BATCH:
        __builtin_trap(); /* refused without connection state */
    default:
        break;
    }
    apm_msg_clear(&m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct apm_frame_reader r;
    uint64_t acked = 0;
    apm_frame_reader_init(&r, APM_FRAME_MAX);
    /* In two reads, so that a frame split across them is reassembled. */
    size_t half = size / 3;
    if (apm_frame_reader_feed(&r, data, half, on_frame, &acked) == 0)
        apm_frame_reader_feed(&r, data + half, size - half, on_frame, &acked);
    apm_frame_reader_close(&r);
    return 0;
}
