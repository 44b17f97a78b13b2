/*
 * The store's backup (server/store/store_backup.c): a compacted copy that
 * opens as a store of its own with the same samples, the data directory's
 * other files copied with their modes, the directory rules, and a copy taken
 * while another thread commits. Real LMDB files in /tmp.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#define T0 1800000000000LL

struct fixture {
    char root[64];
    char data[96];
    char backup[96];
    struct apm_store *store;
    struct apm_agent_ident agent;
    uint64_t seq;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->root, "/tmp/apm-test-backup-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->data, sizeof(f->data), "%s/data", f->root);
    snprintf(f->backup, sizeof(f->backup), "%s/backup", f->root);
    struct apm_store_options opt = {.dir = f->data, .no_sync = true, .chunk_samples = 8};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    strcpy(f->agent.agent_id, "agent-1");
    strcpy(f->agent.host, "web-3");
    f->agent.instance = 77;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    apm_test_rmtree(f->root);
    free(f);
    return 0;
}

/* Commits one batch of n rss samples of process pid, at 1 s from t0 (value = t / 1000). */
static int put(struct apm_store *s, struct apm_agent_ident *agent, uint64_t seq, int32_t pid,
               int64_t t0, int n)
{
    struct apm_batch *b = apm_batch_new(seq);
    uint32_t idx = 0;
    struct apm_proc_desc p = {
        .pid = pid, .ppid = 1, .start_ms = 1700000000000, .name = "job.py", .cmdline = "x"};
    assert_int_equal(apm_batch_add_proc(b, &p, &idx), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(
            apm_batch_add_sample(b, idx, APM_METRIC_RSS, t0 + i * 1000, (t0 + i * 1000) / 1000), 0);
    struct apm_store_txn *t = NULL;
    int rc = apm_store_txn_begin(s, &t);
    if (rc == 0)
        rc = apm_store_txn_put_batch(t, agent, b);
    if (rc >= 0)
        rc = apm_store_txn_commit(t);
    else
        apm_store_txn_abort(t);
    apm_batch_free(b);
    return rc;
}

static int count_sample(void *ctx, int64_t t, int64_t v)
{
    int64_t *n = ctx;
    assert_int_equal(v, t / 1000);
    (*n)++;
    return 0;
}

static int64_t samples_of(struct apm_store *s, int32_t pid)
{
    char pidstr[APM_STORE_PROCESS_ID_MAX];
    apm_store_process_id(pidstr, sizeof(pidstr), "web-3", pid, 1700000000000);
    uint64_t id = 0;
    if (apm_store_find_series(s, NULL, pidstr, APM_METRIC_RSS, NULL, &id) != 0)
        return 0;
    int64_t n = 0;
    assert_int_equal(apm_store_read_samples(s, id, INT64_MIN, INT64_MAX, count_sample, &n), 0);
    return n;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_store_backup_copy_opens_with_every_sample(void **state)
{
    struct fixture *f = *state;
    for (int32_t pid = 1; pid <= 20; pid++)
        assert_int_equal(put(f->store, &f->agent, (uint64_t)pid, pid, T0, 100), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/token", f->data);
    write_file(path, "secret-token-0123456789\n", 0600);
    snprintf(path, sizeof(path), "%s/tls", f->data);
    assert_int_equal(mkdir(path, 0750), 0);
    snprintf(path, sizeof(path), "%s/tls/server.key", f->data);
    write_file(path, "KEY\n", 0600);

    struct apm_store_backup_info info;
    char err[256];
    assert_int_equal(apm_store_backup(f->store, f->backup, &info, err, sizeof(err)), 0);
    assert_int_equal(info.series, 20);
    assert_int_equal(info.samples, 2000);
    assert_int_equal(info.last_sample_ms, T0 + 99 * 1000);
    assert_int_equal(info.other_bytes, strlen("secret-token-0123456789\n") + 4);
    struct stat st;
    snprintf(path, sizeof(path), "%s/data.mdb", f->backup);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, info.bytes);
    assert_int_equal(stat(f->backup, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/token", f->backup);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/tls/server.key", f->backup);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/data.mdb.partial", f->backup);
    assert_int_equal(stat(path, &st), -1);

    /* The copy is a data directory of its own: it opens and answers the same. */
    struct apm_store *copy = NULL;
    struct apm_store_options opt = {.dir = f->backup, .no_sync = true, .chunk_samples = 8};
    assert_int_equal(apm_store_open(&opt, &copy), 0);
    for (int32_t pid = 1; pid <= 20; pid++)
        assert_int_equal(samples_of(copy, pid), 100);
    uint64_t seq = 0;
    assert_int_equal(apm_store_watermark(copy, "agent-1", 77, &seq), 0);
    assert_int_equal(seq, 20);
    /* And it takes new samples after the old ones, in the series it has. */
    assert_int_equal(put(copy, &f->agent, 21, 1, T0 + 100 * 1000, 10), 0);
    assert_int_equal(samples_of(copy, 1), 110);
    apm_store_free(copy);
}

/*
 * Samples committed after a series' record (only in the write-ahead log and
 * the writer's memory) are in the copy too: its log is replayed at open, and
 * the backup's newest sample counts them.
 */
static void test_store_backup_copies_the_log(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(put(f->store, &f->agent, 1, 1, T0, 100), 0); /* new: its record written */
    for (int i = 0; i < 5; i++)
        assert_int_equal(put(f->store, &f->agent, (uint64_t)i + 2, 1, T0 + (100 + i * 2) * 1000, 2),
                         0);
    struct apm_store_backup_info info;
    char err[256];
    assert_int_equal(apm_store_backup(f->store, f->backup, &info, err, sizeof(err)), 0);
    assert_int_equal(info.last_sample_ms, T0 + 109 * 1000);
    struct apm_store *copy = NULL;
    struct apm_store_options opt = {.dir = f->backup, .no_sync = true};
    assert_int_equal(apm_store_open(&opt, &copy), 0);
    assert_int_equal(samples_of(copy, 1), 110);
    apm_store_free(copy);
}

static void test_store_backup_refuses_bad_directories(void **state)
{
    struct fixture *f = *state;
    struct apm_store_backup_info info;
    char err[256];
    assert_int_equal(apm_store_backup(f->store, "relative/dir", &info, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "absolute"));
    assert_int_equal(mkdir(f->backup, 0755), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/old", f->backup);
    write_file(path, "x", 0644);
    assert_int_equal(apm_store_backup(f->store, f->backup, &info, err, sizeof(err)), -ENOTEMPTY);
    assert_non_null(strstr(err, "not empty"));
    assert_int_equal(apm_store_backup(f->store, path, &info, err, sizeof(err)), -ENOTDIR);
    snprintf(path, sizeof(path), "%s/no/such/parent", f->root);
    assert_int_equal(apm_store_backup(f->store, path, &info, err, sizeof(err)), -ENOENT);
    assert_false(apm_store_backup_running(f->store));
    /* An empty directory that exists is taken, and set to 0700. */
    unlink(path);
    snprintf(path, sizeof(path), "%s/empty", f->root);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(apm_store_backup(f->store, path, &info, err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

struct writer_arg {
    struct fixture *f;
    int batches;
    int failures;
};

/* Commits batches of a second process until the backup below ends, as ingest would. */
static void *keep_writing(void *p)
{
    struct writer_arg *a = p;
    struct apm_agent_ident agent = a->f->agent;
    strcpy(agent.agent_id, "agent-2");
    for (int i = 0; i < 200; i++) {
        if (put(a->f->store, &agent, (uint64_t)i + 1, 999, T0 + i * 10000, 10) != 0)
            a->failures++;
        a->batches++;
    }
    return NULL;
}

static void test_store_backup_while_another_thread_commits(void **state)
{
    struct fixture *f = *state;
    for (int32_t pid = 1; pid <= 50; pid++)
        assert_int_equal(put(f->store, &f->agent, (uint64_t)pid, pid, T0, 200), 0);
    struct writer_arg a = {.f = f};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, keep_writing, &a), 0);
    struct apm_store_backup_info info;
    char err[256];
    int rc = apm_store_backup(f->store, f->backup, &info, err, sizeof(err));
    pthread_join(th, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(a.failures, 0);
    struct apm_store *copy = NULL;
    struct apm_store_options opt = {.dir = f->backup, .no_sync = true, .chunk_samples = 8};
    assert_int_equal(apm_store_open(&opt, &copy), 0);
    /* What was committed before the backup began is whole; the rest is a prefix. */
    for (int32_t pid = 1; pid <= 50; pid++)
        assert_int_equal(samples_of(copy, pid), 200);
    int64_t later = samples_of(copy, 999);
    assert_true(later % 10 == 0 && later <= 2000);
    apm_store_free(copy);
    assert_int_equal(samples_of(f->store, 999), 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_backup_copy_opens_with_every_sample, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_backup_copies_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_backup_refuses_bad_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_backup_while_another_thread_commits, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
