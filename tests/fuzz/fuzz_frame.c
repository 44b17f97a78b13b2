/*
 * Fuzz target for what an agent connection feeds the collector: the frame
 * reader, then the codec on each frame, the first as a Hello (no connection
 * state) and the rest as batches sharing one connection's decoder state.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire/codec.h"
#include "common/wire/frame.h"
#include "common/base/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct conn {
    struct apm_codec_dec dec;
    int frames;
};

/* Whatever a peer sends, what the decoder hands on is clean (common/base/text.h). */
static void assert_clean(const char *s)
{
    char copy[APM_MODEL_STRING_MAX + 1];
    if (apm_text_clean(copy, sizeof(copy), s, strlen(s)) != 0)
        abort();
}

static void check_strings(const struct apm_msg *m)
{
    if (m->type == APM_MSG_HELLO) {
        assert_clean(m->u.hello.ident.agent_id);
        assert_clean(m->u.hello.ident.host);
        assert_clean(m->u.hello.ident.boot_id);
        assert_clean(m->u.hello.ident.version);
    } else if (m->type == APM_MSG_BATCH) {
        const struct apm_batch *b = m->u.batch;
        for (uint32_t i = 0; i < b->nprocs; i++) {
            assert_clean(b->procs[i].name);
            assert_clean(b->procs[i].cmdline);
            assert_clean(b->procs[i].cgroup);
        }
        for (uint32_t i = 0; i < b->ndiffs; i++)
            for (uint32_t k = 0; k < b->diffs[i].nsites; k++)
                assert_clean(b->diffs[i].sites[k].file);
    }
}

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    struct conn *c = ctx;
    struct apm_msg m;
    int rc = apm_codec_decode(c->frames++ == 0 ? NULL : &c->dec, p, len, &m);
    if (rc == 0) {
        check_strings(&m);
        apm_msg_clear(&m);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct apm_frame_reader r;
    struct conn c = {.frames = 0};
    apm_frame_reader_init(&r, 1u << 20);
    apm_codec_dec_init(&c.dec);
    /* Feed in two pieces so that reassembly is exercised too. */
    size_t half = size / 2;
    if (apm_frame_reader_feed(&r, data, half, on_frame, &c) == 0)
        apm_frame_reader_feed(&r, data + half, size - half, on_frame, &c);
    apm_codec_dec_close(&c.dec);
    apm_frame_reader_close(&r);
    return 0;
}
