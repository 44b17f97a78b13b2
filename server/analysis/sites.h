#ifndef APM_SITES_H
#define APM_SITES_H

/*
 * Allocation sites of a process ranked by growth over a window, from the
 * stored site series (server/store/store_probe.c). A site's size at the start is
 * its last sample at or before from (else its first sample in the window),
 * at the end its last sample at or before to; only sites with a sample after
 * from take part. The order is Snapshot.compare_to's: |size growth|, then
 * size, then |count growth|, then count, then the site (file, then line),
 * largest first; so the window between two snapshots ranks exactly like
 * compare_to on them.
 *
 * Thread: any (store reads only).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/store/store.h"

#define APM_SITES_POINTS 24u

struct apm_site_rank {
    char *site; /* "file:line" (or a traceback key); owned */
    int64_t t_start, t_end;
    int64_t size_start, size_end, size_growth;
    int64_t count_start, count_end, count_growth;
    double rate; /* bytes per second between t_start and t_end; 0 when they are equal */
    /* Sampled sites (the probe's sampled mode) are estimates: standard errors of the
     * growth and of the rate; both 0 for exact (tracemalloc) sites. */
    bool sampled;
    int64_t growth_err;
    double rate_err;
    unsigned npoints;
    int64_t points_t[APM_SITES_POINTS]; /* sizes through the window, for sparklines */
    int64_t points_v[APM_SITES_POINTS];
};

/*
 * Ranks the sites of process_id over [from_ms, to_ms] and returns the first
 * limit in *out (owned, free with apm_sites_free) and their number in *n.
 * Returns 0 (possibly with none) or a negative code.
 */
int apm_sites_rank(struct apm_store *s, const char *process_id, int64_t from_ms, int64_t to_ms,
                   size_t limit, struct apm_site_rank **out, size_t *n);

void apm_sites_free(struct apm_site_rank *r, size_t n);

#endif
