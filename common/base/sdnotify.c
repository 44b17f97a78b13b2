#include "common/base/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/base/log.h"

struct apm_sd_notify {
    uv_timer_t timer;
};

static const struct apm_sd_backend builtin = {
    .notify = apm_sd_notify_builtin,
    .watchdog_enabled = apm_sd_watchdog_builtin,
};
static const struct apm_sd_backend *backend = &builtin;

void apm_sd_use(const struct apm_sd_backend *b)
{
    backend = b != NULL ? b : &builtin;
}

int apm_sd_notify_builtin(int unset_environment, const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* the abstract namespace */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A full queue on systemd's side must not stall the loop: that message is lost. */
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
                       (struct sockaddr *)&sa, salen);
    int rc = n < 0 ? -errno : 1;
    close(fd);
    if (unset_environment)
        unsetenv("NOTIFY_SOCKET");
    return rc;
}

int apm_sd_watchdog_builtin(int unset_environment, uint64_t *usec)
{
    const char *us = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    int rc = 0;
    if (us != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(us, &end, 10);
        rc = (us[0] < '0' || us[0] > '9' || *end != '\0' || errno != 0 || v == 0) ? -EINVAL : 1;
        if (rc == 1 && pid != NULL) {
            errno = 0;
            long long p = strtoll(pid, &end, 10);
            if (*end != '\0' || errno != 0 || p <= 0)
                rc = -EINVAL;
            else if (p != (long long)getpid())
                rc = 0; /* meant for another process of the unit */
        }
        if (rc == 1 && usec != NULL)
            *usec = (uint64_t)v;
    }
    if (unset_environment) {
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
    }
    return rc;
}

static void send_state(const char *state)
{
    int rc = backend->notify(0, state);
    if (rc < 0)
        apm_debug("notify: cannot tell systemd '%s': %s", state, strerror(-rc));
}

static void send_with_status(const char *what, const char *status)
{
    char msg[8300];
    snprintf(msg, sizeof(msg), "%s%sSTATUS=%s", what, what[0] ? "\n" : "", status);
    send_state(msg);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    send_state("WATCHDOG=1");
}

int apm_sd_ready(uv_loop_t *loop, const char *status, struct apm_sd_notify **out)
{
    *out = NULL;
    send_with_status("READY=1", status);
    uint64_t usec = 0;
    int rc = backend->watchdog_enabled(0, &usec);
    if (rc < 0)
        apm_warn("notify: WATCHDOG_USEC or WATCHDOG_PID is malformed: no watchdog pings");
    if (rc <= 0 || usec == 0)
        return 0;
    struct apm_sd_notify *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    uv_timer_init(loop, &n->timer);
    uint64_t period_ms = usec / 2000 > 0 ? usec / 2000 : 1;
    uv_timer_start(&n->timer, on_watchdog, period_ms, period_ms);
    /* The pings must not keep a stopping program's loop alive. */
    uv_unref((uv_handle_t *)&n->timer);
    apm_debug("notify: watchdog ping every %llu ms", (unsigned long long)period_ms);
    *out = n;
    return 0;
}

void apm_sd_status(const char *status)
{
    send_with_status("", status);
}

void apm_sd_stopping(const char *status)
{
    send_with_status("STOPPING=1", status);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void apm_sd_close(struct apm_sd_notify *n)
{
    if (n == NULL)
        return;
    n->timer.data = n;
    uv_close((uv_handle_t *)&n->timer, on_closed);
}
