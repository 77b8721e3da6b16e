/* SPDX-License-Identifier: Apache-2.0 */
/* Worker threads: one event_base each, one SO_REUSEPORT listener each, an
 * inbox other threads post to, woken once per batch. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/drain.h"
#include "node/http/metrics.h"
#include "node/mqtt/dead_node.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/route.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/share.h"
#include "node/net/conn_io.h"
#include "node/worker.h"

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void vec_push(item_vec *v, const inbox_item *it)
{
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 64;
        v->v = sh_realloc(v->v, v->cap * sizeof(inbox_item), cap * sizeof(inbox_item));
        v->cap = cap;
    }
    v->v[v->n++] = *it;
}

/* Queue for worker `to`. From a worker the item waits in its outbox until
 * worker_flush(); from elsewhere it goes straight in. */
void worker_post(worker *from, int to, const inbox_item *it)
{
    vec_push(&from->outbox[to], it);
    from->outbox_dirty = true;
}

static void post_batch(worker *to, item_vec *items);

void worker_post_external(broker *b, int to, const inbox_item *it)
{
    item_vec one = {(inbox_item *)it, 1, 1};
    post_batch(&b->workers[to], &one);
}

/* What a full inbox may refuse: QoS 0 that changes nothing but one
 * delivery (a retained one too: the index follows the stream on the
 * backplane's thread, not here). Session hand-overs and QoS 1/2
 * (acknowledged, or waiting for an ack) always go in. */
static bool is_droppable(const inbox_item *it)
{
    if (it->kind == IN_DELIVER) {
        return it->d.qos == 0;
    }
    if (it->kind == IN_REMOTE) {
        return it->d.m->qos == 0;
    }
    return false;
}

/* Undo what the poster did for the item (see handle_item). */
static void drop_item(broker *b, inbox_item *it)
{
    if (it->kind == IN_SHARE_DEAD) {
        share_dead_free((void *)(uintptr_t)it->conn_id);
        return;
    }
    if (it->kind == IN_DELIVER) {
        atomic_fetch_sub_explicit(&it->s->incoming, 1, memory_order_relaxed);
    }
    msg_unref(it->d.m);
    if (it->s) {
        session_unref(b, it->s);
    }
}

static void inbox_dropped(worker *to, inbox_item *dropped, uint32_t n, bool newly_full)
{
    for (uint32_t i = 0; i < n; i++) {
        drop_item(to->b, &dropped[i]);
    }
    limits_count_drop(to, NULL, DROP_INBOX_FULL, n);
    if (newly_full) {
        sh_log(SH_WARN, "event=inbox_full worker=%d max_inbox=%u msg=\"QoS 0 deliveries dropped until it drains\"",
               to->id, to->b->cfg->max_inbox);
    }
}

static void post_batch(worker *to, item_vec *items)
{
    /* Called by any thread. */
    uint32_t limit = to->b->cfg->max_inbox, ndrop = 0;
    bool newly_full = false;
    pthread_mutex_lock(&to->inbox_lock);
    bool was_empty = to->inbox.n == 0;
    for (uint32_t i = 0; i < items->n; i++) {
        if (limit && to->inbox.n >= limit && is_droppable(&items->v[i])) {
            /* Kept at the front of items (ndrop <= i) to release unlocked. */
            items->v[ndrop++] = items->v[i];
            continue;
        }
        vec_push(&to->inbox, &items->v[i]);
    }
    atomic_fetch_add_explicit(&to->hold.pending, items->n - ndrop, memory_order_relaxed);
    if (ndrop) {
        newly_full = !to->inbox_full;
        to->inbox_full = true;
        to->inbox_drops_tick += ndrop;
        to->inbox_drops_episode += ndrop;
    }
    pthread_mutex_unlock(&to->inbox_lock);
    if (ndrop) {
        inbox_dropped(to, items->v, ndrop, newly_full);
    }
    items->n = 0;
    /* An eventfd, not event_active(): that takes the other worker's base
     * lock, which its own loop holds most of the time, and the two threads
     * then meet in futex waits on every cross-worker message. */
    if (was_empty) {
        uint64_t one = 1;
        if (write(to->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
            sh_log(SH_ERROR, "event=worker_wake_failed worker=%d err=\"%s\"", to->id, strerror(errno));
        }
    }
}

void worker_flush(worker *w)
{
    if (!w->outbox_dirty) {
        return;
    }
    w->outbox_dirty = false;
    for (int i = 0; i < w->b->nworkers; i++) {
        if (w->outbox[i].n) {
            post_batch(&w->b->workers[i], &w->outbox[i]);
        }
    }
}

static uint32_t id_slot(uint64_t id, uint32_t cap)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

conn *worker_find_conn(worker *w, uint64_t id)
{
    if (!w->by_id_cap) {
        return NULL;
    }
    for (uint32_t i = id_slot(id, w->by_id_cap);; i = (i + 1) & (w->by_id_cap - 1)) {
        conn *c = w->by_id[i];
        if (!c || c->id == id) {
            return c;
        }
    }
}

static void index_insert(conn **tab, uint32_t cap, conn *c)
{
    uint32_t i = id_slot(c->id, cap);
    while (tab[i]) {
        i = (i + 1) & (cap - 1);
    }
    tab[i] = c;
}

void worker_index_conn(worker *w, conn *c)
{
    /* Up to three quarters full: linear probing stays short, and an idle
     * connection's share of the table is smaller. */
    if ((w->by_id_used + 1) * 4 > w->by_id_cap * 3u) {
        uint32_t cap = w->by_id_cap ? w->by_id_cap * 2 : 64;
        conn **tab = sh_calloc(cap, sizeof(conn *));
        for (uint32_t i = 0; i < w->by_id_cap; i++) {
            if (w->by_id[i]) {
                index_insert(tab, cap, w->by_id[i]);
            }
        }
        sh_free(w->by_id, w->by_id_cap * sizeof(conn *));
        w->by_id = tab;
        w->by_id_cap = cap;
    }
    index_insert(w->by_id, w->by_id_cap, c);
    w->by_id_used++;
}

/* Backward-shift deletion keeps lookups correct without tombstones. */
void worker_unindex_conn(worker *w, conn *c)
{
    uint32_t mask = w->by_id_cap - 1, i = id_slot(c->id, w->by_id_cap);
    while (w->by_id[i] != c) {
        if (!w->by_id[i]) {
            return;
        }
        i = (i + 1) & mask;
    }
    w->by_id[i] = NULL;
    w->by_id_used--;
    for (uint32_t j = (i + 1) & mask; w->by_id[j]; j = (j + 1) & mask) {
        conn *m = w->by_id[j];
        uint32_t home = id_slot(m->id, w->by_id_cap);
        /* Move m into the hole if the hole lies on its probe path. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            w->by_id[i] = m;
            w->by_id[j] = NULL;
            i = j;
        }
    }
}

static void handle_item(worker *w, inbox_item *it)
{
    switch (it->kind) {
    case IN_DELIVER:
        atomic_fetch_sub_explicit(&it->s->incoming, 1, memory_order_relaxed);
        route_deliver_to(w, it->s, &it->d);
        session_unref(w->b, it->s);
        break;
    case IN_TAKEOVER:
        session_handle_takeover(w, it);
        break;
    case IN_ADOPT:
        session_handle_adopt(w, it);
        break;
    case IN_REFUSED:
        session_handle_refused(w, it);
        break;
    case IN_STOP:
        event_base_loopexit(w->base, NULL);
        break;
    case IN_REMOTE:
        remote_deliver(w, it->d.m);
        break;
    case IN_REVOKE:
        sync_handle_revoke(w, it);
        break;
    case IN_AUTH_RESULT:
        auth_hash_done(w, it);
        break;
    case IN_POSITION:
        stream_routed(w, (int32_t)it->conn_id, (int64_t)it->epoch);
        break;
    case IN_SHARE_DEAD:
        share_dead_start(w, (void *)(uintptr_t)it->conn_id);
        break;
    case IN_SYNC:
        sync_handle_sessions(w, it);
        break;
    case IN_QOS2_REPORT:
        session_qos2_report(w, it->s, it->pid, (uint32_t)it->conn_id, it->clean, (uint8_t)it->epoch);
        session_unref(w->b, it->s);
        break;
    }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    item_vec batch;
    uint64_t n;
    /* Reset the counter first: a post after this wakes the loop again. */
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
        sh_log(SH_ERROR, "event=worker_wake_failed worker=%d err=\"%s\"", w->id, strerror(errno));
    }
    pthread_mutex_lock(&w->inbox_lock);
    batch = w->inbox;
    memset(&w->inbox, 0, sizeof(w->inbox));
    pthread_mutex_unlock(&w->inbox_lock);
    for (uint32_t i = 0; i < batch.n; i++) {
        handle_item(w, &batch.v[i]);
    }
    atomic_fetch_sub_explicit(&w->hold.pending, batch.n, memory_order_relaxed);
    sh_free(batch.v, batch.cap * sizeof(inbox_item));
    worker_flush(w);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    while (w->dead) {
        conn *c = w->dead;
        w->dead = c->next;
        conn_free(c);
    }
}

/* The inbox is no longer full once a whole tick went by without a drop:
 * one line per episode, not one per batch. */
static void inbox_tick(worker *w)
{
    uint64_t episode = 0;
    pthread_mutex_lock(&w->inbox_lock);
    if (w->inbox_full && w->inbox_drops_tick == 0) {
        w->inbox_full = false;
        episode = w->inbox_drops_episode;
        w->inbox_drops_episode = 0;
    }
    w->inbox_drops_tick = 0;
    pthread_mutex_unlock(&w->inbox_lock);
    if (episode) {
        sh_log(SH_INFO, "event=inbox_ok worker=%d dropped=%llu", w->id, (unsigned long long)episode);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    inbox_tick(w);
    stream_tick(w);
    share_tick(w);
    hold_tick(w);
    uint64_t now = now_ms();
    /* Only the connections with a deadline due: idle ones cost nothing here. */
    tw_advance(&w->timers, now, conn_timer_fired, &now);
    metrics_tick(w, now, w->nactive); /* loop lag, liveness, online gauge */
    if (w->id == 0) {
        worker_sys_tick(w);
        limits_tick(w, now); /* retained messages that expired */
    }
    worker_flush(w);
}

/* Every listener: the same limits, then a connection with its transport. */
static void accept_with(worker *w, evutil_socket_t fd, struct sockaddr *sa, int salen, unsigned flags)
{
    broker *b = w->b;
    if (b->cfg->max_connections && atomic_load(&b->stats.connections_current) >= (uint64_t)b->cfg->max_connections) {
        atomic_fetch_add(&b->stats.refused, 1);
        atomic_fetch_add_explicit(&w->metrics.limit_refusals[LIMIT_CONNECTIONS], 1, memory_order_relaxed);
        sh_log(SH_INFO, "event=refused reason=max-connections limit=%d tls=%d ws=%d", b->cfg->max_connections,
               (flags & CONN_TLS) != 0, (flags & CONN_WS) != 0);
        evutil_closesocket(fd);
        return;
    }
    if (proxy_accept(w, fd, sa, salen, flags)) {
        return; /* PROXY protocol: conn_new once the header is in (node/net/proxy.c) */
    }
    conn_new(w, fd, sa, salen, flags);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    accept_with(arg, fd, sa, salen, 0);
}

static void accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    accept_with(arg, fd, sa, salen, CONN_TLS);
}

static void accept_ws_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    accept_with(arg, fd, sa, salen, CONN_WS);
}

static void accept_wss_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    accept_with(arg, fd, sa, salen, CONN_TLS | CONN_WS);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: log and keep listening; the next close frees a slot. */
    sh_log(SH_WARN, "event=accept_error err=\"%s\"", evutil_socket_error_to_string(err));
}

static struct evconnlistener *listen_on(worker *w, uint16_t port, evconnlistener_cb cb)
{
    struct sockaddr_in6 sa6;
    struct sockaddr_in sa4;
    struct sockaddr *sa;
    int salen;
    const char *bind = w->b->cfg->bind;
    memset(&sa6, 0, sizeof(sa6));
    memset(&sa4, 0, sizeof(sa4));
    if (strchr(bind, ':')) {
        sa6.sin6_family = AF_INET6;
        sa6.sin6_port = htons(port);
        if (inet_pton(AF_INET6, bind, &sa6.sin6_addr) != 1) {
            sh_log(SH_ERROR, "event=listen_error bind=%s msg=\"not an IPv6 address\"", bind);
            return NULL;
        }
        sa = (struct sockaddr *)&sa6;
        salen = sizeof(sa6);
    } else {
        sa4.sin_family = AF_INET;
        sa4.sin_port = htons(port);
        if (inet_pton(AF_INET, bind, &sa4.sin_addr) != 1) {
            sh_log(SH_ERROR, "event=listen_error bind=%s msg=\"not an IPv4 address\"", bind);
            return NULL;
        }
        sa = (struct sockaddr *)&sa4;
        salen = sizeof(sa4);
    }
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC;
    struct evconnlistener *l = evconnlistener_new_bind(w->base, cb, w, flags, 1024, sa, salen);
    if (!l) {
        sh_log(SH_ERROR, "event=listen_error bind=%s port=%u err=\"%s\"", bind, port, strerror(errno));
        return NULL;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    /* Accepted sockets inherit it (Linux copies the listener's TCP options),
     * so conn_new need not set it per connection. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return l;
}

static uint16_t bound_port(struct evconnlistener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = evconnlistener_get_fd(l);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static int worker_init(broker *b, worker *w, int id)
{
    w->id = id;
    w->b = b;
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    /* A worker has a loop only once it is whole: worker_free_all skips
     * the others (a start that failed part way). */
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0) {
        sh_log(SH_ERROR, "event=worker_init_failed err=\"eventfd: %s\"", strerror(errno));
        event_config_free(ec);
        return -1;
    }
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base) {
        return -1;
    }
    event_base_priority_init(w->base, 2);
    pthread_mutex_init(&w->inbox_lock, NULL);
    w->outbox = sh_calloc((size_t)b->nworkers, sizeof(item_vec));
    w->wake = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, wake_cb, w);
    event_add(w->wake, NULL);
    /* Reaping runs at the low priority, after the callbacks of this turn. */
    w->reap = event_new(w->base, -1, 0, reap_cb, w);
    event_priority_set(w->reap, 1);
    conn_io_worker_init(w);
    sync_worker_init(w);
    dead_node_worker_init(w);
    tw_init(&w->timers, now_ms(), 1000); /* one slot per tick */
    w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    struct timeval one = {1, 0};
    event_add(w->tick, &one);
    metrics_worker_init(w); /* the tick's schedule, for loop lag and liveness */
    return bp_attach(b->bp, id, w->base);
}

int worker_init_all(broker *b)
{
    b->workers = sh_calloc((size_t)b->nworkers, sizeof(worker));
    for (int i = 0; i < b->nworkers; i++) {
        b->workers[i].wake_fd = -1;
    }
    for (int i = 0; i < b->nworkers; i++) {
        if (worker_init(b, &b->workers[i], i) != 0) {
            return -1;
        }
    }
    return 0;
}

int worker_start_all(broker *b)
{
    uint16_t port = (uint16_t)b->cfg->port;
    for (int i = 0; i < b->nworkers; i++) {
        worker *w = &b->workers[i];
        if (!(w->listener = listen_on(w, port, accept_cb))) {
            return -1;
        }
        /* With --port 0 the first listener picks the port; the others share it. */
        if (port == 0) {
            port = bound_port(w->listener);
        }
        if (b->tls.port && !(w->tls.listener = listen_on(w, b->tls.port, accept_tls_cb))) {
            return -1;
        }
        if (b->ws.port && !(w->ws.listener = listen_on(w, b->ws.port, accept_ws_cb))) {
            return -1;
        }
        if (b->ws.wss_port && !(w->ws.tls_listener = listen_on(w, b->ws.wss_port, accept_wss_cb))) {
            return -1;
        }
    }
    b->port = port;
    for (int i = 0; i < b->nworkers; i++) {
        if (pthread_create(&b->workers[i].thread, NULL, worker_main, &b->workers[i]) != 0) {
            return -1;
        }
        b->workers[i].started = true;
    }
    return 0;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    worker *w = arg;
    if (w->listener) {
        evconnlistener_disable(w->listener);
    }
    if (w->tls.listener) {
        evconnlistener_disable(w->tls.listener);
    }
    if (w->ws.listener) {
        evconnlistener_disable(w->ws.listener);
    }
    if (w->ws.tls_listener) {
        evconnlistener_disable(w->ws.tls_listener);
    }
    /* Connections still open here (none after a drain) are closed now. */
    bool closed_some = w->conns != NULL;
    conn *c = w->conns;
    while (c) {
        conn *next = c->next;
        conn_close(c, MQTT_RC_SERVER_SHUTTING_DOWN, "server shutting down");
        c = next;
    }
    worker_flush(w);
    sh_log(SH_DEBUG, "event=worker_stopping worker=%d linger_ms=%d", w->id, closed_some ? 200 : 0);
    if (!closed_some) {
        /* No goodbye to send and no connection still flushing its output:
         * exit at the end of this turn. */
        event_base_loopexit(w->base, NULL);
        return;
    }
    /* Give the goodbyes (and the session records their closes write) a
     * moment to reach the sockets, then exit. */
    struct timeval t = {0, 200000};
    event_base_loopexit(w->base, &t);
}

/* Also after a failed start: only the threads that run are stopped. */
void worker_stop_all(broker *b)
{
    for (int i = 0; b->workers && i < b->nworkers; i++) {
        worker *w = &b->workers[i];
        if (w->started) {
            event_base_once(w->base, -1, EV_TIMEOUT, stop_cb, w, NULL);
        }
    }
    for (int i = 0; b->workers && i < b->nworkers; i++) {
        if (b->workers[i].started) {
            pthread_join(b->workers[i].thread, NULL);
            b->workers[i].started = false;
        }
    }
}

static void free_items(broker *b, item_vec *v)
{
    for (uint32_t i = 0; i < v->n; i++) {
        inbox_item *it = &v->v[i];
        if (it->kind == IN_DELIVER || it->kind == IN_REMOTE || it->kind == IN_REVOKE) {
            msg_unref(it->d.m);
        }
        if (it->s) {
            session_unref(b, it->s);
        }
    }
    sh_free(v->v, v->cap * sizeof(inbox_item));
    memset(v, 0, sizeof(*v));
}

static void free_conns(conn *c)
{
    while (c) {
        conn *next = c->next;
        if (c->s) {
            session *s = c->s;
            c->s = NULL;
            s->c = NULL;
            session_unref(c->w->b, s);
        }
        conn_set_state(c, CS_CLOSED);
        conn_free(c);
        c = next;
    }
}

/* The backplane answers on the caller's loop (cluster/backplane.h), and a
 * node closes it after its loops have stopped (the goodbyes, session
 * releases included, still go out through it): the answers to the calls
 * pending then (a dead node's reap, session writes) are posted to loops
 * that would never turn again, and event_base_free drops them with what
 * they own. Turn each loop until nothing is active: they run once, here,
 * with BP_ECLOSED, and what they call on the closed backplane is answered
 * at once. The worker threads are gone, so this thread is the only one. */
void worker_run_closed(broker *b)
{
    for (int i = 0; b->workers && i < b->nworkers; i++) {
        struct event_base *base = b->workers[i].base;
        if (b->workers[i].tick) {
            event_del(b->workers[i].tick); /* the answers only, not another second's chores */
        }
        for (int turn = 0; base && turn < 16; turn++) {
            event_base_loop(base, EVLOOP_NONBLOCK);
            if (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0) {
                break;
            }
        }
    }
}

/* After the loops have stopped: release connections and queued items
 * (sessions go next, then worker_free_all releases the loops). */
void worker_release_conns(broker *b)
{
    for (int i = 0; b->workers && i < b->nworkers; i++) {
        worker *w = &b->workers[i];
        free_conns(w->conns);
        free_conns(w->dead);
        w->conns = w->dead = NULL;
        free_items(b, &w->inbox);
        hold_worker_free(w);
        for (int k = 0; k < b->nworkers; k++) {
            free_items(b, &w->outbox[k]);
        }
    }
}

void worker_free_all(broker *b)
{
    if (!b->workers) {
        return;
    }
    for (int i = 0; i < b->nworkers; i++) {
        worker *w = &b->workers[i];
        if (w->wake_fd >= 0 && !w->base) {
            close(w->wake_fd); /* its loop was never made */
        }
        if (!w->base) {
            continue; /* not made: a start that failed before it */
        }
        if (w->listener) {
            evconnlistener_free(w->listener);
        }
        if (w->tls.listener) {
            evconnlistener_free(w->tls.listener);
        }
        if (w->ws.listener) {
            evconnlistener_free(w->ws.listener);
        }
        if (w->ws.tls_listener) {
            evconnlistener_free(w->ws.tls_listener);
        }
        event_free(w->wake);
        if (w->wake_fd >= 0) {
            close(w->wake_fd);
        }
        event_free(w->reap);
        proxy_worker_free(w);
        conn_io_worker_free(w);
        dead_node_worker_free(w);
        sync_worker_free(w);
        drain_worker_free(w);
        event_free(w->tick);
        sh_free(w->outbox, (size_t)b->nworkers * sizeof(item_vec));
        sh_free(w->by_id, w->by_id_cap * sizeof(conn *));
        event_base_free(w->base);
        pthread_mutex_destroy(&w->inbox_lock);
    }
    sh_free(b->workers, (size_t)b->nworkers * sizeof(worker));
    b->workers = NULL;
}
