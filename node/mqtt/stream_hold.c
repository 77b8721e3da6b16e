/* SPDX-License-Identifier: Apache-2.0 */
/* Cross-node back-pressure, the node's side (docs/architecture.md,
 * "Cross-node back-pressure"). An online subscriber whose queue passes its
 * mark holds the stream: the backplane stops handing records over and,
 * if it lasts, pauses the Kafka partitions, until every holder caught up.
 * All partitions, not those of one worker: a session gets deliveries
 * routed by every worker (each routes its own partitions, then posts to
 * the session's worker), so any partition can be the one that fills it. */
#include "node/mqtt/stream_hold.h"

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/config.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/worker.h"

/* The queue length at which an online session starts holding the stream:
 * a quarter of --max-queued (as the publishers' mark), so that the
 * records already on their way usually still fit under --max-queued. */
static uint32_t hold_mark(const worker *w)
{
    uint32_t q = (uint32_t)w->b->cfg->max_queued / 4;
    return q ? q : 1;
}

static uint8_t tag(const worker *w)
{
    return (uint8_t)(w->id + 1);
}

static hold_entry *find(worker *w, session *s)
{
    for (uint32_t i = 0; i < w->hold.n; i++) {
        if (w->hold.v[i].s == s) {
            return &w->hold.v[i];
        }
    }
    return NULL;
}

static void release_at(worker *w, uint32_t i)
{
    session *s = w->hold.v[i].s;
    w->hold.v[i] = w->hold.v[--w->hold.n];
    atomic_store_explicit(&s->hold_w, 0, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->b->stream_holders, 1, memory_order_relaxed);
    session_unref(w->b, s);
}

void hold_pushed(worker *w, session *s, uint8_t qos)
{
    if (!w->b->stream || qos == 0 || s->q_len < hold_mark(w) ||
        atomic_load_explicit(&s->hold_w, memory_order_relaxed) != 0 ||
        !atomic_load_explicit(&s->online, memory_order_relaxed)) {
        return;
    }
    /* Out of budget (see hold_tick): it holds nobody back again until it
     * catches up; its excess spills or is dropped, as --max-queued says.
     * Reading from Kafka: holding the stream would not slow what it reads. */
    if (s->hold_spent || !stream_live(s)) {
        return;
    }
    if (w->hold.n == w->hold.cap) {
        uint32_t cap = w->hold.cap ? w->hold.cap * 2 : 8;
        w->hold.v = sh_realloc(w->hold.v, w->hold.cap * sizeof(hold_entry), cap * sizeof(hold_entry));
        w->hold.cap = cap;
    }
    session_ref(s);
    w->hold.v[w->hold.n++] = (hold_entry){s, now_ms()};
    atomic_store_explicit(&s->hold_w, tag(w), memory_order_relaxed);
    atomic_fetch_add_explicit(&w->b->stream_holders, 1, memory_order_relaxed);
}

void hold_popped(worker *w, session *s)
{
    if (s->q_len > hold_mark(w) / 2) {
        return;
    }
    if (stream_live(s)) {
        /* Caught up, on the live stream: the budget is whole again. */
        s->hold_spent = false;
        s->hold_used_ms = 0;
    }
    if (atomic_load_explicit(&s->hold_w, memory_order_relaxed) != tag(w)) {
        return; /* not holding, or on another worker's list (it moved): the tick there lets go */
    }
    hold_entry *e = find(w, s);
    if (e) {
        release_at(w, (uint32_t)(e - w->hold.v));
    }
}

uint32_t hold_queue_limit(worker *w, session *s)
{
    uint32_t max = (uint32_t)w->b->cfg->max_queued;
    if (atomic_load_explicit(&s->hold_w, memory_order_relaxed) == 0) {
        return 0;
    }
    /* What was handed over before the stream stopped: at most about
     * HOLD_INBOX_HIGH items per worker inbox, each one delivery to s. */
    return max + (uint32_t)w->b->nworkers * (HOLD_INBOX_HIGH + 1u) * 2u;
}

/* Charge a hold that ends before s caught up to s's budget. */
static void charge(session *s, uint64_t since, uint64_t now)
{
    uint64_t used = s->hold_used_ms + (now > since ? now - since : 0);
    s->hold_used_ms = (uint16_t)(used < HOLD_BUDGET_MS ? used : HOLD_BUDGET_MS);
}

void hold_tick(worker *w)
{
    uint64_t now = now_ms();
    for (uint32_t i = 0; i < w->hold.n;) {
        hold_entry *e = &w->hold.v[i];
        session *s = e->s;
        /* A session that moved to another worker is that one's to read. */
        if (atomic_load_explicit(&s->owner, memory_order_relaxed) != w->id) {
            release_at(w, i);
            continue;
        }
        if (s->dead || s->q_len <= hold_mark(w) / 2) {
            release_at(w, i);
            continue;
        }
        bool online = atomic_load_explicit(&s->online, memory_order_relaxed);
        bool spent = s->hold_used_ms + (now > e->since_ms ? now - e->since_ms : 0) >= HOLD_BUDGET_MS;
        if (!online || spent || !stream_live(s)) {
            charge(s, e->since_ms, now);
            if (spent && online) {
                s->hold_spent = true;
                sh_log(SH_INFO,
                       "event=stream_hold_spent client=%s queued=%u msg=\"slower than the traffic: no longer "
                       "holds the stream until it catches up\"",
                       s->client_id, s->q_len);
            }
            release_at(w, i);
            continue;
        }
        i++;
    }
}

void hold_worker_free(worker *w)
{
    while (w->hold.n) {
        release_at(w, w->hold.n - 1);
    }
    sh_free(w->hold.v, w->hold.cap * sizeof(hold_entry));
    w->hold.v = NULL;
    w->hold.cap = 0;
}

bool hold_stream_behind(void *node)
{
    broker *b = node;
    if (atomic_load_explicit(&b->stream_holders, memory_order_relaxed) > 0) {
        return true;
    }
    if (!b->workers) {
        return false;
    }
    /* Hysteresis: held past HIGH in any inbox, until every one is below LOW. */
    uint32_t mark = b->inbox_held ? HOLD_INBOX_LOW : HOLD_INBOX_HIGH;
    bool over = false;
    for (int i = 0; i < b->nworkers && !over; i++) {
        over = atomic_load_explicit(&b->workers[i].hold.pending, memory_order_relaxed) > mark;
    }
    b->inbox_held = over;
    return over;
}
