/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal asynchronous MQTT client on a libevent bufferevent, speaking
 * 3.1, 3.1.1 and 5 through proto/. It keeps what a load generator needs:
 * the QoS 1/2 handshakes on both sides, a publish window, keep-alive
 * pings. Everything runs on one event_base thread.
 *
 * Callbacks fire from inside the client's own libevent callbacks. They may
 * call client_disconnect() or client_abort() on that same client; the
 * client then stops touching its buffers. The client struct itself lives
 * until client_free(), which must not be called from a callback. */
#ifndef SHOAL_BENCH_CLIENT_H
#define SHOAL_BENCH_CLIENT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto/packet.h"

struct event_base;
typedef struct client client;

typedef enum client_state {
    CLIENT_IDLE = 0, /* not started */
    CLIENT_TCP,      /* TCP connect in progress */
    CLIENT_CONNACK,  /* CONNECT sent */
    CLIENT_UP,       /* CONNACK accepted */
    CLIENT_CLOSING,  /* DISCONNECT queued; closes once flushed */
    CLIENT_CLOSED,
} client_state;

/* Why a connection ended without us asking. */
typedef enum client_end {
    CLIENT_END_REFUSED = 0, /* TCP error or close before CONNACK */
    CLIENT_END_REJECTED,    /* CONNACK with a failure code */
    CLIENT_END_TIMEOUT,     /* no CONNACK in time */
    CLIENT_END_DROPPED,     /* closed (or DISCONNECT) after CONNACK */
    CLIENT_END_PROTOCOL,    /* the broker sent something we cannot decode */
} client_end;

typedef struct client_cbs {
    void (*up_cb)(client *c);
    /* The connection is gone (rc: CONNACK/DISCONNECT reason, else 0). */
    void (*end_cb)(client *c, client_end why, uint8_t rc);
    /* An incoming PUBLISH, after its PUBACK/PUBREC was queued. The
     * packet borrows the read buffer until return. */
    void (*message_cb)(client *c, const mqtt_publish *p);
    /* One of our QoS 1/2 publishes is done: rc >= 0x80 means refused. */
    void (*pub_done_cb)(client *c, uint8_t rc);
    void (*suback_cb)(client *c, uint8_t rc);
    void (*unsuback_cb)(client *c);
    /* Output dropped to the low-water mark: room to publish again. */
    void (*writable_cb)(client *c);
} client_cbs;

typedef struct client_cfg {
    uint8_t version; /* 3, 4 or 5 */
    uint16_t keepalive;
    bool clean;
    uint32_t session_expiry; /* v5, when !clean */
    uint16_t inflight;       /* our publish window; <= 65000 */
    uint32_t connect_timeout_ms;
    const char *username; /* NULL: none */
    const char *password; /* NULL: none */
} client_cfg;

/* `cbs` and `cfg` are borrowed for the client's life. */
client *client_new(struct event_base *base, const client_cbs *cbs, const client_cfg *cfg, void *ud);
void client_free(client *c);
void *client_ud(const client *c);
client_state client_get_state(const client *c);

/* Opens the TCP connection (binding to src first when it is not NULL, so
 * every source address has its own ephemeral ports) and sends CONNECT
 * once it is up. Returns SH_ERR, with errno set and no callback, when no
 * socket could be made. */
int client_connect(client *c, const struct sockaddr_in *dst, const struct in_addr *src, const char *client_id,
                   uint64_t now_ns);

/* True when a publish of this QoS can go now: connected, output below the
 * high-water mark and, for QoS 1/2, a free slot in the window. */
bool client_can_publish(const client *c, uint8_t qos);
uint32_t client_inflight(const client *c);
/* Queue a PUBLISH (payload copied). SH_ERR when !client_can_publish. */
int client_publish(client *c, mqtt_bytes topic, mqtt_bytes payload, uint8_t qos, bool retain);
/* One SUBSCRIBE / UNSUBSCRIBE at a time. */
int client_subscribe(client *c, mqtt_bytes filter, uint8_t qos);
int client_unsubscribe(client *c, mqtt_bytes filter);

/* Keep alive (PINGREQ after half the interval without sending) and the
 * connect timeout (end_cb with CLIENT_END_TIMEOUT). Call about once a second. */
void client_tick(client *c, uint64_t now_ns);

/* Send DISCONNECT and close once it is written. No more callbacks. */
void client_disconnect(client *c);
/* Close now. No more callbacks. */
void client_abort(client *c);

#endif
