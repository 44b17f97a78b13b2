#ifndef APM_INGEST_PRIV_H
#define APM_INGEST_PRIV_H

/*
 * Inside ingest (ingest.h): the state of the ingest and of its connections,
 * shared by ingest.c (the object: start, counters, controls, close),
 * ingest_conn.c (a connection's life: accepting it, the budget of
 * unauthenticated strangers, writes, errors, closing and freeing it) and
 * ingest_read.c (what a connection reads: TLS or plaintext, frames, the
 * Hello, batches to the writer, their acks). Not for other modules.
 *
 * Thread: the loop thread, as everything in ingest.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/hashmap.h"
#include "common/base/log.h"
#include "common/wire/frame.h"
#include "server/ingest/ingest.h"

#define READ_BUF_SIZE (64u * 1024u)

struct apm_listener;
struct apm_agent_limits;

struct conn {
    uv_tcp_t tcp; /* first member: the handle's address is the conn's */
    uv_timer_t timer;
    struct apm_ingest *in;
    struct conn *prev, *next;
    /* Unauthenticated connections, oldest first, while `waiting`. */
    struct conn *wprev, *wnext;
    int handles_open;
    unsigned inflight;
    bool waiting; /* on the unauthenticated list, counted in its address's budget */
    bool authed;
    bool closing;        /* handles closing or closed */
    bool draining;       /* collector stopping: wait for commits, then close */
    bool paused;         /* reading stopped for backpressure */
    bool failing;        /* an Error frame is on its way; close follows */
    bool started;        /* the first bytes were read: TLS or plaintext is decided */
    struct apm_tls *tls; /* NULL on a plaintext connection */
    struct apm_frame_reader reader;
    struct apm_codec_dec dec;
    struct apm_agent_ident ident;
    char peer[64];
    char addr[48]; /* peer's address without the port: the per-address budget's key */
};

struct apm_ingest {
    uv_loop_t *loop;
    struct apm_listener *listener; /* NULL once closed */
    struct apm_store *store;
    struct apm_writer *writer;
    struct apm_ingest_options opt;
    struct conn *conns;
    struct conn *wait_head, *wait_tail; /* unauthenticated, oldest first */
    unsigned nwaiting;
    unsigned nauthed;
    struct apm_hashmap waiting_by_addr; /* address -> unauthenticated connections from it */
    uv_timer_t log_timer;               /* flushes the summaries below */
    bool log_timer_open;
    struct apm_log_limit stranger_log; /* failures of unauthenticated peers */
    struct apm_log_limit evict_log;    /* evictions for newer strangers */
    struct apm_log_limit store_log;    /* agents closed for a failed commit */
    /* One read buffer for every connection: the loop reads one socket at a time. */
    uint8_t rbuf[READ_BUF_SIZE];
    struct apm_ingest_stats stats;
    struct apm_agent_limits *limits;
    bool closing;
    uint64_t strings_logged_ms; /* loop time of the last cleaned-strings report, 0 never */
    uint64_t strings_unlogged;  /* reports held back since */
    apm_ingest_close_cb close_cb;
    void *close_ctx;
};

/* ---- ingest.c ---- */

/* Frees in and calls its close callback once it is closing and nothing of it is left open. */
void apm_ingest_maybe_finish_close(struct apm_ingest *in);

/* The listener's callback: a new connection (ingest_conn.c). */
void apm_ingest_on_connection(void *ctx, struct apm_listener *l, int status);

/* ---- ingest_conn.c: a connection's life ---- */

/* Takes c off the unauthenticated list and its address's budget. Idempotent. */
void apm_ingest_waiting_remove(struct conn *c);

/* Frees c once both its handles are closed and no commit of it is in flight. */
void apm_ingest_conn_maybe_free(struct conn *c);

/* Closes c's handles (once); freeing follows in their close callbacks. */
void apm_ingest_conn_close(struct conn *c);

/* Queues bytes as they go on the wire; takes ownership of f->buf. */
void apm_ingest_conn_write(struct conn *c, struct apm_frame_out *f, bool close_after);

/* Queues an encoded frame, encrypted on a TLS connection; takes ownership of f->buf. */
void apm_ingest_conn_send(struct conn *c, struct apm_frame_out *f, bool close_after);

/* Sends Error e, then closes: nothing more is read from the peer. */
void apm_ingest_conn_send_error(struct conn *c, const struct apm_msg_error *e);

/* Sends an Error of code with the text formatted from fmt, then closes. */
void apm_ingest_conn_fail(struct conn *c, enum apm_wire_error code, bool retryable, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));

/* ---- ingest_read.c: what a connection reads ---- */

/* The connection's timer: no Hello within the handshake timeout, or idle too long. */
void apm_ingest_on_timeout(uv_timer_t *t);

/* The read callbacks of a connection: one buffer for all of them (in->rbuf). */
void apm_ingest_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void apm_ingest_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

#endif
