/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the connection state machine.
 *
 * Each input gets a fresh broker with the local backplane and two workers
 * whose loops run here, on this thread, with no sockets: every client is
 * one end of a bufferevent pair whose other end is a real connection made
 * by conn_new_bev(), so bytes go through the real read_cb, framing,
 * dispatch, handlers, sessions, routing and cross-worker takeover.
 *
 * Input: one byte of broker limits (see apply_knobs), then a script of
 * steps. A step's first byte h:
 *   h & 3 in 0..2  bytes for client stream h & 3: a length byte (two when
 *                  h & 0x80) and that many bytes. The loops run until idle
 *                  afterwards unless h & 0x40 (so chunks of several clients
 *                  can race in one turn).
 *   h & 3 == 3     an operation (h >> 2) & 7 on stream (h >> 5) % 3: run the
 *                  loops, close from the client (EOF), stop or resume
 *                  reading (a slow subscriber), let an hour pass for every
 *                  connection's timers, or reconnect on the other worker.
 * A stream whose connection has closed reconnects on its next bytes.
 *
 * Oracles: sanitizers; every byte the broker sends frames and decodes
 * under the connection's protocol version, and the first packet is a
 * CONNACK; no packet a server may not send; and after the broker is torn
 * down, every byte it counted through sh_malloc is back (common/alloc.c). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proto/frame.h"
#include "proto/packet.h"
#include "tests/fuzz/fuzz_check.h"

/* Walking every empty session bucket would cost more than the input. */
#define INPROC_TEARDOWN_ATTR __attribute__((noinline, no_sanitize("coverage")))
#include "inproc.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/worker.h"

enum { NSTREAMS = 3, NWORKERS = 2 };

/* Far enough ahead for the largest keep alive (65535 s x 1.5) to lapse. */
#define TIME_PASSES_MS (200000ull * 1000u)

enum op {
    OP_RUN = 0,
    OP_CLIENT_CLOSE,
    OP_STOP_READING,
    OP_RESUME_READING,
    OP_TIME_PASSES,
    OP_RECONNECT,
};

typedef struct stream {
    struct bufferevent *client; /* our end of the pair; NULL: not connected */
    int worker;
    uint64_t conn_id;
    uint8_t version; /* from the first CONNACK: 4 (3.1/3.1.1) or 5 */
    bool got_connack;
    bool got_disconnect;
} stream;

static config cfg_default;
static config cfg;
static broker b;
static stream streams[NSTREAMS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    CHECK(config_load(&cfg_default, 0, NULL) == CONFIG_OK);
    /* Every log line is formatted (its code is under test too); run the
     * fuzzer with -close_fd_mask=2 to keep them off the terminal. */
    const char *lvl = getenv("FUZZ_LOG_LEVEL");
    sh_log_setup(lvl ? (sh_level)sh_log_parse_level(lvl) : SH_DEBUG, SH_LOG_TEXT, "fuzz");
    return 0;
}

/* Limits worth reaching with a few bytes: small windows and queues,
 * features turned off, small packets. */
static void apply_knobs(uint8_t k)
{
    cfg = cfg_default;
    if (k & 0x01) {
        cfg.max_qos = 1;
    }
    if (k & 0x02) {
        cfg.retain_available = false;
    }
    if (k & 0x04) {
        cfg.max_inflight = 2;
        cfg.max_queued = 3;
        cfg.receive_maximum = 2;
        cfg.max_topic_alias = 2;
    }
    if (k & 0x08) {
        cfg.max_packet_size = 128;
    }
    if (k & 0x10) {
        cfg.wildcard_subscriptions = false;
        cfg.subscription_identifiers = false;
        cfg.shared_subscriptions = false;
    }
    if (k & 0x20) {
        cfg.max_session_expiry = 0;
    }
    if (k & 0x40) {
        cfg.max_keepalive = 1;
    }
    if (k & 0x80) {
        cfg.max_output_buffer = 65536;
    }
}

static void broker_up(uint8_t knobs)
{
    apply_knobs(knobs);
    if ((knobs >> 4) & 1) {
        cfg.shared_strategy = (char *)"sticky"; /* cfg is a shallow copy of cfg_default: never freed */
    }
    CHECK(inproc_up(&b, &cfg, NWORKERS) == 0);
}

static bool server_may_send(uint8_t type)
{
    switch (type) {
    case MQTT_CONNACK:
    case MQTT_PUBLISH:
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        return true;
    }
    return false;
}

/* Check and drop every complete packet the broker sent on this stream. */
static void read_output(stream *st)
{
    if (!st->client) {
        return;
    }
    struct evbuffer *in = bufferevent_get_input(st->client);
    size_t len = evbuffer_get_length(in);
    if (len == 0) {
        return;
    }
    const uint8_t *p = evbuffer_pullup(in, (ssize_t)len);
    size_t off = 0;
    while (off < len) {
        mqtt_frame f;
        int n = mqtt_frame_parse(p + off, len - off, 0, &f);
        if (n == MQTT_NEED_MORE) {
            break;
        }
        CHECK(n > 0);
        if (!st->got_connack) {
            /* MQTT-3.2.0-1: the first packet from the server is CONNACK.
             * Its size tells the version: 3.1.1's has no properties. */
            CHECK(f.type == MQTT_CONNACK);
            st->got_connack = true;
            st->version = f.body_len == 2 ? MQTT_V311 : MQTT_V5;
        }
        /* Nothing follows a DISCONNECT (§3.14.4). */
        CHECK(!st->got_disconnect);
        CHECK(server_may_send(f.type));
        mqtt_packet pkt;
        mqtt_rc rc = mqtt_decode(&f, st->version, &pkt);
        if (rc != MQTT_RC_SUCCESS) {
            fprintf(stderr, "broker sent a %s that does not decode as v%u: 0x%02x\n", mqtt_type_name(f.type),
                    st->version, rc);
        }
        CHECK(rc == MQTT_RC_SUCCESS);
        st->got_disconnect = f.type == MQTT_DISCONNECT;
        off += (size_t)n;
    }
    evbuffer_drain(in, off);
}

static void read_all_output(void *arg)
{
    for (int i = 0; i < NSTREAMS; i++) {
        read_output(&streams[i]);
    }
}

static void settle(void)
{
    CHECK(inproc_settle(&b, read_all_output, NULL));
}

static conn *stream_conn(const stream *st)
{
    return st->client ? worker_find_conn(&b.workers[st->worker], st->conn_id) : NULL;
}

static void client_close(stream *st)
{
    if (!st->client) {
        return;
    }
    inproc_client_eof(st->client);
    settle();
    bufferevent_free(st->client);
    st->client = NULL;
}

static void client_open(stream *st, int worker)
{
    client_close(st);
    memset(st, 0, sizeof(*st));
    st->client = inproc_connect(&b, worker, &st->conn_id);
    CHECK(st->client != NULL);
    st->worker = worker;
}

static void client_send(int i, const uint8_t *p, size_t n, bool run)
{
    stream *st = &streams[i];
    conn *c = stream_conn(st);
    if (!c || c->state >= CS_CLOSING) {
        client_open(st, st->client ? st->worker : i % NWORKERS);
    }
    bufferevent_write(st->client, p, n);
    if (run) {
        settle();
    }
}

static void time_passes(void)
{
    uint64_t later = now_ms() + TIME_PASSES_MS;
    for (int i = 0; i < NWORKERS; i++) {
        worker *w = &b.workers[i];
        for (conn *c = w->conns; c;) {
            conn *next = c->next;
            conn_check_timers(c, later);
            c = next;
        }
        worker_flush(w);
    }
    settle();
}

static void operate(uint8_t op, stream *st)
{
    switch (op) {
    case OP_CLIENT_CLOSE:
        client_close(st);
        break;
    case OP_STOP_READING:
        if (st->client) {
            bufferevent_disable(st->client, EV_READ);
        }
        break;
    case OP_RESUME_READING:
        if (st->client) {
            bufferevent_enable(st->client, EV_READ);
        }
        settle();
        break;
    case OP_TIME_PASSES:
        time_passes();
        break;
    case OP_RECONNECT:
        client_open(st, st->client ? (st->worker + 1) % NWORKERS : 0);
        break;
    default:
        settle();
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t before = sh_allocated();
    broker_up(data[0]);
    memset(streams, 0, sizeof(streams));
    size_t pos = 1;
    while (pos < size) {
        uint8_t h = data[pos++];
        if ((h & 3) == 3) {
            operate((h >> 2) & 7, &streams[(h >> 5) % NSTREAMS]);
            continue;
        }
        size_t n = 0;
        if (pos < size) {
            n = data[pos++];
        }
        if ((h & 0x80) && pos < size) {
            n = n << 8 | data[pos++];
        }
        if (n > size - pos) {
            n = size - pos;
        }
        client_send(h & 3, data + pos, n, !(h & 0x40));
        pos += n;
    }
    settle();
    for (int i = 0; i < NSTREAMS; i++) {
        client_close(&streams[i]);
    }
    inproc_down(&b);
    /* Everything the broker allocated for this input is freed again. */
    if (sh_allocated() != before) {
        fprintf(stderr, "sh_allocated: %zu bytes before, %zu after\n", before, sh_allocated());
    }
    CHECK(sh_allocated() == before);
    return 0;
}
