#ifndef APM_SDNOTIFY_H
#define APM_SDNOTIFY_H

/*
 * systemd's service notification protocol (sd_notify(3)): READY=1 once the
 * program listens, WATCHDOG=1 from the event loop at half of the unit's
 * WatchdogSec (so a stuck loop gets the service restarted), STATUS= lines for
 * `systemctl status`, STOPPING=1 when it drains. Every call is a no-op when
 * NOTIFY_SOCKET is unset (not under a Type=notify unit). Loop thread only.
 *
 * The protocol is one datagram per message on the Unix socket NOTIFY_SOCKET
 * names (a path, or "@name" in the abstract namespace), which this module
 * speaks itself, so the agent links no libsystemd (its shared pages would be
 * ~0.9 MiB of a ~3 MiB agent). A program may hand it libsystemd's functions
 * instead (apm_sd_use; the collector does, see server/main.c).
 */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Another implementation of the two calls (libsystemd's sd_notify and sd_watchdog_enabled). */
struct apm_sd_backend {
    int (*notify)(int unset_environment, const char *state);
    int (*watchdog_enabled)(int unset_environment, uint64_t *usec);
};

/* Uses b (kept, not copied; static storage) from now on; NULL goes back to the built-in one. */
void apm_sd_use(const struct apm_sd_backend *b);

/*
 * The built-in implementation, as sd_notify(3) and sd_watchdog_enabled(3)
 * define them: sends state to $NOTIFY_SOCKET (0 when unset, 1 when sent,
 * -errno on failure; never blocks); reads $WATCHDOG_USEC and $WATCHDOG_PID
 * (1 with *usec when the watchdog is on for this process, 0 when not,
 * -EINVAL when malformed).
 */
int apm_sd_notify_builtin(int unset_environment, const char *state);
int apm_sd_watchdog_builtin(int unset_environment, uint64_t *usec);

struct apm_sd_notify;

/*
 * Sends READY=1 with STATUS=status and, when the unit asks for a watchdog,
 * starts an unreferenced timer on loop that sends WATCHDOG=1 every half period.
 * *out is NULL when there is no watchdog. Returns 0 or -ENOMEM.
 */
int apm_sd_ready(uv_loop_t *loop, const char *status, struct apm_sd_notify **out);

/* Sends STATUS=status. */
void apm_sd_status(const char *status);

/* Sends STOPPING=1 with STATUS=status. */
void apm_sd_stopping(const char *status);

/* Stops the watchdog timer; its handle is freed by its close callback (run the loop). NULL ok. */
void apm_sd_close(struct apm_sd_notify *n);

#endif
