/* SPDX-License-Identifier: Apache-2.0 */
/* Outgoing flow control (the client's Receive Maximum and --max-inflight)
 * and outbound topic aliases, on a real connection over a socketpair. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/worker.h"
#include "proto/packet.h"

static config cfg;
static broker b;
static worker *w;
static int peer;
static conn *c;
static session *s;

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_inflight = 32;
    cfg.max_queued = 100;
    cfg.max_output_buffer = 1 << 20;
    cfg.max_packet_size = 1 << 20;
    broker_open_opts o = {.workers = 1};
    cr_assert_eq(broker_open(&b, &cfg, &o), BROKER_OK);
    cr_assert_eq(broker_start(&b), BROKER_OK);
    w = &b.workers[0];
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer = sv[1];
    evutil_make_socket_nonblocking(sv[0]);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    c = conn_new(w, sv[0], (struct sockaddr *)&sa, sizeof(sa), 0);
    cr_assert_not_null(c);
    conn_set_state(c, CS_ACTIVE);
    c->version = MQTT_V5;
    s = session_new(&b, "flow", 4, 0);
    s->c = c;
    c->s = s;
}

/* The connection (and the session it holds) go with the broker. */
static void teardown(void)
{
    broker_stop(&b);
    broker_close(&b);
    close(peer);
}

TestSuite(flow, .init = setup, .fini = teardown);

/* The k-th in-flight entry in send order (the table is indexed by id). */
static inflight *nth(uint32_t k)
{
    inflight *f = session_inflight_first(s);
    for (uint32_t i = 0; i < k && f; i++) {
        f = session_inflight_next(s, f);
    }
    cr_assert_not_null(f, "no in-flight entry %u of %u", k, s->n_inf);
    return f;
}

/* Let the bufferevent write, then read and decode what the client got. */
static size_t read_publishes(mqtt_publish *out, size_t cap, uint8_t *buf, size_t buflen)
{
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    ssize_t n = recv(peer, buf, buflen, MSG_DONTWAIT);
    size_t got = 0, pos = 0;
    while (n > 0 && pos < (size_t)n && got < cap) {
        mqtt_frame f;
        int len = mqtt_frame_parse(buf + pos, (size_t)n - pos, 0, &f);
        cr_assert_gt(len, 0);
        cr_assert_eq(mqtt_decode_publish(&f, MQTT_V5, &out[got]), MQTT_RC_SUCCESS);
        got++;
        pos += (size_t)len;
    }
    return got;
}

static void deliver(const char *topic, uint8_t qos)
{
    mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)strlen(topic)};
    mqtt_bytes p = {(const uint8_t *)"payload", 7};
    delivery d;
    memset(&d, 0, sizeof(d));
    d.m = msg_new(t, NULL, p, qos, false, 0, now_ms());
    d.qos = qos;
    session_deliver(w, s, &d);
}

Test(flow, client_receive_maximum_bounds_what_is_in_flight)
{
    c->client_receive_max = 2;
    for (int i = 0; i < 5; i++) {
        deliver("t", 1);
    }
    cr_assert_eq(s->n_inf, 2);
    cr_assert_eq(s->q_len, 3);
    uint8_t buf[4096];
    mqtt_publish p[8];
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 2);
    /* One PUBACK frees one slot: exactly one more goes out. */
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, p[0].packet_id), MQTT_RC_SUCCESS);
    cr_assert_eq(s->n_inf, 2);
    cr_assert_eq(s->q_len, 2);
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 1);
    cr_assert_neq(p[0].packet_id, 0);
}

Test(flow, max_inflight_caps_a_generous_client)
{
    cfg.max_inflight = 3;
    c->client_receive_max = 65535;
    for (int i = 0; i < 10; i++) {
        deliver("t", 2);
    }
    cr_assert_eq(s->n_inf, 3);
    cr_assert_eq(s->q_len, 7);
}

Test(flow, qos0_is_not_held_by_the_window)
{
    c->client_receive_max = 1;
    deliver("t", 1);
    deliver("t", 0);
    deliver("t", 0);
    cr_assert_eq(s->n_inf, 1);
    cr_assert_eq(s->q_len, 0);
    uint8_t buf[4096];
    mqtt_publish p[8];
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 3);
}

Test(flow, unknown_ack_is_reported_and_changes_nothing)
{
    c->client_receive_max = 1;
    deliver("t", 1);
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, 999), MQTT_RC_PACKET_ID_NOT_FOUND);
    cr_assert_eq(session_ack(w, s, MQTT_PUBCOMP, nth(0)->pid), MQTT_RC_PACKET_ID_NOT_FOUND);
    cr_assert_eq(s->n_inf, 1);
}

Test(flow, outbound_aliases_are_learned_then_used_up_to_the_client_maximum)
{
    c->client_alias_max = 1;
    deliver("a/one", 0);
    deliver("a/one", 0);
    deliver("a/two", 0);
    uint8_t buf[4096];
    mqtt_publish p[8];
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 3);
    cr_assert_eq(p[0].topic.len, 5);
    cr_assert(mqtt_props_has(&p[0].props, MQTT_PROP_TOPIC_ALIAS));
    cr_assert_eq(p[0].props.topic_alias, 1);
    cr_assert_eq(p[1].topic.len, 0, "known topic sent by alias only");
    cr_assert_eq(p[1].props.topic_alias, 1);
    cr_assert_eq(p[2].topic.len, 5);
    cr_assert_not(mqtt_props_has(&p[2].props, MQTT_PROP_TOPIC_ALIAS), "no alias beyond the client's maximum");
}

Test(flow, an_alias_is_taken_back_when_its_packet_is_too_large_for_the_client)
{
    c->client_alias_max = 4;
    c->client_max_packet = 20;
    deliver("a/very/long/topic/name/that/does/not/fit", 0);
    cr_assert(!c->x || c->x->out_alias_used == 0);
}

/* The window at its ceiling: more than 32,768 messages in flight to one
 * client. The inflight list's 16-bit capacity once doubled from 32,768 to
 * 0 and the next message was written past the list. */
Test(flow, inflight_list_past_32768)
{
    enum { N = 40000 };
    cfg.max_inflight = 65535;
    cfg.max_queued = 10;
    cfg.max_output_buffer = 64 << 20;
    c->client_receive_max = 65535;
    for (int i = 0; i < N; i++) {
        deliver("t", 1);
    }
    cr_assert_eq(s->n_inf, N);
    cr_assert_eq(s->q_len, 0);
    cr_assert_eq(nth(0)->pid, 1);
    cr_assert_eq(nth(N - 1)->pid, N);
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, N), MQTT_RC_SUCCESS);
    cr_assert_eq(s->n_inf, N - 1);
}

/* Every in-flight packet id is non-zero and unique. */
static void assert_pids_unique(void)
{
    static uint8_t seen[65536];
    memset(seen, 0, sizeof(seen));
    uint32_t n = 0;
    for (const inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f), n++) {
        cr_assert_neq(f->pid, 0);
        cr_assert_eq(seen[f->pid], 0, "packet id %u twice in flight", f->pid);
        seen[f->pid] = 1;
        cr_assert_eq(session_inflight_find(s, f->pid), f);
    }
    cr_assert_eq(n, s->n_inf);
}

/* One message stays unacknowledged while the ids go round the 16-bit
 * circle: the id after 65,535 is 1, which is still in flight, so it is
 * stepped over, and so are 2 and 3, whose slots in the 4-slot table
 * (id mod 4) 65,534 and 65,535 hold: 4 is taken, and the ones after it too. */
Test(flow, packet_id_in_flight_for_a_whole_cycle_is_skipped)
{
    cfg.max_inflight = 4;
    c->client_receive_max = 4;
    deliver("t", 1); /* pid 1, never acknowledged */
    cr_assert_eq(nth(0)->pid, 1);
    s->next_pid = 65533; /* as if 65,532 more had come and gone */
    deliver("t", 1);
    deliver("t", 1);
    cr_assert_eq(nth(1)->pid, 65534);
    cr_assert_eq(nth(2)->pid, 65535);
    deliver("t", 1);
    cr_assert_eq(nth(3)->pid, 4);
    assert_pids_unique();
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(session_ack(w, s, MQTT_PUBACK, nth(1)->pid), MQTT_RC_SUCCESS);
        deliver("t", 1);
        assert_pids_unique();
    }
    cr_assert_eq(s->n_inf, 4);
    cr_assert_eq(nth(0)->pid, 1);
}

/* Ids restored from another node in any order are never handed out
 * again while in flight. */
Test(flow, restored_packet_ids_out_of_order_are_not_reused)
{
    cfg.max_inflight = 8;
    c->client_receive_max = 8;
    const uint16_t restored[] = {7, 3, 65535, 2}; /* 3 follows the newest */
    for (size_t i = 0; i < sizeof(restored) / sizeof(restored[0]); i++) {
        session_inflight_restore(w, s, restored[i], INF_WAIT_ACK, -1, 0);
    }
    for (int i = 0; i < 4; i++) {
        deliver("t", 1);
        assert_pids_unique();
    }
    cr_assert_eq(s->n_inf, 8);
}

/* Restored ids in send order: the next id follows the newest restored
 * one (5), stepping over 6 and 7, whose slots in the 8-slot table 65,534
 * and 65,535 hold. */
Test(flow, restored_packet_ids_in_order_continue_the_sequence)
{
    cfg.max_inflight = 8;
    c->client_receive_max = 8;
    const uint16_t restored[] = {65534, 65535, 1, 5};
    for (size_t i = 0; i < sizeof(restored) / sizeof(restored[0]); i++) {
        session_inflight_restore(w, s, restored[i], INF_WAIT_ACK, -1, 0);
    }
    cr_assert_eq(s->next_pid, 5);
    deliver("t", 1);
    cr_assert_eq(nth(4)->pid, 8);
    assert_pids_unique();
}

/* Acks in random order with a small window, round the id circle several
 * times, some messages held for long: no id is ever in flight twice. */
Test(flow, packet_ids_stay_unique_under_random_acks)
{
    enum { WINDOW = 16, ROUNDS = 300000 };
    cfg.max_inflight = WINDOW;
    cfg.max_queued = 1000;
    c->client_receive_max = WINDOW;
    srand(20);
    uint8_t drain[65536];
    for (int i = 0; i < ROUNDS; i++) {
        deliver("t", 1);
        if (s->n_inf == WINDOW) {
            /* Mostly the oldest; sometimes any; the first one rarely. */
            uint32_t k = rand() % 4 ? 1 : (uint32_t)rand() % WINDOW;
            if (k == 0 && rand() % 64) {
                k = 1;
            }
            cr_assert_eq(session_ack(w, s, MQTT_PUBACK, nth(k)->pid), MQTT_RC_SUCCESS);
        }
        if (i % 4096 == 0) {
            assert_pids_unique();
            while (recv(peer, drain, sizeof(drain), MSG_DONTWAIT) > 0) {
            }
        }
    }
    assert_pids_unique();
}

/* The in-flight table holds the window and no more: its capacity is the
 * window rounded up to a power of two, however long the ids go round. */
static void assert_table_within(uint32_t window)
{
    uint32_t cap = session_list_cap(s->inf_cap_log2);
    cr_assert_leq(cap, window < 4 ? 4 : 2 * window, "table of %u slots for a window of %u", cap, window);
}

/* The whole 16-bit window: every id 1..65,535 in flight at once, then the
 * oldest acknowledged frees id 1, which the next message takes (the ids
 * wrap); the order stays the send order, the table stays 65,536 slots. */
Test(flow, full_window_of_65535_ids_wraps_in_send_order)
{
    cfg.max_inflight = 65535;
    cfg.max_queued = 10;
    cfg.max_output_buffer = 64 << 20;
    c->client_receive_max = 65535;
    for (int i = 0; i < 65535; i++) {
        deliver("t", 1);
    }
    cr_assert_eq(s->n_inf, 65535);
    cr_assert_eq(s->inf_cap_log2, 16);
    deliver("t", 1); /* the window is full: queued */
    cr_assert_eq(s->q_len, 1);
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, 1), MQTT_RC_SUCCESS); /* pumps the queued one */
    cr_assert_eq(s->q_len, 0);
    cr_assert_eq(s->n_inf, 65535);
    cr_assert_eq(nth(0)->pid, 2);
    cr_assert_eq(nth(65534)->pid, 1, "the id after 65,535 is 1");
    cr_assert_eq(s->inf_cap_log2, 16);
    assert_pids_unique();
    /* A middle one acked: the others keep their order. */
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, 30000), MQTT_RC_SUCCESS);
    cr_assert_eq(nth(29997)->pid, 29999);
    cr_assert_eq(nth(29998)->pid, 30001);
    cr_assert_null(session_inflight_find(s, 30000));
}

/* Acks out of order leave gaps in the table: the next ids step over the
 * slots still taken, and the table never grows past the window. */
Test(flow, table_stays_within_the_window_while_ids_wrap)
{
    enum { WINDOW = 16 };
    cfg.max_inflight = WINDOW;
    cfg.max_queued = 1000;
    c->client_receive_max = WINDOW;
    uint8_t drain[65536];
    for (int i = 0; i < WINDOW; i++) {
        deliver("t", 1);
    }
    /* Ids 1 and 5 stay unacknowledged for three laps of the 16-bit circle. */
    for (int i = 0; i < 3 * 65535; i++) {
        inflight *f = nth(0);
        if (f->pid == 1 || f->pid == 5) {
            f = session_inflight_next(s, f);
        }
        if (f->pid == 1 || f->pid == 5) {
            f = session_inflight_next(s, f);
        }
        cr_assert_eq(session_ack(w, s, MQTT_PUBACK, f->pid), MQTT_RC_SUCCESS);
        cr_assert_eq(s->n_inf, WINDOW - 1, "round %d: %u in flight, %u queued", i, s->n_inf, s->q_len);
        if (i % 1024 == 0) {
            assert_pids_unique();
            assert_table_within(WINDOW);
            /* Let the connection write what it holds, and take it. */
            for (int k = 0; k < 2; k++) {
                event_base_loop(w->base, EVLOOP_NONBLOCK);
                while (recv(peer, drain, sizeof(drain), MSG_DONTWAIT) > 0) {
                }
            }
        }
        deliver("t", 1);
    }
    assert_pids_unique();
    assert_table_within(WINDOW);
    cr_assert_eq(nth(0)->pid, 1);
    cr_assert_eq(nth(1)->pid, 5);
}

/* After a reconnect the unacknowledged ones go again, with DUP, in the
 * order they were first sent (MQTT 4.6), whatever was acked between. */
Test(flow, resend_keeps_send_order_after_acks_in_the_middle)
{
    c->client_receive_max = 8;
    for (int i = 0; i < 6; i++) {
        deliver("t", 1);
    }
    uint8_t buf[4096];
    mqtt_publish p[8];
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 6);
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, 3), MQTT_RC_SUCCESS);
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, 1), MQTT_RC_SUCCESS);
    cr_assert_eq(session_ack(w, s, MQTT_PUBACK, 6), MQTT_RC_SUCCESS);
    deliver("t", 1); /* the next id: 7 */
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 1);
    session_resend(w, s);
    cr_assert_eq(read_publishes(p, 8, buf, sizeof(buf)), 4);
    const uint16_t want[] = {2, 4, 5, 7};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(p[i].packet_id, want[i], "resend %d: id %u", i, p[i].packet_id);
        cr_assert(p[i].dup);
    }
}

/* Restored ids that share a slot grow the table until each has its own. */
Test(flow, restored_ids_sharing_a_slot_each_get_their_own)
{
    const uint16_t restored[] = {4, 8, 12, 65532, 16};
    for (size_t i = 0; i < sizeof(restored) / sizeof(restored[0]); i++) {
        session_inflight_restore(w, s, restored[i], INF_WAIT_ACK, -1, 0);
    }
    cr_assert_eq(s->n_inf, 5);
    for (uint32_t i = 0; i < 5; i++) {
        cr_assert_eq(nth(i)->pid, restored[i]);
        cr_assert_eq(session_inflight_find(s, restored[i]), nth(i));
    }
    assert_pids_unique();
    cr_assert_null(session_inflight_find(s, 20));
}
