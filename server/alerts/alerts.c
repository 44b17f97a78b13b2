/*
 * The alert engine: rules applied to each judged series, the lifecycle of
 * one alert per (rule, series) episode, acks, persistence and the hand-off
 * to delivery. alerts.h says the contract; docs/alerts.md the behaviour.
 *
 * One mutex guards everything; observe, list and ack hold it for a few
 * microseconds. The engine's thread runs a round per tick: it ages alerts,
 * writes the changed ones in one LMDB transaction (outside the mutex) and
 * only then queues their notifications, so that what was notified is never
 * ahead of what is stored.
 */
#include "server/alerts/alerts.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/hashmap.h"
#include "common/log.h"
#include "common/text.h"
#include "common/timeutil.h"
#include "server/alerts/alert_judge.h"
#include "server/alerts/alert_record.h"
#include "server/alerts/alert_rules.h"
#include "server/alerts/alert_text.h"
#include "server/alerts/alerts_priv.h"
#include "server/alerts/notify.h"
#include "server/alerts/silence.h"
#include "server/store/store_alerts.h"
#include "server/analysis/evidence.h"
#include "server/analysis/suspects.h"

#define DEFAULT_TICK_MS 1000
#define DEFAULT_RESEND_MS 60000
/* A series silent for this many sampling intervals (and at least STALE_MIN_MS) is gone. */
#define STALE_INTERVALS 20
#define STALE_MIN_MS 30000
/* Without a resolve-for, the condition must be off this many sampling intervals. */
#define RESOLVE_INTERVALS 20
#define DEFAULT_SILENCES_KEEP_MS (86400LL * 1000)

const char *apm_alert_kind_name(enum apm_alert_kind k)
{
    static const char *const names[] = {"leak", "exhaustion", "threshold", "bloat", "native"};
    return (unsigned)k < 5 ? names[k] : "?";
}

const char *apm_alert_severity_name(enum apm_alert_severity s)
{
    return s == APM_SEVERITY_CRITICAL ? "critical" : "warning";
}

const char *apm_alert_state_name(enum apm_alert_state s)
{
    static const char *const names[] = {"pending", "firing", "resolved"};
    return (unsigned)s < 3 ? names[s] : "?";
}

bool apm_alert_acked(const struct apm_alert *a, int64_t now_ms)
{
    return a->ack_until_ms > now_ms;
}

/* ---- keys and bookkeeping ---- */

static size_t active_key(const char *rule, uint64_t series, char *key)
{
    size_t n = strnlen(rule, APM_ALERT_NAME_MAX - 1);
    memcpy(key, rule, n);
    key[n] = '\0';
    memcpy(key + n + 1, &series, 8);
    return n + 9;
}

static struct alert_entry *active_get(struct apm_alerts *e, const char *rule, uint64_t series)
{
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = active_key(rule, series, key);
    uint64_t v = 0;
    if (apm_hashmap_get(&e->active, key, klen, &v) != 0)
        return NULL;
    return (struct alert_entry *)(uintptr_t)v;
}

static void active_del(struct apm_alerts *e, const struct apm_alert *a)
{
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = active_key(a->rule, a->series_id, key);
    apm_hashmap_del(&e->active, key, klen);
}

static int items_push(struct apm_alerts *e, struct alert_entry *en)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        struct alert_entry **p = realloc(e->items, cap * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        e->items = p;
        e->cap = cap;
    }
    e->items[e->n++] = en;
    return 0;
}

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

static void touch(struct alert_entry *en)
{
    en->version++;
    apm_alert_text_summary(&en->a, en->a.summary, sizeof(en->a.summary));
}

static const struct apm_alert_rule *find_rule(const struct apm_alerts *e, const char *name)
{
    for (size_t i = 0; i < e->nrules; i++)
        if (strcmp(e->rules[i].name, name) == 0)
            return &e->rules[i];
    return NULL;
}

static void track_add(struct apm_alerts *e, const struct apm_alert_input *in, int64_t now_ms,
                      struct apm_alert_track **out)
{
    *out = NULL;
    uint64_t v = 0;
    struct apm_alert_track *t = NULL;
    if (apm_hashmap_get(&e->tracks, &in->series_id, 8, &v) == 0) {
        t = (struct apm_alert_track *)(uintptr_t)v;
    } else {
        t = calloc(1, sizeof(*t));
        if (t == NULL || apm_hashmap_put(&e->tracks, &in->series_id, 8, (uintptr_t)t) != 0) {
            free(t);
            return;
        }
    }
    /* Points are thinned to one per 1/16 of the longest bloat window. */
    int64_t within = 0;
    for (size_t i = 0; i < e->nrules; i++)
        if (e->rules[i].kind == APM_ALERT_BLOAT && e->rules[i].within_ms > within)
            within = e->rules[i].within_ms;
    double now_s = (double)now_ms / 1000.0;
    unsigned last = (t->head + APM_ALERT_TRACK_POINTS - 1) % APM_ALERT_TRACK_POINTS;
    if (t->n == 0 || now_s - t->t[last] >= (double)within / 16000.0) {
        t->t[t->head] = now_s;
        t->v[t->head] = in->value;
        t->head = (t->head + 1) % APM_ALERT_TRACK_POINTS;
        if (t->n < APM_ALERT_TRACK_POINTS)
            t->n++;
    }
    t->seen_ms = now_ms;
    *out = t;
}

/* ---- observation ---- */

/*
 * Every string of an alert (host, names, sites, the ack comment) reaches a
 * text line, a webhook and an exec hook's environment: it is kept clean
 * (common/text.h), so a string stored before ingest cleaned strings, or a
 * comment with a control character, cannot drive a terminal or forge a line.
 * Clean input is copied exactly; a long one is cut at a character boundary.
 */
static void copy_str(char *dst, size_t size, const char *src)
{
    if (src == NULL)
        src = "";
    apm_text_clean(dst, size, src, strlen(src));
}

/* Refreshes the facts an alert shows from the latest observation. */
static void update_facts(struct apm_alert *a, const struct apm_alert_input *in, int64_t now_ms)
{
    const struct apm_verdict *v = &in->verdict;
    a->seen_ms = now_ms;
    if (in->interval_s > 0)
        a->interval_s = in->interval_s;
    copy_str(a->cls, sizeof(a->cls), apm_analysis_class_name(v->cls));
    a->confidence = v->confidence;
    struct apm_evidence ev;
    struct apm_evidence_facts f = {.site = in->suspect_site,
                                   .site_rate = in->suspect_rate,
                                   .site_line = in->suspect_line,
                                   .restarted_at_limit = in->restarted_at_limit};
    apm_evidence_judge(v, &f, &ev);
    if (ev.grows || a->kind == APM_ALERT_THRESHOLD)
        a->rate = v->rate;
    /* How sure: how long it has grown, what doubt remains, what confirms it. */
    if (ev.grows && isfinite(v->growth_start_t) && v->t_last > v->growth_start_t)
        a->growing_for_s = v->t_last - v->growth_start_t;
    /* A verdict that wavers for a moment (no growth judged) leaves the last word standing. */
    if (ev.grows) {
        copy_str(a->doubt, sizeof(a->doubt),
                 v->cls == APM_CLASS_GROWING ? apm_analysis_doubt_name(v->doubt) : "");
        a->doubt_left_s = isfinite(v->doubt_until_t) && v->cls == APM_CLASS_GROWING
                              ? fmax(0.0, v->doubt_until_t - v->t_last)
                              : NAN;
        copy_str(a->confirmed, sizeof(a->confirmed), apm_evidence_confirm_name(ev.leak));
        a->site_steady = ev.site_steady;
    }
    if (ev.site_share > 0)
        a->site_share = ev.site_share;
    a->value = in->value;
    if (v->limit > 0) {
        a->limit = v->limit;
        copy_str(a->limit_source, sizeof(a->limit_source), in->limit_source);
    }
    /*
     * A verdict between buckets may carry no forecast; the alert keeps the
     * last one made (its times are absolute, so it stays true to read).
     */
    if (v->has_forecast) {
        a->has_forecast = true;
        a->forecast_t = v->forecast_t;
        a->forecast_lo_t = v->forecast_lo_t;
        a->forecast_hi_t = v->forecast_hi_t;
    }
    /* Tracing is on demand: keep the last suspect and verdict once a window has ended. */
    if (in->suspect_site != NULL && in->suspect_site[0] != '\0') {
        copy_str(a->suspect, sizeof(a->suspect), in->suspect_site);
        a->suspect_rate = in->suspect_rate;
        a->suspect_rate_err = in->suspect_rate_err;
    }
    if (in->has_traced && v->rate > 0)
        a->native = in->traced_rate < APM_SUSPECTS_NATIVE_RATIO * v->rate ? 1 : 0;
    if (in->cgroup != NULL && in->cgroup[0] != '\0')
        copy_str(a->cgroup, sizeof(a->cgroup), in->cgroup);
    a->restarted_at_limit = in->restarted_at_limit;
}

/* The newest resolved alert of (rule, series) still acknowledged: its ack silences a new one. */
static const struct apm_alert *silencing(const struct apm_alerts *e, const char *rule,
                                         uint64_t series, int64_t now_ms)
{
    for (size_t i = e->n; i-- > 0;) {
        const struct apm_alert *a = &e->items[i]->a;
        if (a->series_id == series && strcmp(a->rule, rule) == 0 && apm_alert_acked(a, now_ms))
            return a;
    }
    return NULL;
}

/*
 * True when an episode of (rule, series) already ended at or after the time
 * of the data behind this observation: a verdict that reaches the engine
 * late (analysis catching up a backlog) must not start the same episode again.
 */
static bool ended_after(const struct apm_alerts *e, const char *rule, uint64_t series,
                        double data_s)
{
    if (!(data_s > 0))
        return false;
    for (size_t i = e->n; i-- > 0;) {
        const struct apm_alert *a = &e->items[i]->a;
        if (a->series_id == series && a->state == APM_ALERT_RESOLVED && strcmp(a->rule, rule) == 0)
            return (double)a->resolved_ms / 1000.0 >= data_s;
    }
    return false;
}

static struct alert_entry *open_alert(struct apm_alerts *e, const struct apm_alert_rule *r,
                                      const struct apm_alert_input *in, int64_t now_ms)
{
    if (e->stats.pending + e->stats.firing >= APM_ALERT_MAX_ACTIVE) {
        if (e->stats.refused++ % 1000 == 0)
            apm_warn("alerts: %u alerts open; refusing new ones", APM_ALERT_MAX_ACTIVE);
        return NULL;
    }
    struct alert_entry *en = calloc(1, sizeof(*en));
    if (en == NULL)
        return NULL;
    struct apm_alert *a = &en->a;
    a->id = e->next_id;
    copy_str(a->rule, sizeof(a->rule), r->name);
    a->kind = r->kind;
    a->severity = r->severity;
    a->state = APM_ALERT_PENDING;
    a->series_id = in->series_id;
    copy_str(a->metric, sizeof(a->metric), in->metric);
    copy_str(a->host, sizeof(a->host), in->host);
    copy_str(a->process_id, sizeof(a->process_id), in->process_id);
    copy_str(a->process_name, sizeof(a->process_name), in->process_name);
    a->pid = in->pid;
    a->started_ms = now_ms;
    a->native = -1;
    a->doubt_left_s = NAN;
    a->notified = APM_ALERT_PENDING;
    copy_str(a->labels, sizeof(a->labels), r->labels);
    a->silenced_by = apm_silences_match(e->silences, a, now_ms);
    const struct apm_alert *sil = silencing(e, r->name, in->series_id, now_ms);
    if (sil != NULL) {
        a->ack_until_ms = sil->ack_until_ms;
        copy_str(a->ack_comment, sizeof(a->ack_comment), sil->ack_comment);
    }
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = active_key(r->name, in->series_id, key);
    if (items_push(e, en) != 0) {
        free(en);
        return NULL;
    }
    if (apm_hashmap_put(&e->active, key, klen, (uintptr_t)en) != 0) {
        e->n--;
        free(en);
        return NULL;
    }
    e->next_id++;
    e->stats.pending++;
    return en;
}

static void fire(struct apm_alerts *e, struct alert_entry *en, int64_t now_ms)
{
    en->a.state = APM_ALERT_FIRING;
    en->a.fired_ms = now_ms;
    apm_alert_text_summary(&en->a, en->a.summary, sizeof(en->a.summary));
    e->stats.pending--;
    e->stats.firing++;
    e->stats.fired++;
    apm_info("alerts: #%" PRIu64 " %s firing: %s", en->a.id, en->a.rule, en->a.summary);
}

/* Ends an episode: a firing alert resolves; a pending one is forgotten. */
static void close_alert(struct apm_alerts *e, struct alert_entry *en, int64_t now_ms)
{
    active_del(e, &en->a);
    if (en->a.state == APM_ALERT_PENDING) {
        e->stats.pending--;
        en->gone = true;
        en->version++;
        return;
    }
    en->a.state = APM_ALERT_RESOLVED;
    en->a.resolved_ms = now_ms;
    e->stats.firing--;
    e->stats.resolved++;
    apm_info("alerts: #%" PRIu64 " %s resolved", en->a.id, en->a.rule);
}

static int64_t resolve_for(const struct apm_alert_rule *r, const struct apm_alert *a)
{
    if (r != NULL && r->resolve_for_ms > 0)
        return r->resolve_for_ms;
    int64_t by_interval = (int64_t)(a->interval_s * 1000.0 * RESOLVE_INTERVALS);
    int64_t fr = r != NULL ? r->for_ms : 0;
    return by_interval > fr ? by_interval : fr;
}

static void step(struct apm_alerts *e, const struct apm_alert_rule *r, struct alert_entry *en,
                 enum apm_alert_cond c, int64_t now_ms)
{
    struct apm_alert *a = &en->a;
    if (c == APM_ALERT_COND_ON) {
        a->off_since_ms = 0;
        if (a->state == APM_ALERT_PENDING && now_ms - a->started_ms >= r->for_ms)
            fire(e, en, now_ms);
    } else if (c == APM_ALERT_COND_HOLD) {
        a->off_since_ms = 0;
    } else if (a->state == APM_ALERT_PENDING) {
        close_alert(e, en, now_ms);
    } else {
        if (a->off_since_ms == 0)
            a->off_since_ms = now_ms;
        if (now_ms - a->off_since_ms >= resolve_for(r, a))
            close_alert(e, en, now_ms);
    }
}

void apm_alerts_observe(struct apm_alerts *e, const struct apm_alert_input *in, int64_t now_ms)
{
    if (e == NULL || in == NULL || in->metric == NULL || in->host == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    struct apm_alert_track *t = NULL;
    if (e->any_bloat)
        track_add(e, in, now_ms, &t);
    for (size_t i = 0; i < e->nrules; i++) {
        const struct apm_alert_rule *r = &e->rules[i];
        if (!apm_alert_rule_matches(r, in))
            continue;
        enum apm_alert_cond c = apm_alert_judge(r, in, t, now_ms);
        struct alert_entry *en = active_get(e, r->name, in->series_id);
        if (en == NULL && c != APM_ALERT_COND_ON)
            continue;
        if (en == NULL && ended_after(e, r->name, in->series_id, in->verdict.t_last))
            continue;
        if (en == NULL && (en = open_alert(e, r, in, now_ms)) == NULL)
            continue;
        update_facts(&en->a, in, now_ms);
        step(e, r, en, c, now_ms);
        touch(en);
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- rounds ---- */

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
            close_alert(e, en, now_ms);
            touch(en);
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

static void on_notified(void *ctx, uint64_t id, enum apm_alert_state st)
{
    apm_alerts_notified(ctx, id, st);
}

static void *run(void *arg)
{
    struct apm_alerts *e = arg;
    int64_t tick = e->opt.tick_ms > 0 ? e->opt.tick_ms : DEFAULT_TICK_MS;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += tick / 1000;
        ts.tv_nsec += (tick % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        pthread_mutex_unlock(&e->mu);
        apm_alerts_run_once(e, apm_now_ms());
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- the rest of the API ---- */

static int load_one(void *ctx, uint64_t id, const void *data, size_t len)
{
    struct apm_alerts *e = ctx;
    struct alert_entry *en = calloc(1, sizeof(*en));
    if (en == NULL)
        return 1;
    if (apm_alert_record_decode(data, len, &en->a) != 0 || en->a.id != id) {
        apm_warn("alerts: stored alert %" PRIu64 " is damaged; skipped", id);
        free(en);
        return 0;
    }
    if (items_push(e, en) != 0) {
        free(en);
        return 1;
    }
    if (en->a.state == APM_ALERT_RESOLVED) {
        e->stats.resolved++;
        return 0;
    }
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = active_key(en->a.rule, en->a.series_id, key);
    apm_hashmap_put(&e->active, key, klen, (uintptr_t)en);
    if (en->a.state == APM_ALERT_FIRING)
        e->stats.firing++;
    else
        e->stats.pending++;
    if (en->a.id >= e->next_id)
        e->next_id = en->a.id + 1;
    return 0;
}

static int load_silence(void *ctx, uint64_t id, const void *data, size_t len)
{
    struct apm_alerts *e = ctx;
    struct apm_silence s;
    if (apm_silence_record_decode(data, len, &s) != 0 || s.id != id ||
        apm_silences_add(e->silences, &s, &e->silence_next_id) == APM_E_PARSE) {
        apm_warn("alerts: stored silence %" PRIu64 " is damaged; skipped", id);
        return 0;
    }
    return 0;
}

int apm_alerts_new(const struct apm_alerts_options *opt, struct apm_alerts **out)
{
    struct apm_alerts *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->opt = *opt;
    e->next_id = 1;
    e->silence_next_id = 1;
    e->silence_edge_ms = INT64_MIN;
    if (e->opt.silences_max == 0)
        e->opt.silences_max = APM_ALERT_SILENCES_MAX;
    if (e->opt.silences_keep_ms <= 0)
        e->opt.silences_keep_ms = DEFAULT_SILENCES_KEEP_MS;
    e->silences = apm_silences_new(e->opt.silences_max, e->opt.silences_keep_ms);
    e->persist_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "alerts:", "failures to persist alert changes", 10000, 1);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    apm_hashmap_init(&e->active);
    apm_hashmap_init(&e->tracks);
    if (opt->notify != NULL)
        apm_notify_set_done(opt->notify, on_notified, e);
    int rc = e->silences != NULL ? 0 : -ENOMEM;
    if (rc == 0 && opt->store != NULL) {
        uint64_t next = 1;
        rc = apm_store_alerts_load(opt->store, load_one, e, &next);
        if (next > e->next_id)
            e->next_id = next;
    }
    if (rc == 0 && opt->store != NULL) {
        uint64_t next = 1;
        rc = apm_store_silences_load(opt->store, load_silence, e, &next);
        if (next > e->silence_next_id)
            e->silence_next_id = next;
    }
    /* Restored alerts show their silence before the first round, which matches again by its clock.
     */
    if (rc == 0)
        apm_alerts_apply_silences(e, apm_now_ms());
    e->silence_edge_ms = INT64_MIN;
    if (rc == 0 && !opt->manual) {
        rc = -pthread_create(&e->thread, NULL, run, e);
        e->started = rc == 0;
    }
    if (rc != 0) {
        apm_alerts_free(e);
        return rc;
    }
    if (e->stats.firing + e->stats.pending > 0)
        apm_info("alerts: %" PRIu64 " firing and %" PRIu64 " pending alerts restored",
                 e->stats.firing, e->stats.pending);
    *out = e;
    return 0;
}

static void free_track(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    free((void *)(uintptr_t)value);
}

void apm_alerts_free(struct apm_alerts *e)
{
    if (e == NULL)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    /* Delivery stops first, so that no callback reaches a freed engine; a last round then
     * persists what changed (unsent notifications go out after the next start). */
    apm_notify_free(e->opt.notify);
    e->opt.notify = NULL;
    e->closing = true;
    if (e->started)
        apm_alerts_run_once(e, apm_now_ms());
    for (size_t i = 0; i < e->n; i++)
        free(e->items[i]);
    free(e->items);
    free(e->deleted);
    apm_hashmap_close(&e->active);
    apm_hashmap_foreach(&e->tracks, free_track, NULL);
    apm_hashmap_close(&e->tracks);
    apm_alert_rules_free(e->rules, e->nrules);
    apm_silences_free(e->silences);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void apm_alerts_set_rules(struct apm_alerts *e, struct apm_alert_rule *rules, size_t n)
{
    pthread_mutex_lock(&e->mu);
    struct apm_alert_rule *old = e->rules;
    size_t nold = e->nrules;
    e->rules = rules;
    e->nrules = n;
    e->any_bloat = false;
    for (size_t i = 0; i < n; i++) {
        if (rules[i].kind == APM_ALERT_BLOAT)
            e->any_bloat = true;
        /* An open alert takes the new severity and labels of its rule. */
        for (size_t j = 0; j < e->n; j++) {
            struct apm_alert *a = &e->items[j]->a;
            if (a->state != APM_ALERT_RESOLVED && strcmp(a->rule, rules[i].name) == 0) {
                a->severity = rules[i].severity;
                copy_str(a->labels, sizeof(a->labels), rules[i].labels);
            }
        }
    }
    e->stats.rules = n;
    e->silence_edge_ms = INT64_MIN; /* labels and severities may have changed */
    pthread_mutex_unlock(&e->mu);
    apm_alert_rules_free(old, nold);
}

static struct alert_entry *find(struct apm_alerts *e, uint64_t id)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->items[i]->a.id == id && !e->items[i]->gone)
            return e->items[i];
    return NULL;
}

int apm_alerts_ack(struct apm_alerts *e, uint64_t id, int64_t for_ms, const char *comment,
                   int64_t now_ms)
{
    pthread_mutex_lock(&e->mu);
    struct alert_entry *en = find(e, id);
    if (en != NULL) {
        en->a.ack_until_ms = for_ms > 0 ? now_ms + for_ms : 0;
        copy_str(en->a.ack_comment, sizeof(en->a.ack_comment), comment);
        en->version++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return en != NULL ? 0 : APM_E_NOTFOUND;
}

static bool wanted(const struct apm_alert *a, enum apm_alert_filter f)
{
    switch (f) {
    case APM_FILTER_ACTIVE:
        return a->state != APM_ALERT_RESOLVED;
    case APM_FILTER_PENDING:
        return a->state == APM_ALERT_PENDING;
    case APM_FILTER_FIRING:
        return a->state == APM_ALERT_FIRING;
    case APM_FILTER_RESOLVED:
        return a->state == APM_ALERT_RESOLVED;
    case APM_FILTER_ALL:
        return true;
    }
    return false;
}

size_t apm_alerts_list(struct apm_alerts *e, enum apm_alert_filter f, struct apm_alert *out,
                       size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = e->n; i-- > 0;) {
        const struct alert_entry *en = e->items[i];
        if (en->gone || !wanted(&en->a, f))
            continue;
        if (n < max)
            out[n] = en->a;
        n++;
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

int apm_alerts_get(struct apm_alerts *e, uint64_t id, struct apm_alert *out)
{
    pthread_mutex_lock(&e->mu);
    struct alert_entry *en = find(e, id);
    if (en != NULL)
        *out = en->a;
    pthread_mutex_unlock(&e->mu);
    return en != NULL ? 0 : APM_E_NOTFOUND;
}

void apm_alerts_get_stats(struct apm_alerts *e, struct apm_alerts_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    pthread_mutex_unlock(&e->mu);
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_alerts_stats, rules, "rules", APM_COUNTER_GAUGE, "",
                "Alert rules in force."),
    APM_COUNTER(struct apm_alerts_stats, pending, "pending", APM_COUNTER_GAUGE, "",
                "Alerts pending now (condition met, not yet for long enough)."),
    APM_COUNTER(struct apm_alerts_stats, firing, "firing", APM_COUNTER_GAUGE, "",
                "Alerts firing now."),
    APM_COUNTER(struct apm_alerts_stats, resolved, "resolved", APM_COUNTER_GAUGE, "",
                "Resolved alerts kept for the history."),
    APM_COUNTER(struct apm_alerts_stats, fired, "fired", APM_COUNTER_TOTAL, "",
                "Alerts that reached firing since the start."),
    APM_COUNTER(struct apm_alerts_stats, refused, "refused", APM_COUNTER_TOTAL, "",
                "New alerts refused over the cap on active alerts."),
    APM_COUNTER(struct apm_alerts_stats, persist_errors, "persist_errors", APM_COUNTER_TOTAL, "",
                "Alert records the store failed to write."),
    APM_COUNTER(struct apm_alerts_stats, notifications, "notifications", APM_COUNTER_TOTAL, "",
                "Firing and resolved notifications handed to delivery."),
    APM_COUNTER(struct apm_alerts_stats, silenced, "silenced", APM_COUNTER_GAUGE, "",
                "Pending and firing alerts an active silence matches now."),
    APM_COUNTER(struct apm_alerts_stats, silences_active, "silences_active", APM_COUNTER_GAUGE, "",
                "Silences in force now."),
    APM_COUNTER(struct apm_alerts_stats, silences_pending, "silences_pending", APM_COUNTER_GAUGE,
                "", "Silences that start later."),
    APM_COUNTER(struct apm_alerts_stats, silences_expired, "silences_expired", APM_COUNTER_GAUGE,
                "", "Ended silences kept for the listing (silences-keep)."),
    APM_COUNTER(struct apm_alerts_stats, silences_refused, "silences_refused", APM_COUNTER_TOTAL,
                "", "New silences refused over silences-max."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    apm_alerts_get_stats(obj, out);
    return 0;
}

int apm_alerts_add_counters(struct apm_alerts *obj, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "alerts",
                                  .counters = counters,
                                  .size = sizeof(struct apm_alerts_stats),
                                  .read = read_counters,
                                  .obj = obj};
    return apm_counters_add(r, &g);
}
