#include "server/net/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/config.h"
#include "common/base/error.h"
#include "common/base/log.h"

struct apm_listener {
    uv_tcp_t tcp; /* first member: the handle's address is the listener's */
    char who[32];
    apm_listener_connection_fn fn;
    void *ctx;
    apm_listener_close_fn close_cb;
    void *close_ctx;
};

int apm_listener_address(const char *endpoint, struct sockaddr_storage *ss)
{
    char host[256];
    int port = 0;
    memset(ss, 0, sizeof(*ss));
    if (endpoint == NULL || apm_endpoint_split(endpoint, host, sizeof(host), &port) != 0)
        return APM_E_CONFIG;
    if (host[0] == '\0')
        snprintf(host, sizeof(host), "0.0.0.0");
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return APM_E_CONFIG;
}

bool apm_listener_is_loopback(const char *endpoint)
{
    struct sockaddr_storage ss;
    if (apm_listener_address(endpoint, &ss) != 0)
        return false;
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
    return (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct apm_listener *l = server->data;
    l->fn(l->ctx, l, status);
}

static void on_closed(uv_handle_t *h)
{
    struct apm_listener *l = h->data;
    apm_listener_close_fn cb = l->close_cb;
    void *ctx = l->close_ctx;
    free(l);
    if (cb != NULL)
        cb(ctx);
}

/* The port of an IPv4 or IPv6 socket address. */
static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

int apm_listener_new(uv_loop_t *loop, const char *who, const char *endpoint, int backlog,
                     apm_listener_connection_fn fn, void *ctx, struct apm_listener **out)
{
    struct sockaddr_storage ss;
    if (apm_listener_address(endpoint, &ss) != 0) {
        apm_error("%s: listen address '%s' is not a numeric HOST:PORT", who,
                  endpoint ? endpoint : "");
        return APM_E_CONFIG;
    }
    struct apm_listener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    snprintf(l->who, sizeof(l->who), "%s", who);
    l->fn = fn;
    l->ctx = ctx;
    int rc = uv_tcp_init(loop, &l->tcp);
    if (rc != 0) {
        free(l);
        return rc;
    }
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, backlog, on_connection);
    if (rc != 0) {
        if (rc == UV_EADDRINUSE)
            apm_error("%s: cannot listen on %s: port %d is already in use", who, endpoint,
                      port_of(&ss));
        else
            apm_error("%s: cannot listen on %s (port %d): %s", who, endpoint, port_of(&ss),
                      uv_strerror(rc));
        /* The handle is open: only its close callback frees the listener. */
        uv_close((uv_handle_t *)&l->tcp, on_closed);
        return rc;
    }
    *out = l;
    return 0;
}

int apm_listener_accept(struct apm_listener *l, uv_tcp_t *client)
{
    return uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)client);
}

int apm_listener_port(const struct apm_listener *l)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    if (rc != 0)
        return rc;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return APM_E_CONFIG;
    return port_of(&ss);
}

void apm_listener_close(struct apm_listener *l, apm_listener_close_fn cb, void *ctx)
{
    if (l == NULL)
        return;
    l->close_cb = cb;
    l->close_ctx = ctx;
    uv_close((uv_handle_t *)&l->tcp, on_closed);
}
