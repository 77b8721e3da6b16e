/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT over WebSocket on one connection. The WebSocket layer sits between
 * c->bev and conn.c's MQTT framer rather than in a libevent filter
 * bufferevent: a filter reports its output written once the bytes reach the
 * underlying bufferevent, not the socket, which would break conn.c's
 * back-pressure (output length) and its flush-then-close. Here c->bev stays
 * the socket or TLS bufferevent, and only the bytes change:
 *
 *   in:  c->bev input ── ws_conn_read ──> ws->in (unmasked MQTT stream)
 *   out: one binary frame per MQTT packet, header written by ws_conn_frame
 *
 * Data frame payloads are unmasked in place in the input buffer and moved
 * chain by chain, so a payload is neither copied nor held whole: the MQTT
 * framer's --max-packet-size bounds what is buffered. */
#include "node/net/ws_conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/config.h"
#include "node/conn.h"
#include "node/mqtt/session.h"
#include "node/net/ws.h"
#include "node/worker.h"

#ifndef SH_OK
#define SH_OK 0
#define SH_ERR (-1)
#endif

enum { WSC_HANDSHAKE = 0, WSC_OPEN, WSC_CLOSED };

struct ws_conn {
    uint8_t state;
    bool pending;        /* a close frame or an error came in: close after the MQTT bytes before it */
    bool peer_closed;    /* that was the peer's close frame */
    uint8_t pending_rc;  /* the MQTT reason for conn_close */
    uint16_t close_code; /* what our close frame says, 0 = from the MQTT reason */
    const char *pending_why;
    ws_seq seq;
    uint8_t mask[4];
    uint64_t left; /* payload bytes of the current data frame still to come */
    uint64_t mask_off;
    struct evbuffer *in; /* the MQTT byte stream, from the upgrade on */
};

ws_conn *ws_conn_new(void)
{
    return sh_calloc(1, sizeof(ws_conn));
}

void ws_conn_free(ws_conn *ws)
{
    if (!ws) {
        return;
    }
    if (ws->in) {
        evbuffer_free(ws->in);
    }
    sh_free(ws, sizeof(*ws));
}

bool ws_conn_open(const conn *c)
{
    return conn_ws(c)->state != WSC_HANDSHAKE;
}

static const char *client_of(const conn *c)
{
    return c->s ? c->s->client_id : (c->client_id ? c->client_id : "-");
}

/* A WebSocket-level failure: stop reading frames, close once the MQTT bytes
 * before it are handled. */
static void fail(conn *c, uint16_t code, const char *why)
{
    ws_conn *ws = conn_ws(c);
    sh_log(SH_INFO, "event=ws_error conn=%llu client=%s peer=%s close=%u reason=\"%s\"", (unsigned long long)c->id,
           client_of(c), c->peer, code, why);
    ws->pending = true;
    ws->close_code = code;
    ws->pending_rc = code == WS_CLOSE_TOO_BIG ? MQTT_RC_PACKET_TOO_LARGE : MQTT_RC_PROTOCOL_ERROR;
    ws->pending_why = why;
}

static void send_control(conn *c, uint8_t opcode, const uint8_t *body, size_t len)
{
    uint8_t head[WS_HEADER_MAX];
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, head, ws_frame_header(head, opcode, len));
    evbuffer_add(out, body, len);
}

/* The opening handshake. SH_OK once upgraded; SH_ERR while the request is
 * incomplete or after it was refused (the connection is then closing). */
static int handshake(conn *c)
{
    ws_conn *ws = conn_ws(c);
    const config *cfg = c->w->b->cfg;
    struct evbuffer *raw = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(raw);
    size_t n = avail < WS_REQUEST_MAX ? avail : WS_REQUEST_MAX;
    const char *head = (const char *)evbuffer_pullup(raw, (ssize_t)n);
    ws_request req;
    ws_answer ans;
    int used = n ? ws_parse_request(head, n, &req) : WS_NEED_MORE;
    if (used == WS_NEED_MORE && n < WS_REQUEST_MAX) {
        return SH_ERR;
    }
    if (used < 0) {
        memset(&ans, 0, sizeof(ans));
        ans.status = 400;
        ans.why = used == WS_NEED_MORE ? "request head too long" : "malformed HTTP request";
    } else {
        ws_policy pol = {cfg->ws.path, cfg->ws.origins};
        ws_handshake(&req, &pol, &ans);
    }
    char resp[WS_RESPONSE_MAX];
    bufferevent_write(c->bev, resp, ws_response(&ans, resp));
    if (ans.status != 101) {
        char sample[49], why[96];
        sh_log_sample(sample, sizeof(sample), head, n < 48 ? n : 48);
        sh_log(SH_INFO, "event=ws_refused conn=%llu peer=%s status=%d reason=\"%s\" sample=\"%s\"",
               (unsigned long long)c->id, c->peer, ans.status, ans.why, sample);
        evbuffer_drain(raw, avail);
        snprintf(why, sizeof(why), "WebSocket upgrade refused with %d", ans.status);
        conn_close(c, MQTT_RC_PROTOCOL_ERROR, why);
        return SH_ERR;
    }
    sh_log(SH_DEBUG, "event=ws_upgrade conn=%llu peer=%s protocol=%.*s origin=\"%.*s\"", (unsigned long long)c->id,
           c->peer, ans.protocol.len ? (int)ans.protocol.len : 1, ans.protocol.len ? ans.protocol.p : "-",
           req.origin.len ? (int)req.origin.len : 1, req.origin.len ? req.origin.p : "-");
    evbuffer_drain(raw, (size_t)used);
    ws->state = WSC_OPEN;
    ws->in = evbuffer_new();
    return SH_OK;
}

/* Move what has arrived of the current data frame's payload to ws->in,
 * unmasking it in place chain by chain. */
static void take_payload(ws_conn *ws, struct evbuffer *raw)
{
    while (ws->left) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(raw, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
            return;
        }
        size_t k = v.iov_len < ws->left ? v.iov_len : (size_t)ws->left;
        ws->mask_off = ws_unmask(v.iov_base, k, ws->mask, ws->mask_off);
        evbuffer_remove_buffer(raw, ws->in, k);
        ws->left -= k;
    }
}

static void control(conn *c, const ws_frame *f, const uint8_t *body)
{
    ws_conn *ws = conn_ws(c);
    if (f->opcode == WS_OP_PING) {
        /* §5.5.3: a pong carries the ping's payload. */
        send_control(c, WS_OP_PONG, body, f->len);
    } else if (f->opcode == WS_OP_CLOSE) {
        uint16_t code;
        uint16_t bad = ws_close_parse(body, f->len, &code);
        if (bad) {
            fail(c, bad, bad == WS_CLOSE_BAD_DATA ? "close reason is not UTF-8" : "bad close code");
            return;
        }
        /* §5.5.1: answer with a close frame, echoing the code. */
        ws->pending = true;
        ws->peer_closed = true;
        ws->close_code = code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code;
        ws->pending_rc = MQTT_RC_UNSPECIFIED;
        ws->pending_why = "WebSocket close from peer";
    }
    /* An unsolicited pong is allowed (§5.5.3) and ignored. */
}

/* One frame header (and a whole control frame). SH_OK when it was taken;
 * SH_ERR when more bytes are needed or the frame failed. */
static int next_frame(conn *c, struct evbuffer *raw)
{
    ws_conn *ws = conn_ws(c);
    const config *cfg = c->w->b->cfg;
    uint64_t max = cfg->ws.max_frame ? cfg->ws.max_frame : (uint64_t)cfg->max_packet_size + 5;
    size_t avail = evbuffer_get_length(raw);
    uint8_t head[WS_HEADER_MAX];
    size_t hn = avail < sizeof(head) ? avail : sizeof(head);
    evbuffer_copyout(raw, head, hn);
    ws_frame f;
    int n = ws_frame_parse(head, hn, max, &f);
    if (n == WS_NEED_MORE) {
        return SH_ERR;
    }
    if (n == WS_BAD) {
        fail(c, f.close_code, f.why);
        return SH_ERR;
    }
    if (f.opcode & 0x08) {
        if (avail < (size_t)n + f.len) {
            return SH_ERR;
        }
        uint8_t body[WS_CONTROL_MAX];
        evbuffer_drain(raw, (size_t)n);
        evbuffer_remove(raw, body, (size_t)f.len);
        ws_unmask(body, (size_t)f.len, f.mask, 0);
        control(c, &f, body);
        return ws->pending ? SH_ERR : SH_OK;
    }
    uint16_t code = ws_seq_next(&ws->seq, &f);
    if (code) {
        fail(c, code, code == WS_CLOSE_UNSUPPORTED ? "text frame (MQTT is binary)" : "data frame out of sequence");
        return SH_ERR;
    }
    evbuffer_drain(raw, (size_t)n);
    ws->left = f.len;
    ws->mask_off = 0;
    memcpy(ws->mask, f.mask, 4);
    return SH_OK;
}

struct evbuffer *ws_conn_read(conn *c)
{
    ws_conn *ws = conn_ws(c);
    struct evbuffer *raw = bufferevent_get_input(c->bev);
    if (c->state >= CS_CLOSING) {
        return NULL;
    }
    if (ws->state == WSC_HANDSHAKE && handshake(c) != SH_OK) {
        return NULL;
    }
    while (!ws->pending && evbuffer_get_length(raw)) {
        if (ws->left) {
            take_payload(ws, raw);
        } else if (next_frame(c, raw) != SH_OK) {
            break;
        }
    }
    if (ws->pending) {
        /* §5.5.1: nothing after a close frame is read; nor after an error. */
        evbuffer_drain(raw, evbuffer_get_length(raw));
    }
    return ws->in;
}

void ws_conn_read_done(conn *c)
{
    ws_conn *ws = conn_ws(c);
    if (!ws->pending || c->state >= CS_CLOSING) {
        return;
    }
    if (c->paused && evbuffer_get_length(ws->in)) {
        return; /* MQTT packets that came before the close still wait to be handled */
    }
    if (ws->peer_closed) {
        c->sent_disconnect = true; /* the peer has gone: no MQTT DISCONNECT */
    }
    conn_close(c, ws->pending_rc, ws->pending_why);
}

bool ws_conn_frame(conn *c, struct evbuffer *out, size_t len)
{
    if (conn_ws(c)->state != WSC_OPEN) {
        return false;
    }
    uint8_t head[WS_HEADER_MAX];
    evbuffer_add(out, head, ws_frame_header(head, WS_OP_BINARY, len));
    return true;
}

void ws_conn_send_close(conn *c, uint8_t rc)
{
    ws_conn *ws = conn_ws(c);
    if (ws->state != WSC_OPEN) {
        return;
    }
    uint16_t code = ws->close_code;
    if (!code) {
        code = rc == MQTT_RC_SERVER_SHUTTING_DOWN ? WS_CLOSE_GOING_AWAY : WS_CLOSE_NORMAL;
    }
    uint8_t body[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_control(c, WS_OP_CLOSE, body, sizeof(body));
    ws->state = WSC_CLOSED;
    sh_log(SH_DEBUG, "event=ws_close conn=%llu close=%u", (unsigned long long)c->id, code);
}
