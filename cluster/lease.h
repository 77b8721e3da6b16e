/* SPDX-License-Identifier: Apache-2.0 */
/* The node's lease on its cluster membership (docs/architecture.md,
 * "Fencing"): pure arithmetic, no clock of its own, so it is unit tested.
 *
 * The node-id claim in Redis lives for a TTL (3 heartbeats) after Redis
 * applied its last renewal. Redis applied it after the node sent it, so on
 * the node's monotonic clock the claim expires no sooner than TTL after the
 * SEND time of the last renewal Redis acknowledged. The node fences itself
 * (closes its clients, refuses new ones) a margin before that: the margin
 * covers the clocks' rate difference (the TTL runs on Redis's clock), a
 * timer that fires late on a busy loop, and the workers' time to close
 * their connections. */
#ifndef SHOAL_CLUSTER_LEASE_H
#define SHOAL_CLUSTER_LEASE_H

#include <stdbool.h>
#include <stdint.h>

/* The claim's TTL for a heartbeat period (<= 0: the default, 1000 ms). */
int lease_ttl_ms(int heartbeat_ms);
/* The safety margin before the TTL: a quarter of it (750 ms at the default
 * heartbeat), of which clock rate drift (1 %, far above real hardware's
 * 100 ppm) is a small part; at least 2 ms under a 1 ms TTL's floor. */
int lease_margin_ms(int ttl_ms);
/* How long after the send of the last acknowledged renewal the node fences:
 * TTL minus the margin, always below the TTL. */
int lease_fence_ms(int heartbeat_ms);
/* When the node fences, on its monotonic clock (us), for a lease renewed
 * by a heartbeat sent at from_us; 0 (no lease yet) never fences. */
uint64_t lease_fence_at_us(uint64_t from_us, int heartbeat_ms);
/* Is the lease past its fence point at now_us? */
bool lease_fenced(uint64_t from_us, uint64_t now_us, int heartbeat_ms);

#endif
