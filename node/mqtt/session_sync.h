/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions in the cluster's records (node/session_sync.c; issue 17 step 1,
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

struct event;
typedef struct broker broker;
typedef struct worker worker;
typedef struct conn conn;
typedef struct session session;
typedef struct inbox_item inbox_item;
typedef struct sync_claim sync_claim;

/* Revokes this node heard of, by client id hash: a claim of ours that was
 * already on its way when a newer claim's revoke arrived, and answers (or
 * finishes waiting) after it, has lost, though no session of ours was there
 * to close yet. Only claims started before the revoke count: epochs start
 * again at 1 once a record is dropped, so a later claim's lower epoch says
 * nothing. Direct mapped: an overwritten slot only leaves the case to the
 * session's own check (its first store is fenced). */
#define SYNC_REVOKE_SLOTS 256
typedef struct sync_revoke {
    uint64_t hash;
    uint64_t epoch;
    uint64_t seq; /* sync_broker.seq when it arrived */
} sync_revoke;

/* broker.sync: revokes under broker.sess_lock. */
typedef struct sync_broker {
    sync_revoke revokes[SYNC_REVOKE_SLOTS];
    _Atomic uint64_t seq; /* bumped by every revoke */
} sync_broker;

/* worker.sync: the worker's thread only. */
typedef struct sync_worker {
    sync_claim *claims; /* cluster claims of this worker's connections, not finished */
    session **dirty;    /* sessions to store at the end of this loop turn (refs held) */
    uint32_t n_dirty, cap_dirty;
    struct event *flush;
    session **retry; /* stores refused (backend down) that something waits for (refs held) */
    uint32_t n_retry, cap_retry;
} sync_worker;

void sync_worker_init(worker *w);
void sync_worker_free(worker *w);
/* Once a second: store again the sessions whose store was refused while
 * the backend was down and that hold a QoS 2 message for it. */
void sync_retry_tick(worker *w);

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

/* s's durable state changed: store it at the end of this loop turn. */
void sync_mark_dirty(worker *w, session *s);
/* s ended for good (expiry, a clean session's end): drop its record. */
void sync_session_ended(worker *w, session *s);

/* bp_hooks.session_revoked (the backplane's thread). */
void sync_revoked_hook(void *node, const char *client_id, uint64_t new_epoch);
/* IN_REVOKE on a worker. */
void sync_handle_revoke(worker *w, inbox_item *it);

#endif
