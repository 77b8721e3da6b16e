/* SPDX-License-Identifier: Apache-2.0 */
/* SUBSCRIBE (§3.8), UNSUBSCRIBE (§3.10), SUBACK (§3.9) and UNSUBACK (§3.11)
 * body decoders, and the cursors over validated entries.
 *
 * Topic filter validity (wildcard placement, $share syntax) is not checked
 * here: §3.8.4 answers a bad filter with a per-filter SUBACK code (0x8F), so
 * it is the node's decision, not a reason to drop the connection. */
#include "proto/codec_impl.h"
#include "proto/packet.h"
#include "proto/topic.h"

#define SO_QOS 0x03
#define SO_NO_LOCAL 0x04
#define SO_RAP 0x08
#define SO_RH_SHIFT 4

/* §4.7.3 [MQTT-4.7.3-1]: filters are UTF-8 strings of at least one
 * character; an empty one cannot be parsed into a filter at all. Control
 * characters are malformed too ([MQTT-1.5.4-3], see rd_printable). */
static bool read_filter(mqtt_bytes *c, mqtt_bytes *filter)
{
    return rd_printable(c, filter) && filter->len > 0;
}

static bool read_entry(mqtt_bytes *c, uint8_t version, mqtt_sub *out, uint8_t *opts)
{
    memset(out, 0, sizeof(*out));
    if (!read_filter(c, &out->filter) || !rd_u8(c, opts)) {
        return false;
    }
    out->qos = *opts & SO_QOS;
    if (is_v5(version)) {
        out->no_local = (*opts & SO_NO_LOCAL) != 0;
        out->retain_as_published = (*opts & SO_RAP) != 0;
        out->retain_handling = (uint8_t)((*opts >> SO_RH_SHIFT) & 0x03);
    }
    return true;
}

/* §3.8.3.1 Subscription Options. */
static mqtt_rc check_options(const mqtt_sub *s, uint8_t opts, uint8_t version)
{
    if (!is_v5(version)) {
        /* 3.1.1 [MQTT-3-8.3-4]: reserved bits or QoS 3: malformed. */
        return (opts & 0xFC) != 0 || s->qos == 3 ? MQTT_RC_MALFORMED : MQTT_RC_SUCCESS;
    }
    /* v5 [MQTT-3.8.3-5]: reserved bits 6-7 make the packet malformed. */
    if ((opts & 0xC0) != 0) {
        return MQTT_RC_MALFORMED;
    }
    /* v5 §3.8.3.1 says in so many words: "It is a Protocol Error if the
     * Maximum QoS field has the value 3" and "It is a Protocol Error to
     * send a Retain Handling value of 3", so both are 0x82, not 0x81. */
    if (s->qos == 3 || s->retain_handling == 3) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    /* [MQTT-3.8.3-4]: No Local on a shared subscription. */
    mqtt_bytes g, fl;
    if (s->no_local && mqtt_share_parse(s->filter.p, s->filter.len, &g, &fl) == 1) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    return MQTT_RC_SUCCESS;
}

/* Packet identifier then, for v5, properties (§3.8.2, §3.9.2, §3.10.2,
 * §3.11.2). [MQTT-2.2.1-3]: the identifier is non-zero. */
static mqtt_rc read_id_props(mqtt_bytes *c, uint8_t version, uint8_t ctx, uint16_t *id, mqtt_props *props)
{
    if (!rd_u16(c, id) || *id == 0) {
        return MQTT_RC_MALFORMED;
    }
    return mqtt__read_props(c, version, ctx, props);
}

mqtt_rc mqtt_decode_subscribe(const mqtt_frame *f, uint8_t version, mqtt_subscribe *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_SUBSCRIBE)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    mqtt_rc rc = read_id_props(&c, version, MQTT_SUBSCRIBE, &out->packet_id, &out->props);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    out->entries = c;
    while (c.len > 0) {
        mqtt_sub s;
        uint8_t opts;
        if (!read_entry(&c, version, &s, &opts)) {
            return MQTT_RC_MALFORMED;
        }
        rc = check_options(&s, opts, version);
        if (rc != MQTT_RC_SUCCESS) {
            return rc;
        }
        out->count++;
    }
    /* [MQTT-3.8.3-3]: at least one filter; none is a protocol error. */
    return out->count > 0 ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
}

mqtt_rc mqtt_decode_unsubscribe(const mqtt_frame *f, uint8_t version, mqtt_unsubscribe *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_UNSUBSCRIBE)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    mqtt_rc rc = read_id_props(&c, version, MQTT_UNSUBSCRIBE, &out->packet_id, &out->props);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    out->entries = c;
    while (c.len > 0) {
        mqtt_bytes filter;
        if (!read_filter(&c, &filter)) {
            return MQTT_RC_MALFORMED;
        }
        out->count++;
    }
    /* [MQTT-3.10.3-2]: at least one filter; none is a protocol error. */
    return out->count > 0 ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
}

/* One reason code per filter; an unlisted code is malformed, and a list
 * with no codes cannot answer any SUBSCRIBE/UNSUBSCRIBE. */
static mqtt_rc check_codes(mqtt_bytes codes, uint8_t type, uint8_t version)
{
    if (codes.len == 0) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    for (uint32_t i = 0; i < codes.len; i++) {
        uint8_t rc = codes.p[i];
        /* 3.1.1 §3.9.3: 0x00, 0x01, 0x02 or 0x80. */
        bool ok = is_v5(version) ? mqtt__rc_allowed(type, rc) : (rc <= 2 || rc == 0x80);
        if (!ok) {
            return MQTT_RC_MALFORMED;
        }
    }
    return MQTT_RC_SUCCESS;
}

mqtt_rc mqtt_decode_suback(const mqtt_frame *f, uint8_t version, mqtt_suback *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_SUBACK)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    mqtt_rc rc = read_id_props(&c, version, MQTT_SUBACK, &out->packet_id, &out->props);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    out->codes = c;
    return check_codes(c, MQTT_SUBACK, version);
}

mqtt_rc mqtt_decode_unsuback(const mqtt_frame *f, uint8_t version, mqtt_suback *out)
{
    memset(out, 0, sizeof(*out));
    if (!mqtt__flags_ok(f, MQTT_UNSUBACK)) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = frame_body(f);
    mqtt_rc rc = read_id_props(&c, version, MQTT_UNSUBACK, &out->packet_id, &out->props);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    /* 3.1.1 §3.11: the remaining length is exactly 2, no codes. */
    if (!is_v5(version)) {
        return c.len == 0 ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
    }
    out->codes = c;
    return check_codes(c, MQTT_UNSUBACK, version);
}

bool mqtt_sub_next(mqtt_bytes *cursor, uint8_t version, mqtt_sub *out)
{
    uint8_t opts;
    if (cursor->len == 0) {
        return false;
    }
    if (!read_entry(cursor, version, out, &opts)) {
        /* Only reachable on bytes that were not validated. */
        cursor->len = 0;
        return false;
    }
    return true;
}

bool mqtt_unsub_next(mqtt_bytes *cursor, mqtt_bytes *filter)
{
    if (cursor->len == 0) {
        return false;
    }
    if (!read_filter(cursor, filter)) {
        cursor->len = 0;
        return false;
    }
    return true;
}
