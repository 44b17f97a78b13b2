#ifndef APM_PROM_H
#define APM_PROM_H

/*
 * Prometheus names, labels and the text exposition format (0.0.4), in one
 * place, so that every way out speaks the same series: GET /metrics
 * (server/api/metrics.c) and remote-write build their metric names and
 * label sets here and nowhere else.
 *
 *   - A stored metric is apm_process_<metric>_<unit> for a process's series
 *     (apm_process_rss_bytes) and apm_host_<metric>_<unit> for a host's
 *     (apm_host_mem_available_bytes); apm_prom_metric_name.
 *   - A registry counter is apm_<module>_<name>[_<unit>][_total]
 *     (apm_ingest_samples_total, apm_store_map_size_bytes);
 *     apm_prom_counter_name.
 *   - A process's series carry host, name, pid and process (the id), in
 *     that order: sorted by label name, as remote-write wants them;
 *     apm_prom_process_labels. A host's series carry host only.
 *
 * Label values are the stored strings as they are (already clean UTF-8,
 * common/base/text.h); the text writer escapes backslash, double quote and
 * newline as the format asks, a protobuf writer needs no escaping.
 * Pure functions of their input; any thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/analysis/analysis.h"
#include "common/base/counters.h"
#include "common/analysis/model.h"

/* The Content-Type of the text exposition format. */
#define APM_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * The verdict families of a process (GET /metrics; remote-write sends the
 * same): the info gauge carries the class as a label ("class", sorted before
 * "host"), the others the process labels only. The time-to-exhaustion ones are
 * seconds from the sample's timestamp (the scrape's for /metrics) to the
 * limit, and absent without a forecast.
 */
#define APM_PROM_VERDICT_INFO "apm_verdict_info"
#define APM_PROM_VERDICT_CONFIDENCE "apm_verdict_confidence"
#define APM_PROM_GROWTH_RATE "apm_growth_rate_bytes_per_second"
#define APM_PROM_MEMORY_LIMIT "apm_memory_limit_bytes"
#define APM_PROM_TTE "apm_time_to_exhaustion_seconds"
#define APM_PROM_TTE_LOWER "apm_time_to_exhaustion_lower_seconds"
#define APM_PROM_TTE_UPPER "apm_time_to_exhaustion_upper_seconds"
#define APM_PROM_ALERT_FIRING "apm_alert_firing"

/*
 * The per-process verdict families after APM_PROM_VERDICT_INFO, in the order
 * GET /metrics and remote-write both carry them, with their help texts.
 */
#define APM_PROM_VERDICT_NFAMILIES 6u
struct apm_prom_verdict_family {
    const char *name;
    const char *help;
};
extern const struct apm_prom_verdict_family apm_prom_verdict_families[APM_PROM_VERDICT_NFAMILIES];

/*
 * Sets *value to family k's sample for verdict v at Unix time now_s (times to
 * exhaustion in seconds from now, never below 0; +Inf stays +Inf), or returns
 * false when the family has no sample for v (no limit known, no forecast).
 */
bool apm_prom_verdict_value(const struct apm_verdict *v, double now_s, size_t k, double *value);

/* One label: both strings borrowed. */
struct apm_prom_label {
    const char *name;
    const char *value;
};

/* How many labels a process's series carry. */
#define APM_PROM_PROCESS_NLABELS 4u

/* The labels of a process's series, with the room for the pid's text. */
struct apm_prom_process_labels {
    struct apm_prom_label l[APM_PROM_PROCESS_NLABELS];
    char pid[12];
};

/*
 * Fills out with host, name, pid, process (sorted by label name). host,
 * process_id and name are borrowed (NULL is taken as "") and must outlive
 * out's use. Returns the number of labels (APM_PROM_PROCESS_NLABELS).
 */
size_t apm_prom_process_labels(struct apm_prom_process_labels *out, const char *host,
                               const char *process_id, const char *name, int32_t pid);

/*
 * The Prometheus name of a stored metric (a literal: "apm_process_rss_bytes",
 * "apm_host_mem_total_bytes", "apm_process_gc_collections"), or NULL for
 * none and for the per-site metrics (site_size, site_count, site_var),
 * which are not exported: a site is not a bounded label.
 */
const char *apm_prom_metric_name(enum apm_metric m);

/*
 * Writes apm_<module>_<name>[_<unit>][_total] into buf (size bytes): the
 * unit is left out when the name already ends with it, _total is added for
 * APM_COUNTER_TOTAL, and "microseconds" and "milliseconds" become "seconds"
 * (see apm_prom_counter_scale). Returns 0, or APM_E_LIMIT when it does not fit, or
 * -EINVAL when the result is not a valid metric name.
 */
int apm_prom_counter_name(char *buf, size_t size, const char *module, const struct apm_counter *c);

/*
 * What a counter's values are multiplied by to be in its exported unit: the
 * registry may count in "microseconds" or "milliseconds", Prometheus wants
 * base units, so those are exported as seconds (named _seconds). 1 for others.
 */
double apm_prom_counter_scale(const struct apm_counter *c);

/* True when s is a valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. */
bool apm_prom_name_valid(const char *s);

/* True when s is a valid label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__". */
bool apm_prom_label_name_valid(const char *s);

/* ---- the text exposition writer (writes to a FILE, e.g. open_memstream) ---- */

/* Writes s escaped as a label value: backslash, double quote and newline. NULL is "". */
void apm_prom_write_label_value(FILE *f, const char *s);

/*
 * Writes the "# HELP name help" and "# TYPE name type" lines of a family.
 * type is "gauge", "counter" or "histogram"; help is escaped (backslash, newline).
 */
void apm_prom_family(FILE *f, const char *name, const char *type, const char *help);

/*
 * Writes one sample line: name{l...} value. l may be NULL when n is 0.
 * Values are written exactly when they are whole numbers below 2^53, else
 * in the fewest digits (15 to 17) that read back as the same double; NaN and
 * infinities as the format spells them.
 */
void apm_prom_sample(FILE *f, const char *name, const struct apm_prom_label *l, size_t n,
                     double value);

/*
 * Writes a histogram's samples (no HELP/TYPE): name_bucket with le for each
 * bound and "+Inf" (cumulative), name_sum in seconds and name_count, each
 * with the labels l (n of them, at most 7).
 */
void apm_prom_histogram(FILE *f, const char *name, const struct apm_prom_label *l, size_t n,
                        const struct apm_histogram *h);

#endif
