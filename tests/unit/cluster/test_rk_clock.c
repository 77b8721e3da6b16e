/* SPDX-License-Identifier: Apache-2.0 */
/* Message expiry across nodes (cluster/rk_clock.c): each writer's clock
 * offset measured on the live stream, and a writer's deadline moved onto
 * this node's clock with it. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cluster/rk_clock.h"

#define W(s) (const uint8_t *)(s), strlen(s)
#define HOUR 3600000LL

static rk_clocks c;

static void setup(void)
{
    rk_clocks_init(&c);
}

static void teardown(void)
{
    rk_clocks_destroy(&c);
}

TestSuite(rk_clock, .init = setup, .fini = teardown);

Test(rk_clock, unknown_writer_has_no_offset)
{
    int64_t off = 42;
    cr_assert_not(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 42);
}

/* The writer an hour behind this node, records read 5 to 40 ms after they
 * were stamped: the offset is the hour plus the fastest of them. */
Test(rk_clock, offset_is_the_clock_difference_plus_the_fastest_latency)
{
    int64_t now = 1800000000000LL;
    int64_t lat[] = {40, 5, 12, 30};
    for (int i = 0; i < 4; i++) {
        int64_t ts = now - HOUR + i * 1000;
        rk_clocks_observe(&c, W("n1"), ts, (uint64_t)(ts + HOUR + lat[i]), (uint64_t)(1000 + i * 1000));
    }
    int64_t off;
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, HOUR + 5);
    cr_assert_not(rk_clocks_offset(&c, W("n2"), &off), "writers are apart");
    cr_assert_not(rk_clocks_offset(&c, W("n"), &off), "a prefix is another writer");
}

/* A record stamped long ago (a will published late, a consumer catching
 * up) only raises the difference: it does not move the minimum. */
Test(rk_clock, an_old_timestamp_does_not_move_the_offset)
{
    rk_clocks_observe(&c, W("n1"), 1000000, 1000010, 1);
    rk_clocks_observe(&c, W("n1"), 1000000 - HOUR, 1000020, 2);
    int64_t off;
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 10);
}

/* The writer's clock stepped back by a minute (a restart under another
 * clock): counted from the next window on; within the window it happened
 * in, the minimum still holds. */
Test(rk_clock, a_stepped_clock_counts_from_the_next_window)
{
    uint64_t mono = 5000;
    rk_clocks_observe(&c, W("n1"), 1000000, 1000010, mono);
    rk_clocks_observe(&c, W("n1"), 1000000 - 60000, 1000010, mono + 10);
    int64_t off;
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 10);
    mono += RK_CLOCK_WINDOW_MS;
    rk_clocks_observe(&c, W("n1"), 2000000 - 60000, 2000010, mono);
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 60010);
}

/* Latency that varies between windows (within RK_CLOCK_STEP_MS) keeps the
 * smaller minimum of the two. */
Test(rk_clock, the_previous_window_counts_while_the_clocks_agree)
{
    uint64_t mono = 5000;
    rk_clocks_observe(&c, W("n1"), 1000000, 1000004, mono);
    mono += RK_CLOCK_WINDOW_MS;
    rk_clocks_observe(&c, W("n1"), 2000000, 2000300, mono);
    int64_t off;
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 4);
    mono += RK_CLOCK_WINDOW_MS;
    rk_clocks_observe(&c, W("n1"), 3000000, 3000500, mono);
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 300, "two windows at most");
}

Test(rk_clock, the_least_recently_read_writer_makes_room)
{
    char id[16];
    for (int i = 0; i < RK_CLOCK_WRITERS + 1; i++) {
        snprintf(id, sizeof(id), "n%d", i);
        rk_clocks_observe(&c, W(id), 1000, 1000 + i, (uint64_t)(i + 1));
    }
    int64_t off;
    cr_assert_not(rk_clocks_offset(&c, W("n0"), &off));
    cr_assert(rk_clocks_offset(&c, W("n1"), &off));
    cr_assert_eq(off, 1);
    snprintf(id, sizeof(id), "n%d", RK_CLOCK_WRITERS);
    cr_assert(rk_clocks_offset(&c, W(id), &off));
    cr_assert_eq(off, RK_CLOCK_WRITERS);
}

Test(rk_clock, a_long_writer_id_is_cut_and_still_found)
{
    char id[400];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = 0;
    rk_clocks_observe(&c, W(id), 1000, 1007, 1);
    int64_t off;
    cr_assert(rk_clocks_offset(&c, W(id), &off));
    cr_assert_eq(off, 7);
}

Test(rk_clock, no_timestamp_is_no_observation)
{
    rk_clocks_observe(&c, W("n1"), 0, 1000, 1);
    rk_clocks_observe(&c, W("n1"), -1, 1000, 1);
    int64_t off;
    cr_assert_not(rk_clocks_offset(&c, W("n1"), &off));
}

/* A writer an hour behind wrote its deadline on its clock: on ours it is
 * an hour later; a writer ahead, earlier. No expiry stays none; an expiry
 * moved before the epoch stays an expiry (long past). */
Test(rk_clock, a_deadline_moves_by_the_offset)
{
    cr_assert_eq(rk_expiry_local(0, HOUR), 0);
    cr_assert_eq(rk_expiry_local(1800000000000ULL, HOUR), 1800000000000ULL + HOUR);
    cr_assert_eq(rk_expiry_local(1800000000000ULL, -HOUR), 1800000000000ULL - HOUR);
    cr_assert_eq(rk_expiry_local(1000, -HOUR), 1);
    cr_assert_eq(rk_expiry_local(UINT64_MAX - 5, HOUR), UINT64_MAX);
}

/* ---- the cluster clock (rk_refclock): this node's offset to Redis's ---- */

static rk_refclock rc;

static void rc_setup(void)
{
    rk_refclock_init(&rc);
}

static void rc_teardown(void)
{
    rk_refclock_destroy(&rc);
}

TestSuite(rk_refclock, .init = rc_setup, .fini = rc_teardown);

#define REDIS_NOW 1800000000000000LL /* Unix us on Redis's clock */
#define MONO 5000000000ULL           /* this node's monotonic clock at the same moment */
#define TRUE_OFFSET ((int64_t)(REDIS_NOW - (int64_t)MONO))

/* A round trip sent at mono `sent`, taking `rtt` us, in which Redis read
 * its clock `at` us after the send (anywhere in the round trip). */
static bool sample(uint64_t sent, uint64_t rtt, uint64_t at)
{
    return rk_refclock_add(&rc, sent, sent + rtt, TRUE_OFFSET + (int64_t)(sent + at));
}

Test(rk_refclock, no_sample_no_offset)
{
    int64_t off = 42;
    uint64_t err = 7;
    cr_assert_not(rk_refclock_offset(&rc, MONO, &off, &err));
    cr_assert_eq(off, 42);
    cr_assert_eq(err, 7);
}

/* Wherever in the round trip Redis read its clock, the midpoint is off by
 * at most half the round trip, and the bound says so. */
Test(rk_refclock, the_error_is_at_most_half_the_round_trip)
{
    uint64_t rtt = 800;
    for (uint64_t at = 0; at <= rtt; at += 100) {
        rk_refclock_init(&rc);
        cr_assert(sample(MONO, rtt, at));
        int64_t off;
        uint64_t err;
        cr_assert(rk_refclock_offset(&rc, MONO + rtt, &off, &err));
        int64_t miss = off - TRUE_OFFSET;
        cr_assert_leq(miss < 0 ? -miss : miss, (int64_t)rtt / 2, "at %llu: off by %lld", (unsigned long long)at,
                      (long long)miss);
        cr_assert_eq(err, rtt / 2);
        rk_refclock_destroy(&rc);
    }
    rk_refclock_init(&rc); /* for the fini */
}

/* One slow round trip (the answer sat in a busy loop for a second) among
 * fast ones: the fast one counts, whatever the order. */
Test(rk_refclock, the_fastest_round_trip_counts)
{
    cr_assert(sample(MONO, 300, 150));
    cr_assert(sample(MONO + 300000, 1000000, 999000)); /* read near its end */
    cr_assert(sample(MONO + 1400000, 5000, 100));
    int64_t off;
    uint64_t err;
    cr_assert(rk_refclock_offset(&rc, MONO + 1500000, &off, &err));
    cr_assert_eq(off, TRUE_OFFSET);
    /* 150 us, plus 200 ppm of the time since its answer. */
    cr_assert_eq(err, 150 + (1500000 - 300) / (1000000 / RK_REFCLOCK_DRIFT_PPM));
}

/* An old fast sample loses to a recent one once the clocks may have drifted
 * apart by more than the difference of their round trips. */
Test(rk_refclock, an_old_sample_gives_way_as_it_ages)
{
    cr_assert(sample(MONO, 100, 50));
    /* Redis's clock stepped 40 ms since: the new samples say so. */
    uint64_t later = MONO + 60000000; /* a minute on */
    cr_assert(rk_refclock_add(&rc, later, later + 2000, TRUE_OFFSET + (int64_t)later + 1000 + 40000));
    int64_t off;
    uint64_t err;
    /* A minute at 200 ppm is 12 ms: more than the new one's 1 ms. */
    cr_assert(rk_refclock_offset(&rc, later + 2000, &off, &err));
    cr_assert_eq(off, TRUE_OFFSET + 40000);
    cr_assert_eq(err, 1000);
}

/* The last RK_REFCLOCK_SAMPLES samples are kept: an old fast one leaves. */
Test(rk_refclock, only_the_last_samples_count)
{
    cr_assert(sample(MONO, 10, 5));
    for (int i = 1; i <= RK_REFCLOCK_SAMPLES; i++) {
        cr_assert(rk_refclock_add(&rc, MONO + (uint64_t)i, MONO + (uint64_t)i + 1000, TRUE_OFFSET + 7777));
    }
    int64_t off;
    cr_assert(rk_refclock_offset(&rc, MONO + 2000, &off, NULL));
    cr_assert_neq(off, TRUE_OFFSET, "the fast first sample was pushed out");
}

Test(rk_refclock, a_round_trip_that_cannot_be_is_ignored)
{
    cr_assert_not(rk_refclock_add(&rc, MONO, MONO - 1, REDIS_NOW));
    cr_assert_not(rk_refclock_add(&rc, MONO, MONO + 10, 0));
    int64_t off;
    cr_assert_not(rk_refclock_offset(&rc, MONO, &off, NULL));
}

/* A deadline moves between clocks by their difference now: 60 s left on
 * one clock is 60 s left on the other; expired stays expired (nonzero),
 * none stays none. */
Test(rk_refclock, a_deadline_moves_between_clocks)
{
    uint64_t wall = 1800000000000ULL, cluster = wall - (uint64_t)HOUR; /* this node an hour ahead of Redis */
    cr_assert_eq(rk_expiry_move(0, wall, cluster), 0);
    cr_assert_eq(rk_expiry_move(wall + 60000, wall, cluster), cluster + 60000);
    cr_assert_eq(rk_expiry_move(cluster + 60000, cluster, wall), wall + 60000);
    cr_assert_eq(rk_expiry_move(wall - 5000, wall, cluster), cluster - 5000);
    cr_assert_eq(rk_expiry_move(wall, wall, cluster), cluster, "due now is due now");
    cr_assert_eq(rk_expiry_move(1000, wall, 2000), 1, "long expired is still an expiry");
    cr_assert_eq(rk_expiry_move(UINT64_MAX - 5, 1000, 5000), UINT64_MAX);
}

/* The whole way: the writer (its wall clock 30 min ahead of Redis's)
 * stamps 60 s on the cluster clock; the reader (an hour behind) reads the
 * record 5 s later and has 55 s left, off by at most both half round
 * trips, whatever the record's way took. */
Test(rk_refclock, writer_to_reader_through_the_cluster_clock)
{
    int64_t redis = REDIS_NOW / 1000;
    int64_t writer_wall = redis + 1800000, reader_wall = redis - (int64_t)HOUR;
    uint64_t sent_expiry = rk_expiry_move((uint64_t)writer_wall + 60000, (uint64_t)writer_wall, (uint64_t)redis);
    int64_t later = 5000;
    uint64_t here = rk_expiry_move(sent_expiry, (uint64_t)(redis + later), (uint64_t)(reader_wall + later));
    cr_assert_eq(here - (uint64_t)(reader_wall + later), 55000);
}
