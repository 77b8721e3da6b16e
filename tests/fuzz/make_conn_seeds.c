/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_conn_seeds DIR: recorded client sessions in fuzz_conn's input
 * format (see fuzz_conn.c), one file each: publish/subscribe at every QoS
 * with the acks a client sends, 3.1, 3.1.1 and 5, takeover on the same and
 * on the other worker, wills (delayed too), retained messages, topic
 * aliases both ways, shared subscriptions, session resumption, AUTH, a slow
 * reader, racing CONNECTs, and the usual garbage. Packets come from the
 * proto/ encoders, so the seeds are well formed where they mean to be. */
#include <stdio.h>
#include <string.h>

#include "proto/packet.h"

/* fuzz_conn's operations (keep in step with enum op there). */
enum { OP_RUN = 0, OP_CLIENT_CLOSE, OP_STOP_READING, OP_RESUME_READING, OP_TIME_PASSES, OP_RECONNECT };

static uint8_t script[1 << 16];
static size_t slen;
static uint8_t version[3]; /* per stream, for the encoders */

static void start(uint8_t knobs)
{
    slen = 0;
    script[slen++] = knobs;
    memset(version, 4, sizeof(version));
}

static void put(const uint8_t *p, size_t n)
{
    if (slen + n <= sizeof(script)) {
        memcpy(script + slen, p, n);
        slen += n;
    }
}

/* Bytes for stream s; `hold` leaves them unprocessed until the next run. */
static void chunk(int s, const uint8_t *p, size_t n, int hold)
{
    uint8_t h = (uint8_t)s | (hold ? 0x40 : 0) | (n > 255 ? 0x80 : 0);
    put(&h, 1);
    if (n > 255) {
        uint8_t l[2] = {(uint8_t)(n >> 8), (uint8_t)n};
        put(l, 2);
    } else {
        uint8_t l = (uint8_t)n;
        put(&l, 1);
    }
    put(p, n);
}

static void op(int o, int s)
{
    uint8_t h = (uint8_t)(3 | o << 2 | s << 5);
    put(&h, 1);
}

static int save(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/conn_%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        return -1;
    }
    size_t n = fwrite(script, 1, slen, fp);
    return fclose(fp) == 0 && n == slen ? 0 : -1;
}

static mqtt_bytes str(const char *s)
{
    return (mqtt_bytes){(const uint8_t *)s, (uint32_t)strlen(s)};
}

typedef struct will {
    const char *topic;
    const char *payload;
    uint8_t qos;
    bool retain;
    uint32_t delay; /* v5 Will Delay Interval, 0 = none */
} will;

typedef struct copts {
    bool keep_session; /* clean session / clean start 0 */
    uint16_t keepalive;
    uint32_t expiry;      /* v5 Session Expiry Interval */
    uint16_t alias_max;   /* v5 Topic Alias Maximum */
    uint16_t receive_max; /* v5 Receive Maximum */
    const char *auth_method;
    const char *username;
    const will *w;
} copts;

static void connect(int s, uint8_t ver, const char *id, const copts *o, int hold)
{
    static const copts none;
    if (!o) {
        o = &none;
    }
    mqtt_connect c;
    memset(&c, 0, sizeof(c));
    c.version = ver;
    c.clean_start = !o->keep_session;
    c.keepalive = o->keepalive;
    c.client_id = str(id);
    if (ver == MQTT_V5) {
        if (o->expiry) {
            c.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
            c.props.session_expiry = o->expiry;
        }
        if (o->alias_max) {
            c.props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX);
            c.props.topic_alias_max = o->alias_max;
        }
        if (o->receive_max) {
            c.props.present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX);
            c.props.receive_max = o->receive_max;
        }
        if (o->auth_method) {
            c.props.present |= MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
            c.props.auth_method = str(o->auth_method);
        }
    }
    if (o->w) {
        c.has_will = true;
        c.will_topic = str(o->w->topic);
        c.will_payload = str(o->w->payload);
        c.will_qos = o->w->qos;
        c.will_retain = o->w->retain;
        if (ver == MQTT_V5 && o->w->delay) {
            c.will_props.present |= MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY);
            c.will_props.will_delay = o->w->delay;
        }
    }
    if (o->username) {
        c.has_username = true;
        c.username = str(o->username);
        c.has_password = true;
        c.password = str("secret");
    }
    uint8_t buf[1024];
    size_t n = mqtt_encode_connect(&c, buf);
    version[s] = ver;
    chunk(s, buf, n, hold);
}

/* alias: v5 Topic Alias (0 = none); topic may then be "" to use it. */
static void publish(int s, const char *topic, const char *payload, uint8_t qos, uint16_t pid, bool retain,
                    uint16_t alias, int hold)
{
    mqtt_publish p;
    memset(&p, 0, sizeof(p));
    p.topic = str(topic);
    p.payload = str(payload);
    p.qos = qos;
    p.packet_id = qos ? pid : 0;
    p.retain = retain;
    if (alias && version[s] == MQTT_V5) {
        p.props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
        p.props.topic_alias = alias;
    }
    static uint8_t buf[8192];
    if (mqtt_size_publish(&p, version[s]) > sizeof(buf)) {
        return;
    }
    size_t n = mqtt_encode_publish(&p, version[s], buf);
    chunk(s, buf, n, hold);
}

static void subscribe(int s, uint16_t pid, const char *filter, uint8_t qos, uint32_t sub_id)
{
    mqtt_sub e;
    memset(&e, 0, sizeof(e));
    e.filter = str(filter);
    e.qos = qos;
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    if (sub_id && version[s] == MQTT_V5) {
        pr.present |= MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
        pr.sub_id = sub_id;
    }
    uint8_t buf[1024];
    size_t n = mqtt_encode_subscribe(pid, &pr, &e, 1, version[s], buf);
    chunk(s, buf, n, 0);
}

static void unsubscribe(int s, uint16_t pid, const char *filter)
{
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    mqtt_bytes f = str(filter);
    uint8_t buf[1024];
    size_t n = mqtt_encode_unsubscribe(pid, &pr, &f, 1, version[s], buf);
    chunk(s, buf, n, 0);
}

static void ack(int s, uint8_t type, uint16_t pid)
{
    mqtt_ack a;
    memset(&a, 0, sizeof(a));
    a.type = type;
    a.packet_id = pid;
    uint8_t buf[64];
    size_t n = mqtt_encode_ack(&a, version[s], buf);
    chunk(s, buf, n, 0);
}

static void ping(int s)
{
    uint8_t buf[2];
    chunk(s, buf, mqtt_encode_ping(MQTT_PINGREQ, buf), 0);
}

/* v5: rc and an optional new Session Expiry Interval (UINT32_MAX: none). */
static void disconnect(int s, uint8_t rc, uint32_t expiry)
{
    mqtt_reason r;
    memset(&r, 0, sizeof(r));
    r.rc = rc;
    if (expiry != UINT32_MAX) {
        r.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
        r.props.session_expiry = expiry;
    }
    uint8_t buf[64];
    size_t n = mqtt_encode_disconnect(&r, version[s], buf);
    chunk(s, buf, n, 0);
}

static void auth(int s, const char *method)
{
    mqtt_reason r;
    memset(&r, 0, sizeof(r));
    r.rc = 0x18; /* continue authentication */
    r.props.present |= MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
    r.props.auth_method = str(method);
    uint8_t buf[128];
    chunk(s, buf, mqtt_encode_auth(&r, buf), 0);
}

static void raw(int s, const char *bytes, size_t n)
{
    chunk(s, (const uint8_t *)bytes, n, 0);
}

/* Subscriber on 0, publisher on 1, every QoS and the subscriber's acks
 * (the broker numbers its deliveries from 1). */
static void pubsub(uint8_t ver)
{
    connect(0, ver, "sub", NULL, 0);
    subscribe(0, 1, "t/#", 2, 7);
    connect(1, ver, "pub", NULL, 0);
    publish(1, "t/0", "qos0", 0, 0, false, 0, 0);
    publish(1, "t/1", "qos1", 1, 1, false, 0, 0);
    publish(1, "t/2", "qos2", 2, 2, false, 0, 0);
    ack(1, MQTT_PUBREL, 2);
    ack(0, MQTT_PUBACK, 1);
    ack(0, MQTT_PUBREC, 2);
    ack(0, MQTT_PUBCOMP, 2);
    unsubscribe(0, 3, "t/#");
    publish(1, "t/3", "after", 1, 3, false, 0, 0);
    ping(0);
    ping(1);
    disconnect(0, 0, UINT32_MAX);
    disconnect(1, 0, UINT32_MAX);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rc = 0;

    start(0);
    pubsub(MQTT_V311);
    rc |= save(dir, "pubsub_v311");
    start(0);
    pubsub(MQTT_V5);
    rc |= save(dir, "pubsub_v5");
    start(0);
    pubsub(MQTT_V31);
    rc |= save(dir, "pubsub_v31");
    start(0x04); /* small windows and queues */
    pubsub(MQTT_V5);
    for (int i = 0; i < 8; i++) {
        publish(1, "t/q", "more", 1, (uint16_t)(10 + i), false, 0, 0);
    }
    rc |= save(dir, "pubsub_small_limits");

    /* Takeover: the same client id again, on this worker and the other. */
    start(0);
    {
        copts keep = {.keep_session = true, .expiry = 300};
        connect(0, MQTT_V5, "same", &keep, 0);
        subscribe(0, 1, "a/+", 1, 0);
        connect(1, MQTT_V5, "pub", NULL, 0);
        publish(1, "a/b", "x", 1, 1, false, 0, 0);
        connect(2, MQTT_V5, "same", &keep, 0); /* stream 2 starts on worker 0 */
        ack(2, MQTT_PUBACK, 1);
        op(OP_RECONNECT, 0); /* now on worker 1 */
        connect(0, MQTT_V5, "same", &keep, 0);
        publish(1, "a/c", "y", 1, 2, false, 0, 0);
        ping(2);
    }
    rc |= save(dir, "takeover_v5");
    start(0);
    connect(0, MQTT_V311, "same", &(copts){.keep_session = true}, 0);
    subscribe(0, 1, "a/#", 2, 0);
    connect(1, MQTT_V311, "same", &(copts){.keep_session = true}, 0);
    connect(2, MQTT_V311, "same", &(copts){.keep_session = false}, 0);
    rc |= save(dir, "takeover_v311");

    /* Two CONNECTs for one id in the same loop turn. */
    start(0);
    connect(0, MQTT_V5, "race", &(copts){.keep_session = true, .expiry = 60}, 0);
    connect(1, MQTT_V5, "race", &(copts){.keep_session = true, .expiry = 60}, 1);
    connect(2, MQTT_V5, "race", NULL, 1);
    op(OP_RUN, 0);
    rc |= save(dir, "takeover_race");

    /* Two claims on two workers both before the owner hears of either. */
    start(0);
    connect(1, MQTT_V5, "race2", NULL, 0); /* owned by worker 1 */
    op(OP_RECONNECT, 2);                   /* stream 2: worker 0 ... */
    op(OP_RECONNECT, 2);                   /* ... then worker 1 */
    connect(0, MQTT_V5, "race2", NULL, 1);
    connect(2, MQTT_V5, "race2", NULL, 1);
    op(OP_RUN, 0);
    rc |= save(dir, "takeover_race_workers");

    /* Wills: on a dropped connection, delayed, and not after DISCONNECT. */
    start(0);
    {
        will w1 = {"will/a", "gone", 1, false, 0};
        will w2 = {"will/b", "later", 2, true, 30};
        connect(2, MQTT_V5, "watch", NULL, 0);
        subscribe(2, 1, "will/#", 2, 0);
        connect(0, MQTT_V311, "w1", &(copts){.w = &w1}, 0);
        connect(1, MQTT_V5, "w2", &(copts){.w = &w2, .keep_session = true, .expiry = 60}, 0);
        op(OP_CLIENT_CLOSE, 0);
        op(OP_CLIENT_CLOSE, 1);
        connect(1, MQTT_V5, "w2", &(copts){.keep_session = true, .expiry = 60}, 0);
        disconnect(1, 0x04, UINT32_MAX); /* with will */
    }
    rc |= save(dir, "will");

    /* Retained: set, seen by a later subscriber, cleared. */
    start(0);
    connect(0, MQTT_V5, "r", NULL, 0);
    publish(0, "r/1", "kept", 1, 1, true, 0, 0);
    publish(0, "r/2", "kept2", 0, 0, true, 0, 0);
    connect(1, MQTT_V311, "s", NULL, 0);
    subscribe(1, 1, "r/#", 1, 0);
    ack(1, MQTT_PUBACK, 1);
    publish(0, "r/1", "", 0, 0, true, 0, 0);
    subscribe(1, 2, "r/+", 0, 0);
    rc |= save(dir, "retained");

    /* Topic aliases: inbound (set, then use), outbound (client maximum). */
    start(0);
    connect(0, MQTT_V5, "subal", &(copts){.alias_max = 2}, 0);
    subscribe(0, 1, "al/#", 0, 3);
    connect(1, MQTT_V5, "pubal", NULL, 0);
    publish(1, "al/x", "1", 0, 0, false, 1, 0);
    publish(1, "", "2", 0, 0, false, 1, 0);
    publish(1, "al/y", "3", 1, 5, false, 2, 0);
    publish(1, "", "4", 0, 0, false, 2, 0);
    publish(1, "al/z", "5", 0, 0, false, 3, 0);
    publish(1, "", "6", 0, 0, false, 9, 0); /* unknown alias */
    rc |= save(dir, "topic_alias");

    /* Shared subscription with two members, QoS 1 and 2. */
    start(0);
    connect(0, MQTT_V5, "m1", NULL, 0);
    subscribe(0, 1, "$share/g/s/#", 1, 0);
    connect(1, MQTT_V311, "m2", NULL, 0);
    subscribe(1, 1, "$share/g/s/#", 2, 0);
    connect(2, MQTT_V5, "p", NULL, 0);
    for (uint16_t i = 1; i <= 4; i++) {
        publish(2, "s/x", "m", (uint8_t)(1 + i % 2), i, false, 0, 0);
    }
    op(OP_CLIENT_CLOSE, 0); /* a member leaves with messages in flight */
    publish(2, "s/y", "m", 1, 9, false, 0, 0);
    rc |= save(dir, "shared");

    /* A persistent session: subscribe, leave, miss messages, resume. */
    start(0);
    connect(0, MQTT_V5, "pers", &(copts){.keep_session = true, .expiry = 120}, 0);
    subscribe(0, 1, "p/#", 1, 0);
    disconnect(0, 0, UINT32_MAX);
    connect(1, MQTT_V5, "pp", NULL, 0);
    publish(1, "p/1", "while away", 1, 1, false, 0, 0);
    publish(1, "p/2", "while away", 2, 2, false, 0, 0);
    ack(1, MQTT_PUBREL, 2);
    connect(0, MQTT_V5, "pers", &(copts){.keep_session = true, .expiry = 120}, 0);
    ack(0, MQTT_PUBACK, 1);
    disconnect(0, 0, 0); /* ends the session */
    rc |= save(dir, "session_resume");

    /* QoS 2 edge cases: duplicate PUBLISH, unknown PUBREL, acks out of turn. */
    start(0);
    connect(0, MQTT_V5, "q2", NULL, 0);
    subscribe(0, 1, "q/#", 2, 0);
    publish(0, "q/1", "a", 2, 5, false, 0, 0);
    publish(0, "q/1", "a", 2, 5, false, 0, 0);
    ack(0, MQTT_PUBREL, 6);
    ack(0, MQTT_PUBREL, 5);
    ack(0, MQTT_PUBCOMP, 1);
    ack(0, MQTT_PUBREC, 1);
    ack(0, MQTT_PUBCOMP, 1);
    ack(0, MQTT_PUBACK, 77);
    rc |= save(dir, "qos2_edges");

    /* AUTH: refused at CONNECT, out of order after it; a username. */
    start(0);
    connect(0, MQTT_V5, "a1", &(copts){.auth_method = "SCRAM-SHA-1"}, 0);
    connect(1, MQTT_V5, "a2", &(copts){.username = "user"}, 0);
    auth(1, "SCRAM-SHA-1");
    rc |= save(dir, "auth");

    /* A subscriber that stops reading while its output fills: every
     * SUBSCRIBE sends the retained message again, so a few small packets
     * pass the smallest output buffer (64 KiB) and QoS 0 is dropped while
     * QoS 1 waits in the queue. */
    start(0x80);
    {
        static char big[7000];
        memset(big, 'x', sizeof(big) - 1);
        connect(1, MQTT_V5, "fast", NULL, 0);
        publish(1, "f/r", big, 1, 1, true, 0, 0);
        connect(0, MQTT_V5, "slow", NULL, 0);
        op(OP_STOP_READING, 0);
        for (uint16_t i = 1; i <= 12; i++) {
            subscribe(0, i, "f/#", i % 2, 0);
        }
        publish(1, "f/1", "q0", 0, 0, false, 0, 0);
        publish(1, "f/1", "q1", 1, 2, false, 0, 0);
        op(OP_RESUME_READING, 0);
        ack(0, MQTT_PUBACK, 1);
        op(OP_TIME_PASSES, 0); /* keep alive ends both */
    }
    rc |= save(dir, "slow_reader");

    /* Keep alive and connect timeouts. */
    start(0);
    connect(0, MQTT_V311, "ka", &(copts){.keepalive = 5}, 0);
    raw(1, "\x10\x10", 2); /* a CONNECT that never completes */
    op(OP_TIME_PASSES, 0);
    connect(0, MQTT_V311, "ka", NULL, 0);
    rc |= save(dir, "timeouts");

    /* Garbage: not CONNECT first, a huge remaining length, a second
     * CONNECT, a server-only packet, a bad protocol level, 3.1.1 with an
     * empty id and no clean session. */
    start(0);
    raw(0, "GET / HTTP/1.1\r\n\r\n", 18);
    raw(1, "\x10\xff\xff\xff\x7f", 5);
    connect(2, MQTT_V5, "g", NULL, 0);
    connect(2, MQTT_V5, "g", NULL, 0);
    raw(0, "\x10\x0c\x00\x04MQTT\x07\x02\x00\x3c\x00\x00", 14);
    connect(1, MQTT_V311, "", &(copts){.keep_session = true}, 0);
    connect(1, MQTT_V5, "g2", NULL, 0);
    raw(1, "\x20\x02\x00\x00", 4);
    rc |= save(dir, "garbage");

    /* Features turned off by configuration. */
    start(0x1f);
    connect(0, MQTT_V5, "off", NULL, 0);
    subscribe(0, 1, "o/+", 2, 4);
    subscribe(0, 2, "$share/g/o", 2, 0);
    publish(0, "o/r", "r", 2, 3, true, 0, 0);
    publish(0, "o/big/topic/that/makes/this/packet/larger/than/the/limit/of/one/hundred/and/twenty/eight/bytes",
            "payload", 1, 4, false, 0, 0);
    rc |= save(dir, "features_off");

    return rc == 0 ? 0 : 1;
}
