/*
 * Load generator for the collector: N simulated agents on loopback, each with
 * S series, each sending one batch (one sample per series) and the next one as
 * soon as the previous is acked (or at a fixed rate per agent). Acks come only
 * after a durable LMDB commit, so acked samples/s is the durable ingest rate.
 * Prints samples/s and send-to-ack latency percentiles.
 *
 *   collector_load --collector 127.0.0.1:7411 --token-file T [--agents 100]
 *                  [--series 500] [--duration 20] [--rate BATCHES_PER_S_PER_AGENT]
 *                  [--step-ms 1000] [--back SECONDS] [--name PREFIX] [--reconnect]
 *                  [--procs P] [--sources N] [--collector-pid PID] [--truth FILE]
 *                  [--warmup SECONDS]
 *
 * Each batch's samples are --step-ms after the previous one's. By default
 * they start now and may run ahead of the clock; with --back they start that
 * many seconds ago and never pass the clock (a batch waits for its time), so
 * a store with a retention sees old data first and then a steady stream.
 * --name prefixes the agents' ids and hosts ("bench" by default).
 *
 * With --reconnect an agent whose connection ends (the collector restarted)
 * connects again the way apm-agent does: after a full-jitter backoff, uniform
 * in [0, min(30 s, 200 ms x 2^attempt)]. The tool then prints, for the first
 * outage, when the first agent lost its connection, how long until every
 * agent was connected again, and the reconnections per second.
 *
 * Like apm-agent, an agent keeps its instance for the run and queues its
 * batches until they are acked: at a fixed --rate it goes on making them
 * while the collector is away (up to 3,600), and after the HelloAck it
 * resends, in order, those HelloAck.last_seq does not cover. When the measured time is over,
 * no new batch is made and the tool waits (up to 15 s) for the outstanding
 * acks.
 *
 * The measurement starts after --warmup seconds (2 by default): the
 * connections and the first batches, which define every series, come first.
 *
 * --procs P gives each agent P processes of 5 series (rss, pss, uss, swap,
 * cgroup usage), i.e. --series 5P. --sources N binds the agents to the source
 * addresses 127.0.0.1 .. 127.0.0.N in turn (more source ports, and the
 * collector's per-address budgets see N peers). --collector-pid reads the
 * collector's CPU time and RSS from /proc over the measured time.
 *
 * --truth FILE writes the ground truth: a line "P SERIES NAME" and then, per
 * batch, "A AGENT SEQ T_MS" once it is acked or "U AGENT SEQ T_MS" for one
 * still unacked at exit. Values are a function of (agent, process, metric,
 * seq), see sample_value(), so tests/bench/storm_check.py can recompute every
 * sample and compare it with the store.
 */
#include <math.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/wire/codec.h"
#include "common/base/config.h"
#include "common/base/fdlimit.h"
#include "common/wire/frame.h"
#include "common/base/timeutil.h"
#include "common/base/token.h"

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
    bool reconnect;
    int sources;
    int collector_pid;
    char truth[1024];
    double warmup;
};

/* A batch the agent made and keeps until it is acked. */
struct item {
    struct item *next;
    struct apm_batch *b;
    int64_t t_ms;
    uint64_t sent_ns; /* 0: not sent on the current connection */
};

/* Batches an agent keeps while the collector is away (an hour at 1 s); beyond, it makes none. */
#define MAX_QUEUED 3600

struct agent {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    uv_timer_t retry; /* --reconnect: the backoff before the next connect */
    struct apm_frame_reader reader;
    struct apm_codec_enc enc;
    int id;
    bool ready;
    bool down;        /* --reconnect: lost its connection, not welcomed back yet */
    bool counted;     /* ... and it went down while measuring: an outage's figures */
    bool welcomed;    /* has had a HelloAck once */
    unsigned attempt; /* --reconnect: connects tried since it went down */
    uint64_t seq;
    uint64_t instance;
    struct item *head, *tail; /* made, not acked yet, oldest first */
    struct item *unsent;      /* the first of them not sent on this connection */
    int queued;
    int64_t t_ms;
    uint8_t rbuf[4096];
};

static struct opts o = {"127.0.0.1:7411", "",    100, 500, 20, 0, 1000, -1,
                        "bench",          false, 0,   0,   "", 2};
static uint8_t token[APM_TOKEN_MAX];
static size_t token_len;
static uint64_t acked_samples, acked_batches, errors;
static double *lat_ms;
static size_t nlat, lat_cap;
static uint64_t t_start_ns, t_end_ns;
static bool measuring, stopping, finished;
static FILE *truth;
static uint64_t refused, connect_failed, resent, acked_on_hello, not_made;
static int n_pending;
static struct sockaddr_storage addr;
/* --reconnect: the first outage. */
#define MAX_OUTAGE_S 600
static uint64_t down_first_ns, back_all_ns, start_ns, all_connected_ns;
static int n_down, n_welcomed;
static unsigned back_per_s[MAX_OUTAGE_S];

static void on_connect(uv_connect_t *req, int status);

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

/* A sample's value from what identifies it: tests/bench/storm_check.py computes the same. */
static int64_t sample_value(int agent, int proc, int metric, uint64_t seq)
{
    return 100000000 + (int64_t)seq * 4096 +
           (int64_t)((agent * 31 + proc * 7 + metric) % 64) * 4096;
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
        for (int m = 1; m <= 5 && made < o.series; m++, made++)
            apm_batch_add_sample(b, idx, (enum apm_metric)m, a->t_ms,
                                 sample_value(a->id, p, m, a->seq));
    }
    return b;
}

/* Sends every batch not sent on this connection yet, oldest first. */
static void flush(struct agent *a)
{
    for (; a->ready && a->unsent; a->unsent = a->unsent->next) {
        struct apm_frame_out f;
        if (apm_codec_encode_batch(&a->enc, a->unsent->b, &f) != 0) {
            errors++;
            return;
        }
        a->unsent->sent_ns = apm_mono_ns();
        write_frame(a, &f);
    }
}

/* The oldest batch is committed: logged in the ground truth, freed. */
static void settle_head(struct agent *a)
{
    struct item *it = a->head;
    if (truth)
        fprintf(truth, "A %d %llu %lld\n", a->id, (unsigned long long)it->b->seq,
                (long long)it->t_ms);
    if (a->unsent == it)
        a->unsent = it->next;
    a->head = it->next;
    if (!a->head)
        a->tail = NULL;
    apm_batch_free(it->b);
    free(it);
    a->queued--;
    n_pending--;
}

/* Makes the next batch and queues it; sends it if connected. */
static void send_batch(struct agent *a)
{
    if (stopping || finished)
        return;
    if (o.rate <= 0 && (a->head || !a->ready))
        return; /* closed loop: the next batch once the previous is acked */
    if (o.back >= 0 && a->t_ms + o.step_ms > apm_now_ms())
        return; /* not its time yet: the rate timer comes back */
    if (a->queued >= MAX_QUEUED) {
        not_made++;
        return;
    }
    struct item *it = calloc(1, sizeof(*it));
    it->b = make_batch(a);
    it->t_ms = a->t_ms;
    if (a->tail)
        a->tail->next = it;
    else
        a->head = it;
    a->tail = it;
    if (!a->unsent)
        a->unsent = it;
    a->queued++;
    n_pending++;
    flush(a);
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
        if (!a->welcomed) {
            a->welcomed = true;
            if (++n_welcomed == o.agents)
                all_connected_ns = apm_mono_ns();
        }
        a->down = false;
        a->attempt = 0;
        if (a->counted) {
            a->counted = false;
            uint64_t s = (apm_mono_ns() - down_first_ns) / 1000000000u;
            if (s < MAX_OUTAGE_S)
                back_per_s[s]++;
            if (--n_down == 0 && back_all_ns == 0)
                back_all_ns = apm_mono_ns();
        }
        while (a->head && a->head->b->seq <= m.u.hello_ack.last_seq) {
            if (a->head->sent_ns)
                acked_on_hello++; /* committed before the connection ended, never acked */
            settle_head(a);
        }
        for (struct item *it = a->head; it; it = it->next) {
            resent += it->sent_ns != 0;
            it->sent_ns = 0;
        }
        a->unsent = a->head;
        flush(a);
        send_batch(a);
    } else if (m.type == APM_MSG_ACK) {
        while (a->head && a->head->b->seq <= m.u.ack_seq && a->head->sent_ns) {
            uint64_t now = apm_mono_ns();
            if (measuring) {
                acked_batches++;
                acked_samples += (uint64_t)o.series;
                if (nlat == lat_cap) {
                    lat_cap = lat_cap ? lat_cap * 2 : 65536;
                    lat_ms = realloc(lat_ms, lat_cap * sizeof(*lat_ms));
                }
                lat_ms[nlat++] = (double)(now - a->head->sent_ns) / 1e6;
            }
            settle_head(a);
        }
        if (o.rate <= 0)
            send_batch(a);
    } else if (m.type == APM_MSG_ERROR) {
        if (refused++ < 10)
            fprintf(stderr, "agent %d: error from collector: %s\n", a->id, m.u.error.text);
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

static uint64_t jitter(uint64_t max)
{
    return max ? ((uint64_t)rand() << 31 ^ (uint64_t)rand()) % (max + 1) : 0;
}

/* A new connection from the agent's source address (--sources) to the collector. */
static void start_connect(uv_loop_t *loop, struct agent *a)
{
    uv_tcp_init(loop, &a->tcp);
    uv_tcp_nodelay(&a->tcp, 1);
    a->tcp.data = a;
    a->creq.data = a;
    if (o.sources > 0) {
        char ip[32];
        struct sockaddr_in src;
        snprintf(ip, sizeof(ip), "127.0.0.%d", 1 + a->id % o.sources);
        uv_ip4_addr(ip, 0, &src);
        int rc = uv_tcp_bind(&a->tcp, (struct sockaddr *)&src, 0);
        if (rc != 0) {
            fprintf(stderr, "agent %d: bind %s: %s\n", a->id, ip, uv_strerror(rc));
            errors++;
        }
    }
    uv_tcp_connect(&a->creq, &a->tcp, (struct sockaddr *)&addr, on_connect);
}

static void on_retry(uv_timer_t *t)
{
    struct agent *a = t->data;
    if (finished)
        return;
    start_connect(t->loop, a);
}

static void on_closed_for_retry(uv_handle_t *h)
{
    struct agent *a = h->data;
    /* Full jitter, as apm-agent: uniform in [0, min(30 s, 200 ms x 2^attempt)]. */
    uint64_t ceiling = 200;
    for (unsigned i = 0; i < a->attempt && ceiling < 30000; i++)
        ceiling *= 2;
    if (ceiling > 30000)
        ceiling = 30000;
    if (a->attempt < 64)
        a->attempt++;
    uv_timer_start(&a->retry, on_retry, jitter(ceiling), 0);
}

/* --reconnect: counts an agent out until a HelloAck welcomes it back. */
static void mark_down(struct agent *a)
{
    if (a->down)
        return;
    a->down = true;
    if (!measuring)
        return; /* the first herd's refusals are the warm-up's */
    a->counted = true;
    n_down++;
    if (down_first_ns == 0)
        down_first_ns = apm_mono_ns();
}

/* --reconnect: the connection is gone; a new one comes after the backoff. */
static void go_down(struct agent *a)
{
    mark_down(a);
    a->ready = false;
    apm_frame_reader_close(&a->reader);
    apm_frame_reader_init(&a->reader, APM_FRAME_MAX);
    apm_codec_enc_close(&a->enc);
    apm_codec_enc_init(&a->enc);
    if (!uv_is_closing((uv_handle_t *)&a->tcp))
        uv_close((uv_handle_t *)&a->tcp, on_closed_for_retry);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct agent *a = s->data;
    (void)buf;
    if (n < 0) {
        if (o.reconnect && !finished) {
            go_down(a);
            return;
        }
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
        if (status != UV_ECANCELED)
            connect_failed++;
        if (o.reconnect && !finished && status != UV_ECANCELED) {
            mark_down(a);
            uv_close((uv_handle_t *)&a->tcp, on_closed_for_retry);
            return;
        }
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
    h.ident.instance = a->instance;
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

/* --collector-pid: bytes it caused to be written to disk (/proc/PID/io, 0 if unreadable). */
static unsigned long long proc_write_bytes(int pid)
{
    char path[64], buf[256];
    unsigned long long v = 0;
    snprintf(path, sizeof(path), "/proc/%d/io", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(buf, sizeof(buf), f))
        if (sscanf(buf, "write_bytes: %llu", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* --collector-pid: its CPU time (utime + stime) in clock ticks and its RSS in KiB. */
static bool proc_usage(int pid, unsigned long long *ticks, unsigned long long *rss_kib)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return false;
    *ticks = ut + st;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if (!(f = fopen(path, "r")))
        return false;
    *rss_kib = 0;
    while (fgets(buf, sizeof(buf), f))
        if (sscanf(buf, "VmRSS: %llu", rss_kib) == 1)
            break;
    fclose(f);
    return true;
}

static unsigned long long cpu_start, cpu_end, rss_end, rss_peak, self_cpu_start_us, self_cpu_us;
static bool have_usage;
static unsigned long long wbytes_start, wbytes_end;

static unsigned long long self_cpu(void)
{
    uv_rusage_t r;
    uv_getrusage(&r);
    return (unsigned long long)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000ull +
           (unsigned long long)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static void on_usage_tick(uv_timer_t *t)
{
    unsigned long long ticks, rss;
    (void)t;
    if (o.collector_pid > 0 && measuring && proc_usage(o.collector_pid, &ticks, &rss) &&
        rss > rss_peak)
        rss_peak = rss;
}

static uint64_t drain_start_ns;

/* After the measured time: no new batches; waits for the outstanding acks, 15 s at most. */
static void on_drain(uv_timer_t *t)
{
    if (n_pending > 0 && apm_mono_ns() - drain_start_ns < 15000000000ull)
        return;
    uv_timer_stop(t);
    finished = true;
    uv_stop(t->loop);
}

static void on_phase(uv_timer_t *t)
{
    unsigned long long rss;
    if (!measuring) {
        measuring = true;
        t_start_ns = apm_mono_ns();
        self_cpu_start_us = self_cpu();
        if (o.collector_pid > 0)
            have_usage = proc_usage(o.collector_pid, &cpu_start, &rss);
        wbytes_start = proc_write_bytes(o.collector_pid);
        uv_timer_start(t, on_phase, (uint64_t)(o.duration * 1000), 0);
        return;
    }
    measuring = false;
    stopping = true;
    t_end_ns = apm_mono_ns();
    self_cpu_us = self_cpu() - self_cpu_start_us;
    if (have_usage)
        have_usage = proc_usage(o.collector_pid, &cpu_end, &rss_end);
    wbytes_end = have_usage ? proc_write_bytes(o.collector_pid) : 0;
    drain_start_ns = apm_mono_ns();
    uv_timer_start(t, on_drain, 0, 50);
}

static int count_connected(const struct agent *agents)
{
    int n = 0;
    for (int i = 0; i < o.agents; i++)
        n += agents[i].ready;
    return n;
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
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc && strcmp(argv[i], "--reconnect") != 0) {
            fprintf(stderr, "collector_load: %s needs a value\n", argv[i]);
            return 1;
        }
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
        else if (strcmp(argv[i], "--reconnect") == 0) {
            o.reconnect = true;
            i--; /* a flag without a value */
        } else if (strcmp(argv[i], "--procs") == 0)
            o.series = 5 * atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--sources") == 0)
            o.sources = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--collector-pid") == 0)
            o.collector_pid = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0)
            o.warmup = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--truth") == 0)
            snprintf(o.truth, sizeof(o.truth), "%s", argv[i + 1]);
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
    if (o.sources < 0 || o.sources > 254 || o.series <= 0 || o.agents <= 0) {
        fprintf(stderr, "collector_load: --sources is 0..254, --series, --procs and --agents "
                        "positive\n");
        return 1;
    }
    if (o.truth[0]) {
        if (!(truth = fopen(o.truth, "w"))) {
            perror(o.truth);
            return 1;
        }
        fprintf(truth, "P %d %s\n", o.series, o.name);
    }
    apm_fdlimit_raise(NULL); /* a thousand agents take a thousand descriptors */
    start_ns = apm_mono_ns();
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct agent *agents = calloc((size_t)o.agents, sizeof(*agents));
    for (int i = 0; i < o.agents; i++) {
        struct agent *a = &agents[i];
        a->id = i;
        a->t_ms = apm_now_ms() - (o.back > 0 ? (int64_t)(o.back * 1000) : 0);
        apm_frame_reader_init(&a->reader, APM_FRAME_MAX);
        apm_codec_enc_init(&a->enc);
        a->instance = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ apm_mono_ns();
        uv_timer_init(&loop, &a->retry);
        a->retry.data = a;
        start_connect(&loop, a);
        if (o.rate > 0) {
            uv_timer_init(&loop, &a->timer);
            a->timer.data = a;
            uint64_t every = (uint64_t)(1000.0 / o.rate);
            uv_timer_start(&a->timer, on_rate_tick, (uint64_t)(rand() % (int)(every + 1)), every);
        }
    }
    uv_timer_t phase;
    uv_timer_init(&loop, &phase);
    /* warm-up: connections, first definitions */
    uv_timer_start(&phase, on_phase, (uint64_t)(o.warmup * 1000), 0);
    uv_timer_t usage;
    uv_timer_init(&loop, &usage);
    uv_timer_start(&usage, on_usage_tick, 1000, 1000);
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
    printf("errors: %llu; refused by the collector (Error frames): %llu; failed connects: %llu\n",
           (unsigned long long)errors, (unsigned long long)refused,
           (unsigned long long)connect_failed);
    printf("connected at the end: %d of %d agents; batches resent after a reconnect: %llu, "
           "found committed at the HelloAck: %llu, unacked at exit: %d\n",
           count_connected(agents), o.agents, (unsigned long long)resent,
           (unsigned long long)acked_on_hello, n_pending);
    if (not_made)
        printf("batches not made because %d were waiting for an ack: %llu\n", MAX_QUEUED,
               (unsigned long long)not_made);
    printf("load tool CPU: %.0f %% of one core\n", (double)self_cpu_us / 1e4 / secs);
    if (have_usage) {
        double tck = (double)sysconf(_SC_CLK_TCK);
        printf("collector: CPU %.0f %% of one core, RSS %.1f MiB at the end, peak %.1f MiB\n",
               (double)(cpu_end - cpu_start) / tck / secs * 100.0, (double)rss_end / 1024.0,
               (double)(rss_peak > rss_end ? rss_peak : rss_end) / 1024.0);
        printf("collector: disk writes %.1f MB/s\n",
               (double)(wbytes_end - wbytes_start) / 1e6 / secs);
    }
    if (o.reconnect)
        printf("connect: all %d agents welcomed %.2f s after the start\n", o.agents,
               all_connected_ns ? (double)(all_connected_ns - start_ns) / 1e9 : NAN);
    if (o.reconnect && down_first_ns != 0) {
        unsigned peak = 0;
        for (int s = 0; s < MAX_OUTAGE_S; s++)
            peak = back_per_s[s] > peak ? back_per_s[s] : peak;
        if (back_all_ns != 0)
            printf("reconnect: all %d agents back %.2f s after the first lost its connection\n",
                   o.agents, (double)(back_all_ns - down_first_ns) / 1e9);
        else
            printf("reconnect: %d of %d agents still not back at the end\n", n_down, o.agents);
        printf("reconnect: peak %u agents welcomed back in one second; per second:", peak);
        int last = 0;
        for (int s = 0; s < MAX_OUTAGE_S; s++)
            if (back_per_s[s])
                last = s;
        for (int s = 0; s <= last; s++)
            printf(" %u", back_per_s[s]);
        printf("\n");
    }
    /* Everything closed and freed, so that a sanitizer build finds no leak at exit. */
    for (int i = 0; i < o.agents; i++) {
        if (!uv_is_closing((uv_handle_t *)&agents[i].tcp))
            uv_close((uv_handle_t *)&agents[i].tcp, NULL);
        uv_close((uv_handle_t *)&agents[i].retry, NULL);
        if (o.rate > 0)
            uv_close((uv_handle_t *)&agents[i].timer, NULL);
    }
    uv_close((uv_handle_t *)&phase, NULL);
    uv_close((uv_handle_t *)&usage, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < o.agents; i++) {
        for (struct item *it = agents[i].head, *next; it; it = next) {
            next = it->next;
            if (truth)
                fprintf(truth, "U %d %llu %lld\n", i, (unsigned long long)it->b->seq,
                        (long long)it->t_ms);
            apm_batch_free(it->b);
            free(it);
        }
        apm_codec_enc_close(&agents[i].enc);
        apm_frame_reader_close(&agents[i].reader);
    }
    free(agents);
    free(lat_ms);
    if (truth && fclose(truth) != 0) {
        perror(o.truth);
        errors++;
    }
    uv_loop_close(&loop);
    return errors ? 1 : 0;
}
