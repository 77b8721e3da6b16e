/* SPDX-License-Identifier: Apache-2.0 */
/* A dead node's sessions (docs/architecture.md, "Wills and dead nodes").
 * Worker 0 of a cluster node asks the backplane once a second for a dead
 * node instance (bp_reap_batch); the survivor that gets one walks its
 * session records batch by batch. Per record: a will that is due (MQTT 5
 * §3.1.3.2.2: Will Delay Interval after the connection closed, or the end
 * of the session if that comes first; the death counts as the close) is
 * published through the backplane and, once durable, the record is settled
 * without it (bp_reap_finish, fenced: a client that reconnected elsewhere
 * owns the record now and nothing is written). A will not yet due leaves
 * the record as it is; the instance is scanned again when the earliest one
 * is due. A clean session's record is deleted; a persistent one keeps its
 * positions for whichever node its client reconnects to, and expires when
 * its session would have (Redis TTL). At least once: a survivor that dies
 * after publishing and before settling leaves the will for the next one. */
#include "node/mqtt/dead_node.h"

#include <event2/event.h>
#include <inttypes.h>
#include <string.h>
#include <sys/time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/mqtt/msg.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/route.h"
#include "node/mqtt/session_codec.h"
#include "node/mqtt/session_sync.h"

#define DEAD_NODE_POLL_MS 1000
/* The soonest a survivor looks again at an instance with delayed wills. */
#define MIN_RETRY_MS 200

typedef struct dead_node {
    worker *w;
    struct event *timer;
    bool busy;      /* a batch or its records are outstanding */
    bool freed;     /* the worker is gone: the last callback frees this */
    char *instance; /* being worked on */
    uint64_t cursor;
    uint64_t death_ms, now_ms; /* the backend's clock, from the batch */
    uint64_t min_due;          /* the earliest will not yet due, 0 none */
    size_t outstanding;        /* records of this batch not settled yet */
    bool last;                 /* this batch was the instance's last */
} dead_node;

/* One record being settled. */
typedef struct settle_ctx {
    dead_node *d;
    char *client_id;
    uint64_t epoch;
    uint8_t *state; /* the state without its will; NULL: delete the record */
    uint32_t len;
    int64_t ttl_ms;
    msg *will; /* ref held until durable */
} settle_ctx;

static void poll_cb(evutil_socket_t fd, short what, void *arg);

static void dead_node_free(dead_node *d)
{
    sh_free_str(d->instance);
    sh_free(d, sizeof(*d));
}

static void schedule(dead_node *d, uint64_t ms)
{
    struct timeval t = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(d->timer, &t);
}

static void batch_cb(bp_status st, const bp_reap_set *b, void *arg);

/* All records of a batch settled: the next batch, or done with the
 * instance (kept locked until its next will is due). */
static void batch_done(dead_node *d)
{
    if (d->freed) {
        dead_node_free(d);
        return;
    }
    worker *w = d->w;
    if (!d->last) {
        bp_reap_batch(w->b->bp, w->id, d->instance, d->cursor, batch_cb, d);
        return;
    }
    uint64_t retry = 0;
    if (d->min_due) {
        retry = d->min_due > d->now_ms ? d->min_due - d->now_ms : 0;
        retry = retry < MIN_RETRY_MS ? MIN_RETRY_MS : retry;
    }
    sh_log(retry ? SH_DEBUG : SH_INFO, "event=dead_node_settled instance=%s next_will_in_ms=%" PRIu64, d->instance,
           retry);
    bp_reap_end(w->b->bp, w->id, d->instance, retry);
    sh_free_str(d->instance);
    d->instance = NULL;
    d->busy = false;
    schedule(d, DEAD_NODE_POLL_MS);
}

static void settle_free(settle_ctx *x)
{
    sh_free_str(x->client_id);
    if (x->state) {
        sh_free(x->state, x->len ? x->len : 1);
    }
    if (x->will) {
        msg_unref(x->will);
    }
    sh_free(x, sizeof(*x));
}

static void finish_cb(bp_status st, void *arg)
{
    settle_ctx *x = arg;
    dead_node *d = x->d;
    if (st == BP_ESTALE) {
        sh_log(SH_DEBUG, "event=dead_node_session_moved client_id=%s", x->client_id);
    } else if (st != BP_OK) {
        sh_log(SH_WARN, "event=dead_node_settle_failed client_id=%s status=%s", x->client_id, bp_status_name(st));
    }
    settle_free(x);
    if (--d->outstanding == 0) {
        batch_done(d);
    }
}

static void finish(settle_ctx *x)
{
    dead_node *d = x->d;
    if (d->freed) {
        finish_cb(BP_ECLOSED, x);
        return;
    }
    worker *w = d->w;
    bp_reap_finish(w->b->bp, w->id, d->instance, x->client_id, x->epoch, x->state, x->len, x->ttl_ms, finish_cb, x);
}

/* The will is durable (or refused): this node's subscribers get it as they
 * get a will of their own node's client; then the record is settled. A
 * refused will stays in the record and the instance is retried. */
static void will_cb(bp_status st, void *arg)
{
    settle_ctx *x = arg;
    dead_node *d = x->d;
    msg *m = x->will;
    x->will = NULL;
    if (st != BP_OK) {
        sh_log(SH_WARN, "event=dead_node_will_not_durable client_id=%s status=%s msg=\"retried\"", x->client_id,
               bp_status_name(st));
        msg_unref(m);
        if (!d->freed && (!d->min_due || d->min_due > d->now_ms + MIN_RETRY_MS)) {
            d->min_due = d->now_ms + MIN_RETRY_MS;
        }
        finish_cb(BP_OK, x); /* nothing written: counts as settled for this batch */
        return;
    }
    sh_log(SH_INFO, "event=dead_node_will client_id=%s topic=%.*s", x->client_id, (int)m->topic_len,
           (const char *)m->topic);
    if (d->freed) {
        msg_unref(m);
        finish(x);
        return;
    }
    bp_publish_ref(&m->part, &m->off);
    m->own = true;
    route_will_local(d->w, m); /* takes the ref */
    worker_flush(d->w);
    finish(x);
}

static void publish_will(dead_node *d, settle_ctx *x, const sc_will *wl)
{
    mqtt_bytes none = {NULL, 0};
    msg *m = msg_new_raw(wl->topic, wl->props.p, (uint32_t)wl->props.len, wl->payload, wl->qos, wl->retain, none);
    if (!m) {
        sh_log(SH_WARN, "event=dead_node_will_dropped client_id=%s reason=no_memory", x->client_id);
        finish(x);
        return;
    }
    if (wl->expiry_s) {
        m->expiry_at = now_ms() + (uint64_t)wl->expiry_s * 1000;
    }
    x->will = m;
    bp_message bm = remote_bp_message(m); /* a will: no client id */
    bp_publish(d->w->b->bp, d->w->id, &bm, will_cb, x);
}

/* When the session ends (Unix ms, backend clock), 0 = never: a session that
 * was connected at the death ends its expiry interval after it; an offline
 * one when its record's TTL says (the store adds SYNC margin, see below). */
#define STORE_MARGIN_MS 60000 /* session_sync.c stores offline records with expiry + 60 s */

static uint64_t record_end(const dead_node *d, const bp_reap_rec *rec, const sc_state *st)
{
    if (rec->ttl_ms > 0) {
        uint64_t left = (uint64_t)rec->ttl_ms > STORE_MARGIN_MS ? (uint64_t)rec->ttl_ms - STORE_MARGIN_MS : 0;
        return d->now_ms + left;
    }
    if (st->expiry_s == UINT32_MAX) {
        return 0;
    }
    return d->death_ms + (uint64_t)st->expiry_s * 1000;
}

static void settle(dead_node *d, const bp_reap_rec *rec)
{
    settle_ctx *x = sh_calloc(1, sizeof(*x));
    x->d = d;
    x->client_id = sh_strdup(rec->client_id);
    x->epoch = rec->epoch;
    x->ttl_ms = -1;
    d->outstanding++;
    if (!rec->state) {
        finish(x); /* claimed, nothing stored yet: nothing to adopt */
        return;
    }
    sc_state st;
    sc_status cs = sc_decode(rec->state, rec->state_len, &st);
    if (cs != SC_OK) {
        sh_log(SH_WARN, "event=dead_node_state_refused client_id=%s reason=%s msg=\"record left to its TTL\"",
               rec->client_id, sc_status_name(cs));
        x->len = rec->state_len;
        x->state = sh_malloc(x->len ? x->len : 1);
        memcpy(x->state, rec->state, x->len);
        finish(x);
        return;
    }
    uint64_t end = record_end(d, rec, &st);
    if (st.has_will) {
        /* MQTT 5 §3.1.3.2.2: the will goes out Will Delay Interval after the
         * close, or when the session ends if that is sooner. */
        uint64_t due = d->death_ms + (uint64_t)st.will.delay_s * 1000;
        if (end && end < due) {
            due = end;
        }
        if (due > d->now_ms) {
            d->min_due = d->min_due && d->min_due < due ? d->min_due : due;
            sc_state_free(&st);
            settle_free(x);
            d->outstanding--;
            return;
        }
    }
    bool ends_now = end && end <= d->now_ms;
    if (!ends_now) {
        sc_will wl = st.will;
        bool had = st.has_will;
        st.has_will = false;
        if (!had) {
            /* Written back as read: a section this node does not know stays. */
            x->len = rec->state_len;
            x->state = sh_malloc(x->len ? x->len : 1);
            memcpy(x->state, rec->state, x->len);
        } else if (sc_encode(&st, &x->state, &x->len) != SC_OK) {
            x->state = NULL; /* cannot write it back: delete rather than publish twice */
        }
        st.has_will = had;
        st.will = wl;
        x->ttl_ms = rec->ttl_ms > 0 ? -1 : end ? (int64_t)(end - d->now_ms) : 0;
    }
    if (st.has_will) {
        publish_will(d, x, &st.will);
    } else {
        finish(x);
    }
    sc_state_free(&st);
}

static void batch_cb(bp_status st, const bp_reap_set *b, void *arg)
{
    dead_node *d = arg;
    if (d->freed) {
        dead_node_free(d);
        return;
    }
    if (st != BP_OK || !b->instance) {
        if (st != BP_OK && st != BP_ECLOSED) {
            sh_log(SH_DEBUG, "event=dead_node_batch_failed status=%s", bp_status_name(st));
        }
        sh_free_str(d->instance);
        d->instance = NULL;
        d->busy = false;
        if (st != BP_ECLOSED) {
            schedule(d, DEAD_NODE_POLL_MS);
        }
        return;
    }
    if (!d->instance) {
        d->instance = sh_strdup(b->instance);
        d->min_due = 0;
    }
    d->death_ms = b->death_ms;
    d->now_ms = b->now_ms;
    d->cursor = b->cursor;
    d->last = b->cursor == 0;
    d->outstanding = 1; /* held while the batch is handed out */
    for (size_t i = 0; i < b->n; i++) {
        settle(d, &b->recs[i]);
    }
    if (--d->outstanding == 0) {
        batch_done(d);
    }
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    dead_node *d = arg;
    if (d->busy) {
        return;
    }
    d->busy = true;
    bp_reap_batch(d->w->b->bp, d->w->id, NULL, 0, batch_cb, d);
}

void dead_node_worker_init(worker *w)
{
    w->dead_node = NULL;
    if (w->id != 0 || !sync_on(w->b)) {
        return;
    }
    dead_node *d = sh_calloc(1, sizeof(*d));
    d->w = w;
    d->timer = evtimer_new(w->base, poll_cb, d);
    w->dead_node = d;
    schedule(d, DEAD_NODE_POLL_MS);
}

void dead_node_worker_free(worker *w)
{
    dead_node *d = w->dead_node;
    if (!d) {
        return;
    }
    w->dead_node = NULL;
    event_free(d->timer);
    d->timer = NULL;
    if (d->busy) {
        d->freed = true; /* an answer may still come: it frees d */
        return;
    }
    dead_node_free(d);
}
