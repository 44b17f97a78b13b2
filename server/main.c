/*
 * apm-collector: receives agents' samples, stores them in LMDB and answers
 * queries over HTTP. Flags override the INI file given with --config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "server/alerts/alert_rules.h"
#include "server/collector.h"

static void usage(void)
{
    printf("usage: apm-collector [--config FILE] [--data-dir DIR] [--listen HOST:PORT]\n"
           "                     [--http HOST:PORT] [--token-file FILE] [--foreground]\n\n");
    apm_config_print_help(apm_collector_options());
    printf("  %-28s %s\n  %-28s %s\n", "--version", "print the version and exit", "--help",
           "print this help and exit");
}

/* Handles --help and --version, which end the program before anything else. */
static void early_flags(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            exit(0);
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("apm-collector %s (%s)\n", APM_VERSION, APM_GIT_COMMIT);
            exit(0);
        }
    }
}

int main(int argc, char **argv)
{
    struct apm_collector_config cfg;
    apm_collector_config_defaults(&cfg);
    early_flags(argc, argv);
    const struct apm_opt *opts = apm_collector_options();
    if (apm_config_args("apm-collector", argc, argv, opts, &cfg, APM_ARGS_CONFIG) != 0)
        return 1;
    if (cfg.config[0] != '\0') {
        char err[1024];
        /* Alert sections are checked here so that a bad rule stops the start with its line. */
        struct apm_alert_config *ac = apm_alert_config_new();
        if (ac != NULL)
            apm_alert_config_set_file(ac, cfg.config);
        int rc = ac == NULL ? -ENOMEM
                            : apm_config_load(cfg.config, opts, &cfg, apm_alert_config_section, ac,
                                              err, sizeof(err));
        if (rc == 0)
            rc = apm_alert_config_finish(ac, err, sizeof(err));
        apm_alert_config_free(ac);
        if (rc != 0) {
            fprintf(stderr, "apm-collector: %s\n", rc == -ENOMEM ? "out of memory" : err);
            return 1;
        }
    }
    if (apm_config_args("apm-collector", argc, argv, opts, &cfg, APM_ARGS_REST) != 0)
        return 1;
    enum apm_log_level level;
    if (apm_log_level_parse(cfg.log_level, &level) != 0) {
        fprintf(stderr, "apm-collector: log-level '%s' is not error, warn, info or debug\n",
                cfg.log_level);
        return 1;
    }
    apm_log_init("apm-collector", level);
    if (!cfg.foreground && daemon(0, 1) != 0) {
        perror("apm-collector: daemon");
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct apm_collector *c = NULL;
    int rc = apm_collector_start(&loop, &cfg, &c);
    if (rc != 0) {
        uv_loop_close(&loop);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    apm_collector_free(c);
    rc = uv_loop_close(&loop);
    if (rc != 0)
        apm_warn("collector: loop closed with handles open: %s", uv_strerror(rc));
    apm_info("collector: stopped");
    return 0;
}
