#include "server/api/api_alerts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/timeutil.h"
#include "server/alerts/alert_text.h"

#define DEFAULT_ACK_S (2 * 3600)
#define MAX_ACK_S (365.0 * 86400)

static int parse_filter(const char *s, enum apm_alert_filter *f)
{
    static const struct {
        const char *name;
        enum apm_alert_filter f;
    } names[] = {{"active", APM_FILTER_ACTIVE},
                 {"pending", APM_FILTER_PENDING},
                 {"firing", APM_FILTER_FIRING},
                 {"resolved", APM_FILTER_RESOLVED},
                 {"all", APM_FILTER_ALL}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *f = names[i].f;
            return 0;
        }
    }
    return APM_E_PARSE;
}

static int get_alerts(const struct apm_api_call *call, json_t **out)
{
    static const char *const allowed[] = {"state", "limit", NULL};
    struct apm_alerts *e = call->ctx;
    char buf[64];
    bool has_state = false, has_limit = false;
    enum apm_alert_filter f = APM_FILTER_ACTIVE;
    long long limit = APM_ALERT_MAX_ACTIVE + APM_ALERT_MAX_RESOLVED;
    int st = apm_api_check_params(call, allowed, out);
    if (st == 0)
        st = apm_api_param_str(call, "state", buf, sizeof(buf), &has_state, out);
    if (st == 0 && has_state && parse_filter(buf, &f) != 0)
        st = apm_api_error(out, 400,
                           "parameter 'state' must be firing, pending, resolved, active or all");
    if (st == 0)
        st = apm_api_param_int(call, "limit", 1, limit, &has_limit, &limit, out);
    if (st != 0)
        return st;
    struct apm_alert *list = calloc((size_t)limit, sizeof(*list));
    if (list == NULL)
        return apm_api_error(out, 500, "out of memory");
    size_t n = apm_alerts_list(e, f, list, (size_t)limit);
    int64_t now = apm_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n && i < (size_t)limit; i++)
        json_array_append_new(arr, apm_alert_text_json(&list[i], now));
    free(list);
    *out = json_pack("{s:o, s:b}", "alerts", arr, "truncated", n > (size_t)limit);
    return *out != NULL ? 200 : apm_api_error(out, 500, "out of memory");
}

/* An alert id: a decimal number from 1 (0 is never an alert). */
static int parse_id(const char *s, uint64_t *id)
{
    if (apm_api_parse_id(s, id) != 0 || *id == 0)
        return APM_E_PARSE;
    return 0;
}

static int get_alert(const struct apm_api_call *call, json_t **out)
{
    uint64_t id = 0;
    struct apm_alert a;
    int st = apm_api_check_params(call, NULL, out);
    if (st != 0)
        return st;
    if (parse_id(call->params[0], &id) != 0)
        return apm_api_error(out, 400, "bad alert id '%.40s': expected a number", call->params[0]);
    if (apm_alerts_get(call->ctx, id, &a) != 0)
        return apm_api_error(out, 404, "no alert %llu", (unsigned long long)id);
    *out = apm_alert_text_json(&a, apm_now_ms());
    return *out != NULL ? 200 : apm_api_error(out, 500, "out of memory");
}

static int post_ack(const struct apm_api_call *call, json_t **out)
{
    uint64_t id = 0;
    if (parse_id(call->params[0], &id) != 0)
        return apm_api_error(out, 400, "bad alert id '%.40s': expected a number", call->params[0]);
    double for_s = DEFAULT_ACK_S;
    const char *comment = "";
    json_t *body = NULL;
    if (call->req->body_len > 0) {
        json_error_t jerr;
        body = json_loadb(call->req->body, call->req->body_len, 0, &jerr);
        if (!json_is_object(body)) {
            json_decref(body);
            return apm_api_error(out, 400,
                                 "the body must be a JSON object like "
                                 "{\"for\": 7200, \"comment\": \"...\"}");
        }
        json_t *f = json_object_get(body, "for"), *c = json_object_get(body, "comment");
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
        {
            if (strcmp(key, "for") != 0 && strcmp(key, "comment") != 0) {
                /* key belongs to body: word the answer before letting body go. */
                int st = apm_api_error(out, 400, "unknown member '%.40s' (for, comment)", key);
                json_decref(body);
                return st;
            }
        }
        if (f != NULL && (!json_is_number(f) || !isfinite(json_number_value(f)) ||
                          json_number_value(f) < 0 || json_number_value(f) > MAX_ACK_S)) {
            json_decref(body);
            return apm_api_error(out, 400, "'for' must be seconds from 0 to one year");
        }
        if (c != NULL && !json_is_string(c)) {
            json_decref(body);
            return apm_api_error(out, 400, "'comment' must be a string");
        }
        if (f != NULL)
            for_s = json_number_value(f);
        if (c != NULL)
            comment = json_string_value(c);
    }
    int64_t now = apm_now_ms();
    int rc = apm_alerts_ack(call->ctx, id, (int64_t)llround(for_s * 1000.0), comment, now);
    json_decref(body);
    if (rc != 0)
        return apm_api_error(out, 404, "no alert %llu", (unsigned long long)id);
    struct apm_alert a;
    if (apm_alerts_get(call->ctx, id, &a) != 0)
        return apm_api_error(out, 404, "no alert %llu", (unsigned long long)id);
    *out = apm_alert_text_json(&a, now);
    return *out != NULL ? 200 : apm_api_error(out, 500, "out of memory");
}

int apm_api_alerts_register(struct apm_api *api, struct apm_alerts *engine)
{
    int rc = apm_api_add_route(api, "GET", "alerts", get_alerts, engine);
    if (rc == 0)
        rc = apm_api_add_route(api, "GET", "alerts/{}", get_alert, engine);
    if (rc == 0)
        rc = apm_api_add_route(api, "POST", "alerts/{}/ack", post_ack, engine);
    return rc;
}
