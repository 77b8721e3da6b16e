/* SPDX-License-Identifier: Apache-2.0 */
/* The broker (node/broker.c): process-wide state, the config, the
 * backplane, the subscription and retained indexes, the session registry
 * and the counters. Passed around, never global.
 *
 * broker  process-wide (this header)
 * worker  one thread and its loop (node/worker.h)
 * conn    one client connection, on one worker (node/conn.h)
 * session MQTT session state, owned by one worker at a time (node/mqtt/session.h) */
#ifndef SHOAL_NODE_BROKER_H
#define SHOAL_NODE_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/backplane.h"
#include "node/auth/auth.h"
#include "node/config.h"
#include "node/drain.h"
#include "node/http/http.h"
#include "node/mqtt/session_sync.h"
#include "node/mqtt/trie.h"
#include "node/net/tls.h"
#include "node/net/ws_conn.h"

typedef struct retain retain;
typedef struct broker broker;
typedef struct worker worker;
typedef struct session session;

typedef struct broker_stats {
    _Atomic uint64_t connections_total;
    _Atomic uint64_t connections_current;
    _Atomic uint64_t refused;
} broker_stats;

/* The session table starts this small and doubles as sessions come, so a
 * small broker does not pay for a big one. */
#define SESS_BUCKETS_MIN 1024

struct broker {
    config *cfg;
    backplane *bp;
    int nworkers;
    worker *workers;
    uint16_t port; /* the bound MQTT port */
    char node_id[128];
    char address[300]; /* what other nodes are told (bp_config.address, kept alive here) */
    bool threaded;     /* broker_open_opts.threads */
    uint64_t start_ms;
    _Atomic bool stopping;
    _Atomic bool running; /* workers started: the backplane may post to them */
    _Atomic uint64_t next_conn_id;
    broker_stats stats;
    pthread_rwlock_t subs_lock;
    trie *subs;
    int share_strategy; /* trie_strategy of --shared-strategy (route.c's cluster-wide key) */
    pthread_rwlock_t retain_lock;
    retain *retained;
    pthread_mutex_t sess_lock;
    session **sess_tab;    /* client id → session, chained through reg_next */
    uint32_t sess_buckets; /* a power of two, under sess_lock */
    _Atomic uint64_t sess_count;
    _Atomic uint64_t sess_online;     /* sessions with a connection (session.online) */
    _Atomic uint64_t sess_persistent; /* registered sessions that outlive their connection */
    /* Feature state, each owned by its module. */
    http_ops ops;                 /* node/http/http.h: drain */
    tls_state tls;                /* node/net/tls.h */
    ws_ports ws;                  /* node/net/ws_conn.h */
    auth_state auth;              /* node/auth/auth.h */
    sync_broker sync;             /* node/mqtt/session_sync.h: under sess_lock */
    drain_broker drain;           /* node/drain.h */
    struct stream_broker *stream; /* node/mqtt/session_stream.h: NULL without a stream */
    /* node/mqtt/stream_hold.c: online sessions holding the stream (any thread);
     * an inbox held it at the last ask (the backplane thread only). */
    _Atomic uint32_t stream_holders;
    bool inbox_held;
};

/* How broker_open sets a broker up beyond its config. */
typedef struct broker_open_opts {
    const char *node_id; /* NULL: --node-id, else "<host>-<pid>" */
    const char *address; /* NULL: --advertise, else "<host>:<port>" */
    int workers;         /* 0: --workers (0 there: one per core) */
    /* true (the process): broker_start binds the listeners, runs each
     * worker on its own thread and starts the HTTP endpoint. false
     * (in-process tests, fuzzers): no sockets, no threads; the caller runs
     * the workers' loops (b->workers[i].base). */
    bool threads;
    bool setup_log; /* configure logging from --log-level/--log-format (main) */
} broker_open_opts;

typedef enum broker_status {
    BROKER_OK = 0,
    BROKER_EAUTH, /* the password or ACL file is bad; the reason is on stderr */
    BROKER_EOPEN, /* the backplane, TLS, a listener or a worker did not start; logged */
} broker_status;

/* The broker's life: open → start → (reload)* → stop → close.
 *
 * broker_open: config → broker (cfg is borrowed for the broker's life):
 * auth tables, node id, indexes, session table, backplane, TLS contexts
 * and the workers' loops and inboxes. On failure the process exits; a
 * broker whose open failed is not closed. */
broker_status broker_open(broker *b, config *cfg, const broker_open_opts *o);
/* Listeners, worker threads and the HTTP endpoint (threads); then the
 * backplane may post to the workers. */
broker_status broker_start(broker *b);
/* SIGHUP: reload the password and ACL files and the TLS certificates; a
 * failure keeps what is loaded. */
void broker_reload(broker *b);
/* Stop serving: the HTTP endpoint first (an admin request may be waiting
 * on a worker), then the workers (their threads are joined). Blocks. */
void broker_stop(broker *b);
/* Free everything: the backplane closes first (its callbacks run), then
 * connections, sessions, loops, indexes, TLS and auth. */
void broker_close(broker *b);

#endif
