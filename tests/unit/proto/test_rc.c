/* SPDX-License-Identifier: Apache-2.0 */
/* proto/rc.c: reason code names, 3.1.1 mappings, packet type names. */
#include "harness.h"

Test(rc, names)
{
    cr_assert_str_eq(mqtt_rc_name(MQTT_RC_SUCCESS), "success");
    cr_assert_str_eq(mqtt_rc_name(MQTT_RC_MALFORMED), "malformed");
    cr_assert_str_eq(mqtt_rc_name(MQTT_RC_PROTOCOL_ERROR), "protocol-error");
    cr_assert_str_eq(mqtt_rc_name(MQTT_RC_TOPIC_ALIAS_INVALID), "topic-alias-invalid");
    cr_assert_str_eq(mqtt_rc_name(MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED), "wildcard-sub-not-supported");
    cr_assert_str_eq(mqtt_rc_name(0x03), "unknown");
    cr_assert_str_eq(mqtt_rc_name(0xFF), "unknown");
}

Test(rc, every_enum_value_has_a_name)
{
    static const uint8_t all[] = {
        0x00, 0x01, 0x02, 0x04, 0x10, 0x11, 0x18, 0x19, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
        0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
        0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    };
    for (size_t i = 0; i < sizeof(all); i++) {
        cr_assert_str_neq(mqtt_rc_name(all[i]), "unknown", "0x%02x", all[i]);
    }
}

Test(rc, v311_connack_mapping)
{
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_SUCCESS), 0);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_UNSUPPORTED_VERSION), 1);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_CLIENT_ID_INVALID), 2);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_SERVER_UNAVAILABLE), 3);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_SERVER_BUSY), 3);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_QUOTA_EXCEEDED), 3);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_BAD_USER_OR_PASSWORD), 4);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_BAD_AUTH_METHOD), 4);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_NOT_AUTHORIZED), 5);
    cr_assert_eq(mqtt_rc_to_v311_connack(MQTT_RC_BANNED), 5);
    for (unsigned rc = 0; rc < 256; rc++) {
        cr_assert_leq(mqtt_rc_to_v311_connack((uint8_t)rc), 5);
    }
}

Test(rc, v311_suback_mapping)
{
    cr_assert_eq(mqtt_rc_to_v311_suback(MQTT_RC_SUCCESS), 0);
    cr_assert_eq(mqtt_rc_to_v311_suback(MQTT_RC_GRANTED_QOS1), 1);
    cr_assert_eq(mqtt_rc_to_v311_suback(MQTT_RC_GRANTED_QOS2), 2);
    cr_assert_eq(mqtt_rc_to_v311_suback(MQTT_RC_TOPIC_FILTER_INVALID), 0x80);
    cr_assert_eq(mqtt_rc_to_v311_suback(MQTT_RC_NOT_AUTHORIZED), 0x80);
    cr_assert_eq(mqtt_rc_to_v311_suback(MQTT_RC_SHARED_SUB_NOT_SUPPORTED), 0x80);
}

Test(rc, type_names)
{
    cr_assert_str_eq(mqtt_type_name(0), "RESERVED");
    cr_assert_str_eq(mqtt_type_name(MQTT_CONNECT), "CONNECT");
    cr_assert_str_eq(mqtt_type_name(MQTT_PUBLISH), "PUBLISH");
    cr_assert_str_eq(mqtt_type_name(MQTT_UNSUBACK), "UNSUBACK");
    cr_assert_str_eq(mqtt_type_name(MQTT_AUTH), "AUTH");
    cr_assert_str_eq(mqtt_type_name(16), "UNKNOWN");
}
