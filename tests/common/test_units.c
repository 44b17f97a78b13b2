/* The one byte and rate formatter: its unit family and its rounding rule. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/analysis/model.h"
#include "common/base/units.h"

#define KIB 1024.0
#define MIB (1024.0 * KIB)
#define GIB (1024.0 * MIB)
#define TIB (1024.0 * GIB)

static void test_units_bytes_whole_from_ten_one_decimal_below(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(apm_units_bytes(0, 0, b, sizeof(b)), "0 B");
    assert_string_equal(apm_units_bytes(12, 0, b, sizeof(b)), "12 B");
    assert_string_equal(apm_units_bytes(1023, 0, b, sizeof(b)), "1023 B");
    assert_string_equal(apm_units_bytes(1536, 0, b, sizeof(b)), "1.5 KiB");
    assert_string_equal(apm_units_bytes(900 * KIB, 0, b, sizeof(b)), "900 KiB");
    assert_string_equal(apm_units_bytes(38.4 * MIB, 0, b, sizeof(b)), "38 MiB");
    assert_string_equal(apm_units_bytes(512 * MIB, 0, b, sizeof(b)), "512 MiB");
    assert_string_equal(apm_units_bytes(1.5 * GIB, 0, b, sizeof(b)), "1.5 GiB");
    assert_string_equal(apm_units_bytes(2 * GIB, 0, b, sizeof(b)), "2.0 GiB");
    assert_string_equal(apm_units_bytes(300 * GIB, 0, b, sizeof(b)), "300 GiB");
    assert_string_equal(apm_units_bytes(3 * TIB, 0, b, sizeof(b)), "3.0 TiB");
    /* TiB is the largest unit: beyond it the number grows. */
    assert_string_equal(apm_units_bytes(2048 * TIB, 0, b, sizeof(b)), "2048 TiB");
}

static void test_units_bytes_rounding_never_shows_1024_or_10_0(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(apm_units_bytes(1023.7, 0, b, sizeof(b)), "1.0 KiB");
    assert_string_equal(apm_units_bytes(1023.6 * MIB, 0, b, sizeof(b)), "1.0 GiB");
    assert_string_equal(apm_units_bytes(9.96 * MIB, 0, b, sizeof(b)), "10 MiB");
    assert_string_equal(apm_units_bytes(9.94 * MIB, 0, b, sizeof(b)), "9.9 MiB");
}

static void test_units_bytes_signs_and_non_numbers(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(apm_units_bytes(-3 * MIB, 0, b, sizeof(b)), "-3.0 MiB");
    assert_string_equal(apm_units_bytes(3 * MIB, APM_UNITS_PLUS, b, sizeof(b)), "+3.0 MiB");
    assert_string_equal(apm_units_bytes(-3 * MIB, APM_UNITS_PLUS, b, sizeof(b)), "-3.0 MiB");
    /* What rounds to zero has no sign. */
    assert_string_equal(apm_units_bytes(-0.2, APM_UNITS_PLUS, b, sizeof(b)), "0 B");
    assert_string_equal(apm_units_bytes(NAN, 0, b, sizeof(b)), "-");
    assert_string_equal(apm_units_bytes(INFINITY, 0, b, sizeof(b)), "-");
}

static void test_units_rate_is_per_hour_in_the_same_family(void **state)
{
    (void)state;
    char b[32];
    /* The two tables of the demo: 14354.5 MB/h is 13.4 GiB/h. */
    assert_string_equal(apm_units_rate(14354.5e6 / 3600, APM_UNITS_PLUS, b, sizeof(b)),
                        "+13 GiB/h");
    assert_string_equal(apm_units_rate(38 * MIB / 3600, 0, b, sizeof(b)), "38 MiB/h");
    assert_string_equal(apm_units_rate(-1.5 * MIB / 3600, APM_UNITS_PLUS, b, sizeof(b)),
                        "-1.5 MiB/h");
    /* Fast rates stay per hour: one unit family, no switch to per minute. */
    assert_string_equal(apm_units_rate(200 * GIB / 3600, 0, b, sizeof(b)), "200 GiB/h");
    assert_string_equal(apm_units_rate(NAN, 0, b, sizeof(b)), "-");
}

static void test_units_value_follows_the_unit(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(apm_units_value(28, APM_UNIT_COUNT, 0, b, sizeof(b)), "28");
    assert_string_equal(apm_units_value(5, APM_UNIT_COUNT, APM_UNITS_PLUS, b, sizeof(b)), "+5");
    assert_string_equal(apm_units_value(-5, APM_UNIT_COUNT, APM_UNITS_PLUS, b, sizeof(b)), "-5");
    assert_string_equal(apm_units_value(28, APM_UNIT_BYTES, 0, b, sizeof(b)), "28 B");
    assert_string_equal(apm_units_value(5 * 3600 + 600, APM_UNIT_SECONDS, 0, b, sizeof(b)),
                        "5h 10m");
    assert_string_equal(apm_units_value(NAN, APM_UNIT_COUNT, 0, b, sizeof(b)), "-");
}

static void test_units_metrics_have_their_units(void **state)
{
    (void)state;
    assert_int_equal(apm_metric_unit(APM_METRIC_RSS), APM_UNIT_BYTES);
    assert_int_equal(apm_metric_unit(APM_METRIC_SITE_SIZE), APM_UNIT_BYTES);
    assert_int_equal(apm_metric_unit(APM_METRIC_SITE_COUNT), APM_UNIT_COUNT);
    assert_int_equal(apm_metric_unit(APM_METRIC_GC_COLLECTIONS), APM_UNIT_COUNT);
    assert_int_equal(apm_metric_unit(APM_METRIC_GC_GARBAGE), APM_UNIT_COUNT);
    assert_string_equal(apm_units_name(apm_metric_unit(APM_METRIC_GC_COLLECTED)), "count");
    assert_string_equal(apm_units_name(APM_UNIT_BYTES), "bytes");
    assert_string_equal(apm_units_name(APM_UNIT_SECONDS), "seconds");
    /* Every metric has a name and a unit named for the API. */
    for (int m = 1; m < APM_METRIC_COUNT; m++) {
        assert_non_null(apm_metric_name((enum apm_metric)m));
        assert_non_null(apm_units_name(apm_metric_unit((enum apm_metric)m)));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_bytes_whole_from_ten_one_decimal_below),
        cmocka_unit_test(test_units_bytes_rounding_never_shows_1024_or_10_0),
        cmocka_unit_test(test_units_bytes_signs_and_non_numbers),
        cmocka_unit_test(test_units_rate_is_per_hour_in_the_same_family),
        cmocka_unit_test(test_units_value_follows_the_unit),
        cmocka_unit_test(test_units_metrics_have_their_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
