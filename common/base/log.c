#include "common/base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/text.h"

static const char *log_program = "apm";
static enum apm_log_level log_max = APM_LOG_INFO;
static enum apm_log_format log_format = APM_LOG_FORMAT_TEXT;
static bool log_journal;

bool apm_log_journal_stream(int fd)
{
    /* systemd sets JOURNAL_STREAM=DEV:INODE of the stream it connected to stdout/stderr. */
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev = 0, ino = 0;
    char tail;
    if (env == NULL || sscanf(env, "%llu:%llu%c", &dev, &ino, &tail) != 2)
        return false;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void apm_log_init(const char *program, enum apm_log_level max_level)
{
    log_program = program;
    log_max = max_level;
    log_journal = apm_log_journal_stream(STDERR_FILENO);
}

void apm_log_set_format(enum apm_log_format format)
{
    log_format = format;
}

int apm_log_format_parse(const char *s, enum apm_log_format *out)
{
    if (strcasecmp(s, "text") == 0)
        *out = APM_LOG_FORMAT_TEXT;
    else if (strcasecmp(s, "json") == 0)
        *out = APM_LOG_FORMAT_JSON;
    else
        return APM_E_CONFIG;
    return 0;
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

int apm_log_setup(const char *program, const char *level, const char *format, char *err,
                  size_t errlen)
{
    enum apm_log_level l;
    enum apm_log_format f;
    if (apm_log_level_parse(level, &l) != 0) {
        snprintf(err, errlen, "log-level '%s' is not error, warn, info or debug", level);
        return APM_E_CONFIG;
    }
    if (apm_log_format_parse(format, &f) != 0) {
        snprintf(err, errlen, "log-format '%s' is not text or json", format);
        return APM_E_CONFIG;
    }
    apm_log_init(program, l);
    apm_log_set_format(f);
    return 0;
}

/* "2026-12-03T15:51:30.123Z": RFC 3339 in UTC with milliseconds. */
static void timestamp(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000) % 1000u;
    if (n == 0 || n + 6 > size) {
        buf[0] = '\0';
        return;
    }
    buf[n] = '.';
    buf[n + 1] = (char)('0' + ms / 100);
    buf[n + 2] = (char)('0' + ms / 10 % 10);
    buf[n + 3] = (char)('0' + ms % 10);
    buf[n + 4] = 'Z';
    buf[n + 5] = '\0';
}

/*
 * Appends s as the inside of a JSON string to out (at *o, capacity size,
 * leaving room for the caller's closing bytes): quotes, backslashes and
 * control characters escaped, invalid UTF-8 replaced by U+FFFD, cut at a
 * whole character when full.
 */
static void json_append(char *out, size_t size, size_t *o, const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        size_t skip = 1;
        size_t n = apm_text_next(s + i, len - i, &cp, &skip);
        char esc[8];
        const char *piece = s + i;
        size_t plen = n;
        if (n == 0) {
            piece = "\\ufffd";
            plen = 6;
            i += skip;
        } else {
            i += n;
            if (cp == '"' || cp == '\\') {
                esc[0] = '\\';
                esc[1] = (char)cp;
                piece = esc;
                plen = 2;
            } else if (cp < 0x20 || cp == 0x7f) {
                snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
                piece = esc;
                plen = 6;
            }
        }
        if (*o + plen >= size)
            return;
        memcpy(out + *o, piece, plen);
        *o += plen;
    }
}

size_t apm_log_format_line(enum apm_log_format format, bool journal, const char *program,
                           enum apm_log_level level, const char *msg, char *out, size_t size)
{
    if (size < 64)
        return 0;
    size_t o = 0;
    char ts[40];
    int n;
    if (format == APM_LOG_FORMAT_JSON) {
        timestamp(ts, sizeof(ts));
        n = snprintf(out, size, "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"", ts,
                     level_word(level));
        o = (size_t)n;
        json_append(out, size - 40, &o, program);
        o += (size_t)snprintf(out + o, size - o, "\",\"pid\":%ld", (long)getpid());
        /* "writer: committed ..." names its module: a field of its own, and the rest the msg. */
        size_t mod = strspn(msg, "abcdefghijklmnopqrstuvwxyz_-");
        if (mod > 0 && mod < 32 && msg[mod] == ':' && msg[mod + 1] == ' ') {
            char name[32];
            memcpy(name, msg, mod);
            name[mod] = '\0';
            o += (size_t)snprintf(out + o, size - o, ",\"module\":\"%s\"", name);
            msg += mod + 2;
        }
        memcpy(out + o, ",\"msg\":\"", 8);
        o += 8;
        json_append(out, size - 3, &o, msg);
        out[o++] = '"';
        out[o++] = '}';
    } else {
        if (journal) {
            n = snprintf(out, size, "<%d>%s: ", (int)level, level_word(level));
        } else {
            timestamp(ts, sizeof(ts));
            n = snprintf(out, size, "%s %s %s: ", ts, program, level_word(level));
        }
        if (n < 0 || (size_t)n >= size)
            return 0;
        o = (size_t)n;
        size_t len = strlen(msg);
        if (len > size - 2 - o)
            len = size - 2 - o;
        memcpy(out + o, msg, len);
        /* Telemetry strings can hold newlines; keep one record per line. */
        for (size_t i = o; i < o + len; i++) {
            if (out[i] == '\n' || out[i] == '\r')
                out[i] = ' ';
        }
        o += len;
    }
    out[o++] = '\n';
    out[o] = '\0';
    return o;
}

void apm_log(enum apm_log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    char line[4096 + 256];
    size_t len =
        apm_log_format_line(log_format, log_journal, log_program, level, msg, line, sizeof(line));
    if (len == 0)
        return;
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
