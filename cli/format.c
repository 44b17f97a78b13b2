#include "cli/format.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/text.h"

static const char *const spark_glyphs[APM_CLI_SPARK_LEVELS] = {
    "\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83", "\xe2\x96\x84",
    "\xe2\x96\x85", "\xe2\x96\x86", "\xe2\x96\x87", "\xe2\x96\x88",
};

size_t apm_cli_sparkline(const double *v, size_t n, size_t width, char *out, size_t size)
{
    if (size > 0)
        out[0] = '\0';
    if (n == 0 || width == 0)
        return 0;
    size_t cols = n < width ? n : width;
    size_t fit = size > 0 ? (size - 1) / 3 : 0;
    if (cols > fit)
        cols = fit;
    if (cols == 0)
        return 0;
    double lo = INFINITY, hi = -INFINITY;
    /* Mean of each column's run first, so the scale is that of what is drawn. */
    double *col = malloc(cols * sizeof(*col));
    if (col == NULL)
        return 0;
    for (size_t c = 0; c < cols; c++) {
        size_t a = c * n / cols, b = (c + 1) * n / cols;
        double sum = 0;
        for (size_t i = a; i < b; i++)
            sum += v[i];
        col[c] = sum / (double)(b - a);
        lo = fmin(lo, col[c]);
        hi = fmax(hi, col[c]);
    }
    char *p = out;
    for (size_t c = 0; c < cols; c++) {
        int level = APM_CLI_SPARK_LEVELS / 2 - 1;
        if (hi > lo) {
            level = (int)floor((col[c] - lo) / (hi - lo) * APM_CLI_SPARK_LEVELS);
            if (level >= APM_CLI_SPARK_LEVELS)
                level = APM_CLI_SPARK_LEVELS - 1;
            if (level < 0)
                level = 0;
        }
        memcpy(p, spark_glyphs[level], 3);
        p += 3;
    }
    *p = '\0';
    free(col);
    return cols;
}

/* The escaped form of the character at s, in esc; returns the input bytes it stands for. */
static size_t escape_one(const char *s, size_t len, char esc[8], size_t *esclen)
{
    uint32_t cp = 0;
    size_t skip = 0;
    size_t n = apm_text_next(s, len, &cp, &skip);
    if (n == 0) {
        *esclen = (size_t)snprintf(esc, 8, "\\x%02x", (unsigned char)s[0]);
        return 1;
    }
    if (!apm_text_is_control(cp)) {
        memcpy(esc, s, n);
        *esclen = n;
    } else if (cp < 0x80) {
        *esclen = (size_t)snprintf(esc, 8, "\\x%02x", (unsigned)cp);
    } else {
        *esclen = (size_t)snprintf(esc, 8, "\\u%04x", (unsigned)cp);
    }
    return n;
}

char *apm_cli_escape(const char *s, char *dst, size_t size)
{
    size_t len = strlen(s), at = 0;
    for (size_t i = 0; i < len;) {
        char esc[8];
        size_t elen = 0;
        size_t used = escape_one(s + i, len - i, esc, &elen);
        if (at + elen > size - 1)
            break;
        memcpy(dst + at, esc, elen);
        at += elen;
        i += used;
    }
    dst[at] = '\0';
    return dst;
}

char *apm_cli_escape_dup(const char *s)
{
    if (s == NULL)
        s = "-";
    /* An escape takes at most six bytes per input byte. */
    size_t size = strlen(s) * 6 + 1;
    char *out = malloc(size);
    return out != NULL ? apm_cli_escape(s, out, size) : NULL;
}

void apm_cli_line(FILE *out, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *line = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (line != NULL)
        vsnprintf(line, (size_t)n + 1, fmt, again);
    va_end(again);
    char *safe = line != NULL ? apm_cli_escape_dup(line) : NULL;
    if (safe != NULL)
        fputs(safe, out);
    fputc('\n', out);
    free(safe);
    free(line);
}

size_t apm_cli_text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xC0) != 0x80)
            w++;
    }
    return w;
}

void apm_cli_table_init(struct apm_cli_table *t, size_t ncols)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
}

int apm_cli_table_add(struct apm_cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        char **nc = realloc(t->cells, ncap * t->ncols * sizeof(*nc));
        if (nc == NULL)
            return -ENOMEM;
        t->cells = nc;
        t->cap = ncap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = apm_cli_escape_dup(cells[c]);
        if (row[c] == NULL) {
            while (c > 0)
                free(row[--c]);
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

void apm_cli_table_print(const struct apm_cli_table *t, FILE *out)
{
    size_t *width = calloc(t->ncols ? t->ncols : 1, sizeof(*width));
    if (width == NULL)
        return;
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = apm_cli_text_width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            fputs(cell, out);
            if (c + 1 < t->ncols) {
                for (size_t pad = apm_cli_text_width(cell); pad < width[c] + 2; pad++)
                    fputc(' ', out);
            }
        }
        fputc('\n', out);
    }
    free(width);
}

void apm_cli_table_close(struct apm_cli_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}
