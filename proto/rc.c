/* SPDX-License-Identifier: Apache-2.0 */
/* Reason code and packet type names, the 3.1.1 mappings and the per-packet
 * reason code allow-lists of MQTT 5 (§2.4 and each packet's §3.x.2.1). */
#include "proto/codec_impl.h"
#include "proto/mqtt.h"

static const char *const rc_names[256] = {
    [0x00] = "success",
    [0x01] = "granted-qos1",
    [0x02] = "granted-qos2",
    [0x04] = "disconnect-with-will",
    [0x10] = "no-matching-subscribers",
    [0x11] = "no-subscription-existed",
    [0x18] = "continue-authentication",
    [0x19] = "reauthenticate",
    [0x80] = "unspecified",
    [0x81] = "malformed",
    [0x82] = "protocol-error",
    [0x83] = "implementation-specific",
    [0x84] = "unsupported-version",
    [0x85] = "client-id-invalid",
    [0x86] = "bad-user-or-password",
    [0x87] = "not-authorized",
    [0x88] = "server-unavailable",
    [0x89] = "server-busy",
    [0x8A] = "banned",
    [0x8B] = "server-shutting-down",
    [0x8C] = "bad-auth-method",
    [0x8D] = "keep-alive-timeout",
    [0x8E] = "session-taken-over",
    [0x8F] = "topic-filter-invalid",
    [0x90] = "topic-name-invalid",
    [0x91] = "packet-id-in-use",
    [0x92] = "packet-id-not-found",
    [0x93] = "receive-max-exceeded",
    [0x94] = "topic-alias-invalid",
    [0x95] = "packet-too-large",
    [0x96] = "message-rate-too-high",
    [0x97] = "quota-exceeded",
    [0x98] = "admin-action",
    [0x99] = "payload-format-invalid",
    [0x9A] = "retain-not-supported",
    [0x9B] = "qos-not-supported",
    [0x9C] = "use-another-server",
    [0x9D] = "server-moved",
    [0x9E] = "shared-sub-not-supported",
    [0x9F] = "connection-rate-exceeded",
    [0xA0] = "max-connect-time",
    [0xA1] = "sub-id-not-supported",
    [0xA2] = "wildcard-sub-not-supported",
};

const char *mqtt_rc_name(uint8_t rc)
{
    return rc_names[rc] != NULL ? rc_names[rc] : "unknown";
}

/* 3.1.1 §3.2.2.3 has six return codes; every MQTT 5 refusal folds into the
 * closest one. Failures with no 3.1.1 counterpart (quota, implementation
 * specific, ...) read as "server unavailable", the only generic one. */
uint8_t mqtt_rc_to_v311_connack(uint8_t rc)
{
    switch (rc) {
    case MQTT_RC_UNSUPPORTED_VERSION:
        return 1;
    case MQTT_RC_CLIENT_ID_INVALID:
        return 2;
    case MQTT_RC_BAD_USER_OR_PASSWORD:
    case MQTT_RC_BAD_AUTH_METHOD:
        return 4;
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_BANNED:
        return 5;
    default:
        return rc < 0x80 ? 0 : 3;
    }
}

/* 3.1.1 §3.9.3: granted QoS 0..2, or 0x80 for any failure. */
uint8_t mqtt_rc_to_v311_suback(uint8_t rc)
{
    return rc <= MQTT_RC_GRANTED_QOS2 ? rc : 0x80;
}

static const char *const type_names[16] = {
    "RESERVED",  "CONNECT", "CONNACK",     "PUBLISH",  "PUBACK",  "PUBREC",   "PUBREL",     "PUBCOMP",
    "SUBSCRIBE", "SUBACK",  "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
};

const char *mqtt_type_name(uint8_t type)
{
    return type < 16 ? type_names[type] : "UNKNOWN";
}

/* Reason codes each packet may carry (MQTT 5). §3.2.2.2: */
static const uint8_t connack_rcs[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                                      0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
/* §3.4.2.1 and §3.5.2.1 */
static const uint8_t puback_rcs[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
/* §3.6.2.1 and §3.7.2.1 */
static const uint8_t pubrel_rcs[] = {0x00, 0x92};
/* §3.9.3 */
static const uint8_t suback_rcs[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
/* §3.11.3 */
static const uint8_t unsuback_rcs[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
/* §3.14.2.1 */
static const uint8_t disconnect_rcs[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                         0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                         0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
/* §3.15.2.1 */
static const uint8_t auth_rcs[] = {0x00, 0x18, 0x19};

typedef struct rc_list {
    const uint8_t *rcs;
    size_t n;
} rc_list;

#define RC_LIST(a)     \
    {                  \
        (a), sizeof(a) \
    }

/* Indexed by packet type; types without a reason code have an empty list. */
static const rc_list rc_lists[16] = {
    [MQTT_CONNACK] = RC_LIST(connack_rcs),   [MQTT_PUBACK] = RC_LIST(puback_rcs),
    [MQTT_PUBREC] = RC_LIST(puback_rcs),     [MQTT_PUBREL] = RC_LIST(pubrel_rcs),
    [MQTT_PUBCOMP] = RC_LIST(pubrel_rcs),    [MQTT_SUBACK] = RC_LIST(suback_rcs),
    [MQTT_UNSUBACK] = RC_LIST(unsuback_rcs), [MQTT_DISCONNECT] = RC_LIST(disconnect_rcs),
    [MQTT_AUTH] = RC_LIST(auth_rcs),
};

bool mqtt__rc_allowed(uint8_t type, uint8_t rc)
{
    if (type >= 16) {
        return false;
    }
    const rc_list *l = &rc_lists[type];
    for (size_t i = 0; i < l->n; i++) {
        if (l->rcs[i] == rc) {
            return true;
        }
    }
    return false;
}
