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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/backplane_impl.h"
#include "cluster/lease.h"
#include "cluster/rk_impl.h"
#include "common/alloc.h"
#include "common/log.h"

/* An entry lives as long as the writer's lease (cluster/lease.h, 3
 * refreshes by default): a dead node's members stop being chosen as its
 * membership claim expires, and a Redis outage shorter than the lease,
 * which its nodes ride out without fencing, does not take their members
 * for gone either. */
/* A change of a group's composition comes into force this many refreshes
 * after Redis sees it: every node has read it by then (it refreshes once
 * per refresh), so for any record every node chooses from the same
 * composition. A pending change closer than SHARE_SAFE_REFRESHES to its
 * time is not moved; the next change waits for it. */
#define SHARE_DELAY_REFRESHES 4
#define SHARE_SAFE_REFRESHES 2
/* ARGV: node id, ttl ms, delay ms, safe ms, then key, count pairs (count
 * -1: this node has left the group but still wants its view, a ghost).
 * Each group's hash: node -> "count:expiry", "@eff" -> "at|composition"
 * (in force from Redis time `at`), "@old" -> the composition before it.
 * A composition is "node=count,..." sorted. Returns per group: key, at,
 * the composition from at, the one before.
 * Founding: a group with no composition yet, or whose composition in force
 * is empty (nobody delivers it), takes this call's at once and from time 0:
 * no node delivers it by another, and a node learns it before its member's
 * SUBACK (share_ready), so the first members' node delivers every message
 * from the first. Two nodes founding at once are ordered by Redis: the
 * second one's arrival is a change like any other. */
static const char SHARE_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local me, ttl = ARGV[1], tonumber(ARGV[2]) "
    "local delay, safe = tonumber(ARGV[3]), tonumber(ARGV[4]) "
    "local mine = 'shoal:share-node:' .. me "
    "redis.call('SET', 'shoal:share-pos:' .. me, ARGV[5], 'PX', ttl * 20) "
    "local keep = {} "
    "for i = 6, #ARGV, 2 do "
    "  local k = 'shoal:share:' .. ARGV[i] "
    "  if ARGV[i + 1] == '-1' then redis.call('HDEL', k, me) "
    "  else "
    "    keep[ARGV[i]] = true "
    "    redis.call('HSET', k, me, ARGV[i + 1] .. ':' .. string.format('%d', now + ttl)) "
    "    redis.call('SADD', mine, ARGV[i]) "
    "  end "
    "  redis.call('PEXPIRE', k, ttl * 10 + delay) "
    "end "
    "for _, g in ipairs(redis.call('SMEMBERS', mine)) do "
    "  if not keep[g] then redis.call('HDEL', 'shoal:share:' .. g, me) redis.call('SREM', mine, g) end "
    "end "
    "redis.call('PEXPIRE', mine, ttl * 10) "
    "local out = {} "
    "for i = 6, #ARGV, 2 do "
    "  local k = 'shoal:share:' .. ARGV[i] "
    "  local kv = redis.call('HGETALL', k) "
    "  local live, eff, old, gone, dead, alive = {}, nil, '', {}, {}, {} "
    "  for j = 1, #kv, 2 do "
    "    local f = kv[j] "
    "    if f == '@eff' then eff = kv[j + 1] "
    "    elseif f == '@old' then old = kv[j + 1] "
    "    elseif string.sub(f, 1, 6) == '@gone:' then gone[string.sub(f, 7)] = kv[j + 1] "
    "    elseif string.sub(f, 1, 6) == '@dead:' then dead[#dead + 1] = {string.sub(f, 7), kv[j + 1]} "
    "    else "
    "      local c, e = string.match(kv[j + 1], '^(%d+):(%d+)$') "
    "      if c and tonumber(e) > now then live[#live + 1] = f .. '=' .. c alive[f] = true "
    "      else "
    "        redis.call('HDEL', k, f) "
    "        if c then "
    "          gone[f] = redis.call('GET', 'shoal:share-pos:' .. f) or '' "
    "          redis.call('HSET', k, '@gone:' .. f, gone[f]) "
    "        end "
    "      end "
    "    end "
    "  end "
    "  for x, _ in pairs(gone) do "
    "    if alive[x] then gone[x] = nil redis.call('HDEL', k, '@gone:' .. x) end "
    "  end "
    "  table.sort(live) "
    "  local comp = table.concat(live, ',') "
    "  local at, cur = 0, nil "
    "  if eff then local a, c = string.match(eff, '^(%d+)|(.*)$') at, cur = tonumber(a), c end "
    "  if cur == nil or (cur == '' and now >= at) then "
    "    for x, _ in pairs(gone) do redis.call('HDEL', k, '@gone:' .. x) end "
    "    at, cur, old = 0, comp, '' "
    "    redis.call('HSET', k, '@eff', '0|' .. comp) "
    "    redis.call('HSET', k, '@old', '') "
    "  elseif cur ~= comp and (now >= at or at - now >= safe) then "
    "    local prev = old "
    "    if now >= at then prev = cur old = cur redis.call('HSET', k, '@old', old) end "
    "    at, cur = now + delay, comp "
    "    redis.call('HSET', k, '@eff', string.format('%d', at) .. '|' .. comp) "
    "    for x, pos in pairs(gone) do "
    "      local v = string.format('%d', at) .. '|' .. prev .. '|' .. pos "
    "      redis.call('HDEL', k, '@gone:' .. x) "
    "      redis.call('HSET', k, '@dead:' .. x, v) "
    "      dead[#dead + 1] = {x, v} "
    "    end "
    "  end "
    "  local ready = {} "
    "  for _, d in ipairs(dead) do "
    "    local dat = tonumber(string.match(d[2], '^(%d+)|')) or 0 "
    "    if now > dat + ttl * 10 then redis.call('HDEL', k, '@dead:' .. d[1]) "
    "    elseif now >= dat + safe then ready[#ready + 1] = d[1] .. '|' .. d[2] end "
    "  end "
    "  out[#out + 1] = {ARGV[i], string.format('%d', at), cur, old, ready} "
    "end "
    "return out";

/* One composition: nodes sorted by id. */
typedef struct share_comp {
    bp_share_node *nodes;
    size_t n;
} share_comp;

typedef struct share_group {
    char *key;
    size_t key_len;
    int64_t at;     /* Unix ms (Redis's clock) from which `eff` is in force */
    share_comp eff; /* records with a time >= at */
    share_comp old; /* records before */
} share_group;

typedef struct share_view {
    share_group *g;
    size_t n, cap; /* cap >= 1: what g was allocated with */
} share_view;

typedef struct rk_share {
    struct event *timer;
    bool pending;
    /* A worker waits for a group's first view (rk_share_ready): refresh
     * now, and again once the pending answer is in. */
    atomic_bool want;
    pthread_rwlock_t lock; /* view: written by the backplane thread, read by workers */
    share_view view;
    /* Dead-node markers already handed to the node ("key\ndead|at"), as
     * the last answer listed them: each is replayed once. */
    char **seen;
    size_t n_seen;
} rk_share;

static int by_id(const void *a, const void *b)
{
    return strcmp(((const bp_share_node *)a)->id, ((const bp_share_node *)b)->id);
}

/* Keys ordered by length, then bytes: the view is sorted so, and a lookup
 * (every matched message, every poll of a waiting SUBACK, every group of
 * an answer) is a binary search. A linear one made a client's 5,000 new
 * groups cost the backplane thread 25 M comparisons per refresh, long
 * enough for the node to lose its lease. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (alen != blen) {
        return alen < blen ? -1 : 1;
    }
    return alen ? memcmp(a, b, alen) : 0;
}

static int by_key(const void *a, const void *b)
{
    const share_group *x = a, *y = b;
    return key_cmp((const uint8_t *)x->key, x->key_len, (const uint8_t *)y->key, y->key_len);
}

static const share_group *group_find(const share_view *v, const uint8_t *key, size_t len)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const share_group *g = &v->g[mid];
        int c = key_cmp((const uint8_t *)g->key, g->key_len, key, len);
        if (c == 0) {
            return g;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
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

/* "node=count,node=count" into c (ids copied), sorted by id. */
static void comp_parse(const char *p, size_t len, share_comp *c)
{
    size_t cap = 1;
    for (size_t i = 0; i < len; i++) {
        cap += p[i] == ',';
    }
    c->nodes = sh_malloc(cap * sizeof(bp_share_node));
    c->n = 0;
    const char *end = p + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *eq = NULL;
        for (const char *q = e; q > p; q--) {
            if (q[-1] == '=') {
                eq = q - 1;
                break;
            }
        }
        if (eq && eq > p && c->n < cap) {
            c->nodes[c->n].id = dup_str(p, (size_t)(eq - p));
            c->nodes[c->n].members = (uint32_t)strtoul(eq + 1, NULL, 10);
            c->n++;
        }
        p = comma ? comma + 1 : end;
    }
    c->nodes = sh_realloc(c->nodes, cap * sizeof(bp_share_node), (c->n ? c->n : 1) * sizeof(bp_share_node));
    /* The nodes must agree on the order whatever order Redis gave. */
    qsort(c->nodes, c->n, sizeof(bp_share_node), by_id);
}

static void comp_free(share_comp *c)
{
    for (size_t k = 0; k < c->n; k++) {
        sh_free((char *)c->nodes[k].id, strlen(c->nodes[k].id) + 1);
    }
    sh_free(c->nodes, (c->n ? c->n : 1) * sizeof(bp_share_node));
    c->nodes = NULL;
    c->n = 0;
}

static bool comp_same(const share_comp *a, const share_comp *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (size_t k = 0; k < a->n; k++) {
        if (strcmp(a->nodes[k].id, b->nodes[k].id) || a->nodes[k].members != b->nodes[k].members) {
            return false;
        }
    }
    return true;
}

/* One row of the script's answer: key, at, composition, the one before. */
static bool group_parse(const redisReply *row, share_group *g)
{
    if (row->type != REDIS_REPLY_ARRAY || row->elements < 4) {
        return false;
    }
    for (size_t i = 0; i < 4; i++) {
        if (row->element[i]->type != REDIS_REPLY_STRING) {
            return false;
        }
    }
    g->key_len = row->element[0]->len;
    g->key = sh_malloc(g->key_len ? g->key_len : 1);
    memcpy(g->key, row->element[0]->str, g->key_len);
    g->at = strtoll(row->element[1]->str, NULL, 10);
    comp_parse(row->element[2]->str, row->element[2]->len, &g->eff);
    comp_parse(row->element[3]->str, row->element[3]->len, &g->old);
    return true;
}

static void group_free_one(share_group *g)
{
    comp_free(&g->eff);
    comp_free(&g->old);
    sh_free(g->key, g->key_len ? g->key_len : 1);
}

static void comp_text(const share_comp *c, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t k = 0; k < c->n && o < size; k++) {
        int w = snprintf(buf + o, size - o, "%s%s:%u", k ? "," : "", c->nodes[k].id, c->nodes[k].members);
        if (w < 0) {
            break;
        }
        o += (size_t)w;
    }
}

/* One INFO line per composition a group takes, when this node learns it
 * (in_force_at: the record time from which it chooses by it). */
static void group_log(const share_group *g)
{
    char buf[512];
    comp_text(&g->eff, buf, sizeof(buf));
    sh_log(SH_INFO, "event=share_view group=\"%.*s\" nodes=%s in_force_at=%lld", (int)g->key_len, g->key, buf,
           (long long)g->at);
}

/* ---- dead nodes' markers ---- */

static void seen_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sh_free(v[i], strlen(v[i]) + 1);
    }
    sh_free(v, (n ? n : 1) * sizeof(char *));
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* v is sorted (dead_markers): a binary search, as there may be one marker
 * per group. */
static bool seen_has(char *const *v, size_t n, const char *m)
{
    return n && bsearch(&m, v, n, sizeof(char *), by_str) != NULL;
}

/* "p0,p1,..." into from[0..n) (-1 where absent). False if empty. */
static bool pos_parse(const char *p, int64_t *from, uint32_t n)
{
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        from[i] = -1;
    }
    for (uint32_t i = 0; i < n && *p; i++) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) {
            break;
        }
        from[i] = v;
        any = true;
        p = *end == ',' ? end + 1 : end;
    }
    return any;
}

/* A marker "dead|at|composition|positions" of group g: hand it to the node
 * if this node may be chosen over the composition without the dead one. */
static void dead_start(rk *r, const share_group *g, const char *m)
{
    const bp_hooks *h = &r->bp->hooks;
    const char *me = r->bp->cfg.node_id;
    const char *a = strchr(m, '|');
    const char *b = a ? strchr(a + 1, '|') : NULL;
    const char *c = b ? strchr(b + 1, '|') : NULL;
    if (!c || !h->share_dead) {
        return;
    }
    char *dead = dup_str(m, (size_t)(a - m));
    share_comp comp;
    comp_parse(b + 1, (size_t)(c - b - 1), &comp);
    bool chosen = false;
    for (size_t k = 0; k < comp.n; k++) {
        chosen |= strcmp(comp.nodes[k].id, me) == 0 && strcmp(me, dead) != 0;
    }
    uint32_t n_parts = bp_stream_partitions(r->bp);
    int64_t *from = sh_malloc((n_parts ? n_parts : 1) * sizeof(int64_t));
    bool have = n_parts && pos_parse(c + 1, from, n_parts);
    if (chosen && !have) {
        sh_log(SH_WARN, "event=share_dead_no_positions group=\"%.*s\" node=%s", (int)g->key_len, g->key, dead);
    } else if (chosen) {
        sh_log(SH_INFO, "event=share_dead_replay group=\"%.*s\" node=%s before=%lld", (int)g->key_len, g->key, dead,
               strtoll(a + 1, NULL, 10));
        bp_share_dead d = {
            (const uint8_t *)g->key, g->key_len, dead, strtoll(a + 1, NULL, 10), comp.nodes, comp.n, from, n_parts};
        h->share_dead(h->node, &d);
    }
    sh_free(from, (n_parts ? n_parts : 1) * sizeof(int64_t));
    comp_free(&comp);
    sh_free(dead, strlen(dead) + 1);
}

/* The answer's markers: new ones start a replay; the list kept is theirs. */
static void dead_markers(rk *r, const redisReply *rep, const share_view *nv)
{
    rk_share *s = r->share;
    size_t cap = 0, n = 0;
    char **now = NULL;
    for (size_t i = 0; i < rep->elements && i < nv->n; i++) {
        const redisReply *row = rep->element[i];
        if (row->type != REDIS_REPLY_ARRAY || row->elements < 5 || row->element[4]->type != REDIS_REPLY_ARRAY) {
            continue;
        }
        const share_group *g = group_find(nv, (const uint8_t *)row->element[0]->str, row->element[0]->len);
        const redisReply *ms = row->element[4];
        for (size_t j = 0; g && j < ms->elements; j++) {
            if (ms->element[j]->type != REDIS_REPLY_STRING) {
                continue;
            }
            const char *m = ms->element[j]->str;
            const char *a = strchr(m, '|');
            const char *b = a ? strchr(a + 1, '|') : NULL;
            if (!b) {
                continue;
            }
            size_t len = g->key_len + 1 + (size_t)(b - m);
            char *id = sh_malloc(len + 1);
            memcpy(id, g->key, g->key_len);
            id[g->key_len] = '\n';
            memcpy(id + g->key_len + 1, m, (size_t)(b - m));
            id[len] = 0;
            if (!seen_has(s->seen, s->n_seen, id)) {
                dead_start(r, g, m);
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 4;
                now = sh_realloc(now, cap * sizeof(char *), nc * sizeof(char *));
                cap = nc;
            }
            now[n++] = id;
        }
    }
    if (s->seen) {
        seen_free(s->seen, s->n_seen);
    }
    now = now ? sh_realloc(now, cap * sizeof(char *), (n ? n : 1) * sizeof(char *)) : NULL;
    if (n > 1) {
        qsort(now, n, sizeof(char *), by_str);
    }
    s->seen = now;
    s->n_seen = n;
}

/* An early refresh. Activated with no EV_TIMEOUT on purpose: libevent
 * schedules a persistent timer activated "by timeout" one period after its
 * previous deadline, so each early refresh would push the regular one a
 * period later, and a few in a row (SUBACK waits) let this node's entries
 * lapse while it lives: the others would then replay its share as a dead
 * node's (duplicates). */
static void share_kick(rk_share *s)
{
    event_active(s->timer, 0, 0);
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
    if (atomic_load(&s->want)) {
        share_kick(s);
    }
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
    qsort(nv.g, nv.n, sizeof(share_group), by_key);
    for (size_t i = 0; i < nv.n; i++) {
        const share_group *was = group_find(&s->view, (const uint8_t *)nv.g[i].key, nv.g[i].key_len);
        if (!was || was->at != nv.g[i].at || !comp_same(&was->eff, &nv.g[i].eff)) {
            group_log(&nv.g[i]);
        }
    }
    dead_markers(r, rep, &nv);
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
    /* UINT32_MAX: a ghost (node/mqtt/remote.c), watched, not a member. */
    int w = members == UINT32_MAX ? snprintf(c, sizeof(c), "-1") : snprintf(c, sizeof(c), "%u", members);
    args_push(a, (const char *)key, len);
    args_push(a, c, (size_t)w);
}

/* This node's low-water marks, "p0,p1,...", read by survivors if it dies. */
static void share_positions(rk *r, share_args *a)
{
    const bp_hooks *h = &r->bp->hooks;
    uint32_t n = bp_stream_partitions(r->bp);
    if (!h->share_low || n == 0) {
        args_push(a, "", 0);
        return;
    }
    int64_t *pos = sh_malloc(n * sizeof(int64_t));
    h->share_low(h->node, pos, n);
    size_t size = (size_t)n * 21 + 1, o = 0;
    char *buf = sh_malloc(size);
    buf[0] = 0;
    for (uint32_t p = 0; p < n; p++) {
        int w = snprintf(buf + o, size - o, "%s%lld", p ? "," : "", (long long)(pos[p] == INT64_MAX ? -1 : pos[p]));
        o += w > 0 ? (size_t)w : 0;
    }
    args_push(a, buf, o);
    sh_free(buf, size);
    sh_free(pos, n * sizeof(int64_t));
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
    atomic_store(&s->want, false);
    share_args a = {0};
    char ttl[24], delay[24], safe[24];
    args_push(&a, "EVAL", 4);
    args_push(&a, SHARE_LUA, sizeof(SHARE_LUA) - 1);
    args_push(&a, "0", 1);
    args_push(&a, r->bp->cfg.node_id, strlen(r->bp->cfg.node_id));
    int w = snprintf(ttl, sizeof(ttl), "%d", lease_ttl_ms(r->bp->cfg.heartbeat_ms, r->bp->cfg.lease_ms));
    args_push(&a, ttl, (size_t)w);
    w = snprintf(delay, sizeof(delay), "%d", SHARE_DELAY_REFRESHES * refresh_ms(r));
    args_push(&a, delay, (size_t)w);
    w = snprintf(safe, sizeof(safe), "%d", SHARE_SAFE_REFRESHES * refresh_ms(r));
    args_push(&a, safe, (size_t)w);
    share_positions(r, &a);
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
    if (s->seen) {
        seen_free(s->seen, s->n_seen);
    }
    pthread_rwlock_destroy(&s->lock);
    sh_free(s, sizeof(*s));
    r->share = NULL;
}

#define SHARE_PICK_STACK 32

/* Is `me` the pick among c's nodes (without `except`, when given)? */
static bool comp_mine(const share_comp *c, uint64_t h, const char *me, const char *except)
{
    if (!except) {
        return strcmp(c->nodes[bp_share_pick(c->nodes, c->n, h)].id, me) == 0;
    }
    /* A hand-over: the same rule over the composition without its sender. */
    bp_share_node stack[SHARE_PICK_STACK];
    bp_share_node *v = c->n <= SHARE_PICK_STACK ? stack : sh_malloc(c->n * sizeof(bp_share_node));
    size_t n = 0;
    for (size_t k = 0; k < c->n; k++) {
        if (strcmp(c->nodes[k].id, except) != 0) {
            v[n++] = c->nodes[k];
        }
    }
    bool mine = n && strcmp(v[bp_share_pick(v, n, h)].id, me) == 0;
    if (v != stack) {
        sh_free(v, c->n * sizeof(bp_share_node));
    }
    return mine;
}

bool rk_share_mine(rk *r, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except)
{
    rk_share *s = r->share;
    const char *me = r->bp->cfg.node_id;
    if (!s || !r->bp->hooks.share_groups) {
        /* No membership to announce (a backplane user without shared
         * groups, e.g. the contract tests): every group is this node's,
         * as on the local backplane. Before, this depended on whether the
         * Redis side had attached yet. */
        return !except;
    }
    /* A group not in the view yet (its first refresh is unanswered): not
     * this node's, its member's SUBACK waits for the view (rk_share_ready),
     * and another node may have founded the group already. With Redis
     * unreachable there is no view to wait for: this node delivers what it
     * matches. A hand-over waits for a view. */
    bool mine = !except && !atomic_load(&r->redis_up);
    pthread_rwlock_rdlock(&s->lock);
    const share_group *g = group_find(&s->view, key, len);
    if (g) {
        const share_comp *c = ts >= g->at ? &g->eff : &g->old;
        mine = c->n ? comp_mine(c, h, me, except) : false;
    }
    pthread_rwlock_unlock(&s->lock);
    return mine;
}

bool rk_share_ready(rk *r, const uint8_t *key, size_t len)
{
    rk_share *s = r->share;
    if (!s || !atomic_load(&r->redis_up)) {
        return true;
    }
    /* Known, and this node's members counted in its latest composition: a
     * node that had kept the group as a ghost knows it, but until Redis
     * has its new member it may be the one member left and nobody would
     * deliver. */
    const char *me = r->bp->cfg.node_id;
    bool known = false;
    pthread_rwlock_rdlock(&s->lock);
    const share_group *g = group_find(&s->view, key, len);
    for (size_t k = 0; g && k < g->eff.n && !known; k++) {
        known = strcmp(g->eff.nodes[k].id, me) == 0 && g->eff.nodes[k].members > 0;
    }
    pthread_rwlock_unlock(&s->lock);
    if (!known && !atomic_load(&r->stopping) && !atomic_exchange(&s->want, true) && s->timer) {
        /* From a worker: libevent is thread-aware here (evthread_use_pthreads). */
        share_kick(s);
    }
    return known;
}
