#include "common/sdnotify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef APM_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/log.h"

struct apm_sd_notify {
    uv_timer_t timer;
};

static void send_state(const char *state)
{
#ifdef APM_HAVE_SYSTEMD
    int rc = sd_notify(0, state);
    if (rc < 0)
        apm_debug("notify: cannot tell systemd '%s': %s", state, uv_strerror(rc));
#else
    (void)state;
#endif
}

bool apm_sd_supported(void)
{
#ifdef APM_HAVE_SYSTEMD
    return true;
#else
    return false;
#endif
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
#ifdef APM_HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
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
#else
    (void)loop;
#endif
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
