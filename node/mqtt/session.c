/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions: outgoing inflight window and queue, inbound QoS 2 ids,
 * subscriptions, offline expiry and delayed wills. Everything here runs on
 * the session's owner worker. */
#include <event2/event.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/session_sync.h"
#include "node/mqtt/share.h"
#include "node/mqtt/stream_hold.h"
#include "node/net/conn_io.h"
#include "node/worker.h"
#include "proto/topic.h"

session *session_new(broker *b, const char *client_id, size_t len, int owner)
{
    /* The client id lives in the same allocation. */
    session *s = sh_calloc(1, SESSION_SIZE(len));
    atomic_init(&s->refs, 1);
    atomic_init(&s->owner, owner);
    atomic_init(&s->online, false);
    atomic_init(&s->backlogged_ms, 0);
    atomic_init(&s->incoming, 0);
    memcpy(s->client_id, client_id, len);
    s->id_len = (uint16_t)len;
    s->next_pid = 0; /* none handed out yet: the first is 1 */
    return s;
}

void session_ref(session *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* The in-flight table (session.inf): its slots and the order list's ends. */
static size_t inf_bytes(uint8_t log2)
{
    return log2 ? (session_list_cap(log2) + 1) * sizeof(inflight) : 0;
}

static void gauge_add(_Atomic int64_t *g, int64_t d)
{
    atomic_fetch_add_explicit(g, d, memory_order_relaxed);
}

/* The worker whose gauges hold this session's messages; NULL before the
 * workers exist. Any thread may adjust them: they are atomics. */
static worker *owner_worker(broker *b, session *s)
{
    return b->workers ? &b->workers[atomic_load(&s->owner)] : NULL;
}

void session_drop_messages(broker *b, session *s, bool count)
{
    uint64_t held = s->q_len;
    for (inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        held += f->d.m != NULL; /* past PUBREC the message is already delivered */
        msg_unref(f->d.m);
    }
    /* Every slot free again; the order list is not read while n_inf is 0. */
    if (s->n_inf) {
        memset(s->inf, 0, session_list_cap(s->inf_cap_log2) * sizeof(inflight));
    }
    worker *w = owner_worker(b, s);
    if (w) {
        gauge_add(&w->metrics.inflight, -(int64_t)s->n_inf);
        gauge_add(&w->metrics.queued, -(int64_t)s->q_len);
        if (count) {
            limits_count_drop(w, s, DROP_SESSION_ENDED, held);
        }
    }
    s->n_inf = 0;
    while (s->q_len) {
        msg_unref(s->q[s->q_head].m);
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
    }
    s->q_head = 0;
    s->q_qos0 = 0;
    s->n_qos2_in = 0;
    stream_reset(b, s);
    atomic_store_explicit(&s->backlogged_ms, 0, memory_order_relaxed);
}

void session_set_online(broker *b, session *s, bool online)
{
    if (!online) {
        atomic_store_explicit(&s->backlogged_ms, 0, memory_order_relaxed);
    }
    if (atomic_exchange(&s->online, online) != online) {
        if (online) {
            atomic_fetch_add(&b->sess_online, 1);
        } else {
            atomic_fetch_sub(&b->sess_online, 1);
        }
    }
}

void session_set_persistent(broker *b, session *s, bool persistent)
{
    if (s->persistent == persistent) {
        return;
    }
    s->persistent = persistent;
    /* Only registered sessions count; registry_put/remove add the rest. */
    if (s->registered) {
        if (persistent) {
            atomic_fetch_add(&b->sess_persistent, 1);
        } else {
            atomic_fetch_sub(&b->sess_persistent, 1);
        }
    }
}

void session_free_sub_strings(session *s)
{
    for (uint32_t i = 0; i < s->n_subs; i++) {
        sh_free(s->subs[i].filter, s->subs[i].len + 1u);
    }
    s->n_subs = 0;
    if (s->sub_idx) {
        memset(s->sub_idx, 0, s->sub_idx_cap * sizeof(uint32_t));
    }
}

static void free_subs(session *s)
{
    session_free_sub_strings(s);
    sh_free(s->subs, s->cap_subs * sizeof(sub_entry));
    sh_free(s->sub_idx, s->sub_idx_cap * sizeof(uint32_t));
    s->subs = NULL;
    s->sub_idx = NULL;
    s->n_subs = s->cap_subs = s->sub_idx_cap = 0;
}

void session_unref(broker *b, session *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    session_drop_messages(b, s, false);
    stream_free(b, s);
    free_subs(s);
    if (s->off) {
        if (s->off->timer) {
            event_free(s->off->timer);
        }
        msg_unref(s->off->will);
        sh_free(s->off, sizeof(*s->off));
    }
    sh_free(s->ret_seen, SESSION_RET_SEEN * sizeof(ret_seen));
    sh_free(s->inf, inf_bytes(s->inf_cap_log2));
    sh_free(s->q, s->q_cap * sizeof(delivery));
    sh_free(s->qos2_in, session_list_cap(s->qos2_cap_log2) * sizeof(qos2_id));
    sh_free(s, SESSION_SIZE(s->id_len));
}

/* ---- subscriptions ---- */

/* ---- the index of subscriptions by filter ---- */

#define SUB_IDX_MIN 16

static uint32_t sub_hash(const char *f, uint16_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint16_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)f[i]) * 16777619u;
    }
    return h;
}

/* The slot holding filter, or the empty slot where it would go. */
static uint32_t idx_find(const session *s, const char *filter, uint16_t len)
{
    uint32_t mask = s->sub_idx_cap - 1, h = sub_hash(filter, len) & mask;
    while (s->sub_idx[h]) {
        const sub_entry *e = &s->subs[s->sub_idx[h] - 1];
        if (e->len == len && memcmp(e->filter, filter, len) == 0) {
            break;
        }
        h = (h + 1) & mask;
    }
    return h;
}

static void idx_rebuild(session *s, uint32_t cap)
{
    sh_free(s->sub_idx, s->sub_idx_cap * sizeof(uint32_t));
    s->sub_idx = sh_calloc(cap, sizeof(uint32_t));
    s->sub_idx_cap = cap;
    for (uint32_t i = 0; i < s->n_subs; i++) {
        s->sub_idx[idx_find(s, s->subs[i].filter, s->subs[i].len)] = i + 1;
    }
}

/* Empty slot h, moving later entries of its run back (linear probing's
 * deletion: no tombstones, every entry stays reachable from its home). */
static void idx_delete(session *s, uint32_t h)
{
    uint32_t mask = s->sub_idx_cap - 1, i = h, j = h;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->sub_idx[j]) {
            break;
        }
        const sub_entry *e = &s->subs[s->sub_idx[j] - 1];
        uint32_t k = sub_hash(e->filter, e->len) & mask;
        /* The entry at j may fill i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->sub_idx[i] = s->sub_idx[j];
            i = j;
        }
    }
    s->sub_idx[i] = 0;
}

void session_add_sub(session *s, const char *filter, uint16_t len, const sub_opts *o)
{
    if (s->sub_idx) {
        uint32_t h = idx_find(s, filter, len);
        if (s->sub_idx[h]) {
            s->subs[s->sub_idx[h] - 1].opts = *o;
            return;
        }
    }
    session_append_sub(s, filter, len, o);
}

void session_append_sub(session *s, const char *filter, uint16_t len, const sub_opts *o)
{
    if (s->n_subs == s->cap_subs) {
        uint32_t cap = s->cap_subs ? s->cap_subs * 2 : 2;
        s->subs = sh_realloc(s->subs, s->cap_subs * sizeof(sub_entry), cap * sizeof(sub_entry));
        s->cap_subs = cap;
    }
    sub_entry *e = &s->subs[s->n_subs++];
    e->filter = sh_strndup(filter, len);
    e->len = len;
    e->opts = *o;
    if (s->n_subs * 2 > s->sub_idx_cap) {
        idx_rebuild(s, s->sub_idx_cap ? s->sub_idx_cap * 2 : SUB_IDX_MIN);
    } else {
        s->sub_idx[idx_find(s, filter, len)] = s->n_subs;
    }
}

bool session_has_sub(const session *s, const char *filter, uint16_t len)
{
    return s->sub_idx && s->sub_idx[idx_find(s, filter, len)] != 0;
}

bool session_remove_sub(session *s, const char *filter, uint16_t len)
{
    if (!s->sub_idx) {
        return false;
    }
    uint32_t h = idx_find(s, filter, len);
    if (!s->sub_idx[h]) {
        return false;
    }
    uint32_t i = s->sub_idx[h] - 1, last = s->n_subs - 1;
    idx_delete(s, h);
    if (i != last) {
        /* The last entry takes i's place: its slot says so. */
        s->sub_idx[idx_find(s, s->subs[last].filter, s->subs[last].len)] = i + 1;
    }
    sh_free(s->subs[i].filter, len + 1u);
    s->subs[i] = s->subs[last];
    s->n_subs--;
    return true;
}

/* Split "$share/g/f" into group and filter. */
void session_split_filter(const sub_entry *e, mqtt_bytes *group, mqtt_bytes *filter)
{
    mqtt_bytes g = {NULL, 0}, f = {(const uint8_t *)e->filter, e->len};
    if (mqtt_share_parse((const uint8_t *)e->filter, e->len, &g, &f) != 1) {
        g.p = NULL;
        g.len = 0;
        f.p = (const uint8_t *)e->filter;
        f.len = e->len;
    }
    *group = g;
    *filter = f;
}

/* ---- inbound QoS 2 ---- */

/* Room for one more entry in a list of `size`-byte entries whose capacity
 * is 1 << *log2: it starts at 4 and doubles. The callers bound their lists
 * to 65,535 entries (one per packet id), so the exponent stays at most 16. */
static void *list_room(void *v, uint32_t n, uint8_t *log2, size_t size)
{
    if (n < session_list_cap(*log2)) {
        return v;
    }
    uint8_t next = *log2 ? (uint8_t)(*log2 + 1) : 2;
    v = sh_realloc(v, session_list_cap(*log2) * size, session_list_cap(next) * size);
    *log2 = next;
    return v;
}

qos2_id *session_qos2_find(session *s, uint16_t pid)
{
    for (uint32_t i = 0; i < s->n_qos2_in; i++) {
        if (s->qos2_in[i].pid == pid) {
            return &s->qos2_in[i];
        }
    }
    return NULL;
}

bool session_qos2_has(session *s, uint16_t pid)
{
    return session_qos2_find(s, pid) != NULL;
}

qos2_id *session_qos2_add_state(session *s, uint16_t pid, uint8_t state, uint32_t conn_tag)
{
    s->qos2_in = list_room(s->qos2_in, s->n_qos2_in, &s->qos2_cap_log2, sizeof(qos2_id));
    qos2_id *e = &s->qos2_in[s->n_qos2_in++];
    e->conn_tag = conn_tag;
    e->pid = pid;
    e->state = state;
    return e;
}

void session_qos2_add(session *s, uint16_t pid)
{
    session_qos2_add_state(s, pid, Q2_DURABLE, 0);
}

bool session_qos2_remove(session *s, uint16_t pid)
{
    qos2_id *e = session_qos2_find(s, pid);
    if (!e) {
        return false;
    }
    *e = s->qos2_in[--s->n_qos2_in];
    return true;
}

/* QoS 1/2 publishes of this connection the backplane has not answered. */
static uint32_t publishes_waiting(const conn *c)
{
    uint32_t n = c->inbound_pending;
    const session *s = c->s;
    for (uint32_t i = 0; s && i < s->n_qos2_in; i++) {
        n += s->qos2_in[i].state == Q2_PENDING && s->qos2_in[i].conn_tag == (uint32_t)c->id;
    }
    return n;
}

/* Closing at once left the publishes before it waiting in the backplane's
 * producer, unanswered: the client went to another node and published on,
 * and the producer delivered them later, after those (the failover suite's
 * slow-kafka, order). Waiting answers them first; the producer's
 * message timeout bounds the wait. */
void session_refuse_by_close(conn *c)
{
    uint32_t n = publishes_waiting(c);
    if (n == 0) {
        conn_close(c, MQTT_RC_SERVER_UNAVAILABLE, "cluster backend unavailable");
        return;
    }
    if (!(c->paused & PAUSE_REFUSE)) {
        c->paused |= PAUSE_REFUSE;
        conn_io_read_enable(c, false);
        sh_log(SH_INFO, "event=refusal_waits conn=%llu client=%s waiting=%u reason=\"cluster backend unavailable\"",
               (unsigned long long)c->id, c->s ? c->s->client_id : "-", n);
    }
}

void session_refusal_check(conn *c)
{
    if (c && c->state == CS_ACTIVE && (c->paused & PAUSE_REFUSE) && publishes_waiting(c) == 0) {
        conn_close(c, MQTT_RC_SERVER_UNAVAILABLE, "cluster backend unavailable");
    }
}

void session_qos2_report(worker *w, session *s, uint16_t pid, uint32_t conn_tag, bool stored, uint8_t rc)
{
    int owner = atomic_load_explicit(&s->owner, memory_order_acquire);
    if (owner != w->id) {
        /* The session moved to another worker meanwhile (takeover): its
         * owner answers; one that no longer holds it forwards again. */
        inbox_item it;
        memset(&it, 0, sizeof(it));
        it.kind = IN_QOS2_REPORT;
        session_ref(s);
        it.s = s;
        it.pid = pid;
        it.conn_id = conn_tag;
        it.clean = stored;
        it.epoch = rc;
        worker_post(w, owner, &it);
        return;
    }
    qos2_id *e = session_qos2_find(s, pid);
    if (s->dead || !e || e->state != Q2_PENDING || e->conn_tag != conn_tag) {
        return; /* the session ended or started clean meanwhile */
    }
    conn *c = s->c && s->c->state == CS_ACTIVE ? s->c : NULL;
    if (stored) {
        e->state = Q2_DURABLE;
        if (s->persistent) {
            sync_mark_dirty(w, s); /* a resend on another node must not be taken as new */
        }
        if (c) {
            send_ack(c, MQTT_PUBREC, pid, c->version == MQTT_V5 ? rc : 0, NULL);
            session_refusal_check(c);
        }
        return;
    }
    /* Nothing was stored: a resend is a new message. */
    session_qos2_remove(s, pid);
    if (!c) {
        return;
    }
    if (c->version == MQTT_V5) {
        /* §4.3.3: a PUBREC with a failure code ends the exchange. */
        send_ack(c, MQTT_PUBREC, pid, MQTT_RC_QUOTA_EXCEEDED, "cluster backend unavailable");
    } else {
        /* 3.1.1 has no negative ack: closing is the only honest answer. */
        session_refuse_by_close(c);
    }
}

/* ---- outgoing ---- */

static uint32_t window(const session *s, const conn *c)
{
    uint32_t max = (uint32_t)c->w->b->cfg->max_inflight;
    return c->client_receive_max < max ? c->client_receive_max : max;
}

static uint16_t pid_after(uint16_t pid)
{
    return (uint16_t)(pid == 65535 ? 1 : pid + 1);
}

/* The in-flight table's slot for an id. */
static uint32_t inf_slot(const session *s, uint16_t pid)
{
    return pid & (session_list_cap(s->inf_cap_log2) - 1);
}

static inflight *inf_ends(session *s)
{
    return &s->inf[session_list_cap(s->inf_cap_log2)];
}

/* Append slot i, filled in already, to the send order. */
static void inf_link_tail(session *s, uint32_t i)
{
    inflight *ends = inf_ends(s);
    if (s->n_inf == 0) {
        ends->next = (uint16_t)i;
    } else {
        s->inf[ends->prev].next = (uint16_t)i;
        s->inf[i].prev = ends->prev;
    }
    ends->prev = (uint16_t)i;
    s->n_inf++;
}

static void inf_unlink(session *s, inflight *f)
{
    inflight *ends = inf_ends(s);
    uint16_t i = (uint16_t)(f - s->inf);
    if (ends->next == i) {
        ends->next = f->next;
    } else {
        s->inf[f->prev].next = f->next;
    }
    if (ends->prev == i) {
        ends->prev = f->prev;
    } else {
        s->inf[f->next].prev = f->prev;
    }
    f->pid = 0;
    f->state = 0;
    s->n_inf--;
}

/* A table of 1 << log2 slots holding the same entries in the same order.
 * Ids distinct modulo a capacity stay distinct modulo its double, and at
 * 65,536 slots every id has its own, so growing always ends a collision. */
static void inf_grow(session *s, uint8_t log2)
{
    inflight *old = s->inf;
    uint8_t old_log2 = s->inf_cap_log2;
    uint32_t n = s->n_inf;
    uint32_t i = n ? old[session_list_cap(old_log2)].next : 0;
    s->inf = sh_calloc(session_list_cap(log2) + 1, sizeof(inflight));
    s->inf_cap_log2 = log2;
    s->n_inf = 0;
    for (uint32_t k = 0; k < n; k++) {
        const inflight *f = &old[i];
        uint32_t j = inf_slot(s, f->pid);
        s->inf[j] = *f;
        inf_link_tail(s, j);
        i = f->next;
    }
    sh_free(old, inf_bytes(old_log2));
}

/* Room for one more entry: the table never fills up (at most 65,535
 * entries, one per packet id, in 65,536 slots), so a free slot exists. */
static void inf_room(session *s)
{
    if (s->inf_cap_log2 == 0) {
        inf_grow(s, 2);
    }
    while (s->n_inf >= session_list_cap(s->inf_cap_log2)) {
        inf_grow(s, (uint8_t)(s->inf_cap_log2 + 1));
    }
}

/* A free packet id for the next outgoing QoS 1/2 PUBLISH: the first id
 * after the last one handed out whose slot is free (a slot is taken by
 * the one id in use that maps to it). Ids go out one after another, and
 * the table has room for the whole window: with acks in order the next
 * id's slot is the one the oldest ack freed, so this takes one step;
 * a message left unacked for a whole lap of ids is stepped over. */
static uint16_t next_pid(session *s)
{
    uint16_t c = s->next_pid;
    do {
        c = pid_after(c);
    } while (s->inf[inf_slot(s, c)].pid != 0);
    s->next_pid = c;
    return c;
}

/* The queue is full: make room by dropping the oldest queued QoS 0
 * message, the one a subscriber can best lose. False if none is queued. */
static bool evict_oldest_qos0(worker *w, session *s)
{
    if (s->q_qos0 == 0) {
        return false;
    }
    uint32_t i = 0;
    while (s->q[(s->q_head + i) % s->q_cap].qos != 0) {
        i++;
    }
    msg_unref(s->q[(s->q_head + i) % s->q_cap].m);
    /* Close the gap from the head side: the oldest QoS 0 is near it. */
    for (; i > 0; i--) {
        s->q[(s->q_head + i) % s->q_cap] = s->q[(s->q_head + i - 1) % s->q_cap];
    }
    s->q_head = (s->q_head + 1) % s->q_cap;
    s->q_len--;
    s->q_qos0--;
    gauge_add(&w->metrics.queued, -1);
    limits_count_drop(w, s, DROP_QOS0_EVICTED, 1);
    return true;
}

/* A full queue and a retained copy sent at SUBSCRIBE (route.c), which no
 * replay brings back: the newest queued record that Kafka keeps spills
 * instead, and the next replay reads it. The newest, so that what is sent
 * before it stays below it in its partition: its mark does not pass it. */
static bool spill_newest_queued(worker *w, session *s)
{
    for (uint32_t i = s->q_len; i-- > 0;) {
        delivery one = s->q[(s->q_head + i) % s->q_cap];
        if (!stream_can_spill(s, &one)) {
            continue;
        }
        /* Close the gap from the tail side: it is near it. */
        for (; i + 1 < s->q_len; i++) {
            s->q[(s->q_head + i) % s->q_cap] = s->q[(s->q_head + i + 1) % s->q_cap];
        }
        s->q_len--;
        gauge_add(&w->metrics.queued, -1);
        stream_spill(w, s, &one);
        return true;
    }
    return false;
}

/* Queued messages at which a connected session's publishers are paused:
 * --publisher-backpressure, at most --max-queued / 4 (see node/mqtt/session.h). 0: off. */
uint32_t session_backpressure_mark(const config *cfg)
{
    uint32_t mark = (uint32_t)cfg->publisher_backpressure;
    uint32_t quarter = (uint32_t)cfg->max_queued / 4;
    return mark > quarter ? quarter : mark;
}

static void mark_behind(session *s)
{
    if (!atomic_load_explicit(&s->backlogged_ms, memory_order_relaxed)) {
        atomic_store_explicit(&s->backlogged_ms, now_ms(), memory_order_relaxed);
    }
}

/* A client that is behind took a message or drained its output: no longer
 * behind once its queue has halved and its output has room, else it is
 * still moving, which restarts the stall clock. */
static void behind_progress(worker *w, session *s)
{
    if (!atomic_load_explicit(&s->backlogged_ms, memory_order_relaxed)) {
        return;
    }
    bool caught_up = s->q_len <= session_backpressure_mark(w->b->cfg) / 2 && !(s->c && conn_output_full(s->c));
    atomic_store_explicit(&s->backlogged_ms, caught_up ? 0 : now_ms(), memory_order_relaxed);
}

bool session_behind(const session *s, uint32_t mark)
{
    /* Deliveries still in the owner's inbox count: a publisher on another
     * worker can route a lot before the owner's queue shows it. */
    if (atomic_load_explicit(&s->incoming, memory_order_relaxed) >= mark) {
        return true;
    }
    uint64_t since = atomic_load_explicit(&s->backlogged_ms, memory_order_relaxed);
    if (!since) {
        return false;
    }
    uint64_t now = now_ms();
    return now < since || now - since < BACKPRESSURE_STALL_MS;
}

/* Queue for later, within --max-queued: the oldest QoS 0 goes first, and
 * if there is none the new message is refused. Consumes d->m's ref. */
static void queue_push(worker *w, session *s, delivery *d)
{
    uint32_t max = (uint32_t)w->b->cfg->max_queued;
    /* A live subscriber holding the stream takes what was already on its
     * way when the stream stopped (node/mqtt/stream_hold.c): not dropped, and
     * not spilled (a replay would read it again). */
    uint32_t held = d->qos ? hold_queue_limit(w, s) : 0;
    if (s->q_len >= max && s->q_len < held) {
        max = held;
    }
    if (s->q_len >= max && stream_spill(w, s, d)) {
        return; /* its position is kept: Kafka holds it (node/mqtt/session_stream.c) */
    }
    if (s->q_len >= max && d->at_subscribe && d->qos > 0 && spill_newest_queued(w, s)) {
        max = s->q_len + 1; /* room made */
    }
    if (s->q_len >= max && !evict_oldest_qos0(w, s)) {
        limits_count_drop(w, s, DROP_QUEUE_FULL, 1);
        msg_unref(d->m);
        return;
    }
    if (s->q_len == s->q_cap) {
        uint32_t cap = s->q_cap ? s->q_cap * 2 : 8;
        delivery *q = sh_malloc(cap * sizeof(delivery));
        for (uint32_t i = 0; i < s->q_len; i++) {
            q[i] = s->q[(s->q_head + i) % s->q_cap];
        }
        sh_free(s->q, s->q_cap * sizeof(delivery));
        s->q = q;
        s->q_cap = cap;
        s->q_head = 0;
    }
    s->q[(s->q_head + s->q_len) % s->q_cap] = *d;
    s->q_len++;
    s->q_qos0 += d->qos == 0;
    gauge_add(&w->metrics.queued, 1);
    /* Only a connected subscriber slows publishers: an offline session's
     * queue is bounded by --max-queued alone. */
    uint32_t mark = session_backpressure_mark(w->b->cfg);
    if (mark && s->q_len >= mark && atomic_load_explicit(&s->online, memory_order_relaxed)) {
        mark_behind(s);
    }
    hold_pushed(w, s, d->qos);
}

/* Pop the oldest queued delivery (the caller owns its ref). */
static delivery queue_pop(worker *w, session *s)
{
    delivery one = s->q[s->q_head];
    s->q_head = (s->q_head + 1) % s->q_cap;
    s->q_len--;
    s->q_qos0 -= one.qos == 0;
    gauge_add(&w->metrics.queued, -1);
    behind_progress(w, s);
    hold_popped(w, s);
    return one;
}

/* Send one QoS 1/2 delivery now, taking a slot of the window (at most
 * 65,535: --max-inflight and Receive Maximum are 16-bit). */
static void send_inflight(session *s, conn *c, delivery *d)
{
    worker *w = c->w;
    inf_room(s);
    uint16_t pid = next_pid(s);
    uint32_t slot = inf_slot(s, pid);
    inflight *f = &s->inf[slot];
    f->pid = pid;
    f->state = d->qos == 1 ? INF_WAIT_ACK : INF_WAIT_REC;
    f->hold = 0;
    f->seq = 0;
    /* A retained copy sent at SUBSCRIBE is no place in the stream to
     * resume from or to read again on another node (session.h). */
    f->part = d->at_subscribe ? -1 : d->m->part;
    f->off = d->at_subscribe ? -1 : d->m->off;
    f->d = *d;
    inf_link_tail(s, slot);
    gauge_add(&w->metrics.inflight, 1);
    if (s->st || w->b->stream) {
        stream_sent(w, s, d);
        if (stream_hold_publish(w, s, f)) {
            return; /* sent once the store recording it is durable */
        }
    }
    if (!send_publish(c, d, f->pid, false)) {
        /* Larger than the client accepts (§3.1.2.11.4): discard as if acked. */
        msg_unref(f->d.m);
        inf_unlink(s, f);
        gauge_add(&w->metrics.inflight, -1);
        limits_count_drop(w, s, DROP_TOO_LARGE, 1);
    }
}

static bool can_send_now(const session *s, const conn *c)
{
    return c && c->state == CS_ACTIVE && !conn_output_full(c);
}

/* QoS 0 to a client that cannot take it now: queued for an offline
 * persistent session (--queue-qos0), or behind older queued QoS 0 so the
 * order holds (§4.6); otherwise dropped. Consumes d->m's ref. */
static void deliver_qos0_later(worker *w, session *s, delivery *d)
{
    if (s->q_qos0 || (!s->c && w->b->cfg->limits.queue_qos0)) {
        queue_push(w, s, d);
        return;
    }
    limits_count_drop(w, s, s->c ? DROP_OUTPUT_FULL : DROP_OFFLINE_QOS0, 1);
    msg_unref(d->m);
    /* A connected client that cannot read fast enough: slow its publishers
     * too, until its output has drained (session_pump). */
    if (s->c && session_backpressure_mark(w->b->cfg)) {
        mark_behind(s);
    }
}

static void send_qos0(worker *w, session *s, conn *c, delivery *d)
{
    if (!send_publish(c, d, 0, false)) {
        limits_count_drop(w, s, DROP_TOO_LARGE, 1);
    }
    msg_unref(d->m);
}

/* ---- retained copies at SUBSCRIBE ---- */

static bool same_record(const ret_seen *e, const msg *m)
{
    return e->id == m->id || (e->part >= 0 && e->part == m->part && e->off == m->off);
}

/* m goes to s as a retained copy at SUBSCRIBE: remember it, so that its
 * live copy, if it has yet to reach s, is not sent too. */
static void note_retained(session *s, const msg *m)
{
    if (!s->ret_seen) {
        s->ret_seen = sh_calloc(SESSION_RET_SEEN, sizeof(ret_seen));
    }
    /* Full: the oldest record gives way, its live copy most likely
     * routed already. */
    ret_seen *slot = NULL;
    for (uint32_t i = 0; i < SESSION_RET_SEEN; i++) {
        ret_seen *e = &s->ret_seen[i];
        if (e->id && same_record(e, m)) {
            return;
        }
        if (!slot || (slot->id && (!e->id || e->ts < slot->ts))) {
            slot = e;
        }
    }
    if (slot->id && slot->ts > m->ts) {
        return;
    }
    *slot = (ret_seen){.id = m->id, .off = m->off, .ts = m->ts, .part = m->part};
}

void session_forget_retained(session *s, const msg *m)
{
    for (uint32_t i = 0; s->ret_seen && i < SESSION_RET_SEEN; i++) {
        if (s->ret_seen[i].id && same_record(&s->ret_seen[i], m)) {
            s->ret_seen[i].id = 0;
        }
    }
}

/* d is the live copy of a record s got retained at SUBSCRIBE: a duplicate
 * of the same publish. A shared group's copy is not one: retained
 * messages never go to a shared subscription at SUBSCRIBE (MQTT 5
 * §4.8.2), so that copy is the group's. */
static bool seen_retained(session *s, const delivery *d)
{
    if (!s->ret_seen || d->at_subscribe || d->shared) {
        return false;
    }
    for (uint32_t i = 0; i < SESSION_RET_SEEN; i++) {
        ret_seen *e = &s->ret_seen[i];
        if (e->id && same_record(e, d->m)) {
            e->id = 0;
            return true;
        }
    }
    return false;
}

void session_deliver(worker *w, session *s, delivery *d)
{
    uint64_t now = now_ms();
    if (s->dead && d->shared && d->qos > 0 && !msg_is_expired(d->m, now)) {
        /* Chosen while the member was ending: another member takes it. */
        share_late(w, d->m);
        msg_unref(d->m);
        return;
    }
    if (s->dead || msg_is_expired(d->m, now)) {
        limits_count_drop(w, s, s->dead ? DROP_SESSION_ENDED : DROP_EXPIRED, 1);
        msg_unref(d->m);
        return;
    }
    if (d->at_subscribe) {
        note_retained(s, d->m);
    } else if (seen_retained(s, d)) {
        msg_unref(d->m); /* sent already, as the retained copy */
        return;
    }
    if (s->st && stream_intercept(w, s, d)) {
        return;
    }
    conn *c = s->c;
    if (d->qos == 0) {
        if (can_send_now(s, c) && s->q_qos0 == 0) {
            send_qos0(w, s, c, d);
        } else {
            deliver_qos0_later(w, s, d);
        }
        return;
    }
    if (can_send_now(s, c) && s->q_len == 0 && s->n_inf < window(s, c)) {
        send_inflight(s, c, d);
        return;
    }
    queue_push(w, s, d);
}

void session_pump(worker *w, session *s)
{
    conn *c = s->c;
    uint64_t now = now_ms();
    while (s->q_len && can_send_now(s, c)) {
        delivery *d = &s->q[s->q_head];
        if (d->qos > 0 && s->n_inf >= window(s, c)) {
            break;
        }
        delivery one = queue_pop(w, s);
        if (msg_is_expired(one.m, now)) {
            if (s->st && one.qos > 0) {
                stream_sent(w, s, &one); /* done with, in its order */
            }
            limits_count_drop(w, s, DROP_EXPIRED, 1);
            msg_unref(one.m);
        } else if (one.qos == 0) {
            send_qos0(w, s, c, &one);
        } else {
            send_inflight(s, c, &one);
        }
    }
    behind_progress(w, s);
    if (s->st) {
        stream_pumped(w, s);
    }
}

/* After a reconnect: resend unacknowledged PUBLISH with DUP and PUBREL for
 * those past PUBREC (§4.4), then whatever queued. */
void session_resend(worker *w, session *s)
{
    conn *c = s->c;
    for (inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        if (f->state == INF_WAIT_COMP) {
            if (!(f->hold & INF_HOLD_REL)) {
                send_ack(c, MQTT_PUBREL, f->pid, 0, NULL);
            }
        } else if (f->d.m && !(f->hold & INF_HOLD_PUB)) {
            /* d.m NULL: restored from another node, resent once a replay reads it. */
            send_publish(c, &f->d, f->pid, true);
        }
    }
    session_pump(w, s);
}

static inflight *find_inflight(session *s, uint16_t pid)
{
    if (s->n_inf == 0 || pid == 0) {
        return NULL;
    }
    inflight *f = &s->inf[inf_slot(s, pid)];
    return f->pid == pid ? f : NULL;
}

static void remove_inflight(worker *w, session *s, inflight *f)
{
    gauge_add(&w->metrics.inflight, -1);
    msg_unref(f->d.m);
    /* Out of the send order list in O(1): resends keep the original order (§4.6). */
    inf_unlink(s, f);
}

/* PUBACK, PUBREC (rc), PUBCOMP from the client. */
mqtt_rc session_ack(worker *w, session *s, uint8_t type, uint16_t pid)
{
    inflight *f = find_inflight(s, pid);
    uint8_t want = type == MQTT_PUBACK ? INF_WAIT_ACK : (type == MQTT_PUBREC ? INF_WAIT_REC : INF_WAIT_COMP);
    if (!f || f->state != want) {
        return MQTT_RC_PACKET_ID_NOT_FOUND;
    }
    if (type == MQTT_PUBREC) {
        f->state = INF_WAIT_COMP;
        msg_unref(f->d.m);
        f->d.m = NULL;
        return MQTT_RC_SUCCESS;
    }
    remove_inflight(w, s, f); /* past PUBREC, d.m is already NULL */
    if (s->st) {
        stream_acked(w, s);
    }
    session_pump(w, s);
    return MQTT_RC_SUCCESS;
}

inflight *session_inflight_find(session *s, uint16_t pid)
{
    return find_inflight(s, pid);
}

void session_inflight_remove(worker *w, session *s, inflight *f)
{
    remove_inflight(w, s, f);
}

inflight *session_inflight_restore(worker *w, session *s, uint16_t pid, uint8_t state, int32_t part, int64_t off)
{
    inflight *f = find_inflight(s, pid);
    if (f) {
        return f; /* one entry per id */
    }
    inf_room(s);
    while (s->inf[inf_slot(s, pid)].pid != 0) {
        inf_grow(s, (uint8_t)(s->inf_cap_log2 + 1)); /* another id has its slot */
    }
    uint32_t slot = inf_slot(s, pid);
    f = &s->inf[slot];
    memset(f, 0, sizeof(*f));
    f->pid = pid;
    f->state = state;
    f->part = part;
    f->off = off;
    f->d.qos = state == INF_WAIT_ACK ? 1 : 2;
    inf_link_tail(s, slot);
    s->next_pid = pid; /* restored in send order: new ids follow the newest */
    gauge_add(&w->metrics.inflight, 1);
    return f;
}

/* PUBREC with a failure code ends the exchange (§4.3.3). */
void session_ack_failed(worker *w, session *s, uint16_t pid)
{
    inflight *f = find_inflight(s, pid);
    if (f && f->state == INF_WAIT_REC) {
        remove_inflight(w, s, f);
        session_pump(w, s);
    }
}
