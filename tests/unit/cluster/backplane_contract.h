/* SPDX-License-Identifier: Apache-2.0 */
/* The backplane contract (cluster/backplane.h), one Criterion suite for
 * every implementation. The file that includes it defines, before the
 * #include,
 *
 *   #define CONTRACT_SHARES_MESSAGES true|false  other members receive what
 *                                                one publishes
 *
 * and after it `static void contract_config(bp_config *cfg)` (backends,
 * topic prefix), and gets the tests: every callback runs exactly once (also for calls
 * pending at close), BP_ECLOSED after close, completions and deliveries in
 * order per topic, and the session-record rules (claims raise the epoch,
 * never back, not even after a drop; writes are fenced by it; a store
 * re-creates a record that is gone; a release is accepted once), the
 * dead-node walk (each reap call answers once, a settle is fenced) and the
 * shared-group choice for a group nobody announced.
 * tests/unit/cluster/test_backplane.c runs it against
 * `local`; tests/integration/backplane_contract_rk.c against `redis_kafka`
 * with a real Redis and Kafka. */
#ifndef SHOAL_TESTS_BACKPLANE_CONTRACT_H
#define SHOAL_TESTS_BACKPLANE_CONTRACT_H

#include <criterion/criterion.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/backplane.h"

#ifndef CONTRACT_SHARES_MESSAGES
#error "define CONTRACT_SHARES_MESSAGES before including backplane_contract.h"
#endif

#define WAIT_S 60
#define MAX_CALLS 256

/* ---- a member under test: a backplane, a worker loop, what it received ---- */

typedef struct received {
    char topic[64];
    int seq;
    unsigned shard;
} received;

typedef struct member {
    backplane *bp;
    struct event_base *base;
    char node_id[64];
    char address[64];
    pthread_mutex_t lock;
    received got[MAX_CALLS * 2];
    int ngot;
    /* session_revoked calls, under lock */
    char revoked_id[8][128];
    uint64_t revoked_epoch[8];
    int nrevoked;
} member;

static void session_revoked(void *node, const char *client_id, uint64_t new_epoch)
{
    member *mb = node;
    pthread_mutex_lock(&mb->lock);
    if (mb->nrevoked < 8) {
        snprintf(mb->revoked_id[mb->nrevoked], sizeof(mb->revoked_id[0]), "%s", client_id);
        mb->revoked_epoch[mb->nrevoked] = new_epoch;
    }
    mb->nrevoked++;
    pthread_mutex_unlock(&mb->lock);
}

static void remote_message(void *node, const bp_message *m, unsigned shard)
{
    member *mb = node;
    static const char ours[] = "contract/order/";
    size_t n = sizeof(ours) - 1;
    if (m->topic_len >= 64 || m->payload_len >= 16 || m->topic_len < n || memcmp(m->topic, ours, n) != 0) {
        return; /* not the order test's: membership announcements, retained snapshots */
    }
    char payload[16];
    memcpy(payload, m->payload, m->payload_len);
    payload[m->payload_len] = 0;
    pthread_mutex_lock(&mb->lock);
    if (mb->ngot < MAX_CALLS * 2) {
        received *r = &mb->got[mb->ngot++];
        memcpy(r->topic, m->topic, m->topic_len);
        r->topic[m->topic_len] = 0;
        r->seq = atoi(payload);
        r->shard = shard;
    }
    pthread_mutex_unlock(&mb->lock);
}

static void contract_config(bp_config *cfg);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void member_open(member *mb, const char *name)
{
    static int serial;
    memset(mb, 0, sizeof(*mb));
    pthread_mutex_init(&mb->lock, NULL);
    snprintf(mb->node_id, sizeof(mb->node_id), "contract-%s-%d-%d", name, (int)getpid(), serial++);
    snprintf(mb->address, sizeof(mb->address), "127.0.0.1:%d", 20000 + serial);
    bp_config cfg = {.node_id = mb->node_id,
                     .address = mb->address,
                     .heartbeat_ms = 300,
                     .kafka_partitions = 4,
                     .kafka_replication = 1,
                     .kafka_acks = "all",
                     .kafka_linger_ms = 1};
    contract_config(&cfg);
    bp_hooks hooks = {.remote_message = remote_message, .session_revoked = session_revoked, .node = mb};
    mb->base = event_base_new();
    mb->bp = bp_open(&cfg, &hooks);
    cr_assert_not_null(mb->bp, "bp_open failed (see the log above)");
    cr_assert_eq(bp_attach(mb->bp, 0, mb->base), 0);
}

static void member_free(member *mb)
{
    bp_free(mb->bp);
    event_base_free(mb->base);
    pthread_mutex_destroy(&mb->lock);
}

/* Turn the worker loop until done() or WAIT_S. */
static bool run_until(member *mb, bool (*done)(void *), void *arg)
{
    double deadline = now_s() + WAIT_S;
    while (!done(arg)) {
        if (now_s() > deadline) {
            return false;
        }
        event_base_loop(mb->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    return true;
}

/* Turn it a little longer: a second callback would show up here. */
static void run_a_while(member *mb)
{
    double until = now_s() + 0.3;
    while (now_s() < until) {
        event_base_loop(mb->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static bool is_ready(void *arg)
{
    return bp_is_ready(((member *)arg)->bp);
}

static void member_ready(member *mb)
{
    cr_assert(run_until(mb, is_ready, mb), "%s never ready", mb->node_id);
}

/* ---- calls and what their callbacks said ---- */

typedef struct calls {
    int n;
    int count[MAX_CALLS];
    bp_status st[MAX_CALLS];
    int order[MAX_CALLS]; /* call index in completion order */
    int done;
    int nodes_n;
    bool self_listed;
    const char *self;
} calls;

typedef struct call_ref {
    calls *c;
    int i;
} call_ref;

static call_ref refs[MAX_CALLS];

static void done_cb(bp_status st, void *arg)
{
    call_ref *r = arg;
    r->c->count[r->i]++;
    r->c->st[r->i] = st;
    r->c->order[r->c->done++] = r->i;
}

static void nodes_cb(bp_status st, const bp_node_info *nodes, size_t n, void *arg)
{
    call_ref *r = arg;
    calls *c = r->c;
    c->nodes_n = (int)n;
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(nodes[i].node_id);
        cr_assert_not_null(nodes[i].address);
        if (strcmp(nodes[i].node_id, c->self) == 0) {
            c->self_listed = true;
        }
    }
    cr_assert(st == BP_OK || n == 0, "nodes given with status %s", bp_status_name(st));
    done_cb(st, arg);
}

static call_ref *next_call(calls *c)
{
    cr_assert_lt(c->n, MAX_CALLS);
    call_ref *r = &refs[c->n];
    r->c = c;
    r->i = c->n++;
    return r;
}

static bool all_done(void *arg)
{
    calls *c = arg;
    return c->done >= c->n;
}

static void assert_each_once(const calls *c)
{
    for (int i = 0; i < c->n; i++) {
        cr_assert_eq(c->count[i], 1, "call %d completed %d times", i, c->count[i]);
    }
}

static bp_message message(const char *topic, char *payload, int seq, int qos)
{
    snprintf(payload, 16, "%d", seq);
    bp_message m = {.topic = (const uint8_t *)topic,
                    .topic_len = (uint32_t)strlen(topic),
                    .payload = (const uint8_t *)payload,
                    .payload_len = (uint32_t)strlen(payload),
                    .qos = (uint8_t)qos};
    return m;
}

static void publish(member *mb, calls *c, const char *topic, int seq)
{
    char payload[16];
    bp_message m = message(topic, payload, seq, 1);
    bp_publish(mb->bp, 0, &m, done_cb, next_call(c));
}

static void unique_topic(char *buf, size_t cap, const char *what)
{
    static int serial;
    snprintf(buf, cap, "contract/%s/%d-%d-%ld", what, (int)getpid(), serial++, (long)time(NULL));
}

/* ---- the contract ---- */

Test(backplane_contract, publish_completes_each_callback_once_ok)
{
    member a;
    member_open(&a, "pub");
    member_ready(&a);
    calls c = {0};
    char topic[64];
    unique_topic(topic, sizeof(topic), "once");
    for (int i = 0; i < 50; i++) {
        publish(&a, &c, topic, i);
    }
    cr_assert(run_until(&a, all_done, &c), "%d of %d publishes completed", c.done, c.n);
    run_a_while(&a);
    assert_each_once(&c);
    for (int i = 0; i < c.n; i++) {
        cr_assert_eq(c.st[i], BP_OK, "publish %d: %s", i, bp_status_name(c.st[i]));
    }
    member_free(&a);
}

Test(backplane_contract, nodes_lists_this_node_once)
{
    member a;
    member_open(&a, "nodes");
    member_ready(&a);
    calls c = {.self = a.node_id};
    bp_nodes(a.bp, 0, nodes_cb, next_call(&c));
    cr_assert(run_until(&a, all_done, &c));
    run_a_while(&a);
    assert_each_once(&c);
    cr_assert_eq(c.st[0], BP_OK);
    cr_assert(c.self_listed, "%s not among %d nodes", a.node_id, c.nodes_n);
    member_free(&a);
}

Test(backplane_contract, other_members_are_listed_when_messages_are_shared)
{
    member a, b;
    member_open(&a, "list-a");
    member_open(&b, "list-b");
    member_ready(&a);
    calls c = {.self = b.node_id};
    bp_nodes(a.bp, 0, nodes_cb, next_call(&c));
    cr_assert(run_until(&a, all_done, &c));
    cr_assert_eq(c.st[0], BP_OK);
    /* A shared backplane lists b from a; the local one only ever lists itself. */
    cr_assert_eq(c.self_listed, CONTRACT_SHARES_MESSAGES);
    member_free(&b);
    member_free(&a);
}

Test(backplane_contract, every_call_after_close_completes_once_with_eclosed)
{
    member a;
    member_open(&a, "closed");
    member_ready(&a);
    bp_close(a.bp);
    cr_assert_not(bp_is_ready(a.bp));
    calls c = {.self = a.node_id};
    char topic[64], payload[16];
    unique_topic(topic, sizeof(topic), "closed");
    publish(&a, &c, topic, 1);
    bp_message m = message(topic, payload, 2, 0);
    m.retain = true;
    bp_publish(a.bp, 0, &m, done_cb, next_call(&c));
    bp_nodes(a.bp, 0, nodes_cb, next_call(&c));
    bp_publish(a.bp, 0, &m, NULL, NULL); /* QoS 0: no callback, and no crash */
    cr_assert(run_until(&a, all_done, &c));
    run_a_while(&a);
    assert_each_once(&c);
    for (int i = 0; i < c.n; i++) {
        cr_assert_eq(c.st[i], BP_ECLOSED, "call %d: %s", i, bp_status_name(c.st[i]));
    }
    cr_assert_eq(c.nodes_n, 0);
    member_free(&a);
}

Test(backplane_contract, calls_pending_at_close_complete_once)
{
    member a;
    member_open(&a, "pending");
    member_ready(&a);
    calls c = {.self = a.node_id};
    char topic[64], payload[16];
    unique_topic(topic, sizeof(topic), "pending");
    for (int i = 0; i < 20; i++) {
        publish(&a, &c, topic, i);
    }
    bp_message m = message(topic, payload, 99, 1);
    m.retain = true;
    bp_publish(a.bp, 0, &m, done_cb, next_call(&c));
    bp_nodes(a.bp, 0, nodes_cb, next_call(&c));
    bp_close(a.bp);
    cr_assert(run_until(&a, all_done, &c), "%d of %d calls completed after close", c.done, c.n);
    run_a_while(&a);
    assert_each_once(&c);
    for (int i = 0; i < c.n; i++) {
        cr_assert(c.st[i] == BP_OK || c.st[i] == BP_ECLOSED, "call %d: %s", i, bp_status_name(c.st[i]));
    }
    member_free(&a);
}

static int seq_of_call(const calls *c, int i, const int *call_topic, int topic)
{
    /* Calls alternate between the topics; the n-th call on a topic is its seq. */
    int seq = 0;
    for (int k = 0; k < i; k++) {
        seq += call_topic[k] == topic;
    }
    return seq;
}

typedef struct delivery_wait {
    member *mb;
    int want;
} delivery_wait;

static bool delivered(void *arg)
{
    delivery_wait *w = arg;
    pthread_mutex_lock(&w->mb->lock);
    int n = w->mb->ngot;
    pthread_mutex_unlock(&w->mb->lock);
    return n >= w->want;
}

Test(backplane_contract, order_per_topic_in_completions_and_deliveries)
{
    enum { PER_TOPIC = 60 };
    member a, b;
    member_open(&a, "order-a");
    member_open(&b, "order-b");
    member_ready(&a);
    member_ready(&b);
    char topics[2][64];
    unique_topic(topics[0], sizeof(topics[0]), "order");
    unique_topic(topics[1], sizeof(topics[1]), "order");
    calls c = {0};
    int call_topic[MAX_CALLS];
    for (int i = 0; i < 2 * PER_TOPIC; i++) {
        call_topic[c.n] = i % 2;
        publish(&a, &c, topics[i % 2], i / 2);
    }
    cr_assert(run_until(&a, all_done, &c), "%d of %d completed", c.done, c.n);
    assert_each_once(&c);
    /* Completions: per topic in call order. */
    int last[2] = {-1, -1};
    for (int k = 0; k < c.n; k++) {
        int i = c.order[k], t = call_topic[i];
        int seq = seq_of_call(&c, i, call_topic, t);
        cr_assert_gt(seq, last[t], "topic %d: call %d completed after %d", t, seq, last[t]);
        last[t] = seq;
        cr_assert_eq(c.st[i], BP_OK);
    }
    /* Deliveries to the other member: each once, in order, one shard per topic. */
    delivery_wait w = {&b, CONTRACT_SHARES_MESSAGES ? 2 * PER_TOPIC : 0};
    cr_assert(run_until(&b, delivered, &w), "b got %d of %d", b.ngot, w.want);
    run_a_while(&b);
    pthread_mutex_lock(&b.lock);
    cr_assert_eq(b.ngot, w.want, "b got %d messages, want %d", b.ngot, w.want);
    int next[2] = {0, 0};
    unsigned shard[2] = {0, 0};
    for (int k = 0; k < b.ngot; k++) {
        int t = strcmp(b.got[k].topic, topics[0]) == 0 ? 0 : 1;
        cr_assert_str_eq(b.got[k].topic, topics[t]);
        cr_assert_eq(b.got[k].seq, next[t], "topic %d: got %d, want %d", t, b.got[k].seq, next[t]);
        if (next[t] == 0) {
            shard[t] = b.got[k].shard;
        }
        cr_assert_eq(b.got[k].shard, shard[t], "topic %d changed shard", t);
        next[t]++;
    }
    pthread_mutex_unlock(&b.lock);
    member_free(&b);
    member_free(&a);
}

/* ---- session records ---- */

/* What one session call's callback said (copied: results are borrowed). */
typedef struct sess_res {
    int count;
    bp_status st;
    uint64_t epoch;
    bool has_state;
    char state[64];
    char prev_owner[128];
    bool prev_alive;
    bool released;
} sess_res;

static void sess_cb(bp_status st, const bp_session_rec *rec, void *arg)
{
    sess_res *r = arg;
    r->count++;
    r->st = st;
    if (st != BP_OK) {
        cr_assert_null(rec, "a record given with status %s", bp_status_name(st));
        return;
    }
    cr_assert_not_null(rec);
    cr_assert_not_null(rec->prev_owner);
    r->epoch = rec->epoch;
    r->has_state = rec->state != NULL;
    cr_assert_lt(rec->state_len, sizeof(r->state));
    if (rec->state) {
        memcpy(r->state, rec->state, rec->state_len);
        r->state[rec->state_len] = 0;
    }
    snprintf(r->prev_owner, sizeof(r->prev_owner), "%s", rec->prev_owner);
    r->prev_alive = rec->prev_alive;
    r->released = rec->released;
}

static void sess_done_cb(bp_status st, void *arg)
{
    sess_res *r = arg;
    r->count++;
    r->st = st;
}

/* A result's count of callbacks: answered once it is not 0. */
static bool answered(void *count)
{
    return *(int *)count > 0;
}

static void sess_wait(member *mb, sess_res *r, const char *what)
{
    cr_assert(run_until(mb, answered, &r->count), "%s never answered", what);
}

static void unique_client(char *buf, size_t cap, const char *what)
{
    static int serial;
    snprintf(buf, cap, "contract-%s-%d-%d-%ld", what, (int)getpid(), serial++, (long)time(NULL));
}

/* Each call waits for its answer; sess_assert_once checks, a while after
 * the last, that none answered twice. */
static void claim(member *mb, sess_res *r, const char *id, bool clean)
{
    bp_session_claim(mb->bp, 0, id, clean, sess_cb, r);
    sess_wait(mb, r, "claim");
}

static void load(member *mb, sess_res *r, const char *id, uint64_t epoch, bool renotify)
{
    bp_session_load(mb->bp, 0, id, epoch, renotify, sess_cb, r);
    sess_wait(mb, r, "load");
}

static void store(member *mb, sess_res *r, const char *id, uint64_t epoch, const char *state, uint64_t ttl_ms)
{
    bp_session_store(mb->bp, 0, id, epoch, (const uint8_t *)state, (uint32_t)strlen(state), ttl_ms, sess_done_cb, r);
    sess_wait(mb, r, "store");
}

static void release_ttl(member *mb, sess_res *r, const char *id, uint64_t old_epoch, const char *state, uint64_t ttl_ms)
{
    bp_session_release(mb->bp, 0, id, old_epoch, (const uint8_t *)state, state ? (uint32_t)strlen(state) : 0, ttl_ms,
                       sess_done_cb, r);
    sess_wait(mb, r, "release");
}

static void release(member *mb, sess_res *r, const char *id, uint64_t old_epoch, const char *state)
{
    bp_session_release(mb->bp, 0, id, old_epoch, (const uint8_t *)state, state ? (uint32_t)strlen(state) : 0, 0,
                       sess_done_cb, r);
    sess_wait(mb, r, "release");
}

static void drop(member *mb, sess_res *r, const char *id, uint64_t epoch)
{
    bp_session_drop(mb->bp, 0, id, epoch, sess_done_cb, r);
    sess_wait(mb, r, "drop");
}

static void sess_assert_once(member *mb, const sess_res *r, int n)
{
    run_a_while(mb);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(r[i].count, 1, "session call %d answered %d times", i, r[i].count);
    }
}

static int revokes(member *mb)
{
    pthread_mutex_lock(&mb->lock);
    int n = mb->nrevoked;
    pthread_mutex_unlock(&mb->lock);
    return n;
}

Test(backplane_contract, session_claims_raise_the_epoch)
{
    member a;
    member_open(&a, "sess-claim");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "claim");
    sess_res r[3] = {0};
    claim(&a, &r[0], id, false);
    cr_assert_eq(r[0].st, BP_OK, "%s", bp_status_name(r[0].st));
    cr_assert_geq(r[0].epoch, 1);
    cr_assert_not(r[0].has_state, "a new id has no state");
    cr_assert_str_eq(r[0].prev_owner, "", "nobody owned a new id");
    claim(&a, &r[1], id, false);
    cr_assert_eq(r[1].st, BP_OK);
    cr_assert_gt(r[1].epoch, r[0].epoch);
    /* The previous owner is this very node: nothing to wait for, nobody to notify. */
    cr_assert_str_eq(r[1].prev_owner, "");
    load(&a, &r[2], id, r[1].epoch, false);
    cr_assert_eq(r[2].st, BP_OK);
    cr_assert_eq(r[2].epoch, r[1].epoch);
    sess_assert_once(&a, r, 3);
    cr_assert_eq(revokes(&a), 0, "a node never revokes itself");
    member_free(&a);
}

Test(backplane_contract, session_store_is_fenced_by_the_epoch)
{
    member a;
    member_open(&a, "sess-store");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "store");
    sess_res r[9] = {0};
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "one", 0);
    cr_assert_eq(r[1].st, BP_OK, "%s", bp_status_name(r[1].st));
    claim(&a, &r[2], id, false);
    uint64_t e2 = r[2].epoch;
    cr_assert_gt(e2, e1);
    cr_assert(r[2].has_state, "a claim that is not clean keeps the state");
    cr_assert_str_eq(r[2].state, "one");
    store(&a, &r[3], id, e1, "stale", 0);
    cr_assert_eq(r[3].st, BP_ESTALE, "a write with the old epoch: %s", bp_status_name(r[3].st));
    store(&a, &r[4], id, e2 + 1, "future", 0);
    cr_assert_eq(r[4].st, BP_ESTALE, "an epoch nobody claimed: %s", bp_status_name(r[4].st));
    store(&a, &r[5], id, e2, "two", 0);
    cr_assert_eq(r[5].st, BP_OK);
    load(&a, &r[6], id, e2, false);
    cr_assert_eq(r[6].st, BP_OK);
    cr_assert_str_eq(r[6].state, "two");
    load(&a, &r[7], id, e1, false);
    cr_assert_eq(r[7].st, BP_ESTALE, "a load with the old epoch: %s", bp_status_name(r[7].st));
    load(&a, &r[8], id, 0, false);
    cr_assert_eq(r[8].st, BP_OK);
    cr_assert_eq(r[8].epoch, e2, "an unfenced load reads the current epoch");
    sess_assert_once(&a, r, 9);
    member_free(&a);
}

Test(backplane_contract, session_release_is_accepted_once_for_the_previous_epoch)
{
    member a;
    member_open(&a, "sess-release");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "release");
    sess_res r[11] = {0};
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "before", 0);
    claim(&a, &r[2], id, false);
    uint64_t e2 = r[2].epoch;
    cr_assert_gt(e2, e1);
    cr_assert_not(r[2].released);
    release(&a, &r[3], id, e2, "not-prev");
    cr_assert_eq(r[3].st, BP_ESTALE, "only the previous claim releases: %s", bp_status_name(r[3].st));
    release(&a, &r[4], id, e1, "final");
    cr_assert_eq(r[4].st, BP_OK, "%s", bp_status_name(r[4].st));
    load(&a, &r[5], id, e2, false);
    cr_assert(r[5].released);
    cr_assert_str_eq(r[5].state, "final", "the release wrote the final state");
    release(&a, &r[6], id, e1, "again");
    cr_assert_eq(r[6].st, BP_ESTALE, "a second release: %s", bp_status_name(r[6].st));
    load(&a, &r[7], id, e2, false);
    cr_assert_str_eq(r[7].state, "final");
    /* Old epoch 0: whichever claim of this node is the previous one (a node
     * with no session for the id does not know its epoch). */
    claim(&a, &r[8], id, false);
    release(&a, &r[9], id, 0, NULL);
    cr_assert_eq(r[9].st, BP_OK, "%s", bp_status_name(r[9].st));
    load(&a, &r[10], id, r[8].epoch, false);
    cr_assert(r[10].released);
    cr_assert_str_eq(r[10].state, "final", "a release without state keeps what is stored");
    sess_assert_once(&a, r, 11);
    member_free(&a);
}

Test(backplane_contract, session_clean_claim_deletes_the_state_for_good)
{
    member a;
    member_open(&a, "sess-clean");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "clean");
    sess_res r[5] = {0};
    claim(&a, &r[0], id, false);
    store(&a, &r[1], id, r[0].epoch, "old", 0);
    claim(&a, &r[2], id, true);
    cr_assert_eq(r[2].st, BP_OK);
    cr_assert_gt(r[2].epoch, r[0].epoch);
    cr_assert_not(r[2].has_state, "a clean claim deletes the state");
    /* The previous owner's last word does not bring it back. */
    release(&a, &r[3], id, r[0].epoch, "old-final");
    cr_assert_eq(r[3].st, BP_OK);
    load(&a, &r[4], id, r[2].epoch, false);
    cr_assert(r[4].released);
    cr_assert_not(r[4].has_state, "state \"%s\" came back after a clean claim", r[4].state);
    sess_assert_once(&a, r, 5);
    member_free(&a);
}

Test(backplane_contract, session_drop_is_fenced_and_a_dropped_id_never_goes_back_in_epochs)
{
    member a;
    member_open(&a, "sess-drop");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "drop");
    sess_res r[9] = {0};
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "x", 0);
    claim(&a, &r[2], id, false);
    uint64_t e2 = r[2].epoch;
    release(&a, &r[8], id, e1, NULL); /* an unreleased previous owner's drop is its last word instead */
    drop(&a, &r[3], id, e1);
    cr_assert_eq(r[3].st, BP_ESTALE, "a drop with the old epoch: %s", bp_status_name(r[3].st));
    drop(&a, &r[4], id, e2);
    cr_assert_eq(r[4].st, BP_OK, "%s", bp_status_name(r[4].st));
    load(&a, &r[5], id, 0, false);
    cr_assert_eq(r[5].st, BP_OK);
    cr_assert_eq(r[5].epoch, 0, "the record is gone");
    cr_assert_not(r[5].has_state);
    load(&a, &r[6], id, e2, false);
    cr_assert_eq(r[6].st, BP_ESTALE, "a fenced load of a dropped record: %s", bp_status_name(r[6].st));
    /* Not 1 again: a node that still held an old claim (it never heard of
     * the drop, or its store raced it) must stay below every new claim. */
    claim(&a, &r[7], id, false);
    cr_assert_gt(r[7].epoch, e2, "epoch %llu after %llu", (unsigned long long)r[7].epoch, (unsigned long long)e2);
    cr_assert_not(r[7].has_state);
    sess_assert_once(&a, r, 9);
    member_free(&a);
}

typedef struct expiry_wait {
    member *mb;
    const char *id;
    sess_res r;
} expiry_wait;

static bool record_gone(void *arg)
{
    expiry_wait *w = arg;
    if (w->r.count == 0) {
        bp_session_load(w->mb->bp, 0, w->id, 0, false, sess_cb, &w->r);
        return false;
    }
    if (w->r.count == 1 && w->r.st == BP_OK && w->r.epoch == 0) {
        return true;
    }
    memset(&w->r, 0, sizeof(w->r));
    return false;
}

Test(backplane_contract, session_store_ttl_expires_the_record_and_0_keeps_it)
{
    member a;
    member_open(&a, "sess-ttl");
    member_ready(&a);
    char id[128], keep[128];
    unique_client(id, sizeof(id), "ttl");
    unique_client(keep, sizeof(keep), "ttl-keep");
    sess_res r[6] = {0};
    claim(&a, &r[0], id, false);
    store(&a, &r[1], id, r[0].epoch, "offline", 200);
    cr_assert_eq(r[1].st, BP_OK);
    claim(&a, &r[2], keep, false);
    store(&a, &r[3], keep, r[2].epoch, "short", 200);
    store(&a, &r[4], keep, r[2].epoch, "forever", 0); /* a later store without expiry removes it */
    expiry_wait w = {.mb = &a, .id = id};
    cr_assert(run_until(&a, record_gone, &w), "the record outlived its TTL");
    run_a_while(&a);
    run_a_while(&a); /* well past the first TTL */
    load(&a, &r[5], keep, r[2].epoch, false);
    cr_assert_eq(r[5].st, BP_OK, "%s", bp_status_name(r[5].st));
    cr_assert_str_eq(r[5].state, "forever");
    sess_assert_once(&a, r, 6);
    member_free(&a);
}

/* The owner of a session whose record is gone (it expired, or Redis lost
 * its data) re-asserts its claim with its next store, rather than being
 * told it lost the session nobody else claimed. */
Test(backplane_contract, session_store_recreates_a_record_that_is_gone)
{
    member a;
    member_open(&a, "sess-recreate");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "recreate");
    sess_res r[6] = {0};
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "offline", 200);
    expiry_wait w = {.mb = &a, .id = id};
    cr_assert(run_until(&a, record_gone, &w), "the record outlived its TTL");
    store(&a, &r[2], id, e1, "again", 0);
    cr_assert_eq(r[2].st, BP_OK, "a store into a record that is gone: %s", bp_status_name(r[2].st));
    load(&a, &r[3], id, e1, false);
    cr_assert_eq(r[3].st, BP_OK, "%s", bp_status_name(r[3].st));
    cr_assert_str_eq(r[3].state, "again");
    /* The next claim comes after it, and sees it released (nothing to wait for). */
    claim(&a, &r[4], id, false);
    cr_assert_gt(r[4].epoch, e1);
    cr_assert_str_eq(r[4].state, "again");
    store(&a, &r[5], id, e1, "stale", 0);
    cr_assert_eq(r[5].st, BP_ESTALE, "the re-created record fences like any other");
    sess_assert_once(&a, r, 6);
    member_free(&a);
}

Test(backplane_contract, session_calls_after_close_complete_once_with_eclosed)
{
    member a;
    member_open(&a, "sess-closed");
    member_ready(&a);
    bp_close(a.bp);
    char id[128];
    unique_client(id, sizeof(id), "closed");
    sess_res r[5] = {0};
    bp_session_claim(a.bp, 0, id, false, sess_cb, &r[0]);
    bp_session_load(a.bp, 0, id, 1, true, sess_cb, &r[1]);
    bp_session_store(a.bp, 0, id, 1, (const uint8_t *)"s", 1, 0, sess_done_cb, &r[2]);
    bp_session_release(a.bp, 0, id, 1, NULL, 0, 0, sess_done_cb, &r[3]);
    bp_session_drop(a.bp, 0, id, 1, sess_done_cb, &r[4]);
    bp_session_store(a.bp, 0, id, 1, NULL, 0, 0, NULL, NULL); /* no callback, and no crash */
    for (int i = 0; i < 5; i++) {
        sess_wait(&a, &r[i], "a call after close");
        cr_assert_eq(r[i].st, BP_ECLOSED, "call %d: %s", i, bp_status_name(r[i].st));
    }
    sess_assert_once(&a, r, 5);
    member_free(&a);
}

Test(backplane_contract, session_calls_pending_at_close_complete_once)
{
    member a;
    member_open(&a, "sess-pending");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "pending");
    sess_res r[5] = {0};
    bp_session_claim(a.bp, 0, id, false, sess_cb, &r[0]);
    bp_session_store(a.bp, 0, id, 1, (const uint8_t *)"s", 1, 0, sess_done_cb, &r[1]);
    bp_session_load(a.bp, 0, id, 1, false, sess_cb, &r[2]);
    bp_session_release(a.bp, 0, id, 1, NULL, 0, 0, sess_done_cb, &r[3]);
    bp_session_drop(a.bp, 0, id, 1, sess_done_cb, &r[4]);
    bp_close(a.bp);
    for (int i = 0; i < 5; i++) {
        sess_wait(&a, &r[i], "a call pending at close");
    }
    sess_assert_once(&a, r, 5);
    member_free(&a);
}

/* Issue 17 review, item 11: a record nobody connects to gets a TTL. A
 * release carries the released session's offline TTL (the claim it hands
 * over to may have been abandoned); a new owner that connects removes it
 * with its store. */
Test(backplane_contract, session_release_sets_the_ttl_it_is_given)
{
    member a;
    member_open(&a, "sess-release-ttl");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "release-ttl");
    sess_res r[3] = {0};
    claim(&a, &r[0], id, false);
    claim(&a, &r[1], id, false); /* abandoned: never stores */
    release_ttl(&a, &r[2], id, r[0].epoch, "final", 200);
    cr_assert_eq(r[2].st, BP_OK, "%s", bp_status_name(r[2].st));
    expiry_wait w = {.mb = &a, .id = id};
    cr_assert(run_until(&a, record_gone, &w), "the released record never expired");
    sess_assert_once(&a, r, 3);
    member_free(&a);
}

/* The previous owner's session ends while a claim after it waits for its
 * release, or was abandoned: its drop is accepted, marks the record
 * released with no state (a waiting claim goes on with an empty session)
 * and leaves it to expire. */
Test(backplane_contract, session_drop_by_the_unreleased_previous_owner_lets_go)
{
    member a;
    member_open(&a, "sess-drop-prev");
    member_ready(&a);
    char id[128];
    unique_client(id, sizeof(id), "drop-prev");
    sess_res r[5] = {0};
    claim(&a, &r[0], id, false);
    store(&a, &r[1], id, r[0].epoch, "ended", 0);
    claim(&a, &r[2], id, false);
    drop(&a, &r[3], id, r[0].epoch);
    cr_assert_eq(r[3].st, BP_OK, "the previous owner's drop: %s", bp_status_name(r[3].st));
    load(&a, &r[4], id, r[2].epoch, false);
    cr_assert_eq(r[4].st, BP_OK, "%s", bp_status_name(r[4].st));
    cr_assert(r[4].released);
    cr_assert_not(r[4].has_state, "state \"%s\" outlived the session's end", r[4].state);
    sess_assert_once(&a, r, 5);
    member_free(&a);
}

/* ---- a dead node's sessions (bp_reap_*) and shared groups ---- */

/* What one bp_reap_batch callback said (copied: results are borrowed). */
typedef struct reap_res {
    int count;
    bp_status st;
    char instance[256]; /* "" when none */
    size_t n;
} reap_res;

static void reap_cb(bp_status st, const bp_reap_set *b, void *arg)
{
    reap_res *r = arg;
    r->count++;
    r->st = st;
    if (st != BP_OK) {
        cr_assert_null(b, "a batch given with status %s", bp_status_name(st));
        return;
    }
    cr_assert_not_null(b);
    snprintf(r->instance, sizeof(r->instance), "%s", b->instance ? b->instance : "");
    r->n = b->n;
    cr_assert(b->instance || (b->n == 0 && b->cursor == 0), "records without an instance");
}

static void reap_wait(member *mb, reap_res *r, const char *what)
{
    cr_assert(run_until(mb, answered, &r->count), "%s never answered", what);
}

/* An instance nobody on this backplane runs or holds. */
static void unique_instance(char *buf, size_t cap)
{
    static int serial;
    snprintf(buf, cap, "nobody%d|contract-dead-%d-%ld", serial++, (int)getpid(), (long)time(NULL));
}

Test(backplane_contract, reap_scan_answers_once)
{
    member a;
    member_open(&a, "reap-scan");
    member_ready(&a);
    reap_res r = {0};
    bp_reap_batch(a.bp, 0, NULL, 0, reap_cb, &r);
    reap_wait(&a, &r, "a reap scan");
    cr_assert_eq(r.st, BP_OK, "%s", bp_status_name(r.st));
    /* A single node has no other to outlive. A shared backplane may find
     * an instance an earlier test left behind: give it back at once. */
    if (!CONTRACT_SHARES_MESSAGES) {
        cr_assert_str_eq(r.instance, "", "the local backplane found a dead instance");
    } else if (r.instance[0]) {
        bp_reap_end(a.bp, 0, r.instance, 1);
    }
    run_a_while(&a);
    cr_assert_eq(r.count, 1, "answered %d times", r.count);
    member_free(&a);
}

Test(backplane_contract, reap_of_an_instance_not_held_here_finds_nothing_once)
{
    member a;
    member_open(&a, "reap-other");
    member_ready(&a);
    char inst[128];
    unique_instance(inst, sizeof(inst));
    reap_res r = {0};
    bp_reap_batch(a.bp, 0, inst, 0, reap_cb, &r);
    reap_wait(&a, &r, "a reap batch");
    cr_assert_eq(r.st, BP_OK, "%s", bp_status_name(r.st));
    cr_assert_str_eq(r.instance, "", "a batch of %s, which this node never locked", r.instance);
    cr_assert_eq(r.n, 0);
    bp_reap_end(a.bp, 0, inst, 0); /* not held: no effect, no callback */
    run_a_while(&a);
    cr_assert_eq(r.count, 1, "answered %d times", r.count);
    member_free(&a);
}

/* A settle is fenced by the dead instance's ownership: a record that does
 * not exist, or that a live node owns, is not touched. */
Test(backplane_contract, reap_finish_of_a_record_the_instance_does_not_own_is_stale_once)
{
    member a;
    member_open(&a, "reap-finish");
    member_ready(&a);
    char inst[128], id[128], missing[128];
    unique_instance(inst, sizeof(inst));
    unique_client(id, sizeof(id), "reap-live");
    unique_client(missing, sizeof(missing), "reap-missing");
    sess_res r[6] = {0};
    claim(&a, &r[0], id, false);
    store(&a, &r[1], id, r[0].epoch, "live", 0);
    bp_reap_finish(a.bp, 0, inst, id, r[0].epoch, NULL, 0, -1, sess_done_cb, &r[2]);
    bp_reap_finish(a.bp, 0, inst, id, r[0].epoch, (const uint8_t *)"will-sent", 9, 0, sess_done_cb, &r[3]);
    bp_reap_finish(a.bp, 0, inst, missing, 1, NULL, 0, -1, sess_done_cb, &r[4]);
    for (int i = 2; i < 5; i++) {
        sess_wait(&a, &r[i], "a reap finish");
        cr_assert_eq(r[i].st, BP_ESTALE, "finish %d: %s", i, bp_status_name(r[i].st));
    }
    load(&a, &r[5], id, r[0].epoch, false);
    cr_assert_eq(r[5].st, BP_OK, "%s", bp_status_name(r[5].st));
    cr_assert_str_eq(r[5].state, "live", "a refused settle wrote \"%s\"", r[5].state);
    sess_assert_once(&a, r, 6);
    member_free(&a);
}

Test(backplane_contract, reap_calls_after_close_complete_once_with_eclosed)
{
    member a;
    member_open(&a, "reap-closed");
    member_ready(&a);
    bp_close(a.bp);
    char inst[128];
    unique_instance(inst, sizeof(inst));
    reap_res b[2] = {0};
    sess_res f[1] = {0};
    bp_reap_batch(a.bp, 0, NULL, 0, reap_cb, &b[0]);
    bp_reap_batch(a.bp, 0, inst, 7, reap_cb, &b[1]);
    bp_reap_finish(a.bp, 0, inst, "c", 1, NULL, 0, -1, sess_done_cb, &f[0]);
    bp_reap_finish(a.bp, 0, inst, "c", 1, NULL, 0, -1, NULL, NULL); /* no callback, and no crash */
    bp_reap_end(a.bp, 0, inst, 0);
    for (int i = 0; i < 2; i++) {
        reap_wait(&a, &b[i], "a reap batch after close");
        cr_assert_eq(b[i].st, BP_ECLOSED, "batch %d: %s", i, bp_status_name(b[i].st));
    }
    sess_wait(&a, &f[0], "a reap finish after close");
    cr_assert_eq(f[0].st, BP_ECLOSED, "%s", bp_status_name(f[0].st));
    sess_assert_once(&a, f, 1);
    cr_assert_eq(b[0].count, 1);
    cr_assert_eq(b[1].count, 1);
    member_free(&a);
}

Test(backplane_contract, reap_calls_pending_at_close_complete_once)
{
    member a;
    member_open(&a, "reap-pending");
    member_ready(&a);
    char inst[128];
    unique_instance(inst, sizeof(inst));
    reap_res b[2] = {0};
    sess_res f[1] = {0};
    bp_reap_batch(a.bp, 0, inst, 0, reap_cb, &b[0]);
    bp_reap_finish(a.bp, 0, inst, "c", 1, NULL, 0, -1, sess_done_cb, &f[0]);
    bp_reap_end(a.bp, 0, inst, 0);
    bp_reap_batch(a.bp, 0, inst, 0, reap_cb, &b[1]);
    bp_close(a.bp);
    for (int i = 0; i < 2; i++) {
        reap_wait(&a, &b[i], "a reap batch pending at close");
        cr_assert(b[i].st == BP_OK || b[i].st == BP_ECLOSED, "batch %d: %s", i, bp_status_name(b[i].st));
    }
    sess_wait(&a, &f[0], "a reap finish pending at close");
    sess_assert_once(&a, f, 1);
    cr_assert_eq(b[0].count, 1);
    cr_assert_eq(b[1].count, 1);
    member_free(&a);
}

/* A group no node has announced yet: this node delivers what it matched
 * (the local backplane: every group is this node's). */
Test(backplane_contract, a_shared_group_nobody_announced_is_this_nodes)
{
    member a;
    member_open(&a, "share");
    member_ready(&a);
    char key[128];
    unique_client(key, sizeof(key), "group/share/filter");
    for (uint64_t h = 0; h < 64; h++) {
        cr_assert(bp_share_mine(a.bp, (const uint8_t *)key, strlen(key), bp_share_mix(h), 0), "hash %llu",
                  (unsigned long long)h);
    }
    member_free(&a);
}

#endif
