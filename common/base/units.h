#ifndef APM_UNITS_H
#define APM_UNITS_H

/*
 * Units of measured values and how they read to a person. One unit family
 * (IEC: B, KiB, MiB, GiB, TiB; rates per hour, "38 MiB/h") and one rounding
 * rule everywhere a size is shown, in the CLI's tables and in alert text:
 * whole numbers from ten up, one decimal below ten ("1.5 GiB", "38 MiB",
 * "512 B"). Pure functions of their input; any thread.
 */
#include <stddef.h>

/* What a metric's values count. The names are the API's ("bytes", ...). */
enum apm_unit {
    APM_UNIT_BYTES = 0,
    APM_UNIT_COUNT,
    APM_UNIT_SECONDS,
};

/* Flags of the formatters: write "+" before a positive value (growth, rates). */
#define APM_UNITS_PLUS 1u

/* The unit's name as the API reports it: "bytes", "count" or "seconds". */
const char *apm_units_name(enum apm_unit u);

/*
 * Formats a size in bytes ("0 B", "1023 B", "1.5 KiB", "38 MiB", "2.0 GiB",
 * "300 GiB"; beyond TiB the number grows). A value that rounds to 1024 of a
 * unit is shown in the next one. NaN or infinity prints "-". Writes into buf
 * (size bytes, always terminated) and returns buf.
 */
char *apm_units_bytes(double bytes, unsigned flags, char *buf, size_t size);

/*
 * Formats a growth rate given in bytes per second as bytes per hour
 * ("38 MiB/h", "+14 GiB/h"), by the rule of apm_units_bytes. Returns buf.
 */
char *apm_units_rate(double bytes_per_s, unsigned flags, char *buf, size_t size);

/*
 * Formats a value of the given unit: bytes as apm_units_bytes, counts as a
 * whole number ("28"), seconds as a duration ("5h 10m"). Returns buf.
 */
char *apm_units_value(double v, enum apm_unit unit, unsigned flags, char *buf, size_t size);

#endif
