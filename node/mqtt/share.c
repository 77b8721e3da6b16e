/* SPDX-License-Identifier: Apache-2.0 */
/* Shared subscriptions across nodes (docs/architecture.md, "Shared
 * subscriptions across nodes"). Every node computes, from the same record,
 * the same key and the same owner node for each group copy; the member
 * there is the local strategy's. A QoS 1/2 message whose member leaves
 * before acknowledging, or that reaches a node whose last member just
 * left, is handed to another member: locally when one is online, else
 * through the stream as a "$shoal/share/" record that only the group gets,
 * on another node. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/route.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/share.h"
#include "node/worker.h"
#include "proto/topic.h"

/* live: m is being routed from its PUBLISH (or its ack), so the session
 * m->origin names is alive; a hand-over comes later, when that session may
 * be gone, and uses only what the message carries. */
static mqtt_bytes publisher_of(const msg *m, bool live)
{
    mqtt_bytes id = msg_publisher(m);
    if (!id.len && live && m->origin) {
        /* Published here: the message names its session, alive while it is
         * routed (QoS 0 inside the PUBLISH, QoS 1/2 in the ack context that
         * holds a ref). Other nodes read the same id from the record. */
        const session *s = (const session *)(uintptr_t)m->origin;
        id = (mqtt_bytes){(const uint8_t *)s->client_id, s->id_len};
    }
    return id;
}

static uint64_t base_of(const broker *b, const msg *m, bool live)
{
    mqtt_bytes id = publisher_of(m, live);
    switch (b->share_strategy) {
    case TRIE_SHARED_HASH_CLIENT_ID:
        return bp_share_hash(id.p, id.len, 1);
    case TRIE_SHARED_HASH_TOPIC:
        return bp_share_hash(m->topic, m->topic_len, 2);
    case TRIE_SHARED_STICKY:
        return 0; /* one node per group, then the local sticky member */
    default:
        break;
    }
    if (m->part >= 0) {
        /* The record's place in the stream: unique, and known alike to the
         * publishing node (delivery report) and every other (consumer). */
        return bp_share_mix(((uint64_t)(uint32_t)m->part << 48) ^ (uint64_t)m->off);
    }
    /* QoS 0 published here is routed before Kafka numbers it: the content
     * is all both sides share (equal messages go to one member). */
    uint64_t h = bp_share_hash(id.p, id.len, 3);
    h = bp_share_hash(m->topic, m->topic_len, h);
    return bp_share_hash(m->payload, m->payload_len, h);
}

uint64_t share_base(const broker *b, const msg *m)
{
    return base_of(b, m, true);
}

uint64_t share_gate_base(share_gate *g)
{
    if (!g->have_base) {
        g->base = share_base(g->b, g->m);
        g->have_base = true;
    }
    return g->base;
}

bool share_gate_fn(void *arg, const uint8_t *key, size_t len, uint64_t *pick)
{
    share_gate *g = arg;
    if (g->only_key && (len != g->only_len || memcmp(key, g->only_key, len) != 0)) {
        return false;
    }
    uint64_t h = bp_share_hash(key, len, share_gate_base(g));
    *pick = bp_share_mix(h);
    if (g->local) {
        return true;
    }
    return bp_share_mine_except(g->b->bp, key, len, h, g->ts, g->except);
}

static bool cluster(const broker *b)
{
    return !bp_knows_all_subscribers(b->bp);
}

/* ---- forwarding through the stream ------------------------------------ */

/* "$shoal/share/<node len>:<key len>:<node><key><topic>" */
static void forward_done(bp_status st, void *arg)
{
    (void)arg;
    if (st != BP_OK) {
        sh_log(SH_WARN, "event=share_forward_failed status=%s", bp_status_name(st));
    }
}

static void forward(worker *w, msg *m, const uint8_t *key, size_t len)
{
    broker *b = w->b;
    size_t nlen = strlen(b->node_id);
    char head[64];
    int hl = snprintf(head, sizeof(head), SHARE_TOPIC_PREFIX "%zu:%zu:", nlen, len);
    size_t tlen = (size_t)hl + nlen + len + m->topic_len;
    if (tlen > 65535) {
        sh_log(SH_WARN, "event=share_forward_dropped reason=topic-too-long group_len=%zu", len);
        return;
    }
    uint8_t *t = sh_malloc(tlen);
    memcpy(t, head, (size_t)hl);
    memcpy(t + hl, b->node_id, nlen);
    memcpy(t + hl + nlen, key, len);
    memcpy(t + hl + nlen + len, m->topic, m->topic_len);
    mqtt_bytes id = publisher_of(m, false);
    bp_message bm = {
        .topic = t,
        .topic_len = (uint32_t)tlen,
        .payload = m->payload,
        .payload_len = m->payload_len,
        .props = m->props,
        .props_len = m->props_len,
        .client_id = id.p,
        .client_id_len = (uint16_t)id.len,
        .qos = m->qos,
        .retain = false, /* the retained index already has it, under its own topic */
        .expiry_at_unix_ms = expiry_to_unix(m->expiry_at, now_ms()),
        .timestamp_ms = 0, /* now: receivers choose by the hand-over's own time */
    };
    sh_log(SH_DEBUG, "event=share_forward group=\"%.*s\" topic_len=%u", (int)len, (const char *)key, m->topic_len);
    bp_publish(b->bp, w->id, &bm, forward_done, NULL);
    sh_free(t, tlen);
}

/* ---- one group, one member -------------------------------------------- */

static bool is_online(void *owner)
{
    return atomic_load_explicit(&((session *)owner)->online, memory_order_relaxed);
}

/* The group's member for m on this node (ref taken), or NULL. */
static session *group_member(broker *b, msg *m, share_gate *g, sub_opts *opts)
{
    trie_hit stack[8];
    trie_hit *hits = stack;
    size_t cap = 8;
    mqtt_bytes topic = {m->topic, m->topic_len};
    session *s = NULL;
    pthread_rwlock_rdlock(&b->subs_lock);
    size_t n = trie_match_gated(b->subs, topic, is_online, share_gate_fn, g, hits, cap);
    if (n > cap) {
        cap = n;
        hits = sh_malloc(cap * sizeof(trie_hit));
        n = trie_match_gated(b->subs, topic, is_online, share_gate_fn, g, hits, cap);
        n = n > cap ? cap : n;
    }
    for (size_t i = 0; i < n; i++) {
        if (hits[i].shared) {
            s = hits[i].owner;
            *opts = hits[i].opts;
            session_ref(s);
            break;
        }
    }
    pthread_rwlock_unlock(&b->subs_lock);
    if (hits != stack) {
        sh_free(hits, cap * sizeof(trie_hit));
    }
    return s;
}

static void deliver(worker *w, session *s, msg *m, const sub_opts *o)
{
    delivery d;
    memset(&d, 0, sizeof(d));
    d.m = msg_ref(m);
    d.qos = m->qos < o->qos ? m->qos : o->qos;
    if (o->sub_id) {
        d.sub_ids[0] = o->sub_id;
        d.n_sub_ids = 1;
    }
    route_deliver_to(w, s, &d);
}

/* To a member of the group: an online one here, else (a cluster) another
 * node's through the stream, else an offline one here (queued). */
static void hand_over(worker *w, msg *m, const uint8_t *key, size_t len)
{
    broker *b = w->b;
    share_gate g = {b, m, base_of(b, m, false), true, m->ts, key, len, NULL, true};
    sub_opts o;
    session *s = group_member(b, m, &g, &o);
    if (s && (is_online(s) || !cluster(b))) {
        deliver(w, s, m, &o);
    } else if (cluster(b)) {
        forward(w, m, key, len);
    } else {
        sh_log(SH_DEBUG, "event=share_handover_dropped reason=no-member group=\"%.*s\"", (int)len, (const char *)key);
    }
    if (s) {
        session_unref(b, s);
    }
}

/* ---- ghosts: chosen for a group with no member left here -------------- */

typedef struct orphan_ctx {
    broker *b;
    const msg *m;
    share_gate *g;
    share_orphans *o;
} orphan_ctx;

static void orphan_cb(void *arg, const uint8_t *key, size_t len, size_t group_len)
{
    orphan_ctx *c = arg;
    const uint8_t *f = key + group_len + 1;
    size_t flen = len - group_len - 1;
    if (c->o->n == SHARE_MAX_ORPHANS || !mqtt_topic_match(f, flen, c->m->topic, c->m->topic_len)) {
        return;
    }
    if (!bp_share_mine(c->b->bp, key, len, bp_share_hash(key, len, share_gate_base(c->g)), c->m->ts)) {
        return;
    }
    c->o->key[c->o->n] = sh_malloc(len);
    memcpy(c->o->key[c->o->n], key, len);
    c->o->len[c->o->n] = len;
    c->o->n++;
}

void share_find_orphans(broker *b, const msg *m, share_gate *g, share_orphans *o)
{
    o->n = 0;
    if (m->qos == 0 || !cluster(b) || trie_ghosts_each(b->subs, NULL, NULL) == 0) {
        return; /* QoS 0 is at most once: not worth a record */
    }
    orphan_ctx c = {b, m, g, o};
    trie_ghosts_each(b->subs, orphan_cb, &c);
}

void share_forward_orphans(worker *w, msg *m, share_orphans *o)
{
    for (size_t i = 0; i < o->n; i++) {
        forward(w, m, o->key[i], o->len[i]);
        sh_free(o->key[i], o->len[i]);
    }
    o->n = 0;
}

/* ---- a member that ends ----------------------------------------------- */

static void moved_add(share_moved *mv, msg *m, const sub_entry *e)
{
    mqtt_bytes g, f;
    session_split_filter(e, &g, &f);
    if (mv->n == mv->cap) {
        size_t cap = mv->cap ? mv->cap * 2 : 8;
        mv->m = sh_realloc(mv->m, mv->cap * sizeof(msg *), cap * sizeof(msg *));
        mv->key = sh_realloc(mv->key, mv->cap * sizeof(uint8_t *), cap * sizeof(uint8_t *));
        mv->len = sh_realloc(mv->len, mv->cap * sizeof(size_t), cap * sizeof(size_t));
        mv->cap = cap;
    }
    size_t len = g.len + 1 + f.len;
    uint8_t *k = sh_malloc(len);
    memcpy(k, g.p, g.len);
    k[g.len] = '/';
    memcpy(k + g.len + 1, f.p, f.len);
    mv->m[mv->n] = msg_ref(m);
    mv->key[mv->n] = k;
    mv->len[mv->n] = len;
    mv->n++;
}

/* The shared subscription m came through, if any: the first of the
 * session's groups whose filter matches (a session in two matching groups
 * got one copy per group; the first is handed over, said in the docs). */
static void consider(share_moved *mv, const session *s, msg *m)
{
    for (uint32_t i = 0; i < s->n_subs; i++) {
        mqtt_bytes g, f;
        session_split_filter(&s->subs[i], &g, &f);
        if (g.len && mqtt_topic_match(f.p, f.len, m->topic, m->topic_len)) {
            moved_add(mv, m, &s->subs[i]);
            return;
        }
    }
}

void share_collect(session *s, share_moved *mv)
{
    memset(mv, 0, sizeof(*mv));
    bool any = false;
    for (uint32_t i = 0; i < s->n_subs && !any; i++) {
        mqtt_bytes g, f;
        session_split_filter(&s->subs[i], &g, &f);
        any = g.len != 0;
    }
    if (!any) {
        return;
    }
    /* Past PUBREC (INF_WAIT_COMP) a QoS 2 message is the client's: handing
     * it over would deliver it twice. */
    for (const inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
        if (f->d.m && f->state != INF_WAIT_COMP) {
            consider(mv, s, f->d.m);
        }
    }
    for (uint32_t j = 0; j < s->q_len; j++) {
        const delivery *d = &s->q[(s->q_head + j) % s->q_cap];
        if (d->qos > 0) {
            consider(mv, s, d->m);
        }
    }
}

void share_send(worker *w, share_moved *mv)
{
    if (mv->n) {
        sh_log(SH_INFO, "event=share_handover count=%zu", mv->n);
    }
    for (size_t i = 0; i < mv->n; i++) {
        hand_over(w, mv->m[i], mv->key[i], mv->len[i]);
        msg_unref(mv->m[i]);
        sh_free(mv->key[i], mv->len[i]);
    }
    sh_free(mv->m, mv->cap * sizeof(msg *));
    sh_free(mv->key, mv->cap * sizeof(uint8_t *));
    sh_free(mv->len, mv->cap * sizeof(size_t));
    memset(mv, 0, sizeof(*mv));
}

typedef struct late_ctx {
    const msg *m;
    uint8_t *key;
    size_t len;
} late_ctx;

static void late_try(late_ctx *c, const uint8_t *key, size_t len)
{
    /* A share name holds no '/' (MQTT 5 §4.8.2): the filter follows the first. */
    const uint8_t *slash = memchr(key, '/', len);
    if (c->key || !slash) {
        return;
    }
    size_t flen = len - (size_t)(slash + 1 - key);
    if (mqtt_topic_match(slash + 1, flen, c->m->topic, c->m->topic_len)) {
        c->key = sh_malloc(len);
        memcpy(c->key, key, len);
        c->len = len;
    }
}

static void late_group_cb(void *arg, const uint8_t *key, size_t len, uint32_t members)
{
    (void)members;
    late_try(arg, key, len);
}

static void late_ghost_cb(void *arg, const uint8_t *key, size_t len, size_t group_len)
{
    (void)group_len;
    late_try(arg, key, len);
}

void share_late(worker *w, msg *m)
{
    broker *b = w->b;
    late_ctx c = {m, NULL, 0};
    pthread_rwlock_rdlock(&b->subs_lock);
    trie_groups_each(b->subs, NULL, late_group_cb, &c);
    trie_ghosts_each(b->subs, late_ghost_cb, &c);
    pthread_rwlock_unlock(&b->subs_lock);
    if (!c.key) {
        limits_count_drop(w, NULL, DROP_SESSION_ENDED, 1);
        return;
    }
    sh_log(SH_DEBUG, "event=share_handover_late group=\"%.*s\"", (int)c.len, (const char *)c.key);
    hand_over(w, m, c.key, c.len);
    sh_free(c.key, c.len);
}

/* ---- a hand-over from another node ------------------------------------ */

static bool parse_num(const uint8_t **p, const uint8_t *end, size_t *out)
{
    size_t v = 0;
    const uint8_t *q = *p;
    while (q < end && *q >= '0' && *q <= '9' && v < 1000000) {
        v = v * 10 + (size_t)(*q - '0');
        q++;
    }
    if (q == *p || q >= end || *q != ':') {
        return false;
    }
    *p = q + 1;
    *out = v;
    return true;
}

bool share_forwarded(worker *w, msg *m)
{
    const size_t pl = sizeof(SHARE_TOPIC_PREFIX) - 1;
    if (m->topic_len <= pl || memcmp(m->topic, SHARE_TOPIC_PREFIX, pl) != 0) {
        return false;
    }
    const uint8_t *p = m->topic + pl, *end = m->topic + m->topic_len;
    size_t nlen, klen;
    if (!parse_num(&p, end, &nlen) || !parse_num(&p, end, &klen) || nlen == 0 || nlen >= 128 ||
        (size_t)(end - p) <= nlen + klen) {
        sh_log(SH_INFO, "event=share_forward_refused reason=malformed topic_len=%u", m->topic_len);
        return true;
    }
    char origin[128];
    memcpy(origin, p, nlen);
    origin[nlen] = 0;
    const uint8_t *key = p + nlen, *topic = key + klen;
    mqtt_bytes t = {topic, (uint32_t)(end - topic)};
    mqtt_bytes payload = {m->payload, m->payload_len};
    msg *in = msg_new_raw(t, m->props, m->props_len, payload, m->qos, false, msg_publisher(m));
    if (!in) {
        return true;
    }
    in->part = m->part;
    in->off = m->off;
    in->expiry_at = m->expiry_at;
    in->ts = m->ts; /* the hand-over record's own time chooses among the others */
    broker *b = w->b;
    share_gate g = {b, in, 0, false, in->ts, key, klen, origin, false};
    sub_opts o;
    session *s = group_member(b, in, &g, &o);
    if (s) {
        deliver(w, s, in, &o);
        session_unref(b, s);
    }
    msg_unref(in);
    return true;
}

/* ---- a node that dies -------------------------------------------------- */

/* The lowest offset of an unfinished QoS 1/2 shared copy held by this
 * worker's connections, per partition, at each tick (share_low_hook reads
 * it). A persistent session is also adopted from its own positions if the
 * node dies; a clean one has only this. */
void share_tick(worker *w)
{
    stream_broker *sb = w->b->stream;
    if (!sb) {
        return;
    }
    uint32_t n = sb->n_parts;
    int64_t stack[64];
    int64_t *low = n <= 64 ? stack : sh_malloc(n * sizeof(int64_t));
    for (uint32_t p = 0; p < n; p++) {
        low[p] = INT64_MAX;
    }
    for (conn *c = w->conns; c; c = c->next) {
        const session *s = c->s;
        if (!s) {
            continue;
        }
        for (const inflight *f = session_inflight_first(s); f; f = session_inflight_next(s, f)) {
            /* Past PUBREC the client has it: not resent to anyone. */
            if (f->d.shared && f->state != INF_WAIT_COMP && f->part >= 0 && (uint32_t)f->part < n &&
                f->off < low[f->part]) {
                low[f->part] = f->off;
            }
        }
        for (uint32_t j = 0; j < s->q_len; j++) {
            const delivery *d = &s->q[(s->q_head + j) % s->q_cap];
            if (d->shared && d->qos > 0 && d->m->part >= 0 && (uint32_t)d->m->part < n && d->m->off < low[d->m->part]) {
                low[d->m->part] = d->m->off;
            }
        }
    }
    for (uint32_t p = 0; p < n; p++) {
        atomic_store(&sb->share_low[(size_t)w->id * n + p], low[p]);
    }
    if (low != stack) {
        sh_free(low, n * sizeof(int64_t));
    }
}

/* Below the safe position every record routed here reached its session, so
 * whatever of it a group chose for this node is finished unless a session
 * still holds it. */
void share_low_hook(void *node, int64_t *pos, uint32_t n_parts)
{
    broker *b = node;
    stream_broker *sb = b->stream;
    for (uint32_t p = 0; p < n_parts; p++) {
        pos[p] = INT64_MAX;
        if (!sb || p >= sb->n_parts) {
            continue;
        }
        pos[p] = atomic_load(&sb->safe[p]);
        for (int k = 0; k < b->nworkers; k++) {
            int64_t v = atomic_load(&sb->share_low[(size_t)k * sb->n_parts + p]);
            pos[p] = v < pos[p] ? v : pos[p];
        }
    }
}

typedef struct dead_job {
    worker *w;
    uint8_t *key;
    size_t key_len;
    char *dead;
    int64_t at;
    bp_share_node *comp; /* ids copied */
    size_t n;
    int64_t *from;
    uint32_t n_parts;
    uint64_t id;
    uint64_t read, delivered;
} dead_job;

#define SHARE_DEAD_BATCH 256

static void job_free(dead_job *j)
{
    for (size_t k = 0; k < j->n; k++) {
        sh_free((char *)j->comp[k].id, strlen(j->comp[k].id) + 1);
    }
    sh_free(j->comp, (j->n ? j->n : 1) * sizeof(bp_share_node));
    sh_free(j->from, (j->n_parts ? j->n_parts : 1) * sizeof(int64_t));
    sh_free(j->dead, strlen(j->dead) + 1);
    sh_free(j->key, j->key_len ? j->key_len : 1);
    sh_free(j, sizeof(*j));
}

static char *str_dup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = sh_malloc(len);
    memcpy(d, s, len);
    return d;
}

/* On the backplane's thread: copied, and run on the group's worker. */
void share_dead_hook(void *node, const bp_share_dead *d)
{
    broker *b = node;
    if (!atomic_load_explicit(&b->running, memory_order_acquire)) {
        return;
    }
    dead_job *j = sh_calloc(1, sizeof(*j));
    j->key_len = d->key_len;
    j->key = sh_malloc(d->key_len ? d->key_len : 1);
    memcpy(j->key, d->key, d->key_len);
    j->dead = str_dup(d->dead);
    j->at = d->at;
    j->n = d->n;
    j->comp = sh_malloc((d->n ? d->n : 1) * sizeof(bp_share_node));
    for (size_t k = 0; k < d->n; k++) {
        j->comp[k].id = str_dup(d->comp[k].id);
        j->comp[k].members = d->comp[k].members;
    }
    j->n_parts = d->n_parts;
    j->from = sh_malloc((d->n_parts ? d->n_parts : 1) * sizeof(int64_t));
    memcpy(j->from, d->from, d->n_parts * sizeof(int64_t));
    int to = (int)(bp_share_hash(d->key, d->key_len, 0) % (uint64_t)b->nworkers);
    j->w = &b->workers[to];
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_SHARE_DEAD;
    it.conn_id = (uint64_t)(uintptr_t)j;
    worker_post_external(b, to, &it);
}

/* One replayed record: ours if the composition of its time chose the dead
 * node and the same composition without it chooses this one (the
 * hand-over rule: exactly one survivor takes it). */
static void dead_one(dead_job *j, const bp_message *bm)
{
    broker *b = j->w->b;
    const uint8_t *slash = memchr(j->key, '/', j->key_len);
    if (bm->qos == 0 || bm->retain_only || bm->timestamp_ms >= j->at || !slash || j->n == 0 ||
        (bm->topic_len && bm->topic[0] == '$')) {
        return; /* QoS 0 is at most once; hand-overs are not handed over again */
    }
    size_t flen = j->key_len - (size_t)(slash + 1 - j->key);
    if (!mqtt_topic_match(slash + 1, flen, bm->topic, bm->topic_len)) {
        return;
    }
    msg *m = remote_msg_new(bm);
    if (!m) {
        return;
    }
    j->read++;
    uint64_t base = share_base(b, m);
    uint64_t h = bp_share_hash(j->key, j->key_len, base);
    if (strcmp(j->comp[bp_share_pick(j->comp, j->n, h)].id, j->dead) == 0) {
        bp_share_node stack[32];
        bp_share_node *v = j->n <= 32 ? stack : sh_malloc(j->n * sizeof(bp_share_node));
        size_t n = 0;
        for (size_t k = 0; k < j->n; k++) {
            if (strcmp(j->comp[k].id, j->dead) != 0) {
                v[n++] = j->comp[k];
            }
        }
        bool mine = n && strcmp(v[bp_share_pick(v, n, h)].id, b->node_id) == 0;
        if (v != stack) {
            sh_free(v, j->n * sizeof(bp_share_node));
        }
        share_gate g = {b, m, base, true, m->ts, j->key, j->key_len, NULL, true};
        sub_opts o;
        session *s = mine ? group_member(b, m, &g, &o) : NULL;
        if (s) {
            deliver(j->w, s, m, &o);
            session_unref(b, s);
            j->delivered++;
        }
    }
    msg_unref(m);
}

static void dead_cb(bp_status st, const bp_replay_batch *bt, void *arg)
{
    dead_job *j = arg;
    if (st != BP_OK) {
        sh_log(SH_WARN, "event=share_dead_replay_failed group=\"%.*s\" node=%s status=%s", (int)j->key_len,
               (const char *)j->key, j->dead, bp_status_name(st));
        job_free(j);
        return;
    }
    for (size_t i = 0; i < bt->n; i++) {
        dead_one(j, &bt->msgs[i]);
    }
    if (bt->done) {
        sh_log(SH_INFO, "event=share_dead_replayed group=\"%.*s\" node=%s matched=%llu delivered=%llu", (int)j->key_len,
               (const char *)j->key, j->dead, (unsigned long long)j->read, (unsigned long long)j->delivered);
        job_free(j);
        return;
    }
    bp_replay_next(j->w->b->bp, j->id);
}

void share_dead_free(void *job)
{
    job_free(job);
}

void share_dead_start(worker *w, void *job)
{
    dead_job *j = job;
    j->w = w;
    j->id = bp_replay_start(w->b->bp, w->id, j->from, j->n_parts, SHARE_DEAD_BATCH, dead_cb, j);
}
