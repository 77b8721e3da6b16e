/* SPDX-License-Identifier: Apache-2.0 */
/* rediss://: a TLS bridge for hiredis.
 *
 * Debian 12's hiredis (0.14) has no TLS, so the node runs a small bridge:
 * hiredis connects to a private Unix socket, and each connection accepted
 * there is carried to Redis over TLS (OpenSSL through libevent). The bridge
 * has its own thread and loop, so it serves the blocking startup load as
 * well as the backplane thread's async connection. */
#ifndef SHOAL_CLUSTER_RK_TLS_H
#define SHOAL_CLUSTER_RK_TLS_H

typedef struct rk_tls rk_tls;

typedef struct rk_tls_opts {
    const char *host; /* Redis host: SNI and certificate name check */
    int port;
    const char *ca;   /* CA bundle (PEM); NULL = the system's */
    const char *cert; /* client certificate (PEM) for tls-auth-clients; may be NULL */
    const char *key;  /* its key */
} rk_tls_opts;

/* Load the certificates and start the bridge. Returns NULL after logging
 * event=redis_tls_error with the reason. */
rk_tls *rk_tls_start(const rk_tls_opts *o);
/* The Unix socket path hiredis connects to. */
const char *rk_tls_path(const rk_tls *t);
/* Stop the thread, close every bridged connection, remove the socket. */
void rk_tls_stop(rk_tls *t);

#endif
