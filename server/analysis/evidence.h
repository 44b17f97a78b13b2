#ifndef APM_EVIDENCE_H
#define APM_EVIDENCE_H

/*
 * What the collector holds about a growing process beyond its RSS curve, and
 * what it concludes from it, decided here and only here: the alert rules
 * (server/alerts/alert_judge.c), the alert's sentence (alert_text.c) and the
 * API read the same answer. docs/analysis.md, "Evidence beyond RSS".
 *
 * The analysis of the RSS series (common/analysis/analysis.h) gives a class, a rate
 * and whether that rate is steady. Two further facts can confirm a leak
 * before the RSS series alone would:
 *
 * - the probe's tracemalloc window shows one Python site growing in a line
 *   (through every part of the window) at a rate that accounts for most of
 *   the RSS growth: the growth is the program's own objects piling up at one
 *   line, not a step, not page cache, not allocator noise;
 * - the process replaced one of its name and cgroup that reached its limit:
 *   the same growth has already run into the limit once.
 *
 * Whether the rate is trusted for the exhaustion rule is the analysis's own
 * call (apm_verdict_exhausts_within: a leak, or a steady rate), so that the
 * collector and apm-cli analyze raise the same exhaustion alerts, with one
 * exception only the live collector can make. The analysis holds a growth
 * under warm-up doubt until it has been watched for a share of its time
 * left, a large one for growth that began with the series (no level seen
 * before it: a process starting up). When one Python site grows in a line
 * with most of that growth, it is the program piling objects at one line,
 * not the interpreter starting up, so it is watched like any growth under
 * way whose level was seen before: its rate is trusted once the growth has
 * run for APM_EVIDENCE_WATCH_SHARE of (its run + its time left).
 * A cache that fills for a while and stops does not get there: at 10 MB/s
 * against 24 GiB that takes about 80 s of growth in a line.
 *
 * Neither fact tells a cache that is still filling from a leak (both look the
 * same until the cache stops), so neither lifts a warm-up doubt for the leak
 * rule: a site confirms a leak only for a series whose rate is steady and
 * whose doubt is about the evidence or a step. A restart at the limit is the
 * one fact that speaks to warm-up (the last one did not level off), so it
 * confirms a steady growth whatever the doubt.
 *
 * Thread: any; pure functions of their arguments.
 */
#include <stdbool.h>

#include "common/analysis/analysis.h"

/* A site explains the growth when it grows at least this share of the RSS rate. */
#define APM_EVIDENCE_SITE_SHARE 0.5
/*
 * A growth explained by a site is urgent once it has run for this share of
 * (its run + its time left): the analysis's share for a growth under way
 * whose level was seen before (common/analysis/analysis.c, steady_p).
 */
#define APM_EVIDENCE_WATCH_SHARE 0.03

/* What confirms a leak. */
enum apm_confirm {
    APM_CONFIRM_NONE = 0, /* not confirmed */
    APM_CONFIRM_VERDICT,  /* the analysis of the series calls it a leak */
    APM_CONFIRM_SITE,     /* a Python site grows in a line with most of the growth */
    APM_CONFIRM_RESTART,  /* it replaced a process that reached its limit, and grows again */
};

/* The facts beyond the verdict. Pointers are borrowed for the call. */
struct apm_evidence_facts {
    const char *site;        /* the top suspect site; NULL or "" when none */
    double site_rate;        /* its growth, bytes per second */
    bool site_line;          /* it grew through every part of the probe's window */
    bool restarted_at_limit; /* the process replaced one at its limit */
};

struct apm_evidence {
    bool grows;         /* rising now: class leak or growing, or a steady positive rate */
    double site_share;  /* the top site's rate over the RSS rate; 0 when unknown */
    bool site_explains; /* that site grows in a line with >= APM_EVIDENCE_SITE_SHARE of it */
    bool site_steady;   /* it makes the rate of a start-up growth trusted (see above) */
    enum apm_confirm leak;
};

/* Judges v (borrowed) with the facts f (borrowed; NULL = none) into *out. */
void apm_evidence_judge(const struct apm_verdict *v, const struct apm_evidence_facts *f,
                        struct apm_evidence *out);

/*
 * The exhaustion condition with the evidence: apm_verdict_exhausts_within(v,
 * horizon_s), or the same condition on a rate ev made trusted.
 */
bool apm_evidence_exhausts_within(const struct apm_verdict *v, const struct apm_evidence *ev,
                                  double horizon_s);

/* "", "analysis", "python-site" or "restart-at-limit". */
const char *apm_evidence_confirm_name(enum apm_confirm c);

#endif
