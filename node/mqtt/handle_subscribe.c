/* SPDX-License-Identifier: Apache-2.0 */
/* SUBSCRIBE: per filter check → index → (a new shared group's view) → SUBACK
 * → retained messages. */
#include <event2/event.h>
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
#include "node/net/conn_io.h"
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
    } else if ((size_t)group->len + 1 + filter->len > SHARE_KEY_MAX) {
        char detail[48];
        snprintf(detail, sizeof(detail), "action=suback-0x8f key_max=%u", SHARE_KEY_MAX);
        limits_refused(c, LIMIT_SHARED_GROUPS, detail);
        return MQTT_RC_TOPIC_FILTER_INVALID; /* 3.1.1: 0x80 */
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
    uint32_t max = limits_max_subscriptions(c->w->b->cfg);
    session *s = c->s;
    if (s->n_subs < max || session_has_sub(s, (const char *)e->filter.p, (uint16_t)e->filter.len)) {
        return MQTT_RC_SUCCESS;
    }
    char detail[48];
    snprintf(detail, sizeof(detail), "action=suback-0x97 max=%u", max);
    limits_refused(c, LIMIT_SUBSCRIPTIONS, detail);
    return MQTT_RC_QUOTA_EXCEEDED;
}

/* --max-shared-groups: a filter that would found a new shared group on a
 * node holding that many (groups left in the last refreshes, the ghosts,
 * included: a membership refresh carries both) is refused with 0x97
 * (3.1.1: 0x80). A member joining a group that exists is not a new one.
 * n_groups: the node's count, the SUBSCRIBE's own new groups included
 * (the caller adds them). Under subs_lock. */
static uint8_t check_groups(conn *c, mqtt_bytes group, mqtt_bytes filter, size_t n_groups)
{
    trie *t = c->w->b->subs;
    uint32_t max = c->w->b->cfg->limits.max_shared_groups;
    if (group.len == 0 || max == 0 || n_groups < max || trie_has_group(t, filter, group)) {
        return MQTT_RC_SUCCESS;
    }
    char detail[48];
    snprintf(detail, sizeof(detail), "action=suback-0x97 max=%u", max);
    limits_refused(c, LIMIT_SHARED_GROUPS, detail);
    return MQTT_RC_QUOTA_EXCEEDED;
}

/* SUBACK, then the retained messages the SUBSCRIBE asked for. A persistent
 * session on a cluster node gets them once the session's store has recorded
 * the new subscriptions, so that an acknowledged subscription survives this
 * node (node/mqtt/session_sync.c). */
static void subscribe_ack(conn *c, uint16_t pid, const uint8_t *codes, uint32_t n, const sync_retained *ret,
                          uint32_t n_ret)
{
    if (sync_defer_suback(c->w, c, pid, codes, n, ret, n_ret)) {
        return;
    }
    send_suback(c, pid, codes, n);
    for (uint32_t k = 0; k < n_ret; k++) {
        route_retained_on_subscribe(c->w, c->s, ret[k].filter, &ret[k].opts);
    }
}

/* ---- a SUBACK that waits for a shared group's view ----
 * On a cluster node a new shared group's member gets its SUBACK once this
 * node's view knows the group (bp_share_ready): from then on the node
 * delivers the group's messages by the cluster's rule, so each goes to one
 * member from the first (docs/architecture.md, "Shared subscriptions across
 * nodes"). The wait is one refresh round trip to Redis; polled on the
 * worker's loop, bounded by SHARE_WAIT_MAX_MS. */
#define SHARE_WAIT_POLL_MS 10
#define SHARE_WAIT_MAX_MS 10000

typedef struct share_wait {
    struct event *ev;
    worker *w;
    session *s; /* ref held */
    uint64_t conn_id;
    uint64_t deadline;
    uint16_t pid;
    uint32_t n, n_ret, n_keys;
    uint8_t *codes;
    sync_retained *ret; /* filters copied */
    mqtt_bytes *keys;   /* "group/filter", copied */
} share_wait;

static void bytes_copy(mqtt_bytes *to, const uint8_t *p, size_t len)
{
    uint8_t *d = sh_malloc(len ? len : 1);
    memcpy(d, p, len);
    to->p = d;
    to->len = len;
}

static void bytes_free(mqtt_bytes *b)
{
    sh_free((void *)b->p, b->len ? b->len : 1);
}

static void share_wait_free(share_wait *sw)
{
    for (uint32_t i = 0; i < sw->n_ret; i++) {
        bytes_free(&sw->ret[i].filter);
    }
    for (uint32_t i = 0; i < sw->n_keys; i++) {
        bytes_free(&sw->keys[i]);
    }
    sh_free(sw->ret, (sw->n_ret ? sw->n_ret : 1) * sizeof(sync_retained));
    sh_free(sw->keys, (sw->n_keys ? sw->n_keys : 1) * sizeof(mqtt_bytes));
    sh_free(sw->codes, sw->n ? sw->n : 1);
    event_free(sw->ev);
    session_unref(sw->w->b, sw->s);
    sh_free(sw, sizeof(*sw));
}

static bool share_wait_ready(share_wait *sw)
{
    for (uint32_t i = 0; i < sw->n_keys; i++) {
        if (!bp_share_ready(sw->w->b->bp, sw->keys[i].p, sw->keys[i].len)) {
            return false;
        }
    }
    return true;
}

static void share_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    share_wait *sw = arg;
    conn *c = worker_find_conn(sw->w, sw->conn_id);
    bool gone = !c || c->state != CS_ACTIVE || c->s != sw->s;
    bool ready = !gone && share_wait_ready(sw);
    if (!gone && !ready && now_ms() < sw->deadline) {
        struct timeval t = {0, SHARE_WAIT_POLL_MS * 1000};
        event_add(sw->ev, &t);
        return;
    }
    if (!gone) {
        if (!ready) {
            sh_log(SH_WARN,
                   "event=share_view_late client=%s waited_ms=%d msg=\"SUBACK sent before this node "
                   "knew the shared group's members: it delivers the group once it does\"",
                   sw->s->client_id, SHARE_WAIT_MAX_MS);
        }
        /* The store may have gone out while the SUBACK waited: mark it again
         * so the SUBACK still follows a store that holds the subscriptions. */
        sync_mark_dirty(sw->w, sw->s);
        subscribe_ack(c, sw->pid, sw->codes, sw->n, sw->ret, sw->n_ret);
        conn_resume_reading(c, PAUSE_SHARE);
    }
    share_wait_free(sw);
}

/* True: the SUBACK waits (c's input paused until then). keys: the shared
 * groups this SUBSCRIBE added. */
static bool share_wait_start(conn *c, uint16_t pid, const uint8_t *codes, uint32_t n, const sync_retained *ret,
                             uint32_t n_ret, const mqtt_bytes *keys, uint32_t n_keys)
{
    worker *w = c->w;
    bool ready = true;
    for (uint32_t i = 0; i < n_keys; i++) {
        ready = bp_share_ready(w->b->bp, keys[i].p, keys[i].len) && ready;
    }
    if (ready) {
        return false;
    }
    share_wait *sw = sh_calloc(1, sizeof(*sw));
    sw->w = w;
    session_ref(c->s);
    sw->s = c->s;
    sw->conn_id = c->id;
    sw->deadline = now_ms() + SHARE_WAIT_MAX_MS;
    sw->pid = pid;
    sw->n = n;
    sw->codes = sh_malloc(n ? n : 1);
    memcpy(sw->codes, codes, n);
    sw->n_ret = n_ret;
    sw->ret = sh_malloc((n_ret ? n_ret : 1) * sizeof(sync_retained));
    for (uint32_t i = 0; i < n_ret; i++) {
        bytes_copy(&sw->ret[i].filter, ret[i].filter.p, ret[i].filter.len);
        sw->ret[i].opts = ret[i].opts;
    }
    sw->n_keys = n_keys;
    sw->keys = sh_malloc((n_keys ? n_keys : 1) * sizeof(mqtt_bytes));
    for (uint32_t i = 0; i < n_keys; i++) {
        bytes_copy(&sw->keys[i], keys[i].p, keys[i].len);
    }
    sw->ev = evtimer_new(w->base, share_wait_cb, sw);
    struct timeval t = {0, SHARE_WAIT_POLL_MS * 1000};
    evtimer_add(sw->ev, &t);
    c->paused |= PAUSE_SHARE;
    conn_io_read_enable(c, false);
    return true;
}

/* "group/filter": the key the trie and the cluster know a group by. */
static void group_key(mqtt_bytes group, mqtt_bytes filter, mqtt_bytes *key)
{
    uint8_t *k = sh_malloc(group.len + 1 + filter.len);
    memcpy(k, group.p, group.len);
    k[group.len] = '/';
    memcpy(k + group.len + 1, filter.p, filter.len);
    key->p = k;
    key->len = group.len + 1 + filter.len;
}

mqtt_rc handle_subscribe(conn *c, const mqtt_subscribe *p)
{
    worker *w = c->w;
    broker *b = w->b;
    session *s = c->s;
    uint32_t sub_id = mqtt_props_has(&p->props, MQTT_PROP_SUBSCRIPTION_ID) ? p->props.sub_id : 0;
    uint8_t stack_codes[64];
    uint8_t *codes = p->count <= 64 ? stack_codes : sh_malloc(p->count);
    sync_retained *ret = sh_calloc(p->count ? p->count : 1, sizeof(sync_retained));
    mqtt_bytes *keys = sh_calloc(p->count ? p->count : 1, sizeof(mqtt_bytes));
    uint32_t n_ret = 0, n_keys = 0;
    mqtt_bytes cur = p->entries;
    mqtt_sub e;
    uint32_t i = 0;
    mqtt_rc fatal = MQTT_RC_SUCCESS;
    pthread_rwlock_wrlock(&b->subs_lock);
    size_t n_groups = trie_group_count(b->subs) + trie_ghosts_each(b->subs, NULL, NULL);
    while (mqtt_sub_next(&cur, c->version, &e)) {
        mqtt_bytes group, filter;
        uint8_t rc = check_filter(c, &e, sub_id, &group, &filter);
        if (rc < 0x80) {
            uint8_t q = check_quota(c, &e);
            q = q ? q : check_groups(c, group, filter, n_groups);
            rc = q ? q : rc;
        }
        if (rc == MQTT_RC_PROTOCOL_ERROR) {
            fatal = MQTT_RC_PROTOCOL_ERROR;
        }
        codes[i] = c->version == MQTT_V5 ? rc : mqtt_rc_to_v311_suback(rc);
        if (rc < 0x80) {
            sub_opts o = {e.qos < rc ? e.qos : rc, e.no_local, e.retain_as_published, e.retain_handling, sub_id};
            o.qos = rc;
            bool replaced = false;
            size_t had = trie_group_count(b->subs);
            trie_add(b->subs, filter, group, s, &o, &replaced);
            n_groups += trie_group_count(b->subs) - had;
            session_add_sub(s, (const char *)e.filter.p, (uint16_t)e.filter.len, &o);
            /* §3.3.1.3 Retain Handling: 0 always, 1 only if new, 2 never;
             * shared subscriptions never get retained messages (§4.8.2). */
            if (group.len == 0 && (e.retain_handling == 0 || (e.retain_handling == 1 && !replaced))) {
                sub_opts ro = {codes[i], e.no_local, e.retain_as_published, e.retain_handling, sub_id};
                ret[n_ret].filter = e.filter;
                ret[n_ret++].opts = ro;
            }
            if (group.len) {
                group_key(group, filter, &keys[n_keys++]);
            }
        }
        i++;
    }
    pthread_rwlock_unlock(&b->subs_lock);
    sync_mark_dirty(w, s);
    if (fatal == MQTT_RC_SUCCESS && !share_wait_start(c, p->packet_id, codes, i, ret, n_ret, keys, n_keys)) {
        subscribe_ack(c, p->packet_id, codes, i, ret, n_ret);
    }
    for (uint32_t k = 0; k < n_keys; k++) {
        bytes_free(&keys[k]);
    }
    sh_free(keys, (p->count ? p->count : 1) * sizeof(mqtt_bytes));
    sh_free(ret, (p->count ? p->count : 1) * sizeof(sync_retained));
    if (codes != stack_codes) {
        sh_free(codes, p->count);
    }
    return fatal;
}
