/* SPDX-License-Identifier: Apache-2.0 */
/* The lease arithmetic (cluster/lease.h). */
#include "cluster/lease.h"

#define DEFAULT_HEARTBEAT_MS 1000

int lease_min_ms(int heartbeat_ms)
{
    return LEASE_MIN_BEATS * (heartbeat_ms > 0 ? heartbeat_ms : DEFAULT_HEARTBEAT_MS);
}

/* Default: one lost or late renewal does not drop a live node; a killed one
 * is gone within 3 beats. A longer lease rides out a longer Redis outage
 * and takes as much longer to see a dead node. */
int lease_ttl_ms(int heartbeat_ms, int lease_ms)
{
    return lease_ms > 0 ? lease_ms : lease_min_ms(heartbeat_ms);
}

int lease_margin_ms(int ttl_ms)
{
    int margin = ttl_ms / 4;
    return margin > 0 ? margin : 1;
}

int lease_fence_ms(int ttl_ms)
{
    return ttl_ms - lease_margin_ms(ttl_ms);
}

uint64_t lease_fence_at_us(uint64_t from_us, int ttl_ms)
{
    if (!from_us) {
        return 0;
    }
    return from_us + (uint64_t)lease_fence_ms(ttl_ms) * 1000u;
}

bool lease_fenced(uint64_t from_us, uint64_t now_us, int ttl_ms)
{
    uint64_t at = lease_fence_at_us(from_us, ttl_ms);
    return at && now_us >= at;
}

lease_renew lease_after_reply(uint64_t sent_us, unsigned skipped_beats)
{
    if (!sent_us || !skipped_beats) {
        return LEASE_RENEW_AT_BEAT;
    }
    return LEASE_RENEW_NOW;
}
