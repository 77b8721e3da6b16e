/* SPDX-License-Identifier: Apache-2.0 */
/* Session lifecycle: attach, detach, offline expiry, delayed wills, end,
 * and the hand-over of a session between workers (takeover). */
#include <event2/event.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/route.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/session_sync.h"
#include "node/mqtt/share.h"
#include "node/worker.h"

/* Through the backplane like any publish, so that subscribers on every
 * node and the retained snapshot get it. */
static void publish_will(worker *w, msg *will)
{
    if (will) {
        sh_log(SH_DEBUG, "event=will topic=%.*s", will->topic_len, (const char *)will->topic);
        route_publish_will(w, will);
    }
}

void session_publish_will(worker *w, msg *will)
{
    publish_will(w, will);
}

/* Remove subscriptions, queue and inflight: a clean start or the end. */
void session_reset(broker *b, session *s)
{
    if (s->n_subs) {
        pthread_rwlock_wrlock(&b->subs_lock);
        for (uint32_t i = 0; i < s->n_subs; i++) {
            mqtt_bytes g, f;
            session_split_filter(&s->subs[i], &g, &f);
            trie_remove(b->subs, f, g, s);
        }
        pthread_rwlock_unlock(&b->subs_lock);
    }
    session_free_sub_strings(s);
    session_drop_messages(b, s, true);
}

/* The offline state, made on first need. */
static session_offline *offline(session *s)
{
    if (!s->off) {
        s->off = sh_calloc(1, sizeof(*s->off));
    }
    return s->off;
}

/* Let go of the offline state once nothing is due: no timer, no will. */
static void offline_trim(session *s)
{
    session_offline *o = s->off;
    if (o && !o->timer && !o->will) {
        sh_free(o, sizeof(*o));
        s->off = NULL;
    }
}

static void drop_timer(session *s)
{
    session_offline *o = s->off;
    if (!o) {
        return;
    }
    if (o->timer) {
        event_free(o->timer);
        o->timer = NULL;
        o->timer_w = NULL;
    }
    o->expire_at = 0;
    offline_trim(s);
}

/* The delayed will, now owned by the caller (NULL if none). */
static msg *take_will(session *s)
{
    session_offline *o = s->off;
    if (!o) {
        return NULL;
    }
    msg *will = o->will;
    o->will = NULL;
    o->will_at = 0;
    offline_trim(s);
    return will;
}

static void drop_delayed_will(session *s)
{
    msg_unref(take_will(s));
}

/* The session is over here: its subscriptions go and it leaves the
 * registry (which may free it: the caller holds no ref). */
static void end_here(worker *w, session *s)
{
    broker *b = w->b;
    drop_timer(s);
    session_reset(b, s);
    s->dead = true;
    pthread_mutex_lock(&b->sess_lock);
    registry_remove(b, s);
    pthread_mutex_unlock(&b->sess_lock);
}

/* The session is over: `will` (consumed, may be NULL) goes out now
 * (§3.1.3.2.2), and the cluster's record goes too. */
static void end_with_will(worker *w, session *s, msg *will)
{
    /* Its unacknowledged shared-subscription messages go to another member
     * once it has left the groups (docs/architecture.md, "Shared
     * subscriptions across nodes"). */
    share_moved mv;
    share_collect(s, &mv);
    sync_session_ended(w, s); /* before: leaving the registry may free s */
    end_here(w, s);
    publish_will(w, will);
    share_send(w, &mv);
}

void session_end(worker *w, session *s)
{
    end_with_will(w, s, take_will(s));
}

void session_forget(worker *w, session *s)
{
    drop_delayed_will(s);
    session_set_online(w->b, s, false);
    end_here(w, s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session *s = arg;
    /* The timer lives in s->off, so s->off is there while it runs. */
    session_offline *o = s->off;
    worker *w = o->timer_w;
    if (s->c || s->dead) {
        return;
    }
    uint64_t now = now_ms();
    if (o->will && now >= o->will_at) {
        publish_will(w, take_will(s));
        sync_mark_dirty(w, s);
    }
    if (o->expire_at && now >= o->expire_at) {
        sh_log(SH_INFO, "event=session_expired client=%s", s->client_id);
        session_end(w, s);
    } else {
        session_arm_offline_timer(w, s);
    }
    worker_flush(w);
}

/* Arm the timer for the next offline deadline: the delayed will or the
 * session expiry, whichever is first. With none left, the offline state
 * goes. */
void session_arm_offline_timer(worker *w, session *s)
{
    session_offline *o = s->off;
    uint64_t next = o ? o->expire_at : 0;
    if (o && o->will && (next == 0 || o->will_at < next)) {
        next = o->will_at;
    }
    if (next == 0) {
        drop_timer(s);
        return;
    }
    if (o->timer && o->timer_w != w) {
        event_free(o->timer);
        o->timer = NULL;
    }
    if (!o->timer) {
        o->timer = event_new(w->base, -1, 0, timer_cb, s);
        o->timer_w = w;
    }
    uint64_t now = now_ms();
    uint64_t ms = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(o->timer, &tv);
}

void session_detach(worker *w, session *s, msg *will, uint32_t will_delay)
{
    s->c = NULL;
    stream_detached(w, s); /* a replay waits for the next connection */
    session_set_online(w->b, s, false);
    if (!s->persistent) {
        drop_delayed_will(s);
        end_with_will(w, s, will);
        return;
    }
    if (will && will_delay == 0) {
        publish_will(w, will);
        will = NULL;
    }
    if (will) {
        drop_delayed_will(s);
        session_offline *o = offline(s);
        o->will = will;
        o->will_at = now_ms() + (uint64_t)will_delay * 1000u;
    }
    if (s->expiry_s > w->b->cfg->max_session_expiry) {
        /* A DISCONNECT may have raised it after CONNECT applied the cap. */
        s->expiry_s = w->b->cfg->max_session_expiry;
    }
    if (s->expiry_s == 0) {
        session_end(w, s);
        return;
    }
    if (s->expiry_s != UINT32_MAX) {
        offline(s)->expire_at = now_ms() + (uint64_t)s->expiry_s * 1000u;
    } else if (s->off) {
        s->off->expire_at = 0;
    }
    session_arm_offline_timer(w, s);
    sync_mark_dirty(w, s); /* offline: the record's TTL, the delayed will */
}

void session_attach(worker *w, session *s, conn *c)
{
    drop_timer(s);
    /* The client is back within the will delay: no will (§3.1.3.2.2). */
    drop_delayed_will(s);
    session_ref(s);
    c->s = s;
    s->c = c;
    s->drops_logged = 0; /* drops are logged once per connection */
    session_set_online(w->b, s, true);
}

/* ---- takeover between workers ---- */

static uint64_t current_epoch(broker *b, session *s)
{
    pthread_mutex_lock(&b->sess_lock);
    uint64_t e = s->epoch;
    pthread_mutex_unlock(&b->sess_lock);
    return e;
}

static void post(worker *w, int to, uint8_t kind, session *s, const inbox_item *req)
{
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = kind;
    it.s = s;
    it.from = w->id;
    it.conn_id = req->conn_id;
    it.epoch = req->epoch;
    it.clean = req->clean;
    worker_post(w, to, &it);
}

/* Another connection claimed a session this worker may own: close the old
 * connection (0x8E) and hand the session over. The item's ref moves on. */
void session_handle_takeover(worker *w, inbox_item *it)
{
    session *s = it->s;
    int owner = atomic_load(&s->owner);
    if (owner != w->id) {
        worker_post(w, owner, it); /* it moved meanwhile: follow it */
        return;
    }
    if (current_epoch(w->b, s) != it->epoch) {
        post(w, it->from, IN_REFUSED, s, it);
        return;
    }
    if (s->c) {
        conn_drain_input(s->c); /* may end in a DISCONNECT that detaches it */
    }
    conn *old = s->c;
    if (old) {
        /* The will of the old connection: §3.1.4-3 treats it as a close
         * without DISCONNECT, and a resumed session cancels a delayed will. */
        msg *will = old->will;
        old->will = NULL;
        s->c = NULL;
        old->s = NULL;
        session_unref(w->b, s);
        if (will && (it->clean || old->will_delay == 0)) {
            publish_will(w, will);
        } else {
            msg_unref(will);
        }
        conn_close(old, MQTT_RC_SESSION_TAKEN_OVER, "session taken over");
    }
    drop_timer(s);
    session_set_online(w->b, s, false);
    atomic_store(&s->owner, it->from);
    post(w, it->from, IN_ADOPT, s, it);
}

/* A newer connection claimed the client id before this one got its
 * CONNACK. Nothing may precede CONNACK (MQTT-3.2.0-1) and CONNACK has no
 * "taken over" code, so the connection is closed without a packet. */
static void claim_lost(conn *c)
{
    conn_close(c, MQTT_RC_SESSION_TAKEN_OVER, "a newer connection claimed the client id");
}

/* The owner handed the session over. The claim may have been overtaken
 * meanwhile: by a newer claim (that one gets the session; this connection
 * lost), or by the session ending (claim again: a new session). */
void session_handle_adopt(worker *w, inbox_item *it)
{
    session *s = it->s;
    conn *c = worker_find_conn(w, it->conn_id);
    bool mine = c && c->state == CS_CLAIMING && c->claim_epoch == it->epoch;
    uint64_t cur = current_epoch(w->b, s);
    if (mine && s->dead) {
        connect_claim(c);
    } else if (mine && cur == it->epoch) {
        connect_finish(c, s, it->clean);
    } else if (mine) {
        claim_lost(c);
    } else if (!s->dead && !s->c && cur == it->epoch) {
        /* The claiming connection is gone and nobody else wants the session. */
        session_detach(w, s, NULL, 0);
    }
    session_unref(w->b, s);
}

void session_handle_refused(worker *w, inbox_item *it)
{
    conn *c = worker_find_conn(w, it->conn_id);
    if (c && c->state == CS_CLAIMING && c->claim_epoch == it->epoch) {
        claim_lost(c);
    }
    session_unref(w->b, it->s);
}
