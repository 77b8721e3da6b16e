/* SPDX-License-Identifier: Apache-2.0 */
/* Cross-node back-pressure, the node's side (docs/architecture.md,
 * "Cross-node back-pressure"): which online sessions and which worker
 * inboxes are behind, so that the backplane stops reading the stream. */
#ifndef SHOAL_NODE_STREAM_HOLD_H
#define SHOAL_NODE_STREAM_HOLD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct worker worker;
typedef struct session session;

/* A session holding the stream, on the worker whose list holds it. */
typedef struct hold_entry {
    session *s;           /* a ref */
    uint64_t progress_ms; /* when it last took a message (now_ms) */
} hold_entry;

/* worker.hold: the list is the worker's thread only; pending any thread. */
typedef struct hold_worker {
    hold_entry *v;
    uint32_t n, cap;
    /* Inbox items posted and not handled yet (worker.c): read by the
     * backplane thread to tell a worker that is behind. */
    _Atomic uint32_t pending;
} hold_worker;

/* A worker's inbox holds the stream past INBOX_HIGH pending items and
 * lets go below INBOX_LOW. They also bound what is in flight toward a
 * session once the stream stops: at most about INBOX_HIGH per worker. */
#define HOLD_INBOX_HIGH 512u
#define HOLD_INBOX_LOW 128u

/* After a push to s's queue (qos: the delivery's): an online session past
 * its mark starts holding the stream. */
void hold_pushed(worker *w, session *s, uint8_t qos);
/* After a pop (the client took a message): progress, and the hold ends
 * once the queue is down to half the mark. */
void hold_popped(worker *w, session *s);
/* How many messages a session holding the stream may queue: --max-queued
 * plus what can still be in flight toward it (0 when not holding). */
uint32_t hold_queue_limit(worker *w, session *s);
/* Once a second: let go of sessions that are offline, caught up, or stuck
 * (no progress for BACKPRESSURE_STALL_MS). */
void hold_tick(worker *w);
/* After the loops stopped, before sessions are freed. */
void hold_worker_free(worker *w);
/* bp_hooks.stream_behind (the backplane thread). */
bool hold_stream_behind(void *node);

#endif
