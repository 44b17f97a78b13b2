/*
 * Runs the sampler over the real /proc at a fixed interval, the way the
 * agent does, and prints what it costs: CPU microseconds per process per
 * sample (getrusage, and the process CPU clock for a finer figure) and the
 * program's RSS. A baseline reads every process's statm the naive way
 * (open, read, close) for comparison.
 *
 * usage: agent_sampling [TICKS [INTERVAL_MS [SMAPS_BUDGET_US]]]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "agent/procfs.h"
#include "agent/sampler.h"
#include "common/base/error.h"
#include "common/analysis/model.h"

static double rusage_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double cpu_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static long rss_kib(void)
{
    struct apm_procfs_statm m;
    if (apm_procfs_read_statm("/proc", getpid(), &m) < 0)
        return -1;
    return (long)(m.resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The naive way: open, read and close statm of every process. */
static void baseline(int rounds, double *us_per_proc, long *nprocs)
{
    double cpu0 = cpu_clock_us();
    long n = 0;
    char buf[128];
    for (int r = 0; r < rounds; r++) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9')
                continue;
            char path[64];
            size_t len;
            snprintf(path, sizeof(path), "/proc/%s/statm", e->d_name);
            if (apm_procfs_read_path(path, buf, sizeof(buf), &len) == 0)
                n++;
        }
        if (d != NULL)
            closedir(d);
    }
    *us_per_proc = (cpu_clock_us() - cpu0) / (double)(n ? n : 1);
    *nprocs = n / rounds;
}

int main(int argc, char **argv)
{
    int ticks = argc > 1 ? atoi(argv[1]) : 30;
    long interval_ms = argc > 2 ? atol(argv[2]) : 1000;
    double budget = argc > 3 ? atof(argv[3]) : 0;
    if (ticks < 2) {
        fprintf(stderr, "agent_sampling: need at least 2 ticks\n");
        return 2;
    }
    long rss_start = rss_kib();
    struct apm_sampler_options o = {.self_pid = getpid(), .smaps_budget_us = budget};
    struct apm_sampler *s;
    int rc = apm_sampler_new(&o, &s);
    if (rc < 0) {
        fprintf(stderr, "agent_sampling: %s\n", apm_strerror(rc));
        return 1;
    }
    double first_ru = 0, first_clk = 0, ru_sum = 0, clk_sum = 0;
    uint64_t procs_sum = 0, samples_sum = 0;
    for (int i = 0; i < ticks; i++) {
        struct apm_batch *b = apm_batch_new((uint64_t)i);
        if (b == NULL)
            return 1;
        double ru0 = rusage_us(), clk0 = cpu_clock_us();
        rc = apm_sampler_sample(s, (int64_t)time(NULL) * 1000, b);
        double ru = rusage_us() - ru0, clk = cpu_clock_us() - clk0;
        if (rc < 0) {
            fprintf(stderr, "agent_sampling: %s\n", apm_strerror(rc));
            return 1;
        }
        struct apm_sampler_stats st;
        apm_sampler_stats(s, &st);
        if (i == 0) {
            first_ru = ru;
            first_clk = clk;
        } else {
            ru_sum += ru;
            clk_sum += clk;
            procs_sum += st.watched;
            samples_sum += b->nsamples;
        }
        apm_batch_free(b);
        if (i + 1 < ticks)
            sleep_ms(interval_ms);
    }
    struct apm_sampler_stats st;
    apm_sampler_stats(s, &st);
    long rss_end = rss_kib();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    double base_us;
    long base_procs;
    baseline(20, &base_us, &base_procs);

    printf("processes watched per tick:   %.1f (of %u pids listed)\n",
           (double)procs_sum / (ticks - 1), st.procs);
    printf("samples per tick:             %.1f\n", (double)samples_sum / (ticks - 1));
    printf("first scan (opens all):       %.0f us CPU (getrusage), %.0f us (cpu clock)\n", first_ru,
           first_clk);
    printf("steady scan:                  %.0f us CPU per tick (getrusage)\n",
           ru_sum / (ticks - 1));
    printf("us CPU per process per sample: %.2f (getrusage)  %.2f (cpu clock)\n",
           ru_sum / (double)procs_sum, clk_sum / (double)procs_sum);
    printf("baseline open+read+close statm: %.2f us per process (%ld processes)\n", base_us,
           base_procs);
    printf("processes born and gone:      %llu, %llu (other work on the host)\n",
           (unsigned long long)st.procs_new, (unsigned long long)st.procs_gone);
    printf("smaps_rollup reads:           %llu over %d ticks\n", (unsigned long long)st.smaps_reads,
           ticks);
    printf("descriptors kept open:        %u\n", st.open_fds);
    printf("read errors:                  %llu\n", (unsigned long long)st.read_errors);
    printf("RSS: %ld KiB at start, %ld KiB at end, max %ld KiB (getrusage)\n", rss_start, rss_end,
           ru.ru_maxrss);
    apm_sampler_free(s);
    return 0;
}
