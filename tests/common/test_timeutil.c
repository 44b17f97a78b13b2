/* Time helpers: rounding that stays defined whatever double it is given. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/base/timeutil.h"

static void test_round_ll_half_away_from_zero(void **state)
{
    (void)state;
    assert_int_equal(apm_round_ll(0.0), 0);
    assert_int_equal(apm_round_ll(1.5), 2);
    assert_int_equal(apm_round_ll(-1.5), -2);
    assert_int_equal(apm_round_ll(1700000001.25 * 1000.0), 1700000001250LL);
    assert_int_equal(apm_round_ll(9223372036854774784.0), 9223372036854774784LL);
}

/* Found by tests/fuzz/fuzz_probe_line.c: a gc line with "t": 1e110 made ms_of overflow. */
static void test_round_ll_saturates_and_maps_nan_to_zero(void **state)
{
    (void)state;
    assert_true(apm_round_ll(1e110 * 1000.0) == LLONG_MAX);
    assert_true(apm_round_ll(9223372036854775808.0) == LLONG_MAX);
    assert_true(apm_round_ll(-1e300) == LLONG_MIN);
    assert_true(apm_round_ll(-9223372036854775808.0) == LLONG_MIN);
    assert_true(apm_round_ll(HUGE_VAL) == LLONG_MAX);
    assert_true(apm_round_ll(-HUGE_VAL) == LLONG_MIN);
    assert_int_equal(apm_round_ll(NAN), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_ll_half_away_from_zero),
        cmocka_unit_test(test_round_ll_saturates_and_maps_nan_to_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
