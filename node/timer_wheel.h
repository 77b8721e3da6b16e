/* SPDX-License-Identifier: Apache-2.0 */
/* A hierarchical timing wheel (node/timer_wheel.c): one per worker,
 * single-threaded, driven by the worker's 1 s tick. Arming, re-arming and
 * cancelling are O(1) (an intrusive doubly linked list per slot), and a
 * tick touches only the timers that are due, plus, once per level-0
 * revolution, the few that move down a level: its cost does not grow
 * with timers that are far off. */
#ifndef SHOAL_NODE_TIMER_WHEEL_H
#define SHOAL_NODE_TIMER_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TW_BITS 6
#define TW_SLOTS (1u << TW_BITS) /* per level */
#define TW_LEVELS 4              /* 64^4 ticks: 194 days at 1 s; farther fires early, re-placed */

/* Embedded in what it times; zeroed = not armed. */
typedef struct tw_timer {
    struct tw_timer *next;
    struct tw_timer **pprev; /* NULL when not armed */
    uint64_t due_ms;
} tw_timer;

typedef struct twheel {
    tw_timer *slot[TW_LEVELS][TW_SLOTS];
    tw_timer *soon;        /* their tick handled, their millisecond not yet come */
    uint64_t next_tick;    /* the first tick not yet handled */
    uint64_t arm_min_tick; /* in tw_advance: the tick after the last it handles, else 0 */
    uint32_t res_ms;       /* one tick */
    uint32_t count;        /* armed timers */
} twheel;

/* A timer that is due, already disarmed: it may re-arm itself or arm and
 * cancel any other (re-armed for now or earlier, it fires on the next
 * advance, not again in this one). It must not call tw_advance. */
typedef void (*tw_fire_fn)(tw_timer *t, void *arg);

/* res_ms: one tick (the caller's advance interval, e.g. 1000). */
void tw_init(twheel *tw, uint64_t now_ms, uint32_t res_ms);
/* Arm t for due_ms, or move it there if armed. */
void tw_arm(twheel *tw, tw_timer *t, uint64_t due_ms);
void tw_cancel(twheel *tw, tw_timer *t);

static inline bool tw_armed(const tw_timer *t)
{
    return t->pprev != NULL;
}

/* Fire every timer with due_ms <= now_ms; returns how many fired. Each
 * timer fires at the first advance at or after its due_ms, whenever the
 * advances come (two in one tick, or one over many). */
uint32_t tw_advance(twheel *tw, uint64_t now_ms, tw_fire_fn fire, void *arg);

#endif
