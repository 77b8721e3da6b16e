/* SPDX-License-Identifier: Apache-2.0 */
/* Message expiry across nodes without trusting another node's wall clock
 * (docs/architecture.md, "Message expiry across nodes").
 *
 * The cluster clock. Redis's clock is the cluster's reference already
 * (leases, session and share expiry read TIME in scripts). Each node
 * measures its own offset to it, NTP style: a round trip that reads Redis's
 * TIME, sent at t0 and answered at t1 on this node's monotonic clock, puts
 * Redis's reading somewhere in [t0, t1], so offset = reading - (t0 + t1) / 2
 * is off by at most half the round trip (rk_refclock). Of the last
 * RK_REFCLOCK_SAMPLES samples (one per heartbeat, a few at start-up) the
 * one with the smallest bound counts, the bound growing with the sample's
 * age at RK_REFCLOCK_DRIFT_PPM for the two clocks' rate difference. A
 * writer stamps a record's expiry deadline on that clock (record version
 * 3, rk_record.h) and a reader moves it onto its own with its own offset:
 * the deadline is off by at most the two nodes' half round trips to Redis
 * plus the drift since, whatever the record's way through Kafka took.
 *
 * The fallback for older writers (record versions 1 and 2, a deadline on
 * the writer's wall clock), while a cluster is upgraded: the receiving node
 * estimates the writer's clock on the live stream. For each writer, the
 * smallest (local wall time when read - record timestamp) over the current
 * and the previous 5 s window, which is the clock difference plus the
 * fastest one-way stream latency of those windows. The writer's deadline plus that offset is
 * the deadline on this node's clock: never earlier than the true one, later
 * by at most that fastest latency plus the clocks' drift since. A writer's
 * clock stepped back (it restarted with
 * another clock) counts from the next window: until then, at most 5 s, its
 * messages may expire early by the step. A writer never read live yet (this node just
 * started, or it died before) has no offset: its clock is trusted, as
 * before. The node's own records need none. */
#ifndef SHOAL_CLUSTER_RK_CLOCK_H
#define SHOAL_CLUSTER_RK_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RK_CLOCK_WRITERS 64      /* writers followed; the least recently read one makes room */
#define RK_CLOCK_WINDOW_MS 5000u /* the minimum is kept per window; the offset is the last two's */
/* Two windows whose minimums differ by more than this saw the writer's clock
 * step (a restart under another clock): the newer one counts alone. */
#define RK_CLOCK_STEP_MS 1000
#define RK_CLOCK_ID_MAX 255

typedef struct rk_clock_writer {
    uint8_t id[RK_CLOCK_ID_MAX];
    uint8_t id_len;
    bool used, has_prev;
    int64_t cur, prev;  /* min(local read time - record timestamp), ms: this window, the one before */
    uint64_t window_ms; /* local monotonic ms the current window began */
    uint64_t last_ms;   /* local monotonic ms of the last record read (which writer makes room) */
} rk_clock_writer;

typedef struct rk_clocks {
    pthread_mutex_t lock; /* the live consumer writes, replays read */
    rk_clock_writer w[RK_CLOCK_WRITERS];
} rk_clocks;

void rk_clocks_init(rk_clocks *c);
void rk_clocks_destroy(rk_clocks *c);
/* The live stream read a record of `writer` with timestamp ts_ms (the
 * writer's clock) at now_unix_ms (this node's wall clock), now_mono_ms. */
void rk_clocks_observe(rk_clocks *c, const uint8_t *writer, size_t len, int64_t ts_ms, uint64_t now_unix_ms,
                       uint64_t now_mono_ms);
/* This node's clock minus the writer's (plus the fastest latency); false
 * when the writer was never read live. */
bool rk_clocks_offset(rk_clocks *c, const uint8_t *writer, size_t len, int64_t *offset_ms);
/* A writer's expiry deadline (Unix ms on its clock, 0 = never) on this
 * node's clock, given the offset; an expired result is still nonzero. */
uint64_t rk_expiry_local(uint64_t expiry_at_unix_ms, int64_t offset_ms);

/* ---- the cluster clock: this node's offset to Redis's clock ---- */

#define RK_REFCLOCK_SAMPLES 8
/* The rate difference assumed between this node's monotonic clock and
 * Redis's clock when an older sample is weighed against a newer one: well
 * above a crystal's (tens of ppm) and NTP's slew limit's everyday use. */
#define RK_REFCLOCK_DRIFT_PPM 200

typedef struct rk_refclock_sample {
    int64_t offset_us; /* Redis's clock - this node's monotonic clock */
    uint64_t rtt_us;   /* the round trip it came with */
    uint64_t at_us;    /* local monotonic time of the answer */
} rk_refclock_sample;

typedef struct rk_refclock {
    pthread_mutex_t lock; /* the backplane thread writes, workers and replays read */
    rk_refclock_sample s[RK_REFCLOCK_SAMPLES];
    unsigned n, next; /* samples held; the slot the next one takes */
} rk_refclock;

void rk_refclock_init(rk_refclock *c);
void rk_refclock_destroy(rk_refclock *c);
/* A round trip sent at sent_us and answered at recv_us (this node's
 * monotonic clock, us) that read Redis's clock as ref_us (Unix us). False
 * (and ignored) when it cannot be one: answered before it was sent, or no
 * reading. */
bool rk_refclock_add(rk_refclock *c, uint64_t sent_us, uint64_t recv_us, int64_t ref_us);
/* The offset (Redis's clock - monotonic, us) of the sample with the
 * smallest error bound at now_us, and that bound (half its round trip plus
 * RK_REFCLOCK_DRIFT_PPM of its age); false before the first sample. */
bool rk_refclock_offset(rk_refclock *c, uint64_t now_us, int64_t *offset_us, uint64_t *err_us);
/* A deadline (ms, 0 = never) read on one clock whose time is now_from_ms,
 * moved onto another clock whose time is now_to_ms at the same moment; an
 * expired result is still nonzero. */
uint64_t rk_expiry_move(uint64_t expiry_ms, uint64_t now_from_ms, uint64_t now_to_ms);

#endif
