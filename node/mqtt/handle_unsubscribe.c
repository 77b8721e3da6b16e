/* SPDX-License-Identifier: Apache-2.0 */
/* UNSUBSCRIBE: remove each filter → UNSUBACK. */
#include "common/alloc.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_sync.h"
#include "node/worker.h"
#include "proto/topic.h"

mqtt_rc handle_unsubscribe(conn *c, const mqtt_unsubscribe *p)
{
    broker *b = c->w->b;
    session *s = c->s;
    uint8_t stack_codes[64];
    uint8_t *codes = p->count <= 64 ? stack_codes : sh_malloc(p->count);
    mqtt_bytes cur = p->entries, f;
    uint32_t i = 0;
    pthread_rwlock_wrlock(&b->subs_lock);
    while (mqtt_unsub_next(&cur, &f)) {
        mqtt_bytes group = {NULL, 0}, filter = f;
        if (mqtt_share_parse(f.p, f.len, &group, &filter) != 1) {
            group.len = 0;
            filter = f;
        }
        bool had = session_remove_sub(s, (const char *)f.p, (uint16_t)f.len);
        if (had) {
            trie_remove(b->subs, filter, group, s);
        }
        codes[i++] = had ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    pthread_rwlock_unlock(&b->subs_lock);
    sync_mark_dirty(c->w, s);
    send_unsuback(c, p->packet_id, codes, i);
    if (codes != stack_codes) {
        sh_free(codes, p->count);
    }
    return MQTT_RC_SUCCESS;
}
