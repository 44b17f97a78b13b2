#ifndef APM_LOG_H
#define APM_LOG_H

/*
 * Logging to stderr, one record per line, in one of three forms:
 *
 *   - under journald (JOURNAL_STREAM names stderr): "<3>error: MSG", a syslog
 *     priority prefix journald turns into the entry's level; journald adds
 *     the time and the program itself;
 *   - elsewhere, text: "2026-12-03T15:51:30.123Z apm-collector error: MSG",
 *     an RFC 3339 UTC timestamp and the program name;
 *   - with --log-format json (anywhere): one JSON object per line,
 *     {"ts":"...","level":"error","prog":"apm-collector","pid":42,
 *      "module":"writer","msg":"..."}; "module" is the message's leading
 *     "word: " when it has one.
 *
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

enum apm_log_format {
    APM_LOG_FORMAT_TEXT = 0, /* the journald form under journald, else timestamped text */
    APM_LOG_FORMAT_JSON,
};

/*
 * Sets the program name, the most verbose level printed, and whether stderr
 * is journald's stream (apm_log_journal_stream). The format stays as set.
 */
void apm_log_init(const char *program, enum apm_log_level max_level);

/*
 * Parses the log-level and log-format settings and, when both are good, sets
 * them up (apm_log_init, apm_log_set_format). Returns 0, or APM_E_CONFIG with
 * "log-level 'X' is not error, warn, info or debug" (or the log-format one) in err.
 */
int apm_log_setup(const char *program, const char *level, const char *format, char *err,
                  size_t errlen);

/* Sets the line format (default text). */
void apm_log_set_format(enum apm_log_format format);

/* Parses "text" or "json". Returns 0 or APM_E_CONFIG. */
int apm_log_format_parse(const char *s, enum apm_log_format *out);

/* True when $JOURNAL_STREAM ("DEV:INODE") names the file open on fd. */
bool apm_log_journal_stream(int fd);

/*
 * Formats one record (msg, a finished message) as apm_log writes it, with
 * the trailing newline, into out (size bytes, terminated). Returns the
 * length, or 0 when size is too small (under 64).
 */
size_t apm_log_format_line(enum apm_log_format format, bool journal, const char *program,
                           enum apm_log_level level, const char *msg, char *out, size_t size);

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
