/*
 * The fault matrix's test agent: the agent's own uplink, feed and disk spool
 * (agent/), fed with synthetic samples instead of /proc, and a ground-truth
 * log of what it produced and what the collector acked. The checker
 * (tests/integration/faultcheck.py) compares that log with the store.
 *
 *   fault_agent --collector H:P --token-file T --agent-id ID --truth FILE
 *               [--spool-dir D] [--interval-ms 100] [--series 4] [--ack-timeout-ms N]
 *
 * Truth log lines (appended, flushed before each batch is handed over, so a
 * kill -9 never loses a line about a batch that could have been sent):
 *   R <instance>                    a run starts
 *   S <instance> <seq> <pid> <t_ms> <value>   one sample of batch seq (series = pid, rss)
 *   A <instance> <seq>              every batch of that instance up to seq is acked
 * SIGTERM stops it cleanly (the spool keeps what is unacked).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>

#include "agent/feed.h"
#include "agent/spool.h"
#include "agent/uplink.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "common/base/token.h"

static struct {
    const char *collector, *token_file, *agent_id, *truth, *spool_dir;
    int interval_ms, series, ack_timeout_ms;
} o = {"127.0.0.1:7411", NULL, "fault-agent", NULL, NULL, 100, 4, 0};

static uv_loop_t loop;
static uv_timer_t tick;
static uv_signal_t sigterm;
static struct apm_uplink *uplink;
static struct apm_spool *spool;
static struct apm_feed feed;
static FILE *truth;
static uint64_t instance;
static int64_t last_t;
static int64_t start_ms;
static bool stopping;

static void on_acked(void *ctx, uint64_t seq)
{
    (void)ctx;
    fprintf(truth, "A %016" PRIx64 " %" PRIu64 "\n", instance, seq);
    fflush(truth);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    int64_t now = apm_now_ms();
    if (now <= last_t)
        now = last_t + 1;
    last_t = now;
    struct apm_batch *b = apm_batch_new(0);
    if (b == NULL)
        return;
    int64_t values[64];
    for (int i = 0; i < o.series; i++) {
        char name[64];
        snprintf(name, sizeof(name), "fault-%d.py", i);
        struct apm_proc_desc d = {
            .pid = 50000 + i, .start_ms = start_ms, .name = name, .cmdline = "fault", .cgroup = ""};
        uint32_t idx;
        values[i] = now * 64 + i; /* unique per sample: the checker recognises each */
        if (apm_batch_add_proc(b, &d, &idx) != 0 ||
            apm_batch_add_sample(b, idx, APM_METRIC_RSS, now, values[i]) != 0) {
            apm_batch_free(b);
            return;
        }
    }
    /* The seq comes from the feed: the next one of the spool's lease or of the uplink. */
    uint64_t seq = feed.spool ? feed.next_seq : 0;
    if (seq == 0) {
        struct apm_uplink_stats us;
        apm_uplink_get_stats(uplink, &us);
        seq = us.batches_queued + 1;
    }
    for (int i = 0; i < o.series; i++)
        fprintf(truth, "S %016" PRIx64 " %" PRIu64 " %d %" PRId64 " %" PRId64 "\n", instance, seq,
                50000 + i, now, values[i]);
    fflush(truth);
    uint64_t got = apm_feed_push(&feed, b);
    if (got != seq) {
        fprintf(stderr, "fault_agent: batch got seq %" PRIu64 ", logged %" PRIu64 "\n", got, seq);
        exit(2);
    }
}

static void on_spool_closed(void *ctx)
{
    (void)ctx;
    spool = NULL;
    feed.spool = NULL;
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    if (stopping)
        return;
    stopping = true;
    feed.stopping = true;
    uv_close((uv_handle_t *)&tick, NULL);
    uv_close((uv_handle_t *)s, NULL);
    apm_uplink_close(uplink, NULL, NULL);
    if (spool != NULL)
        apm_spool_close(spool, NULL, on_spool_closed, NULL);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"collector", 1, 0, 'c'}, {"token-file", 1, 0, 't'},     {"agent-id", 1, 0, 'a'},
        {"truth", 1, 0, 'l'},     {"spool-dir", 1, 0, 's'},      {"interval-ms", 1, 0, 'i'},
        {"series", 1, 0, 'n'},    {"ack-timeout-ms", 1, 0, 'k'}, {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.collector = optarg;
            break;
        case 't':
            o.token_file = optarg;
            break;
        case 'a':
            o.agent_id = optarg;
            break;
        case 'l':
            o.truth = optarg;
            break;
        case 's':
            o.spool_dir = optarg;
            break;
        case 'i':
            o.interval_ms = atoi(optarg);
            break;
        case 'k':
            o.ack_timeout_ms = atoi(optarg);
            break;
        case 'n':
            o.series = atoi(optarg);
            break;
        default:
            return 1;
        }
    }
    if (o.token_file == NULL || o.truth == NULL || o.series < 1 || o.series > 64 ||
        o.interval_ms < 1) {
        fprintf(stderr, "usage: fault_agent --token-file T --truth FILE [--collector H:P] "
                        "[--agent-id ID] [--spool-dir D] [--interval-ms N] [--series 1..64]\n");
        return 1;
    }
    apm_log_init("fault_agent", APM_LOG_INFO);
    truth = fopen(o.truth, "a");
    if (truth == NULL) {
        fprintf(stderr, "fault_agent: %s: %s\n", o.truth, strerror(errno));
        return 1;
    }
    uint8_t token[APM_TOKEN_MAX];
    size_t token_len = 0;
    char err[512];
    if (apm_token_load(o.token_file, false, token, sizeof(token), &token_len, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "fault_agent: %s\n", err);
        return 1;
    }
    /* As apm-agent: a collector closing mid-write (a refused batch) gives EPIPE, not a kill. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    apm_feed_init(&feed, 64u << 20);
    feed.on_acked = on_acked;
    struct apm_uplink_options uo = {.collector = o.collector,
                                    .token = token,
                                    .token_len = token_len,
                                    .backoff_max_ms = 1000,
                                    .ack_timeout_ms = (uint64_t)o.ack_timeout_ms,
                                    .on_acked = apm_feed_on_acked,
                                    .acked_ctx = &feed};
    snprintf(uo.ident.agent_id, sizeof(uo.ident.agent_id), "%s", o.agent_id);
    snprintf(uo.ident.host, sizeof(uo.ident.host), "%s", o.agent_id);
    snprintf(uo.ident.version, sizeof(uo.ident.version), "fault");
    if (getrandom(&instance, sizeof(instance), 0) != (ssize_t)sizeof(instance))
        instance = uv_hrtime();
    if (o.spool_dir != NULL) {
        struct apm_spool_options so = {.dir = o.spool_dir};
        if (apm_spool_open(&loop, &so, apm_feed_on_spool_read, &feed, &spool, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "fault_agent: %s\n", err);
            return 1;
        }
        instance = apm_spool_instance(spool);
        uo.max_queue_bytes = 256u << 20;
    }
    uo.ident.instance = instance;
    /* Processes keep one start time per agent id, so restarts extend the same series. */
    start_ms = 1700000000000LL;
    for (const char *p = o.agent_id; *p; p++)
        start_ms += (unsigned char)*p;
    fprintf(truth, "R %016" PRIx64 "\n", instance);
    fflush(truth);
    if (apm_uplink_new(&loop, &uo, NULL, NULL, &uplink) != 0) {
        fprintf(stderr, "fault_agent: bad collector address %s\n", o.collector);
        return 1;
    }
    apm_feed_attach(&feed, uplink, spool);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 0, (uint64_t)o.interval_ms);
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    fclose(truth);
    return 0;
}
