/* SPDX-License-Identifier: Apache-2.0 */
/* Per-publisher sequence tracking and the benchmark payload.
 *
 * Every benchmark PUBLISH starts with a 20-byte header: a magic word, the
 * publisher's global id, its sequence number and the time the message was
 * meant to be sent (CLOCK_MONOTONIC ns; every process of a run is on this
 * machine, so the clocks agree). Latency is taken from that intended time,
 * so a stalled publisher cannot hide the stall (coordinated omission). */
#ifndef SHOAL_BENCH_TRACK_H
#define SHOAL_BENCH_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACK_MAGIC 0x53484231u /* "SHB1" */
#define TRACK_HEADER 20u
/* Publisher id of the retained scenario's seeder; seq is the topic index. */
#define TRACK_SEEDER 0xFFFFFFFFu

typedef struct track_stamp {
    uint32_t pub;
    uint32_t seq;
    uint64_t intended_ns;
} track_stamp;

/* Writes the header into dst (at least TRACK_HEADER bytes) and fills the
 * rest of the `len` bytes with a pattern. */
void track_stamp_write(const track_stamp *s, uint8_t *dst, size_t len);
/* False when the payload is not one of ours. */
bool track_stamp_read(const uint8_t *src, size_t len, track_stamp *out);

/* What one subscriber has seen of one publisher. Sequence numbers within
 * TRACK_WINDOW of the highest one seen are remembered exactly, so a
 * repeat is told apart from a late first arrival. */
#define TRACK_WINDOW 1024u

typedef struct track {
    uint64_t next;     /* highest sequence seen + 1; 0 before the first */
    uint64_t distinct; /* different sequence numbers seen */
    uint64_t dup;      /* repeats of one already seen */
    uint64_t late;     /* first arrivals below the highest seen: out of order */
    uint64_t bits[TRACK_WINDOW / 64];
} track;

typedef enum track_result {
    TRACK_NEW = 0,  /* first time, in order (gaps allowed: those are losses) */
    TRACK_LATE = 1, /* first time, but after a higher sequence number */
    TRACK_DUP = 2,  /* seen before */
} track_result;

void track_init(track *t);
/* Records one arrival and updates the counters. A sequence number more
 * than TRACK_WINDOW below the highest cannot be checked and counts as late. */
track_result track_seen(track *t, uint64_t seq);

/* A small open-addressing map from publisher id to its track, one per
 * subscriber. Tracks are allocated on first use and owned by the map. */
typedef struct track_map {
    uint32_t *keys; /* publisher id + 1; 0 = empty slot */
    track **vals;
    uint32_t cap; /* power of two, or 0 */
    uint32_t used;
} track_map;

void track_map_init(track_map *m);
void track_map_free(track_map *m);
/* The track of publisher `pub`, created when missing. */
track *track_map_get(track_map *m, uint32_t pub);
/* The track of `pub`, or NULL if nothing from it arrived. */
const track *track_map_find(const track_map *m, uint32_t pub);

#endif
