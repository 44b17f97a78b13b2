#ifndef APM_REMOTE_WRITE_ENCODE_H
#define APM_REMOTE_WRITE_ENCODE_H

/*
 * What remote-write puts on the wire (docs/architecture.md, "Remote-write"):
 * series named and labelled as GET /metrics names them (common/wire/prom.h), and
 * the body of a remote-write 1.0 POST. Pure functions; any thread.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/analysis/model.h"
#include "common/wire/prom.h"
#include "server/store/store_verdict.h"

/* Most labels a series gets: __name__, class (apm_verdict_info), host, name, pid, process. */
#define APM_RW_LABELS_MAX (2 + APM_PROM_PROCESS_NLABELS)

/* One series of a request, for apm_rw_encode. */
struct apm_rw_series {
    struct apm_prom_label labels[APM_RW_LABELS_MAX];
    size_t nlabels;
    const int64_t *t_ms;
    const int64_t *value;
    const double *fvalue; /* used instead of value when set */
    size_t n;
};

/*
 * Fills s->labels with a stored series' labels as GET /metrics gives them
 * (common/wire/prom.h), __name__ first and sorted by name, as remote-write wants
 * them; a label whose value is empty is left out (to Prometheus it is no
 * label). process_id "" (or a host metric) makes a host series: __name__ and
 * host. The values point into the arguments and *pl. Returns the count, 0 for
 * a metric not exported.
 */
size_t apm_rw_series_labels(struct apm_rw_series *s, struct apm_prom_process_labels *pl,
                            enum apm_metric m, const char *host, const char *process_id,
                            const char *name, int32_t pid);

/*
 * Encodes a WriteRequest of n series (prompb, proto/prompb.proto) and
 * compresses it with snappy's block format, the body of a remote-write POST.
 * Returns 0 and *out (malloc'd, *len bytes), or -ENOMEM.
 */
int apm_rw_encode(const struct apm_rw_series *series, size_t n, uint8_t **out, size_t *len);

/* Series one verdict gives at most: info, confidence, rate, limit, 3 times to exhaustion. */
#define APM_RW_VERDICT_FAMILIES (1u + APM_PROM_VERDICT_NFAMILIES)

/*
 * The verdict gauges of one process, as GET /metrics gives them:
 * apm_verdict_info (1, with class), apm_verdict_confidence,
 * apm_growth_rate_bytes_per_second, apm_memory_limit_bytes (when known) and
 * apm_time_to_exhaustion{,_lower,_upper}_seconds from now_s (with a
 * forecast). Fills s and val (APM_RW_VERDICT_FAMILIES entries each; s's
 * values point into val and *pl, its labels into r) and returns how many;
 * the caller sets each t_ms.
 */
size_t apm_rw_verdict_series(const struct apm_verdict_record *r, double now_s,
                             struct apm_prom_process_labels *pl, struct apm_rw_series *s,
                             double *val);

#endif
