#include "common/regex_limit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define COST_CAP (UINT64_MAX / 4)
#define MAX_DEPTH 256 /* glibc refuses deeper nesting long before this matters */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > COST_CAP - b ? COST_CAP : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b != 0 && a > COST_CAP / b ? COST_CAP : a * b;
}

/* Skips a bracket expression starting at p ('['); returns the character after its ']'. */
static const char *skip_bracket(const char *p)
{
    p++;
    if (*p == '^')
        p++;
    if (*p == ']')
        p++;
    while (*p != '\0' && *p != ']') {
        if (p[0] == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.')) {
            char close = p[1];
            const char *end = p + 2;
            while (*end != '\0' && !(end[0] == close && end[1] == ']'))
                end++;
            p = *end != '\0' ? end + 2 : end;
            continue;
        }
        p++;
    }
    return *p == ']' ? p + 1 : p;
}

/* Reads "{M}", "{M,}" or "{M,N}" at p; returns the character after it, or NULL if it is none. */
static const char *read_bound(const char *p, uint64_t *factor)
{
    char *end;
    const char *q = p + 1;
    if (*q < '0' || *q > '9')
        return NULL;
    unsigned long m = strtoul(q, &end, 10), n = m;
    q = end;
    if (*q == ',') {
        q++;
        n = m + 1; /* "{M,}": M copies and a star */
        if (*q >= '0' && *q <= '9') {
            n = strtoul(q, &end, 10);
            q = end;
        }
    }
    if (*q != '}')
        return NULL;
    uint64_t most = m > n ? m : n;
    *factor = sat_add(most, 1);
    return q + 1;
}

uint64_t apm_regex_cost(const char *pattern)
{
    /* Per open group: the cost of its finished parts and of its last atom. */
    uint64_t total[MAX_DEPTH], last[MAX_DEPTH];
    unsigned depth = 0;
    total[0] = last[0] = 0;
    const char *p = pattern;
    while (*p != '\0') {
        uint64_t factor = 0;
        const char *next = p + 1;
        bool quant = false;
        switch (*p) {
        case '(':
            if (depth + 1 < MAX_DEPTH) {
                depth++;
                total[depth] = last[depth] = 0;
            }
            p = next;
            continue;
        case ')':
            if (depth > 0) {
                uint64_t group = sat_add(sat_add(total[depth], last[depth]), 1);
                depth--;
                total[depth] = sat_add(total[depth], last[depth]);
                last[depth] = group;
                p = next;
                continue;
            }
            break;
        case '|':
            total[depth] = sat_add(sat_add(total[depth], last[depth]), 1);
            last[depth] = 0;
            p = next;
            continue;
        case '*':
        case '?':
            quant = true;
            factor = 1;
            break;
        case '+':
            quant = true;
            factor = 2;
            break;
        case '{':
            next = read_bound(p, &factor);
            quant = next != NULL;
            if (!quant)
                next = p + 1;
            break;
        case '[':
            next = skip_bracket(p);
            break;
        case '\\':
            next = p[1] != '\0' ? p + 2 : p + 1;
            break;
        default:
            break;
        }
        if (quant && last[depth] > 0) {
            /* The repeated atom is copied factor times, plus the operator's node. */
            last[depth] = sat_add(sat_mul(last[depth], factor), 1);
        } else {
            total[depth] = sat_add(total[depth], last[depth]);
            last[depth] = 1;
        }
        p = next;
    }
    uint64_t cost = 0;
    for (unsigned d = 0; d <= depth; d++)
        cost = sat_add(cost, sat_add(total[d], last[d]));
    return cost;
}

int apm_regex_compile(regex_t *re, const char *pattern, int cflags, char *err, size_t errlen)
{
    uint64_t cost = apm_regex_cost(pattern);
    if (cost > APM_REGEX_MAX_COST) {
        snprintf(err, errlen,
                 "its repetitions expand to more than %u parts (nest or stack fewer of them)",
                 APM_REGEX_MAX_COST);
        return APM_E_LIMIT;
    }
    int rc = regcomp(re, pattern, cflags);
    if (rc == 0)
        return 0;
    if (rc == REG_ESPACE) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    regerror(rc, re, err, errlen);
    return APM_E_CONFIG;
}
