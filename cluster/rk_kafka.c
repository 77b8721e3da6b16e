/* SPDX-License-Identifier: Apache-2.0 */
/* Kafka: the idempotent acks=all producer, the all-partitions consumer,
 * topic creation, and the wake-up pipes that tie both into the backplane's
 * event loop. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/rk_impl.h"
#include "cluster/rk_record.h"
#include "common/alloc.h"
#include "common/log.h"

/* A QoS 1/2 publish waits at most this long for Kafka before the client is
 * told the message could not be stored. Longer than Kafka takes to get over
 * one dead broker of three: a SIGKILLed broker is fenced after
 * broker.session.timeout.ms (9 s), and only then does the ISR shrink and
 * an acks=all write complete. At 10 s the writes in flight at the crash
 * timed out (measured), were refused, and took the node out of readiness. */
#define MESSAGE_TIMEOUT_MS "20000"

/* This many failed delivery reports in a row (no leader, too few in-sync
 * replicas, ...) mark Kafka down: otherwise the node stays ready while every
 * QoS 1/2 publish waits MESSAGE_TIMEOUT_MS to be refused. */
#define KAFKA_MAX_DELIVERY_FAILURES 3

/* The probe calls Kafka down after this many failed checks in a row (one
 * slow answer on a busy machine is not an outage). */
#define PROBE_FAILURES_DOWN 2
#define PROBE_TIMEOUT_MS 2000

/* An idle node writes a canary to every partition when nothing has been
 * written for this long: a failed write is the only sign of some outages
 * (see probe_once), and an idle node makes none of its own. */
#define IDLE_CANARY_US 5000000u

/* The producer's own queue (records waiting for Kafka): librdkafka's default
 * of 1 GiB would let an outage grow the node by that much. Past it a QoS 0
 * record is dropped and counted, a QoS 1/2 one refused. */
#define QUEUE_MAX_MESSAGES "100000"
#define QUEUE_MAX_KBYTES "65536"

/* What librdkafka's producer takes by default (message.max.bytes). */
#define PRODUCER_MAX_BYTES 1000000u

/* Kafka's framing around one record when it travels alone: the record
 * batch header (61 bytes) and the record's own varints and attributes
 * (under 40). */
#define KAFKA_FRAMING 128u

/* A QoS 1/2 retained publish waits at most this long after its delivery
 * report for this node's consumer to apply it (read your writes); then it is
 * answered anyway: it is durable, and the index follows when the consumer
 * gets there. */
#define PARKED_MAX_US 5000000u

/* How long a starting node replays retained updates (from the snapshot's
 * watermarks to the end) before it goes on without waiting for the rest:
 * records still before the end are then applied as they come, not delivered. */
#define CATCH_UP_MAX_MS 60000

typedef struct rk_parked {
    struct rk_parked *next; /* parked: the list on rk */
    bp_done_cb cb;
    void *arg;
    int worker;
    bool retained; /* a retained publish: answered once consumed here */
    int partition;
    int64_t offset;
    uint64_t start_us;
    uint64_t parked_us;
} produce_ctx;

static void park(rk *r, produce_ctx *ctx)
{
    ctx->next = NULL;
    ctx->parked_us = rk_mono_us();
    if (r->parked_tail) {
        r->parked_tail->next = ctx;
    } else {
        r->parked_head = ctx;
    }
    r->parked_tail = ctx;
}

/* Answer parked publishes: those of partition (< 0: any) before offset, or
 * parked before `older_than_us` (0: none by age). Delivery reports come in
 * offset order per partition, so the list is in that order per partition. */
static void release_parked(rk *r, int partition, int64_t offset, uint64_t older_than_us)
{
    produce_ctx **pp = &r->parked_head, *prev = NULL;
    while (*pp) {
        produce_ctx *c = *pp;
        bool go = (partition < 0 || c->partition == partition) && c->offset < offset;
        if (!go && older_than_us && c->parked_us < older_than_us) {
            go = true;
        }
        if (!go) {
            prev = c;
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        if (r->parked_tail == c) {
            r->parked_tail = prev;
        }
        bp_defer_done_ref(r->bp, c->worker, c->cb, c->arg, BP_OK, c->partition, c->offset);
        sh_free(c, sizeof(*c));
    }
}

void rk_kafka_tick(rk *r)
{
    uint64_t now = rk_mono_us();
    if (r->parked_head && now > PARKED_MAX_US) {
        release_parked(r, -2, INT64_MIN, now - PARKED_MAX_US);
    }
    rk_hold_tick(r);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        sh_log(SH_ERROR, "event=kafka_config key=%s value=%s err=\"%s\"", k, v, err);
        return -1;
    }
    return 0;
}

static void dr_cb(rd_kafka_t *rkp, const rd_kafka_message_t *m, void *opaque)
{
    rk *r = opaque;
    produce_ctx *ctx = m->_private;
    if (m->err) {
        atomic_fetch_add(&r->produce_errors, 1);
        uint32_t n = atomic_fetch_add(&r->delivery_failures, 1) + 1;
        /* The first failure of a run is news; the rest are counted
         * (produce_errors) and end in kafka_down. */
        sh_log(n == 1 ? SH_WARN : SH_DEBUG, "event=kafka_produce_failed err=\"%s\"", rd_kafka_err2str(m->err));
        if (n >= KAFKA_MAX_DELIVERY_FAILURES && atomic_exchange(&r->kafka_up, false)) {
            sh_log(SH_WARN, "event=kafka_down reason=delivery-failures failures=%u err=\"%s\"", n,
                   rd_kafka_err2str(m->err));
            rk_update_ready(r);
        }
    } else {
        atomic_fetch_add(&r->produced, 1);
        atomic_store(&r->delivery_failures, 0);
    }
    if (!m->err && m->partition >= 0 && m->partition < r->partitions && m->offset >= 0 && r->own_high &&
        m->offset + 1 > r->own_high[m->partition]) {
        r->own_high[m->partition] = m->offset + 1;
    }
    if (ctx) {
        bp_hist_observe(&r->produce_latency, rk_mono_us() - ctx->start_us);
        int p = m->partition;
        if (!m->err && ctx->retained && p >= 0 && p < r->partitions && r->positions[p] <= m->offset) {
            /* The retained index changes when this node consumes the
             * record: a publisher told "stored" may subscribe here at once. */
            ctx->partition = p;
            ctx->offset = m->offset;
            park(r, ctx);
            return;
        }
        bp_defer_done_ref(r->bp, ctx->worker, ctx->cb, ctx->arg, m->err ? BP_EUNAVAILABLE : BP_OK, m->partition,
                          m->offset);
        sh_free(ctx, sizeof(*ctx));
    }
}

/* The brokers refused the TLS handshake or the SASL credentials: one ERROR
 * line per change (librdkafka retries every reconnect backoff), and the
 * node is not ready while it lasts. */
static void auth_failed(rk *r, rd_kafka_resp_err_t err, const char *reason)
{
    if (!atomic_exchange(&r->kafka_auth_failed, true)) {
        sh_log(SH_ERROR,
               "event=kafka_auth_failed protocol=%s err=%s reason=\"%s\" msg=\"check --kafka-tls-* and "
               "--kafka-sasl-*\"",
               r->ksec.protocol ? r->ksec.protocol : "plaintext", rd_kafka_err2name(err), reason);
    }
    if (atomic_exchange(&r->kafka_up, false)) {
        sh_log(SH_WARN, "event=kafka_down err=\"%s\"", reason);
        rk_update_ready(r);
    }
}

static void error_cb(rd_kafka_t *rkp, int err, const char *reason, void *opaque)
{
    rk *r = opaque;
    if (rk_ksec_is_auth_error(err, reason)) {
        auth_failed(r, err, reason);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL && rkp == r->producer) {
        char why[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rkp, why, sizeof(why));
        /* The idempotent producer refuses every record from now on: never
         * report ready while that is so. */
        atomic_store(&r->kafka_fatal, true);
        atomic_store(&r->kafka_up, false);
        sh_log(SH_ERROR, "event=kafka_producer_fatal err=\"%s\" reason=\"%s\" msg=\"not ready until restarted\"",
               rd_kafka_err2name(orig), why);
        rk_update_ready(r);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__FATAL) {
        if (atomic_exchange(&r->kafka_up, false)) {
            sh_log(SH_WARN, "event=kafka_down err=\"%s\"", reason);
            rk_update_ready(r);
        }
    } else {
        sh_log(SH_DEBUG, "event=kafka_error err=\"%s\"", reason);
    }
}

static void log_cb(const rd_kafka_t *rkp, int level, const char *fac, const char *buf)
{
    sh_log(level <= 3 ? SH_WARN : SH_DEBUG, "event=kafka_log facility=%s msg=\"%s\"", fac, buf);
}

static rd_kafka_conf_t *base_conf(rk *r)
{
    const bp_config *cfg = &r->bp->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rk_ksec_apply(&r->ksec, cfg, conf) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    set(conf, "bootstrap.servers", cfg->kafka_brokers);
    set(conf, "client.id", cfg->node_id);
    /* Small produce and fetch requests must not wait for Nagle and the
     * peer's delayed ACK (tens of milliseconds on every round trip). */
    set(conf, "socket.nagle.disable", "true");
    rd_kafka_conf_set_opaque(conf, r);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

static rd_kafka_t *make_producer(rk *r)
{
    const bp_config *cfg = &r->bp->cfg;
    rd_kafka_conf_t *conf = base_conf(r);
    if (!conf) {
        return NULL;
    }
    const char *acks = cfg->kafka_acks ? cfg->kafka_acks : "all";
    bool idempotent = strcmp(acks, "all") == 0 || strcmp(acks, "-1") == 0;
    /* Below a few ms librdkafka's broker thread spins in poll(0) until the
     * batch is due and Kafka gets one request per record or two: both cost
     * CPU the nodes and the broker share, and more broker garbage means more
     * GC pauses, which is where the cross-node latency tail comes from. */
    char linger[16], max_bytes[16];
    snprintf(linger, sizeof(linger), "%d", cfg->kafka_linger_ms);
    /* A batch never exceeds what the topic takes (its max.message.bytes
     * bounds whole batches), nor does a single record. */
    snprintf(max_bytes, sizeof(max_bytes), "%u", r->max_record ? r->max_record : PRODUCER_MAX_BYTES);
    if (set(conf, "acks", acks) || set(conf, "enable.idempotence", idempotent ? "true" : "false") ||
        set(conf, "linger.ms", linger) || set(conf, "message.timeout.ms", MESSAGE_TIMEOUT_MS) ||
        set(conf, "partitioner", "murmur2_random") || set(conf, "message.max.bytes", max_bytes) ||
        set(conf, "batch.size", max_bytes) || set(conf, "queue.buffering.max.messages", QUEUE_MAX_MESSAGES) ||
        set(conf, "queue.buffering.max.kbytes", QUEUE_MAX_KBYTES)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    char err[512];
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p) {
        sh_log(SH_ERROR, "event=kafka_producer_failed err=\"%s\"", err);
    }
    return p;
}

static rd_kafka_t *make_consumer(rk *r)
{
    rd_kafka_conf_t *conf = base_conf(r);
    if (!conf) {
        return NULL;
    }
    char group[300];
    snprintf(group, sizeof(group), "shoal-node-%s", r->bp->cfg.node_id);
    /* Every node reads every partition through assign(); the group id is
     * required by librdkafka but nothing is committed. Kafka answers a
     * fetch as soon as a record arrives, so the wait bounds only how often
     * an idle node asks. */
    if (set(conf, "group.id", group) || set(conf, "enable.auto.commit", "false") ||
        set(conf, "enable.auto.offset.store", "false") || set(conf, "enable.partition.eof", "false") ||
        /* A replay from a watermark that retention has passed starts at the
         * oldest record still there (docs/architecture.md). */
        set(conf, "auto.offset.reset", "earliest") || set(conf, "fetch.wait.max.ms", "100")) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    char err[512];
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!c) {
        sh_log(SH_ERROR, "event=kafka_consumer_failed err=\"%s\"", err);
        return NULL;
    }
    rd_kafka_poll_set_consumer(c);
    return c;
}

/* Wait up to ms for an admin result on q, watching the consumer's queue
 * meanwhile: a refused TLS handshake or SASL login reaches the consumer as
 * an error message, not through error_cb. NULL on time out or refusal. */
static rd_kafka_event_t *poll_admin(rk *r, rd_kafka_queue_t *q, int ms)
{
    for (int waited = 0; waited < ms; waited += 200) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 200);
        if (ev) {
            return ev;
        }
        rd_kafka_message_t *km;
        while ((km = rd_kafka_consumer_poll(r->consumer, 0)) != NULL) {
            if (rk_ksec_is_auth_error(km->err, rd_kafka_message_errstr(km))) {
                auth_failed(r, km->err, rd_kafka_message_errstr(km));
            }
            rd_kafka_message_destroy(km);
        }
        if (atomic_load(&r->kafka_auth_failed)) {
            return NULL;
        }
    }
    return NULL;
}

/* Create the topic if missing; accept an existing one with a warning when
 * its partition count differs. Blocks (startup only). */
static int ensure_topic(rk *r)
{
    const bp_config *cfg = &r->bp->cfg;
    int parts = cfg->kafka_partitions > 0 ? cfg->kafka_partitions : 12;
    int rf = cfg->kafka_replication > 0 ? cfg->kafka_replication : 3;
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(r->topic, parts, rf, err, sizeof(err));
    if (!nt) {
        sh_log(SH_ERROR, "event=kafka_topic_failed topic=%s err=\"%s\"", r->topic, err);
        return -1;
    }
    if (rf >= 3) {
        rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", "2");
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->consumer);
    int rc = -1;
    for (int attempt = 0; attempt < 60 && rc != 0; attempt++) {
        rd_kafka_CreateTopics(r->consumer, &nt, 1, NULL, q);
        rd_kafka_event_t *ev = poll_admin(r, q, 15000);
        if (atomic_load(&r->kafka_auth_failed)) {
            /* Wrong CA, certificate or password: retrying will not cure it. */
            if (ev) {
                rd_kafka_event_destroy(ev);
            }
            sh_log(SH_ERROR, "event=kafka_unreachable reason=auth-failed brokers=%s", cfg->kafka_brokers);
            break;
        }
        const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        size_t n = 0;
        const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
        rd_kafka_resp_err_t e = ev ? rd_kafka_event_error(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;
        if (!e && n == 1) {
            e = rd_kafka_topic_result_error(tr[0]);
        }
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            rc = 0;
        } else {
            sh_log(SH_WARN, "event=kafka_topic_retry topic=%s err=\"%s\"", r->topic, rd_kafka_err2str(e));
            usleep(500000);
        }
        if (ev) {
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

static int fetch_partitions(rk *r)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(r->consumer, r->topic, NULL);
    for (int attempt = 0; attempt < 60; attempt++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(r->consumer, 0, t, &md, 5000);
        int n = 0;
        if (!e && md->topic_cnt == 1 && !md->topics[0].err) {
            n = md->topics[0].partition_cnt;
        }
        if (md) {
            rd_kafka_metadata_destroy(md);
        }
        if (n > 0) {
            r->partitions = n;
            rd_kafka_topic_destroy(t);
            int want = r->bp->cfg.kafka_partitions;
            if (want > 0 && want != n) {
                sh_log(SH_WARN, "event=kafka_topic_partitions topic=%s have=%d configured=%d", r->topic, n, want);
            }
            return 0;
        }
        usleep(500000);
    }
    rd_kafka_topic_destroy(t);
    sh_log(SH_ERROR, "event=kafka_metadata_failed topic=%s", r->topic);
    return -1;
}

static void deliver_record(rk *r, const rd_kafka_message_t *km);

/* Consume what lies between the snapshot's watermarks and the end resolved
 * at start (retained updates only) before the node is ready, so that no
 * subscriber sees an index older than the snapshot plus the stream. */
static void catch_up(rk *r)
{
    uint64_t start = rk_mono_us();
    size_t records = 0;
    for (;;) {
        bool behind = false;
        for (int p = 0; p < r->partitions && !behind; p++) {
            behind = rk_retained_replaying(r, p, r->positions[p]);
        }
        if (!behind) {
            break;
        }
        if (rk_mono_us() - start > CATCH_UP_MAX_MS * 1000u) {
            sh_log(SH_WARN,
                   "event=retained_catch_up_slow records=%zu msg=\"going on; the rest is applied as it comes\"",
                   records);
            break;
        }
        rd_kafka_message_t *km = rd_kafka_consumer_poll(r->consumer, 200);
        if (!km) {
            continue;
        }
        if (!km->err && km->partition >= 0 && km->partition < r->partitions) {
            r->positions[km->partition] = km->offset + 1;
            deliver_record(r, km);
            records++;
        }
        rd_kafka_message_destroy(km);
    }
    rk_retained_caught_up(r);
    sh_log(SH_INFO, "event=retained_caught_up records=%zu ms=%llu", records,
           (unsigned long long)((rk_mono_us() - start) / 1000u));
}

int rk_kafka_assign(rk *r)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->partitions);
    for (int p = 0; p < r->partitions; p++) {
        /* A fresh node starts at the end: history is for sessions ([5/9]).
         * Timestamp -1 asks offsets_for_times for each partition's end. */
        rd_kafka_topic_partition_list_add(l, r->topic, p)->offset = -1;
        r->positions[p] = -1;
        r->start[p] = -1;
    }
    /* Resolve "the end" now, before the node is ready: a logical
     * OFFSET_END would be resolved later, skipping whatever other nodes
     * produce in between, after this node said it was ready. */
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* A topic created a moment ago may not have its leaders yet. */
    for (int attempt = 0; attempt < 100; attempt++) {
        for (int i = 0; i < l->cnt; i++) {
            l->elems[i].offset = -1;
            l->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        e = rd_kafka_offsets_for_times(r->consumer, l, 10000);
        bool all = !e;
        for (int i = 0; all && i < l->cnt; i++) {
            all = !l->elems[i].err && l->elems[i].offset >= 0;
        }
        if (all) {
            break;
        }
        usleep(200000);
    }
    for (int i = 0; i < l->cnt; i++) {
        if (e || l->elems[i].err || l->elems[i].offset < 0) {
            if (i == 0) {
                sh_log(SH_WARN, "event=kafka_end_offsets_unknown topic=%s err=\"%s\"", r->topic,
                       rd_kafka_err2str(e ? e : l->elems[i].err));
            }
            l->elems[i].offset = RD_KAFKA_OFFSET_END;
        } else {
            /* Messages from the end on (the live stream starts there for
             * sessions); retained updates from the snapshot's watermark when
             * that is older. */
            int p = l->elems[i].partition;
            r->start[p] = l->elems[i].offset;
            l->elems[i].offset = rk_retained_resume_at(r, p, l->elems[i].offset);
            r->positions[p] = l->elems[i].offset;
        }
    }
    e = rd_kafka_assign(r->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        sh_log(SH_ERROR, "event=kafka_assign_failed err=\"%s\"", rd_kafka_err2str(e));
        return -1;
    }
    catch_up(r);
    return 0;
}

/* Learn the topic's partition leaders on the producer before the node is
 * ready, so the first publishes do not wait for a metadata round trip. */
static void warm_producer(rk *r)
{
    r->prod_topic = rd_kafka_topic_new(r->producer, r->topic, NULL);
    const rd_kafka_metadata_t *md = NULL;
    if (r->prod_topic && rd_kafka_metadata(r->producer, 0, r->prod_topic, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
    }
}

static bool acks_all(const rk *r)
{
    const char *acks = r->bp->cfg.kafka_acks ? r->bp->cfg.kafka_acks : "all";
    return strcmp(acks, "all") == 0 || strcmp(acks, "-1") == 0;
}

/* The topic's max.message.bytes and min.insync.replicas (DescribeConfigs
 * on handle h). Blocks up to timeout_ms. */
static int describe_topic(rk *r, rd_kafka_t *h, int timeout_ms, long *max_message, long *min_isr, int64_t *retention_ms,
                          int64_t *segment_ms)
{
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, r->topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(h);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(h, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, NULL, 0);
    rd_kafka_DescribeConfigs(h, &res, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 500);
    const rd_kafka_DescribeConfigs_result_t *dr = ev ? rd_kafka_event_DescribeConfigs_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs = dr ? rd_kafka_DescribeConfigs_result_resources(dr, &n) : NULL;
    int rc = -1;
    if (ev && !rd_kafka_event_error(ev) && n == 1 && !rd_kafka_ConfigResource_error(rs[0])) {
        size_t cnt = 0;
        const rd_kafka_ConfigEntry_t **e = rd_kafka_ConfigResource_configs(rs[0], &cnt);
        for (size_t i = 0; i < cnt; i++) {
            const char *name = rd_kafka_ConfigEntry_name(e[i]), *v = rd_kafka_ConfigEntry_value(e[i]);
            if (v && strcmp(name, "max.message.bytes") == 0) {
                *max_message = atol(v);
            } else if (v && strcmp(name, "min.insync.replicas") == 0) {
                *min_isr = atol(v);
            } else if (v && retention_ms && strcmp(name, "retention.ms") == 0) {
                *retention_ms = atoll(v);
            } else if (v && segment_ms && strcmp(name, "segment.ms") == 0) {
                *segment_ms = atoll(v);
            }
        }
        rc = 0;
    }
    if (ev) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
    return rc;
}

/* The largest record the backbone takes: the topic's max.message.bytes and
 * the producer's message.max.bytes, whichever is smaller. */
static void read_topic_limits(rk *r)
{
    long max_message = 0, min_isr = 1;
    r->retention_ms = r->segment_ms = -1;
    /* A topic created a moment ago may not be described yet. */
    for (int attempt = 0; attempt < 20 && max_message <= 0; attempt++) {
        if (attempt) {
            usleep(250000);
        }
        describe_topic(r, r->consumer, 5000, &max_message, &min_isr, &r->retention_ms, &r->segment_ms);
    }
    if (max_message <= 0) {
        sh_log(SH_WARN, "event=kafka_topic_config_unknown topic=%s msg=\"assuming max.message.bytes=%u\"", r->topic,
               PRODUCER_MAX_BYTES);
        max_message = PRODUCER_MAX_BYTES;
    }
    r->max_record = max_message < (long)PRODUCER_MAX_BYTES ? (uint32_t)max_message : PRODUCER_MAX_BYTES;
    atomic_store(&r->min_isr, (int)(min_isr > 0 ? min_isr : 1));
}

uint32_t rk_kafka_max_publish(const rk *r, uint32_t max_topic, uint32_t max_client_id)
{
    if (r->max_record == 0) {
        return 0;
    }
    /* A PUBLISH of S bytes has at least 3 bytes besides its topic, properties
     * and payload; its record repeats the topic as the key and adds the
     * record header (origin node and the publisher's client id). */
    bp_message none = {0};
    int64_t header = (int64_t)rk_record_size(&none, r->bp->cfg.node_id);
    int64_t cap = (int64_t)r->max_record - KAFKA_FRAMING - header - max_client_id - max_topic + 3;
    return cap < 64 ? 64 : (uint32_t)cap;
}

int rk_kafka_start(rk *r)
{
    if (rk_ksec_load(&r->ksec, &r->bp->cfg) != 0) {
        return -1;
    }
    r->consumer = make_consumer(r);
    if (!r->consumer || ensure_topic(r) != 0) {
        return -1;
    }
    /* Before the producer: its batch and record limits follow the topic's. */
    read_topic_limits(r);
    r->producer = make_producer(r);
    if (!r->producer || fetch_partitions(r) != 0) {
        return -1;
    }
    r->positions = sh_calloc((size_t)r->partitions, sizeof(int64_t));
    r->start = sh_calloc((size_t)r->partitions, sizeof(int64_t));
    r->own_high = sh_calloc((size_t)r->partitions, sizeof(int64_t));
    rk_retained_init(r);
    warm_producer(r);
    atomic_store(&r->kafka_up, true);
    sh_log(SH_INFO, "event=kafka_ready brokers=%s topic=%s partitions=%d max_record=%u min_insync_replicas=%d",
           r->bp->cfg.kafka_brokers, r->topic, r->partitions, r->max_record, atomic_load(&r->min_isr));
    return 0;
}

static void drain_pipe(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void prod_cb(evutil_socket_t fd, short what, void *arg)
{
    rk *r = arg;
    drain_pipe(fd);
    while (rd_kafka_poll(r->producer, 0) > 0) {
    }
}

/* The live stream passed a record it does not hand over: sessions'
 * positions move past it all the same (node/mqtt/session_stream.c). */
static void passed(rk *r, const rd_kafka_message_t *km)
{
    const bp_hooks *h = &r->bp->hooks;
    if (h->remote_position) {
        h->remote_position(h->node, km->partition, km->offset + 1);
    }
}

static void deliver_record(rk *r, const rd_kafka_message_t *km)
{
    if (km->len == 0) {
        /* A probe's canary (send_canaries): no backplane record is empty. */
        passed(r, km);
        return;
    }
    bp_message m;
    const uint8_t *origin;
    size_t olen;
    rk_record_status st = rk_record_decode(km->payload, km->len, &m, &origin, &olen);
    if (st == RK_RECORD_NEWER) {
        atomic_fetch_add(&r->skipped_newer, 1);
        passed(r, km);
        return;
    }
    if (st != RK_RECORD_OK) {
        atomic_fetch_add(&r->bad_records, 1);
        sh_log(SH_WARN, "event=kafka_bad_record partition=%d offset=%lld", km->partition, (long long)km->offset);
        passed(r, km);
        return;
    }
    /* Expiry on this node's clock (rk_clock.h). A record of an older writer
     * (a wall-clock deadline) first says what it can of that writer's
     * clock, read now. */
    const char *self = r->bp->cfg.node_id;
    bool own = olen == strlen(self) && memcmp(origin, self, olen) == 0;
    int version = rk_record_version(km->payload);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(km, &tstype);
    /* Records from before this node started (the retained catch-up) would
     * only raise the minimum. */
    if (!own && version < RK_RECORD_VERSION_CLUSTER_CLOCK && tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME && ts > 0 &&
        !rk_retained_replaying(r, km->partition, km->offset)) {
        rk_clocks_observe(&r->clocks, origin, olen, ts, rk_unix_ms(), rk_mono_us() / 1000u);
    }
    rk_expiry_localize(r, &m, origin, olen, own, version);
    /* The index keeps the record's place too: a session tells by it the
     * retained copy it got at SUBSCRIBE from the live copy of the same
     * record (node/mqtt/route.c). */
    m.partition = km->partition;
    m.offset = km->offset;
    if (m.retain) {
        /* Every node applies retained updates in the stream's order, its
         * own included: the order Kafka gave them is the truth. */
        rk_retained_consumed(r, &m, km->payload, km->len, km->partition, km->offset);
    }
    bool replaying = rk_retained_replaying(r, km->partition, km->offset);
    if (m.retain_only || replaying) {
        if (!replaying) {
            passed(r, km);
        }
        return; /* not a message, or one from before this node started */
    }
    /* Our own publishes were delivered locally already. */
    if (own) {
        passed(r, km);
        return;
    }
    atomic_fetch_add(&r->consumed, 1);
    m.timestamp_ms = tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME && ts > 0 ? ts : 0;
    if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts > 0) {
        uint64_t now = rk_unix_ms();
        bp_hist_observe(&r->consume_delay, now > (uint64_t)ts ? (now - (uint64_t)ts) * 1000u : 0);
    }
    r->bp->hooks.remote_message(r->bp->hooks.node, &m, (unsigned)km->partition);
}

void rk_expiry_localize(rk *r, bp_message *m, const uint8_t *origin, size_t olen, bool own, int version)
{
    if (!m->expiry_at_unix_ms) {
        return;
    }
    if (version >= RK_RECORD_VERSION_CLUSTER_CLOCK) {
        uint64_t cluster, wall;
        rk_cluster_now(r, &cluster, &wall);
        m->expiry_at_unix_ms = rk_expiry_move(m->expiry_at_unix_ms, cluster, wall);
        return;
    }
    int64_t off;
    if (!own && rk_clocks_offset(&r->clocks, origin, olen, &off)) {
        m->expiry_at_unix_ms = rk_expiry_local(m->expiry_at_unix_ms, off);
    }
}

void rk_kafka_drain(rk *r)
{
    rd_kafka_message_t *km;
    /* Cross-node back-pressure (rk_hold.c): nothing more while the node is
     * behind; what stays in the queue is handed over once it catches up. */
    while (!rk_hold_check(r) && (km = rd_kafka_consumer_poll(r->consumer, 0)) != NULL) {
        if (km->err) {
            if (rk_ksec_is_auth_error(km->err, rd_kafka_message_errstr(km))) {
                auth_failed(r, km->err, rd_kafka_message_errstr(km));
            } else if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                sh_log(SH_DEBUG, "event=kafka_consume_error err=\"%s\"", rd_kafka_message_errstr(km));
            }
        } else {
            if (km->partition >= 0 && km->partition < r->partitions) {
                r->positions[km->partition] = km->offset + 1;
            }
            deliver_record(r, km);
            if (r->parked_head) {
                release_parked(r, km->partition, km->offset + 1, 0);
            }
        }
        rd_kafka_message_destroy(km);
    }
}

static void cons_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    drain_pipe(fd);
    rk_kafka_drain(arg);
}

static int make_pipe(int p[2])
{
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        sh_log(SH_ERROR, "event=pipe_failed err=\"%s\"", strerror(errno));
        return -1;
    }
    return 0;
}

/* librdkafka writes one byte when a queue turns non-empty; the callbacks
 * drain the pipe and then poll until the queue is empty. */
void rk_kafka_attach(rk *r)
{
    if (make_pipe(r->prod_pipe) || make_pipe(r->cons_pipe)) {
        return;
    }
    r->prod_ev = event_new(r->base, r->prod_pipe[0], EV_READ | EV_PERSIST, prod_cb, r);
    r->cons_ev = event_new(r->base, r->cons_pipe[0], EV_READ | EV_PERSIST, cons_cb, r);
    event_add(r->prod_ev, NULL);
    event_add(r->cons_ev, NULL);
    rd_kafka_queue_t *pq = rd_kafka_queue_get_main(r->producer);
    rd_kafka_queue_io_event_enable(pq, r->prod_pipe[1], "1", 1);
    rd_kafka_queue_destroy(pq);
    rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(r->consumer);
    rd_kafka_queue_io_event_enable(cq, r->cons_pipe[1], "1", 1);
    rd_kafka_queue_destroy(cq);
    /* Anything that arrived before the pipes existed. */
    prod_cb(r->prod_pipe[0], EV_READ, r);
    cons_cb(r->cons_pipe[0], EV_READ, r);
}

/* Can a record be written to the topic now? Every partition needs a
 * leader and, with acks=all, min.insync.replicas in sync. Blocks up to
 * PROBE_TIMEOUT_MS (the probe thread only). */
static bool topic_writable(rk *r, const char **why)
{
    /* Asked on the consumer's connections, not the producer's: a broker
     * handles one request per connection at a time, so a metadata request
     * queued behind an acks=all produce waits as long as that produce (~9 s
     * when a follower dies) and the probe would call a healthy topic down. */
    rd_kafka_topic_t *t = rd_kafka_topic_new(r->consumer, r->topic, NULL);
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(r->consumer, 0, t, &md, PROBE_TIMEOUT_MS);
    rd_kafka_topic_destroy(t);
    *why = NULL;
    if (e) {
        *why = rd_kafka_err2name(e);
    } else if (md->broker_cnt == 0 || md->topic_cnt != 1) {
        *why = "no-brokers";
    } else if (md->topics[0].err) {
        *why = rd_kafka_err2name(md->topics[0].err);
    }
    int need = acks_all(r) ? atomic_load(&r->min_isr) : 0;
    for (int p = 0; !*why && p < md->topics[0].partition_cnt; p++) {
        const rd_kafka_metadata_partition_t *mp = &md->topics[0].partitions[p];
        if (mp->leader < 0) {
            *why = "no-leader";
        } else if (mp->isr_cnt < (need < mp->replica_cnt ? need : mp->replica_cnt)) {
            /* Kafka caps min.insync.replicas at the replica count. */
            *why = "too-few-in-sync-replicas";
        }
    }
    if (md) {
        rd_kafka_metadata_destroy(md);
    }
    return *why == NULL;
}

/* What the probe thread remembers between checks. */
typedef struct probe_state {
    int fails;            /* metadata checks failed in a row */
    bool canary;          /* canaries sent since Kafka went down */
    uint64_t canary_base; /* r->produced when they were sent */
    uint64_t seen;        /* r->produced at the last check */
    uint64_t last_write;  /* when it last grew (rk_mono_us) */
} probe_state;

/* One empty record to every partition, through the producer the
 * publishes use; every node skips it (deliver_record). Its delivery report
 * counts like any other: a success bumps r->produced, a failure counts
 * towards KAFKA_MAX_DELIVERY_FAILURES. */
static void send_canaries(rk *r)
{
    for (int p = 0; p < r->partitions; p++) {
        rd_kafka_producev(r->producer, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_VALUE(NULL, 0),
                          RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
    }
}

static void mark_up(rk *r)
{
    /* A write went through: the brokers take this node's credentials again. */
    atomic_store(&r->kafka_auth_failed, false);
    if (!atomic_load(&r->kafka_fatal) && !atomic_exchange(&r->kafka_up, true)) {
        atomic_store(&r->delivery_failures, 0);
        sh_log(SH_INFO, "event=kafka_up topic=%s", r->topic);
        rk_update_ready(r);
    }
}

/* Metadata alone cannot say Kafka is back. When the controller quorum is
 * lost (two of three brokers dead) the survivor's metadata stays as it was,
 * leaders and ISR included, and looks writable while every acks=all write
 * times out: marking up on it made the node ready again a second after the
 * delivery failures took it down, and again after every 10 s of refusals.
 * So Kafka is up again only once a write has succeeded since it went down;
 * and an idle node, which makes no writes, writes canaries to learn what
 * its publishers would. */
static void probe_once(rk *r, probe_state *st)
{
    bool up = atomic_load(&r->kafka_up);
    if (!up) {
        /* Down: the topic's settings may be what changed (min.insync.replicas
         * raised, then lowered again). */
        long max_message = 0, min_isr = 1;
        if (describe_topic(r, r->consumer, PROBE_TIMEOUT_MS, &max_message, &min_isr, NULL, NULL) == 0 && min_isr > 0) {
            atomic_store(&r->min_isr, (int)min_isr);
        }
    }
    uint64_t now = rk_mono_us(), produced = atomic_load(&r->produced);
    if (produced != st->seen || st->last_write == 0) {
        st->seen = produced;
        st->last_write = now;
    }
    const char *why;
    if (!topic_writable(r, &why)) {
        st->canary = false;
        if (++st->fails >= PROBE_FAILURES_DOWN && atomic_exchange(&r->kafka_up, false)) {
            sh_log(SH_WARN, "event=kafka_down reason=%s topic=%s", why, r->topic);
            rk_update_ready(r);
        }
        return;
    }
    st->fails = 0;
    bool idle = rd_kafka_outq_len(r->producer) == 0;
    if (!up) {
        if (st->canary && produced > st->canary_base) {
            st->canary = false;
            mark_up(r);
        } else if (!st->canary || idle) {
            /* None sent yet, or the last ones failed (timed out). */
            st->canary = true;
            st->canary_base = produced;
            send_canaries(r);
        }
        return;
    }
    st->canary = false;
    if (idle && now - st->last_write >= IDLE_CANARY_US) {
        st->last_write = now;
        send_canaries(r);
    }
}

/* Once a second, on this thread (the checks block): mark Kafka down when
 * the topic is not writable (a stopped or hung broker answers nothing,
 * which no socket error reports for a long time) and up again when it is,
 * without waiting for traffic. */
void *rk_probe_main(void *arg)
{
    rk *r = arg;
    probe_state st = {0};
    while (!atomic_load(&r->stopping)) {
        if (!atomic_load(&r->kafka_fatal)) {
            probe_once(r, &st);
        }
        for (int i = 0; i < 10 && !atomic_load(&r->stopping); i++) {
            usleep(100000);
        }
    }
    return NULL;
}

/* QoS 0 that cannot go on (cb is NULL): counted by the node. */
static void drop_qos0(rk *r, int worker)
{
    const bp_hooks *h = &r->bp->hooks;
    if (h->qos0_dropped) {
        h->qos0_dropped(h->node, worker);
    }
}

/* One line when the producer's queue fills up and one when it takes
 * records again, not one per refused record. */
static void queue_state(rk *r, bool full)
{
    if (atomic_exchange(&r->queue_full, full) != full) {
        if (full) {
            sh_log(SH_WARN,
                   "event=kafka_queue_full max_messages=%s max_kbytes=%s msg=\"QoS 0 dropped, QoS 1/2 "
                   "refused until Kafka catches up\"",
                   QUEUE_MAX_MESSAGES, QUEUE_MAX_KBYTES);
        } else {
            sh_log(SH_INFO, "event=kafka_queue_ok");
        }
    }
}

void rk_kafka_publish(rk *r, int worker, const bp_message *m, bp_done_cb cb, void *arg)
{
    const char *origin = r->bp->cfg.node_id;
    if (!cb && (!atomic_load(&r->kafka_up) || atomic_load(&r->kafka_fatal))) {
        /* Kafka is down: a QoS 0 record would only wait in the producer's
         * queue to expire (the node's memory); the outage is already logged. */
        drop_qos0(r, worker);
        return;
    }
    size_t n = rk_record_size(m, origin);
    uint8_t *buf = sh_malloc(n);
    bp_message on_cluster_clock;
    if (m->expiry_at_unix_ms) {
        /* The record carries the deadline on the cluster clock (rk_record.h,
         * version 3): every reader moves it onto its own with its own
         * offset to Redis's clock, whatever the record's way took. */
        uint64_t cluster, wall;
        rk_cluster_now(r, &cluster, &wall);
        on_cluster_clock = *m;
        on_cluster_clock.expiry_at_unix_ms = rk_expiry_move(m->expiry_at_unix_ms, wall, cluster);
        m = &on_cluster_clock;
    }
    rk_record_encode(m, origin, buf);
    produce_ctx *ctx = NULL;
    if (cb) {
        ctx = sh_malloc(sizeof(*ctx));
        ctx->cb = cb;
        ctx->arg = arg;
        ctx->worker = worker;
        ctx->retained = m->retain;
        ctx->start_us = rk_mono_us();
    }
    /* Keyed by MQTT topic: one partition per topic keeps per-topic order. */
    rd_kafka_resp_err_t e = rd_kafka_producev(
        r->producer, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_KEY(m->topic, m->topic_len), RD_KAFKA_V_VALUE(buf, n),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(m->timestamp_ms > 0 ? m->timestamp_ms : 0),
        RD_KAFKA_V_OPAQUE(ctx), RD_KAFKA_V_END);
    sh_free(buf, n);
    if (!e) {
        if (atomic_load_explicit(&r->queue_full, memory_order_relaxed)) {
            queue_state(r, false);
        }
        return;
    }
    atomic_fetch_add(&r->produce_errors, 1);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        queue_state(r, true);
    } else {
        sh_log(SH_WARN, "event=kafka_produce_refused err=\"%s\"", rd_kafka_err2str(e));
    }
    if (ctx) {
        sh_free(ctx, sizeof(*ctx));
        rk_complete(r, worker, cb, arg, BP_EUNAVAILABLE);
    } else {
        drop_qos0(r, worker);
    }
}

void rk_kafka_stop(rk *r)
{
    if (r->producer) {
        rd_kafka_flush(r->producer, 5000);
        /* Reports for what could not be flushed still complete their callers. */
        rd_kafka_poll(r->producer, 0);
    }
    /* Durable, only not applied here yet: every caller hears once. */
    release_parked(r, -1, INT64_MAX, 0);
    rk_hold_stop(r);
    if (r->consumer) {
        rd_kafka_consumer_close(r->consumer);
        rd_kafka_destroy(r->consumer);
        r->consumer = NULL;
    }
    if (r->prod_topic) {
        rd_kafka_topic_destroy(r->prod_topic);
        r->prod_topic = NULL;
    }
    if (r->producer) {
        rd_kafka_destroy(r->producer);
        r->producer = NULL;
    }
    if (r->prod_ev) {
        event_free(r->prod_ev);
        event_free(r->cons_ev);
        r->prod_ev = r->cons_ev = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (r->prod_pipe[i] >= 0) {
            close(r->prod_pipe[i]);
        }
        if (r->cons_pipe[i] >= 0) {
            close(r->cons_pipe[i]);
        }
        r->prod_pipe[i] = r->cons_pipe[i] = -1;
    }
}
