#ifndef APM_CLI_FORMAT_H
#define APM_CLI_FORMAT_H

/*
 * Text output of apm-cli: terminal sparklines and aligned tables whose
 * cells may hold UTF-8 (sizes and rates read as common/units.h writes them).
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

/* Appends a row of ncols cells (borrowed; NULL prints as "-"). Returns 0 or -ENOMEM. */
int apm_cli_table_add(struct apm_cli_table *t, const char *const *cells);

/* Prints every row, columns separated by two spaces, the last one unpadded. */
void apm_cli_table_print(const struct apm_cli_table *t, FILE *out);

/* Frees the cells. Accepts NULL. */
void apm_cli_table_close(struct apm_cli_table *t);

#endif
