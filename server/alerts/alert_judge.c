/*
 * What a rule says of one observation: whether it matches the series, and
 * whether its condition is on, off, or in the band between (hold), which is
 * what keeps an alert from flapping. No state but the arguments.
 */
#include "server/alerts/alert_judge.h"

#include <string.h>

#include "server/analysis/evidence.h"

static bool matches_re(bool has, const regex_t *re, const char *s)
{
    return !has || regexec(re, s != NULL ? s : "", 0, NULL, 0) == 0;
}

bool apm_alert_rule_matches(const struct apm_alert_rule *r, const struct apm_alert_input *in)
{
    if (r->metric[0] != '\0' && strcmp(r->metric, in->metric) != 0)
        return false;
    return matches_re(r->has_host, &r->host_re, in->host) &&
           matches_re(r->has_process, &r->process_re, in->process_name) &&
           matches_re(r->has_cgroup, &r->cgroup_re, in->cgroup);
}

/* The smallest value within the rule's window, from the series' track. */
static double track_min(const struct apm_alert_track *t, double since_s, double fallback)
{
    double m = fallback;
    for (unsigned i = 0; i < t->n; i++) {
        unsigned j = (t->head + APM_ALERT_TRACK_POINTS - 1 - i) % APM_ALERT_TRACK_POINTS;
        if (t->t[j] < since_s)
            break;
        if (t->v[j] < m)
            m = t->v[j];
    }
    return m;
}

/* The facts beyond the verdict that the observation carries. */
static void judge_evidence(const struct apm_alert_input *in, struct apm_evidence *ev)
{
    struct apm_evidence_facts f = {
        .site = in->suspect_site,
        .site_rate = in->suspect_rate,
        .site_line = in->suspect_line,
        .restarted_at_limit = in->restarted_at_limit,
    };
    apm_evidence_judge(&in->verdict, &f, ev);
}

enum apm_alert_cond apm_alert_judge(const struct apm_alert_rule *r,
                                    const struct apm_alert_input *in,
                                    const struct apm_alert_track *t, int64_t now_ms)
{
    const struct apm_verdict *v = &in->verdict;
    /* A series the analysis has not judged yet neither fires nor resolves. */
    bool judged = !(v->cls == APM_CLASS_STABLE && v->confidence <= 0.0);
    bool leak = v->cls == APM_CLASS_LEAK;
    struct apm_evidence ev;
    judge_evidence(in, &ev);
    switch (r->kind) {
    case APM_ALERT_LEAK:
        if (!judged)
            return APM_ALERT_COND_HOLD;
        if (leak && v->confidence >= r->confidence)
            return APM_ALERT_COND_ON;
        /* Evidence beyond RSS confirms a growth the analysis has no verdict on yet. */
        if (ev.leak == APM_CONFIRM_SITE || ev.leak == APM_CONFIRM_RESTART)
            return APM_ALERT_COND_ON;
        /*
         * A series still rising holds: its verdict may fall back to growing,
         * or its confidence dip, while the analysis weighs new samples, and a
         * leak that goes on must not resolve and fire again.
         */
        return ev.grows || (leak && v->confidence >= r->confidence - 0.2) ? APM_ALERT_COND_HOLD
                                                                          : APM_ALERT_COND_OFF;
    case APM_ALERT_NATIVE: {
        if (!judged || !in->has_traced)
            return APM_ALERT_COND_HOLD;
        bool lk = leak && v->confidence >= r->confidence && v->rate > 0;
        if (lk && in->traced_rate < r->native_ratio * v->rate)
            return APM_ALERT_COND_ON;
        return lk && in->traced_rate < 2 * r->native_ratio * v->rate ? APM_ALERT_COND_HOLD
                                                                     : APM_ALERT_COND_OFF;
    }
    case APM_ALERT_EXHAUSTION: {
        if (!judged)
            return APM_ALERT_COND_HOLD;
        /* A verdict between buckets may carry no forecast: a growth under way holds. */
        if (!v->has_forecast)
            return ev.grows ? APM_ALERT_COND_HOLD : APM_ALERT_COND_OFF;
        /*
         * The built-in condition, shared with apm-cli analyze (a forecast from
         * a trusted rate), or a rate the probe's evidence made trusted.
         */
        double horizon = (double)r->horizon_ms / 1000.0;
        if (apm_evidence_exhausts_within(v, &ev, horizon))
            return APM_ALERT_COND_ON;
        return ev.grows && v->forecast_lo_t - v->t_last <= horizon * 1.25 ? APM_ALERT_COND_HOLD
                                                                          : APM_ALERT_COND_OFF;
    }
    case APM_ALERT_THRESHOLD: {
        double x = r->above;
        if (r->above_pct) {
            if (v->limit <= 0)
                return APM_ALERT_COND_OFF;
            x = r->above * v->limit;
        }
        if (in->value > x)
            return APM_ALERT_COND_ON;
        return in->value > 0.95 * x ? APM_ALERT_COND_HOLD : APM_ALERT_COND_OFF;
    }
    case APM_ALERT_BLOAT: {
        if (t == NULL)
            return APM_ALERT_COND_HOLD;
        double since = (double)(now_ms - r->within_ms) / 1000.0;
        double lo = track_min(t, since, in->value);
        if (lo <= 0)
            return APM_ALERT_COND_OFF;
        double step = (in->value - lo) / lo;
        if (step > r->step)
            return APM_ALERT_COND_ON;
        return step > 0.5 * r->step ? APM_ALERT_COND_HOLD : APM_ALERT_COND_OFF;
    }
    }
    return APM_ALERT_COND_OFF;
}
