#include "common/base/config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"

int apm_endpoint_split(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return APM_E_CONFIG;
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= hostlen)
            return APM_E_CONFIG;
        memcpy(host, s + 1, n);
        host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return APM_E_CONFIG;
        size_t n = (size_t)(colon - s);
        if (n >= hostlen || memchr(s, ':', n) != NULL)
            return APM_E_CONFIG;
        memcpy(host, s, n);
        host[n] = '\0';
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535)
        return APM_E_CONFIG;
    *port = (int)p;
    return 0;
}

static int parse_size(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || errno != 0 || d < 0)
        return APM_E_CONFIG;
    double mult = 1;
    if (*end != '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1024.0;
            break;
        case 'm':
        case 'M':
            mult = 1024.0 * 1024;
            break;
        case 'g':
        case 'G':
            mult = 1024.0 * 1024 * 1024;
            break;
        default:
            return APM_E_CONFIG;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end != '\0')
            return APM_E_CONFIG;
    }
    if (d * mult > 9.0e18)
        return APM_E_CONFIG;
    *out = (int64_t)(d * mult);
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return APM_E_CONFIG;
}

int apm_config_set(const struct apm_opt *opt, void *dst, const char *value, char *err,
                   size_t errlen)
{
    char *field = (char *)dst + opt->offset;
    int64_t n = 0;
    switch (opt->type) {
    case APM_OPT_ENDPOINT: {
        char host[256];
        int port;
        if (apm_endpoint_split(value, host, sizeof(host), &port) != 0) {
            snprintf(err, errlen, "'%s' is not HOST:PORT", value);
            return APM_E_CONFIG;
        }
    }
    /* fall through */
    case APM_OPT_STRING:
        if (strlen(value) >= opt->size) {
            snprintf(err, errlen, "value longer than %zu bytes", opt->size - 1);
            return APM_E_CONFIG;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case APM_OPT_BOOL:
        if (parse_bool(value, (bool *)field) != 0) {
            snprintf(err, errlen, "'%s' is not true or false", value);
            return APM_E_CONFIG;
        }
        return 0;
    case APM_OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || errno != 0) {
            snprintf(err, errlen, "'%s' is not an integer", value);
            return APM_E_CONFIG;
        }
        n = v;
        break;
    }
    case APM_OPT_DURATION:
        if (apm_duration_parse(value, &n) != 0) {
            snprintf(err, errlen, "'%s' is not a duration (90, 500ms, 90s, 5m, 1h30m, 7d, 1w)",
                     value);
            return APM_E_CONFIG;
        }
        break;
    case APM_OPT_SIZE:
        if (parse_size(value, &n) != 0) {
            snprintf(err, errlen, "'%s' is not a size (N, NK, NM or NG)", value);
            return APM_E_CONFIG;
        }
        break;
    }
    if (n < opt->min || n > opt->max) {
        snprintf(err, errlen, "'%s' is out of range", value);
        return APM_E_CONFIG;
    }
    memcpy(field, &n, sizeof(n));
    return 0;
}

const struct apm_opt *apm_config_find(const struct apm_opt *opts, const char *section,
                                      const char *key)
{
    for (const struct apm_opt *o = opts; o->key != NULL; o++) {
        if ((section == NULL || strcmp(o->section, section) == 0) && strcmp(o->key, key) == 0)
            return o;
    }
    return NULL;
}

static bool section_known(const struct apm_opt *opts, const char *section)
{
    for (const struct apm_opt *o = opts; o->key != NULL; o++) {
        if (strcmp(o->section, section) == 0)
            return true;
    }
    return false;
}

struct load_ctx {
    const char *path;
    const struct apm_opt *opts;
    void *dst;
    apm_config_section_fn other;
    void *other_ctx;
    char *err;
    size_t errlen;
    int rc;
    FILE *f;
    int lineno; /* lines read so far: the line of the entry being handled */
};

/*
 * Debian's inih is built without line numbers in the handler, so the reader
 * counts lines itself: inih calls it once per line, just before handling it.
 */
static char *read_line(char *str, int num, void *stream)
{
    struct load_ctx *c = stream;
    char *r = fgets(str, num, c->f);
    if (r != NULL)
        c->lineno++;
    return r;
}

static int on_entry(void *user, const char *section, const char *key, const char *value)
{
    struct load_ctx *c = user;
    int lineno = c->lineno;
    char why[512] = "";
    int rc;
    if (section_known(c->opts, section)) {
        const struct apm_opt *o = apm_config_find(c->opts, section, key);
        if (o == NULL) {
            snprintf(why, sizeof(why), "unknown key");
            rc = APM_E_CONFIG;
        } else {
            rc = apm_config_set(o, c->dst, value, why, sizeof(why));
        }
    } else if (c->other != NULL) {
        rc = c->other(c->other_ctx, section, key, value, why, sizeof(why));
    } else {
        snprintf(why, sizeof(why), "unknown section");
        rc = APM_E_CONFIG;
    }
    if (rc != 0) {
        snprintf(c->err, c->errlen, "%s:%d: key '%s' in [%s]: %s", c->path, lineno, key, section,
                 why);
        c->rc = APM_E_CONFIG;
        return 0; /* inih: stop */
    }
    return 1;
}

/* Parses the open stream f (named path in messages) through inih. */
static int load_stream(FILE *f, const char *path, const struct apm_opt *opts, void *dst,
                       apm_config_section_fn other, void *ctx, char *err, size_t errlen)
{
    struct load_ctx c = {path, opts, dst, other, ctx, err, errlen, 0, f, 0};
    int line = ini_parse_stream(read_line, &c, on_entry, &c);
    if (c.rc != 0)
        return c.rc;
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)", path,
                 line);
        return APM_E_CONFIG;
    }
    return 0;
}

int apm_config_load(const char *path, const struct apm_opt *opts, void *dst,
                    apm_config_section_fn other, void *ctx, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = load_stream(f, path, opts, dst, other, ctx, err, errlen);
    fclose(f);
    return rc;
}

int apm_config_load_mem(const char *name, const char *text, size_t len, const struct apm_opt *opts,
                        void *dst, apm_config_section_fn other, void *ctx, char *err, size_t errlen)
{
    if (len == 0)
        return 0; /* an empty file sets nothing (and fmemopen refuses size 0) */
    FILE *f = fmemopen((void *)text, len, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", name, strerror(e));
        return -e;
    }
    int rc = load_stream(f, name, opts, dst, other, ctx, err, errlen);
    fclose(f);
    return rc;
}

const char *apm_config_arg_name(enum apm_opt_type type)
{
    switch (type) {
    case APM_OPT_BOOL:
        return "";
    case APM_OPT_DURATION:
        return "DURATION";
    case APM_OPT_ENDPOINT:
        return "HOST:PORT";
    case APM_OPT_SIZE:
        return "SIZE";
    case APM_OPT_INT:
        return "N";
    case APM_OPT_STRING:
        break;
    }
    return "VALUE";
}

void apm_config_print_help(const struct apm_opt *opts)
{
    for (const struct apm_opt *o = opts; o->key != NULL; o++) {
        if (!o->flag)
            continue;
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", o->key, apm_config_arg_name(o->type));
        printf("  %-28s %s\n", left, o->help);
    }
}

int apm_config_args(const char *prog, int argc, char **argv, const struct apm_opt *opts, void *dst,
                    enum apm_args_pass pass)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, a);
            return APM_E_USAGE;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const struct apm_opt *o = NULL;
        if (n < sizeof(name)) {
            memcpy(name, a + 2, n);
            name[n] = '\0';
            o = apm_config_find(opts, NULL, name);
        }
        if (o == NULL || !o->flag) {
            fprintf(stderr, "%s: unknown flag '%.*s' (see --help)\n", prog, (int)(n + 2), a);
            return APM_E_USAGE;
        }
        const char *value;
        if (eq != NULL)
            value = eq + 1;
        else if (o->type == APM_OPT_BOOL)
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            fprintf(stderr, "%s: flag '--%s' needs a value\n", prog, name);
            return APM_E_USAGE;
        }
        if ((strcmp(name, "config") == 0) != (pass == APM_ARGS_CONFIG))
            continue;
        char err[256];
        if (apm_config_set(o, dst, value, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s: flag '--%s': %s\n", prog, name, err);
            return APM_E_USAGE;
        }
    }
    return 0;
}
