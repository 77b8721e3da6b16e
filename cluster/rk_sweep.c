/* SPDX-License-Identifier: Apache-2.0 */
/* Expired retained messages leave the Redis snapshot (docs/architecture.md,
 * "Retained snapshot expiry"). Redis 7.0 has no per-field expiry in a hash,
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
 * in the far future either way. A value that is not a record this node
 * understands (too short, another magic, a newer version) is kept: its
 * writer knows better. KEYS: the hash. ARGV: cursor, count.
 * -> {next cursor, deleted}. */
static const char *SWEEP_LUA = "if redis.replicate_commands then redis.replicate_commands() end "
                               "local t = redis.call('TIME') "
                               "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
                               "local function u(v, p, n) local x = 0 "
                               "  for i = p, p + n - 1 do x = x * 256 + string.byte(v, i) end return x end "
                               "local function expiry(v) "
                               "  if #v < 6 or string.sub(v, 1, 2) ~= 'SH' then return 0 end "
                               "  local ver = string.byte(v, 3) "
                               "  if ver < 1 or ver > 2 then return 0 end "
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
                               "  if e > 0 and e <= now then redis.call('HDEL', KEYS[1], kv[i]) n = n + 1 end "
                               "end "
                               "return {r[1], n}";

typedef struct rk_sweep {
    struct event *timer;
    char cursor[24]; /* HSCAN's cursor, a decimal uint64 */
    bool pending;    /* a run is unanswered */
} rk_sweep;

static void sweep_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    rk *r = arg;
    redisReply *rep = reply;
    if (!r->sweep) {
        return; /* stopping: the context is being freed */
    }
    r->sweep->pending = false;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[0]->len >= sizeof(r->sweep->cursor)) {
        if (rep && rep->type == REDIS_REPLY_ERROR) {
            atomic_fetch_add(&r->redis_errors, 1);
            sh_log(SH_WARN, "event=retained_sweep_failed err=\"%s\"", rep->str);
        }
        return; /* no answer (Redis went away): the next run starts where this one did */
    }
    memcpy(r->sweep->cursor, rep->element[0]->str, rep->element[0]->len + 1);
    long long deleted = rep->element[1]->integer;
    if (deleted > 0) {
        sh_log(SH_DEBUG, "event=retained_expired_swept count=%lld", deleted);
    }
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    rk *r = arg;
    rk_sweep *s = r->sweep;
    if (s->pending || !r->ac || !atomic_load(&r->redis_up) || atomic_load(&r->stopping)) {
        return;
    }
    s->pending = true;
    redisAsyncCommand(r->ac, sweep_reply_cb, r, "EVAL %s 1 %s %s %d", SWEEP_LUA, RK_RETAINED_KEY, s->cursor,
                      SWEEP_COUNT);
}

void rk_sweep_attach(rk *r)
{
    r->sweep = sh_calloc(1, sizeof(*r->sweep));
    snprintf(r->sweep->cursor, sizeof(r->sweep->cursor), "0");
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
