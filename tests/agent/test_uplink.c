/*
 * Uplink against the real collector ingest, writer and store in one loop on
 * loopback: batches are acked only after commit, resent after the collector
 * goes away and comes back, stored once; a wrong token is refused; a full
 * queue drops the oldest batches and counts them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "agent/uplink.h"
#include "common/base/error.h"
#include "common/base/log.h"
#include "server/ingest/ingest.h"
#include "server/store/store.h"
#include "server/ingest/writer.h"

static const uint8_t TOKEN[] = "test-token";

struct env {
    uv_loop_t loop;
    char dir[64];
    struct apm_store *store;
    struct apm_writer *writer;
    struct apm_ingest *ingest;
    int port;
    uint64_t max_processes; /* per agent; 0 = the default */
};

static void start_ingest(struct env *e, int port)
{
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    struct apm_ingest_options io = {.listen = listen,
                                    .token = TOKEN,
                                    .token_len = sizeof(TOKEN) - 1,
                                    .max_processes_per_agent = e->max_processes};
    assert_int_equal(apm_ingest_new(&e->loop, e->store, e->writer, &io, &e->ingest), 0);
    e->port = apm_ingest_port(e->ingest);
}

static void on_ingest_closed(void *ctx)
{
    *(int *)ctx = 1;
}

static void stop_ingest(struct env *e)
{
    int closed = 0;
    apm_ingest_close(e->ingest, on_ingest_closed, &closed);
    while (!closed)
        uv_run(&e->loop, UV_RUN_ONCE);
    e->ingest = NULL;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(uv_loop_init(&e->loop), 0);
    snprintf(e->dir, sizeof(e->dir), "/tmp/apm-test-uplink-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    struct apm_store_options so = {.dir = e->dir, .map_size = 64u << 20, .no_sync = true};
    assert_int_equal(apm_store_open(&so, &e->store), 0);
    assert_int_equal(apm_writer_new(&e->loop, e->store, 0, &e->writer), 0);
    start_ingest(e, 0);
    *state = e;
    return 0;
}

static void on_writer_closed(struct apm_writer *w)
{
    (void)w;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->ingest != NULL)
        stop_ingest(e);
    apm_writer_close(e->writer, on_writer_closed);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    apm_store_free(e->store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static struct apm_batch *make_batch(int64_t t_ms)
{
    struct apm_batch *b = apm_batch_new(0);
    for (int i = 0; i < 2; i++) {
        struct apm_proc_desc p = {.pid = 500 + i, .start_ms = 1000, .name = "svc.py"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t_ms, 1 << 20), 0);
    }
    return b;
}

/* Runs the loop until the uplink has acked `want` batches, or 10 s pass. */
static bool run_until_acked(struct env *e, struct apm_uplink *u, uint64_t want)
{
    uint64_t deadline = uv_now(&e->loop) + 10000;
    struct apm_uplink_stats st;
    for (;;) {
        apm_uplink_get_stats(u, &st);
        if (st.batches_acked >= want)
            return true;
        if (uv_now(&e->loop) > deadline)
            return false;
        uv_run(&e->loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&e->loop);
    }
}

static void run_for(struct env *e, uint64_t ms)
{
    uint64_t end = uv_now(&e->loop) + ms;
    while (uv_now(&e->loop) < end) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&e->loop);
    }
}

static int count_sample(void *ctx, int64_t t, int64_t v)
{
    (void)t;
    (void)v;
    (*(int *)ctx)++;
    return 0;
}

static int first_series(void *ctx, const struct apm_series_info *s)
{
    *(uint64_t *)ctx = s->id;
    return 1;
}

static int stored_samples(struct env *e)
{
    uint64_t id = 0;
    struct apm_series_filter f = {.pid = 500, .metric = APM_METRIC_RSS};
    assert_int_equal(apm_store_list_series(e->store, &f, first_series, &id), 0);
    int n = 0;
    assert_int_equal(apm_store_read_samples(e->store, id, 0, INT64_MAX, count_sample, &n), 0);
    return n;
}

static struct apm_uplink *new_uplink(struct env *e, const char *token, size_t max_queue)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", e->port);
    struct apm_uplink_options uo = {.collector = addr,
                                    .token = (const uint8_t *)token,
                                    .token_len = strlen(token),
                                    .max_queue_bytes = max_queue,
                                    .backoff_min_ms = 10,
                                    .backoff_max_ms = 50};
    snprintf(uo.ident.agent_id, sizeof(uo.ident.agent_id), "agent-under-test");
    snprintf(uo.ident.host, sizeof(uo.ident.host), "test-host");
    uo.ident.instance = 99;
    struct apm_uplink *u = NULL;
    assert_int_equal(apm_uplink_new(&e->loop, &uo, NULL, NULL, &u), 0);
    return u;
}

static void on_uplink_closed(void *ctx)
{
    *(int *)ctx = 1;
}

static void close_uplink(struct env *e, struct apm_uplink *u)
{
    int closed = 0;
    apm_uplink_close(u, on_uplink_closed, &closed);
    while (!closed)
        uv_run(&e->loop, UV_RUN_ONCE);
}

static void test_uplink_batches_acked_after_commit(void **state)
{
    struct env *e = *state;
    struct apm_uplink *u = new_uplink(e, (const char *)TOKEN, 0);
    for (int i = 0; i < 20; i++)
        apm_uplink_push(u, make_batch(1000 + i * 1000));
    assert_true(run_until_acked(e, u, 20));
    assert_int_equal(stored_samples(e), 20);
    struct apm_uplink_stats st;
    apm_uplink_get_stats(u, &st);
    assert_int_equal(st.samples_acked, 40);
    assert_int_equal(st.queue_len, 0);
    close_uplink(e, u);
}

static void test_uplink_resends_after_collector_returns_and_stores_once(void **state)
{
    struct env *e = *state;
    struct apm_uplink *u = new_uplink(e, (const char *)TOKEN, 0);
    for (int i = 0; i < 10; i++)
        apm_uplink_push(u, make_batch(1000 + i * 1000));
    assert_true(run_until_acked(e, u, 10));
    int port = e->port;
    stop_ingest(e);
    for (int i = 10; i < 15; i++)
        apm_uplink_push(u, make_batch(1000 + i * 1000));
    run_for(e, 200);
    struct apm_uplink_stats st;
    apm_uplink_get_stats(u, &st);
    assert_int_equal(st.batches_acked, 10);
    assert_int_equal(st.queue_len, 5);
    start_ingest(e, port);
    assert_true(run_until_acked(e, u, 15));
    assert_int_equal(stored_samples(e), 15);
    apm_uplink_get_stats(u, &st);
    assert_true(st.reconnects >= 1);
    close_uplink(e, u);
}

static void test_uplink_wrong_token_is_refused_and_counted(void **state)
{
    struct env *e = *state;
    struct apm_uplink *u = new_uplink(e, "wrong", 0);
    apm_uplink_push(u, make_batch(1000));
    run_for(e, 300);
    struct apm_uplink_stats st;
    apm_uplink_get_stats(u, &st);
    assert_int_equal(st.batches_acked, 0);
    assert_true(st.errors_received >= 1);
    struct apm_ingest_stats is;
    apm_ingest_get_stats(e->ingest, &is);
    assert_true(is.auth_failures >= 1);
    assert_int_equal(is.batches, 0);
    close_uplink(e, u);
}

/* A batch refused for a cardinality limit is dropped and counted, never resent; the rest flows. */
static void test_uplink_batch_over_a_limit_is_dropped_not_resent(void **state)
{
    struct env *e = *state;
    stop_ingest(e);
    e->max_processes = 3;
    start_ingest(e, 0);
    struct apm_uplink *u = new_uplink(e, (const char *)TOKEN, 0);
    apm_uplink_push(u, make_batch(1000));
    assert_true(run_until_acked(e, u, 1));
    struct apm_batch *b = apm_batch_new(0);
    for (int i = 0; i < 3; i++) {
        struct apm_proc_desc p = {.pid = 600 + i, .start_ms = 1000, .name = "flood.py"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 2000, 1 << 20), 0);
    }
    apm_uplink_push(u, b);
    apm_uplink_push(u, make_batch(3000));
    assert_true(run_until_acked(e, u, 2));
    struct apm_uplink_stats st;
    apm_uplink_get_stats(u, &st);
    assert_int_equal(st.batches_refused, 1);
    assert_int_equal(st.samples_refused, 3);
    assert_int_equal(st.queue_len, 0);
    struct apm_ingest_stats is;
    apm_ingest_get_stats(e->ingest, &is);
    assert_int_equal(is.refused_processes, 1);
    assert_int_equal(stored_samples(e), 2);
    close_uplink(e, u);
}

static void test_uplink_full_queue_drops_oldest_and_counts(void **state)
{
    struct env *e = *state;
    stop_ingest(e); /* nobody listens: everything queues */
    struct apm_uplink *u = new_uplink(e, (const char *)TOKEN, 1 << 16);
    for (int i = 0; i < 500; i++)
        apm_uplink_push(u, make_batch(1000 + i * 1000));
    struct apm_uplink_stats st;
    apm_uplink_get_stats(u, &st);
    assert_true(st.batches_dropped > 0);
    assert_true(st.queue_bytes <= 1 << 16);
    assert_int_equal(st.batches_dropped + st.queue_len, 500);
    close_uplink(e, u);
}

int main(void)
{
    apm_log_init("test_uplink", APM_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uplink_batches_acked_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uplink_resends_after_collector_returns_and_stores_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_uplink_wrong_token_is_refused_and_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uplink_batch_over_a_limit_is_dropped_not_resent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uplink_full_queue_drops_oldest_and_counts, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
