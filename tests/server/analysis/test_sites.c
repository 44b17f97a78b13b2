#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "server/analysis/sites.h"
#include "server/store/store.h"
#include "tests/server/analysis/probe_fixture.h"

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

/* The window between the snapshots at a and b, as the API's clients ask for it. */
static size_t rank(struct fixture *f, int64_t a, int64_t b, struct apm_site_rank **r)
{
    size_t n = 0;
    assert_int_equal(apm_sites_rank(f->store, PID_ID, (a + b) / 2, b, 10, r, &n), 0);
    return n;
}

static void test_window_between_two_snapshots_ranks_like_compare_to(void **state)
{
    struct fixture *f = *state;
    struct site first[] = {
        {"app/a.py", 1, 5000, 5000},
        {"app/b.py", 2, 3000, 3000},
        {"app/c.py", 3, 700, 700},
        {"app/d.py", 4, 900, 900},
    };
    put_probe_diff(f, T0 + 1000, 1000, 0, first, 4);
    /* |growth| first (a shrink ranks by its size), then size; then the site, largest first. */
    struct site second[] = {
        {"app/a.py", 1, 5100, 100}, {"app/b.py", 2, 2500, -500}, {"app/c.py", 3, 800, 100},
        {"app/d.py", 4, 900, 0},    {"app/e.py", 9, 100, 100},   {"app/e.py", 10, 100, 100},
    };
    put_probe_diff(f, T0 + 2000, 1000, 0, second, 6);
    struct apm_site_rank *r = NULL;
    size_t n = rank(f, T0 + 1000, T0 + 2000, &r);
    const char *want[] = {"app/b.py:2",  "app/a.py:1", "app/c.py:3",
                          "app/e.py:10", "app/e.py:9", "app/d.py:4"};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(r[i].site, want[i]);
    assert_int_equal(r[0].size_growth, -500);
    assert_int_equal(r[0].size_end, 2500);
    assert_int_equal(r[0].count_growth, -5);
    /* A new site's start is its size at the previous snapshot: none. */
    assert_int_equal(r[3].size_start, 0);
    assert_int_equal(r[3].size_growth, 100);
    apm_sites_free(r, n);
}

/*
 * A site that left the top N and comes back: its diff's start point (its size at the previous
 * snapshot) is news for the window after that snapshot, not for the window that ends there,
 * however t - interval rounds against the previous snapshot's t.
 */
static void test_returning_site_tells_only_the_window_it_returns_in(void **state)
{
    (void)state;
    for (int64_t skew = -1; skew <= 1; skew++) {
        struct fixture *f = fixture_open(0);
        struct site big = {"app/big.py", 7, 0, 0};
        struct site back = {"app/heap.py", 565, 320, 320};
        int64_t t1 = T0 + 1000, t2 = T0 + 2003, t3 = T0 + 3001, t4 = T0 + 4002;
        put_probe_diff(f, t1, 1000, 0, &back, 1);
        big.size = big.size_diff = 1000;
        put_probe_diff(f, t2, t2 - t1, 0, &big, 1);
        big.size += 1000;
        put_probe_diff(f, t3, t3 - t2, 0, &big, 1);
        /* heap.py shrank to 312 somewhere before t3 and grows by 88 now. */
        struct site both[] = {{"app/big.py", 7, 3000, 1000}, {"app/heap.py", 565, 400, 88}};
        put_probe_diff(f, t4, t4 - t3 + skew, 0, both, 2);

        struct apm_site_rank *r = NULL;
        size_t n = rank(f, t2, t3, &r);
        assert_int_equal(n, 1);
        assert_string_equal(r[0].site, "app/big.py:7");
        apm_sites_free(r, n);

        n = rank(f, t3, t4, &r);
        assert_int_equal(n, 2);
        assert_string_equal(r[1].site, "app/heap.py:565");
        assert_int_equal(r[1].size_start, 312);
        assert_int_equal(r[1].size_growth, 88);
        assert_int_equal(r[1].size_end, 400);
        apm_sites_free(r, n);
        fixture_close(f);
    }
}

/* A site in two diffs in a row is stored once per diff: no second start point. */
static void test_site_in_consecutive_diffs_adds_one_sample_per_diff(void **state)
{
    struct fixture *f = *state;
    struct site s = {"app/a.py", 1, 0, 0};
    for (int i = 1; i <= 5; i++) {
        s.size += 1000;
        s.size_diff = 1000;
        /* intervals that round a millisecond either way */
        put_probe_diff(f, T0 + i * 1000, 1000 + (i % 3) - 1, 0, &s, 1);
    }
    struct apm_site_rank *r = NULL;
    size_t n = 0;
    assert_int_equal(apm_sites_rank(f->store, PID_ID, T0, T0 + 5000, 10, &r, &n), 0);
    assert_int_equal(n, 1);
    /* The first diff's start point, then one sample per diff. */
    assert_int_equal(r[0].npoints, 6);
    assert_int_equal(r[0].size_start, 0);
    assert_int_equal(r[0].size_growth, 5000);
    apm_sites_free(r, n);
}

/*
 * Sampled sites carry the standard error of their growth: the root of what their running
 * variance gained over the window; exact sites have none.
 */
static void test_sampled_sites_carry_the_error_of_their_growth(void **state)
{
    struct fixture *f = *state;
    f->sample_bytes = 524288;
    struct site s[] = {{"app/a.py", 1, 0, 0}};
    int64_t var[] = {0, 9000000, 25000000, 25000000 + 144000000};
    for (int i = 1; i <= 3; i++) {
        s[0].size += 100000;
        s[0].size_diff = 100000;
        f->growth_var = &var[i];
        put_probe_diff(f, T0 + i * 1000, 1000, 0, s, 1);
    }
    struct apm_site_rank *r = NULL;
    size_t n = rank(f, T0 + 2000, T0 + 3000, &r);
    assert_int_equal(n, 1);
    assert_true(r[0].sampled);
    assert_int_equal(r[0].size_growth, 100000);
    assert_int_equal(r[0].growth_err, 12000); /* sqrt(169e6 - 25e6) */
    assert_true(fabs(r[0].rate_err - 12000.0) < 1e-6);
    apm_sites_free(r, n);
    /* The first diff's start point counts no variance: all of it is in the window. */
    assert_int_equal(apm_sites_rank(f->store, PID_ID, T0, T0 + 3000, 10, &r, &n), 0);
    assert_int_equal(r[0].growth_err, 13000);
    apm_sites_free(r, n);

    f->sample_bytes = 0;
    f->growth_var = NULL;
    struct site exact = {"app/b.py", 2, 500, 500};
    put_probe_diff(f, T0 + 4000, 1000, 0, &exact, 1);
    n = rank(f, T0 + 3000, T0 + 4000, &r);
    assert_int_equal(n, 1);
    assert_false(r[0].sampled);
    assert_int_equal(r[0].growth_err, 0);
    apm_sites_free(r, n);
}

static void test_sites_beyond_the_cap_are_refused_and_counted(void **state)
{
    (void)state;
    struct fixture *f = fixture_open(2);
    struct site s[] = {
        {"app/a.py", 1, 300, 300}, {"app/b.py", 2, 200, 200}, {"app/c.py", 3, 100, 100}};
    put_probe_diff(f, T0 + 1000, 1000, 0, s, 3);
    /* Sites already kept go on being stored. */
    s[0].size = 600;
    s[0].size_diff = 300;
    put_probe_diff(f, T0 + 2000, 1000, 0, s, 3);
    struct apm_site_rank *r = NULL;
    size_t n = 0;
    assert_int_equal(apm_sites_rank(f->store, PID_ID, T0, T0 + 2000, 10, &r, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].site, "app/a.py:1");
    assert_int_equal(r[0].size_end, 600);
    assert_string_equal(r[1].site, "app/b.py:2");
    apm_sites_free(r, n);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.sites_refused, 2);
    fixture_close(f);
}

static void test_unknown_process_has_no_sites(void **state)
{
    struct fixture *f = *state;
    struct apm_site_rank *r = NULL;
    size_t n = 7;
    assert_int_equal(apm_sites_rank(f->store, "web-3:1:1", T0, T0 + 1000, 10, &r, &n), 0);
    assert_int_equal(n, 0);
    apm_sites_free(r, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_between_two_snapshots_ranks_like_compare_to,
                                        setup, teardown),
        cmocka_unit_test(test_returning_site_tells_only_the_window_it_returns_in),
        cmocka_unit_test_setup_teardown(test_site_in_consecutive_diffs_adds_one_sample_per_diff,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sampled_sites_carry_the_error_of_their_growth, setup,
                                        teardown),
        cmocka_unit_test(test_sites_beyond_the_cap_are_refused_and_counted),
        cmocka_unit_test_setup_teardown(test_unknown_process_has_no_sites, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
