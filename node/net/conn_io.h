/* SPDX-License-Identifier: Apache-2.0 */
/* A connection's bytes in and out, whatever carries them.
 *
 * TLS, WebSocket and a caller's bufferevent (tests/fuzz) keep a libevent
 * bufferevent (c->bev). A plain TCP socket has no bufferevent: one event
 * (inside the conn allocation) that is registered for reading, and for
 * writing only while output waits, plus input and output buffers that
 * exist only while they hold bytes. An idle plain connection thus holds no
 * buffer at all: see docs/architecture.md, "Memory per connection".
 *
 * Either way the connection sees the same callbacks (conn.c): conn_on_read
 * after bytes arrived, conn_on_written once the output has drained (to the
 * conn_io_write_mark, and on a plain socket after each partial write while
 * reading is paused for output: conn.c checks the length), and
 * conn_on_event with BEV_EVENT_* flags on EOF or an error. */
#ifndef SHOAL_NODE_CONN_IO_H
#define SHOAL_NODE_CONN_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "node/conn.h"

struct bufferevent;
struct evbuffer;

typedef struct worker worker;

/* libevent writes at most 16 KiB per connection per loop turn by default,
 * which starves a subscriber fed by many publishers. */
#define CONN_IO_MAX_WRITE (256 * 1024)

/* A transport: the operations that differ between plain TCP, TLS and
 * WebSocket, one row per enum conn_transport (Redis's ConnectionType is
 * the model). conn.c calls them through conn_type_of(c) rather than
 * branching on the transport; a connection pays two bits to name its row.
 *
 * Two layers: the bytes (a bare socket or a bufferevent) and the MQTT
 * stream in them (as is, or inside WebSocket frames). TLS lives inside its
 * bufferevent; a TLS bufferevent reports handshake events to
 * conn_on_tls_event (set up by conn_io_init_bev), so no row branches on it
 * but for the two places where TLS state decides (read_now, and the
 * handshake check in connect_timeout). */
typedef struct conn_type {
    const char *name;
    /* Bytes of the allocation before the struct (the socket's event). */
    size_t (*prefix)(void);
    /* --- bytes --- */
    /* The output buffer, made if needed; the write is armed for what the
     * caller adds next. */
    struct evbuffer *(*out)(conn *c);
    size_t (*out_len)(const conn *c);
    /* The input buffer; NULL when a plain socket has nothing buffered. */
    struct evbuffer *(*in)(conn *c);
    /* After the input was handled: a plain socket lets go of an empty buffer. */
    void (*in_done)(conn *c);
    /* Before a takeover: read what the kernel holds for this connection
     * (socket bytes, not TLS records), up to limit bytes buffered. */
    void (*read_now)(conn *c, size_t limit);
    void (*read_enable)(conn *c, bool on);
    /* Call conn_on_written once the output is down to `low` bytes rather
     * than only when it is empty (0, the default). */
    void (*write_mark)(conn *c, size_t low);
    /* No more reading or writing: the connection is closed. */
    void (*stop)(conn *c);
    void (*free)(conn *c);
    /* --- the MQTT stream in the bytes --- */
    /* The MQTT bytes that arrived; NULL when there are none yet (before
     * a WebSocket upgrade). */
    struct evbuffer *(*mqtt_in)(conn *c);
    /* After conn.c took what it could from mqtt_in. */
    void (*mqtt_in_done)(conn *c);
    /* Before one MQTT packet of len bytes goes into out: its framing.
     * False, writing nothing, when no packet may be sent. */
    bool (*frame)(conn *c, struct evbuffer *out, size_t len);
    /* conn_close after the last MQTT bytes: the transport's own goodbye. */
    void (*closing)(conn *c, uint8_t rc);
    /* The connect timeout fired before CONNECT: why, when a transport
     * handshake is what did not finish (counted here); NULL otherwise. */
    const char *(*connect_timeout)(conn *c);
} conn_type;

extern const conn_type conn_types[4];

static inline const conn_type *conn_type_of(const conn *c)
{
    return &conn_types[c->transport];
}

/* Bytes of the event a plain socket connection keeps right before its
 * struct, in the same allocation. */
size_t conn_io_sock_extra(void);
/* Start reading the plain socket fd (c sits conn_io_sock_extra bytes into
 * its allocation, after room for the event). */
void conn_io_init_sock(conn *c, int fd);
/* Start a bufferevent connection (owned from now on); c->transport and
 * c->tls are set. */
void conn_io_init_bev(conn *c, struct bufferevent *bev);

/* The operations by name, for the callers outside conn.c. */
static inline struct evbuffer *conn_io_out(conn *c)
{
    return conn_type_of(c)->out(c);
}
static inline size_t conn_io_out_len(const conn *c)
{
    return conn_type_of(c)->out_len(c);
}
static inline struct evbuffer *conn_io_in(conn *c)
{
    return conn_type_of(c)->in(c);
}
static inline void conn_io_in_done(conn *c)
{
    conn_type_of(c)->in_done(c);
}
static inline void conn_io_read_now(conn *c, size_t limit)
{
    conn_type_of(c)->read_now(c, limit);
}
static inline void conn_io_read_enable(conn *c, bool on)
{
    conn_type_of(c)->read_enable(c, on);
}
static inline void conn_io_write_mark(conn *c, size_t low)
{
    conn_type_of(c)->write_mark(c, low);
}
static inline void conn_io_stop(conn *c)
{
    conn_type_of(c)->stop(c);
}
static inline void conn_io_free(conn *c)
{
    conn_type_of(c)->free(c);
}

/* The worker's flush event: writes the output made during a loop turn at
 * its end, without a round through epoll. */
void conn_io_worker_init(worker *w);
void conn_io_worker_free(worker *w);

/* conn.c */
void conn_on_read(conn *c);
void conn_on_written(conn *c);
void conn_on_event(conn *c, short what);
/* A TLS bufferevent's events: the handshake, OpenSSL's errors, then
 * conn_on_event. */
void conn_on_tls_event(conn *c, short what);

#endif
