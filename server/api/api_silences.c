#include "server/api/api_silences.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/alerts/silence.h"

static json_t *silence_json(const struct apm_silence *s, int64_t now_ms)
{
    json_t *ms = json_array();
    for (unsigned i = 0; ms != NULL && i < s->n; i++) {
        char text[APM_SILENCE_MATCHER_TEXT_MAX + 8];
        apm_silence_matcher_format(&s->m[i], text, sizeof(text));
        json_array_append_new(ms, json_pack("{s:s, s:s, s:s, s:s}", "name", s->m[i].name, "op",
                                            apm_silence_op_name(s->m[i].op), "value", s->m[i].value,
                                            "text", text));
    }
    return json_pack("{s:I, s:s, s:o*, s:o, s:o, s:o, s:o, s:s, s:s}", "id", (json_int_t)s->id,
                     "state", apm_silence_state_name(apm_silence_state_at(s, now_ms)), "matchers",
                     ms, "starts_at", apm_api_time(s->starts_ms), "ends_at",
                     apm_api_time(s->ends_ms), "created_at", apm_api_time(s->created_ms),
                     "updated_at", apm_api_time(s->updated_ms), "created_by", s->created_by,
                     "comment", s->comment);
}

static int get_silences(const struct apm_api_call *call, json_t **out)
{
    int st = apm_api_check_params(call, NULL, out);
    if (st != 0)
        return st;
    size_t n = apm_alerts_silence_list(call->ctx, NULL, 0);
    struct apm_silence *list = calloc(n > 0 ? n : 1, sizeof(*list));
    if (list == NULL)
        return apm_api_error(out, 500, "out of memory");
    /* More may be added between the two calls: take what fits. */
    size_t got = apm_alerts_silence_list(call->ctx, list, n);
    int64_t now = apm_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < got && i < n; i++)
        json_array_append_new(arr, silence_json(&list[i], now));
    free(list);
    *out = json_pack("{s:o}", "silences", arr);
    return *out != NULL ? 200 : apm_api_error(out, 500, "out of memory");
}

/*
 * The route's silence id, after expiring it now when expire: 0 with *s set,
 * or an error status with *out set (400, 404, and 409 for one already ended).
 */
static int route_silence(const struct apm_api_call *call, bool expire, int64_t now,
                         struct apm_silence *s, json_t **out)
{
    uint64_t id = 0;
    int st = apm_api_check_params(call, NULL, out);
    if (st != 0)
        return st;
    if (apm_api_parse_id(call->params[0], &id) != 0 || id == 0)
        return apm_api_error(out, 400, "bad silence id '%.40s': expected a number",
                             call->params[0]);
    int rc = expire ? apm_alerts_silence_expire(call->ctx, id, now) : 0;
    if (rc == APM_E_NOTFOUND || apm_alerts_silence_get(call->ctx, id, s) != 0)
        return apm_api_error(out, 404, "no silence %llu", (unsigned long long)id);
    if (rc == 1)
        return apm_api_error(out, 409, "silence %llu has already ended", (unsigned long long)id);
    return 0;
}

static int answer_silence(const struct apm_api_call *call, bool expire, json_t **out)
{
    struct apm_silence s;
    int64_t now = apm_now_ms();
    int st = route_silence(call, expire, now, &s, out);
    if (st != 0)
        return st;
    *out = silence_json(&s, now);
    return *out != NULL ? 200 : apm_api_error(out, 500, "out of memory");
}

static int get_silence(const struct apm_api_call *call, json_t **out)
{
    return answer_silence(call, false, out);
}

static int delete_silence(const struct apm_api_call *call, json_t **out)
{
    return answer_silence(call, true, out);
}

/* A matcher given as "name=~value" or as {"name": N, "op": "=~", "value": V}. */
static int body_matcher(json_t *j, size_t i, struct apm_silence_matcher *m, json_t **out)
{
    char err[160];
    if (json_is_string(j)) {
        if (apm_silence_matcher_parse(json_string_value(j), m, err, sizeof(err)) != 0)
            return apm_api_error(out, 400, "matchers[%zu]: %s", i, err);
        return 0;
    }
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *op = json_string_value(json_object_get(j, "op"));
    const char *value = json_string_value(json_object_get(j, "value"));
    if (!json_is_object(j) || name == NULL || op == NULL || value == NULL)
        return apm_api_error(out, 400,
                             "matchers[%zu]: a string like \"host=web-3\" or an object "
                             "{\"name\", \"op\", \"value\"}",
                             i);
    memset(m, 0, sizeof(*m));
    bool known = false;
    for (int k = APM_SILENCE_EQ; k <= APM_SILENCE_NRE; k++) {
        if (strcmp(op, apm_silence_op_name((enum apm_silence_op)k)) == 0) {
            m->op = (enum apm_silence_op)k;
            known = true;
        }
    }
    if (!known)
        return apm_api_error(out, 400, "matchers[%zu]: op must be =, !=, =~ or !~", i);
    if (strlen(name) >= sizeof(m->name) || strlen(value) >= sizeof(m->value))
        return apm_api_error(out, 400, "matchers[%zu]: name or value too long", i);
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->value, sizeof(m->value), "%s", value);
    return 0;
}

/* A time in Unix seconds, or a duration ("2h", or seconds as a number). */
static int body_seconds(json_t *j, const char *field, bool duration, int64_t *ms, json_t **out)
{
    if (duration && json_is_string(j)) {
        if (apm_duration_parse(json_string_value(j), ms) != 0)
            return apm_api_error(out, 400, "'%s': '%.40s' is not a duration such as 2h or 90m",
                                 field, json_string_value(j));
        return 0;
    }
    double v = json_number_value(j);
    if (!json_is_number(j) || !isfinite(v) || v < 0 || v > 1e11)
        return apm_api_error(out, 400, "'%s' must be %s", field,
                             duration ? "a duration (\"2h\") or seconds" : "Unix seconds");
    *ms = (int64_t)llround(v * 1000.0);
    return 0;
}

static int body_string(json_t *j, const char *field, char *dst, size_t size, json_t **out)
{
    if (j == NULL)
        return 0;
    if (!json_is_string(j) || strlen(json_string_value(j)) >= size)
        return apm_api_error(out, 400, "'%s' must be a string of at most %zu bytes", field,
                             size - 1);
    snprintf(dst, size, "%s", json_string_value(j));
    return 0;
}

static int parse_body(json_t *body, struct apm_silence *s, int64_t now, json_t **out)
{
    static const char *const members[] = {"matchers", "starts_at",  "ends_at", "duration",
                                          "comment",  "created_by", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; members[i] != NULL; i++)
            ok = ok || strcmp(key, members[i]) == 0;
        if (!ok)
            return apm_api_error(out, 400,
                                 "unknown member '%.40s' (matchers, starts_at, ends_at, duration, "
                                 "comment, created_by)",
                                 key);
    }
    json_t *ms = json_object_get(body, "matchers");
    if (!json_is_array(ms) || json_array_size(ms) == 0 ||
        json_array_size(ms) > APM_SILENCE_MAX_MATCHERS)
        return apm_api_error(out, 400, "'matchers' must be an array of 1 to %u matchers",
                             APM_SILENCE_MAX_MATCHERS);
    size_t i;
    json_array_foreach(ms, i, v)
    {
        int st = body_matcher(v, i, &s->m[i], out);
        if (st != 0)
            return st;
    }
    s->n = (unsigned)json_array_size(ms);
    json_t *start = json_object_get(body, "starts_at"), *end = json_object_get(body, "ends_at");
    json_t *dur = json_object_get(body, "duration");
    s->starts_ms = now;
    int st = start != NULL ? body_seconds(start, "starts_at", false, &s->starts_ms, out) : 0;
    if (st != 0)
        return st;
    if ((end == NULL) == (dur == NULL))
        return apm_api_error(out, 400, "give one of 'ends_at' (Unix seconds) or 'duration'");
    int64_t d = 0;
    if (end != NULL)
        st = body_seconds(end, "ends_at", false, &s->ends_ms, out);
    else if ((st = body_seconds(dur, "duration", true, &d, out)) == 0)
        s->ends_ms = s->starts_ms + d;
    if (st == 0)
        st = body_string(json_object_get(body, "comment"), "comment", s->comment,
                         sizeof(s->comment), out);
    if (st == 0)
        st = body_string(json_object_get(body, "created_by"), "created_by", s->created_by,
                         sizeof(s->created_by), out);
    return st;
}

static int post_silence(const struct apm_api_call *call, json_t **out)
{
    int st = apm_api_check_params(call, NULL, out);
    if (st != 0)
        return st;
    json_error_t jerr;
    json_t *body =
        call->req->body_len > 0 ? json_loadb(call->req->body, call->req->body_len, 0, &jerr) : NULL;
    if (!json_is_object(body)) {
        json_decref(body);
        return apm_api_error(out, 400,
                             "the body must be a JSON object like {\"matchers\": "
                             "[\"alertname=leak\", \"host=web-3\"], \"duration\": \"2h\", "
                             "\"comment\": \"...\"}");
    }
    struct apm_silence *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        json_decref(body);
        return apm_api_error(out, 500, "out of memory");
    }
    int64_t now = apm_now_ms();
    st = parse_body(body, s, now, out);
    json_decref(body);
    char err[256];
    int rc = st == 0 ? apm_alerts_silence_add(call->ctx, s, now, err, sizeof(err)) : 0;
    if (st == 0 && rc == APM_E_LIMIT)
        st = apm_api_error(out, 429, "%s", err);
    else if (st == 0 && rc != 0)
        st = apm_api_error(out, rc == -ENOMEM ? 500 : 400, "%s", err);
    if (st == 0) {
        *out = silence_json(s, now);
        st = *out != NULL ? 200 : apm_api_error(out, 500, "out of memory");
    }
    free(s);
    return st;
}

int apm_api_silences_register(struct apm_api *api, struct apm_alerts *engine)
{
    int rc = apm_api_add_route(api, "GET", "silences", get_silences, engine);
    if (rc == 0)
        rc = apm_api_add_route(api, "POST", "silences", post_silence, engine);
    if (rc == 0)
        rc = apm_api_add_route(api, "GET", "silences/{}", get_silence, engine);
    if (rc == 0)
        rc = apm_api_add_route(api, "DELETE", "silences/{}", delete_silence, engine);
    return rc;
}
