#ifndef APM_ALERT_JUDGE_H
#define APM_ALERT_JUDGE_H

/*
 * The rules' conditions (docs/alerts.md): leak, native, exhaustion,
 * threshold and bloat, judged on one observation of a series. Each has a
 * band below its threshold where the condition holds rather than turns off,
 * so an alert does not flap on a value that wavers. Thread: any.
 */
#include <stdbool.h>
#include <stdint.h>

#include "server/alerts/alert_rules.h"
#include "server/alerts/alerts.h"

/* Points kept per series to judge bloat steps. */
#define APM_ALERT_TRACK_POINTS 32

/* Condition of a rule for one observation. */
enum apm_alert_cond { APM_ALERT_COND_OFF = 0, APM_ALERT_COND_HOLD, APM_ALERT_COND_ON };

/* A series' recent values, for bloat rules (a ring of APM_ALERT_TRACK_POINTS). */
struct apm_alert_track {
    double t[APM_ALERT_TRACK_POINTS];
    double v[APM_ALERT_TRACK_POINTS];
    unsigned n, head;
    int64_t seen_ms;
};

/* True when the rule's matchers (metric, host, process name, cgroup) select the series. */
bool apm_alert_rule_matches(const struct apm_alert_rule *r, const struct apm_alert_input *in);

/*
 * The rule's condition for the observation in; t is the series' track (NULL
 * when no bloat rule needs one), now_ms the time of the observation.
 */
enum apm_alert_cond apm_alert_judge(const struct apm_alert_rule *r,
                                    const struct apm_alert_input *in,
                                    const struct apm_alert_track *t, int64_t now_ms);

#endif
