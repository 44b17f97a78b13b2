/* The names the agent gives processes: a command line made printable, and the short name
 * derived from it (the script or module a Python interpreter runs, else the executable). Pure
 * functions of /proc's bytes, declared in agent/sampler.h. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sampler.h"

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t need;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4;
    else
        return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    }
    /* Overlong three- and four-byte forms, surrogates, beyond U+10FFFF. */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return need;
}

/*
 * Appends src[0..n) to out (used bytes *pos, capacity size with room kept for
 * the NUL), replacing control bytes and invalid UTF-8 with '?' and NUL with
 * sep. Never cuts a character in two.
 */
static void append_clean(char *out, size_t size, size_t *pos, const char *src, size_t n, char sep)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    while (i < n) {
        size_t cl = s[i] == 0 ? 1 : utf8_len(s + i, n - i);
        size_t w = cl ? cl : 1;
        if (*pos + w >= size)
            break;
        if (s[i] == 0)
            out[(*pos)++] = sep;
        else if (cl == 0 || s[i] < 0x20 || s[i] == 0x7f)
            out[(*pos)++] = '?';
        else {
            memcpy(out + *pos, s + i, cl);
            *pos += cl;
        }
        i += w;
    }
    out[*pos] = '\0';
}

void apm_sampler_cmdline(const char *argv, size_t len, char *out, size_t size)
{
    size_t pos = 0;
    /* The kernel ends each argument with NUL: drop the last ones. */
    while (len > 0 && argv[len - 1] == '\0')
        len--;
    out[0] = '\0';
    append_clean(out, size, &pos, argv, len, ' ');
}

static const char *base_name(const char *path, size_t *n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    const char *b = path + len;
    while (b > path && b[-1] != '/')
        b--;
    *n = (size_t)(path + len - b);
    return b;
}

static bool is_python(const char *s, size_t n)
{
    return n >= 6 && memcmp(s, "python", 6) == 0;
}

/* Options of the interpreter that take a value, here or in the next argument. */
static bool takes_value(char c)
{
    return c == 'c' || c == 'm' || c == 'W' || c == 'X' || c == 'Q';
}

/*
 * Finds what a Python command line runs: sets *what to the module (-m) or
 * script argument, or NULL for -c, stdin or an interactive interpreter.
 * *is_module tells which.
 */
static void python_target(char **args, int argc, const char **what, bool *is_module, int *at)
{
    *what = NULL;
    *is_module = false;
    *at = argc;
    int i = 1;
    while (i < argc) {
        const char *a = args[i];
        if (a[0] != '-')
            break;
        if (strcmp(a, "-") == 0)
            return;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[1] == '-') {
            i += strcmp(a, "--check-hash-based-pycs") == 0 ? 2 : 1;
            continue;
        }
        for (int k = 1; a[k] != '\0'; k++) {
            if (!takes_value(a[k]))
                continue;
            const char *v = a[k + 1] != '\0' ? a + k + 1 : (i + 1 < argc ? args[++i] : NULL);
            if (a[k] == 'c' || v == NULL)
                return;
            if (a[k] == 'm') {
                *what = v;
                *is_module = true;
                return;
            }
            break;
        }
        i++;
    }
    if (i < argc) {
        *what = args[i];
        *at = i;
    }
}

/* The launcher that starts a Python program with the probe inside: name what it runs. */
#define PROBE_LAUNCHER "apm-run"

void apm_sampler_name(const char *comm, const char *argv, size_t len, char *out, size_t size)
{
    /* Only the first arguments matter; options before the script are few. */
    enum { MAX_ARGS = 32 };
    char copy[1024];
    char *args[MAX_ARGS];
    int argc = 0;
    size_t n = len < sizeof(copy) - 1 ? len : sizeof(copy) - 1;
    memcpy(copy, argv, n);
    copy[n] = '\0';
    for (size_t i = 0; i < n && argc < MAX_ARGS; i += strlen(copy + i) + 1)
        args[argc++] = copy + i;

    const char *name = comm;
    size_t nlen = strlen(comm);
    size_t a0len = 0;
    const char *a0 = argc > 0 ? base_name(args[0], &a0len) : "";
    if (is_python(comm, strlen(comm)) || is_python(a0, a0len)) {
        const char *what;
        bool is_module;
        int at;
        python_target(args, argc, &what, &is_module, &at);
        size_t wlen = 0;
        if (what != NULL && !is_module && at + 1 < argc &&
            strcmp(base_name(what, &wlen), PROBE_LAUNCHER) == 0) {
            /*
             * "python3 apm-run python3 app.py" before the launcher's exec:
             * the process is about to become app.py, so call it that now.
             */
            size_t off = (size_t)(args[at + 1] - copy);
            size_t clen = 0;
            const char *wcomm = base_name(args[at + 1], &clen);
            char wc[64];
            snprintf(wc, sizeof(wc), "%.*s", (int)clen, wcomm);
            apm_sampler_name(wc, copy + off, n - off, out, size);
            return;
        }
        if (what != NULL && what[0] != '\0') {
            if (is_module) {
                name = what;
                nlen = strlen(what);
            } else {
                name = base_name(what, &nlen);
            }
        }
    }
    size_t pos = 0;
    out[0] = '\0';
    append_clean(out, size, &pos, name, nlen, '?');
}
