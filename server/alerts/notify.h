#ifndef APM_NOTIFY_H
#define APM_NOTIFY_H

/*
 * Alert delivery, off the loop thread: a generic JSON webhook, Alertmanager's
 * v2 API (POST /api/v2/alerts) and exec hooks (fork + execve of a program
 * with an explicit argv and environment, the alert as JSON on stdin; never a
 * shell, since process names come from the monitored hosts and may hold
 * "$(...)", ";" or newlines).
 *
 * One delivery thread owns a bounded queue. Each (notification, target) is
 * tried until it succeeds, with exponential backoff, or until it runs out of
 * attempts; when every target of a notification is done, the done callback
 * says so (that is what the alert engine persists as "notified"). A full
 * queue refuses new notifications (counted); ingest is never slowed.
 *
 * Threads: apm_notify_* may be called on any thread; the done callback runs
 * on the delivery thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/alerts/alerts.h"

enum apm_notify_type { APM_NOTIFY_WEBHOOK = 0, APM_NOTIFY_ALERTMANAGER, APM_NOTIFY_EXEC };

#define APM_NOTIFY_URL_MAX 1024u
#define APM_NOTIFY_MAX_TARGETS 16u
#define APM_NOTIFY_MAX_ARGS 8u
/* Notifications (times targets) waiting or being retried. */
#define APM_NOTIFY_QUEUE_MAX 1024u

/* A [notify NAME] section. */
struct apm_notify_target {
    char name[APM_ALERT_NAME_MAX];
    enum apm_notify_type type;
    char url[APM_NOTIFY_URL_MAX];        /* webhook: the URL; alertmanager: its base URL */
    char command[APM_NOTIFY_URL_MAX];    /* exec: absolute path of the program */
    char args[APM_NOTIFY_MAX_ARGS][256]; /* exec: extra arguments after the event */
    unsigned nargs;
    enum apm_alert_severity min_severity; /* notify only alerts at least this severe */
    int64_t timeout_ms;                   /* per attempt */
    unsigned max_attempts;
    int64_t backoff_ms; /* first retry delay; doubles up to backoff_max_ms */
    int64_t backoff_max_ms;
};

/* Called when every target has taken or given up on the notification of alert id in state st. */
typedef void (*apm_notify_done_fn)(void *ctx, uint64_t id, enum apm_alert_state st);

struct apm_notify_options {
    const struct apm_notify_target *targets; /* borrowed; copied */
    size_t ntargets;
    const char *generator_url; /* the collector's HTTP base, for generatorURL; may be NULL */
    int64_t resend_ms;         /* Alertmanager refresh period: endsAt = now + 4 periods */
};

struct apm_notify;

/*
 * Starts the delivery thread. opt is copied. Returns 0 and *out owned (free
 * with apm_notify_free) or a negative code.
 */
int apm_notify_new(const struct apm_notify_options *opt, struct apm_notify **out);

/*
 * Stops the thread: what is being sent finishes, what waits is dropped (the
 * engine re-sends what it did not hear back about after a restart). Accepts
 * NULL.
 */
void apm_notify_free(struct apm_notify *n);

/* Sets the done callback (before the first send). */
void apm_notify_set_done(struct apm_notify *n, apm_notify_done_fn fn, void *ctx);

/* Replaces the targets (a SIGHUP reload); queued notifications keep their old targets. */
int apm_notify_set_targets(struct apm_notify *n, const struct apm_notify_target *targets,
                           size_t ntargets);

/*
 * Queues the notification of alert a (copied) turning firing or resolved (st)
 * to every target that takes its severity. Returns 0 (the done callback will
 * follow, on the delivery thread), 1 when no target takes it (done now, no
 * callback), APM_E_FULL when the queue is full, or -ENOMEM.
 */
int apm_notify_send(struct apm_notify *n, const struct apm_alert *a, enum apm_alert_state st,
                    int64_t now_ms);

/*
 * Re-sends a firing alert to the Alertmanager targets only, with a fresh
 * endsAt; no done callback. Returns 0, APM_E_FULL or -ENOMEM.
 */
int apm_notify_refresh(struct apm_notify *n, const struct apm_alert *a, int64_t now_ms);

struct apm_notify_stats {
    uint64_t queued;    /* waiting now */
    uint64_t delivered; /* attempts that succeeded */
    uint64_t failures;  /* attempts that failed (each retry counts) */
    uint64_t gave_up;   /* deliveries abandoned after their last attempt */
    uint64_t dropped;   /* refused because the queue was full */
};

void apm_notify_get_stats(struct apm_notify *n, struct apm_notify_stats *out);

/* Adds the "notify" counters to r. Their read runs on any thread. */
int apm_notify_add_counters(struct apm_notify *n, struct apm_counters *r);

/* ---- payloads and the exec hook (also used by the tests) ---- */

/*
 * The JSON a webhook or exec hook receives: {"event": "firing"|"resolved",
 * "alert": {...the API's alert object...}}. Returns owned (free()) or NULL.
 */
char *apm_notify_webhook_body(const struct apm_alert *a, enum apm_alert_state st, int64_t now_ms);

/*
 * The Alertmanager v2 body: a one-element array with labels, annotations,
 * startsAt, endsAt (now + ends_in_ms while firing, now on resolution) and
 * generatorURL. Returns owned (free()) or NULL.
 */
char *apm_notify_alertmanager_body(const struct apm_alert *a, enum apm_alert_state st,
                                   int64_t now_ms, int64_t ends_in_ms, const char *generator_url);

/*
 * Runs t->command with argv {command, event, args...} and an environment of
 * APM_ALERT_* variables only (plus PATH=/usr/bin:/bin), writes body to its
 * stdin and waits up to t->timeout_ms (then kills it). Returns 0 when it
 * exits 0, else a negative code. Any thread.
 */
int apm_notify_exec(const struct apm_notify_target *t, const struct apm_alert *a,
                    enum apm_alert_state st, const char *body, int64_t now_ms);

#endif
