#ifndef APM_ALERT_TEXT_H
#define APM_ALERT_TEXT_H

/*
 * What an alert says: the one sentence a person can act on ("`worker` on
 * `web-3` leaks ~38 MiB/h, will hit its 2.0 GiB cgroup limit in 5h 10m
 * (3h 40m - 7h 30m); top suspect `app/cache.py:88` +31 MiB/h"), its forecast
 * and suspect lines, and the alert as a JSON object. Pure functions of the
 * alert; any thread. Sizes and rates read as common/base/units.h writes them.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "server/alerts/alerts.h"

/* Writes the sentence into buf (size bytes, always terminated). Returns buf. */
char *apm_alert_text_summary(const struct apm_alert *a, char *buf, size_t size);

/*
 * The forecast line ("2.0 GiB cgroup limit in 5h 10m (3h 40m - 7h 30m)", or
 * "no forecast: ..."), measured from now_s (Unix seconds). Returns buf.
 */
char *apm_alert_text_forecast(const struct apm_alert *a, double now_s, char *buf, size_t size);

/* The suspect line ("app/cache.py:88 +31 MiB/h", or "none yet"). Returns buf. */
char *apm_alert_text_suspect(const struct apm_alert *a, char *buf, size_t size);

/*
 * The alert as the API's JSON object (docs/api.md, GET /api/v1/alerts).
 * Returns owned (json_decref) or NULL when out of memory. now_ms decides
 * "acked".
 */
json_t *apm_alert_text_json(const struct apm_alert *a, int64_t now_ms);

#endif
