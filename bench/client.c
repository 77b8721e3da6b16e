/* SPDX-License-Identifier: Apache-2.0 */
#include "bench/client.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"

/* glibc's <netinet/in.h> may lack it; the value is Linux's. */
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Output bytes above which publishing waits, and the mark at which
 * writable_cb tells the publisher to go on. */
#define OUT_HIGH (64 * 1024)
#define OUT_LOW (16 * 1024)
#define MAX_READ (256 * 1024)

enum slot_state { SLOT_FREE = 0, SLOT_ACK, SLOT_REC, SLOT_COMP };

struct client {
    struct event_base *base;
    struct bufferevent *bev;
    const client_cbs *cbs;
    const client_cfg *cfg;
    void *ud;
    client_state state;
    uint16_t window; /* min(cfg inflight, broker's Receive Maximum) */
    uint16_t used;   /* slots taken */
    uint16_t n_free;
    uint16_t *free_ids; /* stack of free packet ids 1..inflight */
    uint8_t *slots;     /* [inflight + 1] by packet id */
    uint64_t started_ns;
    uint64_t last_tx_ns;
    char id[64];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

client *client_new(struct event_base *base, const client_cbs *cbs, const client_cfg *cfg, void *ud)
{
    client *c = sh_calloc(1, sizeof(*c));
    c->base = base;
    c->cbs = cbs;
    c->cfg = cfg;
    c->ud = ud;
    c->window = cfg->inflight;
    c->free_ids = sh_malloc(sizeof(uint16_t) * cfg->inflight);
    c->slots = sh_calloc((size_t)cfg->inflight + 1, 1);
    for (uint16_t i = 0; i < cfg->inflight; i++) {
        c->free_ids[i] = (uint16_t)(cfg->inflight - i);
    }
    c->n_free = cfg->inflight;
    return c;
}

void client_free(client *c)
{
    if (!c) {
        return;
    }
    client_abort(c);
    sh_free(c->free_ids, sizeof(uint16_t) * c->cfg->inflight);
    sh_free(c->slots, (size_t)c->cfg->inflight + 1);
    sh_free(c, sizeof(*c));
}

void *client_ud(const client *c)
{
    return c->ud;
}

client_state client_get_state(const client *c)
{
    return c->state;
}

uint32_t client_inflight(const client *c)
{
    return c->used;
}

void client_abort(client *c)
{
    if (c->bev) {
        /* Safe inside the bufferevent's own callback: libevent holds a
         * reference until the callback returns. */
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    c->state = CLIENT_CLOSED;
}

static void end(client *c, client_end why, uint8_t rc)
{
    client_abort(c);
    if (c->cbs->end_cb) {
        c->cbs->end_cb(c, why, rc);
    }
}

/* ---- writing: encode straight into the output buffer ---- */

static uint8_t *reserve(client *c, size_t n, struct evbuffer_iovec *v)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_reserve_space(out, (ev_ssize_t)n, v, 1) < 1) {
        return NULL;
    }
    return v->iov_base;
}

static void commit(client *c, size_t n, struct evbuffer_iovec *v)
{
    v->iov_len = n;
    evbuffer_commit_space(bufferevent_get_output(c->bev), v, 1);
    c->last_tx_ns = now_ns();
}

static int send_ack(client *c, uint8_t type, uint16_t pid)
{
    mqtt_ack a = {.type = type, .packet_id = pid};
    struct evbuffer_iovec v;
    size_t n = mqtt_size_ack(&a, c->cfg->version);
    uint8_t *d = reserve(c, n, &v);
    if (!d) {
        return -1;
    }
    commit(c, mqtt_encode_ack(&a, c->cfg->version, d), &v);
    return 0;
}

static void send_connect(client *c)
{
    mqtt_connect p = {0};
    p.version = c->cfg->version;
    p.clean_start = c->cfg->clean;
    p.keepalive = c->cfg->keepalive;
    p.client_id = (mqtt_bytes){(const uint8_t *)c->id, (uint32_t)strlen(c->id)};
    if (c->cfg->username) {
        p.has_username = true;
        p.username = (mqtt_bytes){(const uint8_t *)c->cfg->username, (uint32_t)strlen(c->cfg->username)};
    }
    if (c->cfg->password) {
        p.has_password = true;
        p.password = (mqtt_bytes){(const uint8_t *)c->cfg->password, (uint32_t)strlen(c->cfg->password)};
    }
    if (p.version == MQTT_V5) {
        /* Let the broker send as many QoS 1/2 messages as it likes. */
        p.props.present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX);
        p.props.receive_max = 65535;
        if (!c->cfg->clean && c->cfg->session_expiry) {
            p.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
            p.props.session_expiry = c->cfg->session_expiry;
        }
    }
    struct evbuffer_iovec v;
    size_t n = mqtt_size_connect(&p);
    uint8_t *d = reserve(c, n, &v);
    if (d) {
        commit(c, mqtt_encode_connect(&p, d), &v);
    }
}

bool client_can_publish(const client *c, uint8_t qos)
{
    if (c->state != CLIENT_UP || evbuffer_get_length(bufferevent_get_output(c->bev)) >= OUT_HIGH) {
        return false;
    }
    return qos == 0 || (c->used < c->window && c->n_free > 0);
}

int client_publish(client *c, mqtt_bytes topic, mqtt_bytes payload, uint8_t qos, bool retain)
{
    if (!client_can_publish(c, qos)) {
        return -1;
    }
    mqtt_publish p = {.qos = qos, .retain = retain, .topic = topic, .payload = payload};
    if (qos > 0) {
        /* Peek: the slot is taken only once the bytes are queued. */
        p.packet_id = c->free_ids[c->n_free - 1];
    }
    struct evbuffer_iovec v;
    size_t n = mqtt_size_publish(&p, c->cfg->version);
    uint8_t *d = reserve(c, n, &v);
    if (!d) {
        return -1;
    }
    commit(c, mqtt_encode_publish(&p, c->cfg->version, d), &v);
    if (qos > 0) {
        c->n_free--;
        c->slots[p.packet_id] = qos == 1 ? SLOT_ACK : SLOT_REC;
        c->used++;
    }
    return 0;
}

/* SUBSCRIBE and UNSUBSCRIBE use the id just past the publish window. */
static uint16_t control_id(const client *c)
{
    return (uint16_t)(c->cfg->inflight + 1u);
}

int client_subscribe(client *c, mqtt_bytes filter, uint8_t qos)
{
    if (c->state != CLIENT_UP) {
        return -1;
    }
    mqtt_sub s = {.filter = filter, .qos = qos};
    mqtt_props none = {0};
    struct evbuffer_iovec v;
    size_t n = mqtt_size_subscribe(control_id(c), &none, &s, 1, c->cfg->version);
    uint8_t *d = reserve(c, n, &v);
    if (!d) {
        return -1;
    }
    commit(c, mqtt_encode_subscribe(control_id(c), &none, &s, 1, c->cfg->version, d), &v);
    return 0;
}

int client_unsubscribe(client *c, mqtt_bytes filter)
{
    if (c->state != CLIENT_UP) {
        return -1;
    }
    mqtt_props none = {0};
    struct evbuffer_iovec v;
    size_t n = mqtt_size_unsubscribe(control_id(c), &none, &filter, 1, c->cfg->version);
    uint8_t *d = reserve(c, n, &v);
    if (!d) {
        return -1;
    }
    commit(c, mqtt_encode_unsubscribe(control_id(c), &none, &filter, 1, c->cfg->version, d), &v);
    return 0;
}

void client_tick(client *c, uint64_t now)
{
    if ((c->state == CLIENT_TCP || c->state == CLIENT_CONNACK) &&
        now - c->started_ns > (uint64_t)c->cfg->connect_timeout_ms * 1000000u) {
        end(c, CLIENT_END_TIMEOUT, 0);
        return;
    }
    if (c->state == CLIENT_UP && c->cfg->keepalive && now - c->last_tx_ns >= (uint64_t)c->cfg->keepalive * 500000000u) {
        struct evbuffer_iovec v;
        uint8_t *d = reserve(c, 2, &v);
        if (d) {
            commit(c, mqtt_encode_ping(MQTT_PINGREQ, d), &v);
        }
    }
}

void client_disconnect(client *c)
{
    if (c->state != CLIENT_UP && c->state != CLIENT_CONNACK) {
        client_abort(c);
        return;
    }
    mqtt_reason r = {0};
    struct evbuffer_iovec v;
    size_t n = mqtt_size_disconnect(&r, c->cfg->version);
    uint8_t *d = reserve(c, n, &v);
    if (!d) {
        client_abort(c);
        return;
    }
    commit(c, mqtt_encode_disconnect(&r, c->cfg->version, d), &v);
    c->state = CLIENT_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    /* The write callback closes once the output is empty. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

/* ---- reading ---- */

static void on_connack(client *c, const mqtt_frame *f)
{
    mqtt_connack ca;
    if (c->state != CLIENT_CONNACK || mqtt_decode_connack(f, c->cfg->version, &ca) != MQTT_RC_SUCCESS) {
        end(c, CLIENT_END_PROTOCOL, 0);
        return;
    }
    if (ca.rc != 0) {
        end(c, CLIENT_END_REJECTED, ca.rc);
        return;
    }
    if (mqtt_props_has(&ca.props, MQTT_PROP_RECEIVE_MAX) && ca.props.receive_max < c->window) {
        c->window = ca.props.receive_max;
    }
    c->state = CLIENT_UP;
    if (c->cbs->up_cb) {
        c->cbs->up_cb(c);
    }
}

static void on_publish(client *c, const mqtt_frame *f)
{
    mqtt_publish p;
    if (mqtt_decode_publish(f, c->cfg->version, &p) != MQTT_RC_SUCCESS) {
        end(c, CLIENT_END_PROTOCOL, 0);
        return;
    }
    if (p.qos == 1) {
        send_ack(c, MQTT_PUBACK, p.packet_id);
    } else if (p.qos == 2) {
        send_ack(c, MQTT_PUBREC, p.packet_id);
    }
    if (c->cbs->message_cb) {
        c->cbs->message_cb(c, &p);
    }
}

static void release(client *c, uint16_t pid, uint8_t rc)
{
    c->slots[pid] = SLOT_FREE;
    c->free_ids[c->n_free++] = pid;
    c->used--;
    if (c->cbs->pub_done_cb) {
        c->cbs->pub_done_cb(c, rc);
    }
}

static void on_ack(client *c, const mqtt_frame *f)
{
    mqtt_ack a;
    if (mqtt_decode_ack(f, c->cfg->version, &a) != MQTT_RC_SUCCESS) {
        end(c, CLIENT_END_PROTOCOL, 0);
        return;
    }
    if (a.type == MQTT_PUBREL) {
        send_ack(c, MQTT_PUBCOMP, a.packet_id);
        return;
    }
    if (a.packet_id == 0 || a.packet_id > c->cfg->inflight) {
        end(c, CLIENT_END_PROTOCOL, 0);
        return;
    }
    uint8_t st = c->slots[a.packet_id];
    if (a.type == MQTT_PUBACK && st == SLOT_ACK) {
        release(c, a.packet_id, a.rc);
    } else if (a.type == MQTT_PUBREC && st == SLOT_REC && a.rc < 0x80) {
        c->slots[a.packet_id] = SLOT_COMP;
        send_ack(c, MQTT_PUBREL, a.packet_id);
    } else if ((a.type == MQTT_PUBREC && st == SLOT_REC) || (a.type == MQTT_PUBCOMP && st == SLOT_COMP)) {
        release(c, a.packet_id, a.rc);
    } else {
        end(c, CLIENT_END_PROTOCOL, 0);
    }
}

static void on_suback(client *c, const mqtt_frame *f)
{
    mqtt_suback s;
    bool sub = f->type == MQTT_SUBACK;
    mqtt_rc rc = sub ? mqtt_decode_suback(f, c->cfg->version, &s) : mqtt_decode_unsuback(f, c->cfg->version, &s);
    if (rc != MQTT_RC_SUCCESS) {
        end(c, CLIENT_END_PROTOCOL, 0);
        return;
    }
    if (sub && c->cbs->suback_cb) {
        c->cbs->suback_cb(c, s.codes.len ? s.codes.p[0] : 0x80);
    } else if (!sub && c->cbs->unsuback_cb) {
        c->cbs->unsuback_cb(c);
    }
}

static void on_frame(client *c, const mqtt_frame *f)
{
    switch (f->type) {
    case MQTT_CONNACK:
        on_connack(c, f);
        break;
    case MQTT_PUBLISH:
        on_publish(c, f);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        on_ack(c, f);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        on_suback(c, f);
        break;
    case MQTT_PINGRESP:
        break;
    case MQTT_DISCONNECT: {
        mqtt_reason r = {0};
        mqtt_decode_disconnect(f, c->cfg->version, &r);
        end(c, CLIENT_END_DROPPED, r.rc);
        break;
    }
    default:
        end(c, CLIENT_END_PROTOCOL, 0);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    while ((c->state == CLIENT_CONNACK || c->state == CLIENT_UP) && (n = evbuffer_get_length(in)) >= 2) {
        uint8_t head[5];
        size_t h = n < sizeof(head) ? n : sizeof(head);
        evbuffer_copyout(in, head, h);
        uint32_t rem;
        int vb = mqtt_varint_read(head + 1, h - 1, &rem);
        if (vb == MQTT_NEED_MORE) {
            break;
        }
        if (vb < 0) {
            end(c, CLIENT_END_PROTOCOL, 0);
            return;
        }
        size_t total = 1u + (size_t)vb + rem;
        if (n < total) {
            break;
        }
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
        mqtt_frame f;
        if (mqtt_frame_parse(p, total, 0, &f) != (int)total) {
            end(c, CLIENT_END_PROTOCOL, 0);
            return;
        }
        on_frame(c, &f);
        if (c->bev) {
            evbuffer_drain(in, total);
        }
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    client *c = arg;
    if (c->state == CLIENT_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            client_abort(c);
        }
        return;
    }
    if (c->state == CLIENT_UP && c->cbs->writable_cb) {
        c->cbs->writable_cb(c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    client *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->state = CLIENT_CONNACK;
        send_connect(c);
        return;
    }
    if (c->state == CLIENT_CLOSING) {
        client_abort(c);
        return;
    }
    end(c, c->state == CLIENT_UP ? CLIENT_END_DROPPED : CLIENT_END_REFUSED, 0);
}

static int make_socket(const struct in_addr *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src) {
        /* Let connect() pick the port, so each (source, destination) pair
         * has the whole ephemeral range. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = *src};
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

int client_connect(client *c, const struct sockaddr_in *dst, const struct in_addr *src, const char *client_id,
                   uint64_t now)
{
    snprintf(c->id, sizeof(c->id), "%s", client_id);
    c->started_ns = now;
    c->last_tx_ns = now;
    int fd = make_socket(src);
    if (fd < 0) {
        return -1;
    }
    c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        return -1;
    }
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    /* libevent 2.1 reads 4 KiB per callback by default: a subscriber
     * sharing the loop with busy publishers would get ~50 messages per
     * loop turn and become the bottleneck it is meant to measure. */
    bufferevent_set_max_single_read(c->bev, MAX_READ);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CLIENT_TCP;
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)dst, sizeof(*dst)) != 0) {
        int e = errno;
        client_abort(c);
        errno = e;
        return -1;
    }
    return 0;
}
