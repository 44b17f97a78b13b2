#include "common/base/units.h"

#include <math.h>
#include <stdio.h>

#include "common/base/timeutil.h"

static const char *const byte_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
#define NUNITS (sizeof(byte_units) / sizeof(byte_units[0]))

const char *apm_units_name(enum apm_unit u)
{
    switch (u) {
    case APM_UNIT_COUNT:
        return "count";
    case APM_UNIT_SECONDS:
        return "seconds";
    case APM_UNIT_BYTES:
        break;
    }
    return "bytes";
}

static const char *sign_of(double v, unsigned flags)
{
    if (v < 0)
        return "-";
    return (flags & APM_UNITS_PLUS) ? "+" : "";
}

/* Writes |v| bytes by the one rule, followed by suffix ("" or "/h"). */
static char *bytes_with(double v, unsigned flags, const char *suffix, char *buf, size_t size)
{
    if (!isfinite(v)) {
        snprintf(buf, size, "-");
        return buf;
    }
    double x = fabs(v);
    size_t u = 0;
    while (x >= 1024.0 && u + 1 < NUNITS) {
        x /= 1024.0;
        u++;
    }
    /*
     * Round first, then decide: 1023.7 B is "1.0 KiB", not "1024 B", and 9.96
     * MiB is "10 MiB", not "10.0 MiB".
     */
    for (;;) {
        double shown = u == 0 || x >= 9.95 ? round(x) : round(x * 10.0) / 10.0;
        if (shown >= 1024.0 && u + 1 < NUNITS) {
            x /= 1024.0;
            u++;
            continue;
        }
        /* A value shown as zero has no sign: "-0 B" would read as a shrink. */
        const char *sign = shown == 0 ? "" : sign_of(v, flags);
        if (u == 0 || shown >= 10.0)
            snprintf(buf, size, "%s%.0f %s%s", sign, shown, byte_units[u], suffix);
        else
            snprintf(buf, size, "%s%.1f %s%s", sign, shown, byte_units[u], suffix);
        return buf;
    }
}

char *apm_units_bytes(double bytes, unsigned flags, char *buf, size_t size)
{
    return bytes_with(bytes, flags, "", buf, size);
}

char *apm_units_rate(double bytes_per_s, unsigned flags, char *buf, size_t size)
{
    return bytes_with(bytes_per_s * 3600.0, flags, "/h", buf, size);
}

char *apm_units_value(double v, enum apm_unit unit, unsigned flags, char *buf, size_t size)
{
    if (!isfinite(v)) {
        snprintf(buf, size, "-");
        return buf;
    }
    switch (unit) {
    case APM_UNIT_COUNT:
        snprintf(buf, size, "%s%.0f", sign_of(v, flags), fabs(v));
        return buf;
    case APM_UNIT_SECONDS: {
        char d[64];
        apm_duration_format(fabs(v), d, sizeof(d));
        snprintf(buf, size, "%s%s", sign_of(v, flags), d);
        return buf;
    }
    case APM_UNIT_BYTES:
        break;
    }
    return apm_units_bytes(v, flags, buf, size);
}
