#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "agent/procfs.h"
#include "common/base/error.h"

#define ROOT APM_TEST_FIXTURES "/proc-basic"

static void test_procfs_parses_stat_with_spaces_and_parens_in_comm(void **state)
{
    (void)state;
    struct apm_procfs_stat st;
    assert_int_equal(apm_procfs_read_stat(ROOT, 4000, &st), 0);
    assert_int_equal(st.pid, 4000);
    assert_string_equal(st.comm, "my (weird) name");
    assert_int_equal(st.state, 'R');
    assert_int_equal(st.ppid, 300);
    assert_int_equal(st.starttime_ticks, 99999);
    assert_int_equal(st.rss_pages, 2560);
    assert_false(st.flags & APM_PROCFS_PF_KTHREAD);
}

static void test_procfs_parses_stat_with_close_paren_at_end_of_comm(void **state)
{
    (void)state;
    const char *line = "7 (a) b)) S 1 7 7 0 -1 64 0 0 0 0 0 0 0 0 -100 -20 1 0 4242 10 3 0\n";
    struct apm_procfs_stat st;
    assert_int_equal(apm_procfs_parse_stat(line, strlen(line), &st), 0);
    assert_string_equal(st.comm, "a) b)");
    assert_int_equal(st.ppid, 1);
    assert_int_equal(st.starttime_ticks, 4242);
    assert_int_equal(st.rss_pages, 3);
}

static void test_procfs_marks_kernel_threads(void **state)
{
    (void)state;
    struct apm_procfs_stat st;
    assert_int_equal(apm_procfs_read_stat(ROOT, 2, &st), 0);
    assert_string_equal(st.comm, "kthreadd");
    assert_true(st.flags & APM_PROCFS_PF_KTHREAD);
}

static void test_procfs_rejects_truncated_stat(void **state)
{
    (void)state;
    struct apm_procfs_stat st;
    const char *cut = "42 (x) S 1 42 42 0 -1 64 0 0";
    assert_int_equal(apm_procfs_parse_stat(cut, strlen(cut), &st), APM_E_PARSE);
    const char *noparen = "42 x S 1";
    assert_int_equal(apm_procfs_parse_stat(noparen, strlen(noparen), &st), APM_E_PARSE);
    assert_int_equal(apm_procfs_parse_stat("", 0, &st), APM_E_PARSE);
}

static void test_procfs_parses_statm_in_pages(void **state)
{
    (void)state;
    struct apm_procfs_statm m;
    assert_int_equal(apm_procfs_read_statm(ROOT, 300, &m), 0);
    assert_int_equal(m.size, 61035);
    assert_int_equal(m.resident, 5120);
    assert_int_equal(m.shared, 1024);
    assert_int_equal(apm_procfs_parse_statm("12 x", 4, &m), APM_E_PARSE);
}

static void test_procfs_rereads_statm_from_a_kept_descriptor(void **state)
{
    (void)state;
    int fd = apm_procfs_open(ROOT, 4000, "statm");
    assert_true(fd >= 0);
    struct apm_procfs_statm m;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(apm_procfs_read_statm_fd(fd, &m), 0);
        assert_int_equal(m.resident, 2560);
    }
    close(fd);
}

static void test_procfs_parses_smaps_rollup_in_bytes(void **state)
{
    (void)state;
    struct apm_procfs_rollup r;
    assert_int_equal(apm_procfs_read_rollup(ROOT, 4000, &r), 0);
    assert_int_equal(r.rss, 10240 * 1024ULL);
    assert_int_equal(r.pss, 9000 * 1024ULL);
    assert_int_equal(r.private_clean, 100 * 1024ULL);
    assert_int_equal(r.private_dirty, 8000 * 1024ULL);
    assert_int_equal(r.private_hugetlb, 2048 * 1024ULL);
    assert_int_equal(r.swap, 0);
}

static void test_procfs_rollup_without_pss_is_a_parse_error(void **state)
{
    (void)state;
    const char *t = "Rss: 10 kB\nSwap: 0 kB\n";
    struct apm_procfs_rollup r;
    assert_int_equal(apm_procfs_parse_rollup(t, strlen(t), &r), APM_E_PARSE);
}

static void test_procfs_parses_meminfo_in_bytes(void **state)
{
    (void)state;
    struct apm_procfs_meminfo m;
    assert_int_equal(apm_procfs_read_meminfo(ROOT, &m), 0);
    assert_int_equal(m.total, 8036340 * 1024ULL);
    assert_int_equal(m.available, 5123456 * 1024ULL);
}

static void test_procfs_estimates_available_on_old_kernels(void **state)
{
    (void)state;
    const char *t = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n";
    struct apm_procfs_meminfo m;
    assert_int_equal(apm_procfs_parse_meminfo(t, strlen(t), &m), 0);
    assert_int_equal(m.available, 420 * 1024ULL);
    assert_int_equal(apm_procfs_parse_meminfo("MemFree: 1 kB\n", 14, &m), APM_E_PARSE);
}

static void test_procfs_reads_btime(void **state)
{
    (void)state;
    int64_t btime = 0;
    assert_int_equal(apm_procfs_read_btime(ROOT, &btime), 0);
    assert_int_equal(btime, 1700000000);
    assert_int_equal(apm_procfs_parse_btime("cpu 1\n", 6, &btime), APM_E_PARSE);
}

static void test_procfs_reads_cmdline_raw_with_nuls(void **state)
{
    (void)state;
    char buf[256];
    size_t len;
    static const char want[] = "python3\0-u\0/srv/app/worker.py\0--port\0008080";
    assert_int_equal(apm_procfs_read_cmdline(ROOT, 300, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(apm_procfs_read_cmdline(ROOT, 2, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 0);
}

static void test_procfs_truncates_long_cmdline_to_buffer(void **state)
{
    (void)state;
    char buf[8];
    size_t len;
    assert_int_equal(apm_procfs_read_cmdline(ROOT, 300, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 7);
    assert_string_equal(buf, "python3");
}

static void test_procfs_reads_comm_without_newline(void **state)
{
    (void)state;
    char comm[APM_PROCFS_COMM_MAX];
    assert_int_equal(apm_procfs_read_comm(ROOT, 4000, comm, sizeof(comm)), 0);
    assert_string_equal(comm, "my (weird) name");
}

static void test_procfs_missing_process_is_enoent(void **state)
{
    (void)state;
    struct apm_procfs_stat st;
    struct apm_procfs_statm m;
    struct apm_procfs_rollup r;
    char buf[64];
    size_t len;
    assert_int_equal(apm_procfs_read_stat(ROOT, 9999, &st), -ENOENT);
    assert_int_equal(apm_procfs_read_statm(ROOT, 9999, &m), -ENOENT);
    assert_int_equal(apm_procfs_read_rollup(ROOT, 2, &r), -ENOENT);
    assert_int_equal(apm_procfs_read_cgroup(ROOT, 9999, buf, sizeof(buf), &len), -ENOENT);
    assert_true(apm_procfs_open(ROOT, 9999, "statm") == -ENOENT);
}

static void test_procfs_reads_own_stat_in_real_proc(void **state)
{
    (void)state;
    struct apm_procfs_stat st;
    assert_int_equal(apm_procfs_read_stat("/proc", getpid(), &st), 0);
    assert_int_equal(st.pid, getpid());
    assert_int_equal(st.ppid, getppid());
    assert_true(st.starttime_ticks > 0);
    struct apm_procfs_rollup r;
    int rc = apm_procfs_read_rollup("/proc", getpid(), &r);
    /* smaps_rollup exists since Linux 4.14. */
    assert_true(rc == 0 || rc == -ENOENT);
    if (rc == 0)
        assert_true(r.pss > 0 && r.rss >= r.pss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_procfs_parses_stat_with_spaces_and_parens_in_comm),
        cmocka_unit_test(test_procfs_parses_stat_with_close_paren_at_end_of_comm),
        cmocka_unit_test(test_procfs_marks_kernel_threads),
        cmocka_unit_test(test_procfs_rejects_truncated_stat),
        cmocka_unit_test(test_procfs_parses_statm_in_pages),
        cmocka_unit_test(test_procfs_rereads_statm_from_a_kept_descriptor),
        cmocka_unit_test(test_procfs_parses_smaps_rollup_in_bytes),
        cmocka_unit_test(test_procfs_rollup_without_pss_is_a_parse_error),
        cmocka_unit_test(test_procfs_parses_meminfo_in_bytes),
        cmocka_unit_test(test_procfs_estimates_available_on_old_kernels),
        cmocka_unit_test(test_procfs_reads_btime),
        cmocka_unit_test(test_procfs_reads_cmdline_raw_with_nuls),
        cmocka_unit_test(test_procfs_truncates_long_cmdline_to_buffer),
        cmocka_unit_test(test_procfs_reads_comm_without_newline),
        cmocka_unit_test(test_procfs_missing_process_is_enoent),
        cmocka_unit_test(test_procfs_reads_own_stat_in_real_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
