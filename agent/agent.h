#ifndef APM_AGENT_H
#define APM_AGENT_H

/*
 * apm-agent as an object: settings, the sampler on a timer (its /proc scan
 * runs on a worker thread), and the uplink to the collector, on one loop.
 * main.c only parses arguments and runs it.
 */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/config.h"

struct apm_agent_config {
    char config[4096];
    char collector[256];
    int64_t interval_ms;
    char probe_socket[108];
    char probe_socket_mode[8];
    char token_file[4096];
    char tls_ca[4096];
    char tls_cert[4096];
    char tls_key[4096];
    char tls_server_name[256];
    char agent_id[128];
    char host[256];
    char log_level[16];
    char log_format[8]; /* "text" or "json" */
    int64_t max_queue;
    int64_t stats_interval_ms;
    char proc_root[1024];
    char cgroup_root[1024];
    bool watch_all;
    char spool_dir[4096];
    int64_t spool_max;
    int64_t ack_timeout_ms;
};

/* The option table for [agent] and its flags, terminated by {.key = NULL}. */
const struct apm_opt *apm_agent_options(void);

void apm_agent_config_defaults(struct apm_agent_config *c);

struct apm_watch;
struct apm_agent;

/*
 * Starts sampling and connecting. Takes ownership of watch (NULL = every
 * process), also on failure; SIGHUP replaces it with the config file's
 * [watch] section. Returns 0 and *out (ends with apm_agent_stop and the
 * loop running dry, then apm_agent_free), or a negative code after logging why.
 */
int apm_agent_start(uv_loop_t *loop, const struct apm_agent_config *cfg, struct apm_watch *watch,
                    struct apm_agent **out);

/* Stops timers and the uplink and closes every handle. Idempotent. */
void apm_agent_stop(struct apm_agent *a);

/* Frees after the loop has ended. Accepts NULL. */
void apm_agent_free(struct apm_agent *a);

#endif
