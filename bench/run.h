/* SPDX-License-Identifier: Apache-2.0 */
/* One worker process of shoal-bench: its share of the clients, from
 * connect to the result slot on the board. */
#ifndef SHOAL_BENCH_RUN_H
#define SHOAL_BENCH_RUN_H

#include "bench/board.h"
#include "bench/opts.h"

/* Runs worker `proc` (0..procs-1) to the end: every client of the run
 * whose global id g has g % procs == proc (the retained seeder is always
 * worker 0's). Blocks; returns SH_OK (0) once its result is on the board,
 * SH_ERR (-1) if it could not start. SIGTERM ends the run early. */
int run_worker(const bench_opts *o, board *b, int proc);

#endif
