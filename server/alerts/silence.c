/*
 * Silences by label matcher (silence.h): the matcher syntax, validation,
 * matching an alert's labels, the stored record, and the set the engine
 * keeps. Regexes are anchored (a matcher matches the whole value, as in
 * Prometheus and Alertmanager) and compiled through common/base/regex_limit.h,
 * so that a silence from the API cannot make regcomp exhaust memory.
 */
#include "server/alerts/silence.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/regex_limit.h"
#include "common/base/text.h"

#define RECORD_VERSION 1

const char *apm_silence_op_name(enum apm_silence_op op)
{
    static const char *const names[] = {"=", "!=", "=~", "!~"};
    return (unsigned)op < 4 ? names[op] : "?";
}

const char *apm_silence_state_name(enum apm_silence_state s)
{
    static const char *const names[] = {"pending", "active", "expired"};
    return (unsigned)s < 3 ? names[s] : "?";
}

enum apm_silence_state apm_silence_state_at(const struct apm_silence *s, int64_t now_ms)
{
    if (now_ms >= s->ends_ms)
        return APM_SILENCE_EXPIRED;
    return now_ms < s->starts_ms ? APM_SILENCE_PENDING : APM_SILENCE_ACTIVE;
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

static bool valid_name(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (size_t i = 0; s[i] != '\0'; i++)
        if (!name_char(s[i], i == 0))
            return false;
    return true;
}

/* Unquotes "..." (\" and \\ escaped) into dst; a value without quotes is copied. */
static int unquote(const char *v, char *dst, size_t size, char *err, size_t errlen)
{
    size_t len = strlen(v);
    if (len == 0 || v[0] != '"') {
        if (len >= size) {
            snprintf(err, errlen, "value longer than %zu bytes", size - 1);
            return APM_E_PARSE;
        }
        memcpy(dst, v, len + 1);
        return 0;
    }
    size_t w = 0;
    for (size_t i = 1; i < len; i++) {
        char c = v[i];
        if (c == '"') {
            if (i + 1 != len) {
                snprintf(err, errlen, "text after the closing quote of the value");
                return APM_E_PARSE;
            }
            dst[w] = '\0';
            return 0;
        }
        if (c == '\\') {
            if (i + 1 >= len || (v[i + 1] != '"' && v[i + 1] != '\\')) {
                snprintf(err, errlen, "in a quoted value only \\\" and \\\\ are escapes");
                return APM_E_PARSE;
            }
            c = v[++i];
        }
        if (w + 1 >= size) {
            snprintf(err, errlen, "value longer than %zu bytes", size - 1);
            return APM_E_PARSE;
        }
        dst[w++] = c;
    }
    snprintf(err, errlen, "the value's quote is not closed");
    return APM_E_PARSE;
}

int apm_silence_matcher_parse(const char *text, struct apm_silence_matcher *m, char *err,
                              size_t errlen)
{
    memset(m, 0, sizeof(*m));
    size_t n = 0;
    while (name_char(text[n], n == 0))
        n++;
    if (n == 0) {
        snprintf(err, errlen, "a matcher starts with a label name ([A-Za-z_][A-Za-z0-9_]*)");
        return APM_E_PARSE;
    }
    if (n >= sizeof(m->name)) {
        snprintf(err, errlen, "label name longer than %zu bytes", sizeof(m->name) - 1);
        return APM_E_PARSE;
    }
    memcpy(m->name, text, n);
    const char *p = text + n;
    if (strncmp(p, "=~", 2) == 0) {
        m->op = APM_SILENCE_RE;
        p += 2;
    } else if (strncmp(p, "!~", 2) == 0) {
        m->op = APM_SILENCE_NRE;
        p += 2;
    } else if (strncmp(p, "!=", 2) == 0) {
        m->op = APM_SILENCE_NE;
        p += 2;
    } else if (*p == '=') {
        m->op = APM_SILENCE_EQ;
        p++;
    } else {
        snprintf(err, errlen, "after label '%s' comes an operator: =, !=, =~ or !~", m->name);
        return APM_E_PARSE;
    }
    char why[96];
    if (unquote(p, m->value, sizeof(m->value), why, sizeof(why)) != 0) {
        snprintf(err, errlen, "label '%s': %s", m->name, why);
        return APM_E_PARSE;
    }
    return 0;
}

char *apm_silence_matcher_format(const struct apm_silence_matcher *m, char *buf, size_t size)
{
    size_t w = (size_t)snprintf(buf, size, "%s%s\"", m->name, apm_silence_op_name(m->op));
    for (const char *v = m->value; *v != '\0' && w + 3 < size; v++) {
        if (*v == '"' || *v == '\\')
            buf[w++] = '\\';
        buf[w++] = *v;
    }
    if (w + 1 < size)
        buf[w++] = '"';
    if (size > 0)
        buf[w < size ? w : size - 1] = '\0';
    return buf;
}

static int compile(const struct apm_silence_matcher *m, regex_t *re, char *why, size_t whylen)
{
    char pat[APM_SILENCE_VALUE_MAX + 8];
    snprintf(pat, sizeof(pat), "^(%s)$", m->value);
    return apm_regex_compile(re, pat, REG_EXTENDED | REG_NOSUB, why, whylen);
}

static bool matcher_matches(const struct apm_silence_matcher *m, const regex_t *re,
                            const char *value)
{
    switch (m->op) {
    case APM_SILENCE_EQ:
        return strcmp(value, m->value) == 0;
    case APM_SILENCE_NE:
        return strcmp(value, m->value) != 0;
    case APM_SILENCE_RE:
        return regexec(re, value, 0, NULL, 0) == 0;
    case APM_SILENCE_NRE:
        return regexec(re, value, 0, NULL, 0) != 0;
    }
    return false;
}

static bool clean_text(const char *s)
{
    size_t len = strlen(s);
    if (!apm_text_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

int apm_silence_validate(const struct apm_silence *s, int64_t now_ms, char *err, size_t errlen)
{
    if (s->n == 0 || s->n > APM_SILENCE_MAX_MATCHERS) {
        snprintf(err, errlen, "matchers: give 1 to %u", APM_SILENCE_MAX_MATCHERS);
        return APM_E_PARSE;
    }
    bool narrows = false;
    for (unsigned i = 0; i < s->n; i++) {
        const struct apm_silence_matcher *m = &s->m[i];
        if (!valid_name(m->name)) {
            snprintf(err, errlen, "matchers[%u]: label name '%.64s' is not [A-Za-z_][A-Za-z0-9_]*",
                     i, m->name);
            return APM_E_PARSE;
        }
        if ((unsigned)m->op > APM_SILENCE_NRE || !clean_text(m->value)) {
            snprintf(err, errlen, "matchers[%u]: bad operator or a control character in the value",
                     i);
            return APM_E_PARSE;
        }
        regex_t re;
        bool is_re = m->op == APM_SILENCE_RE || m->op == APM_SILENCE_NRE;
        char why[128];
        if (is_re && compile(m, &re, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "matchers[%u]: bad regular expression for '%s': %s", i, m->name,
                     why);
            return APM_E_PARSE;
        }
        narrows = narrows || !matcher_matches(m, is_re ? &re : NULL, "");
        if (is_re)
            regfree(&re);
    }
    if (!narrows) {
        snprintf(err, errlen,
                 "matchers: every one matches an empty label; at least one must not, "
                 "or the silence would mute every alert");
        return APM_E_PARSE;
    }
    if (s->ends_ms <= s->starts_ms) {
        snprintf(err, errlen, "ends_at: must be after starts_at");
        return APM_E_PARSE;
    }
    if (s->ends_ms <= now_ms) {
        snprintf(err, errlen, "ends_at: is in the past");
        return APM_E_PARSE;
    }
    if (s->ends_ms - s->starts_ms > APM_SILENCE_MAX_DURATION_MS) {
        snprintf(err, errlen, "ends_at: a silence lasts at most 365 days");
        return APM_E_PARSE;
    }
    if (!clean_text(s->created_by)) {
        snprintf(err, errlen, "created_by: not UTF-8 or has a control character");
        return APM_E_PARSE;
    }
    if (!clean_text(s->comment)) {
        snprintf(err, errlen, "comment: not UTF-8 or has a control character");
        return APM_E_PARSE;
    }
    return 0;
}

/* The value of key in "k=v,k=v" labels, copied into buf; NULL when absent. */
static const char *rule_label(const char *labels, const char *key, char *buf, size_t size)
{
    size_t klen = strlen(key);
    for (const char *p = labels; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > klen && p[klen] == '=' && strncmp(p, key, klen) == 0) {
            snprintf(buf, size, "%.*s", (int)(len - klen - 1), p + klen + 1);
            return buf;
        }
        p += len + (end != NULL);
    }
    return NULL;
}

const char *apm_silence_alert_label(const struct apm_alert *a, const char *name, char *buf,
                                    size_t size)
{
    if (strcmp(name, "alertname") == 0 || strcmp(name, "rule") == 0)
        return a->rule;
    if (strcmp(name, "severity") == 0)
        return apm_alert_severity_name(a->severity);
    if (strcmp(name, "kind") == 0)
        return apm_alert_kind_name(a->kind);
    if (strcmp(name, "host") == 0)
        return a->host;
    if (strcmp(name, "process") == 0 || strcmp(name, "name") == 0)
        return a->process_name;
    if (strcmp(name, "process_id") == 0)
        return a->process_id;
    if (strcmp(name, "metric") == 0)
        return a->metric;
    if (strcmp(name, "pid") == 0) {
        if (a->process_id[0] == '\0')
            return "";
        snprintf(buf, size, "%" PRId32, a->pid);
        return buf;
    }
    const char *v = rule_label(a->labels, name, buf, size);
    return v != NULL ? v : "";
}

/* ---- the record ---- */

char *apm_silence_record_encode(const struct apm_silence *s, size_t *len)
{
    json_t *ms = json_array();
    for (unsigned i = 0; ms != NULL && i < s->n; i++)
        json_array_append_new(ms, json_pack("{s:s, s:i, s:s}", "name", s->m[i].name, "op",
                                            (int)s->m[i].op, "value", s->m[i].value));
    json_t *o =
        json_pack("{s:i, s:I, s:o*, s:I, s:I, s:I, s:I, s:s, s:s}", "v", RECORD_VERSION, "id",
                  (json_int_t)s->id, "matchers", ms, "starts", (json_int_t)s->starts_ms, "ends",
                  (json_int_t)s->ends_ms, "created", (json_int_t)s->created_ms, "updated",
                  (json_int_t)s->updated_ms, "created_by", s->created_by, "comment", s->comment);
    if (o == NULL)
        return NULL;
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

static bool copy_json_str(json_t *o, const char *k, char *dst, size_t size)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (s == NULL || strlen(s) >= size)
        return false;
    memcpy(dst, s, strlen(s) + 1);
    return true;
}

int apm_silence_record_decode(const void *data, size_t len, struct apm_silence *out)
{
    json_error_t jerr;
    json_t *o = json_loadb(data, len, 0, &jerr);
    memset(out, 0, sizeof(*out));
    int rc = APM_E_PARSE;
    json_t *ms = json_object_get(o, "matchers");
    if (!json_is_object(o) || json_integer_value(json_object_get(o, "v")) != RECORD_VERSION ||
        !json_is_array(ms) || json_array_size(ms) == 0 ||
        json_array_size(ms) > APM_SILENCE_MAX_MATCHERS)
        goto out;
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m)
    {
        struct apm_silence_matcher *d = &out->m[i];
        json_int_t op = json_integer_value(json_object_get(m, "op"));
        if (!copy_json_str(m, "name", d->name, sizeof(d->name)) ||
            !copy_json_str(m, "value", d->value, sizeof(d->value)) || op < 0 ||
            op > APM_SILENCE_NRE || !valid_name(d->name))
            goto out;
        d->op = (enum apm_silence_op)op;
    }
    out->n = (unsigned)json_array_size(ms);
    out->id = (uint64_t)json_integer_value(json_object_get(o, "id"));
    out->starts_ms = (int64_t)json_integer_value(json_object_get(o, "starts"));
    out->ends_ms = (int64_t)json_integer_value(json_object_get(o, "ends"));
    out->created_ms = (int64_t)json_integer_value(json_object_get(o, "created"));
    out->updated_ms = (int64_t)json_integer_value(json_object_get(o, "updated"));
    if (!copy_json_str(o, "created_by", out->created_by, sizeof(out->created_by)) ||
        !copy_json_str(o, "comment", out->comment, sizeof(out->comment)) || out->id == 0)
        goto out;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* ---- the set ---- */

struct entry {
    struct apm_silence s;
    regex_t re[APM_SILENCE_MAX_MATCHERS]; /* compiled for =~ and !~ */
    uint64_t version, persisted;
};

struct apm_silences {
    struct entry **items; /* in id order */
    size_t n, max;
    int64_t keep_ms;
};

struct apm_silences *apm_silences_new(size_t max, int64_t keep_ms)
{
    struct apm_silences *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    set->max = max;
    set->keep_ms = keep_ms;
    set->items = calloc(max > 0 ? max : 1, sizeof(*set->items));
    if (set->items == NULL) {
        free(set);
        return NULL;
    }
    return set;
}

static void entry_free(struct entry *en)
{
    for (unsigned i = 0; i < en->s.n; i++)
        if (en->s.m[i].op == APM_SILENCE_RE || en->s.m[i].op == APM_SILENCE_NRE)
            regfree(&en->re[i]);
    free(en);
}

void apm_silences_free(struct apm_silences *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        entry_free(set->items[i]);
    free(set->items);
    free(set);
}

int apm_silences_add(struct apm_silences *set, struct apm_silence *s, uint64_t *next_id)
{
    if (set->n >= set->max)
        return APM_E_LIMIT;
    struct entry *en = calloc(1, sizeof(*en));
    if (en == NULL)
        return -ENOMEM;
    en->s = *s;
    en->s.n = 0;
    for (unsigned i = 0; i < s->n; i++) {
        const struct apm_silence_matcher *m = &s->m[i];
        char why[128];
        if ((m->op == APM_SILENCE_RE || m->op == APM_SILENCE_NRE) &&
            compile(m, &en->re[i], why, sizeof(why)) != 0) {
            entry_free(en);
            return APM_E_PARSE;
        }
        en->s.n = i + 1;
    }
    if (s->id == 0) {
        s->id = en->s.id = (*next_id)++;
        en->version = 1; /* new: to be written */
    } else if (s->id >= *next_id) {
        *next_id = s->id + 1;
    }
    /* Ids only grow, except when loading, which reads them in order: append and keep order. */
    size_t at = set->n;
    while (at > 0 && set->items[at - 1]->s.id > en->s.id)
        at--;
    memmove(&set->items[at + 1], &set->items[at], (set->n - at) * sizeof(*set->items));
    set->items[at] = en;
    set->n++;
    return 0;
}

static struct entry *find(const struct apm_silences *set, uint64_t id)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->items[i]->s.id == id)
            return set->items[i];
    return NULL;
}

int apm_silences_expire(struct apm_silences *set, uint64_t id, int64_t now_ms)
{
    struct entry *en = find(set, id);
    if (en == NULL)
        return APM_E_NOTFOUND;
    if (en->s.ends_ms <= now_ms)
        return 1;
    en->s.ends_ms = now_ms;
    if (en->s.starts_ms > now_ms)
        en->s.starts_ms = now_ms;
    en->s.updated_ms = now_ms;
    en->version++;
    return 0;
}

int apm_silences_get(const struct apm_silences *set, uint64_t id, struct apm_silence *out)
{
    const struct entry *en = find(set, id);
    if (en == NULL)
        return APM_E_NOTFOUND;
    *out = en->s;
    return 0;
}

size_t apm_silences_list(const struct apm_silences *set, struct apm_silence *out, size_t max)
{
    for (size_t i = 0; i < set->n && i < max; i++)
        out[i] = set->items[set->n - 1 - i]->s;
    return set->n;
}

static bool entry_matches(const struct entry *en, const struct apm_alert *a)
{
    char buf[APM_SILENCE_VALUE_MAX];
    for (unsigned i = 0; i < en->s.n; i++) {
        const char *v = apm_silence_alert_label(a, en->s.m[i].name, buf, sizeof(buf));
        if (!matcher_matches(&en->s.m[i], &en->re[i], v))
            return false;
    }
    return true;
}

uint64_t apm_silences_match(const struct apm_silences *set, const struct apm_alert *a,
                            int64_t now_ms)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct entry *en = set->items[i];
        if (apm_silence_state_at(&en->s, now_ms) == APM_SILENCE_ACTIVE && entry_matches(en, a))
            return en->s.id;
    }
    return 0;
}

int64_t apm_silences_next_edge(const struct apm_silences *set, int64_t now_ms)
{
    int64_t edge = INT64_MAX;
    for (size_t i = 0; i < set->n; i++) {
        const struct apm_silence *s = &set->items[i]->s;
        if (s->starts_ms > now_ms && s->starts_ms < edge)
            edge = s->starts_ms;
        if (s->ends_ms > now_ms && s->ends_ms < edge)
            edge = s->ends_ms;
    }
    return edge;
}

void apm_silences_count(const struct apm_silences *set, int64_t now_ms, uint64_t out[3])
{
    out[0] = out[1] = out[2] = 0;
    for (size_t i = 0; i < set->n; i++)
        out[apm_silence_state_at(&set->items[i]->s, now_ms)]++;
}

int apm_silences_changed(struct apm_silences *set, struct apm_silence_rec **recs, size_t *n)
{
    *recs = NULL;
    *n = 0;
    size_t want = 0;
    for (size_t i = 0; i < set->n; i++)
        want += set->items[i]->version != set->items[i]->persisted;
    if (want == 0)
        return 0;
    struct apm_silence_rec *r = calloc(want, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    size_t w = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct entry *en = set->items[i];
        if (en->version == en->persisted)
            continue;
        r[w].id = en->s.id;
        r[w].version = en->version;
        r[w].buf = apm_silence_record_encode(&en->s, &r[w].len);
        if (r[w].buf == NULL) {
            apm_silences_recs_free(r, w);
            return -ENOMEM;
        }
        w++;
    }
    *recs = r;
    *n = w;
    return 0;
}

void apm_silences_persisted(struct apm_silences *set, const struct apm_silence_rec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct entry *en = find(set, recs[i].id);
        if (en != NULL && en->persisted < recs[i].version)
            en->persisted = recs[i].version;
    }
}

void apm_silences_recs_free(struct apm_silence_rec *recs, size_t n)
{
    for (size_t i = 0; recs != NULL && i < n; i++)
        free(recs[i].buf);
    free(recs);
}

int apm_silences_prune(struct apm_silences *set, int64_t now_ms, uint64_t **del, size_t *ndel)
{
    *del = NULL;
    *ndel = 0;
    size_t old = 0;
    for (size_t i = 0; i < set->n; i++)
        old += now_ms - set->items[i]->s.ends_ms > set->keep_ms;
    if (old == 0)
        return 0;
    uint64_t *ids = calloc(old, sizeof(*ids));
    if (ids == NULL)
        return -ENOMEM;
    size_t w = 0, k = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct entry *en = set->items[i];
        if (now_ms - en->s.ends_ms > set->keep_ms) {
            ids[k++] = en->s.id;
            entry_free(en);
        } else {
            set->items[w++] = en;
        }
    }
    set->n = w;
    *del = ids;
    *ndel = k;
    return 0;
}
