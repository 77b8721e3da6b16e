/* SPDX-License-Identifier: Apache-2.0 */
/* A broker that closes while the redis_kafka backplane still owes its
 * workers answers (node/broker.c, broker_close), in this process with a
 * real Redis and Kafka (given by with_backends.sh). The backplane answers
 * every call exactly once on the calling worker's loop, BP_ECLOSED at
 * shutdown (cluster/backplane.h); a node stops its loops before it closes
 * the backplane, so the answers posted at close must still run before the
 * loops are freed, or they leak (and so does whatever waits for them, e.g.
 * a dead node's reap: node/mqtt/dead_node.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "inproc.h"
#include "rk_config.h"

#define WAIT_S 120

static config cfg;
static broker b;

static void setup(void)
{
    rk_test_config(&cfg, "close");
}

TestSuite(broker_close_rk, .init = setup, .timeout = 300);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_ready(void)
{
    double deadline = now_s() + WAIT_S;
    while (!bp_is_ready(b.bp)) {
        cr_assert_lt(now_s(), deadline, "the backplane never got ready");
        event_base_loop(b.workers[0].base, EVLOOP_NONBLOCK);
        usleep(2000);
    }
}

/* What the callbacks saw; static: the loops they run on are gone after
 * broker_close. */
static int batch_calls, finish_calls, nodes_calls;

static void batch_cb(bp_status st, const bp_reap_set *set, void *arg)
{
    batch_calls++;
}

static void finish_cb(bp_status st, void *arg)
{
    finish_calls++;
}

static void nodes_cb(bp_status st, const bp_node_info *nodes, size_t n, void *arg)
{
    nodes_calls++;
}

/* Ask, never turn the worker's loop again, close: each answer (a reap
 * batch, a deferred completion, a node list) runs once, and nothing the
 * broker allocated is left (ASan's leak check says the same). */
Test(broker_close_rk, answers_pending_on_a_stopped_loop_run_once_at_close)
{
    size_t before = sh_allocated();
    cr_assert_eq(inproc_up(&b, &cfg, 1), 0);
    wait_ready();
    bp_reap_batch(b.bp, 0, NULL, 0, batch_cb, NULL);
    bp_reap_finish(b.bp, 0, "no-such-token|no-such-node", "no-such-client", 1, NULL, 0, -1, finish_cb, NULL);
    bp_nodes(b.bp, 0, nodes_cb, NULL);
    inproc_down(&b);
    cr_expect_eq(batch_calls, 1, "reap batch answered %d times", batch_calls);
    cr_expect_eq(finish_calls, 1, "reap finish answered %d times", finish_calls);
    cr_expect_eq(nodes_calls, 1, "node list answered %d times", nodes_calls);
    cr_expect_eq(sh_allocated(), before, "%zu bytes left allocated after close", sh_allocated() - before);
    config_free(&cfg);
}

/* The same while the calls are still at Redis when the broker closes:
 * Redis is paused, so the answers come from the connection's teardown. */
Test(broker_close_rk, answers_still_at_redis_run_once_at_close)
{
    size_t before = sh_allocated();
    cr_assert_eq(inproc_up(&b, &cfg, 1), 0);
    wait_ready();
    const char *url = getenv("SHOAL_TEST_REDIS_URL");
    char host[128];
    int port = 0;
    cr_assert_eq(sscanf(url, "redis://%127[^:]:%d", host, &port), 2, "a plain redis:// URL expected, got %s", url);
    struct timeval tv = {5, 0};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    cr_assert(rc && !rc->err, "cannot connect to %s", url);
    /* Long enough for the close (its claim release gives up after 1 s),
     * short enough to leave the Redis usable after. */
    redisReply *rep = redisCommand(rc, "CLIENT PAUSE 4000 ALL");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS, "CLIENT PAUSE failed");
    freeReplyObject(rep);
    redisFree(rc);
    bp_reap_batch(b.bp, 0, NULL, 0, batch_cb, NULL);
    bp_reap_batch(b.bp, 0, "no-such-token|no-such-node", 0, batch_cb, NULL);
    bp_reap_finish(b.bp, 0, "no-such-token|no-such-node", "no-such-client", 1, NULL, 0, -1, finish_cb, NULL);
    inproc_down(&b);
    cr_expect_eq(batch_calls, 2, "reap batches answered %d times", batch_calls);
    cr_expect_eq(finish_calls, 1, "reap finish answered %d times", finish_calls);
    cr_expect_eq(sh_allocated(), before, "%zu bytes left allocated after close", sh_allocated() - before);
    config_free(&cfg);
}
