/* SPDX-License-Identifier: Apache-2.0 */
/* The lease arithmetic (cluster/lease.c): a node fences itself before any
 * other node can see its claim expire. */
#include <criterion/criterion.h>

#include "cluster/lease.h"

Test(lease, ttl_is_three_heartbeats_default_one_second)
{
    cr_assert_eq(lease_ttl_ms(1000), 3000);
    cr_assert_eq(lease_ttl_ms(300), 900);
    cr_assert_eq(lease_ttl_ms(0), 3000);
    cr_assert_eq(lease_ttl_ms(-5), 3000);
}

Test(lease, fence_point_strictly_before_the_ttl_for_every_heartbeat)
{
    /* --cluster-heartbeat accepts 100..60000 ms; check well beyond. */
    for (int hb = 1; hb <= 60000; hb++) {
        int ttl = lease_ttl_ms(hb), fence = lease_fence_ms(hb);
        cr_assert_lt(fence, ttl, "hb=%d", hb);
        cr_assert_gt(fence, 0, "hb=%d", hb);
        /* The margin covers a 1 % clock rate difference over the TTL. */
        cr_assert_geq((long)(ttl - fence) * 100, (long)ttl, "hb=%d", hb);
        /* ... and is not so wide that one late renewal fences: a live
         * node renews every heartbeat, and fences only 2 beats without. */
        cr_assert_geq(fence, 2 * hb, "hb=%d", hb);
    }
}

Test(lease, default_figures)
{
    cr_assert_eq(lease_margin_ms(3000), 750);
    cr_assert_eq(lease_fence_ms(1000), 2250);
    cr_assert_eq(lease_fence_ms(300), 675);
}

Test(lease, counts_from_the_send_of_the_acknowledged_renewal)
{
    uint64_t sent = 5000000; /* us */
    cr_assert_eq(lease_fence_at_us(sent, 1000), sent + 2250000u);
    cr_assert_not(lease_fenced(sent, sent, 1000));
    cr_assert_not(lease_fenced(sent, sent + 2249999u, 1000));
    cr_assert(lease_fenced(sent, sent + 2250000u, 1000));
    cr_assert(lease_fenced(sent, sent + 3000000u, 1000));
}

Test(lease, no_lease_yet_never_fences)
{
    cr_assert_eq(lease_fence_at_us(0, 1000), 0);
    cr_assert_not(lease_fenced(0, UINT64_MAX, 1000));
}

Test(lease, renewal_moves_the_fence_point)
{
    uint64_t first = 1000000, second = 2000000;
    uint64_t now = first + 2500000u;
    cr_assert(lease_fenced(first, now, 1000));
    cr_assert_not(lease_fenced(second, now, 1000));
}
