#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/store/store.h"
#include "tests/tmpdir.h"

#include "tests/server/store/store_fixture.h"

static int count_host(void *ctx, const struct apm_host_info *h)
{
    struct collected *c = ctx;
    assert_string_equal(h->host, "web-3");
    assert_string_equal(h->agent_id, "agent-1");
    assert_string_equal(h->boot_id, "boot-a");
    assert_int_equal(h->nprocesses, 1);
    assert_true(h->first_seen_ms <= h->last_seen_ms);
    c->n++;
    return 0;
}

static int count_process(void *ctx, const struct apm_process_info *p)
{
    struct collected *c = ctx;
    assert_string_equal(p->id, "web-3:4242:1700000000123");
    assert_string_equal(p->host, "web-3");
    assert_string_equal(p->name, "worker.py");
    assert_string_equal(p->cmdline, "python3 worker.py --fast");
    assert_string_equal(p->cgroup, "/system.slice/worker.service");
    assert_int_equal(p->pid, 4242);
    assert_int_equal(p->ppid, 1);
    assert_true(p->start_ms == 1700000000123);
    c->n++;
    return 0;
}

static void test_store_puts_and_lists_batch(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 1, 1700000001000, 5), 0);

    struct collected c = {0};
    assert_int_equal(apm_store_list_hosts(f->store, count_host, &c), 0);
    assert_int_equal(c.n, 1);
    c.n = 0;
    assert_int_equal(apm_store_list_processes(f->store, "web-3", count_process, &c), 0);
    assert_int_equal(c.n, 1);
    c.n = 0;
    assert_int_equal(apm_store_list_processes(f->store, "web", count_process, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(apm_store_list_processes(f->store, NULL, count_process, &c), 0);
    assert_int_equal(c.n, 1);

    c.n = 0;
    assert_int_equal(apm_store_list_series(f->store, NULL, collect_series, &c), 0);
    assert_int_equal(c.n, 2);
    c.n = 0;
    struct apm_series_filter byname = {.process_name = "worker.py"};
    assert_int_equal(apm_store_list_series(f->store, &byname, collect_series, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.last.metric, APM_METRIC_RSS);
    assert_int_equal(c.last.pid, 4242);
    assert_string_equal(c.last.process_id, "web-3:4242:1700000000123");
    assert_true(c.last.first_ms == 1700000001000);
    assert_true(c.last.last_ms == 1700000005000);
    assert_true(c.last.last_value == 100000 + 1700000005);
    assert_int_equal(c.last.nsamples, 5);

    uint64_t host_id = find_series(f, APM_METRIC_MEM_AVAILABLE);
    c.n = 0;
    assert_int_equal(apm_store_get_series(f->store, host_id, collect_series, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.name, "");
    assert_string_equal(c.host, "web-3");
    assert_int_equal(c.last.pid, 0);
    assert_int_equal(apm_store_get_series(f->store, 999, collect_series, &c), APM_E_NOTFOUND);

    struct collected s = {0};
    assert_int_equal(apm_store_read_samples(f->store, host_id, 0, INT64_MAX, collect_sample, &s),
                     0);
    assert_int_equal(s.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_true(s.t[i] == 1700000001000 + i * 1000);
        assert_true(s.v[i] == -s.t[i]);
    }
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.series, 2);
    assert_int_equal(st.samples, 10);
    assert_int_equal(st.commits, 1);
    assert_true(st.bytes_on_disk > 0);
}

static void test_store_finds_a_series_by_its_names(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 1, 1700000001000, 2), 0);
    char pid[APM_STORE_PROCESS_ID_MAX];
    apm_store_process_id(pid, sizeof(pid), "web-3", 4242, 1700000000123);
    assert_string_equal(pid, "web-3:4242:1700000000123");
    uint64_t rss = find_series(f, APM_METRIC_RSS), host = find_series(f, APM_METRIC_MEM_AVAILABLE);
    uint64_t id = 0;
    /* The host given, or taken from the process id: the same series. */
    assert_int_equal(apm_store_find_series(f->store, "web-3", pid, APM_METRIC_RSS, NULL, &id), 0);
    assert_true(id == rss);
    id = 0;
    assert_int_equal(apm_store_find_series(f->store, NULL, pid, APM_METRIC_RSS, "", &id), 0);
    assert_true(id == rss);
    assert_int_equal(
        apm_store_find_series(f->store, "web-3", "", APM_METRIC_MEM_AVAILABLE, NULL, &id), 0);
    assert_true(id == host);
    assert_int_equal(apm_store_find_series(f->store, NULL, pid, APM_METRIC_PSS, NULL, &id),
                     APM_E_NOTFOUND);
    assert_int_equal(apm_store_find_series(f->store, NULL, "no-colons", APM_METRIC_RSS, NULL, &id),
                     APM_E_NOTFOUND);
}

static void test_store_drops_duplicate_seq(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 1, 1700000001000, 3), 0);
    assert_int_equal(store_batch(f, 2, 1700000004000, 3), 0);
    /* A resend of seq 2 and of seq 1 writes nothing. */
    assert_int_equal(store_batch(f, 2, 1700000100000, 3), 1);
    assert_int_equal(store_batch(f, 1, 1700000200000, 3), 1);
    uint64_t seq = 0;
    assert_int_equal(apm_store_watermark(f->store, "agent-1", 77, &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(apm_store_watermark(f->store, "agent-1", 78, &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(apm_store_watermark(f->store, "nobody", 77, &seq), 0);
    assert_int_equal(seq, 0);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.samples, 12);
    assert_int_equal(st.dropped, 0);
}

static void test_store_keeps_watermark_across_reopen(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 5, 1700000001000, 10), 0);
    apm_store_free(f->store);
    open_store(f, 8, 0);
    assert_int_equal(store_batch(f, 5, 1700000001000, 10), 1);
    assert_int_equal(store_batch(f, 4, 1700000001000, 10), 1);
    /* The open chunk is reloaded and appending continues after it. */
    assert_int_equal(store_batch(f, 6, 1700000011000, 10), 0);
    struct collected s = {0};
    uint64_t id = find_series(f, APM_METRIC_RSS);
    assert_int_equal(apm_store_read_samples(f->store, id, 0, INT64_MAX, collect_sample, &s), 0);
    assert_int_equal(s.n, 20);
    for (int i = 0; i < 20; i++)
        assert_true(s.t[i] == 1700000001000 + i * 1000);
}

static void test_store_new_instance_resets_dedup(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 9, 1700000001000, 2), 0);
    f->agent.instance = 78;
    assert_int_equal(store_batch(f, 1, 1700000003000, 2), 0);
    assert_int_equal(store_batch(f, 1, 1700000005000, 2), 1);
    uint64_t seq = 0;
    assert_int_equal(apm_store_watermark(f->store, "agent-1", 78, &seq), 0);
    assert_int_equal(seq, 1);
}

static void test_store_reads_range_across_chunks(void **state)
{
    struct fixture *f = *state;
    /* 100 samples in batches of 7 over chunks of 8: sealed chunks plus an open one. */
    uint64_t seq = 1;
    for (int i = 0; i < 100; i += 7)
        assert_int_equal(
            store_batch(f, seq++, 1700000000000 + i * 1000ll, i + 7 > 100 ? 100 - i : 7), 0);
    uint64_t id = find_series(f, APM_METRIC_RSS);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.chunks, 2 * (100 / 8));

    struct collected s = {0};
    int64_t from = 1700000000000 + 13 * 1000, to = 1700000000000 + 97 * 1000;
    assert_int_equal(apm_store_read_samples(f->store, id, from, to, collect_sample, &s), 0);
    assert_int_equal(s.n, 97 - 13 + 1);
    for (int i = 0; i < s.n; i++) {
        assert_true(s.t[i] == from + i * 1000);
        assert_true(s.v[i] == 100000 + s.t[i] / 1000);
    }
    /* Exactly on a chunk's first sample, and a range inside one chunk. */
    s.n = 0;
    assert_int_equal(
        apm_store_read_samples(f->store, id, 1700000016000, 1700000018000, collect_sample, &s), 0);
    assert_int_equal(s.n, 3);
    assert_true(s.t[0] == 1700000016000);
    s.n = 0;
    assert_int_equal(apm_store_read_samples(f->store, id, 0, 1699999999999, collect_sample, &s), 0);
    assert_int_equal(s.n, 0);
    /* The callback can stop the read early. */
    s = (struct collected){.stop_after = 10};
    assert_int_equal(apm_store_read_samples(f->store, id, 0, INT64_MAX, collect_sample, &s), 0);
    assert_int_equal(s.n, 10);
}

/*
 * The writer forgets a series without samples for forget_after_ms (its open
 * chunk included) and reads it back from LMDB when it returns: nothing is lost.
 */
static void test_store_forgets_idle_series_and_reads_them_back(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    struct apm_store_options opt = {
        .dir = f->dir, .chunk_samples = 8, .no_sync = true, .forget_after_ms = 200};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    /* Samples of 2023: long silent by the writer's clock. 11 of them: one sealed chunk, 3 open. */
    assert_int_equal(store_batch(f, 1, 1700000000000, 11), 0);
    usleep(100 * 1000); /* past forget_after_ms / 4 since the open */
    assert_int_equal(store_batch(f, 2, 1700000011000, 2), 0);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.forgotten, 2); /* rss and mem_available */
    usleep(100 * 1000);
    assert_int_equal(store_batch(f, 3, 1700000013000, 3), 0);
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.forgotten, 4);
    uint64_t id = find_series(f, APM_METRIC_RSS);
    struct collected s = {0};
    assert_int_equal(apm_store_read_samples(f->store, id, 0, INT64_MAX, collect_sample, &s), 0);
    assert_int_equal(s.n, 16);
    for (int i = 0; i < s.n; i++)
        assert_true(s.t[i] == 1700000000000 + i * 1000);
}

static void test_store_drops_out_of_order_samples(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 1, 1700000010000, 3), 0);
    /* Older and equal timestamps are dropped and counted; newer ones kept. */
    assert_int_equal(store_batch(f, 2, 1700000009000, 6), 0);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.dropped, 2 * 4);
    assert_int_equal(st.samples, 2 * 3 + 2 * 2);
    struct collected s = {0};
    uint64_t id = find_series(f, APM_METRIC_RSS);
    assert_int_equal(apm_store_read_samples(f->store, id, 0, INT64_MAX, collect_sample, &s), 0);
    assert_int_equal(s.n, 5);
    for (int i = 1; i < s.n; i++)
        assert_true(s.t[i] > s.t[i - 1]);
}

static void test_store_forgets_aborted_transaction(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(store_batch(f, 1, 1700000000000, 5), 0);
    struct apm_batch *b = make_batch(2, 1700000005000, 20);
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
    apm_store_txn_abort(t);
    apm_batch_free(b);
    /* The same batch goes in again as if the abort never happened. */
    assert_int_equal(store_batch(f, 2, 1700000005000, 20), 0);
    struct collected s = {0};
    uint64_t id = find_series(f, APM_METRIC_RSS);
    assert_int_equal(apm_store_read_samples(f->store, id, 0, INT64_MAX, collect_sample, &s), 0);
    assert_int_equal(s.n, 25);
    struct apm_store_stats st;
    assert_int_equal(apm_store_stats(f->store, &st), 0);
    assert_int_equal(st.samples, 50);
    assert_int_equal(st.dropped, 0);
}

static void test_store_refuses_bad_block(void **state)
{
    struct fixture *f = *state;
    struct apm_batch *b = make_batch(1, 1700000000000, 2);
    b->series[0].proc = 5; /* no such process */
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), -EINVAL);
    apm_store_txn_abort(t);
    apm_batch_free(b);
    uint64_t seq = 1;
    assert_int_equal(apm_store_watermark(f->store, "agent-1", 77, &seq), 0);
    assert_int_equal(seq, 0);
}

static void test_store_reports_full_map(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    open_store(f, 120, 256 * 1024);
    int rc = 0;
    for (uint64_t seq = 1; seq < 1000 && rc == 0; seq++) {
        struct apm_batch *b = apm_batch_new(seq);
        for (int p = 0; p < 50; p++) {
            struct apm_proc_desc d = {.pid = (int32_t)(seq * 100 + p), .start_ms = 1, .name = "x"};
            uint32_t idx;
            assert_int_equal(apm_batch_add_proc(b, &d, &idx), 0);
            assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 1000, 1), 0);
        }
        struct apm_store_txn *t = NULL;
        assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
        rc = apm_store_txn_put_batch(t, &f->agent, b);
        if (rc == 0)
            rc = apm_store_txn_commit(t);
        else
            apm_store_txn_abort(t);
        apm_batch_free(b);
    }
    assert_int_equal(rc, APM_E_FULL);
}

/* One commit of a batch with 50 new processes (new pages at the end of the file). */
static int commit_new_processes(struct fixture *f, uint64_t seq)
{
    struct apm_batch *b = apm_batch_new(seq);
    for (int p = 0; p < 50; p++) {
        struct apm_proc_desc d = {.pid = (int32_t)(seq * 100 + p), .start_ms = 1, .name = "x"};
        uint32_t idx;
        assert_int_equal(apm_batch_add_proc(b, &d, &idx), 0);
        assert_int_equal(apm_batch_add_sample(b, idx, APM_METRIC_RSS, 1000, 1), 0);
    }
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    int rc = apm_store_txn_put_batch(t, &f->agent, b);
    if (rc == 0)
        rc = apm_store_txn_commit(t);
    else
        apm_store_txn_abort(t);
    apm_batch_free(b);
    return rc;
}

/*
 * Commits that fail on the disk (here: writes past RLIMIT_FSIZE, as a full
 * disk fails them) are logged once per window, not once per commit.
 */
static void test_store_failed_commits_are_logged_once(void **state)
{
    struct fixture *f = *state;
    apm_log_init("test", APM_LOG_INFO);
    assert_int_equal(commit_new_processes(f, 1), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)st.st_size;
    signal(SIGXFSZ, SIG_IGN);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int err = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
    int failed = 0;
    for (uint64_t seq = 2; seq < 7; seq++)
        failed += commit_new_processes(f, seq) < 0;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    dup2(err, STDERR_FILENO);
    close(err);
    signal(SIGXFSZ, SIG_DFL);
    char text[4096] = "";
    rewind(tmp);
    size_t n = fread(text, 1, sizeof(text) - 1, tmp);
    fclose(tmp);
    text[n] = '\0';
    assert_int_equal(failed, 5);
    int lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1);
    assert_non_null(strstr(text, "store: commit: "));
    /* The store goes on once the disk takes writes again. */
    assert_int_equal(commit_new_processes(f, 7), 0);
}

/* A second opener of the same directory is refused while the first holds it, then admitted. */
static void test_store_locks_its_directory(void **state)
{
    struct fixture *f = *state;
    struct apm_store_options opt = {.dir = f->dir, .no_sync = true};
    struct apm_store *second = NULL;
    assert_int_equal(apm_store_open(&opt, &second), -EBUSY);
    assert_null(second);
    char path[128], pid[32] = "";
    snprintf(path, sizeof(path), "%s/apm.lock", f->dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(pid, sizeof(pid), fp));
    fclose(fp);
    assert_int_equal(atol(pid), (long)getpid());
    apm_store_free(f->store);
    f->store = NULL;
    assert_int_equal(apm_store_open(&opt, &second), 0);
    f->store = second;
}

/* Writes meta's schema number straight into the closed store's file. */
static void set_schema(const char *dir, uint64_t schema)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 64), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {6, "schema"}, v = {sizeof(schema), &schema};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static uint64_t get_schema(const char *dir)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    uint64_t schema = 0;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 64), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {6, "schema"}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    assert_int_equal(v.mv_size, sizeof(schema));
    memcpy(&schema, v.mv_data, sizeof(schema));
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return schema;
}

/*
 * A schema-1 store (chunk format 1, nothing packed) opens and is marked with this
 * collector's schema, so a schema-1 collector refuses it afterwards; a store from a
 * newer collector is refused with a message that names the directory and both numbers.
 */
static void test_store_upgrades_old_schema_and_refuses_newer(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(commit_new_processes(f, 3), 0);
    apm_store_free(f->store);
    f->store = NULL;
    uint64_t current = get_schema(f->dir);
    assert_true(current >= 2);
    for (uint64_t old = 1; old < current; old++) {
        set_schema(f->dir, old);
        open_store(f, 8, 0);
        apm_store_free(f->store);
        f->store = NULL;
        assert_int_equal(get_schema(f->dir), current);
    }

    set_schema(f->dir, current + 1);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int err = dup(STDERR_FILENO);
    dup2(fileno(tmp), STDERR_FILENO);
    struct apm_store_options opt = {.dir = f->dir, .no_sync = true};
    int rc = apm_store_open(&opt, &f->store);
    dup2(err, STDERR_FILENO);
    close(err);
    assert_int_equal(rc, APM_E_STORE);
    assert_null(f->store);
    char text[512] = "";
    rewind(tmp);
    size_t n = fread(text, 1, sizeof(text) - 1, tmp);
    fclose(tmp);
    text[n] = '\0';
    assert_non_null(strstr(text, f->dir));
    assert_non_null(strstr(text, "newer than this collector"));
    /* The refused store is untouched: still the newer number, and opens once it is back. */
    assert_int_equal(get_schema(f->dir), current + 1);
    set_schema(f->dir, current);
    open_store(f, 8, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_puts_and_lists_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_finds_a_series_by_its_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_drops_duplicate_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_keeps_watermark_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_new_instance_resets_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_forgets_idle_series_and_reads_them_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_reads_range_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_drops_out_of_order_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_forgets_aborted_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses_bad_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_reports_full_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_locks_its_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_failed_commits_are_logged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_upgrades_old_schema_and_refuses_newer, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
