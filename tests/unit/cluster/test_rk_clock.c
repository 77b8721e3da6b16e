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
