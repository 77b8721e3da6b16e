/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/backplane.c and cluster/local.c: the contract against the local
 * backplane, and the operations-table check at open. */
#define CONTRACT_SHARES_MESSAGES false
#include "tests/unit/cluster/backplane_contract.h"

#include "cluster/backplane_impl.h"

static void contract_config(bp_config *cfg)
{
}

Test(backplane_ops, both_implementations_are_complete)
{
    cr_assert_null(bp_ops_missing(&bp_local_ops));
    cr_assert_null(bp_ops_missing(&bp_rk_ops));
}

static int opened;

static int fake_open(backplane *bp)
{
    opened++;
    return 0;
}

Test(backplane_ops, a_table_with_a_hole_is_refused_and_named)
{
    bp_ops ops = bp_local_ops;
    ops.open = fake_open;
    ops.nodes = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "nodes");
    bp_config cfg = {.node_id = "n", .address = "a"};
    bp_hooks hooks = {0};
    cr_assert_null(bp_open_ops(&ops, &cfg, &hooks));
    cr_assert_eq(opened, 0, "an incomplete table must not be opened");
    ops.nodes = bp_local_ops.nodes;
    ops.stats = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "stats");
    ops.stats = bp_local_ops.stats;
    ops.kind = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "kind");
}

/* The dead-node walk and the shared-group choice are operations like the
 * others: a backplane without them is refused at open, not given a
 * default behind the caller's back. */
Test(backplane_ops, reap_and_share_mine_are_required)
{
    bp_ops ops = bp_local_ops;
    ops.reap_batch = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "reap_batch");
    ops.reap_batch = bp_local_ops.reap_batch;
    ops.reap_finish = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "reap_finish");
    ops.reap_finish = bp_local_ops.reap_finish;
    ops.reap_end = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "reap_end");
    ops.reap_end = bp_local_ops.reap_end;
    ops.share_mine = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "share_mine");
    ops.share_mine = bp_local_ops.share_mine;
    cr_assert_null(bp_ops_missing(&ops));
    bp_config cfg = {.node_id = "n", .address = "a"};
    bp_hooks hooks = {0};
    ops.share_mine = NULL;
    cr_assert_null(bp_open_ops(&ops, &cfg, &hooks));
}

Test(backplane_ops, a_failed_open_returns_null)
{
    bp_ops ops = bp_local_ops;
    ops.open = NULL;
    cr_assert_str_eq(bp_ops_missing(&ops), "open");
    bp_config cfg = {.node_id = "n", .redis_url = "redis://127.0.0.1:1"};
    bp_hooks hooks = {0};
    /* --redis without --kafka is a configuration error, before any backend. */
    cr_assert_null(bp_open(&cfg, &hooks));
}
