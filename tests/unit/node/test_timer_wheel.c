/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's timing wheel (node/timer_wheel.c): every timer fires at the
 * first advance at or after its due time, never before and never twice,
 * whatever its distance, however many share a slot, and whatever the
 * callbacks arm or cancel meanwhile. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "node/timer_wheel.h"

#define RES 1000u

typedef struct item {
    tw_timer t;
    uint64_t fired_at; /* 0: not fired */
    int fired;
} item;

static uint64_t now;

static void on_fire(tw_timer *t, void *arg)
{
    (void)arg;
    item *it = (item *)t;
    it->fired++;
    it->fired_at = now;
}

/* Advance tick by tick from now to `to`, as the worker does. */
static void run_to(twheel *tw, uint64_t to, tw_fire_fn fn, void *arg)
{
    while (now < to) {
        now += RES;
        if (now > to) {
            now = to;
        }
        tw_advance(tw, now, fn, arg);
    }
}

/* Fired at the first advance at or after due, given advances every RES. */
static void assert_on_time(const item *it, uint64_t due)
{
    cr_assert_eq(it->fired, 1, "due %llu fired %d times", (unsigned long long)due, it->fired);
    cr_assert_geq(it->fired_at, due, "due %llu fired early at %llu", (unsigned long long)due,
                  (unsigned long long)it->fired_at);
    cr_assert_lt(it->fired_at, due + RES, "due %llu fired late at %llu", (unsigned long long)due,
                 (unsigned long long)it->fired_at);
}

Test(timer_wheel, arm_fires_once_at_its_due_time)
{
    twheel tw;
    now = 5000000; /* a monotonic clock does not start at 0 */
    tw_init(&tw, now, RES);
    item a = {0};
    tw_arm(&tw, &a.t, now + 2500);
    cr_assert(tw_armed(&a.t));
    run_to(&tw, now + 2000, on_fire, NULL);
    cr_assert_eq(a.fired, 0);
    run_to(&tw, now + 5000, on_fire, NULL);
    assert_on_time(&a, 5000000 + 2500);
    cr_assert_not(tw_armed(&a.t));
    cr_assert_eq(tw.count, 0);
}

Test(timer_wheel, cancel_and_rearm)
{
    twheel tw;
    now = 1000;
    tw_init(&tw, now, RES);
    item a = {0}, b = {0}, c = {0};
    tw_arm(&tw, &a.t, 4000);
    tw_arm(&tw, &b.t, 4000);
    tw_arm(&tw, &c.t, 3000);
    tw_cancel(&tw, &a.t);
    tw_cancel(&tw, &a.t);    /* idempotent */
    tw_arm(&tw, &b.t, 9000); /* later */
    tw_arm(&tw, &c.t, 2000); /* earlier */
    cr_assert_eq(tw.count, 2);
    run_to(&tw, 20000, on_fire, NULL);
    cr_assert_eq(a.fired, 0);
    assert_on_time(&b, 9000);
    assert_on_time(&c, 2000);
    cr_assert_eq(tw.count, 0);
}

Test(timer_wheel, past_due_fires_at_the_next_advance)
{
    twheel tw;
    now = 100000;
    tw_init(&tw, now, RES);
    item a = {0};
    tw_arm(&tw, &a.t, 50);
    run_to(&tw, now + RES, on_fire, NULL);
    cr_assert_eq(a.fired, 1);
}

/* Advances are not on tick boundaries (a late tick lands in the next
 * second, the next one on time in the same): a timer whose tick an advance
 * handled before its millisecond fires at the next advance, even one in
 * the same tick, as the old walk at every advance did. */
Test(timer_wheel, two_advances_in_one_tick)
{
    twheel tw;
    now = 14000;
    tw_init(&tw, now, RES);
    item a = {0}, b = {0};
    tw_arm(&tw, &a.t, 15500);
    tw_arm(&tw, &b.t, 15950);
    now = 15050;
    cr_assert_eq(tw_advance(&tw, now, on_fire, NULL), 0);
    now = 15900;
    cr_assert_eq(tw_advance(&tw, now, on_fire, NULL), 1);
    cr_assert_eq(a.fired_at, 15900);
    cr_assert_eq(b.fired, 0);
    /* Armed from outside for a tick already handled: the same. */
    item c = {0};
    tw_arm(&tw, &c.t, 15920);
    now = 15930;
    cr_assert_eq(tw_advance(&tw, now, on_fire, NULL), 1);
    cr_assert_eq(c.fired_at, 15930);
    now = 15999;
    cr_assert_eq(tw_advance(&tw, now, on_fire, NULL), 1);
    cr_assert_eq(b.fired_at, 15999);
    cr_assert_eq(tw.count, 0);
}

/* Every distance from 0 to past the top level's span, from several
 * starting phases, with advances that do not fall on tick boundaries. */
Test(timer_wheel, far_deadlines_beyond_one_revolution)
{
    static const uint64_t dist_s[] = {1,       2,        63,       64,       65,       127,     128,
                                      4095,    4096,     4097,     8191,     262143,   262144,  262145,
                                      1000000, 16777215, 16777216, 16777217, 20000000, 40000000};
    enum { N = sizeof(dist_s) / sizeof(dist_s[0]) };
    for (uint64_t phase = 0; phase < 3; phase++) {
        twheel tw;
        now = 7777777 + phase * 64 * RES + 123;
        tw_init(&tw, now, RES);
        item *it = calloc(N, sizeof(item));
        uint64_t due[N];
        for (int i = 0; i < N; i++) {
            due[i] = now + dist_s[i] * RES + (uint64_t)i * 37;
            tw_arm(&tw, &it[i].t, due[i]);
        }
        /* Step one tick at a time up to a bit past the farthest; whole
         * revolutions of the top level are cheap as the wheel is mostly empty. */
        uint64_t end = due[N - 1] + 2 * RES;
        while (now < end) {
            now += RES;
            tw_advance(&tw, now, on_fire, NULL);
        }
        for (int i = 0; i < N; i++) {
            assert_on_time(&it[i], due[i]);
        }
        cr_assert_eq(tw.count, 0);
        free(it);
    }
}

/* An advance that skips many ticks (a stalled loop) still fires each
 * timer once, none early. */
Test(timer_wheel, advance_over_many_ticks_at_once)
{
    twheel tw;
    now = 3000;
    tw_init(&tw, now, RES);
    enum { N = 300 };
    item it[N];
    memset(it, 0, sizeof(it));
    for (int i = 0; i < N; i++) {
        tw_arm(&tw, &it[i].t, now + (uint64_t)i * 997);
    }
    now += 150 * RES;
    tw_advance(&tw, now, on_fire, NULL);
    for (int i = 0; i < N; i++) {
        uint64_t due = 3000 + (uint64_t)i * 997;
        cr_assert_eq(it[i].fired, due <= now ? 1 : 0, "timer %d", i);
    }
    run_to(&tw, now + 200 * RES, on_fire, NULL);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(it[i].fired, 1, "timer %d", i);
    }
}

Test(timer_wheel, many_timers_in_one_slot)
{
    twheel tw;
    now = 10000;
    tw_init(&tw, now, RES);
    enum { N = 20000 };
    item *it = calloc(N, sizeof(item));
    for (int i = 0; i < N; i++) {
        /* One tick, different milliseconds: the later ones wait for the
         * advance after their millisecond. */
        tw_arm(&tw, &it[i].t, 15000 + (uint64_t)(i % 1000));
    }
    cr_assert_eq(tw.count, N);
    /* Cancel every third: the rest are unaffected. */
    for (int i = 0; i < N; i += 3) {
        tw_cancel(&tw, &it[i].t);
    }
    now = 15500;
    tw_advance(&tw, now, on_fire, NULL);
    for (int i = 0; i < N; i++) {
        int want = i % 3 != 0 && (i % 1000) <= 500;
        cr_assert_eq(it[i].fired, want, "timer %d", i);
    }
    now = 16000;
    tw_advance(&tw, now, on_fire, NULL);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(it[i].fired, i % 3 != 0, "timer %d", i);
    }
    cr_assert_eq(tw.count, 0);
    free(it);
}

/* A callback may cancel timers due in the same slot (not yet fired),
 * re-arm others, and re-arm itself for now: nothing fires twice in one
 * advance, nothing cancelled fires, the list stays whole. */
typedef struct chaos {
    twheel *tw;
    item *it;
    int n;
} chaos;

static void on_fire_chaos(tw_timer *t, void *arg)
{
    chaos *ch = arg;
    item *me = (item *)t;
    int i = (int)(me - ch->it);
    me->fired++;
    me->fired_at = now;
    if (i % 4 == 0 && i + 1 < ch->n) {
        tw_cancel(ch->tw, &ch->it[i + 1].t); /* a neighbour in the same slot */
    } else if (i % 4 == 2 && i + 1 < ch->n) {
        tw_arm(ch->tw, &ch->it[i + 1].t, now + 5 * RES); /* moved away */
    } else if (i % 4 == 3 && me->fired == 1) {
        tw_arm(ch->tw, t, now); /* itself, due already: the next advance */
    }
}

Test(timer_wheel, removal_and_rearm_during_expiry_callbacks)
{
    twheel tw;
    now = 2000;
    tw_init(&tw, now, RES);
    enum { N = 400 };
    item it[N];
    memset(it, 0, sizeof(it));
    chaos ch = {&tw, it, N};
    for (int i = 0; i < N; i++) {
        tw_arm(&tw, &it[i].t, 4000); /* all in one slot */
    }
    now = 4000;
    tw_advance(&tw, now, on_fire_chaos, &ch);
    for (int i = 0; i < N; i++) {
        if (it[i].fired) {
            cr_assert_eq(it[i].fired, 1, "timer %d fired twice in one advance", i);
        }
    }
    run_to(&tw, 20000, on_fire_chaos, &ch);
    int fired_total = 0;
    for (int i = 0; i < N; i++) {
        /* Which of a pair fires first depends on the slot's order; each
         * timer fires at most twice (i%4==3 re-arms itself once), and a
         * cancelled one only if it had fired before its neighbour. */
        cr_assert_leq(it[i].fired, i % 4 == 3 ? 2 : 1, "timer %d", i);
        fired_total += it[i].fired;
    }
    cr_assert_gt(fired_total, N / 2);
    cr_assert_eq(tw.count, 0);
}

/* A connection's pattern: armed for a keep-alive deadline, activity moves
 * the real deadline without touching the timer, and the timer re-arms
 * itself when it comes up early. */
typedef struct lazy {
    tw_timer t;
    uint64_t last_rx;
    uint64_t expired_at;
    int looks;
} lazy;

static void on_fire_lazy(tw_timer *t, void *arg)
{
    twheel *tw = arg;
    lazy *l = (lazy *)t;
    l->looks++;
    uint64_t due = l->last_rx + 90 * RES;
    if (due <= now) {
        l->expired_at = now;
    } else {
        tw_arm(tw, t, due);
    }
}

Test(timer_wheel, lazy_rearm_looks_once_per_deadline)
{
    twheel tw;
    now = 1000000;
    tw_init(&tw, now, RES);
    lazy l = {.last_rx = now};
    tw_arm(&tw, &l.t, now + 90 * RES);
    /* Activity every 60 s for 10 minutes: ~7 looks, not 600. */
    uint64_t start = now;
    while (now < start + 600 * RES) {
        run_to(&tw, now + RES, on_fire_lazy, &tw);
        if ((now - start) % (60 * RES) == 0) {
            l.last_rx = now;
        }
    }
    cr_assert_eq(l.expired_at, 0);
    cr_assert_leq(l.looks, 10);
    uint64_t last = l.last_rx;
    run_to(&tw, now + 200 * RES, on_fire_lazy, &tw);
    cr_assert_geq(l.expired_at, last + 90 * RES);
    cr_assert_lt(l.expired_at, last + 91 * RES);
}
