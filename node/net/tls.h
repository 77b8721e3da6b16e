/* SPDX-License-Identifier: Apache-2.0 */
/* TLS for the MQTT listener (mqtts): one server SSL_CTX shared by every
 * worker, rebuilt from the files on SIGHUP. */
#ifndef SHOAL_NODE_TLS_H
#define SHOAL_NODE_TLS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

struct evconnlistener;
typedef struct config config;

struct ssl_st;
struct bufferevent;

typedef struct tls tls;

/* Build the context from cfg's --tls-* options (borrowed for tls's life).
 * Returns NULL after logging event=tls_error with the reason. Blocks (reads
 * the files). */
tls *tls_open(const config *cfg);
/* Rebuild the context from the same files. On failure the current one stays
 * in force and event=tls_reload_failed is logged; returns SH_OK/SH_ERR.
 * Called from the main thread while workers accept. */
int tls_reload(tls *t);
/* A new server-side SSL for one accepted connection (owned by the caller),
 * or NULL. Any thread. */
struct ssl_st *tls_new_ssl(tls *t);
/* After the handshake: copy the peer certificate's subject CN into dst
 * (empty when there is no certificate or no CN). */
void tls_peer_cn(struct bufferevent *bev, char *dst, size_t len);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", for the handshake log line. */
void tls_describe(struct bufferevent *bev, char *dst, size_t len);
/* The last OpenSSL error on bev, as text ("-" when none). */
void tls_bev_error(struct bufferevent *bev, char *dst, size_t len);
/* Frees the current context; SSLs still alive hold their own reference. */
void tls_close(tls *t);

/* --tls-* options (config.tls). */
typedef struct tls_config {
    int port;
    char *cert;
    char *key;
    char *ca;
    bool require_client_cert;
    bool cert_as_username;
    char *min_version;
    char *ciphers;
} tls_config;

/* The broker's TLS state (broker.tls). */
typedef struct tls_state {
    struct tls *ctx; /* NULL without --tls-port or --wss-port */
    uint16_t port;   /* the bound TLS port, 0 = none */
} tls_state;

/* A worker's TLS listener and handshake counters (worker.tls). */
typedef struct tls_worker {
    struct evconnlistener *listener;
    _Atomic uint64_t handshake_failures;
    _Atomic uint64_t handshakes; /* completed */
} tls_worker;

#endif
