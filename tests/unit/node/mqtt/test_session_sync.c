/* SPDX-License-Identifier: Apache-2.0 */
/* Session records (node/mqtt/session_sync.c) on an in-process broker: the
 * bound on the record drops a worker keeps for later when the backend did
 * not take them (Redis unreachable), at its edge and one past it. The
 * records live in the local backplane's table, so what the retried drops
 * did is read back from there. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cluster/backplane.h"
#include "inproc_client.h"
#include "node/mqtt/session_sync.h"

ICL_SUITE(session_sync, 1);

typedef struct rec_res {
    int count;
    bp_status st;
    uint64_t epoch;
} rec_res;

static void rec_cb(bp_status st, const bp_session_rec *rec, void *arg)
{
    rec_res *r = arg;
    r->count++;
    r->st = st;
    r->epoch = rec ? rec->epoch : 0;
}

/* The local backplane answers before the call returns. */
static uint64_t claim(const char *id)
{
    rec_res r = {0};
    bp_session_claim(b.bp, 0, id, false, rec_cb, &r);
    cr_assert_eq(r.count, 1);
    cr_assert_eq(r.st, BP_OK, "claim %s: %s", id, bp_status_name(r.st));
    return r.epoch;
}

/* The record's epoch, 0 once it is gone. */
static uint64_t epoch_of(const char *id)
{
    rec_res r = {0};
    bp_session_load(b.bp, 0, id, 0, false, rec_cb, &r);
    cr_assert_eq(r.count, 1);
    cr_assert_eq(r.st, BP_OK);
    return r.epoch;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Turn the worker's loop until its retry has run (the drops list empties). */
static void run_retry(worker *w)
{
    double deadline = now_s() + 120;
    while (w->sync.n_drops > 0) {
        cr_assert_lt(now_s(), deadline, "the retry never ran (%u drops left)", w->sync.n_drops);
        event_base_loop(w->base, EVLOOP_ONCE);
    }
    cr_assert(inproc_settle(&b, NULL, NULL));
}

static void id_of(char *buf, size_t cap, uint32_t i)
{
    snprintf(buf, cap, "drop-%u", i);
}

Test(session_sync, drops_kept_for_later_stop_at_the_bound_and_the_one_past_keeps_its_record)
{
    worker *w = &b.workers[0];
    char id[32];
    for (uint32_t i = 0; i < SYNC_DROPS_MAX; i++) {
        id_of(id, sizeof(id), i);
        sync_drop_later(w, id, claim(id));
    }
    /* At the edge: every one is kept. */
    cr_assert_eq(w->sync.n_drops, SYNC_DROPS_MAX);
    /* One past it: refused (logged), its record stays until the id is
     * claimed again. */
    uint64_t past = claim("past");
    sync_drop_later(w, "past", past);
    cr_assert_eq(w->sync.n_drops, SYNC_DROPS_MAX, "the list grew past its bound");
    for (uint32_t i = 0; i < w->sync.n_drops; i++) {
        cr_assert_str_neq(w->sync.drops[i].client_id, "past");
    }

    run_retry(w);
    for (uint32_t i = 0; i < SYNC_DROPS_MAX; i += 4097) {
        id_of(id, sizeof(id), i);
        cr_assert_eq(epoch_of(id), 0, "%s was kept for later and never dropped", id);
    }
    id_of(id, sizeof(id), SYNC_DROPS_MAX - 1);
    cr_assert_eq(epoch_of(id), 0, "the last one within the bound was not dropped");
    cr_assert_eq(epoch_of("past"), past, "the drop past the bound was not kept, so its record stays");

    /* The bound holds over time, not for good: once the list is tried
     * again there is room. */
    sync_drop_later(w, "past", past);
    cr_assert_eq(w->sync.n_drops, 1);
    run_retry(w);
    cr_assert_eq(epoch_of("past"), 0);
}
