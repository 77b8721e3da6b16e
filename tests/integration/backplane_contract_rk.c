/* SPDX-License-Identifier: Apache-2.0 */
/* The backplane contract (tests/unit/cluster/backplane_contract.h) against
 * redis_kafka with a real Redis and Kafka, given by with_backends.sh in
 * SHOAL_TEST_REDIS_URL and SHOAL_TEST_KAFKA. Every test opens its own
 * members on a Kafka topic prefix unique to this run. */
#include <stdlib.h>

#define CONTRACT_SHARES_MESSAGES true
#include "tests/unit/cluster/backplane_contract.h"

static void contract_config(bp_config *cfg)
{
    static char prefix[64];
    const char *redis = getenv("SHOAL_TEST_REDIS_URL");
    const char *kafka = getenv("SHOAL_TEST_KAFKA");
    cr_assert(redis && kafka, "run through tests/integration/with_backends.sh");
    const char *run = getenv("SHOAL_TEST_RUN");
    snprintf(prefix, sizeof(prefix), "contract-%s.", run ? run : "x");
    cfg->redis_url = redis;
    cfg->kafka_brokers = kafka;
    cfg->kafka_topic_prefix = prefix;
}

/* ---- redis_kafka only: two nodes on one Redis ---- */

#include <hiredis/hiredis.h>

/* A direct connection to the test's Redis, to look at what the scripts
 * wrote (redis://host:port, as deploy/redis/start prints it). */
static redisContext *redis_direct(void)
{
    const char *url = getenv("SHOAL_TEST_REDIS_URL");
    cr_assert(url && strncmp(url, "redis://", 8) == 0, "a plain redis:// URL expected, got %s", url ? url : "none");
    char host[128];
    int port = 0;
    cr_assert_eq(sscanf(url + 8, "%127[^:]:%d", host, &port), 2, "cannot parse %s", url);
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    cr_assert(c && !c->err, "cannot connect to %s", url);
    return c;
}

static long long pttl(redisContext *c, const char *id)
{
    redisReply *rep = redisCommand(c, "PTTL shoal:sess:{%s}", id);
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

static long long numsub(redisContext *c, const char *node_id)
{
    redisReply *rep = redisCommand(c, "PUBSUB NUMSUB shoal:revoke:{%s}", node_id);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2);
    long long n = rep->element[1]->integer;
    freeReplyObject(rep);
    return n;
}

/* Wait (turning the member's loop) until node_id's revoke channel has
 * want subscribers: a revoke published before is lost by design. */
static void wait_numsub(member *mb, redisContext *c, const char *node_id, long long want)
{
    double deadline = now_s() + WAIT_S;
    while (numsub(c, node_id) != want) {
        cr_assert_lt(now_s(), deadline, "%s: revoke channel never had %lld subscribers", node_id, want);
        event_base_loop(mb->base, EVLOOP_NONBLOCK);
        usleep(10000);
    }
}

/* CLIENT KILL the revoke subscriber of node_id (named by CLIENT SETNAME). */
static void kill_subscriber(redisContext *c, const char *node_id)
{
    char name[160];
    snprintf(name, sizeof(name), " name=shoal-revoke-%s ", node_id);
    redisReply *rep = redisCommand(c, "CLIENT LIST");
    cr_assert(rep && rep->type == REDIS_REPLY_STRING);
    const char *line = strstr(rep->str, name);
    cr_assert_not_null(line, "no connection named %s", name);
    while (line > rep->str && line[-1] != '\n') {
        line--;
    }
    long long cid = 0;
    cr_assert_eq(sscanf(line, "id=%lld", &cid), 1);
    freeReplyObject(rep);
    rep = redisCommand(c, "CLIENT KILL ID %lld", cid);
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
    freeReplyObject(rep);
}

typedef struct revoke_wait {
    member *mb;
    int want;
} revoke_wait;

static bool revoked(void *arg)
{
    revoke_wait *w = arg;
    return revokes(w->mb) >= w->want;
}

static void wait_revokes(member *mb, int want, const char *id, uint64_t epoch)
{
    revoke_wait w = {mb, want};
    cr_assert(run_until(mb, revoked, &w), "%s got %d revokes, want %d", mb->node_id, revokes(mb), want);
    pthread_mutex_lock(&mb->lock);
    cr_assert_str_eq(mb->revoked_id[want - 1], id);
    cr_assert_eq(mb->revoked_epoch[want - 1], epoch);
    pthread_mutex_unlock(&mb->lock);
}

Test(backplane_contract_rk, a_claim_from_another_node_revokes_and_the_release_hands_over)
{
    member a, b;
    member_open(&a, "sess-a");
    member_open(&b, "sess-b");
    member_ready(&a);
    member_ready(&b);
    char id[128];
    unique_client(id, sizeof(id), "takeover");
    sess_res r[8] = {0};
    redisContext *c = redis_direct();
    wait_numsub(&a, c, a.node_id, 1);
    redisFree(c);
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "a-state", 0);
    claim(&b, &r[2], id, false);
    cr_assert_eq(r[2].st, BP_OK);
    uint64_t e2 = r[2].epoch;
    cr_assert_gt(e2, e1);
    cr_assert_str_eq(r[2].prev_owner, a.node_id);
    cr_assert(r[2].prev_alive, "a is running");
    cr_assert_not(r[2].released);
    cr_assert_str_eq(r[2].state, "a-state", "b sees what a stored last");
    wait_revokes(&a, 1, id, e2);
    /* Pub/sub may lose a revoke: b's poll can send it again. */
    load(&b, &r[3], id, e2, true);
    cr_assert_eq(r[3].st, BP_OK);
    cr_assert_not(r[3].released);
    wait_revokes(&a, 2, id, e2);
    /* a is fenced out of the record now... */
    store(&a, &r[4], id, e1, "a-late", 0);
    cr_assert_eq(r[4].st, BP_ESTALE, "%s", bp_status_name(r[4].st));
    /* ...except for its last word, once. */
    release(&a, &r[5], id, e1, "a-final");
    cr_assert_eq(r[5].st, BP_OK, "%s", bp_status_name(r[5].st));
    load(&b, &r[6], id, e2, true);
    cr_assert(r[6].released);
    cr_assert_str_eq(r[6].state, "a-final");
    release(&a, &r[7], id, e1, "a-again");
    cr_assert_eq(r[7].st, BP_ESTALE);
    sess_assert_once(&a, r, 8);
    /* No revoke after the release, and none ever for b. */
    cr_assert_eq(revokes(&a), 2);
    cr_assert_eq(revokes(&b), 0);
    member_free(&b);
    member_free(&a);
}

Test(backplane_contract_rk, the_previous_owner_is_dead_once_its_node_claim_is_gone)
{
    member a, b;
    member_open(&a, "dead-a");
    member_open(&b, "dead-b");
    member_ready(&a);
    member_ready(&b);
    char id[128], a_id[64];
    unique_client(id, sizeof(id), "dead");
    snprintf(a_id, sizeof(a_id), "%s", a.node_id);
    sess_res r[3] = {0};
    claim(&a, &r[0], id, false);
    claim(&b, &r[1], id, false);
    cr_assert_str_eq(r[1].prev_owner, a_id);
    cr_assert(r[1].prev_alive);
    member_free(&a); /* a clean stop releases its node-id claim */
    load(&b, &r[2], id, r[1].epoch, false);
    cr_assert_eq(r[2].st, BP_OK);
    cr_assert_str_eq(r[2].prev_owner, a_id);
    cr_assert_not(r[2].prev_alive, "a stopped: b need not wait for its release");
    cr_assert_not(r[2].released);
    sess_assert_once(&b, r, 3);
    member_free(&b);
}

Test(backplane_contract_rk, a_store_ttl_is_the_record_ttl_in_redis)
{
    member a;
    member_open(&a, "pttl");
    member_ready(&a);
    redisContext *c = redis_direct();
    char id[128];
    unique_client(id, sizeof(id), "pttl");
    sess_res r[4] = {0};
    claim(&a, &r[0], id, false);
    cr_assert_eq(pttl(c, id), -1, "a claimed record has no TTL");
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "offline", 600000);
    long long t = pttl(c, id);
    cr_assert(t > 0 && t <= 600000, "PTTL %lld after a 600000 ms store", t);
    store(&a, &r[2], id, e1, "online", 0);
    cr_assert_eq(pttl(c, id), -1, "a store with ttl 0 removes the expiry");
    store(&a, &r[3], id, e1, "offline", 600000);
    claim(&a, &(sess_res){0}, id, false);
    cr_assert_eq(pttl(c, id), -1, "a claim (the client connected) removes the expiry");
    sess_assert_once(&a, r, 4);
    redisFree(c);
    member_free(&a);
}

Test(backplane_contract_rk, the_revoke_subscription_comes_back_after_its_connection_drops)
{
    member a, b;
    member_open(&a, "resub-a");
    member_open(&b, "resub-b");
    member_ready(&a);
    member_ready(&b);
    redisContext *c = redis_direct();
    char id[128];
    unique_client(id, sizeof(id), "resub");
    sess_res r[3] = {0};
    wait_numsub(&a, c, a.node_id, 1);
    claim(&a, &r[0], id, false);
    kill_subscriber(c, a.node_id);
    wait_numsub(&a, c, a.node_id, 0);
    wait_numsub(&a, c, a.node_id, 1); /* reconnected and subscribed again */
    claim(&b, &r[1], id, false);
    cr_assert_gt(r[1].epoch, r[0].epoch);
    wait_revokes(&a, 1, id, r[1].epoch);
    sess_assert_once(&a, r, 2);
    redisFree(c);
    member_free(&b);
    member_free(&a);
}

/* ---- the retained snapshot's scripts (cluster/rk_retained.h) ----
 * Run against the real Redis on keys of their own, so they never meet a
 * node's. */

#include "cluster/rk_record.h"
#include "cluster/rk_retained.h"

typedef struct snap_keys {
    char retained[96], at[96], offsets[96];
} snap_keys;

static void snap_keys_init(snap_keys *k, const char *name)
{
    snprintf(k->retained, sizeof(k->retained), "test:%d:%s:retained", (int)getpid(), name);
    snprintf(k->at, sizeof(k->at), "test:%d:%s:at", (int)getpid(), name);
    snprintf(k->offsets, sizeof(k->offsets), "test:%d:%s:offsets", (int)getpid(), name);
}

/* RK_RETAINED_CAS_LUA: 1 written, 0 kept. value NULL: a delete. */
static long long cas(redisContext *c, const snap_keys *k, const char *topic, int partition, long long offset,
                     const char *value)
{
    redisReply *rep = redisCommand(c, "EVAL %s 2 %s %s %s %d %lld %s", RK_RETAINED_CAS_LUA, k->retained, k->at, topic,
                                   partition, offset, value ? value : "");
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER, "CAS: %s", rep && rep->str ? rep->str : "no reply");
    long long n = rep->integer;
    freeReplyObject(rep);
    return n;
}

/* HGET as a string ("" when absent), into buf. */
static const char *hget(redisContext *c, const char *key, const char *field, char *buf, size_t cap)
{
    redisReply *rep = redisCommand(c, "HGET %s %s", key, field);
    cr_assert(rep);
    snprintf(buf, cap, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
    return buf;
}

static long long redis_now_ms(redisContext *c)
{
    redisReply *rep = redisCommand(c, "TIME");
    long long ms = atoll(rep->element[0]->str) * 1000 + atoll(rep->element[1]->str) / 1000;
    freeReplyObject(rep);
    return ms;
}

Test(retained_scripts, a_set_is_kept_only_when_its_offset_is_newer)
{
    redisContext *c = redis_direct();
    snap_keys k;
    snap_keys_init(&k, "newer");
    char buf[256];
    cr_assert_eq(cas(c, &k, "a/b", 3, 10, "ten"), 1);
    cr_assert_eq(cas(c, &k, "a/b", 3, 9, "nine"), 0, "an older set overwrote a newer one");
    cr_assert_eq(cas(c, &k, "a/b", 3, 10, "ten again"), 0, "the same offset twice is written once");
    cr_assert_str_eq(hget(c, k.retained, "a/b", buf, sizeof(buf)), "ten");
    cr_assert_str_eq(hget(c, k.at, "a/b", buf, sizeof(buf)), "3:10");
    cr_assert_eq(cas(c, &k, "a/b", 3, 11, "eleven"), 1);
    cr_assert_str_eq(hget(c, k.retained, "a/b", buf, sizeof(buf)), "eleven");
    /* Offsets above 2^32 compare as numbers, not as strings. */
    cr_assert_eq(cas(c, &k, "big", 0, 9999999999LL, "big"), 1);
    cr_assert_eq(cas(c, &k, "big", 0, 10000000000LL, "bigger"), 1);
    cr_assert_eq(cas(c, &k, "big", 0, 999999999LL, "small"), 0);
    /* Another partition (the partition count changed): not comparable, the write wins. */
    cr_assert_eq(cas(c, &k, "a/b", 5, 1, "moved"), 1);
    cr_assert_str_eq(hget(c, k.at, "a/b", buf, sizeof(buf)), "5:1");
    redisFree(c);
}

Test(retained_scripts, a_delete_is_a_tombstone_that_an_older_set_cannot_pass)
{
    redisContext *c = redis_direct();
    snap_keys k;
    snap_keys_init(&k, "tomb");
    char buf[256];
    cr_assert_eq(cas(c, &k, "t", 0, 5, "five"), 1);
    long long before = redis_now_ms(c);
    cr_assert_eq(cas(c, &k, "t", 0, 7, NULL), 1);
    cr_assert_str_eq(hget(c, k.retained, "t", buf, sizeof(buf)), "", "the value stayed after its delete");
    int p = -1;
    long long off = -1, at = -1;
    cr_assert_eq(sscanf(hget(c, k.at, "t", buf, sizeof(buf)), "%d:%lld:%lld", &p, &off, &at), 3, "%s", buf);
    cr_assert_eq(p, 0);
    cr_assert_eq(off, 7);
    cr_assert(at >= before && at <= redis_now_ms(c), "tombstone time %lld", at);
    /* The set from before the delete, replayed or retried late. */
    cr_assert_eq(cas(c, &k, "t", 0, 6, "six"), 0, "an older set resurrected a deleted topic");
    cr_assert_str_eq(hget(c, k.retained, "t", buf, sizeof(buf)), "");
    /* An older delete does not move the tombstone either; a newer set does. */
    cr_assert_eq(cas(c, &k, "t", 0, 6, NULL), 0);
    cr_assert_eq(cas(c, &k, "t", 0, 8, "eight"), 1);
    cr_assert_str_eq(hget(c, k.retained, "t", buf, sizeof(buf)), "eight");
    cr_assert_str_eq(hget(c, k.at, "t", buf, sizeof(buf)), "0:8");
    redisFree(c);
}

Test(retained_scripts, watermarks_only_rise)
{
    redisContext *c = redis_direct();
    snap_keys k;
    snap_keys_init(&k, "marks");
    char buf[64];
    redisReply *rep = redisCommand(c, "EVAL %s 1 %s 0 100 1 50", RK_RETAINED_MARK_LUA, k.offsets);
    cr_assert_eq(rep->integer, 2);
    freeReplyObject(rep);
    rep = redisCommand(c, "EVAL %s 1 %s 0 90 1 60", RK_RETAINED_MARK_LUA, k.offsets);
    cr_assert_eq(rep->integer, 1, "a lower watermark was written");
    freeReplyObject(rep);
    cr_assert_str_eq(hget(c, k.offsets, "0", buf, sizeof(buf)), "100");
    cr_assert_str_eq(hget(c, k.offsets, "1", buf, sizeof(buf)), "60");
    redisFree(c);
}

/* A record as a node writes it, with this expiry (Unix ms, 0 = none). */
static size_t make_record(uint8_t *buf, const char *topic, const char *payload, uint64_t expiry)
{
    bp_message m = {.topic = (const uint8_t *)topic,
                    .topic_len = (uint32_t)strlen(topic),
                    .payload = (const uint8_t *)payload,
                    .payload_len = (uint32_t)strlen(payload),
                    .expiry_at_unix_ms = expiry,
                    .retain = true,
                    .qos = 1};
    return rk_record_encode(&m, "node-x", buf);
}

static void sweep_all(redisContext *c, const char *script, int nkeys, const char *k1, const char *k2, long long life)
{
    char cursor[32] = "0";
    do {
        redisReply *rep = nkeys == 2 ? redisCommand(c, "EVAL %s 2 %s %s %s 100", script, k1, k2, cursor)
                                     : redisCommand(c, "EVAL %s 1 %s %s 100 %lld", script, k1, cursor, life);
        cr_assert(rep && rep->type == REDIS_REPLY_ARRAY, "sweep: %s", rep && rep->str ? rep->str : "no reply");
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
}

Test(retained_scripts, an_expired_value_leaves_as_a_tombstone)
{
    redisContext *c = redis_direct();
    snap_keys k;
    snap_keys_init(&k, "expire");
    char buf[256];
    uint8_t rec[256];
    long long now = redis_now_ms(c);
    size_t n = make_record(rec, "gone", "x", (uint64_t)(now - 1000));
    redisReply *rep = redisCommand(c, "EVAL %s 2 %s %s %s %d %lld %b", RK_RETAINED_CAS_LUA, k.retained, k.at, "gone", 0,
                                   20LL, rec, n);
    cr_assert_eq(rep->integer, 1);
    freeReplyObject(rep);
    n = make_record(rec, "kept", "y", (uint64_t)(now + 3600 * 1000));
    rep = redisCommand(c, "EVAL %s 2 %s %s %s %d %lld %b", RK_RETAINED_CAS_LUA, k.retained, k.at, "kept", 0, 21LL, rec,
                       n);
    freeReplyObject(rep);
    sweep_all(c, RK_SWEEP_EXPIRED_LUA, 2, k.retained, k.at, 0);
    cr_assert_str_eq(hget(c, k.retained, "gone", buf, sizeof(buf)), "");
    int p;
    long long off, at;
    cr_assert_eq(sscanf(hget(c, k.at, "gone", buf, sizeof(buf)), "%d:%lld:%lld", &p, &off, &at), 3, "%s", buf);
    cr_assert_eq(off, 20);
    cr_assert_neq(hget(c, k.retained, "kept", buf, sizeof(buf))[0], '\0');
    cr_assert_str_eq(hget(c, k.at, "kept", buf, sizeof(buf)), "0:21");
    /* The set before the expired one cannot come back. */
    cr_assert_eq(cas(c, &k, "gone", 0, 19, "older"), 0);
    redisFree(c);
}

Test(retained_scripts, tombstones_leave_after_their_lifetime_only)
{
    redisContext *c = redis_direct();
    snap_keys k;
    snap_keys_init(&k, "life");
    char buf[256];
    long long now = redis_now_ms(c);
    redisReply *rep = redisCommand(c, "HSET %s old 0:1:%lld young 0:2:%lld live 0:3", k.at, now - 60000, now);
    freeReplyObject(rep);
    sweep_all(c, RK_SWEEP_TOMBSTONES_LUA, 1, k.at, NULL, 30000);
    cr_assert_str_eq(hget(c, k.at, "old", buf, sizeof(buf)), "", "an old tombstone stayed");
    cr_assert_neq(hget(c, k.at, "young", buf, sizeof(buf))[0], '\0', "a young tombstone left");
    cr_assert_str_eq(hget(c, k.at, "live", buf, sizeof(buf)), "0:3", "a live position left");
    redisFree(c);
}

/* Issue 17 review, item 1: b's claim waited for a (alive, never released)
 * and gave up; c's claim must still wait for a and revoke it, not take the
 * abandoned claim of b for the previous owner (b has nothing to release). */
Test(backplane_contract_rk, an_abandoned_claim_does_not_hide_the_live_owner_before_it)
{
    member a, b, c;
    member_open(&a, "fwd-a");
    member_open(&b, "fwd-b");
    member_open(&c, "fwd-c");
    member_ready(&a);
    member_ready(&b);
    member_ready(&c);
    redisContext *rc = redis_direct();
    wait_numsub(&a, rc, a.node_id, 1);
    redisFree(rc);
    char id[128];
    unique_client(id, sizeof(id), "forward");
    sess_res r[6] = {0};
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    store(&a, &r[1], id, e1, "a-state", 0);
    claim(&b, &r[2], id, false); /* b waits for a, then gives up: no release, no store */
    cr_assert_str_eq(r[2].prev_owner, a.node_id);
    wait_revokes(&a, 1, id, r[2].epoch);
    claim(&c, &r[3], id, false);
    cr_assert_eq(r[3].st, BP_OK);
    cr_assert_str_eq(r[3].prev_owner, a.node_id, "the previous owner is the live one, not the abandoned claim");
    cr_assert(r[3].prev_alive);
    cr_assert_not(r[3].released);
    wait_revokes(&a, 2, id, r[3].epoch);
    cr_assert_eq(revokes(&b), 0, "b never had the session");
    /* a's last word, with its own epoch, hands over to c. */
    release(&a, &r[4], id, e1, "a-final");
    cr_assert_eq(r[4].st, BP_OK, "%s", bp_status_name(r[4].st));
    load(&c, &r[5], id, r[3].epoch, false);
    cr_assert(r[5].released);
    cr_assert_str_eq(r[5].state, "a-final");
    sess_assert_once(&a, r, 6);
    member_free(&c);
    member_free(&b);
    member_free(&a);
}

static void del_record(const char *id)
{
    redisContext *c = redis_direct();
    redisReply *rep = redisCommand(c, "DEL shoal:sess:{%s}", id);
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
    freeReplyObject(rep);
    redisFree(c);
}

/* Issue 17 review, item 3: Redis lost the record (restart without
 * persistence, FLUSHALL; here a DEL of that one key, as other tests share
 * the server). The owner's next store re-creates it, and a later claim
 * gets a higher epoch than the owner's, not 1 again. */
Test(backplane_contract_rk, a_record_redis_lost_is_recreated_and_epochs_do_not_restart)
{
    member a, b;
    member_open(&a, "lost-a");
    member_open(&b, "lost-b");
    member_ready(&a);
    member_ready(&b);
    char id[128];
    unique_client(id, sizeof(id), "lost");
    sess_res r[5] = {0};
    claim(&a, &r[0], id, false);
    uint64_t e1 = r[0].epoch;
    del_record(id);
    store(&a, &r[1], id, e1, "a-state", 0);
    cr_assert_eq(r[1].st, BP_OK, "a's store after the loss: %s", bp_status_name(r[1].st));
    claim(&b, &r[2], id, false);
    cr_assert_gt(r[2].epoch, e1);
    cr_assert_str_eq(r[2].prev_owner, a.node_id, "b must revoke a");
    cr_assert(r[2].prev_alive);
    del_record(id);
    claim(&b, &r[3], id, false);
    cr_assert_gt(r[3].epoch, r[2].epoch, "epoch %llu after %llu: restarted", (unsigned long long)r[3].epoch,
                 (unsigned long long)r[2].epoch);
    store(&a, &r[4], id, e1, "a-late", 0);
    cr_assert_eq(r[4].st, BP_ESTALE, "b claimed since: a is fenced out");
    sess_assert_once(&a, r, 5);
    member_free(&b);
    member_free(&a);
}

/* The drop by the unreleased previous owner leaves the record to expire
 * (60 s), not without TTL under an abandoned claim. */
Test(backplane_contract_rk, a_record_let_go_by_its_previous_owner_has_a_ttl)
{
    member a;
    member_open(&a, "drop-prev-ttl");
    member_ready(&a);
    redisContext *c = redis_direct();
    char id[128];
    unique_client(id, sizeof(id), "drop-prev-ttl");
    sess_res r[3] = {0};
    claim(&a, &r[0], id, false);
    claim(&a, &r[1], id, false);
    cr_assert_eq(pttl(c, id), -1, "a claimed record has no TTL");
    drop(&a, &r[2], id, r[0].epoch);
    cr_assert_eq(r[2].st, BP_OK);
    long long t = pttl(c, id);
    cr_assert(t > 0 && t <= 60000, "PTTL %lld after the previous owner's drop", t);
    sess_assert_once(&a, r, 3);
    redisFree(c);
    member_free(&a);
}

/* ---- replays: one waiting for its caller does not hold up another ---- */

typedef struct replay_seen {
    member *mb;
    const char *topic;
    uint64_t id;
    bool ask; /* asks for the next batch at once */
    int batches;
    int records;
    bool done;
    bp_status last;
    int64_t end[64]; /* the last call's */
    uint32_t n_end;
} replay_seen;

static void replay_seen_cb(bp_status st, const bp_replay_batch *b, void *arg)
{
    replay_seen *r = arg;
    if (b && b->n) {
        r->batches++;
        for (size_t i = 0; i < b->n; i++) {
            const bp_message *m = &b->msgs[i];
            r->records += m->topic_len == strlen(r->topic) && memcmp(m->topic, r->topic, m->topic_len) == 0;
        }
    }
    if (b && b->end && b->n_parts <= 64) {
        memcpy(r->end, b->end, b->n_parts * sizeof(int64_t));
        r->n_end = b->n_parts;
    }
    if (st != BP_OK || !b || b->done) {
        r->done = true;
        r->last = st;
        return;
    }
    if (r->ask) {
        bp_replay_next(r->mb->bp, r->id);
    }
}

static bool replay_has_batch(void *arg)
{
    return ((replay_seen *)arg)->batches > 0;
}

static bool replay_done(void *arg)
{
    return ((replay_seen *)arg)->done;
}

Test(backplane_contract_rk, a_replay_waiting_for_its_caller_does_not_hold_up_the_next)
{
    /* A session's replay waits for its client (bp_replay_next is not
     * called while the client has not taken the last batch). Before,
     * replays ran strictly one after another and B waited behind A for as
     * long as A's client took nothing. */
    member a;
    member_open(&a, "replay");
    member_ready(&a);
    uint32_t n_parts = bp_stream_partitions(a.bp);
    cr_assert_gt(n_parts, 0);
    int64_t from[64];
    cr_assert_leq(n_parts, 64);
    for (uint32_t p = 0; p < n_parts; p++) {
        from[p] = bp_stream_start(a.bp, p);
    }
    char topic[96];
    unique_topic(topic, sizeof(topic), "replay");
    calls c = {0};
    for (int i = 0; i < 20; i++) {
        publish(&a, &c, topic, i);
    }
    cr_assert(run_until(&a, all_done, &c), "publishes did not complete");
    replay_seen ra = {.mb = &a, .topic = topic}, rb = {.mb = &a, .topic = topic, .ask = true};
    ra.id = bp_replay_start(a.bp, 0, from, n_parts, 1, replay_seen_cb, &ra);
    cr_assert(run_until(&a, replay_has_batch, &ra), "A never got a batch");
    rb.id = bp_replay_start(a.bp, 0, from, n_parts, 1, replay_seen_cb, &rb);
    cr_assert(run_until(&a, replay_done, &rb), "B never finished behind A (A: %d batch(es), B: %d)", ra.batches,
              rb.batches);
    cr_assert_eq(rb.last, BP_OK);
    cr_assert_eq(rb.records, 20, "B read %d of the 20", rb.records);
    cr_assert_eq(ra.batches, 1, "A was not asked for more");
    cr_assert(!ra.done);
    /* A resumes where it stood: it reads the rest of its records once asked. */
    ra.ask = true;
    bp_replay_next(a.bp, ra.id);
    cr_assert(run_until(&a, replay_done, &ra), "A never finished once asked");
    cr_assert_eq(ra.last, BP_OK);
    cr_assert_eq(ra.records, 20, "A read %d of the 20 (none twice)", ra.records);
    member_free(&a);
}

Test(backplane_contract_rk, a_replay_asked_to_read_past_what_kafka_holds_ends_at_kafkas_end)
{
    /* bp_replay_start_least: a session's marks say how far a previous
     * owner read, which may be past this node's live position, never past
     * what Kafka holds. Marks that do point past it (stale) must not make
     * the replay wait for records that may never come, nor make its end
     * (below which the caller drops live records) cover future records. */
    member a;
    member_open(&a, "least");
    member_ready(&a);
    uint32_t n_parts = bp_stream_partitions(a.bp);
    cr_assert_gt(n_parts, 0);
    int64_t from[64], least[64];
    cr_assert_leq(n_parts, 64);
    for (uint32_t p = 0; p < n_parts; p++) {
        from[p] = bp_stream_start(a.bp, p);
        least[p] = from[p] + 1000;
    }
    char topic[96];
    unique_topic(topic, sizeof(topic), "least");
    calls c = {0};
    for (int i = 0; i < 20; i++) {
        publish(&a, &c, topic, i);
    }
    cr_assert(run_until(&a, all_done, &c), "publishes did not complete");
    replay_seen r = {.mb = &a, .topic = topic, .ask = true};
    r.id = bp_replay_start_least(a.bp, 0, from, least, n_parts, 1, replay_seen_cb, &r);
    cr_assert(run_until(&a, replay_done, &r), "the replay never ended");
    cr_assert_eq(r.last, BP_OK);
    cr_assert_eq(r.records, 20, "read %d of the 20", r.records);
    cr_assert_eq(r.n_end, n_parts);
    int64_t total = 0;
    for (uint32_t p = 0; p < n_parts; p++) {
        cr_assert_geq(r.end[p], from[p], "partition %u ends at %lld, before its start %lld", p, (long long)r.end[p],
                      (long long)from[p]);
        cr_assert_lt(r.end[p], least[p], "partition %u: the end stayed at the stale minimum", p);
        total += r.end[p] - from[p];
    }
    cr_assert_geq(total, 20, "the ends cover %lld records, fewer than the 20 written", (long long)total);
    member_free(&a);
}
