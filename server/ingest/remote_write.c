/*
 * Remote-write out (remote_write.h). The commit hook (writer thread) copies
 * each exported block of a committed batch into a queue under a mutex; the
 * sender thread takes up to batch_size samples, groups them per series,
 * drops what its cursor has passed, posts the request and, once the
 * receiver answered 2xx (or refused it for good), moves the series' cursors
 * in memory and in the store (with the next request's pending record, see
 * flush). A start first resends the request a dead run left pending
 * (resend_pending). A queue overflow or the start sets `rescan`:
 * the sender then empties the queue and reads every exported series after
 * its cursor from the store, a bounded slice at a time, with no read
 * transaction held across a request.
 */
#include "server/ingest/remote_write.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/fault.h"
#include "common/hashmap.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "server/ingest/remote_write_encode.h"
#include "server/ingest/remote_write_priv.h"
#include "server/store/store_verdict.h"

#define DEFAULT_BATCH 2000u
#define DEFAULT_QUEUE 100000u
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MIN_MS 100
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_VERDICT_PERIOD_MS 15000
#define DEFAULT_VERDICT_LIVE_MS 120000
/* Series listed from the store per read transaction while catching up. */
#define SCAN_PAGE 256u

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* ---- the commit hook (writer thread) ---- */

static void free_entries(struct qentry *e)
{
    while (e != NULL) {
        struct qentry *next = e->next;
        free(e);
        e = next;
    }
}

/* The queue a commit hook builds before it takes the lock once. */
struct hook_list {
    struct qentry *head, *last, **tailp;
    uint64_t n;
    bool oom;
};

/* Appends n samples of (proc, m) to l. proc is an index of batch or APM_PROC_HOST. */
static void hook_add(struct hook_list *l, const struct apm_agent_ident *agent,
                     const struct apm_batch *batch, uint32_t proc, enum apm_metric m, uint32_t n,
                     const int64_t *t, const int64_t *v)
{
    if (l->oom || n == 0 || apm_prom_metric_name(m) == NULL ||
        (proc != APM_PROC_HOST && proc >= batch->nprocs))
        return;
    struct qentry *e = malloc(sizeof(*e) + 2 * n * sizeof(int64_t));
    if (e == NULL) {
        l->oom = true; /* as an overflow: the store has it */
        return;
    }
    e->next = NULL;
    e->metric = m;
    e->n = n;
    e->t = (int64_t *)(e + 1);
    e->v = e->t + n;
    memcpy(e->t, t, n * sizeof(int64_t));
    memcpy(e->v, v, n * sizeof(int64_t));
    copy_str(e->host, sizeof(e->host), agent->host);
    if (proc == APM_PROC_HOST) {
        e->pid = 0;
        e->process_id[0] = e->name[0] = '\0';
    } else {
        const struct apm_proc_desc *p = &batch->procs[proc];
        e->pid = p->pid;
        apm_store_process_id(e->process_id, sizeof(e->process_id), agent->host, p->pid,
                             p->start_ms);
        copy_str(e->name, sizeof(e->name), p->name);
    }
    *l->tailp = l->last = e;
    l->tailp = &e->next;
    l->n += n;
}

void apm_rw_commit_hook(void *ctx, const struct apm_agent_ident *agent,
                        const struct apm_batch *batch)
{
    struct apm_rw *rw = ctx;
    struct hook_list l = {.tailp = &l.head};
    for (uint32_t i = 0; i < batch->nseries; i++) {
        const struct apm_series_block *b = &batch->series[i];
        hook_add(&l, agent, batch, b->proc, b->metric, b->n, b->t_ms, b->value);
    }
    /* The probe's series, as server/store/store_probe.c stores them (per-site ones are not
     * exported). */
    for (uint32_t i = 0; i < batch->ndiffs; i++) {
        const struct apm_trace_diff *d = &batch->diffs[i];
        hook_add(&l, agent, batch, d->proc, APM_METRIC_TRACED, 1, &d->t_ms, &d->traced_current);
    }
    for (uint32_t i = 0; i < batch->ngc; i++) {
        const struct apm_gc_stats *g = &batch->gc[i];
        int64_t sum[APM_GC_METRICS];
        apm_gc_totals(g, sum);
        for (int k = 0; k < APM_GC_METRICS; k++)
            hook_add(&l, agent, batch, g->proc, apm_gc_metrics[k], 1, &g->t_ms, &sum[k]);
    }
    struct qentry *head = l.head, *last = l.last;
    uint64_t n = l.n;
    bool oom = l.oom;
    bool overflow = false;
    pthread_mutex_lock(&rw->mu);
    if (rw->stats.queued + n > rw->opt.queue_cap || oom) {
        overflow = !rw->rescan;
        rw->rescan = true;
        rw->stats.overflows += overflow;
    } else if (head != NULL) {
        if (rw->tail != NULL)
            rw->tail->next = head;
        else
            rw->head = head;
        rw->tail = last;
        rw->stats.queued += n;
        head = NULL;
    }
    pthread_cond_signal(&rw->cond);
    pthread_mutex_unlock(&rw->mu);
    free_entries(head);
    if (overflow)
        apm_warn("remote-write: queue full (%u samples): reading from the store after the cursor",
                 rw->opt.queue_cap);
}

/* ---- sender thread ---- */

static void req_reset(struct apm_rw *rw)
{
    for (size_t i = 0; i < rw->nreq; i++) {
        rw->req[i].n = 0;
        rw->req[i].st->slot = 0;
    }
    rw->nreq = 0;
    rw->req_samples = 0;
}

/* Drops the series with no sample from the request (all sent already). Returns how many remain. */
static size_t req_compact(struct apm_rw *rw)
{
    size_t kept = 0;
    for (size_t i = 0; i < rw->nreq; i++)
        rw->req[i].st->slot = 0; /* the request is being sent: nothing joins it any more */
    for (size_t i = 0; i < rw->nreq; i++) {
        if (rw->req[i].n == 0)
            continue;
        if (kept != i) {
            struct pseries tmp = rw->req[kept];
            rw->req[kept] = rw->req[i];
            rw->req[i] = tmp;
        }
        kept++;
    }
    rw->nreq = kept;
    return kept;
}

/*
 * Encodes the request being built (compacted, not empty) into *body
 * (returns owned: free). ids and ts (nreq each) receive each series' id and
 * the time of its last sample in the request. Returns 0 or -ENOMEM.
 */
static int req_encode(struct apm_rw *rw, uint64_t *ids, int64_t *ts, uint8_t **body, size_t *len)
{
    struct apm_rw_series *ser = calloc(rw->nreq, sizeof(*ser));
    struct apm_prom_process_labels *pls = calloc(rw->nreq, sizeof(*pls));
    int rc = ser && pls ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < rw->nreq; i++) {
        struct pseries *p = &rw->req[i];
        apm_rw_series_labels(&ser[i], &pls[i], p->metric, p->host, p->process_id, p->name, p->pid);
        ser[i].t_ms = p->t;
        ser[i].value = p->v;
        ser[i].n = p->n;
        ids[i] = p->st->id;
        ts[i] = p->t[p->n - 1];
    }
    if (rc == 0)
        rc = apm_rw_encode(ser, rw->nreq, body, len);
    free(pls);
    free(ser);
    return rc;
}

static void set_rescan(struct apm_rw *rw)
{
    pthread_mutex_lock(&rw->mu);
    rw->rescan = true;
    pthread_mutex_unlock(&rw->mu);
}

static void settle_drop(struct apm_rw *rw)
{
    free(rw->settle_ids);
    free(rw->settle_ts);
    rw->settle_ids = NULL;
    rw->settle_ts = NULL;
    rw->settle_n = 0;
}

/* Commits the cursors of the last request answered, emptying the pending record. */
static void settle(struct apm_rw *rw)
{
    if (rw->settle_n == 0)
        return;
    int rc = apm_store_rw_cursor_put(rw->store, rw->settle_ids, rw->settle_ts, rw->settle_n);
    if (rc < 0)
        apm_warn("remote-write: cannot record the cursor: %s (resent after a restart)",
                 apm_strerror(rc));
    settle_drop(rw);
}

/*
 * Posts the request being built until the receiver takes or refuses it,
 * then moves the cursors in memory; the store's move with the next
 * request's pending record (or settle()). Before the request goes, one
 * transaction commits the last request's cursors and replaces the pending
 * record with this one's range (its last time per series): a run that dies
 * before this request's cursors are committed leaves the record, and the
 * next run sends exactly this request again, alone (resend_pending). So a
 * request costs one durable commit, as when the cursors were committed
 * alone. Returns 0, or APM_E_CLOSED when stopping first (nothing moves: the
 * next start sends it again, the same way).
 */
static int flush(struct apm_rw *rw)
{
    if (req_compact(rw) == 0) {
        req_reset(rw);
        return 0;
    }
    uint64_t *ids = calloc(rw->nreq, sizeof(*ids));
    int64_t *ts = calloc(rw->nreq, sizeof(*ts));
    uint8_t *body = NULL;
    size_t len = 0;
    bool refused = false;
    int rc = ids && ts ? req_encode(rw, ids, ts, &body, &len) : -ENOMEM;
    if (rc == 0) {
        int prc = apm_store_rw_pending_put(rw->store, rw->settle_ids, rw->settle_ts, rw->settle_n,
                                           ids, ts, rw->nreq);
        if (prc < 0) {
            apm_warn("remote-write: cannot record the request in flight: %s (sent anyway; if the "
                     "collector dies before its answer is recorded, it may be lost)",
                     apm_strerror(prc));
            settle(rw); /* the cursors alone, if the store takes them */
        }
        settle_drop(rw);
        apm_fault_point("rw-pending");
        rc = apm_rw_deliver(rw, body, len, rw->req_samples, APM_RW_STORED, &refused);
    }
    if (rc == 0) {
        if (!refused)
            apm_fault_point("rw-acked");
        for (size_t i = 0; i < rw->nreq; i++)
            rw->req[i].st->sent = ts[i];
        rw->settle_ids = ids;
        rw->settle_ts = ts;
        rw->settle_n = rw->nreq;
        ids = NULL;
        ts = NULL;
    } else if (rc == -ENOMEM) {
        apm_warn("remote-write: out of memory building a request; the store keeps it");
        set_rescan(rw);
    }
    free(body);
    free(ts);
    free(ids);
    req_reset(rw);
    return rc == APM_E_CLOSED ? rc : 0;
}

/* The series' state, loaded from the store on first use; NULL when unknown or out of memory. */
static struct sstate *series_state(struct apm_rw *rw, const char *host, const char *process_id,
                                   enum apm_metric m, uint64_t id)
{
    char key[APM_STORE_KEY_MAX];
    size_t klen = apm_store_series_key(key, host, process_id, m, NULL);
    uint64_t ptr;
    if (klen == 0)
        return NULL;
    if (apm_hashmap_get(&rw->series, key, klen, &ptr) == 0)
        return (struct sstate *)(uintptr_t)ptr;
    if (id == 0 && apm_store_find_series(rw->store, host, process_id, m, NULL, &id) != 0)
        return NULL;
    struct sstate *st = malloc(sizeof(*st));
    if (st == NULL)
        return NULL;
    st->id = id;
    st->slot = 0;
    if (apm_store_rw_cursor_get(rw->store, id, &st->sent) != 0)
        st->sent = INT64_MIN;
    if (apm_hashmap_put(&rw->series, key, klen, (uintptr_t)st) != 0) {
        free(st);
        return NULL;
    }
    return st;
}

/* The request's entry for st, added when missing; NULL when out of memory. */
static struct pseries *req_series(struct apm_rw *rw, struct sstate *st, enum apm_metric m,
                                  const char *host, const char *process_id, const char *name,
                                  int32_t pid)
{
    if (st->slot > 0)
        return &rw->req[st->slot - 1];
    if (rw->nreq == rw->req_cap) {
        size_t cap = rw->req_cap ? rw->req_cap * 2 : 64;
        struct pseries *r = realloc(rw->req, cap * sizeof(*r));
        if (r == NULL)
            return NULL;
        memset(r + rw->req_cap, 0, (cap - rw->req_cap) * sizeof(*r));
        rw->req = r;
        rw->req_cap = cap;
    }
    struct pseries *p = &rw->req[rw->nreq++];
    st->slot = rw->nreq;
    p->st = st;
    p->metric = m;
    p->pid = pid;
    p->n = 0;
    copy_str(p->host, sizeof(p->host), host);
    copy_str(p->process_id, sizeof(p->process_id), process_id);
    copy_str(p->name, sizeof(p->name), name);
    return p;
}

/* Appends one sample after the series' cursor (and its last one queued). Returns 0 or -ENOMEM. */
static int req_add(struct apm_rw *rw, struct pseries *p, int64_t t, int64_t v)
{
    if (t <= p->st->sent || (p->n > 0 && t <= p->t[p->n - 1]))
        return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        int64_t *nt = realloc(p->t, cap * sizeof(*nt));
        if (nt == NULL)
            return -ENOMEM;
        p->t = nt;
        int64_t *nv = realloc(p->v, cap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        p->v = nv;
        p->cap = cap;
    }
    p->t[p->n] = t;
    p->v[p->n++] = v;
    rw->req_samples++;
    return 0;
}

/* Sends queued entries. Returns 0 or APM_E_CLOSED. */
static int send_entries(struct apm_rw *rw, struct qentry *e)
{
    int rc = 0;
    for (; e != NULL && rc == 0; e = e->next) {
        struct sstate *st = series_state(rw, e->host, e->process_id, e->metric, 0);
        struct pseries *p =
            st ? req_series(rw, st, e->metric, e->host, e->process_id, e->name, e->pid) : NULL;
        for (uint32_t i = 0; p != NULL && i < e->n && rc == 0; i++) {
            if (req_add(rw, p, e->t[i], e->v[i]) != 0) {
                p = NULL;
            } else if (rw->req_samples >= rw->opt.batch_size) {
                rc = flush(rw); /* the request starts again: so does the series' entry */
                p = req_series(rw, st, e->metric, e->host, e->process_id, e->name, e->pid);
            }
        }
        if (st == NULL || p == NULL)
            set_rescan(rw); /* out of memory or a series the store does not know yet */
    }
    return rc == 0 ? flush(rw) : rc;
}

/* ---- reading the store after the cursors ---- */

struct scan_series {
    uint64_t id;
    enum apm_metric metric;
    int32_t pid;
    int64_t last_ms;
    char host[APM_STORE_HOST_MAX];
    char process_id[APM_STORE_PROCESS_ID_MAX];
    char name[256];
};

struct scan_page {
    struct scan_series s[SCAN_PAGE];
    size_t n;
    uint64_t last_id;
};

static void scan_series_set(struct scan_series *s, const struct apm_series_info *si)
{
    s->id = si->id;
    s->metric = si->metric;
    s->pid = si->pid;
    s->last_ms = si->last_ms;
    copy_str(s->host, sizeof(s->host), si->host);
    copy_str(s->process_id, sizeof(s->process_id), si->process_id);
    copy_str(s->name, sizeof(s->name), si->process_name);
}

static int on_scan_series(void *ctx, const struct apm_series_info *si)
{
    struct scan_page *pg = ctx;
    pg->last_id = si->id;
    if (apm_prom_metric_name(si->metric) == NULL)
        return pg->n >= SCAN_PAGE;
    scan_series_set(&pg->s[pg->n++], si);
    return pg->n >= SCAN_PAGE;
}

struct scan_read {
    struct apm_rw *rw;
    struct pseries *p;
    int64_t last_t;
    int err;
};

static int on_scan_sample(void *ctx, int64_t t, int64_t v)
{
    struct scan_read *r = ctx;
    r->err = req_add(r->rw, r->p, t, v);
    r->last_t = t;
    return r->err != 0 || r->rw->req_samples >= r->rw->opt.batch_size;
}

/* Sends one series' samples after its cursor, a request's worth per read. */
static int scan_one(struct apm_rw *rw, const struct scan_series *s)
{
    struct sstate *st = series_state(rw, s->host, s->process_id, s->metric, s->id);
    if (st == NULL)
        return 0;
    int64_t from = st->sent;
    while (from < s->last_ms) {
        struct pseries *p = req_series(rw, st, s->metric, s->host, s->process_id, s->name, s->pid);
        if (p == NULL)
            return -ENOMEM;
        struct scan_read r = {.rw = rw, .p = p, .last_t = INT64_MIN};
        int rc = apm_store_read_samples(rw->store, s->id, from == INT64_MIN ? from : from + 1,
                                        INT64_MAX, on_scan_sample, &r);
        if (rc < 0 || r.err != 0)
            return rc < 0 ? rc : r.err;
        if (r.last_t == INT64_MIN)
            break; /* nothing (left) after the cursor: deleted or never stored */
        from = r.last_t;
        if (rw->req_samples >= rw->opt.batch_size && (rc = flush(rw)) != 0)
            return rc;
    }
    return 0;
}

/* A pass over every exported series after its cursor. Returns 0 or APM_E_CLOSED. */
static int scan_store(struct apm_rw *rw)
{
    pthread_mutex_lock(&rw->mu);
    rw->rescan = false;
    struct qentry *drop = rw->head;
    rw->head = rw->tail = NULL;
    rw->stats.queued = 0;
    rw->stats.store_reads++;
    pthread_mutex_unlock(&rw->mu);
    free_entries(drop); /* committed, so in the store: the pass sends them */
    struct scan_page *pg = malloc(sizeof(*pg));
    if (pg == NULL)
        return 0;
    struct apm_series_filter f = {0};
    int rc = 0;
    for (;;) {
        pg->n = 0;
        pg->last_id = f.after_id;
        rc = apm_store_list_series(rw->store, &f, on_scan_series, pg);
        if (rc < 0 || pg->last_id == f.after_id)
            break;
        f.after_id = pg->last_id;
        for (size_t i = 0; i < pg->n && rc == 0; i++)
            rc = scan_one(rw, &pg->s[i]);
        if (rc != 0)
            break;
    }
    free(pg);
    if (rc == 0)
        rc = flush(rw);
    if (rc < 0 && rc != APM_E_CLOSED) {
        apm_warn("remote-write: reading the store: %s (tried again)", apm_strerror(rc));
        set_rescan(rw);
        req_reset(rw);
        if (apm_rw_sleep_ms(rw, (uint64_t)rw->opt.backoff_max_ms))
            return APM_E_CLOSED;
        return 0;
    }
    return rc;
}

/* ---- after a restart: the request that was in flight ---- */

static int on_one_series(void *ctx, const struct apm_series_info *si)
{
    scan_series_set(ctx, si);
    return 1;
}

static int on_pending_sample(void *ctx, int64_t t, int64_t v)
{
    struct scan_read *r = ctx;
    r->err = req_add(r->rw, r->p, t, v);
    return r->err != 0;
}

/*
 * Adds a pending series' samples after its cursor up to `until` to the
 * request being built. Returns 1 and *out when the series is in the store,
 * 0 when it is gone (retention), or a negative code.
 */
static int resend_add(struct apm_rw *rw, uint64_t id, int64_t until, struct sstate **out)
{
    struct scan_series s;
    int rc = apm_store_get_series(rw->store, id, on_one_series, &s);
    if (rc == APM_E_NOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    struct sstate *st = series_state(rw, s.host, s.process_id, s.metric, s.id);
    struct pseries *p =
        st ? req_series(rw, st, s.metric, s.host, s.process_id, s.name, s.pid) : NULL;
    if (p == NULL)
        return -ENOMEM;
    *out = st;
    struct scan_read r = {.rw = rw, .p = p};
    rc = apm_store_read_samples(rw->store, id, st->sent == INT64_MIN ? st->sent : st->sent + 1,
                                until, on_pending_sample, &r);
    return rc < 0 ? rc : r.err < 0 ? r.err : 1;
}

/*
 * Sends the request of the pending record again, alone, before anything
 * else: the samples after each series' cursor up to its pending time, read
 * from the store. If the last run died after the receiver took it, a
 * receiver that takes a request whole or not at all (Prometheus) refuses it
 * now as out of order (400) or takes it as exact duplicates (2xx); if not,
 * it takes it. Either way the receiver then holds it, and the cursors move
 * to the pending times, so no later request mixes samples it has with new
 * ones. Returns 0 or APM_E_CLOSED (the record stays for the next start).
 */
static int resend_pending(struct apm_rw *rw)
{
    uint64_t *ids = NULL;
    int64_t *until = NULL;
    size_t n = 0;
    int rc = apm_store_rw_pending_get(rw->store, &ids, &until, &n);
    if (rc < 0)
        apm_warn("remote-write: cannot read the request in flight at the last run's end: %s "
                 "(sending from the cursors)",
                 apm_strerror(rc));
    struct sstate **sts = n > 0 ? calloc(n, sizeof(*sts)) : NULL;
    if (n > 0 && sts == NULL)
        rc = -ENOMEM;
    size_t kept = 0; /* the pending series still in the store, moved to the front */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = resend_add(rw, ids[i], until[i], &sts[kept]);
        if (rc == 1) {
            ids[kept] = ids[i];
            until[kept++] = until[i];
            rc = 0;
        }
    }
    if (rc == 0 && n > 0 && req_compact(rw) > 0) {
        uint64_t *rids = calloc(rw->nreq, sizeof(*rids));
        int64_t *rts = calloc(rw->nreq, sizeof(*rts));
        uint8_t *body = NULL;
        size_t len = 0;
        bool refused = false;
        rc = rids && rts ? req_encode(rw, rids, rts, &body, &len) : -ENOMEM;
        if (rc == 0)
            rc = apm_rw_deliver(rw, body, len, rw->req_samples, APM_RW_RESEND, &refused);
        free(body);
        free(rts);
        free(rids);
    }
    req_reset(rw);
    if (rc == 0 && n > 0) {
        /* The cursors move to the pending times, also past samples the store lost meanwhile. */
        for (size_t i = 0; i < kept; i++) {
            if (sts[i]->sent < until[i])
                sts[i]->sent = until[i];
            until[i] = sts[i]->sent; /* a cursor never moves back */
        }
        int src = apm_store_rw_cursor_put(rw->store, ids, until, kept);
        if (src < 0)
            apm_warn("remote-write: cannot record the cursor: %s (resent after a restart)",
                     apm_strerror(src));
    } else if (rc < 0 && rc != APM_E_CLOSED && n > 0) {
        apm_warn("remote-write: cannot send the request in flight at the last run's end again: "
                 "%s (sending from the cursors)",
                 apm_strerror(rc));
    }
    free(sts);
    free(until);
    free(ids);
    return rc == APM_E_CLOSED ? rc : 0;
}

/* ---- the verdict gauges ---- */

struct verdicts {
    struct apm_verdict_record *r;
    size_t n, cap;
    int64_t live_from_ms;
};

static int on_verdict(void *ctx, const struct apm_verdict_record *rec)
{
    struct verdicts *vs = ctx;
    /* A process's verdict is its rss series' (as GET /metrics takes it). */
    if (rec->metric != APM_METRIC_RSS || rec->process_id[0] == '\0' ||
        rec->evaluated_at * 1000.0 < (double)vs->live_from_ms)
        return 0;
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 64;
        struct apm_verdict_record *r = realloc(vs->r, cap * sizeof(*r));
        if (r == NULL)
            return 1;
        vs->r = r;
        vs->cap = cap;
    }
    vs->r[vs->n++] = *rec;
    return 0;
}

/* Sends the verdict gauges of the live processes, stamped now. Returns 0 or APM_E_CLOSED. */
static int send_verdicts(struct apm_rw *rw)
{
    int64_t now_ms = apm_now_ms();
    struct verdicts vs = {.live_from_ms = now_ms - rw->opt.verdict_live_ms};
    int rc = apm_store_verdict_list(rw->store, on_verdict, &vs);
    size_t per = rw->opt.batch_size / APM_RW_VERDICT_FAMILIES
                     ? rw->opt.batch_size / APM_RW_VERDICT_FAMILIES
                     : 1;
    struct apm_rw_series *s = calloc(per * APM_RW_VERDICT_FAMILIES, sizeof(*s));
    struct apm_prom_process_labels *pl = calloc(per, sizeof(*pl));
    double *val = calloc(per * APM_RW_VERDICT_FAMILIES, sizeof(*val));
    if (rc < 0 || s == NULL || pl == NULL || val == NULL) {
        if (rc < 0)
            apm_warn("remote-write: reading the verdicts: %s", apm_strerror(rc));
        rc = 0;
        vs.n = 0;
    }
    for (size_t from = 0; from < vs.n && rc == 0; from += per) {
        size_t n = 0;
        for (size_t i = from; i < vs.n && i < from + per; i++)
            n += apm_rw_verdict_series(&vs.r[i], (double)now_ms / 1000.0, &pl[i - from], &s[n],
                                       &val[n]);
        for (size_t i = 0; i < n; i++)
            s[i].t_ms = &now_ms;
        uint8_t *body = NULL;
        size_t len = 0;
        bool refused = false;
        if (apm_rw_encode(s, n, &body, &len) == 0)
            rc = apm_rw_deliver(rw, body, len, n, APM_RW_GAUGES, &refused);
        free(body);
    }
    free(val);
    free(pl);
    free(s);
    free(vs.r);
    pthread_mutex_lock(&rw->mu);
    rw->stats.verdict_rounds++;
    pthread_mutex_unlock(&rw->mu);
    return rc;
}

/* Waits for work or until the next round of verdicts is due (mu held). True when it is due. */
static bool wait_work(struct apm_rw *rw, uint64_t due_ns)
{
    while (!rw->stopping && !rw->rescan && rw->head == NULL) {
        if (rw->opt.verdict_period_ms < 0) {
            pthread_cond_wait(&rw->cond, &rw->mu);
            continue;
        }
        uint64_t now = apm_mono_ns();
        if (now >= due_ns)
            return true;
        struct timespec until = apm_realtime_after_ns(due_ns - now);
        pthread_cond_timedwait(&rw->cond, &rw->mu, &until);
    }
    return rw->opt.verdict_period_ms >= 0 && apm_mono_ns() >= due_ns;
}

static void *sender_main(void *arg)
{
    struct apm_rw *rw = arg;
    if (resend_pending(rw) == APM_E_CLOSED)
        return NULL;
    uint64_t due_ns = apm_mono_ns() + (uint64_t)rw->opt.verdict_period_ms * 1000000u;
    for (;;) {
        pthread_mutex_lock(&rw->mu);
        if (rw->settle_n > 0 && !rw->stopping && !rw->rescan && rw->head == NULL) {
            /* Nothing more to send now: the last request's cursors go alone. */
            pthread_mutex_unlock(&rw->mu);
            settle(rw);
            continue;
        }
        bool verdicts = wait_work(rw, due_ns);
        if (rw->stopping) {
            pthread_mutex_unlock(&rw->mu);
            break;
        }
        if (verdicts) {
            pthread_mutex_unlock(&rw->mu);
            due_ns = apm_mono_ns() + (uint64_t)rw->opt.verdict_period_ms * 1000000u;
            if (send_verdicts(rw) == APM_E_CLOSED)
                break;
            continue;
        }
        if (rw->rescan) {
            pthread_mutex_unlock(&rw->mu);
            if (scan_store(rw) == APM_E_CLOSED)
                break;
            continue;
        }
        /* Takes about a request's worth of entries. */
        struct qentry *take = rw->head, *e = take;
        uint64_t n = e->n;
        while (e->next != NULL && n + e->next->n <= rw->opt.batch_size) {
            e = e->next;
            n += e->n;
        }
        rw->head = e->next;
        if (rw->head == NULL)
            rw->tail = NULL;
        e->next = NULL;
        rw->stats.queued -= n;
        pthread_mutex_unlock(&rw->mu);
        int rc = send_entries(rw, take);
        free_entries(take);
        if (rc == APM_E_CLOSED)
            break;
    }
    settle(rw); /* a request answered before the stop: its cursors */
    return NULL;
}

/* ---- setup ---- */

static void free_state(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    free((void *)(uintptr_t)value);
}

static void rw_destroy(struct apm_rw *rw)
{
    settle_drop(rw);
    free_entries(rw->head);
    apm_hashmap_foreach(&rw->series, free_state, NULL);
    apm_hashmap_close(&rw->series);
    for (size_t i = 0; i < rw->req_cap; i++) {
        free(rw->req[i].t);
        free(rw->req[i].v);
    }
    free(rw->req);
    curl_slist_free_all(rw->headers);
    free(rw->url);
    pthread_cond_destroy(&rw->cond);
    pthread_mutex_destroy(&rw->mu);
    free(rw);
}

int apm_rw_new(struct apm_store *store, const struct apm_rw_options *opt, struct apm_rw **out)
{
    if (opt->url == NULL || opt->url[0] == '\0')
        return -EINVAL;
    struct apm_rw *rw = calloc(1, sizeof(*rw));
    if (rw == NULL)
        return -ENOMEM;
    rw->store = store;
    rw->opt = *opt;
    if (rw->opt.batch_size == 0)
        rw->opt.batch_size = DEFAULT_BATCH;
    if (rw->opt.queue_cap == 0)
        rw->opt.queue_cap = DEFAULT_QUEUE;
    if (rw->opt.timeout_ms <= 0)
        rw->opt.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (rw->opt.backoff_min_ms <= 0)
        rw->opt.backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
    if (rw->opt.backoff_max_ms <= 0)
        rw->opt.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
    if (rw->opt.verdict_period_ms == 0)
        rw->opt.verdict_period_ms = DEFAULT_VERDICT_PERIOD_MS;
    if (rw->opt.verdict_live_ms <= 0)
        rw->opt.verdict_live_ms = DEFAULT_VERDICT_LIVE_MS;
    rw->rescan = true; /* the first pass resends from the cursors */
    apm_hashmap_init(&rw->series);
    pthread_mutex_init(&rw->mu, NULL);
    pthread_cond_init(&rw->cond, NULL);
    rw->url = strdup(opt->url);
    bool ok = rw->url != NULL;
    static const char *const fixed[] = {"Content-Encoding: snappy",
                                        "Content-Type: application/x-protobuf",
                                        "X-Prometheus-Remote-Write-Version: 0.1.0", "Expect:"};
    for (size_t i = 0; ok && i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        struct curl_slist *h = curl_slist_append(rw->headers, fixed[i]);
        ok = h != NULL;
        rw->headers = ok ? h : rw->headers;
    }
    for (size_t i = 0; ok && i < opt->nheaders; i++) {
        struct curl_slist *h = curl_slist_append(rw->headers, opt->headers[i]);
        ok = h != NULL;
        rw->headers = ok ? h : rw->headers;
    }
    if (ok && opt->bearer_token != NULL && opt->bearer_token[0] != '\0') {
        char *line = NULL;
        ok = asprintf(&line, "Authorization: Bearer %s", opt->bearer_token) > 0;
        struct curl_slist *h = ok ? curl_slist_append(rw->headers, line) : NULL;
        ok = h != NULL;
        rw->headers = ok ? h : rw->headers;
        free(line);
    }
    /* The copies of the caller's strings are not kept: only url and the header list are used. */
    rw->opt.url = NULL;
    rw->opt.nheaders = 0;
    rw->opt.bearer_token = NULL;
    int rc = ok ? -pthread_create(&rw->thread, NULL, sender_main, rw) : -ENOMEM;
    if (rc < 0) {
        rw_destroy(rw);
        return rc;
    }
    *out = rw;
    return 0;
}

void apm_rw_get_stats(struct apm_rw *rw, struct apm_rw_stats *out)
{
    pthread_mutex_lock(&rw->mu);
    *out = rw->stats;
    pthread_mutex_unlock(&rw->mu);
}

void apm_rw_free(struct apm_rw *rw)
{
    if (rw == NULL)
        return;
    pthread_mutex_lock(&rw->mu);
    rw->stopping = true;
    pthread_cond_broadcast(&rw->cond);
    pthread_mutex_unlock(&rw->mu);
    pthread_join(rw->thread, NULL);
    rw_destroy(rw);
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_rw_stats, samples_sent, "samples_sent", APM_COUNTER_TOTAL, "",
                "Stored samples the remote-write receiver accepted."),
    APM_COUNTER(struct apm_rw_stats, requests, "requests", APM_COUNTER_TOTAL, "",
                "Remote-write requests accepted."),
    APM_COUNTER(struct apm_rw_stats, retries, "retries", APM_COUNTER_TOTAL, "",
                "Remote-write attempts that failed (5xx, 429, no answer) and were tried again."),
    APM_COUNTER(struct apm_rw_stats, rejected, "rejected", APM_COUNTER_TOTAL, "",
                "Remote-write requests dropped on a 4xx other than 429."),
    APM_COUNTER(struct apm_rw_stats, samples_rejected, "samples_rejected", APM_COUNTER_TOTAL, "",
                "Samples in the requests dropped on a 4xx."),
    APM_COUNTER(struct apm_rw_stats, overflows, "overflows", APM_COUNTER_TOTAL, "",
                "Times the remote-write queue overflowed (the sender then reads the store)."),
    APM_COUNTER(struct apm_rw_stats, store_reads, "store_reads", APM_COUNTER_TOTAL, "",
                "Passes over the store after the remote-write cursors (start, overflows)."),
    APM_COUNTER(struct apm_rw_stats, queued, "queued", APM_COUNTER_GAUGE, "",
                "Samples waiting in the remote-write queue now."),
    APM_COUNTER(struct apm_rw_stats, verdict_samples, "verdict_samples", APM_COUNTER_TOTAL, "",
                "Verdict gauge samples the receiver accepted (not in samples_sent)."),
    APM_COUNTER(struct apm_rw_stats, verdict_rounds, "verdict_rounds", APM_COUNTER_TOTAL, "",
                "Rounds of verdict gauges sent (apm_verdict_info and the forecasts)."),
    APM_COUNTER(struct apm_rw_stats, last_status, "last_status", APM_COUNTER_GAUGE, "",
                "HTTP status of the last remote-write attempt (0: no answer)."),
    APM_COUNTER(struct apm_rw_stats, resent, "resent", APM_COUNTER_TOTAL, "",
                "Remote-write requests in flight when the last run died, sent again alone at "
                "the start."),
    APM_COUNTER(struct apm_rw_stats, resent_rejected, "resent_rejected", APM_COUNTER_TOTAL, "",
                "Of them, refused (4xx): taken as delivered before the last run died."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    apm_rw_get_stats(obj, out);
    return 0;
}

int apm_rw_add_counters(struct apm_rw *rw, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "remote_write",
                                  .counters = counters,
                                  .size = sizeof(struct apm_rw_stats),
                                  .read = read_counters,
                                  .obj = rw};
    return apm_counters_add(r, &g);
}
