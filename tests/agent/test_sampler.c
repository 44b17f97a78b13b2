#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/procfs.h"
#include "agent/sampler.h"
#include "agent/watch.h"
#include "common/base/error.h"
#include "common/analysis/model.h"

#define PROC APM_TEST_FIXTURES "/proc-basic"
#define CGROUP APM_TEST_FIXTURES "/cgroup-v2"
#define KB 1024LL

/* ---- helpers ---------------------------------------------------------- */

static int64_t page(void)
{
    return sysconf(_SC_PAGESIZE);
}

static int64_t start_ms(int64_t btime, int64_t ticks)
{
    return btime * 1000 + ticks * 1000 / sysconf(_SC_CLK_TCK);
}

static const struct apm_proc_desc *find_proc(const struct apm_batch *b, int32_t pid, uint32_t *idx)
{
    for (uint32_t i = 0; i < b->nprocs; i++) {
        if (b->procs[i].pid == pid) {
            *idx = i;
            return &b->procs[i];
        }
    }
    return NULL;
}

static const struct apm_series_block *find_series(const struct apm_batch *b, uint32_t proc,
                                                  enum apm_metric m)
{
    for (uint32_t i = 0; i < b->nseries; i++) {
        if (b->series[i].proc == proc && b->series[i].metric == m)
            return &b->series[i];
    }
    return NULL;
}

static void assert_one(const struct apm_batch *b, uint32_t proc, enum apm_metric m, int64_t t,
                       int64_t v)
{
    const struct apm_series_block *s = find_series(b, proc, m);
    if (s == NULL)
        fail_msg("no series for proc %u metric %s", proc, apm_metric_name(m));
    assert_int_equal(s->n, 1);
    assert_int_equal(s->t_ms[0], t);
    assert_int_equal(s->value[0], v);
}

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[PATH_MAX];
    /* A cut path would write some other file: fail the test instead. */
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_file(dir, name, text, strlen(text));
}

/* Writes a process directory <root>/<pid> with the given identity and RSS. */
static void make_proc(const char *root, int pid, const char *comm, long start, const char *argv,
                      size_t argv_len, long rss_pages)
{
    char dir[PATH_MAX], text[512];
    snprintf(dir, sizeof(dir), "%s/%d", root, pid);
    mkdir(dir, 0755);
    snprintf(text, sizeof(text),
             "%d (%s) S 1 %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %ld 1000 %ld 0 0\n", pid,
             comm, pid, pid, start, rss_pages);
    write_text(dir, "stat", text);
    snprintf(text, sizeof(text), "100 %ld 0 1 0 50 0\n", rss_pages);
    write_text(dir, "statm", text);
    write_file(dir, "cmdline", argv, argv_len);
    write_text(dir, "cgroup", "0::/\n");
}

static void make_root(char *root, size_t size)
{
    snprintf(root, size, "/tmp/apm-sampler-XXXXXX");
    assert_non_null(mkdtemp(root));
    write_text(root, "stat", "cpu 1 2 3\nbtime 1600000000\n");
    write_text(root, "meminfo", "MemTotal: 1000 kB\nMemAvailable: 600 kB\n");
}

static void remove_tree(const char *root)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static struct apm_sampler *fixture_sampler(const struct apm_watch *w, int32_t self_pid)
{
    struct apm_sampler_options o = {
        .proc_root = PROC,
        .cgroup_root = CGROUP,
        .watch = w,
        .self_pid = self_pid,
        .smaps_budget_us = 1e9, /* smaps_rollup on every tick */
    };
    struct apm_sampler *s = NULL;
    assert_int_equal(apm_sampler_new(&o, &s), 0);
    return s;
}

/* ---- names and command lines ------------------------------------------ */

static void check_name(const char *comm, const char *argv, size_t len, const char *want)
{
    char out[256];
    apm_sampler_name(comm, argv, len, out, sizeof(out));
    assert_string_equal(out, want);
}

#define NAME(comm, lit, want) check_name(comm, lit, sizeof(lit), want)

static void test_sampler_names_python_script_by_basename(void **state)
{
    (void)state;
    NAME("python3", "python3\0/srv/app/worker.py\0--port\0001", "worker.py");
    NAME("python3", "/usr/bin/python3.11\0-u\0-O\0app.py", "app.py");
    NAME("python", "python\0-X\0dev\0-W\0ignore\0-B\0/x/y/serve.py", "serve.py");
    NAME("python3", "python3\0-Wignore\0-Xfrozen_modules=off\0main.py", "main.py");
    NAME("python3", "python3\0--check-hash-based-pycs\0never\0tool.py", "tool.py");
    NAME("python3", "python3\0--\0-weird.py", "-weird.py");
    NAME("python3", "/usr/bin/python3\0/usr/bin/apm-run\0python3\0/srv/app/worker.py", "worker.py");
    NAME("python3", "python3\0agent/python/apm-run\0python3\0-m\0http.server", "http.server");
    NAME("python3", "python3\0/usr/bin/apm-run\0/usr/local/bin/gunicorn\0app:wsgi", "gunicorn");
    NAME("python3", "python3\0/srv/app/\0", "app");
}

static void test_sampler_names_python_module(void **state)
{
    (void)state;
    NAME("python3", "python3\0-m\0http.server\0008000", "http.server");
    NAME("python3", "python3\0-u\0-m\0celery\0worker", "celery");
    NAME("python3", "python3\0-uOm\0gunicorn.app", "gunicorn.app");
    NAME("python3", "python3\0-mpytest\0-x", "pytest");
}

static void test_sampler_names_python_by_argv0_when_comm_is_a_script(void **state)
{
    (void)state;
    /* A script with a shebang: comm is the script, argv[0] the interpreter. */
    NAME("gunicorn", "/usr/bin/python3\0/usr/local/bin/gunicorn\0app:app", "gunicorn");
}

static void test_sampler_names_others_and_odd_pythons_by_comm(void **state)
{
    (void)state;
    NAME("nginx", "nginx: master process /usr/sbin/nginx", "nginx");
    NAME("python3", "python3\0-c\0import time; time.sleep(9)", "python3");
    NAME("python3", "python3", "python3");
    NAME("python3", "python3\0-", "python3");
    NAME("python3", "python3\0-m", "python3");
    NAME("my (weird) name", "/opt/bin/weird\0--flag", "my (weird) name");
}

static void test_sampler_name_is_valid_utf8(void **state)
{
    (void)state;
    NAME("bad\xff\x01", "x", "bad??");
    NAME("caf\xc3\xa9", "x", "caf\xc3\xa9");
    char out[5];
    /* Cut before a character that does not fit. */
    apm_sampler_name("ab\xc3\xa9\xc3\xa9", "", 0, out, sizeof(out));
    assert_string_equal(out, "ab\xc3\xa9");
}

static void test_sampler_joins_cmdline_with_spaces(void **state)
{
    (void)state;
    char out[64];
    static const char argv[] = "python3\0-u\0a b.py\0\0";
    apm_sampler_cmdline(argv, sizeof(argv) - 1, out, sizeof(out));
    assert_string_equal(out, "python3 -u a b.py");
    static const char ctl[] = "sh\0-c\0echo\nhi\t";
    apm_sampler_cmdline(ctl, sizeof(ctl), out, sizeof(out));
    assert_string_equal(out, "sh -c echo?hi?");
    char small[8];
    apm_sampler_cmdline(argv, sizeof(argv) - 1, small, sizeof(small));
    assert_string_equal(small, "python3");
}

/* ---- sampling a fixture tree ------------------------------------------ */

static void test_sampler_fixture_batch_is_exact(void **state)
{
    (void)state;
    struct apm_sampler *s = fixture_sampler(NULL, 0);
    struct apm_batch *b = apm_batch_new(1);
    const int64_t t = 1700001000000;
    assert_int_equal(apm_sampler_sample(s, t, b), 0);

    assert_int_equal(b->nprocs, 2);
    uint32_t py = UINT32_MAX, weird = UINT32_MAX;
    const struct apm_proc_desc *p = find_proc(b, 300, &py);
    assert_non_null(p);
    assert_int_equal(p->ppid, 1);
    assert_int_equal(p->start_ms, start_ms(1700000000, 12345));
    assert_string_equal(p->name, "worker.py");
    assert_string_equal(p->cmdline, "python3 -u /srv/app/worker.py --port 8080");
    assert_string_equal(p->cgroup, "/user.slice/session-1.scope");
    p = find_proc(b, 4000, &weird);
    assert_non_null(p);
    assert_int_equal(p->ppid, 300);
    assert_int_equal(p->start_ms, start_ms(1700000000, 99999));
    assert_string_equal(p->name, "my (weird) name");
    assert_string_equal(p->cmdline, "/opt/bin/weird --flag");
    assert_string_equal(p->cgroup, "/system.slice/app.service");

    assert_int_equal(b->nseries, 2 + 5 + 6);
    assert_one(b, APM_PROC_HOST, APM_METRIC_MEM_TOTAL, t, 8036340 * KB);
    assert_one(b, APM_PROC_HOST, APM_METRIC_MEM_AVAILABLE, t, 5123456 * KB);
    assert_one(b, py, APM_METRIC_RSS, t, 5120 * page());
    assert_one(b, py, APM_METRIC_PSS, t, 18000 * KB);
    assert_one(b, py, APM_METRIC_USS, t, (1000 + 15000) * KB);
    assert_one(b, py, APM_METRIC_SWAP, t, 2048 * KB);
    assert_one(b, py, APM_METRIC_CGROUP_USAGE, t, 22222222);
    assert_null(find_series(b, py, APM_METRIC_CGROUP_LIMIT));
    assert_one(b, weird, APM_METRIC_RSS, t, 2560 * page());
    assert_one(b, weird, APM_METRIC_PSS, t, 9000 * KB);
    assert_one(b, weird, APM_METRIC_USS, t, (100 + 8000 + 2048) * KB);
    assert_one(b, weird, APM_METRIC_SWAP, t, 0);
    assert_one(b, weird, APM_METRIC_CGROUP_USAGE, t, 123456789);
    assert_one(b, weird, APM_METRIC_CGROUP_LIMIT, t, 536870912);

    struct apm_sampler_stats st;
    apm_sampler_stats(s, &st);
    assert_int_equal(st.scans, 1);
    assert_int_equal(st.procs, 4);
    assert_int_equal(st.watched, 2);
    assert_int_equal(st.smaps_reads, 2);
    assert_int_equal(st.read_errors, 0);
    apm_batch_free(b);
    apm_sampler_free(s);
}

static void test_sampler_watch_rules_select_processes(void **state)
{
    (void)state;
    struct apm_watch *w;
    assert_int_equal(apm_watch_new(&w), 0);
    assert_int_equal(apm_watch_add_cgroup(w, "/system.slice", NULL, 0), 0);
    struct apm_sampler *s = fixture_sampler(w, 0);
    struct apm_batch *b = apm_batch_new(1);
    assert_int_equal(apm_sampler_sample(s, 1, b), 0);
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->procs[0].pid, 4000);
    apm_batch_free(b);
    apm_sampler_free(s);
    apm_watch_free(w);
}

static void test_sampler_skips_its_own_pid(void **state)
{
    (void)state;
    struct apm_sampler *s = fixture_sampler(NULL, 300);
    struct apm_batch *b = apm_batch_new(1);
    assert_int_equal(apm_sampler_sample(s, 1, b), 0);
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->procs[0].pid, 4000);
    apm_batch_free(b);
    apm_sampler_free(s);
}

static void test_sampler_reads_smaps_within_its_budget(void **state)
{
    (void)state;
    /*
     * 16 us per MB and 16 us per tick: a process of M MiB is read every M
     * ticks. Pages may be larger than 4 KiB, so derive M from the fixture.
     */
    struct apm_sampler_options o = {
        .proc_root = PROC,
        .cgroup_root = CGROUP,
        .smaps_budget_us = 16,
        .smaps_us_per_mb = 16,
        .smaps_base_us = -1,
    };
    struct apm_sampler *s;
    assert_int_equal(apm_sampler_new(&o, &s), 0);
    struct apm_batch *b = apm_batch_new(1);
    const int ticks = 200;
    for (int i = 1; i <= ticks; i++)
        assert_int_equal(apm_sampler_sample(s, i, b), 0);
    uint32_t py = UINT32_MAX, weird = UINT32_MAX;
    assert_non_null(find_proc(b, 300, &py));
    assert_non_null(find_proc(b, 4000, &weird));
    int64_t mb_py = 5120 * page() / (1024 * 1024), mb_weird = 2560 * page() / (1024 * 1024);
    assert_int_equal(find_series(b, py, APM_METRIC_RSS)->n, ticks);
    assert_int_equal(find_series(b, py, APM_METRIC_PSS)->n, ticks / mb_py);
    assert_int_equal(find_series(b, weird, APM_METRIC_USS)->n, ticks / mb_weird);
    /* Spread, not in lockstep: the first reads differ between processes. */
    const struct apm_series_block *a = find_series(b, py, APM_METRIC_PSS);
    assert_true(a->t_ms[1] - a->t_ms[0] == mb_py);
    apm_batch_free(b);
    apm_sampler_free(s);
}

static void test_sampler_never_reads_smaps_with_negative_budget(void **state)
{
    (void)state;
    struct apm_sampler_options o = {
        .proc_root = PROC,
        .cgroup_root = CGROUP,
        .smaps_budget_us = -1,
    };
    struct apm_sampler *s;
    assert_int_equal(apm_sampler_new(&o, &s), 0);
    struct apm_batch *b = apm_batch_new(1);
    assert_int_equal(apm_sampler_sample(s, 1, b), 0);
    uint32_t py = UINT32_MAX;
    assert_non_null(find_proc(b, 300, &py));
    assert_non_null(find_series(b, py, APM_METRIC_RSS));
    assert_null(find_series(b, py, APM_METRIC_PSS));
    apm_batch_free(b);
    apm_sampler_free(s);
}

static void test_sampler_lookup_returns_identity(void **state)
{
    (void)state;
    struct apm_sampler *s = fixture_sampler(NULL, 0);
    int64_t start = 0;
    const char *name = NULL;
    /* Before any scan the pid is read on demand. */
    assert_int_equal(apm_sampler_lookup(s, 300, &start, &name), 0);
    assert_int_equal(start, start_ms(1700000000, 12345));
    assert_string_equal(name, "worker.py");
    struct apm_batch *b = apm_batch_new(1);
    assert_int_equal(apm_sampler_sample(s, 1, b), 0);
    assert_int_equal(apm_sampler_lookup(s, 4000, &start, &name), 0);
    assert_string_equal(name, "my (weird) name");
    assert_int_equal(apm_sampler_lookup(s, 2, &start, &name), APM_E_NOTFOUND);
    assert_int_equal(apm_sampler_lookup(s, 12345, &start, &name), APM_E_NOTFOUND);
    apm_batch_free(b);
    apm_sampler_free(s);
}

static void test_sampler_fails_cleanly_without_proc(void **state)
{
    (void)state;
    struct apm_sampler_options o = {.proc_root = APM_TEST_FIXTURES "/no-such-proc"};
    struct apm_sampler *s = NULL;
    assert_int_equal(apm_sampler_new(&o, &s), -ENOENT);
    assert_null(s);
    apm_sampler_free(NULL);
}

/* ---- processes coming and going --------------------------------------- */

static struct apm_sampler *tmp_sampler(const char *root, uint32_t refresh_interval)
{
    struct apm_sampler_options o = {
        .proc_root = root,
        .cgroup_root = APM_TEST_FIXTURES "/no-such-cgroup",
        .smaps_budget_us = -1,
        .refresh_interval = refresh_interval,
    };
    struct apm_sampler *s;
    assert_int_equal(apm_sampler_new(&o, &s), 0);
    return s;
}

static struct apm_batch *tick(struct apm_sampler *s, int64_t t)
{
    struct apm_batch *b = apm_batch_new((uint64_t)t);
    assert_int_equal(apm_sampler_sample(s, t, b), 0);
    return b;
}

static void test_sampler_forgets_exited_processes(void **state)
{
    (void)state;
    char root[64], dir[PATH_MAX];
    make_root(root, sizeof(root));
    make_proc(root, 500, "a", 100, "a", 2, 10);
    make_proc(root, 501, "b", 100, "b", 2, 20);
    struct apm_sampler *s = tmp_sampler(root, 0);
    struct apm_batch *b = tick(s, 1);
    assert_int_equal(b->nprocs, 2);
    apm_batch_free(b);

    snprintf(dir, sizeof(dir), "rm -rf '%s/500'", root);
    assert_int_equal(system(dir), 0);
    b = tick(s, 2);
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->procs[0].pid, 501);
    struct apm_sampler_stats st;
    apm_sampler_stats(s, &st);
    assert_int_equal(st.procs_gone, 1);
    assert_int_equal(st.watched, 1);
    apm_batch_free(b);
    apm_sampler_free(s);
    remove_tree(root);
}

static void test_sampler_tells_a_reused_pid_from_the_old_process(void **state)
{
    (void)state;
    char root[64], dir[PATH_MAX];
    make_root(root, sizeof(root));
    make_proc(root, 600, "old", 100, "old", 4, 10);
    struct apm_sampler *s = tmp_sampler(root, 0);
    struct apm_batch *b = tick(s, 1);
    assert_int_equal(b->procs[0].start_ms, start_ms(1600000000, 100));
    apm_batch_free(b);

    /* The old process exits (its statm reads empty) and pid 600 is reused. */
    snprintf(dir, sizeof(dir), "%s/600", root);
    write_text(dir, "statm", "");
    make_proc(root, 600, "python3", 200, "python3\0new.py", 15, 0);
    write_text(dir, "statm", "");
    b = tick(s, 2);
    assert_int_equal(b->nprocs, 0);
    apm_batch_free(b);

    write_text(dir, "statm", "100 30 0 1 0 50 0\n");
    b = tick(s, 3);
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->procs[0].start_ms, start_ms(1600000000, 200));
    assert_string_equal(b->procs[0].name, "new.py");
    assert_int_equal(b->series[b->nseries - 1].value[0], 30 * page());
    struct apm_sampler_stats st;
    apm_sampler_stats(s, &st);
    assert_int_equal(st.procs_new, 2);
    assert_int_equal(st.procs_gone, 1);
    apm_batch_free(b);
    apm_sampler_free(s);
    remove_tree(root);
}

static void test_sampler_describes_a_new_process_on_its_second_tick(void **state)
{
    (void)state;
    char root[64];
    make_root(root, sizeof(root));
    struct apm_sampler *s = tmp_sampler(root, 0);
    struct apm_batch *b = tick(s, 1);
    assert_int_equal(b->nprocs, 0);
    apm_batch_free(b);

    /* Born between two scans, seen between fork and exec: not sampled yet. */
    make_proc(root, 700, "bash", 300, "bash", 5, 10);
    b = tick(s, 2);
    assert_int_equal(b->nprocs, 0);
    apm_batch_free(b);

    make_proc(root, 700, "python3", 300, "python3\0app.py", 15, 10);
    b = tick(s, 3);
    assert_int_equal(b->nprocs, 1);
    assert_string_equal(b->procs[0].name, "app.py");
    assert_string_equal(b->procs[0].cmdline, "python3 app.py");
    apm_batch_free(b);
    apm_sampler_free(s);
    remove_tree(root);
}

static void test_sampler_rereads_names_every_refresh_interval(void **state)
{
    (void)state;
    char root[64];
    make_root(root, sizeof(root));
    make_proc(root, 700, "bash", 300, "bash", 5, 10);
    struct apm_sampler *s = tmp_sampler(root, 2);
    struct apm_batch *b = tick(s, 1);
    assert_string_equal(b->procs[0].name, "bash");
    apm_batch_free(b);

    make_proc(root, 700, "python3", 300, "python3\0-m\0worker", 18, 10);
    b = tick(s, 2);
    assert_int_equal(b->nprocs, 1);
    assert_string_equal(b->procs[0].name, "worker");
    apm_batch_free(b);
    apm_sampler_free(s);
    remove_tree(root);
}

static void test_sampler_without_descriptor_budget_reads_stat(void **state)
{
    (void)state;
    char root[64];
    make_root(root, sizeof(root));
    make_proc(root, 800, "a", 100, "a", 2, 42);
    struct apm_sampler_options o = {
        .proc_root = root,
        .cgroup_root = APM_TEST_FIXTURES "/no-such-cgroup",
        .smaps_budget_us = -1,
        .max_fds = 1, /* three quarters of one: none for statm */
    };
    struct apm_sampler *s;
    assert_int_equal(apm_sampler_new(&o, &s), 0);
    struct apm_batch *b = tick(s, 1);
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->series[b->nseries - 1].value[0], 42 * page());
    apm_batch_free(b);
    apm_sampler_free(s);
    remove_tree(root);
}

/* ---- the real /proc --------------------------------------------------- */

static int64_t own_rss(void)
{
    struct apm_procfs_statm m;
    assert_int_equal(apm_procfs_read_statm("/proc", getpid(), &m), 0);
    return (int64_t)m.resident * page();
}

static void test_sampler_finds_itself_in_real_proc(void **state)
{
    (void)state;
    struct apm_sampler_options o = {0};
    struct apm_sampler *s;
    assert_int_equal(apm_sampler_new(&o, &s), 0);
    struct apm_batch *b = apm_batch_new(1);
    int64_t before = own_rss();
    int64_t now = 1700000000000;
    assert_int_equal(apm_sampler_sample(s, now, b), 0);
    int64_t after = own_rss();

    uint32_t me;
    const struct apm_proc_desc *p = find_proc(b, getpid(), &me);
    assert_non_null(p);
    assert_int_equal(p->ppid, getppid());
    assert_string_equal(p->name, "test_sampler");
    const struct apm_series_block *rss = find_series(b, me, APM_METRIC_RSS);
    assert_non_null(rss);
    int64_t lo = (before < after ? before : after) * 95 / 100;
    int64_t hi = (before > after ? before : after) * 105 / 100;
    assert_in_range(rss->value[0], lo, hi);
    const struct apm_series_block *total = find_series(b, APM_PROC_HOST, APM_METRIC_MEM_TOTAL);
    assert_non_null(total);
    assert_true(total->value[0] > 0);

    int64_t start;
    const char *name;
    assert_int_equal(apm_sampler_lookup(s, getpid(), &start, &name), 0);
    assert_int_equal(start, p->start_ms);
    struct apm_sampler_stats st;
    apm_sampler_stats(s, &st);
    assert_true(st.watched >= 1);
    assert_true(st.open_fds >= st.watched);
    apm_batch_free(b);
    apm_sampler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sampler_names_python_script_by_basename),
        cmocka_unit_test(test_sampler_names_python_module),
        cmocka_unit_test(test_sampler_names_python_by_argv0_when_comm_is_a_script),
        cmocka_unit_test(test_sampler_names_others_and_odd_pythons_by_comm),
        cmocka_unit_test(test_sampler_name_is_valid_utf8),
        cmocka_unit_test(test_sampler_joins_cmdline_with_spaces),
        cmocka_unit_test(test_sampler_fixture_batch_is_exact),
        cmocka_unit_test(test_sampler_watch_rules_select_processes),
        cmocka_unit_test(test_sampler_skips_its_own_pid),
        cmocka_unit_test(test_sampler_reads_smaps_within_its_budget),
        cmocka_unit_test(test_sampler_never_reads_smaps_with_negative_budget),
        cmocka_unit_test(test_sampler_lookup_returns_identity),
        cmocka_unit_test(test_sampler_fails_cleanly_without_proc),
        cmocka_unit_test(test_sampler_forgets_exited_processes),
        cmocka_unit_test(test_sampler_tells_a_reused_pid_from_the_old_process),
        cmocka_unit_test(test_sampler_describes_a_new_process_on_its_second_tick),
        cmocka_unit_test(test_sampler_rereads_names_every_refresh_interval),
        cmocka_unit_test(test_sampler_without_descriptor_budget_reads_stat),
        cmocka_unit_test(test_sampler_finds_itself_in_real_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
