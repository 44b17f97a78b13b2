/* Known values for the robust statistics. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/stats.h"

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
