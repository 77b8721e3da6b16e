/* SPDX-License-Identifier: Apache-2.0 */
/* A raw MQTT client for the in-process broker (inproc.h): it writes encoded
 * packets into its end of the bufferevent pair and decodes what the broker
 * wrote back, so a test asserts on the bytes on the wire (reason codes),
 * not on the broker's internals. Shared by the node/ unit tests. */
#ifndef SHOAL_TESTS_INPROC_CLIENT_H
#define SHOAL_TESTS_INPROC_CLIENT_H

#include <criterion/criterion.h>
#include <string.h>

#include "inproc.h"
#include "proto/frame.h"
#include "proto/packet.h"

typedef struct icl {
    broker *b;
    struct bufferevent *bev;
    uint64_t conn_id;
    int worker;
    uint8_t version;
    /* The last packet read (icl_next); decoded fields point into it. */
    uint8_t raw[65536];
    size_t raw_len;
} icl;

static inline mqtt_bytes icl_str(const char *s)
{
    return (mqtt_bytes){(const uint8_t *)s, (uint32_t)strlen(s)};
}

/* A new connection on worker wi; nothing is sent yet. */
static inline icl *icl_open(broker *b, int wi, uint8_t version)
{
    icl *c = sh_calloc(1, sizeof(*c));
    c->b = b;
    c->worker = wi;
    c->version = version;
    c->bev = inproc_connect(b, wi, &c->conn_id);
    cr_assert_not_null(c->bev);
    return c;
}

static inline void icl_free(icl *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
    }
    sh_free(c, sizeof(*c));
}

static inline void icl_write(icl *c, const void *p, size_t n)
{
    cr_assert_eq(bufferevent_write(c->bev, p, n), 0);
}

static inline void icl_settle(icl *c)
{
    cr_assert(inproc_settle(c->b, NULL, NULL), "the worker loops never went idle");
}

/* The connection on the broker's side, or NULL once it is closed. */
static inline conn *icl_conn(icl *c)
{
    return worker_find_conn(&c->b->workers[c->worker], c->conn_id);
}

/* Send a CONNECT (p may be NULL: clean start, keep alive 60). */
static inline void icl_send_connect(icl *c, const char *id, const mqtt_connect *p)
{
    mqtt_connect d;
    if (!p) {
        memset(&d, 0, sizeof(d));
        d.clean_start = true;
        d.keepalive = 60;
        p = &d;
    }
    mqtt_connect q = *p;
    q.version = c->version;
    q.client_id = icl_str(id);
    uint8_t buf[4096];
    cr_assert_leq(mqtt_size_connect(&q), sizeof(buf));
    icl_write(c, buf, mqtt_encode_connect(&q, buf));
}

/* Read the next whole packet the broker wrote, decoded for the client's
 * version; returns its type, or 0 when none is waiting. */
static inline uint8_t icl_next(icl *c, mqtt_packet *out)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) {
        return 0;
    }
    uint8_t head[5];
    size_t hn = avail < 5 ? avail : 5;
    evbuffer_copyout(in, head, hn);
    mqtt_frame f;
    int n = mqtt_frame_parse(head, hn, 0, &f);
    cr_assert(n != MQTT_BAD, "the broker wrote a bad fixed header (0x%02x)", head[0]);
    size_t total = mqtt_frame_size(&f);
    cr_assert(total > 0 && total <= avail, "the broker wrote a partial packet (%zu of %zu bytes)", avail, total);
    cr_assert_leq(total, sizeof(c->raw));
    evbuffer_remove(in, c->raw, total);
    c->raw_len = total;
    cr_assert_gt(mqtt_frame_parse(c->raw, total, 0, &f), 0);
    memset(out, 0, sizeof(*out));
    cr_assert_eq(mqtt_decode(&f, c->version, out), MQTT_RC_SUCCESS, "the broker wrote an undecodable %s",
                 mqtt_type_name(f.type));
    return f.type;
}

/* The next packet, which must be of this type. */
static inline void icl_expect(icl *c, uint8_t type, mqtt_packet *out)
{
    mqtt_packet tmp;
    uint8_t got = icl_next(c, out ? out : &tmp);
    cr_assert_eq(got, type, "expected %s, got %s", mqtt_type_name(type), got ? mqtt_type_name(got) : "nothing");
}

/* Nothing more was written. */
static inline void icl_expect_nothing(icl *c)
{
    mqtt_packet p;
    uint8_t got = icl_next(c, &p);
    cr_assert_eq(got, 0, "expected nothing, got %s", mqtt_type_name(got));
}

/* CONNECT, settle, and the CONNACK must be a success. */
static inline icl *icl_connected(broker *b, int wi, uint8_t version, const char *id)
{
    icl *c = icl_open(b, wi, version);
    icl_send_connect(c, id, NULL);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_CONNACK, &p);
    cr_assert_eq(p.u.connack.rc, 0, "CONNACK 0x%02x", p.u.connack.rc);
    return c;
}

static inline void icl_send_publish(icl *c, const char *topic, const char *payload, uint8_t qos, uint16_t pid,
                                    bool retained, const mqtt_props *props)
{
    mqtt_publish p;
    memset(&p, 0, sizeof(p));
    p.qos = qos;
    p.retain = retained;
    p.topic = icl_str(topic);
    p.packet_id = pid;
    p.payload = icl_str(payload);
    if (props) {
        p.props = *props;
    }
    uint8_t buf[4096];
    icl_write(c, buf, mqtt_encode_publish(&p, c->version, buf));
}

static inline void icl_send_subscribe(icl *c, uint16_t pid, const mqtt_sub *subs, uint32_t n, const mqtt_props *props)
{
    mqtt_props none;
    memset(&none, 0, sizeof(none));
    uint8_t buf[4096];
    icl_write(c, buf, mqtt_encode_subscribe(pid, props ? props : &none, subs, n, c->version, buf));
}

/* SUBSCRIBE one filter, settle, and return the SUBACK's one code. */
static inline uint8_t icl_subscribe1(icl *c, const char *filter, uint8_t qos)
{
    mqtt_sub s = {.filter = icl_str(filter), .qos = qos};
    icl_send_subscribe(c, 7, &s, 1, NULL);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_SUBACK, &p);
    cr_assert_eq(p.u.suback.packet_id, 7);
    cr_assert_eq(p.u.suback.codes.len, 1);
    return p.u.suback.codes.p[0];
}

static inline void icl_send_ack(icl *c, uint8_t type, uint16_t pid, uint8_t rc)
{
    mqtt_ack a;
    memset(&a, 0, sizeof(a));
    a.type = type;
    a.packet_id = pid;
    a.rc = rc;
    uint8_t buf[64];
    icl_write(c, buf, mqtt_encode_ack(&a, c->version, buf));
}

static inline void icl_send_ping(icl *c)
{
    uint8_t buf[2];
    icl_write(c, buf, mqtt_encode_ping(MQTT_PINGREQ, buf));
}

static inline void icl_send_disconnect(icl *c, uint8_t rc, const mqtt_props *props)
{
    mqtt_reason r;
    memset(&r, 0, sizeof(r));
    r.rc = rc;
    if (props) {
        r.props = *props;
    }
    uint8_t buf[256];
    icl_write(c, buf, mqtt_encode_disconnect(&r, c->version, buf));
}

/* The client's socket goes away (EOF), and the broker sees it. */
static inline void icl_drop(icl *c)
{
    inproc_client_eof(c->bev);
    icl_settle(c);
}

/* The broker closed the connection (it is no longer indexed). */
static inline void icl_expect_closed(icl *c)
{
    cr_assert_null(icl_conn(c), "the connection is still open");
}

/* The broker's last word: a DISCONNECT with this reason code, and the
 * connection is closed. */
static inline void icl_expect_disconnect(icl *c, uint8_t rc)
{
    mqtt_packet p;
    icl_expect(c, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, rc, "DISCONNECT 0x%02x, expected 0x%02x", p.u.reason.rc, rc);
    icl_expect_closed(c);
}

/* The fixture of a suite on a default broker (no options, the local
 * backplane) with nworkers workers, up before each test and down after:
 * defines `cfg` and `b` for the tests, and the Criterion suite `name`. */
#define ICL_SUITE(name, nworkers)                            \
    static config cfg;                                       \
    static broker b;                                         \
    static void icl_suite_up(void)                           \
    {                                                        \
        cr_assert_eq(config_load(&cfg, 0, NULL), CONFIG_OK); \
        cr_assert_eq(inproc_up(&b, &cfg, (nworkers)), 0);    \
    }                                                        \
    static void icl_suite_down(void)                         \
    {                                                        \
        inproc_down(&b);                                     \
        config_free(&cfg);                                   \
    }                                                        \
    TestSuite(name, .init = icl_suite_up, .fini = icl_suite_down)

#endif
