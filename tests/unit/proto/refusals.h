/* SPDX-License-Identifier: Apache-2.0 */
/* Every kind of refusal the decoders make, one row each, with the spec's
 * own words for its reason code beside it (MQTT 5.0 unless a row says
 * 3.1.1). The point of the table is Malformed (0x81) against Protocol
 * Error (0x82): §4.13 lets the words of each rule decide, so a row whose
 * rule says "Malformed Packet" must give 0x81 and one that says "Protocol
 * Error" 0x82. Run by tests/unit/proto/test_decode.c (decode,
 * refusal_words); the main cases are also sent over a socket by
 * tests/integration/test_bad_input.py (test_refusal_table). */
#ifndef SHOAL_TESTS_PROTO_REFUSALS_H
#define SHOAL_TESTS_PROTO_REFUSALS_H

#include "vectors.h"

typedef struct refusal {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    uint8_t version;
    uint8_t rc;
    const char *words; /* the rule, quoted or closely paraphrased */
} refusal;

#define MQTX5 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x05

static const refusal refusals[] __attribute__((unused)) = {
    /* ---- fixed header and framing ---- */
    {"type_0", B(0x00, 0x00), 5, 0x81, "§2.1.2: packet type 0 is Reserved, Forbidden"},
    {"puback_flags", B(0x41, 0x02, 0x00, 0x01), 5, 0x81,
     "§2.1.3: If invalid flags are received it is a Malformed Packet"},
    {"pubrel_flags", B(0x60, 0x02, 0x00, 0x01), 5, 0x81,
     "§2.1.3: If invalid flags are received it is a Malformed Packet"},
    {"pingreq_body", B(0xC0, 0x01, 0x00), 5, 0x81, "§3.12: PINGREQ has no variable header and no payload"},
    /* ---- UTF-8 strings (§1.5.4) ---- */
    {"topic_ill_formed", B(0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, 0x00), 5, 0x81,
     "§1.5.4 [MQTT-1.5.4-1]: ill-formed UTF-8 ... it is a Malformed Packet"},
    {"topic_u0000", B(0x30, 0x05, 0x00, 0x02, 'a', 0x00, 0x00), 5, 0x81,
     "§1.5.4 [MQTT-1.5.4-2]: receives a Control Packet containing U+0000 it is a Malformed Packet"},
    {"topic_newline", B(0x30, 0x05, 0x00, 0x03, 'a', '\n', 'b'), 4, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: U+0001..U+001F ... MAY treat it as a Malformed Packet (Shoal does)"},
    {"topic_u0001_v5", B(0x30, 0x05, 0x00, 0x02, 'a', 0x01, 0x00), 5, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: control characters MAY be a Malformed Packet"},
    {"topic_del", B(0x30, 0x04, 0x00, 0x02, 'a', 0x7F), 4, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: U+007F..U+009F MAY be a Malformed Packet"},
    {"topic_u009b", B(0x30, 0x05, 0x00, 0x02, 0xC2, 0x9B, 0x00), 5, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: U+007F..U+009F (here CSI) MAY be a Malformed Packet"},
    {"filter_newline", B(0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '\n', 'b', 0x00), 4, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: a topic filter with a control character is malformed"},
    {"unsubscribe_filter_del", B(0xA2, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 0x7F), 5, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: a topic filter with a control character is malformed"},
    {"will_topic_newline",
     B(0x10, 0x15, MQTT5, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x01, 'c', 0x00, 0x00, 0x02, 't', '\n', 0x00, 0x00), 5, 0x81,
     "§1.5.4 [MQTT-1.5.4-3]: the will topic with a control character is malformed"},
    {"client_id_newline", B(0x10, 0x10, MQTT5, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x03, 'a', '\n', 'b'), 5, 0x85,
     "§3.1.3.1: If the Server rejects the ClientID it MAY respond ... 0x85 (Client Identifier not valid)"},
    {"client_id_del_v311", B(0x10, 0x0E, MQTT4, 0x02, 0x00, 0x3C, 0x00, 0x02, 'a', 0x7F), 4, 0x85,
     "3.1.1 §3.1.3.1 [MQTT-3.1.3-9]: If the Server rejects the ClientId it MUST respond ... 0x02"},
    {"client_id_u0085", B(0x10, 0x0F, MQTT5, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x02, 0xC2, 0x85), 5, 0x85,
     "§3.1.3.1: 0x85 (Client Identifier not valid); U+0085 is NEL, a line break"},
    {"username_cr_v311", B(0x10, 0x11, MQTT4, 0x82, 0x00, 0x3C, 0x00, 0x01, 'c', 0x00, 0x02, 'u', '\r'), 4, 0x86,
     "3.1.1 table 3.1 code 4 / v5 0x86 Bad User Name or Password: the data in the user name or "
     "password is malformed"},
    {"username_esc_v5", B(0x10, 0x12, MQTT5, 0x82, 0x00, 0x3C, 0x00, 0x00, 0x01, 'c', 0x00, 0x02, 'u', 0x1B), 5, 0x86,
     "§3.2.2.2 0x86 Bad User Name or Password: The data in the user name or password is malformed"},
    /* ---- properties (§2.2.2) ---- */
    {"unknown_property", B(0x30, 0x06, 0x00, 0x01, 't', 0x02, 0x7F, 0x00), 5, 0x81,
     "§2.2.2.2: an Identifier which is not valid ... is a Malformed Packet"},
    {"props_past_body", B(0x30, 0x06, 0x00, 0x01, 't', 0x09, 0x01, 0x01), 5, 0x81,
     "§2.2.2.1 / §4.13: a Property Length past the packet cannot be parsed: Malformed"},
    {"wildcard_available_in_subscribe", B(0x82, 0x09, 0x00, 0x01, 0x02, 0x28, 0x01, 0x00, 0x01, 't', 0x00), 5, 0x81,
     "§2.2.2.2: an Identifier which is not valid for its packet type ... is a Malformed Packet"},
    {"server_reference_in_subscribe", B(0x82, 0x0B, 0x00, 0x01, 0x04, 0x1C, 0x00, 0x01, 's', 0x00, 0x01, 't', 0x00), 5,
     0x81, "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"server_reference_in_unsubscribe", B(0xA2, 0x0A, 0x00, 0x01, 0x04, 0x1C, 0x00, 0x01, 's', 0x00, 0x01, 't'), 5,
     0x81, "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"wildcard_available_in_unsubscribe", B(0xA2, 0x08, 0x00, 0x01, 0x02, 0x28, 0x01, 0x00, 0x01, 't'), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"sub_id_in_unsubscribe", B(0xA2, 0x08, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x01, 't'), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"topic_alias_in_connect", B(0x10, 0x10, MQTT5, 0x02, 0x00, 0x3C, 0x03, 0x23, 0x00, 0x01, 0x00, 0x00), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"session_expiry_in_will",
     B(0x10, 0x18, MQTT5, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 't', 0x00,
       0x00),
     5, 0x81, "§2.2.2.2 / §3.1.3.2: not a Will Property: Malformed Packet"},
    {"session_expiry_in_publish", B(0x30, 0x09, 0x00, 0x01, 't', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"topic_alias_in_puback", B(0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"topic_alias_in_disconnect", B(0xE0, 0x05, 0x00, 0x03, 0x23, 0x00, 0x01), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"receive_max_in_auth", B(0xF0, 0x05, 0x18, 0x03, 0x21, 0x00, 0x01), 5, 0x81,
     "§2.2.2.2: not valid for its packet type: Malformed Packet"},
    {"duplicate_session_expiry",
     B(0x10, 0x17, MQTT5, 0x02, 0x00, 0x3C, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x01, 0x11, 0x00, 0x00, 0x00, 0x02, 0x00,
       0x00),
     5, 0x82, "§3.1.2.11.2: It is a Protocol Error to include the Session Expiry Interval more than once"},
    {"duplicate_message_expiry", B(0x30, 0x0E, 0x00, 0x01, 't', 0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2), 5, 0x82,
     "§3.3.2.3.3: It is a Protocol Error to include the Message Expiry Interval more than once"},
    {"duplicate_reason_string", B(0x50, 0x0A, 0x00, 0x01, 0x80, 0x06, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00), 5, 0x82,
     "§3.5.2.2.2: It is a Protocol Error to include the Reason String more than once"},
    {"duplicate_auth_method", B(0xF0, 0x0C, 0x18, 0x0A, 0x15, 0x00, 0x03, 'a', 'b', 'c', 0x15, 0x00, 0x01, 'd'), 5,
     0x82, "§3.15.2.2.2: It is a Protocol Error to include Authentication Method more than once"},
    {"receive_max_0", B(0x10, 0x10, MQTT5, 0x02, 0x00, 0x3C, 0x03, 0x21, 0x00, 0x00, 0x00, 0x00), 5, 0x82,
     "§3.1.2.11.3: It is a Protocol Error ... for it to have the value 0"},
    {"max_packet_size_0", B(0x10, 0x12, MQTT5, 0x02, 0x00, 0x3C, 0x05, 0x27, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00), 5,
     0x82, "§3.1.2.11.4: It is a Protocol Error ... for the value to be set to zero"},
    {"request_problem_info_2", B(0x10, 0x0F, MQTT5, 0x02, 0x00, 0x3C, 0x02, 0x17, 0x02, 0x00, 0x00), 5, 0x82,
     "§3.1.2.11.7: It is a Protocol Error ... to have a value other than 0 or 1"},
    {"auth_data_without_method", B(0x10, 0x11, MQTT5, 0x02, 0x00, 0x3C, 0x04, 0x16, 0x00, 0x01, 0xAB, 0x00, 0x00), 5,
     0x82,
     "§3.1.2.11.10: It is a Protocol Error to include Authentication Data if there is no "
     "Authentication Method"},
    {"subscription_id_0", B(0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, 't', 0x00), 5, 0x82,
     "§3.8.2.1.2: It is a Protocol Error if the Subscription Identifier has a value of 0"},
    {"duplicate_subscription_id", B(0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, 't', 0x00), 5,
     0x82, "§3.8.2.1.2: It is a Protocol Error to include the Subscription Identifier more than once"},
    {"topic_alias_0", B(0x30, 0x07, 0x00, 0x01, 't', 0x03, 0x23, 0x00, 0x00), 5, 0x94,
     "§3.3.2.3.4 [MQTT-3.3.2-8]: A Topic Alias of 0 is not permitted ... 0x94 Topic Alias invalid"},
    /* ---- CONNECT ---- */
    {"protocol_name_mqtx", B(0x10, 0x0D, MQTX5, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x00), 5, 0x81,
     "§3.1.2.1: If the Protocol Name is incorrect the Server MAY disconnect the Client: no "
     "CONNACK (version 0 tells the node)"},
    {"protocol_level_6", B(0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06, 0x02, 0x00, 0x3C, 0x00, 0x00), 4, 0x84,
     "§3.1.2.2: MAY send a CONNACK packet with Reason Code 0x84 (Unsupported Protocol Version)"},
    {"will_topic_wildcard_v5",
     B(0x10, 0x14, MQTT5, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x01, 'c', 0x00, 0x00, 0x01, '#', 0x00, 0x00), 5, 0x90,
     "§3.2.2.2 0x90 Topic Name invalid: the Will Topic is a Topic Name, which holds no wildcard"},
    {"will_topic_wildcard_v311", B(0x10, 0x11, MQTT4, 0x06, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x01, '#', 0x00, 0x00), 4,
     0x81,
     "3.1.1 §3.1.4 [MQTT-3.1.4-1]: a CONNECT that does not conform is closed without a CONNACK "
     "([MQTT-3.2.2-6]: no return code applies)"},
    {"connect_reserved_flag", B(0x10, 0x0C, MQTT4, 0x03, 0x00, 0x3C, 0x00, 0x00), 4, 0x81,
     "§3.1.2.3 [MQTT-3.1.2-3]: If the reserved flag is not 0 it is a Malformed Packet"},
    {"will_qos_3", B(0x10, 0x11, MQTT4, 0x1E, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x01, 't', 0x00, 0x00), 4, 0x81,
     "§3.1.2.6: A value of 3 (0x03) is a Malformed Packet"},
    {"password_without_username_v311", B(0x10, 0x0F, MQTT4, 0x42, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x01, 'p'), 4, 0x81,
     "3.1.1 §3.1.2.9 [MQTT-3.1.2-22]: If the User Name Flag is set to 0, the Password Flag MUST "
     "be set to 0; §3.1.4-1: close without CONNACK"},
    /* ---- PUBLISH ---- */
    {"publish_qos_3", B(0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01), 5, 0x81,
     "§3.3.1.2: a PUBLISH packet which has both QoS bits set to 1 ... is a Malformed Packet"},
    {"empty_topic_without_alias", B(0x30, 0x03, 0x00, 0x00, 0x00), 5, 0x82,
     "§3.3.2.3.4: It is a Protocol Error if the Topic Name is zero length and there is no Topic "
     "Alias"},
    {"payload_not_utf8", B(0x30, 0x08, 0x00, 0x01, 't', 0x02, 0x01, 0x01, 0xC3, 0x28), 5, 0x99,
     "§3.3.2.3.2: ... MAY send ... DISCONNECT with Reason Code of 0x99 (Payload format invalid)"},
    /* ---- SUBSCRIBE / UNSUBSCRIBE ---- */
    {"subscribe_reserved_option_bits", B(0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 't', 0x40), 5, 0x81,
     "§3.8.3.1 [MQTT-3.8.3-5]: treat a SUBSCRIBE packet as malformed if any of Reserved bits "
     "in the Payload are non-zero"},
    {"subscribe_qos_3", B(0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 't', 0x03), 5, 0x82,
     "§3.8.3.1: It is a Protocol Error if the Maximum QoS field has the value 3"},
    {"subscribe_retain_handling_3", B(0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 't', 0x30), 5, 0x82,
     "§3.8.3.1: It is a Protocol Error to send a Retain Handling value of 3"},
    {"no_local_on_shared",
     B(0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 't', 0x04), 5, 0x82,
     "§3.8.3.1 [MQTT-3.8.3-4]: It is a Protocol Error to set the No Local bit to 1 on a Shared "
     "Subscription"},
    {"subscribe_no_payload", B(0x82, 0x03, 0x00, 0x01, 0x00), 5, 0x82,
     "§3.8.3: A SUBSCRIBE packet with no Payload is a Protocol Error"},
    {"unsubscribe_no_payload", B(0xA2, 0x03, 0x00, 0x01, 0x00), 5, 0x82,
     "§3.10.3: An UNSUBSCRIBE packet with no Payload is a Protocol Error"},
};

#endif
