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
 *
 * This file holds the engine's life: start (restoring stored alerts and
 * silences), its thread, rules, acks, listings and counters. The rest is in
 * alerts_observe.c (observations through the lifecycle), alerts_round.c (a
 * round: ageing, persistence, notifications) and alerts_silence.c.
 */
#include "server/alerts/alerts.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/alerts/alert_record.h"
#include "server/alerts/alert_rules.h"
#include "server/alerts/alerts_priv.h"
#include "server/alerts/notify.h"
#include "server/alerts/silence.h"
#include "server/store/store_alerts.h"

#define DEFAULT_TICK_MS 1000
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
    if (apm_alerts_items_push(e, en) != 0) {
        free(en);
        return 1;
    }
    if (en->a.state == APM_ALERT_RESOLVED) {
        e->stats.resolved++;
        return 0;
    }
    char key[APM_ALERT_NAME_MAX + 9];
    size_t klen = apm_alerts_active_key(en->a.rule, en->a.series_id, key);
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
                apm_alerts_copy_str(a->labels, sizeof(a->labels), rules[i].labels);
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
        apm_alerts_copy_str(en->a.ack_comment, sizeof(en->a.ack_comment), comment);
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
