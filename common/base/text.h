#ifndef APM_TEXT_H
#define APM_TEXT_H

/*
 * The one check every string from outside passes before it is kept: host
 * names, agent ids, process names, command lines, cgroup paths, allocation
 * site file names, anything a peer sends. A clean string is valid UTF-8
 * (no overlong forms, no surrogates, nothing above U+10FFFF), holds no
 * control character (C0 including tab and newline, DEL, C1), and fits its
 * bound. What does not pass is replaced, never refused:
 *
 *   - each invalid UTF-8 sequence (its longest valid-looking prefix, as
 *     Unicode recommends) becomes U+FFFD REPLACEMENT CHARACTER;
 *   - each control character becomes U+FFFD too, so a terminal or a log line
 *     never receives an escape sequence or a line break from a peer;
 *   - a string longer than its bound is cut at the last whole character
 *     that fits.
 *
 * The replacement is the same everywhere, so the same raw string always
 * cleans to the same text (agent ids and host names stay stable keys).
 * Pure functions of their input; any thread.
 */
#include <stddef.h>
#include <stdint.h>

/* Why a string was changed: one bit each in the returned masks. */
enum apm_text_fix {
    APM_TEXT_FIX_UTF8 = 1u << 0,    /* invalid UTF-8 replaced */
    APM_TEXT_FIX_CONTROL = 1u << 1, /* control characters replaced */
    APM_TEXT_FIX_LENGTH = 1u << 2,  /* cut to its bound */
};

/* Strings changed, counted per reason (a string with two reasons counts in both). */
struct apm_text_fixes {
    uint64_t invalid_utf8;
    uint64_t control;
    uint64_t too_long;
};

/* Adds the reasons of one cleaned string (a mask of enum apm_text_fix) to f. */
void apm_text_fixes_add(struct apm_text_fixes *f, unsigned mask);

/* The replacement character, U+FFFD, in UTF-8. */
#define APM_TEXT_REPLACEMENT "\xEF\xBF\xBD"

/*
 * Decodes the character at s (len bytes available). Returns its length in
 * bytes (1-4) and its code point in *cp, or 0 when s does not start a valid
 * UTF-8 sequence; then *skip is the length of the invalid prefix to replace
 * (at least 1). len must be at least 1.
 */
size_t apm_text_next(const char *s, size_t len, uint32_t *cp, size_t *skip);

/* True when s (len bytes) is valid UTF-8 (control characters allowed). */
int apm_text_utf8_valid(const char *s, size_t len);

/* True for C0 controls, DEL and C1 controls (U+0000-U+001F, U+007F-U+009F). */
int apm_text_is_control(uint32_t cp);

/*
 * Cleans src (len bytes) into dst (size >= 1 bytes; always terminated, at
 * most size - 1 bytes of text, cut at a character boundary). Returns the
 * mask of fixes made (0 when dst equals src).
 */
unsigned apm_text_clean(char *dst, size_t size, const char *src, size_t len);

/*
 * Returns an owned (free with free()) clean copy of the string s (NULL is
 * taken as ""), at most max bytes long, and the fixes made in *mask (may be
 * NULL). Returns NULL when out of memory.
 */
char *apm_text_dup(const char *s, size_t max, unsigned *mask);

#endif
