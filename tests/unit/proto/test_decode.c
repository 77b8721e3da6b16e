/* SPDX-License-Identifier: Apache-2.0 */
/* proto/decode.c: PUBLISH, acks, PING, DISCONNECT, AUTH and mqtt_decode().
 * Also the "four runs per vector" over every vector of vectors.h: whole,
 * every proper prefix, every truncated body, and against a guard page
 * (byte-at-a-time framing lives in test_frame.c). */
#include "harness.h"
#include "proto/props.h"
#include "refusals.h"

/* ---------------- four runs per vector ---------------- */

ParameterizedTestParameters(decode, vector_whole)
{
    VEC_PARAMS();
}

/* Run 1: the whole vector frames to exactly its length and decodes. */
ParameterizedTest(size_t *vi, decode, vector_whole)
{
    const vec *v = &vectors[*vi];
    mqtt_frame f;
    mqtt_packet p;
    int n = mqtt_frame_parse(v->bytes, v->len, 0, &f);
    cr_assert_eq(n, (int)v->len, "%s: frame %d", v->name, n);
    cr_assert_eq((size_t)f.header_len + f.body_len, v->len, "%s", v->name);
    cr_assert_eq(f.type, v->bytes[0] >> 4, "%s", v->name);
    mqtt_rc rc = mqtt_decode(&f, v->version, &p);
    cr_assert_eq(rc, MQTT_RC_SUCCESS, "%s: rc 0x%02x", v->name, rc);
    cr_assert_eq(p.type, f.type, "%s", v->name);
}

ParameterizedTestParameters(decode, vector_every_prefix_needs_more)
{
    VEC_PARAMS();
}

/* Run 2: every proper prefix, placed against the guard page, is
 * NEED_MORE; the framer never says anything else about a partial packet. */
ParameterizedTest(size_t *vi, decode, vector_every_prefix_needs_more)
{
    const vec *v = &vectors[*vi];
    for (size_t k = 0; k < v->len; k++) {
        guard g;
        mqtt_frame f;
        const uint8_t *b = guard_place(&g, v->bytes, k);
        int n = mqtt_frame_parse(b, k, 0, &f);
        cr_assert_eq(n, MQTT_NEED_MORE, "%s: prefix %zu gave %d", v->name, k, n);
        cr_assert_null(f.body, "%s: stale body on need-more", v->name);
        guard_free(&g);
    }
}

ParameterizedTestParameters(decode, vector_truncated_body)
{
    VEC_PARAMS();
}

/* What a body cut to k bytes must decode to (see vectors.h). */
static void check_truncated(const vec *v, uint32_t k, mqtt_rc rc)
{
    if (k == v->empty_at) {
        cr_assert_eq(rc, MQTT_RC_PROTOCOL_ERROR, "%s: cut %u gave 0x%02x", v->name, k, rc);
    } else if (k < v->lax_from) {
        cr_assert_eq(rc, MQTT_RC_MALFORMED, "%s: cut %u gave 0x%02x", v->name, k, rc);
    } else {
        cr_assert(rc == MQTT_RC_SUCCESS || rc >= 0x80, "%s: cut %u", v->name, k);
    }
}

/* Run 3: the body decoder handed a frame whose body_len is too short (the
 * body ending at a guard page) refuses with 0x81 and never reads on. */
ParameterizedTest(size_t *vi, decode, vector_truncated_body)
{
    const vec *v = &vectors[*vi];
    mqtt_frame whole;
    frame_exact(v->bytes, v->len, &whole);
    for (uint32_t k = 0; k < whole.body_len; k++) {
        guard g;
        mqtt_frame f = whole;
        mqtt_packet p;
        f.body = guard_place(&g, whole.body, k);
        f.body_len = k;
        check_truncated(v, k, mqtt_decode(&f, v->version, &p));
        guard_free(&g);
    }
}

ParameterizedTestParameters(decode, vector_guard_page)
{
    VEC_PARAMS();
}

/* Run 4: the whole vector ending at a PROT_NONE page decodes, and walking
 * its properties and entries stays inside it. */
ParameterizedTest(size_t *vi, decode, vector_guard_page)
{
    const vec *v = &vectors[*vi];
    guard g;
    mqtt_frame f;
    mqtt_packet p;
    const uint8_t *b = guard_place(&g, v->bytes, v->len);
    frame_exact(b, v->len, &f);
    cr_assert_eq(mqtt_decode(&f, v->version, &p), MQTT_RC_SUCCESS, "%s", v->name);
    mqtt_bytes cur = p.u.subscribe.entries;
    mqtt_sub s;
    mqtt_bytes filter;
    if (p.type == MQTT_SUBSCRIBE) {
        while (mqtt_sub_next(&cur, v->version, &s)) {
        }
    } else if (p.type == MQTT_UNSUBSCRIBE) {
        cur = p.u.unsubscribe.entries;
        while (mqtt_unsub_next(&cur, &filter)) {
        }
    }
    guard_free(&g);
}

ParameterizedTestParameters(decode, vector_wrong_version_never_crashes)
{
    VEC_PARAMS();
}

/* Every vector decoded as 3, 4 and 5 answers something defined. */
ParameterizedTest(size_t *vi, decode, vector_wrong_version_never_crashes)
{
    const vec *v = &vectors[*vi];
    for (uint8_t ver = 3; ver <= 5; ver++) {
        guard g;
        mqtt_frame f;
        mqtt_packet p;
        const uint8_t *b = guard_place(&g, v->bytes, v->len);
        frame_exact(b, v->len, &f);
        mqtt_rc rc = mqtt_decode(&f, ver, &p);
        cr_assert(rc == MQTT_RC_SUCCESS || rc >= 0x80, "%s as v%u", v->name, ver);
        guard_free(&g);
    }
}

ParameterizedTestParameters(decode, vector_v311_reads_the_same_as_v31)
{
    VEC_PARAMS();
}

/* 3.1 and 3.1.1 differ only in CONNECT's protocol name and level, so every
 * 3.1.1 vector of the other packet types is also a 3.1 vector. */
ParameterizedTest(size_t *vi, decode, vector_v311_reads_the_same_as_v31)
{
    const vec *v = &vectors[*vi];
    mqtt_packet a, b;
    if (v->version != MQTT_V311 || (v->bytes[0] >> 4) == MQTT_CONNECT) {
        return;
    }
    decode_ok(v->bytes, v->len, MQTT_V311, &a);
    decode_ok(v->bytes, v->len, MQTT_V31, &b);
    cr_assert(packet_eq(&a, &b), "%s", v->name);
}

/* ---------------- corruption tables ---------------- */

ParameterizedTestParameters(decode, publish_corruption)
{
    TABLE_PARAMS(corrupt_publish);
}

ParameterizedTest(size_t *i, decode, publish_corruption)
{
    check_bad(&corrupt_publish[*i]);
}

ParameterizedTestParameters(decode, ack_corruption)
{
    TABLE_PARAMS(corrupt_ack);
}

ParameterizedTest(size_t *i, decode, ack_corruption)
{
    check_bad(&corrupt_ack[*i]);
}

ParameterizedTestParameters(decode, other_corruption)
{
    TABLE_PARAMS(corrupt_other);
}

ParameterizedTest(size_t *i, decode, other_corruption)
{
    check_bad(&corrupt_other[*i]);
}

/* ---------------- the spec's words, one table ---------------- */

ParameterizedTestParameters(decode, refusal_words)
{
    TABLE_PARAMS(refusals);
}

/* Each refusal against a guard page: the framer (when it refuses) or the
 * decoder answers the code the rule's own words give. */
ParameterizedTest(size_t *i, decode, refusal_words)
{
    const refusal *r = &refusals[*i];
    bad row = {r->name, r->bytes, r->len, r->version, 0, r->rc};
    uint8_t rc = bad_rc(&row);
    cr_assert_eq(rc, r->rc, "%s: got 0x%02x (%s), want 0x%02x (%s): %s", r->name, rc, mqtt_rc_name(rc), r->rc,
                 mqtt_rc_name(r->rc), r->words);
}

/* A CONNECT in some other protocol gets no CONNACK (§3.1.2.1): the decoder
 * leaves the version at 0 so the node has no dialect to answer in. */
Test(decode, wrong_protocol_name_has_no_version)
{
    static const uint8_t b[] = {0x10, 0x0D, MQTX5, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x00};
    mqtt_frame f;
    mqtt_packet p;
    frame_exact(b, sizeof(b), &f);
    cr_assert_eq(mqtt_decode(&f, 0, &p), MQTT_RC_MALFORMED);
    cr_assert_eq(p.u.connect.version, 0);
}

/* ---------------- PUBLISH field by field ---------------- */

Test(decode, publish_v311_qos0_fields)
{
    mqtt_packet p;
    DECODE_VEC(publish_v311_qos0, &p);
    const mqtt_publish *pub = &p.u.publish;
    cr_assert_eq(pub->qos, 0);
    cr_assert(!pub->dup && !pub->retain);
    BYTES_IS(pub->topic, "a/b");
    cr_assert_eq(pub->packet_id, 0);
    BYTES_IS(pub->payload, "hello");
    cr_assert_eq(pub->props.present, 0);
}

Test(decode, publish_v311_qos1_retain_fields)
{
    mqtt_packet p;
    DECODE_VEC(publish_v311_qos1_retain, &p);
    cr_assert_eq(p.u.publish.qos, 1);
    cr_assert(p.u.publish.retain && !p.u.publish.dup);
    BYTES_IS(p.u.publish.topic, "t");
    cr_assert_eq(p.u.publish.packet_id, 1);
    BYTES_IS(p.u.publish.payload, "x");
}

Test(decode, publish_v311_qos2_dup_empty_payload)
{
    mqtt_packet p;
    DECODE_VEC(publish_v311_qos2_dup, &p);
    cr_assert_eq(p.u.publish.qos, 2);
    cr_assert(p.u.publish.dup && !p.u.publish.retain);
    cr_assert_eq(p.u.publish.packet_id, 0x1234);
    cr_assert_eq(p.u.publish.payload.len, 0);
}

Test(decode, publish_v31_same_layout_as_v311)
{
    mqtt_packet p;
    DECODE_VEC(publish_v31_empty_payload, &p);
    BYTES_IS(p.u.publish.topic, "x");
    cr_assert_eq(p.u.publish.payload.len, 0);
}

Test(decode, publish_two_byte_remaining_length)
{
    mqtt_frame f;
    mqtt_packet p;
    frame_exact(v_publish_v311_long, sizeof(v_publish_v311_long), &f);
    cr_assert_eq(f.header_len, 3);
    cr_assert_eq(f.body_len, 205);
    cr_assert_eq(mqtt_decode(&f, 4, &p), MQTT_RC_SUCCESS);
    BYTES_IS(p.u.publish.topic, "big");
    cr_assert_eq(p.u.publish.payload.len, 200);
    cr_assert_eq(p.u.publish.payload.p[199], 'z');
}

Test(decode, publish_v5_all_properties)
{
    mqtt_packet p;
    DECODE_VEC(publish_v5_props, &p);
    const mqtt_publish *pub = &p.u.publish;
    const mqtt_props *pr = &pub->props;
    cr_assert_eq(pub->qos, 1);
    BYTES_IS(pub->topic, "s/t");
    cr_assert_eq(pub->packet_id, 10);
    cr_assert_eq(pr->payload_format, 1);
    cr_assert_eq(pr->message_expiry, 30);
    BYTES_IS(pr->content_type, "j");
    BYTES_IS(pr->response_topic, "r");
    cr_assert_eq(pr->correlation_data.len, 1);
    cr_assert_eq(pr->correlation_data.p[0], 7);
    cr_assert_eq(pr->topic_alias, 5);
    cr_assert_eq(pr->n_sub_ids, 2);
    cr_assert_eq(pr->sub_id, 1, "sub_id is the first identifier");
    cr_assert_eq(pr->n_user, 1);
    cr_assert(mqtt_props_has(pr, MQTT_PROP_TOPIC_ALIAS));
    cr_assert(!mqtt_props_has(pr, MQTT_PROP_SESSION_EXPIRY));
    BYTES_IS(pub->payload, "{}");
}

Test(decode, publish_v5_sub_ids_walk_in_order)
{
    mqtt_packet p;
    mqtt_prop_iter it;
    mqtt_prop pr;
    uint32_t ids[4], n = 0;
    DECODE_VEC(publish_v5_props, &p);
    mqtt_prop_iter_init(&it, &p.u.publish.props);
    while (mqtt_prop_next(&it, &pr)) {
        if (pr.id == MQTT_PROP_SUBSCRIPTION_ID) {
            ids[n++] = pr.u;
        }
    }
    cr_assert_eq(n, 2);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 129);
}

Test(decode, publish_v5_empty_topic_with_alias)
{
    mqtt_packet p;
    DECODE_VEC(publish_v5_alias_only, &p);
    cr_assert_eq(p.u.publish.topic.len, 0);
    cr_assert_eq(p.u.publish.props.topic_alias, 2);
    BYTES_IS(p.u.publish.payload, "p");
}

Test(decode, publish_v5_empty_property_block)
{
    mqtt_packet p;
    DECODE_VEC(publish_v5_noprops, &p);
    cr_assert_eq(p.u.publish.props.present, 0);
    cr_assert_eq(p.u.publish.props.raw.len, 1, "raw is the whole block, length included");
    cr_assert_eq(p.u.publish.payload.len, 0);
}

Test(decode, publish_payload_format_0_allows_any_bytes)
{
    static const uint8_t b[] = {0x30, 0x08, 0x00, 0x01, 't', 0x02, 0x01, 0x00, 0xFF, 0x00};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 5, &p);
    cr_assert_eq(p.u.publish.payload.len, 2);
}

Test(decode, publish_payload_utf8_control_chars_accepted)
{
    static const uint8_t b[] = {0x30, 0x08, 0x00, 0x01, 't', 0x02, 0x01, 0x01, 0x01, 0x7F};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 5, &p);
}

Test(decode, publish_repeated_sub_id_and_user_allowed)
{
    static const uint8_t b[] = {0x30, 0x13, 0x00, 0x01, 't',  0x0E, 0x0B, 0x01, 0x0B, 0x01, 0x26,
                                0x00, 0x00, 0x00, 0x00, 0x26, 0x00, 0x00, 0x00, 0x00, 0x00};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 5, &p);
    cr_assert_eq(p.u.publish.props.n_sub_ids, 2);
    cr_assert_eq(p.u.publish.props.n_user, 2);
    cr_assert_eq(p.u.publish.payload.len, 1);
}

Test(decode, publish_max_sub_id_accepted)
{
    /* 268,435,455 = FF FF FF 7F, the largest Variable Byte Integer. */
    static const uint8_t b[] = {0x30, 0x09, 0x00, 0x01, 't', 0x05, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 5, &p);
    cr_assert_eq(p.u.publish.props.sub_id, MQTT_MAX_REMAINING);
}

Test(decode, publish_decoder_rejects_other_type)
{
    mqtt_frame f;
    mqtt_publish pub;
    frame_exact(v_puback_v311, sizeof(v_puback_v311), &f);
    cr_assert_eq(mqtt_decode_publish(&f, 4, &pub), MQTT_RC_MALFORMED);
}

Test(decode, publish_v311_ignores_v5_property_bytes)
{
    /* In 3.1.1 the byte after the topic is payload, not a property length. */
    mqtt_packet p;
    decode_ok(v_publish_v5_noprops, sizeof(v_publish_v5_noprops), 4, &p);
    cr_assert_eq(p.u.publish.payload.len, 1);
}

/* ---------------- acks ---------------- */

Test(decode, acks_v311_fields)
{
    mqtt_packet p;
    DECODE_VEC(puback_v311, &p);
    cr_assert_eq(p.u.ack.type, MQTT_PUBACK);
    cr_assert_eq(p.u.ack.packet_id, 1);
    DECODE_VEC(pubrec_v311, &p);
    cr_assert_eq(p.u.ack.type, MQTT_PUBREC);
    cr_assert_eq(p.u.ack.packet_id, 0x1234);
    DECODE_VEC(pubrel_v311, &p);
    cr_assert_eq(p.u.ack.type, MQTT_PUBREL);
    cr_assert_eq(p.u.ack.packet_id, 7);
    DECODE_VEC(pubcomp_v311, &p);
    cr_assert_eq(p.u.ack.type, MQTT_PUBCOMP);
    cr_assert_eq(p.u.ack.packet_id, 0xFFFF);
    cr_assert_eq(p.u.ack.rc, 0);
}

Test(decode, ack_v5_short_form_means_success)
{
    mqtt_packet p;
    DECODE_VEC(puback_v5_short, &p);
    cr_assert_eq(p.u.ack.packet_id, 5);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_SUCCESS);
    cr_assert_eq(p.u.ack.props.present, 0);
}

Test(decode, ack_v5_reason_code_without_properties)
{
    mqtt_packet p;
    DECODE_VEC(puback_v5_rc, &p);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    DECODE_VEC(pubrel_v5_rc, &p);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_PACKET_ID_NOT_FOUND);
    DECODE_VEC(puback_v5_explicit, &p);
    cr_assert_eq(p.u.ack.rc, 0);
}

Test(decode, ack_v5_reason_string_and_user_property)
{
    mqtt_packet p;
    DECODE_VEC(pubrec_v5_props, &p);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_UNSPECIFIED);
    BYTES_IS(p.u.ack.props.reason_string, "fail");
    DECODE_VEC(pubcomp_v5_user, &p);
    cr_assert_eq(p.u.ack.props.n_user, 1);
}

Test(decode, ack_decoder_rejects_non_ack_type)
{
    mqtt_frame f;
    mqtt_ack a;
    frame_exact(v_pingreq, sizeof(v_pingreq), &f);
    cr_assert_eq(mqtt_decode_ack(&f, 4, &a), MQTT_RC_MALFORMED);
}

Test(decode, ack_v5_every_listed_reason_code)
{
    static const uint8_t ok_pub[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    for (size_t i = 0; i < sizeof(ok_pub); i++) {
        uint8_t b[] = {0x40, 0x03, 0x00, 0x01, ok_pub[i]};
        mqtt_packet p;
        decode_ok(b, sizeof(b), 5, &p);
        b[0] = 0x50;
        decode_ok(b, sizeof(b), 5, &p);
        cr_assert_eq(p.u.ack.rc, ok_pub[i]);
    }
}

/* ---------------- PING, DISCONNECT, AUTH ---------------- */

Test(decode, ping_both_directions)
{
    mqtt_frame f;
    mqtt_packet p;
    DECODE_VEC(pingreq, &p);
    cr_assert_eq(p.type, MQTT_PINGREQ);
    DECODE_VEC(pingresp, &p);
    cr_assert_eq(p.type, MQTT_PINGRESP);
    frame_exact(v_pingresp, 2, &f);
    cr_assert_eq(mqtt_decode_ping(&f), MQTT_RC_SUCCESS);
}

Test(decode, disconnect_fields)
{
    mqtt_packet p;
    DECODE_VEC(disconnect_v311, &p);
    cr_assert_eq(p.u.reason.rc, 0);
    DECODE_VEC(disconnect_v5_short, &p);
    cr_assert_eq(p.u.reason.rc, 0);
    DECODE_VEC(disconnect_v5_rc, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_DISCONNECT_WITH_WILL);
}

Test(decode, disconnect_v5_properties)
{
    mqtt_packet p;
    DECODE_VEC(disconnect_v5_props, &p);
    const mqtt_props *pr = &p.u.reason.props;
    cr_assert_eq(p.u.reason.rc, MQTT_RC_SERVER_SHUTTING_DOWN);
    cr_assert(mqtt_props_has(pr, MQTT_PROP_SESSION_EXPIRY));
    cr_assert_eq(pr->session_expiry, 0);
    BYTES_IS(pr->server_reference, "h2");
    BYTES_IS(pr->reason_string, "x");
    cr_assert_eq(pr->n_user, 1);
}

Test(decode, auth_fields)
{
    mqtt_packet p;
    DECODE_VEC(auth_v5_short, &p);
    cr_assert_eq(p.u.reason.rc, 0);
    DECODE_VEC(auth_v5_continue, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_CONTINUE_AUTHENTICATION);
    BYTES_IS(p.u.reason.props.auth_method, "SCR");
    cr_assert_eq(p.u.reason.props.auth_data.len, 2);
}

Test(decode, auth_reason_code_only_accepted)
{
    static const uint8_t b[] = {0xF0, 0x01, 0x19};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 5, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_REAUTHENTICATE);
}

/* ---------------- dispatcher ---------------- */

Test(decode, dispatcher_resets_output)
{
    mqtt_frame f;
    mqtt_packet p;
    memset(&p, 0xAB, sizeof(p));
    frame_exact(v_pingreq, 2, &f);
    cr_assert_eq(mqtt_decode(&f, 4, &p), MQTT_RC_SUCCESS);
    cr_assert_eq(p.type, MQTT_PINGREQ);
    cr_assert_eq(p.u.publish.topic.len, 0);
}

Test(decode, dispatcher_type_0_frame_is_malformed)
{
    /* A hand-built frame bypassing the framer's own type-0 check. */
    mqtt_frame f = {.type = 0, .flags = 0, .header_len = 2, .body_len = 0, .body = NULL};
    mqtt_packet p;
    cr_assert_eq(mqtt_decode(&f, 4, &p), MQTT_RC_MALFORMED);
}

Test(decode, decoders_zero_output_on_failure)
{
    mqtt_frame f;
    mqtt_publish pub;
    static const uint8_t b[] = {0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01};
    memset(&pub, 0xAB, sizeof(pub));
    frame_exact(b, sizeof(b), &f);
    cr_assert_eq(mqtt_decode_publish(&f, 4, &pub), MQTT_RC_MALFORMED);
    cr_assert_eq(pub.topic.len, 0);
    cr_assert_eq(pub.props.present, 0);
}
