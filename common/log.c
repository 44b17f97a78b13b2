#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/error.h"

static const char *log_program = "apm";
static enum apm_log_level log_max = APM_LOG_INFO;

void apm_log_init(const char *program, enum apm_log_level max_level)
{
    log_program = program;
    log_max = max_level;
}

int apm_log_level_parse(const char *s, enum apm_log_level *out)
{
    static const struct {
        const char *name;
        enum apm_log_level level;
    } names[] = {
        {"error", APM_LOG_ERROR}, {"warn", APM_LOG_WARN},   {"warning", APM_LOG_WARN},
        {"info", APM_LOG_INFO},   {"debug", APM_LOG_DEBUG},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return APM_E_CONFIG;
}

static const char *level_word(enum apm_log_level level)
{
    switch (level) {
    case APM_LOG_ERROR:
        return "error";
    case APM_LOG_WARN:
        return "warning";
    case APM_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

void apm_log(enum apm_log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    char line[2048];
    int n;
    if (isatty(STDERR_FILENO))
        n = snprintf(line, sizeof(line), "%s: %s: ", log_program, level_word(level));
    else
        n = snprintf(line, sizeof(line), "<%d>%s: ", (int)level, level_word(level));
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = strlen(line);
    /* Telemetry strings can hold newlines; keep one record per line. */
    for (size_t i = (size_t)n; i < len; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

char *apm_log_count(uint64_t n, char *buf, size_t size)
{
    char digits[24];
    int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n);
    size_t o = 0;
    for (int i = 0; i < len && o + 1 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 2 < size)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    if (size > 0)
        buf[o < size ? o : size - 1] = '\0';
    return buf;
}

void apm_log_limit_flush(struct apm_log_limit *l, int64_t now_ms, bool force)
{
    if (l->start_ms == 0 || (!force && now_ms - l->start_ms < l->window_ms))
        return;
    if (l->events > l->logged) {
        char n[32];
        int64_t span = now_ms - l->start_ms < l->window_ms ? now_ms - l->start_ms : l->window_ms;
        apm_log(l->level, "%s %s %s in the last %lld s (%llu logged one by one)", l->what,
                apm_log_count(l->events, n, sizeof(n)), l->noun, (long long)((span + 999) / 1000),
                (unsigned long long)l->logged);
    }
    l->start_ms = 0;
    l->events = 0;
    l->logged = 0;
}

bool apm_log_limit_hit(struct apm_log_limit *l, int64_t now_ms)
{
    apm_log_limit_flush(l, now_ms, false);
    if (l->start_ms == 0)
        l->start_ms = now_ms > 0 ? now_ms : 1;
    l->events++;
    if (l->logged >= l->burst)
        return false;
    l->logged++;
    return true;
}
