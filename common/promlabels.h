#ifndef APM_PROMLABELS_H
#define APM_PROMLABELS_H

/*
 * Prometheus names and labels of the stored series, in one place for every
 * exporter (remote-write out; GET /metrics is to use the same). A process
 * series is apm_process_<metric>_<unit> with labels host, name, pid and
 * process (the id "host:pid:start_ms"); a host series apm_host_<metric>_<unit>
 * with host. Labels come sorted by name, __name__ first, as remote-write
 * requires.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/model.h"

struct apm_prom_label {
    const char *name;
    const char *value;
};

/* Most labels a series gets (__name__, host, name, pid, process). */
#define APM_PROM_LABELS_MAX 5

/*
 * The metric name of a stored metric ("apm_process_rss_bytes",
 * "apm_host_mem_total_bytes"), or NULL for metrics not exported (per-site
 * and gc series: their cardinality is the probe's, not the host's).
 */
const char *apm_prom_metric_name(enum apm_metric m);

/*
 * Fills out (APM_PROM_LABELS_MAX entries) with the labels of one series,
 * sorted, pointing at the arguments (and at pidbuf, 16 bytes, for the pid).
 * process_id "" (or NULL) makes a host series. Returns the count, or 0 when
 * the metric is not exported.
 */
size_t apm_prom_series_labels(struct apm_prom_label *out, enum apm_metric m, const char *host,
                              const char *process_id, const char *name, int32_t pid,
                              char pidbuf[16]);

#endif
