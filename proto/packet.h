/* SPDX-License-Identifier: Apache-2.0 */
/* Decoded MQTT packets and the decoders/encoders for every packet kind.
 *
 * Decoders take one complete frame from mqtt_frame_parse() and return an
 * mqtt_rc: MQTT_RC_SUCCESS, or the reason code the spec requires for the
 * refusal (0x81 malformed, 0x82 protocol error, 0x84 unsupported version,
 * 0x94 topic alias invalid ...). A truncated body is 0x81, never "need
 * more". Decoders never allocate and never read past the frame; every slice
 * they produce borrows from the frame's buffer.
 *
 * Encoders come in pairs: mqtt_size_X() gives the exact size of the whole
 * packet (fixed header included) and mqtt_encode_X() writes it into a
 * caller buffer of at least that size and returns the bytes written. */
#ifndef SHOAL_PROTO_PACKET_H
#define SHOAL_PROTO_PACKET_H

#include "proto/frame.h"
#include "proto/mqtt.h"
#include "proto/props.h"

typedef struct mqtt_connect {
    uint8_t version;          /* 3, 4 or 5 */
    mqtt_bytes protocol_name; /* "MQTT" or "MQIsdp" */
    bool clean_start;
    uint16_t keepalive;
    mqtt_props props;
    mqtt_bytes client_id;
    bool has_will;
    uint8_t will_qos;
    bool will_retain;
    mqtt_props will_props;
    mqtt_bytes will_topic;
    mqtt_bytes will_payload;
    bool has_username;
    mqtt_bytes username;
    bool has_password;
    mqtt_bytes password;
} mqtt_connect;

typedef struct mqtt_connack {
    bool session_present;
    uint8_t rc; /* v5 reason code; for 3.1.1 the 0..5 return code */
    mqtt_props props;
} mqtt_connack;

typedef struct mqtt_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    mqtt_bytes topic;   /* may be empty in v5 when a Topic Alias is present */
    uint16_t packet_id; /* only when qos > 0 */
    mqtt_props props;
    mqtt_bytes payload;
} mqtt_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
typedef struct mqtt_ack {
    uint8_t type;
    uint16_t packet_id;
    uint8_t rc; /* 0 when absent */
    mqtt_props props;
} mqtt_ack;

/* One entry of a SUBSCRIBE payload. */
typedef struct mqtt_sub {
    mqtt_bytes filter;
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling; /* 0, 1 or 2 */
} mqtt_sub;

typedef struct mqtt_subscribe {
    uint16_t packet_id;
    mqtt_props props;
    mqtt_bytes entries; /* validated; walk with mqtt_sub_next() */
    uint32_t count;
} mqtt_subscribe;

typedef struct mqtt_unsubscribe {
    uint16_t packet_id;
    mqtt_props props;
    mqtt_bytes entries; /* validated; walk with mqtt_unsub_next() */
    uint32_t count;
} mqtt_unsubscribe;

/* SUBACK and UNSUBACK (3.1.1 UNSUBACK has no codes). */
typedef struct mqtt_suback {
    uint16_t packet_id;
    mqtt_props props;
    mqtt_bytes codes; /* one reason code byte per filter */
} mqtt_suback;

/* DISCONNECT and AUTH. */
typedef struct mqtt_reason {
    uint8_t rc;
    mqtt_props props;
} mqtt_reason;

typedef struct mqtt_packet {
    uint8_t type;
    union {
        mqtt_connect connect;
        mqtt_connack connack;
        mqtt_publish publish;
        mqtt_ack ack;
        mqtt_subscribe subscribe;
        mqtt_unsubscribe unsubscribe;
        mqtt_suback suback; /* SUBACK, UNSUBACK */
        mqtt_reason reason; /* DISCONNECT, AUTH */
    } u;
} mqtt_packet;

/* Cursors over a validated SUBSCRIBE / UNSUBSCRIBE payload. `cursor`
 * starts as the packet's `entries` and is advanced; false at the end. */
bool mqtt_sub_next(mqtt_bytes *cursor, uint8_t version, mqtt_sub *out);
bool mqtt_unsub_next(mqtt_bytes *cursor, mqtt_bytes *filter);

/* Decoders. `version` is the connection's protocol level (CONNECT's own
 * decoder reads it from the packet; on 0x84 out->version is still set to
 * the level the client asked for). */
mqtt_rc mqtt_decode_connect(const mqtt_frame *f, mqtt_connect *out);
mqtt_rc mqtt_decode_connack(const mqtt_frame *f, uint8_t version, mqtt_connack *out);
mqtt_rc mqtt_decode_publish(const mqtt_frame *f, uint8_t version, mqtt_publish *out);
mqtt_rc mqtt_decode_ack(const mqtt_frame *f, uint8_t version, mqtt_ack *out);
mqtt_rc mqtt_decode_subscribe(const mqtt_frame *f, uint8_t version, mqtt_subscribe *out);
mqtt_rc mqtt_decode_unsubscribe(const mqtt_frame *f, uint8_t version, mqtt_unsubscribe *out);
mqtt_rc mqtt_decode_suback(const mqtt_frame *f, uint8_t version, mqtt_suback *out);
mqtt_rc mqtt_decode_unsuback(const mqtt_frame *f, uint8_t version, mqtt_suback *out);
mqtt_rc mqtt_decode_ping(const mqtt_frame *f); /* PINGREQ, PINGRESP */
mqtt_rc mqtt_decode_disconnect(const mqtt_frame *f, uint8_t version, mqtt_reason *out);
mqtt_rc mqtt_decode_auth(const mqtt_frame *f, uint8_t version, mqtt_reason *out);

/* Any packet: checks the fixed-header flags for the type, then runs the
 * type's decoder. CONNECT ignores `version`. */
mqtt_rc mqtt_decode(const mqtt_frame *f, uint8_t version, mqtt_packet *out);

/* Encoders. Each size is of the whole packet. */
size_t mqtt_size_connect(const mqtt_connect *p);
size_t mqtt_encode_connect(const mqtt_connect *p, uint8_t *dst);
size_t mqtt_size_connack(const mqtt_connack *p, uint8_t version);
size_t mqtt_encode_connack(const mqtt_connack *p, uint8_t version, uint8_t *dst);
size_t mqtt_size_publish(const mqtt_publish *p, uint8_t version);
size_t mqtt_encode_publish(const mqtt_publish *p, uint8_t version, uint8_t *dst);
/* Everything of a PUBLISH but the payload bytes (the remaining length does
 * count the payload), so one payload can be shared by many subscribers. */
size_t mqtt_size_publish_head(const mqtt_publish *p, uint8_t version);
size_t mqtt_encode_publish_head(const mqtt_publish *p, uint8_t version, uint8_t *dst);
/* v5: rc 0 with no properties is written in the short form (§3.4.2.1). */
size_t mqtt_size_ack(const mqtt_ack *p, uint8_t version);
size_t mqtt_encode_ack(const mqtt_ack *p, uint8_t version, uint8_t *dst);
/* SUBSCRIBE entries come from an array here. */
size_t mqtt_size_subscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_sub *subs, uint32_t n,
                           uint8_t version);
size_t mqtt_encode_subscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_sub *subs, uint32_t n,
                             uint8_t version, uint8_t *dst);
size_t mqtt_size_unsubscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_bytes *filters, uint32_t n,
                             uint8_t version);
size_t mqtt_encode_unsubscribe(uint16_t packet_id, const mqtt_props *props, const mqtt_bytes *filters, uint32_t n,
                               uint8_t version, uint8_t *dst);
size_t mqtt_size_suback(const mqtt_suback *p, uint8_t version);
size_t mqtt_encode_suback(const mqtt_suback *p, uint8_t version, uint8_t *dst);
/* 3.1.1 UNSUBACK carries only the packet id; codes are ignored. */
size_t mqtt_size_unsuback(const mqtt_suback *p, uint8_t version);
size_t mqtt_encode_unsuback(const mqtt_suback *p, uint8_t version, uint8_t *dst);
/* PINGREQ / PINGRESP: 2 bytes. */
size_t mqtt_encode_ping(uint8_t type, uint8_t *dst);
/* 3.1.1 DISCONNECT has no body; v5 rc 0 without properties uses the short form. */
size_t mqtt_size_disconnect(const mqtt_reason *p, uint8_t version);
size_t mqtt_encode_disconnect(const mqtt_reason *p, uint8_t version, uint8_t *dst);
size_t mqtt_size_auth(const mqtt_reason *p);
size_t mqtt_encode_auth(const mqtt_reason *p, uint8_t *dst);

/* Any packet from an mqtt_packet (SUBSCRIBE/UNSUBSCRIBE use their validated
 * `entries` slices verbatim). */
size_t mqtt_size(const mqtt_packet *p, uint8_t version);
size_t mqtt_encode(const mqtt_packet *p, uint8_t version, uint8_t *dst);

#endif
