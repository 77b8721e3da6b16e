/* SPDX-License-Identifier: Apache-2.0 */
/* Broker figures for GET /metrics and the health checks: summed per-worker
 * counters, index sizes, loop lag and process figures. */
#ifndef SHOAL_NODE_METRICS_H
#define SHOAL_NODE_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct broker broker;
typedef struct worker worker;
#include "node/http/metrics_text.h"
#include "node/mqtt/limits.h"

/* How long a worker may go without its 1 s tick before it counts as stuck. */
#define METRICS_LIVE_MS 5000

/* When the worker's tick is first added (worker_init): its first due time. */
void metrics_worker_init(worker *w);

/* On the worker's thread, from its 1 s tick: records how late the tick
 * fired (loop lag), when it fired (liveness) and how many connections are
 * established (`active`). */
void metrics_tick(worker *w, uint64_t now, uint32_t active);

/* Any thread: append every broker metric to t. Takes the subscription and
 * retained read locks briefly; never touches a worker's own objects. */
void metrics_collect(broker *b, metrics_text *t);

/* Any thread: true if every worker ticked within METRICS_LIVE_MS; else
 * false with the first stuck worker and how long it has been silent. */
bool metrics_loops_alive(broker *b, uint64_t now, int *stuck, uint64_t *silent_ms);

/* A worker's metrics and health state (worker.metrics), beside the
 * counters $SYS shares (worker.msgs_in and the rest). */
typedef struct worker_metrics {
    _Atomic uint64_t msgs_in_qos[3], msgs_out_qos[3];
    _Atomic uint64_t disconnects[256];            /* by reason code, counted in conn.c log_close */
    _Atomic uint64_t connacks[256];               /* CONNACKs sent, by MQTT 5 reason code (3.1.1 codes mapped) */
    _Atomic uint64_t tick_last_ms;                /* when the 1 s tick last ran (monotonic ms) */
    _Atomic uint64_t tick_lag_ms;                 /* how late that tick ran */
    _Atomic uint32_t online;                      /* CS_ACTIVE connections at the last tick */
    uint64_t tick_due_ms;                         /* owner thread only */
    _Atomic uint64_t drops[DROP_COUNT];           /* by reason; worker.dropped is their sum */
    _Atomic uint64_t limit_refusals[LIMIT_COUNT]; /* by limit */
    /* Gauges kept where queues and windows change. Signed: a session moves
     * between workers, so one worker may add what another subtracts. */
    _Atomic int64_t queued, inflight;
} worker_metrics;

#endif
