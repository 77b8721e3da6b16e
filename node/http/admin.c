/* SPDX-License-Identifier: Apache-2.0 */
/* The admin API (/api/v1), served on the HTTP thread.
 *
 * Connections and the sessions attached to them belong to their worker, so
 * the HTTP thread never reads them: it posts a "gather" to each worker's loop
 * (event_base_once), the worker fills its own slot (a snapshot of its
 * clients, or the result of a kick or a drain), and the HTTP thread waits on
 * a condition variable for every slot, with a deadline. The gather is
 * refcounted, so a worker answering after the deadline still writes into
 * live memory. Offline sessions have no worker; their ids are read from the
 * registry under sess_lock (an id never changes while registered). */
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/drain.h"
#include "node/http/http_impl.h"
#include "node/http/metrics.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/session.h"
#include "node/worker.h"
#include "proto/topic.h"

#define GATHER_TIMEOUT_MS 5000
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 10000

/* One row of a result: a sort key (client id, node id) and its JSON. */
typedef struct rec {
    char *key;
    char *json;
    size_t json_cap;
    bool online;
} rec;

typedef struct recvec {
    rec *v;
    size_t n;
    size_t cap;
} recvec;

typedef struct gather gather;

typedef struct gather_slot {
    gather *g;
    worker *w;
    /* Written by the worker until done, read by the HTTP thread after. */
    recvec recs;
    uint64_t count; /* kicked / disconnected connections */
    uint64_t aux;   /* listeners closed */
    int status;     /* 0, or an error (bp_status) */
    bool done;
} gather_slot;

/* Runs on the slot's worker. Returns true when finished, or false when it
 * will call gather_done(slot) itself later, on the same worker. */
typedef bool (*gather_fn)(gather_slot *s);

struct gather {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int refs;
    int pending;
    gather_fn fn;
    /* Parameters, read-only once posted. */
    char *id;     /* exact client id, or NULL */
    char *filter; /* client id substring, or NULL */
    bool detail;
    int nslots;
    gather_slot slots[];
};

static void recvec_push(recvec *rv, const char *key, json_buf *j, bool online)
{
    if (rv->n == rv->cap) {
        size_t cap = rv->cap ? rv->cap * 2 : 16;
        rv->v = sh_realloc(rv->v, rv->cap * sizeof(rec), cap * sizeof(rec));
        rv->cap = cap;
    }
    rec *r = &rv->v[rv->n++];
    r->key = sh_strndup(key, strlen(key));
    r->json = json_take(j, &r->json_cap);
    r->online = online;
}

static void recvec_free(recvec *rv)
{
    for (size_t i = 0; i < rv->n; i++) {
        sh_free(rv->v[i].key, strlen(rv->v[i].key) + 1);
        sh_free(rv->v[i].json, rv->v[i].json_cap);
    }
    sh_free(rv->v, rv->cap * sizeof(rec));
    memset(rv, 0, sizeof(*rv));
}

static char *dup_or_null(const char *s)
{
    return s ? sh_strndup(s, strlen(s)) : NULL;
}

static void free_str(char *s)
{
    if (s) {
        sh_free(s, strlen(s) + 1);
    }
}

static gather *gather_new(broker *b, gather_fn fn)
{
    gather *g = sh_calloc(1, sizeof(*g) + (size_t)b->nworkers * sizeof(gather_slot));
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    g->refs = 1;
    g->fn = fn;
    g->nslots = b->nworkers;
    for (int i = 0; i < b->nworkers; i++) {
        g->slots[i].g = g;
        g->slots[i].w = &b->workers[i];
    }
    return g;
}

static void gather_release(gather *g)
{
    pthread_mutex_lock(&g->lock);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (!last) {
        return;
    }
    for (int i = 0; i < g->nslots; i++) {
        recvec_free(&g->slots[i].recs);
    }
    free_str(g->id);
    free_str(g->filter);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cv);
    sh_free(g, sizeof(*g) + (size_t)g->nslots * sizeof(gather_slot));
}

/* On the worker: the slot is final. */
static void gather_done(gather_slot *s)
{
    gather *g = s->g;
    worker_flush(s->w); /* closes may have queued items for other workers */
    pthread_mutex_lock(&g->lock);
    s->done = true;
    g->pending--;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->lock);
    gather_release(g);
}

static void gather_cb(evutil_socket_t fd, short what, void *arg)
{
    gather_slot *s = arg;
    if (s->g->fn(s)) {
        gather_done(s);
    }
}

/* Post to every worker (only < 0) or one, and wait. Returns -1 when done,
 * or the index of a worker that did not answer in time. */
static int gather_run(gather *g, int only)
{
    for (int i = 0; i < g->nslots; i++) {
        if (only >= 0 && i != only) {
            g->slots[i].done = true;
            continue;
        }
        pthread_mutex_lock(&g->lock);
        g->refs++;
        g->pending++;
        pthread_mutex_unlock(&g->lock);
        if (event_base_once(g->slots[i].w->base, -1, EV_TIMEOUT, gather_cb, &g->slots[i], NULL) != 0) {
            pthread_mutex_lock(&g->lock);
            g->refs--;
            g->pending--;
            pthread_mutex_unlock(&g->lock);
        }
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += GATHER_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&g->lock);
    while (g->pending > 0) {
        if (pthread_cond_timedwait(&g->cv, &g->lock, &deadline) != 0) {
            break;
        }
    }
    int late = -1;
    for (int i = 0; i < g->nslots && g->pending > 0; i++) {
        if (!g->slots[i].done) {
            late = i;
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return late;
}

static bool gather_run_or_reply(http_req *r, gather *g, int only)
{
    int late = gather_run(g, only);
    if (late >= 0) {
        http_reply_error(r, 503, "worker %d did not answer within %d s", late, GATHER_TIMEOUT_MS / 1000);
        return false;
    }
    return true;
}

/* --- clients ------------------------------------------------------------- */

static const char *version_name(uint8_t v)
{
    return v == MQTT_V5 ? "5.0" : (v == MQTT_V311 ? "3.1.1" : (v == MQTT_V31 ? "3.1" : "?"));
}

static uint64_t unix_time_of(uint64_t mono_ms, uint64_t now)
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t wall_ms = (uint64_t)wall.tv_sec * 1000u + (uint64_t)wall.tv_nsec / 1000000u;
    return (wall_ms - (now - mono_ms)) / 1000u;
}

/* On the owning worker: c and its session are ours to read. */
static void client_json(json_buf *j, conn *c, bool detail, uint64_t now)
{
    session *s = c->s;
    json_obj(j);
    json_key(j, "client_id");
    json_str(j, s->client_id);
    json_key(j, "connected");
    json_bool(j, true);
    json_key(j, "peer");
    json_str(j, c->peer);
    json_key(j, "version");
    json_str(j, version_name(c->version));
    json_key(j, "keepalive");
    json_u64(j, c->keepalive);
    json_key(j, "connected_at");
    json_u64(j, unix_time_of(c->created_ms, now));
    json_key(j, "worker");
    json_u64(j, (uint64_t)c->w->id);
    json_key(j, "persistent");
    json_bool(j, s->persistent);
    json_key(j, "subscriptions");
    json_u64(j, s->n_subs);
    json_key(j, "inflight");
    json_u64(j, s->n_inf);
    json_key(j, "queued");
    json_u64(j, s->q_len);
    if (detail) {
        json_key(j, "session_expiry");
        json_u64(j, s->expiry_s);
        json_key(j, "subscription_list");
        json_arr(j);
        for (uint32_t i = 0; i < s->n_subs; i++) {
            json_obj(j);
            json_key(j, "filter");
            json_strn(j, s->subs[i].filter, s->subs[i].len);
            json_key(j, "qos");
            json_u64(j, s->subs[i].opts.qos);
            json_obj_end(j);
        }
        json_arr_end(j);
    }
    json_obj_end(j);
}

static bool wanted(const gather *g, const char *id)
{
    if (g->id) {
        return !strcmp(id, g->id);
    }
    return !g->filter || strstr(id, g->filter) != NULL;
}

static bool clients_fn(gather_slot *s)
{
    uint64_t now = now_ms();
    for (conn *c = s->w->conns; c; c = c->next) {
        if (c->state != CS_ACTIVE || !c->s || !wanted(s->g, c->s->client_id)) {
            continue;
        }
        json_buf j = {0};
        client_json(&j, c, s->g->detail, now);
        recvec_push(&s->recs, c->s->client_id, &j, true);
    }
    return true;
}

static bool kick_fn(gather_slot *s)
{
    conn *c = s->w->conns;
    while (c) {
        conn *next = c->next;
        if (c->state == CS_ACTIVE && c->s && wanted(s->g, c->s->client_id)) {
            /* MQTT 5: DISCONNECT 0x98 Administrative action; 3.1.1: a close. */
            conn_close(c, MQTT_RC_ADMIN_ACTION, "kicked by admin");
            s->count++;
        }
        c = next;
    }
    return true;
}

/* Offline sessions (no worker holds a connection for them). */
static void offline_sessions(broker *b, const gather *g, recvec *out)
{
    recvec ids = {0};
    pthread_mutex_lock(&b->sess_lock);
    if (g->id) {
        session *s = registry_get(b, g->id, strlen(g->id));
        if (s && !atomic_load(&s->online)) {
            json_buf none = {0};
            recvec_push(&ids, s->client_id, &none, false);
        }
    }
    for (size_t i = 0; !g->id && i < b->sess_buckets; i++) {
        for (session *s = b->sess_tab[i]; s; s = s->reg_next) {
            if (!atomic_load(&s->online) && wanted(g, s->client_id)) {
                json_buf none = {0};
                recvec_push(&ids, s->client_id, &none, false);
            }
        }
    }
    pthread_mutex_unlock(&b->sess_lock);
    for (size_t i = 0; i < ids.n; i++) {
        json_buf j = {0};
        json_obj(&j);
        json_key(&j, "client_id");
        json_str(&j, ids.v[i].key);
        json_key(&j, "connected");
        json_bool(&j, false);
        json_obj_end(&j);
        recvec_push(out, ids.v[i].key, &j, false);
    }
    recvec_free(&ids);
}

static int rec_cmp(const void *a, const void *b)
{
    const rec *x = *(rec *const *)a, *y = *(rec *const *)b;
    int c = strcmp(x->key, y->key);
    return c ? c : (int)y->online - (int)x->online; /* online first */
}

/* Every row of the gather and `extra`, sorted by key, duplicates folded
 * (a client seen online and offline while it connected is online).
 * Returns an array of borrowed pointers (sh_free(v, *n * sizeof(rec *))). */
static rec **merged(gather *g, recvec *extra, size_t *n)
{
    size_t total = extra->n;
    for (int i = 0; i < g->nslots; i++) {
        total += g->slots[i].recs.n;
    }
    rec **v = sh_malloc((total ? total : 1) * sizeof(rec *));
    size_t k = 0;
    for (int i = 0; i < g->nslots; i++) {
        for (size_t j = 0; j < g->slots[i].recs.n; j++) {
            v[k++] = &g->slots[i].recs.v[j];
        }
    }
    for (size_t j = 0; j < extra->n; j++) {
        v[k++] = &extra->v[j];
    }
    qsort(v, k, sizeof(rec *), rec_cmp);
    size_t out = 0;
    for (size_t i = 0; i < k; i++) {
        if (out == 0 || strcmp(v[out - 1]->key, v[i]->key) != 0) {
            v[out++] = v[i];
        }
    }
    *n = out;
    return v;
}

void admin_clients(http_req *r)
{
    uint64_t limit, offset;
    if (!http_query_uint_or_reply(r, "limit", LIMIT_DEFAULT, LIMIT_MAX, &limit) ||
        !http_query_uint_or_reply(r, "offset", 0, UINT32_MAX, &offset)) {
        return;
    }
    const char *filter = http_query(r, "filter");
    gather *g = gather_new(r->b, clients_fn);
    g->filter = filter && *filter ? dup_or_null(filter) : NULL;
    /* The registry first: a client connecting meanwhile then shows up twice
     * and is folded, rather than not at all. */
    recvec offline = {0};
    offline_sessions(r->b, g, &offline);
    if (gather_run_or_reply(r, g, -1)) {
        size_t n;
        rec **v = merged(g, &offline, &n);
        json_buf j = {0};
        json_obj(&j);
        json_key(&j, "total");
        json_u64(&j, n);
        json_key(&j, "offset");
        json_u64(&j, offset);
        json_key(&j, "limit");
        json_u64(&j, limit);
        json_key(&j, "clients");
        json_arr(&j);
        for (size_t i = offset; i < n && i < offset + limit; i++) {
            json_raw(&j, v[i]->json, strlen(v[i]->json));
        }
        json_arr_end(&j);
        json_obj_end(&j);
        sh_free(v, (n ? n : 1) * sizeof(rec *));
        http_reply_json(r, 200, &j);
    }
    recvec_free(&offline);
    gather_release(g);
}

void admin_client_get(http_req *r)
{
    gather *g = gather_new(r->b, clients_fn);
    g->id = dup_or_null(r->rest);
    g->detail = true;
    recvec offline = {0};
    offline_sessions(r->b, g, &offline);
    if (gather_run_or_reply(r, g, -1)) {
        size_t n;
        rec **v = merged(g, &offline, &n);
        if (n == 0) {
            http_reply_error(r, 404, "no client or session with id '%s'", r->rest);
        } else {
            json_buf j = {0};
            json_raw(&j, v[0]->json, strlen(v[0]->json));
            http_reply_json(r, 200, &j);
        }
        sh_free(v, (n ? n : 1) * sizeof(rec *));
    }
    recvec_free(&offline);
    gather_release(g);
}

void admin_client_kick(http_req *r)
{
    gather *g = gather_new(r->b, kick_fn);
    g->id = dup_or_null(r->rest);
    if (gather_run_or_reply(r, g, -1)) {
        uint64_t n = 0;
        for (int i = 0; i < g->nslots; i++) {
            n += g->slots[i].count;
        }
        char safe[128];
        sh_log_sample(safe, sizeof(safe), r->rest, strlen(r->rest));
        sh_log(SH_INFO, "event=admin_kick client=%s connections=%llu by=%s", safe, (unsigned long long)n, r->peer);
        if (n == 0) {
            http_reply_error(r, 404, "client '%s' is not connected", r->rest);
        } else {
            json_buf j = {0};
            json_obj(&j);
            json_key(&j, "kicked");
            json_str(&j, r->rest);
            json_key(&j, "connections");
            json_u64(&j, n);
            json_obj_end(&j);
            http_reply_json(r, 200, &j);
        }
    }
    gather_release(g);
}

/* --- node ------------------------------------------------------------------ */

static void drain_json(json_buf *j, broker *b);

void admin_node(http_req *r)
{
    broker *b = r->b;
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "node_id");
    json_str(&j, b->node_id);
    json_key(&j, "version");
    json_str(&j, SHOAL_VERSION);
    json_key(&j, "uptime_s");
    json_u64(&j, (now_ms() - b->start_ms) / 1000u);
    json_key(&j, "workers");
    json_u64(&j, (uint64_t)b->nworkers);
    json_key(&j, "backplane");
    json_str(&j, bp_kind(b->bp));
    json_key(&j, "port");
    json_u64(&j, b->port);
    json_key(&j, "http_port");
    json_u64(&j, http_port(r->h));
    json_key(&j, "ready");
    json_bool(&j, !atomic_load(&b->ops.draining) && !atomic_load(&b->stopping) && bp_is_ready(b->bp));
    json_key(&j, "draining");
    json_bool(&j, atomic_load(&b->ops.draining));
    json_key(&j, "connections");
    json_u64(&j, atomic_load(&b->stats.connections_current));
    json_key(&j, "sessions");
    json_u64(&j, atomic_load(&b->sess_count));
    json_key(&j, "drain");
    drain_json(&j, b);
    json_obj_end(&j);
    http_reply_json(r, 200, &j);
}

static void nodes_cb(bp_status st, const bp_node_info *nodes, size_t n, void *arg)
{
    gather_slot *s = arg;
    s->status = st;
    for (size_t i = 0; st == BP_OK && i < n; i++) {
        json_buf j = {0};
        json_obj(&j);
        json_key(&j, "node_id");
        json_str(&j, nodes[i].node_id);
        json_key(&j, "address");
        json_str(&j, nodes[i].address);
        json_key(&j, "self");
        json_bool(&j, nodes[i].node_id && !strcmp(nodes[i].node_id, s->w->b->node_id));
        json_obj_end(&j);
        recvec_push(&s->recs, nodes[i].node_id ? nodes[i].node_id : "", &j, true);
    }
    gather_done(s);
}

/* Backplane calls are made from a worker and answer on it. */
static bool nodes_fn(gather_slot *s)
{
    bp_nodes(s->w->b->bp, s->w->id, nodes_cb, s);
    return false;
}

void admin_nodes(http_req *r)
{
    gather *g = gather_new(r->b, nodes_fn);
    if (gather_run_or_reply(r, g, 0)) {
        gather_slot *s = &g->slots[0];
        if (s->status != BP_OK) {
            http_reply_error(r, 503, "backplane: %s", bp_status_name((bp_status)s->status));
        } else {
            recvec none = {0};
            size_t n;
            rec **v = merged(g, &none, &n);
            json_buf j = {0};
            json_obj(&j);
            json_key(&j, "nodes");
            json_arr(&j);
            for (size_t i = 0; i < n; i++) {
                json_raw(&j, v[i]->json, strlen(v[i]->json));
            }
            json_arr_end(&j);
            json_obj_end(&j);
            sh_free(v, (n ? n : 1) * sizeof(rec *));
            http_reply_json(r, 200, &j);
        }
    }
    gather_release(g);
}

/* --- drain ----------------------------------------------------------------- */

/* disconnect=0: the listeners only (node/drain.c closes them the same way). */
static bool listeners_fn(gather_slot *s)
{
    s->aux += drain_close_listeners(s->w);
    return true;
}

/* Close the listeners and report not ready; the clients stay. */
static void drain_listeners_only(http_req *r)
{
    /* Not ready first, so a load balancer stops sending before the port closes. */
    atomic_store(&r->b->ops.draining, true);
    gather *g = gather_new(r->b, listeners_fn);
    if (gather_run_or_reply(r, g, -1)) {
        uint64_t listeners = 0;
        for (int i = 0; i < g->nslots; i++) {
            listeners += g->slots[i].aux;
        }
        sh_log(SH_INFO, "event=drain listeners_closed=%llu clients_disconnected=0 by=%s", (unsigned long long)listeners,
               r->peer);
        json_buf j = {0};
        json_obj(&j);
        json_key(&j, "status");
        json_str(&j, "draining");
        json_key(&j, "listeners_closed");
        json_u64(&j, listeners);
        json_key(&j, "clients_disconnected");
        json_u64(&j, 0);
        json_obj_end(&j);
        http_reply_json(r, 200, &j);
    }
    gather_release(g);
}

/* The drain's figures, in /api/v1/node and the drain's answer. */
static void drain_json(json_buf *j, broker *b)
{
    static const char *const states[] = {"off", "running", "done"};
    int st = drain_state_of(b);
    json_obj(j);
    json_key(j, "state");
    json_str(j, states[st]);
    json_key(j, "timeout_ms");
    json_u64(j, (uint64_t)b->cfg->drain.timeout * 1000u);
    json_key(j, "rate");
    json_u64(j, b->cfg->drain.rate);
    json_key(j, "connections");
    json_u64(j, st == DRAIN_OFF ? 0 : atomic_load(&b->drain.connections));
    json_key(j, "connections_left");
    json_u64(j, drain_remaining(b));
    json_key(j, "disconnected");
    json_u64(j, atomic_load(&b->drain.disconnected));
    json_key(j, "forced");
    json_u64(j, atomic_load(&b->drain.forced));
    json_key(j, "elapsed_ms");
    json_u64(j, st == DRAIN_DONE ? atomic_load(&b->drain.elapsed_ms)
                                 : (st == DRAIN_RUNNING ? now_ms() - b->drain.start_ms : 0));
    json_obj_end(j);
}

/* The drain runs on the workers (node/drain.c) and may take up to
 * --drain-timeout: answered at once, followed in GET /api/v1/node. */
void admin_drain(http_req *r)
{
    const char *d = http_query(r, "disconnect");
    if (d && (!strcmp(d, "0") || !strcmp(d, "false"))) {
        drain_listeners_only(r);
        return;
    }
    char by[80];
    snprintf(by, sizeof(by), "http:%s", r->peer);
    bool started = drain_begin(r->b, by);
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "status");
    json_str(&j, "draining");
    json_key(&j, "started");
    json_bool(&j, started);
    json_key(&j, "drain");
    drain_json(&j, r->b);
    json_obj_end(&j);
    http_reply_json(r, 200, &j);
}

/* --- retained ---------------------------------------------------------------- */

typedef struct msgvec {
    msg **v;
    size_t n;
    size_t cap;
} msgvec;

static void collect_cb(void *arg, msg *m)
{
    msgvec *mv = arg;
    if (mv->n == mv->cap) {
        size_t cap = mv->cap ? mv->cap * 2 : 64;
        mv->v = sh_realloc(mv->v, mv->cap * sizeof(msg *), cap * sizeof(msg *));
        mv->cap = cap;
    }
    mv->v[mv->n++] = msg_ref(m);
}

static int msg_cmp(const void *a, const void *b)
{
    const msg *x = *(msg *const *)a, *y = *(msg *const *)b;
    size_t n = x->topic_len < y->topic_len ? x->topic_len : y->topic_len;
    int c = memcmp(x->topic, y->topic, n);
    return c ? c : (int)x->topic_len - (int)y->topic_len;
}

static void retained_json(json_buf *j, const msg *m, uint64_t now)
{
    char preview[65];
    sh_log_sample(preview, sizeof(preview), m->payload, m->payload_len);
    bool expired;
    uint32_t left = msg_expiry_left(m, now, &expired);
    json_obj(j);
    json_key(j, "topic");
    json_strn(j, (const char *)m->topic, m->topic_len);
    json_key(j, "qos");
    json_u64(j, m->qos);
    json_key(j, "payload_bytes");
    json_u64(j, m->payload_len);
    json_key(j, "payload_preview");
    json_str(j, preview);
    json_key(j, "expiry_s");
    if (m->expiry_at) {
        json_u64(j, left);
    } else {
        json_null(j);
    }
    json_obj_end(j);
}

void admin_retained(http_req *r)
{
    uint64_t limit, offset;
    if (!http_query_uint_or_reply(r, "limit", LIMIT_DEFAULT, LIMIT_MAX, &limit) ||
        !http_query_uint_or_reply(r, "offset", 0, UINT32_MAX, &offset)) {
        return;
    }
    const char *filter = http_query(r, "filter");
    if (!filter || !*filter) {
        filter = "#";
    }
    size_t flen = strlen(filter);
    if (!mqtt_topic_filter_valid((const uint8_t *)filter, flen)) {
        http_reply_error(r, 400, "invalid topic filter '%s'", filter);
        return;
    }
    broker *b = r->b;
    msgvec mv = {0};
    uint64_t now = now_ms();
    /* Messages are immutable and refcounted: hold refs, read them unlocked. */
    pthread_rwlock_wrlock(&b->retain_lock); /* match may drop expired entries */
    retain_match(b->retained, (mqtt_bytes){(const uint8_t *)filter, (uint32_t)flen}, now, collect_cb, &mv);
    pthread_rwlock_unlock(&b->retain_lock);
    if (mv.n > 1) {
        qsort(mv.v, mv.n, sizeof(msg *), msg_cmp); /* v is NULL when nothing matched */
    }
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "total");
    json_u64(&j, mv.n);
    json_key(&j, "offset");
    json_u64(&j, offset);
    json_key(&j, "limit");
    json_u64(&j, limit);
    json_key(&j, "retained");
    json_arr(&j);
    for (size_t i = offset; i < mv.n && i < offset + limit; i++) {
        retained_json(&j, mv.v[i], now);
    }
    json_arr_end(&j);
    json_obj_end(&j);
    for (size_t i = 0; i < mv.n; i++) {
        msg_unref(mv.v[i]);
    }
    sh_free(mv.v, mv.cap * sizeof(msg *));
    http_reply_json(r, 200, &j);
}

static void retained_delete_cb(bp_status st, void *arg)
{
    gather_slot *s = arg;
    s->status = st;
    gather_done(s);
}

/* On worker 0: an empty retained record that is not a message (nobody
 * receives it), answered once Kafka has it and this node applied it. */
static bool retained_delete_fn(gather_slot *s)
{
    const char *topic = s->g->id;
    bp_message m = {
        .topic = (const uint8_t *)topic,
        .topic_len = (uint32_t)strlen(topic),
        .qos = 1,
        .retain = true,
        .retain_only = true,
    };
    bp_publish(s->w->b->bp, s->w->id, &m, retained_delete_cb, s);
    return false;
}

/* A cluster node deletes through the stream, so that every node and the
 * snapshot see it in Kafka's order (a delete of one node's index would
 * come back from the snapshot or the next set's replay). */
static bool delete_through_stream(http_req *r, const char *topic)
{
    gather *g = gather_new(r->b, retained_delete_fn);
    g->id = sh_strndup(topic, strlen(topic));
    bool ok = gather_run_or_reply(r, g, 0);
    if (ok && g->slots[0].status != BP_OK) {
        http_reply_error(r, 503, "backplane: %s", bp_status_name((bp_status)g->slots[0].status));
        ok = false;
    }
    gather_release(g);
    return ok;
}

void admin_retained_delete(http_req *r)
{
    const char *topic = r->rest;
    size_t len = strlen(topic);
    if (!mqtt_topic_name_valid((const uint8_t *)topic, len)) {
        http_reply_error(r, 400, "invalid topic name '%s'", topic);
        return;
    }
    broker *b = r->b;
    mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)len};
    bool stream = bp_retained_from_stream(b->bp), found;
    pthread_rwlock_wrlock(&b->retain_lock);
    found = stream ? retain_has(b->retained, t) : retain_delete(b->retained, t);
    pthread_rwlock_unlock(&b->retain_lock);
    char safe[128];
    sh_log_sample(safe, sizeof(safe), topic, len);
    sh_log(SH_INFO, "event=admin_retained_delete topic=\"%s\" found=%s by=%s", safe, found ? "yes" : "no", r->peer);
    if (!found) {
        http_reply_error(r, 404, "no retained message on '%s'", topic);
        return;
    }
    if (stream && !delete_through_stream(r, topic)) {
        return;
    }
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "deleted");
    json_str(&j, topic);
    json_obj_end(&j);
    http_reply_json(r, 200, &j);
}
