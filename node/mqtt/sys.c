/* SPDX-License-Identifier: Apache-2.0 */
/* $SYS topics: broker figures published as retained messages. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "node/broker.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/route.h"
#include "node/worker.h"

static void publish_value(worker *w, const char *topic, const char *value)
{
    mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)strlen(topic)};
    mqtt_bytes v = {(const uint8_t *)value, (uint32_t)strlen(value)};
    msg *m = msg_new(t, NULL, v, 0, true, 0, now_ms());
    if (m) {
        route_publish_internal(w, m);
    }
}

static void publish_u64(worker *w, const char *topic, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    publish_value(w, topic, buf);
}

static uint64_t sum(broker *b, size_t off)
{
    uint64_t total = 0;
    for (int i = 0; i < b->nworkers; i++) {
        total += atomic_load((_Atomic uint64_t *)((char *)&b->workers[i] + off));
    }
    return total;
}

void worker_sys_tick(worker *w)
{
    static __thread uint64_t last;
    broker *b = w->b;
    uint64_t now = now_ms();
    if (b->cfg->sys_interval == 0 || (last && now - last < (uint64_t)b->cfg->sys_interval * 1000u)) {
        return;
    }
    last = now;
    pthread_rwlock_rdlock(&b->subs_lock);
    size_t subs = trie_count(b->subs);
    pthread_rwlock_unlock(&b->subs_lock);
    pthread_rwlock_rdlock(&b->retain_lock);
    size_t retained = retain_count(b->retained);
    pthread_rwlock_unlock(&b->retain_lock);
    publish_value(w, "$SYS/broker/version", "shoal " SHOAL_VERSION);
    publish_u64(w, "$SYS/broker/uptime", (now - b->start_ms) / 1000u);
    publish_u64(w, "$SYS/broker/clients/connected", atomic_load(&b->stats.connections_current));
    publish_u64(w, "$SYS/broker/clients/total", atomic_load(&b->sess_count));
    publish_u64(w, "$SYS/broker/connections/total", atomic_load(&b->stats.connections_total));
    publish_u64(w, "$SYS/broker/messages/received", sum(b, offsetof(worker, msgs_in)));
    publish_u64(w, "$SYS/broker/messages/sent", sum(b, offsetof(worker, msgs_out)));
    publish_u64(w, "$SYS/broker/messages/dropped", sum(b, offsetof(worker, dropped)));
    publish_u64(w, "$SYS/broker/bytes/received", sum(b, offsetof(worker, bytes_in)));
    publish_u64(w, "$SYS/broker/bytes/sent", sum(b, offsetof(worker, bytes_out)));
    publish_u64(w, "$SYS/broker/subscriptions/count", subs);
    publish_u64(w, "$SYS/broker/retained messages/count", retained);
}
