/*
 * A fixed workload through the analysis library, to compare two builds: the
 * same verdicts (--print, every field after every sample, floats in hex, for
 * diff) and the cost (its run time, or instructions under callgrind).
 *
 *   mix:  nine shapes (constant, clean ramp, noisy leak, noise, step,
 *         warm-up, sawtooth, page steps, steps with spikes), three
 *         sensitivities, no limit / a far one / a near one, 1-5 s apart;
 *   ramp: tests/bench/collector_load.c's values (1e8 + 4096 x seq + an
 *         offset per series), 1 s apart, interleaved across series as the
 *         collector's analyzer sees them.
 *
 * run: BUILD/tests/analysis_replay mix|ramp SERIES SAMPLES [--print]
 *      valgrind --tool=callgrind --branch-sim=yes BUILD/tests/analysis_replay ramp 200 231
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/analysis/analysis.h"

static uint64_t seed = 7;

static double next_random(void)
{
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(seed >> 11) / 9007199254740992.0;
}

static double shape(int kind, double t, double *steps)
{
    double noise = next_random() - 0.5;
    switch (kind % 9) {
    case 0:
        return 1e8;
    case 1:
        return 1e8 + 4096.0 * t;
    case 2:
        return 1e8 + 1000 * t + 4e6 * noise;
    case 3:
        return 1e8 + 4e6 * noise;
    case 4:
        return 1e8 + (t > 500 ? 5e7 : 0) + 1e5 * noise;
    case 5:
        return 1e8 + 2e7 * (1 - exp(-t / 300)) + 1e5 * noise;
    case 6:
        return 1e8 + fmod(t, 200) * 1e5;
    case 7:
        *steps += next_random() < 0.05 ? 4096 * 10 : 0;
        return 1e8 + *steps;
    default:
        return 1e8 + 4096.0 * floor(t / 7) + 300 * t + 2e6 * noise * (next_random() < 0.1);
    }
}

static void print_verdict(int s, int i, const struct apm_verdict *v)
{
    printf("%d %d %d %a %a %d %d %a %a %a %a %a %zu %a %d %d %a\n", s, i, (int)v->cls,
           v->confidence, v->rate + 0.0, v->alert, v->has_forecast, v->forecast_t, v->forecast_lo_t,
           v->forecast_hi_t, v->limit, v->t_last, v->samples, v->growth_start_t, v->steady,
           (int)v->doubt, v->doubt_until_t);
}

static int run_mix(int series, int samples, int print)
{
    for (int s = 0; s < series; s++) {
        struct apm_analysis_config cfg;
        struct apm_analysis *an;
        apm_analysis_config_init(&cfg);
        cfg.phase = (unsigned)s;
        cfg.sensitivity = (enum apm_sensitivity)(s / 9 % 3);
        if (s % 4)
            cfg.startup_s = 0;
        if (apm_analysis_new(&cfg, &an) < 0)
            return 1;
        double steps = 0, limit = s % 3 == 1 ? 4e8 : s % 3 == 2 ? 1.25e8 : 0;
        double dt = 1 + s % 5;
        for (int i = 0; i < samples; i++) {
            double t = 1000 + i * dt;
            struct apm_verdict v;
            apm_analysis_add(an, t, shape(s, t, &steps), limit);
            apm_analysis_verdict(an, &v);
            if (print)
                print_verdict(s, i, &v);
        }
        apm_analysis_free(an);
    }
    return 0;
}

static int run_ramp(int series, int samples, int print)
{
    struct apm_analysis **a = calloc((size_t)series, sizeof(*a));
    int rc = a == NULL;
    for (int i = 0; rc == 0 && i < series; i++) {
        struct apm_analysis_config cfg;
        apm_analysis_config_init(&cfg);
        cfg.phase = (unsigned)i * 2654435761u;
        rc = apm_analysis_new(&cfg, &a[i]) < 0;
    }
    for (int k = 1; rc == 0 && k <= samples; k++)
        for (int i = 0; i < series; i++) {
            struct apm_verdict v;
            double value = 1e8 + 4096.0 * k + (double)(i * 31 % 64) * 4096;
            apm_analysis_add(a[i], 1.7e9 + k, value, 0);
            apm_analysis_verdict(a[i], &v);
            if (print)
                print_verdict(i, k, &v);
        }
    for (int i = 0; a != NULL && i < series; i++)
        apm_analysis_free(a[i]);
    free(a);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "mix") != 0 && strcmp(argv[1], "ramp") != 0)) {
        fprintf(stderr, "usage: analysis_replay mix|ramp SERIES SAMPLES [--print]\n");
        return 2;
    }
    int series = atoi(argv[2]), samples = atoi(argv[3]);
    int print = argc > 4 && strcmp(argv[4], "--print") == 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = strcmp(argv[1], "mix") == 0 ? run_mix(series, samples, print)
                                         : run_ramp(series, samples, print);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "%s %d x %d: %.3f s, %.2f us per sample\n", argv[1], series, samples, s,
            s * 1e6 / ((double)series * samples));
    return rc;
}
