#ifndef APM_ALERT_RULES_H
#define APM_ALERT_RULES_H

/*
 * Alert configuration from the collector's INI files: [rule NAME] sections
 * (alert rules), [notify NAME] sections (delivery targets) and [alerts]
 * (engine settings). docs/alerts.md lists every key. Errors name the file,
 * the line and the key: "FILE:LINE: key 'K' in [rule NAME]: reason".
 *
 * Use: apm_alert_config_new, then for each file apm_alert_config_set_file
 * and apm_config_load(..., apm_alert_config_section, cfg, ...) (or
 * apm_alert_config_load_file for a file of these sections only), then
 * apm_alert_config_finish. Any thread; a config is used by one at a time.
 */
#include <stddef.h>
#include <stdint.h>

#include "server/alerts/alerts.h"
#include "server/alerts/notify.h"

struct apm_alert_config {
    struct apm_alert_rule *rules; /* owned */
    size_t nrules;
    struct apm_notify_target *targets; /* owned */
    size_t ntargets;
    int64_t stale_ms;         /* [alerts] stale; 0 = by sampling interval */
    int64_t resend_ms;        /* [alerts] resend; 0 = 1 min */
    int64_t tick_ms;          /* [alerts] evaluate; 0 = 1 s */
    int64_t silences_max;     /* [alerts] silences-max; 0 = APM_ALERT_SILENCES_MAX */
    int64_t silences_keep_ms; /* [alerts] silences-keep; 0 = 1 day */
    bool defaults;            /* no rule was configured: the built-in ones are used */
    /* Parsing state. */
    char file[4096];
    char section[128];
};

/* Returns an empty config (free with apm_alert_config_free) or NULL. */
struct apm_alert_config *apm_alert_config_new(void);

/* Frees the config, its rules and targets. Accepts NULL. */
void apm_alert_config_free(struct apm_alert_config *c);

/* Names the file the next sections come from (for error lines). path is copied. */
void apm_alert_config_set_file(struct apm_alert_config *c, const char *path);

/*
 * An apm_config_section_fn (ctx is the config): takes one key of a [rule
 * NAME], [notify NAME] or [alerts] section; refuses other sections.
 */
int apm_alert_config_section(void *ctx, const char *section, const char *key, const char *value,
                             char *err, size_t errlen);

/* Reads a file holding only alert sections. Returns 0, APM_E_CONFIG or -errno (err says why). */
int apm_alert_config_load_file(struct apm_alert_config *c, const char *path, char *err,
                               size_t errlen);

/*
 * Checks what needs the whole section (a rule's kind and the keys it needs,
 * a target's url or command), fills defaults, and adds the built-in rules
 * when none was configured. Returns 0 or APM_E_CONFIG with
 * "FILE:LINE: key 'K' in [S]: reason" in err.
 */
int apm_alert_config_finish(struct apm_alert_config *c, char *err, size_t errlen);

/*
 * Moves the rules out of c (the caller then owns them: apm_alerts_set_rules
 * or apm_alert_rules_free).
 */
void apm_alert_config_take_rules(struct apm_alert_config *c, struct apm_alert_rule **rules,
                                 size_t *n);

/* Frees n rules (their regexes too) and the array. Accepts NULL. */
void apm_alert_rules_free(struct apm_alert_rule *rules, size_t n);

#endif
