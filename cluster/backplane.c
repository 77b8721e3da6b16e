/* SPDX-License-Identifier: Apache-2.0 */
#include "cluster/backplane.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <string.h>

#include "cluster/backplane_impl.h"
#include "common/alloc.h"
#include "common/log.h"

const char *bp_status_name(bp_status st)
{
    switch (st) {
    case BP_OK:
        return "ok";
    case BP_ECLOSED:
        return "closed";
    case BP_EUNAVAILABLE:
        return "unavailable";
    case BP_ESTALE:
        return "stale";
    }
    return "unknown";
}

/* Checked entry by entry (not as an array of pointers) so that the name in
 * the log is the field's and adding an entry cannot skip its check. */
const char *bp_ops_missing(const bp_ops *ops)
{
#define REQUIRE(op) \
    if (!ops->op) { \
        return #op; \
    }
    REQUIRE(kind);
    REQUIRE(open);
    REQUIRE(close);
    REQUIRE(free);
    REQUIRE(publish);
    REQUIRE(nodes);
    REQUIRE(stats);
    REQUIRE(max_publish);
    REQUIRE(session_claim);
    REQUIRE(session_load);
    REQUIRE(session_store);
    REQUIRE(session_release);
    REQUIRE(session_drop);
    REQUIRE(stream_partitions);
    REQUIRE(stream_start);
    REQUIRE(replay_start);
    REQUIRE(replay_next);
    REQUIRE(replay_stop);
    REQUIRE(reap_batch);
    REQUIRE(reap_finish);
    REQUIRE(reap_end);
    REQUIRE(share_mine);
#undef REQUIRE
    return NULL;
}

backplane *bp_open_ops(const bp_ops *ops, const bp_config *cfg, const bp_hooks *hooks)
{
    const char *missing = bp_ops_missing(ops);
    if (missing) {
        sh_log(SH_ERROR, "event=backplane_incomplete kind=%s missing=%s msg=\"the backplane lacks an operation\"",
               ops->kind ? ops->kind : "?", missing);
        return NULL;
    }
    backplane *bp = sh_calloc(1, sizeof(*bp));
    bp->ops = ops;
    bp->cfg = *cfg;
    bp->hooks = *hooks;
    if (ops->open(bp) != 0) {
        sh_free(bp, sizeof(*bp));
        return NULL;
    }
    return bp;
}

backplane *bp_open(const bp_config *cfg, const bp_hooks *hooks)
{
    if (cfg->redis_url || cfg->kafka_brokers) {
        if (!cfg->redis_url || !cfg->kafka_brokers) {
            sh_log(SH_ERROR, "event=backplane_config msg=\"--redis and --kafka go together\"");
            return NULL;
        }
        return bp_open_ops(&bp_rk_ops, cfg, hooks);
    }
    return bp_open_ops(&bp_local_ops, cfg, hooks);
}

int bp_attach(backplane *bp, int worker, struct event_base *base)
{
    if (worker < 0 || worker >= BP_MAX_WORKERS || bp->bases[worker]) {
        return -1;
    }
    bp->bases[worker] = base;
    return 0;
}

void bp_close(backplane *bp)
{
    if (bp && !atomic_exchange(&bp->closed, true)) {
        bp->ops->close(bp);
    }
}

void bp_free(backplane *bp)
{
    if (bp) {
        bp_close(bp);
        bp->ops->free(bp);
        sh_free(bp, sizeof(*bp));
    }
}

const double bp_latency_bounds[BP_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

void bp_hist_observe(bp_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < BP_LATENCY_BUCKETS && (double)us / 1e6 > bp_latency_bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void bp_hist_read(bp_hist *h, uint64_t *counts, double *sum_s)
{
    for (size_t i = 0; i <= BP_LATENCY_BUCKETS; i++) {
        counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    }
    *sum_s = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
}

void bp_get_stats(const backplane *bp, bp_stats *out)
{
    memset(out, 0, sizeof(*out));
    bp->ops->stats(bp, out);
}

const char *bp_kind(const backplane *bp)
{
    return bp->ops->kind;
}

uint32_t bp_max_publish_size(const backplane *bp, uint32_t max_topic, uint32_t max_client_id)
{
    return bp->ops->max_publish(bp, max_topic, max_client_id);
}

bool bp_is_ready(const backplane *bp)
{
    return bp->ready && !bp->closed;
}

bool bp_is_fenced(const backplane *bp)
{
    return atomic_load(&bp->fenced);
}

bool bp_knows_all_subscribers(const backplane *bp)
{
    return bp->ops->knows_all_subscribers;
}

bool bp_retained_from_stream(const backplane *bp)
{
    return bp->ops->retained_from_stream;
}

typedef struct deferred {
    bp_done_cb cb;
    void *arg;
    bp_status st;
    int32_t partition;
    int64_t offset;
} deferred;

/* Where the publish whose callback runs now was written (bp_publish_ref). */
static _Thread_local int32_t done_partition = -1;
static _Thread_local int64_t done_offset = -1;

void bp_publish_ref(int32_t *partition, int64_t *offset)
{
    *partition = done_partition;
    *offset = done_offset;
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    deferred d = *(deferred *)arg;
    sh_free(arg, sizeof(deferred));
    done_partition = d.partition;
    done_offset = d.offset;
    d.cb(d.st, d.arg);
    done_partition = -1;
    done_offset = -1;
}

void bp_defer_done(backplane *bp, int worker, bp_done_cb cb, void *arg, bp_status st)
{
    bp_defer_done_ref(bp, worker, cb, arg, st, -1, -1);
}

void bp_defer_done_ref(backplane *bp, int worker, bp_done_cb cb, void *arg, bp_status st, int32_t partition,
                       int64_t offset)
{
    if (!cb) {
        return;
    }
    deferred *d = sh_malloc(sizeof(*d));
    d->cb = cb;
    d->arg = arg;
    d->partition = st == BP_OK ? partition : -1;
    d->offset = st == BP_OK ? offset : -1;
    d->st = bp->closed ? BP_ECLOSED : st;
    struct timeval now = {0, 0};
    if (event_base_once(bp->bases[worker], -1, EV_TIMEOUT, deferred_cb, d, &now) != 0) {
        /* The loop is gone: complete here rather than never. */
        sh_free(d, sizeof(*d));
        cb(BP_ECLOSED, arg);
    }
}

/* After bp_close nothing reaches an implementation: its threads are gone,
 * so a call there would never complete. The caller is told at once. */
void bp_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    if (atomic_load(&bp->closed)) {
        if (cb) {
            cb(BP_ECLOSED, arg);
        }
        return;
    }
    bp->ops->publish(bp, worker, m, cb, arg);
}

void bp_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg)
{
    if (atomic_load(&bp->closed)) {
        cb(BP_ECLOSED, NULL, 0, arg);
        return;
    }
    bp->ops->nodes(bp, worker, cb, arg);
}

/* Session records: the same rule, and a NULL callback is allowed for the
 * writes (fire and forget), as for bp_publish. */
static bool closed_done(backplane *bp, bp_done_cb cb, void *arg)
{
    if (!atomic_load(&bp->closed)) {
        return false;
    }
    if (cb) {
        cb(BP_ECLOSED, arg);
    }
    return true;
}

void bp_session_claim(backplane *bp, int worker, const char *client_id, bool clean, bp_session_cb cb, void *arg)
{
    if (atomic_load(&bp->closed)) {
        cb(BP_ECLOSED, NULL, arg);
        return;
    }
    bp->ops->session_claim(bp, worker, client_id, clean, cb, arg);
}

void bp_session_load(backplane *bp, int worker, const char *client_id, uint64_t epoch, bool renotify, bp_session_cb cb,
                     void *arg)
{
    if (atomic_load(&bp->closed)) {
        cb(BP_ECLOSED, NULL, arg);
        return;
    }
    bp->ops->session_load(bp, worker, client_id, epoch, renotify, cb, arg);
}

void bp_session_store(backplane *bp, int worker, const char *client_id, uint64_t epoch, const uint8_t *state,
                      uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    if (!closed_done(bp, cb, arg)) {
        bp->ops->session_store(bp, worker, client_id, epoch, state, len, ttl_ms, cb, arg);
    }
}

void bp_session_release(backplane *bp, int worker, const char *client_id, uint64_t old_epoch, const uint8_t *state,
                        uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    if (!closed_done(bp, cb, arg)) {
        bp->ops->session_release(bp, worker, client_id, old_epoch, state, len, ttl_ms, cb, arg);
    }
}

void bp_session_drop(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg)
{
    if (!closed_done(bp, cb, arg)) {
        bp->ops->session_drop(bp, worker, client_id, epoch, cb, arg);
    }
}

/* ---- a dead node's sessions ---- */

void bp_reap_batch(backplane *bp, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg)
{
    if (atomic_load(&bp->closed)) {
        cb(BP_ECLOSED, NULL, arg);
        return;
    }
    bp->ops->reap_batch(bp, worker, instance, cursor, cb, arg);
}

void bp_reap_finish(backplane *bp, int worker, const char *instance, const char *client_id, uint64_t epoch,
                    const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg)
{
    if (!closed_done(bp, cb, arg)) {
        bp->ops->reap_finish(bp, worker, instance, client_id, epoch, state, len, ttl_ms, cb, arg);
    }
}

void bp_reap_end(backplane *bp, int worker, const char *instance, uint64_t retry_after_ms)
{
    if (!atomic_load(&bp->closed)) {
        bp->ops->reap_end(bp, worker, instance, retry_after_ms);
    }
}

/* ---- the stream ---- */

uint32_t bp_stream_partitions(const backplane *bp)
{
    return bp->ops->stream_partitions(bp);
}

int64_t bp_stream_start(const backplane *bp, uint32_t p)
{
    return bp->ops->stream_start(bp, p);
}

uint64_t bp_replay_start(backplane *bp, int worker, const int64_t *from, uint32_t n_parts, uint32_t max_batch,
                         bp_replay_cb cb, void *arg)
{
    return bp_replay_start_least(bp, worker, from, NULL, n_parts, max_batch, cb, arg);
}

uint64_t bp_replay_start_least(backplane *bp, int worker, const int64_t *from, const int64_t *least, uint32_t n_parts,
                               uint32_t max_batch, bp_replay_cb cb, void *arg)
{
    uint64_t id = atomic_fetch_add(&bp->replay_ids, 1) + 1;
    if (atomic_load(&bp->closed)) {
        cb(BP_ECLOSED, NULL, arg);
        return id;
    }
    bp->ops->replay_start(bp, worker, id, from, least, n_parts, max_batch ? max_batch : 1, cb, arg);
    return id;
}

void bp_replay_next(backplane *bp, uint64_t id)
{
    if (!atomic_load(&bp->closed)) {
        bp->ops->replay_next(bp, id);
    }
}

void bp_replay_stop(backplane *bp, uint64_t id)
{
    if (!atomic_load(&bp->closed)) {
        bp->ops->replay_stop(bp, id);
    }
}

bool bp_share_mine(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts)
{
    return bp_share_mine_except(bp, key, len, h, ts, NULL);
}

bool bp_share_ready(backplane *bp, const uint8_t *key, size_t len)
{
    return !bp->ops->share_ready || bp->ops->share_ready(bp, key, len);
}

bool bp_share_mine_except(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except)
{
    return bp->ops->share_mine(bp, key, len, h, ts, except);
}
