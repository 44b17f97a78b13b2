#ifndef APM_ANALYSIS_H
#define APM_ANALYSIS_H

/*
 * The per-series leak analyzer shared by apm-collector and apm-cli. Feed it
 * the samples of one memory series in time order; at any moment it gives a
 * verdict that only depends on the samples seen so far (causal), so the same
 * code judges a live series and a recorded trace replayed "as if live".
 *
 * Samples are summarised into a bounded history of buckets that close on time
 * (a bucket's floor is its second-smallest sample, a GC-proof lower envelope);
 * when the history is full, neighbouring buckets merge, so memory stays
 * constant, the history always spans the series' whole life, and the oldest
 * data is kept at coarser resolution. The verdict is recomputed only when a
 * bucket closes, so adding a sample costs O(1) amortised. See
 * docs/analysis.md for the method.
 *
 * Thread: an apm_analysis is not thread-safe; use one per series and thread.
 */
#include <stdbool.h>
#include <stddef.h>

enum apm_sensitivity {
    APM_SENSITIVITY_BALANCED = 0, /* the default */
    APM_SENSITIVITY_EARLY,        /* alerts sooner, accepts more false alarms */
    APM_SENSITIVITY_QUIET,        /* alerts later, with fewer false alarms */
};

/* Parses "early", "balanced" or "quiet". Returns 0 or APM_E_CONFIG. */
int apm_analysis_sensitivity_parse(const char *s, enum apm_sensitivity *out);

/* Returns "early", "balanced" or "quiet". */
const char *apm_analysis_sensitivity_name(enum apm_sensitivity s);

enum apm_class {
    APM_CLASS_STABLE = 0, /* no growth that matters (also: not enough data yet) */
    APM_CLASS_LEAK,       /* steady growth of the floor, not explained otherwise */
    APM_CLASS_BLOAT,      /* a one-off step or spike in level */
    APM_CLASS_SAWTOOTH,   /* large periodic swings around a flat floor */
    APM_CLASS_WARMUP,     /* growth that decelerates toward a plateau */
    APM_CLASS_GROWING,    /* rising now, no verdict yet: see apm_verdict.doubt */
};

/* Returns "stable", "leak", "bloat", "sawtooth", "warmup" or "growing". */
const char *apm_analysis_class_name(enum apm_class c);

/* The start-up doubt's default length, s (see apm_analysis_config.startup_s). */
#define APM_ANALYSIS_STARTUP_S 21600

struct apm_analysis_config {
    enum apm_sensitivity sensitivity;
    /*
     * bucket_samples and min_buckets are no longer used (kept so that existing
     * configurations still parse): buckets close on time and no verdict waits
     * for a count of samples. history_buckets (default 192, 32..512, even) is the most buckets the
     * history keeps before it halves its resolution.
     */
    unsigned bucket_samples;
    unsigned history_buckets;
    unsigned min_buckets;
    /*
     * Until the history first fills, buckets are single samples and are
     * judged on every other close; phase (modulo 2) says which. A collector
     * gives each series its own, so that series started together are not all
     * judged on the same round.
     */
    unsigned phase;
    /*
     * The process replaces one that reached its memory limit shortly before
     * (a restart after the OOM killer, most likely). Its growth since the start
     * is then judged without the warm-up doubt: the urgency share is the one
     * for growth that began inside the window. Default false.
     */
    bool after_exhaustion;
    /*
     * Optional durations in seconds (0 = not used): a bucket also stays open
     * until it spans bucket_min_s, and no leak is reported before the series
     * spans min_history_s. They let one configuration fit both a 1 s demo and
     * a 60 s production interval.
     */
    double bucket_min_s;
    double min_history_s;
    /*
     * Growth under way since the series began is a start-up fill, not a
     * leak, until the series spans startup_s (APM_ANALYSIS_STARTUP_S by
     * default; 0: judged at once). Negative: the operating point's own.
     */
    double startup_s;
    /*
     * Overrides of the operating point's thresholds, "name=value,..." (NULL:
     * none); borrowed until apm_analysis_new returns. For benchmarks that
     * choose thresholds, not for users.
     */
    const char *tuning;
};

/* Fills cfg with the defaults above (balanced). */
void apm_analysis_config_init(struct apm_analysis_config *cfg);

/* Why a growing series has no verdict yet. */
enum apm_doubt {
    APM_DOUBT_NONE = 0, /* a verdict is given */
    APM_DOUBT_EVIDENCE, /* too little history for a verdict at the evidence seen */
    APM_DOUBT_WARMUP,   /* the growth may still level off (a cache filling) */
    APM_DOUBT_STEP,     /* the rise may be a one-off step */
};

/* Returns "", "evidence", "warm-up" or "step". */
const char *apm_analysis_doubt_name(enum apm_doubt d);

struct apm_verdict {
    enum apm_class cls;
    double confidence;    /* 0..1, confidence in cls */
    double rate;          /* growth of the floor, bytes per second (0 without a trend) */
    bool alert;           /* a leak alert is active now */
    bool has_forecast;    /* forecast_* are valid: a leak trend and a known limit */
    double forecast_t;    /* series time at which the limit is reached, most likely */
    double forecast_lo_t; /* earliest plausible time (fastest plausible growth) */
    double forecast_hi_t; /* latest plausible time; INFINITY when growth may be nil */
    double limit;         /* the last known limit, bytes; 0 when unknown */
    double t_last;        /* time of the last sample */
    size_t samples;       /* samples accepted so far */
    /*
     * Growth under way (cls growing or leak): the series time the growth
     * began, and whether the evidence for a steady rate is strong (then rate
     * and the forecast are trusted for the exhaustion rule whatever the
     * class). NAN growth_start_t when nothing grows.
     */
    double growth_start_t;
    bool steady;
    /* Why no verdict yet (cls growing), and the series time it can be given by (NAN: unknown). */
    enum apm_doubt doubt;
    double doubt_until_t;
};

struct apm_analysis;

/*
 * Creates an analyzer. cfg is borrowed (copied); NULL means defaults.
 * Returns 0 and *out owned (free with apm_analysis_free), -EINVAL on a bad
 * configuration or -ENOMEM.
 */
int apm_analysis_new(const struct apm_analysis_config *cfg, struct apm_analysis **out);

/* Frees a. Accepts NULL. */
void apm_analysis_free(struct apm_analysis *a);

/*
 * Adds one sample: t_s seconds on any fixed origin, value in bytes, limit in
 * bytes (0 = unknown; the last non-zero limit is kept). A timestamp earlier
 * than the previous one (jitter) is treated as equal to it. Returns 0, or
 * -EINVAL for a non-finite or negative value or time (the sample is ignored).
 */
int apm_analysis_add(struct apm_analysis *a, double t_s, double value, double limit);

/*
 * The built-in exhaustion condition, shared by the collector's exhaustion
 * rule and apm-cli analyze: a forecast whose earliest plausible time lies
 * within horizon_s of the last sample, from a trusted rate (steady, or a
 * leak verdict). Thread: any.
 */
bool apm_verdict_exhausts_within(const struct apm_verdict *v, double horizon_s);

/*
 * The defaults of the built-in rules (server/alerts): `leak` fires on class
 * leak with at least APM_LEAK_RULE_CONFIDENCE, `exhaustion` when
 * apm_verdict_exhausts_within(v, APM_EXHAUSTION_RULE_HORIZON_S).
 */
#define APM_LEAK_RULE_CONFIDENCE 0.6
#define APM_EXHAUSTION_RULE_HORIZON_S (6 * 3600.0)

/*
 * The built-in rule the verdict raises at their defaults: "leak" (checked
 * first), "exhaustion", or NULL for none. apm-cli analyze reports the first
 * one it sees as t_alert. Thread: any.
 */
const char *apm_verdict_builtin_alert(const struct apm_verdict *v);

/* Writes the current verdict to *out. Returns 0, or -EINVAL when an argument is NULL. */
int apm_analysis_verdict(const struct apm_analysis *a, struct apm_verdict *out);

#endif
