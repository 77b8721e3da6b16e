/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions in the cluster's records (node/session_sync.h).
 *
 * A CONNECT claims its client id through the backplane before anything
 * else (invariant 3: one live connection per client id in the cluster):
 *
 *   sync_claim_start ──bp_session_claim──> claim_cb
 *        previous owner another node, alive, not released:
 *            poll bp_session_load every POLL_MS (re-notify every
 *            RENOTIFY_MS) until released or dead; CONNACK 0x88 after
 *            WAIT_MS
 *   ──> connect_claim (the in-process claim: registry, worker takeover)
 *   ──> connect_finish ──> sync_claim_finish: the stored state becomes the
 *       session when it is the truth, CONNACK's session present says so.
 *
 * The claim's epoch becomes session.epoch: the in-process takeover then
 * follows the cluster's order of claims, and every store is fenced by it. */
#include "node/session_sync.h"

#include <event2/event.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/dispatch.h"
#include "node/registry.h"
#include "node/send.h"
#include "node/session.h"
#include "node/session_codec.h"
#include "node/session_stream.h"
#include "node/worker.h"
#include "proto/topic.h"

#define POLL_MS 50
#define RENOTIFY_MS 1000
#define WAIT_MS 5000
/* An offline session's record outlives its expiry by this much: the owner's
 * own timer ends it first and drops the record; the TTL is the backstop
 * for an owner that died. */
#define TTL_MARGIN_MS 60000u

enum claim_phase {
    CL_CLAIMING = 1, /* bp_session_claim sent */
    CL_WAITING,      /* polling for the previous owner's release */
    CL_LOCAL,        /* handed to the in-process claim (connect_claim) */
};

struct sync_claim {
    sync_claim *next;
    worker *w;
    uint64_t conn_id;
    uint64_t epoch; /* 0 until the claim answers */
    uint64_t seq;   /* sync_broker.seq when it was sent */
    uint64_t deadline_ms;
    uint64_t renotify_ms;
    struct event *timer;
    uint8_t *blob; /* the stored state, owned; decoded into st */
    uint32_t blob_len;
    uint8_t phase;
    bool busy; /* a backplane call is out: its callback frees what is left */
    bool clean;
    bool foreign; /* the previous owner was another node (or an earlier instance) */
    bool have_state;
    sc_state st;
    char client_id[]; /* in this allocation */
};

/* ---- revokes heard of ---- */

static uint64_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id; id++) {
        h = (h ^ (uint8_t)*id) * 1099511628211ull;
    }
    return h | 1; /* 0 marks an empty slot */
}

static bool revoked_locked(broker *b, const sync_claim *cl)
{
    uint64_t h = id_hash(cl->client_id);
    const sync_revoke *r = &b->sync.revokes[h % SYNC_REVOKE_SLOTS];
    return r->hash == h && r->seq > cl->seq && r->epoch > cl->epoch;
}

static bool revoked(broker *b, const sync_claim *cl)
{
    pthread_mutex_lock(&b->sess_lock);
    bool r = revoked_locked(b, cl);
    pthread_mutex_unlock(&b->sess_lock);
    return r;
}

static void note_revoke_locked(broker *b, const char *client_id, uint64_t epoch)
{
    uint64_t h = id_hash(client_id);
    sync_revoke *r = &b->sync.revokes[h % SYNC_REVOKE_SLOTS];
    if (r->hash != h) {
        r->hash = h;
        r->epoch = 0;
    }
    if (epoch > r->epoch) {
        r->epoch = epoch;
    }
    r->seq = atomic_fetch_add(&b->sync.seq, 1) + 1;
}

/* ---- claims ---- */

static void claim_unlink(sync_claim *cl)
{
    for (sync_claim **at = &cl->w->sync.claims; *at; at = &(*at)->next) {
        if (*at == cl) {
            *at = cl->next;
            return;
        }
    }
}

static void claim_free(sync_claim *cl)
{
    claim_unlink(cl);
    if (cl->timer) {
        event_free(cl->timer);
    }
    sc_state_free(&cl->st);
    sh_free(cl->blob, cl->blob_len ? cl->blob_len : 1);
    sh_free(cl, sizeof(*cl) + strlen(cl->client_id) + 1);
}

static sync_claim *claim_of(worker *w, uint64_t conn_id)
{
    for (sync_claim *cl = w->sync.claims; cl; cl = cl->next) {
        if (cl->conn_id == conn_id) {
            return cl;
        }
    }
    return NULL;
}

/* The connection this claim is for, while it still waits for its session. */
static conn *claim_conn(sync_claim *cl)
{
    conn *c = worker_find_conn(cl->w, cl->conn_id);
    return c && c->state == CS_CLAIMING ? c : NULL;
}

uint64_t sync_claim_epoch(const conn *c)
{
    sync_claim *cl = claim_of(c->w, c->id);
    return cl ? cl->epoch : 0;
}

bool sync_claim_revoked_locked(broker *b, conn *c)
{
    sync_claim *cl = claim_of(c->w, c->id);
    return cl && revoked_locked(b, cl);
}

/* Claims whose connection went away while the in-process claim ran: the
 * session (if one was made) carries the record from there. */
static void sweep_claims(worker *w)
{
    for (sync_claim *cl = w->sync.claims, *next; cl; cl = next) {
        next = cl->next;
        if (!cl->busy && cl->phase == CL_LOCAL && !claim_conn(cl)) {
            claim_free(cl);
        }
    }
}

/* No CONNACK may precede... a newer claim won: close without a packet, as
 * the in-process claim does (CONNACK has no "taken over" code). */
static void claim_lost(conn *c)
{
    conn_close(c, MQTT_RC_SESSION_TAKEN_OVER, "a newer connection claimed the client id");
}

/* CONNACK 0x88 Server unavailable (3.1.1: return code 3): the client
 * retries, and by then the previous owner has let go or is known dead. */
static void claim_unavailable(conn *c, const char *why)
{
    send_connack_refusal(c, MQTT_RC_SERVER_UNAVAILABLE);
    c->sent_disconnect = true;
    conn_close(c, MQTT_RC_SERVER_UNAVAILABLE, why);
}

/* The connection is gone but the claim made us the owner: leave the
 * record as an offline session would, so the next claim need not wait. */
static void claim_orphaned(sync_claim *cl)
{
    broker *b = cl->w->b;
    if (cl->phase == CL_WAITING) {
        return; /* nothing loaded: a later claim's revoke gets a release (sync_handle_revoke) */
    }
    sc_state st;
    if (cl->blob && sc_decode(cl->blob, cl->blob_len, &st) == SC_OK && st.expiry_s) {
        uint64_t ttl = st.expiry_s == UINT32_MAX ? 0 : (uint64_t)st.expiry_s * 1000u + TTL_MARGIN_MS;
        bp_session_store(b->bp, cl->w->id, cl->client_id, cl->epoch, cl->blob, cl->blob_len, ttl, NULL, NULL);
        sc_state_free(&st);
        return;
    }
    bp_session_drop(b->bp, cl->w->id, cl->client_id, cl->epoch, NULL, NULL);
}

static void keep_state(sync_claim *cl, const bp_session_rec *rec)
{
    if (!rec->state) {
        return;
    }
    cl->blob = sh_malloc(rec->state_len ? rec->state_len : 1);
    memcpy(cl->blob, rec->state, rec->state_len);
    cl->blob_len = rec->state_len;
}

/* The state is known: decode it and go on with the in-process claim. */
static void claim_proceed(sync_claim *cl, conn *c)
{
    cl->phase = CL_LOCAL;
    if (cl->blob && !cl->clean) {
        sc_status st = sc_decode(cl->blob, cl->blob_len, &cl->st);
        if (st == SC_OK) {
            cl->have_state = true;
        } else {
            /* Not this node's to repair: the session starts empty. */
            sh_log(SH_WARN, "event=session_state_refused client=%s reason=%s bytes=%u", cl->client_id,
                   sc_status_name(st), cl->blob_len);
        }
    }
    connect_claim(c);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg);

static void arm_poll(sync_claim *cl)
{
    if (!cl->timer) {
        cl->timer = event_new(cl->w->base, -1, 0, poll_cb, cl);
    }
    struct timeval tv = {0, POLL_MS * 1000};
    event_add(cl->timer, &tv);
}

/* After the claim or a poll: go on, wait more, or give up. */
static void claim_step(sync_claim *cl, conn *c, bp_status st, const bp_session_rec *rec)
{
    broker *b = cl->w->b;
    if (st == BP_ESTALE) {
        claim_lost(c); /* a newer claim exists */
        claim_free(cl);
        return;
    }
    if (st == BP_OK && revoked(b, cl)) {
        claim_lost(c);
        claim_free(cl);
        return;
    }
    bool waiting = st != BP_OK || (rec->prev_owner[0] && rec->prev_alive && !rec->released);
    if (!waiting) {
        worker *w = cl->w;
        keep_state(cl, rec);
        claim_proceed(cl, c); /* may free cl */
        worker_flush(w);
        return;
    }
    uint64_t now = now_ms();
    if (cl->phase == CL_CLAIMING) {
        cl->phase = CL_WAITING;
        cl->deadline_ms = now + WAIT_MS;
        cl->renotify_ms = now + RENOTIFY_MS;
        sh_log(SH_DEBUG, "event=claim_wait client=%s epoch=%llu prev_owner=%s", cl->client_id,
               (unsigned long long)cl->epoch, rec->prev_owner);
    }
    if (now >= cl->deadline_ms) {
        sh_log(SH_INFO, "event=claim_timeout client=%s epoch=%llu waited_ms=%d status=%s", cl->client_id,
               (unsigned long long)cl->epoch, WAIT_MS, bp_status_name(st));
        claim_unavailable(c, "the previous owner of the session did not let go in time");
        claim_free(cl);
        return;
    }
    arm_poll(cl);
}

static void load_cb(bp_status st, const bp_session_rec *rec, void *arg)
{
    sync_claim *cl = arg;
    cl->busy = false;
    conn *c = claim_conn(cl);
    if (!c || st == BP_ECLOSED) {
        if (c) {
            claim_unavailable(c, "shutting down");
        }
        claim_free(cl);
        return;
    }
    claim_step(cl, c, st, rec);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sync_claim *cl = arg;
    if (!claim_conn(cl)) {
        claim_free(cl);
        return;
    }
    uint64_t now = now_ms();
    bool renotify = now >= cl->renotify_ms;
    if (renotify) {
        cl->renotify_ms = now + RENOTIFY_MS;
    }
    cl->busy = true;
    bp_session_load(cl->w->b->bp, cl->w->id, cl->client_id, cl->epoch, renotify, load_cb, cl);
}

static void claim_cb(bp_status st, const bp_session_rec *rec, void *arg)
{
    sync_claim *cl = arg;
    cl->busy = false;
    if (st == BP_OK) {
        cl->epoch = rec->epoch;
        cl->foreign = rec->prev_owner[0] != '\0';
    }
    conn *c = claim_conn(cl);
    if (!c) {
        if (st == BP_OK) {
            keep_state(cl, rec);
            cl->phase = CL_LOCAL;
            claim_orphaned(cl);
        }
        claim_free(cl);
        return;
    }
    if (st != BP_OK) {
        sh_log(SH_INFO, "event=claim_failed client=%s status=%s", cl->client_id, bp_status_name(st));
        claim_unavailable(c, "cluster backend unavailable");
        claim_free(cl);
        return;
    }
    claim_step(cl, c, st, rec);
}

bool sync_on(const broker *b)
{
    return !bp_knows_all_subscribers(b->bp);
}

void sync_claim_start(conn *c)
{
    worker *w = c->w;
    if (!sync_on(w->b)) {
        c->state = CS_CLAIMING;
        connect_claim(c);
        return;
    }
    sweep_claims(w);
    size_t len = strlen(c->client_id);
    sync_claim *cl = sh_calloc(1, sizeof(*cl) + len + 1);
    memcpy(cl->client_id, c->client_id, len + 1);
    cl->w = w;
    cl->conn_id = c->id;
    cl->clean = c->clean_start;
    cl->phase = CL_CLAIMING;
    cl->busy = true;
    cl->seq = atomic_load(&w->b->sync.seq);
    cl->next = w->sync.claims;
    w->sync.claims = cl;
    c->state = CS_CLAIMING;
    /* The local backplane answers inside the call, and the session may be
     * attached before it returns (then the rest of this read is handled as
     * usual); otherwise input waits for it. */
    bp_session_claim(w->b->bp, w->id, cl->client_id, cl->clean, claim_cb, cl);
    if (c->state == CS_CLAIMING) {
        c->paused |= PAUSE_CLAIM;
    }
}

/* ---- building the session from the stored state ---- */

static void restore_subs(broker *b, session *s, const sc_state *st)
{
    if (!st->n_subs) {
        return;
    }
    pthread_rwlock_wrlock(&b->subs_lock);
    for (uint32_t i = 0; i < st->n_subs; i++) {
        const sc_sub *e = &st->subs[i];
        mqtt_bytes group = {NULL, 0}, filter = e->filter;
        if (mqtt_share_parse(e->filter.p, e->filter.len, &group, &filter) != 1) {
            group.p = NULL;
            group.len = 0;
            filter = e->filter;
        }
        trie_add(b->subs, filter, group, s, &e->opts, NULL);
        session_add_sub(s, (const char *)e->filter.p, (uint16_t)e->filter.len, &e->opts);
    }
    pthread_rwlock_unlock(&b->subs_lock);
}

/* Subscriptions (with their options and identifiers) and the inbound QoS 2
 * ids awaiting PUBREL. The stored will belongs to the previous connection:
 * a client that connects again cancels it (§3.1.3.2.2), and this one
 * brings its own. Expiry comes from this CONNECT. */
static void restore(worker *w, session *s, const sc_state *st)
{
    broker *b = w->b;
    restore_subs(b, s, st);
    stream_restore(w, s, st); /* positions, marks, outgoing in flight */
    for (uint32_t i = 0; i < st->n_qos2; i++) {
        if (!session_qos2_has(s, st->qos2_in[i])) {
            session_qos2_add(s, st->qos2_in[i]);
        }
    }
}

bool sync_claim_finish(worker *w, conn *c, session *s, bool clean)
{
    sync_claim *cl = claim_of(w, c->id);
    bool foreign = cl && cl->foreign;
    /* This node's session is the freshest copy unless another node (or an
     * earlier instance of this one) owned the id since. */
    bool local = !clean && s->persistent && !foreign;
    bool from_state = !clean && !local && cl && cl->have_state;
    if (!local) {
        session_reset(w->b, s);
    }
    if (from_state) {
        restore(w, s, &cl->st);
    }
    if (cl) {
        claim_free(cl);
    }
    return local || from_state;
}

/* ---- stores ---- */

/* session.epoch changes under sess_lock (connect_claim on any worker). */
static uint64_t epoch_of(broker *b, session *s)
{
    pthread_mutex_lock(&b->sess_lock);
    uint64_t e = s->epoch;
    pthread_mutex_unlock(&b->sess_lock);
    return e;
}

static bool worth_storing(const session *s)
{
    return s->persistent || (s->c && s->c->will) || (s->off && s->off->will);
}

void sync_mark_dirty(worker *w, session *s)
{
    if (s->dirty || s->dead || !worth_storing(s) || !sync_on(w->b)) {
        return;
    }
    s->dirty = true;
    session_ref(s);
    sync_worker *sw = &w->sync;
    if (sw->n_dirty == sw->cap_dirty) {
        uint32_t cap = sw->cap_dirty ? sw->cap_dirty * 2 : 16;
        sw->dirty = sh_realloc(sw->dirty, sw->cap_dirty * sizeof(session *), cap * sizeof(session *));
        sw->cap_dirty = cap;
    }
    sw->dirty[sw->n_dirty++] = s;
    if (sw->n_dirty == 1) {
        event_active(sw->flush, 0, 0); /* after this turn's other callbacks */
    }
}

static void will_state(const msg *m, uint32_t delay_s, sc_will *out)
{
    bool expired;
    out->topic.p = m->topic;
    out->topic.len = m->topic_len;
    out->payload.p = m->payload;
    out->payload.len = m->payload_len;
    out->props.p = m->props;
    out->props.len = m->props_len;
    out->qos = m->qos;
    out->retain = m->retain;
    out->delay_s = delay_s;
    out->expiry_s = msg_expiry_left(m, now_ms(), &expired);
}

/* Encode s (owner's thread). *out NULL when it cannot be encoded (logged).
 * Returns the store's number (node/session_stream.c), 0 without a stream. */
static uint32_t encode_session(worker *w, session *s, uint8_t **out, uint32_t *len)
{
    sc_state st;
    memset(&st, 0, sizeof(st));
    uint32_t seq = stream_encode(w, s, &st);
    st.proto_version = s->version;
    st.expiry_s = s->persistent ? s->expiry_s : 0;
    if (s->c && s->c->will) {
        st.has_will = true;
        will_state(s->c->will, s->c->will_delay, &st.will);
    } else if (s->off && s->off->will) {
        uint64_t now = now_ms();
        st.has_will = true;
        will_state(s->off->will, 0, &st.will);
        st.will.delay_s = s->off->will_at > now ? (uint32_t)((s->off->will_at - now + 999) / 1000) : 0;
    }
    sc_sub *subs = s->n_subs ? sh_malloc(s->n_subs * sizeof(sc_sub)) : NULL;
    for (uint32_t i = 0; i < s->n_subs; i++) {
        subs[i].filter.p = (const uint8_t *)s->subs[i].filter;
        subs[i].filter.len = s->subs[i].len;
        subs[i].opts = s->subs[i].opts;
    }
    st.subs = subs;
    st.n_subs = s->n_subs;
    uint16_t *ids = s->n_qos2_in ? sh_malloc(s->n_qos2_in * sizeof(uint16_t)) : NULL;
    for (uint32_t i = 0; i < s->n_qos2_in; i++) {
        if (s->qos2_in[i].state == Q2_DURABLE) {
            ids[st.n_qos2++] = s->qos2_in[i].pid;
        }
    }
    st.qos2_in = ids;
    *out = NULL;
    *len = 0;
    sc_status rc = sc_encode(&st, out, len);
    if (rc != SC_OK) {
        *out = NULL;
        *len = 0;
        sh_log(SH_WARN, "event=session_state_not_stored client=%s reason=%s subscriptions=%u", s->client_id,
               sc_status_name(rc), s->n_subs);
    }
    sh_free(subs, s->n_subs * sizeof(sc_sub));
    sh_free(ids, s->n_qos2_in * sizeof(uint16_t));
    stream_encoded(&st);
    return seq;
}

/* A store's answer: the session it was for, at the epoch it was sent with. */
typedef struct store_ctx {
    worker *w;
    session *s; /* ref held */
    uint64_t epoch;
    uint32_t seq; /* node/session_stream.c: what waits for this store */
} store_ctx;

/* Take s off this node without a will and without touching its record
 * (another node owns it now): the connection gets 0x8E (3.1.1: close). */
static void let_go(worker *w, session *s, const char *why)
{
    conn *old = s->c;
    if (old) {
        msg_unref(old->will);
        old->will = NULL;
        s->c = NULL;
        old->s = NULL;
        session_unref(w->b, s);
        conn_close(old, MQTT_RC_SESSION_TAKEN_OVER, why);
    }
    session_forget(w, s);
}

/* A QoS 2 PUBLISH (or PUBREL) waits for a store that the backend refused:
 * nothing else may come to store the session again, so the next tick does
 * (each session at most once in the list: stream_store_refused). */
static void retry_later(worker *w, session *s)
{
    if (s->dead || atomic_load(&s->owner) != w->id || !stream_store_refused(s)) {
        return;
    }
    sync_worker *sw = &w->sync;
    if (sw->n_retry == sw->cap_retry) {
        uint32_t cap = sw->cap_retry ? sw->cap_retry * 2 : 16;
        sw->retry = sh_realloc(sw->retry, sw->cap_retry * sizeof(session *), cap * sizeof(session *));
        sw->cap_retry = cap;
    }
    session_ref(s);
    sw->retry[sw->n_retry++] = s;
}

void sync_retry_tick(worker *w)
{
    sync_worker *sw = &w->sync;
    session **list = sw->retry;
    uint32_t n = sw->n_retry, cap = sw->cap_retry;
    sw->retry = NULL;
    sw->n_retry = sw->cap_retry = 0;
    for (uint32_t i = 0; i < n; i++) {
        session *s = list[i];
        stream_store_retried(s);
        if (!s->dead && atomic_load(&s->owner) == w->id) {
            sync_mark_dirty(w, s);
        }
        session_unref(w->b, s);
    }
    sh_free(list, cap * sizeof(session *));
}

static void store_cb(bp_status st, void *arg)
{
    store_ctx *x = arg;
    session *s = x->s;
    worker *w = x->w;
    atomic_fetch_sub_explicit(&w->drain.stores, 1, memory_order_relaxed); /* a drain waits for it */
    if (st == BP_ESTALE && !s->dead && atomic_load(&s->owner) == w->id && epoch_of(w->b, s) == x->epoch) {
        sh_log(SH_INFO, "event=session_fenced client=%s epoch=%llu msg=\"a newer claim owns the client id\"",
               s->client_id, (unsigned long long)x->epoch);
        /* The newer claim may wait for our release, which its revoke would
         * bring; the state this store carried must not be lost meanwhile.
         * Accepted only if that claim came right after ours. */
        uint8_t *blob;
        uint32_t len;
        encode_session(w, s, &blob, &len);
        bp_session_release(w->b->bp, w->id, s->client_id, x->epoch, blob, len, NULL, NULL);
        sh_free(blob, len);
        let_go(w, s, "session taken over on another node");
        worker_flush(w);
    } else if (st == BP_EUNAVAILABLE) {
        sh_log(SH_DEBUG, "event=session_store_failed client=%s status=%s", s->client_id, bp_status_name(st));
        retry_later(w, s);
    } else if (st == BP_OK && x->seq) {
        stream_stored(w, s, x->seq);
    }
    session_unref(w->b, s);
    sh_free(x, sizeof(*x));
}

static void store_one(worker *w, session *s)
{
    uint8_t *blob;
    uint32_t len;
    uint32_t seq = encode_session(w, s, &blob, &len);
    if (!blob) {
        return;
    }
    uint64_t ttl = 0;
    if (!s->c) {
        ttl = s->expiry_s == UINT32_MAX ? 0 : (uint64_t)s->expiry_s * 1000u + TTL_MARGIN_MS;
    }
    store_ctx *x = sh_malloc(sizeof(*x));
    x->w = w;
    session_ref(s);
    x->s = s;
    x->epoch = epoch_of(w->b, s);
    atomic_fetch_add_explicit(&w->drain.stores, 1, memory_order_relaxed);
    x->seq = seq;
    bp_session_store(w->b->bp, w->id, s->client_id, x->epoch, blob, len, ttl, store_cb, x);
    sh_free(blob, len);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    sync_worker *sw = &w->sync;
    /* A store's answer may mark sessions again (the local backplane answers
     * inside the call): take the list first. */
    session **list = sw->dirty;
    uint32_t n = sw->n_dirty, cap = sw->cap_dirty;
    sw->dirty = NULL;
    sw->n_dirty = sw->cap_dirty = 0;
    for (uint32_t i = 0; i < n; i++) {
        session *s = list[i];
        s->dirty = false;
        /* A session that moved to another worker is stored there (its new
         * owner marks it when the connection is attached). */
        if (!s->dead && atomic_load(&s->owner) == w->id) {
            store_one(w, s);
        }
        session_unref(w->b, s);
    }
    sh_free(list, cap * sizeof(session *));
    worker_flush(w);
}

void sync_session_ended(worker *w, session *s)
{
    if (!sync_on(w->b)) {
        return;
    }
    uint64_t epoch = epoch_of(w->b, s);
    if (epoch) {
        bp_session_drop(w->b->bp, w->id, s->client_id, epoch, NULL, NULL);
    }
}

/* ---- revokes ---- */

void sync_revoked_hook(void *node, const char *client_id, uint64_t new_epoch)
{
    broker *b = node;
    if (!atomic_load_explicit(&b->running, memory_order_acquire)) {
        return;
    }
    mqtt_bytes id = {(const uint8_t *)client_id, (uint32_t)strlen(client_id)};
    mqtt_bytes none = {NULL, 0};
    /* The client id rides in a message (its topic): inbox items carry no
     * string, and drop_item releases it like any other. */
    msg *idm = msg_new_raw(id, NULL, 0, none, 0, false, none);
    if (!idm) {
        return;
    }
    pthread_mutex_lock(&b->sess_lock);
    note_revoke_locked(b, client_id, new_epoch);
    session *s = registry_get(b, client_id, id.len);
    if (s) {
        session_ref(s);
    }
    pthread_mutex_unlock(&b->sess_lock);
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_REVOKE;
    it.s = s;
    it.epoch = new_epoch;
    it.d.m = idm;
    worker_post_external(b, s ? atomic_load(&s->owner) : 0, &it);
}

static void release(worker *w, const char *client_id, uint64_t new_epoch, const uint8_t *state, uint32_t len)
{
    /* Every claim bumps the epoch by one: the claim before new_epoch is
     * new_epoch - 1, and the release is accepted only if that was ours. */
    bp_session_release(w->b->bp, w->id, client_id, new_epoch - 1, state, len, NULL, NULL);
}

void sync_handle_revoke(worker *w, inbox_item *it)
{
    broker *b = w->b;
    session *s = it->s;
    uint64_t epoch = it->epoch;
    if (s && atomic_load(&s->owner) != w->id) {
        worker_post(w, atomic_load(&s->owner), it); /* it moved: follow it */
        return;
    }
    if (s && !s->dead) {
        uint64_t own = epoch_of(b, s);
        if (own < epoch) {
            uint8_t *blob;
            uint32_t len;
            encode_session(w, s, &blob, &len);
            release(w, s->client_id, epoch, blob, len);
            sh_free(blob, len);
            sh_log(SH_INFO, "event=session_revoked client=%s epoch=%llu new_epoch=%llu online=%d", s->client_id,
                   (unsigned long long)own, (unsigned long long)epoch, s->c != NULL);
            /* The will of a connection taken over goes out unless delayed
             * (§3.1.4-3, as for a takeover inside this node). */
            conn *old = s->c;
            msg *will = NULL;
            if (old && old->will_delay == 0) {
                will = old->will;
                old->will = NULL;
            }
            let_go(w, s, "session taken over on another node");
            session_publish_will(w, will);
        }
        session_unref(b, s);
        msg_unref(it->d.m);
        return;
    }
    /* No session here (never made, or ended): let go of the claim. */
    char *id = sh_strndup((const char *)it->d.m->topic, it->d.m->topic_len);
    pthread_mutex_lock(&b->sess_lock);
    session *now = registry_get(b, id, it->d.m->topic_len);
    if (now && now != s) {
        session_ref(now);
    } else {
        now = NULL;
    }
    pthread_mutex_unlock(&b->sess_lock);
    if (s) {
        session_unref(b, s);
    }
    if (now) {
        it->s = now; /* made meanwhile: that one lets go */
        worker_post(w, atomic_load(&now->owner), it);
    } else {
        release(w, id, epoch, NULL, 0);
        msg_unref(it->d.m);
    }
    sh_free_str(id);
}

/* ---- the worker's part ---- */

void sync_worker_init(worker *w)
{
    memset(&w->sync, 0, sizeof(w->sync));
    w->sync.flush = event_new(w->base, -1, 0, flush_cb, w);
}

void sync_worker_free(worker *w)
{
    sync_worker *sw = &w->sync;
    while (sw->claims) {
        claim_free(sw->claims);
    }
    for (uint32_t i = 0; i < sw->n_dirty; i++) {
        sw->dirty[i]->dirty = false;
        session_unref(w->b, sw->dirty[i]);
    }
    sh_free(sw->dirty, sw->cap_dirty * sizeof(session *));
    sw->dirty = NULL;
    sw->n_dirty = sw->cap_dirty = 0;
    for (uint32_t i = 0; i < sw->n_retry; i++) {
        session_unref(w->b, sw->retry[i]);
    }
    sh_free(sw->retry, sw->cap_retry * sizeof(session *));
    sw->retry = NULL;
    sw->n_retry = sw->cap_retry = 0;
    if (sw->flush) {
        event_free(sw->flush);
        sw->flush = NULL;
    }
}
