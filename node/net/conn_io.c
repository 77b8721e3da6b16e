/* SPDX-License-Identifier: Apache-2.0 */
/* A connection's bytes in and out: a bufferevent for TLS and WebSocket, a
 * bare event and on-demand buffers for plain TCP (see node/net/conn_io.h). */
#include "node/net/conn_io.h"
#include "node/conn.h"
#include "node/net/ws_conn.h"
#include "node/worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <sys/socket.h>

#include "common/alloc.h"
#include "common/log.h"

/* What bufferevent reads per turn by default, kept for the plain socket. */
#define READ_PER_TURN 16384

static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_on_read(arg);
}

static void bev_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_on_written(arg);
}

static void bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    conn_on_event(arg, what);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    conn_on_tls_event(arg, what);
}

void conn_io_init_bev(conn *c, struct bufferevent *bev)
{
    c->bev = bev;
    c->fd = -1;
    bufferevent_set_max_single_write(bev, CONN_IO_MAX_WRITE);
    /* Chosen once here, so no event on the way branches on TLS. */
    bufferevent_setcb(bev, bev_read_cb, bev_write_cb, c->tls ? tls_event_cb : bev_event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* --- a bufferevent (TLS, WebSocket, a caller's pair) --- */

static size_t bev_prefix(void)
{
    return 0;
}

static struct evbuffer *bev_out(conn *c)
{
    return bufferevent_get_output(c->bev);
}

static size_t bev_out_len(const conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static struct evbuffer *bev_in(conn *c)
{
    return bufferevent_get_input(c->bev);
}

static void bev_in_done(conn *c)
{
    (void)c; /* the bufferevent keeps its buffer */
}

static void bev_read_now(conn *c, size_t limit)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    while (evbuffer_get_length(in) < limit && evbuffer_read(in, fd, 65536) > 0) {
    }
}

static void bev_read_enable(conn *c, bool on)
{
    if (on) {
        bufferevent_enable(c->bev, EV_READ);
    } else {
        bufferevent_disable(c->bev, EV_READ);
    }
}

static void bev_write_mark(conn *c, size_t low)
{
    bufferevent_setwatermark(c->bev, EV_WRITE, low, 0);
}

static void bev_stop(conn *c)
{
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
}

static void bev_free(conn *c)
{
    bufferevent_free(c->bev);
}

/* --- plain socket --- */

static void sock_cb(evutil_socket_t fd, short what, void *arg);
static void sock_in_done(conn *c);

size_t conn_io_sock_extra(void)
{
    return (event_get_struct_event_size() + 7u) & ~(size_t)7u;
}

/* The socket's event sits right before the struct (conn.c), so finding it
 * costs no pointer. */
static struct event *sock_ev(conn *c)
{
    return (struct event *)((char *)c - conn_io_sock_extra());
}

/* Register the event for what is wanted now: reading unless disabled, writing
 * while output waits that the socket did not take. */
static void sock_update(conn *c)
{
    short want = 0;
    if (!c->io_stopped) {
        want = (short)((c->read_off ? 0 : EV_READ) | (c->io_want_write ? EV_WRITE : 0));
    }
    if (want == c->ev_what) {
        return;
    }
    if (c->ev_what) {
        event_del(sock_ev(c));
    }
    c->ev_what = (uint8_t)want;
    if (want) {
        event_assign(sock_ev(c), c->w->base, c->fd, (short)(want | EV_PERSIST), sock_cb, c);
        event_add(sock_ev(c), NULL);
    }
}

void conn_io_init_sock(conn *c, int fd)
{
    c->fd = fd; /* its event was placed by conn.c */
    sock_update(c);
}

static bool would_block(void)
{
    int e = EVUTIL_SOCKET_ERROR();
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* Writes what the socket takes; asks for EV_WRITE only for the rest. */
static void sock_write(conn *c)
{
    int n = evbuffer_write_atmost(c->out, c->fd, CONN_IO_MAX_WRITE);
    if (n < 0 && would_block()) {
        c->io_want_write = true;
        sock_update(c);
        return;
    }
    if (n <= 0) {
        /* As a bufferevent reports it: 0 is the peer gone. */
        c->io_stopped = true;
        sock_update(c);
        conn_on_event(c, (short)(BEV_EVENT_WRITING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR)));
        return;
    }
    if (evbuffer_get_length(c->out) == 0) {
        evbuffer_free(c->out);
        c->out = NULL;
        c->io_want_write = false;
        sock_update(c);
        conn_on_written(c);
        return;
    }
    c->io_want_write = true;
    sock_update(c);
    if (c->paused & PAUSE_OUTPUT) {
        conn_on_written(c); /* it resumes reading once below its mark */
    }
}

/* Reads into the stack rather than with evbuffer_read, which asks the
 * socket for its readable size (one more system call per read). Replies
 * made while handling the input (CONNACK, PUBACK, ...) are written right
 * after it. */
static void sock_read(conn *c)
{
    uint8_t buf[READ_PER_TURN];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && would_block()) {
        return;
    }
    if (n <= 0) {
        c->read_off = true;
        sock_update(c);
        conn_on_event(c, (short)(BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR)));
        return;
    }
    if (!c->in) {
        c->in = evbuffer_new();
    }
    evbuffer_add(c->in, buf, (size_t)n);
    c->io_in_read = true;
    conn_on_read(c);
    c->io_in_read = false;
    sock_in_done(c);
    if (c->out && !c->io_stopped && !c->io_want_write) {
        sock_write(c);
    }
}

static void sock_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    conn *c = arg;
    if ((what & EV_WRITE) && c->out && !c->io_stopped) {
        sock_write(c);
    }
    if ((what & EV_READ) && !c->read_off && !c->io_stopped) {
        sock_read(c);
    }
}

/* Output is written at the end of the loop turn that made it, not after a
 * round through epoll: registering for EV_WRITE and back costs four
 * epoll_ctl calls per reply, and the write a loop turn later. Most writes
 * complete; EV_WRITE is asked for only when the socket is full. */
static void flush_later(conn *c)
{
    worker *w = c->w;
    if (c->io_queued || c->io_want_write) {
        return;
    }
    if (w->n_flush == w->cap_flush) {
        uint32_t cap = w->cap_flush ? w->cap_flush * 2 : 64;
        w->flushq = sh_realloc(w->flushq, w->cap_flush * sizeof(conn *), cap * sizeof(conn *));
        w->cap_flush = cap;
    }
    w->flushq[w->n_flush++] = c;
    c->io_queued = true;
    if (w->n_flush == 1) {
        event_active(w->flush, 0, 0);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    /* Writing may make more output (a session pumping its queue), which
     * may queue more connections: the loop takes them too. */
    for (uint32_t i = 0; i < w->n_flush; i++) {
        conn *c = w->flushq[i];
        c->io_queued = false;
        if (c->out && !c->io_stopped && !c->io_want_write) {
            sock_write(c);
        }
    }
    w->n_flush = 0;
}

static void flush_forget(conn *c)
{
    worker *w = c->w;
    for (uint32_t i = 0; i < w->n_flush; i++) {
        if (w->flushq[i] == c) {
            w->flushq[i] = w->flushq[--w->n_flush];
            break;
        }
    }
    c->io_queued = false;
}

void conn_io_worker_init(worker *w)
{
    w->flush = event_new(w->base, -1, 0, flush_cb, w);
}

void conn_io_worker_free(worker *w)
{
    event_free(w->flush);
    sh_free(w->flushq, w->cap_flush * sizeof(conn *));
}

/* --- the plain socket's operations --- */

static struct evbuffer *sock_out(conn *c)
{
    if (!c->out) {
        c->out = evbuffer_new();
        if (!c->io_in_read) {
            flush_later(c);
        }
    }
    return c->out;
}

static size_t sock_out_len(const conn *c)
{
    return c->out ? evbuffer_get_length(c->out) : 0;
}

static struct evbuffer *sock_in(conn *c)
{
    return c->in;
}

static void sock_in_done(conn *c)
{
    if (c->in && evbuffer_get_length(c->in) == 0) {
        evbuffer_free(c->in);
        c->in = NULL;
    }
}

static void sock_read_now(conn *c, size_t limit)
{
    if (c->io_stopped) {
        return;
    }
    if (!c->in) {
        c->in = evbuffer_new();
    }
    while (evbuffer_get_length(c->in) < limit && evbuffer_read(c->in, c->fd, 65536) > 0) {
    }
}

static void sock_read_enable(conn *c, bool on)
{
    c->read_off = !on;
    sock_update(c);
}

static void sock_write_mark(conn *c, size_t low)
{
    /* A plain socket needs no mark: sock_write reports partial writes
     * while the connection is paused for output. */
    (void)c;
    (void)low;
}

static void sock_stop(conn *c)
{
    c->io_stopped = true;
    sock_update(c);
}

static void sock_free(conn *c)
{
    c->io_stopped = true;
    sock_update(c);
    if (c->io_queued) {
        flush_forget(c);
    }
    if (c->in) {
        evbuffer_free(c->in);
    }
    if (c->out) {
        evbuffer_free(c->out); /* releases by-reference payloads */
    }
    evutil_closesocket(c->fd);
}

/* --- TLS --- */

static void tls_read_now(conn *c, size_t limit)
{
    (void)c;
    (void)limit; /* the socket carries TLS records, not MQTT */
}

/* A TLS client that never finished its handshake. */
static const char *tls_connect_timeout(conn *c)
{
    if (c->tls_up) {
        return NULL;
    }
    atomic_fetch_add_explicit(&c->w->tls.handshake_failures, 1, memory_order_relaxed);
    return "no TLS handshake within connect timeout";
}

/* --- the MQTT stream as is --- */

static void raw_in_done(conn *c)
{
    (void)c;
}

static bool raw_frame(conn *c, struct evbuffer *out, size_t len)
{
    (void)c;
    (void)out;
    (void)len;
    return true;
}

static void raw_closing(conn *c, uint8_t rc)
{
    (void)c;
    (void)rc;
}

static const char *raw_connect_timeout(conn *c)
{
    (void)c;
    return NULL;
}

/* --- WebSocket (node/net/ws_conn.c), over a plain or a TLS bufferevent --- */

static void ws_read_now(conn *c, size_t limit)
{
    if (!c->tls) {
        bev_read_now(c, limit); /* WebSocket frames: ws_conn_read unwraps them */
    }
}

static const char *ws_connect_timeout(conn *c)
{
    if (c->tls && !c->tls_up) {
        return tls_connect_timeout(c);
    }
    return ws_conn_open(c) ? NULL : "no WebSocket handshake within connect timeout";
}

static bool ws_frame(conn *c, struct evbuffer *out, size_t len)
{
    return ws_conn_frame(c, out, len);
}

const conn_type conn_types[4] = {
    [CONN_T_SOCK] =
        {
            .name = "tcp",
            .prefix = conn_io_sock_extra,
            .out = sock_out,
            .out_len = sock_out_len,
            .in = sock_in,
            .in_done = sock_in_done,
            .read_now = sock_read_now,
            .read_enable = sock_read_enable,
            .write_mark = sock_write_mark,
            .stop = sock_stop,
            .free = sock_free,
            .mqtt_in = sock_in,
            .mqtt_in_done = raw_in_done,
            .frame = raw_frame,
            .closing = raw_closing,
            .connect_timeout = raw_connect_timeout,
        },
    [CONN_T_BEV] =
        {
            .name = "bufferevent",
            .prefix = bev_prefix,
            .out = bev_out,
            .out_len = bev_out_len,
            .in = bev_in,
            .in_done = bev_in_done,
            .read_now = bev_read_now,
            .read_enable = bev_read_enable,
            .write_mark = bev_write_mark,
            .stop = bev_stop,
            .free = bev_free,
            .mqtt_in = bev_in,
            .mqtt_in_done = raw_in_done,
            .frame = raw_frame,
            .closing = raw_closing,
            .connect_timeout = raw_connect_timeout,
        },
    [CONN_T_TLS] =
        {
            .name = "tls",
            .prefix = bev_prefix,
            .out = bev_out,
            .out_len = bev_out_len,
            .in = bev_in,
            .in_done = bev_in_done,
            .read_now = tls_read_now,
            .read_enable = bev_read_enable,
            .write_mark = bev_write_mark,
            .stop = bev_stop,
            .free = bev_free,
            .mqtt_in = bev_in,
            .mqtt_in_done = raw_in_done,
            .frame = raw_frame,
            .closing = raw_closing,
            .connect_timeout = tls_connect_timeout,
        },
    [CONN_T_WS] =
        {
            .name = "ws",
            .prefix = bev_prefix,
            .out = bev_out,
            .out_len = bev_out_len,
            .in = bev_in,
            .in_done = bev_in_done,
            .read_now = ws_read_now,
            .read_enable = bev_read_enable,
            .write_mark = bev_write_mark,
            .stop = bev_stop,
            .free = bev_free,
            .mqtt_in = ws_conn_read,
            .mqtt_in_done = ws_conn_read_done,
            .frame = ws_frame,
            .closing = ws_conn_send_close,
            .connect_timeout = ws_connect_timeout,
        },
};
