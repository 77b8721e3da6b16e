/* SPDX-License-Identifier: Apache-2.0 */
/* Messages from other nodes, on a broker in this process (inproc.h): they
 * go in through the backplane hook as the redis_kafka backplane hands them
 * over, and out to real connections. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc.h"
#include "node/broker.h"
#include "node/mqtt/remote.h"
#include "proto/packet.h"

static config cfg;
static broker b;

static void setup(void)
{
    cr_assert_eq(config_load(&cfg, 0, NULL), CONFIG_OK);
    cr_assert_eq(inproc_up(&b, &cfg, 2), 0);
}

static void teardown(void)
{
    inproc_down(&b);
    config_free(&cfg);
}

TestSuite(remote, .init = setup, .fini = teardown);

/* The next packet the client received (type 0 if none), consumed. */
static uint8_t next_packet(struct bufferevent *client, mqtt_packet *out, uint8_t *copy, size_t cap)
{
    struct evbuffer *in = bufferevent_get_input(client);
    size_t len = evbuffer_get_length(in);
    if (len == 0) {
        return 0;
    }
    mqtt_frame f;
    int n = mqtt_frame_parse(evbuffer_pullup(in, (ssize_t)len), len, 0, &f);
    cr_assert_gt(n, 0);
    cr_assert_leq((size_t)n, cap);
    evbuffer_remove(in, copy, (size_t)n);
    cr_assert_gt(mqtt_frame_parse(copy, (size_t)n, 0, &f), 0);
    cr_assert_eq(mqtt_decode(&f, MQTT_V5, out), MQTT_RC_SUCCESS);
    return f.type;
}

/* A v5 client `id` on worker wi, subscribed to `filter` with No Local. */
static struct bufferevent *no_local_client(int wi, const char *id, const char *filter)
{
    uint64_t conn_id;
    struct bufferevent *c = inproc_connect(&b, wi, &conn_id);
    cr_assert_not_null(c);
    mqtt_connect p;
    memset(&p, 0, sizeof(p));
    p.version = MQTT_V5;
    p.clean_start = true;
    p.keepalive = 60;
    p.client_id = (mqtt_bytes){(const uint8_t *)id, (uint32_t)strlen(id)};
    uint8_t buf[256];
    bufferevent_write(c, buf, mqtt_encode_connect(&p, buf));
    mqtt_sub s = {.filter = {(const uint8_t *)filter, (uint32_t)strlen(filter)}, .qos = 0, .no_local = true};
    bufferevent_write(c, buf, mqtt_encode_subscribe(1, NULL, &s, 1, MQTT_V5, buf));
    cr_assert(inproc_settle(&b, NULL, NULL));
    mqtt_packet pk;
    cr_assert_eq(next_packet(c, &pk, buf, sizeof(buf)), MQTT_CONNACK);
    cr_assert_eq(next_packet(c, &pk, buf, sizeof(buf)), MQTT_SUBACK);
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

static void assert_publish(struct bufferevent *c, const char *payload)
{
    mqtt_packet p;
    uint8_t buf[256];
    cr_assert_eq(next_packet(c, &p, buf, sizeof(buf)), MQTT_PUBLISH);
    cr_assert_eq(p.u.publish.payload.len, strlen(payload));
    cr_assert_arr_eq(p.u.publish.payload.p, payload, strlen(payload));
}

static void assert_nothing(struct bufferevent *c)
{
    cr_assert_eq(evbuffer_get_length(bufferevent_get_input(c)), 0);
}

Test(remote, no_local_skips_the_same_client_id_published_elsewhere)
{
    struct bufferevent *me = no_local_client(0, "me", "t/+");
    struct bufferevent *other = no_local_client(1, "other", "t/+");

    from_another_node("t/1", "mine", "me");
    assert_nothing(me);
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
    assert_nothing(me);
    assert_nothing(other);

    bufferevent_free(me);
    bufferevent_free(other);
}
