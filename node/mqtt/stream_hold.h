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
    session *s;        /* a ref */
    uint64_t since_ms; /* when this hold began (now_ms) */
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

/* How long a session may hold the stream without catching up (its queue
 * back at half the mark), counted over its holds. The stream stops for
 * bursts, not for a subscriber that is slower than the traffic: past the
 * budget it lets go until it catches up, and its excess spills (persistent:
 * kept in Kafka, replayed) or is dropped (clean), as --max-queued says.
 * Checked once a tick, so a hold lasts up to about twice this. */
#define HOLD_BUDGET_MS 1000u

/* After a push to s's queue (qos: the delivery's): an online session past
 * its mark starts holding the stream, unless it spent its budget or reads
 * from Kafka (spilled or replaying: the stream does not feed its queue). */
void hold_pushed(worker *w, session *s, uint8_t qos);
/* After a pop (the client took a message) or a replay's end: the hold
 * ends once the queue is down to half the mark, and the budget is whole
 * again if s is back on the live stream. */
void hold_popped(worker *w, session *s);
/* How many messages a session holding the stream may queue: --max-queued
 * plus what can still be in flight toward it (0 when not holding). */
uint32_t hold_queue_limit(worker *w, session *s);
/* Once a second: let go of sessions that are offline, caught up, or out
 * of budget (HOLD_BUDGET_MS; a stuck one too). */
void hold_tick(worker *w);
/* After the loops stopped, before sessions are freed. */
void hold_worker_free(worker *w);
/* bp_hooks.stream_behind (the backplane thread). */
bool hold_stream_behind(void *node);

#endif
