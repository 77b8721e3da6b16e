/* SPDX-License-Identifier: Apache-2.0 */
/* The session registry: client id → session, for this process. */
#include <string.h>

#include "common/alloc.h"
#include "node/broker.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/session.h"

static uint32_t hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    }
    return h;
}

static session **bucket(broker *b, const char *id, size_t len)
{
    return &b->sess_tab[hash(id, len) & (b->sess_buckets - 1)];
}

/* Double the table once it holds more sessions than buckets. */
static void grow(broker *b)
{
    uint32_t cap = b->sess_buckets * 2;
    session **tab = sh_calloc(cap, sizeof(session *));
    for (uint32_t i = 0; i < b->sess_buckets; i++) {
        session *s = b->sess_tab[i];
        while (s) {
            session *next = s->reg_next;
            session **head = &tab[hash(s->client_id, s->id_len) & (cap - 1)];
            s->reg_next = *head;
            *head = s;
            s = next;
        }
    }
    sh_free(b->sess_tab, b->sess_buckets * sizeof(session *));
    b->sess_tab = tab;
    b->sess_buckets = cap;
}

/* Caller holds b->sess_lock. */
session *registry_get(broker *b, const char *id, size_t len)
{
    for (session *s = *bucket(b, id, len); s; s = s->reg_next) {
        if (s->id_len == len && memcmp(s->client_id, id, len) == 0) {
            return s;
        }
    }
    return NULL;
}

bool registry_full(broker *b)
{
    uint32_t max = b->cfg->limits.max_sessions;
    return max && atomic_load(&b->sess_count) >= max;
}

/* Caller holds b->sess_lock; the registry takes a ref. */
void registry_put(broker *b, session *s)
{
    if (atomic_load(&b->sess_count) >= b->sess_buckets) {
        grow(b);
    }
    session **head = bucket(b, s->client_id, s->id_len);
    session_ref(s);
    s->reg_next = *head;
    *head = s;
    s->registered = true;
    atomic_fetch_add(&b->sess_count, 1);
    if (s->persistent) {
        atomic_fetch_add(&b->sess_persistent, 1);
    }
}

/* Caller holds b->sess_lock; drops the registry's ref only if s is still
 * the registered session for its id. */
void registry_remove(broker *b, session *s)
{
    session **pp = bucket(b, s->client_id, s->id_len);
    while (*pp && *pp != s) {
        pp = &(*pp)->reg_next;
    }
    if (*pp) {
        *pp = s->reg_next;
        s->reg_next = NULL;
        s->registered = false;
        atomic_fetch_sub(&b->sess_count, 1);
        if (s->persistent) {
            atomic_fetch_sub(&b->sess_persistent, 1);
        }
        session_unref(b, s);
    }
}
