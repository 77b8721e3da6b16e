/* SPDX-License-Identifier: Apache-2.0 */
/* PROXY protocol on the client listeners: trust check at accept, the
 * header read off the socket, then conn_new with the client's address. */
#include "node/net/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/config.h"
#include "node/conn.h"
#include "node/worker.h"
#include "proto/proxy.h"

static const char *const listener_names[PROXY_L_COUNT] = {"mqtt", "mqtts", "ws", "wss"};

/* --- configuration --- */

static int parse_version(const char *v, size_t n, uint8_t *out)
{
    if (n == 3 && !strncmp(v, "off", 3)) {
        *out = 0;
    } else if (n == 2 && !strncmp(v, "v1", 2)) {
        *out = MQTT_PROXY_V1;
    } else if (n == 2 && !strncmp(v, "v2", 2)) {
        *out = MQTT_PROXY_V2;
    } else {
        return -1;
    }
    return 0;
}

static int parse_protocol(proxy_config *pc)
{
    const char *s = pc->protocol ? pc->protocol : "off";
    memset(pc->versions, 0, sizeof(pc->versions));
    if (!strchr(s, '=')) {
        /* One version for every client listener. */
        uint8_t v;
        if (parse_version(s, strlen(s), &v)) {
            goto bad;
        }
        memset(pc->versions, v, sizeof(pc->versions));
        return 0;
    }
    for (const char *p = s; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        int l = -1;
        for (int i = 0; eq && i < PROXY_L_COUNT; i++) {
            if ((size_t)(eq - p) == strlen(listener_names[i]) && !strncmp(p, listener_names[i], (size_t)(eq - p))) {
                l = i;
            }
        }
        if (l < 0 || parse_version(eq + 1, n - (size_t)(eq + 1 - p), &pc->versions[l])) {
            goto bad;
        }
        p += n + (end ? 1 : 0);
    }
    return 0;
bad:
    fprintf(stderr,
            "shoal: --proxy-protocol must be off, v1, v2 or a list LISTENER=VERSION,... (LISTENER: mqtt, mqtts, ws, "
            "wss), not '%s'\n",
            s);
    return 2;
}

static int parse_net(const char *s, size_t n, proxy_net *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = 4;
        out->bits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = 6;
        out->bits = 128;
    } else {
        return -1;
    }
    if (slash) {
        char *end;
        errno = 0;
        long bits = strtol(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || bits < 0 || bits > out->bits) {
            return -1;
        }
        out->bits = (uint8_t)bits;
    }
    return 0;
}

static int parse_trusted(proxy_config *pc)
{
    const char *s = pc->trusted;
    if (!s || !*s) {
        return 0;
    }
    uint32_t n = 1;
    for (const char *p = s; *p; p++) {
        n += *p == ',';
    }
    pc->nets = sh_calloc(n, sizeof(proxy_net));
    pc->cap_nets = n;
    for (const char *p = s; pc->n_nets < n;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ') {
            len--;
        }
        if (parse_net(p, len, &pc->nets[pc->n_nets])) {
            fprintf(stderr, "shoal: --proxy-trusted: '%.*s' is not an address or ADDRESS/BITS\n", (int)len, p);
            return 2;
        }
        pc->n_nets++;
        if (!end) {
            break;
        }
        p = end + 1;
    }
    return 0;
}

int proxy_config_parse(proxy_config *pc)
{
    proxy_config_free(pc);
    int rc = parse_protocol(pc);
    rc = rc ? rc : parse_trusted(pc);
    if (rc == 0 && proxy_config_on(pc) && pc->n_nets == 0) {
        /* Anyone who can reach the port could then claim any address. */
        fprintf(stderr, "shoal: --proxy-protocol needs --proxy-trusted: the load balancers' ADDRESS[/BITS] the "
                        "header may come from (0.0.0.0/0,::/0 accepts any source)\n");
        return -1;
    }
    return rc;
}

void proxy_config_free(proxy_config *pc)
{
    if (pc->nets) {
        sh_free(pc->nets, pc->cap_nets * sizeof(proxy_net));
    }
    pc->nets = NULL;
    pc->n_nets = pc->cap_nets = 0;
}

bool proxy_config_on(const proxy_config *pc)
{
    for (int i = 0; i < PROXY_L_COUNT; i++) {
        if (pc->versions[i]) {
            return true;
        }
    }
    return false;
}

/* --- trust --- */

static bool in_net(const proxy_net *n, const uint8_t *a)
{
    unsigned full = n->bits / 8u, rest = n->bits % 8u;
    if (memcmp(n->addr, a, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xFFu << (8u - rest));
    return (n->addr[full] & mask) == (a[full] & mask);
}

static bool trusted(const proxy_config *pc, const struct sockaddr *sa)
{
    if (pc->n_nets == 0) {
        return false; /* refused at start: PROXY protocol needs a trusted list */
    }
    uint8_t a4[4], a6[16];
    bool has4 = false, has6 = false;
    if (sa->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        has4 = true;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        memcpy(a6, in6, 16);
        has6 = true;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            /* A dual-stack listener sees IPv4 balancers as ::ffff:a.b.c.d. */
            memcpy(a4, a6 + 12, 4);
            has4 = true;
        }
    }
    for (uint32_t i = 0; i < pc->n_nets; i++) {
        const proxy_net *n = &pc->nets[i];
        if ((n->family == 4 && has4 && in_net(n, a4)) || (n->family == 6 && has6 && in_net(n, a6))) {
            return true;
        }
    }
    return false;
}

/* --- waiting for the header --- */

/* A connection accepted on a PROXY listener whose header is not whole yet.
 * Bytes the parser said are a header prefix are taken off the socket into
 * buf (made on first need: a balancer sends the header in one write), so a
 * level-triggered read event does not fire again for them. */
struct proxy_wait {
    proxy_wait *prev, *next; /* worker.proxy.waiting */
    worker *w;
    struct event *ev;
    int fd;
    uint8_t flags;        /* conn_new's CONN_TLS | CONN_WS */
    uint16_t len;         /* bytes in buf */
    uint8_t *buf;         /* MQTT_PROXY_V2_MAX bytes once needed */
    uint64_t deadline_ms; /* created + --connect-timeout */
    socklen_t salen;
    struct sockaddr_storage sa; /* the balancer's address */
};

static unsigned listener_of(unsigned flags)
{
    return ((flags & CONN_TLS) ? 1u : 0u) + ((flags & CONN_WS) ? 2u : 0u);
}

static void peer_name(const struct sockaddr *sa, char *dst, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(dst, cap, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(dst, cap, "[%s]:%u", host, port);
    } else {
        snprintf(dst, cap, "unix");
    }
}

static void wait_unlink(proxy_wait *p)
{
    worker *w = p->w;
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        w->proxy.waiting = p->next;
    }
    if (p->next) {
        p->next->prev = p->prev;
    }
}

static void wait_free(proxy_wait *p, bool close_fd)
{
    wait_unlink(p);
    event_free(p->ev);
    if (close_fd) {
        evutil_closesocket(p->fd);
    }
    if (p->buf) {
        sh_free(p->buf, MQTT_PROXY_V2_MAX);
    }
    sh_free(p, sizeof(*p));
}

/* No valid header: counted, one INFO line with the parser's reason, closed. */
static void refuse(proxy_wait *p, const char *why, const uint8_t *bytes, size_t n)
{
    char peer[MQTT_PROXY_PEER_MAX], sample[33];
    peer_name((const struct sockaddr *)&p->sa, peer, sizeof(peer));
    sh_log_sample(sample, sizeof(sample), bytes, n < 32 ? n : 32);
    atomic_fetch_add_explicit(&p->w->proxy.bad, 1, memory_order_relaxed);
    sh_log(SH_INFO, "event=proxy_refused peer=%s listener=%s reason=\"%s\" sample=\"%s\"", peer,
           listener_names[listener_of(p->flags)], why, sample);
    wait_free(p, true);
}

/* The header is whole: the connection starts with the client's address. */
static void accepted(proxy_wait *p, const mqtt_proxy_hdr *h)
{
    worker *w = p->w;
    int fd = p->fd;
    unsigned flags = p->flags;
    struct sockaddr_storage sa;
    memcpy(&sa, &p->sa, sizeof(sa));
    if (mqtt_proxy_has_addr(h) && !h->local) {
        memset(&sa, 0, sizeof(sa));
        if (h->src.family == MQTT_PROXY_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
            s4->sin_family = AF_INET;
            s4->sin_port = htons(h->src.port);
            memcpy(&s4->sin_addr, h->src.addr, 4);
        } else {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons(h->src.port);
            memcpy(&s6->sin6_addr, h->src.addr, 16);
        }
    }
    atomic_fetch_add_explicit(&w->proxy.accepted, 1, memory_order_relaxed);
    wait_free(p, false);
    conn_new(w, fd, (struct sockaddr *)&sa, (int)sizeof(sa), flags);
}

static bool would_block(void)
{
    int e = EVUTIL_SOCKET_ERROR();
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static void arm(proxy_wait *p)
{
    uint64_t now = now_ms();
    uint64_t left = p->deadline_ms > now ? p->deadline_ms - now : 0;
    struct timeval tv = {(time_t)(left / 1000u), (suseconds_t)((left % 1000u) * 1000u)};
    event_add(p->ev, &tv);
}

/* Peek at what arrived after the bytes already taken, parse all of it, and
 * take off the socket only header bytes: the rest belongs to the transport
 * (a TLS ClientHello, an HTTP upgrade, MQTT). */
static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    proxy_wait *p = arg;
    if (what & EV_TIMEOUT) {
        atomic_fetch_add_explicit(&p->w->metrics.limit_refusals[LIMIT_CONNECT_TIMEOUT], 1, memory_order_relaxed);
        refuse(p, "no PROXY header within connect timeout", p->buf, p->len);
        return;
    }
    uint8_t buf[MQTT_PROXY_V2_MAX];
    if (p->len) {
        memcpy(buf, p->buf, p->len);
    }
    ssize_t n = recv(fd, buf + p->len, sizeof(buf) - p->len, MSG_PEEK);
    if (n < 0 && would_block()) {
        arm(p);
        return;
    }
    if (n <= 0) {
        refuse(p, n == 0 ? "closed before the PROXY header" : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), buf,
               p->len);
        return;
    }
    size_t total = p->len + (size_t)n;
    mqtt_proxy_hdr h;
    int r = mqtt_proxy_parse(buf, total, p->w->b->cfg->proxy.versions[listener_of(p->flags)], &h);
    if (r == MQTT_PROXY_BAD || (r == MQTT_PROXY_NEED_MORE && total >= sizeof(buf))) {
        refuse(p, h.why ? h.why : "header too long", buf, total);
        return;
    }
    /* Take the header bytes (all of them so far when it is incomplete). */
    size_t take = r == MQTT_PROXY_NEED_MORE ? (size_t)n : (size_t)r - p->len;
    if (take && recv(fd, buf + p->len, take, 0) != (ssize_t)take) {
        refuse(p, "short read of peeked bytes", buf, total);
        return;
    }
    if (r == MQTT_PROXY_NEED_MORE) {
        if (!p->buf) {
            p->buf = sh_malloc(MQTT_PROXY_V2_MAX);
        }
        memcpy(p->buf + p->len, buf + p->len, take);
        p->len = (uint16_t)(p->len + take);
        arm(p);
        return;
    }
    accepted(p, &h);
}

bool proxy_accept(worker *w, int fd, const struct sockaddr *sa, int salen, unsigned flags)
{
    const proxy_config *pc = &w->b->cfg->proxy;
    unsigned l = listener_of(flags);
    if (!pc->versions[l]) {
        return false;
    }
    if (!trusted(pc, sa)) {
        char peer[MQTT_PROXY_PEER_MAX];
        peer_name(sa, peer, sizeof(peer));
        atomic_fetch_add_explicit(&w->proxy.untrusted, 1, memory_order_relaxed);
        sh_log(SH_INFO, "event=proxy_refused peer=%s listener=%s reason=\"source not in --proxy-trusted\"", peer,
               listener_names[l]);
        evutil_closesocket(fd);
        return true;
    }
    proxy_wait *p = sh_calloc(1, sizeof(*p));
    p->w = w;
    p->fd = fd;
    p->flags = (uint8_t)flags;
    p->deadline_ms = now_ms() + (uint64_t)w->b->cfg->connect_timeout * 1000u;
    p->salen = (socklen_t)salen;
    memcpy(&p->sa, sa, (size_t)salen < sizeof(p->sa) ? (size_t)salen : sizeof(p->sa));
    p->ev = event_new(w->base, fd, EV_READ, wait_cb, p);
    p->next = w->proxy.waiting;
    if (p->next) {
        p->next->prev = p;
    }
    w->proxy.waiting = p;
    arm(p);
    return true;
}

void proxy_worker_free(worker *w)
{
    while (w->proxy.waiting) {
        wait_free(w->proxy.waiting, true);
    }
}
