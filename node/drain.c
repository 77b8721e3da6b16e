/* SPDX-License-Identifier: Apache-2.0 */
/* Drain: the phases are in node/drain.h; the reasons in
 * docs/architecture.md, "Drain". */
#include "node/drain.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <string.h>

#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/net/conn_io.h"
#include "node/worker.h"
#include "proto/mqtt.h"

#define DRAIN_TICK_MS 100
#define PROGRESS_EVERY_MS 1000

enum drain_phase {
    PH_OFF = 0,
    PH_QUIESCE,
    PH_DISCONNECT,
    PH_FLUSH,
    PH_DONE,
};

static const char *phase_name(uint8_t p)
{
    static const char *const names[] = {"off", "quiesce", "disconnect", "flush", "done"};
    return p <= PH_DONE ? names[p] : "?";
}

/* MQTT 5 §3.14.2.1: 0x9C Use another server carries the Server Reference
 * (node/mqtt/send.c adds it); without one, 0x8B Server shutting down. */
static uint8_t drain_rc(const broker *b)
{
    return b->cfg->drain.server_reference ? MQTT_RC_USE_ANOTHER_SERVER : MQTT_RC_SERVER_SHUTTING_DOWN;
}

/* Close (not just disable) the listeners: a disabled one still completes
 * handshakes into its backlog, so clients and load balancers would see a
 * port that accepts and never answers. A closed one refuses at once. */
uint32_t drain_close_listeners(worker *w)
{
    struct evconnlistener **ls[] = {&w->listener, &w->tls.listener, &w->ws.listener, &w->ws.tls_listener};
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); i++) {
        if (*ls[i]) {
            evconnlistener_free(*ls[i]);
            *ls[i] = NULL;
            n++;
        }
    }
    return n;
}

/* Every tick, for connections that came in meanwhile too (a PROXY header
 * that was still on its way): no CONNACK yet, closed (the client retries
 * elsewhere); established, no longer read, so nothing new is taken while
 * what was taken finishes, except the acks of what they were sent. */
static void quiesce_conns(worker *w)
{
    uint8_t rc = drain_rc(w->b);
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->state < CS_ACTIVE) {
            conn_close(c, rc, "server draining");
        } else if (c->state == CS_ACTIVE && !(c->paused & PAUSE_DRAIN)) {
            c->paused |= PAUSE_DRAIN;
            conn_io_read_enable(c, false);
        } else if (c->state == CS_ACTIVE) {
            /* Its acks still come in: what it holds is done, the next goes out. */
            conn_read_acks(c);
        }
        c = next;
    }
}

static uint32_t count_active(const worker *w)
{
    uint32_t n = 0;
    for (const conn *c = w->conns; c; c = c->next) {
        n += c->state == CS_ACTIVE;
    }
    return n;
}

/* Close as many as the schedule says are due by now: linear from the
 * phase's start to end_ms. */
static void disconnect_due(worker *w, uint64_t now)
{
    drain_worker *dw = &w->drain;
    uint64_t due = dw->to_disconnect;
    if (now < dw->end_ms && dw->end_ms > dw->phase_ms) {
        uint64_t span = dw->end_ms - dw->phase_ms;
        due = ((uint64_t)dw->to_disconnect * (now - dw->phase_ms) + span - 1) / span;
    }
    uint8_t rc = drain_rc(w->b);
    conn *c = w->conns;
    while (c && dw->done < due) {
        conn *next = c->next;
        if (c->state == CS_ACTIVE) {
            conn_read_acks(c); /* the last ones, so what it acknowledged is not sent again */
            conn_close(c, rc, "server draining");
            dw->done++;
            atomic_fetch_add(&w->b->drain.disconnected, 1);
        }
        c = next;
    }
}

static void start_disconnects(worker *w, uint64_t now)
{
    broker *b = w->b;
    drain_worker *dw = &w->drain;
    dw->phase = PH_DISCONNECT;
    dw->phase_ms = now;
    dw->to_disconnect = count_active(w);
    dw->done = 0;
    /* Every worker spreads its share over the time the whole node needs
     * at --drain-rate, so the node's rate is about --drain-rate. */
    uint64_t total = atomic_load(&b->drain.connections);
    uint64_t span = total * 1000u / (b->cfg->drain.rate ? b->cfg->drain.rate : 1);
    dw->end_ms = now + span < b->drain.spread_end_ms ? now + span : b->drain.spread_end_ms;
}

static void force_close(worker *w)
{
    uint8_t rc = drain_rc(w->b);
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        if (c->state < CS_CLOSING) {
            conn_close(c, rc, "drain timeout");
            atomic_fetch_add(&w->b->drain.forced, 1);
        }
        c = next;
    }
}

static void sum_pending(const broker *b, uint64_t *n_inflight, uint64_t *n_stores)
{
    *n_inflight = *n_stores = 0;
    for (int i = 0; i < b->nworkers; i++) {
        *n_inflight += atomic_load_explicit(&b->workers[i].drain.inflight, memory_order_relaxed);
        *n_stores += atomic_load_explicit(&b->workers[i].drain.stores, memory_order_relaxed);
    }
}

static void log_progress(worker *w, uint64_t now)
{
    broker *b = w->b;
    uint64_t last = atomic_load(&b->drain.last_log_ms);
    if (now - last < PROGRESS_EVERY_MS || !atomic_compare_exchange_strong(&b->drain.last_log_ms, &last, now)) {
        return;
    }
    uint64_t n_inflight, n_stores;
    sum_pending(b, &n_inflight, &n_stores);
    sh_log(SH_INFO,
           "event=drain_progress phase=%s connections_left=%llu disconnected=%llu inflight=%llu stores=%llu "
           "elapsed_ms=%llu",
           phase_name(w->drain.phase), (unsigned long long)drain_remaining(b),
           (unsigned long long)atomic_load(&b->drain.disconnected), (unsigned long long)n_inflight,
           (unsigned long long)n_stores, (unsigned long long)(now - b->drain.start_ms));
}

static void worker_finished(worker *w, uint64_t now)
{
    broker *b = w->b;
    w->drain.phase = PH_DONE;
    event_del(w->drain.timer);
    if (atomic_fetch_add(&b->drain.workers_done, 1) + 1 != b->nworkers) {
        return;
    }
    uint64_t elapsed = now - b->drain.start_ms;
    atomic_store(&b->drain.elapsed_ms, elapsed);
    sh_log(SH_INFO, "event=drain_done connections=%llu disconnected=%llu forced=%llu elapsed_ms=%llu",
           (unsigned long long)atomic_load(&b->drain.connections),
           (unsigned long long)atomic_load(&b->drain.disconnected), (unsigned long long)atomic_load(&b->drain.forced),
           (unsigned long long)elapsed);
    atomic_store(&b->drain.state, DRAIN_DONE);
}

static void tick(worker *w)
{
    broker *b = w->b;
    drain_worker *dw = &w->drain;
    uint64_t now = now_ms();
    if (dw->phase == PH_DONE || atomic_load(&b->stopping)) {
        return; /* stopping: a second signal cut the drain short */
    }
    quiesce_conns(w);
    if (now >= b->drain.deadline_ms) {
        force_close(w);
        worker_flush(w);
        worker_finished(w, now);
        return;
    }
    if (dw->phase == PH_QUIESCE &&
        (atomic_load_explicit(&dw->inflight, memory_order_relaxed) == 0 || now >= b->drain.quiesce_end_ms)) {
        start_disconnects(w, now);
    }
    if (dw->phase == PH_DISCONNECT) {
        disconnect_due(w, now);
        if (count_active(w) == 0) {
            dw->phase = PH_FLUSH;
        }
    }
    /* The stores the disconnects caused are made at the end of this loop
     * turn (node/mqtt/session_sync.c): seen here from the next tick on. */
    if (dw->phase == PH_FLUSH && atomic_load_explicit(&dw->stores, memory_order_relaxed) == 0 && w->sync.n_dirty == 0 &&
        w->nconns == 0) {
        worker_flush(w);
        worker_finished(w, now);
        return;
    }
    log_progress(w, now);
    worker_flush(w);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tick(arg);
}

static void begin_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    drain_close_listeners(w);
    w->drain.phase = PH_QUIESCE;
    w->drain.timer = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    struct timeval tv = {0, DRAIN_TICK_MS * 1000};
    event_add(w->drain.timer, &tv);
    tick(w);
}

bool drain_begin(broker *b, const char *by)
{
    int expect = DRAIN_OFF;
    if (!atomic_compare_exchange_strong(&b->drain.state, &expect, DRAIN_RUNNING)) {
        return false;
    }
    const drain_config *dc = &b->cfg->drain;
    uint64_t now = now_ms(), t = (uint64_t)dc->timeout * 1000u;
    b->drain.start_ms = now;
    b->drain.deadline_ms = now + t;
    /* A third of the bound for what is in flight, the disconnects done by
     * two thirds, the rest for their stores and last bytes. */
    b->drain.quiesce_end_ms = now + t / 3;
    b->drain.spread_end_ms = now + 2 * t / 3;
    atomic_store(&b->drain.last_log_ms, now);
    atomic_store(&b->drain.connections, atomic_load(&b->stats.connections_current));
    /* Not ready first, so a load balancer stops sending before the ports close. */
    atomic_store(&b->ops.draining, true);
    sh_log(SH_INFO, "event=drain_start connections=%llu timeout_ms=%llu rate=%u rc=0x%02x by=%s",
           (unsigned long long)atomic_load(&b->drain.connections), (unsigned long long)t, dc->rate, drain_rc(b), by);
    for (int i = 0; i < b->nworkers; i++) {
        event_base_once(b->workers[i].base, -1, EV_TIMEOUT, begin_cb, &b->workers[i], NULL);
    }
    return true;
}

int drain_state_of(const broker *b)
{
    return atomic_load(&((broker *)b)->drain.state);
}

uint64_t drain_remaining(const broker *b)
{
    return atomic_load(&((broker *)b)->stats.connections_current);
}

void drain_worker_free(worker *w)
{
    if (w->drain.timer) {
        event_free(w->drain.timer);
        w->drain.timer = NULL;
    }
}
