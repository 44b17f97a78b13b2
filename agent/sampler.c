#include "agent/sampler.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/cgroup.h"
#include "agent/procfs.h"
#include "agent/watch.h"
#include "common/base/error.h"
#include "common/base/timeutil.h"

/* Bytes of a derived name, including the NUL. */
#define NAME_SIZE 256
/* /proc/<pid>/cgroup lists one line per hierarchy: a few hundred bytes. */
#define CGROUP_FILE_MAX 4096

enum kind {
    KIND_WATCHED, /* sampled every tick */
    KIND_IGNORED, /* not watched, zombie, or no command line: re-checked at refresh */
    KIND_NEW,     /* born since the last scan: described at the next one */
    KIND_KERNEL,  /* kernel thread: never looked at again */
    KIND_SELF,    /* the agent itself */
    KIND_GONE,    /* exited; its slot goes at the next scan */
};

/* One process as the sampler remembers it between ticks. */
struct proc {
    int32_t pid;
    int32_t ppid;
    uint64_t start_ticks;
    int64_t start_ms;
    enum kind kind;
    int statm_fd; /* kept open while watched, within the budget; -1 otherwise */
    char *name;
    char *cmdline;
    struct apm_cgroup *cg; /* referenced; NULL when unknown */
    uint64_t next_refresh; /* tick of the next name/cmdline/cgroup re-read */
    uint32_t refreshes;    /* re-reads so far: a young process is re-read sooner */
    uint64_t next_smaps;   /* tick of the next smaps_rollup; 0 unscheduled, UINT64_MAX never */
};

struct apm_sampler {
    char *proc_root;
    struct apm_cgroup_set *cgroups;
    const struct apm_watch *watch;
    int32_t self_pid;
    double smaps_budget_us;
    double smaps_us_per_mb;
    double smaps_base_us;
    uint32_t smaps_max_interval;
    uint32_t refresh_interval;
    uint32_t max_procs;
    uint32_t max_fds;
    uint32_t cmdline_max;
    int64_t btime_ms;
    int64_t clk_tck;
    uint64_t page_size;
    uint64_t tick;
    DIR *dir;
    int meminfo_fd;
    uint32_t statm_fds;
    /* pids listed by the current scan, ascending */
    int32_t *pids;
    uint32_t npids;
    uint32_t pids_cap;
    /* the process table, ascending by pid, and a spare for merging into */
    struct proc *procs;
    uint32_t nprocs;
    struct proc *spare;
    uint32_t procs_cap;
    char *argbuf; /* cmdline_max + 1 bytes of scratch */
    char *linebuf;
    struct apm_sampler_stats stats;
};

/* ---- the process table ---------------------------------------------- */

static void proc_release(struct apm_sampler *s, struct proc *p)
{
    if (p->statm_fd >= 0) {
        close(p->statm_fd);
        s->statm_fds--;
    }
    p->statm_fd = -1;
    free(p->name);
    free(p->cmdline);
    p->name = NULL;
    p->cmdline = NULL;
    apm_cgroup_put(s->cgroups, p->cg);
    p->cg = NULL;
}

static bool is_gone(int rc)
{
    return rc == -ENOENT || rc == -ESRCH;
}

static void count_error(struct apm_sampler *s, int rc)
{
    if (!is_gone(rc))
        s->stats.read_errors++;
}

static int read_membership(struct apm_sampler *s, int32_t pid, struct apm_cgroup **cg)
{
    char buf[CGROUP_FILE_MAX];
    size_t len;
    struct apm_cgroup_membership m;
    *cg = NULL;
    int rc = apm_procfs_read_cgroup(s->proc_root, pid, buf, sizeof(buf), &len);
    if (rc < 0)
        return rc;
    if (apm_cgroup_parse(buf, len, &m) < 0) {
        s->stats.read_errors++;
        return 0;
    }
    rc = apm_cgroup_get(s->cgroups, &m, cg);
    return rc == APM_E_NOTFOUND ? 0 : rc;
}

/*
 * Reads what a process is (command line, name, cgroup) and whether it is
 * watched, replacing what p held. st is a fresh read of its stat.
 * Returns 0, a "gone" code, or -ENOMEM.
 */
static int proc_describe(struct apm_sampler *s, struct proc *p, const struct apm_procfs_stat *st)
{
    size_t len;
    p->ppid = st->ppid;
    int rc = apm_procfs_read_cmdline(s->proc_root, p->pid, s->argbuf, s->cmdline_max + 1, &len);
    if (rc < 0)
        return rc;
    if (len == 0) {
        /* A zombie, or a kernel thread the flags did not give away. */
        proc_release(s, p);
        p->kind = KIND_IGNORED;
        return 0;
    }
    char name[NAME_SIZE];
    apm_sampler_name(st->comm, s->argbuf, len, name, sizeof(name));
    apm_sampler_cmdline(s->argbuf, len, s->linebuf, s->cmdline_max + 1);
    struct apm_cgroup *cg = NULL;
    rc = read_membership(s, p->pid, &cg);
    if (rc < 0)
        return rc;
    char *n = strdup(name), *c = strdup(s->linebuf);
    if (n == NULL || c == NULL) {
        free(n);
        free(c);
        apm_cgroup_put(s->cgroups, cg);
        return -ENOMEM;
    }
    free(p->name);
    free(p->cmdline);
    apm_cgroup_put(s->cgroups, p->cg);
    p->name = n;
    p->cmdline = c;
    p->cg = cg;
    const char *path = cg ? apm_cgroup_path(cg) : "";
    p->kind = apm_watch_match(s->watch, n, path) ? KIND_WATCHED : KIND_IGNORED;
    if (p->kind != KIND_WATCHED && p->statm_fd >= 0) {
        close(p->statm_fd);
        s->statm_fds--;
        p->statm_fd = -1;
    }
    return 0;
}

/*
 * Fills a new slot for pid. born says the process appeared while we were
 * running rather than at the first scan: it may not have called exec yet,
 * and most such processes (compilers, shell pipelines) are gone within a
 * tick, so only its identity is read now and the rest on the next tick, if
 * it is still there. That delays its first sample by one tick and keeps
 * churn cheap: one stat read per short-lived process.
 * Returns 0, a "gone" code, or -ENOMEM; on failure the slot holds nothing.
 */
static int proc_init(struct apm_sampler *s, struct proc *p, int32_t pid, bool born)
{
    struct apm_procfs_stat st;
    memset(p, 0, sizeof(*p));
    p->pid = pid;
    p->statm_fd = -1;
    int rc = apm_procfs_read_stat(s->proc_root, pid, &st);
    if (rc < 0)
        return rc;
    p->start_ticks = st.starttime_ticks;
    p->start_ms = s->btime_ms + (int64_t)(st.starttime_ticks * 1000 / (uint64_t)s->clk_tck);
    p->ppid = st.ppid;
    s->stats.procs_new++;
    if (st.flags & APM_PROCFS_PF_KTHREAD) {
        p->kind = KIND_KERNEL;
        return 0;
    }
    if (pid == s->self_pid) {
        p->kind = KIND_SELF;
        return 0;
    }
    if (born) {
        p->kind = KIND_NEW;
        p->next_refresh = s->tick + 1;
        return 0;
    }
    rc = proc_describe(s, p, &st);
    if (rc < 0) {
        proc_release(s, p);
        return rc;
    }
    /*
     * Seen at the agent's first scan. A process started in the last seconds
     * may not have called exec yet: re-read it soon, like one born later.
     * Older ones are long past their exec: the slow cadence from the start.
     */
    if (apm_now_ms() - p->start_ms < 10000) {
        p->next_refresh = s->tick + 1;
        return 0;
    }
    p->refreshes = 31;
    p->next_refresh = s->tick + 1 + (uint64_t)pid % s->refresh_interval;
    return 0;
}

/* The process behind p's pid is not p any more: forget p, take in the new one. */
static int proc_replace(struct apm_sampler *s, struct proc *p)
{
    int32_t pid = p->pid;
    proc_release(s, p);
    s->stats.procs_gone++;
    int rc = proc_init(s, p, pid, true);
    if (rc < 0) {
        p->kind = KIND_GONE;
        return is_gone(rc) ? 0 : rc;
    }
    return 0;
}

static void proc_gone(struct apm_sampler *s, struct proc *p)
{
    proc_release(s, p);
    s->stats.procs_gone++;
    p->kind = KIND_GONE;
}

/* Re-reads name, command line and cgroup, which exec and migration change. */
static int proc_refresh(struct apm_sampler *s, struct proc *p)
{
    struct apm_procfs_stat st;
    /*
     * A process seen between its fork and its exec (or started by a
     * launcher that execs later) shows its parent's command line at first:
     * re-read it after 1, 2, 4, ... ticks, then every refresh_interval.
     */
    uint64_t wait = p->refreshes < 31 ? (uint64_t)1 << p->refreshes : s->refresh_interval;
    p->next_refresh = s->tick + (wait < s->refresh_interval ? wait : s->refresh_interval);
    if (p->refreshes < UINT32_MAX)
        p->refreshes++;
    int rc = apm_procfs_read_stat(s->proc_root, p->pid, &st);
    if (rc < 0) {
        count_error(s, rc);
        proc_gone(s, p);
        return 0;
    }
    if (st.starttime_ticks != p->start_ticks)
        return proc_replace(s, p);
    rc = proc_describe(s, p, &st);
    if (is_gone(rc)) {
        proc_gone(s, p);
        return 0;
    }
    return rc;
}

static int ensure_procs_cap(struct apm_sampler *s, uint32_t n)
{
    if (n <= s->procs_cap)
        return 0;
    uint32_t cap = s->procs_cap ? s->procs_cap : 64;
    while (cap < n)
        cap *= 2;
    struct proc *a = realloc(s->procs, cap * sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    s->procs = a;
    struct proc *b = realloc(s->spare, cap * sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    s->spare = b;
    s->procs_cap = cap;
    return 0;
}

static struct proc *find_proc(struct apm_sampler *s, int32_t pid, uint32_t *at)
{
    uint32_t lo = 0, hi = s->nprocs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->procs[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return lo < s->nprocs && s->procs[lo].pid == pid ? &s->procs[lo] : NULL;
}

/* ---- one scan -------------------------------------------------------- */

static int cmp_pid(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Lists the numeric entries of /proc into s->pids, ascending. */
static int list_pids(struct apm_sampler *s)
{
    if (s->dir == NULL) {
        s->dir = opendir(s->proc_root);
        if (s->dir == NULL)
            return -errno;
    } else {
        rewinddir(s->dir);
    }
    s->npids = 0;
    bool sorted = true;
    struct dirent *d;
    while ((d = readdir(s->dir)) != NULL) {
        const char *c = d->d_name;
        long v = 0;
        for (; *c >= '0' && *c <= '9' && v <= INT32_MAX; c++)
            v = v * 10 + (*c - '0');
        if (c == d->d_name || *c != '\0' || v <= 0 || v > INT32_MAX)
            continue;
        if (s->npids == s->max_procs) {
            s->stats.refused++;
            continue;
        }
        if (s->npids == s->pids_cap) {
            uint32_t cap = s->pids_cap ? s->pids_cap * 2 : 256;
            int32_t *n = realloc(s->pids, cap * sizeof(*n));
            if (n == NULL)
                return -ENOMEM;
            s->pids = n;
            s->pids_cap = cap;
        }
        if (s->npids > 0 && s->pids[s->npids - 1] > (int32_t)v)
            sorted = false;
        s->pids[s->npids++] = (int32_t)v;
    }
    /* /proc lists pids in order; a test tree on another file system may not. */
    if (!sorted)
        qsort(s->pids, s->npids, sizeof(*s->pids), cmp_pid);
    return 0;
}

/* Merges the listed pids into the table: keeps known ones, adds new, drops exited. */
static int merge(struct apm_sampler *s)
{
    int rc = ensure_procs_cap(s, s->npids > s->nprocs ? s->npids : s->nprocs);
    if (rc < 0)
        return rc;
    uint32_t i = 0, j = 0, k = 0;
    bool born = s->tick > 1;
    while (i < s->nprocs || j < s->npids) {
        struct proc *old = i < s->nprocs ? &s->procs[i] : NULL;
        if (j == s->npids || (old != NULL && old->pid < s->pids[j])) {
            if (old->kind != KIND_GONE)
                s->stats.procs_gone++;
            proc_release(s, old);
            i++;
        } else if (old != NULL && old->pid == s->pids[j] && old->kind != KIND_GONE) {
            s->spare[k++] = *old;
            i++;
            j++;
        } else {
            if (old != NULL && old->pid == s->pids[j]) {
                proc_release(s, old);
                i++;
            }
            rc = proc_init(s, &s->spare[k], s->pids[j], born);
            if (rc == 0)
                k++;
            else
                count_error(s, rc);
            j++;
        }
    }
    struct proc *t = s->procs;
    s->procs = s->spare;
    s->spare = t;
    s->nprocs = k;
    return 0;
}

/*
 * Resident bytes of p. Returns 1 with *rss set, 0 when there is nothing to
 * report this tick (the process exited, is a zombie, or was replaced), or
 * -ENOMEM.
 */
static int read_rss(struct apm_sampler *s, struct proc *p, uint64_t *rss)
{
    if (p->statm_fd < 0 && s->statm_fds < s->max_fds) {
        int fd = apm_procfs_open(s->proc_root, p->pid, "statm");
        if (fd >= 0) {
            p->statm_fd = fd;
            s->statm_fds++;
        }
    }
    if (p->statm_fd >= 0) {
        struct apm_procfs_statm m;
        int rc = apm_procfs_read_statm_fd(p->statm_fd, &m);
        if (rc == 0) {
            *rss = m.resident * s->page_size;
            return m.size == 0 && m.resident == 0 ? 0 : 1;
        }
        /* The descriptor's process exited; is the pid still ours? */
        count_error(s, rc);
        close(p->statm_fd);
        p->statm_fd = -1;
        s->statm_fds--;
    }
    struct apm_procfs_stat st;
    int rc = apm_procfs_read_stat(s->proc_root, p->pid, &st);
    if (rc < 0) {
        count_error(s, rc);
        proc_gone(s, p);
        return 0;
    }
    if (st.starttime_ticks != p->start_ticks) {
        rc = proc_replace(s, p);
        return rc < 0 ? rc : 0;
    }
    *rss = st.rss_pages * s->page_size;
    return st.rss_pages == 0 ? 0 : 1;
}

static uint64_t smaps_interval(const struct apm_sampler *s, uint64_t rss)
{
    double cost = s->smaps_base_us + (double)rss / (1024.0 * 1024.0) * s->smaps_us_per_mb;
    double n = ceil(cost / s->smaps_budget_us);
    if (n < 1)
        return 1;
    return n > s->smaps_max_interval ? s->smaps_max_interval : (uint64_t)n;
}

static int sample_smaps(struct apm_sampler *s, struct proc *p, uint64_t rss, int64_t now_ms,
                        struct apm_batch *b, uint32_t idx)
{
    if (s->smaps_budget_us <= 0 || p->next_smaps == UINT64_MAX)
        return 0;
    uint64_t interval = smaps_interval(s, rss);
    if (p->next_smaps == 0)
        p->next_smaps = s->tick + (uint64_t)p->pid % interval;
    if (s->tick < p->next_smaps)
        return 0;
    p->next_smaps = s->tick + interval;
    struct apm_procfs_rollup r;
    int rc = apm_procfs_read_rollup(s->proc_root, p->pid, &r);
    if (rc == -ENOENT || rc == -EACCES || rc == -EPERM) {
        /* No smaps_rollup (kernel before 4.14) or not ours to read: stop trying. */
        if (rc != -ENOENT)
            s->stats.read_errors++;
        p->next_smaps = UINT64_MAX;
        return 0;
    }
    if (rc < 0) {
        count_error(s, rc);
        return 0;
    }
    s->stats.smaps_reads++;
    uint64_t uss = r.private_clean + r.private_dirty + r.private_hugetlb;
    if ((rc = apm_batch_add_sample(b, idx, APM_METRIC_PSS, now_ms, (int64_t)r.pss)) < 0 ||
        (rc = apm_batch_add_sample(b, idx, APM_METRIC_USS, now_ms, (int64_t)uss)) < 0 ||
        (rc = apm_batch_add_sample(b, idx, APM_METRIC_SWAP, now_ms, (int64_t)r.swap)) < 0)
        return rc;
    return 0;
}

static int sample_cgroup(struct apm_sampler *s, struct proc *p, int64_t now_ms, struct apm_batch *b,
                         uint32_t idx)
{
    struct apm_cgroup_mem m;
    if (p->cg == NULL || apm_cgroup_read(s->cgroups, p->cg, s->tick, &m) < 0)
        return 0;
    int rc = apm_batch_add_sample(b, idx, APM_METRIC_CGROUP_USAGE, now_ms, (int64_t)m.usage);
    if (rc == 0 && m.has_limit)
        rc = apm_batch_add_sample(b, idx, APM_METRIC_CGROUP_LIMIT, now_ms, (int64_t)m.limit);
    return rc;
}

static int sample_proc(struct apm_sampler *s, struct proc *p, int64_t now_ms, struct apm_batch *b)
{
    int rc;
    if (p->kind != KIND_WATCHED && p->kind != KIND_IGNORED && p->kind != KIND_NEW)
        return 0;
    if (s->tick >= p->next_refresh && (rc = proc_refresh(s, p)) < 0)
        return rc;
    if (p->kind != KIND_WATCHED)
        return 0;
    uint64_t rss;
    rc = read_rss(s, p, &rss);
    if (rc <= 0 || p->kind != KIND_WATCHED)
        return rc;
    struct apm_proc_desc d = {
        .pid = p->pid,
        .ppid = p->ppid,
        .start_ms = p->start_ms,
        .name = p->name,
        .cmdline = p->cmdline,
        .cgroup = p->cg ? (char *)apm_cgroup_path(p->cg) : "",
    };
    uint32_t idx;
    if ((rc = apm_batch_add_proc(b, &d, &idx)) < 0 ||
        (rc = apm_batch_add_sample(b, idx, APM_METRIC_RSS, now_ms, (int64_t)rss)) < 0 ||
        (rc = sample_smaps(s, p, rss, now_ms, b, idx)) < 0 ||
        (rc = sample_cgroup(s, p, now_ms, b, idx)) < 0)
        return rc;
    s->stats.watched++;
    return 0;
}

static int sample_host(struct apm_sampler *s, int64_t now_ms, struct apm_batch *b)
{
    char buf[8192];
    size_t len;
    struct apm_procfs_meminfo m;
    int rc;
    if (s->meminfo_fd >= 0) {
        rc = apm_procfs_pread(s->meminfo_fd, buf, sizeof(buf), &len);
        if (rc == 0)
            rc = apm_procfs_parse_meminfo(buf, len, &m);
    } else {
        rc = apm_procfs_read_meminfo(s->proc_root, &m);
    }
    if (rc < 0) {
        s->stats.read_errors++;
        return 0;
    }
    rc = apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_TOTAL, now_ms, (int64_t)m.total);
    if (rc == 0)
        rc = apm_batch_add_sample(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, now_ms,
                                  (int64_t)m.available);
    return rc;
}

int apm_sampler_sample(struct apm_sampler *s, int64_t now_ms, struct apm_batch *b)
{
    s->tick++;
    s->stats.scans++;
    s->stats.watched = 0;
    int rc = sample_host(s, now_ms, b);
    if (rc < 0)
        return rc;
    if ((rc = list_pids(s)) < 0 || (rc = merge(s)) < 0)
        return rc;
    s->stats.procs = s->npids;
    for (uint32_t i = 0; i < s->nprocs; i++) {
        if ((rc = sample_proc(s, &s->procs[i], now_ms, b)) < 0)
            return rc;
    }
    return 0;
}

/* ---- lifecycle and queries ------------------------------------------ */

static uint32_t default_max_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 512;
    rlim_t half = rl.rlim_cur / 2;
    return half > UINT32_MAX ? UINT32_MAX : (uint32_t)half;
}

/* Keeps /proc/meminfo open for pread; on failure each tick opens it by path. */
static int open_meminfo(const char *root)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/meminfo", root);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    return open(path, O_RDONLY | O_CLOEXEC);
}

int apm_sampler_new(const struct apm_sampler_options *o, struct apm_sampler **out)
{
    struct apm_sampler *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->meminfo_fd = -1;
    s->watch = o->watch;
    s->self_pid = o->self_pid;
    s->smaps_budget_us = o->smaps_budget_us != 0 ? o->smaps_budget_us : 4;
    s->smaps_us_per_mb = o->smaps_us_per_mb > 0 ? o->smaps_us_per_mb : 16;
    s->smaps_base_us = o->smaps_base_us > 0 ? o->smaps_base_us : o->smaps_base_us < 0 ? 0 : 30;
    s->smaps_max_interval = o->smaps_max_interval ? o->smaps_max_interval : 3600;
    s->refresh_interval = o->refresh_interval ? o->refresh_interval : 60;
    s->max_procs = o->max_procs ? o->max_procs : 65536;
    s->max_fds = o->max_fds ? o->max_fds : default_max_fds();
    s->cmdline_max = o->cmdline_max ? o->cmdline_max : 4096;
    s->clk_tck = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
    s->page_size = sysconf(_SC_PAGESIZE) > 0 ? (uint64_t)sysconf(_SC_PAGESIZE) : 4096;

    int rc = -ENOMEM;
    int64_t btime;
    s->proc_root = strdup(o->proc_root ? o->proc_root : "/proc");
    s->argbuf = malloc(s->cmdline_max + 1);
    s->linebuf = malloc(s->cmdline_max + 1);
    if (s->proc_root == NULL || s->argbuf == NULL || s->linebuf == NULL)
        goto fail;
    if ((rc = apm_procfs_read_btime(s->proc_root, &btime)) < 0)
        goto fail;
    s->btime_ms = btime * 1000;
    /* Cgroup files share the descriptor budget: a quarter goes to them. */
    rc = apm_cgroup_set_new(o->cgroup_root ? o->cgroup_root : "/sys/fs/cgroup", s->max_fds / 4,
                            &s->cgroups);
    if (rc < 0)
        goto fail;
    s->max_fds -= s->max_fds / 4;
    s->meminfo_fd = open_meminfo(s->proc_root);
    *out = s;
    return 0;
fail:
    apm_sampler_free(s);
    return rc;
}

void apm_sampler_free(struct apm_sampler *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->nprocs; i++)
        proc_release(s, &s->procs[i]);
    apm_cgroup_set_free(s->cgroups);
    if (s->dir != NULL)
        closedir(s->dir);
    if (s->meminfo_fd >= 0)
        close(s->meminfo_fd);
    free(s->procs);
    free(s->spare);
    free(s->pids);
    free(s->argbuf);
    free(s->linebuf);
    free(s->proc_root);
    free(s);
}

void apm_sampler_set_watch(struct apm_sampler *s, const struct apm_watch *watch)
{
    s->watch = watch;
    /* Judge every known process again on the next scan. */
    for (uint32_t i = 0; i < s->nprocs; i++) {
        if (s->procs[i].next_refresh > s->tick)
            s->procs[i].next_refresh = s->tick;
    }
}

int apm_sampler_lookup(struct apm_sampler *s, int32_t pid, int64_t *start_ms, const char **name)
{
    uint32_t at;
    struct proc *p = find_proc(s, pid, &at);
    if (p == NULL) {
        int rc = ensure_procs_cap(s, s->nprocs + 1);
        if (rc < 0)
            return rc;
        struct proc fresh;
        rc = proc_init(s, &fresh, pid, true);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0)
            return APM_E_NOTFOUND;
        memmove(&s->procs[at + 1], &s->procs[at], (s->nprocs - at) * sizeof(*p));
        s->procs[at] = fresh;
        s->nprocs++;
        p = &s->procs[at];
    }
    if (p->kind == KIND_NEW) {
        int rc = proc_refresh(s, p);
        if (rc < 0)
            return rc;
    }
    if (p->kind == KIND_KERNEL || p->kind == KIND_GONE || p->kind == KIND_NEW)
        return APM_E_NOTFOUND;
    *start_ms = p->start_ms;
    *name = p->name ? p->name : "";
    return 0;
}

void apm_sampler_stats(const struct apm_sampler *s, struct apm_sampler_stats *out)
{
    *out = s->stats;
    out->open_fds = s->statm_fds + apm_cgroup_set_open_fds(s->cgroups) + (s->meminfo_fd >= 0) +
                    (s->dir != NULL);
}
