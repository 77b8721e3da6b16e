/* SPDX-License-Identifier: Apache-2.0 */
/* Replays: a session that resumes on this node (after a move, or after its
 * offline queue spilled to Kafka) reads the stream again from its stored
 * positions up to where the live consumer stands (bp_replay_* in
 * cluster/backplane.h; docs/architecture.md, "Offline queues and
 * positions").
 *
 * One consumer handle of its own (the live one reads every partition
 * through assign(), and a partition can be read from one offset at a time
 * per handle), driven with the simple consumer API onto one queue per
 * replay, woken through a pipe on the backplane thread like the live
 * consumer. One replay reads at a time (the head of the list): a burst of
 * reconnects queues up instead of opening a handle each (each is a set of
 * broker connections and threads). A replay hands its caller one batch at
 * a time and reads on only when asked (bp_replay_next), so it holds at most
 * one batch plus what librdkafka prefetches (capped below). A head that
 * waits for its caller (a slow or silent client) while another replay
 * wants a batch is parked: its partitions stop where it stands and it goes
 * to the back, so one client that takes nothing cannot keep every other
 * session on the node from catching up. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cluster/rk_impl.h"
#include "cluster/rk_record.h"
#include "common/alloc.h"
#include "common/log.h"

/* librdkafka's prefetch per replay: what a replay may hold beyond its batch. */
#define REPLAY_PREFETCH_KBYTES "4096"

typedef struct rp_job {
    struct rp_job *next;
    uint64_t id;
    int worker;
    bp_replay_cb cb;
    void *arg;
    uint32_t n_parts;
    uint32_t max_batch;
    int64_t *from;
    int64_t *at; /* the next offset to read per partition (a parked job resumes there) */
    int64_t *end;
    int64_t *least; /* the caller's minimum end, -1 none (bp_replay_start_least) */
    int64_t *live;  /* the live stream's position when the job began: end is never below it */
    bool *started;  /* consume_start called for the partition */
    bool *open;     /* not at its end yet */
    rd_kafka_queue_t *q;
    bool active;
    bool have_end; /* end is fixed at the first activation: the caller drops live records below it */
    bool want;     /* the caller asked for a batch */
    bool stopped;  /* bp_replay_stop */
} rp_job;

typedef struct rk_replay {
    rd_kafka_t *c;
    rd_kafka_topic_t *t;
    int pipe[2];
    struct event *ev;
    rp_job *head, *tail;
} rk_replay;

/* A batch on its way to the worker. */
typedef struct rp_batch {
    bp_replay_cb cb;
    void *arg;
    bp_status st;
    bool done;
    uint32_t n_parts;
    int64_t *end;
    size_t n;
    bp_message *msgs;
    rd_kafka_message_t **kms;
} rp_batch;

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        sh_log(SH_ERROR, "event=kafka_config key=%s value=%s err=\"%s\"", k, v, err);
        return -1;
    }
    return 0;
}

int rk_replay_start_consumer(rk *r)
{
    rk_replay *rp = sh_calloc(1, sizeof(*rp));
    rp->pipe[0] = rp->pipe[1] = -1;
    r->replay = rp;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char id[300];
    snprintf(id, sizeof(id), "%s-replay", r->bp->cfg.node_id);
    if (rk_ksec_apply(&r->ksec, &r->bp->cfg, conf) != 0 ||
        conf_set(conf, "bootstrap.servers", r->bp->cfg.kafka_brokers) || conf_set(conf, "client.id", id) ||
        conf_set(conf, "socket.nagle.disable", "true") || conf_set(conf, "enable.partition.eof", "true") ||
        conf_set(conf, "fetch.wait.max.ms", "100") ||
        conf_set(conf, "queued.max.messages.kbytes", REPLAY_PREFETCH_KBYTES)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    char err[512];
    rp->c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rp->c) {
        sh_log(SH_ERROR, "event=kafka_replay_consumer_failed err=\"%s\"", err);
        return -1;
    }
    rd_kafka_topic_conf_t *tc = rd_kafka_topic_conf_new();
    /* A position Kafka's retention has deleted meanwhile: read from the
     * oldest record left (what was deleted is gone; logged below). */
    rd_kafka_topic_conf_set(tc, "auto.offset.reset", "earliest", err, sizeof(err));
    rp->t = rd_kafka_topic_new(rp->c, r->topic, tc);
    return rp->t ? 0 : -1;
}

static void batch_cb(evutil_socket_t fd, short what, void *arg)
{
    rp_batch *b = arg;
    bp_replay_batch view = {.end = b->end, .n_parts = b->n_parts, .msgs = b->msgs, .n = b->n, .done = b->done};
    b->cb(b->st, &view, b->arg);
    for (size_t i = 0; i < b->n; i++) {
        rd_kafka_message_destroy(b->kms[i]);
    }
    sh_free(b->msgs, (b->n ? b->n : 1) * sizeof(bp_message));
    sh_free(b->kms, (b->n ? b->n : 1) * sizeof(rd_kafka_message_t *));
    sh_free(b->end, (b->n_parts ? b->n_parts : 1) * sizeof(int64_t));
    sh_free(b, sizeof(*b));
}

static rp_batch *batch_new(rp_job *j, size_t cap)
{
    rp_batch *b = sh_calloc(1, sizeof(*b));
    b->cb = j->cb;
    b->arg = j->arg;
    b->n_parts = j->n_parts;
    b->end = sh_malloc((j->n_parts ? j->n_parts : 1) * sizeof(int64_t));
    if (j->n_parts) {
        memcpy(b->end, j->end, j->n_parts * sizeof(int64_t));
    }
    b->msgs = sh_calloc(cap ? cap : 1, sizeof(bp_message));
    b->kms = sh_calloc(cap ? cap : 1, sizeof(rd_kafka_message_t *));
    return b;
}

static void batch_post(rk *r, int worker, rp_batch *b)
{
    struct timeval now = {0, 0};
    if (event_base_once(r->bp->bases[worker], -1, EV_TIMEOUT, batch_cb, b, &now) != 0) {
        b->st = BP_ECLOSED;
        batch_cb(-1, 0, b);
    }
}

static void job_free(rp_job *j)
{
    size_t n = j->n_parts ? j->n_parts : 1;
    sh_free(j->from, n * sizeof(int64_t));
    sh_free(j->at, n * sizeof(int64_t));
    sh_free(j->end, n * sizeof(int64_t));
    sh_free(j->least, n * sizeof(int64_t));
    sh_free(j->live, n * sizeof(int64_t));
    sh_free(j->started, n * sizeof(bool));
    sh_free(j->open, n * sizeof(bool));
    sh_free(j, sizeof(*j));
}

static void stop_partition(rk_replay *rp, rp_job *j, uint32_t p)
{
    if (j->started[p]) {
        rd_kafka_consume_stop(rp->t, (int32_t)p);
        j->started[p] = false;
    }
    j->open[p] = false;
}

static bool any_open(const rp_job *j)
{
    for (uint32_t p = 0; p < j->n_parts; p++) {
        if (j->open[p]) {
            return true;
        }
    }
    return false;
}

static void activate(rk *r, rp_job *j);

static void unlink_job(rk_replay *rp, rp_job *j)
{
    rp_job **pp = &rp->head;
    rp_job *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) {
        return;
    }
    *pp = j->next;
    if (rp->tail == j) {
        rp->tail = prev;
    }
    j->next = NULL;
}

static void push_tail(rk_replay *rp, rp_job *j)
{
    j->next = NULL;
    if (rp->tail) {
        rp->tail->next = j;
    } else {
        rp->head = j;
    }
    rp->tail = j;
}

static void push_head(rk_replay *rp, rp_job *j)
{
    j->next = rp->head;
    rp->head = j;
    if (!rp->tail) {
        rp->tail = j;
    }
}

/* Stop reading j's queue: what it prefetched is thrown away (read again
 * from `at` when it resumes). */
static void close_queue(rk_replay *rp, rp_job *j, bool all)
{
    for (uint32_t p = 0; p < j->n_parts; p++) {
        if (all) {
            stop_partition(rp, j, p);
        } else if (j->started[p]) {
            rd_kafka_consume_stop(rp->t, (int32_t)p);
            j->started[p] = false;
        }
    }
    if (j->q) {
        rd_kafka_message_t *km;
        while ((km = rd_kafka_consume_queue(j->q, 0)) != NULL) {
            rd_kafka_message_destroy(km);
        }
        rd_kafka_queue_destroy(j->q);
        j->q = NULL;
    }
    j->active = false;
}

/* A job is over (the head, or a queued one stopped): its last call. */
static void finish_job(rk *r, rp_job *j, bp_status st)
{
    rk_replay *rp = r->replay;
    bool was_head = rp->head == j;
    close_queue(rp, j, true);
    rp_batch *b = batch_new(j, 0);
    b->st = st;
    b->done = true;
    batch_post(r, j->worker, b);
    unlink_job(rp, j);
    job_free(j);
    if (was_head && rp->head) {
        activate(r, rp->head);
    }
}

static void finish_head(rk *r, bp_status st)
{
    finish_job(r, r->replay->head, st);
}

/* The head waits for its caller: if another job wants a batch (or is
 * stopped), park the head at the back and let that one read. */
static void schedule(rk *r)
{
    rk_replay *rp = r->replay;
    rp_job *h = rp->head;
    if (!h || !h->active || h->want || h->stopped) {
        return;
    }
    rp_job *j = h->next;
    while (j && !j->want && !j->stopped) {
        j = j->next;
    }
    if (!j) {
        return;
    }
    close_queue(rp, h, false);
    unlink_job(rp, h);
    push_tail(rp, h);
    unlink_job(rp, j);
    push_head(rp, j);
    activate(r, j);
}

static void schedule(rk *r);

/* Read what the queue holds into one batch, while the caller wants one. */
static void pump_head(rk *r)
{
    rk_replay *rp = r->replay;
    rp_job *j = rp->head;
    if (!j || !j->active) {
        return;
    }
    if (j->stopped) {
        finish_head(r, BP_ECLOSED);
        return;
    }
    if (!j->want) {
        return;
    }
    rp_batch *b = NULL;
    const char *self = r->bp->cfg.node_id;
    rd_kafka_message_t *km;
    while (any_open(j) && (!b || b->n < j->max_batch) && (km = rd_kafka_consume_queue(j->q, 0)) != NULL) {
        uint32_t p = (uint32_t)km->partition;
        if (p >= j->n_parts || !j->open[p]) {
            rd_kafka_message_destroy(km);
            continue;
        }
        if (!km->err) {
            j->at[p] = km->offset + 1;
        }
        if (km->err) {
            if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                sh_log(SH_WARN, "event=kafka_replay_error partition=%u err=\"%s\"", p, rd_kafka_message_errstr(km));
            } else if (km->offset < j->end[p]) {
                /* A minimum end past what Kafka holds (no node read that
                 * far: stale marks): the replay ends here, and so does
                 * what the caller drops of the live stream. */
                j->end[p] = km->offset > j->live[p] ? km->offset : j->live[p];
            }
            stop_partition(rp, j, p); /* at the end of what Kafka holds */
            rd_kafka_message_destroy(km);
            continue;
        }
        if (km->offset >= j->end[p]) {
            stop_partition(rp, j, p);
            rd_kafka_message_destroy(km);
            continue;
        }
        if (km->offset > j->from[p] && j->from[p] >= 0) {
            /* Records before it left with Kafka's retention. */
            sh_log(SH_WARN, "event=kafka_replay_gap partition=%u from=%lld first=%lld", p, (long long)j->from[p],
                   (long long)km->offset);
        }
        j->from[p] = -1; /* logged once */
        bool last = km->offset + 1 >= j->end[p];
        bp_message m;
        const uint8_t *origin;
        size_t olen;
        /* Canaries, unreadable records and admin deletes of a retained
         * message (retain_only) are no messages for a session. */
        if (km->len == 0 || rk_record_decode(km->payload, km->len, &m, &origin, &olen) != RK_RECORD_OK ||
            m.retain_only) {
            rd_kafka_message_destroy(km);
        } else {
            if (!b) {
                b = batch_new(j, j->max_batch);
            }
            m.own = olen == strlen(self) && memcmp(origin, self, olen) == 0;
            rk_expiry_localize(r, &m, origin, olen, m.own, rk_record_version(km->payload));
            m.origin = origin;
            m.origin_len = (uint8_t)(olen > 255 ? 255 : olen);
            m.partition = km->partition;
            m.offset = km->offset;
            b->msgs[b->n] = m;
            b->kms[b->n++] = km;
        }
        if (last) {
            stop_partition(rp, j, p);
        }
    }
    if (!any_open(j)) {
        if (b) {
            j->want = false;
            b->st = BP_OK;
            batch_post(r, j->worker, b);
        }
        finish_head(r, BP_OK);
        return;
    }
    if (b) {
        j->want = false;
        b->st = BP_OK;
        batch_post(r, j->worker, b);
    }
}

static void pump(rk *r)
{
    pump_head(r);
    schedule(r);
}

static void activate(rk *r, rp_job *j)
{
    rk_replay *rp = r->replay;
    j->active = true;
    j->q = rd_kafka_queue_new(rp->c);
    rd_kafka_queue_io_event_enable(j->q, rp->pipe[1], "1", 1);
    bool first = !j->have_end;
    j->have_end = true;
    for (uint32_t p = 0; p < j->n_parts; p++) {
        if (first) {
            /* Every record before `end` is in Kafka now: the live consumer
             * read it, or this node's delivery report for it came. */
            int64_t end = p < (uint32_t)r->partitions ? r->positions[p] : -1;
            if (p < (uint32_t)r->partitions && r->own_high[p] > end) {
                end = r->own_high[p];
            }
            j->live[p] = end;
            /* Past it on the caller's word: the records are in Kafka (a
             * node whose consumer is ahead of this one's read them). */
            if (end >= 0 && j->least[p] > end) {
                end = j->least[p];
            }
            j->end[p] = end;
            j->open[p] = j->from[p] >= 0 && end >= 0 && j->from[p] < end;
        }
        /* A parked job resumes where it stood, with the same end. */
        if (j->open[p] && !j->stopped) {
            if (rd_kafka_consume_start_queue(rp->t, (int32_t)p, j->at[p], j->q) == 0) {
                j->started[p] = true;
            } else {
                j->open[p] = false;
                sh_log(SH_WARN, "event=kafka_replay_start_failed partition=%u err=\"%s\"", p,
                       rd_kafka_err2str(rd_kafka_last_error()));
            }
        }
    }
    sh_log(SH_DEBUG, "event=%s id=%llu", first ? "replay_start" : "replay_resume", (unsigned long long)j->id);
    if (!any_open(j)) {
        finish_head(r, j->stopped ? BP_ECLOSED : BP_OK);
        return;
    }
    pump(r);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    pump(arg);
}

void rk_replay_attach(rk *r)
{
    rk_replay *rp = r->replay;
    if (!rp || pipe2(rp->pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        sh_log(SH_ERROR, "event=pipe_failed err=\"%s\"", strerror(errno));
        return;
    }
    rp->ev = event_new(r->base, rp->pipe[0], EV_READ | EV_PERSIST, wake_cb, r);
    event_add(rp->ev, NULL);
}

/* ---- operations handed to the backplane thread ---- */

typedef struct rp_op {
    rk *r;
    rp_job *job;   /* start */
    uint64_t id;   /* next, stop */
    uint8_t which; /* 1 start, 2 next, 3 stop */
} rp_op;

static rp_job *find(rk_replay *rp, uint64_t id)
{
    for (rp_job *j = rp->head; j; j = j->next) {
        if (j->id == id) {
            return j;
        }
    }
    return NULL;
}

static void run_op(evutil_socket_t fd, short what, void *arg)
{
    rp_op *op = arg;
    rk *r = op->r;
    rk_replay *rp = r->replay;
    if (op->which == 1) {
        rp_job *j = op->job;
        push_tail(rp, j);
        if (rp->head == j) {
            activate(r, j);
        }
    } else {
        rp_job *j = find(rp, op->id);
        if (j && op->which == 2) {
            j->want = true;
        } else if (j) {
            j->stopped = true;
        }
        if (j && j == rp->head) {
            pump(r);
        } else if (j && j->stopped) {
            finish_job(r, j, BP_ECLOSED); /* queued, never to read: its last call now */
        }
    }
    schedule(r);
    sh_free(op, sizeof(*op));
}

static void hand_over(rk *r, rp_op *op)
{
    struct timeval now = {0, 0};
    if (event_base_once(r->base, -1, EV_TIMEOUT, run_op, op, &now) != 0) {
        if (op->job) {
            rp_batch *b = batch_new(op->job, 0);
            b->st = BP_ECLOSED;
            b->done = true;
            batch_post(r, op->job->worker, b);
            job_free(op->job);
        }
        sh_free(op, sizeof(*op));
    }
}

void rk_replay_start(rk *r, int worker, uint64_t id, const int64_t *from, const int64_t *least, uint32_t n_parts,
                     uint32_t max_batch, bp_replay_cb cb, void *arg)
{
    rp_job *j = sh_calloc(1, sizeof(*j));
    size_t n = n_parts ? n_parts : 1;
    j->id = id;
    j->worker = worker;
    j->cb = cb;
    j->arg = arg;
    j->n_parts = n_parts;
    j->max_batch = max_batch;
    j->from = sh_malloc(n * sizeof(int64_t));
    j->at = sh_malloc(n * sizeof(int64_t));
    j->end = sh_malloc(n * sizeof(int64_t));
    j->least = sh_malloc(n * sizeof(int64_t));
    j->live = sh_malloc(n * sizeof(int64_t));
    j->started = sh_calloc(n, sizeof(bool));
    j->open = sh_calloc(n, sizeof(bool));
    for (uint32_t p = 0; p < n_parts; p++) {
        j->from[p] = from[p];
        j->at[p] = from[p];
        j->end[p] = -1;
        j->least[p] = least ? least[p] : -1;
        j->live[p] = -1;
    }
    j->want = true;
    rp_op *op = sh_calloc(1, sizeof(*op));
    op->r = r;
    op->job = j;
    op->which = 1;
    if (!r->replay || !r->replay->c) {
        j->n_parts = 0;
        rp_batch *b = batch_new(j, 0);
        b->st = BP_EUNAVAILABLE;
        b->done = true;
        batch_post(r, worker, b);
        j->n_parts = n_parts;
        job_free(j);
        sh_free(op, sizeof(*op));
        return;
    }
    hand_over(r, op);
}

static void simple_op(rk *r, uint64_t id, uint8_t which)
{
    rp_op *op = sh_calloc(1, sizeof(*op));
    op->r = r;
    op->id = id;
    op->which = which;
    hand_over(r, op);
}

void rk_replay_next(rk *r, uint64_t id)
{
    simple_op(r, id, 2);
}

void rk_replay_cancel(rk *r, uint64_t id)
{
    simple_op(r, id, 3);
}

/* After the backplane thread has stopped: every replay still queued gets
 * its last call (BP_ECLOSED), and the handle goes. */
void rk_replay_stop_all(rk *r)
{
    rk_replay *rp = r->replay;
    if (!rp) {
        return;
    }
    for (rp_job *j = rp->head; j; j = j->next) {
        j->stopped = true;
    }
    while (rp->head) {
        finish_head(r, BP_ECLOSED);
    }
    if (rp->ev) {
        event_free(rp->ev);
    }
    if (rp->t) {
        rd_kafka_topic_destroy(rp->t);
    }
    if (rp->c) {
        rd_kafka_destroy(rp->c);
    }
    for (int i = 0; i < 2; i++) {
        if (rp->pipe[i] >= 0) {
            close(rp->pipe[i]);
        }
    }
    sh_free(rp, sizeof(*rp));
    r->replay = NULL;
}
