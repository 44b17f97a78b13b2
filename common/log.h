#ifndef APM_LOG_H
#define APM_LOG_H

/*
 * Logging to stderr in a form journald keeps: when stderr is not a terminal
 * each line starts with a syslog priority prefix ("<3>"), which journald
 * turns into the entry's level; on a terminal the level is spelled out.
 * Thread-safe: each line is written with one write(2).
 */
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

#define apm_error(...) apm_log(APM_LOG_ERROR, __VA_ARGS__)
#define apm_warn(...) apm_log(APM_LOG_WARN, __VA_ARGS__)
#define apm_info(...) apm_log(APM_LOG_INFO, __VA_ARGS__)
#define apm_debug(...) apm_log(APM_LOG_DEBUG, __VA_ARGS__)

#endif
