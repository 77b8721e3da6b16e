/* SPDX-License-Identifier: Apache-2.0 */
/* Expired retained messages leave the Redis snapshot, and tombstones leave
 * once no older set can come back (docs/architecture.md, "Retained
 * snapshot expiry" and "Retained messages: Kafka's order is the truth"). Redis 7.0 has no per-field expiry in a hash,
 * so every SWEEP_INTERVAL_MS the backplane thread runs SWEEP_LUA over one
 * HSCAN batch of shoal:retained: the script reads Redis's own clock, decodes
 * each value's expiry from the record header and deletes the field only if
 * that value is expired. Deciding and deleting in one script means a value
 * another node wrote meanwhile is what the script reads, so it is never
 * deleted for an older value's expiry. The cursor is kept between runs; a
 * run is skipped while Redis is down or the previous one is unanswered. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "cluster/rk_impl.h"
#include "common/alloc.h"
#include "common/log.h"

#define SWEEP_INTERVAL_MS 2000
/* HSCAN's COUNT: about this many fields per run (a small hash, encoded as a
 * listpack, comes back whole in one call whatever the count). */
#define SWEEP_COUNT 100

/* The record's expiry (bytes after magic "SH", version, flags, qos, origin
 * and, from version 2, the client id; docs/architecture.md "Record format")
 * as a Lua number: Unix ms fit its 53-bit mantissa, and a larger value is
 * in the far future either way. From version 3 the deadline is on Redis's
 * own clock (rk_clock.h), the one the script compares it with; an older
 * writer's is on its wall clock, taken for Redis's as before. A value that is not a record this node
 * understands (too short, another magic, a newer version) is kept: its
 * writer knows better. An expired value leaves shoal:retained and its
 * position in shoal:retained:at becomes a tombstone, so that an older set
 * replayed later cannot bring the topic back. */
const char RK_SWEEP_EXPIRED_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local function u(v, p, n) local x = 0 "
    "  for i = p, p + n - 1 do x = x * 256 + string.byte(v, i) end return x end "
    "local function expiry(v) "
    "  if #v < 6 or string.sub(v, 1, 2) ~= 'SH' then return 0 end "
    "  local ver = string.byte(v, 3) "
    "  if ver < 1 or ver > 3 then return 0 end "
    "  local p = 7 + string.byte(v, 6) "
    "  if ver >= 2 then "
    "    if #v < p + 1 then return 0 end "
    "    p = p + 2 + u(v, p, 2) "
    "  end "
    "  if #v < p + 7 then return 0 end "
    "  return u(v, p, 8) end "
    "local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2]) "
    "local kv, n = r[2], 0 "
    "for i = 1, #kv, 2 do "
    "  local e = expiry(kv[i + 1]) "
    "  if e > 0 and e <= now then "
    "    redis.call('HDEL', KEYS[1], kv[i]) n = n + 1 "
    "    local at = redis.call('HGET', KEYS[2], kv[i]) "
    "    if at and string.match(at, '^%d+:%d+$') then "
    "      redis.call('HSET', KEYS[2], kv[i], at .. ':' .. string.format('%d', now)) end "
    "  end "
    "end "
    "return {r[1], n}";

/* A tombstone "partition:offset:deleted_at" older than ARGV[3] ms leaves. */
const char RK_SWEEP_TOMBSTONES_LUA[] =
    "if redis.replicate_commands then redis.replicate_commands() end "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local life = tonumber(ARGV[3]) "
    "local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2]) "
    "local kv, n = r[2], 0 "
    "for i = 1, #kv, 2 do "
    "  local at = string.match(kv[i + 1], '^%d+:%d+:(%d+)$') "
    "  if at and now - tonumber(at) >= life then redis.call('HDEL', KEYS[1], kv[i]) n = n + 1 end "
    "end "
    "return {r[1], n}";

/* A tombstone must outlive every older set of its topic that a node can
 * still read from Kafka and write again: Kafka deletes a record only with
 * its whole segment, once the segment's newest record is older than
 * retention.ms, and a segment is rolled at the latest after segment.ms. So
 * a tombstone lives retention.ms + segment.ms, plus a day for nodes whose
 * writes waited out an outage. Unlimited (or unknown) retention: never
 * swept (one small field per deleted topic). */
#define TOMBSTONE_MARGIN_MS (24LL * 3600 * 1000)

static int64_t tombstone_lifetime_ms(const rk *r)
{
    if (r->retention_ms < 0) {
        return -1;
    }
    return r->retention_ms + (r->segment_ms > 0 ? r->segment_ms : 0) + TOMBSTONE_MARGIN_MS;
}

/* One HSCAN walk: its cursor, kept between runs. */
typedef struct sweep_walk {
    char cursor[24]; /* HSCAN's cursor, a decimal uint64 */
    bool pending;    /* a run is unanswered */
    const char *what;
} sweep_walk;

typedef struct rk_sweep {
    struct event *timer;
    sweep_walk expired;    /* shoal:retained */
    sweep_walk tombstones; /* shoal:retained:at */
} rk_sweep;

typedef struct walk_arg {
    rk *r;
    sweep_walk *w;
} walk_arg;

static void sweep_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    walk_arg *a = arg;
    rk *r = a->r;
    sweep_walk *w = r->sweep ? a->w : NULL;
    sh_free(a, sizeof(*a));
    redisReply *rep = reply;
    if (!w) {
        return; /* stopping: the context is being freed */
    }
    w->pending = false;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[0]->len >= sizeof(w->cursor)) {
        if (rep && rep->type == REDIS_REPLY_ERROR) {
            atomic_fetch_add(&r->redis_errors, 1);
            sh_log(SH_WARN, "event=retained_sweep_failed what=%s err=\"%s\"", w->what, rep->str);
        }
        return; /* no answer (Redis went away): the next run starts where this one did */
    }
    memcpy(w->cursor, rep->element[0]->str, rep->element[0]->len + 1);
    long long deleted = rep->element[1]->integer;
    if (deleted > 0) {
        sh_log(SH_DEBUG, "event=retained_swept what=%s count=%lld", w->what, deleted);
    }
}

static walk_arg *walk(rk *r, sweep_walk *w)
{
    walk_arg *a = sh_malloc(sizeof(*a));
    a->r = r;
    a->w = w;
    w->pending = true;
    return a;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    rk *r = arg;
    rk_sweep *s = r->sweep;
    if (!r->ac || !atomic_load(&r->redis_up) || atomic_load(&r->stopping)) {
        return;
    }
    if (!s->expired.pending) {
        redisAsyncCommand(r->ac, sweep_reply_cb, walk(r, &s->expired), "EVAL %s 2 %s %s %s %d", RK_SWEEP_EXPIRED_LUA,
                          RK_RETAINED_KEY, RK_RETAINED_AT_KEY, s->expired.cursor, SWEEP_COUNT);
    }
    int64_t life = tombstone_lifetime_ms(r);
    if (life >= 0 && !s->tombstones.pending) {
        redisAsyncCommand(r->ac, sweep_reply_cb, walk(r, &s->tombstones), "EVAL %s 1 %s %s %d %lld",
                          RK_SWEEP_TOMBSTONES_LUA, RK_RETAINED_AT_KEY, s->tombstones.cursor, SWEEP_COUNT,
                          (long long)life);
    }
}

void rk_sweep_attach(rk *r)
{
    r->sweep = sh_calloc(1, sizeof(*r->sweep));
    snprintf(r->sweep->expired.cursor, sizeof(r->sweep->expired.cursor), "0");
    snprintf(r->sweep->tombstones.cursor, sizeof(r->sweep->tombstones.cursor), "0");
    r->sweep->expired.what = "expired";
    r->sweep->tombstones.what = "tombstones";
    r->sweep->timer = event_new(r->base, -1, EV_PERSIST, sweep_cb, r);
    struct timeval t = {SWEEP_INTERVAL_MS / 1000, (SWEEP_INTERVAL_MS % 1000) * 1000};
    event_add(r->sweep->timer, &t);
}

void rk_sweep_stop(rk *r)
{
    rk_sweep *s = r->sweep;
    if (!s) {
        return;
    }
    r->sweep = NULL;
    event_free(s->timer);
    sh_free(s, sizeof(*s));
}
