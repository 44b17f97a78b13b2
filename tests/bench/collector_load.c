/*
 * Load generator for the collector: N simulated agents on loopback, each with
 * S series, each sending one batch (one sample per series) and the next one as
 * soon as the previous is acked (or at a fixed rate per agent). Acks come only
 * after a durable LMDB commit, so acked samples/s is the durable ingest rate.
 * Prints samples/s and send-to-ack latency percentiles.
 *
 *   collector_load --collector 127.0.0.1:7411 --token-file T [--agents 100]
 *                  [--series 500] [--duration 20] [--rate BATCHES_PER_S_PER_AGENT]
 *                  [--step-ms 1000] [--back SECONDS] [--name PREFIX]
 *
 * Each batch's samples are --step-ms after the previous one's. By default
 * they start now and may run ahead of the clock; with --back they start that
 * many seconds ago and never pass the clock (a batch waits for its time), so
 * a store with a retention sees old data first and then a steady stream.
 * --name prefixes the agents' ids and hosts ("bench" by default).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/codec.h"
#include "common/config.h"
#include "common/frame.h"
#include "common/timeutil.h"
#include "common/token.h"

struct opts {
    char collector[256];
    char token_file[1024];
    int agents;
    int series;
    double duration;
    double rate; /* 0 = as fast as acks come back */
    int64_t step_ms;
    double back; /* < 0: start now and run ahead of the clock */
    char name[64];
};

struct agent {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    struct apm_frame_reader reader;
    struct apm_codec_enc enc;
    int id;
    bool ready, waiting;
    uint64_t seq;
    uint64_t sent_ns;
    int64_t t_ms;
    uint8_t rbuf[4096];
};

static struct opts o = {"127.0.0.1:7411", "", 100, 500, 20, 0, 1000, -1, "bench"};
static uint8_t token[APM_TOKEN_MAX];
static size_t token_len;
static uint64_t acked_samples, acked_batches, errors;
static double *lat_ms;
static size_t nlat, lat_cap;
static uint64_t t_start_ns, t_end_ns;
static bool measuring, finished;
static struct sockaddr_storage addr;

static void send_batch(struct agent *a);

static void on_write(uv_write_t *req, int status)
{
    free(req->data);
    free(req);
    if (status < 0)
        errors++;
}

static void write_frame(struct agent *a, struct apm_frame_out *f)
{
    uv_write_t *req = malloc(sizeof(*req));
    req->data = f->buf;
    uv_buf_t b = uv_buf_init((char *)f->buf, (unsigned)f->len);
    uv_write(req, (uv_stream_t *)&a->tcp, &b, 1, on_write);
}

static struct apm_batch *make_batch(struct agent *a)
{
    struct apm_batch *b = apm_batch_new(++a->seq);
    int procs = o.series / 5 > 0 ? o.series / 5 : 1;
    a->t_ms += o.step_ms;
    int made = 0;
    for (int p = 0; p < procs && made < o.series; p++) {
        char name[32];
        snprintf(name, sizeof(name), "worker-%d.py", p);
        struct apm_proc_desc d = {.pid = 1000 + p,
                                  .start_ms = 1700000000000LL + p,
                                  .name = name,
                                  .cmdline = "python3 worker.py",
                                  .cgroup = "/bench"};
        uint32_t idx;
        apm_batch_add_proc(b, &d, &idx);
        for (int m = 1; m <= 5 && made < o.series; m++, made++) {
            int64_t v = 100000000 + (int64_t)(rand() % 64) * 4096 + (int64_t)a->seq * 4096;
            apm_batch_add_sample(b, idx, (enum apm_metric)m, a->t_ms, v);
        }
    }
    return b;
}

static void send_batch(struct agent *a)
{
    if (finished || a->waiting || !a->ready)
        return;
    if (o.back >= 0 && a->t_ms + o.step_ms > apm_now_ms())
        return; /* not its time yet: the rate timer comes back */
    struct apm_batch *b = make_batch(a);
    struct apm_frame_out f;
    if (apm_codec_encode_batch(&a->enc, b, &f) != 0) {
        errors++;
        apm_batch_free(b);
        return;
    }
    apm_batch_free(b);
    a->sent_ns = apm_mono_ns();
    a->waiting = true;
    write_frame(a, &f);
}

static int on_frame(void *ctx, const uint8_t *p, size_t len)
{
    struct agent *a = ctx;
    struct apm_msg m;
    if (apm_codec_decode(NULL, p, len, &m) != 0) {
        errors++;
        return -1;
    }
    if (m.type == APM_MSG_HELLO_ACK) {
        a->ready = true;
        send_batch(a);
    } else if (m.type == APM_MSG_ACK) {
        a->waiting = false;
        uint64_t now = apm_mono_ns();
        if (measuring) {
            acked_batches++;
            acked_samples += (uint64_t)o.series;
            if (nlat == lat_cap) {
                lat_cap = lat_cap ? lat_cap * 2 : 65536;
                lat_ms = realloc(lat_ms, lat_cap * sizeof(*lat_ms));
            }
            lat_ms[nlat++] = (double)(now - a->sent_ns) / 1e6;
        }
        if (o.rate <= 0)
            send_batch(a);
    } else if (m.type == APM_MSG_ERROR) {
        fprintf(stderr, "agent %d: error from collector: %s\n", a->id, m.u.error.text);
        errors++;
    }
    apm_msg_clear(&m);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    struct agent *a = h->data;
    (void)s;
    *buf = uv_buf_init((char *)a->rbuf, sizeof(a->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct agent *a = s->data;
    (void)buf;
    if (n < 0) {
        if (!finished)
            errors++;
        uv_read_stop(s);
        return;
    }
    apm_frame_reader_feed(&a->reader, a->rbuf, (size_t)n, on_frame, a);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct agent *a = req->data;
    if (status < 0) {
        fprintf(stderr, "agent %d: connect: %s\n", a->id, uv_strerror(status));
        errors++;
        return;
    }
    struct apm_msg_hello h;
    memset(&h, 0, sizeof(h));
    h.protocol = APM_PROTOCOL_VERSION;
    snprintf(h.ident.agent_id, sizeof(h.ident.agent_id), "%s-agent-%d", o.name, a->id);
    snprintf(h.ident.host, sizeof(h.ident.host), "%s-host-%d", o.name, a->id);
    snprintf(h.ident.version, sizeof(h.ident.version), "bench");
    h.ident.instance = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ apm_mono_ns();
    memcpy(h.token, token, token_len);
    h.token_len = token_len;
    struct apm_frame_out f;
    apm_codec_encode_hello(&h, &f);
    write_frame(a, &f);
    uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read);
}

static void on_rate_tick(uv_timer_t *t)
{
    send_batch(t->data);
}

static void on_phase(uv_timer_t *t)
{
    if (!measuring) {
        measuring = true;
        t_start_ns = apm_mono_ns();
        uv_timer_start(t, on_phase, (uint64_t)(o.duration * 1000), 0);
        return;
    }
    measuring = false;
    finished = true;
    t_end_ns = apm_mono_ns();
    uv_stop(t->loop);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double pct(double p)
{
    if (nlat == 0)
        return NAN;
    size_t i = (size_t)(p * (double)(nlat - 1));
    return lat_ms[i];
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--collector") == 0)
            snprintf(o.collector, sizeof(o.collector), "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--token-file") == 0)
            snprintf(o.token_file, sizeof(o.token_file), "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--agents") == 0)
            o.agents = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--series") == 0)
            o.series = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0)
            o.duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0)
            o.rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--step-ms") == 0)
            o.step_ms = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--back") == 0)
            o.back = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--name") == 0)
            snprintf(o.name, sizeof(o.name), "%s", argv[i + 1]);
        else {
            fprintf(stderr, "collector_load: unknown flag %s\n", argv[i]);
            return 1;
        }
    }
    if (o.back >= 0 && o.rate <= 0) {
        fprintf(stderr, "collector_load: --back needs --rate (a batch may wait for its time)\n");
        return 1;
    }
    if (o.step_ms <= 0) {
        fprintf(stderr, "collector_load: --step-ms must be positive\n");
        return 1;
    }
    char err[512], host[256];
    int port;
    if (apm_token_load(o.token_file, false, token, sizeof(token), &token_len, err, sizeof(err)) ||
        apm_endpoint_split(o.collector, host, sizeof(host), &port) ||
        uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0) {
        fprintf(stderr, "collector_load: bad --token-file or --collector (%s)\n", err);
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct agent *agents = calloc((size_t)o.agents, sizeof(*agents));
    for (int i = 0; i < o.agents; i++) {
        struct agent *a = &agents[i];
        a->id = i;
        a->t_ms = apm_now_ms() - (o.back > 0 ? (int64_t)(o.back * 1000) : 0);
        apm_frame_reader_init(&a->reader, APM_FRAME_MAX);
        apm_codec_enc_init(&a->enc);
        uv_tcp_init(&loop, &a->tcp);
        uv_tcp_nodelay(&a->tcp, 1);
        a->tcp.data = a;
        a->creq.data = a;
        uv_tcp_connect(&a->creq, &a->tcp, (struct sockaddr *)&addr, on_connect);
        if (o.rate > 0) {
            uv_timer_init(&loop, &a->timer);
            a->timer.data = a;
            uint64_t every = (uint64_t)(1000.0 / o.rate);
            uv_timer_start(&a->timer, on_rate_tick, (uint64_t)(rand() % (int)(every + 1)), every);
        }
    }
    uv_timer_t phase;
    uv_timer_init(&loop, &phase);
    uv_timer_start(&phase, on_phase, 2000, 0); /* warm-up: connections, first definitions */
    uv_run(&loop, UV_RUN_DEFAULT);
    double secs = (double)(t_end_ns - t_start_ns) / 1e9;
    qsort(lat_ms, nlat, sizeof(*lat_ms), cmp_double);
    printf("agents %d x series %d, %s, %.1f s measured\n", o.agents, o.series,
           o.rate > 0 ? "fixed rate" : "closed loop (next batch on ack)", secs);
    if (o.rate > 0)
        printf("offered: %.0f samples/s\n", o.rate * o.agents * o.series);
    printf("acked: %.0f samples/s durably committed (%.0f batches/s)\n",
           (double)acked_samples / secs, (double)acked_batches / secs);
    printf("send-to-ack: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu batches)\n", pct(0.50),
           pct(0.99), pct(1.0), nlat);
    printf("errors: %llu\n", (unsigned long long)errors);
    /* Everything closed and freed, so that a sanitizer build finds no leak at exit. */
    for (int i = 0; i < o.agents; i++) {
        uv_close((uv_handle_t *)&agents[i].tcp, NULL);
        if (o.rate > 0)
            uv_close((uv_handle_t *)&agents[i].timer, NULL);
    }
    uv_close((uv_handle_t *)&phase, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < o.agents; i++) {
        apm_codec_enc_close(&agents[i].enc);
        apm_frame_reader_close(&agents[i].reader);
    }
    free(agents);
    free(lat_ms);
    uv_loop_close(&loop);
    return errors ? 1 : 0;
}
