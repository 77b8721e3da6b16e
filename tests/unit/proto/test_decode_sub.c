/* SPDX-License-Identifier: Apache-2.0 */
/* proto/decode_sub.c: SUBSCRIBE, UNSUBSCRIBE, SUBACK, UNSUBACK and the
 * entry cursors. */
#include "harness.h"
#include "proto/props.h"

ParameterizedTestParameters(decode_sub, subscribe_corruption)
{
    TABLE_PARAMS(corrupt_subscribe);
}

ParameterizedTest(size_t *i, decode_sub, subscribe_corruption)
{
    check_bad(&corrupt_subscribe[*i]);
}

ParameterizedTestParameters(decode_sub, unsubscribe_corruption)
{
    TABLE_PARAMS(corrupt_unsubscribe);
}

ParameterizedTest(size_t *i, decode_sub, unsubscribe_corruption)
{
    check_bad(&corrupt_unsubscribe[*i]);
}

ParameterizedTestParameters(decode_sub, suback_corruption)
{
    TABLE_PARAMS(corrupt_suback);
}

ParameterizedTest(size_t *i, decode_sub, suback_corruption)
{
    check_bad(&corrupt_suback[*i]);
}

Test(decode_sub, subscribe_v311_entries)
{
    mqtt_packet p;
    mqtt_sub s;
    DECODE_VEC(subscribe_v311, &p);
    const mqtt_subscribe *sub = &p.u.subscribe;
    cr_assert_eq(sub->packet_id, 10);
    cr_assert_eq(sub->count, 2);
    mqtt_bytes cur = sub->entries;
    cr_assert(mqtt_sub_next(&cur, 4, &s));
    BYTES_IS(s.filter, "a/b");
    cr_assert_eq(s.qos, 1);
    cr_assert(mqtt_sub_next(&cur, 4, &s));
    BYTES_IS(s.filter, "c/#");
    cr_assert_eq(s.qos, 2);
    cr_assert(!s.no_local && !s.retain_as_published && s.retain_handling == 0);
    cr_assert(!mqtt_sub_next(&cur, 4, &s));
}

Test(decode_sub, subscribe_v31_single_entry)
{
    mqtt_packet p;
    mqtt_sub s;
    DECODE_VEC(subscribe_v31, &p);
    cr_assert_eq(p.u.subscribe.packet_id, 1);
    cr_assert_eq(p.u.subscribe.count, 1);
    mqtt_bytes cur = p.u.subscribe.entries;
    cr_assert(mqtt_sub_next(&cur, 3, &s));
    BYTES_IS(s.filter, "x/y");
    cr_assert_eq(s.qos, 0);
}

Test(decode_sub, subscribe_v5_options_and_properties)
{
    mqtt_packet p;
    mqtt_sub s;
    DECODE_VEC(subscribe_v5, &p);
    const mqtt_subscribe *sub = &p.u.subscribe;
    cr_assert_eq(sub->packet_id, 11);
    cr_assert_eq(sub->props.sub_id, 5);
    cr_assert_eq(sub->props.n_sub_ids, 1);
    cr_assert_eq(sub->props.n_user, 1);
    cr_assert_eq(sub->count, 2);
    mqtt_bytes cur = sub->entries;
    cr_assert(mqtt_sub_next(&cur, 5, &s));
    BYTES_IS(s.filter, "$share/g/t");
    cr_assert_eq(s.qos, 1);
    cr_assert(!s.no_local);
    cr_assert(s.retain_as_published);
    cr_assert_eq(s.retain_handling, 2);
    cr_assert(mqtt_sub_next(&cur, 5, &s));
    BYTES_IS(s.filter, "+/x");
    cr_assert_eq(s.qos, 2);
    cr_assert(s.no_local);
    cr_assert(!s.retain_as_published);
    cr_assert_eq(s.retain_handling, 1);
    cr_assert(!mqtt_sub_next(&cur, 5, &s));
}

Test(decode_sub, invalid_filter_is_the_nodes_decision)
{
    /* "a/#/b" and "a+" are invalid filters, answered per filter with
     * SUBACK 0x8F by the node; the packet itself decodes. */
    static const uint8_t b[] = {0x82, 0x0F, 0x00, 0x01, 0x00, 0x05, 'a', '/', '#',
                                '/',  'b',  0x00, 0x00, 0x02, 'a',  '+', 0x01};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 4, &p);
    cr_assert_eq(p.u.subscribe.count, 2);
}

Test(decode_sub, no_local_on_malformed_share_left_to_node)
{
    /* "$share/" alone is not a valid shared subscription; it is an invalid
     * filter (0x8F from the node), not a protocol error. */
    static const uint8_t b[] = {0x82, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x07, '$', 's', 'h', 'a', 'r', 'e', '/', 0x04};
    mqtt_packet p;
    decode_ok(b, sizeof(b), 5, &p);
}

Test(decode_sub, v311_options_ignore_v5_bits_when_walking)
{
    mqtt_sub s;
    static const uint8_t e[] = {0x00, 0x01, 't', 0x3E};
    mqtt_bytes cur = {e, sizeof(e)};
    cr_assert(mqtt_sub_next(&cur, 4, &s));
    cr_assert_eq(s.qos, 2);
    cr_assert(!s.no_local && s.retain_handling == 0);
}

Test(decode_sub, sub_next_stops_on_garbage)
{
    mqtt_sub s;
    static const uint8_t e[] = {0x00, 0x09, 't'};
    mqtt_bytes cur = {e, sizeof(e)};
    cr_assert(!mqtt_sub_next(&cur, 4, &s));
    cr_assert_eq(cur.len, 0);
}

Test(decode_sub, unsubscribe_v311_filters)
{
    mqtt_packet p;
    mqtt_bytes f;
    DECODE_VEC(unsubscribe_v311, &p);
    cr_assert_eq(p.u.unsubscribe.packet_id, 2);
    cr_assert_eq(p.u.unsubscribe.count, 2);
    mqtt_bytes cur = p.u.unsubscribe.entries;
    cr_assert(mqtt_unsub_next(&cur, &f));
    BYTES_IS(f, "a/b");
    cr_assert(mqtt_unsub_next(&cur, &f));
    BYTES_IS(f, "#");
    cr_assert(!mqtt_unsub_next(&cur, &f));
}

Test(decode_sub, unsubscribe_v5_user_property)
{
    mqtt_packet p;
    mqtt_bytes f;
    DECODE_VEC(unsubscribe_v5, &p);
    cr_assert_eq(p.u.unsubscribe.packet_id, 3);
    cr_assert_eq(p.u.unsubscribe.props.n_user, 1);
    mqtt_bytes cur = p.u.unsubscribe.entries;
    cr_assert(mqtt_unsub_next(&cur, &f));
    BYTES_IS(f, "x/+");
    cr_assert(!mqtt_unsub_next(&cur, &f));
}

Test(decode_sub, suback_codes)
{
    mqtt_packet p;
    DECODE_VEC(suback_v311, &p);
    cr_assert_eq(p.u.suback.packet_id, 10);
    cr_assert_eq(p.u.suback.codes.len, 3);
    cr_assert_eq(p.u.suback.codes.p[2], 0x80);
    DECODE_VEC(suback_v5, &p);
    cr_assert_eq(p.u.suback.packet_id, 11);
    BYTES_IS(p.u.suback.props.reason_string, "ok");
    cr_assert_eq(p.u.suback.codes.len, 3);
    cr_assert_eq(p.u.suback.codes.p[1], MQTT_RC_TOPIC_FILTER_INVALID);
    cr_assert_eq(p.u.suback.codes.p[2], MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED);
}

Test(decode_sub, unsuback_codes)
{
    mqtt_packet p;
    DECODE_VEC(unsuback_v311, &p);
    cr_assert_eq(p.u.suback.packet_id, 3);
    cr_assert_eq(p.u.suback.codes.len, 0);
    DECODE_VEC(unsuback_v5, &p);
    cr_assert_eq(p.u.suback.codes.len, 2);
    cr_assert_eq(p.u.suback.codes.p[1], MQTT_RC_NO_SUBSCRIPTION_EXISTED);
}

Test(decode_sub, decoders_check_their_own_type)
{
    mqtt_frame f;
    mqtt_subscribe s;
    mqtt_unsubscribe u;
    mqtt_suback k;
    frame_exact(v_unsubscribe_v311, sizeof(v_unsubscribe_v311), &f);
    cr_assert_eq(mqtt_decode_subscribe(&f, 4, &s), MQTT_RC_MALFORMED);
    frame_exact(v_subscribe_v311, sizeof(v_subscribe_v311), &f);
    cr_assert_eq(mqtt_decode_unsubscribe(&f, 4, &u), MQTT_RC_MALFORMED);
    cr_assert_eq(mqtt_decode_suback(&f, 4, &k), MQTT_RC_MALFORMED);
    cr_assert_eq(mqtt_decode_unsuback(&f, 4, &k), MQTT_RC_MALFORMED);
}
