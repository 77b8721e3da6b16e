/* SPDX-License-Identifier: Apache-2.0 */
/* Which node delivers a shared group's copy of a message (docs/
 * architecture.md, "Shared subscriptions across nodes"): pure functions,
 * so every node computes the same answer from the same record. */
#include <string.h>

#include "cluster/backplane.h"

/* splitmix64's finaliser: spreads close inputs (offsets 7, 8, 9) apart. */
uint64_t bp_share_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a, then mixed: stable across nodes, builds and architectures. */
uint64_t bp_share_hash(const void *p, size_t len, uint64_t seed)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return bp_share_mix(h);
}

/* Weighted by (online) members, so each member of the cluster, not each
 * node, gets an even share: slot h % total walks the nodes in id order. A
 * node listed with none (only offline members) takes nothing while another
 * has one; with none online anywhere every node weighs one (the messages
 * queue in offline sessions). */
size_t bp_share_pick(const bp_share_node *v, size_t n, uint64_t h)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += v[i].members;
    }
    if (n == 0) {
        return 0;
    }
    bool even = total == 0;
    total = even ? n : total;
    uint64_t slot = h % total;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = even ? 1 : v[i].members;
        if (slot < w) {
            return i;
        }
        slot -= w;
    }
    return n - 1;
}
