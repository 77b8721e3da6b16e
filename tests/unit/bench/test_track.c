/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <string.h>

#include "bench/track.h"

Test(track, in_order_arrivals_are_new)
{
    track t;
    track_init(&t);
    for (uint64_t s = 0; s < 5000; s++) {
        cr_assert_eq(track_seen(&t, s), TRACK_NEW);
    }
    cr_assert_eq(t.distinct, 5000);
    cr_assert_eq(t.dup, 0);
    cr_assert_eq(t.late, 0);
}

Test(track, a_gap_is_not_reordering_until_the_missing_one_arrives)
{
    track t;
    track_init(&t);
    track_seen(&t, 0);
    cr_assert_eq(track_seen(&t, 3), TRACK_NEW);
    cr_assert_eq(t.late, 0);
    cr_assert_eq(track_seen(&t, 1), TRACK_LATE);
    cr_assert_eq(track_seen(&t, 2), TRACK_LATE);
    cr_assert_eq(t.distinct, 4);
    cr_assert_eq(t.late, 2);
}

Test(track, repeats_are_duplicates_within_the_window)
{
    track t;
    track_init(&t);
    for (uint64_t s = 0; s < 3000; s++) {
        track_seen(&t, s);
    }
    cr_assert_eq(track_seen(&t, 2999), TRACK_DUP);
    cr_assert_eq(track_seen(&t, 3000 - TRACK_WINDOW), TRACK_DUP);
    track_seen(&t, 5); /* beyond the window: cannot tell, counted late */
    cr_assert_eq(t.dup, 2);
    cr_assert_eq(t.late, 1);
}

Test(track, a_late_arrival_then_its_repeat)
{
    track t;
    track_init(&t);
    track_seen(&t, 10);
    cr_assert_eq(track_seen(&t, 4), TRACK_LATE);
    cr_assert_eq(track_seen(&t, 4), TRACK_DUP);
    cr_assert_eq(t.distinct, 2);
}

Test(track, a_jump_past_the_window_forgets_old_slots)
{
    track t;
    track_init(&t);
    track_seen(&t, 1);
    cr_assert_eq(track_seen(&t, 1 + TRACK_WINDOW), TRACK_NEW);
    /* Slot of 1 now stands for 1 + WINDOW; 1 itself is out of the window. */
    cr_assert_eq(track_seen(&t, 1 + 2 * TRACK_WINDOW - 1), TRACK_NEW);
    cr_assert_eq(track_seen(&t, 1 + TRACK_WINDOW), TRACK_DUP);
    cr_assert_eq(track_seen(&t, 2 * TRACK_WINDOW), TRACK_DUP);
    cr_assert_eq(track_seen(&t, TRACK_WINDOW + 5), TRACK_LATE);
}

Test(track, stamp_round_trips_and_rejects_foreign_payloads)
{
    uint8_t buf[64];
    track_stamp in = {.pub = 7, .seq = 123456, .intended_ns = 987654321012345ull}, out;
    track_stamp_write(&in, buf, sizeof(buf));
    cr_assert(track_stamp_read(buf, sizeof(buf), &out));
    cr_assert_eq(out.pub, 7);
    cr_assert_eq(out.seq, 123456);
    cr_assert_eq(out.intended_ns, 987654321012345ull);
    cr_assert_not(track_stamp_read(buf, TRACK_HEADER - 1, &out));
    buf[0] ^= 1;
    cr_assert_not(track_stamp_read(buf, sizeof(buf), &out));
    cr_assert_not(track_stamp_read((const uint8_t *)"hello world, not a stamp", 24, &out));
}

Test(track, map_creates_once_and_finds)
{
    track_map m;
    track_map_init(&m);
    cr_assert_null(track_map_find(&m, 3));
    for (uint32_t p = 0; p < 1000; p++) {
        track *t = track_map_get(&m, p * 7);
        track_seen(t, p);
    }
    for (uint32_t p = 0; p < 1000; p++) {
        const track *t = track_map_find(&m, p * 7);
        cr_assert_not_null(t);
        cr_assert_eq(t->next, p + 1);
        cr_assert_eq(track_map_get(&m, p * 7), t);
    }
    cr_assert_null(track_map_find(&m, 1));
    cr_assert_eq(m.used, 1000);
    track_map_free(&m);
    cr_assert_null(track_map_find(&m, 0));
}
