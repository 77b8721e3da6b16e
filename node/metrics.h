/* Broker figures for GET /metrics and the health checks: summed per-worker
 * counters, index sizes, loop lag and process figures. */
#ifndef SHOAL_NODE_METRICS_H
#define SHOAL_NODE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct broker broker;
typedef struct worker worker;
#include "node/metrics_text.h"

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

#endif
