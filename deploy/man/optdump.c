/*
 * Prints the option tables of apm-collector and apm-agent, one option a line:
 * PROGRAM TAB SECTION TAB KEY TAB ARG TAB FLAG(0|1) TAB HELP. The man pages
 * (deploy/man/mkman.py) are made from it, so a flag in a table cannot be
 * missing from its page. Run at build time only; never installed.
 */
#include <stdio.h>

#include "agent/agent.h"
#include "common/base/config.h"
#include "server/collector.h"

static void dump(const char *prog, const struct apm_opt *opts)
{
    for (const struct apm_opt *o = opts; o->key != NULL; o++)
        printf("%s\t%s\t%s\t%s\t%d\t%s\n", prog, o->section, o->key, apm_config_arg_name(o->type),
               o->flag ? 1 : 0, o->help);
}

int main(void)
{
    dump("apm-collector", apm_collector_options());
    dump("apm-agent", apm_agent_options());
    return 0;
}
