#ifndef APM_PROBE_LISTENER_H
#define APM_PROBE_LISTENER_H

/*
 * The agent's end of the probe socket (docs/probe-protocol.md): a Unix
 * stream listener that Python probes connect to. Each connection is read as
 * JSON lines under a hard cap (checked before more is buffered); every line
 * is checked strictly (agent/probe_line.c). Bad lines are counted and
 * dropped, and a connection that sends too many is closed; an oversized
 * line closes the connection at once.
 *
 * The sending process is the socket's peer (SO_PEERCRED at accept), never
 * what the probe says. Diffs and gc lines are kept per peer pid until the
 * agent drains them into its next batch, which joins each pid to the
 * identity (pid, start time) the sampler knows: draining runs right after a
 * scan, when the sampler may be asked (see agent/agent.c).
 *
 * Thread: loop thread only.
 */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/wire/codec.h"
#include "common/analysis/model.h"

struct apm_probe_listener_options {
    const char *path;         /* socket path; its directory is created if missing */
    int mode;                 /* permissions of the socket; 0: 0666 (any local user may connect) */
    size_t max_line;          /* bytes, newline included; 0: 1 MiB */
    unsigned max_bad_lines;   /* bad lines a connection may send before it is closed; 0: 16 */
    size_t max_pending_bytes; /* probe data held for the next batch; 0: 16 MiB */
    unsigned max_conns;       /* connections at once; 0: 1024 */
};

struct apm_probe_listener_stats {
    uint64_t accepted;
    uint64_t refused; /* connections over max_conns or without peer credentials */
    uint64_t lines_ok;
    uint64_t bad_lines;       /* malformed, wrong schema, wrong order */
    uint64_t oversized;       /* lines over max_line (each closes its connection) */
    uint64_t bad_disconnects; /* connections closed for too many bad lines */
    uint64_t pid_mismatch;    /* hellos whose "pid" differs from the peer's */
    uint64_t unknown_pid;     /* data dropped because the peer's identity was not found */
    uint64_t pending_dropped; /* lines dropped because max_pending_bytes was reached */
    uint64_t diffs;           /* diffs handed to batches */
    uint64_t gc;              /* gc records handed to batches */
    uint64_t controls_sent;
    uint64_t controls_unroutable; /* no connection from that process */
    uint32_t connections;         /* open now */
};

/*
 * Finds the identity of a pid: its start time (Unix ms) and name. Returns
 * 0 or a negative code (then the pid's data is dropped and counted).
 */
typedef int (*apm_probe_lookup_cb)(void *ctx, int32_t pid, int64_t *start_ms, const char **name);
typedef void (*apm_probe_listener_close_cb)(void *ctx);

struct apm_probe_listener;

/*
 * Creates the socket (removing a stale socket at path, never another kind of
 * file) and starts listening. Borrows o (copied). Returns 0 and *out (ends
 * with apm_probe_listener_close), or a negative code.
 */
int apm_probe_listener_new(uv_loop_t *loop, const struct apm_probe_listener_options *o,
                           struct apm_probe_listener **out);

/*
 * Moves every diff and gc record received since the last drain into b,
 * adding each process (apm_batch_add_proc: a process the sampler already put
 * in b is reused). lookup resolves each peer pid. Borrows b. Returns 0 or
 * -ENOMEM (the data not yet moved stays for the next drain).
 */
int apm_probe_listener_drain(struct apm_probe_listener *l, struct apm_batch *b,
                             apm_probe_lookup_cb lookup, void *ctx);

/*
 * Sends a control from the collector to the probe of process (pid,
 * start_ms) as the control line it expects; start_ms 0 matches any start.
 * Returns 0, APM_E_NOTFOUND (no such probe connected) or a negative code.
 */
int apm_probe_listener_control(struct apm_probe_listener *l, const struct apm_msg_control *c);

void apm_probe_listener_get_stats(const struct apm_probe_listener *l,
                                  struct apm_probe_listener_stats *out);

/*
 * Refusals, drops and pid mismatches are logged one by one up to 3 per
 * 10 s, then summarised; this ends a window that is over (the agent calls
 * it with its stats line), so that the summary is not held back.
 */
void apm_probe_listener_flush_logs(struct apm_probe_listener *l);

/* Closes the listener and every connection, then calls cb (may be NULL). Accepts NULL l. */
void apm_probe_listener_close(struct apm_probe_listener *l, apm_probe_listener_close_cb cb,
                              void *ctx);

#endif
