/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions in the cluster's records (node/mqtt/session_sync.h).
 *
 * A CONNECT claims its client id through the backplane before anything
 * else (invariant 3: one live connection per client id in the cluster):
 *
 *   sync_claim_start ──bp_session_claim──> claim_cb
 *        previous owner another node, alive, not released:
 *            poll bp_session_load every POLL_MS (re-notify after
 *            RENOTIFY_FIRST_MS, then less often) until released or dead;
 *            CONNACK 0x88 after sync_wait_ms (the lease and a margin)
 *   ──> connect_claim (the in-process claim: registry, worker takeover)
 *   ──> connect_finish ──> sync_claim_finish: the stored state becomes the
 *       session when it is the truth, CONNACK's session present says so.
 *
 * The claim's epoch becomes session.epoch: the in-process takeover then
 * follows the cluster's order of claims, and every store is fenced by it. */
#include "node/mqtt/session_sync.h"

#include <event2/event.h>
#include <string.h>

#include "cluster/lease.h"
#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/route.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_codec.h"
#include "node/mqtt/session_stream.h"
#include "node/net/conn_io.h"
#include "node/worker.h"
#include "proto/topic.h"

#define POLL_MS 50
/* A revoke pub/sub lost is sent again soon (100, 200, 400 ms...), then
 * once a second: two live connections last at most about that long. */
#define RENOTIFY_FIRST_MS 100
#define RENOTIFY_MAX_MS 1000
/* Past the previous owner's lease it counts as dead; this covers the polls
 * and a renewal on its way. */
#define WAIT_MARGIN_MS 2000
/* Stores and drops the backend did not take: again after 100 ms, doubling
 * up to 5 s while they keep failing (and all at once when Redis is back). */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
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
    uint64_t epoch;        /* 0 until the claim answers */
    uint64_t wait_from_ms; /* when the wait for the previous owner began */
    uint64_t deadline_ms;
    uint64_t renotify_ms;
    struct event *timer;
    sync_claim *pnext;      /* broker.sync.pending chain, under sess_lock */
    uint64_t revoked_epoch; /* the newest revoke heard while pending, under sess_lock */
    uint32_t renotify_every;
    uint32_t expiry_s; /* the CONNECT's session expiry */
    uint8_t *blob;     /* the stored state, owned; decoded into st */
    uint32_t blob_len;
    uint8_t phase;
    bool busy; /* a backplane call is out: its callback frees what is left */
    bool clean;
    bool foreign; /* the previous owner was another node (or an earlier instance) */
    bool have_state;
    bool pending; /* in broker.sync.pending */
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

static sync_claim **pending_slot(broker *b, const char *client_id)
{
    return &b->sync.pending[id_hash(client_id) % SYNC_PENDING_BUCKETS];
}

static void pending_add(broker *b, sync_claim *cl)
{
    pthread_mutex_lock(&b->sess_lock);
    sync_claim **slot = pending_slot(b, cl->client_id);
    cl->pnext = *slot;
    *slot = cl;
    cl->pending = true;
    pthread_mutex_unlock(&b->sess_lock);
}

static void pending_remove(broker *b, sync_claim *cl)
{
    if (!cl->pending) {
        return;
    }
    pthread_mutex_lock(&b->sess_lock);
    for (sync_claim **at = pending_slot(b, cl->client_id); *at; at = &(*at)->pnext) {
        if (*at == cl) {
            *at = cl->pnext;
            break;
        }
    }
    cl->pending = false;
    pthread_mutex_unlock(&b->sess_lock);
}

/* A revoke newer than the claim's own epoch arrived while it was pending
 * (epoch 0: the claim has not answered yet, any revoke counts). */
static bool revoked_locked(broker *b, const sync_claim *cl)
{
    (void)b;
    return cl->revoked_epoch > cl->epoch;
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
    for (sync_claim *cl = *pending_slot(b, client_id); cl; cl = cl->pnext) {
        if (strcmp(cl->client_id, client_id) == 0 && epoch > cl->revoked_epoch) {
            cl->revoked_epoch = epoch;
        }
    }
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
    pending_remove(cl->w->b, cl);
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
 * record as an offline session would, so the next claim need not wait.
 * Not by storing the state the claim read: the previous owner may release
 * a newer one meanwhile, which that store would overwrite. A store without
 * state keeps what the record holds and sets the offline TTL; a session
 * that would end at once (expiry 0) drops the record. */
static void claim_orphaned(sync_claim *cl)
{
    broker *b = cl->w->b;
    if (cl->phase == CL_WAITING) {
        return; /* nothing loaded: a later claim's revoke gets a release (sync_handle_revoke) */
    }
    if (cl->expiry_s == 0) {
        bp_session_drop(b->bp, cl->w->id, cl->client_id, cl->epoch, NULL, NULL);
        return;
    }
    uint64_t ttl = cl->expiry_s == UINT32_MAX ? 0 : (uint64_t)cl->expiry_s * 1000u + TTL_MARGIN_MS;
    bp_session_store(b->bp, cl->w->id, cl->client_id, cl->epoch, NULL, 0, ttl, NULL, NULL);
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
        cl->wait_from_ms = now;
        cl->deadline_ms = now + sync_wait_ms(b, 0);
        cl->renotify_every = RENOTIFY_FIRST_MS;
        cl->renotify_ms = now + cl->renotify_every;
        sh_log(SH_DEBUG, "event=claim_wait client=%s epoch=%llu prev_owner=%s", cl->client_id,
               (unsigned long long)cl->epoch, rec->prev_owner);
    }
    if (st == BP_OK && rec->prev_lease_ms) {
        /* The previous owner's own lease, when longer than this node's:
         * its claim outlives it that long (cluster/lease.h). */
        uint64_t until = cl->wait_from_ms + sync_wait_ms(b, rec->prev_lease_ms);
        cl->deadline_ms = until > cl->deadline_ms ? until : cl->deadline_ms;
    }
    if (now >= cl->deadline_ms) {
        sh_log(SH_INFO, "event=claim_timeout client=%s epoch=%llu waited_ms=%llu status=%s", cl->client_id,
               (unsigned long long)cl->epoch, (unsigned long long)(now - cl->wait_from_ms), bp_status_name(st));
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
        cl->renotify_every = cl->renotify_every * 2 > RENOTIFY_MAX_MS ? RENOTIFY_MAX_MS : cl->renotify_every * 2;
        cl->renotify_ms = now + cl->renotify_every;
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
        conn_set_state(c, CS_CLAIMING);
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
    cl->expiry_s = c->session_expiry;
    cl->phase = CL_CLAIMING;
    cl->busy = true;
    cl->next = w->sync.claims;
    w->sync.claims = cl;
    pending_add(w->b, cl);
    conn_set_state(c, CS_CLAIMING);
    /* The local backplane answers inside the call, and the session may be
     * attached before it returns (then the rest of this read is handled as
     * usual); otherwise input waits for it. */
    bp_session_claim(w->b->bp, w->id, cl->client_id, cl->clean, claim_cb, cl);
    if (c->state == CS_CLAIMING) {
        c->paused |= PAUSE_CLAIM;
    }
}

static void mark(worker *w, session *s, bool force);

/* ---- building the session from the stored state ---- */

static void split_stored(const sc_sub *e, mqtt_bytes *group, mqtt_bytes *filter)
{
    if (mqtt_share_parse(e->filter.p, e->filter.len, group, filter) != 1) {
        group->p = NULL;
        group->len = 0;
        *filter = e->filter;
    }
}

/* The stored subscriptions pass this node's checks as a SUBSCRIBE would:
 * the ACL (it may have changed, or differ on this node: a filter the client
 * may no longer read is dropped, logged), --max-subscriptions (the first
 * ones are kept) and --max-shared-groups (a stored shared subscription that
 * would found a group past it is dropped, logged). Checked before the
 * trie's write lock, which is then held for one pass (the group limit
 * inside it): the trie tells a filter the session has already (a
 * duplicate in the blob) from a new one, which is appended without a scan. */
_Static_assert(SESSION_MAX_SUBS == SC_MAX_SUBS, "a session's subscriptions fit its record");

static void restore_subs(broker *b, conn *c, session *s, const sc_state *st)
{
    if (!st->n_subs) {
        return;
    }
    uint32_t max = limits_max_subscriptions(b->cfg);
    bool *keep = sh_calloc(st->n_subs, sizeof(bool));
    uint32_t kept = 0, over = 0;
    for (uint32_t i = 0; i < st->n_subs; i++) {
        mqtt_bytes group, filter;
        split_stored(&st->subs[i], &group, &filter);
        if (!auth_can_subscribe(c, filter.p, filter.len)) {
            sh_log(SH_INFO, "event=acl_denied action=restore_subscription conn=%llu client=%s username=%s filter=%.*s",
                   (unsigned long long)c->id, s->client_id, c->username ? c->username : "-",
                   (int)st->subs[i].filter.len, (const char *)st->subs[i].filter.p);
            continue;
        }
        if (kept >= max) {
            over++;
            continue;
        }
        keep[i] = true;
        kept++;
    }
    if (over) {
        sh_log(SH_INFO,
               "event=limit limit=max-subscriptions action=restore_subscription client=%s max=%u "
               "dropped=%u",
               s->client_id, max, over);
    }
    uint32_t max_groups = b->cfg->limits.max_shared_groups, over_groups = 0;
    pthread_rwlock_wrlock(&b->subs_lock);
    size_t n_groups = trie_group_count(b->subs) + trie_ghosts_each(b->subs, NULL, NULL);
    for (uint32_t i = 0; i < st->n_subs; i++) {
        if (!keep[i]) {
            continue;
        }
        const sc_sub *e = &st->subs[i];
        mqtt_bytes group, filter;
        split_stored(e, &group, &filter);
        bool too_long = group.len && (size_t)group.len + 1 + filter.len > SHARE_KEY_MAX;
        if (too_long ||
            (group.len && max_groups && n_groups >= max_groups && !trie_has_group(b->subs, filter, group))) {
            over_groups++;
            continue;
        }
        bool replaced = false;
        size_t had = trie_group_count(b->subs);
        trie_add(b->subs, filter, group, s, &e->opts, &replaced);
        n_groups += trie_group_count(b->subs) - had;
        if (replaced) {
            session_add_sub(s, (const char *)e->filter.p, (uint16_t)e->filter.len, &e->opts);
        } else {
            session_append_sub(s, (const char *)e->filter.p, (uint16_t)e->filter.len, &e->opts);
        }
    }
    pthread_rwlock_unlock(&b->subs_lock);
    sh_free(keep, st->n_subs * sizeof(bool));
    if (over_groups) {
        sh_log(SH_INFO,
               "event=limit limit=shared-groups action=restore_subscription client=%s max=%u "
               "dropped=%u",
               s->client_id, max_groups, over_groups);
    }
}

/* Subscriptions (with their options and identifiers) and the inbound QoS 2
 * ids awaiting PUBREL. The stored will belongs to the previous connection:
 * a client that connects again cancels it (§3.1.3.2.2), and this one
 * brings its own. Expiry comes from this CONNECT. */
static void restore(worker *w, conn *c, session *s, const sc_state *st)
{
    restore_subs(w->b, c, s, st);
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
        restore(w, c, s, &cl->st);
    }
    if (cl) {
        claim_free(cl);
        /* Every connection stores once at its connect, a clean one without
         * a will too (no state, the claim's record kept without TTL): a
         * fenced write that closes it (0x8E) if a newer claim exists
         * whose revoke was lost, and that re-creates a record Redis lost. */
        mark(w, s, true);
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

/* force: store s even if it has no state worth storing (its claim's
 * record is kept without state). */
static void mark(worker *w, session *s, bool force)
{
    uint8_t me = (uint8_t)(w->id + 1);
    if (s->dead || (!force && !worth_storing(s)) || !sync_on(w->b) || atomic_load(&s->dirty_w) == me) {
        return;
    }
    /* Another worker's mark (it owned s before) stays in its list, which
     * skips s: the owner stores it. */
    atomic_store(&s->dirty_w, me);
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

void sync_mark_dirty(worker *w, session *s)
{
    mark(w, s, false);
}

uint64_t sync_wait_ms(const broker *b, uint32_t prev_lease_ms)
{
    uint64_t lease = (uint64_t)lease_ttl_ms(b->cfg->cluster_heartbeat, b->cfg->cluster_lease);
    return (prev_lease_ms > lease ? prev_lease_ms : lease) + WAIT_MARGIN_MS;
}

/* The TTL of s's record while nobody is connected: its expiry and a
 * margin (the owner's own timer ends it first; the TTL is the backstop),
 * 0 = none for a session that never expires. */
static uint64_t offline_ttl_ms(const session *s)
{
    if (!s->persistent) {
        return TTL_MARGIN_MS;
    }
    return s->expiry_s == UINT32_MAX ? 0 : (uint64_t)s->expiry_s * 1000u + TTL_MARGIN_MS;
}

/* Encode s (owner's thread). *out NULL when it cannot be encoded (logged).
 * Returns the store's number (node/mqtt/session_stream.c), 0 without a stream. */
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

/* ---- stores and drops the backend did not take ---- */

static void acks_run(worker *w, sync_ack *list, bool send);
static sync_ack *acks_take(worker *w, session *s);

static void arm_retry(worker *w)
{
    sync_worker *sw = &w->sync;
    if (!evtimer_pending(sw->retry_timer, NULL)) {
        struct timeval tv = {sw->retry_ms / 1000, (sw->retry_ms % 1000) * 1000};
        evtimer_add(sw->retry_timer, &tv);
    }
}

static void retry_later(worker *w, session *s)
{
    uint8_t me = (uint8_t)(w->id + 1);
    sync_worker *sw = &w->sync;
    if (atomic_load(&s->retry_w) == me) {
        return;
    }
    atomic_store(&s->retry_w, me);
    session_ref(s);
    if (sw->n_retry == sw->cap_retry) {
        uint32_t cap = sw->cap_retry ? sw->cap_retry * 2 : 16;
        sw->retry = sh_realloc(sw->retry, sw->cap_retry * sizeof(session *), cap * sizeof(session *));
        sw->cap_retry = cap;
    }
    sw->retry[sw->n_retry++] = s;
    arm_retry(w);
}

typedef struct drop_ctx {
    worker *w;
    uint64_t epoch;
    char client_id[]; /* in this allocation */
} drop_ctx;

void sync_drop_later(worker *w, const char *client_id, uint64_t epoch)
{
    sync_worker *sw = &w->sync;
    if (sw->n_drops >= SYNC_DROPS_MAX) {
        sh_log(SH_WARN,
               "event=session_drop_abandoned client=%s pending=%u msg=\"Redis unreachable: the record stays "
               "until the id is claimed again\"",
               client_id, sw->n_drops);
        return;
    }
    if (sw->n_drops == sw->cap_drops) {
        uint32_t cap = sw->cap_drops ? sw->cap_drops * 2 : 16;
        sw->drops = sh_realloc(sw->drops, sw->cap_drops * sizeof(sync_drop), cap * sizeof(sync_drop));
        sw->cap_drops = cap;
    }
    sw->drops[sw->n_drops].client_id = sh_strdup(client_id);
    sw->drops[sw->n_drops++].epoch = epoch;
    arm_retry(w);
}

static void drop_cb(bp_status st, void *arg)
{
    drop_ctx *x = arg;
    if (st == BP_EUNAVAILABLE) {
        sync_drop_later(x->w, x->client_id, x->epoch);
    } else if (st == BP_OK) {
        x->w->sync.retry_ms = RETRY_FIRST_MS;
    }
    sh_free(x, sizeof(*x) + strlen(x->client_id) + 1);
}

static void drop_record(worker *w, const char *client_id, uint64_t epoch)
{
    size_t len = strlen(client_id);
    drop_ctx *x = sh_malloc(sizeof(*x) + len + 1);
    x->w = w;
    x->epoch = epoch;
    memcpy(x->client_id, client_id, len + 1);
    bp_session_drop(w->b->bp, w->id, client_id, epoch, drop_cb, x);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    sync_worker *sw = &w->sync;
    uint8_t me = (uint8_t)(w->id + 1);
    session **list = sw->retry;
    uint32_t n = sw->n_retry, cap = sw->cap_retry;
    sync_drop *drops = sw->drops;
    uint32_t nd = sw->n_drops, capd = sw->cap_drops;
    sw->retry = NULL;
    sw->n_retry = sw->cap_retry = 0;
    sw->drops = NULL;
    sw->n_drops = sw->cap_drops = 0;
    /* Failing again doubles the wait; a success resets it (store_cb). */
    sw->retry_ms = sw->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : sw->retry_ms * 2;
    for (uint32_t i = 0; i < n; i++) {
        session *s = list[i];
        uint8_t want = me;
        atomic_compare_exchange_strong(&s->retry_w, &want, 0);
        if (!s->dead && atomic_load(&s->owner) == w->id) {
            mark(w, s, true);
        } else {
            acks_run(w, acks_take(w, s), false); /* its connection is gone */
        }
        session_unref(w->b, s);
    }
    sh_free(list, cap * sizeof(session *));
    for (uint32_t i = 0; i < nd; i++) {
        drop_record(w, drops[i].client_id, drops[i].epoch);
        sh_free_str(drops[i].client_id);
    }
    sh_free(drops, capd * sizeof(sync_drop));
    worker_flush(w);
}

/* ---- acks that follow a durable store ---- */

struct sync_ack {
    sync_ack *next;
    session *s; /* ref held */
    uint64_t conn_id;
    uint16_t pid;
    uint32_t n;
    uint8_t *codes;
    sync_retained *ret; /* filters copied */
    uint32_t n_ret;
};

static void ack_free(worker *w, sync_ack *a)
{
    for (uint32_t i = 0; i < a->n_ret; i++) {
        sh_free((void *)a->ret[i].filter.p, a->ret[i].filter.len ? a->ret[i].filter.len : 1);
    }
    sh_free(a->ret, a->n_ret * sizeof(sync_retained));
    sh_free(a->codes, a->n ? a->n : 1);
    session_unref(w->b, a->s);
    sh_free(a, sizeof(*a));
}

/* The store went through (or cannot be made): SUBACK, then the retained
 * messages, to the connection that subscribed if it is still there. */
static void ack_send(worker *w, sync_ack *a)
{
    conn *c = worker_find_conn(w, a->conn_id);
    if (c && c->state == CS_ACTIVE && c->s == a->s) {
        send_suback(c, a->pid, a->codes, a->n);
        for (uint32_t i = 0; i < a->n_ret; i++) {
            route_retained_on_subscribe(w, a->s, a->ret[i].filter, &a->ret[i].opts);
        }
        conn_resume_reading(c, PAUSE_STORE);
    }
    ack_free(w, a);
}

static void acks_run(worker *w, sync_ack *list, bool send)
{
    while (list) {
        sync_ack *a = list;
        list = a->next;
        if (send) {
            ack_send(w, a);
        } else {
            ack_free(w, a);
        }
    }
}

/* Take the waiting acks of s off the worker's list, in order. */
static sync_ack *acks_take(worker *w, session *s)
{
    sync_ack *out = NULL, **tail = &out;
    for (sync_ack **at = &w->sync.acks; *at;) {
        sync_ack *a = *at;
        if (a->s == s) {
            *at = a->next;
            a->next = NULL;
            *tail = a;
            tail = &a->next;
        } else {
            at = &a->next;
        }
    }
    return out;
}

/* Back on the worker's list (the store failed: the next one takes them). */
static void acks_put_back(worker *w, sync_ack *list)
{
    sync_ack **tail = &w->sync.acks;
    while (*tail) {
        tail = &(*tail)->next;
    }
    *tail = list;
}

bool sync_defer_suback(worker *w, conn *c, uint16_t pid, const uint8_t *codes, uint32_t n, const sync_retained *ret,
                       uint32_t n_ret)
{
    session *s = c->s;
    if (!s || !s->persistent || !sync_on(w->b) || atomic_load(&s->dirty_w) != (uint8_t)(w->id + 1)) {
        return false;
    }
    sync_ack *a = sh_calloc(1, sizeof(*a));
    session_ref(s);
    a->s = s;
    a->conn_id = c->id;
    a->pid = pid;
    a->n = n;
    a->codes = sh_malloc(n ? n : 1);
    memcpy(a->codes, codes, n);
    a->n_ret = n_ret;
    a->ret = n_ret ? sh_malloc(n_ret * sizeof(sync_retained)) : NULL;
    for (uint32_t i = 0; i < n_ret; i++) {
        uint8_t *f = sh_malloc(ret[i].filter.len ? ret[i].filter.len : 1);
        memcpy(f, ret[i].filter.p, ret[i].filter.len);
        a->ret[i].filter.p = f;
        a->ret[i].filter.len = ret[i].filter.len;
        a->ret[i].opts = ret[i].opts;
    }
    acks_put_back(w, a);
    /* One SUBACK waits per connection: its input waits with it. */
    c->paused |= PAUSE_STORE;
    conn_io_read_enable(c, false);
    return true;
}

/* A store's answer: the session it was for, at the epoch it was sent with. */
typedef struct store_ctx {
    worker *w;
    session *s; /* ref held */
    uint64_t epoch;
    uint32_t seq;   /* node/mqtt/session_stream.c: what waits for this store */
    sync_ack *acks; /* to send once it is stored */
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
        bp_session_release(w->b->bp, w->id, s->client_id, x->epoch, blob, len, offline_ttl_ms(s), NULL, NULL);
        sh_free(blob, len);
        let_go(w, s, "session taken over on another node");
        worker_flush(w);
    } else if (st == BP_EUNAVAILABLE) {
        sh_log(SH_DEBUG, "event=session_store_failed client=%s status=%s", s->client_id, bp_status_name(st));
        if (!s->dead && atomic_load(&s->owner) == w->id) {
            retry_later(w, s);
            acks_put_back(w, x->acks); /* the retry's store brings them */
            x->acks = NULL;
        }
    } else if (st == BP_OK) {
        w->sync.retry_ms = RETRY_FIRST_MS; /* Redis takes writes again */
        if (x->seq) {
            stream_stored(w, s, x->seq);
        }
    }
    /* Stored: SUBACK. Fenced or shut down: the connection is closed. */
    acks_run(w, x->acks, st == BP_OK);
    session_unref(w->b, s);
    sh_free(x, sizeof(*x));
}

static void store_one(worker *w, session *s)
{
    uint8_t *blob = NULL;
    uint32_t len = 0;
    uint32_t seq = 0;
    if (worth_storing(s)) {
        seq = encode_session(w, s, &blob, &len);
        if (!blob) {
            acks_run(w, acks_take(w, s), true); /* cannot be stored: not worth a SUBACK withheld */
            return;
        }
    }
    uint64_t ttl = s->c ? 0 : offline_ttl_ms(s);
    store_ctx *x = sh_malloc(sizeof(*x));
    x->w = w;
    session_ref(s);
    x->s = s;
    x->epoch = epoch_of(w->b, s);
    atomic_fetch_add_explicit(&w->drain.stores, 1, memory_order_relaxed);
    x->seq = seq;
    x->acks = acks_take(w, s);
    bp_session_store(w->b->bp, w->id, s->client_id, x->epoch, blob, len, ttl, store_cb, x);
    if (blob) {
        sh_free(blob, len);
    }
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
    uint8_t me = (uint8_t)(w->id + 1);
    for (uint32_t i = 0; i < n; i++) {
        session *s = list[i];
        uint8_t want = me;
        atomic_compare_exchange_strong(&s->dirty_w, &want, 0);
        /* A session that moved to another worker is stored there (its new
         * owner marks it when the connection is attached). */
        if (!s->dead && atomic_load(&s->owner) == w->id) {
            store_one(w, s);
        } else {
            acks_run(w, acks_take(w, s), false); /* its connection is gone */
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
        drop_record(w, s->client_id, epoch);
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

/* own_epoch: the claim this node held (0: none here, whichever claim of
 * this instance is the previous one). Accepted only while that claim is
 * the record's previous one (a claim after an abandoned one keeps the
 * live owner as its previous: cluster/rk_session.c). */
static void release(worker *w, const char *client_id, uint64_t own_epoch, const uint8_t *state, uint32_t len,
                    uint64_t ttl_ms)
{
    bp_session_release(w->b->bp, w->id, client_id, own_epoch, state, len, ttl_ms, NULL, NULL);
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
            release(w, s->client_id, own, blob, len, offline_ttl_ms(s));
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
        release(w, id, 0, NULL, 0, 0);
        msg_unref(it->d.m);
    }
    sh_free_str(id);
}

/* ---- fencing and re-asserting every session ----
 *
 * A node that cannot renew its membership lease (cut off from Redis, or
 * Redis down for everyone) fences itself before its lease can expire
 * (cluster/lease.h): past the lease another node may claim any of its
 * client ids, clean or persistent (every CONNECT claims its id in Redis),
 * so every connection is closed, DISCONNECT 0x8B Server shutting down
 * (MQTT 5 §3.14.2.1; 0x88 Server unavailable is a CONNACK code only, which
 * new CONNECTs get meanwhile; 3.1.1: the TCP close). The sessions stay
 * here, offline, their records as last stored. When Redis renews the lease
 * again the node stores every session it owns, fenced by epoch, owner and
 * token: one claimed elsewhere meanwhile, or reaped as a dead node's, is
 * refused (stale) and dropped here (let_go), never written over.
 * docs/architecture.md, "Fencing". */

static void post_all(broker *b, int what)
{
    if (!atomic_load_explicit(&b->running, memory_order_acquire)) {
        return;
    }
    for (int i = 0; i < b->nworkers; i++) {
        inbox_item it;
        memset(&it, 0, sizeof(it));
        it.kind = IN_SYNC;
        it.epoch = (uint64_t)what;
        worker_post_external(b, i, &it);
    }
}

void sync_reassert_hook(void *node)
{
    post_all(node, SYNC_REASSERT);
}

void sync_fence_hook(void *node)
{
    post_all(node, SYNC_FENCE);
}

/* Every connection past CONNECT: established ones, and those whose claim
 * is on its way (its answer finds the connection gone). One still waiting
 * for its CONNECT gets CONNACK 0x88 when it comes (connect_proceed). */
static void fence_conns(worker *w)
{
    uint32_t n = 0;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->state >= CS_CLAIMING && c->state < CS_CLOSING) {
            conn_close(c, MQTT_RC_SERVER_SHUTTING_DOWN, "membership lease lost: cut off from Redis");
            n++;
        }
        c = next;
    }
    if (n) {
        sh_log(SH_INFO, "event=lease_fenced_connections worker=%d closed=%u", w->id, n);
    }
    worker_flush(w);
}

void sync_handle_sessions(worker *w, inbox_item *it)
{
    broker *b = w->b;
    if (!sync_on(b)) {
        return;
    }
    if (it->epoch == SYNC_FENCE) {
        fence_conns(w);
        return;
    }
    session **mine = NULL;
    uint32_t n = 0, cap = 0;
    pthread_mutex_lock(&b->sess_lock);
    for (uint32_t i = 0; i < b->sess_buckets; i++) {
        for (session *s = b->sess_tab[i]; s; s = s->reg_next) {
            if (atomic_load(&s->owner) != w->id || s->dead) {
                continue;
            }
            if (n == cap) {
                uint32_t ncap = cap ? cap * 2 : 64;
                mine = sh_realloc(mine, cap * sizeof(session *), ncap * sizeof(session *));
                cap = ncap;
            }
            session_ref(s);
            mine[n++] = s;
        }
    }
    pthread_mutex_unlock(&b->sess_lock);
    for (uint32_t i = 0; i < n; i++) {
        session *s = mine[i];
        if (!s->dead && (s->c || worth_storing(s))) {
            mark(w, s, true);
        }
        session_unref(b, s);
    }
    sh_free(mine, cap * sizeof(session *));
    if (n) {
        sh_log(SH_INFO, "event=sessions_reasserted worker=%d sessions=%u", w->id, n);
    }
    worker_flush(w);
}

/* ---- the worker's part ---- */

void sync_worker_init(worker *w)
{
    memset(&w->sync, 0, sizeof(w->sync));
    w->sync.flush = event_new(w->base, -1, 0, flush_cb, w);
    w->sync.retry_timer = evtimer_new(w->base, retry_cb, w);
    w->sync.retry_ms = RETRY_FIRST_MS;
}

void sync_worker_free(worker *w)
{
    sync_worker *sw = &w->sync;
    while (sw->claims) {
        claim_free(sw->claims);
    }
    acks_run(w, sw->acks, false);
    sw->acks = NULL;
    for (uint32_t i = 0; i < sw->n_dirty; i++) {
        atomic_store(&sw->dirty[i]->dirty_w, 0);
        session_unref(w->b, sw->dirty[i]);
    }
    sh_free(sw->dirty, sw->cap_dirty * sizeof(session *));
    sw->dirty = NULL;
    sw->n_dirty = sw->cap_dirty = 0;
    for (uint32_t i = 0; i < sw->n_retry; i++) {
        atomic_store(&sw->retry[i]->retry_w, 0);
        session_unref(w->b, sw->retry[i]);
    }
    sh_free(sw->retry, sw->cap_retry * sizeof(session *));
    sw->retry = NULL;
    sw->n_retry = sw->cap_retry = 0;
    for (uint32_t i = 0; i < sw->n_drops; i++) {
        sh_free_str(sw->drops[i].client_id);
    }
    sh_free(sw->drops, sw->cap_drops * sizeof(sync_drop));
    sw->drops = NULL;
    sw->n_drops = sw->cap_drops = 0;
    if (sw->retry_timer) {
        event_free(sw->retry_timer);
        sw->retry_timer = NULL;
    }
    if (sw->flush) {
        event_free(sw->flush);
        sw->flush = NULL;
    }
}
