/* SPDX-License-Identifier: Apache-2.0 */
/* proto/decode_connect.c: CONNECT and CONNACK. */
#include "harness.h"
#include "proto/props.h"

ParameterizedTestParameters(decode_connect, connect_corruption)
{
    TABLE_PARAMS(corrupt_connect);
}

ParameterizedTest(size_t *i, decode_connect, connect_corruption)
{
    check_bad(&corrupt_connect[*i]);
}

ParameterizedTestParameters(decode_connect, connack_corruption)
{
    TABLE_PARAMS(corrupt_connack);
}

ParameterizedTest(size_t *i, decode_connect, connack_corruption)
{
    check_bad(&corrupt_connack[*i]);
}

Test(decode_connect, v311_minimal_fields)
{
    mqtt_packet p;
    DECODE_VEC(connect_v311_min, &p);
    const mqtt_connect *c = &p.u.connect;
    cr_assert_eq(c->version, MQTT_V311);
    BYTES_IS(c->protocol_name, "MQTT");
    cr_assert(c->clean_start);
    cr_assert_eq(c->keepalive, 60);
    BYTES_IS(c->client_id, "c1");
    cr_assert(!c->has_will && !c->has_username && !c->has_password);
    cr_assert_eq(c->props.present, 0);
}

Test(decode_connect, v31_mqisdp_with_will_user_password)
{
    mqtt_packet p;
    DECODE_VEC(connect_v31_full, &p);
    const mqtt_connect *c = &p.u.connect;
    cr_assert_eq(c->version, MQTT_V31);
    BYTES_IS(c->protocol_name, "MQIsdp");
    cr_assert(c->clean_start);
    cr_assert_eq(c->keepalive, 10);
    BYTES_IS(c->client_id, "abc");
    cr_assert(c->has_will);
    cr_assert_eq(c->will_qos, 1);
    cr_assert(c->will_retain);
    BYTES_IS(c->will_topic, "w/t");
    BYTES_IS(c->will_payload, "bye");
    cr_assert(c->has_username && c->has_password);
    BYTES_IS(c->username, "u");
    BYTES_IS(c->password, "pw");
}

Test(decode_connect, v311_full_binary_password)
{
    mqtt_packet p;
    DECODE_VEC(connect_v311_full, &p);
    const mqtt_connect *c = &p.u.connect;
    cr_assert_eq(c->version, MQTT_V311);
    BYTES_IS(c->client_id, "id");
    BYTES_IS(c->will_topic, "a/b");
    BYTES_IS(c->will_payload, "x");
    BYTES_IS(c->username, "user");
    cr_assert_eq(c->password.len, 2);
    cr_assert_eq(c->password.p[0], 0x00, "passwords are binary: NUL allowed");
    cr_assert_eq(c->password.p[1], 0xFF);
}

Test(decode_connect, v5_connect_properties)
{
    mqtt_packet p;
    DECODE_VEC(connect_v5_props, &p);
    const mqtt_connect *c = &p.u.connect;
    const mqtt_props *pr = &c->props;
    cr_assert_eq(c->version, MQTT_V5);
    cr_assert_eq(c->keepalive, 30);
    cr_assert_eq(pr->session_expiry, 3600);
    BYTES_IS(pr->auth_method, "SCR");
    cr_assert(mqtt_props_has(pr, MQTT_PROP_REQUEST_PROBLEM_INFO));
    cr_assert_eq(pr->request_problem_info, 0);
    cr_assert_eq(pr->request_response_info, 1);
    cr_assert_eq(pr->receive_max, 20);
    cr_assert_eq(pr->topic_alias_max, 10);
    cr_assert_eq(pr->max_packet_size, 4096);
    cr_assert_eq(pr->n_user, 1);
    BYTES_IS(c->client_id, "v5");
}

Test(decode_connect, v5_will_properties)
{
    mqtt_packet p;
    DECODE_VEC(connect_v5_will, &p);
    const mqtt_connect *c = &p.u.connect;
    const mqtt_props *w = &c->will_props;
    cr_assert(c->has_will);
    cr_assert_eq(c->will_qos, 2);
    cr_assert(!c->will_retain);
    cr_assert_eq(c->props.present, 0);
    cr_assert_eq(w->payload_format, 1);
    cr_assert_eq(w->message_expiry, 60);
    BYTES_IS(w->content_type, "text");
    BYTES_IS(w->response_topic, "r/t");
    cr_assert_eq(w->correlation_data.len, 2);
    cr_assert_eq(w->will_delay, 5);
    cr_assert_eq(w->n_user, 1);
    BYTES_IS(c->will_topic, "will/t");
    BYTES_IS(c->will_payload, "hello");
    BYTES_IS(c->username, "u");
    BYTES_IS(c->password, "p");
}

Test(decode_connect, v5_password_without_username_allowed)
{
    mqtt_packet p;
    DECODE_VEC(connect_v5_password_only, &p);
    cr_assert(!p.u.connect.has_username);
    cr_assert(p.u.connect.has_password);
    BYTES_IS(p.u.connect.password, "s");
}

Test(decode_connect, empty_client_id_is_not_a_decode_error)
{
    mqtt_packet p;
    DECODE_VEC(connect_v5_password_only, &p);
    cr_assert_eq(p.u.connect.client_id.len, 0);
}

Test(decode_connect, unsupported_version_reports_requested_level)
{
    static const uint8_t b[] = {0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x07, 0x02, 0x00, 0x3C, 0x00, 0x00};
    mqtt_frame f;
    mqtt_connect c;
    frame_exact(b, sizeof(b), &f);
    cr_assert_eq(mqtt_decode_connect(&f, &c), MQTT_RC_UNSUPPORTED_VERSION);
    cr_assert_eq(c.version, 7);
}

/* §3.1.2.1: another protocol name is another protocol, not an unsupported
 * MQTT version: no dialect to answer in, so the node closes silently. */
Test(decode_connect, unknown_name_is_not_mqtt)
{
    static const uint8_t b[] = {0x10, 0x0C, 0x00, 0x04, 'm', 'q', 't', 't', 0x05, 0x02, 0x00, 0x3C, 0x00, 0x00};
    mqtt_frame f;
    mqtt_connect c;
    frame_exact(b, sizeof(b), &f);
    cr_assert_eq(mqtt_decode_connect(&f, &c), MQTT_RC_MALFORMED);
    cr_assert_eq(c.version, 0);
}

Test(decode_connect, dispatcher_ignores_connection_version)
{
    mqtt_frame f;
    mqtt_packet p;
    frame_exact(v_connect_v5_props, sizeof(v_connect_v5_props), &f);
    cr_assert_eq(mqtt_decode(&f, 0, &p), MQTT_RC_SUCCESS);
    cr_assert_eq(p.u.connect.props.session_expiry, 3600);
}

/* Issue 15 item 15: a client id with control characters would forge log
 * lines; §3.1.3.1 lets the server reject it (0x85, 3.1.1 code 2). */
Test(decode_connect, client_id_control_characters_refused)
{
    static const uint8_t b[] = {0x10, 0x0E, 0x00, 0x04, 'M',  'Q',  'T',  'T',
                                0x04, 0x02, 0x00, 0x3C, 0x00, 0x02, 0x01, 0x7F};
    mqtt_frame f;
    mqtt_packet p;
    frame_exact(b, sizeof(b), &f);
    cr_assert_eq(mqtt_decode(&f, 4, &p), MQTT_RC_CLIENT_ID_INVALID);
}

/* Printable UTF-8 beyond ASCII stays a valid client id. */
Test(decode_connect, client_id_non_ascii_accepted)
{
    static const uint8_t b[] = {0x10, 0x0F, 0x00, 0x04, 'M',  'Q',  'T',  'T', 0x04,
                                0x02, 0x00, 0x3C, 0x00, 0x03, 0xC3, 0xA9, 'x'};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 4, &p);
    cr_assert_eq(p.u.connect.client_id.len, 3);
}

Test(decode_connect, will_qos_2_without_retain)
{
    /* Will flag, QoS 2: 0x04 | 0x10. */
    static const uint8_t b[] = {0x10, 0x11, 0x00, 0x04, 'M',  'Q',  'T', 'T',  0x04, 0x14,
                                0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 't', 0x00, 0x00};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 4, &p);
    cr_assert_eq(p.u.connect.will_qos, 2);
    cr_assert(!p.u.connect.clean_start);
    cr_assert_eq(p.u.connect.will_payload.len, 0);
}

Test(decode_connect, v5_will_delay_only_in_will_context)
{
    /* Will Delay Interval in the CONNECT properties: not valid for the
     * packet type, so malformed (§2.2.2.2). */
    static const uint8_t b[] = {0x10, 0x12, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05, 0x02,
                                0x00, 0x3C, 0x05, 0x18, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
    mqtt_frame f;
    mqtt_packet p;
    frame_exact(b, sizeof(b), &f);
    cr_assert_eq(mqtt_decode(&f, 5, &p), MQTT_RC_MALFORMED);
}

Test(decode_connect, connack_v311_fields)
{
    mqtt_packet p;
    DECODE_VEC(connack_v311, &p);
    cr_assert(p.u.connack.session_present);
    cr_assert_eq(p.u.connack.rc, 0);
    DECODE_VEC(connack_v311_refused, &p);
    cr_assert(!p.u.connack.session_present);
    cr_assert_eq(p.u.connack.rc, 5);
}

Test(decode_connect, connack_v5_every_property)
{
    mqtt_packet p;
    DECODE_VEC(connack_v5_props, &p);
    const mqtt_props *pr = &p.u.connack.props;
    cr_assert(!p.u.connack.session_present);
    cr_assert_eq(p.u.connack.rc, 0);
    BYTES_IS(pr->assigned_client_id, "abc");
    cr_assert_eq(pr->server_keep_alive, 60);
    BYTES_IS(pr->response_info, "ri");
    BYTES_IS(pr->reason_string, "ok");
    cr_assert_eq(pr->receive_max, 10);
    cr_assert_eq(pr->topic_alias_max, 5);
    cr_assert_eq(pr->max_qos, 1);
    cr_assert(mqtt_props_has(pr, MQTT_PROP_RETAIN_AVAILABLE));
    cr_assert_eq(pr->retain_available, 0);
    cr_assert_eq(pr->max_packet_size, 65536);
    cr_assert_eq(pr->wildcard_available, 1);
    cr_assert_eq(pr->sub_id_available, 1);
    cr_assert_eq(pr->shared_available, 0);
    cr_assert_eq(pr->n_user, 1);
}

Test(decode_connect, connack_v5_refusal)
{
    mqtt_packet p;
    DECODE_VEC(connack_v5_refused, &p);
    cr_assert_eq(p.u.connack.rc, MQTT_RC_NOT_AUTHORIZED);
}
