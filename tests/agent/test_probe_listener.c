/*
 * The probe listener on a real Unix socket in a temporary directory and a
 * real loop: valid lines become diffs and gc records of the peer process;
 * malformed, oversized and hostile lines are counted and dropped; a probe
 * that keeps sending them is disconnected; a probe claiming another pid is
 * attributed to its real peer pid; controls reach the right probe.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "agent/probe_listener.h"
#include "common/base/error.h"
#include "common/base/log.h"

#define HELLO_FMT                                                                                  \
    "{\"type\":\"hello\",\"protocol\":1,\"probe_version\":\"0.1.0\",\"t\":1700000000.5,"           \
    "\"pid\":%d,\"ppid\":1,\"python\":\"3.11.2\",\"implementation\":\"cpython\","                  \
    "\"name\":\"app.py\",\"argv\":[\"python3\",\"app.py\"],\"argc\":2,\"mode\":\"always\","        \
    "\"interval_s\":1,\"top_n\":25,\"frames\":1,\"key_type\":\"lineno\",\"max_memory\":67108864,"  \
    "\"trace_window_s\":1200,\"tracing\":true}\n"

#define GC_LINE                                                                                    \
    "{\"type\":\"gc\",\"t\":1700000001.25,\"count\":[5,1,0],\"stats\":["                           \
    "{\"collections\":10,\"collected\":3,\"uncollectable\":0},"                                    \
    "{\"collections\":2,\"collected\":1,\"uncollectable\":0},"                                     \
    "{\"collections\":1,\"collected\":0,\"uncollectable\":1}],\"garbage\":1}\n"

#define DIFF_HEAD                                                                                  \
    "{\"type\":\"diff\",\"t\":1700000002,\"seq\":1,\"session\":1,\"key_type\":\"lineno\","         \
    "\"frames\":1,\"interval_s\":1.0,\"traced_current\":5000,\"traced_peak\":6000,"                \
    "\"tracemalloc_memory\":100,\"total_size\":4000,\"total_count\":40,"                           \
    "\"total_size_diff\":1000,\"total_count_diff\":10,\"groups\":2,\"cost_s\":0.001,"

#define DIFF_LINE                                                                                  \
    DIFF_HEAD                                                                                      \
    "\"top\":[{\"file\":\"/srv/app.py\",\"line\":88,\"size\":3000,\"size_diff\":1024,"             \
    "\"count\":30,\"count_diff\":10},{\"file\":\"/srv/lib.py\",\"line\":7,\"size\":1000,"          \
    "\"size_diff\":-24,\"count\":10,\"count_diff\":0}],\"truncated\":0}\n"

struct env {
    uv_loop_t loop;
    char dir[64];
    char path[100];
    struct apm_probe_listener *l;
    int closed;
};

static void setup_conns(struct env *e, unsigned max_bad, size_t max_line, unsigned max_conns)
{
    memset(e, 0, sizeof(*e));
    apm_log_init("test", APM_LOG_ERROR);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    snprintf(e->dir, sizeof(e->dir), "/tmp/apm-probe-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    /* The listener creates the missing directory "run". */
    snprintf(e->path, sizeof(e->path), "%.70s/run/probe.sock", e->dir);
    struct apm_probe_listener_options o = {.path = e->path,
                                           .mode = 0660,
                                           .max_bad_lines = max_bad,
                                           .max_line = max_line,
                                           .max_conns = max_conns};
    assert_int_equal(apm_probe_listener_new(&e->loop, &o, &e->l), 0);
    struct stat st;
    assert_int_equal(stat(e->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
}

static void setup(struct env *e, unsigned max_bad, size_t max_line)
{
    setup_conns(e, max_bad, max_line, 0);
}

static void on_closed(void *ctx)
{
    ((struct env *)ctx)->closed = 1;
}

static void teardown(struct env *e)
{
    apm_probe_listener_close(e->l, on_closed, e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(e->closed, 1);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_not_equal(access(e->path, F_OK), 0); /* the socket is removed */
    char run[160];
    snprintf(run, sizeof(run), "%s/run", e->dir);
    rmdir(run);
    rmdir(e->dir);
}

static int client(const struct env *e)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Writes everything, running the loop while the socket is full. */
static void send_all(struct env *e, int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno != EAGAIN)
                return; /* the agent closed the connection */
            uv_run(&e->loop, UV_RUN_NOWAIT);
            continue;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void send_str(struct env *e, int fd, const char *s)
{
    send_all(e, fd, s, strlen(s));
}

static struct apm_probe_listener_stats stats_of(const struct env *e)
{
    struct apm_probe_listener_stats s;
    apm_probe_listener_get_stats(e->l, &s);
    return s;
}

/* Runs the loop until lines_ok + bad_lines reaches n (or a deadline passes). */
static void wait_lines(struct env *e, uint64_t n)
{
    for (int i = 0; i < 2000; i++) {
        struct apm_probe_listener_stats s = stats_of(e);
        if (s.lines_ok + s.bad_lines + s.oversized >= n)
            return;
        uv_run(&e->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    fail_msg("timed out waiting for %llu lines", (unsigned long long)n);
}

/* True once the agent has closed the client's connection. */
static bool wait_closed(struct env *e, int fd)
{
    for (int i = 0; i < 2000; i++) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return true;
        usleep(1000);
    }
    return false;
}

struct lookups {
    int calls;
    int32_t pids[8];
};

static int lookup(void *ctx, int32_t pid, int64_t *start_ms, const char **name)
{
    struct lookups *lk = ctx;
    if (lk->calls < 8)
        lk->pids[lk->calls] = pid;
    lk->calls++;
    if (pid != getpid())
        return APM_E_NOTFOUND;
    *start_ms = 1700000000000LL;
    *name = "worker.py";
    return 0;
}

static void test_probe_listener_turns_lines_into_diffs_of_the_peer(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 0);
    int fd = client(&e);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, (int)getpid());
    send_str(&e, fd, hello);
    send_str(&e, fd, GC_LINE);
    send_str(&e, fd, DIFF_LINE);
    wait_lines(&e, 3);
    struct apm_probe_listener_stats s = stats_of(&e);
    assert_int_equal(s.lines_ok, 3);
    assert_int_equal(s.bad_lines, 0);
    assert_int_equal(s.pid_mismatch, 0);
    assert_int_equal(s.connections, 1);

    struct apm_batch *b = apm_batch_new(0);
    struct lookups lk = {0};
    assert_int_equal(apm_probe_listener_drain(e.l, b, lookup, &lk), 0);
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->procs[0].pid, getpid());
    assert_int_equal(b->procs[0].start_ms, 1700000000000LL);
    assert_string_equal(b->procs[0].name, "worker.py");
    assert_int_equal(b->ndiffs, 1);
    const struct apm_trace_diff *d = &b->diffs[0];
    assert_int_equal(d->t_ms, 1700000002000LL);
    assert_int_equal(d->interval_ms, 1000);
    assert_int_equal(d->traced_current, 5000);
    assert_int_equal(d->nsites, 2);
    assert_string_equal(d->sites[0].file, "/srv/app.py");
    assert_int_equal(d->sites[0].line, 88);
    assert_int_equal(d->sites[0].size_diff, 1024);
    assert_int_equal(d->sites[1].size_diff, -24);
    assert_int_equal(d->sample_bytes, 0);
    assert_int_equal(b->ngc, 1);
    assert_int_equal(b->gc[0].t_ms, 1700000001250LL);
    assert_int_equal(b->gc[0].ngen, 3);
    assert_int_equal(b->gc[0].gen[2].uncollectable, 1);
    assert_int_equal(b->gc[0].gen[0].count, 5);
    apm_batch_free(b);

    /* Drained data is gone: a second drain adds nothing. */
    b = apm_batch_new(0);
    assert_int_equal(apm_probe_listener_drain(e.l, b, lookup, &lk), 0);
    assert_int_equal(b->ndiffs + b->ngc + b->nprocs, 0);
    apm_batch_free(b);
    close(fd);
    teardown(&e);
}

#define SAMPLED_SITE                                                                               \
    "{\"file\":\"/srv/app.py\",\"line\":88,\"size\":3000,\"size_diff\":1024,\"count\":30,"         \
    "\"count_diff\":10"
#define SAMPLED_HEAD DIFF_HEAD "\"source\":\"sampled\",\"sample_bytes\":524288,\"samples\":12,"

/* Sampled diffs: estimates with their errors; their extra fields all there or none. */
static void test_probe_listener_reads_sampled_diffs_strictly(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 0);
    int fd = client(&e);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, (int)getpid());
    send_str(&e, fd, hello);
    send_str(&e, fd,
             SAMPLED_HEAD "\"top\":[" SAMPLED_SITE ",\"size_err\":300,\"growth_var\":"
                          "90000}],\"truncated\":0}\n");
    send_str(&e, fd, DIFF_HEAD "\"source\":\"tracemalloc\",\"top\":[],\"truncated\":0}\n");
    const char *bad[] = {
        SAMPLED_HEAD "\"top\":[" SAMPLED_SITE "}],\"truncated\":0}\n", /* no errors */
        DIFF_HEAD "\"top\":[" SAMPLED_SITE ",\"size_err\":1,\"growth_var\":1}],"
                  "\"truncated\":0}\n", /* errors on an exact diff */
        DIFF_HEAD "\"source\":\"tracemalloc\",\"sample_bytes\":1,\"top\":[],"
                  "\"truncated\":0}\n", /* a rate on an exact diff */
        DIFF_HEAD "\"source\":\"guessed\",\"top\":[],\"truncated\":0}\n",
        DIFF_HEAD "\"source\":\"sampled\",\"samples\":1,\"top\":[],"
                  "\"truncated\":0}\n", /* no rate */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        send_str(&e, fd, bad[i]);
    wait_lines(&e, 8);
    struct apm_probe_listener_stats s = stats_of(&e);
    assert_int_equal(s.lines_ok, 3);
    assert_int_equal(s.bad_lines, 5);
    struct apm_batch *b = apm_batch_new(0);
    struct lookups lk = {0};
    assert_int_equal(apm_probe_listener_drain(e.l, b, lookup, &lk), 0);
    assert_int_equal(b->ndiffs, 2);
    const struct apm_trace_diff *d = &b->diffs[0];
    assert_int_equal(d->sample_bytes, 524288);
    assert_int_equal(d->samples, 12);
    assert_int_equal(d->sites[0].size_err, 300);
    assert_int_equal(d->sites[0].growth_var, 90000);
    assert_int_equal(b->diffs[1].sample_bytes, 0);
    apm_batch_free(b);
    close(fd);
    teardown(&e);
}

static void test_probe_listener_attributes_a_false_pid_to_the_real_peer(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 0);
    int fd = client(&e);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, 1); /* claims to be init */
    send_str(&e, fd, hello);
    send_str(&e, fd, DIFF_LINE);
    wait_lines(&e, 2);
    assert_int_equal(stats_of(&e).pid_mismatch, 1);
    struct apm_batch *b = apm_batch_new(0);
    struct lookups lk = {0};
    assert_int_equal(apm_probe_listener_drain(e.l, b, lookup, &lk), 0);
    assert_int_equal(lk.calls, 1);
    assert_int_equal(lk.pids[0], getpid());
    assert_int_equal(b->nprocs, 1);
    assert_int_equal(b->procs[0].pid, getpid());
    assert_int_equal(b->ndiffs, 1);
    apm_batch_free(b);

    /* A control for the claimed pid reaches nobody. */
    struct apm_msg_control c = {.action = APM_CONTROL_TRACE, .pid = 1, .duration_s = 60};
    assert_int_equal(apm_probe_listener_control(e.l, &c), APM_E_NOTFOUND);
    close(fd);
    teardown(&e);
}

static void test_probe_listener_drops_bad_lines_and_disconnects_repeat_offenders(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 6, 0);
    int fd = client(&e);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, (int)getpid());
    send_str(&e, fd, hello);
    const char *bad[] = {
        "not json at all\n",
        "{\"type\":\"gc\",\"t\":1}\n",                         /* fields missing */
        "{\"type\":\"launch_missiles\",\"t\":1}\n",            /* unknown type */
        DIFF_HEAD "\"top\":[],\"truncated\":0,\"extra\":1}\n", /* unknown field */
        DIFF_HEAD "\"top\":[{\"file\":\"a.py\",\"line\":1,\"size\":-5,\"size_diff\":0,"
                  "\"count\":0,\"count_diff\":0}],\"truncated\":0}\n", /* negative size */
        "{\"type\":\"gc\",\"t\":1,\"t\":2}\n",                         /* duplicate key */
        "\n",                                                          /* blank line */
    };
    send_str(&e, fd, bad[0]);
    send_str(&e, fd, GC_LINE); /* good lines still pass between bad ones */
    for (size_t i = 1; i < 6; i++)
        send_str(&e, fd, bad[i]);
    wait_lines(&e, 8);
    struct apm_probe_listener_stats s = stats_of(&e);
    assert_int_equal(s.lines_ok, 2);
    assert_int_equal(s.bad_lines, 6);
    assert_int_equal(s.bad_disconnects, 0);
    assert_int_equal(s.connections, 1);
    send_str(&e, fd, bad[6]); /* the seventh bad line passes the cap of 6 */
    assert_true(wait_closed(&e, fd));
    s = stats_of(&e);
    assert_int_equal(s.bad_lines, 7);
    assert_int_equal(s.bad_disconnects, 1);
    assert_int_equal(s.connections, 0);
    /* The good gc line still reaches the batch. */
    struct apm_batch *b = apm_batch_new(0);
    struct lookups lk = {0};
    assert_int_equal(apm_probe_listener_drain(e.l, b, lookup, &lk), 0);
    assert_int_equal(b->ngc, 1);
    assert_int_equal(b->ndiffs, 0);
    apm_batch_free(b);
    close(fd);
    teardown(&e);
}

static void test_probe_listener_requires_hello_first(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 0);
    int fd = client(&e);
    send_str(&e, fd, GC_LINE);
    wait_lines(&e, 1);
    assert_int_equal(stats_of(&e).bad_lines, 1);
    struct apm_batch *b = apm_batch_new(0);
    struct lookups lk = {0};
    assert_int_equal(apm_probe_listener_drain(e.l, b, lookup, &lk), 0);
    assert_int_equal(b->ngc, 0);
    apm_batch_free(b);
    close(fd);
    teardown(&e);
}

static void test_probe_listener_refuses_an_oversized_line_before_buffering_it(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 4096);
    int fd = client(&e);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, (int)getpid());
    send_str(&e, fd, hello);
    /* 64 KiB without a newline: refused once 4 KiB are buffered. */
    size_t n = 64 << 10;
    char *junk = malloc(n);
    memset(junk, 'x', n);
    send_all(&e, fd, junk, n);
    free(junk);
    assert_true(wait_closed(&e, fd));
    struct apm_probe_listener_stats s = stats_of(&e);
    assert_int_equal(s.oversized, 1);
    assert_int_equal(s.lines_ok, 1);
    assert_int_equal(s.connections, 0);
    close(fd);
    teardown(&e);
}

static void test_probe_listener_routes_controls_to_the_probe_of_the_process(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 0);
    int fd = client(&e);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, (int)getpid());
    send_str(&e, fd, hello);
    wait_lines(&e, 1);
    struct apm_msg_control c = {
        .action = APM_CONTROL_TRACE, .pid = getpid(), .start_ms = 0, .duration_s = 600};
    assert_int_equal(apm_probe_listener_control(e.l, &c), 0);
    c.exact = true; /* tracemalloc even where the probe samples */
    assert_int_equal(apm_probe_listener_control(e.l, &c), 0);
    c.action = APM_CONTROL_STOP;
    assert_int_equal(apm_probe_listener_control(e.l, &c), 0);
    char got[256] = {0};
    size_t len = 0, lines = 0;
    for (int i = 0; i < 2000 && lines < 3; i++) {
        uv_run(&e.loop, UV_RUN_NOWAIT);
        ssize_t n = read(fd, got + len, sizeof(got) - 1 - len);
        if (n > 0) {
            for (ssize_t k = 0; k < n; k++)
                lines += got[len + (size_t)k] == '\n';
            len += (size_t)n;
        }
        usleep(1000);
    }
    assert_string_equal(
        got, "{\"type\":\"control\",\"action\":\"trace\",\"duration_s\":600}\n"
             "{\"type\":\"control\",\"action\":\"trace\",\"duration_s\":600,\"exact\":true}\n"
             "{\"type\":\"control\",\"action\":\"stop\"}\n");
    assert_int_equal(stats_of(&e).controls_sent, 3);
    /* Another process's control is not delivered here. */
    c.pid = getpid() + 1;
    assert_int_equal(apm_probe_listener_control(e.l, &c), APM_E_NOTFOUND);
    close(fd);
    teardown(&e);
}

static void test_probe_listener_never_removes_a_file_that_is_not_a_socket(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char path[] = "/tmp/apm-probe-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct apm_probe_listener_options o = {.path = path};
    struct apm_probe_listener *l = NULL;
    assert_int_equal(apm_probe_listener_new(&loop, &o, &l), -EEXIST);
    assert_int_equal(access(path, F_OK), 0);
    unlink(path);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Points stderr at a temporary file; capture_end restores it and returns the line count. */
static FILE *capture_begin(int *saved)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    *saved = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    return tmp;
}

static int capture_end(FILE *tmp, int saved, const char *needle, int *needles)
{
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    char line[1024];
    int n = 0;
    *needles = 0;
    while (fgets(line, sizeof(line), tmp) != NULL) {
        n++;
        *needles += strstr(line, needle) != NULL;
    }
    fclose(tmp);
    return n;
}

/* Connections over the cap are refused, counted and logged, at most 3 lines per window. */
static void test_probe_listener_logs_refusals_rate_limited(void **state)
{
    (void)state;
    struct env e;
    setup_conns(&e, 0, 0, 1);
    apm_log_init("test", APM_LOG_WARN);
    int saved;
    FILE *tmp = capture_begin(&saved);
    int keep = client(&e);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 10; i++) {
        int fd = client(&e);
        for (int k = 0; k < 200 && stats_of(&e).refused < (uint64_t)i + 1; k++)
            uv_run(&e.loop, UV_RUN_NOWAIT);
        close(fd);
    }
    int refused_lines = 0;
    int lines = capture_end(tmp, saved, "probe: refused a connection", &refused_lines);
    assert_int_equal(stats_of(&e).refused, 10);
    assert_int_equal(refused_lines, 3);
    assert_int_equal(lines, 3);
    close(keep);
    apm_log_init("test", APM_LOG_ERROR);
    teardown(&e);
}

/* Every pid mismatch is counted; the log names the first few. */
static void test_probe_listener_logs_pid_mismatches_rate_limited(void **state)
{
    (void)state;
    struct env e;
    setup(&e, 0, 0);
    apm_log_init("test", APM_LOG_WARN);
    int saved;
    FILE *tmp = capture_begin(&saved);
    char hello[1024];
    snprintf(hello, sizeof(hello), HELLO_FMT, 1);
    for (int i = 0; i < 6; i++) {
        int fd = client(&e);
        send_str(&e, fd, hello);
        wait_lines(&e, (uint64_t)i + 1);
        close(fd);
    }
    int mismatch_lines = 0;
    capture_end(tmp, saved, "says it is pid 1", &mismatch_lines);
    assert_int_equal(stats_of(&e).pid_mismatch, 6);
    assert_int_equal(mismatch_lines, 3);
    apm_log_init("test", APM_LOG_ERROR);
    teardown(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_listener_turns_lines_into_diffs_of_the_peer),
        cmocka_unit_test(test_probe_listener_reads_sampled_diffs_strictly),
        cmocka_unit_test(test_probe_listener_attributes_a_false_pid_to_the_real_peer),
        cmocka_unit_test(test_probe_listener_drops_bad_lines_and_disconnects_repeat_offenders),
        cmocka_unit_test(test_probe_listener_requires_hello_first),
        cmocka_unit_test(test_probe_listener_refuses_an_oversized_line_before_buffering_it),
        cmocka_unit_test(test_probe_listener_routes_controls_to_the_probe_of_the_process),
        cmocka_unit_test(test_probe_listener_never_removes_a_file_that_is_not_a_socket),
        cmocka_unit_test(test_probe_listener_logs_refusals_rate_limited),
        cmocka_unit_test(test_probe_listener_logs_pid_mismatches_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
