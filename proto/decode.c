/* SPDX-License-Identifier: Apache-2.0 */
/* Body decoders for PUBLISH, the four acks, PINGREQ/PINGRESP, DISCONNECT and
 * AUTH, and the mqtt_decode() dispatcher. CONNECT/CONNACK live in
 * decode_connect.c, SUBSCRIBE and friends in decode_sub.c.
 *
 * Every decoder zeroes its output first, reads the body with the cursor
 * readers of codec_impl.h (any shortfall is 0x81: the frame is complete, so
 * missing bytes mean a lying length), then applies the semantic rules. */
#include "proto/codec_impl.h"
#include "proto/packet.h"
#include "proto/topic.h"

/* §2.1.3 table 2-2: required flags; -1 for PUBLISH (DUP/QoS/RETAIN). */
static const int8_t required_flags[16] = {
    [0] = -2, /* reserved type: never acceptable */
    [MQTT_CONNECT] = 0,
    [MQTT_CONNACK] = 0,
    [MQTT_PUBLISH] = -1,
    [MQTT_PUBACK] = 0,
    [MQTT_PUBREC] = 0,
    [MQTT_PUBREL] = 2,
    [MQTT_PUBCOMP] = 0,
    [MQTT_SUBSCRIBE] = 2,
    [MQTT_SUBACK] = 0,
    [MQTT_UNSUBSCRIBE] = 2,
    [MQTT_UNSUBACK] = 0,
    [MQTT_PINGREQ] = 0,
    [MQTT_PINGRESP] = 0,
    [MQTT_DISCONNECT] = 0,
    [MQTT_AUTH] = 0,
};

int mqtt__required_flags(uint8_t type)
{
    return type < 16 ? required_flags[type] : -2;
}

bool mqtt__flags_ok(const mqtt_frame *f, uint8_t type)
{
    int want = mqtt__required_flags(type);
    if (f->type != type || want == -2) {
        return false;
    }
    return want == -1 || f->flags == want;
}

/* §3.3.1: DUP, QoS and RETAIN live in the fixed header. */
static mqtt_rc publish_flags(const mqtt_frame *f, mqtt_publish *out)
{
    if (f->type != MQTT_PUBLISH) {
        return MQTT_RC_MALFORMED;
    }
    out->retain = (f->flags & 0x01) != 0;
    out->qos = (uint8_t)((f->flags >> 1) & 0x03);
    out->dup = (f->flags & 0x08) != 0;
    /* §3.3.1.2 [MQTT-3.3.1-4]: QoS 3 is malformed. */
    if (out->qos == 3) {
        return MQTT_RC_MALFORMED;
    }
    /* §3.3.1.1 [MQTT-3.3.1-2]: DUP must be 0 for QoS 0 (v5: malformed). */
    if (out->dup && out->qos == 0) {
        return MQTT_RC_MALFORMED;
    }
    return MQTT_RC_SUCCESS;
}

/* Rules that need the whole PUBLISH parsed first. */
static mqtt_rc publish_rules(const mqtt_publish *p, uint8_t version)
{
    /* §4.7.1 [MQTT-3.3.2-2]: no wildcards in a topic name. */
    if (mqtt_topic_filter_has_wildcard(p->topic.p, p->topic.len)) {
        return MQTT_RC_TOPIC_NAME_INVALID;
    }
    if (p->topic.len == 0) {
        /* v5 §3.3.2.1: empty topic only with a Topic Alias (protocol
         * error); 3.1.1 §4.7.3 [MQTT-4.7.3-1]: at least one character. */
        if (!is_v5(version)) {
            return MQTT_RC_TOPIC_NAME_INVALID;
        }
        if (!mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS)) {
            return MQTT_RC_PROTOCOL_ERROR;
        }
    }
    /* §3.3.2.3.5 [MQTT-3.3.2-14]: Response Topic holds no wildcards. */
    if (mqtt_props_has(&p->props, MQTT_PROP_RESPONSE_TOPIC) &&
        !mqtt_topic_name_valid(p->props.response_topic.p, p->props.response_topic.len)) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    /* [MQTT-3.3.4-6] (no Subscription Identifier from a client) depends on
     * the direction, which a decoder does not know: the node checks it. */
    /* §3.3.2.3.2: a payload flagged as UTF-8 must be UTF-8, so 0x99. */
    if (mqtt_props_has(&p->props, MQTT_PROP_PAYLOAD_FORMAT) && p->props.payload_format == 1 &&
        !mqtt_utf8_valid(p->payload.p, p->payload.len)) {
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
    return MQTT_RC_SUCCESS;
}

mqtt_rc mqtt_decode_publish(const mqtt_frame *f, uint8_t version, mqtt_publish *out)
{
    memset(out, 0, sizeof(*out));
    mqtt_rc rc = publish_flags(f, out);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    mqtt_bytes c = frame_body(f);
    /* §3.3.2.1: the topic is a UTF-8 Encoded String; control characters
     * are malformed too ([MQTT-1.5.4-3], see rd_printable). */
    if (!rd_printable(&c, &out->topic)) {
        return MQTT_RC_MALFORMED;
    }
    /* §2.2.1 [MQTT-2.2.1-3]: QoS > 0 carries a non-zero packet id. */
    if (out->qos > 0 && (!rd_u16(&c, &out->packet_id) || out->packet_id == 0)) {
        return MQTT_RC_MALFORMED;
    }
    rc = mqtt__read_props(&c, version, MQTT_PUBLISH, &out->props);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    /* §3.3.3: the payload is the rest of the packet, possibly empty. */
    out->payload = c;
    return publish_rules(out, version);
}

/* v5 optional tail shared by the acks, DISCONNECT and AUTH: a reason code
 * when at least one byte is left, then properties when more is left
 * (§3.4.2.1, §3.14.2.2.1: "less than ... there is no Property Length"). */
static mqtt_rc read_rc_tail(mqtt_bytes *c, uint8_t ctx, uint8_t *rc_out, mqtt_props *props)
{
    if (c->len > 0) {
        (void)rd_u8(c, rc_out);
    }
    if (c->len > 0) {
        mqtt_rc rc = mqtt__read_props(c, MQTT_V5, ctx, props);
        if (rc != MQTT_RC_SUCCESS) {
            return rc;
        }
    }
    if (c->len != 0) {
        return MQTT_RC_MALFORMED; /* trailing bytes */
    }
    /* An unlisted reason code cannot be parsed into a meaning: malformed. */
    return mqtt__rc_allowed(ctx, *rc_out) ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
}

mqtt_rc mqtt_decode_ack(const mqtt_frame *f, uint8_t version, mqtt_ack *out)
{
    memset(out, 0, sizeof(*out));
    out->type = f->type;
    if (f->type < MQTT_PUBACK || f->type > MQTT_PUBCOMP || !mqtt__flags_ok(f, f->type)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    if (!rd_u16(&c, &out->packet_id) || out->packet_id == 0) {
        return MQTT_RC_MALFORMED;
    }
    /* 3.1.1 §3.4.1: the remaining length is exactly 2. */
    if (!is_v5(version)) {
        return c.len == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
    }
    return read_rc_tail(&c, f->type, &out->rc, &out->props);
}

mqtt_rc mqtt_decode_ping(const mqtt_frame *f)
{
    bool ok = (f->type == MQTT_PINGREQ || f->type == MQTT_PINGRESP) && mqtt__flags_ok(f, f->type) && f->body_len == 0;
    /* §3.12 / §3.13: no variable header, no payload. */
    return ok ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
}

mqtt_rc mqtt_decode_disconnect(const mqtt_frame *f, uint8_t version, mqtt_reason *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_DISCONNECT)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    /* 3.1.1 §3.14: no variable header, no payload. */
    if (!is_v5(version)) {
        return c.len == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
    }
    return read_rc_tail(&c, MQTT_DISCONNECT, &out->rc, &out->props);
}

mqtt_rc mqtt_decode_auth(const mqtt_frame *f, uint8_t version, mqtt_reason *out)
{
    memset(out, 0, sizeof(*out));
    /* 3.1.1 §2.2.1: type 15 is reserved, so AUTH is malformed there. */
    if (!is_v5(version) || !mqtt__flags_ok(f, MQTT_AUTH)) {
        return MQTT_RC_MALFORMED;
    }
    /* §3.15.2.1 only describes the empty body (rc 0) and rc + properties;
     * a lone reason code is read like DISCONNECT's (§3.14.2.2.1). Whether
     * the Authentication Method matches CONNECT's is the node's check. */
    mqtt_bytes c = frame_body(f);
    return read_rc_tail(&c, MQTT_AUTH, &out->rc, &out->props);
}

mqtt_rc mqtt_decode(const mqtt_frame *f, uint8_t version, mqtt_packet *out)
{
    memset(out, 0, sizeof(*out));
    out->type = f->type;
    switch (f->type) {
    case MQTT_CONNECT:
        return mqtt_decode_connect(f, &out->u.connect);
    case MQTT_CONNACK:
        return mqtt_decode_connack(f, version, &out->u.connack);
    case MQTT_PUBLISH:
        return mqtt_decode_publish(f, version, &out->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return mqtt_decode_ack(f, version, &out->u.ack);
    case MQTT_SUBSCRIBE:
        return mqtt_decode_subscribe(f, version, &out->u.subscribe);
    case MQTT_UNSUBSCRIBE:
        return mqtt_decode_unsubscribe(f, version, &out->u.unsubscribe);
    case MQTT_SUBACK:
        return mqtt_decode_suback(f, version, &out->u.suback);
    case MQTT_UNSUBACK:
        return mqtt_decode_unsuback(f, version, &out->u.suback);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return mqtt_decode_ping(f);
    case MQTT_DISCONNECT:
        return mqtt_decode_disconnect(f, version, &out->u.reason);
    case MQTT_AUTH:
        return mqtt_decode_auth(f, version, &out->u.reason);
    default:
        return MQTT_RC_MALFORMED; /* §2.1.2: type 0 is reserved */
    }
}
