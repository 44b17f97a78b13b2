#include "common/base/regex_limit.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"

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

/*
 * Reads "{M}", "{M,}" or "{M,N}" at p into *m and *n (n = UINT64_MAX when
 * unbounded); returns the character after it, or NULL if it is none.
 */
static const char *read_bound(const char *p, unsigned long *m, unsigned long *n)
{
    char *end;
    const char *q = p + 1;
    if (*q < '0' || *q > '9')
        return NULL;
    *m = strtoul(q, &end, 10);
    *n = *m;
    q = end;
    if (*q == ',') {
        q++;
        *n = ULONG_MAX;
        if (*q >= '0' && *q <= '9') {
            *n = strtoul(q, &end, 10);
            q = end;
        }
    }
    return *q == '}' ? q + 1 : NULL;
}

/* One open group: its finished branches and the branch being read. */
struct group {
    uint64_t total;  /* cost of the finished parts */
    uint64_t last;   /* cost of the last atom, 0 when none yet */
    bool prev_empty; /* every atom of this branch before the last can match nothing */
    bool last_empty; /* the last atom can (true when there is none) */
    bool alt_empty;  /* a finished branch can */
};

static void group_start(struct group *g)
{
    *g = (struct group){.prev_empty = true, .last_empty = true};
}

static void add_atom(struct group *g, uint64_t cost, bool can_be_empty)
{
    g->total = sat_add(g->total, g->last);
    g->prev_empty = g->prev_empty && g->last_empty;
    g->last = cost;
    g->last_empty = can_be_empty;
}

static void analyse(const char *pattern, uint64_t *cost, bool *repeats_empty)
{
    struct group st[MAX_DEPTH];
    unsigned depth = 0;
    group_start(&st[0]);
    *repeats_empty = false;
    const char *p = pattern;
    while (*p != '\0') {
        struct group *g = &st[depth];
        const char *next = p + 1;
        uint64_t factor = 0;
        bool quant = false, may_skip = false, many = false;
        unsigned long m = 0, n = 0;
        switch (*p) {
        case '(':
            if (depth + 1 < MAX_DEPTH)
                group_start(&st[++depth]);
            p = next;
            continue;
        case ')':
            if (depth > 0) {
                uint64_t size = sat_add(sat_add(g->total, g->last), 1);
                bool empty = g->alt_empty || (g->prev_empty && g->last_empty);
                depth--;
                add_atom(&st[depth], size, empty);
                p = next;
                continue;
            }
            add_atom(g, 1, false);
            p = next;
            continue;
        case '|':
            g->total = sat_add(sat_add(g->total, g->last), 1);
            g->alt_empty = g->alt_empty || (g->prev_empty && g->last_empty);
            g->last = 0;
            g->prev_empty = g->last_empty = true;
            p = next;
            continue;
        case '*':
            quant = may_skip = true;
            factor = 1;
            break;
        case '?':
            quant = may_skip = true;
            factor = 1;
            break;
        case '+':
            quant = many = true;
            factor = 2;
            break;
        case '{':
            next = read_bound(p, &m, &n);
            quant = next != NULL;
            if (quant) {
                unsigned long most = n == ULONG_MAX ? m + 1 : (m > n ? m : n);
                factor = sat_add(most, 1);
                may_skip = m == 0;
                /* "{0,}" is a star; any other count above one copies the atom. */
                many = !(m == 0 && n == ULONG_MAX) && (n > 1 || m > 1);
            } else {
                next = p + 1;
            }
            break;
        case '^':
        case '$':
            add_atom(g, 1, true); /* anchors match no character */
            p = next;
            continue;
        case '[':
            next = skip_bracket(p);
            break;
        case '\\':
            next = p[1] != '\0' ? p + 2 : p + 1;
            /* a back-reference may repeat an empty group */
            add_atom(g, 1, p[1] >= '1' && p[1] <= '9');
            p = next;
            continue;
        default:
            break;
        }
        if (quant && g->last > 0) {
            /* The repeated atom is copied factor times, plus the operator's node. */
            if (many && g->last_empty)
                *repeats_empty = true;
            /*
             * '*' or '?' over a part that can already match nothing builds no
             * copies, but glibc's epsilon closures grow with every such layer:
             * "a" and 100 stars took 3.7 s to compile, 200 stars 48 s, and 60
             * nested "(...*)" 0.4 s. Counted as doubling, a stack or nest of
             * them reaches the cap after about 14 layers ("(a*)*" stays cheap).
             */
            if (g->last_empty && factor == 1)
                factor = 2;
            g->last = sat_add(sat_mul(g->last, factor), 1);
            g->last_empty = g->last_empty || may_skip;
        } else {
            add_atom(g, 1, false);
        }
        p = next;
    }
    uint64_t sum = 0;
    for (unsigned d = 0; d <= depth; d++)
        sum = sat_add(sum, sat_add(st[d].total, st[d].last));
    *cost = sum;
}

uint64_t apm_regex_cost(const char *pattern)
{
    uint64_t cost;
    bool repeats_empty;
    analyse(pattern, &cost, &repeats_empty);
    return cost;
}

bool apm_regex_repeats_empty(const char *pattern)
{
    uint64_t cost;
    bool repeats_empty;
    analyse(pattern, &cost, &repeats_empty);
    return repeats_empty;
}

int apm_regex_compile(regex_t *re, const char *pattern, int cflags, char *err, size_t errlen)
{
    uint64_t cost;
    bool repeats_empty;
    analyse(pattern, &cost, &repeats_empty);
    if (repeats_empty) {
        snprintf(err, errlen,
                 "'+' or a count on a part that can match nothing (write '*' there, or make the "
                 "part match something)");
        return APM_E_LIMIT;
    }
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
