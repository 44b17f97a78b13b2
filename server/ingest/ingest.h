#ifndef APM_INGEST_H
#define APM_INGEST_H

/*
 * The collector's TCP ingest: accepts agents, authenticates their Hello
 * (token compared in constant time before any other frame is decoded),
 * decodes batches, hands them to the group-commit writer and acks each one
 * only after the writer reports it committed. Bad peers are refused with a
 * counted reason and closed; other connections carry on.
 *
 * Thread: everything here runs on the loop thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/wire/codec.h"
#include "common/base/counters.h"
#include "common/wire/tls.h"
#include "server/store/store.h"
#include "server/ingest/agent_health.h"
#include "server/ingest/writer.h"

struct apm_ingest;

struct apm_ingest_options {
    const char *listen;   /* "HOST:PORT" */
    const uint8_t *token; /* borrowed, must outlive the ingest */
    size_t token_len;
    unsigned max_connections;                 /* authenticated agents; 0 = 1024 */
    unsigned max_unauthenticated;             /* connections before their Hello; 0 = 64 */
    unsigned max_unauthenticated_per_address; /* of them from one address; 0 = all */
    uint64_t handshake_timeout_ms;            /* 0 = 5 s */
    uint64_t idle_timeout_ms;
    uint32_t max_frame;      /* largest frame after authentication */
    unsigned max_inflight;   /* batches per connection waiting for commit */
    struct apm_tls_ctx *tls; /* borrowed; NULL = plaintext only */
    bool tls_required;       /* with tls: plaintext connections are refused */
    /* Cardinality per agent (server/ingest/agent_limits.h); 0 takes its default. */
    uint64_t process_grace_ms;
    uint64_t max_processes_per_agent;
    uint64_t max_series_per_agent;
    uint64_t max_sites_per_agent;
    /* Where the agents' health reports go (borrowed, outlives the ingest); NULL: dropped. */
    struct apm_agent_health *health;
};

struct apm_ingest_stats {
    uint64_t accepted;
    uint64_t active;
    uint64_t refused_over_cap;
    uint64_t unauthenticated;
    uint64_t evicted_unauthenticated;
    uint64_t auth_failures;
    uint64_t frames_too_big;
    uint64_t decode_errors;
    uint64_t protocol_errors;
    uint64_t handshake_timeouts;
    uint64_t idle_timeouts;
    uint64_t batches;
    uint64_t samples;
    uint64_t acks;
    uint64_t duplicates;
    uint64_t store_errors;
    uint64_t overloaded;
    uint64_t controls_sent;
    uint64_t tls_sessions;      /* TLS handshakes completed */
    uint64_t tls_failures;      /* TLS handshakes or records that failed */
    uint64_t plaintext_refused; /* plaintext connections refused under tls-required */
    /* Peer strings cleaned at decode (common/base/text.h), per reason. */
    uint64_t strings_invalid_utf8;
    uint64_t strings_control;
    uint64_t strings_too_long;
    /* Batches refused for taking their agent over a cardinality limit, per limit. */
    uint64_t refused_processes;
    uint64_t refused_series;
    uint64_t refused_sites;
};

/*
 * Binds and listens. Borrows loop, store and writer (they outlive the
 * ingest). Returns 0 and *out (ends with apm_ingest_close), or a negative
 * code with a logged reason (e.g. address in use); on failure the caller
 * holds nothing, and the loop must run once more to release the handle.
 */
int apm_ingest_new(uv_loop_t *loop, struct apm_store *store, struct apm_writer *writer,
                   const struct apm_ingest_options *opt, struct apm_ingest **out);

/* The port actually bound (useful with port 0), or a negative code. */
int apm_ingest_port(const struct apm_ingest *in);

void apm_ingest_get_stats(const struct apm_ingest *in, struct apm_ingest_stats *out);

/* Adds the "ingest" counters to r (the ingest must stay registered only while open). */
int apm_ingest_add_counters(struct apm_ingest *in, struct apm_counters *r);

/*
 * Sends a Control frame to the agent(s) connected for host. Returns the
 * number of connections it was queued on (0 when the host has none), or a
 * negative code.
 */
int apm_ingest_send_control(struct apm_ingest *in, const char *host,
                            const struct apm_msg_control *c);

typedef void (*apm_ingest_close_cb)(void *ctx);

/*
 * Stops accepting, closes every connection (batches already handed to the
 * writer are still committed by it), and calls cb once every handle is
 * closed; then the ingest frees itself.
 */
void apm_ingest_close(struct apm_ingest *in, apm_ingest_close_cb cb, void *ctx);

#endif
