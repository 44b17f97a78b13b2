/*
 * [rule NAME], [notify NAME] and [alerts] sections (alert_rules.h). Keys are
 * checked one by one as inih hands them over, so most errors carry the line
 * config.c counted; what needs the whole section is checked at the end, and
 * the line is then found by reading the file again (it is small).
 */
#include "server/alerts/alert_rules.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/analysis/analysis.h"
#include "common/base/config.h"
#include "common/base/error.h"
#include "common/base/regex_limit.h"
#include "common/analysis/model.h"

#define DAY_MS (86400LL * 1000)

/* Keys a rule may have; the mask records which were set. */
enum rule_key {
    K_KIND = 1 << 0,
    K_SEVERITY = 1 << 1,
    K_METRIC = 1 << 2,
    K_FOR = 1 << 3,
    K_RESOLVE_FOR = 1 << 4,
    K_CONFIDENCE = 1 << 5,
    K_HORIZON = 1 << 6,
    K_ABOVE = 1 << 7,
    K_STEP = 1 << 8,
    K_WITHIN = 1 << 9,
    K_NATIVE_RATIO = 1 << 10,
    K_HOST = 1 << 11,
    K_PROCESS = 1 << 12,
    K_CGROUP = 1 << 13,
    K_LABELS = 1 << 14,
};

static const struct {
    const char *name;
    unsigned bit;
} rule_keys[] = {
    {"kind", K_KIND},
    {"severity", K_SEVERITY},
    {"metric", K_METRIC},
    {"for", K_FOR},
    {"resolve-for", K_RESOLVE_FOR},
    {"confidence", K_CONFIDENCE},
    {"horizon", K_HORIZON},
    {"above", K_ABOVE},
    {"step", K_STEP},
    {"within", K_WITHIN},
    {"native-ratio", K_NATIVE_RATIO},
    {"host", K_HOST},
    {"process", K_PROCESS},
    {"cgroup", K_CGROUP},
    {"labels", K_LABELS},
};

/* Kind-specific keys, and which kinds take them. */
static const struct {
    unsigned bit;
    unsigned kinds; /* 1 << enum apm_alert_kind */
} kind_keys[] = {
    {K_CONFIDENCE, 1u << APM_ALERT_LEAK | 1u << APM_ALERT_NATIVE},
    {K_HORIZON, 1u << APM_ALERT_EXHAUSTION},
    {K_ABOVE, 1u << APM_ALERT_THRESHOLD},
    {K_STEP, 1u << APM_ALERT_BLOAT},
    {K_WITHIN, 1u << APM_ALERT_BLOAT},
    {K_NATIVE_RATIO, 1u << APM_ALERT_NATIVE},
};

/* Parse state per rule, parallel to c->rules. */
struct rule_meta {
    unsigned set;
    char file[4096];
};

/* The config's private tail: rule metadata and target files. */
struct meta {
    struct rule_meta *rules;
    char (*target_files)[4096];
    unsigned *target_set;
};

static struct meta *meta_of(struct apm_alert_config *c);

struct config_full {
    struct apm_alert_config pub;
    struct meta meta;
};

static struct meta *meta_of(struct apm_alert_config *c)
{
    return &((struct config_full *)c)->meta;
}

struct apm_alert_config *apm_alert_config_new(void)
{
    struct config_full *f = calloc(1, sizeof(*f));
    return f != NULL ? &f->pub : NULL;
}

static void rule_free_regexes(struct apm_alert_rule *r)
{
    if (r->has_host)
        regfree(&r->host_re);
    if (r->has_process)
        regfree(&r->process_re);
    if (r->has_cgroup)
        regfree(&r->cgroup_re);
    r->has_host = r->has_process = r->has_cgroup = false;
}

void apm_alert_rules_free(struct apm_alert_rule *rules, size_t n)
{
    for (size_t i = 0; rules != NULL && i < n; i++)
        rule_free_regexes(&rules[i]);
    free(rules);
}

void apm_alert_config_free(struct apm_alert_config *c)
{
    if (c == NULL)
        return;
    struct meta *m = meta_of(c);
    apm_alert_rules_free(c->rules, c->nrules);
    free(c->targets);
    free(m->rules);
    free(m->target_files);
    free(m->target_set);
    free(c);
}

void apm_alert_config_set_file(struct apm_alert_config *c, const char *path)
{
    snprintf(c->file, sizeof(c->file), "%s", path);
}

void apm_alert_config_take_rules(struct apm_alert_config *c, struct apm_alert_rule **rules,
                                 size_t *n)
{
    *rules = c->rules;
    *n = c->nrules;
    c->rules = NULL;
    c->nrules = 0;
}

/* ---- values ---- */

static int set_duration(const char *value, int64_t min, int64_t max, int64_t *out, char *err,
                        size_t errlen)
{
    struct apm_opt o = {.type = APM_OPT_DURATION, .min = min, .max = max};
    return apm_config_set(&o, out, value, err, errlen);
}

/* "0.8", or "80%" when pct_ok. */
static int set_fraction(const char *value, double max, double *out, char *err, size_t errlen)
{
    char *end = NULL;
    double v = strtod(value, &end);
    bool pct = end != NULL && *end == '%' && end[1] == '\0';
    if (value[0] == '\0' || end == value || (!pct && *end != '\0') || !isfinite(v)) {
        snprintf(err, errlen, "'%s' is not a number or a percentage", value);
        return APM_E_CONFIG;
    }
    if (pct)
        v /= 100.0;
    if (v <= 0 || v > max) {
        snprintf(err, errlen, "'%s' is out of range", value);
        return APM_E_CONFIG;
    }
    *out = v;
    return 0;
}

static int set_regex(const char *value, regex_t *re, bool *has, char *err, size_t errlen)
{
    char pat[1100];
    if (strlen(value) > 1000) {
        snprintf(err, errlen, "pattern longer than 1000 characters");
        return APM_E_CONFIG;
    }
    /* A matcher matches the whole name, as in Prometheus. */
    snprintf(pat, sizeof(pat), "^(%s)$", value);
    regex_t tmp;
    char why[128];
    if (apm_regex_compile(&tmp, pat, REG_EXTENDED | REG_NOSUB, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "bad regular expression '%s': %s", value, why);
        return APM_E_CONFIG;
    }
    if (*has)
        regfree(re);
    *re = tmp;
    *has = true;
    return 0;
}

static bool label_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* "k=v,k=v": Prometheus label names, values without ',' or control characters. */
static int set_labels(const char *value, char *out, size_t size, char *err, size_t errlen)
{
    if (strlen(value) >= size) {
        snprintf(err, errlen, "longer than %zu characters", size - 1);
        return APM_E_CONFIG;
    }
    const char *p = value;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (eq == NULL || !label_name_ok(p, (size_t)(eq - p))) {
            snprintf(err, errlen, "expected NAME=VALUE[,NAME=VALUE...] with names like team_1");
            return APM_E_CONFIG;
        }
        for (const char *q = eq + 1; q < p + n; q++) {
            if (iscntrl((unsigned char)*q)) {
                snprintf(err, errlen, "control character in a label value");
                return APM_E_CONFIG;
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    snprintf(out, size, "%s", value);
    return 0;
}

/* ---- sections ---- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= APM_ALERT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

static struct apm_alert_rule *get_rule(struct apm_alert_config *c, const char *name,
                                       struct rule_meta **meta, char *err, size_t errlen)
{
    struct meta *m = meta_of(c);
    for (size_t i = 0; i < c->nrules; i++) {
        if (strcmp(c->rules[i].name, name) == 0) {
            *meta = &m->rules[i];
            return &c->rules[i];
        }
    }
    if (c->nrules >= APM_ALERT_MAX_RULES) {
        snprintf(err, errlen, "more than %u rules", APM_ALERT_MAX_RULES);
        return NULL;
    }
    struct apm_alert_rule *r = realloc(c->rules, (c->nrules + 1) * sizeof(*r));
    if (r != NULL)
        c->rules = r;
    struct rule_meta *rm = realloc(m->rules, (c->nrules + 1) * sizeof(*rm));
    if (rm != NULL)
        m->rules = rm;
    if (r == NULL || rm == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r = &c->rules[c->nrules];
    rm = &m->rules[c->nrules];
    c->nrules++;
    memset(r, 0, sizeof(*r));
    memset(rm, 0, sizeof(*rm));
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(rm->file, sizeof(rm->file), "%s", c->file);
    *meta = rm;
    return r;
}

static int kind_parse(const char *v, enum apm_alert_kind *out)
{
    for (int k = APM_ALERT_LEAK; k <= APM_ALERT_NATIVE; k++) {
        if (strcmp(v, apm_alert_kind_name((enum apm_alert_kind)k)) == 0) {
            *out = (enum apm_alert_kind)k;
            return 0;
        }
    }
    return APM_E_CONFIG;
}

static int severity_parse(const char *v, enum apm_alert_severity *out)
{
    if (strcmp(v, "warning") == 0)
        *out = APM_SEVERITY_WARNING;
    else if (strcmp(v, "critical") == 0)
        *out = APM_SEVERITY_CRITICAL;
    else
        return APM_E_CONFIG;
    return 0;
}

static int rule_key(struct apm_alert_rule *r, const char *key, const char *value, unsigned *bit,
                    char *err, size_t errlen)
{
    *bit = 0;
    for (size_t i = 0; i < sizeof(rule_keys) / sizeof(rule_keys[0]); i++)
        if (strcmp(key, rule_keys[i].name) == 0)
            *bit = rule_keys[i].bit;
    switch (*bit) {
    case K_KIND:
        if (kind_parse(value, &r->kind) != 0) {
            snprintf(err, errlen, "'%s' is not leak, exhaustion, threshold, bloat or native",
                     value);
            return APM_E_CONFIG;
        }
        return 0;
    case K_SEVERITY:
        if (severity_parse(value, &r->severity) != 0) {
            snprintf(err, errlen, "'%s' is not warning or critical", value);
            return APM_E_CONFIG;
        }
        return 0;
    case K_METRIC: {
        enum apm_metric m;
        if (strcmp(value, "any") != 0 &&
            (apm_metric_parse(value, &m) != 0 || m == APM_METRIC_SITE_SIZE ||
             m == APM_METRIC_SITE_COUNT || m == APM_METRIC_SITE_VAR)) {
            snprintf(err, errlen, "'%s' is not a series metric (rss, pss, uss, ... or any)", value);
            return APM_E_CONFIG;
        }
        snprintf(r->metric, sizeof(r->metric), "%s", strcmp(value, "any") == 0 ? "" : value);
        return 0;
    }
    case K_FOR:
        return set_duration(value, 0, 30 * DAY_MS, &r->for_ms, err, errlen);
    case K_RESOLVE_FOR:
        return set_duration(value, 0, 30 * DAY_MS, &r->resolve_for_ms, err, errlen);
    case K_CONFIDENCE:
        return set_fraction(value, 1.0, &r->confidence, err, errlen);
    case K_HORIZON:
        return set_duration(value, 1000, 365 * DAY_MS, &r->horizon_ms, err, errlen);
    case K_ABOVE: {
        size_t n = strlen(value);
        if (n > 0 && value[n - 1] == '%') {
            r->above_pct = true;
            return set_fraction(value, 1.0, &r->above, err, errlen);
        }
        int64_t bytes = 0;
        struct apm_opt o = {.type = APM_OPT_SIZE, .min = 1, .max = INT64_MAX};
        r->above_pct = false;
        int rc = apm_config_set(&o, &bytes, value, err, errlen);
        r->above = (double)bytes;
        return rc;
    }
    case K_STEP:
        return set_fraction(value, 100.0, &r->step, err, errlen);
    case K_WITHIN:
        return set_duration(value, 1000, 30 * DAY_MS, &r->within_ms, err, errlen);
    case K_NATIVE_RATIO:
        return set_fraction(value, 1.0, &r->native_ratio, err, errlen);
    case K_HOST:
        return set_regex(value, &r->host_re, &r->has_host, err, errlen);
    case K_PROCESS:
        return set_regex(value, &r->process_re, &r->has_process, err, errlen);
    case K_CGROUP:
        return set_regex(value, &r->cgroup_re, &r->has_cgroup, err, errlen);
    case K_LABELS:
        return set_labels(value, r->labels, sizeof(r->labels), err, errlen);
    default:
        snprintf(err, errlen, "unknown key (see docs/alerts.md)");
        return APM_E_CONFIG;
    }
}

static struct apm_notify_target *get_target(struct apm_alert_config *c, const char *name,
                                            unsigned **set, char *err, size_t errlen)
{
    struct meta *m = meta_of(c);
    for (size_t i = 0; i < c->ntargets; i++) {
        if (strcmp(c->targets[i].name, name) == 0) {
            *set = &m->target_set[i];
            return &c->targets[i];
        }
    }
    if (c->ntargets >= APM_NOTIFY_MAX_TARGETS) {
        snprintf(err, errlen, "more than %u notify sections", APM_NOTIFY_MAX_TARGETS);
        return NULL;
    }
    size_t n = c->ntargets + 1;
    struct apm_notify_target *t = realloc(c->targets, n * sizeof(*t));
    if (t != NULL)
        c->targets = t;
    char(*files)[4096] = realloc(m->target_files, n * sizeof(*files));
    if (files != NULL)
        m->target_files = files;
    unsigned *bits = realloc(m->target_set, n * sizeof(*bits));
    if (bits != NULL)
        m->target_set = bits;
    if (t == NULL || files == NULL || bits == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t = &c->targets[c->ntargets];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(m->target_files[c->ntargets], sizeof(m->target_files[0]), "%s", c->file);
    m->target_set[c->ntargets] = 0;
    t->type = (enum apm_notify_type) - 1;
    t->timeout_ms = 10000;
    t->max_attempts = 8;
    t->backoff_ms = 1000;
    t->backoff_max_ms = 300000;
    *set = &m->target_set[c->ntargets];
    c->ntargets++;
    return t;
}

static int url_check(const char *value, char *err, size_t errlen)
{
    if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
        snprintf(err, errlen, "'%s' is not an http:// or https:// URL", value);
        return APM_E_CONFIG;
    }
    if (strlen(value) >= APM_NOTIFY_URL_MAX) {
        snprintf(err, errlen, "URL longer than %u characters", APM_NOTIFY_URL_MAX - 1);
        return APM_E_CONFIG;
    }
    for (const char *p = value; *p != '\0'; p++) {
        if (iscntrl((unsigned char)*p) || *p == ' ') {
            snprintf(err, errlen, "URL with a space or control character");
            return APM_E_CONFIG;
        }
    }
    return 0;
}

static int target_key(struct apm_notify_target *t, unsigned *set, const char *key,
                      const char *value, char *err, size_t errlen)
{
    if (strcmp(key, "type") == 0) {
        if (strcmp(value, "webhook") == 0)
            t->type = APM_NOTIFY_WEBHOOK;
        else if (strcmp(value, "alertmanager") == 0)
            t->type = APM_NOTIFY_ALERTMANAGER;
        else if (strcmp(value, "exec") == 0)
            t->type = APM_NOTIFY_EXEC;
        else {
            snprintf(err, errlen, "'%s' is not webhook, alertmanager or exec", value);
            return APM_E_CONFIG;
        }
        *set |= 1;
        return 0;
    }
    if (strcmp(key, "url") == 0) {
        int rc = url_check(value, err, errlen);
        if (rc == 0)
            snprintf(t->url, sizeof(t->url), "%s", value);
        *set |= 2;
        return rc;
    }
    if (strcmp(key, "command") == 0) {
        if (value[0] != '/' || strlen(value) >= sizeof(t->command)) {
            snprintf(err, errlen, "'%s' is not an absolute path (no shell, no PATH search)", value);
            return APM_E_CONFIG;
        }
        snprintf(t->command, sizeof(t->command), "%s", value);
        *set |= 4;
        return 0;
    }
    if (strcmp(key, "arg") == 0) {
        if (t->nargs >= APM_NOTIFY_MAX_ARGS || strlen(value) >= sizeof(t->args[0])) {
            snprintf(err, errlen, "at most %u arguments of 255 characters", APM_NOTIFY_MAX_ARGS);
            return APM_E_CONFIG;
        }
        snprintf(t->args[t->nargs++], sizeof(t->args[0]), "%s", value);
        return 0;
    }
    if (strcmp(key, "severity") == 0) {
        if (severity_parse(value, &t->min_severity) != 0) {
            snprintf(err, errlen, "'%s' is not warning or critical", value);
            return APM_E_CONFIG;
        }
        return 0;
    }
    if (strcmp(key, "timeout") == 0)
        return set_duration(value, 100, 600000, &t->timeout_ms, err, errlen);
    if (strcmp(key, "backoff") == 0)
        return set_duration(value, 10, DAY_MS, &t->backoff_ms, err, errlen);
    if (strcmp(key, "backoff-max") == 0)
        return set_duration(value, 10, DAY_MS, &t->backoff_max_ms, err, errlen);
    if (strcmp(key, "attempts") == 0) {
        char *end = NULL;
        long v = strtol(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || v < 1 || v > 1000) {
            snprintf(err, errlen, "'%s' is not a number from 1 to 1000", value);
            return APM_E_CONFIG;
        }
        t->max_attempts = (unsigned)v;
        return 0;
    }
    snprintf(err, errlen, "unknown key (see docs/alerts.md)");
    return APM_E_CONFIG;
}

static int alerts_key(struct apm_alert_config *c, const char *key, const char *value, char *err,
                      size_t errlen)
{
    if (strcmp(key, "stale") == 0)
        return set_duration(value, 1000, 30 * DAY_MS, &c->stale_ms, err, errlen);
    if (strcmp(key, "resend") == 0)
        return set_duration(value, 1000, DAY_MS, &c->resend_ms, err, errlen);
    if (strcmp(key, "evaluate") == 0)
        return set_duration(value, 50, 600000, &c->tick_ms, err, errlen);
    if (strcmp(key, "silences-max") == 0) {
        struct apm_opt o = {.type = APM_OPT_INT, .min = 1, .max = 100000};
        return apm_config_set(&o, &c->silences_max, value, err, errlen);
    }
    if (strcmp(key, "silences-keep") == 0)
        return set_duration(value, 1000, 365 * DAY_MS, &c->silences_keep_ms, err, errlen);
    snprintf(err, errlen, "unknown key (stale, resend, evaluate, silences-max or silences-keep)");
    return APM_E_CONFIG;
}

int apm_alert_config_section(void *ctx, const char *section, const char *key, const char *value,
                             char *err, size_t errlen)
{
    struct apm_alert_config *c = ctx;
    snprintf(c->section, sizeof(c->section), "%s", section);
    if (strcmp(section, "alerts") == 0)
        return alerts_key(c, key, value, err, errlen);
    const char *name = NULL;
    bool rule = strncmp(section, "rule ", 5) == 0, notify = strncmp(section, "notify ", 7) == 0;
    if (rule)
        name = section + 5;
    else if (notify)
        name = section + 7;
    if (name == NULL) {
        snprintf(err, errlen, "unknown section");
        return APM_E_CONFIG;
    }
    while (*name == ' ')
        name++;
    if (!name_ok(name)) {
        snprintf(err, errlen, "a %s name is 1-63 letters, digits, '-', '_' or '.'",
                 rule ? "rule" : "notify");
        return APM_E_CONFIG;
    }
    if (rule) {
        struct rule_meta *rm = NULL;
        struct apm_alert_rule *r = get_rule(c, name, &rm, err, errlen);
        if (r == NULL)
            return APM_E_CONFIG;
        unsigned bit = 0;
        int rc = rule_key(r, key, value, &bit, err, errlen);
        rm->set |= bit;
        return rc;
    }
    unsigned *set = NULL;
    struct apm_notify_target *t = get_target(c, name, &set, err, errlen);
    if (t == NULL)
        return APM_E_CONFIG;
    return target_key(t, set, key, value, err, errlen);
}

int apm_alert_config_load_file(struct apm_alert_config *c, const char *path, char *err,
                               size_t errlen)
{
    static const struct apm_opt none[] = {{.key = NULL}};
    apm_alert_config_set_file(c, path);
    return apm_config_load(path, none, NULL, apm_alert_config_section, c, err, errlen);
}

/* ---- whole-section checks ---- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* The line of key in [section] of path (or of the section header; 0 when not found). */
static int find_line(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int no = 0, header = 0, found = 0;
    bool in = false;
    while (found == 0 && fgets(line, sizeof(line), f) != NULL) {
        no++;
        char *s = trim(line);
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end != NULL)
                *end = '\0';
            in = strcmp(trim(s + 1), section) == 0;
            if (in && header == 0)
                header = no;
            continue;
        }
        if (!in || key == NULL)
            continue;
        size_t k = strcspn(s, "=:");
        if (s[k] == '\0')
            continue;
        s[k] = '\0';
        if (strcmp(trim(s), key) == 0)
            found = no;
    }
    fclose(f);
    return found ? found : header;
}

static int section_error(char *err, size_t errlen, const char *file, const char *section,
                         const char *key, const char *why)
{
    snprintf(err, errlen, "%s:%d: key '%s' in [%s]: %s", file, find_line(file, section, key), key,
             section, why);
    return APM_E_CONFIG;
}

static int finish_rule(struct apm_alert_rule *r, const struct rule_meta *m, char *err,
                       size_t errlen)
{
    char section[128];
    snprintf(section, sizeof(section), "rule %s", r->name);
    if (!(m->set & K_KIND))
        return section_error(err, errlen, m->file, section, "kind",
                             "missing (leak, exhaustion, threshold, bloat or native)");
    for (size_t i = 0; i < sizeof(kind_keys) / sizeof(kind_keys[0]); i++) {
        if ((m->set & kind_keys[i].bit) && !(kind_keys[i].kinds & (1u << r->kind))) {
            const char *key = "?";
            for (size_t j = 0; j < sizeof(rule_keys) / sizeof(rule_keys[0]); j++)
                if (rule_keys[j].bit == kind_keys[i].bit)
                    key = rule_keys[j].name;
            char why[96];
            snprintf(why, sizeof(why), "does not apply to kind %s", apm_alert_kind_name(r->kind));
            return section_error(err, errlen, m->file, section, key, why);
        }
    }
    if (r->kind == APM_ALERT_THRESHOLD && !(m->set & K_ABOVE))
        return section_error(err, errlen, m->file, section, "above",
                             "missing: a threshold rule needs a size or a percentage of the limit");
    if (!(m->set & K_METRIC))
        snprintf(r->metric, sizeof(r->metric), "rss");
    if (!(m->set & K_SEVERITY))
        r->severity =
            r->kind == APM_ALERT_EXHAUSTION ? APM_SEVERITY_CRITICAL : APM_SEVERITY_WARNING;
    if (!(m->set & K_CONFIDENCE))
        r->confidence = APM_LEAK_RULE_CONFIDENCE;
    if (!(m->set & K_HORIZON))
        r->horizon_ms = (int64_t)(APM_EXHAUSTION_RULE_HORIZON_S * 1000.0);
    if (!(m->set & K_STEP))
        r->step = 0.5;
    if (!(m->set & K_WITHIN))
        r->within_ms = 10 * 60 * 1000LL;
    if (!(m->set & K_NATIVE_RATIO))
        r->native_ratio = 0.1;
    return 0;
}

static int finish_target(struct apm_notify_target *t, const char *file, unsigned set, char *err,
                         size_t errlen)
{
    char section[128];
    snprintf(section, sizeof(section), "notify %s", t->name);
    if (!(set & 1))
        return section_error(err, errlen, file, section, "type",
                             "missing (webhook, alertmanager or exec)");
    if (t->type == APM_NOTIFY_EXEC && !(set & 4))
        return section_error(err, errlen, file, section, "command",
                             "missing: an exec hook needs the program's absolute path");
    if (t->type != APM_NOTIFY_EXEC && !(set & 2))
        return section_error(err, errlen, file, section, "url", "missing");
    if (t->type == APM_NOTIFY_EXEC && (set & 2))
        return section_error(err, errlen, file, section, "url", "does not apply to an exec hook");
    if (t->type != APM_NOTIFY_EXEC && (set & 4))
        return section_error(err, errlen, file, section, "command", "applies to exec hooks only");
    if (t->backoff_max_ms < t->backoff_ms)
        t->backoff_max_ms = t->backoff_ms;
    return 0;
}

/* The rules a fresh install runs with: a leak, and memory running out within 6 hours. */
static int add_defaults(struct apm_alert_config *c, char *err, size_t errlen)
{
    static const char *const entries[][3] = {
        {"rule leak", "kind", "leak"},
        {"rule exhaustion", "kind", "exhaustion"},
    };
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        int rc =
            apm_alert_config_section(c, entries[i][0], entries[i][1], entries[i][2], err, errlen);
        if (rc != 0)
            return rc;
    }
    c->defaults = true;
    return 0;
}

int apm_alert_config_finish(struct apm_alert_config *c, char *err, size_t errlen)
{
    struct meta *m = meta_of(c);
    if (c->nrules == 0) {
        int rc = add_defaults(c, err, errlen);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < c->nrules; i++) {
        int rc = finish_rule(&c->rules[i], &m->rules[i], err, errlen);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < c->ntargets; i++) {
        int rc = finish_target(&c->targets[i], m->target_files[i], m->target_set[i], err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}
