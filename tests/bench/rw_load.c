/*
 * Remote-write load generator, the Prometheus side of vs_prometheus.sh: N
 * simulated agents, each a thread with one keep-alive HTTP/1.1 connection,
 * each POSTing a Prometheus remote-write 1.0 WriteRequest (protobuf, snappy
 * block format) with S series and one sample each to /api/v1/write, and the
 * next one as soon as the previous is answered 2xx (or at a fixed rate per
 * agent). Same load shape and output as collector_load. The protobuf is
 * written by hand (prompb: WriteRequest{1: TimeSeries{1: Label{1 name, 2
 * value}, 2: Sample{1 double value, 2 int64 timestamp}}}), no .proto.
 *
 *   rw_load --url-port 9090 [--agents 100] [--series 500] [--duration 20]
 *           [--warmup 2] [--rate BATCHES_PER_S_PER_AGENT] [--step-ms 1000]
 *
 * Each batch's samples are --step-ms after the previous one's, from now.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <snappy-c.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/base/timeutil.h"

static int port = 9090, agents = 100, series = 500;
static double duration = 20, warmup = 2, rate = 0;
static int64_t step_ms = 1000;
static _Atomic uint64_t acked_samples, errors;
static uint64_t t_start_ns, t_end_ns;
static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;
static double *lat_ms;
static size_t nlat, lat_cap;

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_str(uint8_t *p, unsigned field, const char *s)
{
    size_t n = strlen(s);
    *p++ = (uint8_t)(field << 3 | 2);
    p = put_varint(p, n);
    memcpy(p, s, n);
    return p + n;
}

static uint8_t *put_label(uint8_t *p, const char *name, const char *value)
{
    size_t len =
        2 + varint_len(strlen(name)) + strlen(name) + varint_len(strlen(value)) + strlen(value);
    *p++ = 0x0a; /* TimeSeries.labels */
    p = put_varint(p, len);
    p = put_str(p, 1, name);
    return put_str(p, 2, value);
}

/* One WriteRequest: S series of agent a, one sample each at t_ms. Returns its length. */
static size_t encode(uint8_t *buf, int a, int64_t t_ms, uint64_t *rng)
{
    uint8_t *p = buf;
    char agent[32], ser[32];
    snprintf(agent, sizeof(agent), "bench-%d", a);
    for (int s = 0; s < series; s++) {
        snprintf(ser, sizeof(ser), "%d", s);
        uint8_t ts[256], *q = ts;
        q = put_label(q, "__name__", "apm_bench_rss_bytes");
        q = put_label(q, "agent", agent);
        q = put_label(q, "series", ser);
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        double v = (double)((256 + s) * 1048576 + (int64_t)(*rng % 4096) * 4096);
        uint8_t smp[32], *r = smp;
        *r++ = 0x09; /* Sample.value, fixed64 */
        memcpy(r, &v, 8);
        r += 8;
        *r++ = 0x10; /* Sample.timestamp */
        r = put_varint(r, (uint64_t)t_ms);
        *q++ = 0x12; /* TimeSeries.samples */
        q = put_varint(q, (uint64_t)(r - smp));
        memcpy(q, smp, (size_t)(r - smp));
        q += r - smp;
        *p++ = 0x0a; /* WriteRequest.timeseries */
        p = put_varint(p, (uint64_t)(q - ts));
        memcpy(p, ts, (size_t)(q - ts));
        p += q - ts;
    }
    return (size_t)(p - buf);
}

static int connect_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response (headers, then Content-Length bytes). Returns the status or -1. */
static int read_response(int fd, char *buf, size_t size)
{
    size_t have = 0;
    char *end = NULL;
    while (end == NULL) {
        if (have + 1 >= size)
            return -1;
        ssize_t r = recv(fd, buf + have, size - 1 - have, 0);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    size_t body = cl ? strtoul(cl + 17, NULL, 10) : 0;
    size_t got = have - (size_t)(end + 4 - buf);
    while (got < body) {
        ssize_t r = recv(fd, buf, size - 1, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return status;
}

static void *agent_main(void *arg)
{
    int a = (int)(intptr_t)arg;
    size_t cap = (size_t)series * 128 + 64;
    uint8_t *pb = malloc(cap);
    size_t zcap = snappy_max_compressed_length(cap);
    char *z = malloc(zcap + 512);
    char resp[4096];
    uint64_t rng = 0x9e3779b97f4a7c15ull + (uint64_t)a;
    int64_t t_ms = apm_now_ms();
    int fd = connect_port();
    uint64_t next_ns = apm_mono_ns();
    while (pb != NULL && z != NULL && apm_mono_ns() < t_end_ns) {
        if (fd < 0) {
            atomic_fetch_add(&errors, 1);
            usleep(100000);
            fd = connect_port();
            continue;
        }
        if (rate > 0) {
            uint64_t now = apm_mono_ns();
            if (now < next_ns)
                usleep((useconds_t)((next_ns - now) / 1000));
            /* No catching up in bursts after a slow answer: at most one period behind. */
            uint64_t period = (uint64_t)(1e9 / rate);
            next_ns = now > next_ns + period ? now + period : next_ns + period;
        }
        size_t n = encode(pb, a, t_ms, &rng);
        size_t zn = zcap;
        char *body = z + 512;
        if (snappy_compress((const char *)pb, n, body, &zn) != SNAPPY_OK)
            break;
        char head[512];
        int hn = snprintf(head, sizeof(head),
                          "POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                          "X-Prometheus-Remote-Write-Version: 0.1.0\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          zn);
        memcpy(body - hn, head, (size_t)hn);
        uint64_t sent = apm_mono_ns();
        int st = send_all(fd, body - hn, (size_t)hn + zn) == 0
                     ? read_response(fd, resp, sizeof(resp))
                     : -1;
        uint64_t done = apm_mono_ns();
        t_ms += step_ms;
        if (st < 200 || st > 299) {
            atomic_fetch_add(&errors, 1);
            if (st < 0) {
                close(fd);
                fd = connect_port();
            }
            continue;
        }
        if (sent >= t_start_ns && done <= t_end_ns) {
            atomic_fetch_add(&acked_samples, (uint64_t)series);
            pthread_mutex_lock(&lat_mu);
            if (nlat == lat_cap) {
                lat_cap = lat_cap ? lat_cap * 2 : 4096;
                double *l = realloc(lat_ms, lat_cap * sizeof(*l));
                if (l != NULL)
                    lat_ms = l;
                else
                    lat_cap = nlat;
            }
            if (nlat < lat_cap)
                lat_ms[nlat++] = (double)(done - sent) / 1e6;
            pthread_mutex_unlock(&lat_mu);
        }
    }
    if (fd >= 0)
        close(fd);
    free(pb);
    free(z);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
    return lat_ms[i];
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--port") == 0)
            port = atoi(v);
        else if (strcmp(k, "--agents") == 0)
            agents = atoi(v);
        else if (strcmp(k, "--series") == 0)
            series = atoi(v);
        else if (strcmp(k, "--duration") == 0)
            duration = atof(v);
        else if (strcmp(k, "--warmup") == 0)
            warmup = atof(v);
        else if (strcmp(k, "--rate") == 0)
            rate = atof(v);
        else if (strcmp(k, "--step-ms") == 0)
            step_ms = atoll(v);
        else {
            fprintf(stderr, "rw_load: unknown option %s\n", k);
            return 2;
        }
    }
    if (agents <= 0 || series <= 0 || series > 100000 || duration <= 0 || step_ms <= 0) {
        fprintf(stderr, "rw_load: --agents, --series (<= 100000), --duration and --step-ms "
                        "must be > 0\n");
        return 2;
    }
    t_start_ns = apm_mono_ns() + (uint64_t)(warmup * 1e9);
    t_end_ns = t_start_ns + (uint64_t)(duration * 1e9);
    pthread_t *th = calloc((size_t)agents, sizeof(*th));
    int started = 0;
    for (int a = 0; th != NULL && a < agents; a++) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&th[a], &at, agent_main, (void *)(intptr_t)a) == 0)
            started++;
        pthread_attr_destroy(&at);
    }
    for (int a = 0; a < started; a++)
        pthread_join(th[a], NULL);
    free(th);
    printf("agents %d x series %d, %s, %.1f s measured (remote write, port %d)\n", agents, series,
           rate > 0 ? "fixed rate" : "closed loop (next batch on 2xx)", duration, port);
    printf("acked: %.0f samples/s (%.0f batches/s)\n", (double)acked_samples / duration,
           (double)acked_samples / duration / series);
    if (nlat > 0) {
        qsort(lat_ms, nlat, sizeof(*lat_ms), cmp_double);
        printf("send-to-ack: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%zu batches)\n", pct(0.50),
               pct(0.99), lat_ms[nlat - 1], nlat);
    }
    printf("errors: %llu\n", (unsigned long long)errors);
    free(lat_ms);
    return started == agents ? 0 : 1;
}
