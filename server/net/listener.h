#ifndef APM_LISTENER_H
#define APM_LISTENER_H

/*
 * A listening TCP socket, the one way the collector's servers (agent ingest,
 * HTTP API) bind, listen, report a failure and close. The listener is its
 * own object with its handle embedded, so that it frees itself in its close
 * callback: an owner whose start fails can free itself at once, and no close
 * callback ever frees a pointer that is not the one allocated.
 *
 * Addresses are numeric ("HOST:PORT", "[V6]:PORT", ":PORT" for every IPv4
 * address); names are not resolved, so the loop never waits on DNS.
 *
 * Thread: the loop thread of the loop given to apm_listener_new().
 */
#include <stdbool.h>
#include <uv.h>

struct apm_listener;

/*
 * Called for each connection waiting (status 0: accept it with
 * apm_listener_accept) or a failed accept (status < 0). ctx as given.
 */
typedef void (*apm_listener_connection_fn)(void *ctx, struct apm_listener *l, int status);

/* Called once the listener is closed, just before it frees itself. */
typedef void (*apm_listener_close_fn)(void *ctx);

/*
 * Binds endpoint and listens with backlog. who names the server in the log
 * ("ingest", "http"). Returns 0 and *out (ends with apm_listener_close), or
 * APM_E_CONFIG for an address that is not numeric, or the negative libuv
 * code (UV_EADDRINUSE, ...) after logging one line that names the address
 * and port. On failure the callback is never called and the caller holds
 * nothing; the loop must run once more to release the handle. ctx borrowed.
 */
int apm_listener_new(uv_loop_t *loop, const char *who, const char *endpoint, int backlog,
                     apm_listener_connection_fn fn, void *ctx, struct apm_listener **out);

/* Accepts one waiting connection onto client (initialised by the caller). Returns 0 or a code. */
int apm_listener_accept(struct apm_listener *l, uv_tcp_t *client);

/* The port actually bound (useful after port 0), or a negative code. */
int apm_listener_port(const struct apm_listener *l);

/*
 * Stops listening; calls cb (may be NULL) with ctx once the handle is
 * closed, then frees the listener. Accepts NULL (cb is then not called).
 */
void apm_listener_close(struct apm_listener *l, apm_listener_close_fn cb, void *ctx);

/*
 * Turns a numeric endpoint into a socket address. An empty host means every
 * IPv4 address. Returns 0 or APM_E_CONFIG.
 */
int apm_listener_address(const char *endpoint, struct sockaddr_storage *ss);

/* True when endpoint is a loopback address (127.0.0.0/8 or ::1): nobody else can reach it. */
bool apm_listener_is_loopback(const char *endpoint);

#endif
