/* SPDX-License-Identifier: Apache-2.0 */
/* Session records in Redis (docs/architecture.md, "Session records in
 * Redis"): one hash per client id written only by the Lua scripts below, so
 * that every claim and every fenced write is one atomic step in Redis. The
 * commands run on the backplane thread's connection (r->ac) and answer on
 * the calling worker's loop; revokes for this node arrive on a second
 * connection in subscribe mode. */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/lease.h"
#include "cluster/rk_impl.h"
#include "cluster/rk_tls.h"
#include "common/alloc.h"
#include "common/log.h"

/* The record's key is "shoal:sess:{<client id>}" (braces: one Redis Cluster
 * slot per client id), spelled in run_sess's command format. */
#define REVOKE_CHANNEL_FMT "shoal:revoke:{%s}" /* a node's revokes: "<new epoch>:<client id>" */

/* Is the node instance (id, token) alive: does its node-id claim
 * (rk_redis.c, "token|address") still hold its token? */
#define LUA_ALIVE                                                 \
    "local function alive(id, tok) "                              \
    "  if id == '' or tok == '' then return 0 end "               \
    "  local v = redis.call('GET', 'shoal:node:{' .. id .. '}') " \
    "  if v and string.sub(v, 1, #tok + 1) == tok .. '|' then return 1 end return 0 end "
/* alive(), or the instance stored into this record (KEYS[2], its stand-in
 * lease) less than its lease ago while its node-id claim was gone: Redis
 * lost its data, and the owner's next heartbeat has not written the claim
 * again yet. Such an owner is no more dead than one that renewed: it
 * stands for its session, and a claim must wait for its release (its
 * final state) rather than resume what it stored last. */
#define LUA_ALIVE_HERE                            \
    "local function alive_here(id, tok) "         \
    "  if alive(id, tok) == 1 then return 1 end " \
    "  if tok ~= '' and redis.call('GET', KEYS[2]) == tok then return 1 end return 0 end "
/* The lease (ms) node id wrote with its claim (rk_redis.c), 0 unknown. */
#define LUA_LEASE                      \
    "local function lease_of(id) "     \
    "  if id == '' then return 0 end " \
    "  return tonumber(redis.call('HGET', '" LEASES_KEY "', id) or '0') or 0 end "
/* The previous owner as the caller sees it: '' when none or the caller
 * itself (same id and token). */
#define LUA_PREV                                  \
    "local function prev_of(id, tok, me, metok) " \
    "  if id == me and tok == metok then return '' end return id end "
/* How long a record the previous owner dropped under a claim that never
  * got the session stays (cluster/backplane.h, bp_session_drop). */
#define DROP_MARGIN_MS "60000"
#define LUA_REVOKE "redis.call('PUBLISH', 'shoal:revoke:{' .. prev .. '}', epoch .. ':' .. ARGV[5]) "

/* Epochs never restart, not even after the record was dropped or Redis lost
 * its data (a restart without persistence, FLUSHALL): a claim's epoch is
 * max(stored + 1, Redis's TIME in microseconds), so an old node instance's
 * epoch is always below a claim made after it (fits a Lua double: 2^53 us
 * is 285 years). TIME before a write needs effects replication, the
 * default from Redis 5 on and asked for before. */
#define LUA_EPOCH                                                      \
    "if redis.replicate_commands then redis.replicate_commands() end " \
    "local function next_epoch(cur) "                                  \
    "  local t = redis.call('TIME') "                                  \
    "  local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "         \
    "  local n = tonumber(cur or '0') + 1 "                            \
    "  if now > n then n = now end return string.format('%.0f', n) end "

/* KEYS: record. ARGV: clean (0/1), -, node id, token, client id.
 * -> {epoch, state|nil, prev owner, prev alive, released (0), prev lease}
 * The previous claim is normally the current owner. But while the claim
 * before that one was never released and its owner is alive (another
 * instance than the current owner), the current owner never got the
 * session: its claim timed out, was abandoned, or still waits. Then that
 * older owner stays the previous one (carried forward and revoked again),
 * so that a chain of abandoned claims never forgets a live connection. */
static const char *CLAIM_LUA = LUA_ALIVE LUA_ALIVE_HERE LUA_LEASE LUA_PREV LUA_EPOCH
    "local k = KEYS[1] "
    "local f = redis.call('HMGET', k, 'epoch', 'owner', 'token', 'prev', 'prev_owner', 'prev_token', 'released') "
    "local owner, tok, pe = f[2] or '', f[3] or '', f[1] or '0' "
    "local po, pt = f[5] or '', f[6] or '' "
    "if f[7] == '0' and po ~= '' and (po ~= owner or pt ~= tok) and alive_here(po, pt) == 1 then "
    "  owner, tok, pe = po, pt, f[4] or '0' end "
    "local epoch = next_epoch(f[1]) "
    "redis.call('HSET', k, 'epoch', epoch, 'owner', ARGV[3], 'token', ARGV[4], 'prev', pe, "
    "  'prev_owner', owner, 'prev_token', tok, 'released', '0', 'cleaned', ARGV[1]) "
    "if ARGV[1] == '1' then redis.call('HDEL', k, 'state') end "
    "redis.call('PERSIST', k) "
    "local prev = prev_of(owner, tok, ARGV[3], ARGV[4]) "
    /* Not to this node's own id: an earlier instance of it is dead (this
     * one holds the id), and the revoke would reach this very instance. */
    "if prev ~= '' and prev ~= ARGV[3] then " LUA_REVOKE "end "
    "local live = alive_here(owner, tok) "
    "return {epoch, redis.call('HGET', k, 'state'), prev, live, 0, live == 1 and lease_of(owner) or 0}";

/* KEYS: record. ARGV: epoch (0 = unfenced), renotify (0/1), node id, token,
 * client id. -> {-1} stale, or {epoch, state|nil, prev owner, prev alive,
 * released, prev lease}; a missing record read unfenced is
 * {0, nil, '', 0, 0, 0}. */
static const char *LOAD_LUA = LUA_ALIVE LUA_ALIVE_HERE LUA_LEASE LUA_PREV
    "local f = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'token', 'prev_owner', 'prev_token', 'released', "
    "  'state') "
    "if ARGV[1] ~= '0' and (f[1] ~= ARGV[1] or f[2] ~= ARGV[3] or f[3] ~= ARGV[4]) then return {-1} end "
    "if not f[1] then return {'0', false, '', 0, 0, 0} end "
    "local epoch, released = f[1], tonumber(f[6] or '0') "
    "local prev = prev_of(f[4] or '', f[5] or '', ARGV[3], ARGV[4]) "
    "local live = alive_here(f[4] or '', f[5] or '') "
    "if ARGV[2] == '1' and released == 0 and live == 1 and prev ~= '' and prev ~= ARGV[3] then " LUA_REVOKE "end "
    "return {epoch, f[7], prev, live, released, live == 1 and lease_of(f[4] or '') or 0}";

/* KEYS: record, stand-in lease. ARGV: epoch, ttl ms (0 = none), node id,
 * token, state ('' = keep what is stored: the fenced write of a session
 * with no state to store, e.g. a clean one, or setting the TTL alone),
 * the node's lease ms.
 * -> 1 stored, 2 stored into a record that was gone, 0 stale. PEXPIRE
 * counts on Redis's clock. A missing record is re-created with the
 * caller's claim: the owner found it gone (Redis lost its data, or the
 * TTL ran out while the owner still held the session), nobody claimed the
 * id since (a claim would have created it), and a later claim must find
 * this owner to revoke it. A record a survivor settled for this instance
 * ('reaped' = its token: the instance was seen dead, its will published)
 * is stale for it too: the instance was fenced meanwhile (cluster/lease.h)
 * and its copy of the session is older than the settled one. */
static const char *STORE_LUA = LUA_ALIVE
    "local f = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'token', 'reaped') "
    "local rc = 1 "
    "if not f[1] then "
    "  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'owner', ARGV[3], 'token', ARGV[4], 'prev', '0', "
    "    'prev_owner', '', 'prev_token', '', 'released', '1', 'cleaned', '0') rc = 2 "
    "elseif f[1] ~= ARGV[1] or f[2] ~= ARGV[3] or f[3] ~= ARGV[4] or f[4] == ARGV[4] then return 0 end "
    "if #ARGV[5] > 0 then redis.call('HSET', KEYS[1], 'state', ARGV[5]) end "
    "if ARGV[2] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    /* Our node-id claim is gone (Redis lost its data) but we store: we are
     * alive for a lease from now (we fence before it ends, cluster/lease.h,
     * counting from a renewal sent before this store); until our next
     * heartbeat writes the claim again, the stand-in says so (LUA_ALIVE_HERE). */
    "if alive(ARGV[3], ARGV[4]) == 0 and tonumber(ARGV[6]) > 0 then "
    "  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[6]) end "
    "return rc";

/* KEYS: record. ARGV: old epoch ('0': whichever claim of this instance is
 * the previous one; a node with no session for the id lets go of it),
 * write state (0/1), node id, token, state, ttl ms ('0': leave the TTL).
 * The TTL is the released session's offline one: nobody may connect (the
 * waiting claim may have been abandoned), and a new owner that does
 * removes it with its connect store.
 * -> 1 released, 0 refused (not our previous claim, or released already).
 * After a clean claim the old state stays deleted. */
static const char *RELEASE_LUA =
    "local f = redis.call('HMGET', KEYS[1], 'prev', 'prev_owner', 'prev_token', 'released', 'cleaned') "
    "if (ARGV[1] ~= '0' and f[1] ~= ARGV[1]) or f[2] ~= ARGV[3] or f[3] ~= ARGV[4] or f[4] ~= '0' then "
    "  return 0 end "
    "redis.call('HSET', KEYS[1], 'released', '1') "
    "if ARGV[2] == '1' and f[5] ~= '1' then redis.call('HSET', KEYS[1], 'state', ARGV[5]) end "
    "if ARGV[6] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end "
    "return 1";

/* KEYS: record. ARGV: epoch, -, node id, token. -> 1 deleted (or, from
 * the unreleased previous owner, marked released with no state and a
 * TTL: the claims after it never got the session), 0 stale. */
static const char *DROP_LUA =
    "local f = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'token', 'prev', 'prev_owner', 'prev_token', 'released') "
    "if f[1] == ARGV[1] and f[2] == ARGV[3] and f[3] == ARGV[4] then redis.call('DEL', KEYS[1]) return 1 end "
    "if f[4] == ARGV[1] and f[5] == ARGV[3] and f[6] == ARGV[4] and f[7] == '0' then "
    "  redis.call('HSET', KEYS[1], 'released', '1') redis.call('HDEL', KEYS[1], 'state') "
    "  redis.call('PEXPIRE', KEYS[1], " DROP_MARGIN_MS ") return 1 end "
    "return 0";

/* The subscriber: its own connection (a subscribed hiredis context takes no
 * other command). Backplane thread only. */
typedef struct rk_sess {
    redisAsyncContext *ac;
    struct event *retry;
    char channel[320];
    char name[320]; /* CLIENT SETNAME: which connection this is in CLIENT LIST */
} rk_sess;

typedef enum { S_CLAIM, S_LOAD, S_STORE, S_RELEASE, S_DROP } sess_kind;

typedef struct sess_op {
    rk *r;
    sess_kind kind;
    int worker;
    bp_session_cb scb; /* claim, load */
    bp_done_cb dcb;    /* store, release, drop */
    void *arg;
    char *client_id;
    uint64_t epoch;
    uint64_t ttl_ms;
    bool flag; /* claim: clean; load: renotify; release: write the state */
    uint8_t *state;
    uint32_t len;
    uint64_t start_us;
} sess_op;

static const char *script_of(sess_kind k)
{
    switch (k) {
    case S_CLAIM:
        return CLAIM_LUA;
    case S_LOAD:
        return LOAD_LUA;
    case S_STORE:
        return STORE_LUA;
    case S_RELEASE:
        return RELEASE_LUA;
    case S_DROP:
        return DROP_LUA;
    }
    return NULL;
}

static void op_free(sess_op *op)
{
    bp_hist_observe(&op->r->redis_latency, rk_mono_us() - op->start_us);
    sh_free_str(op->client_id);
    sh_free(op->state, op->len ? op->len : 1);
    sh_free(op, sizeof(*op));
}

/* ---- results, handed to the calling worker ---- */

/* A claim's or load's answer in one block: the record, then the previous
 * owner's id, then the state. */
typedef struct sess_result {
    bp_session_cb cb;
    void *arg;
    bp_status st;
    size_t size;
    bp_session_rec rec;
    char data[];
} sess_result;

static void sess_result_cb(evutil_socket_t fd, short what, void *arg)
{
    sess_result *res = arg;
    res->cb(res->st, res->st == BP_OK ? &res->rec : NULL, res->arg);
    sh_free(res, res->size);
}

static bool reply_int(const redisReply *e, uint64_t *out)
{
    if (e->type == REDIS_REPLY_INTEGER) {
        *out = e->integer >= 0 ? (uint64_t)e->integer : 0;
        return e->integer >= 0;
    }
    if (e->type == REDIS_REPLY_STRING) {
        char *end;
        *out = strtoull(e->str, &end, 10);
        return end != e->str && *end == 0;
    }
    return false;
}

/* {epoch, state|nil, prev owner, prev alive, released, prev lease} or {-1}
 * (stale). */
static bp_status parse_rec(const redisReply *rep, sess_result **out)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        return BP_EUNAVAILABLE;
    }
    if (rep->elements == 1 && rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == -1) {
        return BP_ESTALE;
    }
    uint64_t epoch, alive, released, lease;
    const redisReply *state = rep->elements == 6 ? rep->element[1] : NULL;
    const redisReply *prev = rep->elements == 6 ? rep->element[2] : NULL;
    if (!state || (state->type != REDIS_REPLY_STRING && state->type != REDIS_REPLY_NIL) ||
        prev->type != REDIS_REPLY_STRING || !reply_int(rep->element[0], &epoch) ||
        !reply_int(rep->element[3], &alive) || !reply_int(rep->element[4], &released) ||
        !reply_int(rep->element[5], &lease)) {
        return BP_EUNAVAILABLE;
    }
    bool has_state = state->type == REDIS_REPLY_STRING;
    size_t size = sizeof(sess_result) + prev->len + 1 + (has_state ? state->len : 0);
    sess_result *res = sh_calloc(1, size);
    res->size = size;
    res->rec.epoch = epoch;
    res->rec.prev_alive = alive == 1;
    res->rec.released = released == 1;
    res->rec.prev_lease_ms = lease <= LEASE_MAX_MS ? (uint32_t)lease : LEASE_MAX_MS;
    res->rec.prev_owner = memcpy(res->data, prev->str, prev->len);
    res->data[prev->len] = 0;
    if (has_state) {
        res->rec.state = memcpy(res->data + prev->len + 1, state->str, state->len);
        res->rec.state_len = (uint32_t)state->len;
    }
    *out = res;
    return BP_OK;
}

static void answer_rec(sess_op *op, const redisReply *rep)
{
    sess_result *res = NULL;
    bp_status st = parse_rec(rep, &res);
    if (!res) {
        res = sh_calloc(1, sizeof(*res));
        res->size = sizeof(*res);
    }
    res->cb = op->scb;
    res->arg = op->arg;
    res->st = atomic_load(&op->r->bp->closed) ? BP_ECLOSED : st;
    struct timeval now = {0, 0};
    if (event_base_once(op->r->bp->bases[op->worker], -1, EV_TIMEOUT, sess_result_cb, res, &now) != 0) {
        res->st = BP_ECLOSED; /* the worker's loop is gone: answer here rather than never */
        sess_result_cb(-1, 0, res);
    }
}

/* 1 done, 2 done into a re-created record (store), 0 fenced out. */
static bp_status write_status(const redisReply *rep)
{
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        return BP_EUNAVAILABLE;
    }
    return rep->integer >= 1 ? BP_OK : BP_ESTALE;
}

static void sess_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    sess_op *op = arg;
    redisReply *rep = reply;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&op->r->redis_errors, 1);
        if (rep) {
            sh_log(SH_WARN, "event=session_script_error op=%d err=\"%s\"", (int)op->kind, rep->str);
        }
    }
    if (op->kind == S_STORE && rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 2) {
        sh_log(SH_INFO,
               "event=session_record_recreated client=%s epoch=%" PRIu64
               " msg=\"the record was gone (Redis lost data or it expired): this node re-asserted its claim\"",
               op->client_id, op->epoch);
    }
    if (op->kind == S_CLAIM || op->kind == S_LOAD) {
        answer_rec(op, rep);
    } else {
        rk_complete(op->r, op->worker, op->dcb, op->arg, write_status(rep));
    }
    op_free(op);
}

/* ---- commands, run on the backplane thread ---- */

/* This instance's token: the part of its node-id claim before '|'. */
static int token_len(const rk *r)
{
    const char *bar = strchr(r->claim, '|');
    return bar ? (int)(bar - r->claim) : (int)strlen(r->claim);
}

static void run_sess(evutil_socket_t fd, short what, void *arg)
{
    sess_op *op = arg;
    rk *r = op->r;
    if (!r->ac || !atomic_load(&r->redis_up)) {
        sess_reply_cb(NULL, NULL, op);
        return;
    }
    char epoch[24], ttl[24];
    snprintf(epoch, sizeof(epoch), "%" PRIu64, op->kind == S_CLAIM ? (uint64_t)op->flag : op->epoch);
    snprintf(ttl, sizeof(ttl), "%" PRIu64, op->kind == S_STORE ? op->ttl_ms : (uint64_t)op->flag);
    /* ARGV: [1] epoch (claim: clean), [2] ttl (load: renotify; release:
     * write state), [3] node id, [4] token, [5] state or client id,
     * [6] release: ttl; store: the lease. */
    bool with_state = op->kind == S_STORE || op->kind == S_RELEASE;
    const void *a5 = with_state ? (const void *)op->state : op->client_id;
    size_t a5_len = with_state ? op->len : strlen(op->client_id);
    size_t id_len = strlen(op->client_id);
    char ttl6[24];
    uint64_t a6 = op->kind == S_RELEASE ? op->ttl_ms : 0;
    if (op->kind == S_STORE) {
        a6 = (uint64_t)lease_ttl_ms(r->bp->cfg.heartbeat_ms, r->bp->cfg.lease_ms);
    }
    snprintf(ttl6, sizeof(ttl6), "%" PRIu64, a6);
    /* KEYS: [1] the record, [2] its stand-in lease (STORE_LUA), one slot. */
    redisAsyncCommand(r->ac, sess_reply_cb, op, "EVAL %s 2 shoal:sess:{%b} shoal:sess_lease:{%b} %s %s %s %b %b %s",
                      script_of(op->kind), op->client_id, id_len, op->client_id, id_len, epoch, ttl, r->bp->cfg.node_id,
                      r->claim, (size_t)token_len(r), a5, a5_len, ttl6);
}

static void post_sess(rk *r, sess_op *op)
{
    struct timeval now = {0, 0};
    op->r = r;
    op->start_us = rk_mono_us();
    if (event_base_once(r->base, -1, EV_TIMEOUT, run_sess, op, &now) != 0) {
        run_sess(-1, 0, op);
    }
}

static sess_op *new_sess_op(sess_kind kind, int worker, const char *client_id, uint64_t epoch, const uint8_t *state,
                            uint32_t len)
{
    sess_op *op = sh_calloc(1, sizeof(*op));
    op->kind = kind;
    op->worker = worker;
    op->client_id = sh_strdup(client_id);
    op->epoch = epoch;
    op->len = state ? len : 0;
    op->state = sh_malloc(op->len ? op->len : 1);
    if (state && op->len) {
        memcpy(op->state, state, op->len);
    }
    return op;
}

void rk_session_claim(rk *r, int worker, const char *client_id, bool clean, bp_session_cb cb, void *arg)
{
    sess_op *op = new_sess_op(S_CLAIM, worker, client_id, 0, NULL, 0);
    op->flag = clean;
    op->scb = cb;
    op->arg = arg;
    post_sess(r, op);
}

void rk_session_load(rk *r, int worker, const char *client_id, uint64_t epoch, bool renotify, bp_session_cb cb,
                     void *arg)
{
    sess_op *op = new_sess_op(S_LOAD, worker, client_id, epoch, NULL, 0);
    op->flag = renotify;
    op->scb = cb;
    op->arg = arg;
    post_sess(r, op);
}

void rk_session_store(rk *r, int worker, const char *client_id, uint64_t epoch, const uint8_t *state, uint32_t len,
                      uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    sess_op *op = new_sess_op(S_STORE, worker, client_id, epoch, state, len);
    op->ttl_ms = ttl_ms;
    op->dcb = cb;
    op->arg = arg;
    post_sess(r, op);
}

void rk_session_release(rk *r, int worker, const char *client_id, uint64_t old_epoch, const uint8_t *state,
                        uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    sess_op *op = new_sess_op(S_RELEASE, worker, client_id, old_epoch, state, len);
    op->flag = state != NULL;
    op->ttl_ms = ttl_ms;
    op->dcb = cb;
    op->arg = arg;
    post_sess(r, op);
}

void rk_session_drop(rk *r, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg)
{
    sess_op *op = new_sess_op(S_DROP, worker, client_id, epoch, NULL, 0);
    op->dcb = cb;
    op->arg = arg;
    post_sess(r, op);
}

/* ---- the revoke subscriber ---- */

/* "<new epoch>:<client id>" on this node's channel. */
static void revoke_msg_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    rk *r = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || rep->element[0]->type != REDIS_REPLY_STRING) {
        return; /* the connection is going away: on_sub_disconnect reconnects */
    }
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        sh_log(SH_DEBUG, "event=revoke_subscribed channel=%s", r->sess->channel);
        return;
    }
    const redisReply *msg = rep->element[2];
    if (strcmp(rep->element[0]->str, "message") != 0 || msg->type != REDIS_REPLY_STRING) {
        return;
    }
    char *end;
    uint64_t epoch = strtoull(msg->str, &end, 10);
    if (end == msg->str || *end != ':' || strlen(end + 1) != msg->len - (size_t)(end + 1 - msg->str)) {
        sh_log(SH_WARN, "event=revoke_bad_message len=%zu", msg->len);
        return;
    }
    if (r->bp->hooks.session_revoked) {
        r->bp->hooks.session_revoked(r->bp->hooks.node, end + 1, epoch);
    }
}

static void sub_connect(rk *r);

static void sub_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    sub_connect(arg);
}

static void sub_schedule_retry(rk *r)
{
    if (!atomic_load(&r->stopping) && r->sess->retry) {
        struct timeval t = {1, 0};
        event_add(r->sess->retry, &t);
    }
}

static void on_sub_connect(const redisAsyncContext *ac, int status)
{
    rk *r = ac->data;
    if (status != REDIS_OK) {
        r->sess->ac = NULL; /* hiredis frees the context after this callback */
        sub_schedule_retry(r);
    }
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    rk *r = ac->data;
    r->sess->ac = NULL;
    sub_schedule_retry(r);
}

/* Connect and subscribe (again: a new connection has no subscription).
 * Revokes published meanwhile are lost; the new owner re-notifies. */
static void sub_connect(rk *r)
{
    redisAsyncContext *ac = r->tls ? redisAsyncConnectUnix(rk_tls_path(r->tls))
                                   : redisAsyncConnect(r->redis_host, r->redis_port);
    if (!ac || ac->err) {
        if (ac) {
            redisAsyncFree(ac);
        }
        sub_schedule_retry(r);
        return;
    }
    ac->data = r;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
    if (r->redis_password[0]) {
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->redis_password);
    }
    redisAsyncCommand(ac, NULL, NULL, "CLIENT SETNAME %s", r->sess->name);
    redisAsyncCommand(ac, revoke_msg_cb, r, "SUBSCRIBE %s", r->sess->channel);
    r->sess->ac = ac;
}

void rk_session_attach(rk *r)
{
    r->sess = sh_calloc(1, sizeof(*r->sess));
    snprintf(r->sess->channel, sizeof(r->sess->channel), REVOKE_CHANNEL_FMT, r->bp->cfg.node_id);
    /* A client name takes no spaces or quotes: those become '_'. */
    int n = snprintf(r->sess->name, sizeof(r->sess->name), "shoal-revoke-%s", r->bp->cfg.node_id);
    for (int i = 0; i < n && r->sess->name[i]; i++) {
        char ch = r->sess->name[i];
        if (ch <= ' ' || ch > '~' || ch == '"' || ch == '\'') {
            r->sess->name[i] = '_';
        }
    }
    r->sess->retry = evtimer_new(r->base, sub_retry_cb, r);
    sub_connect(r);
}

void rk_session_stop(rk *r)
{
    rk_sess *s = r->sess;
    if (!s) {
        return;
    }
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        redisAsyncFree(ac);
    }
    event_free(s->retry);
    sh_free(s, sizeof(*s));
    r->sess = NULL;
}
