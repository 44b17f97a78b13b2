#ifndef APM_ALERT_FEED_H
#define APM_ALERT_FEED_H

/*
 * The collector's alerting, assembled: reads the alert sections of the
 * collector's config (server/alert_rules.h), starts delivery
 * (server/notify.h) and the engine (server/alerts.h), turns each analysis
 * verdict into an engine input, reloads the rules on SIGHUP and reports
 * counters for /api/v1/status.
 */
#include <jansson.h>

#include "common/config.h"
#include "server/alerts/alerts.h"
#include "server/store/store.h"
#include "server/store/store_verdict.h"

struct apm_alert_feed;

/*
 * Reads the alert sections of config_path (NULL or "" = none: the built-in
 * rules) whose other sections opts describes, then starts delivery and the
 * engine over store (borrowed). http is the API address for links. Returns 0
 * and *out owned (free with apm_alert_feed_free) or a negative code after
 * logging why. Loop thread.
 */
int apm_alert_feed_new(struct apm_store *store, const char *config_path, const struct apm_opt *opts,
                       const char *http, struct apm_alert_feed **out);

/* Stops the engine (persisting) and delivery. Accepts NULL. */
void apm_alert_feed_free(struct apm_alert_feed *f);

/*
 * Re-reads the rules and targets; on any error keeps the current ones and
 * logs the error ("FILE:LINE: key 'K' in [S]: ..."). Returns 0 or the error.
 * Loop thread (SIGHUP).
 */
int apm_alert_feed_reload(struct apm_alert_feed *f);

/* The engine, for the API routes. */
struct apm_alerts *apm_alert_feed_engine(struct apm_alert_feed *f);

/* An apm_analyzer_verdict_fn (ctx = the feed): judges one verdict. Analyzer's thread. */
void apm_alert_feed_verdict(void *ctx, const struct apm_verdict_record *rec);

/* Adds "alerts" and "notify" counters to the status object. Any thread. */
void apm_alert_feed_status(struct apm_alert_feed *f, json_t *obj);

#endif
