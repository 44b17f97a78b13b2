#ifndef APM_ALERT_FEED_H
#define APM_ALERT_FEED_H

/*
 * The collector's alerting, assembled: takes the alert configuration the
 * collector read (server/alerts/alert_rules.h), starts delivery
 * (server/alerts/notify.h) and the engine (server/alerts/alerts.h), turns
 * each analysis verdict into an engine input, swaps in new rules when the
 * collector reloads its config (SIGHUP) and reports counters for
 * /api/v1/status.
 */
#include "common/base/counters.h"
#include "server/alerts/alert_rules.h"
#include "server/alerts/alerts.h"
#include "server/store/store.h"
#include "server/analysis/analyzer.h"
#include "server/store/store_verdict.h"

struct apm_alert_feed;

/*
 * Starts delivery and the engine over store (borrowed) with the rules and
 * targets of ac (a finished config: apm_alert_config_finish; takes ownership
 * in every case). http is the API address for links. Returns 0 and *out
 * owned (free with apm_alert_feed_free) or a negative code after logging
 * why. Loop thread.
 */
int apm_alert_feed_new(struct apm_store *store, struct apm_alert_config *ac, const char *http,
                       struct apm_alert_feed **out);

/* Stops the engine (persisting) and delivery. Accepts NULL. */
void apm_alert_feed_free(struct apm_alert_feed *f);

/*
 * Replaces the rules and targets with those of ac (a finished config; takes
 * ownership). Returns 0 or the error of the new targets (the rules are
 * replaced anyway). Loop thread (SIGHUP).
 */
int apm_alert_feed_reload(struct apm_alert_feed *f, struct apm_alert_config *ac);

/* The engine, for the API routes. */
struct apm_alerts *apm_alert_feed_engine(struct apm_alert_feed *f);

/* An apm_analyzer_verdict_fn (ctx = the feed): judges one verdict. Analyzer's thread. */
void apm_alert_feed_verdict(void *ctx, const struct apm_analyzer_verdict *msg);

/* Adds the "alerts" and "notify" counters to r. */
int apm_alert_feed_add_counters(struct apm_alert_feed *f, struct apm_counters *r);

#endif
