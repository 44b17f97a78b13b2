#ifndef APM_SAMPLER_H
#define APM_SAMPLER_H

/*
 * The sampler: one scan of /proc per tick turns every watched process's
 * memory into samples in a batch.
 *
 * Per tick it reads /proc/meminfo (host MemTotal, MemAvailable), lists
 * /proc, and for each watched process reads statm through a descriptor kept
 * open across ticks (RSS), smaps_rollup now and then (PSS, USS, swap), and
 * its memory cgroup's usage and limit (once per cgroup per tick, see
 * cgroup.h). Everything else about a process (start time, parent, name,
 * command line, cgroup) is read when its pid first appears and cached.
 *
 * Identity is (pid, start time). A kept statm descriptor is tied to the
 * process it was opened on: when that process exits, reads fail, so a reused
 * pid is noticed at the first failed read, which re-reads /proc/<pid>/stat
 * and compares the start time. A process whose statm is not kept open (the
 * descriptor budget is spent) is read through /proc/<pid>/stat instead,
 * which carries its start time, so it is checked on every tick. Name,
 * command line and cgroup are read again on the tick after a new process is
 * first seen (it may not have called exec yet) and every refresh_interval
 * ticks after that (a process may exec or move to another cgroup).
 *
 * smaps_rollup costs about smaps_base_us plus smaps_us_per_mb microseconds
 * per MB of the target's RSS (here: about 30 us for a small process with the
 * open and close, 16 us more per MB), too much to read every tick. A process
 * of M MB is read every
 *     max(1, min(smaps_max_interval,
 *                ceil((smaps_base_us + M * smaps_us_per_mb) / smaps_budget_us)))
 * ticks, so smaps_rollup costs each process at most smaps_budget_us per tick
 * on average (except beyond smaps_max_interval, where freshness wins: with
 * the defaults, processes above about 900 MB). The
 * first read comes within one interval of the process being seen, spread by
 * pid so that a host full of processes does not read them all in one tick.
 * PSS, USS and swap samples appear only on the ticks they are read.
 *
 * Kernel threads, processes with an empty command line (zombies) and
 * self_pid are not sampled. A process that exits while being read is
 * skipped silently: that is normal, not an error.
 */
#include <stdint.h>

#include "common/analysis/model.h"

struct apm_watch;

struct apm_sampler_options {
    const char *proc_root;         /* NULL: "/proc" */
    const char *cgroup_root;       /* NULL: "/sys/fs/cgroup" */
    const struct apm_watch *watch; /* borrowed, must outlive the sampler; NULL: every process */
    int32_t self_pid;              /* a process not to sample (the agent); 0: none */
    double smaps_budget_us;        /* per process per tick; 0: 4; negative: never read smaps */
    double smaps_us_per_mb;        /* cost model of smaps_rollup, per MB; 0: 16 */
    double smaps_base_us;          /* cost model, per read; 0: 30; negative: none */
    uint32_t smaps_max_interval;   /* ticks; 0: 3600 */
    uint32_t refresh_interval;     /* ticks between name/cmdline/cgroup re-reads; 0: 60 */
    uint32_t max_procs;            /* hard cap on processes tracked; 0: 65536 */
    uint32_t max_fds;              /* descriptors kept open; 0: half the RLIMIT_NOFILE soft limit */
    uint32_t cmdline_max;          /* bytes of command line kept; 0: 4096 */
};

/* Counters since apm_sampler_new, and the size of the last scan. */
struct apm_sampler_stats {
    uint64_t scans;
    uint32_t procs;       /* pids listed by the last scan, kernel threads included */
    uint32_t watched;     /* processes sampled by the last scan */
    uint32_t open_fds;    /* descriptors kept open now (statm and cgroup files) */
    uint64_t procs_new;   /* identities first seen */
    uint64_t procs_gone;  /* identities that exited */
    uint64_t smaps_reads; /* successful smaps_rollup reads */
    uint64_t read_errors; /* reads that failed for another reason than the process exiting */
    uint64_t refused;     /* pids ignored because max_procs was reached, summed over scans */
};

struct apm_sampler;

/*
 * Creates a sampler. Reads the boot time from <proc_root>/stat and detects
 * the cgroup layout under cgroup_root. Borrows o and its strings (copied);
 * o->watch stays borrowed. *out is returned owned (free with
 * apm_sampler_free). Returns 0, -ENOMEM, or a negative code when
 * <proc_root>/stat cannot be read.
 * Thread: any.
 */
int apm_sampler_new(const struct apm_sampler_options *o, struct apm_sampler **out);

/* Closes every kept descriptor and frees the sampler. Accepts NULL. */
void apm_sampler_free(struct apm_sampler *s);

/*
 * One scan: appends host samples under APM_PROC_HOST and, for each watched
 * process, the process (apm_batch_add_proc) and its samples, all stamped
 * now_ms. Borrows b. Returns 0, or a negative code when the scan could not
 * run at all (/proc unreadable: the error from opening it) or the batch could
 * not grow (-ENOMEM, the batch then holds part of the tick).
 * Thread: meant for a worker thread (uv_queue_work). The sampler is not
 * thread-safe: one call at a time, and no apm_sampler_lookup meanwhile.
 */
int apm_sampler_sample(struct apm_sampler *s, int64_t now_ms, struct apm_batch *b);

/*
 * Replaces the watch rules (borrowed, as in the options; NULL = every
 * process). Every known process is judged again on the next scan.
 * Thread: same rule as apm_sampler_sample, never concurrently with it.
 */
void apm_sampler_set_watch(struct apm_sampler *s, const struct apm_watch *watch);

/*
 * Finds the identity of pid (for example a probe's socket peer). A pid not
 * seen by a scan yet is read from /proc now (a few small reads) and kept for
 * the next scan. *name is borrowed, valid until the next apm_sampler_sample
 * or apm_sampler_free. Returns 0, APM_E_NOTFOUND (no such process, or a
 * kernel thread) or -ENOMEM.
 * Thread: same rule as apm_sampler_sample, never concurrently with it.
 */
int apm_sampler_lookup(struct apm_sampler *s, int32_t pid, int64_t *start_ms, const char **name);

/* Copies the counters into *out. Thread: same rule as apm_sampler_sample. */
void apm_sampler_stats(const struct apm_sampler *s, struct apm_sampler_stats *out);

/*
 * Derives the name a person calls a process (PRODUCT.md): for a Python
 * process (comm or argv[0]'s basename starts with "python") the script's
 * basename ("python3 /srv/app/worker.py" gives "worker.py") or the -m module
 * ("python3 -m http.server" gives "http.server"), skipping interpreter
 * options (-u, -O, -X opt, -W arg, clustered like -uO); otherwise, and for
 * "-c" or an interactive interpreter, comm. argv is the raw cmdline (NUL
 * separated), len its length. Writes a NUL-terminated, valid UTF-8 string
 * of at most size - 1 bytes into out (size > 0).
 * Thread: pure function.
 */
void apm_sampler_name(const char *comm, const char *argv, size_t len, char *out, size_t size);

/*
 * Joins a raw cmdline into one line: arguments separated by one space,
 * control characters and invalid UTF-8 replaced by '?', cut at size - 1
 * bytes on a character boundary. Thread: pure function.
 */
void apm_sampler_cmdline(const char *argv, size_t len, char *out, size_t size);

#endif
