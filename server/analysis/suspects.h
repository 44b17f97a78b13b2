#ifndef APM_SUSPECTS_H
#define APM_SUSPECTS_H

/*
 * What the probe's data says about a growing process (PRODUCT.md, point 5):
 * the allocation sites whose growth tracks the process's growth, ranked by
 * rate, and whether Python's traced memory grows with RSS at all (if it does
 * not, the growth is native code or fragmentation). Both come from the
 * stored probe series over one recent window: the site series ranked by
 * server/analysis/sites.h, and the process's traced series (APM_METRIC_TRACED).
 * The forecasts endpoint and the alert feed share this one judgement.
 *
 * Thread: any (store reads only). A call reads every site series of the
 * process in the window: callers on a hot path cache the answer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/store/store.h"

#define APM_SUSPECTS_MAX 5u
#define APM_SUSPECT_SITE_MAX 256u
/*
 * RSS growth counts as native when traced memory grows by less than this
 * share of it (the `native` rule's own `native-ratio` is separate).
 */
#define APM_SUSPECTS_NATIVE_RATIO 0.25
/* A site tracks the process when it grows at least this share of the process's rate. */
#define APM_SUSPECTS_MIN_SHARE 0.02

struct apm_suspect {
    char site[APM_SUSPECT_SITE_MAX]; /* "file:line" (or a traceback key) */
    double rate;                     /* bytes per second over the window */
    int64_t size;                    /* bytes at the end of the window */
    int64_t growth;                  /* bytes over the window */
    double rate_err;                 /* standard error of rate when sampled; 0: exact */
    bool line; /* grew through every part of the window (three points or more, each half up) */
};

struct apm_suspects {
    struct apm_suspect top[APM_SUSPECTS_MAX]; /* fastest first */
    size_t n;
    bool has_traced;    /* the probe reported traced memory in the window */
    double traced_rate; /* its growth, bytes per second; 0 without has_traced */
};

/*
 * The window looked at for a process sampled every interval_s seconds (0 =
 * unknown): 60 intervals, at least 10 minutes and at most 6 hours; an hour
 * when the interval is unknown.
 */
double apm_suspects_window_s(double interval_s);

/*
 * Fills *out for process_id over [to_ms - window_s, to_ms]. rate is the
 * process's growth (bytes per second, from the analysis); when positive, a
 * site must grow at APM_SUSPECTS_MIN_SHARE of it or more, and steadily
 * (in both halves of the window), to be a suspect. Returns 0 (possibly with
 * no suspect and no traced data) or a negative code (*out is then empty).
 */
int apm_suspects_find(struct apm_store *s, const char *process_id, int64_t to_ms, double window_s,
                      double rate, struct apm_suspects *out);

/*
 * The native-or-Python verdict: 1 when RSS grows (rate > 0) while traced
 * memory grows by less than APM_SUSPECTS_NATIVE_RATIO of it, 0 when traced
 * memory grows with it, -1 when it cannot be told (no traced data, no growth).
 */
int apm_suspects_native(const struct apm_suspects *sus, double rate);

#endif
