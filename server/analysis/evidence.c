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
    if (v->cls == APM_CLASS_LEAK)
        out->leak = APM_CONFIRM_VERDICT;
    else if (v->cls == APM_CLASS_GROWING && steady && f != NULL && f->restarted_at_limit)
        out->leak = APM_CONFIRM_RESTART;
    else if (v->cls == APM_CLASS_GROWING && steady && out->site_explains &&
             v->doubt != APM_DOUBT_WARMUP)
        out->leak = APM_CONFIRM_SITE;
}
