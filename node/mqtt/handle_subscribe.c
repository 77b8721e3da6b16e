/* SPDX-License-Identifier: Apache-2.0 */
/* SUBSCRIBE: per filter check → index → SUBACK → retained messages. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/route.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_sync.h"
#include "node/worker.h"
#include "proto/topic.h"

/* The reason code for one filter (§3.9.3): granted QoS or a failure. */
static uint8_t check_filter(conn *c, const mqtt_sub *e, uint32_t sub_id, mqtt_bytes *group, mqtt_bytes *filter)
{
    config *cfg = c->w->b->cfg;
    int shared = mqtt_share_parse(e->filter.p, e->filter.len, group, filter);
    if (shared < 0) {
        return MQTT_RC_TOPIC_FILTER_INVALID;
    }
    if (shared == 0) {
        group->p = NULL;
        group->len = 0;
        *filter = e->filter;
        if (!mqtt_topic_filter_valid(filter->p, filter->len)) {
            return MQTT_RC_TOPIC_FILTER_INVALID;
        }
    } else if (!cfg->shared_subscriptions) {
        return MQTT_RC_SHARED_SUB_NOT_SUPPORTED;
    } else if (e->no_local && c->version == MQTT_V5) {
        /* §3.8.3.1: No Local on a shared subscription is a protocol error. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
    limit_kind l = limits_topic_check(cfg, filter->p, filter->len);
    if (l != LIMIT_COUNT) {
        limits_refused(c, l, "action=suback-0x8f");
        return MQTT_RC_TOPIC_FILTER_INVALID; /* 3.1.1: 0x80 */
    }
    if (!cfg->wildcard_subscriptions && mqtt_topic_filter_has_wildcard(filter->p, filter->len)) {
        return MQTT_RC_WILDCARD_SUB_NOT_SUPPORTED;
    }
    if (sub_id && !cfg->subscription_identifiers) {
        return MQTT_RC_SUB_ID_NOT_SUPPORTED;
    }
    if (!auth_can_subscribe(c, filter->p, filter->len)) {
        sh_log(SH_INFO, "event=acl_denied action=subscribe conn=%llu client=%s username=%s filter=%.*s",
               (unsigned long long)c->id, c->s ? c->s->client_id : "-", c->username ? c->username : "-",
               (int)e->filter.len, (const char *)e->filter.p);
        return MQTT_RC_NOT_AUTHORIZED; /* 3.1.1: 0x80 */
    }
    return e->qos < cfg->max_qos ? e->qos : (uint8_t)cfg->max_qos;
}

/* --max-subscriptions: a new filter beyond it is refused with 0x97 (3.1.1:
 * 0x80); one the session already has only changes its options. */
static uint8_t check_quota(conn *c, const mqtt_sub *e)
{
    int max = c->w->b->cfg->limits.max_subscriptions;
    session *s = c->s;
    if (max == 0 || s->n_subs < (uint32_t)max ||
        session_has_sub(s, (const char *)e->filter.p, (uint16_t)e->filter.len)) {
        return MQTT_RC_SUCCESS;
    }
    char detail[48];
    snprintf(detail, sizeof(detail), "action=suback-0x97 max=%d", max);
    limits_refused(c, LIMIT_SUBSCRIPTIONS, detail);
    return MQTT_RC_QUOTA_EXCEEDED;
}

typedef struct retained_job {
    mqtt_bytes filter;
    sub_opts opts;
} retained_job;

/* A persistent session on a cluster node: SUBACK (and the retained
 * messages after it) once the session's store has recorded the new
 * subscriptions, so that an acknowledged subscription survives this node
 * (node/mqtt/session_sync.c). */
static bool defer_suback(conn *c, const mqtt_subscribe *p, const uint8_t *codes, uint32_t n, const bool *send_retained,
                         uint32_t sub_id)
{
    uint32_t n_ret = 0;
    for (uint32_t k = 0; k < n; k++) {
        n_ret += send_retained[k];
    }
    sync_retained *ret = n_ret ? sh_malloc(n_ret * sizeof(sync_retained)) : NULL;
    mqtt_bytes cur = p->entries;
    mqtt_sub e;
    uint32_t j = 0;
    for (uint32_t k = 0; k < n && mqtt_sub_next(&cur, c->version, &e); k++) {
        if (send_retained[k]) {
            sub_opts o = {codes[k], e.no_local, e.retain_as_published, e.retain_handling, sub_id};
            ret[j].filter = e.filter;
            ret[j++].opts = o;
        }
    }
    bool deferred = sync_defer_suback(c->w, c, p->packet_id, codes, n, ret, j);
    sh_free(ret, n_ret * sizeof(sync_retained));
    return deferred;
}

mqtt_rc handle_subscribe(conn *c, const mqtt_subscribe *p)
{
    worker *w = c->w;
    broker *b = w->b;
    session *s = c->s;
    uint32_t sub_id = mqtt_props_has(&p->props, MQTT_PROP_SUBSCRIPTION_ID) ? p->props.sub_id : 0;
    uint8_t stack_codes[64];
    uint8_t *codes = p->count <= 64 ? stack_codes : sh_malloc(p->count);
    bool *send_retained = sh_calloc(p->count, sizeof(bool));
    mqtt_bytes cur = p->entries;
    mqtt_sub e;
    uint32_t i = 0;
    mqtt_rc fatal = MQTT_RC_SUCCESS;
    pthread_rwlock_wrlock(&b->subs_lock);
    while (mqtt_sub_next(&cur, c->version, &e)) {
        mqtt_bytes group, filter;
        uint8_t rc = check_filter(c, &e, sub_id, &group, &filter);
        if (rc < 0x80) {
            uint8_t q = check_quota(c, &e);
            rc = q ? q : rc;
        }
        if (rc == MQTT_RC_PROTOCOL_ERROR) {
            fatal = MQTT_RC_PROTOCOL_ERROR;
        }
        if (rc < 0x80) {
            sub_opts o = {e.qos < rc ? e.qos : rc, e.no_local, e.retain_as_published, e.retain_handling, sub_id};
            o.qos = rc;
            bool replaced = false;
            trie_add(b->subs, filter, group, s, &o, &replaced);
            session_add_sub(s, (const char *)e.filter.p, (uint16_t)e.filter.len, &o);
            /* §3.3.1.3 Retain Handling: 0 always, 1 only if new, 2 never;
             * shared subscriptions never get retained messages (§4.8.2). */
            send_retained[i] = group.len == 0 && (e.retain_handling == 0 || (e.retain_handling == 1 && !replaced));
        }
        codes[i++] = c->version == MQTT_V5 ? rc : mqtt_rc_to_v311_suback(rc);
    }
    pthread_rwlock_unlock(&b->subs_lock);
    sync_mark_dirty(w, s);
    if (fatal == MQTT_RC_SUCCESS && defer_suback(c, p, codes, i, send_retained, sub_id)) {
        fatal = MQTT_RC_SUCCESS; /* SUBACK and retained messages once the store is done */
    } else if (fatal == MQTT_RC_SUCCESS) {
        send_suback(c, p->packet_id, codes, i);
        cur = p->entries;
        for (uint32_t k = 0; k < i && mqtt_sub_next(&cur, c->version, &e); k++) {
            if (send_retained[k]) {
                sub_opts o = {codes[k], e.no_local, e.retain_as_published, e.retain_handling, sub_id};
                route_retained_on_subscribe(w, s, e.filter, &o);
            }
        }
    }
    sh_free(send_retained, p->count * sizeof(bool));
    if (codes != stack_codes) {
        sh_free(codes, p->count);
    }
    return fatal;
}
