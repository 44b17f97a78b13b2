/*
 * Writes the seed corpus for fuzz_frame: valid agent streams (Hello then
 * batches on one connection) and a few near misses. Run it with the corpus
 * directory as its argument; the files are checked in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire/codec.h"
#include "common/wire/frame.h"

static void put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n)
        exit(1);
    fclose(f);
}

static struct apm_batch *batch(uint64_t seq, int64_t t, int procs, int samples)
{
    struct apm_batch *b = apm_batch_new(seq);
    for (int i = 0; i < procs; i++) {
        struct apm_proc_desc p = {.pid = 10 + i,
                                  .start_ms = 1000 + i,
                                  .name = "app.py",
                                  .cmdline = "python3 app.py",
                                  .cgroup = "/user.slice"};
        uint32_t idx;
        apm_batch_add_proc(b, &p, &idx);
        for (int k = 0; k < samples; k++)
            apm_batch_add_sample(b, idx, APM_METRIC_RSS, t + k * 1000, 1000000 + k * 4096);
    }
    apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t, 1 << 30);
    return b;
}

/* A probe diff of two sites and gc statistics for the batch's first process. */
static void add_diff(struct apm_batch *b, int64_t t)
{
    struct apm_trace_diff *d;
    if (apm_batch_append_diff(b, 0, 2, &d) != 0)
        exit(1);
    d->t_ms = t;
    d->probe_seq = 1;
    d->session = 1;
    d->frames = 1;
    d->interval_ms = 1000;
    d->traced_current = 1 << 20;
    apm_site_set(&d->sites[0], "/srv/app/cache.py", 88, 0);
    d->sites[0].size = 40960;
    d->sites[0].size_diff = 4096;
    d->sites[0].count = 40;
    d->sites[0].count_diff = 4;
    apm_site_set(&d->sites[1], "/srv/app/main.py", 12, 0);
    d->sites[1].size = 100;
    d->sites[1].size_diff = -100;
    struct apm_gc_stats g = {.proc = 0, .t_ms = t, .ngen = 3, .garbage = 0};
    g.gen[0].collections = 12;
    apm_batch_add_gc(b, &g);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    struct apm_msg_hello h;
    memset(&h, 0, sizeof(h));
    strcpy(h.ident.agent_id, "a1");
    strcpy(h.ident.host, "h1");
    memcpy(h.token, "tok", 3);
    h.token_len = 3;
    struct apm_frame_out hello, b1, b2, b3, b4;
    apm_codec_encode_hello(&h, &hello);
    struct apm_codec_enc e;
    apm_codec_enc_init(&e);
    struct apm_batch *x = batch(1, 5000, 3, 1), *y = batch(2, 6000, 3, 4),
                     *z = batch(3, 7000, 1, 1);
    apm_codec_encode_batch(&e, x, &b1);
    apm_codec_encode_batch(&e, y, &b2);
    apm_codec_encode_batch(&e, z, &b3);
    struct apm_batch *w = batch(4, 8000, 1, 1);
    add_diff(w, 8000);
    /* And the agent's health counters. */
    w->health = calloc(1, sizeof(*w->health));
    if (w->health != NULL) {
        w->health->t_ms = 8000;
        apm_health_add(w->health, "uplink_samples_acked", 123, false);
        apm_health_add(w->health, "watched", 3, true);
    }
    apm_codec_encode_batch(&e, w, &b4);
    uint8_t *stream = malloc(hello.len + b1.len + b2.len + b3.len);
    size_t n = 0;
    memcpy(stream + n, hello.buf, hello.len), n += hello.len;
    memcpy(stream + n, b1.buf, b1.len), n += b1.len;
    memcpy(stream + n, b2.buf, b2.len), n += b2.len;
    memcpy(stream + n, b3.buf, b3.len), n += b3.len;
    put(argv[1], "stream-hello-3-batches", stream, n);
    uint8_t *with_diff = malloc(n + b4.len);
    memcpy(with_diff, stream, n);
    memcpy(with_diff + n, b4.buf, b4.len);
    put(argv[1], "stream-hello-3-batches-and-diff", with_diff, n + b4.len);
    free(with_diff);
    put(argv[1], "hello-only", hello.buf, hello.len);
    put(argv[1], "stream-truncated", stream, n - 7);
    /* A batch that refers to a series the connection never defined. */
    memcpy(stream + hello.len, b2.buf, b2.len);
    put(argv[1], "stream-undefined-refs", stream, hello.len + b2.len);
    uint8_t big[8] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    put(argv[1], "oversize-length", big, sizeof(big));
    uint8_t zero[4] = {0, 0, 0, 0};
    put(argv[1], "zero-length", zero, sizeof(zero));
    free(stream);
    return 0;
}
