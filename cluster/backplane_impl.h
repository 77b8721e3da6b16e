/* SPDX-License-Identifier: Apache-2.0 */
/* The operations table each backplane implementation fills in. */
#ifndef SHOAL_CLUSTER_BACKPLANE_IMPL_H
#define SHOAL_CLUSTER_BACKPLANE_IMPL_H

#include <stdatomic.h>

#include "cluster/backplane.h"

#define BP_MAX_WORKERS 64

/* Every entry is required: bp_open refuses a table with a hole (and logs
 * which), so a forgotten operation is a start-up error, not a NULL call on
 * the first request that needs it. */
typedef struct bp_ops {
    const char *kind;
    /* Every subscriber in the cluster is in this process (the local
     * backplane), so "no matching subscribers" (0x10) can be told. */
    bool knows_all_subscribers;
    /* The retained index follows the stream (bp_retained_from_stream). */
    bool retained_from_stream;
    /* Fill bp->impl from bp->cfg and bp->hooks; on failure log why, free
     * what it made and return -1 (bp itself is the caller's). */
    int (*open)(backplane *bp);
    void (*close)(backplane *bp);
    void (*free)(backplane *bp); /* bp->impl only; after close */
    void (*publish)(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg);
    void (*nodes)(backplane *bp, int worker, bp_nodes_cb cb, void *arg);
    void (*stats)(const backplane *bp, bp_stats *out);
    /* Session records: see bp_session_* in backplane.h. */
    void (*session_claim)(backplane *bp, int worker, const char *client_id, bool clean, bp_session_cb cb, void *arg);
    void (*session_load)(backplane *bp, int worker, const char *client_id, uint64_t epoch, bool renotify,
                         bp_session_cb cb, void *arg);
    void (*session_store)(backplane *bp, int worker, const char *client_id, uint64_t epoch, const uint8_t *state,
                          uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg);
    void (*session_release)(backplane *bp, int worker, const char *client_id, uint64_t old_epoch, const uint8_t *state,
                            uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg);
    void (*session_drop)(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg);
    /* The stream (see bp_stream_partitions, bp_replay_start). */
    uint32_t (*stream_partitions)(const backplane *bp);
    int64_t (*stream_start)(const backplane *bp, uint32_t p);
    void (*replay_start)(backplane *bp, int worker, uint64_t id, const int64_t *from, const int64_t *least,
                         uint32_t n_parts, uint32_t max_batch, bp_replay_cb cb, void *arg);
    void (*replay_next)(backplane *bp, uint64_t id);
    void (*replay_stop)(backplane *bp, uint64_t id);
    /* A dead node's sessions (bp_reap_*): a backplane without a cluster
     * finds none. */
    void (*reap_batch)(backplane *bp, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg);
    void (*reap_finish)(backplane *bp, int worker, const char *instance, const char *client_id, uint64_t epoch,
                        const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg);
    void (*reap_end)(backplane *bp, int worker, const char *instance, uint64_t retry_after_ms);
    /* See bp_max_publish_size; 0 = no limit. */
    uint32_t (*max_publish)(const backplane *bp, uint32_t max_topic, uint32_t max_client_id);
    /* bp_share_mine and bp_share_mine_except. */
    bool (*share_mine)(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except);
    /* Optional: bp_share_ready; NULL = always ready. */
    bool (*share_ready)(backplane *bp, const uint8_t *key, size_t len);
} bp_ops;

/* The name of the first missing entry of ops, or NULL when it is complete. */
const char *bp_ops_missing(const bp_ops *ops);

/* bp_open with a given implementation (tests give it their own tables). */
backplane *bp_open_ops(const bp_ops *ops, const bp_config *cfg, const bp_hooks *hooks);

extern const bp_ops bp_local_ops;
extern const bp_ops bp_rk_ops;

/* A latency histogram updated from any thread. */
typedef struct bp_hist {
    _Atomic uint64_t counts[BP_LATENCY_BUCKETS + 1];
    _Atomic uint64_t sum_us;
} bp_hist;
void bp_hist_observe(bp_hist *h, uint64_t us);
void bp_hist_read(bp_hist *h, uint64_t *counts, double *sum_s);

struct backplane {
    const bp_ops *ops;
    bp_config cfg;
    bp_hooks hooks;
    struct event_base *bases[BP_MAX_WORKERS];
    _Atomic bool closed; /* set by bp_close, read by workers */
    _Atomic bool ready;  /* written by the backplane thread, read by workers */
    _Atomic bool fenced; /* the membership lease is lost (redis_kafka only) */
    _Atomic uint64_t replay_ids;
    void *impl;
};

/* Run a completion on the worker's loop on its next turn, so callbacks
 * never re-enter the caller. */
void bp_defer_done(backplane *bp, int worker, bp_done_cb cb, void *arg, bp_status st);
/* The same for a publish, with where the record was written (bp_publish_ref). */
void bp_defer_done_ref(backplane *bp, int worker, bp_done_cb cb, void *arg, bp_status st, int32_t partition,
                       int64_t offset);

#endif
