/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by run.c (phases, timers, connections) and traffic.c
 * (what publishers and subscribers do). Not for use outside bench/. */
#ifndef SHOAL_BENCH_RUN_IMPL_H
#define SHOAL_BENCH_RUN_IMPL_H

#include "bench/board.h"
#include "bench/client.h"
#include "bench/opts.h"
#include "bench/run.h"
#include "bench/track.h"

typedef enum role { ROLE_CONN, ROLE_PUB, ROLE_SUB, ROLE_SEED } role;

/* A retained-scenario subscriber's round: SUBSCRIBE, collect every
 * retained message, UNSUBSCRIBE, again. */
typedef enum rstate { R_IDLE, R_WAIT, R_UNSUB } rstate;

typedef struct run run;

typedef struct peer {
    run *r;
    client *c;
    uint32_t gid;
    uint32_t idx; /* publisher id, or subscriber number */
    uint8_t role;
    bool up;      /* CONNACK accepted and not ended since */
    bool ready;   /* set up (connected, subscribed) */
    bool failed;  /* setup failed: left out of the counts */
    bool counted; /* ready when the run started: its losses count */
    uint64_t attempt_ns;
    /* publisher and seeder */
    uint32_t seq;
    uint64_t next_ns;
    uint64_t acked;
    char *topic;
    /* subscriber */
    track_map seen;
    uint64_t distinct;
    /* retained subscriber */
    uint8_t rstate;
    uint32_t rgot;
    uint64_t round_t0;
    uint64_t *rbits;
} peer;

struct run {
    const bench_opts *o;
    board *b;
    int proc;
    board_live *live;
    struct event_base *base;
    struct event *tick;
    struct event *sec;
    struct event *sigterm;
    client_cfg ccfg;
    peer *peers;
    uint32_t n;
    peer *seeder; /* retained, worker 0 only */
    board_phase phase;
    bool stopping; /* SIGTERM: every phase still to come is cut short too */
    /* setup */
    uint32_t next_connect;
    uint32_t pending;
    uint32_t n_ready;
    uint32_t n_failed;
    uint64_t connect_interval_ns;
    uint64_t next_connect_ns;
    uint64_t setup_deadline;
    /* run and drain */
    uint64_t start_ns;
    uint64_t end_ns;
    uint64_t drain_deadline;
    uint64_t last_ack_ns;
    uint64_t pub_interval_ns; /* 0: closed loop */
    bool pubs_final;
    uint64_t total_acked; /* all workers' publishers, once final */
    uint64_t group_unflushed;
    uint64_t close_deadline;
    /* retained seeder */
    uint32_t seed_next;
    uint32_t seed_acked;
    bool clearing;
    uint8_t *payload;
    board_result res; /* ~70 KiB: run lives on the heap */
};

extern const client_cbs run_client_cbs;

uint64_t run_now(void);

/* traffic.c */
void traffic_pump(run *r, peer *p, uint64_t now);
void traffic_pump_all(run *r, uint64_t now);
void traffic_seed(run *r);
void traffic_start_round(run *r, peer *p, uint64_t now);
void traffic_round_timeouts(run *r, uint64_t now);
bool traffic_subs_satisfied(run *r, uint64_t now);
void traffic_tally(run *r);
void traffic_flush_group(run *r);

/* run.c: a peer's setup finished, well or badly; the connection callbacks
 * that traffic.c puts into run_client_cbs. */
void run_peer_ready(run *r, peer *p);
void run_peer_failed(run *r, peer *p);
void run_up_cb(client *c);
void run_end_cb(client *c, client_end why, uint8_t rc);

#endif
