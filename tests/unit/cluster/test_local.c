/* SPDX-License-Identifier: Apache-2.0 */
/* The local backplane (cluster/local.c) beyond the contract that
 * test_backplane.c runs against it: what a single node's backplane says
 * about itself (kind, readiness, membership, limits, figures), that it
 * answers before the call returns, and that its session table grows. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cluster/backplane.h"

static backplane *bp;

static void setup(void)
{
    bp_config cfg = {.node_id = "solo", .address = "127.0.0.1:1883"};
    bp_hooks hooks = {0};
    bp = bp_open(&cfg, &hooks);
    cr_assert_not_null(bp);
}

static void teardown(void)
{
    bp_free(bp);
}

TestSuite(local, .init = setup, .fini = teardown);

typedef struct seen {
    int count;
    bp_status st;
    size_t n;
    char id[64];
    char address[64];
} seen;

static void done_cb(bp_status st, void *arg)
{
    seen *s = arg;
    s->count++;
    s->st = st;
}

static void nodes_cb(bp_status st, const bp_node_info *nodes, size_t n, void *arg)
{
    seen *s = arg;
    s->count++;
    s->st = st;
    s->n = n;
    if (n) {
        snprintf(s->id, sizeof(s->id), "%s", nodes[0].node_id);
        snprintf(s->address, sizeof(s->address), "%s", nodes[0].address);
    }
}

Test(local, is_the_local_kind_ready_at_once_and_knows_every_subscriber)
{
    cr_assert_str_eq(bp_kind(bp), "local");
    cr_assert(bp_is_ready(bp));
    cr_assert(bp_knows_all_subscribers(bp));
}

/* No transport between nodes: nothing caps a message's size. */
Test(local, carries_a_publish_of_any_size)
{
    cr_assert_eq(bp_max_publish_size(bp, 65535, 65535), 0);
}

Test(local, the_nodes_list_is_this_node_only_with_its_address)
{
    seen s = {0};
    bp_nodes(bp, 0, nodes_cb, &s);
    cr_assert_eq(s.count, 1, "answered before the call returns");
    cr_assert_eq(s.st, BP_OK);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.id, "solo");
    cr_assert_str_eq(s.address, "127.0.0.1:1883");
}

Test(local, publish_is_durable_before_the_call_returns)
{
    bp_message m = {.topic = (const uint8_t *)"t", .topic_len = 1, .qos = 2};
    seen s = {0};
    bp_publish(bp, 0, &m, done_cb, &s);
    cr_assert_eq(s.count, 1);
    cr_assert_eq(s.st, BP_OK);
}

/* No backend: every figure is zero and both backends read as down. */
Test(local, stats_are_all_zero)
{
    bp_message m = {.topic = (const uint8_t *)"t", .topic_len = 1};
    bp_publish(bp, 0, &m, NULL, NULL);
    bp_stats st;
    memset(&st, 0xff, sizeof(st));
    bp_get_stats(bp, &st);
    bp_stats zero;
    memset(&zero, 0, sizeof(zero));
    cr_assert_eq(memcmp(&st, &zero, sizeof(st)), 0);
}

typedef struct claim_res {
    int count;
    bp_status st;
    uint64_t epoch;
    char prev_owner[8];
} claim_res;

static void claim_cb(bp_status st, const bp_session_rec *rec, void *arg)
{
    claim_res *r = arg;
    r->count++;
    r->st = st;
    r->epoch = rec ? rec->epoch : 0;
    snprintf(r->prev_owner, sizeof(r->prev_owner), "%s", rec ? rec->prev_owner : "?");
}

/* One node: a claim never has a previous owner to wait for. */
Test(local, a_claim_names_no_previous_owner)
{
    claim_res r = {0};
    bp_session_claim(bp, 0, "c", false, claim_cb, &r);
    bp_session_claim(bp, 0, "c", false, claim_cb, &r);
    cr_assert_eq(r.count, 2);
    cr_assert_eq(r.epoch, 2);
    cr_assert_str_eq(r.prev_owner, "");
}

/* Past the table's first 64 buckets every record is still found. */
Test(local, the_session_table_grows_and_keeps_every_record)
{
    enum { N = 1000 };
    static uint64_t epochs[N];
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "client-%d", i);
        claim_res r = {0};
        bp_session_claim(bp, 0, id, false, claim_cb, &r);
        cr_assert_eq(r.st, BP_OK);
        epochs[i] = r.epoch;
        seen s = {0};
        bp_session_store(bp, 0, id, epochs[i], (const uint8_t *)id, (uint32_t)strlen(id), 0, done_cb, &s);
        cr_assert_eq(s.st, BP_OK);
    }
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "client-%d", i);
        claim_res r = {0};
        bp_session_load(bp, 0, id, epochs[i], false, claim_cb, &r);
        cr_assert_eq(r.st, BP_OK, "%s lost", id);
        cr_assert_eq(r.epoch, epochs[i]);
    }
}

static void reap_cb(bp_status st, const bp_reap_set *b, void *arg)
{
    seen *s = arg;
    s->count++;
    s->st = st;
    s->n = b && b->instance ? 1 : 0;
}

/* A single node has no other node to outlive: the dead-node walk
 * (node/mqtt/dead_node.c) finds nothing, at once, and a settle is refused. */
Test(local, finds_no_dead_node_and_refuses_to_settle_a_record)
{
    seen s = {0};
    bp_reap_batch(bp, 0, NULL, 0, reap_cb, &s);
    cr_assert_eq(s.count, 1);
    cr_assert_eq(s.st, BP_OK);
    cr_assert_eq(s.n, 0);
    seen f = {0};
    bp_reap_finish(bp, 0, "tok|gone", "c1", 1, NULL, 0, -1, done_cb, &f);
    cr_assert_eq(f.count, 1);
    cr_assert_eq(f.st, BP_ESTALE);
    bp_reap_end(bp, 0, "tok|gone", 0); /* nothing to release: no effect */
}

/* One node owns every share: a hand-over (a member's session ended with
 * messages in flight) stays here whoever it names. */
Test(local, every_shared_group_is_this_nodes_whoever_is_left_out)
{
    static const uint8_t key[] = "g/t/#";
    for (uint64_t h = 0; h < 16; h++) {
        cr_assert(bp_share_mine(bp, key, sizeof(key) - 1, bp_share_mix(h), 0));
        cr_assert(bp_share_mine_except(bp, key, sizeof(key) - 1, bp_share_mix(h), 0, NULL));
        cr_assert(bp_share_mine_except(bp, key, sizeof(key) - 1, bp_share_mix(h), 0, "solo"));
        cr_assert(bp_share_mine_except(bp, key, sizeof(key) - 1, bp_share_mix(h), 0, "other"));
    }
}
