/* SPDX-License-Identifier: Apache-2.0 */
/* The connection state machine (node/conn.c) on an in-process broker
 * (inproc.h): what a client sees on the wire for each transition, and
 * teardown: a close while the connection waits for its session, and the
 * answer that arrives after it is gone. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(conn, 2);

Test(conn, connect_gets_connack_and_the_connection_becomes_active)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    cr_assert_eq(icl_conn(c)->state, CS_NEW);
    icl_send_connect(c, "sm-1", NULL);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_CONNACK, &p);
    cr_assert_eq(p.u.connack.rc, MQTT_RC_SUCCESS);
    cr_assert_not(p.u.connack.session_present);
    cr_assert_eq(icl_conn(c)->state, CS_ACTIVE);
    icl_expect_nothing(c);
    icl_free(c);
}

Test(conn, v311_connect_gets_connack_0)
{
    icl *c = icl_open(&b, 1, MQTT_V311);
    icl_send_connect(c, "sm-311", NULL);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_CONNACK, &p);
    cr_assert_eq(p.u.connack.rc, 0);
    icl_free(c);
}

/* §3.1.0-1 / §4.8: the first packet must be CONNECT. Nothing is sent back
 * (there is no session to speak MQTT 5 to); the connection just closes. */
Test(conn, a_packet_before_connect_is_refused_by_closing)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    icl_send_ping(c);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    cr_assert_eq(atomic_load(&b.stats.connections_current), 0);
    icl_free(c);
}

Test(conn, a_publish_before_connect_is_refused_by_closing)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    icl_send_publish(c, "t", "x", 0, 0, false, NULL);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* An HTTP request or a port scan is refused at the first byte. */
Test(conn, non_mqtt_bytes_are_refused_at_the_first_byte)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    icl_write(c, "GET / HTTP/1.1\r\n", 16);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* §3.1.0-2: a second CONNECT is a protocol error (MQTT 5: DISCONNECT 0x82). */
Test(conn, a_second_connect_is_a_protocol_error)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-twice");
    icl_send_connect(c, "sm-twice", NULL);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_PROTOCOL_ERROR);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

Test(conn, a_second_connect_closes_a_v311_connection_without_a_packet)
{
    icl *c = icl_connected(&b, 0, MQTT_V311, "sm-twice-311");
    icl_send_connect(c, "sm-twice-311", NULL);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* A server-only packet from a client (CONNACK) is a protocol error. */
Test(conn, a_server_only_packet_is_a_protocol_error)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-connack");
    mqtt_connack ca;
    memset(&ca, 0, sizeof(ca));
    uint8_t buf[32];
    icl_write(c, buf, mqtt_encode_connack(&ca, MQTT_V5, buf));
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
    icl_free(c);
}

Test(conn, a_malformed_packet_gets_disconnect_0x81)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-bad");
    /* PUBLISH with reserved QoS 3. */
    static const uint8_t bad[] = {0x36, 0x04, 0x00, 0x01, 't', 0x00};
    icl_write(c, bad, sizeof(bad));
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_MALFORMED);
    icl_free(c);
}

Test(conn, a_packet_over_max_packet_size_gets_disconnect_0x95_unread)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-big");
    /* Only the fixed header: the body is refused before it arrives. */
    uint8_t head[5] = {0x30};
    uint32_t len = cfg.max_packet_size; /* + the header: one byte too many */
    size_t n = 1;
    do {
        uint8_t d = len % 128;
        len /= 128;
        head[n++] = (uint8_t)(d | (len ? 0x80 : 0));
    } while (len);
    icl_write(c, head, n);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PACKET_TOO_LARGE);
    icl_free(c);
}

/* A packet split across reads is handled once it is whole. */
Test(conn, a_packet_arriving_one_byte_at_a_time_is_handled_once_whole)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.version = MQTT_V5;
    q.clean_start = true;
    q.keepalive = 30;
    q.client_id = icl_str("sm-bytes");
    uint8_t buf[128];
    size_t n = mqtt_encode_connect(&q, buf);
    for (size_t i = 0; i < n; i++) {
        icl_write(c, &buf[i], 1);
        icl_settle(c);
        mqtt_packet p;
        if (i + 1 < n) {
            icl_expect_nothing(c);
        } else {
            icl_expect(c, MQTT_CONNACK, &p);
        }
    }
    icl_free(c);
}

/* §3.1.2.10: no packet within one and a half times the keep alive. */
Test(conn, keep_alive_timeout_closes_with_disconnect_0x8d)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.keepalive = 10;
    icl_send_connect(c, "sm-ka", &q);
    icl_settle(c);
    icl_expect(c, MQTT_CONNACK, NULL);
    conn *k = icl_conn(c);
    uint64_t last = k->last_rx_ms;
    conn_check_timers(k, last + 14999);
    icl_settle(c);
    icl_expect_nothing(c);
    cr_assert_not_null(icl_conn(c), "closed before 1.5 x keep alive");
    conn_check_timers(k, last + 15000);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_KEEP_ALIVE_TIMEOUT);
    icl_free(c);
}

Test(conn, a_packet_resets_the_keep_alive_clock)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.keepalive = 10;
    icl_send_connect(c, "sm-ka2", &q);
    icl_settle(c);
    icl_expect(c, MQTT_CONNACK, NULL);
    conn *k = icl_conn(c);
    uint64_t before = k->last_rx_ms;
    icl_send_ping(c);
    icl_settle(c);
    icl_expect(c, MQTT_PINGRESP, NULL);
    cr_assert_geq(k->last_rx_ms, before);
    conn_check_timers(k, k->last_rx_ms + 14000);
    icl_settle(c);
    cr_assert_not_null(icl_conn(c));
    icl_free(c);
}

Test(conn, no_connect_within_the_connect_timeout_closes_silently)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    conn *k = icl_conn(c);
    conn_check_timers(k, k->created_ms + (uint64_t)cfg.connect_timeout * 1000u);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* The same deadlines through the worker's timing wheel (node/timer_wheel.c),
 * as the 1 s tick drives it: advance(now) fires what is due by now. */
static uint32_t advance(worker *w, uint64_t now)
{
    return tw_advance(&w->timers, now, conn_timer_fired, &now);
}

/* MQTT 5 for a keep alive the server keeps, 3.1.1 for 0 (MQTT 5 would get
 * the server's, --max-keepalive). */
static icl *connected_with_keepalive(int wi, const char *id, uint16_t keepalive)
{
    icl *c = icl_open(&b, wi, keepalive ? MQTT_V5 : MQTT_V311);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.keepalive = keepalive;
    icl_send_connect(c, id, &q);
    icl_settle(c);
    icl_expect(c, MQTT_CONNACK, NULL);
    return c;
}

Test(conn, the_tick_closes_at_1_5x_keep_alive_and_not_before)
{
    icl *c = connected_with_keepalive(0, "tw-ka", 10);
    conn *k = icl_conn(c);
    uint64_t last = k->last_rx_ms;
    cr_assert(tw_armed(&k->timer), "an active connection with keep alive has a deadline");
    advance(&b.workers[0], last + 14999);
    icl_settle(c);
    icl_expect_nothing(c);
    cr_assert_not_null(icl_conn(c), "closed before 1.5 x keep alive");
    advance(&b.workers[0], last + 15000);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_KEEP_ALIVE_TIMEOUT);
    icl_free(c);
}

/* A packet moves last_rx_ms only (read_cb); the timer, come up at the old
 * deadline, finds the new one and moves there. */
Test(conn, the_tick_follows_a_keep_alive_extended_by_a_packet)
{
    icl *c = connected_with_keepalive(0, "tw-ka2", 10);
    conn *k = icl_conn(c);
    uint64_t last = k->last_rx_ms;
    k->last_rx_ms = last + 10000; /* as a PINGREQ 10 s later sets it */
    cr_assert_eq(advance(&b.workers[0], last + 15000), 1, "the timer comes up at the old deadline");
    icl_settle(c);
    icl_expect_nothing(c);
    cr_assert_not_null(icl_conn(c), "closed although a packet came 5 s ago");
    cr_assert(tw_armed(&k->timer));
    cr_assert_eq(k->timer.due_ms, last + 25000);
    cr_assert_eq(advance(&b.workers[0], last + 24999), 0);
    cr_assert_not_null(icl_conn(c));
    advance(&b.workers[0], last + 25000);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_KEEP_ALIVE_TIMEOUT);
    icl_free(c);
}

Test(conn, the_tick_closes_a_connection_without_connect_at_the_connect_timeout)
{
    icl *c = icl_open(&b, 1, MQTT_V5);
    conn *k = icl_conn(c);
    uint64_t due = k->created_ms + (uint64_t)cfg.connect_timeout * 1000u;
    advance(&b.workers[1], due - 1);
    cr_assert_not_null(icl_conn(c));
    advance(&b.workers[1], due);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* What the tick costs does not depend on idle connections: with keep alive
 * 0 they have no timer; with a long one, nothing of theirs comes up for
 * 1.5 x keep alive. And the online gauge is a count kept on state changes,
 * not a walk. */
Test(conn, idle_connections_are_not_looked_at_by_the_tick)
{
    enum { N = 40 };
    icl *c[N];
    worker *w = &b.workers[0];
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "tw-idle-%d", i);
        c[i] = connected_with_keepalive(0, id, i % 2 ? 0 : 600);
    }
    cr_assert_eq(w->nactive, N);
    cr_assert_eq(w->timers.count, N / 2, "only the connections with keep alive have a timer");
    uint64_t t0 = icl_conn(c[0])->last_rx_ms;
    for (uint64_t s = 1; s < 899; s++) {
        cr_assert_eq(advance(w, t0 + s * 1000), 0, "a timer came up %llu s in", (unsigned long long)s);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_not_null(icl_conn(c[i]));
    }
    advance(w, t0 + 3600 * 1000);
    for (int i = 0; i < N; i++) {
        icl_settle(c[i]);
        if (i % 2) {
            cr_assert_not_null(icl_conn(c[i]), "keep alive 0 never times out");
        } else {
            icl_expect_closed(c[i]);
        }
    }
    cr_assert_eq(w->nactive, N / 2);
    for (int i = 0; i < N; i++) {
        icl_free(c[i]);
    }
}

Test(conn, the_client_going_away_frees_the_connection)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-eof");
    cr_assert_eq(atomic_load(&b.stats.connections_current), 1);
    icl_drop(c);
    icl_expect_closed(c);
    cr_assert_eq(atomic_load(&b.stats.connections_current), 0);
    cr_assert_eq(b.workers[0].nconns, 0);
    icl_free(c);
}

/* conn_close is idempotent: one DISCONNECT, however often it is called. */
Test(conn, close_twice_sends_one_disconnect)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-close2");
    conn *k = icl_conn(c);
    conn_close(k, MQTT_RC_ADMIN_ACTION, "test");
    conn_close(k, MQTT_RC_SERVER_SHUTTING_DOWN, "test again");
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_ADMIN_ACTION);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* What the client sent after the packet that closed it is not handled. */
Test(conn, input_after_a_fatal_packet_is_not_handled)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "sm-after");
    uint8_t buf[64];
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.version = MQTT_V5;
    q.client_id = icl_str("x");
    size_t n = mqtt_encode_connect(&q, buf);
    n += mqtt_encode_ping(MQTT_PINGREQ, buf + n);
    icl_write(c, buf, n);
    icl_settle(c);
    icl_expect(c, MQTT_DISCONNECT, NULL);
    icl_expect_nothing(c);
    icl_free(c);
}

/* Teardown. The client id is held by a session on worker 1; a second
 * connection on worker 0 claims it and waits (CS_CLAIMING) for worker 1 to
 * hand the session over. It goes away before the answer comes: the answer
 * then finds no connection, and the session must not be lost or leaked. */
Test(conn, close_while_the_session_claim_is_pending)
{
    icl *old = icl_connected(&b, 1, MQTT_V5, "sm-pending");
    icl *c = icl_open(&b, 0, MQTT_V5);
    icl_send_connect(c, "sm-pending", NULL);
    /* Only worker 0 runs: the claim is posted to worker 1 and waits there. */
    event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
    conn *k = icl_conn(c);
    cr_assert_not_null(k);
    cr_assert_eq(k->state, CS_CLAIMING);
    conn_close(k, MQTT_RC_UNSPECIFIED, "test: gone while claiming");
    cr_assert_eq(k->state, CS_CLOSED, "nothing to flush: closed at once");
    icl_settle(c);
    icl_expect_closed(c);
    icl_expect_nothing(c);
    mqtt_packet p;
    icl_expect(old, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_SESSION_TAKEN_OVER);
    /* The session still works: the next client gets it. */
    icl *again = icl_connected(&b, 0, MQTT_V5, "sm-pending");
    icl_free(again);
    icl_free(old);
    icl_free(c);
}

/* The answer to a claim arrives after its connection closed: the session
 * handed over on the way is not attached to anything, and a client that
 * comes later still gets it. */
Test(conn, a_takeover_answer_after_close_finds_no_connection)
{
    icl *old = icl_connected(&b, 1, MQTT_V5, "sm-late");
    icl *c = icl_open(&b, 0, MQTT_V5);
    icl_send_connect(c, "sm-late", NULL);
    event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK); /* claim posted */
    /* Worker 1 hands the session over (its answer is now in worker 0's
     * inbox), then the claiming client goes away before worker 0 reads it. */
    event_base_loop(b.workers[1].base, EVLOOP_NONBLOCK);
    event_base_loop(b.workers[1].base, EVLOOP_NONBLOCK);
    conn *k = icl_conn(c);
    cr_assert_not_null(k);
    cr_assert_eq(k->state, CS_CLAIMING);
    conn_close(k, MQTT_RC_UNSPECIFIED, "test: gone before the answer");
    icl_settle(c);
    icl_expect_closed(c);
    mqtt_packet p;
    icl_expect(old, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_SESSION_TAKEN_OVER);
    icl *again = icl_connected(&b, 0, MQTT_V5, "sm-late");
    icl_free(again);
    icl_free(old);
    icl_free(c);
}

/* Closing the broker with connections in every state frees them all (ASan
 * and the allocation counter see to the rest). */
Test(conn, broker_close_frees_connections_in_every_state)
{
    icl *fresh = icl_open(&b, 0, MQTT_V5);
    icl *active = icl_connected(&b, 1, MQTT_V5, "sm-all");
    icl *claiming = icl_open(&b, 0, MQTT_V5);
    icl_send_connect(claiming, "sm-all", NULL);
    event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
    cr_assert_eq(atomic_load(&b.stats.connections_current), 3);
    /* The clients' ends go first (their loops are the broker's); the
     * broker never hears of it. */
    icl_free(fresh);
    icl_free(active);
    icl_free(claiming);
    inproc_down(&b);
    cr_assert_eq(atomic_load(&b.stats.connections_current), 0);
    /* teardown closes again: open a fresh broker for it. */
    cr_assert_eq(inproc_up(&b, &cfg, 2), 0);
}
