/* SPDX-License-Identifier: Apache-2.0 */
/* The marks a persistent session carries from node to node
 * (node/mqtt/session_stream.c; docs/architecture.md, "Offline queues and
 * positions"), on a broker in this process on the redis_kafka backplane
 * with a real Redis and Kafka (given by with_backends.sh): a session keeps
 * this node's marks and at most SC_MAX_RULES - 1 = 7 previous owners'. At
 * the edge every stored mark is kept; one past it the last one stored is
 * left out, and the state it stores next holds SC_MAX_RULES marks, which
 * the codec still takes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inproc_client.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/session_codec.h"
#include "node/mqtt/session_stream.h"
#include "rk_config.h"

#define WAIT_S 120

static config cfg;
static broker b;

static void setup(void)
{
    rk_test_config(&cfg, "marks");
    cr_assert_eq(inproc_up(&b, &cfg, 1), 0);
}

static void teardown(void)
{
    inproc_down(&b);
    config_free(&cfg);
}

TestSuite(session_stream_rk, .init = setup, .fini = teardown, .timeout = 300);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Turn the worker's loop until the client got a packet (the claim goes
 * to Redis and back). */
static void wait_packet(icl *c)
{
    double deadline = now_s() + WAIT_S;
    while (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
        cr_assert_lt(now_s(), deadline, "no answer from the broker");
        event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
}

/* A persistent v5 session `id`, connected; receive_max 0: none sent. */
static session *persistent_session_rm(icl **out, const char *id, uint16_t receive_max)
{
    while (!bp_is_ready(b.bp)) {
        event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.keepalive = 60;
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    q.props.session_expiry = 600;
    if (receive_max) {
        q.props.present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX);
        q.props.receive_max = receive_max;
    }
    icl_send_connect(c, id, &q);
    wait_packet(c);
    mqtt_packet p;
    icl_expect(c, MQTT_CONNACK, &p);
    cr_assert_eq(p.u.connack.rc, MQTT_RC_SUCCESS, "CONNACK 0x%02x", p.u.connack.rc);
    pthread_mutex_lock(&b.sess_lock);
    session *s = registry_get(&b, id, strlen(id));
    pthread_mutex_unlock(&b.sess_lock);
    cr_assert_not_null(s);
    cr_assert(s->persistent);
    *out = c;
    return s;
}

static session *persistent_session(icl **out, const char *id)
{
    return persistent_session_rm(out, id, 0);
}

#define PARTS 2

/* A stored state with n previous owners' marks ("prev-0".."prev-<n-1>"),
 * each far above anything the session's positions reach, so none is
 * passed and trimmed. */
typedef struct stored {
    sc_state st;
    sc_rule rules[SC_MAX_RULES + 1];
    char names[SC_MAX_RULES + 1][16];
    int64_t pos[PARTS];
    int64_t hi[PARTS];
} stored;

static void make_stored(stored *x, uint32_t n)
{
    memset(x, 0, sizeof(*x));
    for (uint32_t p = 0; p < PARTS; p++) {
        x->pos[p] = -1;
        x->hi[p] = (int64_t)1 << 40;
    }
    for (uint32_t i = 0; i < n; i++) {
        snprintf(x->names[i], sizeof(x->names[i]), "prev-%u", i);
        x->rules[i].node = icl_str(x->names[i]);
        x->rules[i].hi_own = x->hi;
        x->rules[i].hi_other = x->hi;
    }
    x->st.n_parts = PARTS;
    x->st.pos = x->pos;
    x->st.n_rules = n;
    x->st.rules = x->rules;
}

static bool has_rule(const sc_state *st, const char *node)
{
    for (uint32_t i = 0; i < st->n_rules; i++) {
        if (st->rules[i].node.len == strlen(node) && memcmp(st->rules[i].node.p, node, strlen(node)) == 0) {
            return true;
        }
    }
    return false;
}

/* Restore x into the session, then encode what it would store now; the
 * codec must take it. */
static void restore_and_encode(session *s, stored *x, sc_state *out)
{
    worker *w = &b.workers[0];
    cr_assert_eq(bp_stream_partitions(b.bp), PARTS);
    stream_restore(w, s, &x->st);
    memset(out, 0, sizeof(*out));
    out->proto_version = MQTT_V5;
    cr_assert_gt(stream_encode(w, s, out), 0, "the session has no stream state");
    uint8_t *blob = NULL;
    uint32_t len = 0;
    cr_assert_eq(sc_encode(out, &blob, &len), SC_OK, "the state with %u marks does not encode", out->n_rules);
    sh_free(blob, len);
}

Test(session_stream_rk, seven_previous_owners_marks_are_all_kept)
{
    icl *c;
    session *s = persistent_session(&c, "marks-edge");
    stored x;
    make_stored(&x, SC_MAX_RULES - 1);
    sc_state out;
    restore_and_encode(s, &x, &out);
    cr_assert_eq(out.n_rules, SC_MAX_RULES, "this node's marks and 7 previous owners', got %u", out.n_rules);
    cr_assert(has_rule(&out, cfg.node_id));
    for (uint32_t i = 0; i < SC_MAX_RULES - 1; i++) {
        cr_assert(has_rule(&out, x.names[i]), "%s's marks were lost", x.names[i]);
    }
    stream_encoded(&out);
    icl_free(c);
}

Test(session_stream_rk, an_eighth_previous_owner_is_left_out_and_the_rest_are_kept)
{
    icl *c;
    session *s = persistent_session(&c, "marks-past");
    stored x;
    make_stored(&x, SC_MAX_RULES);
    sc_state out;
    restore_and_encode(s, &x, &out);
    cr_assert_eq(out.n_rules, SC_MAX_RULES, "the marks grew past their bound: %u", out.n_rules);
    cr_assert(has_rule(&out, cfg.node_id), "this node's own marks were pushed out");
    for (uint32_t i = 0; i < SC_MAX_RULES - 1; i++) {
        cr_assert(has_rule(&out, x.names[i]), "%s's marks were lost", x.names[i]);
    }
    cr_assert_not(has_rule(&out, x.names[SC_MAX_RULES - 1]), "the one past the bound was kept");
    stream_encoded(&out);
    icl_free(c);
}

/* Turn the worker's loop until the client got a PUBLISH (acks and other
 * packets on the way are skipped). */
static mqtt_publish next_publish(icl *c)
{
    double deadline = now_s() + WAIT_S;
    for (;;) {
        mqtt_packet p;
        uint8_t t = icl_next(c, &p);
        if (t == MQTT_PUBLISH) {
            return p.u.publish;
        }
        cr_assert_lt(now_s(), deadline, "no PUBLISH from the broker");
        if (!t) {
            event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
            usleep(2000);
        }
    }
}

/* The flaky failure of test_cluster_positions.py's in-flight move: a
 * session moved to a node whose live consumer had not yet read the records
 * the previous owner had in flight. The replay reads up to where that
 * consumer stands, so it found none of them; they were dropped as deleted
 * by retention, and the live stream then brought them as new messages
 * (new packet ids, no DUP). Here the restored entry names the partition's
 * next record, which this node has not read (nobody has produced it yet):
 * when it comes it must go out as the entry, with DUP and its packet id
 * (MQTT 5 §4.4). Before the fix: packet id 2, DUP 0. */
Test(session_stream_rk, an_in_flight_record_past_the_replay_end_is_resent_with_dup_and_its_id)
{
    icl *c;
    session *s = persistent_session(&c, "infl-live");
    worker *w = &b.workers[0];
    mqtt_sub sub = {.filter = icl_str("infl-live/t"), .qos = 1};
    icl_send_subscribe(c, 7, &sub, 1, NULL);
    wait_packet(c);
    icl_expect(c, MQTT_SUBACK, NULL);
    /* A first record on the topic tells its partition and offset. */
    icl_send_publish(c, "infl-live/t", "warm", 1, 1, false, NULL);
    mqtt_publish warm = next_publish(c);
    inflight *f = session_inflight_first(s);
    cr_assert_not_null(f);
    int32_t part = f->part;
    int64_t off = f->off;
    cr_assert(part >= 0 && off >= 0, "the delivery names no record");
    icl_send_ack(c, MQTT_PUBACK, warm.packet_id, 0);
    double deadline = now_s() + WAIT_S;
    while (s->n_inf) {
        cr_assert_lt(now_s(), deadline, "the PUBACK was not taken");
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
    /* Another node's state: packet id 9 in flight for the next record. */
    stored x;
    make_stored(&x, 0);
    x.pos[part] = off + 1;
    sc_inflight e = {.pid = 9, .state = 1, .part = part, .off = off + 1};
    x.st.inflight = &e;
    x.st.n_inflight = 1;
    stream_restore(w, s, &x.st);
    session_pump(w, s); /* the replay begins, and ends at once: nothing read yet */
    deadline = now_s() + WAIT_S;
    while (!stream_live(s)) {
        cr_assert_lt(now_s(), deadline, "the replay did not end");
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
    icl_send_publish(c, "infl-live/t", "m1", 1, 2, false, NULL);
    mqtt_publish got = next_publish(c);
    cr_assert_eq(got.payload.len, 2);
    cr_assert(memcmp(got.payload.p, "m1", 2) == 0);
    cr_assert(got.dup && got.packet_id == 9, "sent as a new message: packet id %u, DUP %d", got.packet_id, got.dup);
    icl_free(c);
}

/* ---- retained copies sent at SUBSCRIBE, at the edge of --max-queued ---- */

#define EDGE_MAX 4

static uint64_t queue_full_drops(void)
{
    return atomic_load(&b.workers[0].metrics.drops[DROP_QUEUE_FULL]);
}

/* A QoS 1 delivery of a message naming a record (partition, offset): a
 * stream record, or with at_subscribe the retained copy route.c sends at
 * SUBSCRIBE (the retained index keeps the record it came from). */
static void deliver(session *s, const char *topic, const char *payload, int32_t part, int64_t off, bool at_subscribe)
{
    bp_message bm;
    memset(&bm, 0, sizeof(bm));
    bm.topic = (const uint8_t *)topic;
    bm.topic_len = (uint32_t)strlen(topic);
    bm.payload = (const uint8_t *)payload;
    bm.payload_len = (uint32_t)strlen(payload);
    bm.qos = 1;
    bm.retain = at_subscribe;
    bm.partition = part;
    bm.offset = off;
    delivery d;
    memset(&d, 0, sizeof(d));
    d.m = remote_msg_new(&bm);
    cr_assert_not_null(d.m);
    d.qos = 1;
    d.retain = at_subscribe;
    d.at_subscribe = at_subscribe;
    session_deliver(&b.workers[0], s, &d);
}

/* The next PUBLISH must carry this payload; it is acknowledged. */
static void expect_payload(icl *c, const char *want)
{
    mqtt_publish got = next_publish(c);
    cr_assert(got.payload.len == strlen(want) && memcmp(got.payload.p, want, got.payload.len) == 0,
              "expected %s, got %.*s", want, (int)got.payload.len, (const char *)got.payload.p);
    icl_send_ack(c, MQTT_PUBACK, got.packet_id, 0);
}

static void wait_live(session *s)
{
    double deadline = now_s() + WAIT_S;
    while (!stream_live(s)) {
        cr_assert_lt(now_s(), deadline, "the replay did not end");
        event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
}

/* A replay runs (begun, its first batch not handled yet: the worker's loop
 * is not turned) and --max-queued live records are held behind it. Each
 * retained copy sent at SUBSCRIBE then takes the place of the newest held
 * record, which spills (Kafka keeps it, a copy it does not); once all that
 * is held are retained copies, the next one is dropped: the held list
 * stays at its bound. Before the fix the first copy was dropped already
 * and the client never got it (test_cluster_spill.py). */
Test(session_stream_rk, retained_copies_at_subscribe_take_the_place_of_held_records_up_to_the_bound)
{
    cfg.max_queued = EDGE_MAX;
    icl *c;
    session *s = persistent_session(&c, "ret-held");
    worker *w = &b.workers[0];
    stored x;
    make_stored(&x, 0);
    stream_restore(w, s, &x.st);
    session_pump(w, s); /* the replay begins; its batches wait for the loop */
    cr_assert_not(stream_live(s));
    char pay[16];
    for (int i = 0; i < EDGE_MAX; i++) {
        snprintf(pay, sizeof(pay), "l%d", i);
        deliver(s, "ret-held/live", pay, 0, ((int64_t)1 << 40) + i, false);
    }
    uint64_t drops = queue_full_drops();
    for (int i = 0; i < EDGE_MAX; i++) {
        snprintf(pay, sizeof(pay), "r%d", i);
        deliver(s, "ret-held/ret", pay, 1, i, true);
        cr_assert_eq(queue_full_drops(), drops, "retained copy %d of %d was dropped", i + 1, EDGE_MAX);
    }
    deliver(s, "ret-held/ret", "r-past", 1, EDGE_MAX, true);
    cr_assert_eq(queue_full_drops(), drops + 1, "one past the bound was held: the list grew");
    wait_live(s);
    for (int i = 0; i < EDGE_MAX; i++) {
        snprintf(pay, sizeof(pay), "r%d", i);
        expect_payload(c, pay);
    }
    icl_free(c);
}

/* No replay runs, the client takes one message at a time (Receive Maximum
 * 1) and the queue is full of stream records (--max-queued). A retained
 * copy sent at SUBSCRIBE takes the newest one's place, which spills: the
 * session is no longer fed by the live stream, and a replay brings that
 * record back. Once the queue holds only retained copies, the next one is
 * dropped (the bound). Before the fix each copy was dropped. */
Test(session_stream_rk, retained_copies_at_subscribe_take_the_place_of_queued_records_up_to_the_bound)
{
    cfg.max_queued = EDGE_MAX;
    icl *c;
    session *s = persistent_session_rm(&c, "ret-queued", 1);
    s->hold_spent = true; /* its budget for holding the stream spent: --max-queued bounds its queue */
    char pay[16];
    /* The first goes in flight, the next EDGE_MAX are queued. */
    for (int i = 0; i <= EDGE_MAX; i++) {
        snprintf(pay, sizeof(pay), "l%d", i);
        deliver(s, "ret-queued/live", pay, 0, ((int64_t)1 << 40) + i, false);
    }
    cr_assert_eq(s->q_len, EDGE_MAX);
    cr_assert(stream_live(s));
    uint64_t drops = queue_full_drops();
    for (int i = 0; i < EDGE_MAX; i++) {
        snprintf(pay, sizeof(pay), "r%d", i);
        deliver(s, "ret-queued/ret", pay, 1, i, true);
        cr_assert_eq(queue_full_drops(), drops, "retained copy %d of %d was dropped", i + 1, EDGE_MAX);
        cr_assert_eq(s->q_len, EDGE_MAX, "the queue passed its bound");
        cr_assert_not(stream_live(s), "the record that made room was dropped, not spilled");
    }
    deliver(s, "ret-queued/ret", "r-past", 1, EDGE_MAX, true);
    cr_assert_eq(queue_full_drops(), drops + 1, "one past the bound was queued");
    cr_assert_eq(s->q_len, EDGE_MAX);
    expect_payload(c, "l0");
    for (int i = 0; i < EDGE_MAX; i++) {
        snprintf(pay, sizeof(pay), "r%d", i);
        expect_payload(c, pay);
    }
    icl_free(c);
}
