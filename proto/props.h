/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT 5 properties (§2.2.2): one table, one reader, one writer. */
#ifndef SHOAL_PROTO_PROPS_H
#define SHOAL_PROTO_PROPS_H

#include "proto/mqtt.h"

enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAX = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAX = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAX_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER = 0x26,
    MQTT_PROP_MAX_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_AVAILABLE = 0x2A,
};

/* Property context for the will properties inside CONNECT's payload;
 * every other context is the packet type (enum mqtt_type). */
#define MQTT_PROPS_WILL 0

/* Wire types of §1.5. */
enum mqtt_prop_wire {
    MQTT_WIRE_NONE = 0, /* unknown identifier */
    MQTT_WIRE_BYTE,
    MQTT_WIRE_U16,
    MQTT_WIRE_U32,
    MQTT_WIRE_VARINT,
    MQTT_WIRE_STRING,
    MQTT_WIRE_BINARY,
    MQTT_WIRE_PAIR,
};

#define MQTT_PROP_BIT(id) (UINT64_C(1) << (id))
#define mqtt_props_has(pr, id) (((pr)->present & MQTT_PROP_BIT(id)) != 0)

/* Decoded (and to-be-encoded) properties of one packet.
 *
 * Decoding fills the single-valued fields and sets their bit in `present`;
 * `raw` is the whole validated property block (borrowed), which
 * mqtt_prop_next() walks for the repeatable User Property and Subscription
 * Identifier. `n_user` and `n_sub_ids` count them; `sub_id` is the first.
 * `raw` starts at the block's length prefix, so it can be copied verbatim.
 * The bits of User Property and Subscription Identifier are set too when
 * at least one is present; the counts saturate at 65535.
 *
 * Encoding writes every single-valued property whose bit is set, then the
 * `sub_ids` array, then `user`: pre-encoded User Property entries copied
 * verbatim (build them with mqtt_props_copy_user() or
 * mqtt_encode_user_prop()). `raw` is ignored when encoding. When `sub_ids`
 * is NULL and the Subscription Identifier bit is set, `sub_id` is written
 * once; the User Property bit is ignored (only `user` counts). */
typedef struct mqtt_props {
    uint64_t present;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t max_qos;
    uint8_t retain_available;
    uint8_t wildcard_available;
    uint8_t sub_id_available;
    uint8_t shared_available;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint16_t server_keep_alive;
    uint16_t n_user;
    uint16_t n_sub_ids;
    uint32_t message_expiry;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t max_packet_size;
    uint32_t sub_id;
    mqtt_bytes content_type;
    mqtt_bytes response_topic;
    mqtt_bytes correlation_data;
    mqtt_bytes assigned_client_id;
    mqtt_bytes auth_method;
    mqtt_bytes auth_data;
    mqtt_bytes response_info;
    mqtt_bytes server_reference;
    mqtt_bytes reason_string;
    mqtt_bytes raw;
    /* encode only */
    mqtt_bytes user;
    const uint32_t *sub_ids;
} mqtt_props;

/* One property as the iterator yields it. Integers in `u`; strings and
 * binary in `a`; a pair's name in `a` and value in `b`. */
typedef struct mqtt_prop {
    uint8_t id;
    uint32_t u;
    mqtt_bytes a;
    mqtt_bytes b;
} mqtt_prop;

/* Table lookups. mqtt_prop_wire_type() is MQTT_WIRE_NONE for an unknown
 * identifier. mqtt_prop_allowed() says whether `id` may appear in context
 * `ctx` (a packet type or MQTT_PROPS_WILL). */
enum mqtt_prop_wire mqtt_prop_wire_type(uint8_t id);
bool mqtt_prop_allowed(uint8_t id, uint8_t ctx);
const char *mqtt_prop_name(uint8_t id);

/* Read a property block (length varint + properties) at the start of `in`.
 * Validates identifiers (unknown → 0x81), context (not valid for the
 * packet type → 0x81, §2.2.2.2),
 * duplicates (→ 0x82, except User Property, and Subscription Identifier in
 * PUBLISH), value ranges (→ 0x82, e.g. Receive Maximum 0, Maximum Packet
 * Size 0, Topic Alias 0 → 0x94, Subscription Identifier 0 → 0x82 ...) and
 * UTF-8 (→ 0x81). On success fills `out` and sets *used to the bytes the
 * block took. Never reads past in.len. */
mqtt_rc mqtt_props_read(mqtt_bytes in, uint8_t ctx, mqtt_props *out, uint32_t *used);

/* Walk a validated block (props->raw). Returns false at the end. */
typedef struct mqtt_prop_iter {
    mqtt_bytes rest;
} mqtt_prop_iter;
void mqtt_prop_iter_init(mqtt_prop_iter *it, const mqtt_props *props);
bool mqtt_prop_next(mqtt_prop_iter *it, mqtt_prop *out);

/* Size of the User Property entries of a decoded block, and a copy of them
 * into dst (which must hold that many bytes), in their original order. The
 * result is suitable for mqtt_props.user when forwarding. */
uint32_t mqtt_props_user_size(const mqtt_props *props);
uint32_t mqtt_props_copy_user(const mqtt_props *props, uint8_t *dst);

/* Encoded size of one User Property entry, and the entry itself. */
uint32_t mqtt_user_prop_size(mqtt_bytes name, mqtt_bytes value);
uint32_t mqtt_encode_user_prop(mqtt_bytes name, mqtt_bytes value, uint8_t *dst);

/* Size of the properties without the length prefix, and the full block size
 * (varint length prefix + properties). */
uint32_t mqtt_props_body_size(const mqtt_props *props);
uint32_t mqtt_props_block_size(const mqtt_props *props);
/* Write the full block (length prefix + properties); returns bytes written. */
uint32_t mqtt_props_write(const mqtt_props *props, uint8_t *dst);

#endif
