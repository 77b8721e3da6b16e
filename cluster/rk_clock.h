/* SPDX-License-Identifier: Apache-2.0 */
/* Message expiry across nodes without trusting another node's wall clock
 * (docs/architecture.md, "Message expiry across nodes").
 *
 * A record carries its expiry as a deadline on the writer's wall clock
 * (rk_record.h) and its Kafka timestamp (CreateTime) on that same clock, so
 * the receiving node needs only the difference between the writer's clock
 * and its own. It measures it on the live stream: for each writer, the
 * smallest (local wall time when read - record timestamp) over the current
 * and the previous 5 s window, which is the clock difference plus the
 * fastest one-way stream latency of those windows. The writer's deadline plus that offset is
 * the deadline on this node's clock: never earlier than the true one, later
 * by at most that fastest latency (milliseconds on a healthy cluster) plus
 * the clocks' drift since. A writer's clock stepped back (it restarted with
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

#endif
