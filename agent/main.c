/*
 * apm-agent: samples the memory of every watched process on this host and
 * streams it to the collector. Flags override the INI file given with --config.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/agent.h"
#include "agent/watch.h"
#include "common/base/config.h"
#include "common/base/fdlimit.h"
#include "common/base/log.h"
#include "common/base/sdnotify.h"

static void usage(void)
{
    printf("usage: apm-agent [--config FILE] [--collector HOST:PORT] [--interval SECONDS]\n"
           "                 [--probe-socket PATH] [--token-file FILE]\n\n");
    apm_config_print_help(apm_agent_options());
    printf("  %-28s %s\n  %-28s %s\n", "--version", "print the version and exit", "--help",
           "print this help and exit");
    printf("\nWhich processes to watch is set in the config's [watch] section:\n"
           "  name = REGEX      (repeatable) processes whose name matches\n"
           "  cgroup = PREFIX   (repeatable) processes in that memory cgroup subtree\n"
           "  all = true        every process (the default when no rule is given)\n");
}

static void early_flags(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            exit(0);
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("apm-agent %s (%s)\n", APM_VERSION, APM_GIT_COMMIT);
            exit(0);
        }
    }
}

/*
 * The agent is meant to cost almost nothing: one worker thread is all the
 * sampler needs, and one malloc arena keeps a batch built on the worker and
 * freed on the loop from fragmenting a second arena.
 */
static void lean_runtime(void)
{
    setenv("UV_THREADPOOL_SIZE", "1", 0);
    mallopt(M_ARENA_MAX, 1);
}

int main(int argc, char **argv)
{
    lean_runtime();
    struct apm_agent_config cfg;
    apm_agent_config_defaults(&cfg);
    early_flags(argc, argv);
    const struct apm_opt *opts = apm_agent_options();
    if (apm_config_args("apm-agent", argc, argv, opts, &cfg, APM_ARGS_CONFIG) != 0)
        return 1;
    struct apm_watch *watch = NULL;
    if (apm_watch_new(&watch) != 0) {
        fprintf(stderr, "apm-agent: out of memory\n");
        return 1;
    }
    if (cfg.config[0] != '\0') {
        char err[1024];
        if (apm_config_load(cfg.config, opts, &cfg, apm_watch_config_section, watch, err,
                            sizeof(err)) != 0) {
            fprintf(stderr, "apm-agent: %s\n", err);
            apm_watch_free(watch);
            return 1;
        }
    }
    if (apm_config_args("apm-agent", argc, argv, opts, &cfg, APM_ARGS_REST) != 0) {
        apm_watch_free(watch);
        return 1;
    }
    char err[256];
    if (apm_log_setup("apm-agent", cfg.log_level, cfg.log_format, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-agent: %s\n", err);
        apm_watch_free(watch);
        return 1;
    }
    /*
     * The sampler keeps one descriptor per watched process (statm) and per
     * cgroup file; take every descriptor the hard limit allows.
     */
    (void)apm_fdlimit_raise(NULL);
    /*
     * A collector that closes the connection while an uplink write is under
     * way must give EPIPE, not SIGPIPE: its default action kills the agent.
     */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct apm_agent *a = NULL;
    if (apm_agent_start(&loop, &cfg, watch, &a) != 0) {
        uv_loop_close(&loop);
        return 1;
    }
    /* The probe socket listens and the uplink is on its way: a Type=notify unit is started. */
    char status[8192];
    snprintf(status, sizeof(status), "sampling every %lld ms for collector %s",
             (long long)cfg.interval_ms, cfg.collector);
    struct apm_sd_notify *notify = NULL;
    if (apm_sd_ready(&loop, status, &notify) != 0)
        apm_warn("agent: cannot start the systemd watchdog: out of memory");
    uv_run(&loop, UV_RUN_DEFAULT);
    apm_sd_close(notify);
    uv_run(&loop, UV_RUN_DEFAULT);
    apm_agent_free(a);
    int rc = uv_loop_close(&loop);
    if (rc != 0)
        apm_warn("agent: loop closed with handles open: %s", uv_strerror(rc));
    return 0;
}
