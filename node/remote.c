/* Messages that arrive from the backplane: published on another node (or
 * produced by the backplane itself, like the cluster member list). */
#include <string.h>
#include <sys/time.h>

#include "common/log.h"
#include "node/core.h"

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

static msg *msg_from_bp(const bp_message *bm)
{
    mqtt_bytes topic = {bm->topic, bm->topic_len};
    mqtt_bytes payload = {bm->payload, bm->payload_len};
    mqtt_bytes publisher = {bm->client_id, bm->client_id_len};
    return msg_new_raw(topic, bm->props, bm->props_len, payload, bm->qos, bm->retain, publisher);
}

/* Backplane thread: copy, then hand to the worker for this shard so one
 * topic's messages stay in order. */
void remote_message_hook(void *node, const bp_message *bm, unsigned shard)
{
    broker *b = node;
    msg *m = msg_from_bp(bm);
    if (!m) {
        sh_log(SH_WARN, "event=remote_drop reason=out-of-memory topic_len=%u", bm->topic_len);
        return;
    }
    if (bm->expiry_at_unix_ms) {
        uint64_t now_unix = unix_ms();
        if (bm->expiry_at_unix_ms <= now_unix) {
            msg_unref(m);
            return;
        }
        m->expiry_at = now_ms() + (bm->expiry_at_unix_ms - now_unix);
    }
    if (!atomic_load_explicit(&b->running, memory_order_acquire)) {
        /* Startup (the retained snapshot): nobody is connected yet. */
        if (m->retain) {
            pthread_rwlock_wrlock(&b->retain_lock);
            retain_set(b->retained, m);
            pthread_rwlock_unlock(&b->retain_lock);
        }
        msg_unref(m);
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
    route_publish_internal(w, m);
}

void remote_ready_hook(void *node, bool ready)
{
    (void)node;
    (void)ready;
}
