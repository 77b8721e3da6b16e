/* SPDX-License-Identifier: Apache-2.0 */
/* Smoke test of the backbone services Shoal's redis_kafka backplane needs:
 * a real Kafka cluster and a real Redis, driven with the same client
 * libraries (librdkafka, hiredis) and settings the backplane uses.
 *
 *   backbone_smoke KAFKA_BOOTSTRAP REDIS_HOST:PORT
 *
 * Kafka: create a uniquely named topic (1 partition, RF 1) with the admin
 * API, produce one record with an idempotent acks=all producer and wait for
 * its delivery report, read it back with an assign()ed consumer from the
 * beginning, compare the bytes, delete the topic. Redis: SET, GET, compare,
 * DEL. Exit 0 only if every step passed.
 *
 * A freshly started cluster answers "coordinator load in progress", "not
 * coordinator" or "coordinator not available" for a moment: those are
 * retried until a deadline, never reported as failures. */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#define STEP_TIMEOUT_MS 60000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void step(const char *fmt, const char *arg)
{
    printf("backbone_smoke: ");
    printf(fmt, arg);
    printf("\n");
    fflush(stdout);
}

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "backbone_smoke: FAIL: %s: %s\n", what, why);
}

/* Errors a cluster that is still settling returns; worth another try. */
static bool transient(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR: /* brokers not all registered yet */
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        return true;
    default:
        return false;
    }
}

static rd_kafka_conf_t *base_conf(const char *bootstrap)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "shoal-backbone-smoke", err, sizeof err) != RD_KAFKA_CONF_OK) {
        fail("kafka config", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static bool conf_set(rd_kafka_conf_t *conf, const char *key, const char *val)
{
    char err[512];
    if (rd_kafka_conf_set(conf, key, val, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fail(key, err);
        return false;
    }
    return true;
}

/* Create or delete TOPIC through the admin API; retries transient errors.
 * For create, TOPIC_ALREADY_EXISTS after a retry means an earlier attempt
 * got through. */
static bool admin_topic(rd_kafka_t *rk, const char *topic, bool create)
{
    int64_t deadline = now_ms() + STEP_TIMEOUT_MS;
    bool retried = false;
    char errstr[512];

    for (;;) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, create ? RD_KAFKA_ADMIN_OP_CREATETOPICS
                                                                             : RD_KAFKA_ADMIN_OP_DELETETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(opts, 10000, errstr, sizeof errstr);
        rd_kafka_AdminOptions_set_operation_timeout(opts, 10000, errstr, sizeof errstr);

        rd_kafka_NewTopic_t *nt = NULL;
        rd_kafka_DeleteTopic_t *dt = NULL;
        if (create) {
            nt = rd_kafka_NewTopic_new(topic, 1, 1, errstr, sizeof errstr);
            if (!nt) {
                fail("NewTopic", errstr);
                rd_kafka_AdminOptions_destroy(opts);
                rd_kafka_queue_destroy(q);
                return false;
            }
            rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
        } else {
            dt = rd_kafka_DeleteTopic_new(topic);
            rd_kafka_DeleteTopics(rk, &dt, 1, opts, q);
        }

        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        char why[512] = "no admin result within 30 s";
        if (ev) {
            err = rd_kafka_event_error(ev);
            if (err) {
                snprintf(why, sizeof why, "%s", rd_kafka_event_error_string(ev));
            } else {
                const rd_kafka_topic_result_t **res;
                size_t n = 0;
                if (create)
                    res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
                else
                    res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
                err = n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
                const char *s = n == 1 ? rd_kafka_topic_result_error_string(res[0]) : NULL;
                snprintf(why, sizeof why, "%s", s ? s : rd_kafka_err2str(err));
            }
            rd_kafka_event_destroy(ev);
        }
        if (nt)
            rd_kafka_NewTopic_destroy(nt);
        if (dt)
            rd_kafka_DeleteTopic_destroy(dt);
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);

        if (!err)
            return true;
        if (create && retried && err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            return true;
        if (!transient(err) || now_ms() >= deadline) {
            fail(create ? "create topic" : "delete topic", why);
            return false;
        }
        fprintf(stderr, "backbone_smoke: %s: %s (%s), retrying\n", create ? "create topic" : "delete topic",
                rd_kafka_err2name(err), why);
        retried = true;
        sleep_ms(500);
    }
}

struct delivery {
    bool done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct delivery *d = m->_private;
    d->done = true;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    /* librdkafka retries these itself; show them so a hang is explainable. */
    fprintf(stderr, "backbone_smoke: kafka: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static bool kafka_roundtrip(const char *bootstrap)
{
    bool ok = false;
    char errstr[512];
    char topic[128];
    snprintf(topic, sizeof topic, "shoal-smoke-%ld-%lld", (long)getpid(), (long long)time(NULL));

    /* Payload with a NUL and high bytes, so "bytes match" means bytes. */
    unsigned char payload[64];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (unsigned char)(i * 37u + 11u);
    payload[7] = 0;
    static const char key[] = "smoke/key";

    /* Producer (also used for admin requests). */
    rd_kafka_conf_t *pconf = base_conf(bootstrap);
    if (!pconf)
        return false;
    if (!conf_set(pconf, "enable.idempotence", "true") || !conf_set(pconf, "acks", "all") ||
        !conf_set(pconf, "message.timeout.ms", "60000")) {
        rd_kafka_conf_destroy(pconf);
        return false;
    }
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_conf_set_error_cb(pconf, on_error);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof errstr);
    if (!prod) {
        fail("create producer", errstr);
        rd_kafka_conf_destroy(pconf);
        return false;
    }
    rd_kafka_t *cons = NULL;
    bool created = false;

    step("creating topic %s (1 partition, RF 1)", topic);
    if (!admin_topic(prod, topic, true))
        goto out;
    created = true;

    step("producing one record (idempotent, acks=all) to %s", topic);
    struct delivery d = {0};
    int64_t deadline = now_ms() + STEP_TIMEOUT_MS;
    rd_kafka_resp_err_t perr;
    while ((perr = rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                     RD_KAFKA_V_KEY(key, sizeof key - 1), RD_KAFKA_V_VALUE(payload, sizeof payload),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&d),
                                     RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL &&
           now_ms() < deadline)
        rd_kafka_poll(prod, 100);
    if (perr) {
        fail("produce", rd_kafka_err2str(perr));
        goto out;
    }
    while (!d.done && now_ms() < deadline)
        rd_kafka_poll(prod, 100);
    if (!d.done) {
        fail("produce", "no delivery report before the deadline");
        goto out;
    }
    if (d.err) {
        fail("delivery report", rd_kafka_err2str(d.err));
        goto out;
    }
    printf("backbone_smoke: delivered to partition %" PRId32 " offset %" PRId64 "\n", d.partition, d.offset);

    /* Consumer: assign partition 0 from the beginning; no group membership. */
    rd_kafka_conf_t *cconf = base_conf(bootstrap);
    if (!cconf)
        goto out;
    if (!conf_set(cconf, "group.id", "shoal-backbone-smoke") || !conf_set(cconf, "enable.auto.commit", "false") ||
        !conf_set(cconf, "auto.offset.reset", "earliest")) {
        rd_kafka_conf_destroy(cconf);
        goto out;
    }
    rd_kafka_conf_set_error_cb(cconf, on_error);
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, errstr, sizeof errstr);
    if (!cons) {
        fail("create consumer", errstr);
        rd_kafka_conf_destroy(cconf);
        goto out;
    }
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t aerr = rd_kafka_assign(cons, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (aerr) {
        fail("assign", rd_kafka_err2str(aerr));
        goto out;
    }

    step("consuming %s [0] from the beginning", topic);
    deadline = now_ms() + STEP_TIMEOUT_MS;
    while (now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 500);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "backbone_smoke: consume: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        bool same = m->len == sizeof payload && memcmp(m->payload, payload, sizeof payload) == 0 &&
                    m->key_len == sizeof key - 1 && memcmp(m->key, key, sizeof key - 1) == 0;
        int64_t off = m->offset;
        size_t len = m->len;
        rd_kafka_message_destroy(m);
        if (!same) {
            char why[128];
            snprintf(why, sizeof why, "record at offset %" PRId64 " (%zu bytes) differs from what was produced", off,
                     len);
            fail("consume", why);
            goto out;
        }
        printf("backbone_smoke: read back offset %" PRId64 ", %zu bytes match\n", off, len);
        ok = true;
        break;
    }
    if (!ok)
        fail("consume", "record not read back before the deadline");

out:
    if (cons) {
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
    }
    if (created) {
        step("deleting topic %s", topic);
        if (!admin_topic(prod, topic, false))
            ok = false;
    }
    rd_kafka_flush(prod, 10000);
    rd_kafka_destroy(prod);
    return ok;
}

/* Accepts HOST:PORT or redis://HOST:PORT[/...]. */
static bool parse_hostport(const char *s, char *host, size_t hostsz, int *port)
{
    if (strncmp(s, "redis://", 8) == 0)
        s += 8;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= hostsz)
        return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end && *end != '/') || p < 1 || p > 65535)
        return false;
    *port = (int)p;
    return true;
}

static bool redis_roundtrip(const char *hostport)
{
    char host[256];
    int port;
    if (!parse_hostport(hostport, host, sizeof host, &port)) {
        fail("redis address", "expected HOST:PORT or redis://HOST:PORT");
        return false;
    }
    char key[96];
    snprintf(key, sizeof key, "shoal:smoke:%ld:%lld", (long)getpid(), (long long)time(NULL));
    static const char val[] = "shoal\0smoke\xff value";

    printf("backbone_smoke: connecting to redis %s:%d\n", host, port);
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        fail("redis connect", c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return false;
    }
    redisSetTimeout(c, tv);

    bool ok = false;
    step("SET/GET %s", key);
    redisReply *r = redisCommand(c, "SET %s %b", key, val, sizeof val - 1);
    if (!r || r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0) {
        fail("redis SET", r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : c->errstr);
        goto out;
    }
    freeReplyObject(r);
    r = redisCommand(c, "GET %s", key);
    if (!r || r->type != REDIS_REPLY_STRING) {
        fail("redis GET", r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : c->errstr);
        goto out;
    }
    if (r->len != sizeof val - 1 || memcmp(r->str, val, sizeof val - 1) != 0) {
        fail("redis GET", "value differs from what was SET");
        goto out;
    }
    printf("backbone_smoke: GET returned the %zu bytes that were SET\n", (size_t)r->len);
    freeReplyObject(r);
    r = redisCommand(c, "DEL %s", key);
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        fail("redis DEL", r ? "unexpected reply" : c->errstr);
        goto out;
    }
    ok = true;
out:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr,
                "usage: %s KAFKA_BOOTSTRAP REDIS_HOST:PORT\n"
                "  e.g. %s 127.0.0.1:9092 127.0.0.1:6379\n"
                "Round-trips one Kafka record (create topic, idempotent acks=all produce,\n"
                "consume, delete topic) and one Redis key; exits 0 only if both pass.\n",
                argv[0], argv[0]);
        return argc == 2 ? 0 : 2;
    }
    printf("backbone_smoke: librdkafka %s, hiredis %d.%d.%d\n", rd_kafka_version_str(), HIREDIS_MAJOR, HIREDIS_MINOR,
           HIREDIS_PATCH);
    int64_t t0 = now_ms();
    bool kafka_ok = kafka_roundtrip(argv[1]);
    printf("backbone_smoke: kafka %s (%lld ms)\n", kafka_ok ? "PASS" : "FAIL", (long long)(now_ms() - t0));
    int64_t t1 = now_ms();
    bool redis_ok = redis_roundtrip(argv[2]);
    printf("backbone_smoke: redis %s (%lld ms)\n", redis_ok ? "PASS" : "FAIL", (long long)(now_ms() - t1));
    if (kafka_ok && redis_ok) {
        printf("backbone_smoke: PASS\n");
        return 0;
    }
    printf("backbone_smoke: FAIL\n");
    return 1;
}
