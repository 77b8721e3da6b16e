/* SPDX-License-Identifier: Apache-2.0 */
/* Redis: the retained snapshot and node membership (a claim per node id,
 * renewed by heartbeats), over one async hiredis connection on the
 * backplane's loop; the start-up steps use a short-lived sync one. */
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster/lease.h"
#include "cluster/rk_impl.h"
#include "cluster/rk_record.h"
#include "cluster/rk_tls.h"
#include "common/alloc.h"
#include "common/log.h"

#define CLAIM_KEY_FMT "shoal:node:{%s}"        /* "token|address", PX = the claim TTL */
#define MEMBERS_KEY "shoal:members"            /* zset: node id -> expiry (Redis time, ms) */
#define ADDRESSES_KEY "shoal:member-addresses" /* hash: node id -> address */
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
    rk_tls_opts o = {.host = r->redis_host,
                     .port = r->redis_port,
                     .ca = cfg->redis_tls_ca,
                     .cert = cfg->redis_tls_cert,
                     .key = cfg->redis_tls_key};
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

void rk_refclock_reply(rk *r, uint64_t sent_us, const char *sec, const char *usec)
{
    uint64_t recv = rk_mono_us();
    char *end1 = NULL, *end2 = NULL;
    long long s = sec ? strtoll(sec, &end1, 10) : 0;
    long long us = usec ? strtoll(usec, &end2, 10) : 0;
    if (!sent_us || !end1 || *end1 || end1 == sec || !end2 || *end2 || end2 == usec || s <= 0 || us < 0) {
        return;
    }
    int64_t before;
    bool first = !rk_refclock_offset(&r->refclock, recv, &before, NULL); /* logged once */
    if (!rk_refclock_add(&r->refclock, sent_us, recv, (int64_t)s * 1000000 + us) || !first) {
        return;
    }
    uint64_t cluster, wall;
    rk_cluster_now(r, &cluster, &wall);
    sh_log(SH_INFO,
           "event=cluster_clock redis_minus_wall_ms=%lld rtt_us=%llu msg=\"message expiry deadlines "
           "travel on Redis's clock\"",
           (long long)cluster - (long long)wall, (unsigned long long)(recv - sent_us));
}

/* A few TIME round trips on a start-up connection: the node knows the
 * cluster clock before it reads or writes a record (rk_clock.h). */
static void sync_sample_clock(rk *r, redisContext *c)
{
    for (int i = 0; i < 3; i++) {
        uint64_t sent = rk_mono_us();
        redisReply *rep = redisCommand(c, "TIME");
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING) {
            rk_refclock_reply(r, sent, rep->element[0]->str, rep->element[1]->str);
        }
        freeReplyObject(rep);
    }
}

/* Startup: load the retained snapshot before the node serves anyone
 * (rk_retained.c reads it; the stream's replay follows in rk_kafka_assign). */
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
    sync_sample_clock(r, c); /* the snapshot's deadlines are on the cluster clock */
    int rc = rk_retained_load(r, c);
    redisFree(c);
    if (rc == 0) {
        atomic_store(&r->redis_up, true);
    }
    return rc;
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

static void renew(rk *r, const char *reason);

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
        /* Stores made while it was down failed, or Redis restarted empty. */
        if (r->bp->hooks.sessions_reassert) {
            r->bp->hooks.sessions_reassert(r->bp->hooks.node);
        }
        /* Renew the lease now, not at the next beat: at start the claim's
         * TTL is running already, after an outage the node may be fenced. */
        renew(r, "redis_up");
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
    redisAsyncContext *ac = r->tls ? redisAsyncConnectUnix(rk_tls_path(r->tls))
                                   : redisAsyncConnect(r->redis_host, r->redis_port);
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

static int heartbeat_ms(const rk *r)
{
    return r->bp->cfg.heartbeat_ms > 0 ? r->bp->cfg.heartbeat_ms : 1000;
}

/* cluster/lease.h: --cluster-lease, by default 3 heartbeats. */
static int claim_ttl_ms(const rk *r)
{
    return lease_ttl_ms(r->bp->cfg.heartbeat_ms, r->bp->cfg.lease_ms);
}

static void claim_key(const rk *r, char *buf, size_t cap)
{
    snprintf(buf, cap, CLAIM_KEY_FMT, r->bp->cfg.node_id);
}

/* Scripts read the clock with TIME: expiry is Redis's own time, whatever the
 * nodes' wall clocks say. A script that reads TIME and then writes needs
 * effects replication, the default from Redis 5 on and asked for before.
 * KEYS: claim, members, addresses; ARGV: claim value, ttl ms, id, address. */
#define LUA_NOW                                                        \
    "if redis.replicate_commands then redis.replicate_commands() end " \
    "local t = redis.call('TIME') "                                    \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
#define LUA_REGISTER                                                                      \
    "redis.call('ZADD', KEYS[2], string.format('%d', now + tonumber(ARGV[2])), ARGV[3]) " \
    "redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) "                                      \
    "redis.call('HSET', '" LEASES_KEY "', ARGV[3], ARGV[2]) "
/* Drops the expired members, returns the live ones as {id, address, ...}. */
#define LUA_LIVE                                                                        \
    "local cut = string.format('%d', now) "                                             \
    "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cut)) do "        \
    "  redis.call('ZREM', KEYS[2], id) redis.call('HDEL', KEYS[3], id) "                \
    "  redis.call('HDEL', '" LEASES_KEY "', id) end "                                   \
    "local live = {} "                                                                  \
    "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. cut, '+inf')) do " \
    "  live[#live + 1] = id live[#live + 1] = redis.call('HGET', KEYS[3], id) or '' end "

/* Start: take the id if nobody holds it -> {1}; else {0, holder, pttl,
 * holder's lease ms or 0}. */
static const char *CLAIM_LUA =
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    "  return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1]), "
    "    tonumber(redis.call('HGET', '" LEASES_KEY "', ARGV[3]) or '0') or 0} end " LUA_NOW LUA_REGISTER
    /* The instance registry of rk_reap.c: registered before it owns any
     * session, so a survivor settles its sessions however soon it dies. */
    "redis.call('HSETNX', 'shoal:instances', string.match(ARGV[1], '^([^|]*)|') .. '|' .. ARGV[3], '0') "
    "return {1}";
/* Each heartbeat: renew our claim and entry -> {1, live, was gone, TIME's
 * seconds, microseconds} (the last two a sample of the cluster clock,
 * rk_clock.h); if another instance holds the id -> {0, holder} and nothing
 * is written. */
static const char *HEARTBEAT_LUA = "local cur = redis.call('GET', KEYS[1]) "
                                   "if cur and cur ~= ARGV[1] then return {0, cur} end "
                                   "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) " LUA_NOW LUA_REGISTER LUA_LIVE
                                   "return {1, live, cur and 0 or 1, t[1], t[2]}";
/* bp_nodes: the live members -> {id, address, ...}. */
static const char *MEMBERS_LUA = LUA_NOW LUA_LIVE "return live";
/* Clean stop: leave at once (only our own claim), and leave our shared
 * groups too (rk_share.c): a drained node has handed its members' messages
 * over, so its entries must not expire into a dead node's share that the
 * survivors would replay a second time. */
static const char *RELEASE_LUA =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('DEL', KEYS[1]) redis.call('ZREM', KEYS[2], ARGV[3]) redis.call('HDEL', KEYS[3], ARGV[3]) "
    "redis.call('HDEL', '" LEASES_KEY "', ARGV[3]) "
    "local mine = 'shoal:share-node:' .. ARGV[3] "
    "for _, g in ipairs(redis.call('SMEMBERS', mine)) do redis.call('HDEL', 'shoal:share:' .. g, ARGV[3]) end "
    "redis.call('DEL', mine, 'shoal:share-pos:' .. ARGV[3]) "
    "return 1";

/* The address part of a claim value ("token|address"). */
static const char *claim_address(const char *value)
{
    const char *bar = strchr(value, '|');
    return bar ? bar + 1 : "";
}

static redisReply *eval_membership(rk *r, redisContext *c, const char *script)
{
    char key[320];
    claim_key(r, key, sizeof(key));
    const bp_config *cfg = &r->bp->cfg;
    return redisCommand(c, "EVAL %s 3 %s %s %s %s %d %s %s", script, key, MEMBERS_KEY, ADDRESSES_KEY, r->claim,
                        claim_ttl_ms(r), cfg->node_id, claim_address(r->claim));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static uint64_t mono_ms(void)
{
    return rk_mono_us() / 1000u;
}

/* One try: 1 claimed, 0 held by another (holder and pttl filled), -1 error. */
static int try_claim(rk *r, redisContext *c, char *holder, size_t cap, long long *pttl, long long *lease)
{
    redisReply *rep = eval_membership(r, c, CLAIM_LUA);
    int rc = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && rep->element[0]->integer == 1) {
        rc = 1;
    } else if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 4) {
        snprintf(holder, cap, "%s", claim_address(rep->element[1]->str ? rep->element[1]->str : ""));
        *pttl = rep->element[2]->integer;
        *lease = rep->element[3]->integer;
        rc = 0;
    } else {
        sh_log(SH_ERROR, "event=node_id_claim_failed node_id=%s err=\"%s\"", r->bp->cfg.node_id,
               rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
    }
    freeReplyObject(rep);
    return rc;
}

/* A node killed without stopping cannot release its claim: its successor
 * waits for it to expire, at most one TTL (the old instance's lease, if
 * longer than ours) plus one heartbeat (a renewal the old instance may have
 * had on its way). A claim renewed all that time belongs to a running node:
 * refuse, saying for how long it was renewed. */
static int claim_loop(rk *r, redisContext *c, uint64_t *sent_us)
{
    const char *id = r->bp->cfg.node_id;
    long limit = claim_ttl_ms(r) + heartbeat_ms(r);
    uint64_t start = mono_ms();
    bool waited = false;
    for (;;) {
        char holder[300] = "";
        long long pttl = 0, lease = 0;
        *sent_us = rk_mono_us(); /* the lease counts from the send of the claim that succeeds */
        int rc = try_claim(r, c, holder, sizeof(holder), &pttl, &lease);
        if (rc < 0) {
            return -1;
        }
        long elapsed = (long)(mono_ms() - start);
        if (rc == 1) {
            if (waited) {
                sh_log(SH_INFO, "event=node_id_claimed node_id=%s waited_ms=%ld", id, elapsed);
            }
            return 0;
        }
        if (rc == 0 && lease > 0 && lease <= LEASE_MAX_MS && lease + heartbeat_ms(r) > limit) {
            limit = (long)lease + heartbeat_ms(r);
        }
        if (elapsed >= limit) {
            sh_log(SH_ERROR,
                   "event=node_id_taken node_id=%s holder=%s waited_ms=%ld msg=\"another running node holds this "
                   "--node-id: it renewed its claim throughout the %ld ms this node waited; stop it or choose "
                   "another --node-id\"",
                   id, holder, elapsed, elapsed);
            return -1;
        }
        if (!waited) {
            sh_log(SH_INFO,
                   "event=node_id_wait node_id=%s holder=%s expires_in_ms=%lld max_wait_ms=%ld msg=\"an instance "
                   "with this id holds its claim (a node killed without stopping cannot release it); waiting for "
                   "it to expire\"",
                   id, holder, pttl, limit);
            waited = true;
        }
        long nap = pttl > 0 ? (long)pttl + 5 : 20;
        sleep_ms(nap < limit - elapsed ? nap : limit - elapsed);
    }
}

int rk_redis_claim_node(rk *r)
{
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        sh_log(SH_ERROR, "event=node_id_claim_failed msg=\"no random bytes for the instance token\"");
        return -1;
    }
    const bp_config *cfg = &r->bp->cfg;
    size_t n = 0;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        n += (size_t)snprintf(r->claim + n, sizeof(r->claim) - n, "%02x", rnd[i]);
    }
    snprintf(r->claim + n, sizeof(r->claim) - n, "|%s", cfg->address ? cfg->address : "");
    struct timeval tv = {5, 0};
    redisContext *c = connect_sync(r, tv);
    if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK || sync_select(r, c) != 0) {
        sh_log(SH_ERROR, "event=redis_unreachable host=%s port=%d err=\"%s\"", r->redis_host, r->redis_port,
               c ? c->errstr : "alloc");
        redisFree(c);
        return -1;
    }
    uint64_t t0 = 0;
    int rc = claim_loop(r, c, &t0);
    if (rc == 0) {
        sync_sample_clock(r, c);
    }
    redisFree(c);
    r->claimed = rc == 0;
    r->lease_from_us = rc == 0 ? t0 : 0;
    return rc;
}

/* A clean stop leaves the member list at once and frees the id for a
 * restart; bounded by a short timeout (Redis may be what is failing). */
static void release_node(rk *r)
{
    if (!r->claimed) {
        return;
    }
    r->claimed = false;
    struct timeval tv = {1, 0};
    redisContext *c = connect_sync(r, tv);
    if (!c || c->err || redisSetTimeout(c, tv) != REDIS_OK || sync_select(r, c) != 0) {
        sh_log(SH_WARN, "event=node_id_release_failed node_id=%s err=\"%s\" msg=\"the claim expires by itself\"",
               r->bp->cfg.node_id, c ? c->errstr : "alloc");
        redisFree(c);
        return;
    }
    freeReplyObject(eval_membership(r, c, RELEASE_LUA));
    redisFree(c);
}

/* Members as node infos pointing into the reply {id, address, ...}. */
static size_t parse_members(const redisReply *rep, bp_node_info *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < rep->elements && n < cap; i += 2) {
        if (rep->element[i]->type == REDIS_REPLY_STRING && rep->element[i + 1]->type == REDIS_REPLY_STRING) {
            out[n].node_id = rep->element[i]->str;
            out[n].address = rep->element[i + 1]->str;
            n++;
        }
    }
    return n;
}

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

#define MAX_MEMBERS 256

/* Publish the live members as JSON to local subscribers of
 * $SYS/broker/cluster/nodes. */
static void publish_members(rk *r, const redisReply *live)
{
    bp_node_info nodes[MAX_MEMBERS];
    size_t n = parse_members(live, nodes, MAX_MEMBERS);
    char json[8192];
    size_t len = 0;
    json[len++] = '[';
    for (size_t i = 0; i < n && len + 300 < sizeof(json); i++) {
        len += (size_t)snprintf(json + len, sizeof(json) - len, "%s{\"id\":\"", i ? "," : "");
        append_json_string(json, sizeof(json), &len, nodes[i].node_id, strlen(nodes[i].node_id));
        len += (size_t)snprintf(json + len, sizeof(json) - len, "\",\"address\":\"");
        append_json_string(json, sizeof(json), &len, nodes[i].address, strlen(nodes[i].address));
        len += (size_t)snprintf(json + len, sizeof(json) - len, "\"}");
    }
    json[len++] = ']';
    bp_message msg = {
        .topic = (const uint8_t *)NODES_TOPIC,
        .topic_len = (uint32_t)strlen(NODES_TOPIC),
        .payload = (const uint8_t *)json,
        .payload_len = (uint32_t)len,
        .retain = true,
        .partition = -1,
        .offset = -1,
    };
    /* This node's own retained message, not a stream record. */
    if (r->bp->hooks.retained) {
        r->bp->hooks.retained(r->bp->hooks.node, &msg);
    }
    r->bp->hooks.remote_message(r->bp->hooks.node, &msg, 0);
}

/* The lease (cluster/lease.h): other nodes see this one dead once its id
 * claim expires, a TTL (the lease, --cluster-lease, by default 3
 * heartbeats) after the last renewal Redis applied,
 * and may then claim its client ids and reap its sessions. Redis applied it
 * after this node sent it, so counted from that send on this node's
 * monotonic clock the claim lives at least a TTL. A margin before that the
 * node fences itself: every client connection closed, CONNECT refused,
 * /health/ready not ready (invariant 3: the client reconnects through a
 * node that holds its lease). Once a renewal is acknowledged again the node
 * serves again and re-asserts the sessions it kept, fenced by their epochs
 * (node/mqtt/session_sync.c, "re-asserting"): one claimed or reaped
 * elsewhere meanwhile is dropped here, never written over. */
static void lease_arm(rk *r)
{
    uint64_t at = lease_fence_at_us(r->lease_from_us, claim_ttl_ms(r));
    if (!r->lease_timer || !at || r->lease_lost) {
        return;
    }
    uint64_t now = rk_mono_us();
    uint64_t wait = at > now ? at - now : 0;
    struct timeval t = {(time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u)};
    evtimer_add(r->lease_timer, &t);
}

static void lease_check(rk *r)
{
    if (r->lease_lost || !r->claimed || atomic_load(&r->stopping)) {
        return;
    }
    if (!lease_fenced(r->lease_from_us, rk_mono_us(), claim_ttl_ms(r))) {
        lease_arm(r); /* renewed meanwhile: the new fence point */
        return;
    }
    r->lease_lost = true;
    atomic_fetch_add(&r->lease_lost_n, 1);
    atomic_store(&r->bp->fenced, true);
    uint64_t since_ms = (rk_mono_us() - r->lease_from_us) / 1000u;
    sh_log(SH_WARN,
           "event=lease_lost node_id=%s since_renewal_ms=%llu fence_ms=%d ttl_ms=%d msg=\"no heartbeat renewed the "
           "node id claim: closing every client connection and refusing new ones before other nodes may take "
           "this node's client ids\"",
           r->bp->cfg.node_id, (unsigned long long)since_ms, lease_fence_ms(claim_ttl_ms(r)), claim_ttl_ms(r));
    rk_update_ready(r);
    if (r->bp->hooks.fenced) {
        r->bp->hooks.fenced(r->bp->hooks.node);
    }
}

static void lease_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lease_check(arg);
}

static void lease_renewed(rk *r, uint64_t sent_us, bool was_gone)
{
    if (lease_fenced(sent_us, rk_mono_us(), claim_ttl_ms(r))) {
        /* Answered past its own fence point (held up in a cut link): Redis
         * applied it at some unknown time since, so it proves no lease. The
         * next renewal, sent at once (beats were skipped meanwhile:
         * lease_after_reply), renews it. */
        lease_check(r);
        return;
    }
    if (sent_us) {
        /* How far apart acknowledged renewals go: without this one the
         * node fences fence_ms after the previous one's send. */
        uint64_t now = rk_mono_us(), prev = r->lease_from_us && sent_us > r->lease_from_us ? r->lease_from_us : 0;
        sh_log(SH_DEBUG,
               "event=lease_renewed node_id=%s sent_after_prev_ms=%llu confirmed_after_prev_ms=%llu fence_ms=%d",
               r->bp->cfg.node_id, (unsigned long long)(prev ? (sent_us - prev) / 1000u : 0),
               (unsigned long long)(prev ? (now - prev) / 1000u : 0), lease_fence_ms(claim_ttl_ms(r)));
        r->lease_from_us = sent_us;
    }
    bool reassert = was_gone;
    bool regained = r->lease_lost;
    if (r->lease_lost) {
        r->lease_lost = false;
        reassert = true;
        atomic_fetch_add(&r->lease_regained_n, 1);
        atomic_store(&r->bp->fenced, false);
        sh_log(SH_INFO, "event=lease_regained node_id=%s msg=\"the node id claim is renewed: serving again\"",
               r->bp->cfg.node_id);
        rk_update_ready(r);
    }
    lease_arm(r);
    if (was_gone && !regained) {
        /* After a fence the claim is gone as a matter of course. */
        sh_log(SH_WARN,
               "event=node_claim_was_gone node_id=%s msg=\"Redis lost this node's id claim (restart without "
               "persistence, FLUSHALL?): re-asserting this node's sessions\"",
               r->bp->cfg.node_id);
    }
    if (reassert && r->bp->hooks.sessions_reassert) {
        r->bp->hooks.sessions_reassert(r->bp->hooks.node);
    }
}

static void heartbeat_reply(rk *r, redisReply *rep, uint64_t sent);

/* Which renewal a reply answers, and whether the next one goes at once
 * (cluster/lease.h, lease_after_reply). */
static void heartbeat_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    rk *r = arg;
    redisReply *rep = reply;
    uint64_t sent = r->hb_sent_us;
    unsigned skipped = r->hb_skipped;
    r->hb_sent_us = 0;
    r->hb_skipped = 0;
    if (!rep) {
        return; /* disconnected: renewed once Redis answers again (ping_cb) */
    }
    heartbeat_reply(r, rep, sent);
    if (lease_after_reply(sent, skipped) == LEASE_RENEW_NOW) {
        renew(r, "late_reply");
    }
}

/* {1, live, was gone} or {0, holder}. Losing the claim can only happen after this
 * node could not renew it for a whole TTL (Redis unreachable or restarted
 * empty, the process paused) and another instance started meanwhile: said
 * once per change at ERROR, see docs/architecture.md. */
static void heartbeat_reply(rk *r, redisReply *rep, uint64_t sent)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        return;
    }
    bool lost = rep->element[0]->integer != 1;
    if (!lost && rep->elements >= 5 && rep->element[3]->type == REDIS_REPLY_STRING &&
        rep->element[4]->type == REDIS_REPLY_STRING) {
        rk_refclock_reply(r, sent, rep->element[3]->str, rep->element[4]->str);
    }
    if (!lost) {
        lease_renewed(r, sent, rep->elements > 2 && rep->element[2]->integer == 1);
    }
    if (lost != r->id_lost) {
        r->id_lost = lost;
        if (lost) {
            sh_log(SH_ERROR,
                   "event=node_id_lost node_id=%s holder=%s msg=\"another instance took this node id while this "
                   "node could not renew its claim; stop one of them\"",
                   r->bp->cfg.node_id, rep->element[1]->str ? claim_address(rep->element[1]->str) : "");
        } else {
            sh_log(SH_INFO, "event=node_id_reclaimed node_id=%s", r->bp->cfg.node_id);
        }
    }
    if (!lost && rep->element[1]->type == REDIS_REPLY_ARRAY) {
        publish_members(r, rep->element[1]);
    }
}

/* Sends a renewal unless one is out: one at a time, the lease counts from
 * the send of a renewal Redis confirmed, so a reply must say which one it
 * answers. A beat that finds one out is skipped and counted: its reply
 * renews at once (cluster/lease.h, lease_after_reply). */
static void renew(rk *r, const char *reason)
{
    lease_check(r);
    if (!r->ac || !atomic_load(&r->redis_up)) {
        return;
    }
    if (r->hb_sent_us) {
        r->hb_skipped++;
        sh_log(SH_DEBUG, "event=lease_renewal_skipped node_id=%s reason=%s out_ms=%llu", r->bp->cfg.node_id, reason,
               (unsigned long long)((rk_mono_us() - r->hb_sent_us) / 1000u));
        return;
    }
    r->hb_sent_us = rk_mono_us();
    sh_log(SH_DEBUG, "event=lease_renewal_sent node_id=%s reason=%s", r->bp->cfg.node_id, reason);
    char key[320];
    claim_key(r, key, sizeof(key));
    redisAsyncCommand(r->ac, heartbeat_reply_cb, r, "EVAL %s 3 %s %s %s %s %d %s %s", HEARTBEAT_LUA, key, MEMBERS_KEY,
                      ADDRESSES_KEY, r->claim, claim_ttl_ms(r), r->bp->cfg.node_id, claim_address(r->claim));
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    renew(arg, "beat");
}

void rk_redis_attach(rk *r)
{
    r->redis_retry = evtimer_new(r->base, retry_cb, r);
    r->heartbeat = event_new(r->base, -1, EV_PERSIST, heartbeat_cb, r);
    r->lease_timer = evtimer_new(r->base, lease_timer_cb, r);
    lease_arm(r);
    int hb = heartbeat_ms(r);
    struct timeval t = {hb / 1000, (hb % 1000) * 1000};
    event_add(r->heartbeat, &t);
    connect_async(r);
    rk_session_attach(r);
    rk_sweep_attach(r);
    rk_share_attach(r);
}

void rk_redis_stop(rk *r)
{
    rk_share_stop(r);
    rk_sweep_stop(r);
    rk_session_stop(r);
    release_node(r);
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = r;
        redisAsyncFree(ac);
    }
    if (r->redis_retry) {
        event_free(r->redis_retry);
        event_free(r->heartbeat);
        event_free(r->lease_timer);
        r->redis_retry = r->heartbeat = r->lease_timer = NULL;
    }
    rk_tls_stop(r->tls);
    r->tls = NULL;
}

/* ---- the member list for a worker (bp_nodes), read on the backplane
 * thread ---- */

typedef struct redis_op {
    rk *r;
    int worker;
    bp_nodes_cb nodes;
    void *arg;
    uint64_t start_us;
} redis_op;

static void op_free(redis_op *op)
{
    bp_hist_observe(&op->r->redis_latency, rk_mono_us() - op->start_us);
    sh_free(op, sizeof(*op));
}

/* The member list handed to the calling worker: one block holding the
 * infos and then their strings, freed after the callback. */
typedef struct nodes_result {
    bp_nodes_cb cb;
    void *arg;
    bp_status st;
    size_t n;
    size_t size;
    bp_node_info nodes[];
} nodes_result;

static void nodes_result_cb(evutil_socket_t fd, short what, void *arg)
{
    nodes_result *res = arg;
    res->cb(res->st, res->st == BP_OK ? res->nodes : NULL, res->st == BP_OK ? res->n : 0, res->arg);
    sh_free(res, res->size);
}

static nodes_result *nodes_result_new(const bp_node_info *nodes, size_t n)
{
    size_t size = sizeof(nodes_result) + n * sizeof(bp_node_info);
    for (size_t i = 0; i < n; i++) {
        size += strlen(nodes[i].node_id) + strlen(nodes[i].address) + 2;
    }
    nodes_result *res = sh_calloc(1, size);
    res->size = size;
    res->n = n;
    char *p = (char *)&res->nodes[n];
    for (size_t i = 0; i < n; i++) {
        size_t a = strlen(nodes[i].node_id) + 1, b = strlen(nodes[i].address) + 1;
        res->nodes[i].node_id = memcpy(p, nodes[i].node_id, a);
        res->nodes[i].address = memcpy(p + a, nodes[i].address, b);
        p += a + b;
    }
    return res;
}

static void nodes_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    redis_op *op = arg;
    redisReply *rep = reply;
    bp_node_info nodes[MAX_MEMBERS];
    size_t n = 0;
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY;
    if (ok) {
        n = parse_members(rep, nodes, MAX_MEMBERS);
    } else if (rep) {
        atomic_fetch_add(&op->r->redis_errors, 1);
    }
    nodes_result *res = nodes_result_new(nodes, n);
    res->cb = op->nodes;
    res->arg = op->arg;
    res->st = atomic_load(&op->r->bp->closed) ? BP_ECLOSED : (ok ? BP_OK : BP_EUNAVAILABLE);
    struct timeval now = {0, 0};
    if (event_base_once(op->r->bp->bases[op->worker], -1, EV_TIMEOUT, nodes_result_cb, res, &now) != 0) {
        res->st = BP_ECLOSED; /* the worker's loop is gone: answer here rather than never */
        nodes_result_cb(-1, 0, res);
    }
    op_free(op);
}

static void run_op(evutil_socket_t fd, short what, void *arg)
{
    redis_op *op = arg;
    rk *r = op->r;
    if (!r->ac || !atomic_load(&r->redis_up)) {
        nodes_reply_cb(NULL, NULL, op);
        return;
    }
    redisAsyncCommand(r->ac, nodes_reply_cb, op, "EVAL %s 3 %s %s %s", MEMBERS_LUA, "-", MEMBERS_KEY, ADDRESSES_KEY);
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

void rk_redis_nodes(rk *r, int worker, bp_nodes_cb cb, void *arg)
{
    redis_op *op = sh_calloc(1, sizeof(*op));
    op->worker = worker;
    op->nodes = cb;
    op->arg = arg;
    post_op(r, op);
}
