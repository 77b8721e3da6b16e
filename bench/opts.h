/* SPDX-License-Identifier: Apache-2.0 */
/* shoal-bench's command line and scenario table. */
#ifndef SHOAL_BENCH_OPTS_H
#define SHOAL_BENCH_OPTS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OPTS_MAX_ADDRS 256
#define OPTS_MAX_SRCS 4096
#define OPTS_TOPIC_MAX 128

/* Who should receive what a publisher sends. */
typedef enum opts_map {
    MAP_NONE,     /* conn: no messages */
    MAP_ALL,      /* every subscriber gets every publisher's messages */
    MAP_PAIR,     /* subscriber i gets publisher i's */
    MAP_GROUP,    /* the subscribers form one shared group: each message once */
    MAP_RETAINED, /* subscribers fetch the seeded retained messages, round after round */
} opts_map;

typedef struct opts_scenario {
    const char *name;
    opts_map map;
    char letter;                 /* topic level that keeps scenarios apart */
    uint32_t pubs, subs, topics; /* defaults */
    double rate;                 /* default --rate */
    bool split_addrs;            /* publishers on address 0, subscribers on address 1 */
    const char *help;
} opts_scenario;

typedef struct bench_opts {
    const opts_scenario *sc;
    int qos;
    uint32_t size;
    int version;
    double rate;
    uint32_t inflight;
    double duration;
    double drain;
    double setup_timeout;
    double connect_timeout;
    uint32_t pending; /* connects in flight at once, per process */
    struct sockaddr_in addrs[OPTS_MAX_ADDRS];
    int n_addrs;
    struct in_addr srcs[OPTS_MAX_SRCS];
    int n_srcs;
    int procs;
    int keepalive;
    bool clean;
    char prefix[48];
    char username[64]; /* "": none */
    char password[64]; /* "": none */
    uint32_t conns, pubs, subs, topics;
    bool quiet;     /* no progress lines */
    bool subscribe; /* conn: each connection subscribes to its own topic */
} bench_opts;

/* Parses argv (argv[0] is the program). On failure writes a message into
 * err and returns SH_ERR (-1); returns 1 when help was printed. */
int opts_parse(bench_opts *o, int argc, char **argv, char *err, size_t errlen);
void opts_usage(FILE *out);

/* Total clients of the run: connections, or publishers + subscribers (+1
 * seeder for retained). Global client ids are 0..n-1: publishers first. */
uint32_t opts_clients(const bench_opts *o);

/* Topic of publisher `pub` (or of retained topic `pub`, or conn's own
 * topic of connection `pub`), and the filter of subscriber `sub`, written
 * into buf (OPTS_TOPIC_MAX bytes). */
void opts_topic(const bench_opts *o, uint32_t pub, char *buf);
void opts_filter(const bench_opts *o, uint32_t sub, char *buf);

/* Textual "a.b.c.d:port". */
void opts_addr_text(const struct sockaddr_in *sa, char *buf, size_t len);

#endif
