/* SPDX-License-Identifier: Apache-2.0 */
/* The lease arithmetic (cluster/lease.c): a node fences itself before any
 * other node can see its claim expire. */
#include <criterion/criterion.h>

#include "cluster/lease.h"

/* The TTL by heartbeat alone (no --cluster-lease). */
static int beats(int hb)
{
    return lease_ttl_ms(hb, 0);
}

Test(lease, ttl_is_three_heartbeats_default_one_second)
{
    cr_assert_eq(beats(1000), 3000);
    cr_assert_eq(beats(300), 900);
    cr_assert_eq(beats(0), 3000);
    cr_assert_eq(beats(-5), 3000);
}

Test(lease, a_lease_replaces_the_three_heartbeats)
{
    cr_assert_eq(lease_ttl_ms(1000, 10000), 10000);
    cr_assert_eq(lease_ttl_ms(300, 5000), 5000);
    cr_assert_eq(lease_ttl_ms(0, 600000), 600000);
    cr_assert_eq(lease_ttl_ms(1000, -1), 3000);
}

Test(lease, shortest_lease_is_three_heartbeats)
{
    cr_assert_eq(lease_min_ms(1000), 3000);
    cr_assert_eq(lease_min_ms(100), 300);
    cr_assert_eq(lease_min_ms(0), 3000);
    cr_assert_eq(lease_min_ms(60000), 180000);
    cr_assert_leq(lease_min_ms(60000), LEASE_MAX_MS);
}

Test(lease, fence_point_strictly_before_the_ttl_for_every_heartbeat)
{
    /* --cluster-heartbeat accepts 100..60000 ms; check well beyond. */
    for (int hb = 1; hb <= 60000; hb++) {
        int ttl = beats(hb), fence = lease_fence_ms(ttl);
        cr_assert_lt(fence, ttl, "hb=%d", hb);
        cr_assert_gt(fence, 0, "hb=%d", hb);
        /* The margin covers a 1 % clock rate difference over the TTL. */
        cr_assert_geq((long)(ttl - fence) * 100, (long)ttl, "hb=%d", hb);
        /* ... and is not so wide that one late renewal fences: a live
         * node renews every heartbeat, and fences only 2 beats without. */
        cr_assert_geq(fence, 2 * hb, "hb=%d", hb);
    }
}

Test(lease, fence_point_strictly_before_the_ttl_for_every_accepted_lease)
{
    /* Every lease --cluster-lease accepts, with the heartbeats it allows:
     * the same invariants as the default's. */
    for (int hb = 100; hb <= 60000; hb += 100) {
        for (int lease = lease_min_ms(hb); lease <= LEASE_MAX_MS; lease += 997) {
            int ttl = lease_ttl_ms(hb, lease), fence = lease_fence_ms(ttl);
            cr_assert_eq(ttl, lease);
            cr_assert_lt(fence, ttl, "hb=%d lease=%d", hb, lease);
            cr_assert_geq((long)(ttl - fence) * 100, (long)ttl, "hb=%d lease=%d", hb, lease);
            cr_assert_geq(fence, 2 * hb, "hb=%d lease=%d", hb, lease);
        }
    }
}

Test(lease, default_figures)
{
    cr_assert_eq(lease_margin_ms(3000), 750);
    cr_assert_eq(lease_fence_ms(beats(1000)), 2250);
    cr_assert_eq(lease_fence_ms(beats(300)), 675);
    /* A 10 s lease at the default heartbeat fences 7.5 s without renewal. */
    cr_assert_eq(lease_fence_ms(lease_ttl_ms(1000, 10000)), 7500);
}

Test(lease, counts_from_the_send_of_the_acknowledged_renewal)
{
    uint64_t sent = 5000000; /* us */
    int ttl = beats(1000);
    cr_assert_eq(lease_fence_at_us(sent, ttl), sent + 2250000u);
    cr_assert_not(lease_fenced(sent, sent, ttl));
    cr_assert_not(lease_fenced(sent, sent + 2249999u, ttl));
    cr_assert(lease_fenced(sent, sent + 2250000u, ttl));
    cr_assert(lease_fenced(sent, sent + 3000000u, ttl));
}

Test(lease, a_longer_lease_fences_later)
{
    uint64_t sent = 5000000; /* us */
    int ttl = lease_ttl_ms(1000, 10000);
    cr_assert_not(lease_fenced(sent, sent + 2250000u, ttl));
    cr_assert_not(lease_fenced(sent, sent + 7499999u, ttl));
    cr_assert(lease_fenced(sent, sent + 7500000u, ttl));
}

Test(lease, no_lease_yet_never_fences)
{
    cr_assert_eq(lease_fence_at_us(0, 3000), 0);
    cr_assert_not(lease_fenced(0, UINT64_MAX, 3000));
}

Test(lease, renewal_moves_the_fence_point)
{
    uint64_t first = 1000000, second = 2000000;
    uint64_t now = first + 2500000u;
    cr_assert(lease_fenced(first, now, 3000));
    cr_assert_not(lease_fenced(second, now, 3000));
}
