/* SPDX-License-Identifier: Apache-2.0 */
/* What the clients do once connected: publishers send on schedule (open
 * loop) or as fast as the window allows (closed loop), subscribers check
 * every delivery against its publisher's sequence, retained subscribers
 * fetch the seeded messages round after round. */
#include <string.h>

#include "bench/run_impl.h"

static mqtt_bytes bytes_of(const char *s)
{
    return (mqtt_bytes){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static void count_error(run *r)
{
    board_add(r->live->errors, 1);
    r->res.errors++;
}

/* ---- publishers ---- */

static void send_one(run *r, peer *p, uint64_t intended, uint64_t now)
{
    track_stamp st = {.pub = p->idx, .seq = p->seq, .intended_ns = intended};
    track_stamp_write(&st, r->payload, TRACK_HEADER);
    mqtt_bytes payload = {r->payload, r->o->size};
    if (client_publish(p->c, bytes_of(p->topic), payload, (uint8_t)r->o->qos, false) != 0) {
        count_error(r);
        return;
    }
    p->seq++;
    board_add(r->live->sent, 1);
    if (r->pub_interval_ns) {
        hist_record(&r->res.send_delay, now > intended ? (now - intended) / 1000 : 0);
    }
    if (!r->res.first_send_ns) {
        r->res.first_send_ns = now;
    }
    r->res.last_send_ns = now;
}

/* Sends what is due. Open loop: every message whose intended time has
 * come, as far as the window lets (the rest waits, and its latency keeps
 * counting from the intended time). Closed loop: until the window or the
 * output buffer is full. A budget keeps one publisher from hogging the loop. */
void traffic_pump(run *r, peer *p, uint64_t now)
{
    if (r->phase != PHASE_RUN || p->role != ROLE_PUB || !p->counted) {
        return;
    }
    uint8_t qos = (uint8_t)r->o->qos;
    for (int budget = 4096; budget > 0 && client_can_publish(p->c, qos); budget--) {
        uint64_t intended = now;
        if (r->pub_interval_ns) {
            if (p->next_ns > now || p->next_ns >= r->end_ns) {
                return;
            }
            intended = p->next_ns;
            p->next_ns += r->pub_interval_ns;
        } else if (now >= r->end_ns) {
            return;
        }
        send_one(r, p, intended, now);
    }
}

void traffic_pump_all(run *r, uint64_t now)
{
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->peers[i].role == ROLE_PUB) {
            traffic_pump(r, &r->peers[i], now);
        }
    }
}

/* The retained seeder: publishes (or, when clearing, empties) one
 * retained message per topic at QoS 1. */
void traffic_seed(run *r)
{
    peer *p = r->seeder;
    uint32_t n = r->o->topics;
    while (r->seed_next < n && client_can_publish(p->c, 1)) {
        char t[OPTS_TOPIC_MAX];
        opts_topic(r->o, r->seed_next, t);
        track_stamp st = {.pub = TRACK_SEEDER, .seq = r->seed_next, .intended_ns = run_now()};
        track_stamp_write(&st, r->payload, TRACK_HEADER);
        mqtt_bytes payload = {r->payload, r->clearing ? 0 : r->o->size};
        if (client_publish(p->c, bytes_of(t), payload, 1, true) != 0) {
            count_error(r);
            return;
        }
        r->seed_next++;
        if (!r->clearing) {
            board_add(r->live->sent, 1);
            r->res.sent++;
        }
    }
}

static void pub_done_cb(client *c, uint8_t rc)
{
    peer *p = client_ud(c);
    run *r = p->r;
    if (rc >= 0x80) {
        count_error(r);
    }
    if (p->role == ROLE_SEED) {
        r->seed_acked++;
        if (!r->clearing && r->seed_acked == r->o->topics) {
            run_peer_ready(r, p);
        }
        traffic_seed(r);
        return;
    }
    r->last_ack_ns = run_now();
    if (rc < 0x80) {
        p->acked++;
        board_add(r->live->acked, 1);
    }
    traffic_pump(r, p, run_now());
}

static void writable_cb(client *c)
{
    peer *p = client_ud(c);
    if (p->role == ROLE_PUB) {
        traffic_pump(p->r, p, run_now());
    } else if (p->role == ROLE_SEED) {
        traffic_seed(p->r);
    }
}

/* ---- subscribers ---- */

static void record_latency(run *r, uint64_t from, uint64_t now)
{
    hist_record(&r->res.lat, now > from ? (now - from) / 1000 : 0);
}

static void on_retained(run *r, peer *p, const track_stamp *st, uint64_t now)
{
    uint32_t n = r->o->topics;
    if (p->rstate != R_WAIT || st->pub != TRACK_SEEDER || st->seq >= n) {
        count_error(r);
        return;
    }
    uint64_t m = UINT64_C(1) << (st->seq % 64);
    if (p->rbits[st->seq / 64] & m) {
        r->res.dup++;
        return;
    }
    p->rbits[st->seq / 64] |= m;
    p->rgot++;
    record_latency(r, p->round_t0, now);
    if (p->rgot == n) {
        p->rstate = R_UNSUB;
        char f[OPTS_TOPIC_MAX];
        opts_filter(r->o, p->idx, f);
        client_unsubscribe(p->c, bytes_of(f));
    }
}

static void message_cb(client *c, const mqtt_publish *m)
{
    peer *p = client_ud(c);
    run *r = p->r;
    uint64_t now = run_now();
    track_stamp st;
    board_add(r->live->received, 1);
    r->res.received++;
    r->res.last_recv_ns = now;
    /* conn --subscribe: a message on the connection's own topic; counting it is all. */
    if (p->role == ROLE_CONN && r->o->subscribe) {
        return;
    }
    if (p->role != ROLE_SUB || !track_stamp_read(m->payload.p, m->payload.len, &st)) {
        count_error(r);
        return;
    }
    if (r->o->sc->map == MAP_RETAINED) {
        on_retained(r, p, &st, now);
        return;
    }
    if (st.pub >= r->o->pubs) {
        count_error(r);
        return;
    }
    record_latency(r, st.intended_ns, now);
    track *t = track_map_get(&p->seen, st.pub);
    if (track_seen(t, st.seq) != TRACK_DUP) {
        p->distinct++;
        r->group_unflushed++;
    }
}

static void suback_cb(client *c, uint8_t rc)
{
    peer *p = client_ud(c);
    if (rc >= 0x80) {
        count_error(p->r);
        run_peer_failed(p->r, p);
        client_abort(c);
        return;
    }
    run_peer_ready(p->r, p);
}

void traffic_start_round(run *r, peer *p, uint64_t now)
{
    char f[OPTS_TOPIC_MAX];
    opts_filter(r->o, p->idx, f);
    memset(p->rbits, 0, sizeof(uint64_t) * ((r->o->topics + 63) / 64));
    p->rgot = 0;
    p->round_t0 = now;
    p->rstate = R_WAIT;
    r->res.expected += r->o->topics;
    if (client_subscribe(p->c, bytes_of(f), (uint8_t)r->o->qos) != 0) {
        p->rstate = R_IDLE;
        r->res.lost += r->o->topics;
    }
}

static void unsuback_cb(client *c)
{
    peer *p = client_ud(c);
    run *r = p->r;
    r->res.lost += r->o->topics - p->rgot;
    r->res.rounds++;
    p->rstate = R_IDLE;
    uint64_t now = run_now();
    if (r->phase == PHASE_RUN && now < r->end_ns) {
        traffic_start_round(r, p, now);
    }
}

/* A round that has not completed within the drain time gives up. */
void traffic_round_timeouts(run *r, uint64_t now)
{
    uint64_t limit = (uint64_t)((r->o->drain > 1 ? r->o->drain : 1) * 1e9);
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (p->rstate == R_WAIT && p->up && now - p->round_t0 > limit) {
            char f[OPTS_TOPIC_MAX];
            opts_filter(r->o, p->idx, f);
            p->rstate = R_UNSUB;
            client_unsubscribe(p->c, bytes_of(f));
        }
    }
}

void traffic_flush_group(run *r)
{
    if (r->group_unflushed) {
        board_add(r->b->group_distinct, r->group_unflushed);
        r->group_unflushed = 0;
    }
}

/* Have the subscribers got everything they should? At QoS 0 losses are
 * allowed, so one quiet second also ends the wait. */
bool traffic_subs_satisfied(run *r, uint64_t now)
{
    const bench_opts *o = r->o;
    if (o->qos == 0 && o->sc->map != MAP_RETAINED && now - r->res.last_recv_ns > 1000000000u &&
        now - r->end_ns > 1000000000u) {
        return true;
    }
    if (o->sc->map == MAP_GROUP) {
        traffic_flush_group(r);
        return atomic_load(&r->b->group_distinct) >= r->total_acked;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        const peer *p = &r->peers[i];
        if (p->role != ROLE_SUB || !p->counted || !p->up) {
            continue;
        }
        if (o->sc->map == MAP_RETAINED && p->rstate != R_IDLE) {
            return false;
        }
        uint64_t want = o->sc->map == MAP_PAIR ? atomic_load(&r->b->pub_acked[p->idx]) : r->total_acked;
        if (o->sc->map != MAP_RETAINED && p->distinct < want) {
            return false;
        }
    }
    return true;
}

/* ---- the result ---- */

static void tally_track(run *r, const track *t, uint64_t acked)
{
    uint64_t d = t ? t->distinct : 0;
    r->res.expected += acked;
    r->res.lost += acked > d ? acked - d : 0;
    if (t) {
        r->res.dup += t->dup;
        r->res.ooo += t->late;
    }
}

/* Losses, duplicates and reordering of every subscriber that was ready
 * when the run started. Shared groups are summed per publisher on the
 * board and judged by the parent, since a group spans workers. */
void traffic_tally(run *r)
{
    const bench_opts *o = r->o;
    traffic_flush_group(r);
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (p->role != ROLE_SUB || !p->counted) {
            continue;
        }
        if (o->sc->map == MAP_RETAINED) {
            if (p->rstate == R_WAIT) {
                r->res.lost += o->topics - p->rgot;
            }
            continue;
        }
        if (o->sc->map == MAP_PAIR) {
            tally_track(r, track_map_find(&p->seen, p->idx), atomic_load(&r->b->pub_acked[p->idx]));
            continue;
        }
        for (uint32_t pub = 0; pub < o->pubs; pub++) {
            const track *t = track_map_find(&p->seen, pub);
            if (o->sc->map == MAP_GROUP) {
                if (t) {
                    board_add(r->b->pub_distinct[pub], t->distinct);
                    r->res.dup += t->dup;
                    r->res.ooo += t->late;
                }
            } else {
                tally_track(r, t, atomic_load(&r->b->pub_acked[pub]));
            }
        }
    }
}

const client_cbs run_client_cbs = {
    .up_cb = run_up_cb,
    .end_cb = run_end_cb,
    .message_cb = message_cb,
    .pub_done_cb = pub_done_cb,
    .suback_cb = suback_cb,
    .unsuback_cb = unsuback_cb,
    .writable_cb = writable_cb,
};
