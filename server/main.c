/*
 * apm-collector: receives agents' samples, stores them in LMDB and answers
 * queries over HTTP. Flags override the INI file given with --config.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#ifdef APM_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/base/config.h"
#include "common/base/error.h"
#include "common/base/fdlimit.h"
#include "common/base/log.h"
#include "common/base/sdnotify.h"
#include "server/collector.h"
#include "server/store/store.h"

static void usage(void)
{
    printf("usage: apm-collector [--config FILE] [--data-dir DIR] [--listen HOST:PORT]\n"
           "                     [--http HOST:PORT] [--token-file FILE] [--daemon]\n"
           "       apm-collector [--config FILE] [--data-dir DIR] --backup BACKUP-DIR\n\n");
    apm_config_print_help(apm_collector_options());
    printf("  %-28s %s\n", "--backup DIR",
           "copy the store (compacted) into DIR, absent or empty, and exit; refused while a "
           "collector runs on the data directory (use apm-cli backup then)");
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

#ifdef APM_HAVE_SYSTEMD
static const struct apm_sd_backend libsystemd = {
    .notify = sd_notify,
    .watchdog_enabled = sd_watchdog_enabled,
};
#endif

/*
 * Takes "--backup DIR" (or "--backup=DIR") out of argv, since it is an
 * action, not a setting of the INI file. Returns DIR, NULL without the flag,
 * or "" when the flag has no value.
 */
static const char *take_backup_flag(int *argc, char **argv)
{
    const char *dir = NULL;
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--backup") == 0) {
            dir = i + 1 < *argc ? argv[++i] : "";
        } else if (strncmp(argv[i], "--backup=", 9) == 0) {
            dir = argv[i] + 9;
        } else {
            argv[n++] = argv[i];
        }
    }
    *argc = n;
    argv[n] = NULL;
    return dir;
}

/*
 * apm-collector --backup DIR: the backup the API takes online, with the
 * collector stopped, under the same data-directory lock (so it refuses while
 * a collector runs). Returns the exit code.
 */
static int offline_backup(const struct apm_collector_config *cfg, const char *dir)
{
    char abs[PATH_MAX], cwd[PATH_MAX];
    if (dir[0] == '\0') {
        fprintf(stderr, "apm-collector: --backup needs a directory\n");
        return 1;
    }
    if (dir[0] != '/' && (getcwd(cwd, sizeof(cwd)) == NULL ||
                          snprintf(abs, sizeof(abs), "%s/%s", cwd, dir) >= (int)sizeof(abs))) {
        fprintf(stderr, "apm-collector: --backup %s: path too long\n", dir);
        return 1;
    }
    if (dir[0] == '/')
        snprintf(abs, sizeof(abs), "%s", dir);
    struct apm_store_options so = {.dir = cfg->data_dir,
                                   .map_size = (size_t)cfg->map_size,
                                   .max_disk = (uint64_t)cfg->max_disk};
    struct apm_store *store = NULL;
    int rc = apm_store_open(&so, &store);
    if (rc != 0) {
        if (rc != -EBUSY) /* a locked directory has said so, with the holder's pid */
            apm_error("collector: cannot open store in %s: %s", cfg->data_dir, apm_strerror(rc));
        return 1;
    }
    struct apm_store_backup_info info;
    char err[PATH_MAX + 256];
    rc = apm_store_backup(store, abs, &info, err, sizeof(err));
    apm_store_free(store);
    if (rc != 0)
        return 1; /* apm_store_backup logged err */
    printf("backup of %s in %s: %" PRIu64 " bytes (+%" PRIu64 " in other files) in %.3f s, %" PRIu64
           " series, newest sample at %" PRId64 " ms\n",
           cfg->data_dir, abs, info.bytes, info.other_bytes, (double)info.duration_us / 1e6,
           info.series, info.last_sample_ms);
    return 0;
}

int main(int argc, char **argv)
{
    struct apm_collector_config cfg;
    apm_collector_config_defaults(&cfg);
    early_flags(argc, argv);
    const char *backup_dir = take_backup_flag(&argc, argv);
    const struct apm_opt *opts = apm_collector_options();
    if (apm_config_args("apm-collector", argc, argv, opts, &cfg, APM_ARGS_CONFIG) != 0)
        return 1;
    /* The file is read once, here; the alerts' part goes to the collector as it is. */
    char err[1024] = "";
    struct apm_alert_config *alerts = NULL;
    if (apm_collector_config_read(&cfg, &alerts, err, sizeof(err)) != 0) {
        fprintf(stderr, "apm-collector: %s\n", err);
        return 1;
    }
    int rc = apm_config_args("apm-collector", argc, argv, opts, &cfg, APM_ARGS_REST);
    if (rc == 0 &&
        (rc = apm_log_setup("apm-collector", cfg.log_level, cfg.log_format, err, sizeof(err))) != 0)
        fprintf(stderr, "apm-collector: %s\n", err);
    /*
     * Foreground unless asked to detach, so that a start-up failure (a taken
     * port, a bad store) reaches the caller as exit code 1.
     */
    if (rc == 0 && cfg.daemon && !cfg.foreground && backup_dir == NULL && daemon(0, 1) != 0) {
        perror("apm-collector: daemon");
        rc = -errno;
    }
    if (rc != 0) {
        apm_alert_config_free(alerts);
        return 1;
    }
    if (backup_dir != NULL) {
        apm_alert_config_free(alerts);
        return offline_backup(&cfg, backup_dir);
    }
    /* The connection caps, not EMFILE, decide who is refused. */
    uint64_t nofile = 0;
    rc = apm_fdlimit_raise(&nofile);
    if (rc != 0)
        apm_warn("collector: cannot raise the descriptor limit: %s", apm_strerror(rc));
    else
        apm_debug("collector: descriptor limit %llu", (unsigned long long)nofile);
    /* A peer that closes while an ack or an HTTP answer is written: EPIPE, not SIGPIPE's kill. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct apm_collector *c = NULL;
    rc = apm_collector_start(&loop, &cfg, alerts, &c);
    if (rc != 0) {
        uv_loop_close(&loop);
        return 1;
    }
    /* The listeners are up: a Type=notify unit is started now, and its watchdog runs. */
    char status[8192];
    snprintf(status, sizeof(status), "ingest on %s, HTTP on %s, store %s", cfg.listen, cfg.http,
             cfg.data_dir);
    struct apm_sd_notify *notify = NULL;
#ifdef APM_HAVE_SYSTEMD
    apm_sd_use(&libsystemd);
#endif
    if (apm_sd_ready(&loop, status, &notify) != 0)
        apm_warn("collector: cannot start the systemd watchdog: out of memory");
    uv_run(&loop, UV_RUN_DEFAULT);
    apm_sd_close(notify);
    uv_run(&loop, UV_RUN_DEFAULT);
    apm_collector_free(c);
    rc = uv_loop_close(&loop);
    if (rc != 0)
        apm_warn("collector: loop closed with handles open: %s", uv_strerror(rc));
    apm_info("collector: stopped");
    return 0;
}
