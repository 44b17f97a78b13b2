#ifndef APM_CLI_FORMAT_H
#define APM_CLI_FORMAT_H

/*
 * Text output of apm-cli: terminal sparklines and aligned tables whose
 * cells may hold UTF-8 (sizes and rates read as common/base/units.h writes them).
 * Pure functions of their input, any thread.
 */
#include <stddef.h>
#include <stdio.h>

/* The eight sparkline levels, lowest first (UTF-8, three bytes each). */
#define APM_CLI_SPARK_LEVELS 8

/*
 * Draws values v[0..n-1] (borrowed, time order) as a sparkline of at most
 * width glyphs in out (size bytes, NUL-terminated): with more values than
 * width, each glyph is the mean of one run of neighbouring values. The lowest
 * value maps to '▁', the highest to '█'; a flat series draws '▄'. Returns the
 * number of glyphs written (0 for no values or when out is too small for even
 * one glyph; otherwise as many as fit).
 */
size_t apm_cli_sparkline(const double *v, size_t n, size_t width, char *out, size_t size);

/*
 * Terminal safety: what the collector sends was written by agents, and an
 * agent's strings (process names, command lines, probe file names) must not
 * drive the terminal. Every text printer goes through apm_cli_escape (tables
 * on apm_cli_table_add, single lines through apm_cli_line): control
 * characters are shown as escapes, C0 and DEL as "\x1b", C1 as "\u009b",
 * and bytes that are not UTF-8 as "\xff". JSON output (--json) is the
 * collector's answer unchanged, JSON-escaped by the collector.
 */

/*
 * Writes s escaped into dst (size >= 1 bytes, always terminated; cut at an
 * escape or character boundary when it does not fit). Returns dst.
 */
char *apm_cli_escape(const char *s, char *dst, size_t size);

/*
 * Returns an owned (free with free()) escaped copy of s (NULL prints as
 * "-"), or NULL when out of memory.
 */
char *apm_cli_escape_dup(const char *s);

/*
 * Prints one line: formats fmt (no trailing newline), escapes the result as
 * a whole, writes it and a newline. A newline inside an argument shows as
 * "\x0a" and cannot start a line of its own.
 */
void apm_cli_line(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The display width of a UTF-8 string: code points, not bytes. */
size_t apm_cli_text_width(const char *s);

/*
 * A table of text cells printed with aligned columns. Caller-owned:
 * apm_cli_table_init() then apm_cli_table_close(); cells are copied.
 */
struct apm_cli_table {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells; /* nrows * ncols, row-major */
};

void apm_cli_table_init(struct apm_cli_table *t, size_t ncols);

/*
 * Appends a row of ncols cells (borrowed, copied escaped by apm_cli_escape;
 * NULL prints as "-"). Returns 0 or -ENOMEM.
 */
int apm_cli_table_add(struct apm_cli_table *t, const char *const *cells);

/* Prints every row, columns separated by two spaces, the last one unpadded. */
void apm_cli_table_print(const struct apm_cli_table *t, FILE *out);

/* Frees the cells. Accepts NULL. */
void apm_cli_table_close(struct apm_cli_table *t);

#endif
