/* SPDX-License-Identifier: Apache-2.0 */
/* SUBSCRIBE (node/mqtt/handle_subscribe.c) on an in-process broker: the SUBACK
 * code per filter, what the subscription then receives, and the retained
 * messages sent on subscribe. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(handle_subscribe, 1);

/* SUBSCRIBE the filters at QoS 1 and return the SUBACK's codes. */
static void subscribe(icl *c, const char *const *filters, uint32_t n, uint8_t *codes)
{
    mqtt_sub s[8];
    memset(s, 0, sizeof(s));
    for (uint32_t i = 0; i < n; i++) {
        s[i].filter = icl_str(filters[i]);
        s[i].qos = 1;
    }
    icl_send_subscribe(c, 3, s, n, NULL);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_SUBACK, &p);
    cr_assert_eq(p.u.suback.packet_id, 3);
    cr_assert_eq(p.u.suback.codes.len, n);
    memcpy(codes, p.u.suback.codes.p, n);
}

static void publish_from(const char *id, const char *topic, bool retained)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, id);
    icl_send_publish(c, topic, "m", 0, 0, retained, NULL);
    icl_settle(c);
    icl_free(c);
}

Test(handle_subscribe, each_filter_gets_its_own_code_in_order)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    const char *f[] = {"a/b", "a/#/c", "+/x"};
    uint8_t codes[3];
    subscribe(c, f, 3, codes);
    cr_assert_eq(codes[0], 1);
    cr_assert_eq(codes[1], MQTT_RC_TOPIC_FILTER_INVALID);
    cr_assert_eq(codes[2], 1);
    icl_free(c);
}

Test(handle_subscribe, the_granted_qos_is_capped_by_max_qos)
{
    cfg.max_qos = 1;
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(c, "t", 2), 1);
    icl_free(c);
}

Test(handle_subscribe, a_v311_failure_is_0x80)
{
    icl *c = icl_connected(&b, 0, MQTT_V311, "sub311");
    cr_assert_eq(icl_subscribe1(c, "a/#/b", 0), 0x80);
    icl_free(c);
}

Test(handle_subscribe, shared_subscriptions_disabled_is_0x9e)
{
    cfg.shared_subscriptions = false;
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(c, "$share/g/t", 0), MQTT_RC_SHARED_SUB_NOT_SUPPORTED);
    icl_free(c);
}

Test(handle_subscribe, wildcards_disabled_is_0xa2)
{
    cfg.wildcard_subscriptions = false;
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(c, "t/+", 0), MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED);
    cr_assert_eq(icl_subscribe1(c, "t/x", 0), 0);
    icl_free(c);
}

Test(handle_subscribe, subscription_identifiers_disabled_is_0xa1)
{
    cfg.subscription_identifiers = false;
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    uint32_t id = 7;
    pr.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    pr.sub_id = id;
    pr.sub_ids = &id;
    pr.n_sub_ids = 1;
    mqtt_sub s = {.filter = icl_str("t"), .qos = 0};
    icl_send_subscribe(c, 1, &s, 1, &pr);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_SUBACK, &p);
    cr_assert_eq(p.u.suback.codes.p[0], MQTT_RC_SUB_ID_NOT_SUPPORTED);
    icl_free(c);
}

/* §3.8.3.1: No Local on a shared subscription is a protocol error: no
 * SUBACK, DISCONNECT 0x82. */
Test(handle_subscribe, no_local_on_a_shared_subscription_is_disconnect_0x82)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    mqtt_sub s = {.filter = icl_str("$share/g/t"), .qos = 0, .no_local = true};
    icl_send_subscribe(c, 1, &s, 1, NULL);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
    icl_free(c);
}

/* --max-subscriptions at its edge: the last one fits, one more is 0x97,
 * and a filter the session already has only changes its options. */
Test(handle_subscribe, max_subscriptions_refuses_one_more_with_0x97)
{
    cfg.limits.max_subscriptions = 2;
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(c, "a", 0), 0);
    cr_assert_eq(icl_subscribe1(c, "b", 0), 0);
    cr_assert_eq(icl_subscribe1(c, "c", 0), MQTT_RC_QUOTA_EXCEEDED);
    cr_assert_eq(icl_subscribe1(c, "a", 1), 1);
    icl_free(c);
}

/* --max-shared-groups at its edge: the last new group fits, one more is
 * 0x97 (3.1.1: 0x80), joining a group that exists is granted, and a
 * group's last member leaving frees its place. */
Test(handle_subscribe, max_shared_groups_refuses_a_new_group_past_it)
{
    cfg.limits.max_shared_groups = 2;
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    icl *e = icl_connected(&b, 0, MQTT_V5, "leaves");
    cr_assert_eq(icl_subscribe1(c, "$share/g1/t", 1), 1);
    cr_assert_eq(icl_subscribe1(e, "$share/g2/t", 1), 1);
    cr_assert_eq(icl_subscribe1(c, "$share/g3/t", 1), MQTT_RC_QUOTA_EXCEEDED);
    cr_assert_eq(icl_subscribe1(c, "$share/g1/u", 1), MQTT_RC_QUOTA_EXCEEDED); /* a group is name and filter */
    cr_assert_eq(icl_subscribe1(c, "plain/t", 1), 1);
    icl *d = icl_connected(&b, 0, MQTT_V311, "other");
    cr_assert_eq(icl_subscribe1(d, "$share/g1/t", 0), 0);
    cr_assert_eq(icl_subscribe1(d, "$share/g4/t", 0), 0x80);
    icl_free(d);
    /* g2's members leave (clean sessions end): its place is free. */
    icl_send_disconnect(e, 0, NULL);
    icl_settle(e);
    icl_free(e);
    icl_settle(c);
    mqtt_bytes f = {(const uint8_t *)"t", 1}, g = {(const uint8_t *)"g2", 2};
    pthread_rwlock_rdlock(&b.subs_lock);
    cr_assert_not(trie_has_group(b.subs, f, g));
    pthread_rwlock_unlock(&b.subs_lock);
    cr_assert_eq(icl_subscribe1(c, "$share/g3/t", 1), 1);
    icl_free(c);
}

/* SHARE_KEY_MAX at its edge: a shared group key "<group>/<filter>" of
 * exactly that many bytes is granted, one byte more is 0x8F (3.1.1: 0x80);
 * a plain filter that long is not concerned. */
Test(handle_subscribe, a_shared_group_key_longer_than_its_limit_is_0x8f)
{
    static char f[SHARE_KEY_MAX + 16];
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    for (int over = 0; over < 2; over++) {
        /* "$share/" + group of 10 + "/" + filter: key = 10 + 1 + filter. */
        size_t flen = SHARE_KEY_MAX - 11 + (size_t)over;
        memcpy(f, "$share/gggggggggg/", 18);
        memset(f + 18, over ? 'b' : 'a', flen);
        f[18 + flen] = '\0';
        cr_assert_eq(icl_subscribe1(c, f, 1), over ? MQTT_RC_TOPIC_FILTER_INVALID : 1);
        cr_assert_eq(icl_subscribe1(c, f + 18, 1), 1);
    }
    icl *d = icl_connected(&b, 0, MQTT_V311, "old");
    cr_assert_eq(icl_subscribe1(d, f, 1), 0x80);
    icl_free(d);
    icl_free(c);
}

Test(handle_subscribe, a_subscription_receives_matching_messages_only)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    icl_subscribe1(c, "s/+", 0);
    publish_from("p1", "s/1", false);
    publish_from("p2", "other/1", false);
    mqtt_packet p;
    icl_expect(c, MQTT_PUBLISH, &p);
    cr_assert_eq(p.u.publish.topic.len, 3);
    icl_expect_nothing(c);
    icl_free(c);
}

/* The retained message follows the SUBACK (§3.3.1.3). */
Test(handle_subscribe, a_retained_message_follows_the_suback)
{
    publish_from("p", "keep/1", true);
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(c, "keep/#", 1), 1);
    mqtt_packet p;
    icl_expect(c, MQTT_PUBLISH, &p);
    cr_assert(p.u.publish.retain);
    icl_free(c);
}

/* Retain Handling 2: never; 1: only for a new subscription. */
Test(handle_subscribe, retain_handling_1_sends_only_on_a_new_subscription_and_2_never)
{
    publish_from("p", "keep/1", true);
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    mqtt_sub s = {.filter = icl_str("keep/1"), .qos = 0, .retain_handling = 2};
    icl_send_subscribe(c, 1, &s, 1, NULL);
    icl_settle(c);
    icl_expect(c, MQTT_SUBACK, NULL);
    icl_expect_nothing(c);
    s.filter = icl_str("keep/+");
    s.retain_handling = 1;
    icl_send_subscribe(c, 2, &s, 1, NULL);
    icl_settle(c);
    icl_expect(c, MQTT_SUBACK, NULL);
    icl_expect(c, MQTT_PUBLISH, NULL);
    icl_send_subscribe(c, 3, &s, 1, NULL);
    icl_settle(c);
    icl_expect(c, MQTT_SUBACK, NULL);
    icl_expect_nothing(c);
    icl_free(c);
}

/* §4.8.2: a shared subscription gets no retained messages. */
Test(handle_subscribe, a_shared_subscription_gets_no_retained_message)
{
    publish_from("p", "keep/1", true);
    icl *c = icl_connected(&b, 0, MQTT_V5, "sub");
    cr_assert_eq(icl_subscribe1(c, "$share/g/keep/1", 0), 0);
    icl_expect_nothing(c);
    icl_free(c);
}
