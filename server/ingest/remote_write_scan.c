/*
 * Remote-write's reads of the store (remote_write_priv.h), on the sender
 * thread: a pass over every exported series after its cursor, a bounded
 * page of series per read transaction and a request's worth of samples per
 * read, none held across a request; and, at the start, the request a dead
 * run left in flight (the pending record), sent again alone.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "server/ingest/remote_write_encode.h"
#include "server/ingest/remote_write_priv.h"
/* Series listed from the store per read transaction while catching up. */
#define SCAN_PAGE 256u

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
    apm_rw_copy_str(s->host, sizeof(s->host), si->host);
    apm_rw_copy_str(s->process_id, sizeof(s->process_id), si->process_id);
    apm_rw_copy_str(s->name, sizeof(s->name), si->process_name);
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
    r->err = apm_rw_req_add(r->rw, r->p, t, v);
    r->last_t = t;
    return r->err != 0 || r->rw->req_samples >= r->rw->opt.batch_size;
}

/* Sends one series' samples after its cursor, a request's worth per read. */
static int scan_one(struct apm_rw *rw, const struct scan_series *s)
{
    struct sstate *st = apm_rw_series_state(rw, s->host, s->process_id, s->metric, s->id);
    if (st == NULL)
        return 0;
    int64_t from = st->sent;
    while (from < s->last_ms) {
        struct pseries *p =
            apm_rw_req_series(rw, st, s->metric, s->host, s->process_id, s->name, s->pid);
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
        if (rw->req_samples >= rw->opt.batch_size && (rc = apm_rw_flush(rw)) != 0)
            return rc;
    }
    return 0;
}

int apm_rw_scan_store(struct apm_rw *rw)
{
    pthread_mutex_lock(&rw->mu);
    rw->rescan = false;
    struct qentry *drop = rw->head;
    rw->head = rw->tail = NULL;
    rw->stats.queued = 0;
    rw->stats.store_reads++;
    pthread_mutex_unlock(&rw->mu);
    apm_rw_free_entries(drop); /* committed, so in the store: the pass sends them */
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
        rc = apm_rw_flush(rw);
    if (rc < 0 && rc != APM_E_CLOSED) {
        apm_warn("remote-write: reading the store: %s (tried again)", apm_strerror(rc));
        apm_rw_set_rescan(rw);
        apm_rw_req_reset(rw);
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
    r->err = apm_rw_req_add(r->rw, r->p, t, v);
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
    struct sstate *st = apm_rw_series_state(rw, s.host, s.process_id, s.metric, s.id);
    struct pseries *p =
        st ? apm_rw_req_series(rw, st, s.metric, s.host, s.process_id, s.name, s.pid) : NULL;
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
int apm_rw_resend_pending(struct apm_rw *rw)
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
    if (rc == 0 && n > 0 && apm_rw_req_compact(rw) > 0) {
        uint64_t *rids = calloc(rw->nreq, sizeof(*rids));
        int64_t *rts = calloc(rw->nreq, sizeof(*rts));
        uint8_t *body = NULL;
        size_t len = 0;
        bool refused = false;
        rc = rids && rts ? apm_rw_req_encode(rw, rids, rts, &body, &len) : -ENOMEM;
        if (rc == 0)
            rc = apm_rw_deliver(rw, body, len, rw->req_samples, APM_RW_RESEND, &refused);
        free(body);
        free(rts);
        free(rids);
    }
    apm_rw_req_reset(rw);
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
