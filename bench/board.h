/* SPDX-License-Identifier: Apache-2.0 */
/* The board: memory shared by shoal-bench's processes (MAP_SHARED,
 * created before fork). Each worker process writes its own live counters
 * and, at the end, its own result slot; the parent only reads them. The
 * few cross-process fields (start time, phase counters, per-publisher
 * totals) are atomics. */
#ifndef SHOAL_BENCH_BOARD_H
#define SHOAL_BENCH_BOARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/hist.h"

typedef enum board_phase {
    PHASE_SETUP = 0, /* connecting and subscribing */
    PHASE_WAIT,      /* ready, waiting for the other processes */
    PHASE_RUN,       /* publishing, or holding connections */
    PHASE_DRAIN,     /* waiting for acks and deliveries */
    PHASE_DONE,      /* result written */
} board_phase;

/* Counters a worker bumps while it runs (relaxed atomics). */
typedef struct board_live {
    _Atomic uint64_t attempted; /* connections tried */
    _Atomic uint64_t connected; /* CONNACK accepted */
    _Atomic uint64_t refused;   /* never connected: TCP error, timeout or CONNACK refusal */
    _Atomic uint64_t dropped;   /* closed by the broker after CONNACK */
    _Atomic uint64_t errors;    /* protocol errors, failed acks, foreign payloads */
    _Atomic uint64_t sent;      /* PUBLISH written */
    _Atomic uint64_t acked;     /* QoS 1/2 flows completed */
    _Atomic uint64_t received;  /* PUBLISH received */
    _Atomic uint32_t phase;
    char pad[64 - (8 * 8 + 4) % 64];
} board_live;

/* One worker's final result. */
typedef struct board_result {
    bool written;
    uint64_t attempted, connected, refused, dropped, errors;
    uint64_t sent, acked, backlog;
    uint64_t expected, received, lost, dup, ooo;
    uint64_t rounds; /* retained: subscribe rounds completed */
    uint64_t first_attempt_ns, last_connack_ns;
    uint64_t first_send_ns, last_send_ns, last_recv_ns;
    hist lat;        /* delivery latency, µs */
    hist conn_lat;   /* CONNECT attempt to CONNACK, µs */
    hist send_delay; /* open loop: intended to actual send time, µs (the generator's own lateness) */
} board_result;

typedef struct board {
    _Atomic uint64_t start_ns;       /* set by the last process to become ready */
    _Atomic uint32_t ready;          /* processes done with setup */
    _Atomic uint32_t pub_done;       /* processes whose publishers are final */
    _Atomic uint32_t finished;       /* processes that wrote their result */
    _Atomic uint64_t group_distinct; /* shared: distinct deliveries so far */
    uint32_t procs;
    uint32_t n_pubs;
    size_t bytes;
    board_live *live;  /* [procs] */
    board_result *res; /* [procs] */
    /* [n_pubs] each, final once pub_done == procs. For QoS 0 acked = sent. */
    _Atomic uint64_t *pub_sent;
    _Atomic uint64_t *pub_acked;
    /* shared: distinct deliveries per publisher, summed over the group. */
    _Atomic uint64_t *pub_distinct;
} board;

/* Maps a zeroed board; NULL on failure. Pointers inside stay valid in
 * children forked afterwards. */
board *board_create(uint32_t procs, uint32_t n_pubs);
void board_destroy(board *b);

#define board_add(field, n) atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)
#define board_get(field) atomic_load_explicit(&(field), memory_order_relaxed)

#endif
