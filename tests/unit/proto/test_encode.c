/* SPDX-License-Identifier: Apache-2.0 */
/* proto/encode.c: every encoder, sizes equal to bytes written, and round
 * trips both ways (vector → decode → encode → same bytes; struct → encode →
 * decode → same struct). */
#include <stdlib.h>

#include "harness.h"
#include "proto/props.h"

#define BUF 4096

static mqtt_bytes S(const char *s)
{
    mqtt_bytes b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

/* Frame and decode an encoding we just produced, asserting its size. */
static void redecode(const uint8_t *b, size_t len, uint8_t version, mqtt_packet *out)
{
    decode_ok(b, len, version, out);
}

/* Re-encode a decoded packet; returns the encoded length. */
static size_t reencode(mqtt_packet *p, uint8_t version, uint8_t *dst)
{
    static uint8_t ubuf[BUF];
    static uint32_t ids[BUF];
    packet_for_encode(p, ubuf, ids);
    size_t size = mqtt_size(p, version);
    size_t n = mqtt_encode(p, version, dst);
    cr_assert_eq(size, n, "mqtt_size %zu != written %zu", size, n);
    return n;
}

ParameterizedTestParameters(encode, vector_reencodes_to_same_bytes)
{
    VEC_PARAMS();
}

ParameterizedTest(size_t *vi, encode, vector_reencodes_to_same_bytes)
{
    const vec *v = &vectors[*vi];
    mqtt_packet p;
    uint8_t out[BUF];
    decode_ok(v->bytes, v->len, v->version, &p);
    size_t n = reencode(&p, v->version, out);
    if (v->canonical) {
        cr_assert_eq(n, v->len, "%s: %zu bytes, want %zu", v->name, n, v->len);
        cr_assert_arr_eq(out, v->bytes, v->len, "%s: bytes differ", v->name);
    }
}

ParameterizedTestParameters(encode, vector_roundtrip_is_semantically_equal)
{
    VEC_PARAMS();
}

ParameterizedTest(size_t *vi, encode, vector_roundtrip_is_semantically_equal)
{
    const vec *v = &vectors[*vi];
    mqtt_packet a, b;
    uint8_t out[BUF];
    decode_ok(v->bytes, v->len, v->version, &a);
    size_t n = reencode(&a, v->version, out);
    redecode(out, n, v->version, &b);
    /* Decode the original again: reencode() rewrote a's encode fields. */
    decode_ok(v->bytes, v->len, v->version, &a);
    cr_assert(packet_eq(&a, &b), "%s: round trip differs", v->name);
}

Test(encode, connect_v311_from_struct)
{
    mqtt_connect c = {.version = 4, .clean_start = true, .keepalive = 60, .client_id = S("c1")};
    uint8_t out[BUF];
    size_t n = mqtt_encode_connect(&c, out);
    cr_assert_eq(n, mqtt_size_connect(&c));
    cr_assert_eq(n, sizeof(v_connect_v311_min));
    cr_assert_arr_eq(out, v_connect_v311_min, n, "default protocol name is MQTT");
}

Test(encode, connect_v31_defaults_to_mqisdp)
{
    mqtt_connect c = {.version = 3,
                      .clean_start = true,
                      .keepalive = 10,
                      .client_id = S("abc"),
                      .has_will = true,
                      .will_qos = 1,
                      .will_retain = true,
                      .will_topic = S("w/t"),
                      .will_payload = S("bye"),
                      .has_username = true,
                      .username = S("u"),
                      .has_password = true,
                      .password = S("pw")};
    uint8_t out[BUF];
    size_t n = mqtt_encode_connect(&c, out);
    cr_assert_eq(n, sizeof(v_connect_v31_full));
    cr_assert_arr_eq(out, v_connect_v31_full, n);
}

Test(encode, connect_v5_will_props_roundtrip)
{
    uint8_t users[64], out[BUF];
    uint32_t un = mqtt_encode_user_prop(S("a"), S("b"), users);
    mqtt_connect c = {.version = 5,
                      .keepalive = 5,
                      .client_id = S("id"),
                      .has_will = true,
                      .will_qos = 2,
                      .will_topic = S("w"),
                      .will_payload = S("bye")};
    c.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX);
    c.props.session_expiry = 99;
    c.props.receive_max = 7;
    c.will_props.present = MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY) | MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT);
    c.will_props.will_delay = 30;
    c.will_props.payload_format = 1;
    c.will_props.user = (mqtt_bytes){users, un};
    size_t n = mqtt_encode_connect(&c, out);
    cr_assert_eq(n, mqtt_size_connect(&c));
    mqtt_packet p;
    redecode(out, n, 0, &p);
    cr_assert_eq(p.u.connect.props.session_expiry, 99);
    cr_assert_eq(p.u.connect.props.receive_max, 7);
    cr_assert_eq(p.u.connect.will_props.will_delay, 30);
    cr_assert_eq(p.u.connect.will_props.n_user, 1);
    cr_assert_eq(p.u.connect.will_qos, 2);
    BYTES_IS(p.u.connect.will_payload, "bye");
}

Test(encode, connect_without_will_clears_will_bits)
{
    mqtt_connect c = {.version = 4, .client_id = S("x"), .will_qos = 2, .will_retain = true};
    uint8_t out[BUF];
    size_t n = mqtt_encode_connect(&c, out);
    cr_assert_eq(out[9], 0x00, "connect flags");
    mqtt_packet p;
    redecode(out, n, 4, &p);
}

Test(encode, connack_v311_and_v5)
{
    mqtt_connack a = {.session_present = true, .rc = 0};
    uint8_t out[BUF];
    size_t n = mqtt_encode_connack(&a, 4, out);
    cr_assert_eq(n, 4);
    cr_assert_arr_eq(out, v_connack_v311, 4);
    mqtt_connack r = {.rc = MQTT_RC_NOT_AUTHORIZED};
    n = mqtt_encode_connack(&r, 5, out);
    cr_assert_eq(n, mqtt_size_connack(&r, 5));
    cr_assert_arr_eq(out, v_connack_v5_refused, sizeof(v_connack_v5_refused));
}

Test(encode, connack_v5_server_properties)
{
    mqtt_connack a = {.rc = 0};
    uint8_t out[BUF];
    a.props.present = MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) | MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX) |
                      MQTT_PROP_BIT(MQTT_PROP_MAX_QOS) | MQTT_PROP_BIT(MQTT_PROP_SHARED_AVAILABLE);
    a.props.assigned_client_id = S("auto-1");
    a.props.topic_alias_max = 10;
    a.props.max_qos = 1;
    a.props.shared_available = 1;
    size_t n = mqtt_encode_connack(&a, 5, out);
    cr_assert_eq(n, mqtt_size_connack(&a, 5));
    mqtt_packet p;
    redecode(out, n, 5, &p);
    BYTES_IS(p.u.connack.props.assigned_client_id, "auto-1");
    cr_assert_eq(p.u.connack.props.topic_alias_max, 10);
    cr_assert_eq(p.u.connack.props.present, a.props.present);
}

Test(encode, publish_v311_matches_vector)
{
    mqtt_publish pub = {.qos = 1, .retain = true, .topic = S("t"), .packet_id = 1, .payload = S("x")};
    uint8_t out[BUF];
    size_t n = mqtt_encode_publish(&pub, 4, out);
    cr_assert_eq(n, mqtt_size_publish(&pub, 4));
    cr_assert_eq(n, sizeof(v_publish_v311_qos1_retain));
    cr_assert_arr_eq(out, v_publish_v311_qos1_retain, n);
}

Test(encode, publish_qos0_has_no_packet_id)
{
    mqtt_publish pub = {.qos = 0, .topic = S("a/b"), .packet_id = 77, .payload = S("hello")};
    uint8_t out[BUF];
    size_t n = mqtt_encode_publish(&pub, 4, out);
    cr_assert_arr_eq(out, v_publish_v311_qos0, sizeof(v_publish_v311_qos0));
    cr_assert_eq(n, sizeof(v_publish_v311_qos0));
}

Test(encode, publish_v5_sub_ids_and_users_from_arrays)
{
    static const uint32_t ids[] = {1, 129};
    uint8_t users[64], out[BUF];
    uint32_t un = mqtt_encode_user_prop(S("k"), S("v"), users);
    mqtt_publish pub = {.qos = 1, .topic = S("s/t"), .packet_id = 10, .payload = S("{}")};
    mqtt_props *pr = &pub.props;
    pr->present = MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) |
                  MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) | MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                  MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) | MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    pr->payload_format = 1;
    pr->message_expiry = 30;
    pr->content_type = S("j");
    pr->response_topic = S("r");
    pr->correlation_data = (mqtt_bytes){(const uint8_t *)"\x07", 1};
    pr->topic_alias = 5;
    pr->sub_ids = ids;
    pr->n_sub_ids = 2;
    pr->user = (mqtt_bytes){users, un};
    size_t n = mqtt_encode_publish(&pub, 5, out);
    cr_assert_eq(n, mqtt_size_publish(&pub, 5));
    cr_assert_eq(n, sizeof(v_publish_v5_props));
    cr_assert_arr_eq(out, v_publish_v5_props, n);
}

Test(encode, publish_single_sub_id_without_array)
{
    mqtt_publish pub = {.topic = S("t")};
    uint8_t out[BUF];
    pub.props.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    pub.props.sub_id = 300;
    size_t n = mqtt_encode_publish(&pub, 5, out);
    cr_assert_eq(n, mqtt_size_publish(&pub, 5));
    mqtt_packet p;
    redecode(out, n, 5, &p);
    cr_assert_eq(p.u.publish.props.sub_id, 300);
    cr_assert_eq(p.u.publish.props.n_sub_ids, 1);
}

Test(encode, publish_head_plus_payload_is_publish)
{
    mqtt_publish pub = {.qos = 2, .dup = true, .topic = S("a/b"), .packet_id = 9, .payload = S("shared payload bytes")};
    uint8_t whole[BUF], head[BUF];
    size_t n = mqtt_encode_publish(&pub, 5, whole);
    size_t h = mqtt_encode_publish_head(&pub, 5, head);
    cr_assert_eq(h, mqtt_size_publish_head(&pub, 5));
    cr_assert_eq(h + pub.payload.len, n);
    cr_assert_arr_eq(head, whole, h);
    cr_assert_arr_eq(whole + h, pub.payload.p, pub.payload.len);
}

/* Remaining length crossing each varint size boundary. */
Test(encode, publish_remaining_length_varint_boundaries)
{
    static const uint32_t sizes[] = {127, 128, 16383, 16384, 2097151, 2097152};
    uint8_t *payload = calloc(1, 2097152);
    uint8_t *out = malloc(2097152 + 64);
    cr_assert(payload && out);
    for (size_t i = 0; i < N_OF(sizes); i++) {
        /* topic "t" costs 3 bytes of the remaining length */
        mqtt_publish pub = {.topic = S("t"), .payload = {payload, sizes[i] - 3}};
        size_t n = mqtt_encode_publish(&pub, 4, out);
        cr_assert_eq(n, mqtt_size_publish(&pub, 4));
        cr_assert_eq(n, 1 + mqtt_varint_size(sizes[i]) + sizes[i]);
        mqtt_frame f;
        cr_assert_eq(mqtt_frame_parse(out, n, 0, &f), (int)n);
        cr_assert_eq(f.body_len, sizes[i]);
    }
    free(payload);
    free(out);
}

Test(encode, ack_short_forms)
{
    uint8_t out[BUF];
    mqtt_ack a = {.type = MQTT_PUBACK, .packet_id = 5};
    cr_assert_eq(mqtt_encode_ack(&a, 5, out), 4, "v5 rc 0 without props: short form");
    cr_assert_arr_eq(out, v_puback_v5_short, 4);
    a.rc = MQTT_RC_NO_MATCHING_SUBSCRIBERS;
    cr_assert_eq(mqtt_size_ack(&a, 5), 5);
    cr_assert_eq(mqtt_encode_ack(&a, 5, out), 5);
    cr_assert_arr_eq(out, v_puback_v5_rc, 5);
    cr_assert_eq(mqtt_encode_ack(&a, 4, out), 4, "3.1.1 never carries a reason code");
}

Test(encode, ack_types_and_pubrel_flags)
{
    uint8_t out[BUF];
    mqtt_ack a = {.type = MQTT_PUBREL, .packet_id = 7};
    cr_assert_eq(mqtt_encode_ack(&a, 4, out), 4);
    cr_assert_arr_eq(out, v_pubrel_v311, 4);
    a = (mqtt_ack){.type = MQTT_PUBREC, .packet_id = 0x1234};
    mqtt_encode_ack(&a, 4, out);
    cr_assert_arr_eq(out, v_pubrec_v311, 4);
    a = (mqtt_ack){.type = MQTT_PUBCOMP, .packet_id = 0xFFFF};
    mqtt_encode_ack(&a, 4, out);
    cr_assert_arr_eq(out, v_pubcomp_v311, 4);
}

Test(encode, ack_v5_reason_string)
{
    uint8_t out[BUF];
    mqtt_ack a = {.type = MQTT_PUBREC, .packet_id = 6, .rc = MQTT_RC_UNSPECIFIED};
    a.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
    a.props.reason_string = S("fail");
    size_t n = mqtt_encode_ack(&a, 5, out);
    cr_assert_eq(n, mqtt_size_ack(&a, 5));
    cr_assert_arr_eq(out, v_pubrec_v5_props, sizeof(v_pubrec_v5_props));
}

Test(encode, subscribe_from_array_v311_and_v5)
{
    uint8_t out[BUF];
    mqtt_sub subs[2] = {{.filter = S("a/b"), .qos = 1}, {.filter = S("c/#"), .qos = 2}};
    size_t n = mqtt_encode_subscribe(10, NULL, subs, 2, 4, out);
    cr_assert_eq(n, mqtt_size_subscribe(10, NULL, subs, 2, 4));
    cr_assert_arr_eq(out, v_subscribe_v311, sizeof(v_subscribe_v311));

    uint8_t users[64];
    mqtt_props pr = {.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID), .sub_id = 5};
    pr.user = (mqtt_bytes){users, mqtt_encode_user_prop(S("k"), S("v"), users)};
    mqtt_sub s5[2] = {
        {.filter = S("$share/g/t"), .qos = 1, .retain_as_published = true, .retain_handling = 2},
        {.filter = S("+/x"), .qos = 2, .no_local = true, .retain_handling = 1},
    };
    n = mqtt_encode_subscribe(11, &pr, s5, 2, 5, out);
    cr_assert_eq(n, mqtt_size_subscribe(11, &pr, s5, 2, 5));
    cr_assert_arr_eq(out, v_subscribe_v5, sizeof(v_subscribe_v5));
}

Test(encode, subscribe_v311_drops_v5_option_bits)
{
    uint8_t out[BUF];
    mqtt_sub s = {.filter = S("t"), .qos = 1, .no_local = true, .retain_handling = 2};
    size_t n = mqtt_encode_subscribe(1, NULL, &s, 1, 4, out);
    cr_assert_eq(out[n - 1], 0x01);
    mqtt_packet p;
    redecode(out, n, 4, &p);
}

Test(encode, unsubscribe_from_array)
{
    uint8_t out[BUF];
    mqtt_bytes f[2] = {S("a/b"), S("#")};
    size_t n = mqtt_encode_unsubscribe(2, NULL, f, 2, 4, out);
    cr_assert_eq(n, mqtt_size_unsubscribe(2, NULL, f, 2, 4));
    cr_assert_arr_eq(out, v_unsubscribe_v311, sizeof(v_unsubscribe_v311));
    mqtt_props empty = {0};
    n = mqtt_encode_unsubscribe(2, &empty, f, 2, 5, out);
    cr_assert_eq(n, sizeof(v_unsubscribe_v311) + 1, "v5 adds an empty property block");
}

Test(encode, suback_and_unsuback)
{
    uint8_t out[BUF];
    static const uint8_t codes[] = {0x01, 0x02, 0x80};
    mqtt_suback k = {.packet_id = 10, .codes = {codes, 3}};
    size_t n = mqtt_encode_suback(&k, 4, out);
    cr_assert_eq(n, mqtt_size_suback(&k, 4));
    cr_assert_arr_eq(out, v_suback_v311, sizeof(v_suback_v311));
    static const uint8_t ucodes[] = {0x00, 0x11};
    mqtt_suback u = {.packet_id = 3, .codes = {ucodes, 2}};
    n = mqtt_encode_unsuback(&u, 4, out);
    cr_assert_eq(n, 4, "3.1.1 UNSUBACK ignores codes");
    cr_assert_arr_eq(out, v_unsuback_v311, 4);
    n = mqtt_encode_unsuback(&u, 5, out);
    cr_assert_eq(n, mqtt_size_unsuback(&u, 5));
    cr_assert_arr_eq(out, v_unsuback_v5, sizeof(v_unsuback_v5));
}

Test(encode, ping)
{
    uint8_t out[2];
    cr_assert_eq(mqtt_encode_ping(MQTT_PINGREQ, out), 2);
    cr_assert_arr_eq(out, v_pingreq, 2);
    cr_assert_eq(mqtt_encode_ping(MQTT_PINGRESP, out), 2);
    cr_assert_arr_eq(out, v_pingresp, 2);
}

Test(encode, disconnect_forms)
{
    uint8_t out[BUF];
    mqtt_reason r = {.rc = 0};
    cr_assert_eq(mqtt_encode_disconnect(&r, 5, out), 2, "v5 rc 0 without props: 2 bytes");
    cr_assert_eq(mqtt_size_disconnect(&r, 5), 2);
    r.rc = MQTT_RC_DISCONNECT_WITH_WILL;
    cr_assert_eq(mqtt_encode_disconnect(&r, 5, out), 3);
    cr_assert_arr_eq(out, v_disconnect_v5_rc, 3);
    cr_assert_eq(mqtt_encode_disconnect(&r, 4, out), 2, "3.1.1 has no body");
    cr_assert_arr_eq(out, v_disconnect_v311, 2);
    r.rc = MQTT_RC_SERVER_SHUTTING_DOWN;
    r.props.present = MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE);
    r.props.server_reference = S("other:1883");
    size_t n = mqtt_encode_disconnect(&r, 5, out);
    cr_assert_eq(n, mqtt_size_disconnect(&r, 5));
    mqtt_packet p;
    redecode(out, n, 5, &p);
    BYTES_IS(p.u.reason.props.server_reference, "other:1883");
}

Test(encode, auth_forms)
{
    uint8_t out[BUF];
    mqtt_reason r = {.rc = 0};
    cr_assert_eq(mqtt_encode_auth(&r, out), 2);
    cr_assert_arr_eq(out, v_auth_v5_short, 2);
    r.rc = MQTT_RC_REAUTHENTICATE;
    cr_assert_eq(mqtt_size_auth(&r), 4, "rc then an empty property block");
    size_t n = mqtt_encode_auth(&r, out);
    mqtt_packet p;
    redecode(out, n, 5, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_REAUTHENTICATE);
}

Test(encode, dispatcher_matches_typed_encoders)
{
    uint8_t a[BUF], b[BUF];
    mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish = (mqtt_publish){.qos = 1, .topic = S("x/y"), .packet_id = 3, .payload = S("z")};
    size_t n = mqtt_encode(&p, 5, a);
    cr_assert_eq(n, mqtt_size(&p, 5));
    cr_assert_eq(n, mqtt_encode_publish(&p.u.publish, 5, b));
    cr_assert_arr_eq(a, b, n);
    p.type = MQTT_PINGRESP;
    cr_assert_eq(mqtt_size(&p, 5), 2);
    cr_assert_eq(mqtt_encode(&p, 5, a), 2);
    cr_assert_eq(a[0], 0xD0);
    p.type = 0;
    cr_assert_eq(mqtt_size(&p, 5), 0);
}
