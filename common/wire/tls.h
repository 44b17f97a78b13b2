#ifndef APM_TLS_H
#define APM_TLS_H

/*
 * TLS for the collector's listeners and the agent's uplink, with OpenSSL
 * driven through memory BIOs: the owner reads ciphertext from its libuv
 * stream and feeds it here, and writes with uv_write whatever ciphertext this
 * module hands back. Nothing here touches a socket, so the event loop never
 * blocks on TLS, and two ends can be tested against each other in memory.
 *
 * TLS 1.2 is the minimum. A server context can ask for client certificates
 * checked against its CA (mTLS); a client context verifies the server's
 * certificate against its CA and the expected host name or IP address.
 *
 * Threads: a context may be shared by connections on one thread; a
 * connection is used by one thread at a time.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wire/codec.h"

/* Client certificates asked by a server context. */
enum apm_tls_client_certs {
    APM_TLS_CLIENT_CERTS_OFF = 0,  /* not asked */
    APM_TLS_CLIENT_CERTS_OPTIONAL, /* asked; one sent must chain to the CA */
    APM_TLS_CLIENT_CERTS_REQUIRED, /* a client without one is refused in the handshake */
};

struct apm_tls_options {
    const char
        *cert; /* PEM certificate (chain) file; required for a server, optional for a client */
    const char *key; /* PEM private key file; with cert */
    const char
        *ca; /* PEM CA file: verifies the peer (required for a client; for mTLS on a server) */
    enum apm_tls_client_certs client_certs; /* server only */
};

struct apm_tls_ctx;
struct apm_tls;

/*
 * Loads the files and builds a context. Returns 0 and *out (free with
 * apm_tls_ctx_free), or APM_E_CONFIG with one line in err naming the file
 * and OpenSSL's reason.
 */
int apm_tls_ctx_new(bool server, const struct apm_tls_options *opt, struct apm_tls_ctx **out,
                    char *err, size_t errlen);
void apm_tls_ctx_free(struct apm_tls_ctx *ctx);

/* Parses "off", "optional" or "required". Returns 0 or APM_E_CONFIG. */
int apm_tls_client_certs_parse(const char *s, enum apm_tls_client_certs *out);

/*
 * A connection on ctx (borrowed: it outlives the connection). For a client,
 * peer_name is the name (or numeric IP address) the server's certificate must
 * carry; it is also sent as SNI when it is a name. Returns 0 and *out (free
 * with apm_tls_free) or -ENOMEM.
 */
int apm_tls_new(struct apm_tls_ctx *ctx, const char *peer_name, struct apm_tls **out);
void apm_tls_free(struct apm_tls *t);

/* Called with each piece of decrypted data; return 0 to go on, < 0 to stop. */
typedef int (*apm_tls_plain_fn)(void *ctx, const uint8_t *p, size_t len);

/*
 * Consumes n bytes of ciphertext from the peer: advances the handshake and
 * calls fn with what decrypts. Afterwards, *out holds the ciphertext to send
 * (handshake records, alerts, data queued before the handshake ended;
 * out->buf is NULL when there is none; owned by the caller). Returns 0,
 * fn's negative code, APM_E_CLOSED when the peer ended the session, or
 * APM_E_TLS (reason in apm_tls_error) when the handshake or a record failed:
 * send *out (the alert) and close.
 */
int apm_tls_feed(struct apm_tls *t, const uint8_t *p, size_t n, apm_tls_plain_fn fn, void *ctx,
                 struct apm_frame_out *out);

/*
 * The pull form of apm_tls_feed, for an owner that takes plaintext only as
 * it has room: apm_tls_push hands over ciphertext and advances the
 * handshake; apm_tls_pull then gives up to cap bytes of plaintext (*got 0:
 * more ciphertext is needed). Both leave ciphertext to send in *out as
 * apm_tls_feed does. Return 0, APM_E_CLOSED (pull: the peer ended the
 * session), APM_E_TLS or -ENOMEM.
 */
int apm_tls_push(struct apm_tls *t, const uint8_t *p, size_t n, struct apm_frame_out *out);
int apm_tls_pull(struct apm_tls *t, uint8_t *buf, size_t cap, size_t *got,
                 struct apm_frame_out *out);

/*
 * Starts a client's handshake: *out holds its first flight (ClientHello).
 * Returns 0 or APM_E_TLS.
 */
int apm_tls_start(struct apm_tls *t, struct apm_frame_out *out);

/*
 * Encrypts f in place: takes f->buf (plaintext) and leaves the ciphertext to
 * send in f (f->buf NULL when nothing is to be sent yet: before the end of
 * the handshake the plaintext is kept and sent by a later apm_tls_feed).
 * Returns 0, -ENOMEM or APM_E_TLS; on failure f->buf is freed and NULL.
 */
int apm_tls_seal(struct apm_tls *t, struct apm_frame_out *f);

/* True once the handshake completed. */
bool apm_tls_established(const struct apm_tls *t);

/* The reason of the last APM_E_TLS, e.g. "certificate verify failed: Hostname mismatch". */
const char *apm_tls_error(const struct apm_tls *t);

/* The negotiated protocol ("TLSv1.3") or "" before the handshake ends. */
const char *apm_tls_version(const struct apm_tls *t);

/* True when the first byte a server received starts a TLS handshake record. */
static inline bool apm_tls_looks_like_handshake(uint8_t first_byte)
{
    return first_byte == 0x16;
}

#endif
