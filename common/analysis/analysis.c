#include "common/analysis/analysis.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/analysis/analysis_window.h"
#include "common/base/error.h"
#include "common/analysis/stats.h"

#define MIN_HISTORY 32
#define MAX_HISTORY 512
/* Buckets allocated at first; the history doubles from there up to history_buckets. */
#define INITIAL_BUCKETS 16u
/* A silence longer than this many typical intervals closes the open bucket. */
#define GAP_INTERVALS 4.0
/* Windows judged per evaluation: 16, 32, ... buckets up to the whole history (at most 512). */
#define MAX_WINDOWS 8

/*
 * One bucket of consecutive samples. The two smallest and two largest values
 * are kept so that merging two buckets stays exact, and one outlier per
 * bucket can not move its floor or peak.
 */
struct bucket {
    double t_sum; /* sum of sample times, for the mean time */
    double lo[2]; /* smallest, second smallest */
    double hi[2]; /* largest, second largest */
    unsigned n;   /* samples */
    double t_first;
    double t_last;
};

struct apm_analysis {
    struct apm_analysis_config cfg;
    struct apm_analysis_tuning tune;
    struct bucket *hist; /* closed buckets, oldest first */
    size_t n_hist;
    size_t cap;               /* buckets allocated: grows to history_buckets as the history does */
    double width;             /* time a bucket spans at the current resolution, s */
    struct bucket open;       /* the bucket being filled */
    double *t, *floor, *peak; /* per-bucket series handed to the window judge */
    double t_first, t_prev, interval; /* interval: running typical sample spacing */
    double limit;
    size_t samples;
    unsigned streak;    /* consecutive evaluations that found a leak */
    double streak_from; /* time of the first of them */
    struct apm_verdict verdict;
};

int apm_analysis_sensitivity_parse(const char *s, enum apm_sensitivity *out)
{
    if (!s || !out)
        return APM_E_CONFIG;
    if (strcmp(s, "balanced") == 0)
        *out = APM_SENSITIVITY_BALANCED;
    else if (strcmp(s, "early") == 0)
        *out = APM_SENSITIVITY_EARLY;
    else if (strcmp(s, "quiet") == 0)
        *out = APM_SENSITIVITY_QUIET;
    else
        return APM_E_CONFIG;
    return 0;
}

const char *apm_analysis_sensitivity_name(enum apm_sensitivity s)
{
    switch (s) {
    case APM_SENSITIVITY_EARLY:
        return "early";
    case APM_SENSITIVITY_QUIET:
        return "quiet";
    default:
        return "balanced";
    }
}

const char *apm_analysis_class_name(enum apm_class c)
{
    switch (c) {
    case APM_CLASS_LEAK:
        return "leak";
    case APM_CLASS_BLOAT:
        return "bloat";
    case APM_CLASS_SAWTOOTH:
        return "sawtooth";
    case APM_CLASS_WARMUP:
        return "warmup";
    case APM_CLASS_GROWING:
        return "growing";
    default:
        return "stable";
    }
}

void apm_analysis_config_init(struct apm_analysis_config *cfg)
{
    if (!cfg)
        return;
    *cfg = (struct apm_analysis_config){
        .sensitivity = APM_SENSITIVITY_BALANCED,
        .bucket_samples = 4,
        .history_buckets = 192,
        .min_buckets = 80,
        .startup_s = -1,
    };
}

static int grow(struct apm_analysis *a, size_t cap)
{
    struct bucket *h = realloc(a->hist, cap * sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    a->hist = h;
    /* t, floor and peak share one block: each keeps its n_hist values at its new place. */
    double *t = malloc(cap * 3 * sizeof(double));
    if (t == NULL)
        return -ENOMEM;
    if (a->t != NULL) {
        memcpy(t, a->t, a->n_hist * sizeof(double));
        memcpy(t + cap, a->floor, a->n_hist * sizeof(double));
        memcpy(t + 2 * cap, a->peak, a->n_hist * sizeof(double));
        free(a->t);
    }
    a->t = t;
    a->floor = t + cap;
    a->peak = t + 2 * cap;
    a->cap = cap;
    return 0;
}

int apm_analysis_new(const struct apm_analysis_config *cfg, struct apm_analysis **out)
{
    struct apm_analysis_config c;
    struct apm_analysis *a = NULL;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (cfg)
        c = *cfg;
    else
        apm_analysis_config_init(&c);
    if (c.bucket_samples < 1 || c.history_buckets < MIN_HISTORY ||
        c.history_buckets > MAX_HISTORY || c.history_buckets % 2 != 0 || c.min_buckets < 8 ||
        c.min_buckets > c.history_buckets || !(c.bucket_min_s >= 0) || !(c.min_history_s >= 0) ||
        isnan(c.startup_s))
        return -EINVAL;

    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->cfg = c;
    apm_analysis_window_tuning(c.sensitivity, &a->tune);
    if (c.startup_s >= 0)
        a->tune.startup_s = c.startup_s;
    a->cfg.tuning = NULL;
    if (apm_analysis_window_tuning_override(&a->tune, c.tuning) < 0) {
        apm_analysis_free(a);
        return -EINVAL;
    }
    /*
     * The history starts small and doubles as buckets close: a collector
     * holds one per analysed series, and most series that come and go (or a
     * flood of them) never fill 192 buckets.
     */
    if (grow(a, c.history_buckets < INITIAL_BUCKETS ? c.history_buckets : INITIAL_BUCKETS) != 0) {
        apm_analysis_free(a);
        return -ENOMEM;
    }
    a->verdict.cls = APM_CLASS_STABLE;
    a->verdict.growth_start_t = NAN;
    a->verdict.doubt_until_t = NAN;
    *out = a;
    return 0;
}

void apm_analysis_free(struct apm_analysis *a)
{
    if (!a)
        return;
    free(a->hist);
    free(a->t);
    free(a);
}

static void bucket_add(struct bucket *b, double t, double v)
{
    if (b->n == 0) {
        b->lo[0] = b->lo[1] = b->hi[0] = b->hi[1] = v;
        b->t_first = t;
    } else {
        if (v < b->lo[0]) {
            b->lo[1] = b->lo[0];
            b->lo[0] = v;
        } else if (v < b->lo[1] || b->n == 1) {
            b->lo[1] = v;
        }
        if (v > b->hi[0]) {
            b->hi[1] = b->hi[0];
            b->hi[0] = v;
        } else if (v > b->hi[1] || b->n == 1) {
            b->hi[1] = v;
        }
    }
    b->t_sum += t;
    b->t_last = t;
    b->n++;
}

/* Merges b into a; exact for the two extremes on each side. */
static void bucket_merge(struct bucket *a, const struct bucket *b)
{
    double lo[4], hi[4];
    size_t k = 0;

    /* A one-sample bucket holds its value twice; count it once. */
    lo[k] = a->lo[0], hi[k++] = a->hi[0];
    if (a->n >= 2)
        lo[k] = a->lo[1], hi[k++] = a->hi[1];
    lo[k] = b->lo[0], hi[k++] = b->hi[0];
    if (b->n >= 2)
        lo[k] = b->lo[1], hi[k++] = b->hi[1];
    for (size_t i = 0; i < 2; i++)
        for (size_t j = i + 1; j < k; j++) {
            if (lo[j] < lo[i]) {
                double x = lo[i];
                lo[i] = lo[j];
                lo[j] = x;
            }
            if (hi[j] > hi[i]) {
                double x = hi[i];
                hi[i] = hi[j];
                hi[j] = x;
            }
        }
    a->lo[0] = lo[0];
    a->lo[1] = lo[1];
    a->hi[0] = hi[0];
    a->hi[1] = hi[1];
    a->t_sum += b->t_sum;
    a->t_last = b->t_last;
    a->n += b->n;
}

/* The floor ignores the single lowest sample once there are enough to spare one. */
static double bucket_floor(const struct bucket *b)
{
    return b->n >= 3 ? b->lo[1] : b->lo[0];
}

static double bucket_peak(const struct bucket *b)
{
    return b->n >= 3 ? b->hi[1] : b->hi[0];
}

/* Halves the resolution of a full history by merging neighbours. */
static void compact(struct apm_analysis *a)
{
    size_t m = 0;
    for (size_t i = 0; i + 1 < a->n_hist; i += 2) {
        struct bucket b = a->hist[i];
        bucket_merge(&b, &a->hist[i + 1]);
        a->hist[m++] = b;
    }
    if (a->n_hist % 2)
        a->hist[m++] = a->hist[a->n_hist - 1];
    a->n_hist = m;
    /*
     * Buckets now span about twice as long: the mean time a merged bucket
     * covers, one typical interval included (a one-sample bucket covers one).
     */
    a->width = (a->hist[m - 1].t_last - a->hist[0].t_first + a->interval) / (double)m;
    for (size_t i = 0; i < m; i++) {
        a->t[i] = a->hist[i].t_sum / a->hist[i].n;
        a->floor[i] = bucket_floor(&a->hist[i]);
        a->peak[i] = bucket_peak(&a->hist[i]);
    }
}

/* The level the forecast starts from: the fitted floor, pulled toward the recent peaks. */
static double anchor(const struct apm_analysis *a, const struct apm_analysis_window *w)
{
    return w->level_now + a->tune.anchor_mix * (w->peak_now - w->level_now);
}

static void forecast(struct apm_analysis *a, const struct apm_analysis_series *s,
                     struct apm_analysis_window *w)
{
    struct apm_verdict *v = &a->verdict;
    v->has_forecast = false;
    if (a->limit <= 0 || w->slope <= 0 || apm_analysis_window_bounds(s, &a->tune, w) < 0)
        return;
    double room = a->limit - anchor(a, w);
    if (room < 0)
        room = 0;
    /*
     * Sen's interval says how well the past rate is known; the future rate
     * also drifts (a leak slows, a sawtooth's anchor moves). forecast_drift
     * is that drift's relative spread, added in quadrature, and calibrated so
     * that the stated band holds the true exhaustion time as often as it says
     * (80 % on the leakbench tuning split).
     */
    double m = a->tune.forecast_drift;
    double up = w->slope_hi / w->slope - 1, down = 1 - w->slope_lo / w->slope;
    double fast = w->slope * (1 + sqrt(up * up + m * m));
    double slow = w->slope * (1 - sqrt(down * down + m * m));
    v->has_forecast = true;
    v->forecast_t = w->t_now + room / w->slope;
    v->forecast_lo_t = w->t_now + room / fast;
    v->forecast_hi_t = slow > 0 ? w->t_now + room / slow : INFINITY;
}

/*
 * Growth that was already under way before the window may be a warm-up that
 * has not yet shown its deceleration. It becomes a leak once it has been
 * watched for a fair share of the time it leaves before the limit.
 */
static bool urgent(const struct apm_analysis *a, const struct apm_analysis_window *w, double share)
{
    if (share <= 0)
        return true;
    if (a->limit <= 0 || w->slope <= 0)
        return false;
    double tte = (a->limit - anchor(a, w)) / w->slope;
    double watched = w->t_now - a->t[a->n_hist - w->buckets];
    return watched >= share * tte;
}

/* The same, for growth watched since from (a corner found in the whole history). */
static bool urgent_from(const struct apm_analysis *a, const struct apm_analysis_window *w,
                        double share, double from)
{
    if (share <= 0)
        return true;
    if (a->limit <= 0 || w->slope <= 0)
        return false;
    double tte = (a->limit - anchor(a, w)) / w->slope;
    return w->t_now - from >= share * tte;
}

/*
 * Slow, steady growth over a long history: a few per cent of the level, at a
 * constant rate (no deceleration) across at least creep_buckets buckets. A
 * cache that warms up fills by a large share of its size and then levels off;
 * a leak that creeps for the whole observed life is no warm-up, even when
 * exhaustion lies far beyond the history. Such growth is a leak by itself,
 * without the window's own noise and urgency tests. When the history as a
 * whole decelerated (a warm-up happened), a window of at least half of it
 * that grows at a steady rate is judged the same way: a slow leak that
 * continues after the warm-up (concave, then linear; a warm-up still
 * approaching its plateau keeps decelerating inside such a window).
 */
static bool creeping(const struct apm_analysis *a, const struct apm_analysis_window *w,
                     const struct apm_analysis_window *whole)
{
    bool after_warmup = w->buckets * 2 >= a->n_hist && whole->decel < a->tune.creep_after_decel &&
                        w->decel >= a->tune.creep_after_steady;
    if ((w->buckets != a->n_hist && !after_warmup) || !w->creep_shape)
        return false;
    double level = fabs(w->level_now) > 1 ? fabs(w->level_now) : 1;
    if (w->growth > (after_warmup ? a->tune.creep_max_after : a->tune.creep_max) * level)
        return false;
    /*
     * A warm-up looks like a creep until it bends. It has had the time to bend
     * once the growth has been watched for creep_age of the time it leaves
     * (after a warm-up, creep_age_after: the warm-up's end is evidence too),
     * and the evidence of every sample, not only of the buckets, must be
     * strong: the trend's t (growth over the residual scale, times the square
     * root of the effective number of samples over 12) reaches creep_t.
     */
    double n_eff = (double)a->samples * (1 - w->rho) / (1 + w->rho);
    /*
     * Creep is the rule for growth far from its limit, which urgency never
     * reaches. Growth whose limit lies within creep_far x the time it has been
     * watched is near enough for urgency to judge it, with its larger share: a
     * drift of a few hours close to the limit is no creep.
     */
    if (a->tune.creep_far > 0 && a->limit > 0) {
        double left = (a->limit - anchor(a, w)) / w->slope;
        if (left < a->tune.creep_far * (w->t_now - a->t[a->n_hist - w->buckets]))
            return false;
    }
    if (!urgent(a, w, after_warmup ? a->tune.creep_age_after : a->tune.creep_age) ||
        w->growth / w->scale * sqrt(n_eff / 12.0) < a->tune.creep_t)
        return false;
    if (w->z >= a->tune.creep_z && w->growth >= a->tune.creep_snr * w->scale)
        return true;
    /*
     * The envelope is a running minimum: stepwise growth leaves it in
     * plateaus whose autocorrelation shrinks its z hard. The pooled floors
     * of the whole window, their own z corrected for autocorrelation, are
     * the whole history's evidence (creep_floor); otherwise they stand in
     * only when the limit is within creep_horizon history lengths.
     */
    if (a->tune.creep_floor > 0)
        return w->floor_z >= a->tune.creep_z && w->floor_snr >= a->tune.creep_floor_snr;
    if (a->limit <= 0)
        return false;
    double tte = (a->limit - w->peak_now) / w->slope;
    double age = w->t_now - a->t[0];
    return tte <= a->tune.creep_horizon * age && w->floor_z >= a->tune.creep_z &&
           w->floor_snr >= a->tune.creep_floor_snr;
}

/* Names the behaviour of a series that shows no leak, from its longest window. */
static enum apm_class other_class(const struct apm_analysis *a, const struct apm_analysis_window *w)
{
    if (w->step)
        return APM_CLASS_BLOAT;
    if (w->z >= a->tune.z_min && w->warmup)
        return APM_CLASS_WARMUP;
    double swing = w->peak_now - w->level_now;
    if (swing > 8 * w->scale && swing > 0.05 * fabs(w->level_now))
        return APM_CLASS_SAWTOOTH;
    return APM_CLASS_STABLE;
}

/*
 * When the growth now under way began: the corner of the best "flat, then a
 * straight rise" fit (a hinge) to the bucket floors since from, pooled to at
 * most 64 points. The series start when the rise fits from the first point.
 */
static double growth_start(const struct apm_analysis *a, size_t from)
{
    double x[64], y[64];
    size_t n = a->n_hist - from, pool = (n + 63) / 64, m = 0;
    for (size_t i = from; i < a->n_hist; i += pool) {
        double sx = 0, sy = 0;
        size_t k = 0;
        for (size_t j = i; j < i + pool && j < a->n_hist; j++, k++) {
            sx += a->t[j];
            sy += a->floor[j];
        }
        x[m] = sx / (double)k;
        y[m] = sy / (double)k;
        m++;
    }
    if (m < 4)
        return a->t[from];
    double best = INFINITY, best_t = a->t[from], sse0 = 0;
    /* Prefix sums of the flat part; the rise is fitted by least squares through its corner. */
    double sy0 = 0, syy0 = 0;
    for (size_t k = 0; k + 2 < m; k++) {
        if (k > 0) {
            sy0 += y[k - 1];
            syy0 += y[k - 1] * y[k - 1];
        }
        double c = k > 0 ? sy0 / (double)k : y[0];
        double sse = k > 0 ? syy0 - sy0 * c : 0;
        double sxx = 0, sxy = 0;
        for (size_t i = k; i < m; i++) {
            double dx = x[i] - x[k];
            sxx += dx * dx;
            sxy += dx * (y[i] - c);
        }
        double r = sxx > 0 ? sxy / sxx : 0;
        for (size_t i = k; i < m; i++) {
            double e = y[i] - c - r * (x[i] - x[k]);
            sse += e * e;
        }
        /* A corner needs a flat stretch before it: one that swung by half the rise is none. */
        double lo = y[0], hi = y[0];
        for (size_t i = 1; i < k; i++) {
            lo = y[i] < lo ? y[i] : lo;
            hi = y[i] > hi ? y[i] : hi;
        }
        if (k > 0 && hi - lo > 0.5 * r * (x[m - 1] - x[k]))
            continue;
        if (r > 0 && sse < best) {
            best = sse;
            best_t = k == 0 ? a->t[from] : x[k];
        }
    }
    /* The rival: one straight line through all points (least squares). */
    double mx = 0, my = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < m; i++)
        mx += x[i], my += y[i];
    mx /= (double)m;
    my /= (double)m;
    for (size_t i = 0; i < m; i++)
        sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my);
    double r = sxx > 0 ? sxy / sxx : 0;
    for (size_t i = 0; i < m; i++) {
        double e = y[i] - my - r * (x[i] - mx);
        sse0 += e * e;
    }
    /*
     * A corner after the first point must earn its parameter: unless it
     * explains clearly more than one straight rise (an F ratio of
     * 4, about 5 %), the growth is taken to have been there from the start.
     */
    if (!(best < INFINITY) || !(sse0 < INFINITY) || (sse0 - best) * (double)(m - 3) <= 4.0 * best)
        return a->t[from];
    return best_t;
}

/*
 * The evidence for a steady rate: the growth's rate is known (Sen's interval
 * excludes nil and spans less than a factor steady_spread), the recent half
 * of the window still grows at steady_keep of that rate or more (its own
 * interval's lower bound: no sign of levelling off), and the growth has
 * lasted long enough, compared with the time it leaves before the limit, to
 * be worth betting on: by Gott's argument a process that has lasted d lasts
 * another T with probability d / (d + T), and an exhaustion that probable
 * (steady_p) is worth a page. Without a limit the rate can still be steady.
 */
static bool steady(const struct apm_analysis *a, const struct apm_analysis_window *w, double start,
                   bool startup)
{
    if (w->slope <= 0 || w->slope_lo <= 0 || w->slope_hi > a->tune.steady_spread * w->slope_lo ||
        w->recent_lo < a->tune.steady_keep * w->slope || w->z < a->tune.steady_z || w->warmup ||
        w->step || !w->new_high)
        return false;
    double d = w->t_now - start;
    if (!(d > 0))
        return false;
    if (a->limit <= 0)
        return true;
    /*
     * Growth since the series began, with no level seen before it, is how a
     * process starts up: it is a warm-up until watched for the urgency share
     * of its time left, like any growth under way.
     */
    double p = a->tune.steady_p;
    if (startup) {
        /*
         * A start-up fill that would reach the limit before it ends is an
         * exhaustion all the same, once it has lasted long enough to be
         * likely to go on (startup_p) on the RSS alone.
         */
        p = a->tune.startup_p;
    } else if (start <= a->t[0]) {
        double u = a->cfg.after_exhaustion ? a->tune.urgency_all : a->tune.urgency;
        p = u / (1 + u);
    }
    double left = (a->limit - anchor(a, w)) / w->slope;
    return left <= 0 || d / (d + left) >= p;
}

static double growth_start(const struct apm_analysis *a, size_t from);

/* Judges every window from the smallest to the whole history. */
static void evaluate(struct apm_analysis *a)
{
    struct apm_analysis_series s = {a->t, a->floor, a->peak, a->n_hist};
    struct apm_analysis_window w = {0}, best = {0}, longest = {0}, grow = {0};
    bool any = false, any_grow = false, too_soon = false;
    size_t grow_from = a->n_hist;
    double share_needed = 0;
    unsigned agree = 0, tried = 0;
    struct apm_verdict *v = &a->verdict;

    /* Eight buckets is the least any window judges; the evidence decides the rest. */
    if (a->n_hist < 8)
        return;
    /*
     * Windows double from min_window; one longer than two thirds of the
     * history is the history itself. Between 64 and 128 buckets (where a
     * compacted history spends most of its time) that keeps a window of
     * about half the history, which sees a leak after a warm-up without the
     * warm-up's curve.
     */
    struct apm_analysis_window wins[MAX_WINDOWS];
    size_t n_wins = 0;
    for (size_t len = a->tune.min_window; n_wins < MAX_WINDOWS; len *= 2) {
        size_t use = len * 3 > a->n_hist * 2 ? a->n_hist : len;
        if (apm_analysis_window_eval(&s, use, &a->tune, &wins[n_wins]) < 0)
            break;
        n_wins++;
        if (use == a->n_hist)
            break;
    }
    /*
     * Urgency decides when growth under way starts to alarm, not when it stops: an alert
     * already raised holds while a window still grows like a leak, even when a slower rate
     * (a process slowed by tracing, say) puts its limit further away than urgency wants.
     */
    bool holding = v->alert;
    bool gs_known = false;
    double gs = 0;
    for (size_t i = 0; i < n_wins; i++) {
        w = wins[i];
        if (w.leak && (!any_grow || w.p < grow.p)) {
            grow = w;
            any_grow = true;
        }
        if (w.growing && !w.step && w.buckets > a->n_hist - grow_from && any_grow)
            grow_from = a->n_hist - w.buckets;
        if (holding && w.growing && !w.step && w.new_high) {
            /* A raised alert holds while the series still grows, slower or not. */
            w.leak = true;
        } else if (creeping(a, &w, &wins[n_wins - 1])) {
            w.leak = !w.step && !w.warmup && w.new_high;
        } else if (w.leak && !holding) {
            double share =
                w.continuation && !a->cfg.after_exhaustion ? a->tune.urgency : a->tune.urgency_all;
            double from = a->t[a->n_hist - w.buckets];
            /*
             * Growth under way that began at a corner after a flat start is
             * judged from that corner, like growth inside the window, when the
             * flat stretch is long enough to vouch for the baseline: the first
             * part of a series' life can not vouch for its own (a short flat
             * start is as likely a pause in a warm-up).
             */
            if (w.continuation && !a->cfg.after_exhaustion && a->tune.flat_share > 0) {
                if (!gs_known) {
                    gs = growth_start(a, 0);
                    gs_known = true;
                }
                if (gs > a->t[0] && gs - a->t[0] >= a->tune.flat_share * (w.t_now - gs)) {
                    share = a->tune.urgency_all;
                    from = gs;
                }
            }
            if (!urgent_from(a, &w, share, from)) {
                w.leak = false;
                too_soon = true;
                share_needed = share;
            }
        }
        tried++;
        longest = w;
        if (w.leak) {
            agree++;
            if (!any || w.p < best.p)
                best = w;
            any = true;
        }
    }
    if (n_wins == 0)
        return;

    /*
     * Growth under way since the series began, with no level seen before it,
     * is how a process starts up: caches fill, pools grow, sometimes in a
     * straight line toward the limit for an hour or more. The RSS alone can
     * not tell that fill from a leak until the process has lived past it
     * (startup_s); the probe's sites can, and the collector weighs them.
     */
    double life = a->t_prev - a->t_first;
    bool startup = false;
    if ((any || any_grow) && !holding && life < a->tune.startup_s) {
        if (!gs_known) {
            gs = growth_start(a, 0);
            gs_known = true;
        }
        /* A level vouches for a baseline when it lasted at least as long as the growth since. */
        startup = gs - a->t[0] < a->t_prev - gs;
    }
    if (startup && any) {
        if (!any_grow || best.p < grow.p)
            grow = best;
        any_grow = true;
        any = false;
    }
    bool old_enough = life >= a->cfg.min_history_s;
    /*
     * A leak verdict is confirmed when the evidence has held for a share of
     * the series' observed life (and over at least confirm evaluations), so
     * that a denser sampling, judged more often, does not confirm sooner.
     */
    a->streak = any && old_enough ? a->streak + 1 : 0;
    if (a->streak == 1)
        a->streak_from = a->t_prev;
    double held = a->t_prev - a->streak_from;
    v->alert = a->streak >= a->tune.confirm && (v->alert || held >= a->tune.confirm_share * life);
    v->doubt = APM_DOUBT_NONE;
    v->doubt_until_t = NAN;
    v->growth_start_t = NAN;
    v->steady = false;
    if (v->alert) {
        v->cls = APM_CLASS_LEAK;
        v->confidence = (1 - best.p) * (0.5 + 0.5 * (double)agree / (double)tried);
    } else if (any || any_grow) {
        /* Rising like a leak, but no verdict yet: say why and until when. */
        v->cls = APM_CLASS_GROWING;
        if (!any)
            best = grow;
        v->confidence = 1 - best.p;
        if (any) {
            v->doubt = APM_DOUBT_EVIDENCE;
            double more = a->streak > 0 ? a->tune.confirm_share * (a->t_prev - a->t_first) -
                                              (a->t_prev - a->streak_from)
                                        : 0;
            double step = a->width > a->interval ? a->width : a->interval;
            v->doubt_until_t = a->t_prev + (more > step ? more : step);
            if (!old_enough && a->t_first + a->cfg.min_history_s > v->doubt_until_t)
                v->doubt_until_t = a->t_first + a->cfg.min_history_s;
        } else if (startup) {
            v->doubt = APM_DOUBT_WARMUP;
            v->doubt_until_t = a->t_first + a->tune.startup_s;
        } else if (too_soon) {
            v->doubt = APM_DOUBT_WARMUP;
            if (a->limit > 0 && best.slope > 0) {
                double tte = (a->limit - anchor(a, &best)) / best.slope;
                double watched = best.t_now - a->t[a->n_hist - best.buckets];
                double more = (share_needed * tte - watched) / (1 + share_needed);
                v->doubt_until_t = best.t_now + (more > 0 ? more : 0);
            }
        } else {
            v->doubt = APM_DOUBT_EVIDENCE;
        }
    } else {
        v->cls = other_class(a, &longest);
        v->confidence = 1 - longest.p / 2;
        if (v->cls == APM_CLASS_STABLE)
            v->confidence = longest.p;
        v->rate = 0;
        v->has_forecast = false;
        return;
    }
    v->rate = best.slope;
    forecast(a, &s, &best);
    v->growth_start_t = gs_known ? gs : growth_start(a, 0);
    v->steady = steady(a, &best, v->growth_start_t, startup);
}

static void close_bucket(struct apm_analysis *a)
{
    if (a->open.n == 0)
        return;
    if (a->n_hist == a->cap && a->cap < a->cfg.history_buckets) {
        size_t cap = a->cap * 2 < a->cfg.history_buckets ? a->cap * 2 : a->cfg.history_buckets;
        (void)grow(a, cap); /* out of memory: the history compacts sooner, as when full */
    }
    if (a->n_hist == a->cap)
        compact(a);
    size_t i = a->n_hist++;
    a->hist[i] = a->open;
    a->t[i] = a->open.t_sum / a->open.n;
    a->floor[i] = bucket_floor(&a->open);
    a->peak[i] = bucket_peak(&a->open);
    memset(&a->open, 0, sizeof(a->open));
    /*
     * Until the history first fills, a bucket is one sample: judging every
     * other one halves that early cost, and the phase (a collector gives each
     * series its own) spreads series that start together over both rounds.
     */
    if (a->width > 0 || (a->n_hist + a->cfg.phase) % 2 == 0)
        evaluate(a);
}

int apm_analysis_add(struct apm_analysis *a, double t_s, double value, double limit)
{
    if (!a || !isfinite(t_s) || !isfinite(value) || value < 0 || !isfinite(limit) || limit < 0)
        return -EINVAL;
    if (a->samples == 0) {
        a->t_first = t_s;
        a->t_prev = t_s;
    }
    if (t_s < a->t_prev)
        t_s = a->t_prev;
    double dt = t_s - a->t_prev;
    if (a->samples >= 2 && a->open.n > 0 && a->interval > 0 && dt > GAP_INTERVALS * a->interval)
        close_bucket(a);
    /* A slow running mean of the spacing that a single gap barely moves. */
    if (a->samples >= 1 && dt > 0) {
        double d = a->interval > 0 && dt > GAP_INTERVALS * a->interval ? a->interval : dt;
        a->interval = a->interval > 0 ? a->interval + (d - a->interval) / 16 : d;
    }
    if (limit > 0)
        a->limit = limit;
    bucket_add(&a->open, t_s, value);
    a->t_prev = t_s;
    a->samples++;
    /*
     * A bucket closes when it spans the current width (one sample per bucket
     * until the history first fills): the history always covers the series'
     * whole life in history_buckets / 2 .. history_buckets buckets, however
     * often it is sampled.
     */
    double width = a->width > a->cfg.bucket_min_s ? a->width : a->cfg.bucket_min_s;
    if (t_s - a->open.t_first + a->interval >= width)
        close_bucket(a);
    a->verdict.limit = a->limit;
    a->verdict.t_last = t_s;
    a->verdict.samples = a->samples;
    return 0;
}

const char *apm_analysis_doubt_name(enum apm_doubt d)
{
    switch (d) {
    case APM_DOUBT_EVIDENCE:
        return "evidence";
    case APM_DOUBT_WARMUP:
        return "warm-up";
    case APM_DOUBT_STEP:
        return "step";
    default:
        return "";
    }
}

bool apm_verdict_exhausts_within(const struct apm_verdict *v, double horizon_s)
{
    return v != NULL && v->has_forecast && (v->steady || v->cls == APM_CLASS_LEAK) &&
           v->forecast_lo_t - v->t_last <= horizon_s;
}

const char *apm_verdict_builtin_alert(const struct apm_verdict *v)
{
    if (v == NULL)
        return NULL;
    if (v->cls == APM_CLASS_LEAK && v->confidence >= APM_LEAK_RULE_CONFIDENCE)
        return "leak";
    if (apm_verdict_exhausts_within(v, APM_EXHAUSTION_RULE_HORIZON_S))
        return "exhaustion";
    return NULL;
}

int apm_analysis_verdict(const struct apm_analysis *a, struct apm_verdict *out)
{
    if (!a || !out)
        return -EINVAL;
    *out = a->verdict;
    return 0;
}
