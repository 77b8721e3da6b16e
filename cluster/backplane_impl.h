/* The operations table each backplane implementation fills in. */
#ifndef SHOAL_CLUSTER_BACKPLANE_IMPL_H
#define SHOAL_CLUSTER_BACKPLANE_IMPL_H

#include <stdatomic.h>

#include "cluster/backplane.h"

#define BP_MAX_WORKERS 64

typedef struct bp_ops {
    const char *kind;
    void (*close)(backplane *bp);
    void (*free)(backplane *bp);
    void (*publish)(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg);
    void (*route_add)(backplane *bp, int worker, const char *filter, const char *group);
    void (*route_remove)(backplane *bp, int worker, const char *filter, const char *group);
    void (*retain_set)(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg);
    void (*session_claim)(backplane *bp, int worker, const char *client_id, bp_session_cb cb, void *arg);
    void (*session_store)(backplane *bp, int worker, const bp_session *s, uint32_t expiry_s, bp_done_cb cb,
                          void *arg);
    void (*session_drop)(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb,
                         void *arg);
    void (*will_schedule)(backplane *bp, int worker, const char *client_id, const bp_message *will,
                          uint32_t delay_s);
    void (*will_cancel)(backplane *bp, int worker, const char *client_id);
    void (*nodes)(backplane *bp, int worker, bp_nodes_cb cb, void *arg);
    void (*stats)(const backplane *bp, bp_stats *out);
    /* Optional (NULL = no limit): see bp_max_publish_size. */
    uint32_t (*max_publish)(const backplane *bp, uint32_t max_topic, uint32_t max_client_id);
} bp_ops;

/* A latency histogram updated from any thread. */
typedef struct bp_hist {
    _Atomic uint64_t counts[BP_LATENCY_BUCKETS + 1];
    _Atomic uint64_t sum_us;
} bp_hist;
void bp_hist_observe(bp_hist *h, uint64_t us);
void bp_hist_read(bp_hist *h, uint64_t *counts, double *sum_s);

struct backplane {
    const bp_ops *ops;
    bp_config cfg;
    bp_hooks hooks;
    struct event_base *bases[BP_MAX_WORKERS];
    bool closed;
    _Atomic bool ready; /* written by the backplane thread, read by workers */
    void *impl;
};

backplane *bp_local_open(const bp_config *cfg, const bp_hooks *hooks);
backplane *bp_rk_open(const bp_config *cfg, const bp_hooks *hooks);

/* Run a completion on the worker's loop on its next turn, so callbacks
 * never re-enter the caller. */
void bp_defer_done(backplane *bp, int worker, bp_done_cb cb, void *arg, bp_status st);

#endif
