#include "common/wire/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/base/error.h"

struct apm_tls_ctx {
    SSL_CTX *ssl;
    bool server;
};

struct apm_tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer; owned by ssl */
    BIO *wbio; /* ciphertext for the peer; owned by ssl */
    bool established;
    /* Plaintext sealed before the handshake ended, sent once it has. */
    uint8_t *pending;
    size_t pending_len;
    char error[256];
};

/* The oldest error on OpenSSL's queue as text, and the queue emptied. */
static void take_ssl_error(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    unsigned long last;
    while ((last = ERR_get_error()) != 0)
        (void)last;
    if (e == 0) {
        snprintf(buf, size, "unknown error");
        return;
    }
    const char *reason = ERR_reason_error_string(e);
    if (reason != NULL)
        snprintf(buf, size, "%s", reason);
    else
        ERR_error_string_n(e, buf, size);
}

int apm_tls_client_certs_parse(const char *s, enum apm_tls_client_certs *out)
{
    if (strcmp(s, "off") == 0)
        *out = APM_TLS_CLIENT_CERTS_OFF;
    else if (strcmp(s, "optional") == 0)
        *out = APM_TLS_CLIENT_CERTS_OPTIONAL;
    else if (strcmp(s, "required") == 0)
        *out = APM_TLS_CLIENT_CERTS_REQUIRED;
    else
        return APM_E_CONFIG;
    return 0;
}

static int ctx_fail(SSL_CTX *ssl, const char *what, const char *file, char *err, size_t errlen)
{
    char reason[200];
    take_ssl_error(reason, sizeof(reason));
    snprintf(err, errlen, "%s %s: %s", what, file, reason);
    SSL_CTX_free(ssl);
    return APM_E_CONFIG;
}

int apm_tls_ctx_new(bool server, const struct apm_tls_options *opt, struct apm_tls_ctx **out,
                    char *err, size_t errlen)
{
    const char *cert = opt->cert != NULL && opt->cert[0] != '\0' ? opt->cert : NULL;
    const char *key = opt->key != NULL && opt->key[0] != '\0' ? opt->key : NULL;
    const char *ca = opt->ca != NULL && opt->ca[0] != '\0' ? opt->ca : NULL;
    if ((cert == NULL) != (key == NULL)) {
        snprintf(err, errlen, "a TLS certificate needs its key and a key its certificate");
        return APM_E_CONFIG;
    }
    if (server && cert == NULL) {
        snprintf(err, errlen, "TLS needs a certificate and key (tls-cert, tls-key)");
        return APM_E_CONFIG;
    }
    if (ca == NULL && (!server || opt->client_certs != APM_TLS_CLIENT_CERTS_OFF)) {
        snprintf(err, errlen,
                 server ? "client certificates need the CA that signs them (tls-ca)"
                        : "TLS needs the CA that signs the collector's certificate (tls-ca)");
        return APM_E_CONFIG;
    }
    ERR_clear_error();
    SSL_CTX *ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ssl == NULL)
        return -ENOMEM;
    if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1)
        return ctx_fail(ssl, "cannot set the minimum protocol", "TLSv1.2", err, errlen);
    if (cert != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ssl, cert) != 1)
            return ctx_fail(ssl, "cannot load TLS certificate", cert, err, errlen);
        if (SSL_CTX_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1)
            return ctx_fail(ssl, "cannot load TLS key", key, err, errlen);
        if (SSL_CTX_check_private_key(ssl) != 1)
            return ctx_fail(ssl, "TLS key does not match the certificate", cert, err, errlen);
    }
    if (ca != NULL && SSL_CTX_load_verify_locations(ssl, ca, NULL) != 1)
        return ctx_fail(ssl, "cannot load TLS CA", ca, err, errlen);
    if (server) {
        int mode = SSL_VERIFY_NONE;
        if (opt->client_certs != APM_TLS_CLIENT_CERTS_OFF) {
            mode = SSL_VERIFY_PEER;
            if (opt->client_certs == APM_TLS_CLIENT_CERTS_REQUIRED)
                mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
            if (names == NULL)
                return ctx_fail(ssl, "cannot read CA names from", ca, err, errlen);
            SSL_CTX_set_client_CA_list(ssl, names);
        }
        SSL_CTX_set_verify(ssl, mode, NULL);
        /* Connections are short-lived in number; no session cache to grow. */
        SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ssl, 0);
    } else {
        SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    }
    struct apm_tls_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        SSL_CTX_free(ssl);
        return -ENOMEM;
    }
    c->ssl = ssl;
    c->server = server;
    *out = c;
    return 0;
}

void apm_tls_ctx_free(struct apm_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

/* Sets the name or address the server's certificate must carry. Returns 1 on success. */
static int expect_peer(SSL *ssl, const char *name)
{
    unsigned char addr[16];
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(param, name);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, name) != 1)
        return 0;
    return SSL_set_tlsext_host_name(ssl, name);
}

int apm_tls_new(struct apm_tls_ctx *ctx, const char *peer_name, struct apm_tls **out)
{
    struct apm_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (peer_name == NULL || peer_name[0] == '\0' || expect_peer(t->ssl, peer_name) != 1) {
            ERR_clear_error();
            apm_tls_free(t);
            return APM_E_CONFIG;
        }
    }
    *out = t;
    return 0;
}

void apm_tls_free(struct apm_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t->pending);
    free(t);
}

/* Moves what OpenSSL wrote for the peer into out (malloc'd; NULL when none). */
static int drain(struct apm_tls *t, struct apm_frame_out *out)
{
    out->buf = NULL;
    out->len = 0;
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return 0;
    out->buf = malloc(n);
    if (out->buf == NULL)
        return -ENOMEM;
    int got = BIO_read(t->wbio, out->buf, (int)n);
    out->len = got > 0 ? (size_t)got : 0;
    return 0;
}

/* Records why the session failed, from the verify result or OpenSSL's error queue. */
static int tls_failed(struct apm_tls *t, int ssl_err)
{
    long v = SSL_get_verify_result(t->ssl);
    char reason[200];
    if (ssl_err == SSL_ERROR_SYSCALL)
        snprintf(reason, sizeof(reason), "unexpected end of the TLS stream");
    else
        take_ssl_error(reason, sizeof(reason));
    if (v != X509_V_OK)
        snprintf(t->error, sizeof(t->error), "%s: %s", reason, X509_verify_cert_error_string(v));
    else
        snprintf(t->error, sizeof(t->error), "%s", reason);
    ERR_clear_error();
    return APM_E_TLS;
}

/* Encrypts p into the write BIO (which grows as needed). */
static int write_plain(struct apm_tls *t, const uint8_t *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int w = SSL_write(t->ssl, p, chunk);
        if (w <= 0)
            return tls_failed(t, SSL_get_error(t->ssl, w));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int apm_tls_start(struct apm_tls *t, struct apm_frame_out *out)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int rc = 0;
    if (r == 1) {
        t->established = true;
    } else {
        int e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_READ)
            rc = tls_failed(t, e);
    }
    if (drain(t, out) != 0)
        return -ENOMEM;
    return rc;
}

/* Hands ciphertext to OpenSSL and advances the handshake; no output drained. */
static int push(struct apm_tls *t, const uint8_t *p, size_t n)
{
    ERR_clear_error();
    if (n > 0 && BIO_write(t->rbio, p, (int)n) != (int)n)
        return -ENOMEM;
    if (t->established)
        return 0;
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        int e = SSL_get_error(t->ssl, r);
        return e == SSL_ERROR_WANT_READ ? 0 : tls_failed(t, e);
    }
    t->established = true;
    int rc = 0;
    if (t->pending != NULL) {
        rc = write_plain(t, t->pending, t->pending_len);
        free(t->pending);
        t->pending = NULL;
        t->pending_len = 0;
    }
    return rc;
}

/* One SSL_read: *got bytes (0 when more ciphertext is needed), or a code. */
static int pull(struct apm_tls *t, uint8_t *buf, size_t cap, size_t *got)
{
    *got = 0;
    if (!t->established || cap == 0)
        return 0;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0) {
        *got = (size_t)r;
        return 0;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    return e == SSL_ERROR_ZERO_RETURN ? APM_E_CLOSED : tls_failed(t, e);
}

int apm_tls_push(struct apm_tls *t, const uint8_t *p, size_t n, struct apm_frame_out *out)
{
    int rc = push(t, p, n);
    if (drain(t, out) != 0)
        return -ENOMEM;
    return rc;
}

int apm_tls_pull(struct apm_tls *t, uint8_t *buf, size_t cap, size_t *got,
                 struct apm_frame_out *out)
{
    int rc = pull(t, buf, cap, got);
    if (drain(t, out) != 0)
        return -ENOMEM;
    return rc;
}

int apm_tls_feed(struct apm_tls *t, const uint8_t *p, size_t n, apm_tls_plain_fn fn, void *ctx,
                 struct apm_frame_out *out)
{
    int rc = push(t, p, n);
    uint8_t buf[16384];
    size_t got = 0;
    while (rc == 0 && (rc = pull(t, buf, sizeof(buf), &got)) == 0 && got > 0)
        rc = fn(ctx, buf, got);
    if (drain(t, out) != 0)
        return -ENOMEM;
    return rc;
}

int apm_tls_seal(struct apm_tls *t, struct apm_frame_out *f)
{
    uint8_t *plain = f->buf;
    size_t n = f->len;
    f->buf = NULL;
    f->len = 0;
    if (!t->established) {
        uint8_t *grown = realloc(t->pending, t->pending_len + n);
        if (grown == NULL) {
            free(plain);
            return -ENOMEM;
        }
        memcpy(grown + t->pending_len, plain, n);
        t->pending = grown;
        t->pending_len += n;
        free(plain);
        return 0;
    }
    ERR_clear_error();
    int rc = write_plain(t, plain, n);
    free(plain);
    if (rc != 0)
        return rc;
    return drain(t, f);
}

bool apm_tls_established(const struct apm_tls *t)
{
    return t->established;
}

const char *apm_tls_error(const struct apm_tls *t)
{
    return t->error[0] != '\0' ? t->error : "no error";
}

const char *apm_tls_version(const struct apm_tls *t)
{
    return t->established ? SSL_get_version(t->ssl) : "";
}
