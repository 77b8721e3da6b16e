/* SPDX-License-Identifier: Apache-2.0 */
/* Shared-subscription membership in Redis (docs/architecture.md, "Shared
 * subscriptions across nodes"). Every SHARE interval (the heartbeat) the
 * backplane thread asks the node for its groups and member counts and runs
 * SHARE_LUA: it writes this node's count into each group's hash
 * shoal:share:{group/filter} (node -> "count:expiry", expiry on Redis's
 * clock), removes the node from groups it left, and returns each of its
 * groups' live entries. The answer replaces the view bp_share_mine reads
 * from the workers. Groups this node has no member in are not in its view:
 * it never delivers their copies. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/backplane_impl.h"
#include "cluster/rk_impl.h"
#include "common/alloc.h"
#include "common/log.h"

/* An entry lives 3 refreshes: a dead node's members stop being chosen
 * within that, as its membership claim expires. */
#define SHARE_TTL_REFRESHES 3
/* ARGV: node id, ttl ms, then key, count pairs. */
static const char SHARE_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local me, ttl = ARGV[1], tonumber(ARGV[2]) "
    "local mine = 'shoal:share-node:' .. me "
    "local keep = {} "
    "for i = 3, #ARGV, 2 do "
    "  keep[ARGV[i]] = true "
    "  local k = 'shoal:share:' .. ARGV[i] "
    "  redis.call('HSET', k, me, ARGV[i + 1] .. ':' .. string.format('%d', now + ttl)) "
    "  redis.call('PEXPIRE', k, ttl * 10) "
    "  redis.call('SADD', mine, ARGV[i]) "
    "end "
    "for _, g in ipairs(redis.call('SMEMBERS', mine)) do "
    "  if not keep[g] then redis.call('HDEL', 'shoal:share:' .. g, me) redis.call('SREM', mine, g) end "
    "end "
    "redis.call('PEXPIRE', mine, ttl * 10) "
    "local out = {} "
    "for i = 3, #ARGV, 2 do "
    "  local k = 'shoal:share:' .. ARGV[i] "
    "  local kv = redis.call('HGETALL', k) "
    "  local row = {ARGV[i]} "
    "  for j = 1, #kv, 2 do "
    "    local c, e = string.match(kv[j + 1], '^(%d+):(%d+)$') "
    "    if c and tonumber(e) > now then row[#row + 1] = kv[j] row[#row + 1] = c "
    "    else redis.call('HDEL', k, kv[j]) end "
    "  end "
    "  out[#out + 1] = row "
    "end "
    "return out";

typedef struct share_group {
    char *key;
    size_t key_len;
    bp_share_node *nodes;
    size_t n;
} share_group;

typedef struct share_view {
    share_group *g;
    size_t n, cap; /* cap >= 1: what g was allocated with */
} share_view;

typedef struct rk_share {
    struct event *timer;
    bool pending;
    pthread_rwlock_t lock; /* view: written by the backplane thread, read by workers */
    share_view view;
} rk_share;

static int by_id(const void *a, const void *b)
{
    return strcmp(((const bp_share_node *)a)->id, ((const bp_share_node *)b)->id);
}

static const share_group *group_find(const share_view *v, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->g[i].key_len == len && memcmp(v->g[i].key, key, len) == 0) {
            return &v->g[i];
        }
    }
    return NULL;
}

static char *dup_str(const char *p, size_t len)
{
    char *s = sh_malloc(len + 1);
    memcpy(s, p, len);
    s[len] = 0;
    return s;
}

/* One row of the script's answer: key, then node, count pairs. */
static bool group_parse(const redisReply *row, share_group *g)
{
    if (row->type != REDIS_REPLY_ARRAY || row->elements < 1 || row->element[0]->type != REDIS_REPLY_STRING) {
        return false;
    }
    g->key_len = row->element[0]->len;
    g->key = sh_malloc(g->key_len ? g->key_len : 1);
    memcpy(g->key, row->element[0]->str, g->key_len);
    g->n = 0;
    size_t pairs = (row->elements - 1) / 2;
    g->nodes = sh_malloc((pairs ? pairs : 1) * sizeof(bp_share_node));
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *id = row->element[1 + 2 * i], *c = row->element[2 + 2 * i];
        if (id->type != REDIS_REPLY_STRING || c->type != REDIS_REPLY_STRING) {
            continue;
        }
        g->nodes[g->n].id = dup_str(id->str, id->len);
        g->nodes[g->n].members = (uint32_t)strtoul(c->str, NULL, 10);
        g->n++;
    }
    if (pairs) {
        g->nodes = sh_realloc(g->nodes, pairs * sizeof(bp_share_node), (g->n ? g->n : 1) * sizeof(bp_share_node));
    }
    /* The nodes must agree on the order whatever order Redis returned. */
    qsort(g->nodes, g->n, sizeof(bp_share_node), by_id);
    return true;
}

static size_t group_nodes_alloc(const share_group *g)
{
    return g->n ? g->n : 1;
}

static void group_free_one(share_group *g)
{
    for (size_t k = 0; k < g->n; k++) {
        sh_free((char *)g->nodes[k].id, strlen(g->nodes[k].id) + 1);
    }
    sh_free(g->nodes, group_nodes_alloc(g) * sizeof(bp_share_node));
    sh_free(g->key, g->key_len ? g->key_len : 1);
}

static bool group_same(const share_group *a, const share_group *b)
{
    if (!a || a->n != b->n) {
        return false;
    }
    for (size_t k = 0; k < a->n; k++) {
        if (strcmp(a->nodes[k].id, b->nodes[k].id) || a->nodes[k].members != b->nodes[k].members) {
            return false;
        }
    }
    return true;
}

/* One INFO line per change of a group's view: tests and operators see
 * when the cluster agrees on who delivers. */
static void group_log(const share_group *g)
{
    char buf[512];
    size_t o = 0;
    buf[0] = 0;
    for (size_t k = 0; k < g->n && o < sizeof(buf); k++) {
        int w = snprintf(buf + o, sizeof(buf) - o, "%s%s:%u", k ? "," : "", g->nodes[k].id, g->nodes[k].members);
        if (w < 0) {
            break;
        }
        o += (size_t)w;
    }
    sh_log(SH_INFO, "event=share_view group=\"%.*s\" nodes=%s", (int)g->key_len, g->key, buf);
}

static void share_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    rk *r = arg;
    rk_share *s = r->share;
    redisReply *rep = reply;
    if (!s || !s->timer) {
        return;
    }
    s->pending = false;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep && rep->type == REDIS_REPLY_ERROR) {
            atomic_fetch_add(&r->redis_errors, 1);
            sh_log(SH_WARN, "event=share_refresh_failed err=\"%s\"", rep->str);
        }
        return; /* keep the last view */
    }
    size_t cap = rep->elements ? rep->elements : 1;
    share_view nv = {sh_malloc(cap * sizeof(share_group)), 0, cap};
    for (size_t i = 0; i < rep->elements; i++) {
        if (group_parse(rep->element[i], &nv.g[nv.n])) {
            nv.n++;
        }
    }
    for (size_t i = 0; i < nv.n; i++) {
        if (!group_same(group_find(&s->view, (const uint8_t *)nv.g[i].key, nv.g[i].key_len), &nv.g[i])) {
            group_log(&nv.g[i]);
        }
    }
    pthread_rwlock_wrlock(&s->lock);
    share_view old = s->view;
    s->view = nv;
    pthread_rwlock_unlock(&s->lock);
    for (size_t i = 0; i < old.n; i++) {
        group_free_one(&old.g[i]);
    }
    sh_free(old.g, old.cap * sizeof(share_group));
}

/* The node's groups, collected for one script call. */
typedef struct share_args {
    char **argv;
    size_t *lens;
    size_t n, cap;
} share_args;

static void args_push(share_args *a, const char *p, size_t len)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        a->argv = sh_realloc(a->argv, a->cap * sizeof(char *), cap * sizeof(char *));
        a->lens = sh_realloc(a->lens, a->cap * sizeof(size_t), cap * sizeof(size_t));
        a->cap = cap;
    }
    a->argv[a->n] = dup_str(p, len);
    a->lens[a->n] = len;
    a->n++;
}

static void emit_group(void *ctx, const uint8_t *key, size_t len, uint32_t members)
{
    share_args *a = ctx;
    char c[16];
    int w = snprintf(c, sizeof(c), "%u", members);
    args_push(a, (const char *)key, len);
    args_push(a, c, (size_t)w);
}

static int refresh_ms(const rk *r)
{
    return r->bp->cfg.heartbeat_ms > 0 ? r->bp->cfg.heartbeat_ms : 1000;
}

static void share_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rk *r = arg;
    rk_share *s = r->share;
    const bp_hooks *h = &r->bp->hooks;
    if (!r->ac || !atomic_load(&r->redis_up) || atomic_load(&r->stopping) || s->pending || !h->share_groups) {
        return;
    }
    share_args a = {0};
    char ttl[24];
    args_push(&a, "EVAL", 4);
    args_push(&a, SHARE_LUA, sizeof(SHARE_LUA) - 1);
    args_push(&a, "0", 1);
    args_push(&a, r->bp->cfg.node_id, strlen(r->bp->cfg.node_id));
    int w = snprintf(ttl, sizeof(ttl), "%d", SHARE_TTL_REFRESHES * refresh_ms(r));
    args_push(&a, ttl, (size_t)w);
    h->share_groups(h->node, emit_group, &a);
    s->pending = true;
    redisAsyncCommandArgv(r->ac, share_reply_cb, r, (int)a.n, (const char **)a.argv, a.lens);
    for (size_t i = 0; i < a.n; i++) {
        sh_free(a.argv[i], a.lens[i] + 1);
    }
    sh_free(a.argv, a.cap * sizeof(char *));
    sh_free(a.lens, a.cap * sizeof(size_t));
}

void rk_share_attach(rk *r)
{
    if (!r->share) {
        r->share = sh_calloc(1, sizeof(*r->share));
        pthread_rwlock_init(&r->share->lock, NULL);
    }
    r->share->timer = event_new(r->base, -1, EV_PERSIST, share_cb, r);
    int ms = refresh_ms(r);
    struct timeval t = {ms / 1000, (ms % 1000) * 1000};
    event_add(r->share->timer, &t);
}

void rk_share_stop(rk *r)
{
    if (r->share && r->share->timer) {
        event_free(r->share->timer);
        r->share->timer = NULL;
    }
}

void rk_share_free(rk *r)
{
    rk_share *s = r->share;
    if (!s) {
        return;
    }
    rk_share_stop(r);
    for (size_t i = 0; i < s->view.n; i++) {
        group_free_one(&s->view.g[i]);
    }
    sh_free(s->view.g, s->view.cap * sizeof(share_group));
    pthread_rwlock_destroy(&s->lock);
    sh_free(s, sizeof(*s));
    r->share = NULL;
}

bool rk_share_mine(rk *r, const uint8_t *key, size_t len, uint64_t h)
{
    rk_share *s = r->share;
    if (!s) {
        return true;
    }
    bool mine = true;
    pthread_rwlock_rdlock(&s->lock);
    const share_group *g = group_find(&s->view, key, len);
    if (g && g->n) {
        mine = strcmp(g->nodes[bp_share_pick(g->nodes, g->n, h)].id, r->bp->cfg.node_id) == 0;
    }
    pthread_rwlock_unlock(&s->lock);
    return mine;
}
