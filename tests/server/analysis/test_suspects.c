#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "common/base/error.h"
#include "server/store/store.h"
#include "server/analysis/suspects.h"
#include "tests/server/analysis/probe_fixture.h"

#define LEAK_RATE 10240.0 /* bytes per second, the process's and the leaking site's growth */

static int setup(void **state)
{
    *state = fixture_open(0);
    return 0;
}

static int teardown(void **state)
{
    fixture_close(*state);
    return 0;
}

/* Stores one diff of process 42 at t_ms (a snapshot a second after the previous one). */
static void put_diff(struct fixture *f, int64_t t_ms, int64_t traced, const struct site *sites,
                     uint32_t nsites)
{
    put_probe_diff(f, t_ms, 1000, traced, sites, nsites);
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
