#ifndef APM_REGEX_LIMIT_H
#define APM_REGEX_LIMIT_H

/*
 * Compiling the POSIX extended regexes of config files (watch rules, alert
 * matchers) without letting one line exhaust memory. glibc's regcomp copies
 * a repeated part once per repetition, and stacked operators multiply:
 * "a+++...+" with 40 pluses asks for terabytes, "((a{100}){100}){100}"
 * for 200 MB. And a part that can match nothing, repeated with '+' or a
 * count, makes its epsilon closures explode once the pattern is anchored:
 * "^a*+++++" (8 bytes) takes 9 s, "^(((a?|b?|c?)+)+)+" longer. Such a
 * repetition means the same as '*', so it is refused with that advice, and
 * the rest is costed (the nodes regcomp would build) and refused past a cap.
 * Pure functions; any thread.
 */
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most nodes a pattern may expand to (glibc takes ~200 bytes each: ~4 MB). */
#define APM_REGEX_MAX_COST 20000u

/*
 * Estimates the nodes regcomp builds for an extended regex: an atom is one,
 * a group the sum of its branches, "*" and "?" add one, "+" doubles, and
 * "{M,N}" multiplies by max(M, N) + 1. Saturates at UINT64_MAX / 4. A
 * malformed pattern is costed as far as it goes (regcomp refuses it).
 */
uint64_t apm_regex_cost(const char *pattern);

/*
 * True when '+', "{M,}" or a count above one repeats a part that can match
 * nothing ("a*+", "(a?|b)+", "(x*){2,5}"; "^" and "$" match nothing too).
 */
bool apm_regex_repeats_empty(const char *pattern);

/*
 * regcomp(re, pattern, cflags) for a pattern that repeats no empty part and
 * whose cost is within APM_REGEX_MAX_COST. Returns 0 (free re with regfree), APM_E_LIMIT for a
 * pattern refused here, APM_E_CONFIG for one regcomp refuses, or -ENOMEM; err
 * (errlen bytes) then says why, without the pattern.
 */
int apm_regex_compile(regex_t *re, const char *pattern, int cflags, char *err, size_t errlen);

#endif
