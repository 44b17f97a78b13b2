/*
 * The alert engine's rounds (alerts.h, apm_alerts_run_once), one per tick on
 * its thread: alerts of silent series and removed rules end, the changed
 * alerts are written in one store transaction outside the mutex, and only
 * then are their notifications queued, so that what was notified is never
 * ahead of what is stored; the oldest resolved alerts beyond the cap are
 * forgotten. Delivery's answers come back through apm_alerts_notified.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "server/alerts/alert_record.h"
#include "server/alerts/alerts_priv.h"
#include "server/alerts/notify.h"
#include "server/store/store_alerts.h"

#define DEFAULT_RESEND_MS 60000
/* A series silent for this many sampling intervals (and at least STALE_MIN_MS) is gone. */
#define STALE_INTERVALS 20
#define STALE_MIN_MS 30000

static void mark_deleted(struct apm_alerts *e, uint64_t id)
{
    if (e->ndeleted == e->capdeleted) {
        size_t cap = e->capdeleted ? e->capdeleted * 2 : 16;
        uint64_t *p = realloc(e->deleted, cap * sizeof(*p));
        if (p == NULL)
            return; /* the record stays in the store and is pruned again after a restart */
        e->deleted = p;
        e->capdeleted = cap;
    }
    e->deleted[e->ndeleted++] = id;
}

static const struct apm_alert_rule *find_rule(const struct apm_alerts *e, const char *name)
{
    for (size_t i = 0; i < e->nrules; i++)
        if (strcmp(e->rules[i].name, name) == 0)
            return &e->rules[i];
    return NULL;
}

static int64_t stale_after(const struct apm_alerts *e, const struct apm_alert *a)
{
    if (e->opt.stale_ms > 0)
        return e->opt.stale_ms;
    int64_t by_interval = (int64_t)(a->interval_s * 1000.0 * STALE_INTERVALS);
    return by_interval > STALE_MIN_MS ? by_interval : STALE_MIN_MS;
}

/* Alerts of silent series and of removed rules end. */
static void age(struct apm_alerts *e, int64_t now_ms)
{
    for (size_t i = 0; i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        struct apm_alert *a = &en->a;
        if (en->gone || a->state == APM_ALERT_RESOLVED)
            continue;
        if (find_rule(e, a->rule) == NULL || now_ms - a->seen_ms >= stale_after(e, a)) {
            apm_alerts_close_alert(e, en, now_ms);
            apm_alerts_touch(en);
        }
    }
}

/* Forgets the oldest resolved alerts beyond the cap; frees deleted pending ones. */
static void prune(struct apm_alerts *e)
{
    size_t resolved = 0;
    for (size_t i = 0; i < e->n; i++)
        if (e->items[i]->a.state == APM_ALERT_RESOLVED && !e->items[i]->gone)
            resolved++;
    size_t w = 0;
    for (size_t i = 0; i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        bool drop = en->gone && en->persisted == en->version && !en->inflight;
        if (!drop && !en->gone && en->a.state == APM_ALERT_RESOLVED &&
            resolved > APM_ALERT_MAX_RESOLVED && !en->inflight && en->persisted == en->version) {
            mark_deleted(e, en->a.id);
            resolved--;
            e->stats.resolved--;
            drop = true;
        }
        if (drop)
            free(en);
        else
            e->items[w++] = en;
    }
    e->n = w;
}

/* The notification an alert still owes: FIRING, RESOLVED, or PENDING for none. */
static enum apm_alert_state owed(const struct apm_alert *a)
{
    if (a->state == APM_ALERT_FIRING && a->notified != APM_ALERT_FIRING)
        return APM_ALERT_FIRING;
    if (a->state == APM_ALERT_RESOLVED && a->fired_ms > 0 && a->notified != APM_ALERT_RESOLVED)
        return APM_ALERT_RESOLVED;
    return APM_ALERT_PENDING;
}

static void queue_notifications(struct apm_alerts *e, int64_t now_ms)
{
    int64_t resend = e->opt.resend_ms > 0 ? e->opt.resend_ms : DEFAULT_RESEND_MS;
    if (e->closing)
        return;
    for (size_t i = 0; i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        struct apm_alert *a = &en->a;
        if (en->gone || en->inflight || en->persisted != en->version)
            continue;
        enum apm_alert_state st = owed(a);
        if (st != APM_ALERT_PENDING && a->silenced_by != 0) {
            /*
             * A silenced alert is not notified, and unlike an ack it is not
             * counted as told: when the silence ends, what it still owes goes
             * out. A resolution of an alert nobody was told fired is owed to
             * nobody.
             */
            if (st == APM_ALERT_RESOLVED && a->notified == APM_ALERT_PENDING) {
                a->notified = st;
                en->version++;
            }
        } else if (st != APM_ALERT_PENDING) {
            /* An acked alert is not notified; it counts as told. */
            if (e->opt.notify == NULL || apm_alert_acked(a, now_ms)) {
                a->notified = st;
                en->version++;
                continue;
            }
            int rc = apm_notify_send(e->opt.notify, a, st, now_ms);
            if (rc == 0) {
                en->inflight = true;
                en->refreshed_ms = now_ms;
                e->stats.notifications++;
            } else if (rc == 1) {
                a->notified = st;
                en->version++;
            }
        } else if (a->state == APM_ALERT_FIRING && e->opt.notify != NULL && a->silenced_by == 0 &&
                   now_ms - en->refreshed_ms >= resend) {
            /* Alertmanager forgets an alert whose endsAt passes: keep it fresh. */
            if (apm_notify_refresh(e->opt.notify, a, now_ms) == 0)
                en->refreshed_ms = now_ms;
        }
    }
}

struct pending_write {
    struct apm_store_alert_rec *recs;
    char **bufs;
    struct alert_entry **ents;
    uint64_t *versions;
    size_t n;
};

static void pending_free(struct pending_write *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->bufs[i]);
    free(w->recs);
    free(w->bufs);
    free(w->ents);
    free(w->versions);
}

/* Serialises every changed alert (under the mutex). */
static int collect_changes(struct apm_alerts *e, struct pending_write *w)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++)
        if (e->items[i]->persisted != e->items[i]->version && !e->items[i]->gone)
            n++;
    memset(w, 0, sizeof(*w));
    if (n == 0)
        return 0;
    w->recs = calloc(n, sizeof(*w->recs));
    w->bufs = calloc(n, sizeof(*w->bufs));
    w->ents = calloc(n, sizeof(*w->ents));
    w->versions = calloc(n, sizeof(*w->versions));
    if (w->recs == NULL || w->bufs == NULL || w->ents == NULL || w->versions == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        if (en->persisted == en->version || en->gone)
            continue;
        size_t len = 0;
        char *buf = apm_alert_record_encode(&en->a, &len);
        if (buf == NULL)
            return -ENOMEM;
        w->bufs[w->n] = buf;
        w->recs[w->n] = (struct apm_store_alert_rec){en->a.id, buf, len};
        w->ents[w->n] = en;
        w->versions[w->n] = en->version;
        w->n++;
    }
    return 0;
}

int apm_alerts_run_once(struct apm_alerts *e, int64_t now_ms)
{
    int silence_rc = apm_alerts_persist_silences(e, now_ms);
    pthread_mutex_lock(&e->mu);
    age(e, now_ms);
    apm_alerts_apply_silences(e, now_ms);
    struct pending_write w;
    int rc = collect_changes(e, &w);
    /* Deleted pending alerts are written as deletions. */
    for (size_t i = 0; rc == 0 && i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        if (en->gone && en->persisted != en->version)
            mark_deleted(e, en->a.id);
    }
    uint64_t *del = e->deleted;
    size_t ndel = e->ndeleted;
    e->deleted = NULL;
    e->ndeleted = e->capdeleted = 0;
    uint64_t next_id = e->next_id;
    pthread_mutex_unlock(&e->mu);

    if (rc == 0 && e->opt.store != NULL && (w.n > 0 || ndel > 0))
        rc = apm_store_alerts_put(e->opt.store, w.recs, w.n, del, ndel, next_id);

    pthread_mutex_lock(&e->mu);
    if (rc == 0) {
        for (size_t i = 0; i < w.n; i++)
            w.ents[i]->persisted = w.versions[i];
        for (size_t i = 0; i < e->n; i++)
            if (e->items[i]->gone)
                e->items[i]->persisted = e->items[i]->version;
        free(del);
    } else {
        e->stats.persist_errors++;
        for (size_t i = 0; i < ndel; i++)
            mark_deleted(e, del[i]);
        free(del);
    }
    if (rc == 0)
        queue_notifications(e, now_ms);
    prune(e);
    if (rc == 0)
        rc = silence_rc;
    bool say = rc != 0 && apm_log_limit_hit(&e->persist_log, now_ms);
    pthread_mutex_unlock(&e->mu);
    pending_free(&w);
    if (say)
        apm_warn("alerts: cannot persist alert or silence changes: %s (will retry)",
                 apm_strerror(rc));
    return rc;
}

void apm_alerts_notified(struct apm_alerts *e, uint64_t id, enum apm_alert_state st)
{
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n; i++) {
        struct alert_entry *en = e->items[i];
        if (en->a.id != id)
            continue;
        en->inflight = false;
        en->a.notified = st;
        en->version++;
        break;
    }
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}
