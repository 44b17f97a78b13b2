#ifndef APM_ANALYSIS_WINDOW_H
#define APM_ANALYSIS_WINDOW_H

/*
 * The judgement of one trailing window of bucket floors: is its lower
 * envelope growing (Mann-Kendall), how fast (Theil-Sen), is the growth a
 * one-off step (CUSUM) or decelerating (warm-up), and is it above everything
 * seen before the window. Internal to the analysis module (analysis.c).
 */
#include <stdbool.h>
#include <stddef.h>

/* Decision thresholds of one operating point. */
struct apm_analysis_tuning {
    double z_min;              /* Mann-Kendall z of the envelope at least this */
    double noise_k;            /* growth over the window >= noise_k x residual scale */
    double rel_min;            /* growth over the window >= rel_min x level */
    double decel_max;          /* recent-half slope / older-half slope below this: warm-up */
    double step_sse_max;       /* one change in mean leaves at most this share: a step */
    double env_frac;           /* envelope width as a share of the window */
    unsigned min_window;       /* smallest window, buckets */
    unsigned confirm;          /* consecutive positive evaluations before an alert */
    double confirm_share;      /* ... holding for at least this share of the series' life */
    double anchor_mix;         /* forecast level: 0 = fitted floor, 1 = recent peaks */
    double forecast_z;         /* normal score of the forecast bounds */
    double forecast_drift;     /* relative spread of the future rate, added to Sen's */
    double rho_max;            /* cap on the residual autocorrelation correction */
    double pre_z;              /* Mann-Kendall z before the window that means "already growing" */
    double pre_slope_frac;     /* ... with a slope at least this share of the window's */
    double pre_span;           /* judged on the stretch just before the window, this x its length
                                  (0: all of the history before it) */
    double flat_share;         /* a flat start at least this x the growth since its corner vouches
                                  for the baseline: the growth is judged from the corner */
    double urgency;            /* continued growth alerts once window duration >= urgency x TTE */
    double drawdown_margin;    /* a new high must clear earlier highs by this x earlier drawdown */
    double urgency_all;        /* the same for growth that began inside the window */
    double creep_age;          /* a creep is judged once watched for this share of its time left */
    double creep_age_after;    /* ... after a warm-up, this share */
    double creep_far;          /* ... and only when the time left is at least this x the time
                                  watched (nearer limits are urgency's) */
    double creep_t;            /* ... and the trend's t on the effective samples at least this */
    double creep_max;          /* ... grew by at most this share of the level */
    double creep_max_after;    /* ... after a warm-up, this share */
    double creep_decel;        /* ... with a recent / older slope ratio at least this */
    double creep_z;            /* ... and a Mann-Kendall z at least this */
    double creep_snr;          /* ... and a growth at least this x the residual scale */
    double creep_ramp;         /* ... and a CUSUM share at most this (a ramp leaves 1/4) */
    double creep_horizon;      /* the pooled floors may stand in for the envelope when the limit
                                  is within this many history lengths */
    double creep_floor_snr;    /* ... with their growth at least this x their residual scale */
    double creep_floor;        /* nonzero: the pooled floors' corrected z may carry a creep at any
                                  distance from the limit */
    double creep_after_decel;  /* whole-history slope ratio below this: a warm-up happened */
    double creep_after_steady; /* ... then a window of half the history or more with a slope
                                  ratio at least this may creep too */
    double steady_spread;      /* a steady rate: Sen's interval spans at most this factor */
    double steady_z;           /* ... the window's Mann-Kendall z (effective size) at least this */
    double steady_keep;        /* ... the recent half's lower bound is at least this x the rate */
    double steady_p;  /* ... and the growth has lasted d with d / (d + time left) >= this */
    double clear_snr; /* growth at least this x the residual scale is no slow noise: the
                         residuals' autocorrelation does not shrink its z */
    double startup_s; /* growth under way since the series began is a start-up fill, not yet
                         a leak, until the series has lived this long (s) */
    double startup_p; /* ... and its rate is steady once it has lasted d with
                         d / (d + time left) >= this */
};

/* Fills *t with the thresholds of sensitivity s (an enum apm_sensitivity value). */
void apm_analysis_window_tuning(int s, struct apm_analysis_tuning *t);

/*
 * Applies overrides "name=value[,name=value...]" (the field names above) to *t.
 * Returns 0, or -EINVAL for an unknown name or a bad value. For benchmarks
 * that choose thresholds (tests/bench/leave_one_kind_out.py).
 */
int apm_analysis_window_tuning_override(struct apm_analysis_tuning *t, const char *spec);

/* The most buckets a series handed to the judge may hold (a history holds at most 512). */
#define APM_ANALYSIS_SERIES_MAX 1024

/* The input: parallel arrays of bucket time, floor and peak, oldest first. */
struct apm_analysis_series {
    const double *t;
    const double *floor;
    const double *peak;
    size_t n;
};

struct apm_analysis_window {
    size_t buckets;  /* window length in buckets */
    double z;        /* Mann-Kendall z of the envelope */
    double p;        /* its two-sided p-value */
    double slope;    /* Theil-Sen slope of the envelope, bytes/s */
    double slope_lo; /* Sen's bounds at tuning forecast_z, after window_bounds (else slope) */
    double slope_hi;
    double recent_lo;  /* Sen's lower bound of the slope over the window's recent half (idem) */
    double level_now;  /* fitted envelope at the window's last bucket time */
    double peak_now;   /* recent peak level */
    double t_now;      /* last bucket time */
    double growth;     /* slope x window duration, bytes */
    double scale;      /* robust scale of the residuals, bytes */
    double rho;        /* lag-1 autocorrelation of the residuals (0 when negative), capped */
    double decel;      /* recent-half slope / older-half slope (1 when undefined or not needed:
                          a window that neither grows nor spans half the history) */
    double step_ratio; /* CUSUM unexplained share */
    double floor_z;    /* half the history or more, when creep may ask: Mann-Kendall z of the
                          pooled floors */
    double floor_snr;  /* ... and their growth over the residual scale */
    bool creep_shape;  /* half the history or more: upward growth of rel_min to creep_max of the
                          level, steady (decel >= creep_decel) and ramp-like (creep_ramp) */
    bool new_high;     /* envelope now above every floor before the window */
    bool continuation; /* a leak window: its growth began before it (or at the series start) */
    bool growing;      /* significant growth beyond noise */
    bool step;         /* growth explained by one change in mean */
    bool warmup;       /* growth decelerating */
    bool leak;         /* growing, not a step, not a warm-up, at a new high */
};

/*
 * Judges the last w buckets of s. Returns 0, or -EINVAL when w < 8, w > s->n or
 * s->n > APM_ANALYSIS_SERIES_MAX.
 */
int apm_analysis_window_eval(const struct apm_analysis_series *s, size_t w,
                             const struct apm_analysis_tuning *tu, struct apm_analysis_window *out);

/*
 * Fills win's slope_lo and slope_hi (Sen's interval at forecast_z) for a window that
 * window_eval judged on the same series. Returns 0 or -EINVAL.
 */
int apm_analysis_window_bounds(const struct apm_analysis_series *s,
                               const struct apm_analysis_tuning *tu,
                               struct apm_analysis_window *win);

#endif
