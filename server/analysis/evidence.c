/*
 * The evidence judgement (evidence.h). Kept free of I/O: the facts are read
 * by the callers (the alert feed caches the probe's data of a process), so
 * that this stays the one place where they are weighed.
 */
#include "server/analysis/evidence.h"

#include <math.h>
#include <string.h>

const char *apm_evidence_confirm_name(enum apm_confirm c)
{
    switch (c) {
    case APM_CONFIRM_VERDICT:
        return "analysis";
    case APM_CONFIRM_SITE:
        return "python-site";
    case APM_CONFIRM_RESTART:
        return "restart-at-limit";
    case APM_CONFIRM_NONE:
        break;
    }
    return "";
}

void apm_evidence_judge(const struct apm_verdict *v, const struct apm_evidence_facts *f,
                        struct apm_evidence *out)
{
    memset(out, 0, sizeof(*out));
    bool rising = v->rate > 0 && isfinite(v->rate);
    bool steady = v->steady && rising;
    out->grows = v->cls == APM_CLASS_LEAK || v->cls == APM_CLASS_GROWING || steady;
    bool has_site = f != NULL && f->site != NULL && f->site[0] != '\0';
    if (has_site && rising && f->site_rate > 0)
        out->site_share = f->site_rate / v->rate;
    out->site_explains = has_site && f->site_line && out->site_share >= APM_EVIDENCE_SITE_SHARE;
    if (out->site_explains && v->cls == APM_CLASS_GROWING && !steady &&
        v->doubt == APM_DOUBT_WARMUP && v->has_forecast && isfinite(v->growth_start_t)) {
        double run = v->t_last - v->growth_start_t, left = v->forecast_t - v->t_last;
        out->site_steady = run > 0 && (left <= 0 || run / (run + left) >= APM_EVIDENCE_WATCH_SHARE);
    }
    if (v->cls == APM_CLASS_LEAK)
        out->leak = APM_CONFIRM_VERDICT;
    else if (v->cls == APM_CLASS_GROWING && steady && f != NULL && f->restarted_at_limit)
        out->leak = APM_CONFIRM_RESTART;
    else if (v->cls == APM_CLASS_GROWING && steady && out->site_explains &&
             v->doubt != APM_DOUBT_WARMUP)
        out->leak = APM_CONFIRM_SITE;
}

bool apm_evidence_exhausts_within(const struct apm_verdict *v, const struct apm_evidence *ev,
                                  double horizon_s)
{
    if (apm_verdict_exhausts_within(v, horizon_s))
        return true;
    if (ev == NULL || !ev->site_steady)
        return false;
    struct apm_verdict trusted = *v;
    trusted.steady = true;
    return apm_verdict_exhausts_within(&trusted, horizon_s);
}
