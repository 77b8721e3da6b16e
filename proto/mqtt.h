/* SPDX-License-Identifier: Apache-2.0 */
/* Shoal MQTT codec: shared types, packet kinds and reason codes.
 *
 * proto/ is a pure library: no I/O, no globals, no allocation on the decode
 * path. Decoded packets hold borrowed slices (mqtt_bytes) into the caller's
 * input buffer; they stay valid as long as that buffer does. */
#ifndef SHOAL_PROTO_MQTT_H
#define SHOAL_PROTO_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed slice. p may be NULL when len is 0. */
typedef struct mqtt_bytes {
    const uint8_t *p;
    uint32_t len;
} mqtt_bytes;

/* Protocol levels carried in CONNECT. 3 is MQTT 3.1 ("MQIsdp"). */
enum {
    MQTT_V31 = 3,
    MQTT_V311 = 4,
    MQTT_V5 = 5,
};

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* One vocabulary from decoder to wire: the MQTT 5 reason codes (§2.4).
 * Codes below 0x80 mean success; 0x80 and above are failures. */
typedef enum mqtt_rc {
    MQTT_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_CONTINUE_AUTHENTICATION = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPL_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_INVALID = 0x85,
    MQTT_RC_BAD_USER_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMIN_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUB_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAX_CONNECT_TIME = 0xA0,
    MQTT_RC_SUB_ID_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED = 0xA2,
} mqtt_rc;

/* Name of a reason code for logs, e.g. "malformed". Never NULL. */
const char *mqtt_rc_name(uint8_t rc);

/* The MQTT 3.1.1 CONNACK return code (0..5) for a CONNACK reason code. */
uint8_t mqtt_rc_to_v311_connack(uint8_t rc);

/* SUBACK failure code for 3.1.1 is 0x80 for every failure. */
uint8_t mqtt_rc_to_v311_suback(uint8_t rc);

/* Name of a packet type, e.g. "PUBLISH"; "RESERVED" for 0. */
const char *mqtt_type_name(uint8_t type);

#endif
