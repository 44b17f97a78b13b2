#include "cli/analyze.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/format.h"
#include "common/base/error.h"

struct file_list {
    char **paths;
    size_t n, cap;
};

static void file_list_close(struct file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->n = l->cap = 0;
}

static int file_list_push(struct file_list *l, const char *dir, const char *name)
{
    if (l->n >= APM_ANALYZE_MAX_FILES)
        return APM_E_LIMIT;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->paths, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        l->paths = p;
        l->cap = cap;
    }
    size_t len = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
    char *s = malloc(len);
    if (!s)
        return -ENOMEM;
    if (dir)
        snprintf(s, len, "%s/%s", dir, name);
    else
        snprintf(s, len, "%s", name);
    l->paths[l->n++] = s;
    return 0;
}

static bool ends_with_csv(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".csv") == 0;
}

/* The trace name: base name without a trailing ".csv". */
static void trace_name(const char *path, char *out, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (ends_with_csv(base))
        n -= 4;
    if (n >= size)
        n = size - 1;
    memcpy(out, base, n);
    out[n] = '\0';
}

static int cmp_trace(const void *a, const void *b)
{
    char na[256], nb[256];
    trace_name(*(char *const *)a, na, sizeof(na));
    trace_name(*(char *const *)b, nb, sizeof(nb));
    return strcmp(na, nb);
}

/* Adds path, or every *.csv in it when it is a directory. */
static int collect(struct file_list *l, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return file_list_push(l, NULL, path);
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && ends_with_csv(e->d_name))
            rc = file_list_push(l, path, e->d_name);
    closedir(d);
    return rc;
}

static void strip_eol(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t')
            return false;
    return true;
}

/* Parses one number field ending at ',' or the end; empty_ok lets "" mean 0. */
static int parse_field(char **cur, double *out, bool empty_ok)
{
    char *s = *cur, *end;
    if (*s == ',' || *s == '\0') {
        if (!empty_ok)
            return -1;
        *out = 0;
    } else {
        errno = 0;
        *out = strtod(s, &end);
        if (end == s || errno == ERANGE || !isfinite(*out))
            return -1;
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end != ',' && *end != '\0')
            return -1;
        s = end;
    }
    while (*s && *s != ',')
        s++;
    *cur = s;
    return 0;
}

/* Returns the number of columns (2 or 3) named by the header, or -1. */
static int parse_header(char *line)
{
    strip_eol(line);
    if (strcmp(line, "t_seconds,rss_bytes") == 0)
        return 2;
    if (strcmp(line, "t_seconds,rss_bytes,limit_bytes") == 0)
        return 3;
    return -1;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        rc = APM_E_PARSE;                                                                          \
        goto out;                                                                                  \
    } while (0)

/*
 * Records the first alert the collector's built-in rules would raise from this verdict, and
 * the forecast made at that moment.
 */
static void note(struct apm_analyze_result *r, const struct apm_verdict *v, double t)
{
    if (r->alerted)
        return;
    const char *rule = apm_verdict_builtin_alert(v);
    if (!rule)
        return;
    r->alerted = true;
    r->rule = rule;
    r->t_alert = t;
    r->has_forecast = v->has_forecast;
    r->forecast_t = v->forecast_t;
    r->forecast_lo_t = v->forecast_lo_t;
    r->forecast_hi_t = v->forecast_hi_t;
}

int apm_cli_analyze_file(const char *path, const struct apm_analysis_config *cfg,
                         struct apm_analyze_result *out, char *err, size_t errlen)
{
    char line[APM_ANALYZE_MAX_LINE + 2];
    struct apm_analysis *a = NULL;
    FILE *f = NULL;
    size_t lineno = 0;
    int rc;

    if (!path || !out || (!err && errlen))
        return -EINVAL;
    if (errlen)
        err[0] = '\0';
    memset(out, 0, sizeof(*out));
    trace_name(path, out->trace, sizeof(out->trace));
    f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    rc = apm_analysis_new(cfg, &a);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, apm_strerror(rc));
        goto out;
    }
    int columns = -1;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len > APM_ANALYZE_MAX_LINE || (len == sizeof(line) - 1 && line[len - 1] != '\n'))
            FAIL("%s:%zu: line longer than %d bytes", path, lineno, APM_ANALYZE_MAX_LINE);
        if (columns < 0) {
            columns = parse_header(line);
            if (columns < 0)
                FAIL("%s:%zu: expected header t_seconds,rss_bytes[,limit_bytes]", path, lineno);
            continue;
        }
        strip_eol(line);
        if (blank(line))
            continue;
        if (out->rows >= APM_ANALYZE_MAX_ROWS)
            FAIL("%s:%zu: more than %d rows", path, lineno, APM_ANALYZE_MAX_ROWS);
        char *cur = line;
        double t, v, limit = 0;
        if (parse_field(&cur, &t, false) < 0)
            FAIL("%s:%zu: t_seconds is not a number", path, lineno);
        if (*cur != ',')
            FAIL("%s:%zu: expected %d fields", path, lineno, columns);
        cur++;
        if (parse_field(&cur, &v, false) < 0)
            FAIL("%s:%zu: rss_bytes is not a number", path, lineno);
        if (columns == 3) {
            if (*cur != ',')
                FAIL("%s:%zu: expected 3 fields", path, lineno);
            cur++;
            if (parse_field(&cur, &limit, true) < 0)
                FAIL("%s:%zu: limit_bytes is not a number", path, lineno);
        }
        if (*cur != '\0')
            FAIL("%s:%zu: expected %d fields", path, lineno, columns);
        if (v < 0 || t < 0 || limit < 0)
            FAIL("%s:%zu: negative value", path, lineno);
        if (apm_analysis_add(a, t, v, limit) < 0)
            FAIL("%s:%zu: sample rejected", path, lineno);
        out->rows++;
        struct apm_verdict vd;
        apm_analysis_verdict(a, &vd);
        note(out, &vd, t);
    }
    if (ferror(f))
        FAIL("%s:%zu: read error", path, lineno + 1);
    if (columns < 0)
        FAIL("%s:1: empty file, expected header t_seconds,rss_bytes[,limit_bytes]", path);
    struct apm_verdict vd;
    apm_analysis_verdict(a, &vd);
    out->cls = vd.cls;
    out->confidence = vd.confidence;
    rc = 0;
out:
    apm_analysis_free(a);
    fclose(f);
    return rc;
}

static void print_time(FILE *o, bool ok, double t)
{
    if (ok && isfinite(t))
        fprintf(o, "%.1f", t);
    else
        fputs("null", o);
}

static void print_json(FILE *o, const struct apm_analyze_result *r)
{
    bool fc = r->alerted && r->has_forecast;
    fputs("{\"trace\": \"", o);
    for (const char *c = r->trace; *c; c++) {
        if (*c == '"' || *c == '\\')
            fputc('\\', o);
        if ((unsigned char)*c < 0x20)
            fprintf(o, "\\u%04x", (unsigned char)*c);
        else
            fputc(*c, o);
    }
    fputs("\", \"kind\": \"leak\", \"t_alert\": ", o);
    print_time(o, r->alerted, r->t_alert);
    fputs(", \"predicted_exhaustion_t\": ", o);
    print_time(o, fc, r->forecast_t);
    fputs(", \"predicted_exhaustion_lo_t\": ", o);
    print_time(o, fc, r->forecast_lo_t);
    fputs(", \"predicted_exhaustion_hi_t\": ", o);
    print_time(o, fc, r->forecast_hi_t);
    if (r->alerted && r->rule)
        fprintf(o, ", \"alert\": \"%s\"", r->rule);
    fprintf(o, ", \"class\": \"%s\", \"confidence\": %.3f}\n", apm_analysis_class_name(r->cls),
            r->confidence);
}

static void cell_time(char *buf, size_t size, bool ok, double t)
{
    if (ok && isfinite(t))
        snprintf(buf, size, "%.0f", t);
    else
        snprintf(buf, size, "-");
}

static void print_row(FILE *o, const struct apm_analyze_result *r)
{
    char ta[32], fc[32], lo[32], hi[32];
    bool f = r->alerted && r->has_forecast;
    cell_time(ta, sizeof(ta), r->alerted, r->t_alert);
    cell_time(fc, sizeof(fc), f, r->forecast_t);
    cell_time(lo, sizeof(lo), f, r->forecast_lo_t);
    cell_time(hi, sizeof(hi), f, r->forecast_hi_t);
    /* A file name is shown, not obeyed: its control characters are escaped like a peer's. */
    char name[256];
    apm_cli_escape(r->trace, name, sizeof(name));
    fprintf(o, "%-40s %-9s %5.2f %12s %12s %12s %12s\n", name, apm_analysis_class_name(r->cls),
            r->confidence, ta, fc, lo, hi);
}

static void usage_to(FILE *out)
{
    fputs("usage: apm-cli analyze [--sensitivity early|balanced|quiet] [--json] PATH...\n"
          "  PATH is a CSV file (t_seconds,rss_bytes[,limit_bytes]) or a directory of them.\n"
          "  --tuning=SPEC overrides the analysis thresholds, for benchmarks only\n"
          "  (tests/bench/leave_one_kind_out.py).\n",
          out);
}

static void usage(void)
{
    usage_to(stderr);
}

int apm_cli_analyze(int argc, char **argv, bool json)
{
    struct apm_analysis_config cfg;
    struct file_list files = {0};
    int status = 0;

    apm_analysis_config_init(&cfg);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *sens = NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage_to(stdout);
            goto out;
        } else if (strcmp(arg, "--sensitivity") == 0) {
            if (i + 1 >= argc) {
                usage();
                status = 1;
                goto out;
            }
            sens = argv[++i];
        } else if (strncmp(arg, "--sensitivity=", 14) == 0) {
            sens = arg + 14;
        } else if (strncmp(arg, "--tuning=", 9) == 0) {
            /* Threshold overrides for benchmarks (tests/bench/leave_one_kind_out.py). */
            cfg.tuning = arg + 9;
            continue;
        } else if (strcmp(arg, "--json") == 0) {
            json = true;
            continue;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "apm-cli analyze: unknown option %s\n", arg);
            usage();
            status = 1;
            goto out;
        } else {
            int rc = collect(&files, arg);
            if (rc < 0) {
                fprintf(stderr, "%s: %s\n", arg,
                        rc == APM_E_LIMIT ? "too many files" : apm_strerror(rc));
                status = 1;
            }
            continue;
        }
        if (apm_analysis_sensitivity_parse(sens, &cfg.sensitivity) < 0) {
            fprintf(stderr, "apm-cli analyze: sensitivity must be early, balanced or quiet\n");
            status = 1;
            goto out;
        }
    }
    if (files.n == 0) {
        if (status == 0)
            usage();
        status = 1;
        goto out;
    }
    qsort(files.paths, files.n, sizeof(*files.paths), cmp_trace);
    if (!json)
        printf("%-40s %-9s %5s %12s %12s %12s %12s\n", "trace", "class", "conf", "t_alert",
               "exhaustion", "earliest", "latest");
    for (size_t i = 0; i < files.n; i++) {
        struct apm_analyze_result r;
        char err[512];
        if (apm_cli_analyze_file(files.paths[i], &cfg, &r, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            status = 1;
            continue;
        }
        if (json)
            print_json(stdout, &r);
        else
            print_row(stdout, &r);
    }
    fflush(stdout);
out:
    file_list_close(&files);
    return status;
}
