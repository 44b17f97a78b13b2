/*
 * The alert engine's observations (alerts.h, apm_alerts_observe): each rule
 * that matches a judged series is applied to it, and the episode of (rule,
 * series) moves through its lifecycle: opened pending, fired once its
 * condition held for long enough, resolved once it was off for resolve-for
 * (a pending one is forgotten). The facts an alert shows are refreshed from
 * every observation. Under the engine's mutex (alerts_priv.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/base/text.h"
#include "server/alerts/alert_judge.h"
#include "server/alerts/alert_text.h"
#include "server/alerts/alerts_priv.h"
#include "server/alerts/silence.h"
#include "server/analysis/evidence.h"
#include "server/analysis/suspects.h"

/* Without a resolve-for, the condition must be off this many sampling intervals. */
#define RESOLVE_INTERVALS 20

/* ---- keys and bookkeeping ---- */

size_t apm_alerts_active_key(const char *rule, uint64_t series, char *key)
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
    size_t klen = apm_alerts_active_key(rule, series, key);
    uint64_t v = 0;
    if (apm_hashmap_get(&e->active, key, klen, &v) != 0)
        return NULL;
    return (struct alert_entry *)(uintptr_t)v;
}

static void active_del(struct apm_alerts *e, const struct apm_alert *a)
{
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = apm_alerts_active_key(a->rule, a->series_id, key);
    apm_hashmap_del(&e->active, key, klen);
}

int apm_alerts_items_push(struct apm_alerts *e, struct alert_entry *en)
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

void apm_alerts_touch(struct alert_entry *en)
{
    en->version++;
    apm_alert_text_summary(&en->a, en->a.summary, sizeof(en->a.summary));
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
 * (common/base/text.h), so a string stored before ingest cleaned strings, or a
 * comment with a control character, cannot drive a terminal or forge a line.
 * Clean input is copied exactly; a long one is cut at a character boundary.
 */
void apm_alerts_copy_str(char *dst, size_t size, const char *src)
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
    apm_alerts_copy_str(a->cls, sizeof(a->cls), apm_analysis_class_name(v->cls));
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
        apm_alerts_copy_str(a->doubt, sizeof(a->doubt),
                            v->cls == APM_CLASS_GROWING ? apm_analysis_doubt_name(v->doubt) : "");
        a->doubt_left_s = isfinite(v->doubt_until_t) && v->cls == APM_CLASS_GROWING
                              ? fmax(0.0, v->doubt_until_t - v->t_last)
                              : NAN;
        apm_alerts_copy_str(a->confirmed, sizeof(a->confirmed), apm_evidence_confirm_name(ev.leak));
        a->site_steady = ev.site_steady;
    }
    if (ev.site_share > 0)
        a->site_share = ev.site_share;
    a->value = in->value;
    if (v->limit > 0) {
        a->limit = v->limit;
        apm_alerts_copy_str(a->limit_source, sizeof(a->limit_source), in->limit_source);
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
        apm_alerts_copy_str(a->suspect, sizeof(a->suspect), in->suspect_site);
        a->suspect_rate = in->suspect_rate;
        a->suspect_rate_err = in->suspect_rate_err;
    }
    if (in->has_traced && v->rate > 0)
        a->native = in->traced_rate < APM_SUSPECTS_NATIVE_RATIO * v->rate ? 1 : 0;
    if (in->cgroup != NULL && in->cgroup[0] != '\0')
        apm_alerts_copy_str(a->cgroup, sizeof(a->cgroup), in->cgroup);
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
    apm_alerts_copy_str(a->rule, sizeof(a->rule), r->name);
    a->kind = r->kind;
    a->severity = r->severity;
    a->state = APM_ALERT_PENDING;
    a->series_id = in->series_id;
    apm_alerts_copy_str(a->metric, sizeof(a->metric), in->metric);
    apm_alerts_copy_str(a->host, sizeof(a->host), in->host);
    apm_alerts_copy_str(a->process_id, sizeof(a->process_id), in->process_id);
    apm_alerts_copy_str(a->process_name, sizeof(a->process_name), in->process_name);
    a->pid = in->pid;
    a->started_ms = now_ms;
    a->native = -1;
    a->doubt_left_s = NAN;
    a->notified = APM_ALERT_PENDING;
    apm_alerts_copy_str(a->labels, sizeof(a->labels), r->labels);
    a->silenced_by = apm_silences_match(e->silences, a, now_ms);
    const struct apm_alert *sil = silencing(e, r->name, in->series_id, now_ms);
    if (sil != NULL) {
        a->ack_until_ms = sil->ack_until_ms;
        apm_alerts_copy_str(a->ack_comment, sizeof(a->ack_comment), sil->ack_comment);
    }
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = apm_alerts_active_key(r->name, in->series_id, key);
    if (apm_alerts_items_push(e, en) != 0) {
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

void apm_alerts_close_alert(struct apm_alerts *e, struct alert_entry *en, int64_t now_ms)
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
        apm_alerts_close_alert(e, en, now_ms);
    } else {
        if (a->off_since_ms == 0)
            a->off_since_ms = now_ms;
        if (now_ms - a->off_since_ms >= resolve_for(r, a))
            apm_alerts_close_alert(e, en, now_ms);
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
        apm_alerts_touch(en);
    }
    pthread_mutex_unlock(&e->mu);
}
