/*
 * The analyzer on generated series whose truth is known: shapes that must
 * never be called leaks, leaks that must be found, and forecasts that must be
 * close to the real time of exhaustion.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/analysis/analysis.h"

#define MB (1024.0 * 1024.0)

/* A small deterministic generator (xorshift) so that every run sees the same noise. */
struct rng {
    uint64_t s;
};

static double uniform(struct rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (double)(r->s >> 11) / 9007199254740992.0;
}

static double noise(struct rng *r, double sd)
{
    double u = uniform(r) + uniform(r) + uniform(r) + uniform(r) - 2.0;
    return u * sd * 1.7320508;
}

typedef double (*shape_fn)(double t, struct rng *r);

struct run {
    bool alerted;
    bool dropped;    /* an alert raised went off again while the series still ran */
    double t_judged; /* time of the first verdict other than stable; -1 none */
    double t_alert;
    struct apm_verdict at_alert;
    struct apm_verdict last;
};

/* Replays n samples every dt seconds of shape through an analyzer configured by cfg (NULL:
 * defaults). */
static struct run replay_with(const struct apm_analysis_config *cfg, shape_fn shape, size_t n,
                              double dt, double limit)
{
    struct apm_analysis *a = NULL;
    struct rng r = {0x9e3779b97f4a7c15ULL};
    struct run out = {.t_judged = -1};
    assert_int_equal(apm_analysis_new(cfg, &a), 0);
    for (size_t i = 0; i < n; i++) {
        double t = (double)i * dt;
        assert_int_equal(apm_analysis_add(a, t, shape(t, &r), limit), 0);
        struct apm_verdict v;
        assert_int_equal(apm_analysis_verdict(a, &v), 0);
        if (v.cls != APM_CLASS_STABLE && out.t_judged < 0)
            out.t_judged = t;
        if (v.alert && !out.alerted) {
            out.alerted = true;
            out.t_alert = t;
            out.at_alert = v;
        }
        if (out.alerted && !v.alert)
            out.dropped = true;
    }
    assert_int_equal(apm_analysis_verdict(a, &out.last), 0);
    apm_analysis_free(a);
    return out;
}

/* The same through a balanced analyzer with the default configuration. */
static struct run replay(shape_fn shape, size_t n, double dt, double limit)
{
    return replay_with(NULL, shape, n, dt, limit);
}

static double sawtooth(double t, struct rng *r)
{
    double phase = fmod(t, 600.0) / 600.0;
    return 200 * MB + 60 * MB * phase + noise(r, 0.5 * MB);
}

static double spike(double t, struct rng *r)
{
    double v = 200 * MB + noise(r, 1 * MB);
    if (t > 10000 && t < 13000)
        v += 150 * MB;
    return v;
}

static double step(double t, struct rng *r)
{
    return 200 * MB + (t > 15000 ? 80 * MB : 0) + noise(r, 1 * MB);
}

static double warmup(double t, struct rng *r)
{
    return 150 * MB + 150 * MB * (1 - exp(-t / 8000.0)) + noise(r, 1 * MB);
}

static double leak_under_sawtooth(double t, struct rng *r)
{
    double phase = fmod(t, 900.0) / 900.0;
    return 200 * MB + 800.0 * t + 80 * MB * phase + noise(r, 1 * MB);
}

static double linear_leak(double t, struct rng *r)
{
    return 100 * MB + 2000.0 * t + noise(r, 1 * MB);
}

/* 200 B/s under a 20 MB sawtooth: 3 % of the level in a day, exhaustion months away. */
static double creeping_leak(double t, struct rng *r)
{
    double phase = fmod(t, 900.0) / 900.0;
    return 500 * MB + 200.0 * t + 20 * MB * phase + noise(r, 0.5 * MB);
}

/* 100 B/s under noise of 4 MB: a day's growth is twice the noise's spread. */
static double buried_leak(double t, struct rng *r)
{
    return 300 * MB + 100.0 * t + noise(r, 4 * MB);
}

static double buried_flat(double t, struct rng *r)
{
    (void)t;
    return 300 * MB + noise(r, 4 * MB);
}

/* A cache fills by 150 MB (time constant 3000 s), then 150 B/s keep growing. */
static double slow_leak_after_warmup(double t, struct rng *r)
{
    return 200 * MB + 150 * MB * (1 - exp(-t / 3000.0)) + 150.0 * t + noise(r, 1 * MB);
}

/* A cache that fills at 8 kB/s from the start for 10 hours (to 38 % of its limit), then stays. */
static double linear_fill(double t, struct rng *r)
{
    return 100 * MB + 8000.0 * (t < 36000 ? t : 36000) + noise(r, 1 * MB);
}

/* A leak from the start whose rate halves after 14 hours (the process slows down). */
static double slowing_leak(double t, struct rng *r)
{
    double grown = t > 10000 ? 2000.0 * (t - 10000) : 0;
    return 100 * MB + grown - (t > 50000 ? 1000.0 * (t - 50000) : 0) + noise(r, 1 * MB);
}

static void test_analysis_pure_sawtooth_is_not_a_leak(void **state)
{
    (void)state;
    struct run r = replay(sawtooth, 6000, 10, 600 * MB);
    assert_false(r.alerted);
    assert_int_not_equal(r.last.cls, APM_CLASS_LEAK);
}

static void test_analysis_recovering_spike_is_not_a_leak(void **state)
{
    (void)state;
    struct run r = replay(spike, 5000, 10, 600 * MB);
    assert_false(r.alerted);
}

static void test_analysis_step_plateau_is_not_a_leak(void **state)
{
    (void)state;
    struct run r = replay(step, 5000, 10, 600 * MB);
    assert_false(r.alerted);
    assert_int_not_equal(r.last.cls, APM_CLASS_LEAK);
}

static void test_analysis_plateauing_warmup_is_not_a_leak(void **state)
{
    (void)state;
    struct run r = replay(warmup, 6000, 10, 600 * MB);
    assert_false(r.alerted);
    assert_int_not_equal(r.last.cls, APM_CLASS_LEAK);
}

/*
 * Growth since the start may be a warm-up whose plateau has not shown: it is watched for 80 % of
 * the time it leaves before the limit. This fill stops a third of the way to its limit.
 */
static void test_analysis_linear_fill_that_levels_off_is_not_a_leak(void **state)
{
    (void)state;
    struct run r = replay(linear_fill, 10000, 10, 1024 * MB);
    assert_false(r.alerted);
}

/* Once raised, an alert holds while the series still grows, though slower than urgency wants. */
static void test_analysis_alert_holds_when_the_leak_slows(void **state)
{
    (void)state;
    struct run r = replay(slowing_leak, 12000, 10, 500 * MB);
    assert_true(r.alerted);
    assert_true(r.t_alert < 50000);
    assert_false(r.dropped);
    assert_int_equal(r.last.cls, APM_CLASS_LEAK);
}

/* 8 kB/s from 100 MB toward 1 GiB: too fast for the creeping rule, so urgency decides. */
static double fast_leak(double t, struct rng *r)
{
    return 100 * MB + 8000.0 * t + noise(r, 1 * MB);
}

/* The time at which fast_leak, from the process's start, first alerts; -1 never. */
static double leak_from_start_alert(bool after_exhaustion)
{
    struct apm_analysis_config cfg;
    apm_analysis_config_init(&cfg);
    cfg.after_exhaustion = after_exhaustion;
    struct run r = replay_with(&cfg, fast_leak, 20000, 10, 1024 * MB);
    return r.alerted ? r.t_alert : -1;
}

/* A process that replaced one stopped at its limit is not given the warm-up's benefit of doubt. */
static void test_analysis_restart_after_exhaustion_alerts_sooner(void **state)
{
    (void)state;
    double truth = (1024 * MB - 100 * MB) / 8000.0;
    double fresh = leak_from_start_alert(false), again = leak_from_start_alert(true);
    assert_true(fresh > 0 && again > 0);
    assert_true(again < 0.6 * fresh);
    assert_true(fresh < truth);
}

static void test_analysis_slow_leak_under_large_sawtooth_is_found(void **state)
{
    (void)state;
    /* The floor grows 800 B/s under an 80 MB sawtooth; the limit is 300 MB above the peaks. */
    struct run r = replay(leak_under_sawtooth, 20000, 10, 600 * MB);
    assert_true(r.alerted);
    assert_int_equal(r.at_alert.cls, APM_CLASS_LEAK);
    assert_true(r.at_alert.rate > 400 && r.at_alert.rate < 1600);
}

/*
 * Exhaustion lies about 90 times the history away: a growth since the start watched for so
 * little of the time it leaves may still be a warm-up. It is shown as growing, with its rate and
 * the time the doubt ends, not as stable and not as a leak.
 */
static void test_analysis_creeping_leak_far_from_limit_is_growing(void **state)
{
    (void)state;
    struct run r = replay(creeping_leak, 8640, 10, 2000 * MB);
    assert_false(r.alerted);
    assert_int_equal(r.last.cls, APM_CLASS_GROWING);
    assert_int_equal(r.last.doubt, APM_DOUBT_WARMUP);
    assert_true(r.last.doubt_until_t > r.last.t_last);
    assert_true(r.last.rate > 100 && r.last.rate < 400);
    assert_true(r.last.has_forecast);
    assert_true(r.last.forecast_t > 10 * r.last.t_last);
}

/*
 * The limit is about five histories away and the day's growth twice the noise's spread: the
 * evidence of the pooled floors (their z corrected for autocorrelation) and of every sample
 * grows with the day; no verdict comes before half of it, and when one comes it is a leak,
 * which this is. The same noise without growth stays quiet.
 */
static void test_analysis_slow_leak_buried_in_noise_is_no_verdict_early(void **state)
{
    (void)state;
    struct run r = replay(buried_leak, 8640, 10, 350 * MB);
    print_message("buried leak: alert at %.0f s\n", r.alerted ? r.t_alert : -1);
    assert_true(!r.alerted || (r.t_alert > 0.5 * 86400 && r.at_alert.cls == APM_CLASS_LEAK));
    struct run flat = replay(buried_flat, 8640, 10, 350 * MB);
    assert_false(flat.alerted);
    assert_int_not_equal(flat.last.cls, APM_CLASS_GROWING);
    assert_int_not_equal(flat.last.cls, APM_CLASS_LEAK);
}

static void test_analysis_slow_leak_after_warmup_is_found_after_it(void **state)
{
    (void)state;
    /* The whole history is concave; the leak shows in the window after the warm-up. */
    struct run r = replay(slow_leak_after_warmup, 8640, 10, 450 * MB);
    assert_true(r.alerted);
    assert_true(r.t_alert > 5 * 3000.0);
    assert_int_equal(r.at_alert.cls, APM_CLASS_LEAK);
}

static void test_analysis_linear_leak_forecast_is_close(void **state)
{
    (void)state;
    double limit = 500 * MB;
    double truth = (limit - 100 * MB) / 2000.0;
    struct run r = replay(linear_leak, 20000, 10, limit);
    assert_true(r.alerted);
    assert_true(r.at_alert.has_forecast);
    double err = fabs(r.at_alert.forecast_t - truth) / (truth - r.t_alert);
    assert_true(err < 0.12);
    assert_true(r.at_alert.forecast_lo_t <= r.at_alert.forecast_t);
    assert_true(r.at_alert.forecast_hi_t >= r.at_alert.forecast_t);
    assert_true(r.t_alert < truth * 0.5);
}

#define GIB (1024.0 * MB)

/* A service at 50 MB that starts leaking 10 MB/s after 10 s, 4 KiB pages. */
static double service_leak(double t, struct rng *r)
{
    double v = 50 * MB + noise(r, 0.2 * MB) + (t > 10 ? 10 * MB * (t - 10) : 0);
    return floor(v / 4096) * 4096;
}

/* The same growth for 40 s only: a cache that fills and stops. */
static double cache_fill(double t, struct rng *r)
{
    double grown = t < 10 ? 0 : (t < 50 ? t - 10 : 40);
    return floor((50 * MB + noise(r, 0.2 * MB) + 10 * MB * grown) / 4096) * 4096;
}

/*
 * Replays shape every dt seconds up to t_end; the first time a built-in rule would fire, and in
 * *growing the first time the verdict showed the growth with its rate and a forecast.
 */
static double first_builtin(shape_fn shape, double dt, double t_end, double limit,
                            struct apm_verdict *at, double *growing)
{
    struct apm_analysis *a = NULL;
    struct rng r = {7};
    double first = -1;
    if (growing)
        *growing = -1;
    assert_int_equal(apm_analysis_new(NULL, &a), 0);
    for (double t = 0; t <= t_end; t += dt) {
        assert_int_equal(apm_analysis_add(a, t, shape(t, &r), limit), 0);
        struct apm_verdict v;
        apm_analysis_verdict(a, &v);
        if (growing && *growing < 0 && v.rate > 0 && v.has_forecast &&
            (v.cls == APM_CLASS_GROWING || v.cls == APM_CLASS_LEAK)) {
            *growing = t;
            if (at)
                *at = v;
        }
        if (first < 0 && apm_verdict_builtin_alert(&v))
            first = t;
        /* Steady growth for a minute is never shown as stable. */
        if (shape == service_leak && dt == 1 && t >= 70)
            assert_int_not_equal(v.cls, APM_CLASS_STABLE);
    }
    apm_analysis_free(a);
    return first;
}

/*
 * A service that leaks 10 MB/s 10 s after it started, no cgroup limit (24 GiB of host): within
 * two minutes the verdict shows the growth, its rate and a forecast within the exhaustion
 * rule's horizon, with a warm-up doubt: from the RSS alone, growth since a process started is
 * a start-up fill until it has lasted startup_p of its time to the limit (the collector lifts
 * the doubt sooner when a Python site explains the growth). The RSS alone still raises the
 * exhaustion alert before the memory runs out.
 */
static void test_analysis_fast_leak_shown_within_two_minutes(void **state)
{
    (void)state;
    struct apm_verdict v;
    double growing;
    double t = first_builtin(service_leak, 1, 3000, 24 * GIB, &v, &growing);
    double oom = 10 + (24 * GIB - 50 * MB) / (10 * MB);
    print_message(
        "growing with a forecast at %.0f s, exhaustion alert at %.0f s, limit at %.0f s\n", growing,
        t, oom);
    assert_true(growing > 10 && growing <= 130);
    assert_int_equal(v.cls, APM_CLASS_GROWING);
    assert_int_equal(v.doubt, APM_DOUBT_WARMUP);
    assert_true(v.growth_start_t >= 0 && v.growth_start_t <= 30);
    assert_true(fabs(v.rate - 10 * MB) < 1 * MB);
    assert_true(v.forecast_lo_t <= v.forecast_t && v.forecast_t <= v.forecast_hi_t);
    assert_true(v.forecast_lo_t - v.t_last <= APM_EXHAUSTION_RULE_HORIZON_S);
    assert_true(t > growing && t < oom);
}

/*
 * With the start-up doubt configured off (`startup = 0` in [analysis]), the RSS alone trusts the
 * same ramp's rate within two minutes of its start, and the 40 s fill still gets no alert.
 */
static void test_analysis_fast_leak_without_startup_doubt(void **state)
{
    (void)state;
    struct apm_analysis_config cfg;
    apm_analysis_config_init(&cfg);
    cfg.startup_s = 0;
    shape_fn shapes[2] = {service_leak, cache_fill};
    for (int k = 0; k < 2; k++) {
        struct apm_analysis *a = NULL;
        struct rng r = {7};
        double first = -1;
        struct apm_verdict at = {0};
        assert_int_equal(apm_analysis_new(&cfg, &a), 0);
        for (double t = 0; t <= 1800 && first < 0; t += 1) {
            assert_int_equal(apm_analysis_add(a, t, shapes[k](t, &r), 24 * GIB), 0);
            struct apm_verdict v;
            apm_analysis_verdict(a, &v);
            if (apm_verdict_builtin_alert(&v)) {
                first = t;
                at = v;
            }
        }
        apm_analysis_free(a);
        print_message("%s: first alert at %.0f s\n", k == 0 ? "leak" : "fill", first);
        if (k == 0) {
            assert_true(first > 10 && first <= 130);
            assert_true(at.steady);
            assert_true(fabs(at.rate - 10 * MB) < 1 * MB);
        } else {
            assert_true(first < 0);
        }
    }
}

static void test_analysis_cache_filling_for_forty_seconds_gets_no_alert(void **state)
{
    (void)state;
    assert_true(first_builtin(cache_fill, 1, 1800, 24 * GIB, NULL, NULL) < 0);
}

/* The fast leak at 5 s and 10 s: shown later in samples, not much later in time. */
static void test_analysis_fast_leak_at_coarser_sampling(void **state)
{
    (void)state;
    double g1, g5, g10;
    double t1 = first_builtin(service_leak, 1, 3000, 24 * GIB, NULL, &g1);
    double t5 = first_builtin(service_leak, 5, 3000, 24 * GIB, NULL, &g5);
    double t10 = first_builtin(service_leak, 10, 3000, 24 * GIB, NULL, &g10);
    print_message("growing at %.0f / %.0f / %.0f s, alert at %.0f / %.0f / %.0f s\n", g1, g5, g10,
                  t1, t5, t10);
    assert_true(g1 > 0 && g5 > 0 && g10 > 0);
    assert_true(g5 <= 4 * g1 && g10 <= 6 * g1);
    assert_true(t1 > 0 && t5 > 0 && t10 > 0);
    assert_true(t5 <= 1.5 * t1 && t10 <= 1.5 * t1);
}

/*
 * One trace, three densities: a slow leak under a large sawtooth sampled every 10 s, and the same
 * thinned to every 5th and every 10th sample. Thinned, the evidence is weaker: the alert may come
 * later or not yet, but a thinned run never contradicts the full one. It is a leak whose forecast
 * lies in the full run's band (and the full run's in its own), or growing at the same rate.
 */
static void test_analysis_same_trace_at_three_densities_agrees(void **state)
{
    (void)state;
    struct run r[3];
    const size_t every[3] = {1, 5, 10};
    for (size_t i = 0; i < 3; i++) {
        r[i] = replay(leak_under_sawtooth, 20000 / every[i], 10.0 * (double)every[i], 600 * MB);
        print_message("every %zu: alert at %.0f s, forecast %.0f [%.0f, %.0f], class %s\n",
                      every[i], r[i].t_alert, r[i].at_alert.forecast_t, r[i].at_alert.forecast_lo_t,
                      r[i].at_alert.forecast_hi_t, apm_analysis_class_name(r[i].last.cls));
    }
    assert_true(r[0].alerted);
    assert_int_equal(r[0].last.cls, APM_CLASS_LEAK);
    for (size_t i = 1; i < 3; i++) {
        if (!r[i].alerted) {
            /* Too little evidence for a verdict yet: growing at the same rate, never otherwise. */
            assert_int_equal(r[i].last.cls, APM_CLASS_GROWING);
            assert_true(r[i].last.rate > 0.5 * r[0].last.rate &&
                        r[i].last.rate < 2 * r[0].last.rate);
            continue;
        }
        assert_int_equal(r[i].last.cls, APM_CLASS_LEAK);
        assert_true(r[i].t_alert <= 2 * r[0].t_alert);
        assert_true(r[i].at_alert.forecast_t >= r[0].at_alert.forecast_lo_t &&
                    r[i].at_alert.forecast_t <= r[0].at_alert.forecast_hi_t);
        assert_true(r[0].at_alert.forecast_t >= r[i].at_alert.forecast_lo_t &&
                    r[0].at_alert.forecast_t <= r[i].at_alert.forecast_hi_t);
    }
}

static void test_analysis_gaps_and_jitter_are_handled(void **state)
{
    (void)state;
    struct apm_analysis *a = NULL;
    struct rng r = {12345};
    double limit = 500 * MB, truth = (limit - 100 * MB) / 2000.0;
    double t_alert = -1;
    struct apm_verdict at = {0};
    assert_int_equal(apm_analysis_new(NULL, &a), 0);
    for (size_t i = 0; i < 20000; i++) {
        double t = (double)i * 10 + noise(&r, 2);
        if (i >= 3000 && i < 4080)
            continue; /* a three-hour gap */
        if (uniform(&r) < 0.1)
            continue; /* dropped samples */
        assert_int_equal(apm_analysis_add(a, t, linear_leak(t, &r), limit), 0);
        struct apm_verdict v;
        apm_analysis_verdict(a, &v);
        if (v.alert && t_alert < 0) {
            t_alert = t;
            at = v;
        }
    }
    apm_analysis_free(a);
    assert_true(t_alert > 0);
    assert_true(at.has_forecast);
    assert_true(fabs(at.forecast_t - truth) / (truth - t_alert) < 0.2);
}

static void test_analysis_rejects_bad_input(void **state)
{
    (void)state;
    struct apm_analysis *a = NULL;
    struct apm_analysis_config cfg;
    apm_analysis_config_init(&cfg);
    cfg.history_buckets = 7;
    assert_int_equal(apm_analysis_new(&cfg, &a), -EINVAL);
    assert_null(a);
    assert_int_equal(apm_analysis_new(NULL, &a), 0);
    assert_int_equal(apm_analysis_add(a, NAN, 1, 0), -EINVAL);
    assert_int_equal(apm_analysis_add(a, 1, -1, 0), -EINVAL);
    assert_int_equal(apm_analysis_add(a, 10, 1, 0), 0);
    assert_int_equal(apm_analysis_add(a, 5, 1, 0), 0); /* earlier time: jitter, accepted */
    struct apm_verdict v;
    assert_int_equal(apm_analysis_verdict(a, &v), 0);
    assert_int_equal(v.samples, 2);
    assert_int_equal(v.cls, APM_CLASS_STABLE);
    assert_false(v.alert);
    apm_analysis_free(a);
    apm_analysis_free(NULL);
}

static void test_analysis_names_round_trip(void **state)
{
    (void)state;
    enum apm_sensitivity s;
    assert_int_equal(apm_analysis_sensitivity_parse("quiet", &s), 0);
    assert_string_equal(apm_analysis_sensitivity_name(s), "quiet");
    assert_true(apm_analysis_sensitivity_parse("loud", &s) < 0);
    assert_string_equal(apm_analysis_class_name(APM_CLASS_WARMUP), "warmup");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analysis_pure_sawtooth_is_not_a_leak),
        cmocka_unit_test(test_analysis_recovering_spike_is_not_a_leak),
        cmocka_unit_test(test_analysis_step_plateau_is_not_a_leak),
        cmocka_unit_test(test_analysis_plateauing_warmup_is_not_a_leak),
        cmocka_unit_test(test_analysis_linear_fill_that_levels_off_is_not_a_leak),
        cmocka_unit_test(test_analysis_alert_holds_when_the_leak_slows),
        cmocka_unit_test(test_analysis_restart_after_exhaustion_alerts_sooner),
        cmocka_unit_test(test_analysis_slow_leak_under_large_sawtooth_is_found),
        cmocka_unit_test(test_analysis_creeping_leak_far_from_limit_is_growing),
        cmocka_unit_test(test_analysis_slow_leak_buried_in_noise_is_no_verdict_early),
        cmocka_unit_test(test_analysis_slow_leak_after_warmup_is_found_after_it),
        cmocka_unit_test(test_analysis_linear_leak_forecast_is_close),
        cmocka_unit_test(test_analysis_fast_leak_shown_within_two_minutes),
        cmocka_unit_test(test_analysis_fast_leak_without_startup_doubt),
        cmocka_unit_test(test_analysis_cache_filling_for_forty_seconds_gets_no_alert),
        cmocka_unit_test(test_analysis_fast_leak_at_coarser_sampling),
        cmocka_unit_test(test_analysis_same_trace_at_three_densities_agrees),
        cmocka_unit_test(test_analysis_gaps_and_jitter_are_handled),
        cmocka_unit_test(test_analysis_rejects_bad_input),
        cmocka_unit_test(test_analysis_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
