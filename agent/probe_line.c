/*
 * Strict checks of probe lines. Each type has a table of its fields; a line
 * must carry exactly those. Optional fields: a site's traceback, present
 * exactly for "traceback" keys; a sampled diff's "source", "sample_bytes" and
 * "samples" and its sites' "size_err" and "growth_var", all present exactly
 * when "source" is "sampled" ("source" may also be "tracemalloc", the meaning
 * of a diff without it); a trace_state's "sample_bytes".
 */
#include "agent/probe_line.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/text.h"
#include "common/base/timeutil.h"

#define I64_MAX 9223372036854775807LL
#define U64 0, I64_MAX
#define I64 (-I64_MAX), I64_MAX

enum kind { K_INT, K_NUM, K_STR, K_BOOL, K_LIST, K_NUM_OR_NULL, K_STR_OR_NULL };

struct field {
    const char *name;
    enum kind kind;
    long long lo, hi; /* K_INT: range; K_STR: max characters in hi; K_LIST: length range */
    double dlo, dhi;  /* K_NUM: range */
};

#define INT(n, ...)                                                                                \
    {                                                                                              \
        n, K_INT, __VA_ARGS__, 0, 0                                                                \
    }
#define NUM(n, lo, hi)                                                                             \
    {                                                                                              \
        n, K_NUM, 0, 0, lo, hi                                                                     \
    }
#define STR(n, max)                                                                                \
    {                                                                                              \
        n, K_STR, 0, max, 0, 0                                                                     \
    }
#define LIST(n, lo, hi)                                                                            \
    {                                                                                              \
        n, K_LIST, lo, hi, 0, 0                                                                    \
    }
/* Times and spans become int64 milliseconds: 1e11 s (year 5138) keeps that exact and in range. */
#define T_MAX 1e11
#define T_FIELDS STR("type", 16), NUM("t", 0, T_MAX)

static const struct field hello_fields[] = {
    T_FIELDS,
    INT("protocol", 1, 1),
    STR("probe_version", 32),
    INT("pid", 1, I64_MAX),
    INT("ppid", U64),
    STR("python", 32),
    STR("implementation", 32),
    STR("name", 256),
    LIST("argv", 0, 32),
    INT("argc", U64),
    STR("mode", 16),
    NUM("interval_s", 0.01, 86400),
    INT("top_n", 1, 500),
    INT("frames", 1, 100),
    STR("key_type", 16),
    INT("max_memory", 1, I64_MAX),
    NUM("trace_window_s", 0, HUGE_VAL),
    {"tracing", K_BOOL, 0, 0, 0, 0},
};

static const struct field gc_fields[] = {
    T_FIELDS,
    LIST("count", 1, 4),
    LIST("stats", 1, 4),
    INT("garbage", U64),
};

static const struct field gc_gen_fields[] = {
    INT("collections", U64),
    INT("collected", U64),
    INT("uncollectable", U64),
};

static const struct field diff_fields[] = {
    T_FIELDS,
    INT("seq", 1, I64_MAX),
    INT("session", 1, I64_MAX),
    STR("key_type", 16),
    INT("frames", 1, 65535),
    NUM("interval_s", 0, T_MAX),
    INT("traced_current", U64),
    INT("traced_peak", U64),
    INT("tracemalloc_memory", U64),
    INT("total_size", U64),
    INT("total_count", U64),
    INT("total_size_diff", I64),
    INT("total_count_diff", I64),
    INT("groups", U64),
    NUM("cost_s", 0, HUGE_VAL),
    LIST("top", 0, 500),
    INT("truncated", U64),
};

static const struct field sampled_diff_fields[] = {
    STR("source", 16),
    INT("sample_bytes", 1, I64_MAX),
    INT("samples", U64),
};

static const struct field sampled_site_fields[] = {
    INT("size_err", U64),
    INT("growth_var", U64),
};

/* Our model keeps line numbers in 32 bits; a larger one is refused. */
static const struct field site_fields[] = {
    STR("file", 512),      INT("line", 0, UINT32_MAX), INT("size", U64),
    INT("size_diff", I64), INT("count", U64),          INT("count_diff", I64),
};

static const struct field trace_state_fields[] = {
    T_FIELDS,
    STR("state", 16),
    STR("reason", 64),
    INT("session", 1, I64_MAX),
    INT("frames", 1, I64_MAX),
    {"window_s", K_NUM_OR_NULL, 0, 0, 0, HUGE_VAL},
    INT("max_memory", 1, I64_MAX),
};

static const struct field stats_fields[] = {
    T_FIELDS,
    INT("sent", U64),
    INT("dropped", U64),
    INT("buffered", U64),
    INT("errors", U64),
    INT("send_failures", U64),
    INT("connects", U64),
    INT("connect_failures", U64),
    INT("bad_control", U64),
    INT("snapshots", U64),
    INT("budget_skips", U64),
    NUM("cpu_s", 0, HUGE_VAL),
    {"last_error", K_STR_OR_NULL, 0, 256, 0, 0},
};

static const struct field objects_fields[] = {
    T_FIELDS,
    INT("total", U64),
    NUM("cost_s", 0, HUGE_VAL),
    LIST("types", 0, 500),
    INT("truncated", U64),
};

static const struct field object_type_fields[] = {
    STR("type", 256),
    INT("count", U64),
    INT("count_diff", I64),
};

static const struct field control_error_fields[] = {T_FIELDS, STR("error", 256)};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int fail(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return APM_E_PARSE;
}

/* Characters of a UTF-8 string (jansson has checked the encoding). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool field_ok(const struct field *f, const json_t *v)
{
    switch (f->kind) {
    case K_INT:
        return json_is_integer(v) && json_integer_value(v) >= f->lo &&
               json_integer_value(v) <= f->hi;
    case K_NUM_OR_NULL:
        if (json_is_null(v))
            return true;
        /* fall through */
    case K_NUM: {
        if (!json_is_number(v))
            return false;
        double d = json_number_value(v);
        return isfinite(d) && d >= f->dlo && d <= f->dhi;
    }
    case K_STR_OR_NULL:
        if (json_is_null(v))
            return true;
        /* fall through */
    case K_STR:
        return json_is_string(v) && utf8_chars(json_string_value(v)) <= (size_t)f->hi;
    case K_BOOL:
        return json_is_boolean(v);
    case K_LIST:
        return json_is_array(v) && (long long)json_array_size(v) >= f->lo &&
               (long long)json_array_size(v) <= f->hi;
    }
    return false;
}

/* Checks that obj has exactly the fields (plus `extra` more, checked by the caller). */
static int check_fields(const json_t *obj, const struct field *fields, size_t n, size_t extra,
                        char *why, size_t size)
{
    if (!json_is_object(obj))
        return fail(why, size, "not an object");
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, fields[i].name);
        if (v == NULL)
            return fail(why, size, "missing field '%s'", fields[i].name);
        if (!field_ok(&fields[i], v))
            return fail(why, size, "field '%s' has a wrong type or is out of range",
                        fields[i].name);
    }
    if (json_object_size(obj) != n + extra)
        return fail(why, size, "unknown fields");
    return 0;
}

static bool str_in(const json_t *v, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcmp(json_string_value(v), *set) == 0)
            return true;
    return false;
}

static int check_hello(const json_t *o, char *why, size_t size)
{
    static const char *const modes[] = {"sampled", "on-demand", "always", "off", NULL};
    static const char *const keys[] = {"lineno", "traceback", NULL};
    int rc = check_fields(o, hello_fields, N(hello_fields), 0, why, size);
    if (rc != 0)
        return rc;
    if (!str_in(json_object_get(o, "mode"), modes) ||
        !str_in(json_object_get(o, "key_type"), keys) ||
        json_number_value(json_object_get(o, "trace_window_s")) <= 0)
        return fail(why, size, "hello: bad mode, key_type or trace_window_s");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(o, "argv"), i, a)
    {
        if (!json_is_string(a) || utf8_chars(json_string_value(a)) > 512)
            return fail(why, size, "hello: bad argv");
    }
    return 0;
}

static bool u64_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

static int check_gc(const json_t *o, char *why, size_t size)
{
    int rc = check_fields(o, gc_fields, N(gc_fields), 0, why, size);
    if (rc != 0)
        return rc;
    const json_t *count = json_object_get(o, "count"), *stats = json_object_get(o, "stats");
    if (json_array_size(count) != json_array_size(stats))
        return fail(why, size, "gc: count and stats differ in length");
    for (size_t i = 0; i < json_array_size(count); i++) {
        if (!u64_ok(json_array_get(count, i)))
            return fail(why, size, "gc: bad count");
        rc = check_fields(json_array_get(stats, i), gc_gen_fields, N(gc_gen_fields), 0, why, size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_traceback(const json_t *site, const json_t *tb, char *why, size_t size)
{
    size_t n = json_array_size(tb);
    if (!json_is_array(tb) || n < 1 || n > APM_SITE_FRAMES_MAX)
        return fail(why, size, "diff: bad traceback");
    for (size_t i = 0; i < n; i++) {
        const json_t *pair = json_array_get(tb, i);
        const json_t *f = json_array_get(pair, 0), *l = json_array_get(pair, 1);
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_string(f) ||
            utf8_chars(json_string_value(f)) > 512 || !json_is_integer(l) ||
            json_integer_value(l) < 0 || json_integer_value(l) > UINT32_MAX)
            return fail(why, size, "diff: bad traceback frame");
    }
    const json_t *last = json_array_get(tb, n - 1);
    if (strcmp(json_string_value(json_array_get(last, 0)),
               json_string_value(json_object_get(site, "file"))) != 0 ||
        json_integer_value(json_array_get(last, 1)) !=
            json_integer_value(json_object_get(site, "line")))
        return fail(why, size, "diff: traceback does not end at the site");
    return 0;
}

/* Checks the optional fields of table f (all or none present); *n counts the present ones. */
static int check_optional(const json_t *o, const struct field *f, size_t nf, bool want, size_t *n,
                          char *why, size_t size)
{
    for (size_t i = 0; i < nf; i++) {
        const json_t *v = json_object_get(o, f[i].name);
        if ((v != NULL) != want)
            return fail(why, size, want ? "missing field '%s'" : "unexpected field '%s'",
                        f[i].name);
        if (v != NULL && !field_ok(&f[i], v))
            return fail(why, size, "field '%s' has a wrong type or is out of range", f[i].name);
    }
    *n += want ? nf : 0;
    return 0;
}

/* "source": absent or "tracemalloc" (exact), or "sampled" (estimates); *extra counts it. */
static int check_source(const json_t *o, bool *sampled, size_t *extra, char *why, size_t size)
{
    const json_t *src = json_object_get(o, "source");
    *sampled = false;
    if (src == NULL)
        return 0;
    if (!json_is_string(src))
        return fail(why, size, "diff: bad source");
    if (strcmp(json_string_value(src), "sampled") == 0) {
        *sampled = true;
        return check_optional(o, sampled_diff_fields, N(sampled_diff_fields), true, extra, why,
                              size);
    }
    if (strcmp(json_string_value(src), "tracemalloc") != 0)
        return fail(why, size, "diff: bad source");
    (*extra)++;
    return check_optional(o, sampled_diff_fields + 1, N(sampled_diff_fields) - 1, false, extra, why,
                          size);
}

static int check_diff(const json_t *o, const struct apm_probe_hello *h, char *why, size_t size)
{
    bool sampled;
    size_t extra = 0;
    int rc = check_source(o, &sampled, &extra, why, size);
    if (rc == 0)
        rc = check_fields(o, diff_fields, N(diff_fields), extra, why, size);
    if (rc != 0)
        return rc;
    const char *key = json_string_value(json_object_get(o, "key_type"));
    bool traceback = strcmp(key, "traceback") == 0;
    if (!traceback && strcmp(key, "lineno") != 0)
        return fail(why, size, "diff: bad key_type");
    const json_t *top = json_object_get(o, "top");
    if (json_array_size(top) > h->top_n)
        return fail(why, size, "diff: more sites than the hello's top_n");
    size_t i;
    json_t *site;
    json_array_foreach(top, i, site)
    {
        size_t more = traceback ? 1 : 0;
        rc = check_optional(site, sampled_site_fields, N(sampled_site_fields), sampled, &more, why,
                            size);
        if (rc == 0)
            rc = check_fields(site, site_fields, N(site_fields), more, why, size);
        if (rc == 0 && traceback)
            rc = check_traceback(site, json_object_get(site, "traceback"), why, size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_trace_state(const json_t *o, char *why, size_t size)
{
    static const char *const states[] = {"started", "extended", "stopped", NULL};
    static const struct field rate[] = {INT("sample_bytes", 1, I64_MAX)};
    const json_t *v = json_object_get(o, "sample_bytes");
    if (v != NULL && !field_ok(rate, v))
        return fail(why, size, "field 'sample_bytes' has a wrong type or is out of range");
    int rc = check_fields(o, trace_state_fields, N(trace_state_fields), v ? 1 : 0, why, size);
    if (rc == 0 && !str_in(json_object_get(o, "state"), states))
        rc = fail(why, size, "trace_state: bad state");
    return rc;
}

static int check_objects(const json_t *o, const struct apm_probe_hello *h, char *why, size_t size)
{
    int rc = check_fields(o, objects_fields, N(objects_fields), 0, why, size);
    if (rc != 0)
        return rc;
    const json_t *types = json_object_get(o, "types");
    if (json_array_size(types) > h->top_n)
        return fail(why, size, "objects: more types than the hello's top_n");
    for (size_t i = 0; i < json_array_size(types) && rc == 0; i++)
        rc = check_fields(json_array_get(types, i), object_type_fields, N(object_type_fields), 0,
                          why, size);
    return rc;
}

static int check_typed(json_t *o, const struct apm_probe_hello *h, struct apm_probe_line *out,
                       char *why, size_t size)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    if (type == NULL)
        return fail(why, size, "no type");
    if (h == NULL) {
        if (strcmp(type, "hello") != 0)
            return fail(why, size, "first line is not a hello");
        out->type = APM_PROBE_LINE_HELLO;
        return check_hello(o, why, size);
    }
    if (strcmp(type, "gc") == 0) {
        out->type = APM_PROBE_LINE_GC;
        return check_gc(o, why, size);
    }
    if (strcmp(type, "diff") == 0) {
        out->type = APM_PROBE_LINE_DIFF;
        return check_diff(o, h, why, size);
    }
    if (strcmp(type, "trace_state") == 0) {
        out->type = APM_PROBE_LINE_TRACE_STATE;
        return check_trace_state(o, why, size);
    }
    if (strcmp(type, "stats") == 0) {
        out->type = APM_PROBE_LINE_STATS;
        return check_fields(o, stats_fields, N(stats_fields), 0, why, size);
    }
    if (strcmp(type, "objects") == 0) {
        out->type = APM_PROBE_LINE_OBJECTS;
        return check_objects(o, h, why, size);
    }
    if (strcmp(type, "control_error") == 0) {
        out->type = APM_PROBE_LINE_CONTROL_ERROR;
        return check_fields(o, control_error_fields, N(control_error_fields), 0, why, size);
    }
    /* A second hello on one connection is refused too: a reconnect is a new connection. */
    return fail(why, size, "unexpected type '%.32s'", type);
}

int apm_probe_line_parse(const char *line, size_t len, const struct apm_probe_hello *hello,
                         struct apm_probe_line *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof(*out));
    json_error_t err;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (o == NULL)
        return fail(why, why_size, "not JSON: %s", err.text);
    int rc = check_typed(o, hello, out, why, why_size);
    if (rc != 0) {
        json_decref(o);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->obj = o;
    return 0;
}

void apm_probe_line_clear(struct apm_probe_line *l)
{
    if (l == NULL)
        return;
    json_decref(l->obj);
    memset(l, 0, sizeof(*l));
}

void apm_probe_line_hello(const struct apm_probe_line *l, struct apm_probe_hello *out)
{
    memset(out, 0, sizeof(*out));
    out->claimed_pid = json_integer_value(json_object_get(l->obj, "pid"));
    out->top_n = (uint32_t)json_integer_value(json_object_get(l->obj, "top_n"));
    /*
     * The probe's words reach logs and the process's name: cleaned like a
     * peer's (common/base/text.h).
     */
    const char *name = json_string_value(json_object_get(l->obj, "name"));
    const char *mode = json_string_value(json_object_get(l->obj, "mode"));
    apm_text_clean(out->name, sizeof(out->name), name ? name : "", name ? strlen(name) : 0);
    apm_text_clean(out->mode, sizeof(out->mode), mode ? mode : "", mode ? strlen(mode) : 0);
}

static int64_t int_of(const json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

static int64_t ms_of(const json_t *o, const char *key)
{
    return apm_round_ll(json_number_value(json_object_get(o, key)) * 1000.0);
}

static int site_from(const json_t *j, struct apm_site_stat *s)
{
    const json_t *tb = json_object_get(j, "traceback");
    uint32_t nframes = tb ? (uint32_t)json_array_size(tb) : 0;
    int rc = apm_site_set(s, json_string_value(json_object_get(j, "file")),
                          (uint32_t)int_of(j, "line"), nframes);
    for (uint32_t f = 0; rc == 0 && f < nframes; f++) {
        const json_t *pair = json_array_get(tb, f);
        rc = apm_site_set_frame(s, f, json_string_value(json_array_get(pair, 0)),
                                (uint32_t)json_integer_value(json_array_get(pair, 1)));
    }
    s->size = int_of(j, "size");
    s->size_diff = int_of(j, "size_diff");
    s->count = int_of(j, "count");
    s->count_diff = int_of(j, "count_diff");
    s->size_err = int_of(j, "size_err"); /* 0 when absent */
    s->growth_var = int_of(j, "growth_var");
    return rc;
}

int apm_probe_line_to_diff(const struct apm_probe_line *l, struct apm_batch *b, uint32_t proc)
{
    const json_t *o = l->obj, *top = json_object_get(o, "top");
    struct apm_trace_diff *d;
    int rc = apm_batch_append_diff(b, proc, (uint32_t)json_array_size(top), &d);
    if (rc != 0)
        return rc;
    d->t_ms = ms_of(o, "t");
    d->probe_seq = (uint64_t)int_of(o, "seq");
    d->session = (uint64_t)int_of(o, "session");
    d->traceback = strcmp(json_string_value(json_object_get(o, "key_type")), "traceback") == 0;
    d->frames = (uint32_t)int_of(o, "frames");
    d->interval_ms = ms_of(o, "interval_s");
    d->traced_current = int_of(o, "traced_current");
    d->traced_peak = int_of(o, "traced_peak");
    d->tracemalloc_memory = int_of(o, "tracemalloc_memory");
    d->total_size = int_of(o, "total_size");
    d->total_count = int_of(o, "total_count");
    d->total_size_diff = int_of(o, "total_size_diff");
    d->total_count_diff = int_of(o, "total_count_diff");
    d->groups = (uint64_t)int_of(o, "groups");
    d->truncated = (uint64_t)int_of(o, "truncated");
    d->sample_bytes = (uint64_t)int_of(o, "sample_bytes"); /* 0 when absent: exact */
    d->samples = (uint64_t)int_of(o, "samples");
    for (uint32_t i = 0; rc == 0 && i < d->nsites; i++)
        rc = site_from(json_array_get(top, i), &d->sites[i]);
    return rc;
}

int apm_probe_line_to_gc(const struct apm_probe_line *l, struct apm_batch *b, uint32_t proc)
{
    const json_t *o = l->obj, *count = json_object_get(o, "count");
    const json_t *stats = json_object_get(o, "stats");
    struct apm_gc_stats g;
    memset(&g, 0, sizeof(g));
    g.proc = proc;
    g.t_ms = ms_of(o, "t");
    g.garbage = int_of(o, "garbage");
    g.ngen = (uint32_t)json_array_size(count);
    for (uint32_t i = 0; i < g.ngen; i++) {
        const json_t *s = json_array_get(stats, i);
        g.gen[i].collections = int_of(s, "collections");
        g.gen[i].collected = int_of(s, "collected");
        g.gen[i].uncollectable = int_of(s, "uncollectable");
        g.gen[i].count = (int64_t)json_integer_value(json_array_get(count, i));
    }
    return apm_batch_add_gc(b, &g);
}
