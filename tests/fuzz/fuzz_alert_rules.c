/*
 * Fuzz target for the alert rule parser (server/alerts/alert_rules.c): the
 * input is a file of [rule NAME], [notify NAME] and [alerts] sections, read
 * as apm_alert_config_load_file reads one, then checked as a whole
 * (apm_alert_config_finish) and its rules taken and freed as the collector
 * does. A bad rule must give APM_E_CONFIG naming the file, never a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/base/config.h"
#include "common/base/error.h"
#include "server/alerts/alert_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "/nonexistent/rules.ini"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct apm_opt none[] = {{.key = NULL}};
    struct apm_alert_config *c = apm_alert_config_new();
    if (c == NULL)
        return 0;
    char err[1024] = "";
    apm_alert_config_set_file(c, NAME);
    int rc = apm_config_load_mem(NAME, (const char *)data, size, none, NULL,
                                 apm_alert_config_section, c, err, sizeof(err));
    if (rc == 0)
        rc = apm_alert_config_finish(c, err, sizeof(err));
    if (rc == APM_E_CONFIG && strncmp(err, NAME ":", strlen(NAME ":")) != 0)
        __builtin_trap();
    if (rc == 0) {
        struct apm_alert_rule *rules = NULL;
        size_t n = 0;
        apm_alert_config_take_rules(c, &rules, &n);
        if (n == 0 || rules == NULL)
            __builtin_trap(); /* finish adds the built-in rules when none is configured */
        apm_alert_rules_free(rules, n);
    }
    apm_alert_config_free(c);
    return 0;
}
