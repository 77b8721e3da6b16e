/* SPDX-License-Identifier: Apache-2.0 */
/* Drain (node/drain.c): take a node out of service without losing what
 * its clients were told is safe. SIGTERM drains and then exits; POST
 * /api/v1/drain drains and stays up, not ready. docs/architecture.md,
 * "Drain".
 *
 * Each worker runs its own drain on a 100 ms timer, in phases:
 *   quiesce     listeners closed, input no longer read, connections that
 *               have no CONNACK yet closed; waits for the QoS 1/2
 *               publishes already taken until the backplane answers them
 *               (their PUBACK/PUBREC go out)
 *   disconnect  clients closed at --drain-rate per second (node-wide),
 *               with DISCONNECT 0x8B, or 0x9C and a Server Reference with
 *               --server-reference (3.1.1: the TCP close)
 *   flush       their session stores answered, their last bytes written
 * and the whole drain ends by --drain-timeout, closing whatever is left. */
#ifndef SHOAL_NODE_DRAIN_H
#define SHOAL_NODE_DRAIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct event;
typedef struct broker broker;
typedef struct worker worker;

/* --drain-timeout, --drain-rate, --server-reference (config.drain). */
typedef struct drain_config {
    int timeout;            /* seconds, the whole drain */
    uint32_t rate;          /* disconnects per second, node-wide */
    char *server_reference; /* MQTT 5 Server Reference for 0x9C, or NULL (0x8B) */
} drain_config;

/* The longest --server-reference: it goes into one DISCONNECT packet. */
#define DRAIN_SERVER_REFERENCE_MAX 1024

enum drain_state {
    DRAIN_OFF = 0,
    DRAIN_RUNNING,
    DRAIN_DONE,
};

/* broker.drain: set once by drain_begin, then read by any thread. */
typedef struct drain_broker {
    _Atomic int state;              /* enum drain_state */
    uint64_t start_ms, deadline_ms; /* written before the workers are told */
    uint64_t quiesce_end_ms;        /* in-flight publishes waited for until then at most */
    uint64_t spread_end_ms;         /* disconnects done by then at most */
    _Atomic uint64_t connections;   /* at the start */
    _Atomic uint64_t disconnected;  /* by the drain, gently */
    _Atomic uint64_t forced;        /* closed at the deadline */
    _Atomic uint64_t elapsed_ms;    /* when done */
    _Atomic uint64_t last_log_ms;
    _Atomic int workers_done;
} drain_broker;

/* worker.drain: the worker's thread, except the counters other threads
 * read for progress lines. */
typedef struct drain_worker {
    struct event *timer;
    uint8_t phase;
    uint32_t to_disconnect; /* established connections when the disconnect phase began */
    uint32_t done;          /* of those, disconnected so far */
    uint64_t phase_ms;      /* when the disconnect phase began */
    uint64_t end_ms;        /* when its disconnects are due to be over */
    /* QoS 1/2 publishes handed to the backplane and not answered yet
     * (node/mqtt/handle_publish.c), session stores likewise
     * (node/mqtt/session_sync.c). */
    _Atomic uint32_t inflight;
    _Atomic uint32_t stores;
} drain_worker;

/* Start draining (any thread); by: who asked, for the log. False when a
 * drain already began. */
bool drain_begin(broker *b, const char *by);
/* enum drain_state. */
int drain_state_of(const broker *b);
/* Connections not closed yet (a progress figure). */
uint64_t drain_remaining(const broker *b);

/* Close the worker's listeners; how many were open (the worker's thread). */
uint32_t drain_close_listeners(worker *w);
void drain_worker_free(worker *w);

#endif
