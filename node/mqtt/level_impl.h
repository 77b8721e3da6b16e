/* SPDX-License-Identifier: Apache-2.0 */
/* Topic levels and the per-node child table, shared by node/mqtt/trie.c
 * (subscriptions) and node/mqtt/retain.c (retained messages). Not for use
 * outside node/.
 *
 * A child table is an array of cap slots (cap 0 or a power of two) of
 * child pointers, open addressing with linear probing. Each file keeps its
 * own header (count, cap, anything else) in front of the slots and its own
 * node type; the table reaches a child's level through a level_key_fn, so
 * the node layouts stay as small as each file wants them. */
#ifndef SHOAL_NODE_LEVEL_IMPL_H
#define SHOAL_NODE_LEVEL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "proto/mqtt.h"

/* --- levels ------------------------------------------------------------- */

/* End of the level starting at pos; the next level starts at end + 1, and
 * end + 1 > s.len once the last level is consumed. */
static inline uint32_t level_end(mqtt_bytes s, uint32_t pos)
{
    const uint8_t *slash = pos < s.len ? memchr(s.p + pos, '/', s.len - pos) : NULL;
    return slash ? (uint32_t)(slash - s.p) : s.len;
}

/* mqtt_bytes allows p == NULL for len 0; pointer arithmetic on it is UB. */
static inline mqtt_bytes level_nonnull(mqtt_bytes s)
{
    if (!s.p) {
        s.p = (const uint8_t *)"";
    }
    return s;
}

/* Whether the level is the single character c ('+', '#'). */
static inline bool level_is(const uint8_t *l, size_t len, uint8_t c)
{
    return len == 1 && l[0] == c;
}

/* Seeded per index so levels chosen by clients do not collide the same way
 * on every broker (not a keyed PRF: no hard flooding guarantee).
 * FNV-1a with a murmur finaliser. */
static inline uint64_t level_hash(uint64_t seed, const uint8_t *p, size_t len)
{
    uint64_t h = seed ^ 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* A fresh seed for one index; salt (the index itself) separates two
 * indexes made in the same clock tick. */
static inline uint64_t level_seed(const void *salt)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return level_hash((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)salt, (const uint8_t *)&ts, sizeof(ts));
}

/* --- child tables ------------------------------------------------------- */

/* The level a child stands for. */
typedef struct level_key {
    const uint8_t *p;
    size_t len;
} level_key;

typedef level_key (*level_key_fn)(const void *child);

static inline uint32_t level_home(uint64_t seed, level_key_fn key, const void *child, uint32_t mask)
{
    level_key k = key(child);
    return (uint32_t)level_hash(seed, k.p, k.len) & mask;
}

/* The slot holding level l, or the free slot where it would go; NULL if
 * neither (a full small table, or cap 0). */
static inline void **level_slot(void **slot, uint32_t cap, uint64_t seed, level_key_fn key, const uint8_t *l,
                                size_t len)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)level_hash(seed, l, len) & mask;
    for (uint32_t probes = 0; probes < cap; probes++, i = (i + 1) & mask) {
        if (!slot[i]) {
            return &slot[i];
        }
        level_key k = key(slot[i]);
        if (k.len == len && (len == 0 || memcmp(k.p, l, len) == 0)) {
            return &slot[i];
        }
    }
    return NULL;
}

/* Tables of 1 or 2 slots may be full (probes are bounded by cap); larger
 * ones stay at most 3/4 full. Whether adding one more child needs a
 * larger table. */
static inline bool level_tab_full(uint32_t n, uint32_t cap)
{
    return n == cap || (cap > 2 && (n + 1) * 4 > cap * 3);
}

/* Whether a table holding n children should be halved. */
static inline bool level_tab_sparse(uint32_t n, uint32_t cap)
{
    return cap >= 4 && n * 4 <= cap;
}

/* Put every child of src into dst (empty, large enough). */
static inline void level_rehash(void **dst, uint32_t dst_cap, void *const *src, uint32_t src_cap, uint64_t seed,
                                level_key_fn key)
{
    for (uint32_t i = 0; i < src_cap; i++) {
        if (src[i]) {
            level_key k = key(src[i]);
            *level_slot(dst, dst_cap, seed, key, k.p, k.len) = src[i];
        }
    }
}

/* Linear-probing delete of slot i by backward shift: no tombstones, so a
 * table that shrinks back keeps short probes. The hole is cleared first so
 * the scan ends even in a full table. The caller adjusts its count. */
static inline void level_erase(void **slot, uint32_t cap, uint32_t i, uint64_t seed, level_key_fn key)
{
    uint32_t mask = cap - 1;
    slot[i] = NULL;
    for (uint32_t j = (i + 1) & mask; slot[j]; j = (j + 1) & mask) {
        uint32_t home = level_home(seed, key, slot[j], mask);
        /* The entry at j may fill the hole unless its home lies in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            slot[i] = slot[j];
            slot[j] = NULL;
            i = j;
        }
    }
}

/* The first child in slot order, or NULL: the only one, on a branch being
 * pruned. */
static inline void *level_first(void *const *slot, uint32_t cap)
{
    for (uint32_t i = 0; i < cap; i++) {
        if (slot[i]) {
            return slot[i];
        }
    }
    return NULL;
}

/* --- teardown ----------------------------------------------------------- */

/* The nodes still to free when tearing an index down. Iterative, as a
 * topic can have thousands of levels. */
typedef struct level_stack {
    void **v;
    size_t depth, room;
} level_stack;

static inline void level_stack_init(level_stack *s, void *root)
{
    s->room = 64;
    s->v = sh_malloc(s->room * sizeof(void *));
    s->v[0] = root;
    s->depth = 1;
}

/* The next node to free, or NULL once all are. */
static inline void *level_stack_pop(level_stack *s)
{
    return s->depth ? s->v[--s->depth] : NULL;
}

static inline void level_stack_push_children(level_stack *s, void *const *slot, uint32_t cap)
{
    size_t need = s->depth + cap;
    if (need > s->room) {
        s->v = sh_realloc(s->v, s->room * sizeof(void *), need * 2 * sizeof(void *));
        s->room = need * 2;
    }
    for (uint32_t i = 0; i < cap; i++) {
        if (slot[i]) {
            s->v[s->depth++] = slot[i];
        }
    }
}

static inline void level_stack_free(level_stack *s)
{
    sh_free(s->v, s->room * sizeof(void *));
}

#endif
