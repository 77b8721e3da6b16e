/* SPDX-License-Identifier: Apache-2.0 */
#include "node/mqtt/send.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "proto/packet.h"

/* Payloads above this are written by reference to the shared message
 * instead of copied. */
#define REF_THRESHOLD 1024

static mqtt_bytes cstr(const char *s)
{
    mqtt_bytes b = {(const uint8_t *)s, s ? (uint32_t)strlen(s) : 0};
    return b;
}

/* The MQTT 5 reason code a 3.1.1 CONNACK return code stands for, so the
 * metric has one code space. */
static uint8_t connack_v5_code(uint8_t version, uint8_t rc)
{
    static const uint8_t v311[] = {MQTT_RC_SUCCESS,
                                   MQTT_RC_UNSUPPORTED_VERSION,
                                   MQTT_RC_CLIENT_ID_INVALID,
                                   MQTT_RC_SERVER_UNAVAILABLE,
                                   MQTT_RC_BAD_USER_OR_PASSWORD,
                                   MQTT_RC_NOT_AUTHORIZED};
    if (version == MQTT_V5) {
        return rc;
    }
    return rc < sizeof(v311) ? v311[rc] : MQTT_RC_UNSPECIFIED;
}

void send_connack(conn *c, bool session_present, uint8_t rc, const mqtt_props *props)
{
    atomic_fetch_add_explicit(&c->w->metrics.connacks[connack_v5_code(c->version, rc)], 1, memory_order_relaxed);
    mqtt_connack p;
    memset(&p, 0, sizeof(p));
    p.session_present = session_present;
    p.rc = rc;
    if (props) {
        p.props = *props;
    }
    uint8_t buf[512];
    size_t n = mqtt_size_connack(&p, c->version);
    sh_assert(n <= sizeof(buf));
    mqtt_encode_connack(&p, c->version, buf);
    conn_write(c, buf, n);
}

void send_connack_refusal(conn *c, uint8_t rc)
{
    if (c->version == MQTT_V5) {
        send_connack(c, false, rc, NULL);
        return;
    }
    /* §3.2.2.3 / §4.8: 3.1.1 answers a malformed or out-of-order CONNECT by
     * closing; only the refusals it has return codes for get a CONNACK. */
    if (rc == MQTT_RC_MALFORMED || rc == MQTT_RC_PROTOCOL_ERROR) {
        return;
    }
    uint8_t code = mqtt_rc_to_v311_connack(rc);
    if (code == 0) {
        return;
    }
    uint8_t ver = c->version;
    c->version = MQTT_V311;
    send_connack(c, false, code, NULL);
    c->version = ver;
}

static void set_reason(conn *c, mqtt_props *pr, const char *reason)
{
    /* §3.1.2.11.7: no Reason String unless the client allows it. */
    if (reason && c->request_problem_info) {
        pr->present |= MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
        pr->reason_string = cstr(reason);
    }
}

void send_ack(conn *c, uint8_t type, uint16_t pid, uint8_t rc, const char *reason)
{
    mqtt_ack a;
    memset(&a, 0, sizeof(a));
    a.type = type;
    a.packet_id = pid;
    a.rc = rc;
    if (rc >= 0x80) {
        set_reason(c, &a.props, reason);
    }
    uint8_t buf[300];
    size_t n = mqtt_encode_ack(&a, c->version, buf);
    conn_write(c, buf, n);
}

static void send_sub_ack(conn *c, uint8_t type, uint16_t pid, const uint8_t *codes, uint32_t n)
{
    mqtt_suback p;
    memset(&p, 0, sizeof(p));
    p.packet_id = pid;
    p.codes.p = codes;
    p.codes.len = n;
    size_t size = type == MQTT_SUBACK ? mqtt_size_suback(&p, c->version) : mqtt_size_unsuback(&p, c->version);
    uint8_t stackbuf[256];
    uint8_t *buf = size <= sizeof(stackbuf) ? stackbuf : sh_malloc(size);
    if (type == MQTT_SUBACK) {
        mqtt_encode_suback(&p, c->version, buf);
    } else {
        mqtt_encode_unsuback(&p, c->version, buf);
    }
    conn_write(c, buf, size);
    if (buf != stackbuf) {
        sh_free(buf, size);
    }
}

void send_suback(conn *c, uint16_t pid, const uint8_t *codes, uint32_t n)
{
    send_sub_ack(c, MQTT_SUBACK, pid, codes, n);
}

void send_unsuback(conn *c, uint16_t pid, const uint8_t *codes, uint32_t n)
{
    send_sub_ack(c, MQTT_UNSUBACK, pid, codes, n);
}

void send_pingresp(conn *c)
{
    uint8_t buf[2];
    mqtt_encode_ping(MQTT_PINGRESP, buf);
    conn_write(c, buf, 2);
}

void send_disconnect(conn *c, uint8_t rc, const char *reason)
{
    if (c->version != MQTT_V5 || c->sent_disconnect) {
        return;
    }
    mqtt_reason r;
    memset(&r, 0, sizeof(r));
    r.rc = rc;
    set_reason(c, &r.props, reason);
    const char *ref = c->w->b->cfg->drain.server_reference;
    if (rc == MQTT_RC_USE_ANOTHER_SERVER && ref) {
        /* MQTT 5 §4.11: where the client should connect instead. */
        r.props.present |= MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE);
        r.props.server_reference = cstr(ref);
    }
    uint8_t buf[300 + DRAIN_SERVER_REFERENCE_MAX];
    sh_assert(mqtt_size_disconnect(&r, c->version) <= sizeof(buf));
    size_t n = mqtt_encode_disconnect(&r, c->version, buf);
    conn_write(c, buf, n);
    c->sent_disconnect = true;
}

void send_auth(conn *c, uint8_t rc, const mqtt_props *props)
{
    mqtt_reason r;
    memset(&r, 0, sizeof(r));
    r.rc = rc;
    r.props = *props;
    uint8_t buf[1024];
    size_t n = mqtt_size_auth(&r);
    sh_assert(n <= sizeof(buf));
    mqtt_encode_auth(&r, buf);
    conn_write(c, buf, n);
}

/* Aliases we hand out per connection; the first topics sent keep them for
 * the connection's life (no eviction keeps both sides trivially in step). */
#define OUT_ALIAS_LIMIT 64

/* MQTT 5 §3.3.2.3.4: replace a topic the client already knows by its alias,
 * or teach it a new one while the client's Topic Alias Maximum allows. */
static void apply_out_alias(conn *c, mqtt_publish *p)
{
    conn_ext *x = conn_ext_get(c);
    for (uint16_t i = 0; i < x->out_alias_used; i++) {
        mqtt_bytes *a = &x->out_aliases[i];
        if (a->len == p->topic.len && memcmp(a->p, p->topic.p, a->len) == 0) {
            p->props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
            p->props.topic_alias = (uint16_t)(i + 1);
            p->topic.len = 0;
            return;
        }
    }
    if (!x->out_aliases) {
        x->out_alias_cap = c->client_alias_max < OUT_ALIAS_LIMIT ? c->client_alias_max : OUT_ALIAS_LIMIT;
        x->out_aliases = sh_calloc(x->out_alias_cap, sizeof(mqtt_bytes));
    }
    if (x->out_alias_used == x->out_alias_cap) {
        return;
    }
    uint8_t *copy = sh_malloc(p->topic.len);
    memcpy(copy, p->topic.p, p->topic.len);
    x->out_aliases[x->out_alias_used].p = copy;
    x->out_aliases[x->out_alias_used].len = p->topic.len;
    x->out_alias_used++;
    p->props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    p->props.topic_alias = x->out_alias_used;
}

static void unref_cleanup(const void *data, size_t len, void *arg)
{
    msg_unref(arg);
}

bool send_publish(conn *c, const delivery *d, uint16_t pid, bool dup)
{
    const msg *m = d->m;
    mqtt_publish p;
    memset(&p, 0, sizeof(p));
    p.qos = d->qos;
    p.dup = dup;
    p.retain = d->retain;
    p.topic.p = m->topic;
    p.topic.len = m->topic_len;
    p.packet_id = pid;
    p.payload.p = m->payload;
    p.payload.len = m->payload_len;
    if (c->version == MQTT_V5) {
        bool expired;
        uint32_t left = msg_expiry_left(m, now_ms(), &expired);
        if (m->expiry_at) {
            p.props.present |= MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
            p.props.message_expiry = left;
        }
        if (d->n_sub_ids) {
            p.props.sub_ids = d->sub_ids;
            p.props.n_sub_ids = d->n_sub_ids;
        }
        p.props.user.p = m->props;
        p.props.user.len = m->props_len;
        if (c->client_alias_max) {
            apply_out_alias(c, &p);
        }
    }
    size_t head = mqtt_size_publish_head(&p, c->version);
    size_t total = head + m->payload_len;
    if (c->client_max_packet && total > c->client_max_packet) {
        if (p.topic.len && mqtt_props_has(&p.props, MQTT_PROP_TOPIC_ALIAS)) {
            /* The client never learns this alias: take it back. */
            conn_ext *x = c->x; /* made by apply_out_alias */
            x->out_alias_used--;
            sh_free((void *)x->out_aliases[x->out_alias_used].p, x->out_aliases[x->out_alias_used].len);
        }
        return false;
    }
    uint8_t stackbuf[512];
    uint8_t *buf = head <= sizeof(stackbuf) ? stackbuf : sh_malloc(head);
    mqtt_encode_publish_head(&p, c->version, buf);
    struct evbuffer *out = conn_output(c, total);
    if (m->payload_len < REF_THRESHOLD) {
        evbuffer_expand(out, total);
        evbuffer_add(out, buf, head);
        evbuffer_add(out, m->payload, m->payload_len);
    } else {
        evbuffer_add(out, buf, head);
        evbuffer_add_reference(out, m->payload, m->payload_len, unref_cleanup, msg_ref(d->m));
    }
    if (buf != stackbuf) {
        sh_free(buf, head);
    }
    atomic_fetch_add_explicit(&c->w->bytes_out, total, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->w->msgs_out, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->w->metrics.msgs_out_qos[d->qos], 1, memory_order_relaxed); /* metrics */
    return true;
}
