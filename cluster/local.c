/* The local backplane: one node on its own. Messages need no transport
 * (the node already delivers to its own subscribers), retained messages live
 * in the node's index, and the only member is this node. Every operation
 * completes before it returns. */
#include "cluster/backplane_impl.h"
#include "common/alloc.h"

typedef struct local {
    bp_node_info self;
} local;

static void l_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    if (cb) {
        cb(BP_OK, arg);
    }
}

static void l_retain_set(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    l_publish(bp, worker, m, cb, arg);
}

static void l_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg)
{
    local *l = bp->impl;
    cb(BP_OK, &l->self, 1, arg);
}

/* No backend: every figure stays zero (bp_get_stats cleared them). */
static void l_stats(const backplane *bp, bp_stats *out)
{
}

static void l_close(backplane *bp)
{
}

static void l_free(backplane *bp)
{
    sh_free(bp->impl, sizeof(local));
}

static int l_open(backplane *bp)
{
    local *l = sh_calloc(1, sizeof(*l));
    l->self.node_id = bp->cfg.node_id;
    l->self.address = bp->cfg.address;
    bp->impl = l;
    bp->ready = true;
    return 0;
}

/* Everything stays in this process: no record limit beyond the node's own. */
static uint32_t l_max_publish(const backplane *bp, uint32_t max_topic, uint32_t max_client_id)
{
    return 0;
}

const bp_ops bp_local_ops = {
    .kind = "local",
    .knows_all_subscribers = true,
    .open = l_open,
    .close = l_close,
    .free = l_free,
    .publish = l_publish,
    .retain_set = l_retain_set,
    .nodes = l_nodes,
    .stats = l_stats,
    .max_publish = l_max_publish,
};
