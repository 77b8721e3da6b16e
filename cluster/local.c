/* The local backplane: one node on its own. Messages need no transport
 * (the node already delivers to its own subscribers), retained messages live
 * in the node's index, and session records live in this process. Every
 * operation completes before it returns. */
#include <pthread.h>
#include <string.h>

#include "cluster/backplane_impl.h"
#include "common/alloc.h"
#include "common/log.h"

typedef struct rec {
    struct rec *next;
    char *client_id;
    size_t id_len;
    uint64_t epoch;
    uint8_t *state;
    uint32_t state_len;
} rec;

#define NBUCKETS 4096

typedef struct local {
    pthread_mutex_t lock;
    uint64_t next_epoch;
    rec *buckets[NBUCKETS];
    bp_node_info self;
} local;

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 16777619u;
    }
    return h % NBUCKETS;
}

static rec **find(local *l, const char *id)
{
    rec **pp = &l->buckets[hash(id)];
    while (*pp && strcmp((*pp)->client_id, id) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

static void rec_free(rec *r)
{
    sh_free(r->state, r->state_len);
    sh_free(r->client_id, r->id_len + 1);
    sh_free(r, sizeof(*r));
}

static void l_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    if (cb) {
        cb(bp->closed ? BP_ECLOSED : BP_OK, arg);
    }
}

static void l_retain_set(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    l_publish(bp, worker, m, cb, arg);
}

static void l_session_claim(backplane *bp, int worker, const char *client_id, bp_session_cb cb, void *arg)
{
    local *l = bp->impl;
    pthread_mutex_lock(&l->lock);
    rec **pp = find(l, client_id);
    if (!*pp) {
        rec *r = sh_calloc(1, sizeof(*r));
        r->id_len = strlen(client_id);
        r->client_id = sh_strndup(client_id, r->id_len);
        *pp = r;
    }
    rec *r = *pp;
    r->epoch = ++l->next_epoch;
    bp_session s = {r->client_id, r->epoch, r->state, r->state_len};
    bool found = r->state != NULL;
    /* The callback runs under the lock: it must only copy what it needs. */
    cb(bp->closed ? BP_ECLOSED : (found ? BP_OK : BP_ENOTFOUND), &s, arg);
    pthread_mutex_unlock(&l->lock);
}

static void l_session_store(backplane *bp, int worker, const bp_session *s, uint32_t expiry_s, bp_done_cb cb,
                            void *arg)
{
    local *l = bp->impl;
    bp_status st = BP_OK;
    pthread_mutex_lock(&l->lock);
    rec *r = *find(l, s->client_id);
    if (!r || r->epoch != s->epoch) {
        st = BP_ESTALE;
    } else {
        sh_free(r->state, r->state_len);
        r->state = sh_malloc(s->state_len ? s->state_len : 1);
        memcpy(r->state, s->state, s->state_len);
        r->state_len = s->state_len;
    }
    pthread_mutex_unlock(&l->lock);
    if (cb) {
        cb(st, arg);
    }
}

static void l_session_drop(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb,
                           void *arg)
{
    local *l = bp->impl;
    bp_status st = BP_ENOTFOUND;
    pthread_mutex_lock(&l->lock);
    rec **pp = find(l, client_id);
    if (*pp && (*pp)->epoch == epoch) {
        rec *r = *pp;
        *pp = r->next;
        rec_free(r);
        st = BP_OK;
    } else if (*pp) {
        st = BP_ESTALE;
    }
    pthread_mutex_unlock(&l->lock);
    if (cb) {
        cb(st, arg);
    }
}

static void l_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg)
{
    local *l = bp->impl;
    cb(BP_OK, &l->self, 1, arg);
}

static void l_close(backplane *bp)
{
}

static void l_free(backplane *bp)
{
    local *l = bp->impl;
    for (size_t i = 0; i < NBUCKETS; i++) {
        rec *r = l->buckets[i];
        while (r) {
            rec *next = r->next;
            rec_free(r);
            r = next;
        }
    }
    pthread_mutex_destroy(&l->lock);
    sh_free(l, sizeof(*l));
    sh_free(bp, sizeof(*bp));
}

static const bp_ops local_ops = {
    .kind = "local",
    .close = l_close,
    .free = l_free,
    .publish = l_publish,
    .retain_set = l_retain_set,
    .session_claim = l_session_claim,
    .session_store = l_session_store,
    .session_drop = l_session_drop,
    .nodes = l_nodes,
};

backplane *bp_local_open(const bp_config *cfg, const bp_hooks *hooks)
{
    backplane *bp = sh_calloc(1, sizeof(*bp));
    local *l = sh_calloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    l->self.node_id = cfg->node_id;
    l->self.address = cfg->address;
    bp->ops = &local_ops;
    bp->cfg = *cfg;
    bp->hooks = *hooks;
    bp->impl = l;
    bp->ready = true;
    return bp;
}
