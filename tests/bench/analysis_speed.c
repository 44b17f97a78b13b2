/*
 * Cost of keeping 10,000 series analysed: every series has a random amount of
 * history (so bucket closes are spread as in a live collector), then each
 * round adds one sample to every series and reads every verdict. Prints the
 * mean and the worst round.
 *
 * build: cc -O2 -I. tests/bench/analysis_speed.c common/analysis/analysis.c \
 *        common/analysis/analysis_window.c common/analysis/stats.c common/base/error.c -lm
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/analysis/analysis.h"

#define SERIES 10000
#define ROUNDS 200

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double value(uint64_t *s, size_t i, double t)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    double noise = (double)(*s >> 40) / 16777216.0 - 0.5;
    return 1e8 + (double)(i % 7) * 100.0 * t + 2e6 * noise;
}

int main(void)
{
    struct apm_analysis **a = calloc(SERIES, sizeof(*a));
    size_t *n = calloc(SERIES, sizeof(*n));
    uint64_t seed = 42;
    if (!a || !n)
        return 1;
    for (size_t i = 0; i < SERIES; i++) {
        if (apm_analysis_new(NULL, &a[i]) < 0)
            return 1;
        size_t hist = 200 + (size_t)(i * 2654435761u % 3000);
        for (size_t k = 0; k < hist; k++)
            apm_analysis_add(a[i], (double)k * 10, value(&seed, i, (double)k * 10), 1e10);
        n[i] = hist;
    }
    double total = 0, worst = 0;
    size_t alerts = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_s();
        for (size_t i = 0; i < SERIES; i++) {
            struct apm_verdict v;
            double t = (double)n[i]++ * 10;
            apm_analysis_add(a[i], t, value(&seed, i, t), 1e10);
            apm_analysis_verdict(a[i], &v);
            alerts += v.alert;
        }
        double dt = now_s() - t0;
        total += dt;
        if (dt > worst)
            worst = dt;
    }
    printf("%d series, %d rounds: mean %.1f ms per round, worst %.1f ms (%zu alert verdicts)\n",
           SERIES, ROUNDS, 1e3 * total / ROUNDS, 1e3 * worst, alerts);
    for (size_t i = 0; i < SERIES; i++)
        apm_analysis_free(a[i]);
    free(a);
    free(n);
    return 0;
}
