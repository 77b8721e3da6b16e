/* SPDX-License-Identifier: Apache-2.0 */
/* A worker (node/worker.c): one thread, one event_base, one listener
 * (SO_REUSEPORT); it owns its connections and the sessions attached to
 * them. Other threads reach a worker only through its inbox. */
#ifndef SHOAL_NODE_WORKER_H
#define SHOAL_NODE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/drain.h"
#include "node/http/metrics.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_sync.h"
#include "node/mqtt/stream_hold.h"
#include "node/net/proxy.h"
#include "node/net/tls.h"
#include "node/net/ws_conn.h"
#include "node/timer_wheel.h"

struct event_base;
struct event;
struct evconnlistener;
typedef struct broker broker;
typedef struct worker worker;
typedef struct conn conn;

/* Items a worker receives from other threads. */
enum inbox_kind {
    IN_DELIVER = 1, /* a delivery for session s */
    IN_TAKEOVER,    /* give session s to worker `from` for conn `conn_id` */
    IN_ADOPT,       /* session s is now yours, for conn `conn_id` */
    IN_REFUSED,     /* the claim of conn `conn_id` lost to a newer one */
    IN_STOP,        /* shut down */
    IN_REMOTE,      /* a message from the backplane to deliver here (d.m) */
    IN_QOS2_REPORT, /* the backplane's answer for inbound QoS 2 id `pid` of session s:
                      * stored (`clean`), for the connection tagged `conn_id`,
                      * acknowledged with reason code `epoch` */
    IN_POSITION,    /* the stream passed partition `conn_id` up to offset `epoch` (node/mqtt/session_stream.c) */
    IN_SHARE_DEAD,  /* replay a dead node's share of a group: job in conn_id (node/mqtt/share.c) */
    IN_REVOKE,      /* another node claimed client id d.m->topic at `epoch`; s: its
                      * session here, if any (node/mqtt/session_sync.c) */
    IN_SYNC,        /* every session this worker owns: store again
                      * (`epoch`: SYNC_REASSERT; node/mqtt/session_sync.c) */
    IN_AUTH_RESULT, /* the password of conn `conn_id` is right (`clean`) or not (node/auth/hash.c) */
};

typedef struct inbox_item {
    uint8_t kind;
    bool clean;
    uint16_t pid; /* IN_QOS2_REPORT */
    int from;
    session *s; /* ref held */
    uint64_t conn_id;
    uint64_t epoch;
    delivery d;
} inbox_item;

typedef struct item_vec {
    inbox_item *v;
    uint32_t n;
    uint32_t cap;
} item_vec;

struct worker {
    int id;
    broker *b;
    pthread_t thread;
    bool started; /* thread runs: worker_stop_all joins it */
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *wake; /* EV_READ on wake_fd: the inbox has items */
    int wake_fd;        /* eventfd other threads write to */
    struct event *reap;
    struct event *tick;
    /* Plain TCP connections with output to write at the end of this turn
     * (node/net/conn_io.c). */
    struct event *flush;
    conn **flushq;
    uint32_t n_flush, cap_flush;
    pthread_mutex_t inbox_lock;
    item_vec inbox;
    /* --max-inbox (node/worker.c): QoS 0 deliveries are dropped while the
     * inbox holds that many items. Under inbox_lock. */
    bool inbox_full;
    uint32_t inbox_drops_tick;    /* dropped since the last 1 s tick */
    uint64_t inbox_drops_episode; /* dropped since the inbox became full */
    item_vec *outbox;             /* one per worker, flushed once per batch */
    bool outbox_dirty;
    conn *conns;        /* live connections */
    conn **by_id;       /* open addressing on id, linear probing */
    uint32_t by_id_cap; /* power of two */
    uint32_t by_id_used;
    conn *dead; /* closed, freed by the reap event */
    uint32_t nconns;
    uint32_t nactive; /* CS_ACTIVE connections (conn_set_state) */
    twheel timers;    /* the connections' deadlines (node/timer_wheel.h), advanced by the tick */
    /* Per-worker counters, summed for $SYS and metrics. */
    _Atomic uint64_t msgs_in, msgs_out, bytes_in, bytes_out, dropped;
    /* Feature state, each owned by its module. */
    worker_metrics metrics;      /* node/http/metrics.h */
    tls_worker tls;              /* node/net/tls.h */
    ws_worker ws;                /* node/net/ws_conn.h */
    proxy_worker proxy;          /* node/net/proxy.h */
    sync_worker sync;            /* node/mqtt/session_sync.h */
    drain_worker drain;          /* node/drain.h */
    hold_worker hold;            /* node/mqtt/stream_hold.h */
    struct dead_node *dead_node; /* node/mqtt/dead_node.h: worker 0 of a cluster node */
};

/* Monotonic milliseconds. */
uint64_t now_ms(void);

/* worker.c */
/* Loops and inboxes only: no listeners, no threads (broker_open; an
 * in-process broker's caller runs these loops itself). */
int worker_init_all(broker *b);
/* Listeners and one thread per worker, after worker_init_all (broker_start). */
int worker_start_all(broker *b);
void worker_stop_all(broker *b);
/* After bp_close, with the loops stopped: run what the backplane posted to
 * them last (each call is answered once, BP_ECLOSED at shutdown), before
 * worker_release_conns frees what those answers refer to. */
void worker_run_closed(broker *b);
void worker_release_conns(broker *b);
void worker_free_all(broker *b);
void worker_post(worker *from, int to, const inbox_item *it); /* batched; from may be NULL */
void worker_flush(worker *w);
/* Live connections by id, for completions that must look them up again. */
conn *worker_find_conn(worker *w, uint64_t id);
void worker_index_conn(worker *w, conn *c);
void worker_unindex_conn(worker *w, conn *c);
void worker_sys_tick(worker *w);
/* Post from a thread that is not a worker (the backplane's). */
void worker_post_external(broker *b, int to, const inbox_item *it);

#endif
