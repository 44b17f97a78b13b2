#ifndef APM_TIMEUTIL_H
#define APM_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

/* Wall-clock time, Unix milliseconds. */
int64_t apm_now_ms(void);

/* Monotonic time in nanoseconds, for durations. */
uint64_t apm_mono_ns(void);

/*
 * Parses a duration in Go/Prometheus syntax into milliseconds: terms "N<unit>"
 * with units ns, us (or \u00b5s), ms, s, m, h, d, w (7d) and y (365d), summed, each
 * unit smaller than the one before ("1h30m", "1w2d", "500ms"); N may have a
 * fraction ("1.5h"). A bare number alone means seconds ("90"). Rounds to the
 * millisecond. Returns 0, or APM_E_PARSE on anything else (signs, spaces,
 * exponents, "30m1h", "5m5m").
 */
int apm_duration_parse(const char *s, int64_t *out_ms);

/*
 * Rounds half away from zero, like llround, without libm: the agent links
 * nothing else from it, and libm's pages would be a tenth of its footprint.
 * Saturates at LLONG_MIN and LLONG_MAX (a probe's "t" of 1e110 seconds must
 * not be undefined behaviour); NaN gives 0.
 */
long long apm_round_ll(double x);

/*
 * The CLOCK_REALTIME time ns nanoseconds from now, for
 * pthread_cond_timedwait. Any thread.
 */
struct timespec apm_realtime_after_ns(uint64_t ns);

/*
 * Retry delay with exponential backoff and full jitter: uniform in
 * [0, min(max_ms, min_ms * 2^attempt)] (attempt 0 = the first retry).
 * Random bits from getrandom, else the clock. Any thread.
 */
uint64_t apm_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms);

/* Formats a duration in seconds as "5h 10m", "42s", "3d 4h". Returns buf. */
char *apm_duration_format(double seconds, char *buf, unsigned size);

#endif
