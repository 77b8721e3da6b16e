/* SPDX-License-Identifier: Apache-2.0 */
/* Persistent sessions' places in the cluster's stream (node/mqtt/session_stream.h;
 * docs/architecture.md, "Offline queues and positions").
 *
 * A session on a cluster node keeps, in its stored state:
 *  - positions: per partition, an offset below which every record matched
 *    to it is finished (sent and acknowledged, or sent as QoS 0). It is the
 *    lowest of: its queued and in-flight messages, the first record it
 *    spilled, a running replay's progress, and the node's *safe* position
 *    (how far the partition's records have been handed to sessions, one to
 *    two ticks ago: a delivery still on its way to a session's worker is
 *    above it). A position may be low: reading more costs time, not
 *    duplicates, because of the marks below.
 *  - marks (rules): per partition, how far this node sent the session its
 *    own records (routed at their delivery report) and the other nodes'
 *    (routed by the consumer). Each kind reaches the session in offset
 *    order and leaves its queue in that order, so "sent" is a prefix, and a
 *    record below its mark is not sent again by a replay on any node. A
 *    session that moved keeps the previous owners' marks until its
 *    positions pass them.
 *  - in flight: packet id -> (partition, offset) and state; a replay hands
 *    the message back to the entry, which is resent with DUP and its id
 *    (the live stream does, for a record past the replay's end).
 *
 * Past --max-queued the session spills: it stops queuing in memory and
 * keeps the first spilled offset per partition; once its queue has drained
 * with a client attached, a replay reads the rest from Kafka. A session
 * resumed from another node's state replays from the stored positions.
 * While a replay runs, live deliveries below its end are dropped (the
 * replay has them) and the others wait behind it (past --max-queued they
 * spill too).
 *
 * The stored state is the session's floor: a replay reads at least up to
 * its marks, positions and in-flight records, even past where this node's
 * consumer stands (the previous owner's may have been ahead, and the
 * client may have completed those records there), and the live stream
 * never brings the session a record below the end of a replay that
 * finished (`floor`): the replay decided about it, by the marks. */
#include "node/mqtt/session_stream.h"

#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/route.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session_sync.h"
#include "node/mqtt/stream_hold.h"
#include "node/worker.h"
#include "proto/topic.h"

/* Records a replay hands over at once: its memory bound, with the queue
 * (at most --max-queued, replay_batch). */
#define REPLAY_BATCH 256
/* An acknowledgement stores the moved position at most this often. */
#define STORE_EVERY_MS 1000

typedef struct sess_rule {
    char *node; /* NUL-terminated */
    int64_t *hi_own;
    int64_t *hi_other;
} sess_rule;

typedef struct stream_replay {
    worker *w;
    session *s; /* ref held */
    uint64_t id;
    uint32_t n_parts;
    int64_t *end;
    int64_t *next;
    bool have_end;
    bool asked;
    bool stopping;
} stream_replay;

struct session_stream {
    uint32_t n_parts;
    int64_t *spill;    /* first spilled offset per partition, -1 none */
    int64_t *restored; /* stored positions another node wrote, until a replay starts; NULL none */
    sess_rule cur;     /* what this node sent */
    sess_rule prev[SC_MAX_RULES - 1];
    uint32_t n_prev;
    stream_replay *rp;
    /* Per partition, the end of the last replay that finished: the live
     * stream brings records below it later when this node's consumer was
     * behind; the replay had them (NULL until a replay finished). */
    int64_t *floor;
    delivery *held; /* live deliveries behind the replay */
    uint32_t n_held, cap_held;
    uint32_t enc_seq, done_seq;
    uint64_t last_store_ms;
    bool spilled;
    bool need_replay;
    bool replaying_now; /* a replay's (or the held list's) delivery is handled: not intercepted */
    uint32_t n_await;   /* in-flight entries whose record the live stream brings (stream_intercept), or fewer */
    bool spill_logged;
};

/* ---- the node's positions ---- */

void stream_broker_init(broker *b)
{
    uint32_t n = bp_stream_partitions(b->bp);
    if (n == 0) {
        return;
    }
    stream_broker *sb = sh_calloc(1, sizeof(*sb));
    sb->n_parts = n;
    sb->routed = sh_calloc(n, sizeof(*sb->routed));
    sb->prev = sh_calloc(n, sizeof(int64_t));
    sb->safe = sh_calloc(n, sizeof(*sb->safe));
    sb->share_low = sh_calloc((size_t)n * (size_t)b->nworkers, sizeof(*sb->share_low));
    for (size_t i = 0; i < (size_t)n * (size_t)b->nworkers; i++) {
        atomic_init(&sb->share_low[i], INT64_MAX);
    }
    for (uint32_t p = 0; p < n; p++) {
        int64_t start = bp_stream_start(b->bp, p);
        atomic_init(&sb->routed[p], start);
        sb->prev[p] = start;
        atomic_init(&sb->safe[p], start);
    }
    b->stream = sb;
}

void stream_broker_free(broker *b)
{
    stream_broker *sb = b->stream;
    if (!sb) {
        return;
    }
    sh_free((void *)sb->routed, sb->n_parts * sizeof(*sb->routed));
    sh_free(sb->prev, sb->n_parts * sizeof(int64_t));
    sh_free((void *)sb->safe, sb->n_parts * sizeof(*sb->safe));
    sh_free((void *)sb->share_low, (size_t)sb->n_parts * (size_t)b->nworkers * sizeof(*sb->share_low));
    sh_free(sb, sizeof(*sb));
    b->stream = NULL;
}

void stream_routed(worker *w, int32_t part, int64_t next)
{
    stream_broker *sb = w->b->stream;
    if (sb && part >= 0 && (uint32_t)part < sb->n_parts && next > atomic_load(&sb->routed[part])) {
        atomic_store(&sb->routed[part], next);
    }
}

void stream_position_hook(void *node, int32_t part, int64_t next)
{
    broker *b = node;
    if (!atomic_load_explicit(&b->running, memory_order_acquire) || part < 0) {
        return;
    }
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_POSITION;
    it.conn_id = (uint64_t)part;
    it.epoch = (uint64_t)next;
    /* The worker that routes the partition's records: in order with them. */
    worker_post_external(b, (int)((unsigned)part % (unsigned)b->nworkers), &it);
}

/* A delivery routed by one worker reaches its session's worker within a
 * loop turn or so; what was routed a whole tick ago has arrived. */
void stream_tick(worker *w)
{
    stream_broker *sb = w->b->stream;
    if (!sb) {
        return;
    }
    for (uint32_t p = (uint32_t)w->id; p < sb->n_parts; p += (uint32_t)w->b->nworkers) {
        atomic_store(&sb->safe[p], sb->prev[p]);
        sb->prev[p] = atomic_load(&sb->routed[p]);
    }
}

/* ---- a session's stream state ---- */

static int64_t *parts_new(uint32_t n, int64_t v)
{
    int64_t *a = sh_malloc(n * sizeof(int64_t));
    for (uint32_t p = 0; p < n; p++) {
        a[p] = v;
    }
    return a;
}

static void parts_free(int64_t *a, uint32_t n)
{
    if (a) {
        sh_free(a, n * sizeof(int64_t));
    }
}

static void rule_free(sess_rule *r, uint32_t n)
{
    if (r->node) {
        sh_free_str(r->node);
    }
    parts_free(r->hi_own, n);
    parts_free(r->hi_other, n);
    memset(r, 0, sizeof(*r));
}

static void rule_init(sess_rule *r, const char *node, size_t len, uint32_t n)
{
    r->node = sh_strndup(node, len);
    r->hi_own = parts_new(n, -1);
    r->hi_other = parts_new(n, -1);
}

static session_stream *make(worker *w, session *s, bool persistent)
{
    if (s->st) {
        return s->st;
    }
    stream_broker *sb = w->b->stream;
    if (!sb || !persistent || !sync_on(w->b)) {
        return NULL;
    }
    session_stream *st = sh_calloc(1, sizeof(*st));
    st->n_parts = sb->n_parts;
    st->spill = parts_new(sb->n_parts, -1);
    const char *self = w->b->cfg->node_id;
    rule_init(&st->cur, self, strlen(self), sb->n_parts);
    s->st = st;
    return st;
}

static session_stream *get(worker *w, session *s)
{
    return make(w, s, s->persistent);
}

static void replay_stop(broker *b, session_stream *st)
{
    stream_replay *rp = st->rp;
    if (!rp) {
        return;
    }
    st->rp = NULL;
    if (!rp->stopping) {
        rp->stopping = true;
        bp_replay_stop(b->bp, rp->id);
    }
}

static void held_drop(session_stream *st)
{
    for (uint32_t i = 0; i < st->n_held; i++) {
        msg_unref(st->held[i].m);
    }
    st->n_held = 0;
}

void stream_reset(broker *b, session *s)
{
    session_stream *st = s->st;
    if (!st) {
        return;
    }
    replay_stop(b, st);
    held_drop(st);
    for (uint32_t p = 0; p < st->n_parts; p++) {
        st->spill[p] = -1;
        st->cur.hi_own[p] = -1;
        st->cur.hi_other[p] = -1;
    }
    parts_free(st->restored, st->n_parts);
    st->restored = NULL;
    parts_free(st->floor, st->n_parts);
    st->floor = NULL;
    for (uint32_t i = 0; i < st->n_prev; i++) {
        rule_free(&st->prev[i], st->n_parts);
    }
    st->n_prev = 0;
    st->spilled = st->need_replay = false;
}

void stream_free(broker *b, session *s)
{
    session_stream *st = s->st;
    if (!st) {
        return;
    }
    stream_reset(b, s);
    sh_free(st->held, st->cap_held * sizeof(delivery));
    parts_free(st->spill, st->n_parts);
    rule_free(&st->cur, st->n_parts);
    sh_free(st, sizeof(*st));
    s->st = NULL;
}

static bool has_ref(const session_stream *st, const msg *m)
{
    return m && m->part >= 0 && (uint32_t)m->part < st->n_parts && m->off >= 0;
}

/* A delivery the stream brings back: a retained copy sent at SUBSCRIBE is
 * not one, though its message names the record it came from. */
static bool d_ref(const session_stream *st, const delivery *d)
{
    return !d->at_subscribe && has_ref(st, d->m);
}

/* ---- spilling and holding ---- */

static void spill_one(worker *w, session *s, delivery *d)
{
    session_stream *st = s->st;
    if (d->qos > 0 && d_ref(st, d)) {
        int64_t *sp = &st->spill[d->m->part];
        if (*sp < 0 || d->m->off < *sp) {
            *sp = d->m->off;
        }
        if (!st->spilled && !st->spill_logged) {
            st->spill_logged = true;
            sh_log(SH_INFO,
                   "event=queue_spilled client=%s queued=%u msg=\"further messages stay in Kafka until the "
                   "client takes them\"",
                   s->client_id, s->q_len);
        }
        st->spilled = true;
        st->need_replay = true;
    } else if (d->qos > 0) {
        limits_count_drop(w, s, DROP_QUEUE_FULL, 1); /* not in the stream (retained on subscribe) */
        if (d->at_subscribe) {
            session_forget_retained(s, d->m); /* its live copy is then the one */
        }
    } else {
        limits_count_drop(w, s, DROP_QUEUE_FULL, 1);
    }
    msg_unref(d->m);
}

/* A QoS 1/2 retained copy sent at SUBSCRIBE: Kafka cannot bring it back,
 * a stream record it can (spill_one). */
static bool kept_only_here(const session_stream *st, const delivery *d)
{
    return d->qos > 0 && d->at_subscribe && !d_ref(st, d);
}

bool stream_can_spill(const session *s, const delivery *d)
{
    const session_stream *st = s->st;
    /* A running replay's records are not: the rest of it passes their marks. */
    return st && !st->rp && d->qos > 0 && d_ref(st, d);
}

/* Room in a full held list for a retained copy at SUBSCRIBE: the newest
 * held record Kafka keeps spills. The newest, so that what is delivered
 * after the replay stays below it in its partition (a prefix of what was
 * sent: its mark does not pass it, and the next replay reads it). */
static bool spill_newest_held(worker *w, session *s)
{
    session_stream *st = s->st;
    for (uint32_t i = st->n_held; i-- > 0;) {
        if (st->held[i].qos > 0 && d_ref(st, &st->held[i])) {
            delivery out = st->held[i];
            memmove(&st->held[i], &st->held[i + 1], (st->n_held - i - 1) * sizeof(delivery));
            st->n_held--;
            spill_one(w, s, &out);
            return true;
        }
    }
    return false;
}

static void hold(worker *w, session *s, delivery *d)
{
    session_stream *st = s->st;
    if (st->n_held >= (uint32_t)w->b->cfg->max_queued && !(kept_only_here(st, d) && spill_newest_held(w, s))) {
        spill_one(w, s, d); /* a retained copy too, once all held are such (the bound) */
        return;
    }
    if (st->n_held == st->cap_held) {
        uint32_t cap = st->cap_held ? st->cap_held * 2 : 16;
        st->held = sh_realloc(st->held, st->cap_held * sizeof(delivery), cap * sizeof(delivery));
        st->cap_held = cap;
    }
    st->held[st->n_held++] = *d;
}

/* An entry restored from another node whose record no replay read yet. */
static bool awaits_record(const inflight *f)
{
    return !f->d.m && f->state != INF_WAIT_COMP && !f->hold && f->part >= 0;
}

/* A live delivery of a record the session has in flight already: a
 * restored entry past the end of this node's replay (its consumer had not
 * read that far yet when the replay began; the previous owner had). It is
 * resent as that entry, with DUP and its packet id (§4.4), never as a new
 * message. One pass finds it and counts the entries still waiting. */
static bool to_awaiting(worker *w, session *s, delivery *d)
{
    session_stream *st = s->st;
    inflight *hit = NULL;
    uint32_t waiting = 0;
    for (inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        if (!hit && f->part == d->m->part && f->off == d->m->off) {
            hit = f;
        } else if (awaits_record(f)) {
            waiting++;
        }
    }
    st->n_await = waiting;
    if (!hit) {
        return false;
    }
    if (!awaits_record(hit)) {
        msg_unref(d->m); /* sent already, or past PUBREC */
        return true;
    }
    hit->d = *d;
    hit->d.qos = hit->state == INF_WAIT_ACK ? 1 : 2;
    stream_sent(w, s, d);
    if (s->c && s->c->state == CS_ACTIVE) {
        send_publish(s->c, &hit->d, hit->pid, true);
    }
    return true;
}

/* A live delivery the session's replays stand for: a shared group's copy
 * is never replayed (match below), so it is not one. */
static bool replays(const session_stream *st, const delivery *d)
{
    return !d->shared && d_ref(st, d);
}

static bool below_floor(const session_stream *st, const delivery *d)
{
    return st->floor && replays(st, d) && d->m->off < st->floor[d->m->part];
}

bool stream_intercept(worker *w, session *s, delivery *d)
{
    session_stream *st = s->st;
    if (st && st->n_await && d_ref(st, d) && to_awaiting(w, s, d)) {
        return true;
    }
    if (!st || st->replaying_now) {
        return false;
    }
    if (below_floor(st, d)) {
        msg_unref(d->m); /* a finished replay read it */
        return true;
    }
    stream_replay *rp = st->rp;
    if (rp) {
        if (rp->have_end && replays(st, d) && d->m->off < rp->end[d->m->part]) {
            msg_unref(d->m); /* the replay reads it */
            return true;
        }
        hold(w, s, d);
        return true;
    }
    if (st->spilled && !kept_only_here(st, d)) {
        spill_one(w, s, d);
        return true;
    }
    return false; /* a retained copy of a spilled session is queued (queue_push makes room) */
}

bool stream_live(const session *s)
{
    const session_stream *st = s->st;
    return !st || (!st->spilled && !st->rp && !st->need_replay);
}

bool stream_spill(worker *w, session *s, delivery *d)
{
    session_stream *st = get(w, s);
    if (!st || d->qos == 0 || !d_ref(st, d)) {
        return false;
    }
    spill_one(w, s, d);
    return true;
}

void stream_sent(worker *w, session *s, const delivery *d)
{
    session_stream *st = get(w, s);
    if (!st || !d_ref(st, d)) {
        return;
    }
    int64_t *hi = d->m->own ? &st->cur.hi_own[d->m->part] : &st->cur.hi_other[d->m->part];
    if (d->m->off + 1 > *hi) {
        *hi = d->m->off + 1;
    }
}

/* ---- QoS 2: the store first ---- */

static bool hold_until_stored(worker *w, session *s, inflight *f, uint8_t what)
{
    session_stream *st = get(w, s);
    if (!st) {
        return false;
    }
    f->hold |= what;
    f->seq = st->enc_seq + 1; /* the next store encodes it */
    sync_mark_dirty(w, s);
    return true;
}

bool stream_hold_publish(worker *w, session *s, inflight *f)
{
    return f->d.qos == 2 && hold_until_stored(w, s, f, INF_HOLD_PUB);
}

bool stream_hold_release(worker *w, session *s, inflight *f)
{
    return hold_until_stored(w, s, f, INF_HOLD_REL);
}

void stream_stored(worker *w, session *s, uint32_t seq)
{
    session_stream *st = s->st;
    if (!st || s->dead || atomic_load(&s->owner) != w->id) {
        return;
    }
    if (seq > st->done_seq) {
        st->done_seq = seq;
    }
    conn *c = s->c && s->c->state == CS_ACTIVE ? s->c : NULL;
    inflight *nx;
    for (inflight *f = session_inflight_first(s); f; f = nx) {
        nx = session_inflight_next(s, f); /* before f may be removed */
        if (!f->hold || f->seq > st->done_seq) {
            continue;
        }
        if (f->hold & INF_HOLD_PUB) {
            f->hold &= (uint8_t)~INF_HOLD_PUB;
            if (c && f->d.m && !send_publish(c, &f->d, f->pid, false)) {
                limits_count_drop(w, s, DROP_TOO_LARGE, 1);
                session_inflight_remove(w, s, f);
                continue;
            }
        }
        if (f->hold & INF_HOLD_REL) {
            f->hold &= (uint8_t)~INF_HOLD_REL;
            if (c) {
                send_ack(c, MQTT_PUBREL, f->pid, 0, NULL);
            }
        }
    }
}

void stream_acked(worker *w, session *s)
{
    session_stream *st = s->st;
    if (st && now_ms() - st->last_store_ms >= STORE_EVERY_MS) {
        sync_mark_dirty(w, s);
    }
}

/* ---- encoding ---- */

static void lower(int64_t *pos, int64_t v)
{
    if (v >= 0 && (*pos < 0 || v < *pos)) {
        *pos = v;
    }
}

static void lower_ref(session_stream *st, int64_t *pos, const delivery *d)
{
    if (d_ref(st, d)) {
        lower(&pos[d->m->part], d->m->off);
    }
}

static void positions(broker *b, session *s, int64_t *pos)
{
    session_stream *st = s->st;
    stream_broker *sb = b->stream;
    for (uint32_t p = 0; p < st->n_parts; p++) {
        pos[p] = atomic_load(&sb->safe[p]);
        lower(&pos[p], st->spill[p]);
        if (st->restored) {
            lower(&pos[p], st->restored[p]);
        }
        if (st->rp) {
            lower(&pos[p], st->rp->next[p]);
        }
    }
    for (uint32_t i = 0; i < s->q_len; i++) {
        lower_ref(st, pos, &s->q[(s->q_head + i) % s->q_cap]);
    }
    for (uint32_t i = 0; i < st->n_held; i++) {
        lower_ref(st, pos, &st->held[i]);
    }
    for (const inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        if (f->state != INF_WAIT_COMP && f->part >= 0 && (uint32_t)f->part < st->n_parts) {
            lower(&pos[f->part], f->off);
        }
    }
}

/* A previous owner's marks matter while a replay could still read what
 * they cover. */
static void trim_rules(session_stream *st, const int64_t *pos)
{
    for (uint32_t i = 0; i < st->n_prev;) {
        bool passed = true;
        for (uint32_t p = 0; p < st->n_parts && passed; p++) {
            int64_t hi = st->prev[i].hi_own[p] > st->prev[i].hi_other[p] ? st->prev[i].hi_own[p]
                                                                         : st->prev[i].hi_other[p];
            passed = hi < 0 || (pos[p] >= 0 && pos[p] >= hi);
        }
        if (passed) {
            rule_free(&st->prev[i], st->n_parts);
            st->prev[i] = st->prev[--st->n_prev];
        } else {
            i++;
        }
    }
}

static uint8_t inflight_state(const inflight *f)
{
    if (f->state == INF_WAIT_COMP) {
        return 3;
    }
    return f->state == INF_WAIT_REC ? 2 : 1;
}

uint32_t stream_encode(worker *w, session *s, sc_state *out)
{
    session_stream *st = get(w, s);
    if (!st) {
        return 0;
    }
    st->last_store_ms = now_ms();
    out->n_parts = st->n_parts;
    out->pos = parts_new(st->n_parts, -1);
    positions(w->b, s, out->pos);
    trim_rules(st, out->pos);
    out->n_rules = 1 + st->n_prev;
    out->rules = sh_calloc(out->n_rules, sizeof(sc_rule));
    const sess_rule *all[SC_MAX_RULES];
    all[0] = &st->cur;
    for (uint32_t i = 0; i < st->n_prev; i++) {
        all[i + 1] = &st->prev[i];
    }
    for (uint32_t i = 0; i < out->n_rules; i++) {
        out->rules[i].node.p = (const uint8_t *)all[i]->node;
        out->rules[i].node.len = (uint32_t)strlen(all[i]->node);
        out->rules[i].hi_own = all[i]->hi_own;
        out->rules[i].hi_other = all[i]->hi_other;
    }
    out->n_inflight = s->n_inf;
    out->inflight = s->n_inf ? sh_calloc(s->n_inf, sizeof(sc_inflight)) : NULL;
    uint32_t i = 0;
    for (const inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f), i++) {
        out->inflight[i].pid = f->pid;
        out->inflight[i].state = inflight_state(f);
        out->inflight[i].part = f->part;
        out->inflight[i].off = f->off;
    }
    return ++st->enc_seq;
}

void stream_encoded(sc_state *out)
{
    parts_free(out->pos, out->n_parts);
    if (out->rules) {
        sh_free(out->rules, out->n_rules * sizeof(sc_rule));
    }
    if (out->inflight) {
        sh_free(out->inflight, out->n_inflight * sizeof(sc_inflight));
    }
    out->pos = NULL;
    out->rules = NULL;
    out->inflight = NULL;
    out->n_parts = out->n_rules = out->n_inflight = 0;
}

/* ---- restoring another node's state ---- */

void stream_restore(worker *w, session *s, const sc_state *in)
{
    /* Stored state is a persistent session's (connect_finish sets the flag after). */
    session_stream *st = make(w, s, true);
    if (!st) {
        return;
    }
    for (uint32_t i = 0; i < in->n_inflight; i++) {
        const sc_inflight *f = &in->inflight[i];
        uint8_t state = f->state == 3 ? INF_WAIT_COMP : (f->state == 2 ? INF_WAIT_REC : INF_WAIT_ACK);
        if (!session_inflight_find(s, f->pid)) {
            session_inflight_restore(w, s, f->pid, state, f->part, f->off);
        }
    }
    if (in->n_parts != st->n_parts) {
        if (in->n_parts) {
            sh_log(SH_WARN, "event=session_positions_refused client=%s stored_partitions=%u partitions=%u",
                   s->client_id, in->n_parts, st->n_parts);
        }
        return;
    }
    st->restored = parts_new(st->n_parts, -1);
    memcpy(st->restored, in->pos, st->n_parts * sizeof(int64_t));
    for (uint32_t i = 0; i < in->n_rules && st->n_prev < SC_MAX_RULES - 1; i++) {
        sess_rule *r = &st->prev[st->n_prev++];
        rule_init(r, (const char *)in->rules[i].node.p, in->rules[i].node.len, st->n_parts);
        memcpy(r->hi_own, in->rules[i].hi_own, st->n_parts * sizeof(int64_t));
        memcpy(r->hi_other, in->rules[i].hi_other, st->n_parts * sizeof(int64_t));
    }
    st->need_replay = true;
}

/* ---- replays ---- */

/* Did some owner send this record already? */
static bool was_sent(const session_stream *st, const bp_message *bm)
{
    uint32_t p = (uint32_t)bm->partition;
    int64_t o = bm->offset;
    if (o < (bm->own ? st->cur.hi_own[p] : st->cur.hi_other[p])) {
        return true;
    }
    for (uint32_t i = 0; i < st->n_prev; i++) {
        const sess_rule *r = &st->prev[i];
        bool own = strlen(r->node) == bm->origin_len && memcmp(r->node, bm->origin, bm->origin_len) == 0;
        if (o < (own ? r->hi_own[p] : r->hi_other[p])) {
            return true;
        }
    }
    return false;
}

/* The session's own subscriptions, as route.c folds them (§3.3.4). Shared
 * subscriptions are not replayed: a group's message goes to one member. */
static bool match(const session *s, msg *m, delivery *d)
{
    memset(d, 0, sizeof(*d));
    bool any = false;
    mqtt_bytes pub = msg_publisher(m);
    for (uint32_t i = 0; i < s->n_subs; i++) {
        const sub_entry *e = &s->subs[i];
        mqtt_bytes group, filter;
        session_split_filter(e, &group, &filter);
        if (group.len || !mqtt_topic_match(filter.p, filter.len, m->topic, m->topic_len)) {
            continue;
        }
        const sub_opts *o = &e->opts;
        if (o->no_local && pub.len == s->id_len && memcmp(pub.p, s->client_id, pub.len) == 0) {
            continue;
        }
        route_fold(d, !any, m, o);
        any = true;
    }
    return any;
}

static inflight *inflight_at(session *s, int32_t part, int64_t off)
{
    for (inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        if (f->part == part && f->off == off) {
            return f;
        }
    }
    return NULL;
}

static void replay_record(worker *w, session *s, const bp_message *bm)
{
    session_stream *st = s->st;
    if (bm->partition < 0 || (uint32_t)bm->partition >= st->n_parts) {
        return;
    }
    st->rp->next[bm->partition] = bm->offset + 1;
    inflight *f = inflight_at(s, bm->partition, bm->offset);
    if (f && (f->d.m || f->state == INF_WAIT_COMP)) {
        return; /* in flight here already, or past PUBREC */
    }
    if (!f && (bm->qos == 0 || was_sent(st, bm))) {
        return;
    }
    msg *m = remote_msg_new(bm);
    if (!m) {
        return; /* expired */
    }
    delivery d;
    if (!match(s, m, &d) && !f) {
        msg_unref(m);
        return;
    }
    d.m = m;
    if (f) {
        /* Sent by the previous owner: again with DUP and its packet id (§4.4). */
        d.qos = f->state == INF_WAIT_ACK ? 1 : 2;
        f->d = d;
        if (s->c && s->c->state == CS_ACTIVE) {
            send_publish(s->c, &f->d, f->pid, true);
        }
        return;
    }
    if (d.qos == 0) {
        msg_unref(m);
        return;
    }
    st->replaying_now = true;
    session_deliver(w, s, &d);
    st->replaying_now = false;
}

/* Entries restored from another node whose record the replay passed
 * without finding it (Kafka's retention deleted it): nothing left to
 * resend. An entry at or past the replay's end is a record this node's
 * consumer had not read yet when the replay began (the previous owner's
 * had): the live stream brings it (stream_intercept). */
static void drop_unread(worker *w, session *s, const stream_replay *rp)
{
    session_stream *st = s->st;
    st->n_await = 0;
    inflight *nx;
    for (inflight *f = session_inflight_first(s); f; f = nx) {
        nx = session_inflight_next(s, f); /* before f is removed */
        if (f->d.m || f->state == INF_WAIT_COMP || f->hold) {
            continue;
        }
        if (awaits_record(f) && (uint32_t)f->part < rp->n_parts && rp->have_end && rp->end[f->part] >= 0 &&
            f->off >= rp->end[f->part]) {
            st->n_await++;
            continue;
        }
        sh_log(SH_WARN, "event=inflight_not_in_stream client=%s pid=%u partition=%d offset=%lld", s->client_id, f->pid,
               f->part, (long long)f->off);
        session_inflight_remove(w, s, f);
    }
}

/* What the replay read, the live stream must not bring again. Kept while
 * the session lives on this node (one offset per partition: bounded by the
 * topic): once the live stream has passed it, it drops nothing. */
static void raise_floor(session_stream *st, const stream_replay *rp)
{
    if (!rp->have_end) {
        return;
    }
    if (!st->floor) {
        st->floor = parts_new(st->n_parts, -1);
    }
    for (uint32_t p = 0; p < st->n_parts; p++) {
        if (rp->end[p] > st->floor[p]) {
            st->floor[p] = rp->end[p];
        }
    }
}

/* Held deliveries go to the session (its queue) now that no replay runs:
 * after the replay, in their order; after one that did not finish, the
 * retained copies left (held_keep_retained). */
static void release_held(worker *w, session *s)
{
    session_stream *st = s->st;
    uint32_t n = st->n_held;
    delivery *held = st->held;
    uint32_t cap = st->cap_held;
    st->held = NULL;
    st->n_held = st->cap_held = 0;
    st->replaying_now = true;
    for (uint32_t i = 0; i < n; i++) {
        session_deliver(w, s, &held[i]);
    }
    st->replaying_now = false;
    sh_free(held, cap * sizeof(delivery));
}

/* A replay that did not finish: what it did not read counts as spilled, so
 * the next one (when the client is back) starts there, and so do the held
 * stream records. The retained copies sent at SUBSCRIBE stay held for
 * release_held: no replay brings them back. */
static void replay_interrupted(session_stream *st, stream_replay *rp)
{
    for (uint32_t p = 0; p < st->n_parts; p++) {
        lower(&st->spill[p], rp->next[p]);
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < st->n_held; i++) {
        delivery *d = &st->held[i];
        if (kept_only_here(st, d)) {
            st->held[kept++] = *d;
            continue;
        }
        if (d_ref(st, d) && d->qos > 0) {
            lower(&st->spill[d->m->part], d->m->off);
        }
        msg_unref(d->m);
    }
    st->n_held = kept;
    st->spilled = true;
    st->need_replay = true;
}

static void replay_finish(worker *w, session *s, stream_replay *rp, bool ok)
{
    session_stream *st = s->st;
    st->rp = NULL;
    if (!ok) {
        replay_interrupted(st, rp);
        release_held(w, s);
        return;
    }
    sh_log(SH_DEBUG, "event=replay_done client=%s held=%u", s->client_id, st->n_held);
    raise_floor(st, rp);
    drop_unread(w, s, rp);
    /* Held live deliveries come after the replay, in their order. */
    release_held(w, s);
    /* Back on the live stream: caught up already if its queue is short
     * (an empty last batch leaves no pop to say so). */
    hold_popped(w, s);
    session_pump(w, s);
}

static void replay_free(broker *b, stream_replay *rp)
{
    parts_free(rp->end, rp->n_parts);
    parts_free(rp->next, rp->n_parts);
    session_unref(b, rp->s);
    sh_free(rp, sizeof(*rp));
}

static void replay_cb(bp_status status, const bp_replay_batch *b, void *arg)
{
    stream_replay *rp = arg;
    worker *w = rp->w;
    session *s = rp->s;
    session_stream *st = s->st;
    bool final = status != BP_OK || !b || b->done;
    bool mine = !rp->stopping && st && st->rp == rp && !s->dead && atomic_load(&s->owner) == w->id;
    if (mine && b) {
        if (!rp->have_end && b->end && b->n_parts == rp->n_parts) {
            memcpy(rp->end, b->end, rp->n_parts * sizeof(int64_t));
            rp->have_end = true;
            /* Live deliveries held before the end was known: the replay has those below it. */
            uint32_t kept = 0;
            for (uint32_t i = 0; i < st->n_held; i++) {
                delivery *d = &st->held[i];
                if (replays(st, d) && d->m->off < rp->end[d->m->part]) {
                    msg_unref(d->m);
                } else {
                    st->held[kept++] = *d;
                }
            }
            st->n_held = kept;
        }
        for (size_t i = 0; i < b->n && st->rp == rp; i++) {
            replay_record(w, s, &b->msgs[i]);
        }
        rp->asked = false;
    }
    if (final) {
        if (mine && st->rp == rp) {
            if (status == BP_OK && rp->have_end && b && b->end && b->n_parts == rp->n_parts) {
                /* A partition may have ended early (bp_replay_start_least). */
                memcpy(rp->end, b->end, rp->n_parts * sizeof(int64_t));
            }
            if (status == BP_OK && rp->have_end) {
                memcpy(rp->next, rp->end, rp->n_parts * sizeof(int64_t));
            }
            replay_finish(w, s, rp, status == BP_OK);
        }
        replay_free(w->b, rp);
        worker_flush(w);
        return;
    }
    if (mine && st->rp == rp) {
        session_pump(w, s);
    } else if (!rp->stopping) {
        rp->stopping = true;
        bp_replay_stop(w->b->bp, rp->id);
    }
    worker_flush(w);
}

/* A batch is asked for once the queue is empty, and must fit in it: a
 * record a replay spilled would be read again by the next replay only if
 * nothing after it was sent, but the rest of the batch and the next ones
 * are queued and sent, and their marks pass it (it would be skipped). */
static uint32_t replay_batch(const worker *w)
{
    uint32_t max = (uint32_t)w->b->cfg->max_queued;
    if (max >= REPLAY_BATCH) {
        return REPLAY_BATCH;
    }
    return max ? max : 1;
}

static void raise_to(int64_t *v, int64_t to)
{
    if (to > *v) {
        *v = to;
    }
}

/* How far a replay reads at least, per partition: past the session's
 * stored positions, every mark (this node's and the previous owners') and
 * every in-flight record. A previous owner whose consumer was ahead of
 * this node's sent records this node has not read yet, and the client may
 * have acknowledged them (QoS 2: completed, §4.3.3): only the replay knows
 * by their origin which ones the marks cover, so it reads that far, and
 * the live stream's copies are dropped (the floor). A partition with
 * nothing to read (from -1) gets no minimum: nothing was stored there. */
static int64_t *replay_least(const session *s, const int64_t *from)
{
    const session_stream *st = s->st;
    int64_t *least = parts_new(st->n_parts, -1);
    const sess_rule *all[SC_MAX_RULES];
    uint32_t n = 0;
    all[n++] = &st->cur;
    for (uint32_t i = 0; i < st->n_prev; i++) {
        all[n++] = &st->prev[i];
    }
    for (uint32_t p = 0; p < st->n_parts; p++) {
        if (st->restored) {
            raise_to(&least[p], st->restored[p]);
        }
        for (uint32_t i = 0; i < n; i++) {
            raise_to(&least[p], all[i]->hi_own[p]);
            raise_to(&least[p], all[i]->hi_other[p]);
        }
    }
    for (const inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        if (f->part >= 0 && (uint32_t)f->part < st->n_parts && f->off >= 0) {
            raise_to(&least[f->part], f->off + 1);
        }
    }
    for (uint32_t p = 0; p < st->n_parts; p++) {
        if (from[p] < 0) {
            least[p] = -1;
        }
    }
    return least;
}

static void replay_begin(worker *w, session *s)
{
    session_stream *st = s->st;
    stream_broker *sb = w->b->stream;
    stream_replay *rp = sh_calloc(1, sizeof(*rp));
    rp->w = w;
    session_ref(s);
    rp->s = s;
    rp->n_parts = st->n_parts;
    rp->end = parts_new(st->n_parts, -1);
    rp->next = parts_new(st->n_parts, -1);
    for (uint32_t p = 0; p < st->n_parts; p++) {
        int64_t from = -1;
        if (st->restored) {
            from = st->restored[p];
        } else {
            /* Deliveries on their way to this session when the replay
             * starts are dropped as the replay's: read from the safe
             * position (what was sent is skipped by its mark). */
            from = atomic_load(&sb->safe[p]);
        }
        lower(&from, st->spill[p]);
        rp->next[p] = from;
        st->spill[p] = -1;
    }
    int64_t *least = replay_least(s, rp->next);
    parts_free(st->restored, st->n_parts);
    st->restored = NULL;
    st->spilled = false;
    st->spill_logged = false;
    st->need_replay = false;
    st->rp = rp;
    rp->asked = true;
    sh_log(SH_DEBUG, "event=replay_begin client=%s", s->client_id);
    rp->id = bp_replay_start_least(w->b->bp, w->id, rp->next, least, rp->n_parts, replay_batch(w), replay_cb, rp);
    parts_free(least, st->n_parts);
}

void stream_pumped(worker *w, session *s)
{
    session_stream *st = s->st;
    if (!st || s->dead || !s->c || s->c->state != CS_ACTIVE || s->q_len) {
        return;
    }
    if (st->rp) {
        if (!st->rp->asked) {
            st->rp->asked = true;
            bp_replay_next(w->b->bp, st->rp->id);
        }
        return;
    }
    if (st->need_replay) {
        replay_begin(w, s);
    }
}

void stream_detached(worker *w, session *s)
{
    session_stream *st = s->st;
    if (!st || !st->rp) {
        return;
    }
    stream_replay *rp = st->rp;
    replay_interrupted(st, rp);
    replay_stop(w->b, st);
    release_held(w, s);
}
