/* SPDX-License-Identifier: Apache-2.0 */
/* A worker's phases: connect and subscribe everyone (SETUP), wait for the
 * other workers (WAIT), publish or hold (RUN), wait for acks and
 * deliveries (DRAIN), write the result and close (DONE). A 1 ms tick
 * drives the phases and the open-loop schedule; a 1 s tick does keep
 * alive and timeouts. Every phase has a deadline, so a run always ends. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/run_impl.h"
#include "common/alloc.h"

/* The drain's hard bound, in multiples of --drain. */
#define DRAIN_CAP 10
/* After DONE: how long DISCONNECTs get to flush. */
#define CLOSE_GRACE_NS 3000000000u
/* Worker 0 of a retained run waits this long for the others to finish
 * before it clears the retained messages anyway. */
#define CLEAR_WAIT_NS 10000000000u

uint64_t run_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t secs_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

void run_peer_ready(run *r, peer *p)
{
    if (!p->ready && !p->failed) {
        p->ready = true;
        r->n_ready++;
    }
}

void run_peer_failed(run *r, peer *p)
{
    if (!p->ready && !p->failed) {
        p->failed = true;
        r->n_failed++;
    }
}

void run_up_cb(client *c)
{
    peer *p = client_ud(c);
    run *r = p->r;
    uint64_t now = run_now();
    p->up = true;
    r->pending--;
    board_add(r->live->connected, 1);
    r->res.connected++;
    hist_record(&r->res.conn_lat, (now - p->attempt_ns) / 1000);
    r->res.last_connack_ns = now;
    if ((p->role == ROLE_SUB && r->o->sc->map != MAP_RETAINED) || (p->role == ROLE_CONN && r->o->subscribe)) {
        char f[OPTS_TOPIC_MAX];
        if (p->role == ROLE_CONN) {
            opts_topic(r->o, p->gid, f);
        } else {
            opts_filter(r->o, p->idx, f);
        }
        client_subscribe(c, (mqtt_bytes){(const uint8_t *)f, (uint32_t)strlen(f)}, (uint8_t)r->o->qos);
    } else if (p->role == ROLE_SEED) {
        traffic_seed(r);
    } else {
        run_peer_ready(r, p);
    }
}

void run_end_cb(client *c, client_end why, uint8_t rc)
{
    peer *p = client_ud(c);
    run *r = p->r;
    if (!p->up) {
        r->pending--;
        board_add(r->live->refused, 1);
        r->res.refused++;
        run_peer_failed(r, p);
        return;
    }
    p->up = false;
    board_add(r->live->dropped, 1);
    r->res.dropped++;
    if (why == CLIENT_END_PROTOCOL) {
        board_add(r->live->errors, 1);
        r->res.errors++;
    }
    run_peer_failed(r, p);
    (void)rc;
}

/* ---- SETUP ---- */

static const struct sockaddr_in *dst_of(const run *r, const peer *p)
{
    const bench_opts *o = r->o;
    if (o->sc->split_addrs) {
        return &o->addrs[p->role == ROLE_SUB ? 1 : 0];
    }
    return &o->addrs[p->gid % (uint32_t)o->n_addrs];
}

static void start_connect(run *r, peer *p, uint64_t intended, uint64_t now)
{
    const bench_opts *o = r->o;
    char id[64];
    snprintf(id, sizeof(id), "%s%u", o->prefix, p->gid);
    const struct in_addr *src = o->n_srcs ? &o->srcs[p->gid % (uint32_t)o->n_srcs] : NULL;
    p->attempt_ns = intended;
    board_add(r->live->attempted, 1);
    r->res.attempted++;
    if (!r->res.first_attempt_ns) {
        r->res.first_attempt_ns = intended;
    }
    if (client_connect(p->c, dst_of(r, p), src, id, now) != 0) {
        if (errno == EMFILE || errno == ENFILE) {
            fprintf(stderr, "shoal-bench: out of file descriptors at client %u\n", p->gid);
        }
        board_add(r->live->refused, 1);
        r->res.refused++;
        run_peer_failed(r, p);
        return;
    }
    r->pending++;
}

static void connect_more(run *r, uint64_t now)
{
    while (r->next_connect < r->n && r->pending < r->o->pending) {
        uint64_t intended = now;
        if (r->connect_interval_ns) {
            if (r->next_connect_ns > now) {
                return;
            }
            intended = r->next_connect_ns;
            r->next_connect_ns += r->connect_interval_ns;
        }
        start_connect(r, &r->peers[r->next_connect++], intended, now);
    }
}

static void enter_wait(run *r, uint64_t now)
{
    /* Whoever is not set up by now is left out. */
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (!p->ready && !p->failed) {
            client_abort(p->c);
            if (!p->up) {
                board_add(r->live->refused, 1);
                r->res.refused++;
            }
            p->up = false;
            run_peer_failed(r, p);
        }
    }
    r->phase = PHASE_WAIT;
    atomic_store(&r->live->phase, PHASE_WAIT);
    if (atomic_fetch_add(&r->b->ready, 1) + 1 == r->b->procs) {
        atomic_store(&r->b->start_ns, now + 20000000u);
    }
}

static void setup_step(run *r, uint64_t now)
{
    connect_more(r, now);
    if (r->n_ready + r->n_failed == r->n || now >= r->setup_deadline) {
        enter_wait(r, now);
    }
}

/* ---- RUN ---- */

static void begin_run(run *r, uint64_t start)
{
    const bench_opts *o = r->o;
    r->start_ns = start;
    r->end_ns = r->stopping ? start : start + secs_ns(o->duration);
    r->drain_deadline = r->end_ns + DRAIN_CAP * secs_ns(o->drain);
    uint32_t total_pubs = o->pubs ? o->pubs : 1;
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        p->counted = p->ready;
        /* Spread the publishers' schedules evenly over one interval. */
        p->next_ns = start + r->pub_interval_ns * p->idx / total_pubs;
    }
    r->phase = PHASE_RUN;
    atomic_store(&r->live->phase, PHASE_RUN);
    uint64_t now = run_now();
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (p->role == ROLE_SUB && p->counted && o->sc->map == MAP_RETAINED) {
            traffic_start_round(r, p, now);
        }
    }
    traffic_pump_all(r, now);
}

static void begin_drain(run *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (p->role == ROLE_PUB && r->pub_interval_ns && p->counted && p->next_ns < r->end_ns) {
            r->res.backlog += (r->end_ns - p->next_ns + r->pub_interval_ns - 1) / r->pub_interval_ns;
        }
    }
    r->phase = PHASE_DRAIN;
    atomic_store(&r->live->phase, PHASE_DRAIN);
}

/* ---- DRAIN ---- */

/* Draining gives up after --drain seconds without an ack or a delivery
 * (a broker still working through a backlog has not lost anything yet),
 * and in any case DRAIN_CAP times --drain after the end of publishing. */
static bool drain_over(const run *r, uint64_t now)
{
    uint64_t last = r->end_ns;
    last = r->res.last_recv_ns > last ? r->res.last_recv_ns : last;
    last = r->last_ack_ns > last ? r->last_ack_ns : last;
    return now >= r->drain_deadline || now - last >= secs_ns(r->o->drain);
}

static bool pubs_settled(const run *r, uint64_t now)
{
    if (drain_over(r, now)) {
        return true;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        const peer *p = &r->peers[i];
        if (p->role == ROLE_PUB && p->up && client_inflight(p->c) > 0) {
            return false;
        }
    }
    return true;
}

static void finalize_pubs(run *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (p->role != ROLE_PUB) {
            continue;
        }
        atomic_store(&r->b->pub_sent[p->idx], p->seq);
        atomic_store(&r->b->pub_acked[p->idx], r->o->qos ? p->acked : p->seq);
        r->res.sent += p->seq;
        r->res.acked += p->acked;
    }
    r->pubs_final = true;
    atomic_fetch_add(&r->b->pub_done, 1);
}

static void finish(run *r, uint64_t now);

static void drain_step(run *r, uint64_t now)
{
    if (!r->pubs_final && pubs_settled(r, now)) {
        finalize_pubs(r);
    }
    if (!r->pubs_final || (atomic_load(&r->b->pub_done) < r->b->procs && !drain_over(r, now))) {
        return;
    }
    if (!r->total_acked && atomic_load(&r->b->pub_done) == r->b->procs) {
        for (uint32_t i = 0; i < r->o->pubs; i++) {
            r->total_acked += atomic_load(&r->b->pub_acked[i]);
        }
    }
    if (drain_over(r, now) || traffic_subs_satisfied(r, now)) {
        finish(r, now);
    }
}

/* ---- DONE ---- */

static void close_all(run *r, bool keep_seeder)
{
    for (uint32_t i = 0; i < r->n; i++) {
        peer *p = &r->peers[i];
        if (!(keep_seeder && p == r->seeder)) {
            client_disconnect(p->c);
        }
    }
}

static void finish(run *r, uint64_t now)
{
    traffic_tally(r);
    r->res.written = true;
    r->b->res[r->proc] = r->res;
    atomic_store(&r->live->phase, PHASE_DONE);
    atomic_fetch_add(&r->b->finished, 1);
    r->phase = PHASE_DONE;
    close_all(r, r->seeder != NULL);
    r->close_deadline = now + CLOSE_GRACE_NS;
    if (r->seeder) {
        r->close_deadline += CLEAR_WAIT_NS;
    }
}

static bool all_closed(const run *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        if (client_get_state(r->peers[i].c) != CLIENT_CLOSED) {
            return false;
        }
    }
    return true;
}

static void done_step(run *r, uint64_t now)
{
    /* Worker 0 of a retained run clears the retained messages once every
     * worker's subscribers are through. */
    if (r->seeder && !r->clearing && client_get_state(r->seeder->c) == CLIENT_UP &&
        (atomic_load(&r->b->finished) == r->b->procs || now + CLOSE_GRACE_NS >= r->close_deadline)) {
        r->clearing = true;
        r->seed_next = r->seed_acked = 0;
        traffic_seed(r);
    }
    if (r->seeder && r->clearing && r->seed_acked >= r->o->topics) {
        client_disconnect(r->seeder->c);
    }
    if (all_closed(r) || now >= r->close_deadline) {
        event_base_loopbreak(r->base);
    }
}

/* ---- timers ---- */

/* The tick is 1 ms, except while an open-loop schedule runs: then it wakes
 * at the earliest publisher's next intended time, so the generator's own
 * lateness (which counts as latency) stays small. */
static uint64_t next_tick_ns(const run *r, uint64_t now)
{
    uint64_t best = 1000000;
    /* conn: held connections need nothing between keep-alive seconds, and
     * connects paced 10 ms at a time are paced well enough; dozens of
     * workers waking every millisecond would cost the brokers a core. */
    if (r->o->sc->map == MAP_NONE && r->phase < PHASE_DRAIN) {
        return r->phase == PHASE_RUN ? 100000000 : 10000000;
    }
    if (r->phase != PHASE_RUN || !r->pub_interval_ns) {
        return best;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        const peer *p = &r->peers[i];
        if (p->role == ROLE_PUB && p->counted && p->up) {
            uint64_t d = p->next_ns > now ? p->next_ns - now : 0;
            best = d < best ? d : best;
        }
    }
    return best < 20000 ? 20000 : best;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    run *r = arg;
    uint64_t now = run_now();
    switch (r->phase) {
    case PHASE_SETUP:
        setup_step(r, now);
        break;
    case PHASE_WAIT: {
        uint64_t start = atomic_load(&r->b->start_ns);
        if (start && now >= start) {
            begin_run(r, start);
        } else if (r->stopping || (!start && now >= r->setup_deadline + 10000000000u)) {
            /* Stopping, or another worker never got ready: go on anyway. */
            begin_run(r, now);
        }
        break;
    }
    case PHASE_RUN:
        if (now >= r->end_ns) {
            begin_drain(r);
        } else {
            traffic_pump_all(r, now);
        }
        break;
    case PHASE_DRAIN:
        drain_step(r, now);
        break;
    case PHASE_DONE:
        done_step(r, now);
        break;
    }
    struct timeval tv = {0, (suseconds_t)(next_tick_ns(r, now) / 1000)};
    event_add(r->tick, &tv);
}

static void sec_cb(evutil_socket_t fd, short what, void *arg)
{
    run *r = arg;
    uint64_t now = run_now();
    for (uint32_t i = 0; i < r->n; i++) {
        client_tick(r->peers[i].c, now);
    }
    traffic_round_timeouts(r, now);
    traffic_flush_group(r);
}

static void term_cb(evutil_socket_t fd, short what, void *arg)
{
    run *r = arg;
    uint64_t now = run_now();
    /* Cut every remaining phase short. */
    r->stopping = true;
    r->setup_deadline = now;
    if (r->phase >= PHASE_RUN && r->phase < PHASE_DONE) {
        r->end_ns = r->end_ns < now ? r->end_ns : now;
        r->drain_deadline = now;
    }
    if (r->phase == PHASE_DONE) {
        r->close_deadline = now;
    }
}

/* ---- setup and teardown ---- */

static void init_peer(run *r, peer *p, uint32_t gid)
{
    const bench_opts *o = r->o;
    p->r = r;
    p->gid = gid;
    track_map_init(&p->seen);
    if (o->sc->map == MAP_NONE) {
        p->role = ROLE_CONN;
    } else if (gid < o->pubs) {
        p->role = ROLE_PUB;
        p->idx = gid;
        char t[OPTS_TOPIC_MAX];
        opts_topic(o, gid, t);
        p->topic = sh_strndup(t, strlen(t));
    } else if (gid < o->pubs + o->subs) {
        p->role = ROLE_SUB;
        p->idx = gid - o->pubs;
        if (o->sc->map == MAP_RETAINED) {
            p->rbits = sh_calloc((o->topics + 63) / 64, sizeof(uint64_t));
        }
    } else {
        p->role = ROLE_SEED;
        r->seeder = p;
    }
    p->c = client_new(r->base, &run_client_cbs, &r->ccfg, p);
}

static void free_peer(run *r, peer *p)
{
    client_free(p->c);
    track_map_free(&p->seen);
    if (p->topic) {
        sh_free(p->topic, strlen(p->topic) + 1);
    }
    if (p->rbits) {
        sh_free(p->rbits, sizeof(uint64_t) * ((r->o->topics + 63) / 64));
    }
}

static void init_peers(run *r)
{
    const bench_opts *o = r->o;
    uint32_t total = opts_clients(o);
    uint32_t seed_gid = o->sc->map == MAP_RETAINED ? total - 1 : UINT32_MAX;
    uint32_t procs = (uint32_t)o->procs;
    r->n = 0;
    for (uint32_t g = 0; g < total; g++) {
        bool mine = g == seed_gid ? r->proc == 0 : g % procs == (uint32_t)r->proc;
        r->n += mine;
    }
    r->peers = sh_calloc(r->n ? r->n : 1, sizeof(peer));
    uint32_t k = 0;
    for (uint32_t g = 0; g < total; g++) {
        bool mine = g == seed_gid ? r->proc == 0 : g % procs == (uint32_t)r->proc;
        if (mine) {
            init_peer(r, &r->peers[k++], g);
        }
    }
}

static void init_run(run *r, const bench_opts *o, board *b, int proc)
{
    r->o = o;
    r->b = b;
    r->proc = proc;
    r->live = &b->live[proc];
    hist_init(&r->res.lat);
    hist_init(&r->res.conn_lat);
    hist_init(&r->res.send_delay);
    r->ccfg = (client_cfg){
        .version = (uint8_t)o->version,
        .keepalive = (uint16_t)o->keepalive,
        .clean = o->clean,
        .session_expiry = 3600,
        .inflight = (uint16_t)o->inflight,
        .connect_timeout_ms = (uint32_t)(o->connect_timeout * 1000),
        .username = o->username[0] ? o->username : NULL,
        .password = o->password[0] ? o->password : NULL,
    };
    r->payload = sh_malloc(o->size);
    track_stamp_write(&(track_stamp){0}, r->payload, o->size);
    if (o->sc->map == MAP_NONE && o->rate > 0) {
        r->connect_interval_ns = (uint64_t)(1e9 * o->procs / o->rate);
    }
    if (o->sc->map != MAP_NONE && o->rate > 0 && o->pubs > 0) {
        r->pub_interval_ns = (uint64_t)(1e9 * o->pubs / o->rate);
        r->pub_interval_ns = r->pub_interval_ns ? r->pub_interval_ns : 1;
    }
}

int run_worker(const bench_opts *o, board *b, int proc)
{
    run *r = sh_calloc(1, sizeof(*r));
    init_run(r, o, b, proc);
    signal(SIGPIPE, SIG_IGN);
    /* Without PRECISE_TIMER libevent reads CLOCK_MONOTONIC_COARSE, whose
     * resolution is a kernel tick (4 ms here): the schedule would slip. */
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    /* A bufferevent turns reading and writing on and off several times per
     * connection; the changelist hands epoll only the net change once per
     * loop (10 epoll_ctl calls per connection otherwise). */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    r->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!r->base) {
        sh_free(r->payload, o->size);
        sh_free(r, sizeof(*r));
        return -1;
    }
    init_peers(r);
    uint64_t now = run_now();
    r->next_connect_ns = now;
    r->setup_deadline = now + secs_ns(o->setup_timeout);
    struct timeval ms = {0, 1000}, sec = {1, 0};
    r->tick = event_new(r->base, -1, 0, tick_cb, r);
    r->sec = event_new(r->base, -1, EV_PERSIST, sec_cb, r);
    r->sigterm = evsignal_new(r->base, SIGTERM, term_cb, r);
    event_add(r->tick, &ms);
    event_add(r->sec, &sec);
    event_add(r->sigterm, NULL);
    event_base_dispatch(r->base);
    for (uint32_t i = 0; i < r->n; i++) {
        free_peer(r, &r->peers[i]);
    }
    sh_free(r->peers, sizeof(peer) * (r->n ? r->n : 1));
    event_free(r->tick);
    event_free(r->sec);
    event_free(r->sigterm);
    event_base_free(r->base);
    sh_free(r->payload, o->size);
    sh_free(r, sizeof(*r));
    return 0;
}
