#ifndef APM_CODEC_H
#define APM_CODEC_H

/*
 * The one module that touches the generated protobuf-c code. It converts
 * frames to and from our own structs (common/analysis/model.h) and keeps the
 * per-connection state that makes the wire compact: interned strings,
 * process and series reference numbers, and the last value of each series
 * for value deltas. Both ends reset that state with each new connection.
 *
 * Strings: every string a peer sends is cleaned as it is decoded
 * (common/base/text.h: invalid UTF-8 and control characters become U+FFFD, string
 * table entries are cut to APM_MODEL_STRING_MAX, Hello fields to their
 * buffers), and the cleaning is counted in the decoder's or the Hello's fixes.
 *
 * Caps: the decoder refuses (APM_E_LIMIT) a connection that defines more
 * than APM_CODEC_MAX_STRINGS strings, APM_CODEC_MAX_PROCS processes,
 * APM_CODEC_MAX_SERIES series or APM_CODEC_MAX_SITES allocation sites; the encoder reports
 * apm_codec_enc_full() well before that so the agent reconnects and starts a fresh table.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/hashmap.h"
#include "common/analysis/model.h"
#include "common/base/text.h"

#define APM_PROTOCOL_VERSION 1u
#define APM_CODEC_MAX_STRINGS 1000000u
#define APM_CODEC_MAX_STRING_BYTES (64u * 1024u * 1024u)
#define APM_CODEC_MAX_PROCS 200000u
#define APM_CODEC_MAX_SERIES 1000000u
#define APM_CODEC_MAX_SITES 1000000u
#define APM_TOKEN_MAX 256u

enum apm_msg_type {
    APM_MSG_NONE = 0,
    APM_MSG_HELLO,
    APM_MSG_HELLO_ACK,
    APM_MSG_BATCH,
    APM_MSG_ACK,
    APM_MSG_ERROR,
    APM_MSG_CONTROL,
};

/* Error codes carried by an Error frame (same numbers as the wire). */
enum apm_wire_error {
    APM_WIRE_ERR_AUTH = 1,
    APM_WIRE_ERR_PROTOCOL = 2,
    APM_WIRE_ERR_TOO_BIG = 3,
    APM_WIRE_ERR_OVERLOADED = 4,
    APM_WIRE_ERR_STORE = 5,
    APM_WIRE_ERR_SHUTDOWN = 6,
    APM_WIRE_ERR_LIMIT = 7, /* permanent for batch seq: over a cardinality limit */
};

enum apm_control_action {
    APM_CONTROL_TRACE = 1,
    APM_CONTROL_STOP = 2,
};

struct apm_msg_hello {
    uint32_t protocol;
    struct apm_agent_ident ident;
    uint8_t token[APM_TOKEN_MAX];
    size_t token_len;
    struct apm_text_fixes fixes; /* strings of ident the decoder cleaned (common/base/text.h) */
};

struct apm_msg_error {
    enum apm_wire_error code;
    bool retryable;
    char text[256];
    uint64_t seq; /* APM_WIRE_ERR_LIMIT: the batch refused; 0 otherwise */
};

struct apm_msg_control {
    enum apm_control_action action;
    int32_t pid;
    int64_t start_ms;
    uint32_t duration_s;
    uint64_t max_memory;
    uint32_t frames;
    bool exact; /* tracemalloc even in sampled mode */
};

/* A decoded frame. Clear it with apm_msg_clear (frees an owned batch). */
struct apm_msg {
    enum apm_msg_type type;
    union {
        struct apm_msg_hello hello;
        struct {
            uint64_t last_seq;
            uint32_t max_frame;
        } hello_ack;
        struct apm_batch *batch; /* owned by the message until taken */
        uint64_t ack_seq;
        struct apm_msg_error error;
        struct apm_msg_control control;
    } u;
};

void apm_msg_clear(struct apm_msg *m);

/* ---- decoding (collector side for batches; both sides for the rest) ---- */

struct apm_codec_dec {
    char **strings; /* index 0 unused: ref 0 means "none" */
    uint32_t nstrings;
    uint32_t strings_cap;
    size_t string_bytes;
    struct dec_proc *procs;
    uint32_t nprocs;
    uint32_t procs_cap;
    struct dec_series *series;
    uint32_t nseries;
    uint32_t series_cap;
    struct dec_site *sites;
    uint32_t nsites;
    uint32_t sites_cap;
    struct apm_text_fixes fixes; /* table strings cleaned on this connection, cumulative */
};

/* Caller-owned per-connection decoder state. */
void apm_codec_dec_init(struct apm_codec_dec *d);
void apm_codec_dec_close(struct apm_codec_dec *d);

/*
 * Decodes one frame payload into out. d may be NULL when no batch is
 * expected (then a batch is refused). Validates everything: unknown message,
 * undefined or out-of-order references, mismatched sample arrays, bad
 * metrics, oversize strings. Returns 0, APM_E_DECODE, APM_E_LIMIT or -ENOMEM;
 * on error out holds nothing to free.
 */
int apm_codec_decode(struct apm_codec_dec *d, const uint8_t *payload, size_t len,
                     struct apm_msg *out);

/* ---- encoding ---- */

/* Encoded frame, header included: free buf with free(). */
struct apm_frame_out {
    uint8_t *buf;
    size_t len;
};

struct apm_codec_enc {
    struct apm_hashmap strings; /* string -> ref */
    struct apm_hashmap procs;   /* (pid, start_ms) -> ref */
    uint32_t *series_of;        /* [proc ref * APM_METRIC_COUNT + metric] -> series ref, 0 none */
    uint32_t series_of_cap;     /* entries in series_of */
    struct apm_hashmap sites;   /* (file ref, line, traceback refs) -> site ref */
    int64_t *last;              /* last value per series ref */
    uint32_t nstrings;
    uint32_t nprocs;
    uint32_t nseries;
    uint32_t nsites;
    uint32_t last_cap;
};

/* Caller-owned per-connection encoder state. */
void apm_codec_enc_init(struct apm_codec_enc *e);
void apm_codec_enc_close(struct apm_codec_enc *e);

/* True when the tables are large enough that the agent should reconnect. */
bool apm_codec_enc_full(const struct apm_codec_enc *e);

/*
 * Encodes a batch against the connection state e (which it updates).
 * Borrows b. Returns 0 and an owned frame, or -ENOMEM / APM_E_LIMIT; after a
 * failure e no longer matches the peer's state: drop the connection.
 */
int apm_codec_encode_batch(struct apm_codec_enc *e, const struct apm_batch *b,
                           struct apm_frame_out *out);

/* Stateless messages. Each returns 0 and an owned frame, or -ENOMEM. */
int apm_codec_encode_hello(const struct apm_msg_hello *h, struct apm_frame_out *out);
int apm_codec_encode_hello_ack(uint64_t last_seq, uint32_t max_frame, struct apm_frame_out *out);
int apm_codec_encode_ack(uint64_t seq, struct apm_frame_out *out);
int apm_codec_encode_error(const struct apm_msg_error *e, struct apm_frame_out *out);
int apm_codec_encode_control(const struct apm_msg_control *c, struct apm_frame_out *out);

#endif
