/* SPDX-License-Identifier: Apache-2.0 */
/* Encoders. Each mqtt_size_X() is computed from the same pieces that
 * mqtt_encode_X() writes, so the two always agree; the unit tests and the
 * fuzzer check that they do. Inputs are trusted (our own structs): lengths
 * are not re-validated here. */
#include "proto/codec_impl.h"
#include "proto/packet.h"

/* ---- CONNECT (§3.1) ---- */

static mqtt_bytes protocol_name(const mqtt_connect *p)
{
    if (p->protocol_name.len > 0) {
        return p->protocol_name;
    }
    /* §3.1.2.1: 3.1 says "MQIsdp", 3.1.1 and 5 say "MQTT". */
    if (p->version == MQTT_V31) {
        return cur_make((const uint8_t *)"MQIsdp", 6);
    }
    return cur_make((const uint8_t *)"MQTT", 4);
}

static uint8_t connect_flags(const mqtt_connect *p)
{
    uint8_t fl = 0;
    fl |= p->clean_start ? 0x02 : 0;
    if (p->has_will) {
        fl |= (uint8_t)(0x04 | ((p->will_qos & 0x03) << 3) | (p->will_retain ? 0x20 : 0));
    }
    fl |= p->has_password ? 0x40 : 0;
    fl |= p->has_username ? 0x80 : 0;
    return fl;
}

static uint32_t connect_rem(const mqtt_connect *p)
{
    uint32_t n = 2u + protocol_name(p).len + 1u + 1u + 2u;
    n += props_size_v(&p->props, p->version) + 2u + p->client_id.len;
    if (p->has_will) {
        n += props_size_v(&p->will_props, p->version);
        n += 2u + p->will_topic.len + 2u + p->will_payload.len;
    }
    n += p->has_username ? 2u + p->username.len : 0;
    n += p->has_password ? 2u + p->password.len : 0;
    return n;
}

size_t mqtt_size_connect(const mqtt_connect *p)
{
    return packet_size(connect_rem(p));
}

size_t mqtt_encode_connect(const mqtt_connect *p, uint8_t *dst)
{
    uint8_t *d = wr_header(dst, MQTT_CONNECT, 0, connect_rem(p));
    d = wr_bin(d, protocol_name(p));
    d = wr_u8(d, p->version);
    d = wr_u8(d, connect_flags(p));
    d = wr_u16(d, p->keepalive);
    d = mqtt__write_props(d, &p->props, p->version);
    d = wr_bin(d, p->client_id);
    if (p->has_will) {
        d = mqtt__write_props(d, &p->will_props, p->version);
        d = wr_bin(d, p->will_topic);
        d = wr_bin(d, p->will_payload);
    }
    if (p->has_username) {
        d = wr_bin(d, p->username);
    }
    if (p->has_password) {
        d = wr_bin(d, p->password);
    }
    return (size_t)(d - dst);
}

/* ---- CONNACK (§3.2) ---- */

static uint32_t connack_rem(const mqtt_connack *p, uint8_t version)
{
    return 2u + props_size_v(&p->props, version);
}

size_t mqtt_size_connack(const mqtt_connack *p, uint8_t version)
{
    return packet_size(connack_rem(p, version));
}

size_t mqtt_encode_connack(const mqtt_connack *p, uint8_t version, uint8_t *dst)
{
    uint8_t *d = wr_header(dst, MQTT_CONNACK, 0, connack_rem(p, version));
    d = wr_u8(d, p->session_present ? 1 : 0);
    d = wr_u8(d, p->rc);
    d = mqtt__write_props(d, &p->props, version);
    return (size_t)(d - dst);
}

/* ---- PUBLISH (§3.3) ---- */

static uint32_t publish_rem(const mqtt_publish *p, uint8_t version)
{
    uint32_t n = 2u + p->topic.len + (p->qos > 0 ? 2u : 0u);
    return n + props_size_v(&p->props, version) + p->payload.len;
}

size_t mqtt_size_publish(const mqtt_publish *p, uint8_t version)
{
    return packet_size(publish_rem(p, version));
}

size_t mqtt_size_publish_head(const mqtt_publish *p, uint8_t version)
{
    return mqtt_size_publish(p, version) - p->payload.len;
}

size_t mqtt_encode_publish_head(const mqtt_publish *p, uint8_t version, uint8_t *dst)
{
    uint8_t flags = (uint8_t)((p->dup ? 0x08 : 0) | ((p->qos & 0x03) << 1) | (p->retain ? 1 : 0));
    uint8_t *d = wr_header(dst, MQTT_PUBLISH, flags, publish_rem(p, version));
    d = wr_bin(d, p->topic);
    if (p->qos > 0) {
        d = wr_u16(d, p->packet_id);
    }
    d = mqtt__write_props(d, &p->props, version);
    return (size_t)(d - dst);
}

size_t mqtt_encode_publish(const mqtt_publish *p, uint8_t version, uint8_t *dst)
{
    size_t n = mqtt_encode_publish_head(p, version, dst);
    return (size_t)(wr_raw(dst + n, p->payload) - dst);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-§3.7) ---- */

/* v5 tail of the acks, DISCONNECT and AUTH: nothing, the reason code
 * alone, or the reason code and properties. `short_ok` allows the form
 * without reason code when it is 0 and there are no properties. */
static uint32_t rc_tail_size(uint8_t rc, const mqtt_props *props, bool short_ok)
{
    uint32_t pb = mqtt_props_body_size(props);
    if (pb == 0 && rc == 0 && short_ok) {
        return 0;
    }
    return pb == 0 ? 1u : 1u + mqtt_varint_size(pb) + pb;
}

static uint8_t *write_rc_tail(uint8_t *d, uint8_t rc, const mqtt_props *props, uint32_t size)
{
    if (size >= 1) {
        d = wr_u8(d, rc);
    }
    if (size > 1) {
        d += mqtt_props_write(props, d);
    }
    return d;
}

static uint32_t ack_rem(const mqtt_ack *p, uint8_t version)
{
    /* 3.1.1: packet id only. v5 §3.4.2.1: short form when rc 0, no props. */
    return 2u + (is_v5(version) ? rc_tail_size(p->rc, &p->props, true) : 0u);
}

size_t mqtt_size_ack(const mqtt_ack *p, uint8_t version)
{
    return packet_size(ack_rem(p, version));
}

size_t mqtt_encode_ack(const mqtt_ack *p, uint8_t version, uint8_t *dst)
{
    uint32_t rem = ack_rem(p, version);
    uint8_t *d = wr_header(dst, p->type, p->type == MQTT_PUBREL ? 0x02 : 0, rem);
    d = wr_u16(d, p->packet_id);
    d = write_rc_tail(d, p->rc, &p->props, rem - 2u);
    return (size_t)(d - dst);
}

/* ---- SUBSCRIBE (§3.8), UNSUBSCRIBE (§3.10) ---- */

static uint8_t sub_options(const mqtt_sub *s, uint8_t version)
{
    uint8_t o = s->qos & 0x03;
    if (is_v5(version)) {
        o |= (uint8_t)((s->no_local ? 0x04 : 0) | (s->retain_as_published ? 0x08 : 0) |
                       ((s->retain_handling & 0x03) << 4));
    }
    return o;
}

static uint32_t subscribe_rem(const mqtt_props *props, const mqtt_sub *subs, uint32_t n, uint8_t version)
{
    uint32_t rem = 2u + props_size_v(props, version);
    for (uint32_t i = 0; i < n; i++) {
        rem += 2u + subs[i].filter.len + 1u;
    }
    return rem;
}

size_t mqtt_size_subscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_sub *subs, uint32_t n,
                           uint8_t version)
{
    return packet_size(subscribe_rem(props, subs, n, version));
}

size_t mqtt_encode_subscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_sub *subs, uint32_t n,
                             uint8_t version, uint8_t *dst)
{
    uint8_t *d = wr_header(dst, MQTT_SUBSCRIBE, 0x02, subscribe_rem(props, subs, n, version));
    d = wr_u16(d, packet_id);
    d = mqtt__write_props(d, props, version);
    for (uint32_t i = 0; i < n; i++) {
        d = wr_bin(d, subs[i].filter);
        d = wr_u8(d, sub_options(&subs[i], version));
    }
    return (size_t)(d - dst);
}

static uint32_t unsubscribe_rem(const mqtt_props *props, const mqtt_bytes *filters, uint32_t n, uint8_t version)
{
    uint32_t rem = 2u + props_size_v(props, version);
    for (uint32_t i = 0; i < n; i++) {
        rem += 2u + filters[i].len;
    }
    return rem;
}

size_t mqtt_size_unsubscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_bytes *filters, uint32_t n,
                             uint8_t version)
{
    return packet_size(unsubscribe_rem(props, filters, n, version));
}

size_t mqtt_encode_unsubscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_bytes *filters, uint32_t n,
                               uint8_t version, uint8_t *dst)
{
    uint32_t rem = unsubscribe_rem(props, filters, n, version);
    uint8_t *d = wr_header(dst, MQTT_UNSUBSCRIBE, 0x02, rem);
    d = wr_u16(d, packet_id);
    d = mqtt__write_props(d, props, version);
    for (uint32_t i = 0; i < n; i++) {
        d = wr_bin(d, filters[i]);
    }
    return (size_t)(d - dst);
}

/* ---- SUBACK (§3.9), UNSUBACK (§3.11) ---- */

static uint32_t suback_rem(const mqtt_suback *p, uint8_t version)
{
    return 2u + props_size_v(&p->props, version) + p->codes.len;
}

size_t mqtt_size_suback(const mqtt_suback *p, uint8_t version)
{
    return packet_size(suback_rem(p, version));
}

static size_t encode_suback_like(const mqtt_suback *p, uint8_t type, uint32_t rem, uint8_t version, uint8_t *dst)
{
    uint8_t *d = wr_header(dst, type, 0, rem);
    d = wr_u16(d, p->packet_id);
    if (rem > 2u) {
        d = mqtt__write_props(d, &p->props, version);
        d = wr_raw(d, p->codes);
    }
    return (size_t)(d - dst);
}

size_t mqtt_encode_suback(const mqtt_suback *p, uint8_t version, uint8_t *dst)
{
    return encode_suback_like(p, MQTT_SUBACK, suback_rem(p, version), version, dst);
}

static uint32_t unsuback_rem(const mqtt_suback *p, uint8_t version)
{
    /* 3.1.1 §3.11: packet id only. */
    return is_v5(version) ? suback_rem(p, version) : 2u;
}

size_t mqtt_size_unsuback(const mqtt_suback *p, uint8_t version)
{
    return packet_size(unsuback_rem(p, version));
}

size_t mqtt_encode_unsuback(const mqtt_suback *p, uint8_t version, uint8_t *dst)
{
    return encode_suback_like(p, MQTT_UNSUBACK, unsuback_rem(p, version), version, dst);
}

/* ---- PINGREQ, PINGRESP, DISCONNECT, AUTH (§3.12-§3.15) ---- */

size_t mqtt_encode_ping(uint8_t type, uint8_t *dst)
{
    return (size_t)(wr_header(dst, type, 0, 0) - dst);
}

static uint32_t disconnect_rem(const mqtt_reason *p, uint8_t version)
{
    /* 3.1.1: empty. v5 §3.14.2.1: rc 0 without properties may be omitted. */
    return is_v5(version) ? rc_tail_size(p->rc, &p->props, true) : 0u;
}

size_t mqtt_size_disconnect(const mqtt_reason *p, uint8_t version)
{
    return packet_size(disconnect_rem(p, version));
}

size_t mqtt_encode_disconnect(const mqtt_reason *p, uint8_t version, uint8_t *dst)
{
    uint32_t rem = disconnect_rem(p, version);
    uint8_t *d = wr_header(dst, MQTT_DISCONNECT, 0, rem);
    return (size_t)(write_rc_tail(d, p->rc, &p->props, rem) - dst);
}

/* §3.15.2.1: the short form (no reason code, no properties) is only for
 * rc 0; otherwise the reason code always comes with a Property Length,
 * since the spec does not describe a reason-code-only AUTH. */
static uint32_t auth_rem(const mqtt_reason *p)
{
    uint32_t pb = mqtt_props_body_size(&p->props);
    if (pb == 0 && p->rc == 0) {
        return 0;
    }
    return 1u + mqtt_varint_size(pb) + pb;
}

size_t mqtt_size_auth(const mqtt_reason *p)
{
    return packet_size(auth_rem(p));
}

size_t mqtt_encode_auth(const mqtt_reason *p, uint8_t *dst)
{
    uint32_t rem = auth_rem(p);
    uint8_t *d = wr_header(dst, MQTT_AUTH, 0, rem);
    return (size_t)(write_rc_tail(d, p->rc, &p->props, rem) - dst);
}

/* ---- any packet ---- */

/* SUBSCRIBE / UNSUBSCRIBE from a decoded packet: the validated entries are
 * copied verbatim, so they keep the encoding of the version they were
 * decoded with. */
static uint32_t entries_rem(const mqtt_props *props, mqtt_bytes entries, uint8_t version)
{
    return 2u + props_size_v(props, version) + entries.len;
}

static size_t encode_entries(uint8_t type, uint16_t packet_id, const mqtt_props *props, mqtt_bytes entries,
                             uint8_t version, uint8_t *dst)
{
    uint8_t *d = wr_header(dst, type, 0x02, entries_rem(props, entries, version));
    d = wr_u16(d, packet_id);
    d = mqtt__write_props(d, props, version);
    return (size_t)(wr_raw(d, entries) - dst);
}

size_t mqtt_size(const mqtt_packet *p, uint8_t version)
{
    switch (p->type) {
    case MQTT_CONNECT:
        return mqtt_size_connect(&p->u.connect);
    case MQTT_CONNACK:
        return mqtt_size_connack(&p->u.connack, version);
    case MQTT_PUBLISH:
        return mqtt_size_publish(&p->u.publish, version);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return mqtt_size_ack(&p->u.ack, version);
    case MQTT_SUBSCRIBE:
        return packet_size(entries_rem(&p->u.subscribe.props, p->u.subscribe.entries, version));
    case MQTT_UNSUBSCRIBE:
        return packet_size(entries_rem(&p->u.unsubscribe.props, p->u.unsubscribe.entries, version));
    case MQTT_SUBACK:
        return mqtt_size_suback(&p->u.suback, version);
    case MQTT_UNSUBACK:
        return mqtt_size_unsuback(&p->u.suback, version);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return 2;
    case MQTT_DISCONNECT:
        return mqtt_size_disconnect(&p->u.reason, version);
    case MQTT_AUTH:
        return mqtt_size_auth(&p->u.reason);
    default:
        return 0;
    }
}

size_t mqtt_encode(const mqtt_packet *p, uint8_t version, uint8_t *dst)
{
    const mqtt_subscribe *s = &p->u.subscribe;
    const mqtt_unsubscribe *u = &p->u.unsubscribe;
    switch (p->type) {
    case MQTT_CONNECT:
        return mqtt_encode_connect(&p->u.connect, dst);
    case MQTT_CONNACK:
        return mqtt_encode_connack(&p->u.connack, version, dst);
    case MQTT_PUBLISH:
        return mqtt_encode_publish(&p->u.publish, version, dst);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return mqtt_encode_ack(&p->u.ack, version, dst);
    case MQTT_SUBSCRIBE:
        return encode_entries(MQTT_SUBSCRIBE, s->packet_id, &s->props, s->entries, version, dst);
    case MQTT_UNSUBSCRIBE:
        return encode_entries(MQTT_UNSUBSCRIBE, u->packet_id, &u->props, u->entries, version, dst);
    case MQTT_SUBACK:
        return mqtt_encode_suback(&p->u.suback, version, dst);
    case MQTT_UNSUBACK:
        return mqtt_encode_unsuback(&p->u.suback, version, dst);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return mqtt_encode_ping(p->type, dst);
    case MQTT_DISCONNECT:
        return mqtt_encode_disconnect(&p->u.reason, version, dst);
    case MQTT_AUTH:
        return mqtt_encode_auth(&p->u.reason, dst);
    default:
        return 0;
    }
}
