/* The broker (node/broker.c): process-wide state, the config, the
 * backplane, the subscription and retained indexes, the session registry
 * and the counters. Passed around, never global.
 *
 * broker  process-wide (this header)
 * worker  one thread and its loop (node/worker.h)
 * conn    one client connection, on one worker (node/conn.h)
 * session MQTT session state, owned by one worker at a time (node/session.h) */
#ifndef SHOAL_NODE_BROKER_H
#define SHOAL_NODE_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/backplane.h"
#include "node/auth.h"
#include "node/config.h"
#include "node/http.h"
#include "node/tls.h"
#include "node/ws_conn.h"
#include "node/trie.h"

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
    uint16_t port;          /* the bound MQTT port */
    char node_id[128];
    uint64_t start_ms;
    _Atomic bool stopping;
    _Atomic bool running;   /* workers started: the backplane may post to them */
    _Atomic uint64_t next_conn_id;
    broker_stats stats;
    pthread_rwlock_t subs_lock;
    trie *subs;
    pthread_rwlock_t retain_lock;
    retain *retained;
    pthread_mutex_t sess_lock;
    session **sess_tab; /* client id → session, chained through reg_next */
    uint32_t sess_buckets; /* a power of two, under sess_lock */
    _Atomic uint64_t sess_count;
    _Atomic uint64_t sess_online;      /* sessions with a connection (session.online) */
    _Atomic uint64_t sess_persistent;  /* registered sessions that outlive their connection */
    /* Feature state, each owned by its module. */
    http_ops ops;     /* node/http.h: drain */
    tls_state tls;    /* node/tls.h */
    ws_ports ws;      /* node/ws_conn.h */
    auth_state auth;  /* node/auth.h */
};

/* broker.c: the indexes, locks and session table (cfg is borrowed for the
 * broker's life); broker_free also frees the backplane, after bp_close. */
void broker_init(broker *b, config *cfg, int nworkers, trie_strategy strategy);
void broker_free(broker *b);

#endif
