/* SPDX-License-Identifier: Apache-2.0 */
/* Messages from other nodes, on a broker in this process (inproc.h): they
 * go in through the backplane hook as the redis_kafka backplane hands them
 * over, and out to real connections. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"
#include "node/mqtt/remote.h"

ICL_SUITE(remote, 2);

/* A v5 client `id` on worker wi, subscribed to `filter` with No Local. */
static icl *no_local_client(int wi, const char *id, const char *filter)
{
    icl *c = icl_open(&b, wi, MQTT_V5);
    icl_send_connect(c, id, NULL);
    mqtt_sub s = {.filter = icl_str(filter), .qos = 0, .no_local = true};
    icl_send_subscribe(c, 1, &s, 1, NULL);
    icl_settle(c);
    icl_expect(c, MQTT_CONNACK, NULL);
    icl_expect(c, MQTT_SUBACK, NULL);
    return c;
}

/* What another node published on `topic`, as the backplane hands it over. */
static void from_another_node(const char *topic, const char *payload, const char *client_id)
{
    bp_message m = {
        .topic = (const uint8_t *)topic,
        .topic_len = (uint32_t)strlen(topic),
        .payload = (const uint8_t *)payload,
        .payload_len = (uint32_t)strlen(payload),
        .client_id = (const uint8_t *)client_id,
        .client_id_len = client_id ? (uint16_t)strlen(client_id) : 0,
    };
    remote_message_hook(&b, &m, 0);
    cr_assert(inproc_settle(&b, NULL, NULL));
}

static void assert_publish(icl *c, const char *payload)
{
    mqtt_packet p;
    icl_expect(c, MQTT_PUBLISH, &p);
    cr_assert_eq(p.u.publish.payload.len, strlen(payload));
    cr_assert_arr_eq(p.u.publish.payload.p, payload, strlen(payload));
}

Test(remote, no_local_skips_the_same_client_id_published_elsewhere)
{
    icl *me = no_local_client(0, "me", "t/+");
    icl *other = no_local_client(1, "other", "t/+");

    from_another_node("t/1", "mine", "me");
    icl_expect_nothing(me);
    assert_publish(other, "mine");

    /* A prefix or an extension of the id is another client. */
    from_another_node("t/1", "m", "m");
    from_another_node("t/1", "mee", "mee");
    assert_publish(me, "m");
    assert_publish(me, "mee");
    assert_publish(other, "m");
    assert_publish(other, "mee");

    /* No client id (an older node's record, an internal message). */
    from_another_node("t/1", "anon", NULL);
    assert_publish(me, "anon");
    assert_publish(other, "anon");
    icl_expect_nothing(me);
    icl_expect_nothing(other);

    icl_free(me);
    icl_free(other);
}
