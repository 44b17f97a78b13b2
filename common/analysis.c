#include "common/analysis.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/analysis_window.h"
#include "common/error.h"
#include "common/stats.h"

#define MIN_HISTORY 32
#define MAX_HISTORY 512
/* Buckets a new history starts with; it doubles up to history_buckets. */
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
    unsigned span;            /* samples per bucket at the current resolution */
    struct bucket open;       /* the bucket being filled */
    double *t, *floor, *peak; /* per-bucket series handed to the window judge */
    double t_first, t_prev, interval; /* interval: running typical sample spacing */
    double limit;
    size_t samples;
    unsigned streak; /* consecutive evaluations that found a leak */
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
    };
}

/* Makes room for cap buckets, keeping the closed ones. Returns 0 or -ENOMEM (a unchanged). */
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
        c.min_buckets > c.history_buckets || !(c.bucket_min_s >= 0) || !(c.min_history_s >= 0))
        return -EINVAL;

    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->cfg = c;
    apm_analysis_window_tuning(c.sensitivity, &a->tune);
    /*
     * The history starts small and doubles as buckets close: a collector
     * holds one per analysed series, and most series that come and go (or a
     * flood of them) never fill 192 buckets.
     */
    if (grow(a, c.history_buckets < INITIAL_BUCKETS ? c.history_buckets : INITIAL_BUCKETS) != 0) {
        apm_analysis_free(a);
        return -ENOMEM;
    }
    a->span = c.bucket_samples;
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
    a->span *= 2;
    for (size_t i = 0; i < m; i++) {
        a->t[i] = a->hist[i].t_sum / a->hist[i].n;
        a->floor[i] = bucket_floor(&a->hist[i]);
        a->peak[i] = bucket_peak(&a->hist[i]);
    }
}

static void forecast(struct apm_analysis *a, const struct apm_analysis_series *s,
                     struct apm_analysis_window *w)
{
    struct apm_verdict *v = &a->verdict;
    v->has_forecast = false;
    if (a->limit <= 0 || w->slope <= 0 || apm_analysis_window_bounds(s, &a->tune, w) < 0)
        return;
    double level = w->level_now + a->tune.anchor_mix * (w->peak_now - w->level_now);
    double room = a->limit - level;
    if (room < 0)
        room = 0;
    v->has_forecast = true;
    v->forecast_t = w->t_now + room / w->slope;
    v->forecast_lo_t = w->slope_hi > 0 ? w->t_now + room / w->slope_hi : v->forecast_t;
    v->forecast_hi_t = w->slope_lo > 0 ? w->t_now + room / w->slope_lo : INFINITY;
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
    double level = w->level_now + a->tune.anchor_mix * (w->peak_now - w->level_now);
    double tte = (a->limit - level) / w->slope;
    double watched = w->t_now - a->t[a->n_hist - w->buckets];
    return watched >= share * tte;
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
    if ((w->buckets != a->n_hist && !after_warmup) || a->samples < a->tune.creep_samples ||
        !w->creep_shape)
        return false;
    if (w->z >= a->tune.creep_z && w->growth >= a->tune.creep_snr * w->scale)
        return true;
    /*
     * Noise can bury the envelope's trend; the pooled floors then stand in
     * for it, but only when the limit is near enough (within a few history
     * lengths) for the growth to matter before long.
     */
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

/* Judges every window from the smallest to the whole history. */
static void evaluate(struct apm_analysis *a)
{
    struct apm_analysis_series s = {a->t, a->floor, a->peak, a->n_hist};
    struct apm_analysis_window w = {0}, best = {0}, longest = {0};
    bool any = false, have_longest = false;
    unsigned agree = 0, tried = 0;
    struct apm_verdict *v = &a->verdict;

    if (a->n_hist < a->cfg.min_buckets)
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
    for (size_t i = 0; i < n_wins; i++) {
        w = wins[i];
        if (creeping(a, &w, &wins[n_wins - 1]))
            w.leak = !w.step && !w.warmup && w.new_high;
        else if (w.leak && !holding &&
                 !urgent(a, &w,
                         w.continuation && !a->cfg.after_exhaustion ? a->tune.urgency
                                                                    : a->tune.urgency_all))
            w.leak = false;
        tried++;
        longest = w;
        have_longest = true;
        if (w.leak) {
            agree++;
            if (!any || w.p < best.p)
                best = w;
            any = true;
        }
    }
    if (!have_longest)
        return;

    bool old_enough = a->t_prev - a->t_first >= a->cfg.min_history_s;
    a->streak = any && old_enough ? a->streak + 1 : 0;
    v->alert = a->streak >= a->tune.confirm;
    if (any) {
        v->cls = APM_CLASS_LEAK;
        v->confidence = (1 - best.p) * (0.5 + 0.5 * (double)agree / (double)tried);
        v->rate = best.slope;
        forecast(a, &s, &best);
    } else {
        v->cls = other_class(a, &longest);
        v->confidence = 1 - longest.p / 2;
        if (v->cls == APM_CLASS_STABLE)
            v->confidence = longest.p;
        v->rate = 0;
        v->has_forecast = false;
    }
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
    unsigned need = a->span;
    if (a->n_hist == 0)
        need -= a->cfg.phase % a->cfg.bucket_samples;
    if (a->open.n >= need &&
        t_s - a->open.t_first >= a->cfg.bucket_min_s * a->span / a->cfg.bucket_samples)
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
    return v != NULL && v->has_forecast && v->forecast_lo_t - v->t_last <= horizon_s;
}

int apm_analysis_verdict(const struct apm_analysis *a, struct apm_verdict *out)
{
    if (!a || !out)
        return -EINVAL;
    *out = a->verdict;
    return 0;
}
