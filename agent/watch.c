#include "agent/watch.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/error.h"
#include "common/base/regex_limit.h"

struct apm_watch {
    bool all;
    unsigned nnames;
    unsigned ncgroups;
    regex_t names[APM_WATCH_MAX_RULES];
    char *cgroups[APM_WATCH_MAX_RULES];
};

int apm_watch_new(struct apm_watch **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void apm_watch_free(struct apm_watch *w)
{
    if (w == NULL)
        return;
    for (unsigned i = 0; i < w->nnames; i++)
        regfree(&w->names[i]);
    for (unsigned i = 0; i < w->ncgroups; i++)
        free(w->cgroups[i]);
    free(w);
}

__attribute__((format(printf, 4, 5))) static int fail(int rc, char *err, size_t errsize,
                                                      const char *fmt, ...)
{
    if (errsize > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsize, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int apm_watch_add_name(struct apm_watch *w, const char *regex, char *err, size_t errsize)
{
    if (w->nnames == APM_WATCH_MAX_RULES)
        return fail(APM_E_LIMIT, err, errsize, "more than %d name rules", APM_WATCH_MAX_RULES);
    if (strlen(regex) > APM_WATCH_MAX_LEN)
        return fail(APM_E_LIMIT, err, errsize, "name rule longer than %d bytes", APM_WATCH_MAX_LEN);
    char why[128];
    int rc =
        apm_regex_compile(&w->names[w->nnames], regex, REG_EXTENDED | REG_NOSUB, why, sizeof(why));
    if (rc == -ENOMEM)
        return fail(-ENOMEM, err, errsize, "out of memory compiling \"%s\"", regex);
    if (rc != 0)
        return fail(APM_E_CONFIG, err, errsize, "bad regular expression \"%s\": %s", regex, why);
    w->nnames++;
    return 0;
}

int apm_watch_add_cgroup(struct apm_watch *w, const char *prefix, char *err, size_t errsize)
{
    if (w->ncgroups == APM_WATCH_MAX_RULES)
        return fail(APM_E_LIMIT, err, errsize, "more than %d cgroup rules", APM_WATCH_MAX_RULES);
    size_t n = strlen(prefix);
    if (n > APM_WATCH_MAX_LEN)
        return fail(APM_E_LIMIT, err, errsize, "cgroup rule longer than %d bytes",
                    APM_WATCH_MAX_LEN);
    if (prefix[0] != '/')
        return fail(APM_E_CONFIG, err, errsize, "cgroup rule \"%s\" is not an absolute path",
                    prefix);
    while (n > 1 && prefix[n - 1] == '/')
        n--;
    char *copy = strndup(prefix, n);
    if (copy == NULL)
        return fail(-ENOMEM, err, errsize, "out of memory");
    w->cgroups[w->ncgroups++] = copy;
    return 0;
}

void apm_watch_add_all(struct apm_watch *w)
{
    w->all = true;
}

bool apm_watch_is_all(const struct apm_watch *w)
{
    return w == NULL || w->all || (w->nnames == 0 && w->ncgroups == 0);
}

static bool under(const char *cgroup, const char *prefix)
{
    if (strcmp(prefix, "/") == 0)
        return cgroup[0] == '/';
    size_t n = strlen(prefix);
    return strncmp(cgroup, prefix, n) == 0 && (cgroup[n] == '\0' || cgroup[n] == '/');
}

bool apm_watch_match(const struct apm_watch *w, const char *name, const char *cgroup)
{
    if (apm_watch_is_all(w))
        return true;
    name = name ? name : "";
    cgroup = cgroup ? cgroup : "";
    bool by_name = w->nnames == 0;
    for (unsigned i = 0; i < w->nnames && !by_name; i++)
        by_name = regexec(&w->names[i], name, 0, NULL, 0) == 0;
    if (!by_name)
        return false;
    bool by_cgroup = w->ncgroups == 0;
    for (unsigned i = 0; i < w->ncgroups && !by_cgroup; i++)
        by_cgroup = under(cgroup, w->cgroups[i]);
    return by_cgroup;
}

int apm_watch_config_section(void *ctx, const char *section, const char *key, const char *value,
                             char *err, size_t errlen)
{
    struct apm_watch *w = ctx;
    if (strcmp(section, "watch") != 0) {
        snprintf(err, errlen, "unknown section");
        return APM_E_CONFIG;
    }
    if (strcmp(key, "name") == 0)
        return apm_watch_add_name(w, value, err, errlen);
    if (strcmp(key, "cgroup") == 0)
        return apm_watch_add_cgroup(w, value, err, errlen);
    if (strcmp(key, "all") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0) {
            apm_watch_add_all(w);
            return 0;
        }
        if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0)
            return 0;
        snprintf(err, errlen, "'%s' is not true or false", value);
        return APM_E_CONFIG;
    }
    snprintf(err, errlen, "unknown key (name, cgroup or all)");
    return APM_E_CONFIG;
}
