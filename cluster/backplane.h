/* SPDX-License-Identifier: Apache-2.0 */
/* The backplane: everything a node shares with the rest of the cluster,
 * behind one interface. Two implementations: `local` (in-process, the
 * embedded default) and `redis_kafka` (retained snapshot and membership in
 * Redis; messages on Kafka). The interface holds only what a node calls;
 * tests/unit/cluster/backplane_contract.h checks both implementations
 * against the rules below.
 *
 * Rules for every asynchronous call:
 *  - the callback runs exactly once, on the event_base of the worker that
 *    made the call, with a status, shutdown included (BP_ECLOSED). It may
 *    run before the call returns (the local backplane always does), so a
 *    caller finishes its own bookkeeping before calling;
 *  - results passed to a callback are borrowed for its duration;
 *  - `arg` should carry an id that the caller looks up again, never a raw
 *    pointer to an object that may be freed meanwhile.
 * node/ includes this header only; hiredis and librdkafka never leak here. */
#ifndef SHOAL_CLUSTER_BACKPLANE_H
#define SHOAL_CLUSTER_BACKPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef enum bp_status {
    BP_OK = 0,
    BP_ECLOSED = -1,      /* backplane closed or shutting down */
    BP_EUNAVAILABLE = -2, /* backend unreachable: nothing durable was written */
    BP_ESTALE = -3,       /* fenced: a newer claim of the session exists, nothing was written */
} bp_status;

const char *bp_status_name(bp_status st);

/* One application message as it crosses the backplane (borrowed). */
typedef struct bp_message {
    const uint8_t *topic;
    uint32_t topic_len;
    const uint8_t *payload;
    uint32_t payload_len;
    const uint8_t *props; /* pre-encoded MQTT 5 properties to forward */
    uint32_t props_len;
    /* The id of the client that published it, so that No Local (MQTT 5
     * §3.8.3.1) holds on every node. NULL/0 when no client connection
     * published it: internal messages, and wills, which the server
     * publishes after that connection is gone (docs/architecture.md). */
    const uint8_t *client_id;
    uint16_t client_id_len;
    uint64_t expiry_at_unix_ms; /* 0 = never */
    uint8_t qos;
    bool retain;
    /* A change of the retained index only, never delivered to subscribers:
     * an admin delete goes through the stream so that every node and the
     * snapshot see it (docs/architecture.md, "Retained messages"). */
    bool retain_only;
    /* Where the record sits in the stream (remote messages and replays):
     * partition -1 when the backplane has no stream (local). own: the
     * record was produced by this node (replays only; the live stream
     * skips this node's own records). */
    bool own;
    const uint8_t *origin; /* replays: the producing node's id */
    uint8_t origin_len;
    int32_t partition;
    int64_t offset;
    /* The record's time, Unix ms: set by the publisher (0 = now), read
     * back alike by every node (shared groups choose by it). */
    int64_t timestamp_ms;
} bp_message;

typedef struct bp_node_info {
    const char *node_id;
    const char *address;
} bp_node_info;

typedef struct bp_share_node {
    const char *id; /* node id; the array is sorted by it */
    uint32_t members;
} bp_share_node;

/* A shared group's node that died while chosen for records not finished
 * (bp_hooks.share_dead). Records with a time before `at` were chosen over
 * `comp` (with the dead node); those it chose for the dead node go to the
 * pick over `comp` without it. */
typedef struct bp_share_dead {
    const uint8_t *key; /* "group/filter" */
    size_t key_len;
    const char *dead;
    int64_t at;
    const bp_share_node *comp;
    size_t n;
    const int64_t *from; /* per partition; -1: nothing */
    uint32_t n_parts;
} bp_share_dead;

/* Hooks the node gives the backplane at start. They run on the
 * backplane's own thread: the node copies what it needs and hands the work
 * to a worker. */
typedef struct bp_hooks {
    /* A message from another node (or the backplane itself, e.g. the
     * cluster member list) to deliver locally. Messages with the same
     * `shard` must be delivered in the order given (per-topic order). */
    void (*remote_message)(void *node, const bp_message *m, unsigned shard);
    /* Apply a retained update (m->retain; an empty payload deletes the
     * topic) to the node's retained index now, on the calling thread (the
     * node locks). A backplane whose retained_from_stream is true calls it
     * for every retained record in stream order, the node's own included,
     * while it loads its snapshot and catches up, and for its own retained
     * messages (the member list); remote_message then only delivers. */
    void (*retained)(void *node, const bp_message *m);
    /* Readiness changed (backend reachable or not). */
    void (*ready_changed)(void *node, bool ready);
    /* A QoS 0 message bp_publish dropped instead of passing it on (the
     * backbone is down or its queue is full). Runs on the calling worker,
     * inside bp_publish; may be NULL. */
    void (*qos0_dropped)(void *node, int worker);
    /* Another node claimed a client id this node owned (bp_session_claim
     * there): new_epoch is the claim's. The node closes that connection
     * (MQTT 5 0x8E), releases the final state with its own epoch and drops
     * the session. Best effort (Redis pub/sub): the new owner re-notifies
     * while it waits, so the hook may run more than once for one claim, and
     * for a session this node no longer has. May be NULL. */
    void (*session_revoked)(void *node, const char *client_id, uint64_t new_epoch);
    /* The live stream passed a record it does not hand over (this node's
     * own, a canary, one it cannot read): partition's next offset is now
     * `next`. In order with remote_message for that shard (the partition).
     * May be NULL. */
    void (*remote_position)(void *node, int32_t partition, int64_t next);
    /* Is the node behind on the live stream (a worker's inbox or an online
     * session's queue past its mark)? The backplane thread asks before it
     * hands over each record, and every few ms while the answer is yes; it
     * hands over nothing meanwhile, and pauses the stream's partitions
     * when it lasts (docs/architecture.md, "Cross-node back-pressure").
     * Backplane thread; must be cheap. May be NULL. */
    bool (*stream_behind)(void *node);
    /* The backend may have lost this node's session records or missed its
     * writes: Redis answers again after an outage, a heartbeat found this
     * node's id claim gone (Redis lost its data), or renewed it after a
     * whole lease without (cluster/lease.h: other nodes saw this one dead and
     * may have claimed its sessions). The node stores
     * every session it owns again, fenced (a session claimed elsewhere
     * meanwhile is closed there). May be NULL. */
    void (*sessions_reassert)(void *node);
    /* The membership lease ran to its fence point (cluster/lease.h)
     * without a renewal Redis acknowledged: other nodes will soon see this
     * one dead and may claim its client ids. The node closes every client
     * connection now (invariant 3) and refuses CONNECT while
     * bp_is_fenced. On the backplane's thread; may be NULL. */
    void (*fenced)(void *node);
    /* This node's shared groups: call emit once per group with its
     * "group/filter" key and local member count. On the backplane's thread,
     * once per membership refresh. May be NULL. */
    void (*share_groups)(void *node, void (*emit)(void *ctx, const uint8_t *key, size_t len, uint32_t members),
                         void *ctx);
    /* The lowest offset, per partition, of a QoS 1/2 shared copy this node
     * took and has not finished (pos[p] = INT64_MAX: none), written with
     * each refresh so that survivors replay from it if this node dies. On
     * the backplane's thread. May be NULL. */
    void (*share_low)(void *node, int64_t *pos, uint32_t n_parts);
    /* A node of a group this node has members in died: replay the stream
     * for the group from the dead node's positions and deliver what the
     * rule without it gives this node (docs/architecture.md, "Shared
     * subscriptions across nodes"). Once per (group, dead node); borrowed
     * for the call; on the backplane's thread. May be NULL. */
    void (*share_dead)(void *node, const bp_share_dead *d);
    void *node;
} bp_hooks;

typedef struct bp_config {
    const char *node_id;
    const char *address;        /* host:port advertised to other nodes */
    const char *redis_url;      /* NULL: local backplane */
    const char *redis_tls_ca;   /* rediss://: CA bundle, NULL = system store */
    const char *redis_tls_cert; /* rediss://: client certificate, may be NULL */
    const char *redis_tls_key;
    const char *kafka_brokers;
    const char *kafka_topic_prefix;
    int kafka_partitions;
    int kafka_replication;
    const char *kafka_acks;
    int kafka_linger_ms; /* producer batching delay */
    /* Kafka TLS and SASL (cluster/rk_ksec.h): NULL protocol = plaintext.
     * The password is read from its file at open, never passed here. */
    const char *kafka_security_protocol; /* plaintext, ssl, sasl_plaintext, sasl_ssl */
    const char *kafka_tls_ca;            /* CA bundle (PEM), NULL = system store */
    const char *kafka_tls_cert;          /* client certificate (PEM), may be NULL */
    const char *kafka_tls_key;
    const char *kafka_sasl_mechanism; /* PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 */
    const char *kafka_sasl_username;
    const char *kafka_sasl_password_file;
    int heartbeat_ms;
    int lease_ms; /* the membership lease (cluster/lease.h); 0 = 3 heartbeats */
} bp_config;

typedef struct backplane backplane;

typedef void (*bp_done_cb)(bp_status st, void *arg);
typedef void (*bp_nodes_cb)(bp_status st, const bp_node_info *nodes, size_t n, void *arg);

/* Create the backplane chosen by cfg (local when redis_url and
 * kafka_brokers are NULL). Returns NULL and logs why on failure; with
 * redis_kafka that includes another running node holding cfg->node_id. */
backplane *bp_open(const bp_config *cfg, const bp_hooks *hooks);

/* Attach a worker's loop; calls from that worker complete on it. */
int bp_attach(backplane *bp, int worker, struct event_base *base);

/* Stop: pending operations complete with BP_ECLOSED, and so does every
 * call made after. Then free (bp_free closes first if needed). */
void bp_close(backplane *bp);
void bp_free(backplane *bp);

const char *bp_kind(const backplane *bp);

/* Figures for metrics, read without locks (each field is consistent on its
 * own). Latency buckets are upper bounds in seconds, BP_LATENCY_BUCKETS of
 * them plus an overflow bucket. */
#define BP_LATENCY_BUCKETS 12
extern const double bp_latency_bounds[BP_LATENCY_BUCKETS];
typedef struct bp_stats {
    bool kafka_up;
    bool redis_up;
    uint64_t produced;
    uint64_t produce_errors;
    uint64_t consumed;
    uint64_t skipped_newer;
    uint64_t bad_records;
    uint64_t redis_errors;
    uint64_t consumer_lag; /* records in the topic not yet consumed here */
    uint64_t produce_latency[BP_LATENCY_BUCKETS + 1];
    double produce_latency_sum;
    uint64_t redis_latency[BP_LATENCY_BUCKETS + 1];
    double redis_latency_sum;
    /* From a record's produce timestamp (another node's clock) to reading it here. */
    uint64_t consume_delay[BP_LATENCY_BUCKETS + 1];
    double consume_delay_sum;
    /* Cross-node back-pressure: partitions paused now, and how many times
     * the stream was paused. */
    uint32_t paused_partitions;
    uint64_t stream_pauses;
    /* The membership lease: lost (fenced) and regained, and fenced now. */
    uint64_t lease_lost;
    uint64_t lease_regained;
    bool fenced;
} bp_stats;
void bp_get_stats(const backplane *bp, bp_stats *out);
bool bp_is_ready(const backplane *bp);
/* Has this node lost its membership lease (cluster/lease.h)? Then it serves
 * no client until Redis renews it (never with the local backplane). */
bool bp_is_fenced(const backplane *bp);
/* Does this backplane know every subscriber of the cluster (the local one:
 * the node is the cluster)? Then a publish that matched nobody here matched
 * nobody at all (MQTT 5 0x10 No matching subscribers). */
bool bp_knows_all_subscribers(const backplane *bp);
/* Does the retained index follow the backplane's stream (the `retained`
 * hook, own records included)? Then a node never stores a retained message
 * it publishes: the stream's order decides, on every node alike. False for
 * the local backplane, where the node stores at once. */
bool bp_retained_from_stream(const backplane *bp);

/* The largest PUBLISH packet (fixed header included) whose message this
 * backplane carries whatever its topic (up to max_topic bytes) and its
 * publisher's client id (up to max_client_id bytes); 0 = no limit. The node
 * caps its Maximum Packet Size to it. */
uint32_t bp_max_publish_size(const backplane *bp, uint32_t max_topic, uint32_t max_client_id);

/* Make a message durable and visible to other nodes. The callback says when
 * it is durable: a QoS 1/2 ack may be sent only after BP_OK. */
void bp_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg);

/* Inside a bp_publish callback on the calling worker: where the record was
 * written (partition, offset); partition -1 when the backplane has no
 * stream or the publish failed. */
void bp_publish_ref(int32_t *partition, int64_t *offset);

/* ---- The stream, for sessions' positions (docs/architecture.md, "Offline
 * queues and positions"). A backplane with a stream (redis_kafka) numbers
 * its records per partition; the local one has none (0 partitions). ---- */
uint32_t bp_stream_partitions(const backplane *bp);
/* The offset the live stream started at in partition p (this node's start). */
int64_t bp_stream_start(const backplane *bp, uint32_t p);

/* A replay: read the stream again from given offsets, up to the live
 * stream's position at the moment the replay starts (`end`, per partition:
 * every record at or past it reaches this node live, after the call).
 * Records come in batches of at most `max_batch`, each partition in order;
 * the next batch is read once the caller asks (bp_replay_next), so a
 * replay holds at most one batch. Replays read one at a time per node, in
 * the order they were started, except that one waiting for its caller to
 * ask while another wants a batch is set aside (it resumes where it
 * stood, with the same `end`): a caller that never asks holds up no other.
 *
 * cb runs on the calling worker once per batch; the last call has `done`
 * set (or st != BP_OK). After bp_replay_stop the last call comes with
 * BP_ECLOSED. Messages and `end` are borrowed for the call. */
typedef struct bp_replay_batch {
    const int64_t *end; /* n_parts entries */
    uint32_t n_parts;
    const bp_message *msgs;
    size_t n;
    bool done;
} bp_replay_batch;
typedef void (*bp_replay_cb)(bp_status st, const bp_replay_batch *b, void *arg);
/* from: n_parts offsets, -1 = nothing to read in that partition. Returns
 * the replay's id (never 0). */
uint64_t bp_replay_start(backplane *bp, int worker, const int64_t *from, uint32_t n_parts, uint32_t max_batch,
                         bp_replay_cb cb, void *arg);
/* The same, reading at least up to `least` (n_parts offsets, -1 = no
 * minimum; NULL = none) where that is past the live stream's position: a
 * session moved from a node whose consumer was ahead of this one's had
 * records up to there (node/mqtt/session_stream.c). `end` is then the
 * higher of the two, and the records between the live position and it
 * also reach this node live later: the caller drops those. A partition
 * whose records end before `least` (past what Kafka holds: no node can
 * have read it) ends there: the last batch's `end` says so. */
uint64_t bp_replay_start_least(backplane *bp, int worker, const int64_t *from, const int64_t *least, uint32_t n_parts,
                               uint32_t max_batch, bp_replay_cb cb, void *arg);
void bp_replay_next(backplane *bp, uint64_t id);
void bp_replay_stop(backplane *bp, uint64_t id);

/* Live nodes of the cluster (the local backplane: this node only). The
 * array and its strings are borrowed for the callback's duration; n is 0
 * unless st is BP_OK. */
void bp_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg);

/* ---- Session records (docs/architecture.md, "Session records in Redis") ----
 *
 * One record per client id, shared by the cluster: the epoch of the latest
 * claim, its owner, and the state blob the owner last stored (opaque here:
 * node/ encodes it). Every claim bumps the epoch; every write after it is
 * fenced by that epoch and by the owner (this node's instance), so a node
 * that lost a client id to a newer claim cannot overwrite its successor's
 * state (BP_ESTALE). client_id is a NUL-terminated MQTT client id.
 * BP_EUNAVAILABLE: the backend did not answer (nothing is known to be
 * written). The writes (store, release, drop) take a NULL callback. */

typedef struct bp_session_rec {
    uint64_t epoch;       /* claim: the new epoch; load: the record's */
    const uint8_t *state; /* the last stored (or released) state; NULL when none */
    uint32_t state_len;
    /* The owner before this claim: "" when there was none or it was this
     * very node instance (nothing to wait for). A restarted node sees its
     * own id here with prev_alive false. */
    const char *prev_owner;
    bool prev_alive; /* that owner's node claim still holds its instance token */
    /* That owner's lease (cluster/lease.h), ms, as it wrote it with its
     * claim: how long its claim may outlive it. 0 = unknown (no previous
     * owner, or it is gone). */
    uint32_t prev_lease_ms;
    bool released; /* that owner stored its final state and let go */
} bp_session_rec;

/* rec is NULL unless st is BP_OK. */
typedef void (*bp_session_cb)(bp_status st, const bp_session_rec *rec, void *arg);

/* Claim client_id for this node: bump the epoch atomically, make this node
 * the owner, clear `released`, remove any expiry (a connected client's
 * session does not expire), and notify the previous owner if it is another
 * node (session_revoked there). clean: delete the stored state in the same
 * step (clean start); the previous owner's release then sets `released`
 * without bringing its state back. */
void bp_session_claim(backplane *bp, int worker, const char *client_id, bool clean, bp_session_cb cb, void *arg);

/* Re-read the record, fenced: BP_ESTALE once a newer claim than epoch
 * exists (epoch 0: no fence). The new owner polls this until `released` or
 * `!prev_alive`. renotify: send the previous owner its revoke again (pub/sub
 * loses messages while a node reconnects). A record that does not exist
 * (expired, dropped) is BP_ESTALE too, or with epoch 0 BP_OK with epoch 0
 * and no state. */
void bp_session_load(backplane *bp, int worker, const char *client_id, uint64_t epoch, bool renotify, bp_session_cb cb,
                     void *arg);

/* Write the state, accepted only while the record's epoch == epoch and this
 * node instance owns it; BP_ESTALE otherwise (close the connection with
 * 0x8E, drop the session locally). ttl_ms: the record expires that long
 * after this write (measured by the backend's clock); 0 = never. */
void bp_session_store(backplane *bp, int worker, const char *client_id, uint64_t epoch, const uint8_t *state,
                      uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg);

/* The previous owner's last word after a revoke: accepted once, only while
 * the record's previous claim is old_epoch (0: whichever claim of this
 * instance is the previous one), was this node instance's and has not been
 * released; sets `released`. state NULL: let go without writing (keep what
 * is stored). ttl_ms (0: leave as is): the record expires that long after,
 * as an offline session's would, unless the new owner connects (its store
 * removes the TTL). BP_ESTALE when refused. */
void bp_session_release(backplane *bp, int worker, const char *client_id, uint64_t old_epoch, const uint8_t *state,
                        uint32_t len, uint64_t ttl_ms, bp_done_cb cb, void *arg);

/* Delete the record, fenced like a store (a clean session that ended, an
 * expired one). Also accepted from the previous owner while it has not
 * released: the claims after it never got the session (they wait for that
 * release), so the record is marked released with no state and expires
 * after a margin instead (a waiting claim goes on with an empty session). */
void bp_session_drop(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg);

/* ---- a dead node's sessions (docs/architecture.md, "Wills and dead nodes") ----
 * One survivor at a time works through the records a dead node instance
 * owned: bp_reap_batch finds such an instance (or continues with the one
 * given) and returns one batch of its records; the node publishes their
 * wills and settles each record with bp_reap_finish; bp_reap_end lets the
 * instance go, or keeps it locked until the next delayed will is due. A
 * backplane without a cluster (local) never finds one. */

typedef struct bp_reap_rec {
    const char *client_id;
    uint64_t epoch;
    const uint8_t *state; /* NULL when none was stored */
    uint32_t state_len;
    int64_t ttl_ms; /* the record's expiry left (the owner stored it offline); -1: none (it was connected) */
} bp_reap_rec;

typedef struct bp_reap_batch {
    const char *instance; /* "token|node id"; NULL: no dead instance to work on */
    uint64_t death_ms;    /* when the instance was first seen dead (the backend's clock, Unix ms) */
    uint64_t now_ms;      /* the backend's clock now */
    uint64_t cursor;      /* pass it to the next bp_reap_batch; 0: this was the last batch */
    const bp_reap_rec *recs;
    size_t n;
} bp_reap_set;

/* b is NULL unless st is BP_OK. */
typedef void (*bp_reap_cb)(bp_status st, const bp_reap_set *b, void *arg);

/* instance NULL: look for a dead instance nobody works on and lock it (the
 * lock expires by itself if this node dies too); else the next batch of the
 * instance from cursor. Only records the instance still owns come back. */
void bp_reap_batch(backplane *bp, int worker, const char *instance, uint64_t cursor, bp_reap_cb cb, void *arg);

/* Settle one record, accepted only while the instance still owns it at
 * epoch (else BP_ESTALE: its client reconnected somewhere). state NULL:
 * delete the record; else write state and mark it done for this instance.
 * ttl_ms: -1 keep the record's expiry, 0 none, else expire that long from
 * now. */
void bp_reap_finish(backplane *bp, int worker, const char *instance, const char *client_id, uint64_t epoch,
                    const uint8_t *state, uint32_t len, int64_t ttl_ms, bp_done_cb cb, void *arg);

/* Done with the instance for now: retry_after_ms 0 forgets it (every record
 * is settled), else the lock holds that long and a survivor scans again. */
void bp_reap_end(backplane *bp, int worker, const char *instance, uint64_t retry_after_ms);

/* ---- Shared subscriptions across nodes (docs/architecture.md, "Shared
 * subscriptions across nodes"). Each node publishes its groups' member
 * counts; every node sees, per group, the live nodes with members. ---- */

/* Should this node deliver the copy of a message that hashes to h for
 * shared group key ("group/filter")? Exactly one node of the group's view
 * answers true (bp_share_pick). Always true for the local backplane; false
 * for a group the view does not know yet (no answer from Redis so far),
 * unless Redis is unreachable. */
bool bp_share_mine(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts);
/* The same with node `except` (NULL: none) left out of the choice: a
 * hand-over from that node goes to another. ts: the record's time, which
 * says which membership was in force. */
bool bp_share_mine_except(backplane *bp, const uint8_t *key, size_t len, uint64_t h, int64_t ts, const char *except);

/* Does this node's view know group key with this node's members in its
 * latest composition (a member's SUBACK waits for it, so the node delivers
 * by the cluster's rule from its first message)? When not, a refresh is
 * asked for at once. True for the local backplane and
 * while Redis is unreachable. Any thread. */
bool bp_share_ready(backplane *bp, const uint8_t *key, size_t len);

/* The node (index into v[0..n), n > 0) that delivers hash h: weighted by
 * member count, so each member has an even share. Pure. */
size_t bp_share_pick(const bp_share_node *v, size_t n, uint64_t h);
uint64_t bp_share_hash(const void *p, size_t len, uint64_t seed);
uint64_t bp_share_mix(uint64_t x);

#endif
