#ifndef APM_CLI_ANALYZE_H
#define APM_CLI_ANALYZE_H

/*
 * `apm-cli analyze [--sensitivity early|balanced|quiet] PATH...`: replays
 * recorded memory traces (CSV, header `t_seconds,rss_bytes[,limit_bytes]`)
 * through the analysis library as if live, one sample at a time, and reports
 * per trace the first leak alert and the forecast made at that moment.
 */
#include <stdbool.h>
#include <stddef.h>

#include "common/analysis/analysis.h"

/* Longest accepted CSV line, bytes; a longer line is a parse error. */
#define APM_ANALYZE_MAX_LINE 4096
/* Most data rows accepted per file. */
#define APM_ANALYZE_MAX_ROWS 50000000
/* Most files per invocation. */
#define APM_ANALYZE_MAX_FILES 100000

struct apm_analyze_result {
    char trace[256];   /* file base name without ".csv" */
    size_t rows;       /* data rows replayed */
    bool alerted;      /* a built-in rule (leak or exhaustion) would have fired at some point */
    const char *rule;  /* which one first: "leak" or "exhaustion" (static) */
    double t_alert;    /* the first alert time (trace seconds) */
    bool has_forecast; /* a forecast was made at t_alert */
    double forecast_t; /* predicted time of reaching the limit, at t_alert */
    double forecast_lo_t;
    double forecast_hi_t; /* INFINITY when the growth may be nil */
    enum apm_class cls;   /* the verdict after the last row */
    double confidence;
};

/*
 * Replays one CSV file. cfg is borrowed. On success returns 0 and fills *out.
 * On a malformed file returns APM_E_PARSE and writes "FILE:LINE: reason" to
 * err (always NUL-terminated when errlen > 0); on an unreadable file returns
 * a negative errno with "FILE: reason". Thread-safe.
 */
int apm_cli_analyze_file(const char *path, const struct apm_analysis_config *cfg,
                         struct apm_analyze_result *out, char *err, size_t errlen);

/*
 * The `analyze` command. argv holds the words after "analyze" (global options
 * already removed); json selects one JSON line per trace, sorted by trace
 * name, instead of a table. Returns the process exit code: 0, or 1 when any
 * file was malformed or the usage was wrong.
 */
int apm_cli_analyze(int argc, char **argv, bool json);

#endif
