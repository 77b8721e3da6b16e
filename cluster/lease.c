/* SPDX-License-Identifier: Apache-2.0 */
/* The lease arithmetic (cluster/lease.h). */
#include "cluster/lease.h"

#define DEFAULT_HEARTBEAT_MS 1000
/* One lost or late renewal does not drop a live node; a killed one is gone
 * within 3 beats. */
#define TTL_BEATS 3

int lease_ttl_ms(int heartbeat_ms)
{
    return TTL_BEATS * (heartbeat_ms > 0 ? heartbeat_ms : DEFAULT_HEARTBEAT_MS);
}

int lease_margin_ms(int ttl_ms)
{
    int margin = ttl_ms / 4;
    return margin > 0 ? margin : 1;
}

int lease_fence_ms(int heartbeat_ms)
{
    int ttl = lease_ttl_ms(heartbeat_ms);
    return ttl - lease_margin_ms(ttl);
}

uint64_t lease_fence_at_us(uint64_t from_us, int heartbeat_ms)
{
    if (!from_us) {
        return 0;
    }
    return from_us + (uint64_t)lease_fence_ms(heartbeat_ms) * 1000u;
}

bool lease_fenced(uint64_t from_us, uint64_t now_us, int heartbeat_ms)
{
    uint64_t at = lease_fence_at_us(from_us, heartbeat_ms);
    return at && now_us >= at;
}
