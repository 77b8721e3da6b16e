/* SPDX-License-Identifier: Apache-2.0 */
/* Messages that arrive from the backplane: published on another node (or
 * produced by the backplane itself, like the cluster member list). */
#include <string.h>
#include <sys/time.h>

#include "common/log.h"
#include "node/broker.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/route.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/share.h"
#include "node/worker.h"

static uint64_t unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

uint64_t expiry_to_unix(uint64_t expiry_at_mono, uint64_t now_mono)
{
    if (expiry_at_mono == 0) {
        return 0;
    }
    return unix_ms() + (expiry_at_mono > now_mono ? expiry_at_mono - now_mono : 0);
}

bp_message remote_bp_message(const msg *m)
{
    bp_message bm = {
        .topic = m->topic,
        .topic_len = m->topic_len,
        .payload = m->payload,
        .payload_len = m->payload_len,
        .props = m->props,
        .props_len = m->props_len,
        .qos = m->qos,
        .retain = m->retain,
        .expiry_at_unix_ms = expiry_to_unix(m->expiry_at, now_ms()),
        .timestamp_ms = m->ts,
    };
    return bm;
}

static msg *msg_from_bp(const bp_message *bm)
{
    mqtt_bytes topic = {bm->topic, bm->topic_len};
    mqtt_bytes payload = {bm->payload, bm->payload_len};
    mqtt_bytes publisher = {bm->client_id, bm->client_id_len};
    msg *m = msg_new_raw(topic, bm->props, bm->props_len, payload, bm->qos, bm->retain, publisher);
    if (m) {
        m->part = bm->partition;
        m->off = bm->offset;
        if (bm->timestamp_ms > 0) {
            m->ts = bm->timestamp_ms;
        }
        m->own = bm->own;
    }
    return m;
}

/* m (NULL allowed) with bm's expiry on this node's monotonic clock; NULL
 * (m released) when it has expired already. */
static msg *expiry_here(msg *m, const bp_message *bm)
{
    if (m && bm->expiry_at_unix_ms) {
        uint64_t now_unix = unix_ms();
        if (bm->expiry_at_unix_ms <= now_unix) {
            msg_unref(m);
            return NULL;
        }
        m->expiry_at = now_ms() + (bm->expiry_at_unix_ms - now_unix);
    }
    return m;
}

msg *remote_msg_new(const bp_message *bm)
{
    return expiry_here(msg_from_bp(bm), bm);
}

/* A copy with the expiry on this node's monotonic clock; NULL when it has
 * expired already (or no memory, said once per message). */
static msg *msg_from_bp_live(const bp_message *bm)
{
    msg *m = msg_from_bp(bm);
    if (!m) {
        sh_log(SH_WARN, "event=remote_drop reason=out-of-memory topic_len=%u", bm->topic_len);
        return NULL;
    }
    return expiry_here(m, bm);
}

/* The backplane's thread (or the starting node's), in stream order: the
 * index changes here, never on the worker that delivers the message, so
 * every node applies one topic's updates in the order Kafka gave them. */
void remote_retained_hook(void *node, const bp_message *bm)
{
    broker *b = node;
    if (bm->payload_len == 0) {
        pthread_rwlock_wrlock(&b->retain_lock);
        retain_delete(b->retained, (mqtt_bytes){bm->topic, bm->topic_len});
        pthread_rwlock_unlock(&b->retain_lock);
        return;
    }
    msg *m = msg_from_bp_live(bm);
    if (!m) {
        /* Expired: an older value must not stay behind it. */
        pthread_rwlock_wrlock(&b->retain_lock);
        retain_delete(b->retained, (mqtt_bytes){bm->topic, bm->topic_len});
        pthread_rwlock_unlock(&b->retain_lock);
        return;
    }
    pthread_rwlock_wrlock(&b->retain_lock);
    if (retain_set(b->retained, m) != SH_OK) {
        sh_log(SH_DEBUG, "event=retained_refused reason=max-retained topic_len=%u source=backplane", bm->topic_len);
    }
    pthread_rwlock_unlock(&b->retain_lock);
    msg_unref(m);
}

/* Backplane thread: copy, then hand to the worker for this shard so one
 * topic's messages stay in order. Delivery only: the retained index
 * follows the `retained` hook. */
void remote_message_hook(void *node, const bp_message *bm, unsigned shard)
{
    broker *b = node;
    if (!atomic_load_explicit(&b->running, memory_order_acquire)) {
        return; /* starting: nobody is connected yet */
    }
    msg *m = msg_from_bp_live(bm);
    if (!m) {
        return;
    }
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_REMOTE;
    it.d.m = m;
    worker_post_external(b, (int)(shard % (unsigned)b->nworkers), &it);
}

void remote_deliver(worker *w, msg *m)
{
    int32_t part = m->part;
    int64_t next = m->off + 1;
    if (!share_forwarded(w, m)) {
        route_publish(w, m, NULL);
    }
    msg_unref(m);
    if (part >= 0) {
        stream_routed(w, part, next);
    }
}

static bool member_online(void *owner)
{
    return atomic_load_explicit(&((session *)owner)->online, memory_order_relaxed);
}

/* A ghost lives this many refreshes: this node leaves the group in Redis
 * at the next one, the change comes into force 4 refreshes later
 * (cluster/rk_share.c), and records from before that may still be read
 * for a while. */
#define SHARE_GHOST_REFRESHES 10

typedef struct ghost_emit {
    void (*emit)(void *ctx, const uint8_t *key, size_t len, uint32_t members);
    void *ctx;
} ghost_emit;

/* A ghost keeps its view (UINT32_MAX: watched, not a member). */
static void ghost_cb(void *arg, const uint8_t *key, size_t len, size_t group_len)
{
    (void)group_len;
    ghost_emit *g = arg;
    g->emit(g->ctx, key, len, UINT32_MAX);
}

/* The backplane's thread, once per membership refresh: online members
 * count, so a node whose members are all offline is chosen only when no
 * node has one online. */
void remote_share_groups_hook(void *node, void (*emit)(void *ctx, const uint8_t *key, size_t len, uint32_t members),
                              void *ctx)
{
    broker *b = node;
    pthread_rwlock_wrlock(&b->subs_lock);
    trie_ghosts_age(b->subs, SHARE_GHOST_REFRESHES);
    trie_groups_each(b->subs, member_online, emit, ctx);
    ghost_emit ge = {emit, ctx};
    trie_ghosts_each(b->subs, ghost_cb, &ge);
    pthread_rwlock_unlock(&b->subs_lock);
}

void remote_ready_hook(void *node, bool ready)
{
    (void)node;
    (void)ready;
}

/* On the publishing worker, inside bp_publish. */
void remote_qos0_dropped_hook(void *node, int worker_id)
{
    broker *b = node;
    limits_count_drop(&b->workers[worker_id], NULL, DROP_BACKBONE, 1);
}

/* handle_connect.c refuses longer client ids (MAX_CLIENT_ID). */
#define CLIENT_ID_MAX 256

void remote_cap_packet_size(broker *b)
{
    config *cfg = b->cfg;
    uint32_t cap = bp_max_publish_size(b->bp, (uint32_t)cfg->limits.max_topic_length, CLIENT_ID_MAX);
    if (cap == 0) {
        return;
    }
    /* MQTT 5 §3.2.2.3.6: CONNACK's Maximum Packet Size tells v5 clients;
     * the framer refuses a larger packet with 0x95 before anything routes it. */
    if (cfg->max_packet_size > cap) {
        sh_log(SH_INFO,
               "event=max_packet_size value=%u configured=%u reason=backbone-record-limit "
               "max_topic_length=%d msg=\"a larger PUBLISH would not fit one Kafka record\"",
               cap, cfg->max_packet_size, cfg->limits.max_topic_length);
        cfg->max_packet_size = cap;
    } else {
        sh_log(SH_INFO, "event=max_packet_size value=%u backbone_limit=%u", cfg->max_packet_size, cap);
    }
}
