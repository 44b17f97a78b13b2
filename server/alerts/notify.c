/*
 * Alert delivery (notify.h): one thread, a bounded queue of (notification,
 * target) jobs ordered by their next attempt, libcurl for HTTP and
 * fork + execve for hooks.
 */
#include "server/alerts/notify.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/base/timeutil.h"
#include "server/alerts/alert_text.h"

#define DEFAULT_RESEND_MS 60000
#define RESPONSE_MAX 4096

/* One notification, shared by its jobs (one per target). */
struct group {
    uint64_t id;
    enum apm_alert_state st;
    unsigned remaining;
    bool report; /* call done when the last job ends */
};

struct job {
    struct job *next;
    struct group *g;
    struct apm_notify_target t;
    struct apm_alert a;
    enum apm_alert_state st;
    int64_t created_ms;
    unsigned attempts;
    int64_t next_ms;
};

struct apm_notify {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    struct apm_notify_target targets[APM_NOTIFY_MAX_TARGETS];
    size_t ntargets;
    char generator_url[APM_NOTIFY_URL_MAX];
    int64_t resend_ms;
    apm_notify_done_fn done;
    void *done_ctx;
    struct job *queue; /* sorted by next_ms */
    size_t queued;
    struct apm_notify_stats stats;
};

/* ---- payloads ---- */

char *apm_notify_webhook_body(const struct apm_alert *a, enum apm_alert_state st, int64_t now_ms)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "event", json_string(apm_alert_state_name(st)));
    json_object_set_new(o, "time", json_real((double)now_ms / 1000.0));
    json_object_set_new(o, "alert", apm_alert_text_json(a, now_ms));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static json_t *rfc3339(int64_t ms)
{
    char buf[40];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

/* Adds the rule's "k=v,k=v" labels; the built-in ones win. */
static void add_rule_labels(json_t *labels, const char *s)
{
    while (*s != '\0') {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', n);
        if (eq != NULL) {
            char k[128], v[256];
            snprintf(k, sizeof(k), "%.*s", (int)(eq - s), s);
            snprintf(v, sizeof(v), "%.*s", (int)(n - (size_t)(eq - s) - 1), eq + 1);
            if (json_object_get(labels, k) == NULL)
                json_object_set_new(labels, k, json_string(v));
        }
        s += n;
        if (*s == ',')
            s++;
    }
}

char *apm_notify_alertmanager_body(const struct apm_alert *a, enum apm_alert_state st,
                                   int64_t now_ms, int64_t ends_in_ms, const char *generator_url)
{
    char pid[16], fc[256], sus[320];
    snprintf(pid, sizeof(pid), "%d", (int)a->pid);
    double now_s = (double)now_ms / 1000.0;
    json_t *labels = json_pack("{s:s, s:s, s:s}", "alertname", a->rule, "severity",
                               apm_alert_severity_name(a->severity), "host", a->host);
    if (labels == NULL)
        return NULL;
    if (a->process_id[0] != '\0') {
        json_object_set_new(labels, "process", json_string(a->process_name));
        json_object_set_new(labels, "pid", json_string(pid));
    }
    add_rule_labels(labels, a->labels);
    json_t *ann = json_pack("{s:s, s:s, s:s}", "summary", a->summary, "forecast",
                            apm_alert_text_forecast(a, now_s, fc, sizeof(fc)), "suspect",
                            apm_alert_text_suspect(a, sus, sizeof(sus)));
    int64_t starts = a->fired_ms > 0 ? a->fired_ms : a->started_ms;
    int64_t ends = st == APM_ALERT_RESOLVED ? now_ms : now_ms + ends_in_ms;
    json_t *alert = json_pack("{s:o, s:o*, s:o, s:o}", "labels", labels, "annotations", ann,
                              "startsAt", rfc3339(starts), "endsAt", rfc3339(ends));
    if (alert == NULL)
        return NULL;
    if (generator_url != NULL && generator_url[0] != '\0') {
        char url[APM_NOTIFY_URL_MAX + 64];
        snprintf(url, sizeof(url), "%s/api/v1/alerts?state=all#%" PRIu64, generator_url, a->id);
        json_object_set_new(alert, "generatorURL", json_string(url));
    }
    json_t *arr = json_array();
    json_array_append_new(arr, alert);
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}

/* ---- HTTP ---- */

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ctx)
{
    (void)ptr;
    size_t *seen = ctx;
    *seen += size * nmemb;
    return *seen > RESPONSE_MAX * 16 ? 0 : size * nmemb;
}

/* POSTs a JSON body. Returns 0 on a 2xx answer. */
static int post_json(const char *url, const char *body, int64_t timeout_ms, char *why,
                     size_t whylen)
{
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(why, whylen, "cannot create a curl handle");
        return -ENOMEM;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    size_t seen = 0;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &seen);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "apm-collector/" APM_VERSION);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return -EIO;
    }
    if (status < 200 || status > 299) {
        snprintf(why, whylen, "answered HTTP %ld", status);
        return -EIO;
    }
    return 0;
}

/* ---- exec ---- */

static char *env_var(const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 2;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s=%s", name, value);
    return s;
}

/* Waits for pid up to timeout_ms, then kills it. Returns its wait status or -1. */
static int wait_child(pid_t pid, int64_t timeout_ms)
{
    int status = 0;
    uint64_t deadline = apm_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (apm_mono_ns() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/*
 * Writes the body to the hook's stdin. A hook that does not read it (that is
 * its right) raises SIGPIPE in the writer: it is blocked for the write and a
 * SIGPIPE it raised is discarded, so that any thread may call this.
 */
static void write_all(int fd, const char *p, size_t n)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
    if (!was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int apm_notify_exec(const struct apm_notify_target *t, const struct apm_alert *a,
                    enum apm_alert_state st, const char *body, int64_t now_ms)
{
    char id[24], pid[16], fc[256], sus[320];
    snprintf(id, sizeof(id), "%" PRIu64, a->id);
    snprintf(pid, sizeof(pid), "%d", (int)a->pid);
    double now_s = (double)now_ms / 1000.0;
    const char *vars[][2] = {
        {"APM_ALERT_ID", id},
        {"APM_ALERT_EVENT", apm_alert_state_name(st)},
        {"APM_ALERT_RULE", a->rule},
        {"APM_ALERT_KIND", apm_alert_kind_name(a->kind)},
        {"APM_ALERT_SEVERITY", apm_alert_severity_name(a->severity)},
        {"APM_ALERT_HOST", a->host},
        {"APM_ALERT_PROCESS", a->process_name},
        {"APM_ALERT_PROCESS_ID", a->process_id},
        {"APM_ALERT_PID", pid},
        {"APM_ALERT_SUMMARY", a->summary},
        {"APM_ALERT_FORECAST", apm_alert_text_forecast(a, now_s, fc, sizeof(fc))},
        {"APM_ALERT_SUSPECT", apm_alert_text_suspect(a, sus, sizeof(sus))},
        {"PATH", "/usr/bin:/bin"},
    };
    enum { NVARS = sizeof(vars) / sizeof(vars[0]) };
    char *envp[NVARS + 1] = {NULL};
    char *argv[APM_NOTIFY_MAX_ARGS + 3] = {NULL};
    int fds[2] = {-1, -1};
    int rc = -ENOMEM;
    for (size_t i = 0; i < NVARS; i++)
        if ((envp[i] = env_var(vars[i][0], vars[i][1])) == NULL)
            goto out;
    argv[0] = (char *)t->command;
    argv[1] = (char *)apm_alert_state_name(st);
    for (unsigned i = 0; i < t->nargs; i++)
        argv[2 + i] = (char *)t->args[i];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        rc = -errno;
        goto out;
    }
    pid_t child = fork();
    if (child < 0) {
        rc = -errno;
        goto out;
    }
    if (child == 0) {
        /* Only async-signal-safe calls from here to execve. */
        if (dup2(fds[0], 0) < 0)
            _exit(127);
        close_range(3, ~0u, 0);
        execve(t->command, argv, envp);
        _exit(127);
    }
    close(fds[0]);
    fds[0] = -1;
    write_all(fds[1], body, strlen(body));
    close(fds[1]);
    fds[1] = -1;
    int status = wait_child(child, t->timeout_ms);
    if (status < 0)
        rc = -ETIMEDOUT;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        rc = 0;
    else
        rc = -EIO;
out:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    for (size_t i = 0; i < NVARS; i++)
        free(envp[i]);
    return rc;
}

/* ---- the queue ---- */

static void insert(struct apm_notify *n, struct job *j)
{
    struct job **p = &n->queue;
    while (*p != NULL && (*p)->next_ms <= j->next_ms)
        p = &(*p)->next;
    j->next = *p;
    *p = j;
}

static int deliver(struct apm_notify *n, struct job *j, int64_t now_ms, char *why, size_t whylen)
{
    if (j->t.type == APM_NOTIFY_EXEC) {
        char *body = apm_notify_webhook_body(&j->a, j->st, now_ms);
        if (body == NULL)
            return -ENOMEM;
        int rc = apm_notify_exec(&j->t, &j->a, j->st, body, now_ms);
        free(body);
        if (rc != 0)
            snprintf(why, whylen, "%s", rc == -ETIMEDOUT ? "timed out" : "exited non-zero");
        return rc;
    }
    char *body = NULL;
    char url[APM_NOTIFY_URL_MAX + 32];
    if (j->t.type == APM_NOTIFY_ALERTMANAGER) {
        int64_t resend = n->resend_ms > 0 ? n->resend_ms : DEFAULT_RESEND_MS;
        body = apm_notify_alertmanager_body(&j->a, j->st, now_ms, 4 * resend, n->generator_url);
        size_t len = strlen(j->t.url);
        while (len > 0 && j->t.url[len - 1] == '/')
            len--;
        snprintf(url, sizeof(url), "%.*s/api/v2/alerts", (int)len, j->t.url);
    } else {
        body = apm_notify_webhook_body(&j->a, j->st, now_ms);
        snprintf(url, sizeof(url), "%s", j->t.url);
    }
    if (body == NULL)
        return -ENOMEM;
    int rc = post_json(url, body, j->t.timeout_ms, why, whylen);
    free(body);
    return rc;
}

/* Ends a job; returns its group when the notification is complete and must be reported. */
static struct group *finish(struct job *j)
{
    struct group *g = j->g;
    free(j);
    if (g == NULL || --g->remaining > 0)
        return NULL;
    if (g->report)
        return g;
    free(g);
    return NULL;
}

static void *run(void *arg)
{
    struct apm_notify *n = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        int64_t now = apm_now_ms();
        struct job *j = n->queue;
        if (j == NULL || j->next_ms > now) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait_ms = j == NULL ? 1000 : j->next_ms - now;
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&n->cv, &n->mu, &ts);
            continue;
        }
        n->queue = j->next;
        pthread_mutex_unlock(&n->mu);
        char why[256] = "";
        int rc = deliver(n, j, now, why, sizeof(why));
        /* A hook that closed its stdin early leaves a SIGPIPE pending on this thread. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) > 0)
            ;
        pthread_mutex_lock(&n->mu);
        j->attempts++;
        struct group *done = NULL;
        if (rc == 0) {
            n->stats.delivered++;
            n->queued--;
            done = finish(j);
        } else {
            n->stats.failures++;
            apm_warn("notify: %s: alert #%" PRIu64 " %s: attempt %u failed: %s", j->t.name, j->a.id,
                     apm_alert_state_name(j->st), j->attempts, why);
            if (j->attempts >= j->t.max_attempts) {
                n->stats.gave_up++;
                n->queued--;
                apm_error("notify: %s: giving up on alert #%" PRIu64 " after %u attempts",
                          j->t.name, j->a.id, j->attempts);
                done = finish(j);
            } else {
                int64_t delay = j->t.backoff_ms;
                for (unsigned k = 1; k < j->attempts && delay < j->t.backoff_max_ms; k++)
                    delay *= 2;
                j->next_ms =
                    apm_now_ms() + (delay < j->t.backoff_max_ms ? delay : j->t.backoff_max_ms);
                insert(n, j);
            }
        }
        if (done != NULL) {
            apm_notify_done_fn fn = n->done;
            void *ctx = n->done_ctx;
            pthread_mutex_unlock(&n->mu);
            if (fn != NULL)
                fn(ctx, done->id, done->st);
            free(done);
            pthread_mutex_lock(&n->mu);
        }
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* Queues one job per target that takes the alert. Returns 0, APM_E_FULL or -ENOMEM. */
static int enqueue(struct apm_notify *n, const struct apm_alert *a, enum apm_alert_state st,
                   int64_t now_ms, bool refresh)
{
    pthread_mutex_lock(&n->mu);
    size_t want = 0;
    for (size_t i = 0; i < n->ntargets; i++)
        if (a->severity >= n->targets[i].min_severity &&
            (!refresh || n->targets[i].type == APM_NOTIFY_ALERTMANAGER))
            want++;
    int rc = 0;
    struct group *g = NULL;
    if (n->queued + want > APM_NOTIFY_QUEUE_MAX) {
        n->stats.dropped++;
        rc = APM_E_FULL;
        goto out;
    }
    if (!refresh || want > 0) {
        g = calloc(1, sizeof(*g));
        if (g == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        *g = (struct group){a->id, st, (unsigned)want + 1, !refresh};
    }
    for (size_t i = 0; g != NULL && i < n->ntargets; i++) {
        const struct apm_notify_target *t = &n->targets[i];
        if (a->severity < t->min_severity || (refresh && t->type != APM_NOTIFY_ALERTMANAGER))
            continue;
        struct job *j = calloc(1, sizeof(*j));
        if (j == NULL) {
            g->remaining--;
            continue;
        }
        *j = (struct job){
            .g = g, .t = *t, .a = *a, .st = st, .created_ms = now_ms, .next_ms = now_ms};
        insert(n, j);
        n->queued++;
    }
    pthread_cond_signal(&n->cv);
out:
    pthread_mutex_unlock(&n->mu);
    /* The extra count held the group open while jobs were queued. A notification no target
     * takes is complete at once: 1 tells the caller, and no callback follows. */
    if (g != NULL) {
        pthread_mutex_lock(&n->mu);
        bool last = --g->remaining == 0;
        pthread_mutex_unlock(&n->mu);
        if (last) {
            free(g);
            return 1;
        }
    }
    return rc;
}

int apm_notify_send(struct apm_notify *n, const struct apm_alert *a, enum apm_alert_state st,
                    int64_t now_ms)
{
    return enqueue(n, a, st, now_ms, false);
}

int apm_notify_refresh(struct apm_notify *n, const struct apm_alert *a, int64_t now_ms)
{
    return enqueue(n, a, APM_ALERT_FIRING, now_ms, true);
}

int apm_notify_set_targets(struct apm_notify *n, const struct apm_notify_target *targets,
                           size_t ntargets)
{
    if (ntargets > APM_NOTIFY_MAX_TARGETS)
        return APM_E_LIMIT;
    pthread_mutex_lock(&n->mu);
    if (ntargets > 0)
        memcpy(n->targets, targets, ntargets * sizeof(*targets));
    n->ntargets = ntargets;
    pthread_mutex_unlock(&n->mu);
    return 0;
}

void apm_notify_set_done(struct apm_notify *n, apm_notify_done_fn fn, void *ctx)
{
    pthread_mutex_lock(&n->mu);
    n->done = fn;
    n->done_ctx = ctx;
    pthread_mutex_unlock(&n->mu);
}

void apm_notify_get_stats(struct apm_notify *n, struct apm_notify_stats *out)
{
    pthread_mutex_lock(&n->mu);
    *out = n->stats;
    out->queued = n->queued;
    pthread_mutex_unlock(&n->mu);
}

int apm_notify_new(const struct apm_notify_options *opt, struct apm_notify **out)
{
    struct apm_notify *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->resend_ms = opt->resend_ms;
    snprintf(n->generator_url, sizeof(n->generator_url), "%s",
             opt->generator_url != NULL ? opt->generator_url : "");
    int rc = apm_notify_set_targets(n, opt->targets, opt->ntargets);
    if (rc == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        rc = -EIO;
    if (rc == 0) {
        rc = -pthread_create(&n->thread, NULL, run, n);
        n->started = rc == 0;
    }
    if (rc != 0) {
        apm_notify_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

void apm_notify_free(struct apm_notify *n)
{
    if (n == NULL)
        return;
    if (n->started) {
        pthread_mutex_lock(&n->mu);
        n->stop = true;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        pthread_join(n->thread, NULL);
        curl_global_cleanup();
    }
    while (n->queue != NULL) {
        struct job *j = n->queue;
        n->queue = j->next;
        struct group *g = j->g;
        free(j);
        if (g != NULL && --g->remaining == 0)
            free(g);
    }
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

static const struct apm_counter counters[] = {
    APM_COUNTER(struct apm_notify_stats, queued, "queued", APM_COUNTER_GAUGE, "",
                "Notifications waiting for delivery now."),
    APM_COUNTER(struct apm_notify_stats, delivered, "delivered", APM_COUNTER_TOTAL, "",
                "Notification attempts that succeeded."),
    APM_COUNTER(struct apm_notify_stats, failures, "failures", APM_COUNTER_TOTAL, "",
                "Notification attempts that failed (each retry counts)."),
    APM_COUNTER(struct apm_notify_stats, gave_up, "gave_up", APM_COUNTER_TOTAL, "",
                "Notifications abandoned after their last attempt."),
    APM_COUNTER(struct apm_notify_stats, dropped, "dropped", APM_COUNTER_TOTAL, "",
                "Notifications refused because the queue was full."),
    {.name = NULL},
};

static int read_counters(void *obj, void *out)
{
    apm_notify_get_stats(obj, out);
    return 0;
}

int apm_notify_add_counters(struct apm_notify *obj, struct apm_counters *r)
{
    struct apm_counter_group g = {.module = "notify",
                                  .counters = counters,
                                  .size = sizeof(struct apm_notify_stats),
                                  .read = read_counters,
                                  .obj = obj};
    return apm_counters_add(r, &g);
}
