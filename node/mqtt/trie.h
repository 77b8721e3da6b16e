/* SPDX-License-Identifier: Apache-2.0 */
/* The subscription index: a topic trie over filter levels supporting '+',
 * '#', the '$' rule, shared groups and overlapping subscriptions.
 * Not thread-safe: the caller holds a read lock to match and a write lock to
 * change it. Shared-group member choice uses atomics, so concurrent matches
 * under one read lock are safe. */
#ifndef SHOAL_NODE_TRIE_H
#define SHOAL_NODE_TRIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/mqtt.h"

typedef struct sub_opts {
    uint8_t qos;
    bool no_local;
    bool rap; /* Retain As Published */
    uint8_t retain_handling;
    uint32_t sub_id; /* 0 = none */
} sub_opts;

typedef enum trie_strategy {
    TRIE_SHARED_ROUND_ROBIN = 0,
    TRIE_SHARED_RANDOM,
    TRIE_SHARED_STICKY, /* the first member keeps getting messages until it leaves */
    /* The member is chosen by the `pick` a share gate gives (a hash of the
     * publisher's client id, or of the topic): one key, one member. */
    TRIE_SHARED_HASH_CLIENT_ID,
    TRIE_SHARED_HASH_TOPIC,
} trie_strategy;

typedef struct trie trie;

trie *trie_new(trie_strategy strategy);
void trie_free(trie *t);

/* Add or replace the subscription of `owner` (an opaque subscriber, e.g. a
 * session) to `filter` in shared group `group` (empty for a normal
 * subscription). The filter must already be valid. *replaced says whether
 * the owner already had this (group, filter). Copies what it keeps. */
void trie_add(trie *t, mqtt_bytes filter, mqtt_bytes group, void *owner, const sub_opts *o, bool *replaced);

/* Remove it; false if it did not exist. */
bool trie_remove(trie *t, mqtt_bytes filter, mqtt_bytes group, void *owner);

/* One match: the owner and its options for the matching subscription.
 * `shared` is true when it came from a shared group. */
typedef struct trie_hit {
    void *owner;
    sub_opts opts;
    bool shared;
} trie_hit;

/* Every subscription matching topic name `topic`: each normal subscription
 * once (an owner with overlapping filters appears once per filter), and each
 * matching shared group once, with one member chosen by the strategy.
 * `eligible` (may be NULL) filters shared members (e.g. skip offline ones);
 * if no member is eligible, one is chosen anyway.
 * Hits are appended to hits[0..cap); returns the total number of hits,
 * which may exceed cap (call again with a larger array). */
typedef bool (*trie_eligible_fn)(void *owner);
size_t trie_match(trie *t, mqtt_bytes topic, trie_eligible_fn eligible, trie_hit *hits, size_t cap);

/* A shared group's copy of a message: should this node deliver it? key is
 * the group's cluster-wide name "group/filter" (filter as subscribed,
 * without "$share/group/"). *pick (preset 0) chooses the member for the
 * hash strategies (pick % members). False: skip the group (another node
 * delivers it). */
typedef bool (*trie_share_gate_fn)(void *arg, const uint8_t *key, size_t key_len, uint64_t *pick);
size_t trie_match_gated(trie *t, mqtt_bytes topic, trie_eligible_fn eligible, trie_share_gate_fn gate, void *gate_arg,
                        trie_hit *hits, size_t cap);

/* Each shared group: its "group/filter" key and member count, of the
 * eligible ones when `eligible` is given (under the caller's read lock). */
typedef void (*trie_group_fn)(void *arg, const uint8_t *key, size_t key_len, uint32_t members);
void trie_groups_each(const trie *t, trie_eligible_fn eligible, trie_group_fn fn, void *arg);

/* Ghosts: with keep on, a group whose last member leaves is remembered
 * by its key until trie_ghosts_age has run more than max_age times (or a
 * member joins again). A cluster node keeps them: other nodes may still
 * choose it for the group until their view of the membership catches up,
 * and it hands those messages on (node/mqtt/share.c). group_len: the
 * group name's length in key ("group/filter"). Returns how many. */
void trie_keep_ghosts(trie *t, bool keep);
typedef void (*trie_ghost_fn)(void *arg, const uint8_t *key, size_t key_len, size_t group_len);
size_t trie_ghosts_each(const trie *t, trie_ghost_fn fn, void *arg);
void trie_ghosts_age(trie *t, uint32_t max_age);

/* Number of subscriptions (shared memberships included) and of shared groups. */
size_t trie_count(const trie *t);
size_t trie_group_count(const trie *t);
/* Does the shared group `group` on `filter` exist (any member)? */
bool trie_has_group(const trie *t, mqtt_bytes filter, mqtt_bytes group);

#endif
