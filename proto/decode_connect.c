/* SPDX-License-Identifier: Apache-2.0 */
/* CONNECT (§3.1) and CONNACK (§3.2) body decoders. */
#include "proto/codec_impl.h"
#include "proto/packet.h"
#include "proto/topic.h"

/* CONNECT flag bits, §3.1.2.3. */
#define CF_RESERVED 0x01
#define CF_CLEAN 0x02
#define CF_WILL 0x04
#define CF_WILL_QOS_SHIFT 3
#define CF_WILL_RETAIN 0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

static bool name_is(mqtt_bytes name, const char *want, uint32_t want_len)
{
    return name.len == want_len && memcmp(name.p, want, want_len) == 0;
}

/* §3.1.2.1, §3.1.2.2: "MQTT" with level 4 or 5, or 3.1's "MQIsdp" with
 * level 3.
 * - Another name is another protocol: "If the Protocol Name is incorrect
 *   the Server MAY disconnect the Client" (both versions), so 0x81 with the
 *   version left at 0: the node has no dialect to answer in and closes
 *   without a CONNACK (Mosquitto does the same).
 * - A known name with a level we do not speak: 0x84, with the requested
 *   level kept so the node answers in the client's dialect (3.1.1
 *   [MQTT-3.1.2-2]: CONNACK return code 1). */
static mqtt_rc read_protocol(mqtt_bytes *c, mqtt_connect *out)
{
    if (!rd_bin(c, &out->protocol_name)) {
        return MQTT_RC_MALFORMED;
    }
    bool mqtt = name_is(out->protocol_name, "MQTT", 4);
    bool mqisdp = name_is(out->protocol_name, "MQIsdp", 6);
    if (!mqtt && !mqisdp) {
        return MQTT_RC_MALFORMED;
    }
    if (!rd_u8(c, &out->version)) {
        return MQTT_RC_MALFORMED;
    }
    bool ok = (mqtt && (out->version == MQTT_V311 || out->version == MQTT_V5)) || (mqisdp && out->version == MQTT_V31);
    return ok ? MQTT_RC_SUCCESS : MQTT_RC_UNSUPPORTED_VERSION;
}

static mqtt_rc read_flags(uint8_t flags, mqtt_connect *out)
{
    /* §3.1.2.3 [MQTT-3.1.2-3]: the reserved bit must be 0. */
    if ((flags & CF_RESERVED) != 0) {
        return MQTT_RC_MALFORMED;
    }
    out->clean_start = (flags & CF_CLEAN) != 0;
    out->has_will = (flags & CF_WILL) != 0;
    out->will_qos = (uint8_t)((flags >> CF_WILL_QOS_SHIFT) & 0x03);
    out->will_retain = (flags & CF_WILL_RETAIN) != 0;
    out->has_password = (flags & CF_PASSWORD) != 0;
    out->has_username = (flags & CF_USERNAME) != 0;
    /* §3.1.2.6, §3.1.2.7 [MQTT-3.1.2-11, -13, -15]: no will, no will QoS
     * or retain; [MQTT-3.1.2-14] / v5 §3.1.2.6: will QoS 3 is malformed. */
    if (!out->has_will && (out->will_qos != 0 || out->will_retain)) {
        return MQTT_RC_MALFORMED;
    }
    if (out->will_qos == 3) {
        return MQTT_RC_MALFORMED;
    }
    /* 3.1.1 §3.1.2.9 [MQTT-3.1.2-22]: a password needs a user name.
     * MQTT 5 §3.1.2.9 lifts that rule. */
    if (out->version != MQTT_V5 && out->has_password && !out->has_username) {
        return MQTT_RC_MALFORMED;
    }
    return MQTT_RC_SUCCESS;
}

/* §3.1.3: client id, will (properties, topic, payload), user, password. */
static mqtt_rc read_payload(mqtt_bytes *c, mqtt_connect *out)
{
    /* §3.1.3.1 [MQTT-3.1.3-4]: the client id is a UTF-8 Encoded String.
     * Whether an empty one is acceptable is the node's decision. */
    if (!rd_str(c, &out->client_id)) {
        return MQTT_RC_MALFORMED;
    }
    if (out->has_will) {
        mqtt_rc rc = mqtt__read_props(c, out->version, MQTT_PROPS_WILL, &out->will_props);
        if (rc != MQTT_RC_SUCCESS) {
            return rc;
        }
        /* The will topic is a topic: control characters are malformed
         * ([MQTT-1.5.4-3], see rd_printable). */
        if (!rd_printable(c, &out->will_topic) || !rd_bin(c, &out->will_payload)) {
            return MQTT_RC_MALFORMED;
        }
    }
    if (out->has_username && !rd_str(c, &out->username)) {
        return MQTT_RC_MALFORMED;
    }
    if (out->has_password && !rd_bin(c, &out->password)) {
        return MQTT_RC_MALFORMED;
    }
    /* mqtt_parse_connect in HAProxy: the payload must use the body up. */
    return c->len == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
}

/* Strings Shoal logs and shows: the client id and the user name may not
 * hold control characters ([MQTT-1.5.4-3] lets a receiver refuse them).
 * Each gets the code the spec gives for a refused value of that field, so
 * 3.1.1 clients get a CONNACK too:
 * - client id: v5 §3.1.3.1 "If the Server rejects the ClientID it MAY
 *   respond ... 0x85 (Client Identifier not valid)"; 3.1.1 [MQTT-3.1.3-9]
 *   "MUST respond ... 0x02 (Identifier rejected)".
 * - user name: v5 §3.2.2.2 0x86 Bad User Name or Password, "The data in
 *   the user name or password is malformed"; 3.1.1 table 3.1 code 4 has
 *   the same words. (0x8C is about the Authentication Method property.) */
static mqtt_rc printable_rules(const mqtt_connect *p)
{
    if (mqtt_utf8_check(p->client_id.p, p->client_id.len) != MQTT_UTF8_OK) {
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    if (p->has_username && mqtt_utf8_check(p->username.p, p->username.len) != MQTT_UTF8_OK) {
        return MQTT_RC_BAD_USER_OR_PASSWORD;
    }
    return MQTT_RC_SUCCESS;
}

/* Rules that need the whole CONNECT parsed first. */
static mqtt_rc connect_rules(const mqtt_connect *p)
{
    mqtt_rc rc = printable_rules(p);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    /* v5 §3.1.2.11.10: Authentication Data without a method. */
    if (mqtt_props_has(&p->props, MQTT_PROP_AUTH_DATA) && !mqtt_props_has(&p->props, MQTT_PROP_AUTH_METHOD)) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (!p->has_will) {
        return MQTT_RC_SUCCESS;
    }
    /* §3.1.3.3: the will topic is a topic name; v5 §3.2.2.2 answers a
     * refused one with 0x90. 3.1.1 has no return code for it, and a
     * CONNECT that does not conform is closed without a CONNACK
     * ([MQTT-3.1.4-1], [MQTT-3.2.2-6]): 0x81. */
    if (!mqtt_topic_name_valid(p->will_topic.p, p->will_topic.len)) {
        return is_v5(p->version) ? MQTT_RC_TOPIC_NAME_INVALID : MQTT_RC_MALFORMED;
    }
    const mqtt_props *w = &p->will_props;
    /* §3.1.3.2.5 [MQTT-3.3.2-14]: Response Topic holds no wildcards. */
    if (mqtt_props_has(w, MQTT_PROP_RESPONSE_TOPIC) &&
        !mqtt_topic_name_valid(w->response_topic.p, w->response_topic.len)) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    /* §3.1.3.2.3: will payload flagged as UTF-8 must be UTF-8: 0x99. */
    if (mqtt_props_has(w, MQTT_PROP_PAYLOAD_FORMAT) && w->payload_format == 1 &&
        !mqtt_utf8_valid(p->will_payload.p, p->will_payload.len)) {
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    }
    return MQTT_RC_SUCCESS;
}

mqtt_rc mqtt_decode_connect(const mqtt_frame *f, mqtt_connect *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_CONNECT)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    mqtt_rc rc = read_protocol(&c, out);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    uint8_t flags;
    if (!rd_u8(&c, &flags) || !rd_u16(&c, &out->keepalive)) {
        return MQTT_RC_MALFORMED;
    }
    rc = read_flags(flags, out);
    if (rc == MQTT_RC_SUCCESS) {
        rc = mqtt__read_props(&c, out->version, MQTT_CONNECT, &out->props);
    }
    if (rc == MQTT_RC_SUCCESS) {
        rc = read_payload(&c, out);
    }
    return rc == MQTT_RC_SUCCESS ? connect_rules(out) : rc;
}

mqtt_rc mqtt_decode_connack(const mqtt_frame *f, uint8_t version, mqtt_connack *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_CONNACK)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    uint8_t ack_flags;
    /* §3.2.2.1: bits 7..1 of the acknowledge flags are reserved. */
    if (!rd_u8(&c, &ack_flags) || (ack_flags & 0xFE) != 0 || !rd_u8(&c, &out->rc)) {
        return MQTT_RC_MALFORMED;
    }
    out->session_present = (ack_flags & 0x01) != 0;
    if (is_v5(version)) {
        /* §3.2.2.3: CONNACK always carries a Property Length. */
        mqtt_rc rc = mqtt__read_props(&c, version, MQTT_CONNACK, &out->props);
        if (rc != MQTT_RC_SUCCESS) {
            return rc;
        }
    }
    bool rc_known = is_v5(version) ? mqtt__rc_allowed(MQTT_CONNACK, out->rc) : out->rc <= 5;
    if (c.len != 0 || !rc_known) {
        return MQTT_RC_MALFORMED;
    }
    /* [MQTT-3.2.2-4] (3.1.1) / [MQTT-3.2.2-6] (v5): a refusal never has a
     * session. */
    if (out->session_present && out->rc != 0) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    return MQTT_RC_SUCCESS;
}
