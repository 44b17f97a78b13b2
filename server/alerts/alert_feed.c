#include "server/alerts/alert_feed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/analysis/model.h"
#include "common/base/timeutil.h"
#include "server/alerts/alert_rules.h"
#include "server/alerts/notify.h"
#include "server/analysis/suspects.h"

/* The probe's facts about a process are re-read at most every this many intervals... */
#define REFRESH_INTERVALS 5.0
/* ...and at most every this long. */
#define REFRESH_MIN_MS 5000
/* Processes whose facts are cached at most; past it the cache starts again empty. */
#define MAX_CACHED 4096u

/* What the probe's series said about one process at the last look. */
struct facts {
    int64_t next_ms; /* look again from then */
    int rc;          /* the last look's result; the facts are empty unless 0 */
    struct apm_suspects s;
};

struct apm_alert_feed {
    struct apm_alerts *engine;
    struct apm_notify *notify; /* owned by the engine */
    struct apm_store *store;
    struct apm_hashmap facts; /* process id -> struct facts *; the analyzer's thread only */
    size_t nfacts;
};

int apm_alert_feed_new(struct apm_store *store, struct apm_alert_config *ac, const char *http,
                       struct apm_alert_feed **out)
{
    int rc = 0;
    struct apm_alert_feed *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        apm_alert_config_free(ac);
        return -ENOMEM;
    }
    f->store = store;
    apm_hashmap_init(&f->facts);
    char url[300];
    snprintf(url, sizeof(url), "http://%s", http);
    struct apm_notify_options no = {.targets = ac->targets,
                                    .ntargets = ac->ntargets,
                                    .generator_url = url,
                                    .resend_ms = ac->resend_ms};
    rc = apm_notify_new(&no, &f->notify);
    if (rc == 0) {
        struct apm_alerts_options eo = {.store = store,
                                        .notify = f->notify,
                                        .tick_ms = ac->tick_ms,
                                        .stale_ms = ac->stale_ms,
                                        .resend_ms = ac->resend_ms,
                                        .silences_max = (size_t)ac->silences_max,
                                        .silences_keep_ms = ac->silences_keep_ms,
                                        .generator_url = url};
        rc = apm_alerts_new(&eo, &f->engine);
        if (rc != 0)
            apm_notify_free(f->notify);
    }
    if (rc != 0) {
        apm_error("alerts: cannot start: %s", apm_strerror(rc));
        apm_alert_config_free(ac);
        apm_hashmap_close(&f->facts);
        free(f);
        return rc;
    }
    struct apm_alert_rule *rules = NULL;
    size_t n = 0;
    bool defaults = ac->defaults;
    size_t ntargets = ac->ntargets;
    apm_alert_config_take_rules(ac, &rules, &n);
    apm_alert_config_free(ac);
    apm_alerts_set_rules(f->engine, rules, n);
    apm_info("alerts: %zu rules%s, %zu notify targets", n, defaults ? " (built-in)" : "", ntargets);
    *out = f;
    return 0;
}

static void free_facts(void *ctx, const void *key, size_t klen, uint64_t value)
{
    (void)ctx;
    (void)key;
    (void)klen;
    free((void *)(uintptr_t)value);
}

static void forget_facts(struct apm_alert_feed *f)
{
    apm_hashmap_foreach(&f->facts, free_facts, NULL);
    apm_hashmap_close(&f->facts);
    apm_hashmap_init(&f->facts);
    f->nfacts = 0;
}

void apm_alert_feed_free(struct apm_alert_feed *f)
{
    if (f == NULL)
        return;
    apm_alerts_free(f->engine);
    forget_facts(f);
    apm_hashmap_close(&f->facts);
    free(f);
}

int apm_alert_feed_reload(struct apm_alert_feed *f, struct apm_alert_config *ac)
{
    int rc = apm_notify_set_targets(f->notify, ac->targets, ac->ntargets);
    struct apm_alert_rule *rules = NULL;
    size_t n = 0;
    apm_alert_config_take_rules(ac, &rules, &n);
    apm_info("alerts: reloaded %zu rules%s, %zu notify targets", n,
             ac->defaults ? " (built-in)" : "", ac->ntargets);
    apm_alert_config_free(ac);
    apm_alerts_set_rules(f->engine, rules, n);
    return rc;
}

struct apm_alerts *apm_alert_feed_engine(struct apm_alert_feed *f)
{
    return f->engine;
}

/*
 * The suspects and traced-memory growth of rec's process, for a series that
 * grows (only then does an alert say them); NULL for the others. They cost
 * a read of every site series of the process, so they are cached and looked
 * at again only every few sampling intervals.
 */
static const struct apm_suspects *
probe_facts(struct apm_alert_feed *f, const struct apm_analyzer_verdict *msg, int64_t now_ms)
{
    const struct apm_verdict_record *rec = msg->rec;
    bool grows =
        rec->v.cls == APM_CLASS_LEAK || rec->v.cls == APM_CLASS_GROWING || rec->v.has_forecast;
    if (f->store == NULL || !grows || rec->process_id[0] == '\0')
        return NULL;
    size_t klen = strlen(rec->process_id);
    uint64_t v = 0;
    struct facts *x = NULL;
    if (apm_hashmap_get(&f->facts, rec->process_id, klen, &v) == 0) {
        x = (struct facts *)(uintptr_t)v;
    } else {
        if (f->nfacts >= MAX_CACHED)
            forget_facts(f);
        x = calloc(1, sizeof(*x));
        if (x == NULL || apm_hashmap_put(&f->facts, rec->process_id, klen, (uintptr_t)x) != 0) {
            free(x);
            return NULL;
        }
        f->nfacts++;
    }
    if (now_ms >= x->next_ms) {
        int64_t to_ms = (int64_t)(rec->v.t_last * 1000.0);
        double window = apm_suspects_window_s(msg->interval_s);
        x->rc = apm_suspects_find(f->store, rec->process_id, to_ms, window, rec->v.rate, &x->s);
        int64_t every = (int64_t)(REFRESH_INTERVALS * msg->interval_s * 1000.0);
        x->next_ms = now_ms + (every > REFRESH_MIN_MS ? every : REFRESH_MIN_MS);
        if (x->rc != 0)
            apm_warn("alerts: cannot read the probe's data of %s: %s", rec->process_id,
                     apm_strerror(x->rc));
    }
    return x->rc == 0 ? &x->s : NULL;
}

void apm_alert_feed_verdict(void *ctx, const struct apm_analyzer_verdict *msg)
{
    struct apm_alert_feed *f = ctx;
    const struct apm_verdict_record *rec = msg->rec;
    int64_t now_ms = apm_now_ms();
    struct apm_alert_input in = {
        .series_id = rec->series_id,
        .metric = apm_metric_name(rec->metric),
        .host = rec->host,
        .process_id = rec->process_id,
        .process_name = rec->name,
        .pid = rec->pid,
        .verdict = rec->v,
        .value = rec->value,
        .limit_source = apm_limit_source_name(rec->limit_source),
        .cgroup = msg->cgroup,
        .interval_s = msg->interval_s,
        .restarted_at_limit = rec->restarted_at_limit,
    };
    if (in.metric == NULL)
        return;
    const struct apm_suspects *sus = probe_facts(f, msg, now_ms);
    if (sus != NULL) {
        in.has_traced = sus->has_traced;
        in.traced_rate = sus->traced_rate;
        if (sus->n > 0) {
            in.suspect_site = sus->top[0].site;
            in.suspect_rate = sus->top[0].rate;
            in.suspect_rate_err = sus->top[0].rate_err;
            in.suspect_line = sus->top[0].line;
        }
    }
    apm_alerts_observe(f->engine, &in, now_ms);
}

int apm_alert_feed_add_counters(struct apm_alert_feed *f, struct apm_counters *r)
{
    int rc = apm_alerts_add_counters(f->engine, r);
    return rc == 0 ? apm_notify_add_counters(f->notify, r) : rc;
}
