#include "server/alerts/alert_record.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/base/error.h"

#define RECORD_VERSION 1

char *apm_alert_record_encode(const struct apm_alert *a, size_t *len)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "v", json_integer(RECORD_VERSION));
    json_object_set_new(o, "id", json_integer((json_int_t)a->id));
    json_object_set_new(o, "rule", json_string(a->rule));
    json_object_set_new(o, "kind", json_integer(a->kind));
    json_object_set_new(o, "severity", json_integer(a->severity));
    json_object_set_new(o, "state", json_integer(a->state));
    json_object_set_new(o, "series", json_integer((json_int_t)a->series_id));
    json_object_set_new(o, "metric", json_string(a->metric));
    json_object_set_new(o, "host", json_string(a->host));
    json_object_set_new(o, "process", json_string(a->process_id));
    json_object_set_new(o, "name", json_string(a->process_name));
    json_object_set_new(o, "cgroup", json_string(a->cgroup));
    json_object_set_new(o, "pid", json_integer(a->pid));
    json_object_set_new(o, "started", json_integer(a->started_ms));
    json_object_set_new(o, "fired", json_integer(a->fired_ms));
    json_object_set_new(o, "resolved", json_integer(a->resolved_ms));
    json_object_set_new(o, "seen", json_integer(a->seen_ms));
    json_object_set_new(o, "off_since", json_integer(a->off_since_ms));
    json_object_set_new(o, "interval", json_real(a->interval_s));
    json_object_set_new(o, "class", json_string(a->cls));
    json_object_set_new(o, "confidence", json_real(a->confidence));
    json_object_set_new(o, "rate", json_real(a->rate));
    json_object_set_new(o, "value", json_real(a->value));
    json_object_set_new(o, "limit", json_real(a->limit));
    json_object_set_new(o, "limit_source", json_string(a->limit_source));
    json_object_set_new(o, "has_forecast", json_boolean(a->has_forecast));
    json_object_set_new(o, "fc", json_real(a->forecast_t));
    json_object_set_new(o, "fc_lo", json_real(a->forecast_lo_t));
    /* JSON has no infinity: a negative upper bound means "never". */
    json_object_set_new(o, "fc_hi", json_real(isfinite(a->forecast_hi_t) ? a->forecast_hi_t : -1));
    json_object_set_new(o, "suspect", json_string(a->suspect));
    json_object_set_new(o, "suspect_rate", json_real(a->suspect_rate));
    json_object_set_new(o, "suspect_rate_err", json_real(a->suspect_rate_err));
    json_object_set_new(o, "native", json_integer(a->native));
    json_object_set_new(o, "restarted", json_boolean(a->restarted_at_limit));
    json_object_set_new(o, "growing_for", json_real(a->growing_for_s));
    json_object_set_new(o, "doubt", json_string(a->doubt));
    json_object_set_new(o, "doubt_left",
                        json_real(isfinite(a->doubt_left_s) ? a->doubt_left_s : -1));
    json_object_set_new(o, "site_share", json_real(a->site_share));
    json_object_set_new(o, "confirmed", json_string(a->confirmed));
    json_object_set_new(o, "site_steady", json_boolean(a->site_steady));
    json_object_set_new(o, "summary", json_string(a->summary));
    json_object_set_new(o, "labels", json_string(a->labels));
    json_object_set_new(o, "ack_until", json_integer(a->ack_until_ms));
    json_object_set_new(o, "ack_comment", json_string(a->ack_comment));
    json_object_set_new(o, "notified", json_integer(a->notified));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

static void get_str(json_t *o, const char *k, char *dst, size_t size)
{
    const char *s = json_string_value(json_object_get(o, k));
    snprintf(dst, size, "%s", s != NULL ? s : "");
}

static int64_t get_int(json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static double get_real(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

int apm_alert_record_decode(const void *data, size_t len, struct apm_alert *out)
{
    json_error_t jerr;
    json_t *o = json_loadb(data, len, 0, &jerr);
    if (!json_is_object(o) || get_int(o, "v") != RECORD_VERSION) {
        json_decref(o);
        return APM_E_PARSE;
    }
    memset(out, 0, sizeof(*out));
    int64_t kind = get_int(o, "kind"), sev = get_int(o, "severity"), st = get_int(o, "state");
    int64_t notified = get_int(o, "notified");
    if (kind < 0 || kind > APM_ALERT_NATIVE || sev < 0 || sev > APM_SEVERITY_CRITICAL || st < 0 ||
        st > APM_ALERT_RESOLVED || notified < 0 || notified > APM_ALERT_RESOLVED) {
        json_decref(o);
        return APM_E_PARSE;
    }
    out->id = (uint64_t)get_int(o, "id");
    get_str(o, "rule", out->rule, sizeof(out->rule));
    out->kind = (enum apm_alert_kind)kind;
    out->severity = (enum apm_alert_severity)sev;
    out->state = (enum apm_alert_state)st;
    out->series_id = (uint64_t)get_int(o, "series");
    get_str(o, "metric", out->metric, sizeof(out->metric));
    get_str(o, "host", out->host, sizeof(out->host));
    get_str(o, "process", out->process_id, sizeof(out->process_id));
    get_str(o, "name", out->process_name, sizeof(out->process_name));
    get_str(o, "cgroup", out->cgroup, sizeof(out->cgroup));
    out->pid = (int32_t)get_int(o, "pid");
    out->started_ms = get_int(o, "started");
    out->fired_ms = get_int(o, "fired");
    out->resolved_ms = get_int(o, "resolved");
    out->seen_ms = get_int(o, "seen");
    out->off_since_ms = get_int(o, "off_since");
    out->interval_s = get_real(o, "interval");
    get_str(o, "class", out->cls, sizeof(out->cls));
    out->confidence = get_real(o, "confidence");
    out->rate = get_real(o, "rate");
    out->value = get_real(o, "value");
    out->limit = get_real(o, "limit");
    get_str(o, "limit_source", out->limit_source, sizeof(out->limit_source));
    out->has_forecast = json_is_true(json_object_get(o, "has_forecast"));
    out->forecast_t = get_real(o, "fc");
    out->forecast_lo_t = get_real(o, "fc_lo");
    double hi = get_real(o, "fc_hi");
    out->forecast_hi_t = hi < 0 ? INFINITY : hi;
    get_str(o, "suspect", out->suspect, sizeof(out->suspect));
    out->suspect_rate = get_real(o, "suspect_rate");
    out->suspect_rate_err = get_real(o, "suspect_rate_err"); /* 0 in older records */
    out->native = (int)get_int(o, "native");
    out->restarted_at_limit = json_is_true(json_object_get(o, "restarted"));
    /* Records written before these facts existed read as "unknown". */
    out->growing_for_s = get_real(o, "growing_for");
    get_str(o, "doubt", out->doubt, sizeof(out->doubt));
    json_t *left = json_object_get(o, "doubt_left");
    out->doubt_left_s =
        json_is_number(left) && json_number_value(left) >= 0 ? json_number_value(left) : NAN;
    out->site_share = get_real(o, "site_share");
    get_str(o, "confirmed", out->confirmed, sizeof(out->confirmed));
    out->site_steady = json_is_true(json_object_get(o, "site_steady"));
    get_str(o, "summary", out->summary, sizeof(out->summary));
    get_str(o, "labels", out->labels, sizeof(out->labels));
    out->ack_until_ms = get_int(o, "ack_until");
    get_str(o, "ack_comment", out->ack_comment, sizeof(out->ack_comment));
    out->notified = (enum apm_alert_state)notified;
    json_decref(o);
    return out->id > 0 ? 0 : APM_E_PARSE;
}
