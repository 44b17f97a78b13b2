#include "agent/agent.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent/feed.h"
#include "agent/probe_listener.h"
#include "agent/sampler.h"
#include "agent/spool.h"
#include "agent/uplink.h"
#include "agent/watch.h"
#include "common/wire/codec.h"
#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/sdnotify.h"
#include "common/base/timeutil.h"
#include "common/wire/tls.h"
#include "common/base/token.h"

#define DAY_MS (86400LL * 1000)

#define OPT(k, t, field, lo, hi, fl, h)                                                            \
    {                                                                                              \
        "agent", k, t, offsetof(struct apm_agent_config, field),                                   \
            sizeof(((struct apm_agent_config *)0)->field), lo, hi, fl, h                           \
    }

static const struct apm_opt agent_opts[] = {
    OPT("config", APM_OPT_STRING, config, 0, 0, true, "INI file to read first"),
    OPT("collector", APM_OPT_ENDPOINT, collector, 0, 0, true,
        "collector ingest address (default 127.0.0.1:7411)"),
    OPT("interval", APM_OPT_DURATION, interval_ms, 100, DAY_MS, true,
        "time between samples of every process (default 10s)"),
    OPT("probe-socket", APM_OPT_STRING, probe_socket, 0, 0, true,
        "Unix socket where Python probes connect (default /run/apm/probe.sock; empty: none)"),
    OPT("probe-socket-mode", APM_OPT_STRING, probe_socket_mode, 0, 0, true,
        "octal permissions of the probe socket (default 0666: any local user's app)"),
    OPT("token-file", APM_OPT_STRING, token_file, 0, 0, true,
        "file holding the collector's token (required)"),
    OPT("tls-ca", APM_OPT_STRING, tls_ca, 0, 0, true,
        "PEM CA that signs the collector's certificate; turns TLS on"),
    OPT("tls-cert", APM_OPT_STRING, tls_cert, 0, 0, true,
        "PEM client certificate, for a collector that asks for one (mTLS)"),
    OPT("tls-key", APM_OPT_STRING, tls_key, 0, 0, true, "PEM private key of tls-cert"),
    OPT("tls-server-name", APM_OPT_STRING, tls_server_name, 0, 0, true,
        "name the collector's certificate must carry (default the host of --collector)"),
    OPT("agent-id", APM_OPT_STRING, agent_id, 0, 0, true,
        "stable agent id (default /etc/machine-id, else the host name)"),
    OPT("host", APM_OPT_STRING, host, 0, 0, true, "host name reported (default gethostname)"),
    OPT("log-level", APM_OPT_STRING, log_level, 0, 0, true, "error, warn, info (default) or debug"),
    OPT("log-format", APM_OPT_STRING, log_format, 0, 0, true,
        "text (default: RFC 3339 time and program; the short form under journald) or json "
        "(one object per line)"),
    OPT("max-queue", APM_OPT_SIZE, max_queue, 1 << 16, 1LL << 40, true,
        "memory for unacked batches; oldest dropped beyond it (default 64M)"),
    OPT("stats-interval", APM_OPT_DURATION, stats_interval_ms, 1000, DAY_MS, true,
        "time between health counter log lines (default 5m)"),
    OPT("proc-root", APM_OPT_STRING, proc_root, 0, 0, true, "procfs mount (default /proc)"),
    OPT("cgroup-root", APM_OPT_STRING, cgroup_root, 0, 0, true,
        "cgroup mount (default /sys/fs/cgroup)"),
    OPT("spool-dir", APM_OPT_STRING, spool_dir, 0, 0, true,
        "directory where unacked batches are kept on disk across outages and restarts "
        "(default none: memory only)"),
    OPT("spool-max", APM_OPT_SIZE, spool_max, 1 << 20, 1LL << 40, true,
        "disk for the spool; the oldest unsent batches are dropped beyond it (default 256M)"),
    OPT("ack-timeout", APM_OPT_DURATION, ack_timeout_ms, 1000, DAY_MS, true,
        "batches unacked this long on a connection: drop it and resend on a new one "
        "(default 60s)"),
    {.key = NULL},
};

const struct apm_opt *apm_agent_options(void)
{
    return agent_opts;
}

void apm_agent_config_defaults(struct apm_agent_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->collector, sizeof(c->collector), "127.0.0.1:7411");
    c->interval_ms = 10000;
    snprintf(c->probe_socket, sizeof(c->probe_socket), "/run/apm/probe.sock");
    snprintf(c->probe_socket_mode, sizeof(c->probe_socket_mode), "0666");
    snprintf(c->log_level, sizeof(c->log_level), "info");
    snprintf(c->log_format, sizeof(c->log_format), "text");
    c->max_queue = 64LL << 20;
    c->stats_interval_ms = 300000;
    c->spool_max = 256LL << 20;
    c->ack_timeout_ms = 60000;
    snprintf(c->proc_root, sizeof(c->proc_root), "/proc");
    snprintf(c->cgroup_root, sizeof(c->cgroup_root), "/sys/fs/cgroup");
}

struct apm_agent {
    uv_loop_t *loop;
    struct apm_tls_ctx *tls; /* NULL: plaintext uplink */
    struct apm_agent_config cfg;
    struct apm_sampler *sampler;
    struct apm_uplink *uplink;
    struct apm_spool *spool; /* NULL without spool-dir */
    struct apm_feed feed;
    struct apm_spool_stats spool_final; /* read as the spool closes */
    struct apm_probe_listener *probe;
    uv_timer_t tick;
    uv_timer_t stats_timer;
    uv_signal_t sigterm, sigint, sighup;
    struct apm_watch *watch;         /* owned; borrowed by the sampler */
    struct apm_watch *pending_watch; /* owned; swapped in when no scan runs */
    uv_work_t work;
    bool work_busy;
    struct apm_batch *work_batch;
    int64_t work_t_ms;
    int work_rc;
    uint64_t ticks_skipped;
    uint64_t scan_failures;
    int64_t health_sent_ms; /* when health counters last rode in a batch */
    bool stopping;
    int handles_open;
};

static void log_stats(struct apm_agent *a)
{
    struct apm_uplink_stats us;
    struct apm_sampler_stats ss;
    apm_uplink_get_stats(a->uplink, &us);
    apm_sampler_stats(a->sampler, &ss);
    apm_info("agent: scans %llu, watched %u, samples taken %llu, sent %llu batches, acked %llu "
             "samples, dropped %llu samples, refused %llu samples, reconnects %llu, ack timeouts "
             "%llu, queue %llu, skipped ticks %llu",
             (unsigned long long)ss.scans, ss.watched, (unsigned long long)us.samples_queued,
             (unsigned long long)us.batches_sent, (unsigned long long)us.samples_acked,
             (unsigned long long)us.samples_dropped, (unsigned long long)us.samples_refused,
             (unsigned long long)us.reconnects, (unsigned long long)us.ack_timeouts,
             (unsigned long long)us.queue_len, (unsigned long long)a->ticks_skipped);
    if (a->spool != NULL) {
        struct apm_spool_stats sp;
        apm_spool_get_stats(a->spool, &sp);
        apm_info("agent: spool: spooled %llu batches (%llu samples), replayed %llu (%llu "
                 "samples), dropped %llu (%llu samples), corrupt %llu (%llu bytes), write errors "
                 "%llu, undecodable %llu, on disk %llu bytes in %llu segments",
                 (unsigned long long)sp.records_spooled, (unsigned long long)sp.samples_spooled,
                 (unsigned long long)sp.records_replayed, (unsigned long long)sp.samples_replayed,
                 (unsigned long long)sp.records_dropped, (unsigned long long)sp.samples_dropped,
                 (unsigned long long)sp.corrupt, (unsigned long long)sp.corrupt_bytes,
                 (unsigned long long)sp.write_errors,
                 (unsigned long long)a->feed.replay_decode_errors, (unsigned long long)sp.bytes,
                 (unsigned long long)sp.segments);
    }
    if (a->probe == NULL)
        return;
    struct apm_probe_listener_stats ps;
    apm_probe_listener_flush_logs(a->probe);
    apm_probe_listener_get_stats(a->probe, &ps);
    apm_info("agent: probes connected %u, refused %llu, lines %llu, bad lines %llu, oversized "
             "%llu, disconnected for bad lines %llu, pid mismatches %llu, dropped: unknown pid "
             "%llu, over the pending cap %llu; diffs %llu, gc %llu, controls sent %llu, "
             "unroutable %llu",
             ps.connections, (unsigned long long)ps.refused, (unsigned long long)ps.lines_ok,
             (unsigned long long)ps.bad_lines, (unsigned long long)ps.oversized,
             (unsigned long long)ps.bad_disconnects, (unsigned long long)ps.pid_mismatch,
             (unsigned long long)ps.unknown_pid, (unsigned long long)ps.pending_dropped,
             (unsigned long long)ps.diffs, (unsigned long long)ps.gc,
             (unsigned long long)ps.controls_sent, (unsigned long long)ps.controls_unroutable);
}

/* How often the agent's own counters ride along in a batch, for the collector's /metrics. */
#define HEALTH_EVERY_MS 10000

/* One counter of a stats struct: name in the health message, where it is, and whether a level. */
struct health_field {
    const char *name;
    size_t offset;
    bool gauge;
};

#define HF(type, field, name, gauge)                                                               \
    {                                                                                              \
        name, offsetof(type, field), gauge                                                         \
    }

static const struct health_field uplink_fields[] = {
    HF(struct apm_uplink_stats, samples_queued, "uplink_samples_queued", false),
    HF(struct apm_uplink_stats, batches_sent, "uplink_batches_sent", false),
    HF(struct apm_uplink_stats, batches_acked, "uplink_batches_acked", false),
    HF(struct apm_uplink_stats, samples_acked, "uplink_samples_acked", false),
    HF(struct apm_uplink_stats, samples_dropped, "uplink_samples_dropped", false),
    HF(struct apm_uplink_stats, samples_refused, "uplink_samples_refused", false),
    HF(struct apm_uplink_stats, reconnects, "uplink_reconnects", false),
    HF(struct apm_uplink_stats, ack_timeouts, "uplink_ack_timeouts", false),
    HF(struct apm_uplink_stats, errors_received, "uplink_errors_received", false),
    HF(struct apm_uplink_stats, queue_len, "uplink_queue_batches", true),
    HF(struct apm_uplink_stats, queue_bytes, "uplink_queue_bytes", true),
};

static const struct health_field spool_fields[] = {
    HF(struct apm_spool_stats, samples_spooled, "spool_samples_spooled", false),
    HF(struct apm_spool_stats, samples_replayed, "spool_samples_replayed", false),
    HF(struct apm_spool_stats, samples_dropped, "spool_samples_dropped", false),
    HF(struct apm_spool_stats, corrupt, "spool_corrupt", false),
    HF(struct apm_spool_stats, write_errors, "spool_write_errors", false),
    HF(struct apm_spool_stats, bytes, "spool_bytes", true),
};

static const struct health_field probe_fields[] = {
    HF(struct apm_probe_listener_stats, refused, "probe_refused", false),
    HF(struct apm_probe_listener_stats, lines_ok, "probe_lines", false),
    HF(struct apm_probe_listener_stats, bad_lines, "probe_bad_lines", false),
    HF(struct apm_probe_listener_stats, pending_dropped, "probe_pending_dropped", false),
    HF(struct apm_probe_listener_stats, diffs, "probe_diffs", false),
};

static void health_add_fields(struct apm_health *h, const void *stats, const struct health_field *f,
                              size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)stats + f[i].offset, sizeof(v));
        (void)apm_health_add(h, f[i].name, v, f[i].gauge);
    }
}

/* Attaches the agent's counters to b every HEALTH_EVERY_MS (a best effort: no memory, none). */
static void attach_health(struct apm_agent *a, struct apm_batch *b, int64_t now_ms)
{
    if (b->health != NULL || now_ms - a->health_sent_ms < HEALTH_EVERY_MS)
        return;
    struct apm_health *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return;
    h->t_ms = now_ms;
    struct apm_uplink_stats us;
    struct apm_sampler_stats ss;
    apm_uplink_get_stats(a->uplink, &us);
    apm_sampler_stats(a->sampler, &ss);
    (void)apm_health_add(h, "scans", ss.scans, false);
    (void)apm_health_add(h, "watched", ss.watched, true);
    (void)apm_health_add(h, "read_errors", ss.read_errors, false);
    (void)apm_health_add(h, "processes_refused", ss.refused, false);
    (void)apm_health_add(h, "ticks_skipped", a->ticks_skipped, false);
    (void)apm_health_add(h, "scan_failures", a->scan_failures, false);
    health_add_fields(h, &us, uplink_fields, sizeof(uplink_fields) / sizeof(uplink_fields[0]));
    if (a->spool != NULL) {
        struct apm_spool_stats sp;
        apm_spool_get_stats(a->spool, &sp);
        health_add_fields(h, &sp, spool_fields, sizeof(spool_fields) / sizeof(spool_fields[0]));
    }
    if (a->probe != NULL) {
        struct apm_probe_listener_stats ps;
        apm_probe_listener_get_stats(a->probe, &ps);
        health_add_fields(h, &ps, probe_fields, sizeof(probe_fields) / sizeof(probe_fields[0]));
        (void)apm_health_add(h, "probe_connections", ps.connections, true);
    }
    b->health = h;
    a->health_sent_ms = now_ms;
}

/*
 * Joins a probe's peer pid to the identity the sampler knows. It runs from
 * sample_done, on the loop thread after a scan finished and before the next
 * one is queued, so it never runs alongside apm_sampler_sample.
 */
static int probe_lookup(void *ctx, int32_t pid, int64_t *start_ms, const char **name)
{
    struct apm_agent *a = ctx;
    return apm_sampler_lookup(a->sampler, pid, start_ms, name);
}

static void sample_work(uv_work_t *req)
{
    struct apm_agent *a = req->data;
    a->work_rc = apm_sampler_sample(a->sampler, a->work_t_ms, a->work_batch);
}

static void sample_done(uv_work_t *req, int status)
{
    struct apm_agent *a = req->data;
    struct apm_batch *b = a->work_batch;
    a->work_batch = NULL;
    a->work_busy = false;
    if (status != 0 || a->stopping) {
        apm_batch_free(b);
        return;
    }
    if (a->work_rc != 0) {
        a->scan_failures++;
        if (a->scan_failures == 1 || a->scan_failures % 60 == 0)
            apm_warn("agent: sampling failed: %s (%llu times)", apm_strerror(a->work_rc),
                     (unsigned long long)a->scan_failures);
    }
    if (a->pending_watch != NULL) {
        apm_sampler_set_watch(a->sampler, a->pending_watch);
        apm_watch_free(a->watch);
        a->watch = a->pending_watch;
        a->pending_watch = NULL;
    }
    if (a->probe != NULL && apm_probe_listener_drain(a->probe, b, probe_lookup, a) != 0)
        apm_warn("agent: probe data dropped: out of memory");
    if (!apm_batch_has_data(b)) {
        apm_batch_free(b);
        return;
    }
    attach_health(a, b, apm_now_ms());
    (void)apm_feed_push(&a->feed, b);
}

static void on_tick(uv_timer_t *t)
{
    struct apm_agent *a = t->data;
    if (a->work_busy) {
        a->ticks_skipped++;
        return;
    }
    a->work_batch = apm_batch_new(0);
    if (a->work_batch == NULL)
        return;
    a->work_t_ms = apm_now_ms();
    a->work.data = a;
    if (uv_queue_work(a->loop, &a->work, sample_work, sample_done) != 0) {
        apm_batch_free(a->work_batch);
        a->work_batch = NULL;
        return;
    }
    a->work_busy = true;
}

static void on_stats(uv_timer_t *t)
{
    log_stats(t->data);
}

static void on_control(void *ctx, const struct apm_msg_control *c)
{
    struct apm_agent *a = ctx;
    const char *what = c->action == APM_CONTROL_TRACE ? "trace" : "stop";
    int rc = a->probe ? apm_probe_listener_control(a->probe, c) : APM_E_NOTFOUND;
    if (rc == 0)
        apm_info("agent: control from collector: %s pid %d for %us sent to its probe", what, c->pid,
                 c->duration_s);
    else
        apm_warn("agent: control from collector: %s pid %d: %s", what, c->pid,
                 rc == APM_E_NOTFOUND ? "no probe of that process is connected" : apm_strerror(rc));
}

static void on_handle_closed(uv_handle_t *h)
{
    struct apm_agent *a = h->data;
    a->handles_open--;
}

static void on_uplink_closed(void *ctx)
{
    struct apm_agent *a = ctx;
    a->uplink = NULL;
}

static void on_spool_closed(void *ctx)
{
    struct apm_agent *a = ctx;
    apm_info("agent: spool closed: %llu batches on disk in all, %llu dropped, %llu corrupt",
             (unsigned long long)a->spool_final.records_spooled,
             (unsigned long long)a->spool_final.records_dropped,
             (unsigned long long)a->spool_final.corrupt);
    a->spool = NULL;
    a->feed.spool = NULL;
}

static void on_probe_closed(void *ctx)
{
    struct apm_agent *a = ctx;
    a->probe = NULL;
}

void apm_agent_stop(struct apm_agent *a)
{
    if (a->stopping)
        return;
    a->stopping = true;
    apm_sd_stopping("stopping");
    a->feed.stopping = true;
    log_stats(a);
    uv_close((uv_handle_t *)&a->tick, on_handle_closed);
    uv_close((uv_handle_t *)&a->stats_timer, on_handle_closed);
    uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&a->sighup, on_handle_closed);
    if (a->work_busy)
        uv_cancel((uv_req_t *)&a->work);
    apm_uplink_close(a->uplink, on_uplink_closed, a);
    /* Everything unacked is in the spool already; closing writes and syncs what is queued. */
    if (a->spool != NULL)
        apm_spool_close(a->spool, &a->spool_final, on_spool_closed, a);
    apm_probe_listener_close(a->probe, on_probe_closed, a);
}

static void on_signal(uv_signal_t *s, int signum)
{
    apm_info("agent: signal %d: stopping", signum);
    apm_agent_stop(s->data);
}

/*
 * SIGHUP: reads the config file's [watch] section again. Other settings
 * need a restart. A bad file keeps the rules in force and says why.
 */
static void on_sighup(uv_signal_t *s, int signum)
{
    struct apm_agent *a = s->data;
    (void)signum;
    if (a->cfg.config[0] == '\0') {
        apm_info("agent: SIGHUP: no config file to reload");
        return;
    }
    struct apm_agent_config scratch;
    apm_agent_config_defaults(&scratch);
    struct apm_watch *w = NULL;
    char err[1024];
    if (apm_watch_new(&w) != 0)
        return;
    if (apm_config_load(a->cfg.config, apm_agent_options(), &scratch, apm_watch_config_section, w,
                        err, sizeof(err)) != 0) {
        apm_error("agent: SIGHUP: keeping the current watch rules: %s", err);
        apm_watch_free(w);
        return;
    }
    apm_info("agent: SIGHUP: watch rules reloaded from %s", a->cfg.config);
    if (a->work_busy) {
        apm_watch_free(a->pending_watch);
        a->pending_watch = w;
        return;
    }
    apm_sampler_set_watch(a->sampler, w);
    apm_watch_free(a->watch);
    a->watch = w;
}

static void default_identity(struct apm_agent_config *c)
{
    if (c->host[0] == '\0' && gethostname(c->host, sizeof(c->host) - 1) != 0)
        snprintf(c->host, sizeof(c->host), "localhost");
    if (c->agent_id[0] != '\0')
        return;
    FILE *f = fopen("/etc/machine-id", "r");
    if (f != NULL) {
        if (fgets(c->agent_id, sizeof(c->agent_id), f) == NULL)
            c->agent_id[0] = '\0';
        fclose(f);
        c->agent_id[strcspn(c->agent_id, "\r\n")] = '\0';
    }
    if (c->agent_id[0] == '\0')
        snprintf(c->agent_id, sizeof(c->agent_id), "%.*s", (int)sizeof(c->agent_id) - 1, c->host);
}

static void read_boot_id(const char *proc_root, char *out, size_t size)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/sys/kernel/random/boot_id", proc_root);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    if (fgets(out, (int)size, f) == NULL)
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
}

static int start_uplink(struct apm_agent *a)
{
    uint8_t token[APM_TOKEN_MAX];
    size_t token_len = 0;
    char err[512];
    apm_feed_init(&a->feed, (uint64_t)a->cfg.max_queue);
    int rc = apm_token_load(a->cfg.token_file, false, token, sizeof(token), &token_len, err,
                            sizeof(err));
    if (rc != 0) {
        apm_error("agent: %s", err);
        return rc;
    }
    if (a->cfg.tls_ca[0] != '\0' || a->cfg.tls_cert[0] != '\0' || a->cfg.tls_key[0] != '\0' ||
        a->cfg.tls_server_name[0] != '\0') {
        struct apm_tls_options to = {
            .cert = a->cfg.tls_cert, .key = a->cfg.tls_key, .ca = a->cfg.tls_ca};
        rc = apm_tls_ctx_new(false, &to, &a->tls, err, sizeof(err));
        if (rc != 0) {
            apm_error("agent: %s", err);
            return rc;
        }
    }
    struct apm_uplink_options uo = {
        .collector = a->cfg.collector,
        .tls = a->tls,
        .tls_server_name = a->cfg.tls_server_name,
        .token = token,
        .token_len = token_len,
        .max_queue_bytes = (size_t)a->cfg.max_queue,
        .ack_timeout_ms = (uint64_t)a->cfg.ack_timeout_ms,
    };
    snprintf(uo.ident.agent_id, sizeof(uo.ident.agent_id), "%.*s",
             (int)sizeof(uo.ident.agent_id) - 1, a->cfg.agent_id);
    snprintf(uo.ident.host, sizeof(uo.ident.host), "%s", a->cfg.host);
    snprintf(uo.ident.version, sizeof(uo.ident.version), "%s", APM_VERSION);
    read_boot_id(a->cfg.proc_root, uo.ident.boot_id, sizeof(uo.ident.boot_id));
    if (getrandom(&uo.ident.instance, sizeof(uo.ident.instance), 0) !=
        (ssize_t)sizeof(uo.ident.instance))
        uo.ident.instance = uv_hrtime() ^ (uint64_t)getpid();
    if (a->cfg.spool_dir[0] != '\0') {
        struct apm_spool_options so = {.dir = a->cfg.spool_dir,
                                       .max_bytes = (uint64_t)a->cfg.spool_max};
        rc = apm_spool_open(a->loop, &so, apm_feed_on_spool_read, &a->feed, &a->spool, err,
                            sizeof(err));
        if (rc != 0) {
            a->spool = NULL;
            apm_error("agent: %s", err);
            return rc;
        }
        uo.ident.instance = apm_spool_instance(a->spool);
        uo.on_acked = apm_feed_on_acked;
        uo.acked_ctx = &a->feed;
        /* The agent keeps the queue under max-queue itself; the uplink never drops. */
        uo.max_queue_bytes = 2 * (size_t)a->cfg.max_queue + (16u << 20);
        apm_info("agent: spool %s (at most %lld bytes), this run's batches from seq %llu",
                 a->cfg.spool_dir, (long long)a->cfg.spool_max,
                 (unsigned long long)apm_spool_first_seq(a->spool));
    }
    rc = apm_uplink_new(a->loop, &uo, on_control, a, &a->uplink);
    if (rc != 0) {
        apm_error("agent: collector address '%s': %s", a->cfg.collector, apm_strerror(rc));
        return rc;
    }
    apm_feed_attach(&a->feed, a->uplink, a->spool);
    return 0;
}

/*
 * Listens for Python probes. A socket that cannot be created is logged and
 * the agent samples without probes: memory sampling matters more.
 */
static int start_probe_listener(struct apm_agent *a)
{
    if (a->cfg.probe_socket[0] == '\0')
        return 0;
    char *end = NULL;
    long mode = strtol(a->cfg.probe_socket_mode, &end, 8);
    if (end == a->cfg.probe_socket_mode || *end != '\0' || mode <= 0 || mode > 0777) {
        apm_error("agent: probe-socket-mode '%s': not octal permissions such as 0660",
                  a->cfg.probe_socket_mode);
        return APM_E_CONFIG;
    }
    struct apm_probe_listener_options po = {.path = a->cfg.probe_socket, .mode = (int)mode};
    int rc = apm_probe_listener_new(a->loop, &po, &a->probe);
    if (rc != 0) {
        a->probe = NULL;
        apm_warn("agent: cannot listen on probe socket %s: %s; Python probes cannot connect",
                 a->cfg.probe_socket, apm_strerror(rc));
    } else {
        apm_info("agent: probes connect to %s", a->cfg.probe_socket);
    }
    return 0;
}

int apm_agent_start(uv_loop_t *loop, const struct apm_agent_config *cfg, struct apm_watch *watch,
                    struct apm_agent **out)
{
    if (cfg->token_file[0] == '\0') {
        apm_error("agent: no token: copy the collector's token file to this host and pass "
                  "--token-file FILE (or token-file in [agent])");
        apm_watch_free(watch);
        return APM_E_CONFIG;
    }
    struct apm_agent *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        apm_watch_free(watch);
        return -ENOMEM;
    }
    a->loop = loop;
    a->watch = watch;
    a->cfg = *cfg;
    default_identity(&a->cfg);
    struct apm_sampler_options so = {
        .proc_root = a->cfg.proc_root,
        .cgroup_root = a->cfg.cgroup_root,
        .watch = watch,
        .self_pid = (int32_t)getpid(),
    };
    int rc = apm_sampler_new(&so, &a->sampler);
    if (rc != 0) {
        apm_error("agent: cannot read %s: %s", a->cfg.proc_root, apm_strerror(rc));
        apm_watch_free(a->watch);
        free(a);
        return rc;
    }
    rc = start_probe_listener(a);
    if (rc == 0)
        rc = start_uplink(a);
    if (rc != 0) {
        apm_probe_listener_close(a->probe, NULL, NULL);
        if (a->spool != NULL) {
            apm_spool_close(a->spool, &a->spool_final, on_spool_closed, a);
            uv_run(loop, UV_RUN_DEFAULT); /* its thread ends; the handles close */
        }
        apm_sampler_free(a->sampler);
        apm_watch_free(a->watch);
        apm_tls_ctx_free(a->tls);
        free(a);
        return rc;
    }
    uv_timer_init(loop, &a->tick);
    uv_timer_init(loop, &a->stats_timer);
    uv_signal_init(loop, &a->sigterm);
    uv_signal_init(loop, &a->sigint);
    uv_signal_init(loop, &a->sighup);
    a->tick.data = a->stats_timer.data = a->sigterm.data = a->sigint.data = a->sighup.data = a;
    a->handles_open = 5;
    uv_timer_start(&a->tick, on_tick, 0, (uint64_t)a->cfg.interval_ms);
    uv_timer_start(&a->stats_timer, on_stats, (uint64_t)a->cfg.stats_interval_ms,
                   (uint64_t)a->cfg.stats_interval_ms);
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_signal_start(&a->sighup, on_sighup, SIGHUP);
    apm_info("agent: host '%s', agent id '%s', collector %s, every %lld ms", a->cfg.host,
             a->cfg.agent_id, a->cfg.collector, (long long)a->cfg.interval_ms);
    *out = a;
    return 0;
}

void apm_agent_free(struct apm_agent *a)
{
    if (a == NULL)
        return;
    apm_sampler_free(a->sampler);
    apm_watch_free(a->watch);
    apm_watch_free(a->pending_watch);
    apm_tls_ctx_free(a->tls);
    free(a);
}
