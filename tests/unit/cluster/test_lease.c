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

/* The renewal schedule (lease_after_reply): one renewal out at a time, a
 * heartbeat that finds it out skips its beat. */
Test(lease, a_late_reply_after_a_skipped_beat_renews_now)
{
    cr_assert_eq(lease_after_reply(5000000, 1), LEASE_RENEW_NOW);
}

Test(lease, an_on_time_reply_renews_at_the_next_beat)
{
    cr_assert_eq(lease_after_reply(5000000, 0), LEASE_RENEW_AT_BEAT);
}

Test(lease, no_renewal_out_renews_at_the_next_beat)
{
    cr_assert_eq(lease_after_reply(0, 0), LEASE_RENEW_AT_BEAT);
    cr_assert_eq(lease_after_reply(0, 3), LEASE_RENEW_AT_BEAT);
}

/* A node's renewals on a simulated clock (us): heartbeats every hb_us from
 * hb_us on, renewal i answered delay(i) after its send; the schedule as
 * cluster/rk_redis.c runs it (renew(), heartbeat_reply_cb). */
typedef struct {
    uint64_t hb_us;
    int ttl_ms;
    uint64_t (*delay)(unsigned i, uint64_t hb_us);
    bool at_beat_only; /* the schedule before lease_after_reply: a check the simulation can fail */
    unsigned sent, replies, max_sends_per_reply;
    bool fenced;
    uint64_t confirmed_us[64]; /* reply i: how long after the previous confirmed renewal's send */
} sim;

static void sim_run(sim *s, uint64_t until_us)
{
    /* The claim at start counts as the first renewal (from); the first
     * heartbeat goes out when Redis answers (ping_cb), at once. */
    uint64_t from = 1, out = 1, reply_at = 1 + s->delay(s->sent++, s->hb_us), beat = s->hb_us, now = 1;
    unsigned skipped = 0;
    while (now < until_us) {
        bool beat_first = !out || beat < reply_at;
        now = beat_first ? beat : reply_at;
        if (lease_fenced(from, now, s->ttl_ms)) {
            s->fenced = true;
        }
        if (beat_first) {
            beat += s->hb_us;
            if (out) {
                skipped++;
                continue;
            }
            out = now, reply_at = now + s->delay(s->sent++, s->hb_us);
            continue;
        }
        if (s->replies < 64) {
            s->confirmed_us[s->replies] = now - from;
        }
        s->replies++;
        if (!lease_fenced(out, now, s->ttl_ms)) {
            from = out;
        }
        unsigned sends = 0;
        if (!s->at_beat_only && lease_after_reply(out, skipped) == LEASE_RENEW_NOW) {
            sends++;
            out = now, reply_at = now + s->delay(s->sent++, s->hb_us);
        } else {
            out = 0;
        }
        skipped = 0;
        if (sends > s->max_sends_per_reply) {
            s->max_sends_per_reply = sends;
        }
    }
}

/* Renewal 3 answered 1.2 heartbeats late (360 ms: it still confirms
 * 660 ms after renewal 2's send, before the 675 ms fence point), the
 * others after a slow round trip: 80 ms, just over the quarter heartbeat
 * the schedule before lease_after_reply left. */
static uint64_t late_once(unsigned i, uint64_t hb_us)
{
    return i == 3 ? hb_us * 12 / 10 : 80000;
}

Test(lease, a_late_reply_leaves_the_next_renewal_time_before_the_fence)
{
    sim s = {.hb_us = 300000, .ttl_ms = beats(300), .delay = late_once};
    sim_run(&s, 10 * s.hb_us);
    cr_assert_not(s.fenced);
    cr_assert_eq(s.max_sends_per_reply, 1);
    /* Renewal 4 went out at renewal 3's reply and confirmed a round trip
     * later, 440 ms after renewal 3's send: 235 ms before the fence point
     * (before: sent at the next beat, 600 ms, confirmed at 680 ms, fenced). */
    cr_assert_eq(s.confirmed_us[3], 300000 + 360000);
    cr_assert_eq(s.confirmed_us[4], 360000 + 80000);

    sim old = {.hb_us = 300000, .ttl_ms = beats(300), .delay = late_once, .at_beat_only = true};
    sim_run(&old, 10 * old.hb_us);
    cr_assert(old.fenced, "the simulation must tell the schedules apart");
}

static uint64_t late_us; /* late_by's delay for renewal 3 */

static uint64_t late_by(unsigned i, uint64_t hb_us)
{
    (void)hb_us;
    return i == 3 ? late_us : 20000;
}

Test(lease, every_late_reply_before_the_fence_keeps_the_lease)
{
    /* Renewal 3 answered anywhere from just past a beat (skipped) to just
     * before the fence point of renewal 2 (a beat earlier): the next one
     * goes at once and confirms a round trip later, in time. */
    for (late_us = 301000; late_us < 375000 - 20000; late_us += 1000) {
        sim s = {.hb_us = 300000, .ttl_ms = beats(300), .delay = late_by};
        sim_run(&s, 10 * s.hb_us);
        cr_assert_not(s.fenced, "late %llu us", (unsigned long long)late_us);
        cr_assert_eq(s.max_sends_per_reply, 1);
        cr_assert_eq(s.confirmed_us[4], late_us + 20000);
    }
}
static uint64_t past_the_fence(unsigned i, uint64_t hb_us)
{
    (void)i;
    return hb_us * 3;
}

Test(lease, replies_past_the_fence_renew_once_each)
{
    /* Every reply 3 beats late (a Redis that stalls, a link that holds
     * them): fenced, and each reply sends one renewal, no more; the beats
     * send none meanwhile. */
    sim s = {.hb_us = 300000, .ttl_ms = beats(300), .delay = past_the_fence};
    sim_run(&s, 100 * s.hb_us);
    cr_assert(s.fenced);
    cr_assert_eq(s.max_sends_per_reply, 1);
    cr_assert_leq(s.sent, s.replies + 1, "sent %u replies %u", s.sent, s.replies);
    cr_assert_geq(s.replies, 30);
}
