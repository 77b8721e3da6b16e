/* SPDX-License-Identifier: Apache-2.0 */
/* A broker in this process with no sockets and no threads: the local
 * backplane, N workers whose loops the caller runs (inproc_settle), and
 * clients that are one end of a bufferevent pair whose other end is a real
 * connection (conn_new_bev). Shared by unit tests and tests/fuzz/fuzz_conn.c.
 * Opened and closed with node/broker.c's lifecycle, like node/main.c. */
#ifndef SHOAL_TESTS_INPROC_H
#define SHOAL_TESTS_INPROC_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

/* A caller may define this to keep inproc_down out of coverage (the fuzzer
 * would otherwise spend its time walking empty session buckets). */
#ifndef INPROC_TEARDOWN_ATTR
#define INPROC_TEARDOWN_ATTR
#endif

/* cfg is borrowed and must outlive the broker; --shared-strategy comes
 * from it (NULL: round-robin). */
static inline int inproc_up(broker *b, config *cfg, int nworkers)
{
    broker_open_opts o = {.node_id = "inproc", .address = "inproc:1883", .workers = nworkers};
    if (broker_open(b, cfg, &o) != BROKER_OK || broker_start(b) != BROKER_OK) {
        return -1;
    }
    return 0;
}

static inline INPROC_TEARDOWN_ATTR void inproc_down(broker *b)
{
    broker_stop(b);
    broker_close(b);
}

/* Run every worker's loop until none has anything left to do; a worker may
 * post to another's inbox, so go round until all are idle. after_turn (may
 * be NULL) runs after each round, e.g. to read what clients received.
 * Returns false if the loops never go idle. */
static inline bool inproc_settle(broker *b, void (*after_turn)(void *), void *arg)
{
    for (int round = 0; round < 10000; round++) {
        bool busy = false;
        for (int i = 0; i < b->nworkers; i++) {
            event_base_loop(b->workers[i].base, EVLOOP_NONBLOCK);
        }
        if (after_turn) {
            after_turn(arg);
        }
        for (int i = 0; i < b->nworkers; i++) {
            /* Posts wake a worker through its eventfd: not active until polled. */
            busy |= event_base_get_num_events(b->workers[i].base, EVENT_BASE_COUNT_ACTIVE) > 0 ||
                    b->workers[i].inbox.n > 0;
        }
        if (!busy) {
            return true;
        }
    }
    return false;
}

/* A new connection on worker wi; returns the client's end (NULL on
 * failure) and the connection's id, to find it with worker_find_conn. */
static inline struct bufferevent *inproc_connect(broker *b, int wi, uint64_t *conn_id)
{
    struct bufferevent *pair[2];
    if (bufferevent_pair_new(b->workers[wi].base, 0, pair) != 0) {
        return NULL;
    }
    conn *c = conn_new_bev(&b->workers[wi], pair[1], "inproc", 0);
    if (!c) {
        bufferevent_free(pair[0]);
        return NULL;
    }
    *conn_id = c->id;
    bufferevent_enable(pair[0], EV_READ | EV_WRITE);
    return pair[0];
}

/* The client goes away: what it wrote is delivered, then EOF. The caller
 * settles the loops and frees the client's end. */
static inline void inproc_client_eof(struct bufferevent *client)
{
    bufferevent_enable(client, EV_READ);
    bufferevent_flush(client, EV_WRITE, BEV_FINISHED);
}

#endif
