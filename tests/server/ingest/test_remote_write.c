/*
 * Remote-write out (server/ingest/remote_write.c): the request body decodes
 * back (snappy, then protobuf-c) to the series, labels and samples given;
 * against a receiver on loopback (a real socket, answering a script of
 * statuses), 503 and 429 are retried, 400 is dropped and counted, the
 * protocol's headers are sent, and a sender started again on the same store
 * resends from the cursor: nothing skipped, nothing twice; a request left in
 * flight by the last run (the pending record) goes again first, alone.
 * Real LMDB in /tmp.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <math.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <pthread.h>
#include <snappy-c.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "prompb.pb-c.h"
#include "server/ingest/remote_write.h"
#include "server/ingest/remote_write_encode.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"
#include "tests/tmpdir.h"

/* ---- decoding what was sent ---- */

static Prometheus__WriteRequest *decode(const uint8_t *body, size_t len)
{
    size_t plen = 0;
    assert_int_equal(snappy_uncompressed_length((const char *)body, len, &plen), SNAPPY_OK);
    char *pb = malloc(plen ? plen : 1);
    assert_int_equal(snappy_uncompress((const char *)body, len, pb, &plen), SNAPPY_OK);
    Prometheus__WriteRequest *wr =
        prometheus__write_request__unpack(NULL, plen, (const uint8_t *)pb);
    free(pb);
    assert_non_null(wr);
    return wr;
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    int64_t t1[] = {1000, 2000, 3000}, v1[] = {4096, 8192, -1};
    int64_t t2[] = {1500}, v2[] = {INT64_C(1) << 52};
    struct apm_rw_series s[2] = {
        {.t_ms = t1, .value = v1, .n = 3},
        {.t_ms = t2, .value = v2, .n = 1},
    };
    struct apm_prom_process_labels pl[2];
    apm_rw_series_labels(&s[0], &pl[0], APM_METRIC_RSS, "web-1", "web-1:42:1700", "app.py", 42);
    apm_rw_series_labels(&s[1], &pl[1], APM_METRIC_MEM_TOTAL, "web-1", "", NULL, 0);
    assert_int_equal(s[0].nlabels, 5);
    assert_int_equal(s[1].nlabels, 2);
    uint8_t *body = NULL;
    size_t len = 0;
    assert_int_equal(apm_rw_encode(s, 2, &body, &len), 0);
    Prometheus__WriteRequest *wr = decode(body, len);
    assert_int_equal(wr->n_timeseries, 2);
    const char *want0[][2] = {{"__name__", "apm_process_rss_bytes"},
                              {"host", "web-1"},
                              {"name", "app.py"},
                              {"pid", "42"},
                              {"process", "web-1:42:1700"}};
    Prometheus__TimeSeries *ts = wr->timeseries[0];
    assert_int_equal(ts->n_labels, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(ts->labels[i]->name, want0[i][0]);
        assert_string_equal(ts->labels[i]->value, want0[i][1]);
        if (i > 0) /* sorted by name */
            assert_true(strcmp(ts->labels[i - 1]->name, ts->labels[i]->name) < 0);
    }
    assert_int_equal(ts->n_samples, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ts->samples[i]->timestamp, t1[i]);
        assert_true(ts->samples[i]->value == (double)v1[i]);
    }
    ts = wr->timeseries[1];
    assert_int_equal(ts->n_labels, 2);
    assert_string_equal(ts->labels[0]->value, "apm_host_mem_total_bytes");
    assert_string_equal(ts->labels[1]->name, "host");
    assert_int_equal(ts->samples[0]->timestamp, 1500);
    assert_true(ts->samples[0]->value == 4503599627370496.0);
    prometheus__write_request__free_unpacked(wr, NULL);
    free(body);
    /* Metrics not exported (per-site series) have no labels; an empty name is no label. */
    assert_int_equal(
        apm_rw_series_labels(&s[0], &pl[0], APM_METRIC_SITE_SIZE, "h", "h:1:2", "x", 1), 0);
    assert_int_equal(apm_rw_series_labels(&s[0], &pl[0], APM_METRIC_RSS, "h", "h:1:2", "", 1), 4);
}

/* ---- a receiver on loopback ---- */

#define SCRIPT_MAX 16
#define SAMPLES_MAX 4096
#define REQUESTS_MAX 64

struct receiver {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    int script[SCRIPT_MAX]; /* statuses answered in turn; then 200 */
    int nscript;
    int requests;
    bool headers_ok;        /* every request had the protocol's headers */
    int64_t t[SAMPLES_MAX]; /* samples of accepted requests, in order */
    int64_t v[SAMPLES_MAX];
    double fv[SAMPLES_MAX];
    char name[SAMPLES_MAX][48]; /* __name__ */
    int n;
    int rejected_samples;
    char auth[128];
    int req_n[REQUESTS_MAX];      /* samples in each request, whatever the answer */
    int64_t req_t0[REQUESTS_MAX]; /* the first sample's time of each request */
};

static bool read_all(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void serve(struct receiver *rc, int fd)
{
    char head[8192];
    size_t hl = 0;
    while (hl < sizeof(head) - 1) {
        ssize_t r = read(fd, head + hl, 1);
        if (r <= 0)
            return;
        hl++;
        if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[hl] = '\0';
    const char *cl = strcasestr(head, "Content-Length:");
    if (cl == NULL)
        return;
    size_t len = strtoul(cl + 15, NULL, 10);
    char *body = malloc(len ? len : 1);
    if (!read_all(fd, body, len)) {
        free(body);
        return;
    }
    pthread_mutex_lock(&rc->mu);
    int status = rc->requests < rc->nscript ? rc->script[rc->requests] : 200;
    int req = rc->requests++;
    if (strcasestr(head, "Content-Encoding: snappy") == NULL ||
        strcasestr(head, "Content-Type: application/x-protobuf") == NULL ||
        strcasestr(head, "X-Prometheus-Remote-Write-Version: 0.1.0") == NULL)
        rc->headers_ok = false;
    const char *auth = strcasestr(head, "Authorization: ");
    if (auth != NULL)
        snprintf(rc->auth, sizeof(rc->auth), "%.*s", (int)strcspn(auth, "\r"), auth);
    Prometheus__WriteRequest *wr = decode((const uint8_t *)body, len);
    for (size_t i = 0; i < wr->n_timeseries; i++) {
        for (size_t j = 0; j < wr->timeseries[i]->n_samples; j++) {
            if (req < REQUESTS_MAX && rc->req_n[req]++ == 0)
                rc->req_t0[req] = wr->timeseries[i]->samples[j]->timestamp;
            if (status == 400) {
                rc->rejected_samples++;
            } else if (status == 200 && rc->n < SAMPLES_MAX) {
                rc->t[rc->n] = wr->timeseries[i]->samples[j]->timestamp;
                rc->fv[rc->n] = wr->timeseries[i]->samples[j]->value;
                snprintf(rc->name[rc->n], sizeof(rc->name[0]), "%s",
                         wr->timeseries[i]->n_labels ? wr->timeseries[i]->labels[0]->value : "");
                rc->v[rc->n++] = (int64_t)wr->timeseries[i]->samples[j]->value;
            }
        }
    }
    pthread_mutex_unlock(&rc->mu);
    prometheus__write_request__free_unpacked(wr, NULL);
    free(body);
    char resp[128];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
    if (write(fd, resp, (size_t)n) != n)
        return;
}

static void *receiver_main(void *arg)
{
    struct receiver *rc = arg;
    for (;;) {
        int fd = accept(rc->fd, NULL, NULL);
        if (fd < 0)
            return NULL; /* shut down */
        serve(rc, fd);
        close(fd);
    }
}

static void receiver_start(struct receiver *rc)
{
    memset(rc, 0, sizeof(*rc));
    rc->headers_ok = true;
    pthread_mutex_init(&rc->mu, NULL);
    rc->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(rc->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(rc->fd, (struct sockaddr *)&a, &al), 0);
    rc->port = ntohs(a.sin_port);
    assert_int_equal(listen(rc->fd, 16), 0);
    assert_int_equal(pthread_create(&rc->thread, NULL, receiver_main, rc), 0);
}

static void receiver_stop(struct receiver *rc)
{
    shutdown(rc->fd, SHUT_RDWR);
    close(rc->fd);
    pthread_join(rc->thread, NULL);
    pthread_mutex_destroy(&rc->mu);
}

static int received(struct receiver *rc)
{
    pthread_mutex_lock(&rc->mu);
    int n = rc->n;
    pthread_mutex_unlock(&rc->mu);
    return n;
}

static int requests(struct receiver *rc)
{
    pthread_mutex_lock(&rc->mu);
    int n = rc->requests;
    pthread_mutex_unlock(&rc->mu);
    return n;
}

/* ---- the sender on a real store ---- */

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_agent_ident agent;
    uint64_t seq;
    struct receiver rc;
    char url[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-rw-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    f->agent.instance = 5;
    struct apm_store_options opt = {.dir = f->dir, .no_sync = true, .rw_hold = true};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    receiver_start(&f->rc);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/api/v1/write", f->rc.port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    receiver_stop(&f->rc);
    apm_store_free(f->store);
    apm_test_rmtree(f->dir);
    free(f);
    return 0;
}

/* Commits n rss samples of one process at 1 s from t0 (value = t), as the writer would. */
static struct apm_batch *put(struct fixture *f, int64_t t0, int n)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    struct apm_proc_desc p = {
        .pid = 42, .ppid = 1, .start_ms = 1700, .name = "app.py", .cmdline = "", .cgroup = "/"};
    uint32_t idx = 0;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t0 + i * 1000, t0 + i * 1000),
                         0);
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
    assert_int_equal(apm_store_txn_commit(t), 0);
    return b;
}

static void wait_received(struct fixture *f, int n)
{
    for (int i = 0; i < 1000 && received(&f->rc) < n; i++)
        usleep(10000);
    assert_int_equal(received(&f->rc), n);
}

static void test_retries_drops_and_resends_from_the_cursor(void **state)
{
    struct fixture *f = *state;
    /* 503 and 429 are retried; the 400 after them drops that request for good. */
    f->rc.script[0] = 503;
    f->rc.script[1] = 429;
    f->rc.script[2] = 400;
    f->rc.nscript = 3;
    apm_batch_free(put(f, 100000, 10)); /* stored before the sender starts: the start sends it */
    struct apm_rw_options o = {.url = f->url,
                               .batch_size = 10,
                               .backoff_min_ms = 5,
                               .backoff_max_ms = 20,
                               .headers = {"X-Scope-OrgID: t1"},
                               .nheaders = 1,
                               .bearer_token = "s3cret"};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    /* The first 10 were refused (400): counted, not resent. The next 10 come by the queue. */
    for (int i = 0; i < 1000 && requests(&f->rc) < 3; i++)
        usleep(10000);
    struct apm_batch *b = put(f, 110000, 10);
    apm_rw_commit_hook(rw, &f->agent, b);
    apm_batch_free(b);
    wait_received(f, 10);
    struct apm_rw_stats st;
    apm_rw_get_stats(rw, &st);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.samples_rejected, 10);
    assert_int_equal(st.samples_sent, 10);
    assert_int_equal(f->rc.rejected_samples, 10);
    assert_true(f->rc.headers_ok);
    assert_string_equal(f->rc.auth, "Authorization: Bearer s3cret");
    for (int i = 0; i < 10; i++)
        assert_int_equal(f->rc.t[i], 110000 + i * 1000);
    apm_rw_free(rw);

    /* The cursor is in the store: a new sender sends only what came after it. */
    uint64_t id = 0;
    assert_int_equal(
        apm_store_find_series(f->store, "web-3", "web-3:42:1700", APM_METRIC_RSS, NULL, &id), 0);
    int64_t cur = 0;
    assert_int_equal(apm_store_rw_cursor_get(f->store, id, &cur), 0);
    assert_int_equal(cur, 119000);
    apm_batch_free(put(f, 120000, 25)); /* committed while no sender ran */
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    wait_received(f, 35);
    for (int i = 0; i < 35; i++) {
        assert_int_equal(f->rc.t[i], 110000 + i * 1000);
        assert_int_equal(f->rc.v[i], 110000 + i * 1000);
    }
    apm_rw_free(rw);
}

static uint64_t rss_series(struct fixture *f)
{
    uint64_t id = 0;
    assert_int_equal(
        apm_store_find_series(f->store, "web-3", "web-3:42:1700", APM_METRIC_RSS, NULL, &id), 0);
    return id;
}

static void wait_requests(struct fixture *f, int n)
{
    for (int i = 0; i < 1000 && requests(&f->rc) < n; i++)
        usleep(10000);
    assert_true(requests(&f->rc) >= n);
}

static void assert_settled(struct fixture *f, uint64_t id, int64_t cursor)
{
    int64_t cur = 0;
    assert_int_equal(apm_store_rw_cursor_get(f->store, id, &cur), 0);
    assert_int_equal(cur, cursor);
    uint64_t *ids = NULL;
    int64_t *ts = NULL;
    size_t n = 9;
    assert_int_equal(apm_store_rw_pending_get(f->store, &ids, &ts, &n), 0);
    assert_int_equal(n, 0);
}

/*
 * A run died with a request in flight: cursor at 102 s, pending record at
 * 106 s, and a pending series retention removed since. The next start sends
 * (102, 106] first and alone; status is the receiver's answer to it. Then
 * (106, 109] follows in a request of its own.
 */
static void resend_after_crash(struct fixture *f, int status)
{
    apm_batch_free(put(f, 100000, 10)); /* 100 s .. 109 s */
    uint64_t id = rss_series(f), gone = id + 1000;
    uint64_t ids[] = {id, gone};
    int64_t cursor = 102000, pending[] = {106000, 5000};
    assert_int_equal(apm_store_rw_cursor_put(f->store, &id, &cursor, 1), 0);
    assert_int_equal(apm_store_rw_pending_put(f->store, NULL, NULL, 0, ids, pending, 2), 0);
    f->rc.script[0] = status;
    f->rc.nscript = 1;
    struct apm_rw_options o = {.url = f->url, .batch_size = 100};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    wait_requests(f, 2);
    wait_received(f, status == 400 ? 3 : 7);
    struct apm_rw_stats st;
    apm_rw_get_stats(rw, &st);
    apm_rw_free(rw);
    assert_int_equal(requests(&f->rc), 2);
    assert_int_equal(f->rc.req_n[0], 4);
    assert_int_equal(f->rc.req_t0[0], 103000);
    assert_int_equal(f->rc.req_n[1], 3);
    assert_int_equal(f->rc.req_t0[1], 107000);
    assert_int_equal(st.resent, 1);
    assert_int_equal(st.resent_rejected, status == 400 ? 1 : 0);
    assert_int_equal(st.rejected, 0); /* the resend's 400 is not a dropped request */
    assert_int_equal(st.samples_rejected, 0);
    for (int i = 0; i < received(&f->rc); i++)
        assert_int_equal(f->rc.t[i], (status == 400 ? 107000 : 103000) + i * 1000);
    assert_settled(f, id, 109000);
    int64_t t = 0;
    assert_int_equal(apm_store_rw_cursor_get(f->store, gone, &t), APM_E_NOTFOUND);
}

/* The receiver had it (Prometheus: out of order, 400): counted, not dropped. */
static void test_resend_refused_counts_as_delivered(void **state)
{
    resend_after_crash(*state, 400);
}

/* The receiver did not have it: it takes it now. */
static void test_resend_taken_now(void **state)
{
    resend_after_crash(*state, 200);
}

/*
 * A pending range the store no longer holds (the disk budget deleted it
 * meanwhile): nothing is resent, the cursor still moves to the record's
 * time, and what follows goes as usual.
 */
static void test_pending_range_gone_from_the_store(void **state)
{
    struct fixture *f = *state;
    apm_batch_free(put(f, 100000, 10));
    uint64_t id = rss_series(f);
    int64_t cursor = 90000, pending = 95000;
    assert_int_equal(apm_store_rw_cursor_put(f->store, &id, &cursor, 1), 0);
    assert_int_equal(apm_store_rw_pending_put(f->store, NULL, NULL, 0, &id, &pending, 1), 0);
    struct apm_rw_options o = {.url = f->url, .batch_size = 100};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    wait_received(f, 10);
    struct apm_rw_stats st;
    apm_rw_get_stats(rw, &st);
    apm_rw_free(rw);
    assert_int_equal(requests(&f->rc), 1);
    assert_int_equal(f->rc.req_t0[0], 100000);
    assert_int_equal(st.resent, 0);
    assert_settled(f, id, 109000);
}

/*
 * The pending record is written before a request goes: a sender stopped
 * while the receiver answers 503 leaves it (and no cursor), and the next
 * start sends that request again alone before the samples stored since.
 */
static void test_pending_record_outlives_a_stop_mid_request(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < SCRIPT_MAX; i++)
        f->rc.script[i] = 503;
    f->rc.nscript = SCRIPT_MAX;
    apm_batch_free(put(f, 100000, 10));
    uint64_t id = rss_series(f);
    struct apm_rw_options o = {
        .url = f->url, .batch_size = 100, .backoff_min_ms = 200, .backoff_max_ms = 200};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    wait_requests(f, 1);
    uint64_t *ids = NULL;
    int64_t *ts = NULL;
    size_t n = 0;
    assert_int_equal(apm_store_rw_pending_get(f->store, &ids, &ts, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], id);
    assert_int_equal(ts[0], 109000);
    free(ids);
    free(ts);
    apm_rw_free(rw); /* during the retries: nothing settled */
    int64_t t = 0;
    assert_int_equal(apm_store_rw_cursor_get(f->store, id, &t), APM_E_NOTFOUND);

    int before = requests(&f->rc);
    pthread_mutex_lock(&f->rc.mu);
    f->rc.nscript = 0; /* 200 from now on */
    pthread_mutex_unlock(&f->rc.mu);
    apm_batch_free(put(f, 110000, 5));
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    wait_received(f, 15);
    /* Idle, the sender commits the last request's cursors alone, without being stopped. */
    int64_t cur = 0;
    for (int i = 0; i < 500 && cur != 114000; i++) {
        if (apm_store_rw_cursor_get(f->store, id, &cur) != 0)
            cur = 0;
        usleep(2000);
    }
    assert_settled(f, id, 114000);
    struct apm_rw_stats st;
    apm_rw_get_stats(rw, &st);
    apm_rw_free(rw);
    assert_int_equal(f->rc.req_n[before], 10);
    assert_int_equal(f->rc.req_t0[before], 100000);
    assert_int_equal(f->rc.req_n[before + 1], 5);
    for (int i = 0; i < 15; i++)
        assert_int_equal(f->rc.t[i], 100000 + i * 1000);
    assert_int_equal(st.resent, 1);
    assert_int_equal(st.resent_rejected, 0);
    assert_settled(f, id, 114000);
}

static void test_queue_overflow_reads_the_store(void **state)
{
    struct fixture *f = *state;
    struct apm_rw_options o = {.url = f->url, .batch_size = 7, .queue_cap = 5};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    struct apm_rw_stats st;
    for (int i = 0; i < 1000; i++) { /* the start's pass over the store has begun */
        apm_rw_get_stats(rw, &st);
        if (st.store_reads >= 1)
            break;
        usleep(10000);
    }
    /* 40 samples in 4 batches through a queue of 5: every hook overflows it. */
    for (int k = 0; k < 4; k++) {
        struct apm_batch *b = put(f, 200000 + k * 10000, 10);
        apm_rw_commit_hook(rw, &f->agent, b);
        apm_batch_free(b);
    }
    wait_received(f, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(f->rc.t[i], 200000 + i * 1000);
    apm_rw_get_stats(rw, &st);
    assert_true(st.overflows >= 1);
    assert_true(st.store_reads >= 2); /* the start, and after an overflow */
    assert_int_equal(st.samples_sent, 40);
    apm_rw_free(rw);
}

/* The probe's traced total and gc totals go too, as the store keeps them. */
static void test_probe_series_go_too(void **state)
{
    struct fixture *f = *state;
    struct apm_rw_options o = {.url = f->url};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    struct apm_batch *b = apm_batch_new(++f->seq);
    struct apm_proc_desc p = {
        .pid = 42, .ppid = 1, .start_ms = 1700, .name = "app.py", .cmdline = "", .cgroup = "/"};
    uint32_t idx = 0;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    struct apm_trace_diff *d = NULL;
    assert_int_equal(apm_batch_append_diff(b, idx, 0, &d), 0);
    d->t_ms = 300000;
    d->traced_current = 123456;
    struct apm_gc_stats g = {.proc = idx, .t_ms = 300000, .ngen = 2, .garbage = 3};
    g.gen[0].collections = 10;
    g.gen[1].collections = 5;
    g.gen[1].uncollectable = 2;
    assert_int_equal(apm_batch_add_gc(b, &g), 0);
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
    assert_int_equal(apm_store_txn_commit(t), 0);
    apm_rw_commit_hook(rw, &f->agent, b);
    apm_batch_free(b);
    wait_received(f, 5); /* traced, and gc collections, collected, uncollectable, garbage */
    int64_t sum = 0;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f->rc.t[i], 300000);
        sum += f->rc.v[i];
    }
    assert_int_equal(sum, 123456 + 15 + 0 + 2 + 3);
    apm_rw_free(rw);
}

/* The verdict gauges of a live process go every period, as GET /metrics names them. */
static void test_verdict_gauges(void **state)
{
    struct fixture *f = *state;
    struct apm_verdict_record r = {.series_id = 1, .metric = APM_METRIC_RSS, .pid = 42};
    strcpy(r.host, "web-3");
    strcpy(r.process_id, "web-3:42:1700");
    strcpy(r.name, "app.py");
    double now_s = (double)apm_now_ms() / 1000.0;
    r.evaluated_at = now_s;
    r.v.cls = APM_CLASS_LEAK;
    r.v.confidence = 0.875;
    r.v.rate = 1024;
    r.v.limit = 1e9;
    r.v.has_forecast = true;
    r.v.forecast_t = now_s + 3600;
    r.v.forecast_lo_t = now_s + 1800;
    r.v.forecast_hi_t = INFINITY;
    const struct apm_verdict_record *recs[] = {&r};
    assert_int_equal(apm_store_verdict_put(f->store, recs, 1), 0);
    struct apm_rw_options o = {.url = f->url, .verdict_period_ms = 20};
    struct apm_rw *rw = NULL;
    assert_int_equal(apm_rw_new(f->store, &o, &rw), 0);
    for (int i = 0; i < 1000 && received(&f->rc) < 14; i++) /* two rounds */
        usleep(10000);
    apm_rw_free(rw);
    assert_true(received(&f->rc) >= 14);
    static const char *const want[] = {"apm_verdict_info",
                                       "apm_verdict_confidence",
                                       "apm_growth_rate_bytes_per_second",
                                       "apm_memory_limit_bytes",
                                       "apm_time_to_exhaustion_seconds",
                                       "apm_time_to_exhaustion_lower_seconds",
                                       "apm_time_to_exhaustion_upper_seconds"};
    for (int i = 0; i < 7; i++)
        assert_string_equal(f->rc.name[i], want[i]);
    assert_true(f->rc.fv[0] == 1);
    assert_true(f->rc.fv[1] == 0.875);
    assert_true(f->rc.fv[2] == 1024);
    assert_true(f->rc.fv[3] == 1e9);
    assert_true(f->rc.fv[4] > 3500 && f->rc.fv[4] <= 3600);
    assert_true(isinf(f->rc.fv[6]));
    assert_true(f->rc.t[7] > f->rc.t[0]); /* the next round is stamped later */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test_setup_teardown(test_retries_drops_and_resends_from_the_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resend_refused_counts_as_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_taken_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_record_outlives_a_stop_mid_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pending_range_gone_from_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_overflow_reads_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_series_go_too, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verdict_gauges, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
