#include "common/stats.h"

#include <errno.h>
#include <math.h>
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
    double v = select_kth(x, n, lo);
    if (frac == 0 || lo + 1 >= n)
        return v;
    /* Everything above position lo is >= x[lo]; the next order statistic is their minimum. */
    return v + (min_from(x, lo + 1, n) - v) * frac;
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int apm_stats_mann_kendall(const double *y, size_t n, double *scratch, struct apm_mk *out)
{
    if (!y || !scratch || !out || n < 3)
        return -EINVAL;
    double s = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        double yi = y[i];
        long c = 0;
        for (size_t j = i + 1; j < n; j++)
            c += (y[j] > yi) - (y[j] < yi);
        s += (double)c;
    }
    /* Tied groups shrink the variance of S (Kendall 1975). */
    memcpy(scratch, y, n * sizeof(*y));
    qsort(scratch, n, sizeof(*scratch), cmp_double);
    double nn = (double)n;
    double var = nn * (nn - 1) * (2 * nn + 5);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && scratch[j] == scratch[i])
            j++;
        double t = (double)(j - i);
        if (t > 1)
            var -= t * (t - 1) * (2 * t + 5);
        i = j;
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

int apm_stats_theil_sen(const double *x, const double *y, size_t n, double z, double *scratch,
                        struct apm_theil_sen *out)
{
    if (!x || !y || !scratch || !out || n < 2)
        return -EINVAL;
    size_t m = 0;
    for (size_t i = 0; i + 1 < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            double dx = x[j] - x[i];
            if (dx != 0)
                scratch[m++] = (y[j] - y[i]) / dx;
        }
    if (m == 0)
        return -EINVAL;
    double slope = apm_stats_median(scratch, m);

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
    out->slope_lo = select_kth(scratch, m, (size_t)rlo);
    out->slope_hi = select_kth(scratch, m, (size_t)rhi);

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
