#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ftw.h>
#include <unistd.h>

#include "common/error.h"
#include "server/store.h"
#include "server/suspects.h"

#define T0 1700000000000LL
#define PID_ID "web-3:42:1699999000000"
#define LEAK_RATE 10240.0 /* bytes per second, the process's and the leaking site's growth */

struct fixture {
    char dir[64];
    struct apm_store *store;
    struct apm_agent_ident agent;
    uint64_t seq;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/apm-test-suspects-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    strcpy(f->agent.boot_id, "boot-a");
    strcpy(f->agent.version, "0.1.0");
    f->agent.instance = 7;
    struct apm_store_options opt = {.dir = f->dir, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

struct site {
    const char *file;
    uint32_t line;
    int64_t size, size_diff;
};

/* Stores one diff of process 42 at t_ms (a snapshot a second after the previous one). */
static void put_diff(struct fixture *f, int64_t t_ms, int64_t traced, const struct site *sites,
                     uint32_t nsites)
{
    struct apm_batch *b = apm_batch_new(++f->seq);
    struct apm_proc_desc p = {.pid = 42,
                              .ppid = 1,
                              .start_ms = 1699999000000LL,
                              .name = "worker.py",
                              .cmdline = "python3 worker.py",
                              .cgroup = "/system.slice/worker.service"};
    uint32_t idx;
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, t_ms, 50000000), 0);
    struct apm_trace_diff *d = NULL;
    assert_int_equal(apm_batch_append_diff(b, idx, nsites, &d), 0);
    d->t_ms = t_ms;
    d->probe_seq = f->seq;
    d->session = 1;
    d->frames = 1;
    d->interval_ms = 1000;
    d->traced_current = traced;
    d->traced_peak = traced;
    for (uint32_t i = 0; i < nsites; i++) {
        assert_int_equal(apm_site_set(&d->sites[i], sites[i].file, sites[i].line, 0), 0);
        d->sites[i].size = sites[i].size;
        d->sites[i].size_diff = sites[i].size_diff;
        d->sites[i].count = sites[i].size / 100;
        d->sites[i].count_diff = sites[i].size_diff / 100;
    }
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
    assert_int_equal(apm_store_txn_commit(t), 0);
    apm_batch_free(b);
}

/*
 * Sixty one-second diffs: a site that leaks at the process's rate, one that
 * grows at a tiny fraction of it, one that stays flat, and one that jumped
 * once at the start and then stayed. traced_growth is traced memory's growth
 * per second.
 */
static void put_history(struct fixture *f, double traced_growth)
{
    for (int i = 1; i <= 60; i++) {
        struct site s[] = {
            {"app/cache.py", 88, (int64_t)(i * LEAK_RATE), (int64_t)LEAK_RATE},
            {"app/log.py", 5, 1000 + i * 10, 10},
            {"app/db.py", 10, 500000, 0},
            {"app/load.py", 3, 4000000, i == 1 ? 4000000 : 0},
        };
        put_diff(f, T0 + i * 1000LL, 8000000 + (int64_t)(i * traced_growth), s, 4);
    }
}

static void test_suspects_are_the_sites_growing_with_the_process(void **state)
{
    struct fixture *f = *state;
    put_history(f, LEAK_RATE);
    struct apm_suspects sus;
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 60000, 600, LEAK_RATE, &sus), 0);
    /* The tiny grower, the flat site and the one-off step are not suspects. */
    assert_int_equal(sus.n, 1);
    assert_string_equal(sus.top[0].site, "app/cache.py:88");
    assert_true(sus.top[0].rate > 0.9 * LEAK_RATE && sus.top[0].rate < 1.1 * LEAK_RATE);
    assert_int_equal(sus.top[0].size, (int64_t)(60 * LEAK_RATE));
    /* Without a process rate, every steady grower is listed, fastest first. */
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 60000, 600, 0, &sus), 0);
    assert_int_equal(sus.n, 2);
    assert_string_equal(sus.top[0].site, "app/cache.py:88");
    assert_string_equal(sus.top[1].site, "app/log.py:5");
}

static void test_python_verdict_when_traced_memory_grows_with_rss(void **state)
{
    struct fixture *f = *state;
    put_history(f, LEAK_RATE);
    struct apm_suspects sus;
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 60000, 600, LEAK_RATE, &sus), 0);
    assert_true(sus.has_traced);
    assert_true(sus.traced_rate > 0.9 * LEAK_RATE && sus.traced_rate < 1.1 * LEAK_RATE);
    assert_int_equal(apm_suspects_native(&sus, LEAK_RATE), 0);
    /* No growth, no verdict. */
    assert_int_equal(apm_suspects_native(&sus, 0), -1);
}

static void test_native_verdict_when_rss_grows_and_traced_memory_does_not(void **state)
{
    struct fixture *f = *state;
    put_history(f, 0);
    struct apm_suspects sus;
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 60000, 600, LEAK_RATE, &sus), 0);
    assert_true(sus.has_traced);
    assert_true(sus.traced_rate < 0.01 * LEAK_RATE);
    assert_int_equal(apm_suspects_native(&sus, LEAK_RATE), 1);
}

static void test_traced_rate_ignores_a_restart_of_tracing(void **state)
{
    struct fixture *f = *state;
    /* A first window ended high; tracing restarted near zero and grows with RSS since. */
    for (int i = 1; i <= 40; i++) {
        int64_t traced = i <= 20 ? 8000000 + i * 100000 : (int64_t)((i - 20) * LEAK_RATE);
        put_diff(f, T0 + i * 1000LL, traced, NULL, 0);
    }
    struct apm_suspects sus;
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 40000, 600, LEAK_RATE, &sus), 0);
    assert_true(sus.has_traced);
    assert_true(sus.traced_rate > 0.9 * LEAK_RATE && sus.traced_rate < 1.1 * LEAK_RATE);
    assert_int_equal(apm_suspects_native(&sus, LEAK_RATE), 0);
}

static void test_nothing_is_told_without_probe_data(void **state)
{
    struct fixture *f = *state;
    struct apm_suspects sus;
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 60000, 600, LEAK_RATE, &sus), 0);
    assert_int_equal(sus.n, 0);
    assert_false(sus.has_traced);
    assert_int_equal(apm_suspects_native(&sus, LEAK_RATE), -1);
    /* Data older than the window is not looked at either. */
    put_history(f, 0);
    assert_int_equal(apm_suspects_find(f->store, PID_ID, T0 + 7200000, 600, LEAK_RATE, &sus), 0);
    assert_int_equal(sus.n, 0);
    assert_false(sus.has_traced);
}

static void test_window_is_sixty_intervals_within_bounds(void **state)
{
    (void)state;
    assert_true(apm_suspects_window_s(0) == 3600.0);
    assert_true(apm_suspects_window_s(1) == 600.0);
    assert_true(apm_suspects_window_s(60) == 3600.0);
    assert_true(apm_suspects_window_s(3600) == 6 * 3600.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_suspects_are_the_sites_growing_with_the_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_python_verdict_when_traced_memory_grows_with_rss,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_native_verdict_when_rss_grows_and_traced_memory_does_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traced_rate_ignores_a_restart_of_tracing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nothing_is_told_without_probe_data, setup, teardown),
        cmocka_unit_test(test_window_is_sixty_intervals_within_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
