/*
 * The group-commit writer. The loop thread queues jobs under a mutex and
 * signals a condition variable; the writer thread takes every waiting job,
 * stores them all in one transaction, commits once, moves the jobs to the
 * done list and wakes the loop with uv_async_send, whose callback reports
 * each job on the loop thread. Closing is asynchronous too: the thread says
 * it has exited through the same async handle, and only then is the handle
 * closed, so the loop never waits for a commit.
 */
#include "server/ingest/writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"

#define DEFAULT_MAX_QUEUE 4096u
/* A maintenance slice's bounds: ingest waits for one slice at most. */
#define SLICE_KEYS 2000u
#define SLICE_US 10000
/* Times a round is tried again after the store made room. */
#define ROOM_TRIES 4
/* Agent runs with a refused batch not yet sent again, at most (beyond: forgotten, logged). */
#define REFUSED_MAX 65536u
/*
 * A refused batch not sent again within this (to twice this) is taken as given
 * up: an agent whose queue or spool cap dropped it never sends it, and its run
 * must not be held back for good.
 */
#define REFUSED_HOLD_NS (120ull * 1000000000ull)

struct job {
    struct job *next;
    struct apm_agent_ident agent;
    struct apm_batch *batch;
    apm_writer_done_cb cb;
    void *ctx;
    int status;
};

struct job_list {
    struct job *head;
    struct job *tail;
};

struct apm_writer {
    uv_async_t async;
    struct apm_store *store;
    unsigned max_queue;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* Guarded by mu. */
    struct job_list pending;
    struct job_list done;
    struct apm_writer_stats stats;
    apm_writer_commit_fn commit_fn;
    void *commit_ctx;
    int64_t maint_period_ms; /* 0: no maintenance */
    bool stopping;
    bool exited;
    /* Writer thread only. */
    /*
     * Agent id and instance -> the lowest seq refused and not sent again yet
     * (seq << 16 | -status). A later batch of that run is refused too until
     * the refused one comes back: committing it would move the agent's
     * watermark past the refused one, whose resend would then be taken for
     * a duplicate and acked unstored. Batches of a closed connection are
     * still queued here when the agent reconnects and resends.
     * refused[0] holds what was refused lately, refused[1] what was refused
     * in the period before; every REFUSED_HOLD_NS the older one is forgotten.
     */
    struct apm_hashmap refused[2];
    uint64_t refused_rotated_ns;
    bool maint_running;    /* a pass is going on: a slice after every round */
    uint64_t maint_due_ns; /* monotonic time the next pass starts */
    /* Loop thread only. */
    bool closing;
    apm_writer_close_cb close_cb;
};

static void list_push(struct job_list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail != NULL)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static void list_splice(struct job_list *to, struct job_list *from)
{
    if (from->head == NULL)
        return;
    if (to->tail != NULL)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    from->head = from->tail = NULL;
}

/* ---- writer thread ---- */

/* The key of a job's agent run in apm_writer::refused: the agent id, its NUL, the instance. */
static size_t run_key(const struct job *j, char key[sizeof(j->agent.agent_id) + 8])
{
    size_t n = strnlen(j->agent.agent_id, sizeof(j->agent.agent_id) - 1);
    memcpy(key, j->agent.agent_id, n);
    key[n] = '\0';
    memcpy(key + n + 1, &j->agent.instance, 8);
    return n + 9;
}

/* The refused batch of a run, from either period: 0 and *v, or APM_E_NOTFOUND. */
static int refused_get(const struct apm_writer *w, const char *key, size_t klen, uint64_t *v)
{
    if (apm_hashmap_get(&w->refused[0], key, klen, v) == 0)
        return 0;
    return apm_hashmap_get(&w->refused[1], key, klen, v);
}

/* Forgets the older period's refusals once it is REFUSED_HOLD_NS old. */
static void refused_rotate(struct apm_writer *w)
{
    uint64_t now = apm_mono_ns();
    if (now - w->refused_rotated_ns < REFUSED_HOLD_NS)
        return;
    if (w->refused[1].len > 0)
        apm_warn("writer: %zu agent runs did not send their refused batch again within %llu s; "
                 "their later batches are taken",
                 w->refused[1].len, (unsigned long long)(REFUSED_HOLD_NS / 1000000000ull));
    apm_hashmap_close(&w->refused[1]);
    w->refused[1] = w->refused[0];
    apm_hashmap_init(&w->refused[0]);
    w->refused_rotated_ns = now;
}

/* Notes that job j was refused: its run's later batches wait for it. */
static void note_refused(struct apm_writer *w, const struct job *j)
{
    char key[sizeof(j->agent.agent_id) + 8];
    size_t klen = run_key(j, key);
    uint64_t v = 0;
    bool known = refused_get(w, key, klen, &v) == 0;
    if (known && v >> 16 < j->batch->seq)
        return;
    if (w->refused[0].len >= REFUSED_MAX) {
        apm_warn("writer: %u agent runs wait for a refused batch; forgetting them", REFUSED_MAX);
        apm_hashmap_close(&w->refused[0]);
        apm_hashmap_init(&w->refused[0]);
    }
    /* Refused again (or an older one): it is waited for from now on. */
    (void)apm_hashmap_del(&w->refused[1], key, klen);
    (void)apm_hashmap_put(&w->refused[0], key, klen, j->batch->seq << 16 | (uint16_t)-j->status);
}

/*
 * Forgets j's run's refused batch when j (stored) is it sent again or a later one: a round that
 * refused a batch and then stored its resend notes the refusal again at its end.
 */
static void note_stored(struct apm_writer *w, const struct job *j)
{
    if (w->refused[0].len == 0 && w->refused[1].len == 0)
        return;
    char key[sizeof(j->agent.agent_id) + 8];
    size_t klen = run_key(j, key);
    uint64_t v;
    if (refused_get(w, key, klen, &v) == 0 && v >> 16 <= j->batch->seq) {
        (void)apm_hashmap_del(&w->refused[0], key, klen);
        (void)apm_hashmap_del(&w->refused[1], key, klen);
    }
}

/*
 * Refuses, from first on, the jobs whose run has a refused batch of a lower
 * seq, with that batch's status; a job that is the refused one sent again
 * (or older) lets its run through.
 */
static void hold_back(struct apm_writer *w, struct job *first)
{
    if (w->refused[0].len == 0 && w->refused[1].len == 0)
        return;
    for (struct job *j = first; j != NULL; j = j->next) {
        char key[sizeof(j->agent.agent_id) + 8];
        size_t klen = run_key(j, key);
        uint64_t v;
        if (j->status < 0 || refused_get(w, key, klen, &v) != 0)
            continue;
        if (j->batch->seq <= v >> 16) {
            (void)apm_hashmap_del(&w->refused[0], key, klen);
            (void)apm_hashmap_del(&w->refused[1], key, klen);
        } else
            j->status = -(int)(v & 0xffff);
    }
}

/*
 * Stores every job not yet failed in one transaction. Returns 0 when it
 * committed (or a job failed and the caller should try the rest again), or
 * a code that fails every remaining job.
 */
static int store_round(struct apm_writer *w, struct job_list *jobs, bool *retry)
{
    struct apm_store_txn *txn = NULL;
    *retry = false;
    int rc = apm_store_txn_begin(w->store, &txn);
    if (rc < 0)
        return rc;
    for (struct job *j = jobs->head; j != NULL; j = j->next) {
        if (j->status < 0)
            continue;
        j->status = apm_store_txn_put_batch(txn, &j->agent, j->batch);
        if (j->status == APM_E_FULL || j->status == -ENOMEM) {
            rc = j->status;
            break;
        }
        if (j->status < 0) {
            /* One bad batch: drop it and store the others (not its run's later ones) again. */
            apm_warn("writer: batch %llu refused: %s", (unsigned long long)j->batch->seq,
                     apm_strerror(j->status));
            note_refused(w, j);
            hold_back(w, j->next);
            *retry = true;
            break;
        }
    }
    if (rc < 0 || *retry) {
        apm_store_txn_abort(txn);
        return rc;
    }
    return apm_store_txn_commit(txn);
}

static void store_jobs(struct apm_writer *w, struct job_list *jobs, apm_writer_commit_fn commit_fn,
                       void *commit_ctx)
{
    bool retry = true;
    int rc = 0, tries = 0;
    uint64_t t0 = apm_mono_ns();
    for (struct job *j = jobs->head; j != NULL; j = j->next)
        j->status = 0;
    refused_rotate(w);
    hold_back(w, jobs->head);
    while (retry && rc == 0) {
        rc = store_round(w, jobs, &retry);
        /* Full: the store grows its map or deletes its oldest raw chunks, then the round again. */
        if (rc == APM_E_FULL && tries++ < ROOM_TRIES &&
            apm_store_make_room(w->store, apm_now_ms()) == 1) {
            for (struct job *j = jobs->head; j != NULL; j = j->next)
                if (j->status == APM_E_FULL)
                    j->status = 0;
            rc = 0;
            retry = true;
        }
    }
    uint64_t took_us = (apm_mono_ns() - t0) / 1000u;
    if (rc < 0) {
        for (struct job *j = jobs->head; j != NULL; j = j->next)
            if (j->status >= 0 || j->status == rc)
                j->status = rc;
    }
    uint64_t batches = 0, duplicates = 0, failures = 0, samples = 0;
    for (struct job *j = jobs->head; j != NULL; j = j->next) {
        if (j->status < 0)
            note_refused(w, j);
        else
            note_stored(w, j);
        batches += j->status == 0;
        duplicates += j->status == 1;
        failures += j->status < 0;
        samples += j->status == 0 ? j->batch->nsamples : 0;
        if (j->status == 0 && commit_fn != NULL)
            commit_fn(commit_ctx, &j->agent, j->batch);
    }
    pthread_mutex_lock(&w->mu);
    w->stats.batches += batches;
    w->stats.duplicates += duplicates;
    w->stats.failures += failures;
    w->stats.samples += samples;
    w->stats.commits += rc == 0;
    apm_histogram_observe(&w->stats.commit_seconds, took_us);
    list_splice(&w->done, jobs);
    pthread_mutex_unlock(&w->mu);
}

/* True when a maintenance slice should run now (mu held). */
static bool maint_due(const struct apm_writer *w)
{
    return w->maint_period_ms > 0 && !w->stopping &&
           (w->maint_running || apm_mono_ns() >= w->maint_due_ns);
}

/* Waits for work: a batch, the stop, or the next maintenance pass (mu held). */
static void wait_work(struct apm_writer *w)
{
    while (w->pending.head == NULL && !w->stopping && !maint_due(w)) {
        if (w->maint_period_ms <= 0) {
            pthread_cond_wait(&w->cond, &w->mu);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t now = apm_mono_ns();
        if (now >= w->maint_due_ns)
            break;
        uint64_t wait_ns = w->maint_due_ns - now;
        until.tv_sec += (time_t)(wait_ns / 1000000000u);
        until.tv_nsec += (long)(wait_ns % 1000000000u);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->mu, &until);
    }
}

/*
 * One slice of the store's maintenance, between two rounds of batches, so
 * that ingest never waits for more than one slice (mu not held).
 */
static void maintain(struct apm_writer *w, int64_t period_ms)
{
    int rc = apm_store_maintain(w->store, apm_now_ms(), SLICE_KEYS, SLICE_US);
    if (rc < 0)
        apm_warn("writer: store maintenance: %s (next pass in %lld ms)", apm_strerror(rc),
                 (long long)period_ms);
    w->maint_running = rc == 0;
    if (rc != 0)
        w->maint_due_ns = apm_mono_ns() + (uint64_t)period_ms * 1000000u;
}

static void *writer_main(void *arg)
{
    struct apm_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    w->maint_due_ns = apm_mono_ns() + (uint64_t)w->maint_period_ms * 1000000u;
    for (;;) {
        wait_work(w);
        if (w->pending.head == NULL && w->stopping)
            break;
        if (w->pending.head != NULL) {
            struct job_list jobs = {0};
            list_splice(&jobs, &w->pending);
            w->stats.queued = 0;
            apm_writer_commit_fn commit_fn = w->commit_fn;
            void *commit_ctx = w->commit_ctx;
            pthread_mutex_unlock(&w->mu);
            store_jobs(w, &jobs, commit_fn, commit_ctx);
            uv_async_send(&w->async);
            pthread_mutex_lock(&w->mu);
        }
        if (maint_due(w)) {
            int64_t period = w->maint_period_ms;
            pthread_mutex_unlock(&w->mu);
            maintain(w, period);
            pthread_mutex_lock(&w->mu);
        }
    }
    apm_hashmap_close(&w->refused[0]);
    apm_hashmap_close(&w->refused[1]);
    w->exited = true;
    pthread_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
    return NULL;
}

/* ---- loop thread ---- */

static void on_close(uv_handle_t *h)
{
    struct apm_writer *w = h->data;
    if (w->close_cb != NULL)
        w->close_cb(w);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void on_async(uv_async_t *a)
{
    struct apm_writer *w = a->data;
    struct job_list done = {0};
    pthread_mutex_lock(&w->mu);
    list_splice(&done, &w->done);
    bool exited = w->exited;
    pthread_mutex_unlock(&w->mu);
    struct job *next;
    for (struct job *j = done.head; j != NULL; j = next) {
        next = j->next;
        j->cb(j->ctx, j->batch->seq, j->status);
        apm_batch_free(j->batch);
        free(j);
    }
    if (exited && w->closing && !uv_is_closing((uv_handle_t *)&w->async)) {
        pthread_join(w->thread, NULL);
        uv_close((uv_handle_t *)&w->async, on_close);
    }
}

int apm_writer_new(uv_loop_t *loop, struct apm_store *store, unsigned max_queue,
                   struct apm_writer **out)
{
    struct apm_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->store = store;
    apm_hashmap_init(&w->refused[0]);
    apm_hashmap_init(&w->refused[1]);
    w->refused_rotated_ns = apm_mono_ns();
    w->max_queue = max_queue ? max_queue : DEFAULT_MAX_QUEUE;
    int rc = -pthread_mutex_init(&w->mu, NULL);
    if (rc < 0) {
        free(w);
        return rc;
    }
    rc = -pthread_cond_init(&w->cond, NULL);
    if (rc < 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return rc;
    }
    w->async.data = w;
    rc = uv_async_init(loop, &w->async, on_async);
    if (rc == 0)
        rc = -pthread_create(&w->thread, NULL, writer_main, w);
    if (rc < 0) {
        /* The thread never ran: the handle (if any) is closed without a callback. */
        if (uv_is_active((uv_handle_t *)&w->async)) {
            w->close_cb = NULL;
            uv_close((uv_handle_t *)&w->async, on_close);
        } else {
            pthread_cond_destroy(&w->cond);
            pthread_mutex_destroy(&w->mu);
            free(w);
        }
        return rc;
    }
    *out = w;
    return 0;
}

int apm_writer_submit(struct apm_writer *w, const struct apm_agent_ident *agent,
                      struct apm_batch *batch, apm_writer_done_cb cb, void *ctx)
{
    if (w->closing)
        return APM_E_CLOSED;
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (w->stats.queued >= w->max_queue) {
        rc = APM_E_FULL;
    } else {
        j->agent = *agent;
        j->batch = batch;
        j->cb = cb;
        j->ctx = ctx;
        list_push(&w->pending, j);
        w->stats.queued++;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc < 0)
        free(j);
    return rc;
}

void apm_writer_set_commit_hook(struct apm_writer *w, apm_writer_commit_fn fn, void *ctx)
{
    pthread_mutex_lock(&w->mu);
    w->commit_fn = fn;
    w->commit_ctx = ctx;
    pthread_mutex_unlock(&w->mu);
}

void apm_writer_set_maintenance(struct apm_writer *w, int64_t period_ms)
{
    pthread_mutex_lock(&w->mu);
    w->maint_period_ms = period_ms > 0 ? period_ms : 0;
    w->maint_due_ns = apm_mono_ns() + (uint64_t)w->maint_period_ms * 1000000u;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void apm_writer_get_stats(struct apm_writer *w, struct apm_writer_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

void apm_writer_close(struct apm_writer *w, apm_writer_close_cb cb)
{
    if (w == NULL || w->closing)
        return;
    w->closing = true;
    w->close_cb = cb;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_writer_stats, batches, "batches", APM_COUNTER_TOTAL, "",
                "Batches committed or found stored already."),
    APM_COUNTER(struct apm_writer_stats, duplicates, "duplicates", APM_COUNTER_TOTAL, "",
                "Batches found stored already (resent by their agent)."),
    APM_COUNTER(struct apm_writer_stats, failures, "failures", APM_COUNTER_TOTAL, "",
                "Batches whose commit failed."),
    APM_COUNTER(struct apm_writer_stats, commits, "commits", APM_COUNTER_TOTAL, "",
                "Store transactions committed (each holds a group of batches)."),
    APM_COUNTER(struct apm_writer_stats, samples, "samples", APM_COUNTER_TOTAL, "",
                "Samples committed."),
    APM_COUNTER(struct apm_writer_stats, queued, "queued", APM_COUNTER_GAUGE, "",
                "Batches waiting for the writer now."),
    APM_COUNTER(struct apm_writer_stats, commit_seconds, "commit", APM_COUNTER_HISTOGRAM, "seconds",
                "Time to store and commit one group of batches (a store transaction)."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    apm_writer_get_stats(obj, out);
    return 0;
}

int apm_writer_add_counters(struct apm_writer *w, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "writer",
                                  .counters = counters,
                                  .size = sizeof(struct apm_writer_stats),
                                  .read = read_counters,
                                  .obj = w};
    return apm_counters_add(r, &g);
}
