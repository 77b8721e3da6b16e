/* SPDX-License-Identifier: Apache-2.0 */
/* PUBACK, PUBREC, PUBREL, PUBCOMP from a client (node/mqtt/handle_acks.c) on an
 * in-process broker: the replies they get and the delivery window they
 * free. The subscriber asks for Receive Maximum 1, so each ack is seen by
 * whether the next message goes out. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(handle_acks, 1);

/* A subscriber to "w" at qos with a window of one message. */
static icl *narrow_subscriber(uint8_t qos)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.keepalive = 60;
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX);
    q.props.receive_max = 1;
    icl_send_connect(c, "narrow", &q);
    icl_settle(c);
    icl_expect(c, MQTT_CONNACK, NULL);
    cr_assert_eq(icl_subscribe1(c, "w", qos), qos);
    return c;
}

/* Two messages at qos to "w"; the first must reach the subscriber alone.
 * Returns its packet id. */
static uint16_t two_messages(icl *sub, uint8_t qos)
{
    icl *pub = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(pub, "w", "1", qos, 1, false, NULL);
    icl_send_publish(pub, "w", "2", qos, 2, false, NULL);
    icl_settle(pub);
    icl_free(pub);
    mqtt_packet p;
    icl_expect(sub, MQTT_PUBLISH, &p);
    cr_assert_eq(p.u.publish.payload.p[0], '1');
    icl_expect_nothing(sub);
    return p.u.publish.packet_id;
}

static void expect_second(icl *sub)
{
    mqtt_packet p;
    icl_expect(sub, MQTT_PUBLISH, &p);
    cr_assert_eq(p.u.publish.payload.p[0], '2');
}

Test(handle_acks, puback_frees_the_window_for_the_next_message)
{
    icl *sub = narrow_subscriber(1);
    uint16_t pid = two_messages(sub, 1);
    icl_send_ack(sub, MQTT_PUBACK, pid, 0);
    icl_settle(sub);
    expect_second(sub);
    icl_free(sub);
}

/* §4.3.2: an ack for an unknown id is not fatal and frees nothing. */
Test(handle_acks, puback_for_an_unknown_id_is_ignored)
{
    icl *sub = narrow_subscriber(1);
    uint16_t pid = two_messages(sub, 1);
    icl_send_ack(sub, MQTT_PUBACK, (uint16_t)(pid + 100), 0);
    icl_settle(sub);
    icl_expect_nothing(sub);
    cr_assert_not_null(icl_conn(sub));
    icl_free(sub);
}

/* QoS 2 outbound: PUBREC → PUBREL 0; the window is freed by PUBCOMP. */
Test(handle_acks, pubrec_gets_pubrel_and_pubcomp_frees_the_window)
{
    icl *sub = narrow_subscriber(2);
    uint16_t pid = two_messages(sub, 2);
    icl_send_ack(sub, MQTT_PUBREC, pid, 0);
    icl_settle(sub);
    mqtt_packet p;
    icl_expect(sub, MQTT_PUBREL, &p);
    cr_assert_eq(p.u.ack.packet_id, pid);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_SUCCESS);
    icl_expect_nothing(sub);
    icl_send_ack(sub, MQTT_PUBCOMP, pid, 0);
    icl_settle(sub);
    expect_second(sub);
    icl_free(sub);
}

Test(handle_acks, pubrec_for_an_unknown_id_gets_pubrel_0x92)
{
    icl *sub = icl_connected(&b, 0, MQTT_V5, "s");
    icl_send_ack(sub, MQTT_PUBREC, 77, 0);
    icl_settle(sub);
    mqtt_packet p;
    icl_expect(sub, MQTT_PUBREL, &p);
    cr_assert_eq(p.u.ack.packet_id, 77);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_PACKET_ID_NOT_FOUND);
    icl_free(sub);
}

/* §4.3.3: a failed PUBREC ends the exchange: no PUBREL, the window frees. */
Test(handle_acks, a_failed_pubrec_ends_the_exchange_without_pubrel)
{
    icl *sub = narrow_subscriber(2);
    uint16_t pid = two_messages(sub, 2);
    icl_send_ack(sub, MQTT_PUBREC, pid, MQTT_RC_UNSPECIFIED);
    icl_settle(sub);
    expect_second(sub);
    icl_expect_nothing(sub);
    icl_free(sub);
}

Test(handle_acks, pubrel_for_an_unknown_id_gets_pubcomp_0x92)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "s");
    icl_send_ack(c, MQTT_PUBREL, 5, 0);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_PUBCOMP, &p);
    cr_assert_eq(p.u.ack.packet_id, 5);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_PACKET_ID_NOT_FOUND);
    icl_free(c);
}

/* Inbound QoS 2: PUBREL releases the id, so a PUBLISH with the same id is
 * a new message, delivered again. */
Test(handle_acks, pubrel_releases_the_inbound_id)
{
    icl *sub = icl_connected(&b, 0, MQTT_V5, "sub");
    icl_subscribe1(sub, "q2", 0);
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    for (int round = 0; round < 2; round++) {
        icl_send_publish(c, "q2", "x", 2, 8, false, NULL);
        icl_settle(c);
        icl_expect(c, MQTT_PUBREC, NULL);
        icl_send_ack(c, MQTT_PUBREL, 8, 0);
        icl_settle(c);
        mqtt_packet p;
        icl_expect(c, MQTT_PUBCOMP, &p);
        cr_assert_eq(p.u.ack.rc, MQTT_RC_SUCCESS);
        icl_expect(sub, MQTT_PUBLISH, NULL);
    }
    icl_free(c);
    icl_free(sub);
}

Test(handle_acks, v311_pubrel_for_an_unknown_id_still_gets_pubcomp)
{
    icl *c = icl_connected(&b, 0, MQTT_V311, "s311");
    icl_send_ack(c, MQTT_PUBREL, 5, 0);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_PUBCOMP, &p);
    cr_assert_eq(p.u.ack.packet_id, 5);
    cr_assert_eq(c->raw_len, 4);
    icl_free(c);
}
