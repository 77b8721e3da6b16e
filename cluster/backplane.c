#include "cluster/backplane.h"

#include <event2/event.h>
#include <string.h>

#include "cluster/backplane_impl.h"
#include "common/alloc.h"
#include "common/log.h"

const char *bp_status_name(bp_status st)
{
    switch (st) {
    case BP_OK:
        return "ok";
    case BP_ECLOSED:
        return "closed";
    case BP_EUNAVAILABLE:
        return "unavailable";
    case BP_ESTALE:
        return "stale";
    case BP_ENOTFOUND:
        return "not-found";
    }
    return "unknown";
}

backplane *bp_open(const bp_config *cfg, const bp_hooks *hooks)
{
    if (cfg->redis_url || cfg->kafka_brokers) {
        if (!cfg->redis_url || !cfg->kafka_brokers) {
            sh_log(SH_ERROR, "event=backplane_config msg=\"--redis and --kafka go together\"");
            return NULL;
        }
        return bp_rk_open(cfg, hooks);
    }
    return bp_local_open(cfg, hooks);
}

int bp_attach(backplane *bp, int worker, struct event_base *base)
{
    if (worker < 0 || worker >= BP_MAX_WORKERS || bp->bases[worker]) {
        return -1;
    }
    bp->bases[worker] = base;
    return 0;
}

void bp_close(backplane *bp)
{
    if (bp && !bp->closed) {
        bp->closed = true;
        bp->ops->close(bp);
    }
}

void bp_free(backplane *bp)
{
    if (bp) {
        bp->ops->free(bp);
    }
}

const double bp_latency_bounds[BP_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

void bp_hist_observe(bp_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < BP_LATENCY_BUCKETS && (double)us / 1e6 > bp_latency_bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void bp_hist_read(bp_hist *h, uint64_t *counts, double *sum_s)
{
    for (size_t i = 0; i <= BP_LATENCY_BUCKETS; i++) {
        counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    }
    *sum_s = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
}

void bp_get_stats(const backplane *bp, bp_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (bp->ops->stats) {
        bp->ops->stats(bp, out);
    }
}

const char *bp_kind(const backplane *bp)
{
    return bp->ops->kind;
}

uint32_t bp_max_publish_size(const backplane *bp, uint32_t max_topic, uint32_t max_client_id)
{
    return bp->ops->max_publish ? bp->ops->max_publish(bp, max_topic, max_client_id) : 0;
}

bool bp_is_ready(const backplane *bp)
{
    return bp->ready && !bp->closed;
}

typedef struct deferred {
    bp_done_cb cb;
    void *arg;
    bp_status st;
} deferred;

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    deferred d = *(deferred *)arg;
    sh_free(arg, sizeof(deferred));
    d.cb(d.st, d.arg);
}

void bp_defer_done(backplane *bp, int worker, bp_done_cb cb, void *arg, bp_status st)
{
    if (!cb) {
        return;
    }
    deferred *d = sh_malloc(sizeof(*d));
    d->cb = cb;
    d->arg = arg;
    d->st = bp->closed ? BP_ECLOSED : st;
    struct timeval now = {0, 0};
    if (event_base_once(bp->bases[worker], -1, EV_TIMEOUT, deferred_cb, d, &now) != 0) {
        /* The loop is gone: complete here rather than never. */
        sh_free(d, sizeof(*d));
        cb(BP_ECLOSED, arg);
    }
}

#define FORWARD(op, ...)                   \
    do {                                   \
        if (bp->ops->op) {                 \
            bp->ops->op(bp, __VA_ARGS__);  \
        }                                  \
    } while (0)

void bp_publish(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    bp->ops->publish(bp, worker, m, cb, arg);
}

void bp_route_add(backplane *bp, int worker, const char *filter, const char *group)
{
    FORWARD(route_add, worker, filter, group);
}

void bp_route_remove(backplane *bp, int worker, const char *filter, const char *group)
{
    FORWARD(route_remove, worker, filter, group);
}

void bp_retain_set(backplane *bp, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    bp->ops->retain_set(bp, worker, m, cb, arg);
}


void bp_session_claim(backplane *bp, int worker, const char *client_id, bp_session_cb cb, void *arg)
{
    bp->ops->session_claim(bp, worker, client_id, cb, arg);
}


void bp_session_store(backplane *bp, int worker, const bp_session *s, uint32_t expiry_s, bp_done_cb cb,
                      void *arg)
{
    bp->ops->session_store(bp, worker, s, expiry_s, cb, arg);
}

void bp_session_drop(backplane *bp, int worker, const char *client_id, uint64_t epoch, bp_done_cb cb, void *arg)
{
    bp->ops->session_drop(bp, worker, client_id, epoch, cb, arg);
}

void bp_will_schedule(backplane *bp, int worker, const char *client_id, const bp_message *will,
                      uint32_t delay_s)
{
    FORWARD(will_schedule, worker, client_id, will, delay_s);
}

void bp_will_cancel(backplane *bp, int worker, const char *client_id)
{
    FORWARD(will_cancel, worker, client_id);
}

void bp_nodes(backplane *bp, int worker, bp_nodes_cb cb, void *arg)
{
    bp->ops->nodes(bp, worker, cb, arg);
}
