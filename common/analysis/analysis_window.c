#include "common/analysis/analysis_window.h"

#include "common/analysis/analysis.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/analysis/analysis.h"
#include "common/analysis/stats.h"

/* Windows are judged on at most this many points; longer ones are pooled. */
#define MAX_POINTS 64
/* RSS moves in pages; residual scales below one page are quantisation. */
#define PAGE_BYTES 4096.0

void apm_analysis_window_tuning(int s, struct apm_analysis_tuning *t)
{
    /* Balanced: tuned on the even-numbered synthetic and half the real leakbench traces. */
    *t = (struct apm_analysis_tuning){
        .z_min = 3.0,
        .noise_k = 3.0,
        .rel_min = 0.01,
        .decel_max = 0.8,
        .step_sse_max = 0.12,
        .env_frac = 0.125,
        .min_window = 16,
        .confirm = 3,
        .confirm_share = 0.025,
        .anchor_mix = 1.0,
        .forecast_z = 1.282,
        .forecast_drift = 0.17,
        .rho_max = 0.9,
        .pre_z = 2.0,
        .pre_slope_frac = 0.3,
        .pre_span = 0.5,
        .flat_share = 0.25,
        .urgency = 0.8,
        .urgency_all = 0.1,
        .drawdown_margin = 0.75,
        .creep_age = 0.1,
        .creep_age_after = 0.05,
        .creep_far = 4.0,
        .creep_t = 25,
        .creep_max = 0.1,
        .creep_max_after = 0.2,
        .creep_decel = 0.8,
        .creep_z = 3.0,
        .creep_snr = 10.0,
        .creep_ramp = 0.35,
        .creep_horizon = 0.0,
        .creep_floor_snr = 5.0,
        .creep_floor = 1.0,
        .creep_after_decel = 0.6,
        .creep_after_steady = 0.95,
        .steady_spread = 2.0,
        .steady_z = 8.0,
        .steady_keep = 0.8,
        .steady_p = 0.03,
        .startup_s = APM_ANALYSIS_STARTUP_S,
        .clear_snr = 20,
        .startup_p = 0.9,
    };
    if (s == APM_SENSITIVITY_EARLY) {
        t->z_min = 2.5;
        t->confirm = 2;
        t->urgency = 0.5;
        t->urgency_all = 0.05;
    } else if (s == APM_SENSITIVITY_QUIET) {
        t->z_min = 3.5;
        t->confirm = 4;
        t->urgency = 1.0;
        t->urgency_all = 0.15;
        t->creep_max = 0.1;
        t->creep_max_after = 0.1;
    }
}

/* The thresholds that may be overridden by name (all doubles). */
static const struct {
    const char *name;
    size_t off;
} knobs[] = {
    {"z_min", offsetof(struct apm_analysis_tuning, z_min)},
    {"noise_k", offsetof(struct apm_analysis_tuning, noise_k)},
    {"rel_min", offsetof(struct apm_analysis_tuning, rel_min)},
    {"decel_max", offsetof(struct apm_analysis_tuning, decel_max)},
    {"step_sse_max", offsetof(struct apm_analysis_tuning, step_sse_max)},
    {"env_frac", offsetof(struct apm_analysis_tuning, env_frac)},
    {"anchor_mix", offsetof(struct apm_analysis_tuning, anchor_mix)},
    {"forecast_drift", offsetof(struct apm_analysis_tuning, forecast_drift)},
    {"forecast_z", offsetof(struct apm_analysis_tuning, forecast_z)},
    {"rho_max", offsetof(struct apm_analysis_tuning, rho_max)},
    {"pre_z", offsetof(struct apm_analysis_tuning, pre_z)},
    {"pre_slope_frac", offsetof(struct apm_analysis_tuning, pre_slope_frac)},
    {"urgency", offsetof(struct apm_analysis_tuning, urgency)},
    {"drawdown_margin", offsetof(struct apm_analysis_tuning, drawdown_margin)},
    {"urgency_all", offsetof(struct apm_analysis_tuning, urgency_all)},
    {"creep_age", offsetof(struct apm_analysis_tuning, creep_age)},
    {"creep_far", offsetof(struct apm_analysis_tuning, creep_far)},
    {"creep_max_after", offsetof(struct apm_analysis_tuning, creep_max_after)},
    {"creep_t", offsetof(struct apm_analysis_tuning, creep_t)},
    {"creep_max", offsetof(struct apm_analysis_tuning, creep_max)},
    {"creep_decel", offsetof(struct apm_analysis_tuning, creep_decel)},
    {"creep_z", offsetof(struct apm_analysis_tuning, creep_z)},
    {"creep_snr", offsetof(struct apm_analysis_tuning, creep_snr)},
    {"creep_ramp", offsetof(struct apm_analysis_tuning, creep_ramp)},
    {"creep_horizon", offsetof(struct apm_analysis_tuning, creep_horizon)},
    {"creep_floor_snr", offsetof(struct apm_analysis_tuning, creep_floor_snr)},
    {"creep_after_decel", offsetof(struct apm_analysis_tuning, creep_after_decel)},
    {"creep_after_steady", offsetof(struct apm_analysis_tuning, creep_after_steady)},
    {"steady_spread", offsetof(struct apm_analysis_tuning, steady_spread)},
    {"steady_z", offsetof(struct apm_analysis_tuning, steady_z)},
    {"steady_keep", offsetof(struct apm_analysis_tuning, steady_keep)},
    {"creep_age_after", offsetof(struct apm_analysis_tuning, creep_age_after)},
    {"flat_share", offsetof(struct apm_analysis_tuning, flat_share)},
    {"clear_snr", offsetof(struct apm_analysis_tuning, clear_snr)},
    {"startup_p", offsetof(struct apm_analysis_tuning, startup_p)},
    {"startup_s", offsetof(struct apm_analysis_tuning, startup_s)},
    {"pre_span", offsetof(struct apm_analysis_tuning, pre_span)},
    {"creep_floor", offsetof(struct apm_analysis_tuning, creep_floor)},
    {"steady_p", offsetof(struct apm_analysis_tuning, steady_p)},
    {"confirm_share", offsetof(struct apm_analysis_tuning, confirm_share)},
};

int apm_analysis_window_tuning_override(struct apm_analysis_tuning *t, const char *spec)
{
    if (!t)
        return -EINVAL;
    while (spec && *spec) {
        const char *eq = strchr(spec, '=');
        if (!eq)
            return -EINVAL;
        size_t len = (size_t)(eq - spec), i;
        for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
            if (strlen(knobs[i].name) == len && strncmp(knobs[i].name, spec, len) == 0)
                break;
        if (i == sizeof(knobs) / sizeof(knobs[0]))
            return -EINVAL;
        char *end;
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || (*end != ',' && *end != '\0') || !isfinite(v))
            return -EINVAL;
        *(double *)((char *)t + knobs[i].off) = v;
        spec = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/*
 * The lowest of the e floors ending at each index in turn, found in one pass
 * (a queue of candidates whose floors rise from its head): the earliest of
 * equal lows before the index, or the index itself when nothing before it is
 * lower. Indices must be visited in order, one after the other.
 */
struct run_min {
    unsigned q[APM_ANALYSIS_SERIES_MAX];
    size_t head, tail;
};

static void run_min_push(struct run_min *r, const double *f, size_t i)
{
    /* Equal floors stay queued: the earliest of them is the one returned. */
    while (r->tail > r->head && f[r->q[r->tail - 1]] > f[i])
        r->tail--;
    r->q[r->tail++] = (unsigned)i;
}

static void run_min_start(struct run_min *r, const double *f, size_t from, size_t to)
{
    r->head = r->tail = 0;
    for (size_t i = from; i < to; i++)
        run_min_push(r, f, i);
}

static size_t run_min_step(struct run_min *r, const double *f, size_t idx, size_t e)
{
    size_t from = idx + 1 >= e ? idx + 1 - e : 0;
    while (r->tail > r->head && r->q[r->head] < from)
        r->head++;
    size_t arg = idx;
    if (r->tail > r->head && f[r->q[r->head]] < f[idx])
        arg = r->q[r->head];
    run_min_push(r, f, idx);
    return arg;
}

/*
 * Builds the window's lower envelope: each point is the lowest floor among
 * the e buckets ending at it, placed at that floor's own time so that a
 * rising envelope is not delayed by the width. Then pools to MAX_POINTS.
 * Returns the number of points written to x and y.
 */
static size_t envelope(const struct apm_analysis_series *s, size_t w, size_t e, double *x,
                       double *y)
{
    size_t base = s->n - w;
    size_t pool = (w + MAX_POINTS - 1) / MAX_POINTS;
    size_t m = 0;
    struct run_min r;

    run_min_start(&r, s->floor, base + 1 >= e ? base + 1 - e : 0, base);
    for (size_t i = 0; i < w; i += pool) {
        double sx = 0, sy = 0;
        size_t k = 0;
        for (size_t j = i; j < i + pool && j < w; j++, k++) {
            size_t idx = base + j;
            size_t arg = run_min_step(&r, s->floor, idx, e);
            sx += s->t[arg];
            sy += s->floor[arg];
        }
        x[m] = sx / (double)k;
        y[m] = sy / (double)k;
        m++;
    }
    return m;
}

/* Theil-Sen slope of x, y[0..n); 0 when undefined. */
static double slope_of(const double *x, const double *y, size_t n, double *scratch)
{
    struct apm_theil_sen ts;
    if (n < 3 || apm_stats_theil_sen(x, y, n, 0, scratch, &ts) < 0)
        return 0;
    return ts.slope;
}

/*
 * True when the buckets before the window may already have grown at a fair
 * share of the window's rate: growth that began before the window (or at the
 * start of the series) is judged as a whole, warm-up included. "May" is a
 * question of evidence: unless Sen's upper bound of the slope before the
 * window lies below pre_slope_frac of the window's slope, growth there is not
 * ruled out, so a short or noisy past is not taken as flat. The past judged
 * is the stretch just before the window (pre_span of its length): a leak
 * after a warm-up has a flat or slower stretch before it, whatever grew
 * earlier.
 */
static bool pre_growing(const struct apm_analysis_series *s, size_t base, double slope,
                        const struct apm_analysis_tuning *tu, double *x, double *y, double *tmp,
                        double *scratch)
{
    (void)tmp;
    if (base < 3)
        return true;
    size_t from = 0;
    if (tu->pre_span > 0) {
        size_t span = (size_t)(tu->pre_span * (double)(s->n - base));
        if (span < base)
            from = base - span;
    }
    size_t pool = (base - from + MAX_POINTS - 1) / MAX_POINTS, m = 0;
    for (size_t i = from; i < base; i += pool) {
        double sx = 0, sy = 0;
        size_t k = 0;
        for (size_t j = i; j < i + pool && j < base; j++, k++) {
            sx += s->t[j];
            sy += s->floor[j];
        }
        x[m] = sx / (double)k;
        y[m] = sy / (double)k;
        m++;
    }
    struct apm_theil_sen ts;
    if (m < 3 || apm_stats_theil_sen(x, y, m, tu->pre_z, scratch, &ts) < 0)
        return true;
    if (ts.slope_hi <= tu->pre_slope_frac * slope)
        return false;
    /*
     * A jump (often across a sampling gap) followed by a flat level is a step,
     * not growth under way: what grows in the window began after it.
     */
    struct apm_change ch;
    return apm_stats_cusum(y, m, &ch) < 0 || ch.sse_ratio >= tu->step_sse_max;
}

/*
 * The trend of the bucket floors themselves over a long window, pooled
 * by mean to at most MAX_POINTS points. The envelope is a running minimum,
 * so its neighbours are correlated by construction and the effective-size
 * correction shrinks its z hard; a slow leak buried in noise shows more
 * clearly on the pooled floors, whose pooling averages the noise away.
 */
static void floor_trend(const struct apm_analysis_series *s, size_t w,
                        const struct apm_analysis_tuning *tu, double *x, double *y, double *tmp,
                        double *scratch, struct apm_analysis_window *out)
{
    size_t pool = (w + MAX_POINTS - 1) / MAX_POINTS;
    size_t m = 0;
    for (size_t i = s->n - w; i < s->n; i += pool) {
        double sx = 0, sy = 0;
        size_t k = 0;
        for (size_t j = i; j < i + pool && j < s->n; j++, k++) {
            sx += s->t[j];
            sy += s->floor[j];
        }
        x[m] = sx / (double)k;
        y[m] = sy / (double)k;
        m++;
    }
    struct apm_mk mk;
    struct apm_theil_sen ts;
    if (apm_stats_mann_kendall(y, m, tmp, &mk) < 0 ||
        apm_stats_theil_sen(x, y, m, 0, scratch, &ts) < 0)
        return;
    double r0 = 0, r1 = 0, prev = 0;
    for (size_t i = 0; i < m; i++) {
        double r = y[i] - (ts.intercept + ts.slope * x[i]);
        tmp[i] = r;
        r0 += r * r;
        if (i > 0)
            r1 += r * prev;
        prev = r;
    }
    double rho = r0 > 0 ? r1 / r0 : 0;
    if (rho > tu->rho_max)
        rho = tu->rho_max;
    out->floor_z = rho > 0 ? mk.z * sqrt((1 - rho) / (1 + rho)) : mk.z;
    double resid[MAX_POINTS];
    memcpy(resid, tmp, m * sizeof(*tmp));
    double scale = apm_stats_mad(resid, m, tmp);
    if (scale < PAGE_BYTES)
        scale = PAGE_BYTES;
    out->floor_snr = ts.slope * (x[m - 1] - x[0]) / scale;
}

int apm_analysis_window_eval(const struct apm_analysis_series *s, size_t w,
                             const struct apm_analysis_tuning *tu, struct apm_analysis_window *out)
{
    double x[MAX_POINTS], y[MAX_POINTS], tmp[MAX_POINTS];
    double ts_scratch[MAX_POINTS * (MAX_POINTS - 1) / 2 + MAX_POINTS];

    if (!s || !tu || !out || w < 8 || w > s->n || s->n > APM_ANALYSIS_SERIES_MAX)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->buckets = w;

    size_t e = (size_t)lround(tu->env_frac * (double)w);
    if (e < 1)
        e = 1;
    size_t m = envelope(s, w, e, x, y);

    struct apm_mk mk;
    struct apm_theil_sen ts;
    /* Sen's bounds cost two more selections; only a forecast needs them (window_bounds). */
    if (apm_stats_mann_kendall(y, m, tmp, &mk) < 0 ||
        apm_stats_theil_sen(x, y, m, 0, ts_scratch, &ts) < 0)
        return -EINVAL;
    out->z = mk.z;
    out->p = mk.p;
    out->slope = ts.slope;
    out->slope_lo = ts.slope;
    out->slope_hi = ts.slope;
    out->t_now = s->t[s->n - 1];
    out->level_now = ts.intercept + ts.slope * out->t_now;
    out->growth = ts.slope * (x[m - 1] - x[0]);

    for (size_t i = 0; i < m; i++)
        tmp[i] = y[i] - (ts.intercept + ts.slope * x[i]);
    double resid[MAX_POINTS];
    memcpy(resid, tmp, m * sizeof(*tmp));
    out->scale = apm_stats_mad(resid, m, tmp);

    /*
     * Mann-Kendall assumes independent points; slow noise (AR(1), the
     * envelope's own plateaus, a curve around the fitted line) is not. The
     * lag-1 autocorrelation of the residuals shrinks the effective number of
     * points, and z with it.
     */
    double r0 = 0, r1 = 0;
    for (size_t i = 0; i < m; i++) {
        r0 += resid[i] * resid[i];
        if (i + 1 < m)
            r1 += resid[i] * resid[i + 1];
    }
    double rho = r0 > 0 ? r1 / r0 : 0;
    if (rho > tu->rho_max)
        rho = tu->rho_max;
    out->rho = rho > 0 ? rho : 0;
    if (out->scale < PAGE_BYTES)
        out->scale = PAGE_BYTES;
    /*
     * Slow noise wanders about the fitted line by about its own scale; it can
     * not make a window grow by many times that scale. Such growth (a clean
     * ramp, whose residuals are page steps and so correlated) keeps its z.
     */
    if (rho > 0 && !(tu->clear_snr > 0 && out->growth >= tu->clear_snr * out->scale))
        out->z = mk.z * sqrt((1 - rho) / (1 + rho));

    double level = fabs(out->level_now) > 1 ? fabs(out->level_now) : 1;
    out->growing = out->z >= tu->z_min && out->growth >= tu->noise_k * out->scale &&
                   out->growth >= tu->rel_min * level;
    /*
     * The slope ratio of the halves tells a warm-up; it is read for growing windows, for
     * the longest class, and by the creeping rule (half the history or more) only.
     */
    out->decel = 1.0;
    if (out->growing || out->z >= tu->z_min || w * 2 >= s->n) {
        size_t half = m / 2;
        double s_old = slope_of(x, y, half, ts_scratch);
        double s_new = slope_of(x + (m - half), y + (m - half), half, ts_scratch);
        out->decel = s_old > 0 ? s_new / s_old : 1.0;
    }

    struct apm_change ch;
    out->step_ratio = apm_stats_cusum(y, m, &ch) == 0 ? ch.sse_ratio : 1.0;

    size_t recent = w < 4 ? w : 4;
    for (size_t i = 0; i < recent; i++)
        tmp[i] = s->peak[s->n - 1 - i];
    out->peak_now = apm_stats_median(tmp, recent);

    /*
     * A series that has already fallen by D (a daily cycle, a freed batch)
     * must climb clearly above its earlier highs before a rise means growth.
     */
    size_t base = s->n - w;
    double before = -INFINITY, drawdown = 0;
    struct run_min r;
    run_min_start(&r, s->floor, 0, 0);
    for (size_t i = 0; i < base; i++) {
        double env = s->floor[run_min_step(&r, s->floor, i, e)];
        if (env > before)
            before = env;
        if (before - env > drawdown)
            drawdown = before - env;
    }
    double env_now = y[m - 1];
    out->new_high = env_now > before + tu->drawdown_margin * drawdown;
    /* The creeping rule's shape; the pooled floors are read only for a window that has it. */
    out->creep_shape = w * 2 >= s->n && out->slope > 0 && out->growth >= tu->rel_min * level &&
                       out->growth <= fmax(tu->creep_max, tu->creep_max_after) * level &&
                       out->decel >= tu->creep_decel && out->step_ratio <= tu->creep_ramp;
    if (out->creep_shape)
        floor_trend(s, w, tu, x, y, tmp, ts_scratch, out);
    out->step = out->step_ratio < tu->step_sse_max;
    out->warmup = out->decel < tu->decel_max;
    out->leak = out->growing && !out->step && !out->warmup && out->new_high;
    /* Whether growth was under way before the window matters to a leak's urgency only. */
    out->continuation = out->leak && pre_growing(s, base, out->slope, tu, x, y, tmp, ts_scratch);
    return 0;
}

int apm_analysis_window_bounds(const struct apm_analysis_series *s,
                               const struct apm_analysis_tuning *tu,
                               struct apm_analysis_window *win)
{
    double x[MAX_POINTS], y[MAX_POINTS];
    double ts_scratch[MAX_POINTS * (MAX_POINTS - 1) / 2 + MAX_POINTS];

    if (!s || !tu || !win || win->buckets < 8 || win->buckets > s->n ||
        s->n > APM_ANALYSIS_SERIES_MAX)
        return -EINVAL;
    size_t e = (size_t)lround(tu->env_frac * (double)win->buckets);
    size_t m = envelope(s, win->buckets, e < 1 ? 1 : e, x, y);
    /*
     * Sen's interval assumes independent points; correlated ones carry the
     * evidence of fewer, (1 - rho) / (1 + rho) of them, which widens it.
     */
    double zq = tu->forecast_z * sqrt((1 + win->rho) / (1 - win->rho));
    struct apm_theil_sen ts;
    if (apm_stats_theil_sen(x, y, m, zq, ts_scratch, &ts) < 0)
        return -EINVAL;
    win->slope_lo = ts.slope_lo;
    win->slope_hi = ts.slope_hi;
    /*
     * Still growing at the rate of the whole window? The recent half's own
     * interval answers with the evidence of its points only: a few noisy
     * points leave it wide, and the rate unproven.
     */
    size_t half = m / 2;
    win->recent_lo = 0;
    if (half >= 3 &&
        apm_stats_theil_sen(x + (m - half), y + (m - half), half, zq, ts_scratch, &ts) == 0)
        win->recent_lo = ts.slope_lo;
    return 0;
}
