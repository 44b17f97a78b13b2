#include "agent/probe_listener.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/probe_line.h"
#include "common/base/error.h"
#include "common/base/log.h"

#define DEFAULT_MAX_LINE (1u << 20)
#define DEFAULT_MAX_BAD 16u
#define DEFAULT_MAX_PENDING (16u << 20)
#define DEFAULT_MAX_CONNS 1024u
#define READ_CHUNK (64u << 10)
/* A probe that does not read its control lines gets no more than this queued. */
#define MAX_WRITE_QUEUE (64u << 10)
/* A local process can make us log once per connection or line: such lines are rate-limited. */
#define LOG_WINDOW_MS 10000
#define LOG_BURST 3

struct conn {
    uv_pipe_t pipe; /* handle first: the close callback gets the conn back */
    struct apm_probe_listener *l;
    struct conn *prev, *next;
    int32_t pid;      /* the peer, from SO_PEERCRED */
    int64_t start_ms; /* its start time once a drain resolved it; 0 before */
    bool have_hello;
    bool closing;
    struct apm_probe_hello hello;
    char *buf;
    size_t len, cap;
    unsigned bad;
};

struct apm_probe_listener {
    uv_loop_t *loop;
    uv_pipe_t server;
    struct apm_probe_listener_options opt;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct conn *conns;
    /* Data waiting for the next batch: processes keyed by pid alone (start_ms 0). */
    struct apm_batch *staging;
    size_t pending_bytes;
    struct apm_probe_listener_stats stats;
    struct apm_log_limit refused_log;  /* connections refused */
    struct apm_log_limit dropped_log;  /* lines dropped: pending cap, unknown pid */
    struct apm_log_limit mismatch_log; /* hellos claiming another pid */
    bool server_closed;
    bool closing;
    bool bound; /* the socket file is ours to remove */
    apm_probe_listener_close_cb close_cb;
    void *close_ctx;
};

struct write_req {
    uv_write_t req;
    char data[];
};

static void maybe_finish(struct apm_probe_listener *l)
{
    if (!l->closing || !l->server_closed || l->conns != NULL)
        return;
    if (l->bound)
        unlink(l->path);
    apm_batch_free(l->staging);
    apm_probe_listener_close_cb cb = l->close_cb;
    void *ctx = l->close_ctx;
    free(l);
    if (cb != NULL)
        cb(ctx);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct apm_probe_listener *l = c->l;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->stats.connections--;
    free(c->buf);
    free(c);
    maybe_finish(l);
}

static void on_server_closed(uv_handle_t *h)
{
    struct apm_probe_listener *l = h->data;
    l->server_closed = true;
    maybe_finish(l);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void stage(struct conn *c, const struct apm_probe_line *line, size_t len)
{
    struct apm_probe_listener *l = c->l;
    if (l->pending_bytes + len > l->opt.max_pending_bytes) {
        l->stats.pending_dropped++;
        if (apm_log_limit_hit(&l->dropped_log, (int64_t)uv_now(l->loop)))
            apm_warn("probe: pid %" PRId32 ": more than %zu bytes of probe data wait for a "
                     "batch; line dropped",
                     c->pid, l->opt.max_pending_bytes);
        return;
    }
    struct apm_proc_desc p = {.pid = c->pid, .name = c->hello.name};
    uint32_t proc;
    int rc = apm_batch_add_proc(l->staging, &p, &proc);
    if (rc == 0)
        rc = line->type == APM_PROBE_LINE_DIFF ? apm_probe_line_to_diff(line, l->staging, proc)
                                               : apm_probe_line_to_gc(line, l->staging, proc);
    if (rc != 0) {
        l->stats.pending_dropped++;
        return;
    }
    l->pending_bytes += len;
}

static void bad_line(struct conn *c, const char *why)
{
    struct apm_probe_listener *l = c->l;
    l->stats.bad_lines++;
    c->bad++;
    int64_t now = (int64_t)uv_now(l->loop);
    if (c->bad == 1 && apm_log_limit_hit(&l->dropped_log, now))
        apm_warn("probe: pid %" PRId32 ": bad line dropped: %s", c->pid, why);
    if (c->bad > l->opt.max_bad_lines) {
        l->stats.bad_disconnects++;
        if (apm_log_limit_hit(&l->dropped_log, now))
            apm_warn("probe: pid %" PRId32 ": %u bad lines, disconnecting", c->pid, c->bad);
        conn_close(c);
    }
}

static void on_line(struct conn *c, const char *line, size_t len)
{
    struct apm_probe_listener *l = c->l;
    struct apm_probe_line pl;
    char why[160];
    if (apm_probe_line_parse(line, len, c->have_hello ? &c->hello : NULL, &pl, why, sizeof(why)) !=
        0) {
        bad_line(c, why);
        return;
    }
    l->stats.lines_ok++;
    switch (pl.type) {
    case APM_PROBE_LINE_HELLO:
        apm_probe_line_hello(&pl, &c->hello);
        c->have_hello = true;
        if (c->hello.claimed_pid != c->pid) {
            l->stats.pid_mismatch++;
            if (apm_log_limit_hit(&l->mismatch_log, (int64_t)uv_now(l->loop)))
                apm_warn("probe: peer pid %" PRId32 " says it is pid %" PRId64 "; using %" PRId32,
                         c->pid, c->hello.claimed_pid, c->pid);
        }
        apm_debug("probe: pid %" PRId32 " (%s) connected, mode %s", c->pid, c->hello.name,
                  c->hello.mode);
        break;
    case APM_PROBE_LINE_DIFF:
    case APM_PROBE_LINE_GC:
        stage(c, &pl, len);
        break;
    default:
        break;
    }
    apm_probe_line_clear(&pl);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = (struct conn *)h;
    size_t max = c->l->opt.max_line;
    if (c->cap - c->len < READ_CHUNK && c->cap < max) {
        size_t cap = c->len + READ_CHUNK;
        if (cap < c->cap * 2)
            cap = c->cap * 2;
        if (cap > max)
            cap = max;
        char *nb = realloc(c->buf, cap);
        if (nb != NULL) {
            c->buf = nb;
            c->cap = cap;
        }
    }
    /* Zero room (a full line buffer, or no memory) makes libuv report UV_ENOBUFS. */
    *buf = uv_buf_init(c->buf ? c->buf + c->len : NULL, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = (struct conn *)s;
    struct apm_probe_listener *l = c->l;
    if (nread < 0) {
        if (nread == UV_ENOBUFS && c->len >= l->opt.max_line) {
            l->stats.oversized++;
            apm_warn("probe: pid %" PRId32 ": line over %zu bytes, disconnecting", c->pid,
                     l->opt.max_line);
        }
        /* At EOF an unterminated tail is discarded, as the protocol says. */
        conn_close(c);
        return;
    }
    size_t from = c->len, start = 0;
    c->len += (size_t)nread;
    for (size_t i = from; i < c->len && !c->closing; i++) {
        if (c->buf[i] != '\n')
            continue;
        on_line(c, c->buf + start, i - start);
        start = i + 1;
    }
    if (c->closing)
        return;
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
    if (c->len >= l->opt.max_line) {
        l->stats.oversized++;
        apm_warn("probe: pid %" PRId32 ": line over %zu bytes, disconnecting", c->pid,
                 l->opt.max_line);
        conn_close(c);
    }
}

static int peer_pid(uv_pipe_t *p, int32_t *pid)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (uv_fileno((uv_handle_t *)p, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0)
        return -errno ? -errno : -EINVAL;
    *pid = (int32_t)cred.pid;
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct apm_probe_listener *l = server->data;
    if (status < 0 || l->closing)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->l = l;
    uv_pipe_init(l->loop, &c->pipe, 0);
    c->next = l->conns;
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    l->stats.connections++;
    const char *why = NULL;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0)
        why = "accept failed";
    else if (peer_pid(&c->pipe, &c->pid) != 0)
        why = "no peer credentials";
    else if (l->stats.connections > l->opt.max_conns)
        why = "connection cap reached";
    if (why != NULL) {
        l->stats.refused++;
        if (apm_log_limit_hit(&l->refused_log, (int64_t)uv_now(l->loop)))
            apm_warn("probe: refused a connection (pid %" PRId32 "): %s (%u open, max %u)", c->pid,
                     why, l->stats.connections - 1, l->opt.max_conns);
        conn_close(c);
        return;
    }
    l->stats.accepted++;
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0)
        conn_close(c);
}

/* Creates the socket's directory and removes a stale socket; never removes another file. */
static int prepare_path(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    const char *d = dirname(dir);
    if (mkdir(d, 0755) != 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        if (unlink(path) != 0)
            return -errno;
    }
    return 0;
}

int apm_probe_listener_new(uv_loop_t *loop, const struct apm_probe_listener_options *o,
                           struct apm_probe_listener **out)
{
    struct apm_probe_listener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    if (strlen(o->path) >= sizeof(l->path) || o->path[0] == '\0') {
        free(l);
        return -ENAMETOOLONG;
    }
    snprintf(l->path, sizeof(l->path), "%s", o->path);
    l->loop = loop;
    l->opt = *o;
    l->opt.path = l->path;
    l->opt.mode = o->mode ? o->mode : 0666;
    l->opt.max_line = o->max_line ? o->max_line : DEFAULT_MAX_LINE;
    l->opt.max_bad_lines = o->max_bad_lines ? o->max_bad_lines : DEFAULT_MAX_BAD;
    l->opt.max_pending_bytes = o->max_pending_bytes ? o->max_pending_bytes : DEFAULT_MAX_PENDING;
    l->opt.max_conns = o->max_conns ? o->max_conns : DEFAULT_MAX_CONNS;
    l->refused_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "probe: refused", "probe connections", LOG_WINDOW_MS, LOG_BURST);
    l->dropped_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "probe: dropped", "probe lines or processes", LOG_WINDOW_MS, LOG_BURST);
    l->mismatch_log = (struct apm_log_limit)APM_LOG_LIMIT_INIT(
        APM_LOG_WARN, "probe:", "hellos claiming another pid", LOG_WINDOW_MS, LOG_BURST);
    l->staging = apm_batch_new(0);
    int rc = l->staging ? prepare_path(l->path) : -ENOMEM;
    if (rc != 0) {
        apm_batch_free(l->staging);
        free(l);
        return rc;
    }
    uv_pipe_init(loop, &l->server, 0);
    l->server.data = l;
    rc = uv_pipe_bind(&l->server, l->path);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->server, 128, on_connection);
    if (rc == 0 && chmod(l->path, (mode_t)l->opt.mode) != 0)
        rc = -errno;
    if (rc != 0) {
        /* The handle is initialised: it is freed by its close callback, without a user callback. */
        l->bound = rc != UV_EADDRINUSE && rc != UV_EACCES;
        l->closing = true;
        uv_close((uv_handle_t *)&l->server, on_server_closed);
        return rc;
    }
    l->bound = true;
    *out = l;
    return 0;
}

/* Moves diff i of the staging batch to b under process index proc. */
static int move_diff(struct apm_batch *b, struct apm_trace_diff *src, uint32_t proc)
{
    struct apm_trace_diff *d;
    int rc = apm_batch_append_diff(b, proc, 0, &d);
    if (rc != 0)
        return rc;
    free(d->sites);
    *d = *src;
    d->proc = proc;
    src->sites = NULL;
    src->nsites = 0;
    return 0;
}

static void resolve_conns(struct apm_probe_listener *l, int32_t pid, int64_t start_ms)
{
    for (struct conn *c = l->conns; c != NULL; c = c->next)
        if (c->pid == pid)
            c->start_ms = start_ms;
}

int apm_probe_listener_drain(struct apm_probe_listener *l, struct apm_batch *b,
                             apm_probe_lookup_cb lookup, void *ctx)
{
    struct apm_batch *st = l->staging;
    if (st->ndiffs == 0 && st->ngc == 0)
        return 0;
    struct apm_batch *fresh = apm_batch_new(0);
    uint32_t *map = calloc(st->nprocs, sizeof(*map));
    int rc = fresh && map ? 0 : -ENOMEM;
    for (uint32_t i = 0; i < st->nprocs && rc == 0; i++) {
        struct apm_proc_desc p = st->procs[i];
        const char *name = NULL;
        map[i] = UINT32_MAX;
        if (lookup(ctx, p.pid, &p.start_ms, &name) != 0) {
            if (apm_log_limit_hit(&l->dropped_log, (int64_t)uv_now(l->loop)))
                apm_warn("probe: pid %" PRId32 " is not a process the agent watches; its "
                         "probe data is dropped",
                         p.pid);
            continue;
        }
        /* A process the sampler put in b is found by (pid, start) and keeps its description. */
        if (name != NULL && name[0] != '\0')
            p.name = (char *)name;
        rc = apm_batch_add_proc(b, &p, &map[i]);
        resolve_conns(l, p.pid, p.start_ms);
    }
    for (uint32_t i = 0; i < st->ndiffs && rc == 0; i++) {
        if (map[st->diffs[i].proc] == UINT32_MAX) {
            l->stats.unknown_pid++;
            continue;
        }
        rc = move_diff(b, &st->diffs[i], map[st->diffs[i].proc]);
        l->stats.diffs += rc == 0;
    }
    for (uint32_t i = 0; i < st->ngc && rc == 0; i++) {
        struct apm_gc_stats g = st->gc[i];
        if (map[g.proc] == UINT32_MAX) {
            l->stats.unknown_pid++;
            continue;
        }
        g.proc = map[g.proc];
        rc = apm_batch_add_gc(b, &g);
        l->stats.gc += rc == 0;
    }
    free(map);
    if (fresh == NULL)
        return rc;
    if (rc != 0)
        l->stats.pending_dropped++;
    /* Whatever was not moved is dropped with the staging batch: memory stays bounded. */
    apm_batch_free(st);
    l->staging = fresh;
    l->pending_bytes = 0;
    return rc;
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

int apm_probe_listener_control(struct apm_probe_listener *l, const struct apm_msg_control *ctl)
{
    struct conn *c = l->conns;
    for (; c != NULL; c = c->next) {
        if (c->pid == ctl->pid && c->have_hello && !c->closing &&
            (ctl->start_ms == 0 || c->start_ms == 0 || c->start_ms == ctl->start_ms))
            break;
    }
    if (c == NULL) {
        l->stats.controls_unroutable++;
        return APM_E_NOTFOUND;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > MAX_WRITE_QUEUE)
        return APM_E_LIMIT;
    char line[160];
    int n;
    if (ctl->action == APM_CONTROL_STOP) {
        n = snprintf(line, sizeof(line), "{\"type\":\"control\",\"action\":\"stop\"}\n");
    } else {
        n = snprintf(line, sizeof(line), "{\"type\":\"control\",\"action\":\"trace\"");
        if (ctl->duration_s > 0)
            n += snprintf(line + n, sizeof(line) - (size_t)n, ",\"duration_s\":%" PRIu32,
                          ctl->duration_s);
        if (ctl->max_memory > 0 && ctl->max_memory < (1ull << 62))
            n += snprintf(line + n, sizeof(line) - (size_t)n, ",\"max_memory\":%" PRIu64,
                          ctl->max_memory);
        if (ctl->exact)
            n += snprintf(line + n, sizeof(line) - (size_t)n, ",\"exact\":true");
        n += snprintf(line + n, sizeof(line) - (size_t)n, "}\n");
    }
    struct write_req *w = malloc(sizeof(*w) + (size_t)n);
    if (w == NULL)
        return -ENOMEM;
    memcpy(w->data, line, (size_t)n);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_written);
    if (rc != 0) {
        free(w);
        return rc;
    }
    l->stats.controls_sent++;
    return 0;
}

void apm_probe_listener_flush_logs(struct apm_probe_listener *l)
{
    int64_t now = (int64_t)uv_now(l->loop);
    apm_log_limit_flush(&l->refused_log, now, false);
    apm_log_limit_flush(&l->dropped_log, now, false);
    apm_log_limit_flush(&l->mismatch_log, now, false);
}

void apm_probe_listener_get_stats(const struct apm_probe_listener *l,
                                  struct apm_probe_listener_stats *out)
{
    *out = l->stats;
}

void apm_probe_listener_close(struct apm_probe_listener *l, apm_probe_listener_close_cb cb,
                              void *ctx)
{
    if (l == NULL || l->closing)
        return;
    l->closing = true;
    l->close_cb = cb;
    l->close_ctx = ctx;
    uv_close((uv_handle_t *)&l->server, on_server_closed);
    for (struct conn *c = l->conns; c != NULL; c = c->next)
        conn_close(c);
}
