/* Known values for the robust statistics. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/analysis/stats.h"

static void test_stats_quantile_interpolates_like_numpy(void **state)
{
    (void)state;
    double x[] = {5, 1, 4, 2, 3};
    assert_float_equal(apm_stats_median(x, 5), 3.0, 1e-12);
    double y[] = {4, 1, 3, 2};
    assert_float_equal(apm_stats_quantile(y, 4, 0.5), 2.5, 1e-12);
    double z[] = {10, 20, 30, 40};
    assert_float_equal(apm_stats_quantile(z, 4, 0.9), 37.0, 1e-12);
    assert_true(isnan(apm_stats_median(NULL, 0)));
}

static void test_stats_mad_ignores_one_outlier(void **state)
{
    (void)state;
    double x[] = {1, 2, 3, 4, 1000};
    double scratch[5];
    /* Median 3, absolute deviations {2,1,0,1,997}, their median 1. */
    assert_float_equal(apm_stats_mad(x, 5, scratch), 1.4826, 1e-9);
}

static void test_stats_mann_kendall_monotone_series(void **state)
{
    (void)state;
    double y[10], scratch[10];
    struct apm_mk mk;
    for (int i = 0; i < 10; i++)
        y[i] = i;
    assert_int_equal(apm_stats_mann_kendall(y, 10, scratch, &mk), 0);
    /* S = 45, var = 10*9*25/18 = 125, z = 44/sqrt(125). */
    assert_float_equal(mk.s, 45, 1e-12);
    assert_float_equal(mk.var, 125, 1e-9);
    assert_float_equal(mk.z, 44 / sqrt(125), 1e-9);
    assert_true(mk.p < 0.001);
    assert_int_equal(apm_stats_mann_kendall(y, 2, scratch, &mk), -EINVAL);
}

static void test_stats_mann_kendall_corrects_ties(void **state)
{
    (void)state;
    double y[] = {1, 1, 2, 2, 3};
    double scratch[5];
    struct apm_mk mk;
    assert_int_equal(apm_stats_mann_kendall(y, 5, scratch, &mk), 0);
    /* S = 8; var = (5*4*15 - 2 * 2*1*9) / 18 = 264/18. */
    assert_float_equal(mk.s, 8, 1e-12);
    assert_float_equal(mk.var, 264.0 / 18.0, 1e-9);

    /* Ties out of order: a group of three 2s and two 1s, var = (6*5*17 - 3*2*11 - 2*1*9) / 18. */
    double u[] = {2, 1, 2, 3, 2, 1};
    double scratch6[6];
    assert_int_equal(apm_stats_mann_kendall(u, 6, scratch6, &mk), 0);
    assert_float_equal(mk.s, -1, 1e-12);
    assert_float_equal(mk.var, 426.0 / 18.0, 1e-9);
}

static void test_stats_normal_p_known_values(void **state)
{
    (void)state;
    assert_float_equal(apm_stats_normal_p(0), 1.0, 1e-12);
    assert_float_equal(apm_stats_normal_p(1.959964), 0.05, 1e-6);
    assert_float_equal(apm_stats_normal_p(-1.959964), 0.05, 1e-6);
}

static void test_stats_theil_sen_resists_outliers(void **state)
{
    (void)state;
    double x[20], y[20];
    double scratch[20 * 19 / 2 + 20];
    struct apm_theil_sen ts;
    for (int i = 0; i < 20; i++) {
        x[i] = i;
        y[i] = 3 + 2 * i;
    }
    y[5] = 1000;
    y[15] = -1000;
    assert_true(apm_stats_theil_sen_scratch(20) <= sizeof(scratch) / sizeof(scratch[0]));
    assert_int_equal(apm_stats_theil_sen(x, y, 20, 1.96, scratch, &ts), 0);
    assert_float_equal(ts.slope, 2.0, 1e-9);
    assert_float_equal(ts.intercept, 3.0, 1e-9);
    assert_true(ts.slope_lo <= 2.0 && ts.slope_hi >= 2.0);
}

static void test_stats_theil_sen_rejects_equal_x(void **state)
{
    (void)state;
    double x[] = {1, 1, 1}, y[] = {1, 2, 3}, scratch[8];
    struct apm_theil_sen ts;
    assert_int_equal(apm_stats_theil_sen(x, y, 3, 1.96, scratch, &ts), -EINVAL);
}

static void test_stats_lower_envelope_is_causal_running_min(void **state)
{
    (void)state;
    double y[] = {5, 3, 4, 6, 2, 7};
    double out[6];
    apm_stats_lower_envelope(y, 6, 2, out);
    double want[] = {5, 3, 3, 4, 2, 2};
    for (int i = 0; i < 6; i++)
        assert_float_equal(out[i], want[i], 0);
    apm_stats_lower_envelope(y, 6, 3, y);
    double want3[] = {5, 3, 3, 3, 2, 2};
    for (int i = 0; i < 6; i++)
        assert_float_equal(y[i], want3[i], 0);
}

static void test_stats_cusum_finds_the_step(void **state)
{
    (void)state;
    double y[12];
    struct apm_change ch;
    for (int i = 0; i < 12; i++)
        y[i] = i < 7 ? 10 : 20;
    assert_int_equal(apm_stats_cusum(y, 12, &ch), 0);
    assert_int_equal(ch.index, 7);
    assert_float_equal(ch.mean_before, 10, 1e-12);
    assert_float_equal(ch.mean_after, 20, 1e-12);
    assert_float_equal(ch.sse_ratio, 0, 1e-12);

    /* A ramp leaves a quarter of its variance to a two-mean fit. */
    double r[100];
    for (int i = 0; i < 100; i++)
        r[i] = i;
    assert_int_equal(apm_stats_cusum(r, 100, &ch), 0);
    assert_int_equal(ch.index, 50);
    assert_float_equal(ch.sse_ratio, 0.25, 0.01);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 12345;

static double next_random(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* numpy's quantile from a sorted copy: what the selection must return exactly. */
static double sorted_quantile(const double *x, size_t n, double q, double *copy)
{
    memcpy(copy, x, n * sizeof(*x));
    qsort(copy, n, sizeof(*copy), cmp_double);
    double pos = (double)(n - 1) * q;
    size_t lo = (size_t)pos;
    double frac = pos - (double)lo;
    return frac == 0 || lo + 1 >= n ? copy[lo] : copy[lo] + (copy[lo + 1] - copy[lo]) * frac;
}

/*
 * Long arrays are searched through sample pivots (the pairwise slopes of
 * Theil-Sen): whatever the shape, with ties, runs of equal values or
 * structure the sample may miss, the value is the sorted array's.
 */
static void test_stats_quantile_of_long_arrays_is_exact(void **state)
{
    (void)state;
    enum { MAXN = 3000 };
    static double x[MAXN], work[MAXN], copy[MAXN];
    const size_t sizes[] = {255, 256, 257, 300, 496, 1000, 2016, 2999};
    const double qs[] = {0, 0.01, 0.25, 0.5, 0.5001, 0.9, 1};
    for (int shape = 0; shape < 7; shape++) {
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            size_t n = sizes[si];
            for (size_t i = 0; i < n; i++) {
                double r = next_random();
                switch (shape) {
                case 0:
                    x[i] = r;
                    break; /* distinct */
                case 1:
                    x[i] = 4096.0;
                    break; /* constant */
                case 2:
                    x[i] = floor(r * 3);
                    break; /* three values */
                case 3:
                    x[i] = (double)i;
                    break; /* sorted */
                case 4:
                    x[i] = (double)(n - i);
                    break; /* reversed */
                case 5:
                    x[i] = i % 2 ? 1e6 + (double)i : r;
                    break; /* two clusters */
                default:
                    x[i] = r < 0.45 ? 7.0 : r;
                    break; /* a tie at the median */
                }
            }
            for (size_t qi = 0; qi < sizeof(qs) / sizeof(qs[0]); qi++) {
                double want = sorted_quantile(x, n, qs[qi], copy);
                memcpy(work, x, n * sizeof(*x));
                double got = apm_stats_quantile(work, n, qs[qi]);
                assert_true(got == want);
            }
        }
    }
}

/* Sen's bounds and the slope are the order statistics of the sorted pairwise slopes. */
static void test_stats_theil_sen_bounds_match_sorted_slopes(void **state)
{
    (void)state;
    enum { N = 64, PAIRS = N * (N - 1) / 2 };
    static double x[N], y[N], scratch[PAIRS + N], slopes[PAIRS];
    const double zs[] = {0, 1.282, 1.96, 2.0, 4.5};
    for (int round = 0; round < 40; round++) {
        size_t n = 3 + (size_t)(next_random() * (N - 3));
        for (size_t i = 0; i < n; i++) {
            x[i] = round % 4 == 0 ? (double)i : floor(next_random() * 40);
            y[i] = round % 3 == 0 ? 5.0 : 1e8 + 4096.0 * x[i] + 1e5 * floor(next_random() * 8);
        }
        size_t m = 0;
        for (size_t i = 0; i + 1 < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (x[j] != x[i])
                    slopes[m++] = (y[j] - y[i]) / (x[j] - x[i]);
        if (m == 0)
            continue;
        qsort(slopes, m, sizeof(*slopes), cmp_double);
        double med =
            m % 2 ? slopes[m / 2] : slopes[m / 2 - 1] + (slopes[m / 2] - slopes[m / 2 - 1]) * 0.5;
        for (size_t zi = 0; zi < sizeof(zs) / sizeof(zs[0]); zi++) {
            struct apm_theil_sen ts;
            assert_int_equal(apm_stats_theil_sen(x, y, n, zs[zi], scratch, &ts), 0);
            double nn = (double)n;
            double half = zs[zi] * sqrt(nn * (nn - 1) * (2 * nn + 5) / 18.0) / 2.0;
            double rlo = fmax(0, floor(((double)m - 1) / 2.0 - half));
            double rhi = fmin((double)(m - 1), ceil(((double)m - 1) / 2.0 + half));
            assert_true(ts.slope == med);
            assert_true(ts.slope_lo == slopes[(size_t)rlo]);
            assert_true(ts.slope_hi == slopes[(size_t)rhi]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_quantile_interpolates_like_numpy),
        cmocka_unit_test(test_stats_mad_ignores_one_outlier),
        cmocka_unit_test(test_stats_mann_kendall_monotone_series),
        cmocka_unit_test(test_stats_mann_kendall_corrects_ties),
        cmocka_unit_test(test_stats_normal_p_known_values),
        cmocka_unit_test(test_stats_theil_sen_resists_outliers),
        cmocka_unit_test(test_stats_theil_sen_rejects_equal_x),
        cmocka_unit_test(test_stats_lower_envelope_is_causal_running_min),
        cmocka_unit_test(test_stats_cusum_finds_the_step),
        cmocka_unit_test(test_stats_quantile_of_long_arrays_is_exact),
        cmocka_unit_test(test_stats_theil_sen_bounds_match_sorted_slopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
