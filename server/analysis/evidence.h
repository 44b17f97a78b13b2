#ifndef APM_EVIDENCE_H
#define APM_EVIDENCE_H

/*
 * What the collector holds about a growing process beyond its RSS curve, and
 * what it concludes from it, decided here and only here: the alert rules
 * (server/alerts/alert_judge.c), the alert's sentence (alert_text.c) and the
 * API read the same answer. docs/analysis.md, "Evidence beyond RSS".
 *
 * The analysis of the RSS series (common/analysis.h) gives a class, a rate
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
 * collector and apm-cli analyze raise the same exhaustion alerts.
 *
 * Neither tells a cache that is still filling from a leak (both look the same
 * until the cache stops), so neither lifts a warm-up doubt by itself: a site
 * confirms only a series whose rate is steady and whose doubt is about the
 * evidence or a step. A restart at the limit is the one fact that speaks to
 * warm-up (the last one did not level off), so it confirms a steady growth
 * whatever the doubt.
 *
 * Thread: any; pure functions of their arguments.
 */
#include <stdbool.h>

#include "common/analysis.h"

/* A site explains the growth when it grows at least this share of the RSS rate. */
#define APM_EVIDENCE_SITE_SHARE 0.5

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
    enum apm_confirm leak;
};

/* Judges v (borrowed) with the facts f (borrowed; NULL = none) into *out. */
void apm_evidence_judge(const struct apm_verdict *v, const struct apm_evidence_facts *f,
                        struct apm_evidence *out);

/* "", "analysis", "python-site" or "restart-at-limit". */
const char *apm_evidence_confirm_name(enum apm_confirm c);

#endif
