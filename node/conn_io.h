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

typedef struct worker worker;

/* libevent writes at most 16 KiB per connection per loop turn by default,
 * which starves a subscriber fed by many publishers. */
#define CONN_IO_MAX_WRITE (256 * 1024)

/* Bytes of the event a plain socket connection keeps right before its
 * struct, in the same allocation. */
size_t conn_io_sock_extra(void);
/* Start reading the plain socket fd (c sits conn_io_sock_extra bytes into
 * its allocation, after room for the event). */
void conn_io_init_sock(conn *c, int fd);
/* Start a bufferevent connection (owned from now on). */
void conn_io_init_bev(conn *c, struct bufferevent *bev);
/* The output buffer, made if needed; the write is armed for what the
 * caller adds next. */
struct evbuffer *conn_io_out(conn *c);
size_t conn_io_out_len(const conn *c);
/* The input buffer; NULL when a plain socket has nothing buffered. */
struct evbuffer *conn_io_in(conn *c);
/* After the input was handled: a plain socket lets go of an empty buffer. */
void conn_io_in_done(conn *c);
/* Before a takeover: read what the kernel holds for this connection (plain
 * socket bytes, not TLS records), up to limit bytes buffered. */
void conn_io_read_now(conn *c, size_t limit);
void conn_io_read_enable(conn *c, bool on);
/* Call conn_on_written once the output is down to `low` bytes rather than
 * only when it is empty (0, the default). */
void conn_io_write_mark(conn *c, size_t low);
/* No more reading or writing: the connection is closed. */
void conn_io_stop(conn *c);
void conn_io_free(conn *c);

/* The worker's flush event: writes the output made during a loop turn at
 * its end, without a round through epoll. */
void conn_io_worker_init(worker *w);
void conn_io_worker_free(worker *w);

/* conn.c */
void conn_on_read(conn *c);
void conn_on_written(conn *c);
void conn_on_event(conn *c, short what);

#endif
