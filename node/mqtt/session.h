/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT session state (node/mqtt/session.c: queues, acks, subscriptions;
 * node/mqtt/session_life.c: attach, detach, takeover, expiry). A session is
 * owned by one worker at a time (`owner`). Deliveries for a session owned
 * elsewhere go to the owner's inbox; an owner that no longer holds it
 * forwards them. */
#ifndef SHOAL_NODE_SESSION_H
#define SHOAL_NODE_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/mqtt/msg.h"
#include "node/mqtt/trie.h"
#include "proto/packet.h"

struct event;
typedef struct config config;
typedef struct broker broker;
typedef struct worker worker;
typedef struct conn conn;
typedef struct session session;
typedef struct inbox_item inbox_item;

/* Subscription ids carried with one delivered copy (MQTT 5 §3.3.4: all of
 * the matching subscriptions' identifiers). */
#define DELIVERY_MAX_SUB_IDS 4

/* One message on its way to one session. */
typedef struct delivery {
    msg *m;      /* ref held */
    uint8_t qos; /* already downgraded to the subscription's */
    bool retain; /* RETAIN flag to send */
    uint8_t n_sub_ids;
    bool shared; /* a shared group's copy: handed over if the session ended meanwhile */
    /* A retained copy sent at SUBSCRIBE (MQTT 5 §3.3.1.3): the index's
     * message, never a place in this session's stream, whatever record
     * m->part/m->off name (node/mqtt/session_stream.c). */
    bool at_subscribe;
    uint32_t sub_ids[DELIVERY_MAX_SUB_IDS];
} delivery;

/* An outgoing QoS 1/2 message awaiting its acknowledgement. */
typedef struct inflight {
    uint16_t pid;
    uint8_t state; /* INF_WAIT_ACK, INF_WAIT_REC, INF_WAIT_COMP */
    /* INF_HOLD_*: waiting for the session store numbered `seq` to be
     * durable before the PUBLISH or PUBREL goes out (node/mqtt/session_stream.c). */
    uint8_t hold;
    uint32_t seq;
    /* The message's place in the stream, kept past PUBREC and for entries
     * restored from another node before the message is read again
     * (d.m NULL until then). part -1: none. */
    int32_t part;
    /* Send order (MQTT 4.6: resends keep it): the slots of the previous
     * and the next entry, a list through the table (see session.inf). */
    uint16_t prev, next;
    int64_t off;
    delivery d;
} inflight;

enum { INF_HOLD_PUB = 1, INF_HOLD_REL = 2 };

enum { INF_WAIT_ACK = 1, INF_WAIT_REC, INF_WAIT_COMP };

/* The most subscriptions a session holds, whatever --max-subscriptions
 * says (0 = this): what a session record holds (SC_MAX_SUBS). */
#define SESSION_MAX_SUBS 65535u

typedef struct sub_entry {
    char *filter; /* the filter as subscribed, "$share/g/f" included */
    uint16_t len;
    sub_opts opts;
} sub_entry;

/* What only an offline session needs (its expiry and delayed will), made
 * when it goes offline with a deadline and freed once it has none: a
 * connected client's session carries one pointer for it. */
typedef struct session_offline {
    struct event *timer; /* the next deadline */
    worker *timer_w;     /* the worker whose loop the timer is on */
    uint64_t expire_at;  /* monotonic ms the session ends, 0 = never */
    uint64_t will_at;    /* monotonic ms the delayed will fires */
    msg *will;           /* delayed will, ref held */
} session_offline;

/* An inbound QoS 2 packet id, held from its PUBLISH until PUBREL (§4.3.3).
 * PUBREC is sent only once the message is durable (the backplane said so):
 * a resend of a pending id waits for that answer. */
typedef struct qos2_id {
    uint32_t conn_tag; /* low bits of the publishing connection's id: a late
                        * answer for an earlier use of the id (before a clean
                        * start) is not taken for this one */
    uint16_t pid;
    uint8_t state; /* Q2_PENDING, Q2_DURABLE */
} qos2_id;

enum { Q2_PENDING = 1, Q2_DURABLE };

/* Retained copies a session got at SUBSCRIBE whose live copy may still be
 * on its way to it: the index changes before the record is routed
 * (node/mqtt/remote.c, node/mqtt/handle_publish.c). The newest (by record
 * time) are kept; a live delivery of the same record is then dropped. */
#define SESSION_RET_SEEN 8
typedef struct ret_seen {
    uint64_t id; /* msg id, 0 = free */
    int64_t off;
    int64_t ts;
    int32_t part; /* -1: no stream position */
} ret_seen;

/* Fields are ordered widest first so that one session per client carries
 * no padding (docs/architecture.md, "Memory per connection"). */
struct session {
    session *reg_next;
    uint64_t epoch;       /* of the cluster claim that holds it (node/mqtt/session_sync.c) */
    conn *c;              /* attached connection, owner's thread only */
    session_offline *off; /* owner's thread only; NULL while nothing is due offline */
    /* Outgoing QoS 1/2 awaiting acks: a table of 1 << inf_cap_log2 slots
     * indexed by packet id (pid & (cap - 1), pid 0 = free), so that an ack
     * finds and removes its entry in O(1), plus one slot after them whose
     * `next` and `prev` are the oldest and newest entry's slot: the send
     * order, a list through the slots (session_inflight_first/_next). */
    inflight *inf;
    /* Waiting to be sent: a ring buffer. */
    delivery *q;
    /* Inbound QoS 2 packet ids received, awaiting PUBREL (§4.3.3). */
    qos2_id *qos2_in;
    /* Subscriptions, to restore or remove them, and their index by filter
     * (open addressing, linear probing: entry + 1, 0 empty; sub_idx_cap a
     * power of two, at least twice n_subs), so that adding, finding and
     * removing one costs the same at 65,535 as at 1. */
    sub_entry *subs;
    uint32_t *sub_idx;
    /* Positions in the cluster's stream, replays (node/mqtt/session_stream.c):
     * persistent sessions on a cluster node only, NULL otherwise. */
    struct session_stream *st;
    /* SESSION_RET_SEEN entries, owner's thread only; NULL until the first
     * retained copy at SUBSCRIBE. */
    ret_seen *ret_seen;
    /* While the connected client is behind (its queue passed the
     * back-pressure mark or its output buffer filled): when it last made
     * progress (now_ms). 0 once the queue has halved and the output has
     * room. Set by the owner, read by publishers (session_behind). */
    _Atomic uint64_t backlogged_ms;
    atomic_int refs;
    _Atomic int owner; /* worker index */
    /* Deliveries posted to the owner's inbox and not handled yet: the part
     * of a backlog the owner has not seen, which publishers count too. */
    _Atomic uint32_t incoming;
    uint32_t expiry_s; /* session expiry interval in force */
    uint32_t q_head;
    uint32_t q_len;
    uint32_t q_cap;
    uint32_t q_qos0; /* QoS 0 deliveries in the queue */
    uint32_t n_subs;
    uint32_t cap_subs;
    uint32_t sub_idx_cap;
    /* 32 bits, and capacities as powers of two, so that no list's size can
     * wrap: each holds at most 65,535 (a packet id each). */
    uint32_t n_inf;
    uint32_t n_qos2_in;
    uint16_t id_len;
    uint16_t next_pid;     /* the last packet id handed out (next_pid in node/mqtt/session.c) */
    uint16_t drops_logged; /* drop_reason bits already logged since the client last connected */
    uint8_t inf_cap_log2;  /* inf holds 1 << this (0: no list) */
    uint8_t qos2_cap_log2; /* qos2_in likewise */
    _Atomic bool online;
    /* Holding the cluster's stream (node/mqtt/stream_hold.c): 1 + the worker
     * whose list holds it, 0 when not. */
    _Atomic uint8_t hold_w;
    /* Held the stream for its whole budget without catching up: holds
     * nobody until it does (node/mqtt/stream_hold.c). */
    bool hold_spent;
    uint16_t hold_used_ms; /* time held since it last caught up, up to HOLD_BUDGET_MS */
    uint8_t version;
    bool dead;       /* ended: deliveries are dropped */
    bool persistent; /* outlives its connection */
    bool registered; /* in the registry (under sess_lock) */
    /* node/mqtt/session_sync.c: 1 + the worker whose list of sessions to store
     * (dirty) or to store again (retry) holds it, 0 = none. Atomic: a
     * worker that handed the session over may still clear its mark. */
    _Atomic uint8_t dirty_w;
    _Atomic uint8_t retry_w;
    char client_id[]; /* NUL-terminated, in this allocation */
};

/* The entries a list with capacity exponent `log2` holds. */
static inline uint32_t session_list_cap(uint8_t log2)
{
    return log2 ? 1u << log2 : 0;
}

/* In-flight entries in send order, oldest first: for (f = first; f; f = next). */
static inline inflight *session_inflight_first(const session *s)
{
    return s->n_inf ? &s->inf[s->inf[session_list_cap(s->inf_cap_log2)].next] : NULL;
}

static inline inflight *session_inflight_next(const session *s, const inflight *f)
{
    const inflight *ends = &s->inf[session_list_cap(s->inf_cap_log2)];
    return f == &s->inf[ends->prev] ? NULL : &s->inf[f->next];
}

/* The bytes of a session's allocation, its client id included. */
#define SESSION_SIZE(id_len) (offsetof(session, client_id) + (size_t)(id_len) + 1u)

/* session.c */
session *session_new(broker *b, const char *client_id, size_t len, int owner);
void session_ref(session *s);
void session_unref(broker *b, session *s);
/* Deliver on the owner's thread: send now or queue. Consumes d->m's ref. */
void session_deliver(worker *w, session *s, delivery *d);
/* A retained copy at SUBSCRIBE that s did not keep after all (dropped
 * while its queue spills): its live copy is no duplicate. Owner's thread. */
void session_forget_retained(session *s, const msg *m);
/* Send queued messages while the client's receive window allows. */
void session_pump(worker *w, session *s);
void session_resend(worker *w, session *s);
mqtt_rc session_ack(worker *w, session *s, uint8_t type, uint16_t pid);
void session_reset(broker *b, session *s);
/* Release queued and in-flight messages (counted as dropped, reason
 * session-ended, when `count`). */
void session_drop_messages(broker *b, session *s, bool count);
/* Keep b->sess_online / b->sess_persistent in step with the flags. */
void session_set_online(broker *b, session *s, bool online);
void session_set_persistent(broker *b, session *s, bool persistent);
void session_free_sub_strings(session *s);
void session_end(worker *w, session *s);
/* Another node owns the client id now: end s here without its will and
 * without touching the cluster's record (node/mqtt/session_sync.c). */
void session_forget(worker *w, session *s);
/* Publish a will (consumed, may be NULL) through the backplane. */
void session_publish_will(worker *w, msg *will);
/* The connection went away: keep the session offline (persistent) or end
 * it. `will` (consumed, may be NULL) is published now, after will_delay
 * seconds, or when the session ends, whichever comes first. */
void session_detach(worker *w, session *s, msg *will, uint32_t will_delay);
void session_attach(worker *w, session *s, conn *c);
void session_add_sub(session *s, const char *filter, uint16_t len, const sub_opts *o);
/* session_add_sub for a filter the caller knows s does not have (no scan). */
void session_append_sub(session *s, const char *filter, uint16_t len, const sub_opts *o);
bool session_remove_sub(session *s, const char *filter, uint16_t len);
bool session_has_sub(const session *s, const char *filter, uint16_t len);
qos2_id *session_qos2_find(session *s, uint16_t pid);
bool session_qos2_has(session *s, uint16_t pid);
/* Hold pid: pending until the backplane answers, or durable already. The
 * caller keeps the list within the receive maximum. */
qos2_id *session_qos2_add_state(session *s, uint16_t pid, uint8_t state, uint32_t conn_tag);
void session_qos2_add(session *s, uint16_t pid); /* durable */
bool session_qos2_remove(session *s, uint16_t pid);
/* The backplane answered for a pending inbound QoS 2 id (stored or not),
 * on any worker: the session's owner marks it durable and sends PUBREC
 * (reason code rc), or clears it and tells the connection holding the
 * session now, if any (v5 PUBREC 0x97, 3.1.1 close). */
void session_qos2_report(worker *w, session *s, uint16_t pid, uint32_t conn_tag, bool stored, uint8_t rc);
/* A 3.1.1 QoS 1/2 publish the backplane cannot take: 3.1.1 has no negative
 * ack, so the connection closes (0x88 in the log), but only once the QoS 1/2
 * publishes it sent before are answered; meanwhile it is not read. */
void session_refuse_by_close(conn *c);
/* After an answer to one of c's publishes: a refusal that waited closes now. */
void session_refusal_check(conn *c);
void session_arm_offline_timer(worker *w, session *s);
/* Should a publisher to s be slowed down? While s is behind and has made
 * progress in the last BACKPRESSURE_STALL_MS: a client that took nothing
 * for that long is stuck, and it may not hold everybody else's publishers;
 * its excess is dropped (--max-queued, --max-output-buffer) instead. */
#define BACKPRESSURE_STALL_MS 2000
bool session_behind(const session *s, uint32_t mark);
/* --publisher-backpressure, at most --max-queued / 4 so that a publisher
 * on another worker, seen late, still stops well before drops; 0 = off. */
uint32_t session_backpressure_mark(const config *cfg);
/* A subscription's share group ("" if none) and its filter without "$share/g/". */
void session_split_filter(const sub_entry *e, mqtt_bytes *group, mqtt_bytes *filter);
/* The backplane could not store inbound QoS 2 id `pid`: forget it. */
void session_ack_failed(worker *w, session *s, uint16_t pid);

/* A restored outgoing entry (another node sent it): its message is read
 * again from the stream (node/mqtt/session_stream.c). */
inflight *session_inflight_restore(worker *w, session *s, uint16_t pid, uint8_t state, int32_t part, int64_t off);
void session_inflight_remove(worker *w, session *s, inflight *f);
inflight *session_inflight_find(session *s, uint16_t pid);

/* session_life.c: inbox items of a claim across workers (node/worker.c) */
void session_handle_takeover(worker *w, inbox_item *it);
void session_handle_adopt(worker *w, inbox_item *it);
void session_handle_refused(worker *w, inbox_item *it);

#endif
