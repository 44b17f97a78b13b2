#ifndef APM_METRICS_H
#define APM_METRICS_H

/*
 * GET /metrics: the collector's state in the Prometheus text exposition
 * format 0.0.4 (docs/api.md lists the families). Names and labels come from
 * common/wire/prom.h, the one place remote-write takes them from too.
 *
 *   - per live process (a sample within process-grace): the latest value of
 *     each stored memory metric, the verdict (an info-style gauge with the
 *     class as a label, and its confidence), the growth rate, the time to
 *     exhaustion with its band, and whether an alert fires for it;
 *   - per live host: the host's memory and when its agent last reported;
 *   - per live agent: the health counters it reported last (apm_agent_<name>);
 *   - every counter of the registry (common/base/counters.h), histograms included,
 *     without a list here.
 *
 * What is read: the series index and the stored verdicts, each in one short
 * read transaction (memory-mapped, no disk write), and the alert engine's
 * firing list under its mutex. Loop thread.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/base/counters.h"
#include "server/alerts/alerts.h"
#include "server/ingest/agent_health.h"
#include "server/net/http_reader.h"
#include "server/store/store.h"

struct apm_metrics_config {
    struct apm_store *store;             /* borrowed */
    const struct apm_counters *counters; /* borrowed; may be NULL */
    struct apm_alerts *alerts;           /* borrowed; may be NULL (no apm_alert_firing) */
    int64_t process_grace_ms;            /* a process is live while it reported this recently */
    struct apm_agent_health *health;     /* borrowed; may be NULL (no apm_agent_* counters) */
};

/*
 * Renders the whole exposition at now_ms (Unix ms) into *text (owned, free
 * with free(); NUL-terminated) and *len. Returns 0, -ENOMEM, or the store's
 * code when the series or verdicts cannot be read (then nothing is kept).
 */
int apm_metrics_render(const struct apm_metrics_config *cfg, int64_t now_ms, char **text,
                       size_t *len);

/*
 * An apm_api_raw_fn for GET /metrics: ctx is a struct apm_metrics_config
 * (borrowed; outlives the API). Answers 200 with the exposition, 400 for a
 * query string, 500 with the reason when it cannot be rendered.
 */
int apm_metrics_handle(void *ctx, const struct apm_http_request *req, char **body, size_t *len,
                       const char **content_type);

#endif
