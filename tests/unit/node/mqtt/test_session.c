/* SPDX-License-Identifier: Apache-2.0 */
/* Session queues, inbound QoS 2 ids and subscriptions, on a real broker
 * context with no connection attached (an offline persistent session). */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/route.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

static config cfg;
static broker b;
static worker *w; /* the owner (0) whose gauges hold the session's messages */

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_queued = 5;
    cfg.max_inflight = 4;
    cfg.max_session_expiry = UINT32_MAX; /* the default: no cap (0 would end every session offline) */
    broker_open_opts o = {.workers = 1};
    cr_assert_eq(broker_open(&b, &cfg, &o), BROKER_OK);
    cr_assert_eq(broker_start(&b), BROKER_OK);
    w = &b.workers[0];
}

static void teardown(void)
{
    broker_stop(&b);
    broker_close(&b);
}

TestSuite(session, .init = setup, .fini = teardown);

static msg *make_msg(const char *topic, uint8_t qos, uint32_t expiry_s)
{
    mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)strlen(topic)};
    mqtt_bytes p = {(const uint8_t *)"x", 1};
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    if (expiry_s) {
        pr.present = MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
        pr.message_expiry = expiry_s;
    }
    return msg_new(t, &pr, p, qos, false, 0, now_ms());
}

static void deliver(session *s, msg *m, uint8_t qos)
{
    delivery d;
    memset(&d, 0, sizeof(d));
    d.m = m;
    d.qos = qos;
    session_deliver(w, s, &d);
}

Test(session, offline_qos1_is_queued_in_order)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    for (int i = 0; i < 3; i++) {
        deliver(s, make_msg("t", 1, 0), 1);
    }
    cr_assert_eq(s->q_len, 3);
    cr_assert_eq(atomic_load(&w->dropped), 0);
    session_unref(&b, s);
}

Test(session, offline_qos0_is_dropped_and_counted_without_queue_qos0)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    deliver(s, make_msg("t", 0, 0), 0);
    cr_assert_eq(s->q_len, 0);
    cr_assert_eq(atomic_load(&w->dropped), 1);
    cr_assert_eq(atomic_load(&w->metrics.drops[DROP_OFFLINE_QOS0]), 1);
    session_unref(&b, s);
}

Test(session, offline_qos0_is_queued_with_queue_qos0)
{
    cfg.limits.queue_qos0 = true;
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    deliver(s, make_msg("t", 0, 0), 0);
    cr_assert_eq(s->q_len, 1);
    cr_assert_eq(s->q_qos0, 1);
    cr_assert_eq(atomic_load(&w->metrics.queued), 1);
    cr_assert_eq(atomic_load(&w->dropped), 0);
    session_unref(&b, s);
}

/* The payloads in the queue, oldest first, as a string ("0,6,25"). */
static void queue_payloads(const session *s, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < s->q_len; i++) {
        const delivery *d = &s->q[(s->q_head + i) % s->q_cap];
        n += (size_t)snprintf(out + n, len - n, "%s%.*s%s", i ? "," : "", (int)d->m->payload_len,
                              (const char *)d->m->payload, d->qos ? "q1" : "");
    }
}

static msg *numbered(int i, uint8_t qos)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", i);
    mqtt_bytes t = {(const uint8_t *)"t", 1}, pl = {(const uint8_t *)p, (uint32_t)strlen(p)};
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    return msg_new(t, &pr, pl, qos, false, 0, now_ms());
}

Test(session, full_queue_evicts_the_oldest_qos0_first)
{
    cfg.limits.queue_qos0 = true;
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    /* Wrap the ring first, so eviction runs across its end. */
    cfg.max_queued = 6;
    for (int i = 0; i < 30; i++) {
        uint8_t q = i % 6 == 0 ? 1 : 0;
        deliver(s, numbered(i, q), q);
    }
    char got[256];
    queue_payloads(s, got, sizeof(got));
    /* Every QoS 1 (5 of them), then the newest QoS 0. */
    cr_assert_str_eq(got, "0q1,6q1,12q1,18q1,24q1,29");
    cr_assert_eq(s->q_qos0, 1);
    cr_assert_eq(atomic_load(&w->metrics.drops[DROP_QOS0_EVICTED]), 24);
    cr_assert_eq(atomic_load(&w->metrics.drops[DROP_QUEUE_FULL]), 0);
    cr_assert_eq(atomic_load(&w->metrics.queued), 6);
    /* Full of QoS 1 but for one QoS 0: a QoS 1 evicts it, the next is refused. */
    deliver(s, numbered(30, 1), 1);
    deliver(s, numbered(31, 1), 1);
    queue_payloads(s, got, sizeof(got));
    cr_assert_str_eq(got, "0q1,6q1,12q1,18q1,24q1,30q1");
    cr_assert_eq(atomic_load(&w->metrics.drops[DROP_QUEUE_FULL]), 1);
    cr_assert_eq(atomic_load(&w->dropped), 26);
    session_unref(&b, s);
}

Test(session, reset_releases_everything_and_counts_it)
{
    cfg.limits.queue_qos0 = true;
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    for (int i = 0; i < 4; i++) {
        deliver(s, numbered(i, i & 1), i & 1);
    }
    cr_assert_eq(atomic_load(&w->metrics.queued), 4);
    session_reset(&b, s);
    cr_assert_eq(s->q_len, 0);
    cr_assert_eq(s->q_qos0, 0);
    cr_assert_eq(atomic_load(&w->metrics.queued), 0);
    cr_assert_eq(atomic_load(&w->metrics.drops[DROP_SESSION_ENDED]), 4);
    session_unref(&b, s);
}

Test(session, queue_is_bounded_by_max_queued)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    for (int i = 0; i < 12; i++) {
        deliver(s, make_msg("t", 1, 0), 1);
    }
    cr_assert_eq(s->q_len, 5);
    cr_assert_eq(atomic_load(&w->dropped), 7);
    cr_assert_eq(atomic_load(&w->metrics.drops[DROP_QUEUE_FULL]), 7);
    cr_assert_eq(atomic_load(&w->metrics.queued), 5);
    session_unref(&b, s);
}

Test(session, queue_ring_survives_growth_and_wraparound)
{
    cfg.max_queued = 100;
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    msg *kept[40];
    for (int i = 0; i < 40; i++) {
        kept[i] = make_msg("t", 1, 0);
        msg_ref(kept[i]);
        deliver(s, kept[i], 1);
    }
    cr_assert_eq(s->q_len, 40);
    for (uint32_t i = 0; i < s->q_len; i++) {
        cr_assert_eq(s->q[(s->q_head + i) % s->q_cap].m, kept[i], "order kept at %u", i);
    }
    for (int i = 0; i < 40; i++) {
        msg_unref(kept[i]);
    }
    session_unref(&b, s);
}

Test(session, expired_message_is_not_queued)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    msg *m = make_msg("t", 1, 1);
    m->expiry_at = now_ms() - 1;
    deliver(s, m, 1);
    cr_assert_eq(s->q_len, 0);
    session_unref(&b, s);
}

Test(session, dead_session_drops_deliveries)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->dead = true;
    deliver(s, make_msg("t", 1, 0), 1);
    cr_assert_eq(s->q_len, 0);
    session_unref(&b, s);
}

Test(session, inbound_qos2_ids_add_find_remove)
{
    session *s = session_new(&b, "c1", 2, 0);
    for (uint16_t id = 1; id <= 20; id++) {
        session_qos2_add(s, id);
    }
    cr_assert(session_qos2_has(s, 7));
    cr_assert(session_qos2_remove(s, 7));
    cr_assert_not(session_qos2_has(s, 7));
    cr_assert_not(session_qos2_remove(s, 7));
    cr_assert(session_qos2_has(s, 20));
    cr_assert_eq(s->n_qos2_in, 19);
    session_unref(&b, s);
}

Test(session, subscriptions_replace_and_remove)
{
    session *s = session_new(&b, "c1", 2, 0);
    sub_opts o1 = {.qos = 1}, o2 = {.qos = 2};
    session_add_sub(s, "a/+", 3, &o1);
    session_add_sub(s, "a/+", 3, &o2);
    session_add_sub(s, "$share/g/b", 10, &o1);
    cr_assert_eq(s->n_subs, 2);
    cr_assert_eq(s->subs[0].opts.qos, 2);
    cr_assert(session_remove_sub(s, "a/+", 3));
    cr_assert_not(session_remove_sub(s, "a/+", 3));
    cr_assert_eq(s->n_subs, 1);
    session_unref(&b, s);
}

/* The list at its bound, SESSION_MAX_SUBS: every filter found, each
 * removal (from the middle, in a scrambled order) keeps the rest findable
 * with their options, and a reset empties it for reuse. */
Test(session, subscriptions_at_the_bound_added_found_and_removed)
{
    session *s = session_new(&b, "c1", 2, 0);
    char f[16];
    for (uint32_t i = 0; i < SESSION_MAX_SUBS; i++) {
        sub_opts o = {.qos = (uint8_t)(i % 3), .sub_id = i};
        int n = snprintf(f, sizeof(f), "t/%u", i);
        session_add_sub(s, f, (uint16_t)n, &o);
    }
    cr_assert_eq(s->n_subs, SESSION_MAX_SUBS);
    sub_opts again = {.qos = 2, .sub_id = 7};
    session_add_sub(s, "t/7", 3, &again); /* replaces, adds nothing */
    cr_assert_eq(s->n_subs, SESSION_MAX_SUBS);
    /* Remove every third, visiting them in a scrambled order. */
    uint32_t removed = 0;
    for (uint32_t k = 0; k < SESSION_MAX_SUBS; k++) {
        uint32_t i = (k * 40507u) % SESSION_MAX_SUBS;
        if (i % 3 == 0) {
            int n = snprintf(f, sizeof(f), "t/%u", i);
            cr_assert(session_remove_sub(s, f, (uint16_t)n), "t/%u", i);
            cr_assert_not(session_has_sub(s, f, (uint16_t)n));
            removed++;
        }
    }
    cr_assert_eq(s->n_subs, SESSION_MAX_SUBS - removed);
    for (uint32_t i = 0; i < SESSION_MAX_SUBS; i++) {
        int n = snprintf(f, sizeof(f), "t/%u", i);
        cr_assert_eq(session_has_sub(s, f, (uint16_t)n), i % 3 != 0, "t/%u", i);
    }
    for (uint32_t i = 0; i < s->n_subs; i++) {
        uint32_t id = (uint32_t)strtoul(s->subs[i].filter + 2, NULL, 10);
        cr_assert_eq(s->subs[i].opts.sub_id, id == 7 ? 7 : id);
        cr_assert_eq(s->subs[i].opts.qos, id == 7 ? 2 : id % 3);
    }
    session_free_sub_strings(s);
    cr_assert_eq(s->n_subs, 0);
    cr_assert_not(session_has_sub(s, "t/1", 3));
    sub_opts o = {.qos = 1};
    session_add_sub(s, "t/1", 3, &o);
    cr_assert(session_has_sub(s, "t/1", 3));
    cr_assert_eq(s->n_subs, 1);
    session_unref(&b, s);
}

Test(session, end_removes_subscriptions_from_the_index)
{
    session *s = session_new(&b, "c1", 2, 0);
    pthread_mutex_lock(&b.sess_lock);
    registry_put(&b, s);
    pthread_mutex_unlock(&b.sess_lock);
    sub_opts o = {.qos = 1};
    mqtt_bytes f = {(const uint8_t *)"x/#", 3}, g = {NULL, 0};
    bool replaced;
    trie_add(b.subs, f, g, s, &o, &replaced);
    session_add_sub(s, "x/#", 3, &o);
    cr_assert_eq(trie_count(b.subs), 1);
    session_end(w, s);
    cr_assert_eq(trie_count(b.subs), 0);
    cr_assert(s->dead);
    pthread_mutex_lock(&b.sess_lock);
    cr_assert_null(registry_get(&b, "c1", 2));
    pthread_mutex_unlock(&b.sess_lock);
    session_unref(&b, s);
}

Test(session, offline_state_exists_only_while_something_is_due)
{
    session *s = session_new(&b, "c1", 2, 0);
    session_set_persistent(&b, s, true);
    conn c;
    memset(&c, 0, sizeof(c));
    session_attach(w, s, &c);
    cr_assert_null(s->off, "a connected client's session carries no offline state");

    /* Gone with a delayed will and an expiry: both deadlines are kept. */
    s->expiry_s = 60;
    c.s = NULL;
    session_unref(&b, s);
    session_detach(w, s, make_msg("will", 1, 0), 30);
    cr_assert_not_null(s->off);
    cr_assert_not_null(s->off->will);
    cr_assert_not_null(s->off->timer);
    cr_assert_gt(s->off->expire_at, s->off->will_at);

    /* Back within the will delay: no will, no timer, no offline state. */
    session_attach(w, s, &c);
    cr_assert_null(s->off);

    /* A session that never expires and has no will has nothing due. */
    s->expiry_s = UINT32_MAX;
    c.s = NULL;
    session_unref(&b, s);
    session_detach(w, s, NULL, 0);
    cr_assert_null(s->off);
    cr_assert_not(s->dead);
    session_unref(&b, s);
}

/* The inbound QoS 2 list holds every packet id at once (the receive
 * maximum's ceiling, 65,535): its capacity once doubled from 32,768 to
 * 65,536 in 16 bits, wrapped to 0, and later ids were written past a
 * one-byte allocation. */
Test(session, inbound_qos2_ids_hold_every_packet_id)
{
    session *s = session_new(&b, "c1", 2, 0);
    for (uint32_t id = 1; id <= 65535; id++) {
        session_qos2_add(s, (uint16_t)id);
    }
    cr_assert_eq(s->n_qos2_in, 65535);
    cr_assert(session_qos2_has(s, 1));
    cr_assert(session_qos2_has(s, 32768));
    cr_assert(session_qos2_has(s, 32769));
    cr_assert(session_qos2_has(s, 65535));
    for (uint32_t id = 65535; id >= 1; id--) {
        cr_assert(session_qos2_remove(s, (uint16_t)id));
    }
    cr_assert_eq(s->n_qos2_in, 0);
    cr_assert_not(session_qos2_has(s, 1));
    session_unref(&b, s);
}

/* The backplane's answer for a pending inbound QoS 2 id, with no connection
 * attached: stored makes it durable; refused clears it; an answer tagged
 * for another connection (an earlier use of the id) changes nothing. */
Test(session, inbound_qos2_report_marks_durable_or_clears)
{
    session *s = session_new(&b, "c1", 2, 0);
    session_qos2_add_state(s, 5, Q2_PENDING, 77);
    session_qos2_add_state(s, 6, Q2_PENDING, 77);
    session_qos2_report(w, s, 5, 78, true, 0);
    cr_assert_eq(session_qos2_find(s, 5)->state, Q2_PENDING);
    session_qos2_report(w, s, 5, 77, true, 0);
    cr_assert_eq(session_qos2_find(s, 5)->state, Q2_DURABLE);
    session_qos2_report(w, s, 5, 77, false, 0); /* not pending any more */
    cr_assert(session_qos2_has(s, 5));
    session_qos2_report(w, s, 6, 77, false, 0);
    cr_assert_not(session_qos2_has(s, 6));
    cr_assert_eq(s->n_qos2_in, 1);
    session_unref(&b, s);
}

/* ---- a retained copy at SUBSCRIBE and the live copy of the same record ---- */

static msg *retained_msg(const char *topic, int32_t part, int64_t off)
{
    mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)strlen(topic)};
    mqtt_bytes p = {(const uint8_t *)"r", 1};
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    msg *m = msg_new(t, &pr, p, 1, true, 0, now_ms());
    m->part = part;
    m->off = off;
    return m;
}

static void index_set(msg *m)
{
    pthread_rwlock_wrlock(&b.retain_lock);
    retain_set(b.retained, m);
    pthread_rwlock_unlock(&b.retain_lock);
}

static void subscribe_retained(session *s, const char *filter)
{
    sub_opts o = {.qos = 1};
    route_retained_on_subscribe(w, s, (mqtt_bytes){(const uint8_t *)filter, (uint32_t)strlen(filter)}, &o);
}

/* A cluster node: the index applied record (2, 7) from the stream and its
 * live copy (another object, the same record) reaches the session after
 * SUBSCRIBE sent the retained copy. The session gets it once, RETAIN=1
 * (MQTT 5 §3.3.1.3); the next record of the topic still arrives. */
Test(session, live_copy_of_a_record_sent_retained_at_subscribe_is_not_sent_again)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    msg *idx = retained_msg("r/a", 2, 7);
    index_set(idx);
    msg_unref(idx);
    subscribe_retained(s, "r/#");
    cr_assert_eq(s->q_len, 1);
    cr_assert(s->q[s->q_head].retain);
    deliver(s, retained_msg("r/a", 2, 7), 1);
    cr_assert_eq(s->q_len, 1, "the live copy of the retained record was queued too");
    deliver(s, retained_msg("r/a", 2, 8), 1);
    cr_assert_eq(s->q_len, 2, "another record of the topic is no duplicate");
    deliver(s, retained_msg("r/a", 2, 7), 1);
    cr_assert_eq(s->q_len, 3, "one live copy is dropped, not every later one");
    cr_assert_eq(atomic_load(&w->dropped), 0);
    session_unref(&b, s);
}

/* One node: the index holds the very message object that is routed
 * (no stream position), and a shared group's copy is never dropped. */
Test(session, same_object_without_position_and_shared_copies)
{
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    msg *m = retained_msg("r/b", -1, -1);
    index_set(m);
    subscribe_retained(s, "r/b");
    cr_assert_eq(s->q_len, 1);
    delivery d;
    memset(&d, 0, sizeof(d));
    d.m = msg_ref(m);
    d.qos = 1;
    d.shared = true;
    session_deliver(w, s, &d);
    cr_assert_eq(s->q_len, 2, "a shared group's copy is the group's, not a duplicate");
    deliver(s, msg_ref(m), 1);
    cr_assert_eq(s->q_len, 2, "the live copy of the same message was queued too");
    deliver(s, retained_msg("r/b", -1, -1), 1);
    cr_assert_eq(s->q_len, 3);
    msg_unref(m);
    session_unref(&b, s);
}

/* Bounded: SESSION_RET_SEEN records per session, the newest kept. */
Test(session, retained_copies_remembered_are_bounded)
{
    cfg.max_queued = 100;
    session *s = session_new(&b, "c1", 2, 0);
    s->persistent = true;
    int n = SESSION_RET_SEEN + 4;
    for (int i = 0; i < n; i++) {
        char t[16];
        snprintf(t, sizeof(t), "r/%02d", i);
        msg *m = retained_msg(t, 0, i);
        m->ts = 1000 + i; /* record time: i is newer */
        index_set(m);
        msg_unref(m);
    }
    subscribe_retained(s, "r/#");
    cr_assert_eq(s->q_len, (uint32_t)n);
    uint32_t q = s->q_len;
    for (int i = 0; i < n; i++) {
        char t[16];
        snprintf(t, sizeof(t), "r/%02d", i);
        deliver(s, retained_msg(t, 0, i), 1);
    }
    /* The 4 oldest were forgotten: their live copies go out again. */
    cr_assert_eq(s->q_len, q + 4);
    session_unref(&b, s);
}
