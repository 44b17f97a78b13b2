#include "common/wire/prom.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"

/* The exported name of each stored metric; the per-site ones stay out (unbounded). */
static const char *const metric_names[APM_METRIC_COUNT] = {
    [APM_METRIC_RSS] = "apm_process_rss_bytes",
    [APM_METRIC_PSS] = "apm_process_pss_bytes",
    [APM_METRIC_USS] = "apm_process_uss_bytes",
    [APM_METRIC_SWAP] = "apm_process_swap_bytes",
    [APM_METRIC_CGROUP_USAGE] = "apm_process_cgroup_usage_bytes",
    [APM_METRIC_CGROUP_LIMIT] = "apm_process_cgroup_limit_bytes",
    [APM_METRIC_MEM_AVAILABLE] = "apm_host_mem_available_bytes",
    [APM_METRIC_MEM_TOTAL] = "apm_host_mem_total_bytes",
    [APM_METRIC_TRACED] = "apm_process_traced_bytes",
    [APM_METRIC_GC_COLLECTIONS] = "apm_process_gc_collections",
    [APM_METRIC_GC_COLLECTED] = "apm_process_gc_collected",
    [APM_METRIC_GC_UNCOLLECTABLE] = "apm_process_gc_uncollectable",
    [APM_METRIC_GC_GARBAGE] = "apm_process_gc_garbage",
};

size_t apm_prom_process_labels(struct apm_prom_process_labels *out, const char *host,
                               const char *process_id, const char *name, int32_t pid)
{
    snprintf(out->pid, sizeof(out->pid), "%" PRId32, pid);
    out->l[0] = (struct apm_prom_label){"host", host != NULL ? host : ""};
    out->l[1] = (struct apm_prom_label){"name", name != NULL ? name : ""};
    out->l[2] = (struct apm_prom_label){"pid", out->pid};
    out->l[3] = (struct apm_prom_label){"process", process_id != NULL ? process_id : ""};
    return APM_PROM_PROCESS_NLABELS;
}

const char *apm_prom_metric_name(enum apm_metric m)
{
    if ((int)m <= 0 || m >= APM_METRIC_COUNT)
        return NULL;
    return metric_names[m];
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0 && (n == k || s[n - k - 1] == '_');
}

/* The base unit a registry unit is exported in, and the factor to it. */
static const char *base_unit(const char *unit, double *scale)
{
    *scale = 1;
    if (strcmp(unit, "microseconds") == 0)
        *scale = 1e-6;
    else if (strcmp(unit, "milliseconds") == 0)
        *scale = 1e-3;
    return *scale != 1 ? "seconds" : unit;
}

double apm_prom_counter_scale(const struct apm_counter *c)
{
    double scale;
    base_unit(c->unit, &scale);
    return scale;
}

int apm_prom_counter_name(char *buf, size_t size, const char *module, const struct apm_counter *c)
{
    size_t n = strlen(c->name);
    double scale;
    const char *unit = base_unit(c->unit, &scale);
    bool add_unit = unit[0] != '\0' && !ends_with(c->name, n, unit);
    bool add_total = c->kind == APM_COUNTER_TOTAL && !ends_with(c->name, n, "total");
    int len = snprintf(buf, size, "apm_%s_%s%s%s%s", module, c->name, add_unit ? "_" : "",
                       add_unit ? unit : "", add_total ? "_total" : "");
    if (len < 0 || (size_t)len >= size)
        return APM_E_LIMIT;
    return apm_prom_name_valid(buf) ? 0 : -EINVAL;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool apm_prom_name_valid(const char *s)
{
    if (s == NULL || !(is_alpha(*s) || *s == ':'))
        return false;
    for (const char *p = s + 1; *p; p++) {
        if (!is_alpha(*p) && !is_digit(*p) && *p != ':')
            return false;
    }
    return true;
}

bool apm_prom_label_name_valid(const char *s)
{
    if (s == NULL || !is_alpha(*s) || strncmp(s, "__", 2) == 0)
        return false;
    for (const char *p = s + 1; *p; p++) {
        if (!is_alpha(*p) && !is_digit(*p))
            return false;
    }
    return true;
}

/* Writes s with backslash and newline escaped, and double quote too when quote is set. */
static void write_escaped(FILE *f, const char *s, bool quote)
{
    for (const char *p = s != NULL ? s : ""; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '"' && quote)
            fputs("\\\"", f);
        else
            fputc(*p, f);
    }
}

void apm_prom_write_label_value(FILE *f, const char *s)
{
    write_escaped(f, s, true);
}

void apm_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s ", name);
    write_escaped(f, help, false);
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* The shortest of %.15g, %.16g and %.17g that reads back as v ("0.9", not "0.90000000000000002").
 */
static const char *shortest(double v, char *buf, size_t size)
{
    for (int digits = 15; digits < 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return buf;
    }
    snprintf(buf, size, "%.17g", v);
    return buf;
}

static void write_value(FILE *f, double v)
{
    char buf[32];
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        fprintf(f, "%.0f", v);
    else
        fputs(shortest(v, buf, sizeof(buf)), f);
}

void apm_prom_sample(FILE *f, const char *name, const struct apm_prom_label *l, size_t n,
                     double value)
{
    fputs(name, f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%c%s=\"", i == 0 ? '{' : ',', l[i].name);
        apm_prom_write_label_value(f, l[i].value);
        fputc('"', f);
    }
    fputs(n > 0 ? "} " : " ", f);
    write_value(f, value);
    fputc('\n', f);
}

#define HIST_MAX_LABELS 7u

void apm_prom_histogram(FILE *f, const char *name, const struct apm_prom_label *l, size_t n,
                        const struct apm_histogram *h)
{
    struct apm_prom_label all[HIST_MAX_LABELS + 1];
    char series[128], le[32];
    if (n > HIST_MAX_LABELS)
        n = HIST_MAX_LABELS;
    for (size_t i = 0; i < n; i++)
        all[i] = l[i];
    all[n] = (struct apm_prom_label){"le", le};
    snprintf(series, sizeof(series), "%s_bucket", name);
    uint64_t cumulative = 0;
    for (unsigned i = 0; i < APM_HISTOGRAM_BUCKETS; i++) {
        cumulative += h->bucket[i];
        snprintf(le, sizeof(le), "%g", (double)apm_histogram_bounds_us[i] / 1e6);
        apm_prom_sample(f, series, all, n + 1, (double)cumulative);
    }
    snprintf(le, sizeof(le), "+Inf");
    apm_prom_sample(f, series, all, n + 1, (double)h->count);
    snprintf(series, sizeof(series), "%s_sum", name);
    apm_prom_sample(f, series, l, n, (double)h->sum_us / 1e6);
    snprintf(series, sizeof(series), "%s_count", name);
    apm_prom_sample(f, series, l, n, (double)h->count);
}

const struct apm_prom_verdict_family apm_prom_verdict_families[APM_PROM_VERDICT_NFAMILIES] = {
    {APM_PROM_VERDICT_CONFIDENCE,
     "Confidence (0 to 1) in the class of apm_verdict_info of each live process."},
    {APM_PROM_GROWTH_RATE,
     "Growth of each live process's rss floor, bytes per second (0 without a trend)."},
    {APM_PROM_MEMORY_LIMIT,
     "The limit the forecast runs to (cgroup, configured or host memory), bytes; absent when "
     "unknown."},
    {APM_PROM_TTE,
     "Seconds from now until the process reaches its limit, most likely; only for a forecast."},
    {APM_PROM_TTE_LOWER,
     "Earliest plausible time to exhaustion, seconds from now (the fastest plausible growth)."},
    {APM_PROM_TTE_UPPER,
     "Latest plausible time to exhaustion, seconds from now; +Inf when growth may be nil."},
};

/* Seconds from now to the Unix time t, never below 0; +Inf stays +Inf. */
static double seconds_left(double t, double now_s)
{
    if (isinf(t) && t > 0)
        return t;
    return t > now_s ? t - now_s : 0;
}

bool apm_prom_verdict_value(const struct apm_verdict *v, double now_s, size_t k, double *value)
{
    bool forecast = v->has_forecast && isfinite(v->forecast_t);
    switch (k) {
    case 0:
        *value = v->confidence;
        return true;
    case 1:
        *value = v->rate;
        return true;
    case 2:
        *value = v->limit;
        return v->limit > 0;
    case 3:
        *value = seconds_left(v->forecast_t, now_s);
        return forecast;
    case 4:
        *value = seconds_left(v->forecast_lo_t, now_s);
        return forecast;
    case 5:
        *value = seconds_left(v->forecast_hi_t, now_s);
        return forecast;
    default:
        return false;
    }
}
