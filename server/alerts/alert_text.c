#include "server/alerts/alert_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/base/timeutil.h"
#include "common/base/units.h"

/* Appends formatted text to buf of size bytes at *len, truncating quietly. */
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

static const char *or_unknown(const char *s)
{
    return s[0] != '\0' ? s : "?";
}

static char *limit_text(const struct apm_alert *a, char *buf, size_t size)
{
    char b[32];
    if (a->limit_source[0] != '\0')
        snprintf(buf, size, "%s %s limit", apm_units_bytes(a->limit, 0, b, sizeof(b)),
                 a->limit_source);
    else
        snprintf(buf, size, "%s limit", apm_units_bytes(a->limit, 0, b, sizeof(b)));
    return buf;
}

char *apm_alert_text_forecast(const struct apm_alert *a, double now_s, char *buf, size_t size)
{
    char lim[64], mid[32], lo[32], hi[32];
    if (!a->has_forecast || a->limit <= 0) {
        snprintf(buf, size, "no forecast: %s",
                 a->limit > 0 ? "no growth trend" : "no memory limit known");
        return buf;
    }
    apm_duration_format(fmax(0.0, a->forecast_t - now_s), mid, sizeof(mid));
    apm_duration_format(fmax(0.0, a->forecast_lo_t - now_s), lo, sizeof(lo));
    if (isfinite(a->forecast_hi_t))
        apm_duration_format(fmax(0.0, a->forecast_hi_t - now_s), hi, sizeof(hi));
    else
        snprintf(hi, sizeof(hi), "never");
    snprintf(buf, size, "%s in %s (%s - %s)", limit_text(a, lim, sizeof(lim)), mid, lo, hi);
    return buf;
}

/* The suspect's rate, "+31 MiB/h", or for a sampled estimate "+31 MiB/h ± 4 %". */
static char *suspect_rate(const struct apm_alert *a, char *buf, size_t size)
{
    char r[48];
    apm_units_rate(a->suspect_rate, APM_UNITS_PLUS, r, sizeof(r));
    if (a->suspect_rate_err > 0 && a->suspect_rate != 0)
        snprintf(buf, size, "%s \u00b1 %.0f %%", r,
                 fmax(1.0, 100.0 * a->suspect_rate_err / fabs(a->suspect_rate)));
    else
        snprintf(buf, size, "%s", r);
    return buf;
}

char *apm_alert_text_suspect(const struct apm_alert *a, char *buf, size_t size)
{
    char r[64];
    if (a->suspect[0] == '\0')
        snprintf(buf, size, "none yet");
    else
        snprintf(buf, size, "%s %s", a->suspect, suspect_rate(a, r, sizeof(r)));
    return buf;
}

/* The first clause: what happens to which process. */
static void what(const struct apm_alert *a, char *buf, size_t size, size_t *len)
{
    char r[48], v[32], x[32], lim[64];
    const char *name = or_unknown(a->process_name);
    if (a->process_id[0] == '\0')
        append(buf, size, len, "host `%s`", or_unknown(a->host));
    else
        append(buf, size, len, "`%s` (pid %d) on `%s`", name, (int)a->pid, or_unknown(a->host));
    switch (a->kind) {
    case APM_ALERT_THRESHOLD:
        append(buf, size, len, " uses %s", apm_units_bytes(a->value, 0, v, sizeof(v)));
        if (a->limit > 0)
            append(buf, size, len, " (%.0f%% of its %s)", 100.0 * a->value / a->limit,
                   limit_text(a, lim, sizeof(lim)));
        append(buf, size, len, ", above rule `%s`", a->rule);
        if (a->rate > 0)
            append(buf, size, len, ", growing ~%s", apm_units_rate(a->rate, 0, r, sizeof(r)));
        return;
    case APM_ALERT_BLOAT:
        append(buf, size, len, " jumped to %s in one step (bloat, not a steady leak)",
               apm_units_bytes(a->value, 0, x, sizeof(x)));
        return;
    case APM_ALERT_LEAK:
    case APM_ALERT_EXHAUSTION:
    case APM_ALERT_NATIVE:
        break;
    }
    /* Only a leak that is called one "leaks"; a growth not yet judged "grows". */
    bool called = a->kind == APM_ALERT_LEAK || strcmp(a->cls, "leak") == 0 || a->cls[0] == '\0';
    if (a->rate > 0)
        append(buf, size, len, " %s ~%s", called ? "leaks" : "grows",
               apm_units_rate(a->rate, 0, r, sizeof(r)));
    else
        append(buf, size, len, " grows toward its limit");
    append(buf, size, len, " (now %s)", apm_units_bytes(a->value, 0, v, sizeof(v)));
}

/* How long it has grown and what the analysis still doubts. */
static void how_sure(const struct apm_alert *a, char *buf, size_t size, size_t *len)
{
    char d[32];
    if (a->growing_for_s > 0)
        append(buf, size, len, "; growing for %s",
               apm_duration_format(a->growing_for_s, d, sizeof(d)));
    if (a->doubt[0] == '\0')
        return;
    append(buf, size, len, "%sno leak verdict yet (%s doubt", a->growing_for_s > 0 ? ", " : "; ",
           a->doubt);
    if (isfinite(a->doubt_left_s))
        append(buf, size, len, " for %s more", apm_duration_format(a->doubt_left_s, d, sizeof(d)));
    append(buf, size, len, ")");
}

char *apm_alert_text_summary(const struct apm_alert *a, char *buf, size_t size)
{
    size_t len = 0;
    char lim[64], mid[32], lo[32], hi[32], sus[320];
    buf[0] = '\0';
    what(a, buf, size, &len);
    double now_s = (double)a->seen_ms / 1000.0;
    if (a->has_forecast && a->limit > 0 && a->kind != APM_ALERT_BLOAT) {
        apm_duration_format(fmax(0.0, a->forecast_t - now_s), mid, sizeof(mid));
        apm_duration_format(fmax(0.0, a->forecast_lo_t - now_s), lo, sizeof(lo));
        if (isfinite(a->forecast_hi_t)) {
            apm_duration_format(fmax(0.0, a->forecast_hi_t - now_s), hi, sizeof(hi));
            append(buf, size, &len, ", will hit its %s in %s (%s - %s)",
                   limit_text(a, lim, sizeof(lim)), mid, lo, hi);
        } else {
            append(buf, size, &len, ", may hit its %s in %s (%s at the earliest)",
                   limit_text(a, lim, sizeof(lim)), mid, lo);
        }
    }
    if (a->kind != APM_ALERT_BLOAT)
        how_sure(a, buf, size, &len);
    if (a->suspect[0] != '\0') {
        append(buf, size, &len, "; top suspect `%s` %s", a->suspect,
               suspect_rate(a, sus, sizeof(sus)));
        if (a->site_share > 0 && a->kind != APM_ALERT_BLOAT)
            append(buf, size, &len, " accounts for %.0f %% of the growth%s",
                   fmin(100.0 * a->site_share, 999.0),
                   strcmp(a->confirmed, "python-site") == 0 ? ", which confirms the leak"
                   : a->site_steady                         ? ", which makes its rate trusted"
                                                            : "");
    }
    if (a->native == 1)
        append(buf, size, &len,
               "; RSS grows but Python's heap does not: native code "
               "or fragmentation");
    else if (a->native == 0)
        append(buf, size, &len, "; Python's heap grows with it");
    if (a->restarted_at_limit)
        append(buf, size, &len, "; it replaced a process of its name that reached its limit");
    return buf;
}

static json_t *time_or_null(int64_t ms)
{
    return ms > 0 ? json_real((double)ms / 1000.0) : json_null();
}

static json_t *real_or_null(bool ok, double v)
{
    return ok && isfinite(v) ? json_real(v) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s[0] != '\0' ? json_string(s) : json_null();
}

/* "k=v,k=v" as an object. */
static json_t *labels_json(const char *labels)
{
    json_t *o = json_object();
    const char *p = labels;
    while (o != NULL && *p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (eq != NULL) {
            char k[128], v[256];
            snprintf(k, sizeof(k), "%.*s", (int)(eq - p), p);
            snprintf(v, sizeof(v), "%.*s", (int)(n - (size_t)(eq - p) - 1), eq + 1);
            json_object_set_new(o, k, json_string(v));
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return o;
}

json_t *apm_alert_text_json(const struct apm_alert *a, int64_t now_ms)
{
    char fc[256], sus[320];
    double now_s = (double)(a->seen_ms > 0 ? a->seen_ms : now_ms) / 1000.0;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "id", json_integer((json_int_t)a->id));
    json_object_set_new(o, "rule", json_string(a->rule));
    json_object_set_new(o, "kind", json_string(apm_alert_kind_name(a->kind)));
    json_object_set_new(o, "severity", json_string(apm_alert_severity_name(a->severity)));
    json_object_set_new(o, "state", json_string(apm_alert_state_name(a->state)));
    json_object_set_new(o, "summary", json_string(a->summary));
    json_object_set_new(o, "host", json_string(a->host));
    json_object_set_new(o, "process", str_or_null(a->process_id));
    json_object_set_new(o, "name", str_or_null(a->process_name));
    json_object_set_new(o, "pid", a->pid > 0 ? json_integer(a->pid) : json_null());
    json_object_set_new(o, "cgroup", str_or_null(a->cgroup));
    json_object_set_new(o, "series", json_integer((json_int_t)a->series_id));
    json_object_set_new(o, "metric", json_string(a->metric));
    json_object_set_new(o, "started", time_or_null(a->started_ms));
    json_object_set_new(o, "fired", time_or_null(a->fired_ms));
    json_object_set_new(o, "resolved", time_or_null(a->resolved_ms));
    json_object_set_new(o, "last_seen", time_or_null(a->seen_ms));
    json_object_set_new(o, "class", json_string(a->cls));
    json_object_set_new(o, "confidence", json_real(a->confidence));
    json_object_set_new(o, "rate", json_real(a->rate));
    json_object_set_new(o, "value", json_integer((json_int_t)a->value));
    json_object_set_new(o, "limit",
                        a->limit > 0 ? json_integer((json_int_t)a->limit) : json_null());
    json_object_set_new(o, "limit_source", str_or_null(a->limit_source));
    json_t *f = json_object();
    json_object_set_new(f, "text", json_string(apm_alert_text_forecast(a, now_s, fc, sizeof(fc))));
    json_object_set_new(f, "t", real_or_null(a->has_forecast, a->forecast_t));
    json_object_set_new(f, "lo_t", real_or_null(a->has_forecast, a->forecast_lo_t));
    json_object_set_new(f, "hi_t", real_or_null(a->has_forecast, a->forecast_hi_t));
    json_object_set_new(o, "forecast", f);
    json_t *s = json_object();
    json_object_set_new(s, "text", json_string(apm_alert_text_suspect(a, sus, sizeof(sus))));
    json_object_set_new(s, "site", str_or_null(a->suspect));
    json_object_set_new(s, "rate", a->suspect[0] ? json_real(a->suspect_rate) : json_null());
    json_object_set_new(s, "rate_err",
                        a->suspect[0] && a->suspect_rate_err > 0 ? json_real(a->suspect_rate_err)
                                                                 : json_null());
    json_object_set_new(o, "suspect", s);
    json_object_set_new(o, "native", a->native < 0 ? json_null() : json_boolean(a->native == 1));
    json_object_set_new(o, "restarted_at_limit", json_boolean(a->restarted_at_limit));
    json_object_set_new(o, "growing_for",
                        a->growing_for_s > 0 ? json_real(a->growing_for_s) : json_null());
    json_object_set_new(o, "doubt", str_or_null(a->doubt));
    json_object_set_new(o, "site_share",
                        a->site_share > 0 ? json_real(a->site_share) : json_null());
    json_object_set_new(o, "confirmed_by", str_or_null(a->confirmed));
    json_object_set_new(o, "site_steady", json_boolean(a->site_steady));
    json_object_set_new(o, "labels", labels_json(a->labels));
    bool acked = apm_alert_acked(a, now_ms);
    json_object_set_new(o, "acked", json_boolean(acked));
    json_object_set_new(o, "ack_until", acked ? time_or_null(a->ack_until_ms) : json_null());
    json_object_set_new(o, "ack_comment", acked ? str_or_null(a->ack_comment) : json_null());
    json_object_set_new(o, "silenced", json_boolean(a->silenced_by != 0));
    json_object_set_new(o, "silenced_by",
                        a->silenced_by != 0 ? json_integer((json_int_t)a->silenced_by)
                                            : json_null());
    return o;
}
