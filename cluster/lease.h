/* SPDX-License-Identifier: Apache-2.0 */
/* The node's lease on its cluster membership (docs/architecture.md,
 * "Fencing"): pure arithmetic, no clock of its own, so it is unit tested.
 *
 * The node-id claim in Redis lives for a TTL, the lease (--cluster-lease,
 * by default 3 heartbeats), after Redis applied its last renewal. Redis
 * applied it after the node sent it, so on the node's monotonic clock the
 * claim expires no sooner than TTL after the SEND time of the last renewal
 * Redis acknowledged. The node fences itself (closes its clients, refuses
 * new ones) a margin before that: the margin covers the clocks' rate
 * difference (the TTL runs on Redis's clock), a timer that fires late on a
 * busy loop, and the workers' time to close their connections.
 *
 * The invariant: a node fences strictly before any other node can see its
 * claim expire, whatever its lease. Other nodes never compute a node's
 * lease: they see its claim (written by that node with its own TTL) expire
 * in Redis, so a node with a longer lease is judged by its own lease. */
#ifndef SHOAL_CLUSTER_LEASE_H
#define SHOAL_CLUSTER_LEASE_H

#include <stdbool.h>
#include <stdint.h>

/* The shortest lease, in heartbeats: one renewal may be lost and the next
 * one, a heartbeat later, still renews it before the fence point (3/4 of
 * the lease: 2.25 heartbeats). --cluster-lease below it is refused. */
#define LEASE_MIN_BEATS 3
/* The longest lease --cluster-lease accepts (ms): 10 minutes. */
#define LEASE_MAX_MS 600000

/* The claim's TTL: lease_ms when > 0, else LEASE_MIN_BEATS heartbeats
 * (heartbeat_ms <= 0: the default, 1000 ms). */
int lease_ttl_ms(int heartbeat_ms, int lease_ms);
/* The shortest lease accepted for a heartbeat period (<= 0: the default). */
int lease_min_ms(int heartbeat_ms);
/* The safety margin before the TTL: a quarter of it (750 ms at the default
 * heartbeat, 2.5 s for a 10 s lease): the same proportion for every lease,
 * so the fence point stays 3/4 of the lease. Clock rate drift (1 %, far
 * above real hardware's 100 ppm) is a small part of it; at least 1 ms. */
int lease_margin_ms(int ttl_ms);
/* How long after the send of the last acknowledged renewal the node fences:
 * TTL minus the margin, always below the TTL. */
int lease_fence_ms(int ttl_ms);
/* When the node fences, on its monotonic clock (us), for a lease renewed
 * by a heartbeat sent at from_us; 0 (no lease yet) never fences. */
uint64_t lease_fence_at_us(uint64_t from_us, int ttl_ms);
/* Is the lease past its fence point at now_us? */
bool lease_fenced(uint64_t from_us, uint64_t now_us, int ttl_ms);

/* When the next renewal goes out after the reply to the one sent at
 * sent_us. One renewal is out at a time (a reply must say which send it
 * confirms), so a heartbeat that fires while one is out skips its beat.
 * A reply that comes after such a skipped beat renews at once: waiting for
 * the next beat would send the next renewal up to 2 heartbeats after the
 * late one's, a quarter heartbeat before the fence point (2.25 beats), and
 * a slow round trip would fence a live node. Sent at the late reply, it
 * has the fence point at least a heartbeat after the skipped beat (and a
 * quarter for its round trip). One renewal per reply at most, and only
 * after a skipped beat: a reply past the fence point renews once, no storm.
 * sent_us 0 (no renewal was out): the next beat. */
typedef enum {
    LEASE_RENEW_AT_BEAT, /* on time: the next heartbeat renews, as usual */
    LEASE_RENEW_NOW,     /* late, a beat was skipped: renew at once */
} lease_renew;

lease_renew lease_after_reply(uint64_t sent_us, unsigned skipped_beats);

#endif
