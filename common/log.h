#ifndef APM_LOG_H
#define APM_LOG_H

/*
 * Logging to stderr in a form journald keeps: when stderr is not a terminal
 * each line starts with a syslog priority prefix ("<3>"), which journald
 * turns into the entry's level; on a terminal the level is spelled out.
 * Thread-safe: each line is written with one write(2).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum apm_log_level {
    APM_LOG_ERROR = 3,
    APM_LOG_WARN = 4,
    APM_LOG_INFO = 6,
    APM_LOG_DEBUG = 7,
};

/* Sets the program name printed on terminals and the most verbose level printed. */
void apm_log_init(const char *program, enum apm_log_level max_level);

/* Parses "error", "warn", "info" or "debug". Returns 0 or APM_E_CONFIG. */
int apm_log_level_parse(const char *s, enum apm_log_level *out);

void apm_log(enum apm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A log line that a peer could make us write once per packet: the first
 * `burst` events of each window are logged one by one by the caller; the
 * rest are only counted, and when the window ends one summary line says
 * "<what> <count> <noun> in the last <window> s", e.g. "ingest: refused
 * 1,030 unauthenticated connections in the last 10 s". One thread per
 * limiter (no locking). Initialise with APM_LOG_LIMIT_INIT.
 */
struct apm_log_limit {
    enum apm_log_level level;
    const char *what; /* "ingest: refused" */
    const char *noun; /* "unauthenticated connections" */
    int64_t window_ms;
    unsigned burst;
    int64_t start_ms; /* of the window; 0 = none open */
    uint64_t events;  /* in the window */
    uint64_t logged;  /* of them, logged one by one */
};
#define APM_LOG_LIMIT_INIT(lvl, what_, noun_, window, burst_)                                      \
    {                                                                                              \
        .level = (lvl), .what = (what_), .noun = (noun_), .window_ms = (window), .burst = (burst_) \
    }

/*
 * Counts one event at now_ms (apm_now_ms or the loop's clock). Returns true
 * when the caller should log it one by one. Closes an ended window first
 * (apm_log_limit_flush).
 */
bool apm_log_limit_hit(struct apm_log_limit *l, int64_t now_ms);

/*
 * Ends the window when it is over (or when force), logging the summary if
 * some events were not logged one by one. Call from a timer so that the
 * summary appears even when the events stop.
 */
void apm_log_limit_flush(struct apm_log_limit *l, int64_t now_ms, bool force);

/* Writes n with thousands separators ("1,030") into buf. Returns buf. */
char *apm_log_count(uint64_t n, char *buf, size_t size);

#define apm_error(...) apm_log(APM_LOG_ERROR, __VA_ARGS__)
#define apm_warn(...) apm_log(APM_LOG_WARN, __VA_ARGS__)
#define apm_info(...) apm_log(APM_LOG_INFO, __VA_ARGS__)
#define apm_debug(...) apm_log(APM_LOG_DEBUG, __VA_ARGS__)

#endif
