/*
 * common/tls: a client and a server context talk to each other through
 * memory only (what one end's calls hand back is fed to the other), with
 * certificates the openssl CLI makes in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/base/error.h"
#include "common/wire/tls.h"

static char dir[] = "/tmp/apm-test-tls-XXXXXX";
static char path_buf[8][512];

static const char *path(int slot, const char *name)
{
    snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", dir, name);
    return path_buf[slot];
}

static int make_pki(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
             "-out ca.crt -days 2 -subj /CN=test-ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
             "-out srv.csr -subj /CN=collector.test && "
             "printf 'subjectAltName=DNS:collector.test,IP:127.0.0.1\\n' > srv.ext && "
             "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt "
             "-days 2 -extfile srv.ext",
             dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_pki(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct sink {
    uint8_t data[4096];
    size_t len;
};

static int collect(void *ctx, const uint8_t *p, size_t n)
{
    struct sink *s = ctx;
    assert_true(s->len + n <= sizeof(s->data));
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return 0;
}

/* Moves ciphertext between the ends until neither has anything to say. Returns the last code. */
static int converse(struct apm_tls *client, struct apm_tls *server, struct apm_frame_out *first,
                    struct sink *at_client, struct sink *at_server)
{
    struct apm_frame_out to_server = *first, to_client = {0};
    int rc = 0;
    for (int round = 0; round < 10 && (to_server.buf != NULL || to_client.buf != NULL); round++) {
        if (to_server.buf != NULL) {
            struct apm_frame_out in = to_server;
            rc = apm_tls_feed(server, in.buf, in.len, collect, at_server, &to_client);
            free(in.buf);
            to_server.buf = NULL;
            if (rc != 0)
                break;
        }
        if (to_client.buf != NULL) {
            struct apm_frame_out in = to_client;
            rc = apm_tls_feed(client, in.buf, in.len, collect, at_client, &to_server);
            free(in.buf);
            to_client.buf = NULL;
            if (rc != 0)
                break;
        }
    }
    free(to_server.buf);
    free(to_client.buf);
    return rc;
}

static struct apm_tls_ctx *server_ctx(void)
{
    struct apm_tls_options o = {.cert = path(0, "srv.crt"), .key = path(1, "srv.key")};
    struct apm_tls_ctx *ctx = NULL;
    char err[256];
    assert_int_equal(apm_tls_ctx_new(true, &o, &ctx, err, sizeof(err)), 0);
    return ctx;
}

static struct apm_tls_ctx *client_ctx(void)
{
    struct apm_tls_options o = {.ca = path(2, "ca.crt")};
    struct apm_tls_ctx *ctx = NULL;
    char err[256];
    assert_int_equal(apm_tls_ctx_new(false, &o, &ctx, err, sizeof(err)), 0);
    return ctx;
}

static struct apm_frame_out plain(const char *s)
{
    struct apm_frame_out f = {.buf = (uint8_t *)strdup(s), .len = strlen(s)};
    assert_non_null(f.buf);
    return f;
}

static void test_tls_ends_talk_through_memory(void **state)
{
    (void)state;
    struct apm_tls_ctx *sc = server_ctx(), *cc = client_ctx();
    struct apm_tls *srv = NULL, *cli = NULL;
    assert_int_equal(apm_tls_new(sc, NULL, &srv), 0);
    assert_int_equal(apm_tls_new(cc, "collector.test", &cli), 0);
    struct apm_frame_out first;
    assert_int_equal(apm_tls_start(cli, &first), 0);
    assert_non_null(first.buf);
    assert_true(apm_tls_looks_like_handshake(first.buf[0]));
    /* Sealed before the handshake ends: kept, then sent once it has. */
    struct apm_frame_out hello = plain("hello before the handshake");
    assert_int_equal(apm_tls_seal(cli, &hello), 0);
    assert_null(hello.buf);
    struct sink at_client = {.len = 0}, at_server = {.len = 0};
    assert_int_equal(converse(cli, srv, &first, &at_client, &at_server), 0);
    assert_true(apm_tls_established(cli));
    assert_true(apm_tls_established(srv));
    assert_string_equal(apm_tls_version(cli), "TLSv1.3");
    assert_int_equal(at_server.len, strlen("hello before the handshake"));
    assert_memory_equal(at_server.data, "hello before the handshake", at_server.len);

    /* The server answers; the client pulls it in small pieces. */
    struct apm_frame_out ack = plain("ack 42");
    assert_int_equal(apm_tls_seal(srv, &ack), 0);
    assert_non_null(ack.buf);
    assert_null(memmem(ack.buf, ack.len, "ack 42", 6)); /* encrypted on the wire */
    struct apm_frame_out out;
    assert_int_equal(apm_tls_push(cli, ack.buf, ack.len, &out), 0);
    free(ack.buf);
    free(out.buf);
    uint8_t piece[4];
    size_t got = 0, total = 0;
    char back[16] = "";
    do {
        assert_int_equal(apm_tls_pull(cli, piece, sizeof(piece), &got, &out), 0);
        free(out.buf);
        memcpy(back + total, piece, got);
        total += got;
    } while (got > 0);
    assert_string_equal(back, "ack 42");
    apm_tls_free(cli);
    apm_tls_free(srv);
    apm_tls_ctx_free(cc);
    apm_tls_ctx_free(sc);
}

static void test_tls_client_refuses_a_certificate_for_another_name(void **state)
{
    (void)state;
    struct apm_tls_ctx *sc = server_ctx(), *cc = client_ctx();
    const char *names[] = {"other.test", "127.0.0.2"};
    const char *why[] = {"hostname mismatch", "IP address mismatch"};
    for (int i = 0; i < 2; i++) {
        struct apm_tls *srv = NULL, *cli = NULL;
        assert_int_equal(apm_tls_new(sc, NULL, &srv), 0);
        assert_int_equal(apm_tls_new(cc, names[i], &cli), 0);
        struct apm_frame_out first;
        assert_int_equal(apm_tls_start(cli, &first), 0);
        struct sink a = {.len = 0}, b = {.len = 0};
        assert_int_equal(converse(cli, srv, &first, &a, &b), APM_E_TLS);
        assert_false(apm_tls_established(cli));
        if (strstr(apm_tls_error(cli), why[i]) == NULL)
            fail_msg("%s: %s", names[i], apm_tls_error(cli));
        apm_tls_free(cli);
        apm_tls_free(srv);
    }
    /* The address the certificate does carry is accepted. */
    struct apm_tls *srv = NULL, *cli = NULL;
    assert_int_equal(apm_tls_new(sc, NULL, &srv), 0);
    assert_int_equal(apm_tls_new(cc, "127.0.0.1", &cli), 0);
    struct apm_frame_out first;
    assert_int_equal(apm_tls_start(cli, &first), 0);
    struct sink a = {.len = 0}, b = {.len = 0};
    assert_int_equal(converse(cli, srv, &first, &a, &b), 0);
    assert_true(apm_tls_established(cli));
    apm_tls_free(cli);
    apm_tls_free(srv);
    apm_tls_ctx_free(cc);
    apm_tls_ctx_free(sc);
}

static void test_tls_bad_settings_name_the_file(void **state)
{
    (void)state;
    struct apm_tls_ctx *ctx = NULL;
    char err[256];
    struct apm_tls_options no_key = {.cert = path(0, "srv.crt")};
    assert_int_equal(apm_tls_ctx_new(true, &no_key, &ctx, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "key"));
    struct apm_tls_options none = {.cert = NULL};
    assert_int_equal(apm_tls_ctx_new(true, &none, &ctx, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "tls-cert"));
    assert_int_equal(apm_tls_ctx_new(false, &none, &ctx, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "tls-ca"));
    struct apm_tls_options swapped = {.cert = path(1, "srv.key"), .key = path(0, "srv.crt")};
    assert_int_equal(apm_tls_ctx_new(true, &swapped, &ctx, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, path(1, "srv.key")));
    struct apm_tls_options missing_ca = {.cert = path(0, "srv.crt"),
                                         .key = path(1, "srv.key"),
                                         .client_certs = APM_TLS_CLIENT_CERTS_REQUIRED};
    assert_int_equal(apm_tls_ctx_new(true, &missing_ca, &ctx, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "tls-ca"));
    missing_ca.ca = path(3, "nope.crt");
    assert_int_equal(apm_tls_ctx_new(true, &missing_ca, &ctx, err, sizeof(err)), APM_E_CONFIG);
    assert_non_null(strstr(err, "nope.crt"));

    enum apm_tls_client_certs cc;
    assert_int_equal(apm_tls_client_certs_parse("optional", &cc), 0);
    assert_int_equal(cc, APM_TLS_CLIENT_CERTS_OPTIONAL);
    assert_int_equal(apm_tls_client_certs_parse("required", &cc), 0);
    assert_int_equal(cc, APM_TLS_CLIENT_CERTS_REQUIRED);
    assert_int_equal(apm_tls_client_certs_parse("yes", &cc), APM_E_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_ends_talk_through_memory),
        cmocka_unit_test(test_tls_client_refuses_a_certificate_for_another_name),
        cmocka_unit_test(test_tls_bad_settings_name_the_file),
    };
    return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
