/* Redis: the retained snapshot, node membership (heartbeats) and session
 * records, over one async hiredis connection on the backplane's loop. */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rk_impl.h"
#include "cluster/rk_record.h"
#include "cluster/rk_tls.h"
#include "common/alloc.h"
#include "common/log.h"

#define RETAINED_KEY "shoal:retained"
#define NODES_KEY "shoal:nodes"
#define NODES_TOPIC "$SYS/broker/cluster/nodes"

/* A Redis that leaves a command unanswered this long is cut off and marked
 * down: a stopped or wedged server keeps the TCP connection open, so no
 * socket error would ever say so (hiredis 0.14 has no command timeout). */
#define REDIS_TIMEOUT_MS 3000

int rk_redis_parse_url(rk *r, const char *url)
{
    const char *p = url;
    if (strncmp(p, "rediss://", 9) == 0) {
        r->redis_tls = true;
        p += 9;
    } else if (strncmp(p, "redis://", 8) == 0) {
        p += 8;
    }
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        snprintf(r->redis_password, sizeof(r->redis_password), "%.*s", (int)(at - pw), pw);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hostport);
    size_t hostlen = colon ? (size_t)(colon - p) : hostport;
    snprintf(r->redis_host, sizeof(r->redis_host), "%.*s", (int)hostlen, p);
    r->redis_port = colon ? atoi(colon + 1) : 6379;
    r->redis_db = slash ? atoi(slash + 1) : 0;
    if (hostlen == 0 || r->redis_port <= 0 || r->redis_port > 65535) {
        sh_log(SH_ERROR, "event=redis_config url=%s msg=\"expected redis[s]://[:password@]host[:port][/db]\"", url);
        return -1;
    }
    if (!r->redis_tls) {
        return 0;
    }
    const bp_config *cfg = &r->bp->cfg;
    rk_tls_opts o = {.host = r->redis_host, .port = r->redis_port, .ca = cfg->redis_tls_ca,
                     .cert = cfg->redis_tls_cert, .key = cfg->redis_tls_key};
    r->tls = rk_tls_start(&o);
    return r->tls ? 0 : -1;
}

/* hiredis reaches a rediss:// server through the TLS bridge's socket. */
static redisContext *connect_sync(rk *r, struct timeval tv)
{
    return r->tls ? redisConnectUnixWithTimeout(rk_tls_path(r->tls), tv)
                  : redisConnectWithTimeout(r->redis_host, r->redis_port, tv);
}

static int sync_select(rk *r, redisContext *c)
{
    redisReply *rep;
    if (r->redis_password[0]) {
        rep = redisCommand(c, "AUTH %s", r->redis_password);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        freeReplyObject(rep);
        if (!ok) {
            return -1;
        }
    }
    rep = redisCommand(c, "SELECT %d", r->redis_db);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* Startup: load the retained snapshot before the node serves anyone. */
int rk_redis_load_retained(rk *r)
{
    struct timeval tv = {5, 0};
    redisContext *c = connect_sync(r, tv);
    if (!c || c->err || sync_select(r, c) != 0) {
        sh_log(SH_ERROR, "event=redis_unreachable host=%s port=%d err=\"%s\"", r->redis_host, r->redis_port,
               c ? c->errstr : "alloc");
        redisFree(c);
        return -1;
    }
    redisReply *rep = redisCommand(c, "HGETALL %s", RETAINED_KEY);
    size_t loaded = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 1; i < rep->elements; i += 2) {
            bp_message m;
            const uint8_t *origin;
            size_t olen;
            redisReply *v = rep->element[i];
            if (rk_record_decode((const uint8_t *)v->str, v->len, &m, &origin, &olen) == RK_RECORD_OK) {
                m.retain = true;
                r->bp->hooks.remote_message(r->bp->hooks.node, &m, 0);
                loaded++;
            }
        }
    }
    freeReplyObject(rep);
    redisFree(c);
    atomic_store(&r->redis_up, true);
    sh_log(SH_INFO, "event=retained_loaded count=%zu redis=%s:%d", loaded, r->redis_host, r->redis_port);
    return 0;
}

static void connect_async(rk *r);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    connect_async(arg);
}

static void schedule_retry(rk *r)
{
    if (atomic_load(&r->stopping)) {
        return;
    }
    struct timeval t = {1, 0};
    event_add(r->redis_retry, &t);
}

/* Redis is up once it answers, not once the TCP connection is made (a
 * stopped server's kernel still accepts it). */
static void ping_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    rk *r = arg;
    redisReply *rep = reply;
    r->ping_sent_us = 0;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        return; /* disconnected (on_disconnect says so) or not serving yet: the next tick asks again */
    }
    if (!atomic_exchange(&r->redis_up, true)) {
        sh_log(SH_INFO, "event=redis_up host=%s port=%d", r->redis_host, r->redis_port);
        rk_update_ready(r);
    }
}

static void send_ping(rk *r)
{
    r->ping_sent_us = rk_mono_us();
    redisAsyncCommand(r->ac, ping_cb, r, "PING");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rk *r = ac->data;
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees the context after this callback */
        schedule_retry(r);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rk *r = ac->data;
    r->ac = NULL;
    if (atomic_exchange(&r->redis_up, false)) {
        sh_log(SH_WARN, "event=redis_down host=%s port=%d err=\"%s\"", r->redis_host, r->redis_port,
               ac->errstr[0] ? ac->errstr : "closed");
        rk_update_ready(r);
    }
    schedule_retry(r);
}

static void connect_async(rk *r)
{
    redisAsyncContext *ac =
        r->tls ? redisAsyncConnectUnix(rk_tls_path(r->tls)) : redisAsyncConnect(r->redis_host, r->redis_port);
    if (!ac || ac->err) {
        if (atomic_exchange(&r->redis_up, false)) {
            rk_update_ready(r);
        }
        if (ac) {
            redisAsyncFree(ac);
        }
        schedule_retry(r);
        return;
    }
    ac->data = r;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (r->redis_password[0]) {
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->redis_password);
    }
    redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->redis_db);
    r->ac = ac;
    send_ping(r);
}

void rk_redis_watchdog(rk *r)
{
    if (!r->ac) {
        return;
    }
    if (r->ping_sent_us == 0) {
        send_ping(r);
        return;
    }
    uint64_t waited_ms = (rk_mono_us() - r->ping_sent_us) / 1000u;
    if (waited_ms < REDIS_TIMEOUT_MS) {
        return;
    }
    /* Once per outage at WARN; each reconnect that times out again at DEBUG. */
    bool was_up = atomic_exchange(&r->redis_up, false);
    sh_log(was_up ? SH_WARN : SH_DEBUG, "event=redis_timeout host=%s port=%d waited_ms=%llu", r->redis_host,
           r->redis_port, (unsigned long long)waited_ms);
    /* Pending commands complete with no reply (their callers hear
     * BP_EUNAVAILABLE); a connected context also runs on_disconnect. */
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    redisAsyncFree(ac);
    r->ping_sent_us = 0;
    if (was_up) {
        sh_log(SH_WARN, "event=redis_down host=%s port=%d err=\"timeout\"", r->redis_host, r->redis_port);
        rk_update_ready(r);
    }
    schedule_retry(r);
}

/* ---- membership ---- */

static void append_json_string(char *dst, size_t cap, size_t *len, const char *s, size_t n)
{
    for (size_t i = 0; i < n && *len + 8 < cap; i++) {
        char ch = s[i];
        if (ch == '"' || ch == '\\') {
            dst[(*len)++] = '\\';
        }
        dst[(*len)++] = (unsigned char)ch < 0x20 ? ' ' : ch;
    }
}

/* Members are "id|address" with the expiry time as score; publish the live
 * ones as JSON to local subscribers of $SYS/broker/cluster/nodes. */
static void members_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    rk *r = arg;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        return;
    }
    char json[8192];
    size_t len = 0;
    json[len++] = '[';
    for (size_t i = 0; i < rep->elements && len + 300 < sizeof(json); i++) {
        const char *m = rep->element[i]->str;
        const char *bar = strchr(m, '|');
        size_t idlen = bar ? (size_t)(bar - m) : strlen(m);
        len += (size_t)snprintf(json + len, sizeof(json) - len, "%s{\"id\":\"", i ? "," : "");
        append_json_string(json, sizeof(json), &len, m, idlen);
        len += (size_t)snprintf(json + len, sizeof(json) - len, "\",\"address\":\"");
        if (bar) {
            append_json_string(json, sizeof(json), &len, bar + 1, strlen(bar + 1));
        }
        len += (size_t)snprintf(json + len, sizeof(json) - len, "\"}");
    }
    json[len++] = ']';
    bp_message msg = {
        .topic = (const uint8_t *)NODES_TOPIC, .topic_len = (uint32_t)strlen(NODES_TOPIC),
        .payload = (const uint8_t *)json, .payload_len = (uint32_t)len, .retain = true,
    };
    r->bp->hooks.remote_message(r->bp->hooks.node, &msg, 0);
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    rk *r = arg;
    if (!r->ac || !atomic_load(&r->redis_up)) {
        return;
    }
    const bp_config *cfg = &r->bp->cfg;
    int hb = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 1000;
    uint64_t now = rk_unix_ms();
    char member[600];
    snprintf(member, sizeof(member), "%s|%s", cfg->node_id, cfg->address ? cfg->address : "");
    /* Remove our older entry first: the address may have changed. */
    redisAsyncCommand(r->ac, NULL, NULL, "ZADD %s %llu %s", NODES_KEY, (unsigned long long)(now + 3u * (uint64_t)hb),
                      member);
    redisAsyncCommand(r->ac, NULL, NULL, "ZREMRANGEBYSCORE %s -inf %llu", NODES_KEY, (unsigned long long)now);
    redisAsyncCommand(r->ac, members_cb, r, "ZRANGEBYSCORE %s %llu +inf", NODES_KEY, (unsigned long long)now);
}

void rk_redis_attach(rk *r)
{
    r->redis_retry = evtimer_new(r->base, retry_cb, r);
    r->heartbeat = event_new(r->base, -1, EV_PERSIST, heartbeat_cb, r);
    int hb = r->bp->cfg.heartbeat_ms > 0 ? r->bp->cfg.heartbeat_ms : 1000;
    struct timeval t = {hb / 1000, (hb % 1000) * 1000};
    event_add(r->heartbeat, &t);
    connect_async(r);
}

void rk_redis_stop(rk *r)
{
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = r;
        redisAsyncFree(ac);
    }
    if (r->redis_retry) {
        event_free(r->redis_retry);
        event_free(r->heartbeat);
        r->redis_retry = r->heartbeat = NULL;
    }
    rk_tls_stop(r->tls);
    r->tls = NULL;
}

/* ---- commands from workers, run on the backplane thread ---- */

typedef struct redis_op {
    rk *r;
    int worker;
    int kind;
    bp_done_cb done;
    bp_session_cb sess;
    void *arg;
    uint64_t epoch;
    uint32_t expiry_s;
    char *key;
    size_t key_len;
    uint8_t *val;
    size_t val_len;
    uint64_t start_us;
} redis_op;

enum { OP_RETAIN, OP_CLAIM, OP_STORE, OP_DROP };

static void op_free(redis_op *op)
{
    bp_hist_observe(&op->r->redis_latency, rk_mono_us() - op->start_us);
    sh_free(op->key, op->key_len + 1);
    sh_free(op->val, op->val_len ? op->val_len : 1);
    sh_free(op, sizeof(*op));
}

typedef struct session_result {
    bp_session_cb cb;
    void *arg;
    bp_status st;
    bp_session s;
    char *id;
    size_t id_len;
    uint8_t *state;
    size_t state_len;
} session_result;

static void session_result_cb(evutil_socket_t fd, short what, void *arg)
{
    session_result *res = arg;
    res->cb(res->st, &res->s, res->arg);
    sh_free(res->id, res->id_len + 1);
    sh_free(res->state, res->state_len ? res->state_len : 1);
    sh_free(res, sizeof(*res));
}

/* CLAIM reply: {epoch, state or nil}. */
static void claim_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    redis_op *op = arg;
    redisReply *rep = reply;
    session_result *res = sh_calloc(1, sizeof(*res));
    res->cb = op->sess;
    res->arg = op->arg;
    res->st = BP_EUNAVAILABLE;
    res->id = sh_strndup(op->key, op->key_len);
    res->id_len = op->key_len;
    res->s.client_id = res->id;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
        res->s.epoch = (uint64_t)rep->element[0]->integer;
        redisReply *st = rep->element[1];
        if (st->type == REDIS_REPLY_STRING) {
            res->state_len = st->len;
            res->state = sh_malloc(st->len ? st->len : 1);
            memcpy(res->state, st->str, st->len);
            res->s.state = res->state;
            res->s.state_len = (uint32_t)st->len;
            res->st = BP_OK;
        } else {
            res->st = BP_ENOTFOUND;
        }
    }
    struct timeval now = {0, 0};
    event_base_once(op->r->bp->bases[op->worker], -1, EV_TIMEOUT, session_result_cb, res, &now);
    op_free(op);
}

static void status_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    redis_op *op = arg;
    redisReply *rep = reply;
    bp_status st = BP_EUNAVAILABLE;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&op->r->redis_errors, 1);
    }
    if (rep && rep->type == REDIS_REPLY_INTEGER) {
        st = rep->integer == 1 ? BP_OK : (rep->integer == 0 ? BP_ESTALE : BP_ENOTFOUND);
    } else if (rep && rep->type != REDIS_REPLY_ERROR) {
        st = BP_OK;
    }
    rk_complete(op->r, op->worker, op->done, op->arg, st);
    op_free(op);
}

/* The epoch fences every write: a store or drop from an older owner is
 * refused (0) once a newer claim exists. */
static const char *CLAIM_LUA =
    "local e = redis.call('INCR', KEYS[1]) return {e, redis.call('GET', KEYS[2])}";
static const char *STORE_LUA =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end "
    "if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) "
    "else redis.call('SET', KEYS[2], ARGV[2]) end return 1";
static const char *DROP_LUA =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end "
    "redis.call('DEL', KEYS[2]) return 1";

static void run_op(evutil_socket_t fd, short what, void *arg)
{
    redis_op *op = arg;
    rk *r = op->r;
    if (!r->ac || !atomic_load(&r->redis_up)) {
        if (op->kind == OP_CLAIM) {
            claim_reply_cb(NULL, NULL, op);
        } else {
            status_reply_cb(NULL, NULL, op);
        }
        return;
    }
    char ekey[600], skey[600];
    snprintf(ekey, sizeof(ekey), "shoal:session:{%.*s}:epoch", (int)op->key_len, op->key);
    snprintf(skey, sizeof(skey), "shoal:session:{%.*s}:state", (int)op->key_len, op->key);
    switch (op->kind) {
    case OP_RETAIN:
        if (op->val_len == 0) {
            redisAsyncCommand(r->ac, status_reply_cb, op, "HDEL %s %b", RETAINED_KEY, op->key, op->key_len);
        } else {
            redisAsyncCommand(r->ac, status_reply_cb, op, "HSET %s %b %b", RETAINED_KEY, op->key, op->key_len,
                              op->val, op->val_len);
        }
        break;
    case OP_CLAIM:
        redisAsyncCommand(r->ac, claim_reply_cb, op, "EVAL %s 2 %s %s", CLAIM_LUA, ekey, skey);
        break;
    case OP_STORE:
        redisAsyncCommand(r->ac, status_reply_cb, op, "EVAL %s 2 %s %s %llu %b %u", STORE_LUA, ekey, skey,
                          (unsigned long long)op->epoch, op->val, op->val_len, op->expiry_s);
        break;
    case OP_DROP:
        redisAsyncCommand(r->ac, status_reply_cb, op, "EVAL %s 2 %s %s %llu", DROP_LUA, ekey, skey,
                          (unsigned long long)op->epoch);
        break;
    }
}

static void post_op(rk *r, redis_op *op)
{
    struct timeval now = {0, 0};
    op->r = r;
    op->start_us = rk_mono_us();
    if (event_base_once(r->base, -1, EV_TIMEOUT, run_op, op, &now) != 0) {
        run_op(-1, 0, op);
    }
}

static redis_op *new_op(int kind, int worker, const void *key, size_t key_len, const void *val, size_t val_len)
{
    redis_op *op = sh_calloc(1, sizeof(*op));
    op->kind = kind;
    op->worker = worker;
    op->key = sh_strndup(key, key_len);
    op->key_len = key_len;
    op->val_len = val_len;
    op->val = sh_malloc(val_len ? val_len : 1);
    if (val && val_len) {
        memcpy(op->val, val, val_len);
    }
    return op;
}

void rk_redis_retain_set(rk *r, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    /* The snapshot holds the same record as the stream (origin included). */
    size_t n = m->payload_len ? rk_record_size(m, r->bp->cfg.node_id) : 0;
    redis_op *op = new_op(OP_RETAIN, worker, m->topic, m->topic_len, NULL, n);
    if (n) {
        rk_record_encode(m, r->bp->cfg.node_id, op->val);
    }
    op->done = cb;
    op->arg = arg;
    post_op(r, op);
}

void rk_redis_session_claim(rk *r, int worker, const char *client_id, bp_session_cb cb, void *arg)
{
    redis_op *op = new_op(OP_CLAIM, worker, client_id, strlen(client_id), NULL, 0);
    op->sess = cb;
    op->arg = arg;
    post_op(r, op);
}

void rk_redis_session_store(rk *r, int worker, const bp_session *s, uint32_t expiry_s, bp_done_cb cb, void *arg)
{
    redis_op *op = new_op(OP_STORE, worker, s->client_id, strlen(s->client_id), s->state, s->state_len);
    op->epoch = s->epoch;
    op->expiry_s = expiry_s == UINT32_MAX ? 0 : expiry_s;
    op->done = cb;
    op->arg = arg;
    post_op(r, op);
}

void rk_redis_session_drop(rk *r, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg)
{
    redis_op *op = new_op(OP_DROP, worker, client_id, strlen(client_id), NULL, 0);
    op->epoch = epoch;
    op->done = cb;
    op->arg = arg;
    post_op(r, op);
}
