/* SPDX-License-Identifier: Apache-2.0 */
/* The pure rule that chooses which node delivers a shared group's copy
 * (cluster/share_pick.c): deterministic, weighted by members, stable. */
#include <criterion/criterion.h>
#include <string.h>

#include "cluster/backplane.h"

Test(share_pick, one_node_always_chosen)
{
    bp_share_node v[] = {{"n1", 3}};
    for (uint64_t h = 0; h < 1000; h++) {
        cr_assert_eq(bp_share_pick(v, 1, bp_share_mix(h)), 0);
    }
}

Test(share_pick, same_input_same_answer)
{
    bp_share_node v[] = {{"a", 1}, {"b", 2}, {"c", 1}};
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t h = bp_share_hash("g/t/#", 5, bp_share_mix(i));
        cr_assert_eq(bp_share_pick(v, 3, h), bp_share_pick(v, 3, h));
    }
    /* Fixed values: a change of the hash breaks mixed-version clusters. */
    cr_assert_eq(bp_share_hash("", 0, 0), bp_share_mix(0xcbf29ce484222325ull));
    cr_assert_eq(bp_share_mix(0), 0xe220a8397b1dcdafull);
}

/* Consecutive offsets (what a stream gives) spread evenly per member:
 * members 1, 2, 1 get 1/4, 1/2, 1/4 of 100,000 keys within 2%. */
Test(share_pick, weighted_spread_of_consecutive_offsets)
{
    bp_share_node v[] = {{"a", 1}, {"b", 2}, {"c", 1}};
    size_t got[3] = {0};
    const size_t n = 100000;
    for (uint64_t off = 0; off < n; off++) {
        uint64_t base = bp_share_mix(((uint64_t)3 << 48) ^ off);
        got[bp_share_pick(v, 3, bp_share_hash("g/x", 3, base))]++;
    }
    cr_assert(got[0] > n / 4 - n / 50 && got[0] < n / 4 + n / 50, "a: %zu", got[0]);
    cr_assert(got[1] > n / 2 - n / 50 && got[1] < n / 2 + n / 50, "b: %zu", got[1]);
    cr_assert(got[2] > n / 4 - n / 50 && got[2] < n / 4 + n / 50, "c: %zu", got[2]);
}

/* A node whose members are all offline takes nothing while another node
 * has an online member; with none online anywhere, every node one share. */
Test(share_pick, offline_only_nodes_take_nothing_unless_all_are)
{
    bp_share_node v[] = {{"a", 0}, {"b", 2}, {"c", 0}};
    for (uint64_t i = 0; i < 1000; i++) {
        cr_assert_eq(bp_share_pick(v, 3, bp_share_mix(i)), 1);
    }
    bp_share_node z[] = {{"a", 0}, {"b", 0}};
    size_t got[2] = {0};
    for (uint64_t i = 0; i < 1000; i++) {
        got[bp_share_pick(z, 2, bp_share_mix(i))]++;
    }
    cr_assert(got[0] > 400 && got[1] > 400);
}

Test(share_pick, empty_view_picks_zero)
{
    cr_assert_eq(bp_share_pick(NULL, 0, 42), 0);
}
