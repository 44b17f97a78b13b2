#ifndef APM_STATS_H
#define APM_STATS_H

/*
 * Robust, non-parametric statistics for short series: order statistics,
 * median absolute deviation, the Mann-Kendall trend test, the Theil-Sen
 * slope with its confidence interval, a causal lower envelope and a CUSUM
 * change point. Nothing here allocates: callers pass scratch space sized as
 * each contract says. All functions are pure and thread-safe.
 */
#include <stddef.h>

/*
 * Returns the q-quantile (0 <= q <= 1) of x[0..n) with linear interpolation
 * between order statistics (numpy's default). Reorders x in place. Returns
 * NaN when n is 0.
 */
double apm_stats_quantile(double *x, size_t n, double q);

/* Returns the median of x[0..n); reorders x in place. NaN when n is 0. */
double apm_stats_median(double *x, size_t n);

/*
 * Returns the median absolute deviation of x[0..n) scaled by 1.4826, so that
 * it estimates the standard deviation of normal data. Borrows x (unchanged);
 * scratch must hold n doubles. Returns 0 when n < 2.
 */
double apm_stats_mad(const double *x, size_t n, double *scratch);

struct apm_mk {
    double s;   /* Kendall's S: concordant minus discordant pairs */
    double var; /* variance of S under no trend, corrected for ties */
    double z;   /* continuity-corrected normal score; > 0 means growth */
    double p;   /* two-sided p-value of z */
};

/*
 * The Mann-Kendall test of y[0..n) (finite values) against its index order.
 * scratch must hold n doubles. Returns 0, or -EINVAL when n < 3 or an
 * argument is NULL.
 */
int apm_stats_mann_kendall(const double *y, size_t n, double *scratch, struct apm_mk *out);

/* Returns the two-sided normal p-value of z: P(|Z| >= |z|). */
double apm_stats_normal_p(double z);

struct apm_theil_sen {
    double slope;     /* median of pairwise slopes */
    double intercept; /* median of y - slope * x */
    double slope_lo;  /* lower bound of the slope at the requested confidence */
    double slope_hi;  /* upper bound */
};

/* The number of doubles apm_stats_theil_sen needs as scratch for n points. */
size_t apm_stats_theil_sen_scratch(size_t n);

/*
 * The Theil-Sen estimator of y against x (x need not be evenly spaced; pairs
 * with equal x are skipped). The slope bounds follow Sen (1968): the order
 * statistics of the pairwise slopes at ranks (N -+ z * sqrt(var S)) / 2, for
 * the normal score z (1.96 for 95 %). scratch must hold
 * apm_stats_theil_sen_scratch(n) doubles. Returns 0, or -EINVAL when fewer
 * than two distinct x or an argument is NULL.
 */
int apm_stats_theil_sen(const double *x, const double *y, size_t n, double z, double *scratch,
                        struct apm_theil_sen *out);

/*
 * Writes the causal lower envelope of y[0..n) to out: out[i] is the minimum
 * of y[max(0, i - w + 1) .. i]. w of 0 counts as 1. out may equal y.
 */
void apm_stats_lower_envelope(const double *y, size_t n, size_t w, double *out);

struct apm_change {
    size_t index;       /* first index of the second segment (1 .. n-1) */
    double mean_before; /* mean of y[0 .. index) */
    double mean_after;  /* mean of y[index .. n) */
    double sse_ratio;   /* residual sum of squares of the two-mean fit over that of one mean */
};

/*
 * The single most likely change in mean of y[0..n), found where the CUSUM of
 * deviations from the overall mean has its largest magnitude. Returns 0, or
 * -EINVAL when n < 2 or an argument is NULL. A constant series yields
 * sse_ratio 1.
 */
int apm_stats_cusum(const double *y, size_t n, struct apm_change *out);

#endif
