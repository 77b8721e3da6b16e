/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT over WebSocket on one connection (--ws-port, --wss-port): the glue
 * between c->bev (a socket or TLS bufferevent carrying WebSocket bytes) and
 * conn.c's MQTT framing, which reads the unmasked byte stream this returns.
 * Every call runs on the connection's worker. */
#ifndef SHOAL_NODE_WS_CONN_H
#define SHOAL_NODE_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evconnlistener;

struct conn;
struct evbuffer;

typedef struct ws_conn ws_conn;

ws_conn *ws_conn_new(void);
void ws_conn_free(ws_conn *ws);

/* Read what has arrived on c->bev: the upgrade request (answered with 101
 * or an HTTP error and a close), then frames. Pings are answered at once;
 * a close frame or a protocol error stops reading frames and is carried out
 * by ws_conn_read_done once the MQTT bytes before it are handled. Returns
 * the MQTT byte stream (owned by ws), or NULL before the upgrade and after
 * the connection was closed. */
struct evbuffer *ws_conn_read(struct conn *c);

/* After conn.c has taken what it could from the stream: close the
 * connection if a close frame or a protocol error came in. */
void ws_conn_read_done(struct conn *c);

/* True once the upgrade has been answered with 101. */
bool ws_conn_open(const struct conn *c);

/* Before one MQTT packet of len bytes goes into out (c->bev's output): its
 * binary frame header. Returns false, writing nothing, when no data frame
 * may be sent (not upgraded, or our close frame is out). */
bool ws_conn_frame(struct conn *c, struct evbuffer *out, size_t len);

/* Called by conn_close after its last MQTT bytes: send our close frame, once.
 * Its code is the one a WebSocket error chose, the peer's own (echoed), 1001
 * when the server shuts down (rc 0x8B), else 1000. */
void ws_conn_send_close(struct conn *c, uint8_t rc);

/* --ws-* and --wss-port options (config.ws). */
typedef struct ws_config {
    int port;
    int wss_port;
    char *path;
    uint32_t max_frame;
    char *origins;
} ws_config;

/* The bound WebSocket ports, 0 = none (broker.ws). */
typedef struct ws_ports {
    uint16_t port;
    uint16_t wss_port;
} ws_ports;

/* A worker's WebSocket listeners (worker.ws). */
typedef struct ws_worker {
    struct evconnlistener *listener;     /* ws:// */
    struct evconnlistener *tls_listener; /* wss:// */
} ws_worker;

#endif
