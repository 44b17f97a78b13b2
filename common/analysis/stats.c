#include "common/analysis/stats.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void swap(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* Hoare's selection: afterwards x[k] holds the k-th smallest value. */
static double select_kth(double *x, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;

    while (lo < hi) {
        double pivot = x[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] < pivot)
                i++;
            while (x[j] > pivot)
                j--;
            if (i <= j) {
                swap(&x[i], &x[j]);
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return x[k];
}

/* The smallest value of x[from..n), used after select_kth put x[k] in place. */
static double min_from(const double *x, size_t from, size_t n)
{
    double m = x[from];
    for (size_t i = from + 1; i < n; i++)
        if (x[i] < m)
            m = x[i];
    return m;
}

/*
 * Long arrays (the pairwise slopes of Theil-Sen: up to 2,016 of them) are
 * searched by filtering first. Two pivots from a strided sample bracket the
 * ranks wanted, with a margin that misses about one time in a hundred; one
 * branch-free pass counts what lies below and above them and copies what
 * lies between (pivots included); only that middle, about a third of the
 * array, is searched again (filtered again while long). An order statistic
 * is a value, so this returns exactly what a selection over the whole array
 * would.
 */
#define FILTER_MIN 256
#define FILTER_SAMPLE 32
#define FILTER_MARGIN 5
#define FILTER_MAX 1024

/*
 * Copies the values of x[0..n) that lie between two sample pivots bracketing
 * ranks k0..k1 to mid (at most FILTER_MAX), in order. Returns how many (or
 * FILTER_MAX + 1 when there were more), and in *below how many lie under the
 * lower pivot. When the pivots are equal (*same), nothing is copied: the
 * middle is the values equal to them, mid[0] their value, and any count.
 */
static size_t filter(const double *x, size_t n, size_t k0, size_t k1, double *mid, size_t *below,
                     bool *same)
{
    double sample[FILTER_SAMPLE];
    size_t stride = n / FILTER_SAMPLE;
    for (size_t i = 0; i < FILTER_SAMPLE; i++)
        sample[i] = x[i * stride + stride / 2];
    size_t a = k0 * FILTER_SAMPLE / n, z = k1 * FILTER_SAMPLE / n;
    a = a > FILTER_MARGIN ? a - FILTER_MARGIN : 0;
    z = z + FILTER_MARGIN < FILTER_SAMPLE ? z + FILTER_MARGIN : FILTER_SAMPLE - 1;
    double lo = select_kth(sample, FILTER_SAMPLE, a);
    /* select_kth left everything at or above rank a after it. */
    double hi = select_kth(sample + a, FILTER_SAMPLE - a, z - a);
    size_t under = 0, kept = 0;
    *same = lo == hi;
    if (*same) {
        /* Equal pivots (a constant series, a clean ramp): the middle is that value. */
        for (size_t i = 0; i < n; i++) {
            under += x[i] < lo;
            kept += x[i] == lo;
        }
        *below = under;
        mid[0] = lo;
        return kept;
    }
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        size_t lt = v<lo, gt = v> hi;
        under += lt;
        mid[kept < FILTER_MAX ? kept : FILTER_MAX - 1] = v;
        kept += (lt | gt) ^ 1;
    }
    *below = under;
    return kept <= FILTER_MAX ? kept : FILTER_MAX + 1;
}

/*
 * The order statistics k and k + 1 (k + 1 < n) of x[0..n), which is left
 * unchanged; false when the pivots missed them (then search all of x).
 */
static bool select_pair_filtered(const double *x, size_t n, size_t k, double *v0, double *v1)
{
    double buf[2][FILTER_MAX];
    const double *src = x;
    size_t len = n, flip = 0;
    do {
        size_t below;
        bool same;
        double *mid = buf[flip];
        size_t kept = filter(src, len, k, k + 1, mid, &below, &same);
        if ((!same && kept > FILTER_MAX) || k < below || k + 1 >= below + kept)
            return false;
        if (same) {
            *v0 = *v1 = mid[0];
            return true;
        }
        /* A sample that could not narrow the search (few distinct values) ends it. */
        bool narrowed = kept < len - len / 4;
        src = mid;
        len = kept;
        k -= below;
        flip ^= 1;
        if (!narrowed)
            break;
    } while (len >= FILTER_MIN);
    /* At least one pass ran: src is a buffer, free to reorder. */
    double *w = buf[flip ^ 1];
    *v0 = select_kth(w, len, k);
    *v1 = min_from(w, k + 1, len);
    return true;
}

double apm_stats_quantile(double *x, size_t n, double q)
{
    if (!x || n == 0)
        return NAN;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double pos = (double)(n - 1) * q;
    size_t lo = (size_t)pos;
    double frac = pos - (double)lo;
    double v0, v1;
    if (n >= FILTER_MIN && lo + 1 < n && select_pair_filtered(x, n, lo, &v0, &v1))
        return frac == 0 ? v0 : v0 + (v1 - v0) * frac;
    double v = select_kth(x, n, lo);
    if (frac == 0 || lo + 1 >= n)
        return v;
    /* Everything above position lo is >= x[lo]; the next order statistic is their minimum. */
    return v + (min_from(x, lo + 1, n) - v) * frac;
}

/* The order statistics at the middle: x's median is v0 (n odd) or their mean. */
static double median_pair(double *x, size_t n, double *v0, double *v1)
{
    size_t k = (n - 1) / 2;
    if (!(n >= FILTER_MIN && select_pair_filtered(x, n, k, v0, v1))) {
        *v0 = select_kth(x, n, k);
        *v1 = n % 2 ? *v0 : min_from(x, k + 1, n);
    }
    if (n % 2)
        *v1 = *v0;
    return n % 2 ? *v0 : *v0 + (*v1 - *v0) * 0.5;
}

double apm_stats_median(double *x, size_t n)
{
    return apm_stats_quantile(x, n, 0.5);
}

double apm_stats_mad(const double *x, size_t n, double *scratch)
{
    if (!x || !scratch || n < 2)
        return 0;
    memcpy(scratch, x, n * sizeof(*x));
    double med = apm_stats_median(scratch, n);
    for (size_t i = 0; i < n; i++)
        scratch[i] = fabs(x[i] - med);
    return 1.4826 * apm_stats_median(scratch, n);
}

double apm_stats_normal_p(double z)
{
    return erfc(fabs(z) / sqrt(2.0));
}

int apm_stats_mann_kendall(const double *y, size_t n, double *scratch, struct apm_mk *out)
{
    if (!y || !scratch || !out || n < 3)
        return -EINVAL;
    /*
     * One pass over the pairs gives S and the ties. A group of t equal values
     * takes t (t - 1) (2t + 5) off the variance; its members see t - 1, t - 2,
     * ..., 0 equal values after them, and r equal values after one account
     * for 6 r (r + 2) of that sum. Every term is an integer, exact in doubles.
     */
    (void)scratch;
    double s = 0, nn = (double)n;
    double var = nn * (nn - 1) * (2 * nn + 5);
    for (size_t i = 0; i + 1 < n; i++) {
        double yi = y[i];
        long up = 0, down = 0;
        for (size_t j = i + 1; j < n; j++) {
            up += y[j] > yi;
            down += y[j] < yi;
        }
        /* Neither above nor below is equal (y is finite). */
        long same = (long)(n - i - 1) - up - down;
        s += (double)(up - down);
        var -= 6.0 * (double)same * (double)(same + 2);
    }
    var /= 18.0;
    out->s = s;
    out->var = var;
    if (var <= 0)
        out->z = 0;
    else if (s > 0)
        out->z = (s - 1) / sqrt(var);
    else if (s < 0)
        out->z = (s + 1) / sqrt(var);
    else
        out->z = 0;
    out->p = apm_stats_normal_p(out->z);
    return 0;
}

size_t apm_stats_theil_sen_scratch(size_t n)
{
    return n < 2 ? n : n * (n - 1) / 2 + n;
}

/*
 * Writes the slopes of every pair of points with distinct x to out, pair
 * (i, j > i) in row order, and returns their number. Each row is computed
 * whole, which the compiler can vectorise; a row with an equal x (rare) is
 * then closed up.
 */
static size_t pairwise_slopes(const double *x, const double *y, size_t n, double *out)
{
    size_t m = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        double xi = x[i], yi = y[i];
        double *row = out + m;
        size_t len = n - i - 1;
        const double *xj = x + i + 1, *yj = y + i + 1;
        for (size_t j = 0; j < len; j++)
            row[j] = (yj[j] - yi) / (xj[j] - xi);
        bool same = false;
        for (size_t j = 0; j < len; j++)
            same |= xj[j] == xi;
        if (same) {
            size_t w = 0;
            for (size_t j = 0; j < len; j++)
                if (xj[j] - xi != 0)
                    row[w++] = row[j];
            len = w;
        }
        m += len;
    }
    return m;
}

int apm_stats_theil_sen(const double *x, const double *y, size_t n, double z, double *scratch,
                        struct apm_theil_sen *out)
{
    if (!x || !y || !scratch || !out || n < 2)
        return -EINVAL;
    size_t m = pairwise_slopes(x, y, n, scratch);
    if (m == 0)
        return -EINVAL;

    /* Sen's interval: ranks around the median, spread by the no-trend variance of S. */
    double nn = (double)n;
    double sd = sqrt(nn * (nn - 1) * (2 * nn + 5) / 18.0);
    double half = z * sd / 2.0;
    double rlo = floor(((double)m - 1) / 2.0 - half);
    double rhi = ceil(((double)m - 1) / 2.0 + half);
    if (rlo < 0)
        rlo = 0;
    if (rhi > (double)(m - 1))
        rhi = (double)(m - 1);
    size_t k = (m - 1) / 2, klo = (size_t)rlo, khi = (size_t)rhi;
    double v0, v1, slope;
    if (klo == k && khi == (m % 2 ? k : k + 1)) {
        /* No interval asked for (z = 0): its bounds are the median's own pair. */
        slope = median_pair(scratch, m, &v0, &v1);
        out->slope_lo = v0;
        out->slope_hi = v1;
    } else {
        /*
         * Lower bound, median, upper bound in rank order: each selection
         * searches only what the previous one left at or above its rank.
         */
        out->slope_lo = select_kth(scratch, m, klo);
        double *u = scratch + klo;
        size_t un = m - klo;
        v0 = select_kth(u, un, k - klo);
        v1 = m % 2 ? v0 : min_from(u, k - klo + 1, un);
        slope = m % 2 ? v0 : v0 + (v1 - v0) * 0.5;
        out->slope_hi = select_kth(u + (k - klo), un - (k - klo), khi - k);
    }

    double *r = scratch + (m < n * (n - 1) / 2 ? n * (n - 1) / 2 : m);
    for (size_t i = 0; i < n; i++)
        r[i] = y[i] - slope * x[i];
    out->intercept = apm_stats_median(r, n);
    out->slope = slope;
    return 0;
}

void apm_stats_lower_envelope(const double *y, size_t n, size_t w, double *out)
{
    if (!y || !out)
        return;
    if (w == 0)
        w = 1;
    /* Backwards so that out may alias y: out[i] depends only on y[<= i]. */
    for (size_t k = n; k-- > 0;) {
        size_t from = k + 1 >= w ? k + 1 - w : 0;
        double m = y[k];
        for (size_t i = from; i < k; i++)
            if (y[i] < m)
                m = y[i];
        out[k] = m;
    }
}

int apm_stats_cusum(const double *y, size_t n, struct apm_change *out)
{
    if (!y || !out || n < 2)
        return -EINVAL;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += y[i];
    mean /= (double)n;
    double sst = 0;
    for (size_t i = 0; i < n; i++)
        sst += (y[i] - mean) * (y[i] - mean);

    /*
     * With S_k the cumulative deviation up to k, the between-segment sum of
     * squares of a split at k is n S_k^2 / (k (n - k)); its maximum is the
     * least-squares change point.
     */
    double cum = 0, best = -1;
    size_t best_k = 1;
    double nn = (double)n;
    for (size_t k = 1; k < n; k++) {
        cum += y[k - 1] - mean;
        double kk = (double)k;
        double between = nn * cum * cum / (kk * (nn - kk));
        if (between > best) {
            best = between;
            best_k = k;
        }
    }
    double sb = 0, sa = 0;
    for (size_t i = 0; i < best_k; i++)
        sb += y[i];
    for (size_t i = best_k; i < n; i++)
        sa += y[i];
    out->index = best_k;
    out->mean_before = sb / (double)best_k;
    out->mean_after = sa / (double)(n - best_k);
    out->sse_ratio = sst > 0 ? (sst - best) / sst : 1.0;
    if (out->sse_ratio < 0)
        out->sse_ratio = 0;
    return 0;
}
