/* SPDX-License-Identifier: Apache-2.0 */
/* The retained snapshot follows the stream (docs/architecture.md, "Retained
 * messages: Kafka's order is the truth"). Every node, for every retained
 * record it consumes (its own included, in partition order), applies it to
 * its index (the `retained` hook) and writes it to Redis with the record's
 * (partition, offset) through RK_RETAINED_CAS_LUA, which keeps only a newer
 * position: the writes of all nodes are idempotent and their order does not
 * matter. A write that fails (Redis down) stays queued per partition and is
 * sent again each second; each node raises the partition's watermark to the
 * offset before which all of its writes are acknowledged. A starting node
 * loads the snapshot and replays the stream from the watermarks, skipping
 * what the snapshot already holds newer. Backplane thread only, except the
 * start-up steps (before the thread runs). */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rk_impl.h"
#include "cluster/rk_record.h"
#include "cluster/rk_retained.h"
#include "common/alloc.h"
#include "common/log.h"

/* Writes queued while Redis does not take them, over all partitions. Past
 * either bound a write is dropped and its partition's watermark stays where
 * it is until the node restarts: the snapshot then catches up when a node
 * starts and replays from that watermark. */
#define MAX_QUEUED_WRITES 100000u
#define MAX_QUEUED_BYTES (64u * 1024u * 1024u)
/* Queued writes sent per second while catching up after an outage. */
#define RESEND_PER_TICK 2000

#define LUA_NOW                                                        \
    "if redis.replicate_commands then redis.replicate_commands() end " \
    "local t = redis.call('TIME') "                                    \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

/* Offsets compare as Lua numbers: exact up to 2^53. A position of another
 * partition is not comparable (the topic's partition count changed): the
 * write wins. Tombstones carry Redis's time for the sweep. */
const char RK_RETAINED_CAS_LUA[] = LUA_NOW
    "local cur = redis.call('HGET', KEYS[2], ARGV[1]) "
    "if cur then "
    "  local p, o = string.match(cur, '^(%d+):(%d+)') "
    "  if p and tonumber(p) == tonumber(ARGV[2]) and tonumber(o) >= tonumber(ARGV[3]) then return 0 end "
    "end "
    "if #ARGV[4] > 0 then "
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) "
    "  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3]) "
    "else "
    "  redis.call('HDEL', KEYS[1], ARGV[1]) "
    "  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. string.format('%d', now)) "
    "end "
    "return 1";

const char RK_RETAINED_MARK_LUA[] = "local n = 0 "
                                    "for i = 1, #ARGV, 2 do "
                                    "  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1') "
                                    "  if tonumber(ARGV[i + 1]) > cur then "
                                    "    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) n = n + 1 end "
                                    "end "
                                    "return n";

/* One queued snapshot write: the topic, then the record ("" = delete). */
typedef struct ret_write {
    struct ret_write *next;
    rk *r;
    int64_t offset;
    uint64_t sent_us; /* for shoal_redis_command_latency_seconds */
    int partition;
    uint32_t topic_len;
    uint32_t rec_len;
    bool sent; /* a command is in flight */
    bool done; /* Redis answered it (written or kept a newer one) */
    uint8_t data[];
} ret_write;

typedef struct ret_part {
    ret_write *head, *tail;
    int64_t mark_acked; /* the watermark Redis took from this node */
    int64_t start;      /* the watermark loaded at start, -1 = none */
    int64_t live_from;  /* records before it are replayed, not delivered */
    bool lost;          /* a write was dropped at the bound */
} ret_part;

/* The snapshot's position of one topic, during the catch-up only. */
typedef struct ret_pos {
    char *topic;
    uint32_t topic_len;
    int partition;
    int64_t offset;
} ret_pos;

typedef struct rk_ret {
    ret_part *parts;
    int nparts;
    size_t queued, bytes;
    bool mark_pending;
    int64_t *mark_sent; /* per partition, what the pending MARK carries (-1 = not in it) */
    ret_pos *pos;
    size_t npos;
    bool lost_logged;
} rk_ret;

static size_t write_size(const ret_write *w)
{
    return sizeof(*w) + w->topic_len + w->rec_len;
}

void rk_retained_init(rk *r)
{
    rk_ret *t = sh_calloc(1, sizeof(*t));
    t->nparts = r->partitions;
    t->parts = sh_calloc((size_t)r->partitions, sizeof(ret_part));
    t->mark_sent = sh_calloc((size_t)r->partitions, sizeof(int64_t));
    for (int p = 0; p < r->partitions; p++) {
        t->parts[p].mark_acked = -1;
        t->parts[p].start = -1;
        t->parts[p].live_from = -1;
        t->mark_sent[p] = -1;
    }
    r->ret = t;
}

static void free_positions(rk_ret *t)
{
    for (size_t i = 0; i < t->npos; i++) {
        sh_free(t->pos[i].topic, t->pos[i].topic_len + 1);
    }
    sh_free(t->pos, (t->npos ? t->npos : 1) * sizeof(ret_pos));
    t->pos = NULL;
    t->npos = 0;
}

void rk_retained_free(rk *r)
{
    rk_ret *t = r->ret;
    if (!t) {
        return;
    }
    r->ret = NULL;
    for (int p = 0; p < t->nparts; p++) {
        ret_write *w = t->parts[p].head;
        while (w) {
            ret_write *next = w->next;
            sh_free(w, write_size(w));
            w = next;
        }
    }
    free_positions(t);
    sh_free(t->parts, (size_t)t->nparts * sizeof(ret_part));
    sh_free(t->mark_sent, (size_t)t->nparts * sizeof(int64_t));
    sh_free(t, sizeof(*t));
}

static void apply(rk *r, const bp_message *m)
{
    const bp_hooks *h = &r->bp->hooks;
    if (h->retained) {
        h->retained(h->node, m);
    }
}

/* ---- start: the snapshot and where the stream resumes ---- */

static int pos_cmp(const void *a, const void *b)
{
    const ret_pos *x = a, *y = b;
    size_t n = x->topic_len < y->topic_len ? x->topic_len : y->topic_len;
    int c = memcmp(x->topic, y->topic, n);
    return c ? c : (x->topic_len > y->topic_len) - (x->topic_len < y->topic_len);
}

/* "partition:offset[:deleted_at]" -> 0, or -1 when it is not one. */
static int parse_pos(const char *s, int *partition, int64_t *offset)
{
    char *end;
    long p = strtol(s, &end, 10);
    if (end == s || *end != ':' || p < 0) {
        return -1;
    }
    const char *o = end + 1;
    long long off = strtoll(o, &end, 10);
    if (end == o || off < 0) {
        return -1;
    }
    *partition = (int)p;
    *offset = off;
    return 0;
}

static void load_positions(rk_ret *t, const redisReply *at)
{
    size_t n = at->elements / 2;
    t->pos = sh_calloc(n ? n : 1, sizeof(ret_pos));
    for (size_t i = 0; i + 1 < at->elements; i += 2) {
        const redisReply *k = at->element[i], *v = at->element[i + 1];
        ret_pos *e = &t->pos[t->npos];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            parse_pos(v->str, &e->partition, &e->offset) != 0) {
            continue;
        }
        e->topic = sh_strndup(k->str, k->len);
        e->topic_len = (uint32_t)k->len;
        t->npos++;
    }
    qsort(t->pos, t->npos, sizeof(ret_pos), pos_cmp);
}

static void load_marks(rk *r, const redisReply *marks)
{
    for (size_t i = 0; i + 1 < marks->elements; i += 2) {
        long p = strtol(marks->element[i]->str, NULL, 10);
        long long w = strtoll(marks->element[i + 1]->str, NULL, 10);
        if (p >= 0 && p < r->partitions && w >= 0) {
            r->ret->parts[p].start = w;
        }
    }
}

static size_t load_values(rk *r, const redisReply *vals)
{
    size_t loaded = 0;
    for (size_t i = 1; i < vals->elements; i += 2) {
        bp_message m;
        const uint8_t *origin;
        size_t olen;
        const redisReply *v = vals->element[i];
        if (v->type == REDIS_REPLY_STRING &&
            rk_record_decode((const uint8_t *)v->str, v->len, &m, &origin, &olen) == RK_RECORD_OK &&
            m.payload_len > 0) {
            m.retain = true;
            /* A deadline on the cluster clock (version 3) moves onto this
             * node's; an older writer's stays as it is (none read live yet). */
            const char *self = r->bp->cfg.node_id;
            bool own = olen == strlen(self) && memcmp(origin, self, olen) == 0;
            rk_expiry_localize(r, &m, origin, olen, own, rk_record_version((const uint8_t *)v->str));
            apply(r, &m);
            loaded++;
        }
    }
    return loaded;
}

/* Values, positions and watermarks read in one MULTI, so they describe
 * one moment of the snapshot. */
int rk_retained_load(rk *r, redisContext *c)
{
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "HGETALL %s", RK_RETAINED_KEY);
    redisAppendCommand(c, "HGETALL %s", RK_RETAINED_AT_KEY);
    redisAppendCommand(c, "HGETALL %s", RK_RETAINED_OFFSETS_KEY);
    redisAppendCommand(c, "EXEC");
    redisReply *rep = NULL;
    int rc = 0;
    for (int i = 0; i < 5; i++) {
        freeReplyObject(rep);
        rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK) {
            rc = -1;
            break;
        }
    }
    if (rc != 0 || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        sh_log(SH_ERROR, "event=retained_load_failed err=\"%s\"",
               rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
        freeReplyObject(rep);
        return -1;
    }
    size_t loaded = load_values(r, rep->element[0]);
    load_positions(r->ret, rep->element[1]);
    load_marks(r, rep->element[2]);
    freeReplyObject(rep);
    sh_log(SH_INFO, "event=retained_loaded count=%zu positions=%zu redis=%s:%d", loaded, r->ret->npos, r->redis_host,
           r->redis_port);
    return 0;
}

int64_t rk_retained_resume_at(rk *r, int partition, int64_t end)
{
    ret_part *p = &r->ret->parts[partition];
    p->live_from = end;
    return p->start >= 0 && p->start < end ? p->start : end;
}

void rk_retained_caught_up(rk *r)
{
    free_positions(r->ret);
}

bool rk_retained_replaying(const rk *r, int partition, int64_t offset)
{
    return partition >= 0 && partition < r->ret->nparts && offset < r->ret->parts[partition].live_from;
}

/* The snapshot reflects this topic at this offset or later already. */
static bool snapshot_newer(const rk_ret *t, const bp_message *m, int partition, int64_t offset)
{
    if (!t->npos) {
        return false;
    }
    ret_pos key = {.topic = (char *)m->topic, .topic_len = m->topic_len};
    const ret_pos *e = bsearch(&key, t->pos, t->npos, sizeof(ret_pos), pos_cmp);
    return e && e->partition == partition && e->offset >= offset;
}

/* ---- snapshot writes ---- */

static void send_write(rk *r, ret_write *w);

static void pop_done(rk_ret *t, ret_part *p)
{
    while (p->head && p->head->done) {
        ret_write *w = p->head;
        p->head = w->next;
        if (!p->head) {
            p->tail = NULL;
        }
        t->queued--;
        t->bytes -= write_size(w);
        sh_free(w, write_size(w));
    }
}

static void cas_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    ret_write *w = arg;
    rk *r = w->r;
    redisReply *rep = reply;
    w->sent = false;
    if (!r->ret) {
        return; /* stopping */
    }
    if (rep) {
        bp_hist_observe(&r->redis_latency, rk_mono_us() - w->sent_us);
    }
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        if (rep && rep->type == REDIS_REPLY_ERROR) {
            atomic_fetch_add(&r->redis_errors, 1);
            sh_log(SH_WARN, "event=retained_write_failed err=\"%s\"", rep->str);
        }
        return; /* sent again by the next tick */
    }
    w->done = true;
    pop_done(r->ret, &r->ret->parts[w->partition]);
}

static void send_write(rk *r, ret_write *w)
{
    w->sent = true;
    w->sent_us = rk_mono_us();
    const uint8_t *topic = w->data, *rec = w->data + w->topic_len;
    if (redisAsyncCommand(r->ac, cas_reply_cb, w, "EVAL %s 2 %s %s %b %d %lld %b", RK_RETAINED_CAS_LUA, RK_RETAINED_KEY,
                          RK_RETAINED_AT_KEY, topic, (size_t)w->topic_len, w->partition, (long long)w->offset, rec,
                          (size_t)w->rec_len) != REDIS_OK) {
        w->sent = false;
    }
}

static bool redis_writable(const rk *r)
{
    return r->ac && atomic_load(&r->redis_up) && !atomic_load(&r->stopping);
}

static void queue_write(rk *r, const bp_message *m, const uint8_t *rec, size_t rec_len, int partition, int64_t offset)
{
    rk_ret *t = r->ret;
    ret_part *p = &t->parts[partition];
    size_t size = sizeof(ret_write) + m->topic_len + (m->payload_len ? rec_len : 0);
    if (t->queued >= MAX_QUEUED_WRITES || t->bytes + size > MAX_QUEUED_BYTES) {
        p->lost = true;
        if (!t->lost_logged) {
            t->lost_logged = true;
            sh_log(SH_WARN,
                   "event=retained_snapshot_behind partition=%d msg=\"too many snapshot writes queued; the "
                   "watermark stays until a node restarts and replays\"",
                   partition);
        }
        return;
    }
    ret_write *w = sh_calloc(1, size);
    w->r = r;
    w->offset = offset;
    w->partition = partition;
    w->topic_len = m->topic_len;
    w->rec_len = m->payload_len ? (uint32_t)rec_len : 0;
    memcpy(w->data, m->topic, m->topic_len);
    if (w->rec_len) {
        memcpy(w->data + w->topic_len, rec, rec_len);
    }
    if (p->tail) {
        p->tail->next = w;
    } else {
        p->head = w;
    }
    p->tail = w;
    t->queued++;
    t->bytes += size;
    if (redis_writable(r)) {
        send_write(r, w);
    }
}

void rk_retained_consumed(rk *r, const bp_message *m, const uint8_t *rec, size_t rec_len, int partition, int64_t offset)
{
    if (partition < 0 || partition >= r->ret->nparts) {
        return;
    }
    if (rk_retained_replaying(r, partition, offset) && snapshot_newer(r->ret, m, partition, offset)) {
        return; /* the snapshot, loaded already, holds this topic newer */
    }
    apply(r, m);
    queue_write(r, m, rec, rec_len, partition, offset);
}

/* ---- once a second: queued writes again, then the watermarks ---- */

static void mark_reply_cb(redisAsyncContext *ac, void *reply, void *arg)
{
    rk *r = arg;
    redisReply *rep = reply;
    rk_ret *t = r->ret;
    if (!t) {
        return;
    }
    t->mark_pending = false;
    bool ok = rep && rep->type == REDIS_REPLY_INTEGER;
    for (int p = 0; p < t->nparts; p++) {
        if (ok && t->mark_sent[p] > t->parts[p].mark_acked) {
            t->parts[p].mark_acked = t->mark_sent[p];
        }
        t->mark_sent[p] = -1;
    }
}

/* Every retained record of the partition before this offset has been
 * written by this node; -1 when that is not known. */
static int64_t watermark(const rk *r, int partition)
{
    const ret_part *p = &r->ret->parts[partition];
    if (p->lost) {
        return -1;
    }
    return p->head ? p->head->offset : r->positions[partition];
}

static void send_marks(rk *r)
{
    rk_ret *t = r->ret;
    if (t->mark_pending) {
        return;
    }
    const char *argv[4 + 2 * 256];
    size_t lens[4 + 2 * 256];
    char nums[2 * 256][24];
    int argc = 0, k = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = RK_RETAINED_MARK_LUA;
    argv[argc++] = "1";
    argv[argc++] = RK_RETAINED_OFFSETS_KEY;
    for (int p = 0; p < t->nparts && argc + 2 <= (int)(sizeof(argv) / sizeof(argv[0])); p++) {
        int64_t w = watermark(r, p);
        if (w < 0 || w <= t->parts[p].mark_acked) {
            continue;
        }
        t->mark_sent[p] = w;
        snprintf(nums[k], sizeof(nums[k]), "%d", p);
        argv[argc++] = nums[k++];
        snprintf(nums[k], sizeof(nums[k]), "%lld", (long long)w);
        argv[argc++] = nums[k++];
    }
    if (k == 0) {
        return;
    }
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    if (redisAsyncCommandArgv(r->ac, mark_reply_cb, r, argc, argv, lens) == REDIS_OK) {
        t->mark_pending = true;
    }
}

void rk_retained_tick(rk *r)
{
    rk_ret *t = r->ret;
    if (!t || !redis_writable(r)) {
        return;
    }
    int budget = RESEND_PER_TICK;
    for (int p = 0; p < t->nparts && budget > 0; p++) {
        for (ret_write *w = t->parts[p].head; w && budget > 0; w = w->next) {
            if (!w->sent && !w->done) {
                send_write(r, w);
                budget--;
            }
        }
    }
    send_marks(r);
}
