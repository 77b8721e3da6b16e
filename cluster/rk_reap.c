/* SPDX-License-Identifier: Apache-2.0 */
/* A dead node instance's session records (docs/architecture.md, "Wills and
 * dead nodes"). Every node instance registers itself in the hash
 * shoal:instances ("token|node id" -> 0, or the Redis time it was first
 * seen dead). An instance whose node-id claim no longer holds its token is
 * dead; one survivor at a time takes the lock shoal:reap:{instance} (SET NX
 * PX, so a survivor that dies too lets the next one retry) and walks the
 * session records (SCAN shoal:sess:*), picking those the dead instance still
 * owns. The node decodes each record, publishes its will and settles it
 * (REAP_FINISH_LUA, fenced by epoch, owner and token: a record that its
 * client claimed again elsewhere is not touched). The scripts run on the
 * backplane thread's connection; answers go to the calling worker's loop. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/lease.h"
#include "cluster/rk_impl.h"
#include "common/alloc.h"
#include "common/log.h"

#define INSTANCES_KEY "shoal:instances"
/* How long a survivor holds a dead instance between batches: a survivor
 * that dies mid-walk delays the next one by at most this. */
#define REAP_LOCK_MS 15000
/* Records per SCAN: about this many keys per batch. */
#define REAP_SCAN_COUNT 200

#define LUA_NOW                                                        \
    "if redis.replicate_commands then redis.replicate_commands() end " \
    "local t = redis.call('TIME') "                                    \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

/* KEYS: instances. ARGV: my node id, my token, lock ms, grace ms.
 * Register this instance, then find a dead instance nobody works on and
 * lock it -> {instance, death ms, now ms} or {}. Dead: its node-id claim
 * (rk_redis.c, "token|address") does not hold its token, whether it
 * expired (SIGKILL), was deleted (clean stop) or belongs to a restarted
 * instance with a new token. The death time is kept, so a retry by another
 * survivor counts will delays from the same moment. It is dead once its
 * claim expired, a lease (its own: cluster/lease.h) after its last renewal.
 * It is locked only once it has been dead for the grace (3 heartbeats, the
 * default lease, whatever --cluster-lease says): after a Redis outage
 * longer than a lease every claim has expired, and the nodes renew theirs
 * within a heartbeat of reconnecting; without the grace the first node
 * back would take the others for dead and publish their live clients'
 * wills. The grace is about that renewal, not the lease: a longer lease
 * does not lengthen it. An instance alive again
 * (it renewed its claim after being cut off) gets its 0 back. */
static const char TARGET_LUA[] = LUA_NOW
    "redis.call('HSETNX', KEYS[1], ARGV[2] .. '|' .. ARGV[1], '0') "
    "local all = redis.call('HGETALL', KEYS[1]) "
    "for i = 1, #all, 2 do "
    "  local inst = all[i] "
    "  local tok, id = string.match(inst, '^([^|]*)|(.*)$') "
    "  if tok and tok ~= ARGV[2] then "
    "    local v = redis.call('GET', 'shoal:node:{' .. id .. '}') "
    "    if not (v and string.sub(v, 1, #tok + 1) == tok .. '|') then "
    "      local death = tonumber(all[i + 1]) or 0 "
    "      if death == 0 then death = now redis.call('HSET', KEYS[1], inst, string.format('%d', now)) end "
    "      if now - death >= tonumber(ARGV[4]) and "
    "        redis.call('SET', 'shoal:reap:{' .. inst .. '}', ARGV[2] .. '|' .. ARGV[1], 'NX', 'PX', ARGV[3]) "
    "      then return {inst, string.format('%d', death), string.format('%d', now)} end "
    "    elseif all[i + 1] ~= '0' then redis.call('HSET', KEYS[1], inst, '0') "
    "    end "
    "  end "
    "end "
    "return {}";

/* KEYS: instances. ARGV: instance, my lock value, lock ms. Renew the lock if
 * it is still ours -> {death ms, now ms} or {} (lost: another survivor has
 * it, or the instance is settled). An instance that renewed its node-id
 * claim meanwhile (it was cut off from Redis, not dead) is alive again:
 * the walk stops and its death time is forgotten. */
static const char RENEW_LUA[] = LUA_NOW
    "if redis.call('GET', 'shoal:reap:{' .. ARGV[1] .. '}') ~= ARGV[2] then return {} end "
    "local tok, id = string.match(ARGV[1], '^([^|]*)|(.*)$') "
    "local v = redis.call('GET', 'shoal:node:{' .. id .. '}') "
    "if v and string.sub(v, 1, #tok + 1) == tok .. '|' then "
    "  redis.call('DEL', 'shoal:reap:{' .. ARGV[1] .. '}') "
    "  redis.call('HSET', KEYS[1], ARGV[1], '0') return {} end "
    "local d = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if not d then return {} end "
    "redis.call('PEXPIRE', 'shoal:reap:{' .. ARGV[1] .. '}', ARGV[3]) "
    "return {d, string.format('%d', now)}";

/* KEYS: session records from one SCAN. ARGV: instance.
 * -> {client key, epoch, state or '', PTTL, ...} for the records the
 * instance still owns and has not been settled for. */
static const char PICK_LUA[] = "local tok, id = string.match(ARGV[1], '^([^|]*)|(.*)$') "
                               "local out = {} "
                               "for _, k in ipairs(KEYS) do "
                               "  local f = redis.call('HMGET', k, 'epoch', 'owner', 'token', 'reaped', 'state') "
                               "  if f[1] and f[2] == id and f[3] == tok and f[4] ~= tok then "
                               "    out[#out + 1] = k out[#out + 1] = f[1] out[#out + 1] = f[5] or '' "
                               "    out[#out + 1] = redis.call('PTTL', k) "
                               "  end "
                               "end "
                               "return out";

/* KEYS: record. ARGV: epoch, owner id, owner token, mode ('del', 'keep',
 * 'persist', 'ttl'), ttl ms, state -> 1 settled, 0 stale. 'reaped' marks the
 * record settled for that instance: a later claim changes owner and token,
 * so a later death of the new owner is handled afresh. */
static const char FINISH_LUA[] = "local f = redis.call('HMGET', KEYS[1], 'epoch', 'owner', 'token') "
                                 "if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] or f[3] ~= ARGV[3] then return 0 end "
                                 "if ARGV[4] == 'del' then redis.call('DEL', KEYS[1]) return 1 end "
                                 "redis.call('HSET', KEYS[1], 'state', ARGV[6], 'reaped', ARGV[3]) "
                                 "if ARGV[4] == 'persist' then redis.call('PERSIST', KEYS[1]) "
                                 "elseif ARGV[4] == 'ttl' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end "
                                 "return 1";

/* KEYS: instances. ARGV: instance, my lock value, retry ms (0: forget). */
static const char END_LUA[] = "local lk = 'shoal:reap:{' .. ARGV[1] .. '}' "
                              "if redis.call('GET', lk) ~= ARGV[2] then return 0 end "
                              "if ARGV[3] == '0' then redis.call('DEL', lk) redis.call('HDEL', KEYS[1], ARGV[1]) "
                              "else redis.call('PEXPIRE', lk, ARGV[3]) end "
                              "return 1";

#define SESS_PREFIX "shoal:sess:{"

typedef enum { R_BATCH, R_FINISH, R_END } reap_kind;

typedef struct reap_op {
    rk *r;
    reap_kind kind;
    int worker;
    bp_reap_cb bcb;
    bp_done_cb dcb;
    void *arg;
    char *instance; /* NULL: find one */
    char *client_id;
    uint64_t cursor, epoch, death_ms, now_ms;
    int64_t ttl_ms;
    uint8_t *state; /* finish: NULL deletes */
    uint32_t len;
    uint64_t retry_ms;
} reap_op;

static void op_free(reap_op *op)
{
    sh_free_str(op->instance);
    sh_free_str(op->client_id);
    if (op->state) {
        sh_free(op->state, op->len ? op->len : 1);
    }
    sh_free(op, sizeof(*op));
}

/* This instance's token and its lock value "token|node id". */
static void my_value(const rk *r, char *buf, size_t cap)
{
    const char *bar = strchr(r->claim, '|');
    int tl = bar ? (int)(bar - r->claim) : (int)strlen(r->claim);
    snprintf(buf, cap, "%.*s|%s", tl, r->claim, r->bp->cfg.node_id);
}

/* ---- a batch's answer, handed to the worker in one block ---- */

typedef struct batch_result {
    bp_reap_cb cb;
    void *arg;
    bp_status st;
    size_t size;
    bp_reap_set b;
    bp_reap_rec *recs;
    size_t recs_size;
    char *strings; /* instance, client ids */
    size_t strings_size;
} batch_result;

static void batch_result_cb(evutil_socket_t fd, short what, void *arg)
{
    batch_result *res = arg;
    res->cb(res->st, res->st == BP_OK ? &res->b : NULL, res->arg);
    for (size_t i = 0; i < res->b.n; i++) {
        if (res->recs[i].state) {
            sh_free((void *)res->recs[i].state, res->recs[i].state_len ? res->recs[i].state_len : 1);
        }
    }
    if (res->recs) {
        sh_free(res->recs, res->recs_size);
    }
    if (res->strings) {
        sh_free(res->strings, res->strings_size);
    }
    sh_free(res, sizeof(*res));
}

static void answer_batch(reap_op *op, bp_status st, const redisReply *recs)
{
    batch_result *res = sh_calloc(1, sizeof(*res));
    res->cb = op->bcb;
    res->arg = op->arg;
    res->st = atomic_load(&op->r->bp->closed) ? BP_ECLOSED : st;
    size_t n = recs ? recs->elements / 4 : 0;
    size_t strings = op->instance ? strlen(op->instance) + 1 : 1;
    for (size_t i = 0; i < n; i++) {
        strings += recs->element[4 * i]->len + 1;
    }
    res->strings_size = strings;
    res->strings = sh_calloc(1, strings);
    char *p = res->strings;
    if (op->instance) {
        res->b.instance = strcpy(p, op->instance);
        p += strlen(op->instance) + 1;
    }
    res->b.death_ms = op->death_ms;
    res->b.now_ms = op->now_ms;
    res->b.cursor = op->cursor;
    if (n) {
        res->recs_size = n * sizeof(bp_reap_rec);
        res->recs = sh_calloc(n, sizeof(bp_reap_rec));
    }
    size_t pre = strlen(SESS_PREFIX);
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = recs->element[4 * i], *e = recs->element[4 * i + 1], *s = recs->element[4 * i + 2],
                         *t = recs->element[4 * i + 3];
        bp_reap_rec *rec = &res->recs[res->b.n];
        /* "shoal:sess:{<id>}" -> "<id>" */
        size_t idl = k->len > pre + 1 ? k->len - pre - 1 : 0;
        memcpy(p, k->str + (k->len > pre ? pre : 0), idl);
        p[idl] = 0;
        rec->client_id = p;
        p += idl + 1;
        rec->epoch = e->type == REDIS_REPLY_STRING ? strtoull(e->str, NULL, 10) : 0;
        if (s->type == REDIS_REPLY_STRING && s->len) {
            uint8_t *blob = sh_malloc(s->len);
            memcpy(blob, s->str, s->len);
            rec->state = blob;
            rec->state_len = (uint32_t)s->len;
        }
        rec->ttl_ms = t->type == REDIS_REPLY_INTEGER && t->integer > 0 ? t->integer : -1;
        res->b.n++;
    }
    res->b.recs = res->recs;
    struct timeval now = {0, 0};
    if (event_base_once(op->r->bp->bases[op->worker], -1, EV_TIMEOUT, batch_result_cb, res, &now) != 0) {
        res->st = BP_ECLOSED;
        batch_result_cb(-1, 0, res);
    }
    op_free(op);
}

static void fail_batch(reap_op *op, const redisReply *rep)
{
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&op->r->redis_errors, 1);
        sh_log(SH_WARN, "event=reap_script_error err=\"%s\"", rep->str);
    }
    answer_batch(op, BP_EUNAVAILABLE, NULL);
}

static bool redis_ok(rk *r)
{
    return r->ac && atomic_load(&r->redis_up);
}

static void pick_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    reap_op *op = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements % 4 != 0) {
        fail_batch(op, rep);
        return;
    }
    for (size_t i = 0; i < rep->elements; i += 4) {
        if (rep->element[i]->type != REDIS_REPLY_STRING || rep->element[i + 2]->type != REDIS_REPLY_STRING) {
            fail_batch(op, rep);
            return;
        }
    }
    answer_batch(op, BP_OK, rep);
}

static void scan_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    reap_op *op = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY || !redis_ok(op->r)) {
        fail_batch(op, rep);
        return;
    }
    op->cursor = strtoull(rep->element[0]->str, NULL, 10);
    const redisReply *keys = rep->element[1];
    /* SCAN's COUNT is a hint, but over the keyspace's hash table a call
     * returns about that many keys: no cap here, so none is skipped. */
    size_t n = keys->elements;
    if (n == 0) {
        answer_batch(op, BP_OK, NULL);
        return;
    }
    /* EVAL PICK_LUA n key... instance */
    size_t argc = 4 + n;
    const char **argv = sh_calloc(argc, sizeof(char *));
    size_t *lens = sh_calloc(argc, sizeof(size_t));
    char nbuf[24];
    snprintf(nbuf, sizeof(nbuf), "%zu", n);
    argv[0] = "EVAL";
    argv[1] = PICK_LUA;
    argv[2] = nbuf;
    for (size_t i = 0; i < n; i++) {
        argv[3 + i] = keys->element[i]->str;
        lens[3 + i] = keys->element[i]->len;
    }
    argv[3 + n] = op->instance;
    for (size_t i = 0; i < argc; i++) {
        if (i < 3 || i == argc - 1) {
            lens[i] = strlen(argv[i]);
        }
    }
    redisAsyncCommandArgv(op->r->ac, pick_cb, op, (int)argc, argv, lens);
    sh_free(argv, argc * sizeof(char *));
    sh_free(lens, argc * sizeof(size_t));
}

static void scan_next(reap_op *op)
{
    char cur[24];
    snprintf(cur, sizeof(cur), "%" PRIu64, op->cursor);
    redisAsyncCommand(op->r->ac, scan_cb, op, "SCAN %s MATCH shoal:sess:* COUNT %d", cur, REAP_SCAN_COUNT);
}

static bool parse_times(reap_op *op, const redisReply *d, const redisReply *now)
{
    if (d->type != REDIS_REPLY_STRING || now->type != REDIS_REPLY_STRING) {
        return false;
    }
    op->death_ms = strtoull(d->str, NULL, 10);
    op->now_ms = strtoull(now->str, NULL, 10);
    return true;
}

/* {instance, death, now} or {} */
static void target_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    reap_op *op = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || (rep->elements != 0 && rep->elements != 3)) {
        fail_batch(op, rep);
        return;
    }
    if (rep->elements == 0) {
        answer_batch(op, BP_OK, NULL); /* no instance */
        return;
    }
    if (rep->element[0]->type != REDIS_REPLY_STRING || !parse_times(op, rep->element[1], rep->element[2])) {
        fail_batch(op, rep);
        return;
    }
    op->instance = sh_strdup(rep->element[0]->str);
    sh_log(SH_INFO, "event=dead_node_reap instance=%s dead_for_ms=%" PRIu64, op->instance, op->now_ms - op->death_ms);
    op->cursor = 0;
    scan_next(op);
}

/* {death, now} or {} */
static void renew_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    reap_op *op = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || (rep->elements != 0 && rep->elements != 2)) {
        fail_batch(op, rep);
        return;
    }
    if (rep->elements == 0 || !parse_times(op, rep->element[0], rep->element[1])) {
        sh_free_str(op->instance);
        op->instance = NULL; /* lost the lock: stop */
        answer_batch(op, BP_OK, NULL);
        return;
    }
    scan_next(op);
}

static void finish_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    reap_op *op = arg;
    redisReply *rep = reply;
    bp_status st = BP_EUNAVAILABLE;
    if (rep && rep->type == REDIS_REPLY_INTEGER) {
        st = rep->integer == 1 ? BP_OK : BP_ESTALE;
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&op->r->redis_errors, 1);
        sh_log(SH_WARN, "event=reap_script_error err=\"%s\"", rep->str);
    }
    rk_complete(op->r, op->worker, op->dcb, op->arg, st);
    op_free(op);
}

static void end_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    op_free(arg);
}

static void run_finish(reap_op *op)
{
    const char *bar = strchr(op->instance, '|');
    if (!bar) {
        finish_cb(NULL, NULL, op);
        return;
    }
    const char *mode = !op->state ? "del" : op->ttl_ms < 0 ? "keep" : op->ttl_ms == 0 ? "persist" : "ttl";
    char epoch[24], ttl[24];
    snprintf(epoch, sizeof(epoch), "%" PRIu64, op->epoch);
    snprintf(ttl, sizeof(ttl), "%" PRId64, op->ttl_ms > 0 ? op->ttl_ms : 0);
    redisAsyncCommand(op->r->ac, finish_cb, op, "EVAL %s 1 shoal:sess:{%s} %s %s %b %s %s %b", FINISH_LUA,
                      op->client_id, epoch, bar + 1, op->instance, (size_t)(bar - op->instance), mode, ttl,
                      op->state ? (const void *)op->state : "", (size_t)(op->state ? op->len : 0));
}

static void run_op(evutil_socket_t fd, short what, void *arg)
{
    reap_op *op = arg;
    rk *r = op->r;
    if (!redis_ok(r)) {
        if (op->kind == R_BATCH) {
            fail_batch(op, NULL);
        } else if (op->kind == R_FINISH) {
            finish_cb(NULL, NULL, op);
        } else {
            op_free(op);
        }
        return;
    }
    char me[400], ms[24];
    my_value(r, me, sizeof(me));
    switch (op->kind) {
    case R_BATCH:
        snprintf(ms, sizeof(ms), "%d", REAP_LOCK_MS);
        if (!op->instance) {
            char grace[24];
            snprintf(grace, sizeof(grace), "%d", lease_min_ms(r->bp->cfg.heartbeat_ms));
            redisAsyncCommand(r->ac, target_cb, op, "EVAL %s 1 %s %s %b %s %s", TARGET_LUA, INSTANCES_KEY,
                              r->bp->cfg.node_id, me, (size_t)(strchr(me, '|') - me), ms, grace);
        } else {
            redisAsyncCommand(r->ac, renew_cb, op, "EVAL %s 1 %s %s %s %s", RENEW_LUA, INSTANCES_KEY, op->instance, me,
                              ms);
        }
        break;
    case R_FINISH:
        run_finish(op);
        break;
    case R_END:
        snprintf(ms, sizeof(ms), "%" PRIu64, op->retry_ms);
        redisAsyncCommand(r->ac, end_cb, op, "EVAL %s 1 %s %s %s %s", END_LUA, INSTANCES_KEY, op->instance, me, ms);
        break;
    }
}

static void post_op(rk *r, reap_op *op)
{
    struct timeval now = {0, 0};
    op->r = r;
    if (event_base_once(r->base, -1, EV_TIMEOUT, run_op, op, &now) != 0) {
        run_op(-1, 0, op);
    }
}

void rk_reap_batch(rk *r, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg)
{
    reap_op *op = sh_calloc(1, sizeof(*op));
    op->kind = R_BATCH;
    op->worker = worker;
    op->bcb = cb;
    op->arg = arg;
    op->instance = instance ? sh_strdup(instance) : NULL;
    op->cursor = cursor;
    post_op(r, op);
}

void rk_reap_finish(rk *r, int worker, const char *instance, const char *client_id, uint64_t epoch,
                    const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg)
{
    reap_op *op = sh_calloc(1, sizeof(*op));
    op->kind = R_FINISH;
    op->worker = worker;
    op->dcb = cb;
    op->arg = arg;
    op->instance = sh_strdup(instance);
    op->client_id = sh_strdup(client_id);
    op->epoch = epoch;
    op->ttl_ms = ttl_ms;
    if (state) {
        op->len = len;
        op->state = sh_malloc(len ? len : 1);
        memcpy(op->state, state, len);
    }
    post_op(r, op);
}

void rk_reap_end(rk *r, int worker, const char *instance, uint64_t retry_after_ms)
{
    reap_op *op = sh_calloc(1, sizeof(*op));
    op->kind = R_END;
    op->worker = worker;
    op->instance = sh_strdup(instance);
    op->retry_ms = retry_after_ms;
    post_op(r, op);
}
