/*
 * The write-ahead log (server/store/store_log.c, store_head.c): samples newer than their
 * series' records are read, survive an abort and a crash, and readers on other threads see
 * them while the writer commits and checkpoints.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/store/store.h"
#include "tests/server/store/store_fixture.h"

static int count_point(void *ctx, int64_t t, double v)
{
    (void)t;
    (void)v;
    (*(int *)ctx)++;
    return 0;
}

/* Reads both series whole and checks they hold n samples a second apart from t0. */
static void check_log_samples(struct fixture *f, int64_t t0, int n)
{
    enum apm_metric ms[2] = {APM_METRIC_RSS, APM_METRIC_MEM_AVAILABLE};
    for (int m = 0; m < 2; m++) {
        uint64_t id = find_series(f, ms[m]);
        struct collected *s = calloc(1, sizeof(*s));
        assert_int_equal(apm_store_read_samples(f->store, id, 0, INT64_MAX, collect_sample, s), 0);
        assert_int_equal(s->n, n);
        for (int i = 0; i < n; i++) {
            assert_true(s->t[i] == t0 + i * 1000);
            assert_true(s->v[i] == (m == 0 ? 100000 + s->t[i] / 1000 : -s->t[i]));
        }
        memset(s, 0, sizeof(*s));
        assert_int_equal(apm_store_get_series(f->store, id, collect_series, s), 0);
        assert_int_equal(s->last.nsamples, n);
        assert_true(s->last.last_ms == t0 + (n - 1) * 1000);
        assert_true(s->last.first_ms == t0);
        free(s);
    }
}

/*
 * Samples of now (so no series is idle and written at once) in batches of 3
 * over chunks of 8: after the first commit (which writes the new records)
 * they are in the log and the open chunks, and some chunks seal. Readers see
 * them all, also by step.
 */
static void test_store_reads_samples_only_in_the_log(void **state)
{
    struct fixture *f = *state;
    int64_t t0 = (apm_now_ms() / 1000 - 20) * 1000; /* not idle: logged */
    for (int i = 0; i < 10; i++)
        assert_int_equal(store_batch(f, (uint64_t)i + 1, t0 + i * 3000, 3), 0);
    check_log_samples(f, t0, 30);
    struct collected s = {0};
    assert_int_equal(apm_store_list_series(f->store, NULL, collect_series, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.last.nsamples, 30);
    /* One point per 10 s: every sample counted, those only in the log too. */
    uint64_t id = find_series(f, APM_METRIC_RSS);
    int points = 0;
    assert_int_equal(apm_store_read_steps(f->store, id, t0, t0 + 29000, 1000, APM_AGG_LAST,
                                          count_point, &points, NULL),
                     0);
    assert_int_equal(points, 30);
}

/* An aborted transaction leaves the logged samples as they were committed. */
static void test_store_abort_keeps_logged_samples(void **state)
{
    struct fixture *f = *state;
    int64_t t0 = (apm_now_ms() / 1000 - 20) * 1000; /* not idle: logged */
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_batch(f, (uint64_t)i + 1, t0 + i * 3000, 3), 0);
    struct apm_batch *b = make_batch(5, t0 + 12000, 20);
    struct apm_store_txn *t = NULL;
    assert_int_equal(apm_store_txn_begin(f->store, &t), 0);
    assert_int_equal(apm_store_txn_put_batch(t, &f->agent, b), 0);
    apm_store_txn_abort(t);
    apm_batch_free(b);
    check_log_samples(f, t0, 12);
    /* The writer goes on from the committed samples, and so does a reopened store. */
    assert_int_equal(store_batch(f, 5, t0 + 12000, 5), 0);
    check_log_samples(f, t0, 17);
    apm_store_free(f->store);
    open_store(f, 8, 0);
    check_log_samples(f, t0, 17);
}

/*
 * A process commits durably and dies without closing the store (no
 * checkpoint, no apm_store_free): the reopened store replays the log and
 * holds every sample committed, then goes on appending.
 */
static void test_store_replays_the_log_after_a_crash(void **state)
{
    struct fixture *f = *state;
    int64_t t0 = (apm_now_ms() / 1000 - 20) * 1000; /* not idle: logged */
    apm_store_free(f->store);
    f->store = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct apm_store_options opt = {.dir = f->dir, .chunk_samples = 8};
        if (apm_store_open(&opt, &f->store) != 0)
            _exit(2);
        for (int i = 0; i < 20; i++) {
            struct apm_batch *b = make_batch((uint64_t)i + 1, t0 + i * 3000, 3);
            struct apm_store_txn *t = NULL;
            if (apm_store_txn_begin(f->store, &t) != 0 ||
                apm_store_txn_put_batch(t, &f->agent, b) != 0 || apm_store_txn_commit(t) != 0)
                _exit(3);
            apm_batch_free(b);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    open_store(f, 8, 0);
    check_log_samples(f, t0, 60);
    uint64_t seq = 0;
    assert_int_equal(apm_store_watermark(f->store, "agent-1", 77, &seq), 0);
    assert_int_equal(seq, 20);
    assert_int_equal(store_batch(f, 21, t0 + 60000, 3), 0);
    check_log_samples(f, t0, 63);
    /* The next run replays what this one logged after the replay. */
    apm_store_free(f->store);
    open_store(f, 8, 0);
    check_log_samples(f, t0, 63);
}

struct log_reader {
    struct apm_store *store;
    uint64_t id;
    int64_t t0;
    atomic_int committed; /* batches committed (and so acked) so far */
    atomic_int done;
    atomic_int bad;   /* reads that missed a committed sample or broke the order */
    atomic_int reads; /* reads done */
};

struct run_check {
    int64_t t0;
    int n;
    bool bad;
};

static int check_run(void *ctx, int64_t t, int64_t v)
{
    struct run_check *c = ctx;
    if (t != c->t0 + c->n * 1000ll || v != 100000 + t / 1000)
        c->bad = true;
    c->n++;
    return 0;
}

static void *read_while_writing(void *arg)
{
    struct log_reader *r = arg;
    while (!atomic_load(&r->done)) {
        int committed = atomic_load(&r->committed);
        struct run_check c = {.t0 = r->t0};
        int rc = apm_store_read_samples(r->store, r->id, 0, INT64_MAX, check_run, &c);
        if (rc != 0 || c.bad || c.n < committed)
            atomic_fetch_add(&r->bad, 1);
        atomic_fetch_add(&r->reads, 1);
    }
    return NULL;
}

/*
 * A reader on another thread reads a series while the writer commits one
 * sample a time to it, with chunks of 8 (seals) and checkpoints every 20 ms:
 * every read holds every sample committed before it began, once each, in
 * order, whether in chunks, the record's head or only in the log.
 */
static void test_store_readers_see_logged_samples_while_writing(void **state)
{
    struct fixture *f = *state;
    apm_store_free(f->store);
    struct apm_store_options opt = {
        .dir = f->dir, .chunk_samples = 8, .no_sync = true, .checkpoint_ms = 20};
    assert_int_equal(apm_store_open(&opt, &f->store), 0);
    static struct log_reader r;
    memset(&r, 0, sizeof(r));
    r.store = f->store;
    r.t0 = (apm_now_ms() / 1000 - 20) * 1000;
    assert_int_equal(store_batch(f, 1, r.t0, 1), 0);
    atomic_store(&r.committed, 1);
    r.id = find_series(f, APM_METRIC_RSS);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_while_writing, &r), 0);
    for (int i = 1; i < 600; i++) {
        assert_int_equal(store_batch(f, (uint64_t)i + 1, r.t0 + i * 1000ll, 1), 0);
        atomic_store(&r.committed, i + 1);
        if (i % 50 == 0)
            usleep(5000); /* let checkpoints come due */
    }
    atomic_store(&r.done, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(atomic_load(&r.bad), 0);
    assert_true(atomic_load(&r.reads) > 0);
    check_log_samples(f, r.t0, 600);
}

/* The race of a reader with a seal, made to happen: see test_store_reader_renews_its_snapshot. */
static sem_t race_read, race_written;
static atomic_int race_hooks;

static void race_hook(uint64_t id)
{
    (void)id;
    if (atomic_fetch_add(&race_hooks, 1) == 0) {
        sem_post(&race_read);    /* the reader has its record ... */
        sem_wait(&race_written); /* ... and waits while the writer seals and checkpoints */
    }
}

struct race_read {
    struct apm_store *store;
    uint64_t id;
    struct collected *s;
    int rc;
};

static void *race_reader(void *arg)
{
    struct race_read *r = arg;
    r->rc = apm_store_read_samples(r->store, r->id, 0, INT64_MAX, collect_sample, r->s);
    return NULL;
}

/*
 * A reader reads a series' record, then, before it copies the published
 * head, the writer seals the head (its samples move to a sealed chunk the
 * reader's snapshot does not hold, and the head empties). The head says its
 * record is newer than the reader's: the reader renews its snapshot and
 * reads again, and gets every sample once.
 */
static void test_store_reader_renews_its_snapshot(void **state)
{
    struct fixture *f = *state;
    int64_t t0 = (apm_now_ms() / 1000 - 20) * 1000; /* not idle: logged */
    assert_int_equal(store_batch(f, 1, t0, 1), 0);  /* new: its record written */
    for (int i = 1; i < 6; i++)                     /* 6 samples of 8: the rest only logged */
        assert_int_equal(store_batch(f, (uint64_t)i + 1, t0 + i * 1000ll, 1), 0);
    uint64_t id = find_series(f, APM_METRIC_RSS);
    sem_init(&race_read, 0, 0);
    sem_init(&race_written, 0, 0);
    atomic_store(&race_hooks, 0);
    apm_store_test_read_hook = race_hook;
    struct race_read r = {f->store, id, calloc(1, sizeof(struct collected)), -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, race_reader, &r), 0);
    sem_wait(&race_read);
    assert_int_equal(store_batch(f, 7, t0 + 6000, 4), 0); /* 10 samples: a seal at 8 */
    sem_post(&race_written);
    assert_int_equal(pthread_join(th, NULL), 0);
    apm_store_test_read_hook = NULL;
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.s->n, 10);
    for (int i = 0; i < 10; i++)
        assert_true(r.s->t[i] == t0 + i * 1000ll);
    assert_true(atomic_load(&race_hooks) >= 2); /* it read again */
    free(r.s);
    sem_destroy(&race_read);
    sem_destroy(&race_written);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_reads_samples_only_in_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_abort_keeps_logged_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_replays_the_log_after_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_readers_see_logged_samples_while_writing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_reader_renews_its_snapshot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
