/* SPDX-License-Identifier: Apache-2.0 */
/* The redis_kafka backplane: messages on Kafka, retained snapshot,
 * membership and session records in Redis. */
#include <event2/event.h>
#include <event2/thread.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "cluster/rk_impl.h"
#include "cluster/rk_tls.h"
#include "common/alloc.h"
#include "common/log.h"

uint64_t rk_unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

uint64_t rk_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void rk_cluster_now(rk *r, uint64_t *cluster_ms, uint64_t *unix_ms)
{
    uint64_t mono = rk_mono_us();
    *unix_ms = rk_unix_ms();
    int64_t off;
    if (!rk_refclock_offset(&r->refclock, mono, &off, NULL)) {
        *cluster_ms = *unix_ms; /* never reached Redis: the wall clock stands in (rk_clock.h) */
        return;
    }
    int64_t now = (int64_t)mono + off;
    *cluster_ms = now > 0 ? (uint64_t)now / 1000u : *unix_ms;
}

static void rk_stats(const backplane *bp, bp_stats *out)
{
    rk *r = bp->impl;
    out->kafka_up = atomic_load(&r->kafka_up) && !atomic_load(&r->kafka_fatal);
    out->redis_up = atomic_load(&r->redis_up);
    out->produced = atomic_load(&r->produced);
    out->produce_errors = atomic_load(&r->produce_errors);
    out->consumed = atomic_load(&r->consumed);
    out->skipped_newer = atomic_load(&r->skipped_newer);
    out->bad_records = atomic_load(&r->bad_records);
    out->redis_errors = atomic_load(&r->redis_errors);
    /* Cached high watermarks (updated by fetches): no broker round trip. */
    for (int p = 0; r->consumer && p < r->partitions; p++) {
        int64_t lo = 0, hi = 0, pos = r->positions[p];
        if (pos >= 0 && rd_kafka_get_watermark_offsets(r->consumer, r->topic, p, &lo, &hi) == 0 && hi > pos) {
            out->consumer_lag += (uint64_t)(hi - pos);
        }
    }
    bp_hist_read(&r->produce_latency, out->produce_latency, &out->produce_latency_sum);
    bp_hist_read(&r->redis_latency, out->redis_latency, &out->redis_latency_sum);
    bp_hist_read(&r->consume_delay, out->consume_delay, &out->consume_delay_sum);
    out->paused_partitions = atomic_load(&r->paused_parts);
    out->stream_pauses = atomic_load(&r->pauses);
    out->lease_lost = atomic_load(&r->lease_lost_n);
    out->lease_regained = atomic_load(&r->lease_regained_n);
    out->fenced = atomic_load(&r->bp->fenced);
}

/* Log one line per readiness change, not per message. Any thread calls
 * this; the lock makes the read of the inputs, the published flag and the
 * logged change one step, so two threads never publish an older answer
 * after a newer one. */
void rk_update_ready(rk *r)
{
    backplane *bp = r->bp;
    pthread_mutex_lock(&r->ready_lock);
    bool kafka = atomic_load(&r->kafka_up) && !atomic_load(&r->kafka_fatal);
    bool redis = atomic_load(&r->redis_up);
    bool lease = !atomic_load(&bp->fenced);
    bool ready = kafka && redis && lease && !atomic_load(&r->stopping);
    atomic_store(&bp->ready, ready);
    if (ready != r->was_ready) {
        r->was_ready = ready;
        sh_log(ready ? SH_INFO : SH_WARN, "event=backplane_%s kafka=%s redis=%s lease=%s",
               ready ? "ready" : "not_ready", kafka ? "up" : "down", redis ? "up" : "down", lease ? "held" : "lost");
        if (bp->hooks.ready_changed) {
            bp->hooks.ready_changed(bp->hooks.node, ready);
        }
    }
    pthread_mutex_unlock(&r->ready_lock);
}

void rk_complete(rk *r, int worker, bp_done_cb cb, void *arg, bp_status st)
{
    bp_defer_done(r->bp, worker, cb, arg, st);
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    rk *r = arg;
    if (atomic_load(&r->stopping)) {
        event_base_loopexit(r->base, NULL);
        return;
    }
    /* Once a second: Redis liveness, then readiness from scratch, so a
     * missed transition cannot leave it stale. */
    rk_redis_watchdog(r);
    rk_update_ready(r);
    rk_retained_tick(r);
    rk_kafka_tick(r);
}

static void *rk_main(void *arg)
{
    rk *r = arg;
    rk_kafka_attach(r);
    rk_replay_attach(r);
    rk_redis_attach(r);
    event_base_dispatch(r->base);
    return NULL;
}

static void rk_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    rk *r = bp->impl;
    if (cb && !bp->ready) {
        /* Nothing is acknowledged that is not durable. */
        rk_complete(r, worker, cb, arg, BP_EUNAVAILABLE);
        return;
    }
    rk_kafka_publish(r, worker, m, cb, arg);
}

static void rk_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg)
{
    rk_redis_nodes(bp->impl, worker, cb, arg);
}

static void rk_session_claim_op(backplane *bp, int worker, const char *client_id, bool clean, bp_session_cb cb,
                                void *arg)
{
    rk_session_claim(bp->impl, worker, client_id, clean, cb, arg);
}

static void rk_session_load_op(backplane *bp, int worker, const char *client_id, uint64_t epoch, bool renotify,
                               bp_session_cb cb, void *arg)
{
    rk_session_load(bp->impl, worker, client_id, epoch, renotify, cb, arg);
}

static void rk_session_store_op(backplane *bp, int worker, const char *client_id, uint64_t epoch, const uint8_t *state,
                                uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    rk_session_store(bp->impl, worker, client_id, epoch, state, len, ttl_ms, cb, arg);
}

static void rk_session_release_op(backplane *bp, int worker, const char *client_id, uint64_t old_epoch,
                                  const uint8_t *state, uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg)
{
    rk_session_release(bp->impl, worker, client_id, old_epoch, state, len, ttl_ms, cb, arg);
}

static void rk_session_drop_op(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb,
                               void *arg)
{
    rk_session_drop(bp->impl, worker, client_id, epoch, cb, arg);
}

static void rk_reap_batch_op(backplane *bp, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg)
{
    rk_reap_batch(bp->impl, worker, instance, cursor, cb, arg);
}

static void rk_reap_finish_op(backplane *bp, int worker, const char *instance, const char *client_id, uint64_t epoch,
                              const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg)
{
    rk_reap_finish(bp->impl, worker, instance, client_id, epoch, state, len, ttl_ms, cb, arg);
}

static void rk_reap_end_op(backplane *bp, int worker, const char *instance, uint64_t retry_after_ms)
{
    rk_reap_end(bp->impl, worker, instance, retry_after_ms);
}

static void rk_close(backplane *bp)
{
    rk *r = bp->impl;
    atomic_store(&r->stopping, true);
    event_active(r->keepalive, EV_TIMEOUT, 0);
    pthread_join(r->thread, NULL);
    pthread_join(r->probe_thread, NULL);
    rk_replay_stop_all(r);
    rk_redis_stop(r);
    rk_kafka_stop(r);
    /* Operations handed to the loop after its last turn still answer
     * (BP_ECLOSED): every callback runs exactly once. */
    event_base_loop(r->base, EVLOOP_NONBLOCK);
}

/* The one way to free an rk, from a failed open (whatever it got as far as
 * making) and after close alike: each stop is a no-op for what is not
 * there. */
static void rk_release(rk *r)
{
    rk_replay_stop_all(r);
    rk_redis_stop(r);
    rk_kafka_stop(r);
    rk_retained_free(r);
    rk_share_free(r);
    if (r->keepalive) {
        event_free(r->keepalive);
    }
    if (r->base) {
        event_base_free(r->base);
    }
    sh_free(r->positions, (size_t)(r->partitions > 0 ? r->partitions : 1) * sizeof(int64_t));
    sh_free(r->start, (size_t)(r->partitions > 0 ? r->partitions : 1) * sizeof(int64_t));
    sh_free(r->own_high, (size_t)(r->partitions > 0 ? r->partitions : 1) * sizeof(int64_t));
    pthread_mutex_destroy(&r->ready_lock);
    rk_ksec_free(&r->ksec);
    rk_clocks_destroy(&r->clocks);
    rk_refclock_destroy(&r->refclock);
    sh_free(r, sizeof(*r));
}

static void rk_free(backplane *bp)
{
    rk_release(bp->impl);
}

static uint32_t rk_max_publish(const backplane *bp, uint32_t max_topic, uint32_t max_client_id)
{
    return rk_kafka_max_publish(bp->impl, max_topic, max_client_id);
}

/* Redis's URL first (nothing to undo), Kafka ready, the retained snapshot
 * loaded, the stream assigned and replayed from the snapshot's watermarks,
 * and only then the node id claimed: the claim's TTL starts running just
 * before the heartbeats that renew it. */
static int rk_open(backplane *bp)
{
    evthread_use_pthreads();
    const bp_config *cfg = &bp->cfg;
    rk *r = sh_calloc(1, sizeof(*r));
    bp->impl = r;
    r->bp = bp;
    pthread_mutex_init(&r->ready_lock, NULL);
    rk_clocks_init(&r->clocks);
    rk_refclock_init(&r->refclock);
    r->prod_pipe[0] = r->prod_pipe[1] = r->cons_pipe[0] = r->cons_pipe[1] = -1;
    r->base = event_base_new();
    r->keepalive = event_new(r->base, -1, EV_PERSIST, keepalive_cb, r);
    struct timeval sec = {1, 0};
    event_add(r->keepalive, &sec);
    snprintf(r->topic, sizeof(r->topic), "%smessages", cfg->kafka_topic_prefix ? cfg->kafka_topic_prefix : "shoal.");
    if (rk_redis_parse_url(r, cfg->redis_url) != 0 || rk_kafka_start(r) != 0 || rk_replay_start_consumer(r) != 0 ||
        rk_redis_load_retained(r) != 0 || rk_kafka_assign(r) != 0 || rk_redis_claim_node(r) != 0) {
        rk_release(r);
        bp->impl = NULL;
        return -1;
    }
    rk_update_ready(r);
    pthread_create(&r->thread, NULL, rk_main, r);
    pthread_create(&r->probe_thread, NULL, rk_probe_main, r);
    return 0;
}

static uint32_t rk_stream_partitions(const backplane *bp)
{
    const rk *r = bp->impl;
    return r->partitions > 0 ? (uint32_t)r->partitions : 0;
}

static int64_t rk_stream_start(const backplane *bp, uint32_t p)
{
    const rk *r = bp->impl;
    return p < (uint32_t)r->partitions ? r->start[p] : -1;
}

static void rk_replay_start_op(backplane *bp, int worker, uint64_t id, const int64_t *from, const int64_t *least,
                               uint32_t n_parts, uint32_t max_batch, bp_replay_cb cb, void *arg)
{
    rk_replay_start(bp->impl, worker, id, from, least, n_parts, max_batch, cb, arg);
}

static void rk_replay_next_op(backplane *bp, uint64_t id)
{
    rk_replay_next(bp->impl, id);
}

static void rk_replay_stop_op(backplane *bp, uint64_t id)
{
    rk_replay_cancel(bp->impl, id);
}

static bool rk_share_mine_op(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except)
{
    return rk_share_mine(bp->impl, key, len, h, ts, except);
}

static bool rk_share_ready_op(backplane *bp, const uint8_t *key, size_t len)
{
    return rk_share_ready(bp->impl, key, len);
}

const bp_ops bp_rk_ops = {
    .kind = "redis_kafka",
    .retained_from_stream = true,
    .open = rk_open,
    .close = rk_close,
    .free = rk_free,
    .publish = rk_publish,
    .nodes = rk_nodes,
    .stats = rk_stats,
    .max_publish = rk_max_publish,
    .session_claim = rk_session_claim_op,
    .session_load = rk_session_load_op,
    .session_store = rk_session_store_op,
    .session_release = rk_session_release_op,
    .session_drop = rk_session_drop_op,
    .stream_partitions = rk_stream_partitions,
    .stream_start = rk_stream_start,
    .replay_start = rk_replay_start_op,
    .replay_next = rk_replay_next_op,
    .replay_stop = rk_replay_stop_op,
    .reap_batch = rk_reap_batch_op,
    .reap_finish = rk_reap_finish_op,
    .reap_end = rk_reap_end_op,
    .share_mine = rk_share_mine_op,
    .share_ready = rk_share_ready_op,
};
