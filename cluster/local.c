/* SPDX-License-Identifier: Apache-2.0 */
/* The local backplane: one node on its own. Messages need no transport
 * (the node already delivers to its own subscribers), retained messages live
 * in the node's index, and the only member is this node. Session records
 * live in a table here, under the same fencing rules as in Redis, so the
 * node has one code path. Every operation completes before it returns. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cluster/backplane_impl.h"
#include "common/alloc.h"

/* A session record (cluster/backplane.h): the owner is always this node. */
typedef struct l_sess {
    struct l_sess *next;
    char *client_id;
    uint64_t epoch;
    uint64_t prev; /* the epoch before the last claim */
    bool released;
    bool cleaned; /* the last claim was a clean start: a release keeps no state */
    bool has_state;
    uint8_t *state;
    uint32_t state_len;
    uint64_t deadline_ms; /* CLOCK_MONOTONIC; 0 = never expires */
} l_sess;

typedef struct local {
    bp_node_info self;
    /* Workers call from their own threads. */
    pthread_mutex_t lock;
    l_sess **buckets;
    size_t nbuckets; /* a power of two, doubled when count passes it */
    size_t count;
    uint64_t last_sweep_ms;
    uint64_t last_epoch; /* epochs never restart, not even for a dropped record */
} local;

static void l_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    if (cb) {
        cb(BP_OK, arg);
    }
}

static void l_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg)
{
    local *l = bp->impl;
    cb(BP_OK, &l->self, 1, arg);
}

/* No backend: every figure stays zero (bp_get_stats cleared them). */
static void l_stats(const backplane *bp, bp_stats *out)
{
}

static void l_close(backplane *bp)
{
}

#define L_MIN_BUCKETS 64

static void sess_free(l_sess *s)
{
    sh_free(s->state, s->state_len ? s->state_len : 1);
    sh_free_str(s->client_id);
    sh_free(s, sizeof(*s));
}

static void l_free(backplane *bp)
{
    local *l = bp->impl;
    for (size_t i = 0; i < l->nbuckets; i++) {
        for (l_sess *s = l->buckets[i], *next; s; s = next) {
            next = s->next;
            sess_free(s);
        }
    }
    sh_free(l->buckets, l->nbuckets * sizeof(*l->buckets));
    pthread_mutex_destroy(&l->lock);
    sh_free(l, sizeof(local));
}

static int l_open(backplane *bp)
{
    local *l = sh_calloc(1, sizeof(*l));
    l->self.node_id = bp->cfg.node_id;
    l->self.address = bp->cfg.address;
    pthread_mutex_init(&l->lock, NULL);
    l->nbuckets = L_MIN_BUCKETS;
    l->buckets = sh_calloc(l->nbuckets, sizeof(*l->buckets));
    bp->impl = l;
    bp->ready = true;
    return 0;
}

/* Everything stays in this process: no record limit beyond the node's own. */
static uint32_t l_max_publish(const backplane *bp, uint32_t max_topic, uint32_t max_client_id)
{
    return 0;
}

/* ---- session records ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t hash_id(const char *id)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *id; id++) {
        h = (h ^ (uint8_t)*id) * 1099511628211u;
    }
    return h;
}

static void grow(local *l)
{
    size_t n = l->nbuckets * 2;
    l_sess **b = sh_calloc(n, sizeof(*b));
    for (size_t i = 0; i < l->nbuckets; i++) {
        for (l_sess *s = l->buckets[i], *next; s; s = next) {
            next = s->next;
            size_t k = hash_id(s->client_id) & (n - 1);
            s->next = b[k];
            b[k] = s;
        }
    }
    sh_free(l->buckets, l->nbuckets * sizeof(*l->buckets));
    l->buckets = b;
    l->nbuckets = n;
}

static void unlink_sess(local *l, l_sess **at)
{
    l_sess *s = *at;
    *at = s->next;
    l->count--;
    sess_free(s);
}

static bool expired(const l_sess *s, uint64_t now)
{
    return s->deadline_ms && s->deadline_ms <= now;
}

/* Expired records nobody asks for again are removed by a sweep at most once
 * a second (bounded memory without a timer per record). */
static void sweep(local *l, uint64_t now)
{
    if (now - l->last_sweep_ms < 1000) {
        return;
    }
    l->last_sweep_ms = now;
    for (size_t i = 0; i < l->nbuckets; i++) {
        for (l_sess **at = &l->buckets[i]; *at;) {
            if (expired(*at, now)) {
                unlink_sess(l, at);
            } else {
                at = &(*at)->next;
            }
        }
    }
}

/* The live record of client_id, or NULL (an expired one is removed). */
static l_sess *find(local *l, const char *client_id)
{
    uint64_t now = mono_ms();
    sweep(l, now);
    for (l_sess **at = &l->buckets[hash_id(client_id) & (l->nbuckets - 1)]; *at; at = &(*at)->next) {
        if (strcmp((*at)->client_id, client_id) == 0) {
            if (expired(*at, now)) {
                unlink_sess(l, at);
                return NULL;
            }
            return *at;
        }
    }
    return NULL;
}

static l_sess *find_or_add(local *l, const char *client_id)
{
    l_sess *s = find(l, client_id);
    if (s) {
        return s;
    }
    if (l->count >= l->nbuckets) {
        grow(l);
    }
    s = sh_calloc(1, sizeof(*s));
    s->client_id = sh_strdup(client_id);
    size_t k = hash_id(client_id) & (l->nbuckets - 1);
    s->next = l->buckets[k];
    l->buckets[k] = s;
    l->count++;
    return s;
}

static void set_state(l_sess *s, const uint8_t *state, uint32_t len)
{
    sh_free(s->state, s->state_len ? s->state_len : 1);
    s->state = NULL;
    s->state_len = 0;
    s->has_state = state != NULL;
    if (state) {
        s->state = sh_malloc(len ? len : 1);
        memcpy(s->state, state, len);
        s->state_len = len;
    }
}

/* A record as a callback sees it: a copy taken under the lock, so that
 * another worker's write cannot change it while the callback reads. */
typedef struct l_view {
    bp_status st;
    bp_session_rec rec;
    uint8_t *copy;
} l_view;

static void view_of(l_view *v, const l_sess *s)
{
    v->st = BP_OK;
    v->rec.epoch = s->epoch;
    v->rec.released = s->released;
    v->rec.prev_owner = ""; /* one node: the previous owner is always this one */
    if (s->has_state) {
        v->copy = sh_malloc(s->state_len ? s->state_len : 1);
        memcpy(v->copy, s->state, s->state_len);
        v->rec.state = v->copy;
        v->rec.state_len = s->state_len;
    }
}

static void view_done(l_view *v, bp_session_cb cb, void *arg)
{
    cb(v->st, v->st == BP_OK ? &v->rec : NULL, arg);
    sh_free(v->copy, v->rec.state_len ? v->rec.state_len : 1);
}

static void l_session_claim(backplane *bp, int worker, const char *client_id, bool clean, bp_session_cb cb, void *arg)
{
    local *l = bp->impl;
    l_view v = {0};
    pthread_mutex_lock(&l->lock);
    l_sess *s = find_or_add(l, client_id);
    s->prev = s->epoch;
    s->epoch = ++l->last_epoch;
    s->released = false;
    s->cleaned = clean;
    s->deadline_ms = 0;
    if (clean) {
        set_state(s, NULL, 0);
    }
    view_of(&v, s);
    pthread_mutex_unlock(&l->lock);
    view_done(&v, cb, arg);
}

static void l_session_load(backplane *bp, int worker, const char *client_id, uint64_t epoch, bool renotify,
                           bp_session_cb cb, void *arg)
{
    local *l = bp->impl;
    l_view v = {.st = epoch ? BP_ESTALE : BP_OK, .rec = {.prev_owner = ""}}; /* none: epoch 0, no state */
    pthread_mutex_lock(&l->lock);
    l_sess *s = find(l, client_id);
    if (s && (epoch == 0 || s->epoch == epoch)) {
        view_of(&v, s);
    }
    pthread_mutex_unlock(&l->lock);
    view_done(&v, cb, arg);
}

/* The record while epoch is its latest claim, else NULL. Under the lock. */
static l_sess *fenced(local *l, const char *client_id, uint64_t epoch)
{
    l_sess *s = find(l, client_id);
    return s && s->epoch == epoch ? s : NULL;
}

static void done(bp_done_cb cb, void *arg, bp_status st)
{
    if (cb) {
        cb(st, arg);
    }
}

static void l_session_store(backplane *bp, int worker, const char *client_id, uint64_t epoch, const uint8_t *state,
                            uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    local *l = bp->impl;
    pthread_mutex_lock(&l->lock);
    l_sess *s = fenced(l, client_id, epoch);
    if (!s && epoch && !find(l, client_id)) {
        /* Gone (expired): the owner re-asserts its claim, as redis_kafka does. */
        s = find_or_add(l, client_id);
        s->epoch = epoch;
        s->released = true;
    }
    if (s && state && len) {
        set_state(s, state, len);
    }
    if (s) {
        s->deadline_ms = ttl_ms ? mono_ms() + ttl_ms : 0;
    }
    pthread_mutex_unlock(&l->lock);
    done(cb, arg, s ? BP_OK : BP_ESTALE);
}

static void l_session_release(backplane *bp, int worker, const char *client_id, uint64_t old_epoch,
                              const uint8_t *state, uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    local *l = bp->impl;
    pthread_mutex_lock(&l->lock);
    l_sess *s = find(l, client_id);
    bool ok = s && s->prev != 0 && (old_epoch == 0 || s->prev == old_epoch) && !s->released;
    if (ok) {
        s->released = true;
        if (state && !s->cleaned) {
            set_state(s, state, len);
        }
        if (ttl_ms) {
            s->deadline_ms = mono_ms() + ttl_ms;
        }
    }
    pthread_mutex_unlock(&l->lock);
    done(cb, arg, ok ? BP_OK : BP_ESTALE);
}

static void l_session_drop(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg)
{
    local *l = bp->impl;
    pthread_mutex_lock(&l->lock);
    bool ok = false;
    l_sess **at = &l->buckets[hash_id(client_id) & (l->nbuckets - 1)];
    for (; *at; at = &(*at)->next) {
        if (strcmp((*at)->client_id, client_id) == 0) {
            l_sess *s = *at;
            if (expired(s, mono_ms())) {
                break;
            }
            if (s->epoch == epoch) {
                ok = true;
                unlink_sess(l, at);
            } else if (s->prev == epoch && !s->released) {
                /* The previous owner: the claims after it never got the
                 * session (as redis_kafka's DROP script). */
                ok = true;
                s->released = true;
                set_state(s, NULL, 0);
                s->deadline_ms = mono_ms() + 60000u;
            }
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
    done(cb, arg, ok ? BP_OK : BP_ESTALE);
}

/* No stream: one node delivers from memory (its queues are the whole
 * truth), so a replay has nothing to read and is done at once. */
static uint32_t l_stream_partitions(const backplane *bp)
{
    return 0;
}

static int64_t l_stream_start(const backplane *bp, uint32_t p)
{
    return -1;
}

static void l_replay_start(backplane *bp, int worker, uint64_t id, const int64_t *from, const int64_t *least,
                           uint32_t n_parts, uint32_t max_batch, bp_replay_cb cb, void *arg)
{
    bp_replay_batch b = {.end = NULL, .n_parts = 0, .msgs = NULL, .n = 0, .done = true};
    cb(BP_OK, &b, arg);
}

static void l_replay_next(backplane *bp, uint64_t id)
{
}

static void l_replay_stop(backplane *bp, uint64_t id)
{
}

/* ---- a dead node's sessions: one node has no other to outlive ---- */

static void l_reap_batch(backplane *bp, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg)
{
    bp_reap_set none = {0};
    cb(BP_OK, &none, arg);
}

/* No dead instance owns a record here, so every settle is refused. */
static void l_reap_finish(backplane *bp, int worker, const char *instance, const char *client_id, uint64_t epoch,
                          const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg)
{
    if (cb) {
        cb(BP_ESTALE, arg);
    }
}

static void l_reap_end(backplane *bp, int worker, const char *instance, uint64_t retry_after_ms)
{
}

/* This node is the cluster: it delivers every shared group's messages. */
static bool l_share_mine(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except)
{
    return true;
}

const bp_ops bp_local_ops = {
    .kind = "local",
    .knows_all_subscribers = true,
    .open = l_open,
    .close = l_close,
    .free = l_free,
    .publish = l_publish,
    .nodes = l_nodes,
    .stats = l_stats,
    .max_publish = l_max_publish,
    .session_claim = l_session_claim,
    .session_load = l_session_load,
    .session_store = l_session_store,
    .session_release = l_session_release,
    .session_drop = l_session_drop,
    .stream_partitions = l_stream_partitions,
    .stream_start = l_stream_start,
    .replay_start = l_replay_start,
    .replay_next = l_replay_next,
    .replay_stop = l_replay_stop,
    .reap_batch = l_reap_batch,
    .reap_finish = l_reap_finish,
    .reap_end = l_reap_end,
    .share_mine = l_share_mine,
};
