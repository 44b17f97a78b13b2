#ifndef APM_SDNOTIFY_H
#define APM_SDNOTIFY_H

/*
 * systemd's service notification protocol (sd_notify(3), through libsystemd):
 * READY=1 once the program listens, WATCHDOG=1 from the event loop at half of
 * the unit's WatchdogSec (so a stuck loop gets the service restarted), STATUS=
 * lines for `systemctl status`, STOPPING=1 when it drains. Every call is a
 * no-op when NOTIFY_SOCKET is unset (not under a Type=notify unit) or when the
 * build has no libsystemd (APM_SYSTEMD=OFF). Loop thread only.
 */
#include <stdbool.h>
#include <uv.h>

struct apm_sd_notify;

/*
 * Sends READY=1 with STATUS=status and, when the unit asks for a watchdog
 * (WATCHDOG_USEC), starts an unreferenced timer on loop that sends WATCHDOG=1
 * every half period. *out is NULL when there is no watchdog. Returns 0 or -ENOMEM.
 */
int apm_sd_ready(uv_loop_t *loop, const char *status, struct apm_sd_notify **out);

/* Sends STATUS=status. */
void apm_sd_status(const char *status);

/* Sends STOPPING=1 with STATUS=status. */
void apm_sd_stopping(const char *status);

/* Stops the watchdog timer; its handle is freed by its close callback (run the loop). NULL ok. */
void apm_sd_close(struct apm_sd_notify *n);

/* True when the build speaks the protocol (linked with libsystemd). */
bool apm_sd_supported(void);

#endif
