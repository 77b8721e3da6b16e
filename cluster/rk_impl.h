/* SPDX-License-Identifier: Apache-2.0 */
/* The redis_kafka backplane's shared state. Only cluster/rk_*.c and
 * cluster/redis_kafka.c include this; hiredis and librdkafka stay here.
 *
 * Threads: one backplane thread runs its own event_base with the hiredis
 * connection and the librdkafka queue wake-ups (rd_kafka_queue_io_event_enable),
 * so no thread ever blocks polling. Workers call rd_kafka_producev directly
 * (it is thread-safe); delivery reports arrive on the backplane thread and
 * are posted back to the calling worker's loop with event_base_once. Redis
 * commands from workers are handed to the backplane thread the same way. */
#ifndef SHOAL_CLUSTER_RK_IMPL_H
#define SHOAL_CLUSTER_RK_IMPL_H

#include <hiredis/async.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cluster/backplane_impl.h"
#include "cluster/rk_clock.h"
#include "cluster/rk_ksec.h"
#include "cluster/rk_retained.h"

/* hash: node id -> its lease (ms, cluster/lease.h), the TTL it gives its
 * claim, written with every renewal. Leases may differ between nodes: other
 * nodes read it to wait for a node's claim as long as its own lease. */
#define LEASES_KEY "shoal:leases"

typedef struct rk {
    backplane *bp;
    pthread_t thread;
    pthread_t probe_thread;
    struct event_base *base;
    struct event *keepalive; /* keeps the loop alive while idle */
    _Atomic bool stopping;

    /* Kafka */
    rd_kafka_t *producer;
    rd_kafka_topic_t *prod_topic; /* held so the producer keeps the topic's metadata from the start */
    rd_kafka_t *consumer;
    char topic[256];
    int partitions;
    int prod_pipe[2];
    int cons_pipe[2];
    struct event *prod_ev;
    struct event *cons_ev;
    _Atomic bool kafka_up;
    /* The idempotent producer failed fatally: it refuses every record until
     * the node restarts, so the node stays not ready (never ready and
     * refusing). */
    _Atomic bool kafka_fatal;
    /* The brokers refused this node's TLS handshake or SASL credentials
     * (rk_ksec.h): logged once per change; at start the node gives up
     * rather than retry what will fail again. */
    _Atomic bool kafka_auth_failed;
    rk_ksec ksec; /* TLS and SASL settings, the SASL password */
    /* Delivery reports that failed in a row; KAFKA_MAX_DELIVERY_FAILURES of
     * them mark Kafka down until the probe finds the topic writable again. */
    _Atomic uint32_t delivery_failures;
    /* The producer's queue refused a record (QUEUE_FULL): logged once per
     * change, QoS 0 dropped and counted while it lasts. */
    _Atomic bool queue_full;
    /* Read from the topic at start (DescribeConfigs) and by the probe while
     * Kafka is down: the largest record it takes and the in-sync replicas
     * an acks=all write needs. */
    uint32_t max_record; /* key + value bytes of one record, framing subtracted */
    _Atomic int min_isr;
    int64_t *positions; /* next offset per partition, for session resume */
    /* The topic's retention.ms and segment.ms (DescribeConfigs at start):
     * a record may stay readable for both, and a retained tombstone must
     * outlive any set a replay can still read (rk_sweep.c). -1 = unknown or
     * unlimited. */
    int64_t retention_ms, segment_ms;
    /* QoS 1/2 retained publishes whose delivery report came before this
     * node consumed the record: answered once it has (read your writes). */
    struct rk_parked *parked_head, *parked_tail;
    int64_t *start; /* where the live stream started, per partition */
    /* Past this node's last record per partition whose delivery report
     * came (backplane thread): a replay's end covers records this node
     * routed at their report before the consumer read them. */
    int64_t *own_high;
    struct rk_replay *replay; /* rk_replay.c */
    /* Cross-node back-pressure (backplane thread; docs/architecture.md):
     * the node said it is behind (bp_hooks.stream_behind), so nothing is
     * handed over; past HOLD_PAUSE_US the partitions are paused too. */
    struct event *hold_ev; /* re-asks every HOLD_CHECK_US while held */
    bool held;
    uint64_t held_since_us;
    rd_kafka_topic_partition_list_t *paused; /* NULL while not paused */
    uint64_t last_resume_us;                 /* 0: no pause period being logged */
    uint64_t period_pauses, period_paused_us;
    _Atomic uint32_t paused_parts;
    _Atomic uint64_t pauses;
    _Atomic uint64_t produced, produce_errors, consumed, skipped_newer, bad_records, redis_errors;
    bp_hist produce_latency;
    bp_hist redis_latency;
    bp_hist consume_delay;

    /* Redis */
    char redis_host[256];
    int redis_port;
    char redis_password[256];
    int redis_db;
    bool redis_tls;     /* rediss:// */
    struct rk_tls *tls; /* the bridge hiredis connects through, with rediss:// */
    redisAsyncContext *ac;
    struct event *redis_retry;
    struct event *heartbeat;
    _Atomic bool redis_up;
    /* When the outstanding liveness PING was sent (mono us, 0 = none): a
     * Redis that holds the connection but never answers is cut off after
     * REDIS_TIMEOUT_MS. Backplane thread only. */
    uint64_t ping_sent_us;

    /* Readiness: computed under ready_lock from any thread (delivery
     * reports, the probe thread, Redis callbacks, the 1 s tick). */
    pthread_mutex_t ready_lock;
    bool was_ready;
    /* Membership: "token|address", the value of this node's claim key; the
     * token is random per process, so a restart is a different claimant. */
    char claim[340];
    bool claimed; /* released on stop */
    bool id_lost; /* a heartbeat found the claim held by another instance */
    /* Fenced (cluster/lease.h): the lease ran to its fence point without a
     * renewal; clients closed and refused until one (backplane thread). */
    bool lease_lost;
    struct event *lease_timer; /* fires at the fence point */
    _Atomic uint64_t lease_lost_n, lease_regained_n;
    uint64_t hb_sent_us;    /* the heartbeat on its way, 0 = none */
    unsigned hb_skipped;    /* beats that found it still out (lease_after_reply) */
    uint64_t lease_from_us; /* when the last renewal that Redis confirmed was sent */
    struct rk_sess *sess;   /* rk_session.c: the revoke subscriber */
    struct rk_sweep *sweep; /* rk_sweep.c: expired retained records leave Redis */
    struct rk_ret *ret;     /* rk_retained.c: the snapshot follows the stream */
    struct rk_share *share; /* rk_share.c: shared-group membership across nodes */
    rk_clocks clocks;       /* rk_clock.c: older writers' clock offsets, for message expiry */
    rk_refclock refclock;   /* rk_clock.c: this node's offset to the cluster clock (Redis's) */
} rk;

/* rk_kafka.c: a decoded record's expiry deadline moved onto this node's
 * wall clock (rk_clock.h): from the cluster clock (record version 3 on, own
 * records included), else by the writer's estimated offset (own records
 * and writers never read live keep theirs). */
void rk_expiry_localize(rk *r, bp_message *m, const uint8_t *origin, size_t olen, bool own, int version);
/* The cluster clock's time now (Unix ms on Redis's clock), and this node's
 * wall clock read at the same moment; before the node measured its offset
 * (it has not reached Redis since it started) the wall clock stands in for
 * both. */
void rk_cluster_now(rk *r, uint64_t *cluster_ms, uint64_t *unix_ms);
/* rk_redis.c: a round trip that read Redis's TIME (seconds and
 * microseconds as Redis answers them) is a sample of the cluster clock. */
void rk_refclock_reply(rk *r, uint64_t sent_us, const char *sec, const char *usec);

/* rk_reap.c: a dead node instance's session records (bp_reap_*) */
void rk_reap_batch(rk *r, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg);
void rk_reap_finish(rk *r, int worker, const char *instance, const char *client_id, uint64_t epoch,
                    const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg);
void rk_reap_end(rk *r, int worker, const char *instance, uint64_t retry_after_ms);

/* rk_kafka.c */
int rk_kafka_start(rk *r);   /* before the thread starts; may block briefly */
void rk_kafka_attach(rk *r); /* on the backplane thread */
void rk_kafka_stop(rk *r);
void rk_kafka_publish(rk *r, int worker, const bp_message *m, bp_done_cb cb, void *arg);
/* The largest PUBLISH packet whose message always fits one record. */
uint32_t rk_kafka_max_publish(const rk *r, uint32_t max_topic, uint32_t max_client_id);
void *rk_probe_main(void *arg); /* the probe thread: Kafka health once a second */

/* Resolve each partition's end, assign from the retained snapshot's
 * watermarks and replay up to the end (retained updates only) before the
 * node is ready. After rk_redis_load_retained. */
int rk_kafka_assign(rk *r);
/* Once a second on the backplane thread: answer parked publishes that
 * waited too long for the consumer. */
void rk_kafka_tick(rk *r);
/* Hand every record in the consumer's queue over (the wake-up pipe's
 * callback; rk_hold.c calls it when the node caught up). */
void rk_kafka_drain(rk *r);
/* rk_hold.c: cross-node back-pressure. check: is the node behind (then
 * start holding, and hand nothing over)? tick: once a second, the log line
 * that ends a pause period. stop: resume and free (before the consumer
 * closes). */
bool rk_hold_check(rk *r);
void rk_hold_tick(rk *r);
void rk_hold_stop(rk *r);
/* rk_replay.c: sessions read the stream again (bp_replay_*). */
int rk_replay_start_consumer(rk *r); /* before the thread starts */
void rk_replay_attach(rk *r);        /* on the backplane thread */
void rk_replay_stop_all(rk *r);
void rk_replay_start(rk *r, int worker, uint64_t id, const int64_t *from, const int64_t *least, uint32_t n_parts,
                     uint32_t max_batch, bp_replay_cb cb, void *arg);
void rk_replay_next(rk *r, uint64_t id);
void rk_replay_cancel(rk *r, uint64_t id);

/* rk_redis.c */
int rk_redis_parse_url(rk *r, const char *url);
int rk_redis_load_retained(rk *r); /* before the thread starts, after rk_kafka_start */
void rk_redis_attach(rk *r);
void rk_redis_stop(rk *r);
/* Once a second on the backplane thread: send a PING, cut off a Redis that
 * left the previous one unanswered for REDIS_TIMEOUT_MS. */
void rk_redis_watchdog(rk *r);
void rk_redis_nodes(rk *r, int worker, bp_nodes_cb cb, void *arg);
/* Claim cfg->node_id for this process (docs/architecture.md, "Membership"):
 * waits up to one claim TTL for an earlier instance's claim to expire, and
 * fails (logged) while another running node holds it. Before the thread
 * starts; rk_redis_stop releases the claim. */
int rk_redis_claim_node(rk *r);

/* rk_session.c: session records (bp_session_* in backplane.h). */
void rk_session_attach(rk *r); /* on the backplane thread, from rk_redis_attach */
void rk_session_stop(rk *r);   /* from rk_redis_stop */
void rk_session_claim(rk *r, int worker, const char *client_id, bool clean, bp_session_cb cb, void *arg);
void rk_session_load(rk *r, int worker, const char *client_id, uint64_t epoch, bool renotify, bp_session_cb cb,
                     void *arg);
void rk_session_store(rk *r, int worker, const char *client_id, uint64_t epoch, const uint8_t *state, uint32_t len,
                      uint64_t ttl_ms, bp_done_cb cb, void *arg);
void rk_session_release(rk *r, int worker, const char *client_id, uint64_t old_epoch, const uint8_t *state,
                        uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg);
void rk_session_drop(rk *r, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg);

/* rk_sweep.c: every few seconds, delete expired records from the retained
 * snapshot (by Redis's clock, one bounded batch per run). */
void rk_sweep_attach(rk *r); /* on the backplane thread, from rk_redis_attach */
void rk_sweep_stop(rk *r);   /* from rk_redis_stop, before the context is freed */

/* rk_share.c: shared-group membership in Redis, refreshed every heartbeat. */
void rk_share_attach(rk *r); /* on the backplane thread, from rk_redis_attach */
void rk_share_stop(rk *r);   /* from rk_redis_stop */
void rk_share_free(rk *r);   /* from rk_release: workers may read the view until then */
bool rk_share_mine(rk *r, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except);
bool rk_share_ready(rk *r, const uint8_t *key, size_t len);

/* rk_retained.c: the snapshot follows the stream. */
void rk_retained_init(rk *r); /* once the partitions are known */
void rk_retained_free(rk *r);
int rk_retained_load(rk *r, struct redisContext *c);
/* Where partition's consumption starts, given its end now: the snapshot's
 * watermark when it is older (records before `end` are then replayed:
 * retained updates applied, nothing delivered). */
int64_t rk_retained_resume_at(rk *r, int partition, int64_t end);
bool rk_retained_replaying(const rk *r, int partition, int64_t offset);
void rk_retained_caught_up(rk *r); /* frees what only the replay needed */
/* A retained record consumed (own records included), in partition order:
 * apply it to the index and write it to the snapshot. */
void rk_retained_consumed(rk *r, const bp_message *m, const uint8_t *rec, size_t rec_len, int partition,
                          int64_t offset);
void rk_retained_tick(rk *r); /* once a second on the backplane thread */

/* redis_kafka.c */
void rk_update_ready(rk *r);
/* Run cb(st, arg) on the worker's loop. */
void rk_complete(rk *r, int worker, bp_done_cb cb, void *arg, bp_status st);
uint64_t rk_unix_ms(void);
uint64_t rk_mono_us(void);

#endif
