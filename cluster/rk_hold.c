/* SPDX-License-Identifier: Apache-2.0 */
/* Cross-node back-pressure on the consumer (docs/architecture.md,
 * "Cross-node back-pressure"). The node says it is behind through
 * bp_hooks.stream_behind; the backplane thread then hands nothing more
 * over. Records already fetched stay in librdkafka's queue, so a short
 * hold costs nothing; one that lasts HOLD_PAUSE_US pauses every assigned
 * partition (rd_kafka_pause_partitions), so Kafka stops sending and the
 * prefetch is freed. Everything here runs on the backplane thread. */
#include <event2/event.h>

#include "cluster/rk_impl.h"
#include "common/log.h"

/* How often a held consumer asks again whether the node caught up: one
 * record's worth of latency, and a cheap question. */
#define HOLD_CHECK_US 2000
/* A hold this long is no blip: pause the partitions. Shorter holds (a
 * worker's inbox between two batches) only stop handing over, because a
 * resume throws the prefetch away and fetches again. */
#define HOLD_PAUSE_US 20000
/* A pause period ends (one log line) once nothing was paused this long. */
#define PERIOD_QUIET_US 1000000

static bool behind(rk *r)
{
    const bp_hooks *h = &r->bp->hooks;
    return h->stream_behind && h->stream_behind(h->node);
}

static void pause_all(rk *r)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_resp_err_t e = rd_kafka_assignment(r->consumer, &l);
    if (e || !l || l->cnt == 0) {
        if (l) {
            rd_kafka_topic_partition_list_destroy(l);
        }
        return;
    }
    e = rd_kafka_pause_partitions(r->consumer, l);
    if (e) {
        sh_log(SH_WARN, "event=kafka_pause_failed err=\"%s\"", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    r->paused = l;
    atomic_store(&r->paused_parts, (uint32_t)l->cnt);
    atomic_fetch_add(&r->pauses, 1);
    if (!r->last_resume_us && r->period_pauses == 0) {
        sh_log(SH_INFO, "event=stream_paused partitions=%d msg=\"a worker or an online subscriber is behind\"", l->cnt);
    }
    r->period_pauses++;
}

/* Fetch again from where the node stands (r->positions), not from
 * librdkafka's own resume point: that one is unset in a partition the
 * node has not read a record of yet, and the records a pause discarded
 * from the queue would be skipped. */
static void resume_all(rk *r, uint64_t now)
{
    rd_kafka_topic_partition_list_t *l = r->paused;
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(l->cnt);
    for (int i = 0; i < l->cnt; i++) {
        int32_t p = l->elems[i].partition;
        if (p >= 0 && p < r->partitions && r->positions[p] >= 0) {
            rd_kafka_topic_partition_list_add(seek, r->topic, p)->offset = r->positions[p];
        }
    }
    if (seek->cnt) {
        rd_kafka_error_t *err = rd_kafka_seek_partitions(r->consumer, seek, 0);
        if (err) {
            sh_log(SH_WARN, "event=kafka_seek_failed err=\"%s\"", rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
        }
    }
    rd_kafka_topic_partition_list_destroy(seek);
    rd_kafka_resp_err_t e = rd_kafka_resume_partitions(r->consumer, l);
    if (e) {
        sh_log(SH_WARN, "event=kafka_resume_failed err=\"%s\"", rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(l);
    r->paused = NULL;
    atomic_store(&r->paused_parts, 0);
    r->period_paused_us += now - r->held_since_us;
    r->last_resume_us = now;
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rk *r = arg;
    uint64_t now = rk_mono_us();
    if (behind(r)) {
        if (!r->paused && now - r->held_since_us >= HOLD_PAUSE_US) {
            pause_all(r);
        }
        return;
    }
    if (r->paused) {
        resume_all(r, now);
    }
    r->held = false;
    event_del(r->hold_ev);
    rk_kafka_drain(r);
}

bool rk_hold_check(rk *r)
{
    if (r->held) {
        return true;
    }
    if (!behind(r)) {
        return false;
    }
    if (!r->hold_ev) {
        r->hold_ev = event_new(r->base, -1, EV_PERSIST, hold_cb, r);
        if (!r->hold_ev) {
            return false; /* no memory: hand over as before */
        }
    }
    struct timeval tv = {0, HOLD_CHECK_US};
    event_add(r->hold_ev, &tv);
    r->held = true;
    r->held_since_us = rk_mono_us();
    return true;
}

void rk_hold_tick(rk *r)
{
    if (r->paused || !r->last_resume_us) {
        return;
    }
    uint64_t now = rk_mono_us();
    if (now - r->last_resume_us < PERIOD_QUIET_US) {
        return;
    }
    sh_log(SH_INFO, "event=stream_resumed pauses=%llu paused_ms=%llu", (unsigned long long)r->period_pauses,
           (unsigned long long)(r->period_paused_us / 1000u));
    r->last_resume_us = 0;
    r->period_pauses = 0;
    r->period_paused_us = 0;
}

void rk_hold_stop(rk *r)
{
    if (r->hold_ev) {
        event_free(r->hold_ev);
        r->hold_ev = NULL;
    }
    if (r->paused) {
        rd_kafka_topic_partition_list_destroy(r->paused);
        r->paused = NULL;
        atomic_store(&r->paused_parts, 0);
    }
    r->held = false;
}
