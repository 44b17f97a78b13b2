#include "common/base/timeutil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/base/error.h"

int64_t apm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t apm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long long apm_round_ll(double x)
{
    /* 9223372036854775808.0 is 2^63, the first double past LLONG_MAX. */
    if (x != x)
        return 0;
    if (x >= 9223372036854775808.0)
        return LLONG_MAX;
    if (x <= -9223372036854775808.0)
        return LLONG_MIN;
    return x < 0 ? -(long long)(-x + 0.5) : (long long)(x + 0.5);
}

/* Units of a duration term, longest spelling first so "ms" is not read as "m". */
static const struct {
    const char *name;
    double ms;
} duration_units[] = {
    {"ns", 1e-6},   {"us", 1e-3},     {"\xc2\xb5s", 1e-3}, {"ms", 1.0},        {"s", 1000.0},
    {"m", 60000.0}, {"h", 3600000.0}, {"d", 86400000.0},   {"w", 604800000.0}, {"y", 31536000000.0},
};
#define NDURATION_UNITS (sizeof(duration_units) / sizeof(duration_units[0]))

int apm_duration_parse(const char *s, int64_t *out_ms)
{
    if (s == NULL || *s == '\0')
        return APM_E_PARSE;
    double ms = 0;
    const char *p = s;
    double last_unit = 0; /* of the previous term: units must decrease ("1h30m", not "30m1h") */
    /* Terms "N<unit>" add up ("1h30m"); a bare number alone means seconds. */
    while (*p != '\0') {
        char *end = NULL;
        /* strtod would take signs, spaces, "inf", "nan" and hex: only digits and '.' start a term.
         */
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return APM_E_PARSE;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v))
            return APM_E_PARSE;
        for (const char *q = p; q < end; q++) {
            if (!((*q >= '0' && *q <= '9') || *q == '.'))
                return APM_E_PARSE;
        }
        if (*end == '\0') {
            if (p != s)
                return APM_E_PARSE;
            ms = v * 1000.0;
            break;
        }
        size_t u = 0;
        while (u < NDURATION_UNITS &&
               strncmp(end, duration_units[u].name, strlen(duration_units[u].name)) != 0)
            u++;
        if (u == NDURATION_UNITS)
            return APM_E_PARSE;
        if (last_unit != 0 && duration_units[u].ms >= last_unit)
            return APM_E_PARSE;
        last_unit = duration_units[u].ms;
        ms += v * duration_units[u].ms;
        p = end + strlen(duration_units[u].name);
    }
    if (ms > 9.0e15)
        return APM_E_PARSE;
    *out_ms = (int64_t)apm_round_ll(ms);
    return 0;
}

char *apm_duration_format(double seconds, char *buf, unsigned size)
{
    if (!isfinite(seconds)) {
        snprintf(buf, size, "-");
        return buf;
    }
    long long s = apm_round_ll(seconds < 0 ? -seconds : seconds);
    const char *sign = seconds < 0 ? "-" : "";
    if (s < 60)
        snprintf(buf, size, "%s%llds", sign, s);
    else if (s < 3600)
        snprintf(buf, size, "%s%lldm %llds", sign, s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%s%lldh %lldm", sign, s / 3600, (s % 3600) / 60);
    else
        snprintf(buf, size, "%s%lldd %lldh", sign, s / 86400, (s % 86400) / 3600);
    return buf;
}

uint64_t apm_backoff_ms(unsigned attempt, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t ceiling = min_ms;
    for (unsigned i = 0; i < attempt && ceiling < max_ms; i++)
        ceiling *= 2;
    if (ceiling > max_ms)
        ceiling = max_ms;
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = apm_mono_ns();
    return ceiling ? r % (ceiling + 1) : 0;
}

struct timespec apm_realtime_after_ns(uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec += (long)(ns % 1000000000u);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}
