/* SPDX-License-Identifier: Apache-2.0 */
/* A client connection: framing, the connection state machine, and the one
 * place where a failure reason code becomes DISCONNECT or a close. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/net/conn_io.h"
#include "node/net/tls.h"
#include "node/net/ws_conn.h"
#include "node/worker.h"
#include "proto/frame.h"
#include "proto/proxy.h"

/* Slow readers: a closing connection that cannot flush within this time is
 * dropped anyway. */
#define CLOSE_FLUSH_MS 5000

/* "host:port" or "[v6]:port", the same text a PROXY header's address gets
 * (one formatter, by hand: inet_ntop and snprintf were a fifth of the work
 * of accepting a connection). */
static void format_peer(char *dst, size_t len, const struct sockaddr *sa)
{
    mqtt_proxy_addr a = {0};
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a.family = MQTT_PROXY_INET;
        a.port = ntohs(s4->sin_port);
        memcpy(a.addr, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        a.family = MQTT_PROXY_INET6;
        a.port = ntohs(s6->sin6_port);
        memcpy(a.addr, &s6->sin6_addr, 16);
    }
    if (a.family == 0 || mqtt_proxy_format_peer(&a, dst, len) == 0) {
        snprintf(dst, len, "unix");
    }
}

/* A TLS bufferevent in accepting state; the handshake runs before the first
 * read_cb, and event_cb sees BEV_EVENT_CONNECTED when it completes. */
static struct bufferevent *tls_bev_new(worker *w, int fd)
{
    SSL *ssl = tls_new_ssl(w->b->tls.ctx);
    if (!ssl) {
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        /* Not freeing ssl: whether libevent already did depends on the
         * version, and a leak on this out-of-memory path beats a double free. */
        return NULL;
    }
    /* A client that drops the TCP connection without close_notify is an
     * EOF like any other, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static conn *conn_start(worker *w, conn *c, unsigned flags);

/* One allocation: for a plain TCP connection its event (8-byte aligned),
 * then the struct and the peer's name. */
static size_t conn_size(const conn *c)
{
    return offsetof(conn, peer) + strlen(c->peer) + 1 + conn_type_of(c)->prefix();
}

static conn *conn_alloc(worker *w, const char *peer, unsigned transport, unsigned flags)
{
    size_t ev = conn_types[transport].prefix();
    char *p = sh_calloc(1, ev + offsetof(conn, peer) + strlen(peer) + 1);
    conn *c = (conn *)(p + ev);
    c->w = w;
    c->transport = transport & 3u;
    c->tls = (flags & CONN_TLS) != 0;
    memcpy(c->peer, peer, strlen(peer) + 1);
    return c;
}

/* The row of a bufferevent connection made with these flags. */
static unsigned bev_transport(unsigned flags)
{
    if (flags & CONN_WS) {
        return CONN_T_WS;
    }
    return (flags & CONN_TLS) ? CONN_T_TLS : CONN_T_BEV;
}

conn_ext *conn_ext_get(conn *c)
{
    if (!c->x) {
        c->x = sh_calloc(1, sizeof(*c->x));
    }
    return c->x;
}

void conn_ext_trim(conn *c)
{
    conn_ext *x = c->x;
    if (x && !x->aliases && !x->out_aliases && !x->tls_cn && !x->ws && !x->rate && !x->ax) {
        sh_free(x, sizeof(*x));
        c->x = NULL;
    }
}

conn *conn_new(worker *w, int fd, const struct sockaddr *sa, int salen, unsigned flags)
{
    (void)salen;
    /* No TCP_NODELAY here: Linux copies it from the listening socket to
     * every accepted one (node/worker.c, listen_on), one system call less
     * per connect. */
    char peer[CONN_PEER_MAX];
    format_peer(peer, sizeof(peer), sa);
    if (!(flags & (CONN_TLS | CONN_WS))) {
        conn *c = conn_alloc(w, peer, CONN_T_SOCK, flags);
        conn_io_init_sock(c, fd);
        return conn_start(w, c, flags);
    }
    struct bufferevent *bev = (flags & CONN_TLS) ? tls_bev_new(w, fd)
                                                 : bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return NULL;
    }
    return conn_new_bev(w, bev, peer, flags);
}

conn *conn_new_bev(worker *w, struct bufferevent *bev, const char *peer, unsigned flags)
{
    char name[CONN_PEER_MAX];
    snprintf(name, sizeof(name), "%s", peer);
    conn *c = conn_alloc(w, name, bev_transport(flags), flags);
    conn_io_init_bev(c, bev);
    return conn_start(w, c, flags);
}

static conn *conn_start(worker *w, conn *c, unsigned flags)
{
    broker *b = w->b;
    c->id = atomic_fetch_add(&b->next_conn_id, 1) + 1;
    c->created_ms = now_ms();
    c->last_rx_ms = c->created_ms;
    c->client_receive_max = 65535;
    if (flags & CONN_WS) {
        conn_ext_get(c)->ws = ws_conn_new();
    }
    c->next = w->conns;
    if (w->conns) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->nconns++;
    worker_index_conn(w, c);
    conn_timer_update(c); /* CS_NEW: the connect timeout */
    atomic_fetch_add(&b->stats.connections_total, 1);
    atomic_fetch_add(&b->stats.connections_current, 1);
    sh_log(SH_DEBUG, "event=accept conn=%llu peer=%s worker=%d tls=%d ws=%d", (unsigned long long)c->id, c->peer, w->id,
           c->tls, c->transport == CONN_T_WS);
    return c;
}

void conn_write(conn *c, const void *data, size_t len)
{
    if (c->state >= CS_CLOSED) {
        return;
    }
    struct evbuffer *out = conn_io_out(c);
    if (!conn_type_of(c)->frame(c, out, len)) {
        return;
    }
    evbuffer_add(out, data, len);
    atomic_fetch_add_explicit(&c->w->bytes_out, len, memory_order_relaxed);
}

struct evbuffer *conn_output(conn *c, size_t len)
{
    struct evbuffer *out = conn_io_out(c);
    conn_type_of(c)->frame(c, out, len);
    return out;
}

bool conn_output_full(const conn *c)
{
    return conn_io_out_len(c) >= c->w->b->cfg->max_output_buffer;
}

static void unlink_conn(conn *c)
{
    worker *w = c->w;
    worker_unindex_conn(w, c);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    w->nconns--;
}

static void finish_close(conn *c)
{
    if (c->state == CS_CLOSED) {
        return;
    }
    conn_set_state(c, CS_CLOSED);
    conn_io_stop(c);
    unlink_conn(c);
    c->next = c->w->dead;
    c->w->dead = c;
    event_active(c->w->reap, 0, 0);
}

static void log_close(conn *c, uint8_t rc, const char *why)
{
    const char *id = c->s ? c->s->client_id : (c->client_id ? c->client_id : "-");
    atomic_fetch_add_explicit(&c->w->metrics.disconnects[rc], 1, memory_order_relaxed); /* metrics */
    sh_level lvl = rc >= 0x80 && rc != MQTT_RC_SERVER_SHUTTING_DOWN && rc != MQTT_RC_SESSION_TAKEN_OVER ? SH_INFO
                                                                                                        : SH_DEBUG;
    if (c->state >= CS_ACTIVE || c->state == CS_CLAIMING) {
        lvl = SH_INFO;
    }
    sh_log(lvl, "event=disconnect conn=%llu client=%s peer=%s rc=0x%02x(%s) reason=\"%s\"", (unsigned long long)c->id,
           id, c->peer, rc, mqtt_rc_name(rc), why);
}

/* Close: stop reading, say why (v5), publish the will when due, detach the
 * session, and let the reap event free the connection once the output has
 * drained. Idempotent; safe inside this connection's own callbacks. */
void conn_close(conn *c, uint8_t rc, const char *why)
{
    if (c->state >= CS_CLOSING) {
        return;
    }
    log_close(c, rc, why);
    bool established = c->state == CS_ACTIVE;
    c->close_rc = rc;
    if (established && c->version == MQTT_V5 && rc >= 0x80 && !c->sent_disconnect) {
        send_disconnect(c, rc, why);
    }
    conn_type_of(c)->closing(c, rc); /* after the last MQTT bytes (WebSocket: its close frame) */
    c->closing_ms = now_ms();
    conn_set_state(c, CS_CLOSING);
    conn_io_read_enable(c, false);
    if (c->s) {
        /* A will goes out on any close but a normal DISCONNECT (§3.1.2.5);
         * handle_disconnect drops it before we get here. */
        session *s = c->s;
        msg *will = c->will;
        c->will = NULL;
        c->s = NULL;
        session_detach(c->w, s, will, c->will_delay);
        session_unref(c->w->b, s);
    }
    if (c->will) {
        msg_unref(c->will);
        c->will = NULL;
    }
    if (conn_io_out_len(c) == 0) {
        finish_close(c);
    }
}

void conn_free(conn *c)
{
    sh_assert(c->state == CS_CLOSED);
    tw_cancel(&c->w->timers, &c->timer);
    atomic_fetch_sub(&c->w->b->stats.connections_current, 1);
    conn_io_free(c);
    limits_conn_free(c);
    handle_auth_end(c); /* both may leave c->x empty and free it */
    conn_ext *x = c->x;
    if (x && x->aliases) {
        for (uint32_t i = 0; i <= c->alias_max; i++) {
            sh_free((void *)x->aliases[i].p, x->aliases[i].len);
        }
        sh_free(x->aliases, (c->alias_max + 1u) * sizeof(mqtt_bytes));
    }
    if (x && x->out_aliases) {
        for (uint16_t i = 0; i < x->out_alias_used; i++) {
            sh_free((void *)x->out_aliases[i].p, x->out_aliases[i].len);
        }
        sh_free(x->out_aliases, x->out_alias_cap * sizeof(mqtt_bytes));
    }
    if (c->client_id) {
        sh_free(c->client_id, strlen(c->client_id) + 1);
    }
    if (c->username) { /* auth */
        sh_free(c->username, strlen(c->username) + 1);
    }
    msg_unref(c->will);
    if (x) {
        if (x->tls_cn) {
            sh_free(x->tls_cn, strlen(x->tls_cn) + 1);
        }
        ws_conn_free(x->ws);
        sh_free(x, sizeof(*x));
    }
    size_t size = conn_size(c);
    sh_free((char *)c - conn_type_of(c)->prefix(), size);
}

static void log_bad_input(conn *c, const uint8_t *p, size_t n, uint8_t rc)
{
    char sample[33];
    sh_log_sample(sample, sizeof(sample), p, n < 32 ? n : 32);
    sh_log(SH_INFO, "event=bad_input conn=%llu client=%s peer=%s rc=0x%02x(%s) sample=\"%s\"",
           (unsigned long long)c->id, c->s ? c->s->client_id : "-", c->peer, rc, mqtt_rc_name(rc), sample);
}

/* Refuse a CONNECT-phase failure: CONNACK with the code, then close. */
static void refuse_connect(conn *c, uint8_t rc, const char *why)
{
    send_connack_refusal(c, rc);
    c->sent_disconnect = true;
    conn_close(c, rc, why);
}

void conn_refuse(conn *c, uint8_t rc, const char *why)
{
    if (c->state == CS_NEW || c->state == CS_AUTH) {
        refuse_connect(c, rc, why);
    } else {
        conn_close(c, rc, why);
    }
}

/* Reading resumes once the client has taken the output down to half of
 * --max-output-buffer: a mark below the limit, so one reply more does not
 * pause it again at once. */
static size_t output_resume_mark(const conn *c)
{
    return c->w->b->cfg->max_output_buffer / 2;
}

/* Replies (PUBACK, PINGRESP, SUBACK...) would otherwise pile up without
 * limit for a client that sends but never reads: stop reading it, so its
 * own TCP window pushes back, until it reads its replies. */
static void pause_for_output(conn *c)
{
    c->paused |= PAUSE_OUTPUT;
    conn_io_read_enable(c, false);
    conn_io_write_mark(c, output_resume_mark(c));
    limits_refused(c, LIMIT_OUTPUT_BUFFER, "action=pause-reading");
}

/* Returns false when the connection is closing and reading must stop. */
static bool process_frame(conn *c, const mqtt_frame *f, const uint8_t *raw, size_t rawlen)
{
    mqtt_rc rc = dispatch_frame(c, f);
    if (rc < 0x80) {
        return c->state < CS_CLOSING;
    }
    if (c->state == CS_CLOSING || c->state == CS_CLOSED) {
        return false;
    }
    log_bad_input(c, raw, rawlen, rc);
    if (c->state == CS_NEW) {
        if (f->type == MQTT_CONNECT) {
            refuse_connect(c, rc, "bad CONNECT");
        } else {
            conn_close(c, rc, "first packet is not CONNECT");
        }
        return false;
    }
    if (c->state == CS_AUTH) {
        refuse_connect(c, rc, "bad packet during authentication");
        return false;
    }
    conn_close(c, rc, mqtt_rc_name(rc));
    return false;
}

/* The whole packet (total bytes) is in `in`: handle it and take it off.
 * False when the connection should stop reading. */
static bool take_frame(conn *c, struct evbuffer *in, mqtt_frame *f, size_t total)
{
    const uint8_t *raw = evbuffer_pullup(in, (ssize_t)total);
    mqtt_frame_bind(f, raw);
    atomic_fetch_add_explicit(&c->w->bytes_in, total, memory_order_relaxed);
    bool go_on = process_frame(c, f, raw, total);
    evbuffer_drain(in, total);
    return go_on;
}

static void read_cb(conn *c)
{
    const conn_type *t = conn_type_of(c);
    uint32_t max = c->w->b->cfg->max_packet_size;
    c->last_rx_ms = now_ms();
    struct evbuffer *in = t->mqtt_in(c); /* WebSocket: the MQTT bytes inside the frames; NULL before the upgrade */
    while (in && c->state < CS_CLOSING && !c->paused) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) {
            break;
        }
        /* The fixed header is at most 5 bytes: parse it once from a copy,
         * before making the packet contiguous, so an oversize packet is
         * refused unread and an incomplete one is left where it is. */
        uint8_t head[5];
        size_t hn = avail < 5 ? avail : 5;
        evbuffer_copyout(in, head, hn);
        mqtt_frame f;
        int n = mqtt_frame_parse(head, hn, max, &f);
        if (c->state == CS_NEW && head[0] != (MQTT_CONNECT << 4)) {
            /* §3.1.0-1: refuse at the first byte rather than wait for a
             * body that an HTTP request or a port scan will never send. */
            n = MQTT_BAD;
            f.rc = MQTT_RC_PROTOCOL_ERROR;
        }
        if (n == MQTT_BAD) {
            log_bad_input(c, head, hn, f.rc);
            if (f.rc == MQTT_RC_PACKET_TOO_LARGE) {
                /* Counted here; the close below is its one log line. */
                atomic_fetch_add_explicit(&c->w->metrics.limit_refusals[LIMIT_PACKET_SIZE], 1, memory_order_relaxed);
            }
            if (c->state == CS_NEW) {
                conn_close(c, f.rc, "bad packet before CONNECT");
            } else {
                conn_close(c, f.rc, f.rc == MQTT_RC_PACKET_TOO_LARGE ? "packet too large" : "malformed packet");
            }
            break;
        }
        size_t total = mqtt_frame_size(&f);
        if (total == 0 || total > avail) {
            break; /* header or body incomplete */
        }
        if (f.type == MQTT_PUBLISH && c->state == CS_ACTIVE && !limits_publish_admit(c, total)) {
            break; /* over its rate: the packet waits in the buffer, reading is paused */
        }
        if (!take_frame(c, in, &f, total)) {
            break;
        }
        if (conn_output_full(c)) {
            pause_for_output(c);
            break;
        }
    }
    t->mqtt_in_done(c);
    worker_flush(c->w);
}

/* Before a takeover closes this connection, read and handle what the client
 * already sent (acks, a DISCONNECT), so they are not lost with the socket. */
void conn_drain_input(conn *c)
{
    if (c->state != CS_ACTIVE) {
        return;
    }
    /* Over TLS only what was already decrypted. */
    conn_io_read_now(c, c->w->b->cfg->max_packet_size);
    struct evbuffer *in = conn_io_in(c);
    size_t n = in ? evbuffer_get_length(in) : 0;
    sh_log(SH_DEBUG, "event=drain_before_takeover conn=%llu bytes=%zu", (unsigned long long)c->id, n);
    if (n) {
        read_cb(c);
    }
    conn_io_in_done(c);
}

static bool is_ack(uint8_t type)
{
    return type == MQTT_PUBACK || type == MQTT_PUBREC || type == MQTT_PUBCOMP;
}

/* While a drain no longer reads a connection (PAUSE_DRAIN), the client's
 * acknowledgements of what it was sent still count: without them every
 * QoS 1/2 message delivered during the drain stayed in flight, so a shared
 * member's went to another member at its close, a session's was sent again
 * after it moved, and a receive maximum held back what was queued. Reads
 * what the socket has and handles the acks at its front; the first packet
 * of another kind (a PUBLISH the drain is not taking) stops it there. Over
 * TLS the socket carries records, so nothing is read (the drain as before). */
void conn_read_acks(conn *c)
{
    /* Another pause (a SUBACK waiting, output full) keeps its packets unread. */
    if (c->state != CS_ACTIVE || !c->s || c->s->n_inf == 0 || (c->paused & ~(PAUSE_DRAIN | PAUSE_RATE))) {
        return;
    }
    const conn_type *t = conn_type_of(c);
    uint32_t max = c->w->b->cfg->max_packet_size;
    conn_io_read_now(c, max);
    struct evbuffer *in = t->mqtt_in(c);
    while (in && c->state == CS_ACTIVE) {
        size_t avail = evbuffer_get_length(in);
        uint8_t head[5];
        size_t hn = avail < 5 ? avail : 5;
        if (hn == 0) {
            break;
        }
        evbuffer_copyout(in, head, hn);
        mqtt_frame f;
        if (mqtt_frame_parse(head, hn, max, &f) == MQTT_BAD || !is_ack(head[0] >> 4)) {
            break; /* left for the close, unread */
        }
        size_t total = mqtt_frame_size(&f);
        if (total == 0 || total > avail) {
            break;
        }
        if (!take_frame(c, in, &f, total)) {
            break;
        }
    }
    t->mqtt_in_done(c);
    conn_io_in_done(c);
}

void conn_resume_reading(conn *c, uint8_t why)
{
    if (!(c->paused & why) || c->state >= CS_CLOSING) {
        return;
    }
    c->paused &= (uint8_t)~why;
    conn_timer_update(c); /* keep alive runs again */
    /* The rate, output, drain, store, share and refuse pauses stop the socket
     * (a claim lets it fill): it is read again once none holds (a drain and a
     * refusal never end). */
    uint8_t stops_socket = PAUSE_RATE | PAUSE_OUTPUT | PAUSE_DRAIN | PAUSE_STORE | PAUSE_SHARE | PAUSE_REFUSE;
    if ((why & stops_socket) && !(c->paused & stops_socket)) {
        conn_io_read_enable(c, true);
    }
    if (!c->paused) {
        read_cb(c);
        conn_io_in_done(c);
    }
}

void conn_on_read(conn *c)
{
    read_cb(c);
}

void conn_on_written(conn *c)
{
    if (c->state == CS_CLOSING) {
        /* Under an output mark this may come before the last bytes left. */
        if (conn_io_out_len(c) == 0) {
            finish_close(c);
        }
        return;
    }
    if ((c->paused & PAUSE_OUTPUT) && conn_io_out_len(c) <= output_resume_mark(c)) {
        conn_io_write_mark(c, 0);
        conn_resume_reading(c, PAUSE_OUTPUT);
        if (c->state != CS_ACTIVE) {
            return;
        }
    }
    /* The client is reading again: send what waited for buffer space. */
    if (c->s && c->state == CS_ACTIVE) {
        session_pump(c->w, c->s);
        worker_flush(c->w);
    }
}

/* The TLS handshake finished: note the peer's certificate. */
static void tls_connected(conn *c)
{
    char cn[256], desc[128];
    c->tls_up = true;
    atomic_fetch_add_explicit(&c->w->tls.handshakes, 1, memory_order_relaxed); /* metrics */
    tls_peer_cn(c->bev, cn, sizeof(cn));
    tls_describe(c->bev, desc, sizeof(desc));
    if (cn[0] && c->w->b->cfg->tls.cert_as_username) {
        size_t n = strlen(cn) + 1;
        char *copy = sh_malloc(n);
        memcpy(copy, cn, n);
        conn_ext_get(c)->tls_cn = copy;
    }
    const char *user = c->x && c->x->tls_cn ? c->x->tls_cn : "-";
    sh_log(SH_INFO, "event=tls_handshake conn=%llu peer=%s tls=\"%s\" cn=%s username=%s", (unsigned long long)c->id,
           c->peer, desc, cn[0] ? cn : "-", user);
}

void conn_on_tls_event(conn *c, short what)
{
    if (!c->tls_up && (what & BEV_EVENT_CONNECTED)) {
        tls_connected(c);
        return;
    }
    if (!c->tls_up && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        char err[256];
        tls_bev_error(c->bev, err, sizeof(err));
        atomic_fetch_add_explicit(&c->w->tls.handshake_failures, 1, memory_order_relaxed);
        sh_log(SH_INFO, "event=tls_handshake_failed conn=%llu peer=%s err=\"%s\"", (unsigned long long)c->id, c->peer,
               err);
        conn_close(c, MQTT_RC_UNSPECIFIED, "TLS handshake failed");
    } else if (what & BEV_EVENT_ERROR) {
        /* errno says nothing about a TLS error: use OpenSSL's. */
        char err[256];
        tls_bev_error(c->bev, err, sizeof(err));
        if (strcmp(err, "-") != 0) {
            conn_close(c, MQTT_RC_UNSPECIFIED, err);
        }
    }
    conn_on_event(c, what);
}

void conn_on_event(conn *c, short what)
{
    if (what & BEV_EVENT_EOF) {
        conn_close(c, MQTT_RC_UNSPECIFIED, "connection closed by peer");
    } else if (what & BEV_EVENT_ERROR) {
        conn_close(c, MQTT_RC_UNSPECIFIED, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    if (c->state == CS_CLOSING) {
        /* Nothing more can be written to a broken socket. */
        finish_close(c);
    }
    worker_flush(c->w);
}

void conn_check_timers(conn *c, uint64_t now)
{
    broker *b = c->w->b;
    uint64_t connect_ms = (uint64_t)b->cfg->connect_timeout * 1000u;
    if (c->state == CS_AUTH && now - c->created_ms >= connect_ms) {
        /* The connect timeout covers the whole exchange, not just CONNECT. */
        conn_close(c, MQTT_RC_MAX_CONNECT_TIME, "authentication not completed within connect timeout");
    } else if (c->state == CS_NEW && now - c->created_ms >= connect_ms) {
        /* A transport handshake (TLS, WebSocket) that never finished, or
         * no CONNECT. Counted, not logged through limits_refused: the
         * close logs it once. */
        const char *why = conn_type_of(c)->connect_timeout(c);
        atomic_fetch_add_explicit(&c->w->metrics.limit_refusals[LIMIT_CONNECT_TIMEOUT], 1, memory_order_relaxed);
        conn_close(c, MQTT_RC_MAX_CONNECT_TIME, why ? why : "no CONNECT within connect timeout");
    } else if (c->state == CS_ACTIVE && c->x && c->x->ax && handle_auth_overdue(c, now, connect_ms)) {
        conn_close(c, MQTT_RC_NOT_AUTHORIZED, "re-authentication not completed within connect timeout");
    } else if (c->state == CS_ACTIVE && c->keepalive && !(c->paused & (PAUSE_RATE | PAUSE_OUTPUT | PAUSE_DRAIN)) &&
               now - c->last_rx_ms >= (uint64_t)c->keepalive * 1500u) {
        /* §3.1.2.10: one and a half times the keep alive. */
        conn_close(c, MQTT_RC_KEEP_ALIVE_TIMEOUT, "keep alive timeout");
    } else if (c->state == CS_CLOSING && now - c->closing_ms >= CLOSE_FLUSH_MS) {
        finish_close(c);
    }
}

static uint64_t connect_ms(const conn *c)
{
    return (uint64_t)c->w->b->cfg->connect_timeout * 1000u;
}

/* The next moment conn_check_timers has something to check, 0 for none.
 * Reads move last_rx_ms without touching the timer: a keep-alive timer
 * that comes up early finds the new deadline here and moves to it. */
static uint64_t next_deadline(const conn *c)
{
    switch (c->state) {
    case CS_NEW:
    case CS_AUTH:
        return c->created_ms + connect_ms(c);
    case CS_ACTIVE: {
        uint64_t due = c->x && c->x->ax ? handle_auth_due(c, connect_ms(c)) : 0;
        if (c->keepalive && !(c->paused & (PAUSE_RATE | PAUSE_OUTPUT | PAUSE_DRAIN))) {
            uint64_t ka = c->last_rx_ms + (uint64_t)c->keepalive * 1500u; /* §3.1.2.10 */
            due = due && due < ka ? due : ka;
        }
        return due;
    }
    case CS_CLOSING:
        return c->closing_ms + CLOSE_FLUSH_MS;
    default:
        return 0; /* CS_CLAIMING waits for its session; CS_CLOSED is gone */
    }
}

void conn_timer_update(conn *c)
{
    twheel *tw = &c->w->timers;
    uint64_t due = next_deadline(c);
    if (!due) {
        tw_cancel(tw, &c->timer);
    } else if (!tw_armed(&c->timer) || due < c->timer.due_ms) {
        /* A later deadline leaves the timer where it is: when it comes up,
         * conn_timer_fired finds nothing due and moves it on. */
        tw_arm(tw, &c->timer, due);
    }
}

void conn_set_state(conn *c, uint8_t state)
{
    worker *w = c->w;
    w->nactive -= c->state == CS_ACTIVE; /* metrics: the online gauge */
    w->nactive += state == CS_ACTIVE;
    c->state = state;
    conn_timer_update(c);
}

void conn_timer_fired(tw_timer *t, void *arg)
{
    conn *c = (conn *)((char *)t - offsetof(conn, timer));
    conn_check_timers(c, *(const uint64_t *)arg);
    if (c->state != CS_CLOSED) {
        conn_timer_update(c);
    }
}
