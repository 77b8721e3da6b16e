/* SPDX-License-Identifier: Apache-2.0 */
/* PROXY protocol on the client listeners (--proxy-protocol, --proxy-trusted):
 * the first transport step of a connection accepted behind a load balancer.
 * Before any conn exists, the header is read off the socket (proto/proxy.c
 * parses it) and only its bytes are taken, so what follows (MQTT, a TLS
 * ClientHello, a WebSocket upgrade) stays in the socket for the transport;
 * then conn_new runs with the client's own address as the peer. See
 * docs/architecture.md, "PROXY protocol in the node". */
#ifndef SHOAL_NODE_PROXY_H
#define SHOAL_NODE_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct sockaddr;
typedef struct worker worker;
typedef struct proxy_wait proxy_wait;

/* The client listeners, in the order of conn_new's CONN_TLS | CONN_WS flags. */
enum proxy_listener {
    PROXY_L_MQTT = 0, /* --port */
    PROXY_L_MQTTS,    /* --tls-port */
    PROXY_L_WS,       /* --ws-port */
    PROXY_L_WSS,      /* --wss-port */
    PROXY_L_COUNT,
};

/* One --proxy-trusted network. */
typedef struct proxy_net {
    uint8_t family; /* 4 or 6 */
    uint8_t bits;
    uint8_t addr[16];
} proxy_net;

/* --proxy-protocol and --proxy-trusted (config.proxy), and what
 * proxy_config_parse made of them. */
typedef struct proxy_config {
    char *protocol;                  /* "off", "v1", "v2", or "LISTENER=VERSION,..." */
    char *trusted;                   /* CIDR list; unset = any source */
    uint8_t versions[PROXY_L_COUNT]; /* MQTT_PROXY_V1/V2 bits, 0 = off */
    proxy_net *nets;
    uint32_t n_nets, cap_nets;
} proxy_config;

/* Parse protocol and trusted into versions and nets. 0, or 2 with the
 * message on stderr (config_load's convention). */
int proxy_config_parse(proxy_config *pc);
void proxy_config_free(proxy_config *pc);
/* True when some listener expects a header. */
bool proxy_config_on(const proxy_config *pc);

/* A worker's connections still waiting for their header, and the counts
 * (worker.proxy; summed for /metrics). */
typedef struct proxy_worker {
    proxy_wait *waiting;
    _Atomic uint64_t accepted;  /* headers taken */
    _Atomic uint64_t untrusted; /* refused: source outside --proxy-trusted */
    _Atomic uint64_t bad;       /* refused: no valid header (bad, EOF, or not within --connect-timeout) */
} proxy_worker;

/* From the accept path: when the listener speaks PROXY protocol, take fd
 * (refuse it, or wait for its header and then conn_new) and return true;
 * else false and the caller makes the connection. */
bool proxy_accept(worker *w, int fd, const struct sockaddr *sa, int salen, unsigned flags);
/* Close every connection still waiting (worker teardown). */
void proxy_worker_free(worker *w);

#endif
