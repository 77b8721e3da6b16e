/* SPDX-License-Identifier: Apache-2.0 */
/* One client connection (node/conn.c); it lives on one worker for its
 * whole life. The transport is node/net/conn_io.c's. */
#ifndef SHOAL_NODE_CONN_H
#define SHOAL_NODE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/mqtt/msg.h"
#include "node/timer_wheel.h"
#include "proto/packet.h"

struct sockaddr;
struct bufferevent;
struct evbuffer;
struct ws_conn;
struct auth_exchange;
typedef struct worker worker;
typedef struct conn conn;
typedef struct session session;

enum conn_state {
    CS_NEW = 0,  /* waiting for CONNECT */
    CS_AUTH,     /* CONNECT taken, enhanced authentication in progress (AUTH only),
                  * or its password being checked (PAUSE_HASH, node/auth/hash.c) */
    CS_CLAIMING, /* CONNECT accepted, waiting for the session */
    CS_ACTIVE,
    CS_CLOSING, /* flushing its last bytes */
    CS_CLOSED,  /* waiting to be freed */
};

/* A connection's publish-rate state (node/mqtt/limits.c), made on first use. */
typedef struct conn_rate conn_rate;

/* What only some connections need, made on first use (conn_ext_get) and
 * freed with the connection, or once empty again (conn_ext_trim). */
typedef struct conn_ext {
    mqtt_bytes *aliases;     /* inbound topic aliases, owned copies, 1-based */
    mqtt_bytes *out_aliases; /* outbound: alias i+1 stands for out_aliases[i] */
    char *tls_cn;            /* owned; client cert subject CN with --tls-cert-as-username, else NULL */
    struct ws_conn *ws;      /* owned; accepted on a WebSocket listener (node/net/ws_conn.c), else NULL */
    conn_rate *rate;         /* --max-publish-rate / --max-publish-bytes-rate (node/mqtt/limits.c); NULL until needed */
    struct auth_exchange *ax; /* owned; an enhanced-auth exchange in progress (node/mqtt/handle_auth.c) */
    uint16_t out_alias_used;
    uint16_t out_alias_cap;
} conn_ext;

/* Ordered widest first with no padding, flags as bits, rarely used state
 * in `x`: an idle connection should cost little (docs/architecture.md,
 * "Memory per connection"). */
struct conn {
    uint64_t id;
    worker *w;
    /* Transport (node/net/conn_io.c, chosen by `transport`): a bufferevent for
     * TLS and WebSocket, else a bare event on fd (in this allocation,
     * before the struct) and buffers that exist only while holding bytes. */
    struct bufferevent *bev;
    struct evbuffer *in, *out;
    conn *prev, *next; /* the worker's list */
    tw_timer timer;    /* in the worker's wheel while a deadline is ahead (conn_timer_update) */
    session *s;        /* ref held while attached */
    /* Each only in its state, so they share the bytes. */
    union {
        uint64_t claim_epoch; /* CS_CLAIMING: the epoch of our claim */
        uint64_t closing_ms;  /* CS_CLOSING: when the close began */
    };
    uint64_t created_ms;
    uint64_t last_rx_ms;
    msg *will;       /* ref held */
    char *client_id; /* copy until the session is attached */
    char *username;  /* auth (node/auth/auth.c): NULL = anonymous; freed in conn_free */
    conn_ext *x;     /* NULL until a connection needs it */
    int fd;          /* plain TCP */
    uint32_t client_max_packet;
    uint32_t will_delay;
    uint32_t requested_expiry;
    uint32_t session_expiry;
    uint16_t keepalive;
    uint16_t client_receive_max;
    uint16_t client_alias_max;
    uint16_t alias_max;       /* ours, granted to the client */
    uint16_t inbound_pending; /* QoS 1 received and not yet acknowledged (QoS 2: session.n_qos2_in) */
    uint16_t requested_keepalive;
    uint16_t limits_logged; /* limit_kind bits already logged for this connection (node/mqtt/limits.c) */
    uint8_t ev_what;        /* EV_READ / EV_WRITE the socket's event is registered for */
    uint8_t state;
    uint8_t version;
    uint8_t paused; /* PAUSE_* bits: input is handled only when none is set */
    uint8_t close_rc;
    bool read_off : 1;      /* reading disabled */
    bool io_stopped : 1;    /* closed: neither read nor written again */
    bool io_in_read : 1;    /* handling input just read: output is written at its end (conn_io.c) */
    bool io_queued : 1;     /* in the worker's flush queue (conn_io.c) */
    bool io_want_write : 1; /* output the socket did not take: EV_WRITE registered */
    bool request_problem_info : 1;
    bool sent_disconnect : 1;
    bool clean_start : 1;
    bool assigned_id : 1;
    bool tls : 1;           /* TLS under the bufferevent (mqtts, wss; node/net/tls.c) */
    bool tls_up : 1;        /* handshake completed */
    bool enhanced_auth : 1; /* CONNECT named SCRAM-SHA-256: AUTH is allowed, re-authentication too */
    unsigned transport : 2; /* enum conn_transport: its row in conn_types (node/net/conn_io.h) */
    char peer[];            /* "host:port", in this allocation */
};

/* c->x, made if needed. */
conn_ext *conn_ext_get(conn *c);
/* Free c->x if it holds nothing any more. */
void conn_ext_trim(conn *c);

static inline struct ws_conn *conn_ws(const conn *c)
{
    return c->x ? c->x->ws : NULL;
}

/* The longest conn.peer, "[IPv6]:port" and its terminator. */
#define CONN_PEER_MAX 48

/* Why a connection's input is not being handled (conn.paused bits). */
enum {
    PAUSE_CLAIM = 1,  /* CONNECT accepted, the session is being fetched */
    PAUSE_RATE = 2,   /* over its publish rate: the socket is not read */
    PAUSE_OUTPUT = 4, /* output over --max-output-buffer: the socket is not read (node/conn.c) */
    PAUSE_DRAIN = 8,  /* the node is draining: the socket is not read again (node/drain.c) */
    PAUSE_STORE = 16, /* a SUBACK waits for the session's store (node/mqtt/session_sync.c): the socket is not read */
    PAUSE_HASH = 32,  /* CONNECT's password is being checked off the loop (node/auth/hash.c) */
    PAUSE_SHARE =
        64, /* a SUBACK waits for a shared group's view (node/mqtt/handle_subscribe.c): the socket is not read */
    PAUSE_REFUSE = 128, /* a 3.1.1 refusal waits for the publishes before it (node/mqtt/session.c): not read again */
};

/* How a connection's bytes travel: its row in conn_types (node/net/conn_io.h).
 * Two bits in struct conn, so at most four. */
enum conn_transport {
    CONN_T_SOCK = 0, /* plain TCP on a bare socket event (the MQTT listener) */
    CONN_T_BEV,      /* plain MQTT on a caller's bufferevent (tests/fuzz pairs) */
    CONN_T_TLS,      /* MQTT in TLS on a TLS bufferevent (the MQTTS listener) */
    CONN_T_WS,       /* MQTT in WebSocket frames on a plain or TLS bufferevent (ws, wss) */
};

/* Transports, or'ed in conn_new's flags. */
#define CONN_TLS 1u /* wrap the socket in TLS (server side) with b->tls */
#define CONN_WS 2u  /* MQTT over WebSocket (node/net/ws_conn.c) */
conn *conn_new(worker *w, int fd, const struct sockaddr *sa, int salen, unsigned flags);
/* The same over a bufferevent the caller made (the connection owns and
 * frees it); conn_new's second half, which tests/fuzz drives over a
 * bufferevent pair. With CONN_TLS, bev is a server-side TLS bufferevent. */
conn *conn_new_bev(worker *w, struct bufferevent *bev, const char *peer, unsigned flags);
/* Close after flushing what is queued; sends DISCONNECT rc first for v5
 * when rc >= 0x80 and the connection is established. Idempotent. */
void conn_close(conn *c, uint8_t rc, const char *why);
/* Refuse with rc and close: a CONNACK before the connection is accepted,
 * else as conn_close (DISCONNECT for v5). */
void conn_refuse(conn *c, uint8_t rc, const char *why);
void conn_free(conn *c);
void conn_write(conn *c, const void *data, size_t len);
/* The output buffer, ready for one MQTT packet of len bytes that the caller
 * adds next (over WebSocket its frame header is already in). Only while the
 * connection is CS_ACTIVE. */
struct evbuffer *conn_output(conn *c, size_t len);
bool conn_output_full(const conn *c);
/* Close the connection, or finish its close, if one of its deadlines has
 * passed: connect timeout, re-authentication, keep alive, close flush. */
void conn_check_timers(conn *c, uint64_t now);
/* Enter a state: the worker's count of active connections and the
 * connection's timer follow. Every state change goes through here. */
void conn_set_state(conn *c, uint8_t state);
/* A deadline may have come nearer (a state change, a re-authentication
 * begun, a pause lifted): the timer is moved to it. Cheap when it has not. */
void conn_timer_update(conn *c);
/* The worker's wheel found c's timer due (tw_fire_fn; arg: uint64_t *now). */
void conn_timer_fired(tw_timer *t, void *arg);
/* Clear pause reason `why` (PAUSE_*); once none is left, read again and
 * handle what waited. */
void conn_resume_reading(conn *c, uint8_t why);
void conn_drain_input(conn *c);
/* During a drain (PAUSE_DRAIN): handle the PUBACK/PUBREC/PUBCOMP the
 * client already sent for what it holds in flight, nothing else. */
void conn_read_acks(conn *c);

#endif
