/* SPDX-License-Identifier: Apache-2.0 */
/* Matching a message against the subscription index and handing one copy
 * to each matching session, on that session's worker. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/route.h"
#include "node/mqtt/session.h"
#include "node/mqtt/share.h"
#include "node/worker.h"

#define STACK_HITS 32

static bool is_online(void *owner)
{
    return atomic_load_explicit(&((session *)owner)->online, memory_order_relaxed);
}

void route_deliver_to(worker *w, session *s, delivery *d)
{
    int owner = atomic_load_explicit(&s->owner, memory_order_acquire);
    if (owner == w->id) {
        session_deliver(w, s, d);
        return;
    }
    atomic_fetch_add_explicit(&s->incoming, 1, memory_order_relaxed);
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_DELIVER;
    session_ref(s);
    it.s = s;
    it.d = *d;
    worker_post(w, owner, &it);
}

static int by_owner(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const trie_hit *)a)->owner, y = (uintptr_t)((const trie_hit *)b)->owner;
    return x < y ? -1 : x > y;
}

/* §3.8.3.1 No Local is about the client id of the publishing connection.
 * A publish taken here names its session; one from another node names its
 * client id, compared only when a No Local subscription matches, so the
 * common path costs nothing and needs no lookup or lock. */
static bool is_publisher(const msg *m, const session *s)
{
    if ((uint64_t)(uintptr_t)s == m->origin) {
        return true;
    }
    mqtt_bytes id = msg_publisher(m);
    return id.len && id.len == s->id_len && memcmp(id.p, s->client_id, id.len) == 0;
}

void route_fold(delivery *d, bool first, const msg *m, const sub_opts *o)
{
    uint8_t q = m->qos < o->qos ? m->qos : o->qos;
    if (first || q > d->qos) {
        d->qos = q;
    }
    if (o->rap && m->retain) {
        d->retain = true;
    }
    if (o->sub_id && d->n_sub_ids < DELIVERY_MAX_SUB_IDS) {
        d->sub_ids[d->n_sub_ids++] = o->sub_id;
    }
}

/* Fold hits [i, j) of one session into one delivery: the highest QoS and
 * every subscription identifier (MQTT 5 §3.3.4). */
static bool make_delivery(msg *m, const trie_hit *h, size_t n, delivery *d)
{
    memset(d, 0, sizeof(*d));
    bool any = false;
    for (size_t k = 0; k < n; k++) {
        const sub_opts *o = &h[k].opts;
        /* §3.8.3.1 No Local: not back to the publishing client. */
        if (o->no_local && !h[k].shared && is_publisher(m, h[k].owner)) {
            continue;
        }
        route_fold(d, !any, m, o);
        d->shared = d->shared || h[k].shared;
        any = true;
    }
    return any;
}

static bool route_gated(worker *w, msg *m, uint32_t *matched, bool gated)
{
    bool behind = false;
    uint32_t sessions = 0;
    uint32_t mark = session_backpressure_mark(w->b->cfg);
    broker *b = w->b;
    trie_hit stack[STACK_HITS];
    trie_hit *hits = stack;
    size_t cap = STACK_HITS;
    mqtt_bytes topic = {m->topic, m->topic_len};
    pthread_rwlock_rdlock(&b->subs_lock);
    share_gate gate = {b, m, 0, false, m->ts, NULL, 0, NULL, false};
    /* A single node with a counter strategy needs no key: matching is as
     * it was before groups spanned nodes. */
    gated = gated && (!bp_knows_all_subscribers(b->bp) || b->share_strategy == TRIE_SHARED_HASH_CLIENT_ID ||
                      b->share_strategy == TRIE_SHARED_HASH_TOPIC);
    trie_share_gate_fn gf = gated ? share_gate_fn : NULL;
    size_t n = trie_match_gated(b->subs, topic, is_online, gf, &gate, hits, cap);
    if (n > cap) {
        cap = n;
        hits = sh_malloc(cap * sizeof(trie_hit));
        n = trie_match_gated(b->subs, topic, is_online, gf, &gate, hits, cap);
        if (n > cap) {
            n = cap; /* grew meanwhile? impossible under the read lock */
        }
    }
    share_orphans orph = {0};
    if (gated) {
        share_find_orphans(b, m, &gate, &orph);
    }
    /* Refs taken under the lock: a session leaves the index before it dies. */
    for (size_t i = 0; i < n; i++) {
        session_ref(hits[i].owner);
    }
    pthread_rwlock_unlock(&b->subs_lock);
    if (n > 1) {
        qsort(hits, n, sizeof(trie_hit), by_owner);
    }
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && hits[j].owner == hits[i].owner) {
            j++;
        }
        delivery d;
        if (make_delivery(m, &hits[i], j - i, &d)) {
            d.m = msg_ref(m);
            sessions++;
            if (!behind && mark) {
                behind = session_behind(hits[i].owner, mark);
            }
            route_deliver_to(w, hits[i].owner, &d);
        }
        for (size_t k = i; k < j; k++) {
            session_unref(b, hits[k].owner);
        }
        i = j;
    }
    if (hits != stack) {
        sh_free(hits, cap * sizeof(trie_hit));
    }
    share_forward_orphans(w, m, &orph);
    if (matched) {
        *matched = sessions;
    }
    return behind;
}

bool route_publish(worker *w, msg *m, uint32_t *matched)
{
    return route_gated(w, m, matched, true);
}

void route_publish_internal(worker *w, msg *m)
{
    if (m->retain) {
        /* This node's own messages ($SYS): never on the stream. */
        pthread_rwlock_wrlock(&w->b->retain_lock);
        retain_set(w->b->retained, m);
        pthread_rwlock_unlock(&w->b->retain_lock);
    }
    /* Never on the stream: this node's shared members take it whatever
     * other nodes do. */
    route_gated(w, m, NULL, false);
    msg_unref(m);
}

/* The backplane's answer for a QoS 1/2 will: local subscribers get it now,
 * as they get a client's QoS 1/2 publish once it is durable. A will has no
 * publisher to refuse, so a backplane that could not take it still
 * delivers it here (said in one line). */
typedef struct will_ctx {
    worker *w;
    msg *m; /* ref held */
} will_ctx;

/* A will this node publishes: stored as retained here only when the
 * backplane does not bring it back through its stream. */
static void route_will_here(worker *w, msg *m)
{
    if (bp_retained_from_stream(w->b->bp)) {
        route_publish(w, m, NULL);
        msg_unref(m);
        return;
    }
    route_publish_internal(w, m);
}

void route_will_local(worker *w, msg *m)
{
    route_will_here(w, m);
}

static void will_durable_cb(bp_status st, void *arg)
{
    will_ctx *x = arg;
    worker *w = x->w;
    msg *m = x->m;
    sh_free(x, sizeof(*x));
    if (st == BP_OK) {
        bp_publish_ref(&m->part, &m->off);
        m->own = true;
    } else {
        sh_log(SH_WARN, "event=will_not_durable topic=%.*s status=%s msg=\"delivered on this node only\"",
               (int)m->topic_len, (const char *)m->topic, bp_status_name(st));
    }
    route_will_here(w, m);
    worker_flush(w);
}

void route_publish_will(worker *w, msg *m)
{
    /* No client id: the connection that set it is gone (docs/architecture.md, "Wills carry no client id"). */
    bp_message bm = remote_bp_message(m);
    backplane *bp = w->b->bp;
    if (m->qos == 0) {
        bp_publish(bp, w->id, &bm, NULL, NULL);
        route_will_here(w, m);
        return;
    }
    will_ctx *x = sh_malloc(sizeof(*x));
    x->w = w;
    x->m = m; /* its ref goes to the callback */
    bp_publish(bp, w->id, &bm, will_durable_cb, x);
}

typedef struct collect {
    msg **v;
    size_t n, cap;
} collect;

static void collect_cb(void *arg, msg *m)
{
    collect *c = arg;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        c->v = sh_realloc(c->v, c->cap * sizeof(msg *), cap * sizeof(msg *));
        c->cap = cap;
    }
    c->v[c->n++] = msg_ref(m);
}

void route_retained_on_subscribe(worker *w, session *s, mqtt_bytes filter, const sub_opts *o)
{
    broker *b = w->b;
    collect col = {NULL, 0, 0};
    pthread_rwlock_wrlock(&b->retain_lock); /* match may drop expired entries */
    retain_match(b->retained, filter, now_ms(), collect_cb, &col);
    pthread_rwlock_unlock(&b->retain_lock);
    for (size_t i = 0; i < col.n; i++) {
        delivery d;
        memset(&d, 0, sizeof(d));
        d.m = col.v[i];
        d.qos = d.m->qos < o->qos ? d.m->qos : o->qos;
        d.retain = true; /* §3.3.1.3: retained on subscribe keeps its flag */
        d.at_subscribe = true;
        if (o->sub_id) {
            d.sub_ids[0] = o->sub_id;
            d.n_sub_ids = 1;
        }
        session_deliver(w, s, &d);
    }
    sh_free(col.v, col.cap * sizeof(msg *));
}
