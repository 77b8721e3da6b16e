/* SPDX-License-Identifier: Apache-2.0 */
/* PUBLISH from a client: check → resolve alias → QoS 0: store retained and
 * route now; QoS 1/2: once the backplane says it is durable, store
 * retained, route and acknowledge. On a cluster node the retained index
 * follows the backplane's stream instead (bp_retained_from_stream): the
 * node stores nothing itself, so Kafka's order decides on every node. */
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/route.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/share.h"
#include "node/worker.h"
#include "proto/topic.h"

/* §3.3.2.3.4: resolve or learn a topic alias. */
static mqtt_rc resolve_alias(conn *c, mqtt_publish *p)
{
    if (!mqtt_props_has(&p->props, MQTT_PROP_TOPIC_ALIAS)) {
        return p->topic.len ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR;
    }
    uint16_t a = p->props.topic_alias;
    if (a == 0 || a > c->alias_max) {
        return MQTT_RC_TOPIC_ALIAS_INVALID;
    }
    conn_ext *x = conn_ext_get(c);
    if (!x->aliases) {
        x->aliases = sh_calloc(c->alias_max + 1u, sizeof(mqtt_bytes));
    }
    mqtt_bytes *slot = &x->aliases[a];
    if (p->topic.len == 0) {
        if (slot->len == 0) {
            return MQTT_RC_PROTOCOL_ERROR; /* alias never set */
        }
        p->topic = *slot;
        return MQTT_RC_SUCCESS;
    }
    sh_free((void *)slot->p, slot->len);
    uint8_t *copy = sh_malloc(p->topic.len);
    memcpy(copy, p->topic.p, p->topic.len);
    slot->p = copy;
    slot->len = p->topic.len;
    return MQTT_RC_SUCCESS;
}

static mqtt_rc check_publish(conn *c, const mqtt_publish *p)
{
    config *cfg = c->w->b->cfg;
    if (p->qos > cfg->max_qos) {
        return MQTT_RC_QOS_NOT_SUPPORTED;
    }
    if (mqtt_props_has(&p->props, MQTT_PROP_SUBSCRIPTION_ID)) {
        /* §3.3.4-6: only a server puts Subscription Identifiers in PUBLISH. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (p->retain && !cfg->retain_available) {
        return MQTT_RC_RETAIN_NOT_SUPPORTED;
    }
    return MQTT_RC_SUCCESS;
}

static void store_retained(worker *w, msg *m)
{
    broker *b = w->b;
    if (bp_retained_from_stream(b->bp)) {
        return; /* stored when the stream brings it back, in Kafka's order */
    }
    pthread_rwlock_wrlock(&b->retain_lock);
    retain_set(b->retained, m);
    pthread_rwlock_unlock(&b->retain_lock);
}

typedef struct ack_ctx {
    uint64_t conn_id; /* the publishing connection, looked up again */
    worker *w;
    session *s; /* ref held: QoS 2 is answered through the session */
    msg *m;     /* ref held: routed here once durable */
    uint16_t pid;
    uint8_t qos;
} ack_ctx;

/* Inside bp_publish on this thread: a callback that runs now is part of
 * handling the client's input, which flushes the outbox once at its end. */
static _Thread_local bool in_bp_publish;

/* The message is durable: now local subscribers may see it (and a
 * retained one be stored). The reason code for the publisher: 0x10 when
 * nobody matched and the backplane knows every subscriber (MQTT 5
 * §3.4.2.1); a cluster node cannot know that other nodes have none. */
static uint8_t route_durable(worker *w, msg *m, conn *c)
{
    if (m->retain) {
        store_retained(w, m);
    }
    uint32_t matched = 0;
    bool behind = route_publish(w, m, &matched);
    if (c && c->state == CS_ACTIVE) {
        limits_backpressure(c, behind);
    }
    if (matched == 0 && bp_knows_all_subscribers(w->b->bp)) {
        return MQTT_RC_NO_MATCHING_SUBSCRIBERS;
    }
    return MQTT_RC_SUCCESS;
}

static void answer_qos1(conn *c, bp_status st, uint16_t pid, uint8_t rc)
{
    if (!c || c->state != CS_ACTIVE) {
        return;
    }
    if (c->inbound_pending) {
        c->inbound_pending--;
    }
    if (st == BP_OK) {
        send_ack(c, MQTT_PUBACK, pid, c->version == MQTT_V5 ? rc : 0, NULL);
        session_refusal_check(c);
    } else if (c->version == MQTT_V5) {
        send_ack(c, MQTT_PUBACK, pid, MQTT_RC_QUOTA_EXCEEDED, "cluster backend unavailable");
    } else {
        /* 3.1.1 has no negative ack: closing is the only honest answer. */
        session_refuse_by_close(c);
    }
}

/* Backplane durability answer for a QoS 1/2 publish: only now may the
 * client hear that its message is safe, and only now do local subscribers
 * get it, so that a refused message reached nobody. QoS 1 is answered to
 * the connection that sent it; QoS 2 through the session, to whichever
 * connection holds it now (a resend of the id waited for this). */
static void durable_cb(bp_status st, void *arg)
{
    ack_ctx *a = arg;
    worker *w = a->w;
    atomic_fetch_sub_explicit(&w->drain.inflight, 1, memory_order_relaxed); /* a drain waits for it */
    conn *c = worker_find_conn(w, a->conn_id);
    if (st == BP_OK) {
        /* Its place in the stream: sessions keep positions by it. No one
         * else holds the message yet. */
        bp_publish_ref(&a->m->part, &a->m->off);
        a->m->own = true;
    }
    uint8_t rc = st == BP_OK ? route_durable(w, a->m, c) : MQTT_RC_QUOTA_EXCEEDED;
    if (a->qos == 1) {
        answer_qos1(c, st, a->pid, rc);
    } else {
        session_qos2_report(w, a->s, a->pid, (uint32_t)a->conn_id, st == BP_OK, rc);
    }
    msg_unref(a->m);
    session_unref(w->b, a->s);
    sh_free(a, sizeof(*a));
    if (!in_bp_publish) {
        worker_flush(w); /* deliveries for other workers' sessions */
    }
}

static void to_backplane(conn *c, msg *m, uint16_t pid)
{
    bp_message bm = remote_bp_message(m);
    /* No Local on the other nodes (§3.8.3.1). */
    bm.client_id = c->s ? (const uint8_t *)c->s->client_id : NULL;
    bm.client_id_len = c->s ? c->s->id_len : 0;
    if (m->qos == 0) {
        bp_publish(c->w->b->bp, c->w->id, &bm, NULL, NULL);
        return;
    }
    ack_ctx *a = sh_malloc(sizeof(*a));
    a->conn_id = c->id;
    a->w = c->w;
    session_ref(c->s);
    a->s = c->s;
    a->m = msg_ref(m);
    a->pid = pid;
    a->qos = m->qos;
    atomic_fetch_add_explicit(&c->w->drain.inflight, 1, memory_order_relaxed);
    in_bp_publish = true;
    bp_publish(c->w->b->bp, c->w->id, &bm, durable_cb, a);
    in_bp_publish = false;
}

/* A QoS 2 PUBLISH with an id the session holds: acknowledged once durable
 * (§4.3.3), never delivered again. A pending one gets its PUBREC when the
 * backplane answers (session_qos2_report). */
static mqtt_rc answer_resend(conn *c, uint16_t pid)
{
    qos2_id *e = session_qos2_find(c->s, pid);
    if (e->state == Q2_DURABLE) {
        send_ack(c, MQTT_PUBREC, pid, MQTT_RC_SUCCESS, NULL);
    }
    return MQTT_RC_SUCCESS;
}

/* The backplane cannot make the message durable: refuse it before anyone
 * sees it, so a publisher that retries causes no duplicates. */
static mqtt_rc refuse_unavailable(conn *c, const mqtt_publish *p)
{
    if (c->version != MQTT_V5) {
        /* 3.1.1 has no negative ack: closing is the only honest answer. */
        session_refuse_by_close(c);
        return MQTT_RC_SUCCESS;
    }
    send_ack(c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id, MQTT_RC_QUOTA_EXCEEDED,
             "cluster backend unavailable");
    return MQTT_RC_SUCCESS;
}

/* The ACL denies this topic. v5 QoS 1/2: PUBACK/PUBREC 0x87. QoS 0 and
 * 3.1.1: acknowledge as usual and drop (as mosquitto does), so a 3.1.1
 * client is not disconnected for something it cannot be told about. */
static mqtt_rc refuse_denied(conn *c, const mqtt_publish *p)
{
    sh_log(SH_INFO, "event=acl_denied action=publish conn=%llu client=%s username=%s topic=%.*s qos=%u",
           (unsigned long long)c->id, c->s ? c->s->client_id : "-", c->username ? c->username : "-", (int)p->topic.len,
           (const char *)p->topic.p, p->qos);
    limits_count_drop(c->w, NULL, DROP_ACL_DENIED, 1);
    if (p->qos == 0) {
        return MQTT_RC_SUCCESS;
    }
    if (c->version == MQTT_V5) {
        send_ack(c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id, MQTT_RC_NOT_AUTHORIZED, NULL);
        return MQTT_RC_SUCCESS;
    }
    if (p->qos == 2) {
        /* Finish the exchange: the PUBREL that follows gets its PUBCOMP. */
        if (!session_qos2_has(c->s, p->packet_id)) {
            session_qos2_add(c->s, p->packet_id);
        }
        send_ack(c, MQTT_PUBREC, p->packet_id, MQTT_RC_SUCCESS, NULL);
        return MQTT_RC_SUCCESS;
    }
    send_ack(c, MQTT_PUBACK, p->packet_id, MQTT_RC_SUCCESS, NULL);
    return MQTT_RC_SUCCESS;
}

/* The topic is well formed but over --max-topic-levels/--max-topic-length.
 * MQTT 5 §3.4.2.1 and §3.5.2.1 give 0x90 (Topic Name invalid: "not
 * malformed, but not accepted by this Server") for PUBACK and PUBREC, so
 * QoS 1/2 is refused there and the connection stays up. A QoS 0 PUBLISH has
 * no acknowledgement: §4.13.2 then leaves DISCONNECT with the same code as
 * the only way to tell the client, which beats dropping it unseen. 3.1.1
 * has no negative acknowledgement at all, so it closes (§4.8). */
static mqtt_rc refuse_topic(conn *c, const mqtt_publish *p, limit_kind l)
{
    if (c->version != MQTT_V5 || p->qos == 0) {
        limits_refused(c, l, "action=close");
        return MQTT_RC_TOPIC_NAME_INVALID;
    }
    limits_refused(c, l, p->qos == 1 ? "action=puback-0x90" : "action=pubrec-0x90");
    /* A failed PUBREC ends the QoS 2 exchange (§4.3.3): no id is kept. */
    send_ack(c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id, MQTT_RC_TOPIC_NAME_INVALID,
             l == LIMIT_TOPIC_LEVELS ? "too many topic levels" : "topic too long");
    return MQTT_RC_SUCCESS;
}

/* Would one more QoS 1/2 publish pass the receive maximum? QoS 1 counts
 * until its PUBACK on this connection; QoS 2 until its PUBREL, for every id
 * the session holds, those of earlier connections included: the client
 * counts them too (§4.9, until PUBCOMP), and a session that kept them
 * across reconnects without bound once overflowed its id list. */
static bool inbound_full(const conn *c, uint32_t max)
{
    return (uint32_t)c->inbound_pending + c->s->n_qos2_in >= max;
}

mqtt_rc handle_publish(conn *c, const mqtt_publish *in)
{
    worker *w = c->w;
    mqtt_publish p = *in;
    mqtt_rc rc = check_publish(c, &p);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    /* Before alias resolution: a topic over the limits is never learnt as
     * an alias, so an aliased topic has always been checked. */
    limit_kind l = p.topic.len ? limits_topic_check(w->b->cfg, p.topic.p, p.topic.len) : LIMIT_COUNT;
    if (l != LIMIT_COUNT) {
        return refuse_topic(c, &p, l);
    }
    if (c->version == MQTT_V5) {
        rc = resolve_alias(c, &p);
        if (rc != MQTT_RC_SUCCESS) {
            return rc;
        }
    }
    bool resend = p.qos == 2 && session_qos2_has(c->s, p.packet_id);
    if (p.qos > 0 && !resend && inbound_full(c, (uint32_t)w->b->cfg->receive_maximum)) {
        limits_refused(c, LIMIT_RECEIVE_MAX, "action=close");
        return MQTT_RC_RECEIVE_MAX_EXCEEDED; /* §3.3.4-9 */
    }
    /* The broker's hand-overs of shared messages between nodes travel
     * under this prefix (node/mqtt/share.c): no client may send one. */
    bool reserved = p.topic.len >= sizeof(SHARE_TOPIC_PREFIX) - 1 &&
                    !memcmp(p.topic.p, SHARE_TOPIC_PREFIX, sizeof(SHARE_TOPIC_PREFIX) - 1);
    if (reserved || !auth_can_publish(c, p.topic.p, p.topic.len)) {
        return refuse_denied(c, &p);
    }
    if (resend) {
        return answer_resend(c, p.packet_id);
    }
    atomic_fetch_add_explicit(&w->msgs_in, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics.msgs_in_qos[p.qos], 1, memory_order_relaxed); /* metrics */
    if (p.qos > 0 && !bp_is_ready(w->b->bp)) {
        return refuse_unavailable(c, &p);
    }
    if (p.retain && !limits_retain_admit(c, &p)) {
        return MQTT_RC_SUCCESS; /* --max-retained: refused with 0x97 */
    }
    msg *m = msg_new(p.topic, &p.props, p.payload, p.qos, p.retain, (uint64_t)(uintptr_t)c->s, now_ms());
    if (!m) {
        return MQTT_RC_QUOTA_EXCEEDED;
    }
    if (p.qos == 0) {
        /* Nothing to acknowledge: local subscribers get it at once. */
        if (p.retain) {
            store_retained(w, m);
        }
        bool behind = route_publish(w, m, NULL);
        to_backplane(c, m, 0);
        limits_backpressure(c, behind);
        msg_unref(m);
        return MQTT_RC_SUCCESS;
    }
    /* Counted before the backplane's answer, which may come at once. */
    if (p.qos == 1) {
        c->inbound_pending++;
    } else {
        session_qos2_add_state(c->s, p.packet_id, Q2_PENDING, (uint32_t)c->id);
    }
    to_backplane(c, m, p.packet_id); /* routes once durable (durable_cb) */
    msg_unref(m);
    return MQTT_RC_SUCCESS;
}
