#include "server/alert_feed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/model.h"
#include "common/timeutil.h"
#include "server/alert_rules.h"
#include "server/collector.h"
#include "server/notify.h"

struct apm_alert_feed {
    struct apm_alerts *engine;
    struct apm_notify *notify; /* owned by the engine */
    char config[4096];
    const struct apm_opt *opts;
};

/* Reads the alert sections; returns a finished config or NULL after logging. */
static struct apm_alert_config *load(const char *path, const struct apm_opt *opts, int *rc)
{
    char err[1024] = "";
    struct apm_alert_config *ac = apm_alert_config_new();
    struct apm_collector_config *scratch = malloc(sizeof(*scratch));
    *rc = ac != NULL && scratch != NULL ? 0 : -ENOMEM;
    if (*rc == 0 && path != NULL && path[0] != '\0') {
        apm_collector_config_defaults(scratch);
        apm_alert_config_set_file(ac, path);
        *rc = apm_config_load(path, opts, scratch, apm_alert_config_section, ac, err, sizeof(err));
    }
    if (*rc == 0)
        *rc = apm_alert_config_finish(ac, err, sizeof(err));
    free(scratch);
    if (*rc != 0) {
        apm_error("alerts: %s", err[0] ? err : apm_strerror(*rc));
        apm_alert_config_free(ac);
        return NULL;
    }
    return ac;
}

int apm_alert_feed_new(struct apm_store *store, const char *config_path, const struct apm_opt *opts,
                       const char *http, struct apm_alert_feed **out)
{
    int rc = 0;
    struct apm_alert_feed *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    snprintf(f->config, sizeof(f->config), "%s", config_path != NULL ? config_path : "");
    f->opts = opts;
    struct apm_alert_config *ac = load(f->config, opts, &rc);
    if (ac == NULL) {
        free(f);
        return rc;
    }
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
                                        .generator_url = url};
        rc = apm_alerts_new(&eo, &f->engine);
        if (rc != 0)
            apm_notify_free(f->notify);
    }
    if (rc != 0) {
        apm_error("alerts: cannot start: %s", apm_strerror(rc));
        apm_alert_config_free(ac);
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

void apm_alert_feed_free(struct apm_alert_feed *f)
{
    if (f == NULL)
        return;
    apm_alerts_free(f->engine);
    free(f);
}

int apm_alert_feed_reload(struct apm_alert_feed *f)
{
    int rc = 0;
    struct apm_alert_config *ac = load(f->config, f->opts, &rc);
    if (ac == NULL) {
        apm_error("alerts: reload failed; the current rules stay");
        return rc;
    }
    rc = apm_notify_set_targets(f->notify, ac->targets, ac->ntargets);
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

void apm_alert_feed_verdict(void *ctx, const struct apm_verdict_record *rec)
{
    struct apm_alert_feed *f = ctx;
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
    };
    if (in.metric != NULL)
        apm_alerts_observe(f->engine, &in, apm_now_ms());
}

#define PUT_U64(obj, key, v) json_object_set_new(obj, key, json_integer((json_int_t)(v)))

void apm_alert_feed_status(struct apm_alert_feed *f, json_t *obj)
{
    struct apm_alerts_stats s;
    apm_alerts_get_stats(f->engine, &s);
    json_t *o = json_object();
    PUT_U64(o, "rules", s.rules);
    PUT_U64(o, "pending", s.pending);
    PUT_U64(o, "firing", s.firing);
    PUT_U64(o, "resolved", s.resolved);
    PUT_U64(o, "fired", s.fired);
    PUT_U64(o, "refused", s.refused);
    PUT_U64(o, "persist_errors", s.persist_errors);
    PUT_U64(o, "notifications", s.notifications);
    json_object_set_new(obj, "alerts", o);
    struct apm_notify_stats ns;
    apm_notify_get_stats(f->notify, &ns);
    o = json_object();
    PUT_U64(o, "queued", ns.queued);
    PUT_U64(o, "delivered", ns.delivered);
    PUT_U64(o, "failures", ns.failures);
    PUT_U64(o, "gave_up", ns.gave_up);
    PUT_U64(o, "dropped", ns.dropped);
    json_object_set_new(obj, "notify", o);
}
