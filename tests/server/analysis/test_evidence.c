/*
 * The evidence beyond RSS: what confirms a leak, and what never does (a cache
 * still filling).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "server/analysis/evidence.h"

#define RATE 10e6

static struct apm_verdict growing(enum apm_doubt doubt, bool steady)
{
    struct apm_verdict v = {.cls = APM_CLASS_GROWING,
                            .confidence = 0.5,
                            .rate = RATE,
                            .t_last = 1000,
                            .growth_start_t = 930,
                            .steady = steady,
                            .doubt = doubt,
                            .doubt_until_t = 1240};
    return v;
}

static void test_evidence_a_site_in_line_with_most_of_the_growth_confirms(void **state)
{
    (void)state;
    struct apm_verdict v = growing(APM_DOUBT_EVIDENCE, true);
    struct apm_evidence_facts f = {
        .site = "app.py:12", .site_rate = 0.95 * RATE, .site_line = true};
    struct apm_evidence ev;
    apm_evidence_judge(&v, &f, &ev);
    assert_true(ev.grows);
    assert_true(ev.site_explains);
    assert_true(fabs(ev.site_share - 0.95) < 1e-9);
    assert_int_equal(ev.leak, APM_CONFIRM_SITE);
    assert_string_equal(apm_evidence_confirm_name(ev.leak), "python-site");
}

static void test_evidence_a_site_does_not_lift_a_warmup_doubt(void **state)
{
    (void)state;
    /* A cache filling looks the same as a leak at its line until it stops. */
    struct apm_verdict v = growing(APM_DOUBT_WARMUP, true);
    struct apm_evidence_facts f = {.site = "app.py:12", .site_rate = RATE, .site_line = true};
    struct apm_evidence ev;
    apm_evidence_judge(&v, &f, &ev);
    assert_true(ev.site_explains);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
}

static void test_evidence_needs_a_steady_rate_a_line_and_most_of_the_growth(void **state)
{
    (void)state;
    struct apm_evidence ev;
    struct apm_evidence_facts f = {.site = "app.py:12", .site_rate = RATE, .site_line = true};
    struct apm_verdict v = growing(APM_DOUBT_STEP, false);
    apm_evidence_judge(&v, &f, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
    v = growing(APM_DOUBT_STEP, true);
    f.site_line = false; /* two points: a rate, not yet a line */
    apm_evidence_judge(&v, &f, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
    f.site_line = true;
    f.site_rate = 0.3 * RATE;
    apm_evidence_judge(&v, &f, &ev);
    assert_false(ev.site_explains);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
    apm_evidence_judge(&v, NULL, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
    assert_true(ev.site_share == 0);
}

/* A start-up growth explained by one site is trusted once it has run long enough; a fill is not. */
static void test_evidence_a_site_makes_a_long_enough_startup_growth_urgent(void **state)
{
    (void)state;
    struct apm_verdict v = growing(APM_DOUBT_WARMUP, false);
    v.has_forecast = true;
    v.limit = 24e9;
    v.growth_start_t = v.t_last - 90;
    v.forecast_t = v.t_last + 2400;
    v.forecast_lo_t = v.t_last + 2300;
    v.forecast_hi_t = INFINITY;
    struct apm_evidence_facts f = {.site = "app.py:12", .site_rate = RATE, .site_line = true};
    struct apm_evidence ev;
    apm_evidence_judge(&v, &f, &ev);
    assert_true(ev.site_steady);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE); /* urgent, not yet called a leak */
    assert_false(apm_verdict_exhausts_within(&v, 6 * 3600.0));
    assert_true(apm_evidence_exhausts_within(&v, &ev, 6 * 3600.0));
    assert_false(apm_evidence_exhausts_within(&v, &ev, 1800.0));
    /* A cache that filled for 40 s at the same rate has not run long enough. */
    v.growth_start_t = v.t_last - 40;
    apm_evidence_judge(&v, &f, &ev);
    assert_false(ev.site_steady);
    assert_false(apm_evidence_exhausts_within(&v, &ev, 6 * 3600.0));
    /* Without the site in line, the analysis's own condition only. */
    v.growth_start_t = v.t_last - 90;
    f.site_line = false;
    apm_evidence_judge(&v, &f, &ev);
    assert_false(ev.site_steady);
    assert_false(apm_evidence_exhausts_within(&v, &ev, 6 * 3600.0));
}

static void test_evidence_a_restart_at_the_limit_confirms_a_steady_growth(void **state)
{
    (void)state;
    struct apm_verdict v = growing(APM_DOUBT_WARMUP, true);
    struct apm_evidence_facts f = {.restarted_at_limit = true};
    struct apm_evidence ev;
    apm_evidence_judge(&v, &f, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_RESTART);
    v.steady = false;
    apm_evidence_judge(&v, &f, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
}

static void test_evidence_leaves_other_classes_to_the_analysis(void **state)
{
    (void)state;
    struct apm_evidence_facts f = {.site = "app.py:12", .site_rate = RATE, .site_line = true};
    struct apm_evidence ev;
    struct apm_verdict v = {.cls = APM_CLASS_LEAK, .confidence = 0.9, .rate = RATE};
    apm_evidence_judge(&v, &f, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_VERDICT);
    assert_true(ev.grows);
    v.cls = APM_CLASS_WARMUP;
    apm_evidence_judge(&v, &f, &ev);
    assert_int_equal(ev.leak, APM_CONFIRM_NONE);
    assert_false(ev.grows);
    v.cls = APM_CLASS_STABLE;
    v.rate = 0;
    apm_evidence_judge(&v, &f, &ev);
    assert_false(ev.grows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_evidence_a_site_in_line_with_most_of_the_growth_confirms),
        cmocka_unit_test(test_evidence_a_site_does_not_lift_a_warmup_doubt),
        cmocka_unit_test(test_evidence_needs_a_steady_rate_a_line_and_most_of_the_growth),
        cmocka_unit_test(test_evidence_a_site_makes_a_long_enough_startup_growth_urgent),
        cmocka_unit_test(test_evidence_a_restart_at_the_limit_confirms_a_steady_growth),
        cmocka_unit_test(test_evidence_leaves_other_classes_to_the_analysis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
