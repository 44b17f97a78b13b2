/*
 * Remote-write's request being built (remote_write_priv.h), on the sender
 * thread: the series' cursors, loaded from the store on first use; samples
 * added after them, from the queue or from the store; the request encoded,
 * posted, and its cursors moved in memory and in the store with the next
 * request's pending record.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/fault.h"
#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "server/ingest/remote_write_encode.h"
#include "server/ingest/remote_write_priv.h"

/* ---- sender thread ---- */

void apm_rw_req_reset(struct apm_rw *rw)
{
    for (size_t i = 0; i < rw->nreq; i++) {
        rw->req[i].n = 0;
        rw->req[i].st->slot = 0;
    }
    rw->nreq = 0;
    rw->req_samples = 0;
}

size_t apm_rw_req_compact(struct apm_rw *rw)
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

int apm_rw_req_encode(struct apm_rw *rw, uint64_t *ids, int64_t *ts, uint8_t **body, size_t *len)
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

void apm_rw_set_rescan(struct apm_rw *rw)
{
    pthread_mutex_lock(&rw->mu);
    rw->rescan = true;
    pthread_mutex_unlock(&rw->mu);
}

void apm_rw_settle_drop(struct apm_rw *rw)
{
    free(rw->settle_ids);
    free(rw->settle_ts);
    rw->settle_ids = NULL;
    rw->settle_ts = NULL;
    rw->settle_n = 0;
}

void apm_rw_settle(struct apm_rw *rw)
{
    if (rw->settle_n == 0)
        return;
    int rc = apm_store_rw_cursor_put(rw->store, rw->settle_ids, rw->settle_ts, rw->settle_n);
    if (rc < 0)
        apm_warn("remote-write: cannot record the cursor: %s (resent after a restart)",
                 apm_strerror(rc));
    apm_rw_settle_drop(rw);
}

/*
 * Posts the request being built until the receiver takes or refuses it,
 * then moves the cursors in memory; the store's move with the next
 * request's pending record (or apm_rw_settle()). Before the request goes, one
 * transaction commits the last request's cursors and replaces the pending
 * record with this one's range (its last time per series): a run that dies
 * before this request's cursors are committed leaves the record, and the
 * next run sends exactly this request again, alone (apm_rw_resend_pending). So a
 * request costs one durable commit, as when the cursors were committed
 * alone. Returns 0, or APM_E_CLOSED when stopping first (nothing moves: the
 * next start sends it again, the same way).
 */
int apm_rw_flush(struct apm_rw *rw)
{
    if (apm_rw_req_compact(rw) == 0) {
        apm_rw_req_reset(rw);
        return 0;
    }
    uint64_t *ids = calloc(rw->nreq, sizeof(*ids));
    int64_t *ts = calloc(rw->nreq, sizeof(*ts));
    uint8_t *body = NULL;
    size_t len = 0;
    bool refused = false;
    int rc = ids && ts ? apm_rw_req_encode(rw, ids, ts, &body, &len) : -ENOMEM;
    if (rc == 0) {
        int prc = apm_store_rw_pending_put(rw->store, rw->settle_ids, rw->settle_ts, rw->settle_n,
                                           ids, ts, rw->nreq);
        if (prc < 0) {
            apm_warn("remote-write: cannot record the request in flight: %s (sent anyway; if the "
                     "collector dies before its answer is recorded, it may be lost)",
                     apm_strerror(prc));
            apm_rw_settle(rw); /* the cursors alone, if the store takes them */
        }
        apm_rw_settle_drop(rw);
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
        apm_rw_set_rescan(rw);
    }
    free(body);
    free(ts);
    free(ids);
    apm_rw_req_reset(rw);
    return rc == APM_E_CLOSED ? rc : 0;
}

struct sstate *apm_rw_series_state(struct apm_rw *rw, const char *host, const char *process_id,
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

struct pseries *apm_rw_req_series(struct apm_rw *rw, struct sstate *st, enum apm_metric m,
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
    apm_rw_copy_str(p->host, sizeof(p->host), host);
    apm_rw_copy_str(p->process_id, sizeof(p->process_id), process_id);
    apm_rw_copy_str(p->name, sizeof(p->name), name);
    return p;
}

int apm_rw_req_add(struct apm_rw *rw, struct pseries *p, int64_t t, int64_t v)
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

int apm_rw_send_entries(struct apm_rw *rw, struct qentry *e)
{
    int rc = 0;
    for (; e != NULL && rc == 0; e = e->next) {
        struct sstate *st = apm_rw_series_state(rw, e->host, e->process_id, e->metric, 0);
        struct pseries *p =
            st ? apm_rw_req_series(rw, st, e->metric, e->host, e->process_id, e->name, e->pid)
               : NULL;
        for (uint32_t i = 0; p != NULL && i < e->n && rc == 0; i++) {
            if (apm_rw_req_add(rw, p, e->t[i], e->v[i]) != 0) {
                p = NULL;
            } else if (rw->req_samples >= rw->opt.batch_size) {
                rc = apm_rw_flush(rw); /* the request starts again: so does the series' entry */
                p = apm_rw_req_series(rw, st, e->metric, e->host, e->process_id, e->name, e->pid);
            }
        }
        if (st == NULL || p == NULL)
            apm_rw_set_rescan(rw); /* out of memory or a series the store does not know yet */
    }
    return rc == 0 ? apm_rw_flush(rw) : rc;
}
