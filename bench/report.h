/* SPDX-License-Identifier: Apache-2.0 */
/* Progress lines and the final JSON result of shoal-bench. */
#ifndef SHOAL_BENCH_REPORT_H
#define SHOAL_BENCH_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "bench/board.h"
#include "bench/opts.h"

/* Live totals over every worker. */
typedef struct report_live {
    uint64_t attempted, connected, refused, dropped, errors, sent, acked, received;
    board_phase phase; /* the slowest worker's */
} report_live;

void report_live_sum(const board *b, report_live *out);
const char *report_phase_name(board_phase ph);

/* One progress line: elapsed, phase, connections, msg/s out and in since
 * `prev` (taken `dt` seconds earlier), errors. */
void report_progress(FILE *out, double elapsed, const report_live *now, const report_live *prev, double dt);

/* The merged result as one JSON object and a newline. `status` is "ok",
 * or why the run is incomplete ("worker failed", "killed after deadline"). */
void report_json(FILE *out, const bench_opts *o, const board *b, const char *status);

#endif
