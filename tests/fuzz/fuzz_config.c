/*
 * Fuzz target for the INI config reader (common/base/config.c through inih) with
 * the real option tables: the first byte picks the collector's ([collector],
 * [analysis] and the alert sections, as apm_collector_config_read reads them)
 * or the agent's ([agent] and [watch]); the rest is the file. A bad file must
 * give APM_E_CONFIG with a "NAME:LINE: ..." message, never a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/watch.h"
#include "common/base/config.h"
#include "common/base/error.h"
#include "server/alerts/alert_rules.h"
#include "server/collector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A name no file has: the rules' whole-section checks look their line up in it. */
#define NAME "/nonexistent/fuzz.ini"

static void check_error(int rc, const char *err)
{
    if (rc == APM_E_CONFIG && strncmp(err, NAME ":", strlen(NAME ":")) != 0)
        __builtin_trap(); /* every config error names the file */
}

static void collector(const char *text, size_t len)
{
    struct apm_collector_config cfg;
    apm_collector_config_defaults(&cfg);
    struct apm_alert_config *ac = apm_alert_config_new();
    if (ac == NULL)
        return;
    char err[1024] = "";
    apm_alert_config_set_file(ac, NAME);
    int rc = apm_config_load_mem(NAME, text, len, apm_collector_options(), &cfg,
                                 apm_alert_config_section, ac, err, sizeof(err));
    if (rc == 0)
        rc = apm_alert_config_finish(ac, err, sizeof(err));
    check_error(rc, err);
    apm_alert_config_free(ac);
}

static void agent(const char *text, size_t len)
{
    struct apm_agent_config cfg;
    apm_agent_config_defaults(&cfg);
    struct apm_watch *w = NULL;
    if (apm_watch_new(&w) != 0)
        return;
    char err[1024] = "";
    int rc = apm_config_load_mem(NAME, text, len, apm_agent_options(), &cfg,
                                 apm_watch_config_section, w, err, sizeof(err));
    check_error(rc, err);
    if (rc == 0) {
        (void)apm_watch_match(w, "python3", "/system.slice/app.service");
        (void)apm_watch_match(w, "", NULL);
    }
    apm_watch_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    if (data[0] & 1)
        agent(text, size - 1);
    else
        collector(text, size - 1);
    return 0;
}
