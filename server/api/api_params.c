/*
 * The helpers every API handler answers with (api.h): errors as
 * {"error": "..."}, strings and times as JSON, and the query parameters
 * read the same way by every route (unknown names refused, each value
 * checked against its range).
 */
#include "server/api/api.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/text.h"

int apm_api_error(json_t **out, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote what the client sent: keep them encodable and free of controls. */
    char clean[sizeof(msg)];
    apm_text_clean(clean, sizeof(clean), msg, strlen(msg));
    *out = json_pack("{s:s}", "error", clean);
    return *out ? status : 500;
}

json_t *apm_api_time(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

json_t *apm_api_str(struct apm_api_why *why, const char *field, const char *s)
{
    if (s == NULL)
        s = "";
    json_t *j = json_string(s);
    if (j == NULL && why->text[0] == '\0')
        snprintf(why->text, sizeof(why->text), "could not encode field '%s' as JSON: %s", field,
                 apm_text_utf8_valid(s, strlen(s)) ? "out of memory" : "not valid UTF-8");
    return j;
}

json_t *apm_api_str_or_null(struct apm_api_why *why, const char *field, const char *s)
{
    return (s != NULL && *s != '\0') ? apm_api_str(why, field, s) : json_null();
}

int apm_api_encode_error(json_t **out, const struct apm_api_why *why, const char *what)
{
    if (why->text[0] != '\0')
        return apm_api_error(out, 500, "%s", why->text);
    return apm_api_error(out, 500, "could not encode %s as JSON: out of memory", what);
}

struct param_check {
    const char *const *allowed;
    char bad[64];
};

static int check_one_param(void *ctx, const char *name, size_t len)
{
    struct param_check *pc = ctx;
    for (const char *const *a = pc->allowed; *a != NULL; a++) {
        if (strlen(*a) == len && memcmp(*a, name, len) == 0)
            return 0;
    }
    snprintf(pc->bad, sizeof(pc->bad), "%.*s", (int)(len > 40 ? 40 : len), name);
    return 1;
}

int apm_api_check_params(const struct apm_api_call *call, const char *const *allowed, json_t **out)
{
    if (allowed == NULL) {
        if (call->req->query[0] != '\0')
            return apm_api_error(out, 400, "this endpoint takes no parameters");
        return 0;
    }
    struct param_check pc = {.allowed = allowed, .bad = ""};
    if (apm_http_query_foreach(call->req->query, check_one_param, &pc) != 0)
        return apm_api_error(out, 400, "unknown parameter '%s'", pc.bad);
    return 0;
}

int apm_api_param_str(const struct apm_api_call *call, const char *name, char *buf, size_t size,
                      bool *present, json_t **out)
{
    int rc = apm_http_query_get(call->req->query, name, buf, size);
    *present = rc == 0;
    if (rc == 0 || rc == APM_E_NOTFOUND)
        return 0;
    if (rc == APM_E_LIMIT)
        return apm_api_error(out, 400, "parameter '%s' is too long", name);
    return apm_api_error(out, 400, "parameter '%s' is not properly encoded", name);
}

int apm_api_param_int(const struct apm_api_call *call, const char *name, long long min,
                      long long max, bool *present, long long *value, json_t **out)
{
    char buf[64];
    int st = apm_api_param_str(call, name, buf, sizeof(buf), present, out);
    if (st != 0 || !*present)
        return st;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (buf[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return apm_api_error(out, 400, "parameter '%s' must be an integer from %lld to %lld", name,
                             min, max);
    *value = v;
    return 0;
}

int apm_api_param_num(const struct apm_api_call *call, const char *name, double lo, double hi,
                      bool *present, double *value, json_t **out)
{
    char buf[64];
    int rc = apm_http_query_get(call->req->query, name, buf, sizeof(buf));
    *present = rc == 0;
    if (rc == APM_E_NOTFOUND)
        return 0;
    char *end = NULL;
    double d = rc == 0 ? strtod(buf, &end) : NAN;
    if (rc != 0 || end == buf || *end != '\0' || !isfinite(d) || d < lo || d > hi)
        return apm_api_error(out, 400, "parameter '%s' must be a number from %g to %g", name, lo,
                             hi);
    *value = d;
    return 0;
}

int apm_api_param_time(const struct apm_api_call *call, const char *name, bool *present,
                       int64_t *ms, json_t **out)
{
    char buf[64];
    int st = apm_api_param_str(call, name, buf, sizeof(buf), present, out);
    if (st != 0 || !*present)
        return st;
    char *end = NULL;
    double v = strtod(buf, &end);
    if (buf[0] == '\0' || *end != '\0' || !isfinite(v) || v < 0 || v > 9.0e12)
        return apm_api_error(out, 400, "parameter '%s' must be Unix seconds, e.g. 1700000000.5",
                             name);
    *ms = (int64_t)llround(v * 1000.0);
    return 0;
}

int apm_api_parse_id(const char *s, uint64_t *id)
{
    if (*s == '\0' || strlen(s) > 20)
        return APM_E_PARSE;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return APM_E_PARSE;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return APM_E_PARSE;
        v = v * 10 + d;
    }
    *id = v;
    return 0;
}
