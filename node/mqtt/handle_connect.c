/* SPDX-License-Identifier: Apache-2.0 */
/* CONNECT: check → claim the client id → CONNACK. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_sync.h"
#include "node/worker.h"
#include "proto/topic.h"
#include "proto/utf8.h"

/* §3.1.3.1: a server must accept 1..23 of [0-9a-zA-Z]; we accept any valid
 * UTF-8 up to this length. */
#define MAX_CLIENT_ID 256

static void assign_client_id(conn *c, char *buf, size_t len)
{
    snprintf(buf, len, "auto-%s-%llu", c->w->b->node_id, (unsigned long long)c->id);
}

static mqtt_rc check_connect(conn *c, const mqtt_connect *p)
{
    broker *b = c->w->b;
    if (p->client_id.len > MAX_CLIENT_ID) {
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    if (p->client_id.len == 0 && !p->clean_start && p->version != MQTT_V5) {
        /* §3.1.3-8: 3.1.1 refuses an empty id without clean session (rc 2). */
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    if (p->client_id.len == 0 && p->version == MQTT_V31) {
        /* MQTT 3.1 §3.1 CONNECT payload: "The Client Identifier (Client ID)
         * is between 1 and 23 characters long"; a server answers a bad one
         * with return code 2 (Identifier Rejected). Only 3.1.1 allowed an
         * empty id. Longer ids stay accepted, as Mosquitto does. */
        return MQTT_RC_CLIENT_ID_INVALID;
    }
    if (p->has_will) {
        if (p->will_qos > b->cfg->max_qos) {
            return MQTT_RC_QOS_NOT_SUPPORTED;
        }
        if (p->will_retain && !b->cfg->retain_available) {
            return MQTT_RC_RETAIN_NOT_SUPPORTED;
        }
        if (!mqtt_topic_name_valid(p->will_topic.p, p->will_topic.len)) {
            return MQTT_RC_TOPIC_NAME_INVALID;
        }
        /* A will is a PUBLISH to come: the same topic limits, refused now
         * (CONNACK 0x90; 3.1.1 has only 0x03) rather than dropped later. */
        limit_kind l = limits_topic_check(b->cfg, p->will_topic.p, p->will_topic.len);
        if (l != LIMIT_COUNT) {
            limits_refused(c, l, "action=connack-refused what=will");
            return MQTT_RC_TOPIC_NAME_INVALID;
        }
    }
    if (mqtt_props_has(&p->props, MQTT_PROP_AUTH_METHOD)) {
        /* §4.12.0-1: an unsupported method is refused with 0x8C. A supported
         * one replaces the user name / password check (handle_auth.c). */
        return handle_auth_method_ok(c, &p->props) ? MQTT_RC_SUCCESS : MQTT_RC_BAD_AUTH_METHOD;
    }
    return auth_check_connect(c, p); /* sets c->username */
}

static void take_options(conn *c, const mqtt_connect *p)
{
    broker *b = c->w->b;
    c->version = p->version;
    c->clean_start = p->clean_start;
    c->keepalive = p->keepalive;
    if (p->version == MQTT_V5 && (c->keepalive > b->cfg->max_keepalive || c->keepalive == 0)) {
        /* v5 lets the server impose its keep alive (Server Keep Alive); 3.1.1
         * cannot tell the client, so its own keep alive is honoured. */
        c->keepalive = (uint16_t)b->cfg->max_keepalive;
    }
    const mqtt_props *pr = &p->props;
    c->request_problem_info = true;
    c->session_expiry = 0;
    if (p->version == MQTT_V5) {
        if (mqtt_props_has(pr, MQTT_PROP_SESSION_EXPIRY)) {
            c->session_expiry = pr->session_expiry;
        }
        if (mqtt_props_has(pr, MQTT_PROP_RECEIVE_MAX)) {
            c->client_receive_max = pr->receive_max;
        }
        if (mqtt_props_has(pr, MQTT_PROP_MAX_PACKET_SIZE)) {
            c->client_max_packet = pr->max_packet_size;
        }
        if (mqtt_props_has(pr, MQTT_PROP_TOPIC_ALIAS_MAX)) {
            c->client_alias_max = pr->topic_alias_max;
        }
        if (mqtt_props_has(pr, MQTT_PROP_REQUEST_PROBLEM_INFO)) {
            c->request_problem_info = pr->request_problem_info != 0;
        }
        c->alias_max = (uint16_t)b->cfg->max_topic_alias;
    } else if (!p->clean_start) {
        /* 3.1.1 clean session 0: the session never expires on its own. */
        c->session_expiry = UINT32_MAX;
    }
    if (c->session_expiry > b->cfg->max_session_expiry) { /* "never" (UINT32_MAX) too */
        c->session_expiry = b->cfg->max_session_expiry;
    }
}

static mqtt_rc make_will(conn *c, const mqtt_connect *p)
{
    if (!p->has_will) {
        return MQTT_RC_SUCCESS;
    }
    c->will = msg_new(p->will_topic, &p->will_props, p->will_payload, p->will_qos, p->will_retain, 0, now_ms());
    if (!c->will) {
        return MQTT_RC_QUOTA_EXCEEDED;
    }
    if (mqtt_props_has(&p->will_props, MQTT_PROP_WILL_DELAY)) {
        c->will_delay = p->will_props.will_delay;
    }
    return MQTT_RC_SUCCESS;
}

static void connack_props(conn *c, mqtt_props *pr, bool assigned)
{
    broker *b = c->w->b;
    config *cfg = b->cfg;
    memset(pr, 0, sizeof(*pr));
    pr->present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX) | MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) |
                  MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX);
    pr->receive_max = (uint16_t)cfg->receive_maximum;
    pr->max_packet_size = cfg->max_packet_size;
    pr->topic_alias_max = (uint16_t)cfg->max_topic_alias;
    if (cfg->max_qos < 2) {
        pr->present |= MQTT_PROP_BIT(MQTT_PROP_MAX_QOS);
        pr->max_qos = (uint8_t)cfg->max_qos;
    }
    /* Announce every feature flag, so clients never have to guess. */
    pr->present |= MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) | MQTT_PROP_BIT(MQTT_PROP_WILDCARD_AVAILABLE) |
                   MQTT_PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) | MQTT_PROP_BIT(MQTT_PROP_SHARED_AVAILABLE);
    pr->retain_available = cfg->retain_available;
    pr->wildcard_available = cfg->wildcard_subscriptions;
    pr->sub_id_available = cfg->subscription_identifiers;
    pr->shared_available = cfg->shared_subscriptions;
    if (c->session_expiry != c->requested_expiry) {
        pr->present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
        pr->session_expiry = c->session_expiry;
    }
    if (c->keepalive != c->requested_keepalive) {
        pr->present |= MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE);
        pr->server_keep_alive = c->keepalive;
    }
    if (assigned) {
        pr->present |= MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID);
        pr->assigned_client_id.p = (const uint8_t *)c->client_id;
        pr->assigned_client_id.len = (uint32_t)strlen(c->client_id);
    }
}

/* The session is ours: attach, CONNACK, resend what was in flight. */
void connect_finish(conn *c, session *s, bool clean)
{
    worker *w = c->w;
    /* A session that was not persistent would have ended with its
     * connection: resuming it would hand over state the CONNACK denies.
     * The cluster's stored state stands in for a session this node does
     * not have (node/mqtt/session_sync.c). */
    bool present = sync_claim_finish(w, c, s, clean);
    session_set_persistent(w->b, s, c->session_expiry > 0);
    s->expiry_s = c->session_expiry;
    s->version = c->version;
    session_attach(w, s, c);
    conn_set_state(c, CS_ACTIVE);
    sync_mark_dirty(w, s); /* expiry and will as this CONNECT set them */
    if (c->version == MQTT_V5) {
        mqtt_props pr;
        connack_props(c, &pr, c->assigned_id);
        handle_auth_connack_props(c, &pr);
        send_connack(c, present, MQTT_RC_SUCCESS, &pr);
        handle_auth_end(c);
    } else {
        send_connack(c, present, 0, NULL);
    }
    sh_log(SH_INFO, "event=connect conn=%llu client=%s peer=%s version=%u clean=%d keepalive=%u session_present=%d",
           (unsigned long long)c->id, s->client_id, c->peer, c->version, clean, c->keepalive, present);
    session_resend(w, s);
    /* The session holds the id from now on: one copy per connection. */
    sh_free(c->client_id, strlen(c->client_id) + 1);
    c->client_id = NULL;
    conn_resume_reading(c, PAUSE_CLAIM);
}

/* Claim the client id in this process, once the cluster claim gave it an
 * epoch: a new session at once, or ask the worker that owns the existing
 * one to hand it over. The session's epoch is the cluster claim's, so
 * claims here happen in the cluster's order: an older claim that comes
 * late loses. Epochs never go back, not even for a record made afresh
 * (cluster/rk_session.c), so there is no exception to that order. */
void connect_claim(conn *c)
{
    worker *w = c->w;
    broker *b = w->b;
    size_t len = strlen(c->client_id);
    bool clustered = sync_on(b);
    uint64_t epoch = sync_claim_epoch(c);
    pthread_mutex_lock(&b->sess_lock);
    session *s = registry_get(b, c->client_id, len);
    if (!clustered) {
        /* One process: the registry orders the claims. */
        epoch = s ? s->epoch + 1 : 1;
    } else if (sync_claim_revoked_locked(b, c) || (s && epoch <= s->epoch)) {
        pthread_mutex_unlock(&b->sess_lock);
        conn_close(c, MQTT_RC_SESSION_TAKEN_OVER, "a newer connection claimed the client id");
        return;
    }
    if (!s && registry_full(b)) {
        pthread_mutex_unlock(&b->sess_lock);
        limits_refuse_session_or_close(c);
        return;
    }
    if (!s) {
        s = session_new(b, c->client_id, len, w->id);
        s->epoch = epoch;
        registry_put(b, s);
        pthread_mutex_unlock(&b->sess_lock);
        connect_finish(c, s, c->clean_start);
        session_unref(b, s);
        return;
    }
    s->epoch = epoch;
    c->claim_epoch = epoch;
    session_ref(s);
    pthread_mutex_unlock(&b->sess_lock);
    conn_set_state(c, CS_CLAIMING);
    c->paused |= PAUSE_CLAIM;
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_TAKEOVER;
    it.s = s;
    it.from = w->id;
    it.conn_id = c->id;
    it.epoch = c->claim_epoch;
    it.clean = c->clean_start;
    worker_post(w, atomic_load(&s->owner), &it);
}

mqtt_rc handle_connect(conn *c, const mqtt_connect *p)
{
    c->version = p->version;
    mqtt_rc rc = check_connect(c, p);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    c->requested_keepalive = p->keepalive;
    take_options(c, p);
    c->requested_expiry = p->version == MQTT_V5 && mqtt_props_has(&p->props, MQTT_PROP_SESSION_EXPIRY)
                              ? p->props.session_expiry
                              : c->session_expiry;
    rc = make_will(c, p);
    if (rc != MQTT_RC_SUCCESS) {
        return rc;
    }
    if (p->client_id.len == 0) {
        char id[160];
        assign_client_id(c, id, sizeof(id));
        c->client_id = sh_strndup(id, strlen(id));
        c->assigned_id = true;
    } else {
        c->client_id = sh_strndup((const char *)p->client_id.p, p->client_id.len);
    }
    if (c->paused & PAUSE_HASH) {
        conn_set_state(c, CS_AUTH); /* auth_hash_done() goes on once the password is checked (node/auth/hash.c) */
        return MQTT_RC_SUCCESS;
    }
    if (p->version == MQTT_V5 && mqtt_props_has(&p->props, MQTT_PROP_AUTH_METHOD)) {
        return handle_auth_connect(c, &p->props); /* connect_proceed() once it succeeds */
    }
    return connect_proceed(c);
}

mqtt_rc connect_proceed(conn *c)
{
    msg *will = c->will;
    if (will && !auth_can_publish(c, will->topic, will->topic_len)) {
        /* The ACL must not be bypassed through a will (mosquitto refuses too). */
        sh_log(SH_INFO, "event=acl_denied action=will conn=%llu client=%s topic=%.*s", (unsigned long long)c->id,
               c->client_id, (int)will->topic_len, (const char *)will->topic);
        return MQTT_RC_NOT_AUTHORIZED;
    }
    if (bp_is_fenced(c->w->b->bp)) {
        /* Cut off from Redis past its lease: another node may own this
         * client id by now (invariant 3). CONNACK 0x88 Server unavailable
         * (3.1.1: return code 3); the client retries, through a node that
         * holds its lease (/health/ready says not ready meanwhile). */
        conn_refuse(c, MQTT_RC_SERVER_UNAVAILABLE, "membership lease lost: cut off from Redis");
        return MQTT_RC_SUCCESS; /* refused and logged here: not bad input */
    }
    sync_claim_start(c); /* then connect_claim() */
    return MQTT_RC_SUCCESS;
}
