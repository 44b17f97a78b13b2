/*
 * Writes the seed corpus for fuzz_ack: what a collector sends an agent
 * (HelloAck, Acks, an Error, a Control), alone and in streams, and a few
 * near misses. Run with the corpus directory as its argument; the files are
 * checked in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire/codec.h"
#include "common/wire/frame.h"

static uint8_t stream[65536];
static size_t used;

static void add(int rc, struct apm_frame_out *f)
{
    if (rc != 0 || used + f->len > sizeof(stream))
        exit(1);
    memcpy(stream + used, f->buf, f->len);
    used += f->len;
    free(f->buf);
}

static void put(const char *dir, const char *name, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(stream, 1, n, f) != n)
        exit(1);
    fclose(f);
    used = 0;
}

static void error_frame(enum apm_wire_error code, bool retryable, const char *text)
{
    struct apm_msg_error e = {.code = code, .retryable = retryable};
    snprintf(e.text, sizeof(e.text), "%s", text);
    struct apm_frame_out f;
    add(apm_codec_encode_error(&e, &f), &f);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    const char *dir = argv[1];
    struct apm_frame_out f;

    add(apm_codec_encode_hello_ack(41, APM_FRAME_MAX, &f), &f);
    for (uint64_t seq = 42; seq < 46; seq++)
        add(apm_codec_encode_ack(seq, &f), &f);
    put(dir, "helloack-acks", used);

    add(apm_codec_encode_hello_ack(0, 4096, &f), &f);
    add(apm_codec_encode_ack(UINT64_MAX, &f), &f);
    add(apm_codec_encode_ack(0, &f), &f);
    put(dir, "acks-extremes", used);

    error_frame(APM_WIRE_ERR_AUTH, false, "bad token");
    put(dir, "error-auth", used);

    add(apm_codec_encode_ack(7, &f), &f);
    error_frame(APM_WIRE_ERR_OVERLOADED, true, "collector overloaded: try later");
    add(apm_codec_encode_ack(8, &f), &f);
    put(dir, "ack-error-ack", used);

    char longtext[300];
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    error_frame((enum apm_wire_error)99, true, longtext);
    put(dir, "error-unknown-code-long-text", used);

    struct apm_msg_control c = {.action = APM_CONTROL_TRACE,
                                .pid = 42,
                                .start_ms = 1000,
                                .duration_s = 600,
                                .max_memory = 64u << 20,
                                .frames = 1};
    add(apm_codec_encode_hello_ack(1, APM_FRAME_MAX, &f), &f);
    add(apm_codec_encode_control(&c, &f), &f);
    c.action = APM_CONTROL_STOP;
    add(apm_codec_encode_control(&c, &f), &f);
    put(dir, "helloack-controls", used);

    /* A frame cut short, and one whose header claims more than the cap. */
    add(apm_codec_encode_ack(9, &f), &f);
    put(dir, "ack-truncated", used - 1);
    uint8_t big[8] = {0x7f, 0xff, 0xff, 0xff, 8, 1, 0, 0};
    memcpy(stream, big, sizeof(big));
    put(dir, "oversize-length", sizeof(big));
    return 0;
}
