/* SPDX-License-Identifier: Apache-2.0 */
/* Shared subscriptions across nodes (node/mqtt/share.c; docs/
 * architecture.md, "Shared subscriptions across nodes"): the key a message
 * is placed by, the gate route.c matches with, and the hand-overs that keep
 * a group's QoS 1/2 messages when a member or a node's last member leaves. */
#ifndef SHOAL_NODE_SHARE_H
#define SHOAL_NODE_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/mqtt/msg.h"

typedef struct broker broker;
typedef struct worker worker;
typedef struct session session;

/* The gate's state for one match (trie_share_gate_fn share_gate_fn). */
typedef struct share_gate {
    broker *b;
    const msg *m;
    uint64_t base; /* share_base of m, computed at the first group (have_base) */
    bool have_base;
    int64_t ts; /* its time in the stream (msg.ts) */
    /* Hand-overs: only this group passes; `except` (a node id, may be
     * NULL) is left out of the choice, and with local set this node takes
     * it without asking the cluster. */
    const uint8_t *only_key;
    size_t only_len;
    const char *except;
    bool local;
} share_gate;

/* The message's key under --shared-strategy: every node computes the same
 * one from the same record. */
uint64_t share_base(const broker *b, const msg *m);
bool share_gate_fn(void *arg, const uint8_t *key, size_t key_len, uint64_t *pick);

/* Groups this node was chosen for but no longer has a member of (trie
 * ghosts): found under the index's read lock, forwarded after it. */
#define SHARE_MAX_ORPHANS 8
typedef struct share_orphans {
    uint8_t *key[SHARE_MAX_ORPHANS];
    size_t len[SHARE_MAX_ORPHANS];
    size_t n;
} share_orphans;
void share_find_orphans(broker *b, const msg *m, share_gate *g, share_orphans *o);
/* share_base of g->m, computed once: a message that matches no group pays
 * nothing for it. */
uint64_t share_gate_base(share_gate *g);
void share_forward_orphans(worker *w, msg *m, share_orphans *o);

/* A member that ends: its unacknowledged QoS 1/2 messages of shared
 * subscriptions go to another member (collect before the session ends,
 * send after it left the index). */
typedef struct share_moved {
    msg **m;
    uint8_t **key;
    size_t *len;
    size_t n, cap;
} share_moved;
void share_collect(session *s, share_moved *mv);
void share_send(worker *w, share_moved *mv);

/* A group's copy that reached a member after it ended (posted to its
 * worker meanwhile): handed to the first group here (or ghost) whose
 * filter matches, the one it most likely came through. */
void share_late(worker *w, msg *m);

/* A hand-over from another node ("$shoal/share/..." records): routed to
 * its group only. True when m was one (consumed or not, the caller keeps
 * its ref). */
bool share_forwarded(worker *w, msg *m);

/* A node that dies (docs/architecture.md, "Shared subscriptions across
 * nodes"): the low-water marks this node writes with each refresh, kept
 * per worker at its tick (share_tick), read by bp_hooks.share_low; and
 * bp_hooks.share_dead, which replays the dead node's share of a group on
 * a worker (IN_SHARE_DEAD, share_dead_start). */
void share_tick(worker *w);
void share_low_hook(void *node, int64_t *pos, uint32_t n_parts);
struct bp_share_dead;
void share_dead_hook(void *node, const struct bp_share_dead *d);
void share_dead_start(worker *w, void *job);
/* A job that never started (its item released at shutdown). */
void share_dead_free(void *job);

/* Client publishes to this prefix are refused: it carries hand-overs. */
#define SHARE_TOPIC_PREFIX "$shoal/share/"

#endif
