/* SPDX-License-Identifier: Apache-2.0 */
/* PUBLISH from a client (node/mqtt/handle_publish.c) on an in-process broker
 * with the local backplane: the acknowledgement bytes it writes, the
 * reason codes of each refusal, and what it changes (subscribers reached,
 * the retained index). */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"
#include "node/mqtt/retain.h"

ICL_SUITE(handle_publish, 1);

static mqtt_packet expect_ack(icl *c, uint8_t type, uint16_t pid)
{
    mqtt_packet p;
    icl_expect(c, type, &p);
    cr_assert_eq(p.u.ack.packet_id, pid);
    return p;
}

static size_t retained_count(void)
{
    return retain_count(b.retained);
}

/* The local backplane knows every subscriber: nobody matched is 0x10. */
Test(handle_publish, qos1_with_no_subscriber_gets_puback_0x10)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "t/none", "x", 1, 5, false, NULL);
    icl_settle(c);
    mqtt_packet p = expect_ack(c, MQTT_PUBACK, 5);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    icl_free(c);
}

Test(handle_publish, qos1_reaches_the_subscriber_then_puback_0)
{
    icl *sub = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(sub, "t/+", 1), 1);
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "t/a", "hello", 1, 9, false, NULL);
    icl_settle(c);
    mqtt_packet p = expect_ack(c, MQTT_PUBACK, 9);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_SUCCESS);
    icl_expect(sub, MQTT_PUBLISH, &p);
    cr_assert_eq(p.u.publish.qos, 1);
    cr_assert_eq(p.u.publish.payload.len, 5);
    cr_assert_eq(memcmp(p.u.publish.payload.p, "hello", 5), 0);
    icl_free(c);
    icl_free(sub);
}

Test(handle_publish, v311_qos1_puback_has_no_reason_code)
{
    icl *c = icl_connected(&b, 0, MQTT_V311, "pub311");
    icl_send_publish(c, "t/none", "x", 1, 3, false, NULL);
    icl_settle(c);
    expect_ack(c, MQTT_PUBACK, 3);
    cr_assert_eq(c->raw_len, 4, "3.1.1 PUBACK is 4 bytes");
    icl_free(c);
}

Test(handle_publish, qos0_is_delivered_without_an_ack)
{
    icl *sub = icl_connected(&b, 0, MQTT_V5, "sub");
    icl_subscribe1(sub, "q0", 0);
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "q0", "x", 0, 0, false, NULL);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect(sub, MQTT_PUBLISH, NULL);
    icl_free(c);
    icl_free(sub);
}

/* §4.3.3: a QoS 2 resend of an id the session holds is acknowledged again
 * and not delivered twice. */
Test(handle_publish, qos2_resend_gets_pubrec_again_and_is_delivered_once)
{
    icl *sub = icl_connected(&b, 0, MQTT_V5, "sub");
    icl_subscribe1(sub, "q2", 2);
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "q2", "x", 2, 11, false, NULL);
    icl_settle(c);
    expect_ack(c, MQTT_PUBREC, 11);
    icl_send_publish(c, "q2", "x", 2, 11, false, NULL);
    icl_settle(c);
    expect_ack(c, MQTT_PUBREC, 11);
    mqtt_packet p;
    icl_expect(sub, MQTT_PUBLISH, &p);
    icl_expect_nothing(sub);
    /* PUBREL ends it: the id is free, PUBCOMP 0. */
    icl_send_ack(c, MQTT_PUBREL, 11, 0);
    icl_settle(c);
    p = expect_ack(c, MQTT_PUBCOMP, 11);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_SUCCESS);
    icl_free(c);
    icl_free(sub);
}

Test(handle_publish, a_retained_publish_is_stored_and_an_empty_one_clears_it)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "r/1", "kept", 0, 0, true, NULL);
    icl_settle(c);
    cr_assert_eq(retained_count(), 1);
    icl_send_publish(c, "r/1", "", 1, 2, true, NULL);
    icl_settle(c);
    expect_ack(c, MQTT_PUBACK, 2);
    cr_assert_eq(retained_count(), 0);
    icl_free(c);
}

Test(handle_publish, qos_over_the_maximum_is_disconnect_0x9b)
{
    cfg.max_qos = 1;
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "t", "x", 2, 1, false, NULL);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_QOS_NOT_SUPPORTED);
    icl_free(c);
}

Test(handle_publish, retain_when_not_available_is_disconnect_0x9a)
{
    cfg.retain_available = false;
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "t", "x", 0, 0, true, NULL);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_RETAIN_NOT_SUPPORTED);
    cr_assert_eq(retained_count(), 0);
    icl_free(c);
}

/* §3.3.4-6: only a server sends a Subscription Identifier in PUBLISH. */
Test(handle_publish, a_subscription_identifier_from_a_client_is_disconnect_0x82)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    uint32_t id = 4;
    pr.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    pr.sub_ids = &id;
    pr.n_sub_ids = 1;
    pr.sub_id = 4;
    icl_send_publish(c, "t", "x", 0, 0, false, &pr);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
    icl_free(c);
}

Test(handle_publish, topic_alias_0_is_disconnect_0x94)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    pr.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    pr.topic_alias = 0;
    icl_send_publish(c, "t", "x", 0, 0, false, &pr);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_TOPIC_ALIAS_INVALID);
    icl_free(c);
}

Test(handle_publish, an_alias_is_learnt_then_stands_for_its_topic)
{
    icl *sub = icl_connected(&b, 0, MQTT_V5, "sub");
    icl_subscribe1(sub, "alias/topic", 0);
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    pr.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    pr.topic_alias = 1;
    icl_send_publish(c, "alias/topic", "1", 0, 0, false, &pr);
    icl_send_publish(c, "", "2", 0, 0, false, &pr);
    icl_settle(c);
    icl_expect_nothing(c);
    mqtt_packet p;
    for (int i = 0; i < 2; i++) {
        icl_expect(sub, MQTT_PUBLISH, &p);
        cr_assert_eq(p.u.publish.topic.len, 11);
        cr_assert_eq(memcmp(p.u.publish.topic.p, "alias/topic", 11), 0);
    }
    icl_free(c);
    icl_free(sub);
}

Test(handle_publish, an_alias_never_set_is_disconnect_0x82)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    pr.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    pr.topic_alias = 1;
    icl_send_publish(c, "", "x", 0, 0, false, &pr);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
    icl_free(c);
}

/* §3.3.4-9: more unacknowledged QoS 2 than our Receive Maximum. */
Test(handle_publish, over_the_receive_maximum_is_disconnect_0x93)
{
    cfg.receive_maximum = 2;
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    for (uint16_t i = 1; i <= 2; i++) {
        icl_send_publish(c, "t", "x", 2, i, false, NULL);
    }
    icl_settle(c);
    expect_ack(c, MQTT_PUBREC, 1);
    expect_ack(c, MQTT_PUBREC, 2);
    icl_send_publish(c, "t", "x", 2, 3, false, NULL);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_RECEIVE_MAX_EXCEEDED);
    icl_free(c);
}

/* Over --max-topic-levels: QoS 1 is refused with PUBACK 0x90 and the
 * connection stays; QoS 0 has no ack, so it is DISCONNECT 0x90. */
Test(handle_publish, a_topic_over_the_limits_is_puback_0x90_or_disconnect)
{
    cfg.limits.max_topic_levels = 2;
    icl *c = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(c, "a/b/c", "x", 1, 4, false, NULL);
    icl_settle(c);
    mqtt_packet p = expect_ack(c, MQTT_PUBACK, 4);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_TOPIC_NAME_INVALID);
    cr_assert_not_null(icl_conn(c));
    icl_send_publish(c, "a/b/c", "x", 0, 0, false, NULL);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_TOPIC_NAME_INVALID);
    icl_free(c);
}

/* No Local is per client: the publisher's own subscription is skipped. */
Test(handle_publish, no_local_skips_the_publishers_own_subscription)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "self");
    mqtt_sub s = {.filter = icl_str("nl"), .qos = 0, .no_local = true};
    icl_send_subscribe(c, 1, &s, 1, NULL);
    icl_settle(c);
    icl_expect(c, MQTT_SUBACK, NULL);
    icl_send_publish(c, "nl", "x", 0, 0, false, NULL);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_free(c);
}
