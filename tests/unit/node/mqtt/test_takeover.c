/* SPDX-License-Identifier: Apache-2.0 */
/* Claiming a client id across workers, on a broker in this process
 * (inproc.h): the loser of two concurrent claims. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc.h"
#include "node/broker.h"
#include "node/worker.h"
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

TestSuite(takeover, .init = setup, .fini = teardown);

static void send_connect(struct bufferevent *client, const char *id)
{
    mqtt_connect p;
    memset(&p, 0, sizeof(p));
    p.version = MQTT_V5;
    p.clean_start = true;
    p.keepalive = 60;
    p.client_id = (mqtt_bytes){(const uint8_t *)id, (uint32_t)strlen(id)};
    uint8_t buf[128];
    bufferevent_write(client, buf, mqtt_encode_connect(&p, buf));
}

/* The first packet the client received, or type 0 if none. */
static uint8_t first_packet(struct bufferevent *client, mqtt_packet *out)
{
    struct evbuffer *in = bufferevent_get_input(client);
    size_t len = evbuffer_get_length(in);
    if (len == 0) {
        return 0;
    }
    const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
    mqtt_frame f;
    cr_assert_gt(mqtt_frame_parse(p, len, 0, &f), 0);
    cr_assert_eq(mqtt_decode(&f, MQTT_V5, out), MQTT_RC_SUCCESS);
    return f.type;
}

Test(takeover, the_loser_of_a_race_gets_no_packet_before_connack)
{
    uint64_t id_old = 0, id_a = 0, id_b = 0;
    struct bufferevent *old = inproc_connect(&b, 1, &id_old);
    send_connect(old, "race");
    cr_assert(inproc_settle(&b, NULL, NULL));
    mqtt_packet p;
    cr_assert_eq(first_packet(old, &p), MQTT_CONNACK);
    evbuffer_drain(bufferevent_get_input(old), 1 << 20);

    /* A on worker 0 and B on worker 1 both claim before the owner (worker
     * 1) handles A's request: B's claim is newer, so A loses. */
    struct bufferevent *a = inproc_connect(&b, 0, &id_a);
    struct bufferevent *bb = inproc_connect(&b, 1, &id_b);
    send_connect(a, "race");
    send_connect(bb, "race");
    cr_assert(inproc_settle(&b, NULL, NULL));

    uint8_t first = first_packet(a, &p);
    cr_assert(first == 0 || first == MQTT_CONNACK, "the first packet to A is %s, not CONNACK", mqtt_type_name(first));
    cr_assert_null(worker_find_conn(&b.workers[0], id_a), "A is closed");
    cr_assert_eq(first_packet(bb, &p), MQTT_CONNACK);
    cr_assert_eq(p.u.connack.rc, MQTT_RC_SUCCESS);
    cr_assert_eq(first_packet(old, &p), MQTT_DISCONNECT);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_SESSION_TAKEN_OVER);

    bufferevent_free(old);
    bufferevent_free(a);
    bufferevent_free(bb);
}
