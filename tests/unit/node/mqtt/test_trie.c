/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/mqtt/trie.h"

static mqtt_bytes B(const char *s)
{
    return (mqtt_bytes){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static const mqtt_bytes NOGROUP = {NULL, 0};

/* Owners are opaque: distinct addresses are enough. */
static char owners[8];
#define A ((void *)&owners[0])
#define O1 ((void *)&owners[1])
#define O2 ((void *)&owners[2])
#define O3 ((void *)&owners[3])

static const sub_opts Q0 = {0, false, false, 0, 0};

static void sub(trie *t, const char *filter, void *owner)
{
    trie_add(t, B(filter), NOGROUP, owner, &Q0, NULL);
}

static void share(trie *t, const char *group, const char *filter, void *owner)
{
    trie_add(t, B(filter), B(group), owner, &Q0, NULL);
}

static size_t count(trie *t, const char *topic)
{
    return trie_match(t, B(topic), NULL, NULL, 0);
}

/* The single owner a topic reaches, or NULL unless exactly one hit. */
static void *only(trie *t, const char *topic, trie_eligible_fn ok)
{
    trie_hit h[2];
    return trie_match(t, B(topic), ok, h, 2) == 1 ? h[0].owner : NULL;
}

Test(trie, exact_filter_matches_only_its_topic)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "a/b/c", A);
    cr_expect_eq(count(t, "a/b/c"), 1);
    cr_expect_eq(count(t, "a/b"), 0);
    cr_expect_eq(count(t, "a/b/c/d"), 0);
    cr_expect_eq(count(t, "a/b/x"), 0);
    cr_expect_eq(only(t, "a/b/c", NULL), A);
    trie_free(t);
}

Test(trie, plus_matches_exactly_one_level)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "a/+/c", A);
    sub(t, "+", O1);
    cr_expect_eq(count(t, "a/b/c"), 1);
    cr_expect_eq(count(t, "a/xyz/c"), 1);
    cr_expect_eq(count(t, "a/b/d"), 0);
    cr_expect_eq(count(t, "a/b/x/c"), 0);
    cr_expect_eq(count(t, "a/c"), 0);
    cr_expect_eq(only(t, "x", NULL), O1);
    cr_expect_eq(count(t, "x/y"), 0);
    trie_free(t);
}

Test(trie, hash_matches_all_remaining_levels)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "a/#", A);
    sub(t, "#", O1);
    cr_expect_eq(count(t, "a/b"), 2);
    cr_expect_eq(count(t, "a/b/c/d"), 2);
    cr_expect_eq(count(t, "b"), 1);
    cr_expect_eq(count(t, "b/a"), 1);
    trie_free(t);
}

/* MQTT §4.7.1.2: "sport/#" also matches "sport". */
Test(trie, hash_matches_parent_level)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "a/#", A);
    sub(t, "a/+/#", O1);
    cr_expect_eq(only(t, "a", NULL), A);
    cr_expect_eq(count(t, "a/b"), 2);
    cr_expect_eq(count(t, "ab"), 0);
    trie_free(t);
}

/* MQTT §4.7.2: wildcards at the first level never match '$' topics. */
Test(trie, dollar_topics_not_matched_by_leading_wildcards)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "#", A);
    sub(t, "+/x", A);
    sub(t, "+", A);
    sub(t, "$SYS/#", O1);
    sub(t, "$SYS/+", O2);
    cr_expect_eq(count(t, "$SYS/x"), 2);
    cr_expect_eq(only(t, "$SYS", NULL), O1);
    trie_hit h[4];
    size_t n = trie_match(t, B("$SYS/x"), NULL, h, 4);
    for (size_t i = 0; i < n; i++) {
        cr_expect_neq(h[i].owner, A);
    }
    /* '$' later in the topic is an ordinary character. */
    cr_expect_eq(count(t, "a/$x"), 1);
    cr_expect_eq(count(t, "b/x"), 2);
    trie_free(t);
}

Test(trie, empty_levels_are_real_levels)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "/a", A);
    sub(t, "+/a", O1);
    sub(t, "a//b", O2);
    sub(t, "a/+/b", O3);
    sub(t, "a/", A);
    cr_expect_eq(count(t, "/a"), 2);
    cr_expect_eq(count(t, "a"), 0);
    cr_expect_eq(count(t, "a//b"), 2);
    cr_expect_eq(count(t, "a/b"), 0);
    cr_expect_eq(only(t, "a/", NULL), A);
    cr_expect_eq(count(t, "/"), 0);
    trie_free(t);
}

Test(trie, overlapping_filters_of_one_owner_hit_once_each)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub_opts q1 = {1, false, false, 0, 7};
    sub_opts q2 = {2, false, false, 0, 9};
    trie_add(t, B("a/+"), NOGROUP, A, &q1, NULL);
    trie_add(t, B("a/#"), NOGROUP, A, &q2, NULL);
    trie_hit h[4];
    cr_assert_eq(trie_match(t, B("a/b"), NULL, h, 4), 2);
    cr_expect_eq(h[0].owner, A);
    cr_expect_eq(h[1].owner, A);
    cr_expect_eq(h[0].opts.sub_id + h[1].opts.sub_id, 16);
    cr_expect_eq(trie_count(t), 2);
    trie_free(t);
}

Test(trie, add_again_replaces_options)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub_opts q1 = {1, true, false, 0, 3};
    sub_opts q2 = {2, false, true, 1, 4};
    bool replaced = true;
    trie_add(t, B("a/b"), NOGROUP, A, &q1, &replaced);
    cr_expect_not(replaced);
    trie_add(t, B("a/b"), NOGROUP, A, &q2, &replaced);
    cr_expect(replaced);
    cr_expect_eq(trie_count(t), 1);
    trie_hit h[2];
    cr_assert_eq(trie_match(t, B("a/b"), NULL, h, 2), 1);
    cr_expect_eq(h[0].opts.qos, 2);
    cr_expect_not(h[0].opts.no_local);
    cr_expect(h[0].opts.rap);
    cr_expect_eq(h[0].opts.retain_handling, 1);
    cr_expect_eq(h[0].opts.sub_id, 4);
    cr_expect_not(h[0].shared);
    trie_free(t);
}

Test(trie, shared_add_again_replaces_options)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub_opts q1 = {1, false, false, 0, 0};
    sub_opts q2 = {2, false, false, 0, 0};
    bool replaced = true;
    trie_add(t, B("a"), B("g"), A, &q1, &replaced);
    cr_expect_not(replaced);
    trie_add(t, B("a"), B("g"), A, &q2, &replaced);
    cr_expect(replaced);
    trie_add(t, B("a"), B("h"), A, &q1, &replaced);
    cr_expect_not(replaced);
    cr_expect_eq(trie_count(t), 2);
    cr_expect_eq(trie_group_count(t), 2);
    trie_free(t);
}

Test(trie, remove_prunes_every_node)
{
    size_t base = sh_allocated();
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    size_t empty = sh_allocated();
    const char *filters[] = {"a/b/c", "a/b", "a/+/c", "a/#", "#", "+", "/", "a//", "x/y/z/w", "$SYS/#"};
    size_t nf = sizeof(filters) / sizeof(filters[0]);
    for (size_t i = 0; i < nf; i++) {
        sub(t, filters[i], A);
        sub(t, filters[i], O1);
        share(t, "g", filters[i], O2);
    }
    cr_expect_eq(trie_count(t), 3 * nf);
    cr_expect_eq(trie_group_count(t), nf);
    /* Remove in an order that leaves inner nodes busy for a while. */
    for (size_t i = 0; i < nf; i++) {
        cr_expect(trie_remove(t, B(filters[i]), NOGROUP, O1));
        cr_expect(trie_remove(t, B(filters[nf - 1 - i]), B("g"), O2));
    }
    for (size_t i = nf; i-- > 0;) {
        cr_expect(trie_remove(t, B(filters[i]), NOGROUP, A));
    }
    cr_expect_eq(trie_count(t), 0);
    cr_expect_eq(trie_group_count(t), 0);
    cr_expect_eq(sh_allocated(), empty, "leaked %zu bytes", sh_allocated() - empty);
    cr_expect_eq(count(t, "a/b/c"), 0);
    trie_free(t);
    cr_expect_eq(sh_allocated(), base);
}

Test(trie, remove_missing_returns_false)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, "a/b", A);
    share(t, "g", "a/b", A);
    cr_expect_not(trie_remove(t, B("a/b"), NOGROUP, O1));
    cr_expect_not(trie_remove(t, B("a"), NOGROUP, A));
    cr_expect_not(trie_remove(t, B("a/b/c"), NOGROUP, A));
    cr_expect_not(trie_remove(t, B("a/b"), B("h"), A));
    cr_expect_not(trie_remove(t, B("a/b"), B("g"), O1));
    cr_expect(trie_remove(t, B("a/b"), NOGROUP, A));
    cr_expect_not(trie_remove(t, B("a/b"), NOGROUP, A));
    cr_expect_eq(trie_count(t), 1);
    trie_free(t);
}

static void spread(trie *t, const char *topic, size_t rounds, size_t got[3], trie_eligible_fn ok)
{
    void *m[3] = {O1, O2, O3};
    for (size_t r = 0; r < rounds; r++) {
        void *who = only(t, topic, ok);
        for (int k = 0; k < 3; k++) {
            got[k] += who == m[k];
        }
    }
}

static void three_members(trie *t)
{
    share(t, "g", "s/+", O1);
    share(t, "g", "s/+", O2);
    share(t, "g", "s/+", O3);
}

Test(trie, shared_round_robin_is_even)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    three_members(t);
    size_t got[3] = {0, 0, 0};
    spread(t, "s/x", 300, got, NULL);
    cr_expect_eq(got[0], 100);
    cr_expect_eq(got[1], 100);
    cr_expect_eq(got[2], 100);
    trie_hit h[1];
    cr_assert_eq(trie_match(t, B("s/x"), NULL, h, 1), 1);
    cr_expect(h[0].shared);
    trie_free(t);
}

static trie *shared_rr;

static void *match_many(void *arg)
{
    for (int i = 0; i < 3000; i++) {
        trie_hit h[1];
        trie_match(shared_rr, B("s/x"), NULL, h, 1);
        ((void **)arg)[i] = h[0].owner;
    }
    return NULL;
}

/* Matches run concurrently under one read lock; the atomic cursor keeps
 * the split exact. */
Test(trie, shared_round_robin_is_even_across_threads)
{
    shared_rr = trie_new(TRIE_SHARED_ROUND_ROBIN);
    three_members(shared_rr);
    static void *seen[4][3000];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, match_many, seen[i]);
    }
    size_t got[3] = {0, 0, 0};
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        for (int j = 0; j < 3000; j++) {
            got[0] += seen[i][j] == O1;
            got[1] += seen[i][j] == O2;
            got[2] += seen[i][j] == O3;
        }
    }
    cr_expect_eq(got[0], 4000);
    cr_expect_eq(got[1], 4000);
    cr_expect_eq(got[2], 4000);
    trie_free(shared_rr);
}

static bool not_o1(void *owner)
{
    return owner != O1;
}

static bool nobody(void *owner)
{
    (void)owner;
    return false;
}

Test(trie, shared_sticky_keeps_first_member_until_it_leaves)
{
    trie *t = trie_new(TRIE_SHARED_STICKY);
    three_members(t);
    size_t got[3] = {0, 0, 0};
    spread(t, "s/x", 50, got, NULL);
    cr_expect_eq(got[0], 50);
    /* Ineligible (offline) while still a member: the next one covers. */
    cr_expect_eq(only(t, "s/x", not_o1), O2);
    cr_expect(trie_remove(t, B("s/+"), B("g"), O1));
    memset(got, 0, sizeof(got));
    spread(t, "s/x", 50, got, NULL);
    cr_expect_eq(got[1], 50);
    trie_free(t);
}

Test(trie, shared_random_picks_only_members)
{
    trie *t = trie_new(TRIE_SHARED_RANDOM);
    three_members(t);
    size_t got[3] = {0, 0, 0};
    spread(t, "s/x", 3000, got, NULL);
    cr_expect_eq(got[0] + got[1] + got[2], 3000);
    /* Each has a 1/3 chance; 600 is > 11 standard deviations below 1000. */
    for (int k = 0; k < 3; k++) {
        cr_expect_gt(got[k], 600, "member %d got %zu", k, got[k]);
    }
    trie_free(t);
}

Test(trie, shared_eligible_filter_skips_members)
{
    trie_strategy all[] = {TRIE_SHARED_ROUND_ROBIN, TRIE_SHARED_RANDOM, TRIE_SHARED_STICKY};
    for (int s = 0; s < 3; s++) {
        trie *t = trie_new(all[s]);
        three_members(t);
        size_t got[3] = {0, 0, 0};
        spread(t, "s/x", 300, got, not_o1);
        cr_expect_eq(got[0], 0, "strategy %d", s);
        cr_expect_eq(got[1] + got[2], 300, "strategy %d", s);
        trie_free(t);
    }
}

Test(trie, shared_with_no_eligible_member_still_delivers)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    three_members(t);
    size_t got[3] = {0, 0, 0};
    spread(t, "s/x", 30, got, nobody);
    cr_expect_eq(got[0] + got[1] + got[2], 30);
    trie_free(t);
}

Test(trie, shared_group_and_normal_subs_on_same_filter)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    three_members(t);
    share(t, "h", "s/+", A);
    sub(t, "s/+", A);
    sub(t, "s/+", O1);
    cr_expect_eq(trie_count(t), 6);
    cr_expect_eq(trie_group_count(t), 2);
    trie_hit h[8];
    cr_assert_eq(trie_match(t, B("s/x"), NULL, h, 8), 4);
    size_t shared = 0, normal = 0;
    for (int i = 0; i < 4; i++) {
        shared += h[i].shared;
        normal += !h[i].shared;
    }
    cr_expect_eq(shared, 2);
    cr_expect_eq(normal, 2);
    trie_free(t);
}

Test(trie, hits_beyond_cap_return_true_total)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    static char many[40];
    for (int i = 0; i < 40; i++) {
        sub(t, i % 2 ? "a/#" : "a/b", &many[i]);
    }
    trie_hit h[8];
    memset(h, 0, sizeof(h));
    cr_expect_eq(trie_match(t, B("a/b"), NULL, h, 8), 40);
    for (int i = 0; i < 8; i++) {
        cr_expect_not_null(h[i].owner);
    }
    trie_hit all[40];
    cr_expect_eq(trie_match(t, B("a/b"), NULL, all, 40), 40);
    trie_free(t);
}

/* One node with 100k children ("devices/<id>/cmd"), then back to nothing. */
Test(trie, hundred_thousand_distinct_subscriptions)
{
    enum { N = 100000 };
    static char o[N];
    char f[64];
    size_t base = sh_allocated();
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    size_t empty = sh_allocated();
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "devices/%d/cmd", i);
        sub(t, f, &o[i]);
    }
    cr_assert_eq(trie_count(t), N);
    size_t used = sh_allocated() - empty;
    cr_log_info("trie: %zu bytes for %d subscriptions = %.1f bytes each", used, N, (double)used / N);
    cr_expect_lt(used / N, 128);
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "devices/%d/cmd", i);
        cr_assert_eq(only(t, f, NULL), &o[i]);
    }
    cr_expect_eq(count(t, "devices/100000/cmd"), 0);
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "devices/%d/cmd", i);
        cr_assert(trie_remove(t, B(f), NOGROUP, &o[i]));
    }
    cr_expect_eq(trie_count(t), 0);
    cr_expect_eq(sh_allocated(), empty);
    trie_free(t);
    cr_expect_eq(sh_allocated(), base);
}

/* Children tables shrink and re-probe as entries leave; the survivors must
 * stay reachable (backward-shift deletion). */
Test(trie, children_survive_interleaved_removal)
{
    enum { N = 20000 };
    static char o[N];
    char f[32];
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "d/%d", i);
        sub(t, f, &o[i]);
    }
    for (int i = 0; i < N; i++) {
        if (i % 3) {
            snprintf(f, sizeof(f), "d/%d", i);
            cr_assert(trie_remove(t, B(f), NOGROUP, &o[i]));
        }
    }
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "d/%d", i);
        cr_assert_eq(only(t, f, NULL), i % 3 ? NULL : &o[i], "d/%d", i);
    }
    cr_expect_eq(trie_count(t), (N + 2) / 3);
    trie_free(t);
}

/* Fan-out: 100k owners on one filter; replace and remove stay cheap. */
Test(trie, hundred_thousand_owners_on_one_filter)
{
    enum { N = 100000 };
    static char o[N];
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    size_t empty = sh_allocated();
    for (int i = 0; i < N; i++) {
        sub(t, "news/all", &o[i]);
    }
    size_t used = sh_allocated() - empty;
    cr_log_info("trie: %zu bytes for %d owners of one filter = %.1f bytes each", used, N, (double)used / N);
    bool replaced = false;
    sub_opts q2 = {2, false, false, 0, 0};
    trie_add(t, B("news/all"), NOGROUP, &o[N / 2], &q2, &replaced);
    cr_expect(replaced);
    cr_expect_eq(count(t, "news/all"), N);
    for (int i = 0; i < N; i += 2) {
        cr_assert(trie_remove(t, B("news/all"), NOGROUP, &o[i]));
    }
    cr_expect_eq(count(t, "news/all"), N / 2);
    cr_expect_not(trie_remove(t, B("news/all"), NOGROUP, &o[0]));
    for (int i = 1; i < N; i += 2) {
        cr_assert(trie_remove(t, B("news/all"), NOGROUP, &o[i]));
    }
    cr_expect_eq(trie_count(t), 0);
    cr_expect_eq(sh_allocated(), empty);
    trie_free(t);
}

/* Matching and freeing do not recurse, so a very deep filter is fine. */
Test(trie, very_deep_filters)
{
    enum { LEVELS = 20000 };
    static char f[2 * LEVELS];
    for (int i = 0; i < LEVELS; i++) {
        f[2 * i] = 'x';
        f[2 * i + 1] = '/';
    }
    f[2 * LEVELS - 1] = '\0';
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    sub(t, f, A);
    f[0] = '+';
    sub(t, f, O1);
    f[0] = 'x';
    cr_expect_eq(count(t, f), 2);
    f[2 * LEVELS - 2] = '#';
    sub(t, f, O2);
    f[2 * LEVELS - 2] = 'x';
    cr_expect_eq(count(t, f), 3);
    trie_free(t);
}

Test(trie, free_releases_everything)
{
    size_t base = sh_allocated();
    trie *t = trie_new(TRIE_SHARED_STICKY);
    char f[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(f, sizeof(f), "a/%d/+/#", i % 37);
        sub(t, f, &owners[i % 8]);
        share(t, i % 2 ? "g" : "h", f, &owners[i % 5]);
    }
    trie_free(t);
    cr_expect_eq(sh_allocated(), base);
}

/* --- the cluster gate (route.c's share_gate_fn) ------------------------- */

typedef struct gate_rec {
    char key[64];
    uint64_t pick;
    bool mine;
    int calls;
} gate_rec;

static bool gate_fn(void *arg, const uint8_t *key, size_t len, uint64_t *pick)
{
    gate_rec *g = arg;
    snprintf(g->key, sizeof(g->key), "%.*s", (int)len, (const char *)key);
    *pick = g->pick;
    g->calls++;
    return g->mine;
}

Test(trie, gate_names_group_and_filter_and_can_skip)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    three_members(t);
    sub(t, "s/x", A);
    trie_hit h[4];
    gate_rec g = {.mine = false};
    /* Skipped: only the normal subscription is hit. */
    cr_expect_eq(trie_match_gated(t, B("s/x"), NULL, gate_fn, &g, h, 4), 1);
    cr_expect_eq(h[0].owner, A);
    cr_expect_str_eq(g.key, "g/s/+");
    g.mine = true;
    cr_expect_eq(trie_match_gated(t, B("s/x"), NULL, gate_fn, &g, h, 4), 2);
    trie_free(t);
}

Test(trie, hash_strategies_pick_member_by_key)
{
    trie_strategy st[] = {TRIE_SHARED_HASH_CLIENT_ID, TRIE_SHARED_HASH_TOPIC};
    for (size_t s = 0; s < 2; s++) {
        trie *t = trie_new(st[s]);
        three_members(t);
        trie_hit h[2];
        gate_rec g = {.mine = true};
        void *seen[3];
        for (uint64_t p = 0; p < 3; p++) {
            g.pick = p;
            cr_assert_eq(trie_match_gated(t, B("s/x"), NULL, gate_fn, &g, h, 2), 1);
            seen[p] = h[0].owner;
            /* Same key, same member, every time. */
            for (int k = 0; k < 5; k++) {
                trie_match_gated(t, B("s/x"), NULL, gate_fn, &g, h, 2);
                cr_expect_eq(h[0].owner, seen[p]);
            }
        }
        cr_expect(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
        trie_free(t);
    }
}

typedef struct each_rec {
    char keys[4][32];
    uint32_t members[4];
    int n;
} each_rec;

static void each_fn(void *arg, const uint8_t *key, size_t len, uint32_t members)
{
    each_rec *r = arg;
    if (r->n < 4) {
        snprintf(r->keys[r->n], sizeof(r->keys[0]), "%.*s", (int)len, (const char *)key);
        r->members[r->n] = members;
    }
    r->n++;
}

static uint32_t members_of(const each_rec *r, const char *key)
{
    for (int i = 0; i < r->n && i < 4; i++) {
        if (!strcmp(r->keys[i], key)) {
            return r->members[i];
        }
    }
    return 0;
}

Test(trie, groups_each_lists_groups_with_member_counts)
{
    trie *t = trie_new(TRIE_SHARED_ROUND_ROBIN);
    share(t, "g", "a/b", O1);
    share(t, "g", "a/b", O2);
    share(t, "g", "c/#", O1);
    share(t, "h", "a/b", O3);
    sub(t, "a/b", A);
    each_rec r = {0};
    trie_groups_each(t, NULL, each_fn, &r);
    cr_expect_eq(r.n, 3);
    cr_expect_eq(members_of(&r, "g/a/b"), 2);
    cr_expect_eq(members_of(&r, "g/c/#"), 1);
    cr_expect_eq(members_of(&r, "h/a/b"), 1);
    cr_expect(trie_remove(t, B("a/b"), B("h"), O3));
    memset(&r, 0, sizeof(r));
    trie_groups_each(t, NULL, each_fn, &r);
    cr_expect_eq(r.n, 2);
    cr_expect_eq(members_of(&r, "h/a/b"), 0);
    trie_free(t);
}
