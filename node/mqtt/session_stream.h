/* SPDX-License-Identifier: Apache-2.0 */
/* Persistent sessions' places in the cluster's stream (node/mqtt/session_stream.c;
 * docs/architecture.md, "Offline queues and positions"): the positions a
 * session resumes from on any node, what it was sent, the offline queue
 * that spills to Kafka past --max-queued, replays, and QoS 2 sends that
 * wait for the session store recording them. Only on a backplane with a
 * stream (redis_kafka) and only for persistent sessions: elsewhere every
 * hook below is one NULL test. */
#ifndef SHOAL_NODE_SESSION_STREAM_H
#define SHOAL_NODE_SESSION_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/mqtt/session.h"
#include "node/mqtt/session_codec.h"

typedef struct broker broker;
typedef struct worker worker;
typedef struct conn conn;
typedef struct session_stream session_stream;

/* broker.stream: how far each partition's records have been handed to the
 * sessions of this node. */
typedef struct stream_broker {
    uint32_t n_parts;
    _Atomic int64_t *routed; /* next offset routed (worker partition % workers) */
    int64_t *prev;           /* routed at the last tick (that worker) */
    _Atomic int64_t *safe;   /* routed at the tick before: every delivery below it has reached its session */
    /* Per worker (w * n_parts + p), at its last tick: the lowest offset of
     * an unfinished QoS 1/2 shared copy of its connections' sessions,
     * INT64_MAX none (node/mqtt/share.c, share_tick). */
    _Atomic int64_t *share_low;
} stream_broker;

void stream_broker_init(broker *b);
void stream_broker_free(broker *b);
/* IN_REMOTE / IN_POSITION on the partition's worker: records below `next`
 * are routed. */
void stream_routed(worker *w, int32_t part, int64_t next);
/* The backplane's remote_position hook (its thread). */
void stream_position_hook(void *node, int32_t part, int64_t next);
/* Once a second on each worker. */
void stream_tick(worker *w);

/* Hooks in session.c (owner's thread). Each is a no-op for a session
 * without stream state. */
/* Is s fed by the live stream (not spilled, no replay running or due)?
 * True for a session without stream state. */
bool stream_live(const session *s);
/* A delivery is about to be handled: true when the stream took it (held
 * behind a replay, dropped as covered by one, or spilled). */
bool stream_intercept(worker *w, session *s, delivery *d);
/* The queue is full: true when the delivery was spilled to Kafka (its
 * position kept) instead of being dropped. Consumes d->m when true. */
bool stream_spill(worker *w, session *s, delivery *d);
/* Could d, queued, be spilled instead (a QoS 1/2 record Kafka keeps, no
 * replay running)? The queue makes room so for a retained copy sent at
 * SUBSCRIBE, which nothing brings back. */
bool stream_can_spill(const session *s, const delivery *d);
/* A QoS 1/2 delivery left the queue for the client (or for good). */
void stream_sent(worker *w, session *s, const delivery *d);
/* send_inflight made f: true when its PUBLISH waits for a store (QoS 2). */
bool stream_hold_publish(worker *w, session *s, inflight *f);
/* PUBREC received for f: true when its PUBREL waits for a store. */
bool stream_hold_release(worker *w, session *s, inflight *f);
/* An acknowledgement moved the session's position. */
void stream_acked(worker *w, session *s);
/* After the queue was pumped: start or go on with a replay. */
void stream_pumped(worker *w, session *s);
void stream_reset(broker *b, session *s);
void stream_free(broker *b, session *s);

/* From node/mqtt/session_sync.c: fill st's stream fields (allocated; release
 * with stream_encoded) and return the store's number. */
uint32_t stream_encode(worker *w, session *s, sc_state *st);
void stream_encoded(sc_state *st);
/* The store numbered seq is durable: send what waited for it. */
void stream_stored(worker *w, session *s, uint32_t seq);
/* The session was built from a stored state another node wrote. */
void stream_restore(worker *w, session *s, const sc_state *st);
/* The client went away (session_detach): a running replay stops. */
void stream_detached(worker *w, session *s);

#endif
