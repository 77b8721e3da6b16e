/* SPDX-License-Identifier: Apache-2.0 */
/* A hierarchical timing wheel in the classic shape (Varghese and Lauck's
 * scheme 7, as Linux's timer wheel had it before 4.8): level k has 64
 * slots of 64^k ticks each. A timer goes in the level its distance needs;
 * each time level k-1 completes a revolution, the next slot of level k is
 * emptied into the levels below, each timer by its own due time, so it
 * reaches level 0 before its tick comes. Level 0's slot is then the list
 * of timers due in that tick. Unlike Linux today, nothing fires late:
 * due times are kept in milliseconds and a timer whose tick came but whose
 * millisecond has not is put in the next tick's slot. */
#include "node/timer_wheel.h"

#include <stddef.h>
#include <string.h>

#include "common/log.h"

#define TW_MASK (TW_SLOTS - 1u)

void tw_init(twheel *tw, uint64_t now_ms, uint32_t res_ms)
{
    memset(tw, 0, sizeof(*tw));
    tw->res_ms = res_ms;
    tw->next_tick = now_ms / res_ms;
}

static void link_head(tw_timer **head, tw_timer *t)
{
    t->next = *head;
    if (t->next) {
        t->next->pprev = &t->next;
    }
    t->pprev = head;
    *head = t;
}

static void unlink_timer(tw_timer *t)
{
    *t->pprev = t->next;
    if (t->next) {
        t->next->pprev = t->pprev;
    }
    t->next = NULL;
    t->pprev = NULL;
}

/* The slot for t's due time, seen from next_tick: the lowest level whose
 * span covers the distance. A tick before min_tick has been handled (or is
 * being): the timer waits in `soon`, which every advance looks at. */
static void place(twheel *tw, tw_timer *t, uint64_t min_tick)
{
    uint64_t tick = t->due_ms / tw->res_ms;
    if (tick < min_tick) {
        link_head(&tw->soon, t);
        return;
    }
    uint64_t delta = tick - tw->next_tick;
    unsigned level = 0;
    while (level < TW_LEVELS - 1 && delta >= ((uint64_t)TW_SLOTS << (TW_BITS * level))) {
        level++;
    }
    uint64_t span = (uint64_t)1 << (TW_BITS * TW_LEVELS);
    if (delta >= span) {
        /* Beyond the top level's reach: placed at its far edge, looked at
         * again when it comes down, and put back higher if still far. */
        tick = tw->next_tick + span - 1;
    }
    link_head(&tw->slot[level][(tick >> (TW_BITS * level)) & TW_MASK], t);
}

void tw_arm(twheel *tw, tw_timer *t, uint64_t due_ms)
{
    sh_assert(tw->res_ms != 0);
    if (t->pprev) {
        unlink_timer(t);
    } else {
        tw->count++;
    }
    t->due_ms = due_ms;
    /* From a callback, a tick this advance handles waits for the next one
     * (no loop). */
    place(tw, t, tw->next_tick > tw->arm_min_tick ? tw->next_tick : tw->arm_min_tick);
}

void tw_cancel(twheel *tw, tw_timer *t)
{
    if (t->pprev) {
        unlink_timer(t);
        tw->count--;
    }
}

/* Move a slot's list to a local head, whose address the timers' pprev
 * point at while it is worked through (so a cancel from a callback
 * unlinks from it as from any slot). */
static void take(tw_timer **slot, tw_timer **local)
{
    *local = *slot;
    *slot = NULL;
    if (*local) {
        (*local)->pprev = local;
    }
}

/* Level k's slot for the current 64^k ticks goes down, with next_tick
 * still the tick being entered (a timer due in it lands in level 0's slot
 * that is handled next). */
static void cascade(twheel *tw, unsigned level, uint64_t tick)
{
    tw_timer *local;
    take(&tw->slot[level][(tick >> (TW_BITS * level)) & TW_MASK], &local);
    while (local) {
        tw_timer *t = local;
        unlink_timer(t);
        place(tw, t, tw->next_tick);
    }
}

static uint32_t run_tick(twheel *tw, uint64_t tick, uint64_t now_ms, tw_fire_fn fire, void *arg)
{
    for (unsigned level = TW_LEVELS - 1; level > 0; level--) {
        if ((tick & (((uint64_t)1 << (TW_BITS * level)) - 1)) == 0) {
            cascade(tw, level, tick);
        }
    }
    tw_timer *local;
    take(&tw->slot[0][tick & TW_MASK], &local);
    tw->next_tick = tick + 1; /* what is armed from here on goes later */
    uint32_t fired = 0;
    while (local) {
        tw_timer *t = local;
        unlink_timer(t);
        if (t->due_ms > now_ms) {
            place(tw, t, tw->next_tick); /* its tick, not yet its millisecond */
            continue;
        }
        tw->count--;
        fired++;
        fire(t, arg);
    }
    return fired;
}

uint32_t tw_advance(twheel *tw, uint64_t now_ms, tw_fire_fn fire, void *arg)
{
    uint64_t last = now_ms / tw->res_ms;
    uint32_t fired = 0;
    tw->arm_min_tick = last + 1;
    /* Those whose tick came at an earlier advance, not their millisecond:
     * each fires at the first advance at or after it, as the walk of every
     * connection at every tick did. */
    tw_timer *local;
    take(&tw->soon, &local);
    while (local) {
        tw_timer *t = local;
        unlink_timer(t);
        if (t->due_ms > now_ms) {
            link_head(&tw->soon, t);
            continue;
        }
        tw->count--;
        fired++;
        fire(t, arg);
    }
    while (tw->next_tick <= last) {
        if (tw->count == 0) {
            tw->next_tick = last + 1;
            break;
        }
        fired += run_tick(tw, tw->next_tick, now_ms, fire, arg);
    }
    tw->arm_min_tick = 0;
    return fired;
}
