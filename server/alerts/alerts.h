#ifndef APM_ALERTS_H
#define APM_ALERTS_H

/*
 * Alert rules and the alert lifecycle (docs/alerts.md). The analysis hands
 * the engine one plain input per judged series (apm_alerts_observe); the
 * engine matches it against the rules and moves one alert per (rule, series)
 * episode through pending -> firing -> resolved, with hysteresis: a rule's
 * condition must hold for `for` before an alert fires, and be clearly off
 * (a margin below the firing level) for `resolve-for` before it resolves.
 *
 * The engine owns one thread. It persists every change in the store's
 * "alerts" database in one transaction per round (so a restart, kill -9
 * included, keeps firing alerts and remembers what was notified), then hands
 * notifications to the delivery module (server/alerts/notify.h). Nothing here blocks
 * the caller for longer than a mutex hold: observe, list and ack are safe
 * on any thread, the loop thread included.
 */
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/analysis/analysis.h"
#include "common/base/counters.h"
#include "server/store/store.h"

#define APM_ALERT_NAME_MAX 64u
#define APM_ALERT_STR_MAX 256u
#define APM_ALERT_PROCESS_MAX 320u
#define APM_ALERT_LABELS_MAX 512u
#define APM_ALERT_SUMMARY_MAX 640u
#define APM_ALERT_COMMENT_MAX 512u
/* Most rules, and most alerts that are not resolved at once; more are refused and counted. */
#define APM_ALERT_MAX_RULES 64u
#define APM_ALERT_MAX_ACTIVE 10000u
/* Resolved alerts kept for listing (the oldest are forgotten first). */
#define APM_ALERT_MAX_RESOLVED 1000u
/* Silences held (expired ones included) unless [alerts] silences-max says otherwise. */
#define APM_ALERT_SILENCES_MAX 1000u

enum apm_alert_kind {
    APM_ALERT_LEAK = 0,   /* class leak with confidence >= c, held for `for` */
    APM_ALERT_EXHAUSTION, /* the forecast's earliest time to the limit is within `horizon` */
    APM_ALERT_THRESHOLD,  /* memory (bytes, or % of the limit) above x for `for` */
    APM_ALERT_BLOAT,      /* a step of more than x% within `within` */
    APM_ALERT_NATIVE,     /* RSS leaks while Python's traced memory does not grow */
};

enum apm_alert_severity { APM_SEVERITY_WARNING = 0, APM_SEVERITY_CRITICAL };

enum apm_alert_state { APM_ALERT_PENDING = 0, APM_ALERT_FIRING, APM_ALERT_RESOLVED };

/* Names used in config, JSON and the environment of exec hooks. */
const char *apm_alert_kind_name(enum apm_alert_kind k);
const char *apm_alert_severity_name(enum apm_alert_severity s);
const char *apm_alert_state_name(enum apm_alert_state s);

/* One rule, as parsed from a [rule NAME] section (server/alerts/alert_rules.c). */
struct apm_alert_rule {
    char name[APM_ALERT_NAME_MAX];
    enum apm_alert_kind kind;
    enum apm_alert_severity severity;
    char metric[16];        /* series metric the rule judges; "" = any */
    int64_t for_ms;         /* the condition holds this long before firing */
    int64_t resolve_for_ms; /* the condition is off this long before resolving */
    double confidence;      /* leak, native: least confidence (0..1) */
    int64_t horizon_ms;     /* exhaustion */
    double above;           /* threshold: bytes, or a fraction of the limit (above_pct) */
    bool above_pct;
    double step;         /* bloat: least relative step (0.3 = 30%) */
    int64_t within_ms;   /* bloat: the step happens within this long */
    double native_ratio; /* native: traced growth below this share of the RSS growth */
    bool has_host, has_process, has_cgroup;
    regex_t host_re, process_re, cgroup_re; /* whole-string POSIX extended regexes */
    char labels[APM_ALERT_LABELS_MAX];      /* "k=v,k=v", validated */
};

/* One judged series, as the analysis sees it now. Every pointer is borrowed for the call. */
struct apm_alert_input {
    uint64_t series_id;
    const char *metric; /* "rss", "pss", ... */
    const char *host;
    const char *process_id; /* "host:pid:start_ms"; "" for a host series */
    const char *process_name;
    const char *cgroup; /* NULL or "" when unknown */
    int32_t pid;
    struct apm_verdict verdict; /* forecast and sample times in Unix seconds */
    double value;               /* the last sample, bytes */
    const char *limit_source;   /* "cgroup", "configured", "host"; NULL when unknown */
    double interval_s;          /* the sampling interval; 0 = unknown */
    bool has_traced;            /* the probe reported traced memory for the process */
    double traced_rate;         /* growth of the traced memory, bytes per second */
    const char *suspect_site;   /* top suspect allocation site ("app/cache.py:88"); NULL = none */
    double suspect_rate;        /* its growth, bytes per second */
    double suspect_rate_err;    /* standard error of that when sampled; 0: exact */
    bool suspect_line;          /* it grew through every part of the probe's window */
    bool restarted_at_limit;    /* the process replaced one of its name and cgroup at its limit */
};

/* An alert as listed, persisted and notified. */
struct apm_alert {
    uint64_t id;
    char rule[APM_ALERT_NAME_MAX];
    enum apm_alert_kind kind;
    enum apm_alert_severity severity;
    enum apm_alert_state state;
    uint64_t series_id;
    char metric[16];
    char host[APM_ALERT_STR_MAX];
    char process_id[APM_ALERT_PROCESS_MAX];
    char process_name[APM_ALERT_STR_MAX];
    char cgroup[APM_ALERT_STR_MAX];
    int32_t pid;
    int64_t started_ms;   /* the condition first held (pending since) */
    int64_t fired_ms;     /* 0 until firing */
    int64_t resolved_ms;  /* 0 until resolved */
    int64_t seen_ms;      /* the last observation */
    int64_t off_since_ms; /* the condition has been clearly off since; 0 = it is not */
    double interval_s;
    /* The latest facts, for the sentence and the structured fields. */
    char cls[16];
    double confidence;
    double rate;  /* bytes per second */
    double value; /* bytes */
    double limit; /* bytes; 0 = unknown */
    char limit_source[16];
    bool has_forecast;
    double forecast_t, forecast_lo_t, forecast_hi_t; /* Unix seconds; hi may be INFINITY */
    char suspect[APM_ALERT_STR_MAX];
    double suspect_rate;
    double suspect_rate_err; /* 0: exact (tracemalloc) */
    int native;              /* 1 native or fragmentation, 0 Python heap, -1 unknown */
    bool restarted_at_limit; /* the process replaced one of its name and cgroup at its limit */
    /* How sure (server/analysis/evidence.h), from the latest observation. */
    double growing_for_s; /* how long the growth has run; 0 = unknown */
    char doubt[16];       /* why the analysis gives no verdict yet ("warm-up"); "" = none */
    double doubt_left_s;  /* until it can be given; NAN = unknown */
    double site_share;    /* the top suspect's share of the growth; 0 = unknown */
    char confirmed[24];   /* what confirms the leak (apm_evidence_confirm_name); "" = nothing */
    bool site_steady;     /* the top suspect made the rate of a start-up growth trusted */
    char summary[APM_ALERT_SUMMARY_MAX];
    char labels[APM_ALERT_LABELS_MAX];
    /* Acknowledgement (also silences new episodes of the same rule and series). */
    int64_t ack_until_ms;
    char ack_comment[APM_ALERT_COMMENT_MAX];
    /* What was last notified: APM_ALERT_FIRING, APM_ALERT_RESOLVED, or PENDING for nothing. */
    enum apm_alert_state notified;
    /* The active silence that matches it as of the engine's last look (0 = none); not stored. */
    uint64_t silenced_by;
};

/* Is the alert acknowledged at now_ms? */
bool apm_alert_acked(const struct apm_alert *a, int64_t now_ms);

struct apm_notify;

struct apm_alerts_options {
    struct apm_store *store;   /* borrowed; NULL keeps state in memory only (tests) */
    struct apm_notify *notify; /* takes ownership (freed with the engine); NULL = no delivery */
    int64_t tick_ms;           /* the engine's round; 0 = 1 s */
    int64_t stale_ms;          /* an alert whose series is silent this long resolves; 0 = auto */
    int64_t resend_ms;         /* refresh firing alerts to Alertmanager; 0 = 1 min */
    const char *generator_url; /* the collector's API base, for links; may be NULL */
    size_t silences_max;       /* silences held; 0 = APM_ALERT_SILENCES_MAX */
    int64_t silences_keep_ms;  /* expired silences are kept this long; 0 = 1 day */
    bool manual;               /* no thread: the caller runs apm_alerts_run_once (tests) */
};

struct apm_alerts;

/*
 * Creates the engine, loads the stored alerts and starts its thread (unless
 * manual). opt is copied. Returns 0 and *out owned (free with
 * apm_alerts_free), or a negative code (store failure, -ENOMEM).
 */
int apm_alerts_new(const struct apm_alerts_options *opt, struct apm_alerts **out);

/*
 * Stops the thread after a last round (persisting what changed) and frees
 * the engine and its rules. Accepts NULL.
 */
void apm_alerts_free(struct apm_alerts *e);

/*
 * Replaces the rules with rules[0..n) (takes ownership of the array, which
 * was allocated with malloc, and of the compiled regexes; free with
 * apm_alert_rules_free on failure is then not needed). Alerts of a rule that
 * no longer exists resolve. Any thread.
 */
void apm_alerts_set_rules(struct apm_alerts *e, struct apm_alert_rule *rules, size_t n);

/*
 * Judges one series against every rule. in is borrowed. Any thread (the
 * analyzer's); costs a mutex and the rules, never I/O.
 */
void apm_alerts_observe(struct apm_alerts *e, const struct apm_alert_input *in, int64_t now_ms);

/*
 * One round: ages alerts (pending -> firing after `for`, stale series
 * resolve), persists changes in one transaction and queues notifications.
 * The engine's thread calls it each tick; tests with manual call it
 * themselves. Returns 0 or the store's error (the changes stay to retry).
 */
int apm_alerts_run_once(struct apm_alerts *e, int64_t now_ms);

/*
 * Acknowledges alert id until now_ms + for_ms with a comment (borrowed,
 * truncated to APM_ALERT_COMMENT_MAX - 1). for_ms 0 removes the ack.
 * Returns 0 or APM_E_NOTFOUND. Any thread.
 */
int apm_alerts_ack(struct apm_alerts *e, uint64_t id, int64_t for_ms, const char *comment,
                   int64_t now_ms);

/* Which alerts apm_alerts_list returns. */
enum apm_alert_filter {
    APM_FILTER_ACTIVE = 0,
    APM_FILTER_PENDING,
    APM_FILTER_FIRING,
    APM_FILTER_RESOLVED,
    APM_FILTER_ALL
};

/*
 * Copies the alerts matching filter, newest first, up to max into out
 * (caller's array). Returns how many matched (may exceed max). Any thread.
 */
size_t apm_alerts_list(struct apm_alerts *e, enum apm_alert_filter f, struct apm_alert *out,
                       size_t max);

/* Copies one alert. Returns 0 or APM_E_NOTFOUND. Any thread. */
int apm_alerts_get(struct apm_alerts *e, uint64_t id, struct apm_alert *out);

/*
 * Silences (server/alerts/silence.h). add validates s (apm_silence_validate
 * at now_ms), gives it an id (set in s->id) and marks the alerts it matches
 * at once; it is written to the store with the next round. Returns 0,
 * APM_E_PARSE with the field named in err, APM_E_LIMIT (counted) when
 * silences-max silences are held, or -ENOMEM. expire ends silence id now:
 * 0, 1 when it had already ended, or APM_E_NOTFOUND; the alerts it muted
 * are notified with the next round if they still fire. get copies one (0
 * or APM_E_NOTFOUND); list copies up to max, newest first, and returns how
 * many are held. Any thread.
 */
struct apm_silence;
int apm_alerts_silence_add(struct apm_alerts *e, struct apm_silence *s, int64_t now_ms, char *err,
                           size_t errlen);
int apm_alerts_silence_expire(struct apm_alerts *e, uint64_t id, int64_t now_ms);
int apm_alerts_silence_get(struct apm_alerts *e, uint64_t id, struct apm_silence *out);
size_t apm_alerts_silence_list(struct apm_alerts *e, struct apm_silence *out, size_t max);

struct apm_alerts_stats {
    uint64_t rules;
    uint64_t pending, firing, resolved; /* held now */
    uint64_t fired;                     /* alerts that reached firing since start */
    uint64_t refused;                   /* new alerts refused over APM_ALERT_MAX_ACTIVE */
    uint64_t persist_errors;
    uint64_t notifications; /* firing and resolved notifications handed to delivery */
    uint64_t silenced;      /* alerts (pending or firing) an active silence matches now */
    uint64_t silences_active, silences_pending, silences_expired; /* held now */
    uint64_t silences_refused; /* new silences refused over silences-max */
};

/* Copies the counters. Any thread. */
void apm_alerts_get_stats(struct apm_alerts *e, struct apm_alerts_stats *out);

/* Adds the "alerts" counters to r. Their read runs on any thread. */
int apm_alerts_add_counters(struct apm_alerts *e, struct apm_counters *r);

/*
 * Called by delivery when every target has taken (or given up on) the
 * notification of alert id in state st: recorded and persisted next round.
 * Any thread.
 */
void apm_alerts_notified(struct apm_alerts *e, uint64_t id, enum apm_alert_state st);

#endif
