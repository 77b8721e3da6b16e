/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions in the cluster's records (node/mqtt/session_sync.c; issue 17 step 1,
 * docs/architecture.md "Sessions across nodes"): the cluster claim every
 * CONNECT makes before the in-process one, waiting for a previous owner on
 * another node, building the session from the stored state, storing a
 * changed session once per loop turn (fenced by its epoch), and the
 * revokes another node's claim sends. */
#ifndef SHOAL_NODE_SESSION_SYNC_H
#define SHOAL_NODE_SESSION_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/mqtt/trie.h"
#include "proto/mqtt.h"

struct event;
typedef struct broker broker;
typedef struct worker worker;
typedef struct conn conn;
typedef struct session session;
typedef struct inbox_item inbox_item;
typedef struct sync_claim sync_claim;
typedef struct sync_ack sync_ack;

/* Claims of this node not finished yet, by client id, so that a revoke
 * finds every one of them: a claim of ours that was already on its way
 * when a newer claim's revoke arrived, and answers (or finishes waiting)
 * after it, has lost, though no session of ours was there to close yet.
 * Exactly the claims in flight are kept (bounded by the connections in
 * CONNECT), so no flood of revokes for other ids can push one out; a
 * revoke for an id with no claim here is not kept at all. */
#define SYNC_PENDING_BUCKETS 1024

/* broker.sync: pending claims under broker.sess_lock. */
typedef struct sync_broker {
    sync_claim *pending[SYNC_PENDING_BUCKETS];
} sync_broker;

/* A session id and epoch whose record still needs a drop (Redis was
 * unreachable when the session ended). */
typedef struct sync_drop {
    char *client_id;
    uint64_t epoch;
} sync_drop;

/* worker.sync: the worker's thread only. */
typedef struct sync_worker {
    sync_claim *claims; /* cluster claims of this worker's connections, not finished */
    session **dirty;    /* sessions to store at the end of this loop turn (refs held) */
    uint32_t n_dirty, cap_dirty;
    struct event *flush;
    /* Stores and drops the backend did not take (BP_EUNAVAILABLE), tried
     * again after retry_ms, doubling up to a bound while they keep failing. */
    session **retry; /* refs held */
    uint32_t n_retry, cap_retry;
    sync_drop *drops;
    uint32_t n_drops, cap_drops;
    uint32_t retry_ms;
    struct event *retry_timer;
    sync_ack *acks; /* SUBACKs waiting for their session's next store */
} sync_worker;

void sync_worker_init(worker *w);
void sync_worker_free(worker *w);

/* Are sessions kept in the cluster's records? Not on a backplane whose
 * every node is this process (the local one): there the registry already
 * is the one owner table, and a record per client id would only cost
 * memory and time on every connect. Then every sync_ call below is a no-op
 * (sync_claim_start goes straight to connect_claim). */
bool sync_on(const broker *b);

/* CONNECT accepted: claim c->client_id in the cluster, then (on this
 * worker, maybe at once) the in-process claim (connect_claim). */
void sync_claim_start(conn *c);
/* The cluster epoch of c's claim, 0 when it has none. */
uint64_t sync_claim_epoch(const conn *c);
/* Did a revoke newer than c's claim arrive while the claim was on its way
 * (c lost)? Caller holds broker.sess_lock. */
bool sync_claim_revoked_locked(broker *b, conn *c);
/* In connect_finish: the session s is c's. Builds it from the stored state
 * when that is the truth (a previous owner elsewhere, or no session here),
 * and says whether a session is present (MQTT §3.2.2.1.1). Frees c's claim. */
bool sync_claim_finish(worker *w, conn *c, session *s, bool clean);

/* A persistent session on a cluster node gets its SUBACK once the store
 * that records the subscriptions is done (batched per loop turn like every
 * store), and the retained messages the SUBSCRIBE asked for after it.
 * True: deferred (c's input is paused until then: one SUBACK waits per
 * connection); false: send it now. ret/n_ret: the filters to send retained
 * messages for (copied). */
typedef struct sync_retained {
    mqtt_bytes filter;
    sub_opts opts;
} sync_retained;
bool sync_defer_suback(worker *w, conn *c, uint16_t pid, const uint8_t *codes, uint32_t n, const sync_retained *ret,
                       uint32_t n_ret);

/* s's durable state changed: store it at the end of this loop turn. */
void sync_mark_dirty(worker *w, session *s);
/* Wait bound for a previous owner's release: its lease plus a margin
 * (past the lease a silent owner counts as dead, and a live one has
 * fenced itself: docs/architecture.md). The lease is the longer of this
 * node's and prev_lease_ms, the one the previous owner wrote with its
 * claim (0 = unknown). */
uint64_t sync_wait_ms(const broker *b, uint32_t prev_lease_ms);
/* s ended for good (expiry, a clean session's end): drop its record. */
void sync_session_ended(worker *w, session *s);
/* Drops waiting for Redis, per worker: past this a record keeps its
 * claim until a later claim of the id replaces it (logged). */
#define SYNC_DROPS_MAX 65536u
/* A record drop the backend did not take (BP_EUNAVAILABLE): tried again
 * with the worker's next retry, while fewer than SYNC_DROPS_MAX wait. */
void sync_drop_later(worker *w, const char *client_id, uint64_t epoch);

/* bp_hooks.session_revoked (the backplane's thread). */
void sync_revoked_hook(void *node, const char *client_id, uint64_t new_epoch);
/* IN_REVOKE on a worker. */
void sync_handle_revoke(worker *w, inbox_item *it);
/* bp_hooks.sessions_reassert (the backplane's thread): IN_SYNC to every
 * worker. */
void sync_reassert_hook(void *node);
/* bp_hooks.fenced (the backplane's thread): IN_SYNC SYNC_FENCE to every
 * worker. */
void sync_fence_hook(void *node);
/* IN_SYNC on a worker: store every session it owns again, fenced
 * (SYNC_REASSERT), or close every connection (SYNC_FENCE). */
enum { SYNC_REASSERT = 1, SYNC_FENCE = 2 };
void sync_handle_sessions(worker *w, inbox_item *it);

#endif
