/* SPDX-License-Identifier: Apache-2.0 */
#include "bench/opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/track.h"

static const opts_scenario scenarios[] = {
    {"conn", MAP_NONE, 'c', 0, 0, 0, 0, false,
     "open --conns idle connections at --rate connects/s (0 = as fast as possible), hold them --duration s"},
    {"fanin", MAP_ALL, 't', 100, 1, 0, 0, false, "--pubs publishers, --subs subscribers that each get everything"},
    {"fanout", MAP_ALL, 'o', 1, 100, 1, 0, false, "one publisher (--pubs), many subscribers on the same topic"},
    {"p2p", MAP_PAIR, 'p', 10, 10, 0, 0, false, "--pubs pairs: publisher i to subscriber i on its own topic"},
    {"shared", MAP_GROUP, 's', 10, 10, 0, 0, false, "subscribers are one $share/g group: each message reaches one"},
    {"retained", MAP_RETAINED, 'r', 0, 10, 1000, 0, false,
     "seed --topics retained messages, subscribers fetch them with '+' round after round"},
    {"xnode", MAP_ALL, 'x', 1, 1, 0, 1000, true, "publishers on the first host:port, subscribers on the second"},
};

#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- value parsers: 0 or -1 ---- */

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        return -1;
    }
    *out = v;
    return 0;
}

static bool is_loopback(struct in_addr a)
{
    return (ntohl(a.s_addr) >> 24) == 127;
}

static int parse_ip(const char *s, struct in_addr *out)
{
    if (!strcmp(s, "localhost")) {
        s = "127.0.0.1";
    }
    if (inet_pton(AF_INET, s, out) != 1 || !is_loopback(*out)) {
        return -1;
    }
    return 0;
}

/* Calls fn(lo, hi) for every item of a comma list; an item "a-b" is a
 * range, a plain item is passed as lo == hi. */
typedef int (*item_fn)(const char *lo, const char *hi, void *arg);

static int each_item(const char *list, item_fn fn, void *arg)
{
    char buf[1024];
    if (strlen(list) >= sizeof(buf)) {
        return -1;
    }
    strcpy(buf, list);
    char *save = NULL;
    for (char *it = strtok_r(buf, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(it, '-');
        if (dash) {
            *dash = '\0';
        }
        if (fn(it, dash ? dash + 1 : it, arg) != 0) {
            return -1;
        }
    }
    return 0;
}

typedef struct ip_list {
    struct in_addr *v;
    int n;
    int cap;
} ip_list;

static int ip_item(const char *lo, const char *hi, void *arg)
{
    ip_list *l = arg;
    struct in_addr a, b;
    if (parse_ip(lo, &a) != 0 || parse_ip(hi, &b) != 0 || ntohl(a.s_addr) > ntohl(b.s_addr)) {
        return -1;
    }
    for (uint32_t x = ntohl(a.s_addr); x <= ntohl(b.s_addr); x++) {
        if (l->n >= l->cap) {
            return -1;
        }
        l->v[l->n++].s_addr = htonl(x);
    }
    return 0;
}

typedef struct port_list {
    uint16_t v[OPTS_MAX_ADDRS];
    int n;
} port_list;

static int port_item(const char *lo, const char *hi, void *arg)
{
    port_list *l = arg;
    long a, b;
    if (parse_long(lo, 1, 65535, &a) != 0 || parse_long(hi, a, 65535, &b) != 0) {
        return -1;
    }
    for (long p = a; p <= b; p++) {
        if (l->n >= OPTS_MAX_ADDRS) {
            return -1;
        }
        l->v[l->n++] = (uint16_t)p;
    }
    return 0;
}

/* ---- the option table ---- */

typedef enum opt_kind { K_INT, K_U32, K_DBL, K_TRUE, K_FALSE, K_STR, K_CRED, K_HOSTS, K_PORTS, K_SRCS } opt_kind;

typedef struct opt {
    const char *name;
    opt_kind kind;
    size_t off;
    double lo, hi;
    const char *help;
} opt;

#define O(f) offsetof(bench_opts, f)

static const opt opts[] = {
    {"qos", K_INT, O(qos), 0, 2, "QoS of publishes and subscriptions [0]"},
    {"size", K_U32, O(size), TRACK_HEADER, 16 * 1024 * 1024, "payload bytes, at least 20 [64]"},
    {"version", K_INT, O(version), 3, 5, "MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5 [4]"},
    {"rate", K_DBL, O(rate), 0, 1e9,
     "msg/s for all publishers together, open loop (conn: connects/s); 0 = as fast as possible [0]"},
    {"inflight", K_U32, O(inflight), 1, 65000, "unacknowledged QoS 1/2 publishes per publisher [16]"},
    {"duration", K_DBL, O(duration), 0, 86400, "seconds to publish (conn: to hold) [10]"},
    {"drain", K_DBL, O(drain), 0, 3600,
     "give up waiting for acks and deliveries after this many seconds without any (at most 10x this after publishing) [10]"},
    {"setup-timeout", K_DBL, O(setup_timeout), 1, 3600, "seconds to connect and subscribe everyone [60]"},
    {"connect-timeout", K_DBL, O(connect_timeout), 1, 3600, "seconds one connection may take to get its CONNACK [10]"},
    {"pending", K_U32, O(pending), 1, 1000000, "connects in flight at once (sent, no CONNACK yet), per process [256]"},
    {"host", K_HOSTS, 0, 0, 0, "broker hosts, comma list, 127.0.0.0/8 only [127.0.0.1]"},
    {"port", K_PORTS, 0, 0, 0, "broker ports, comma list or ranges; addresses are host x port [1883]"},
    {"src", K_SRCS, 0, 0, 0, "source addresses to bind, e.g. 127.0.0.2-127.0.0.40 [kernel's choice]"},
    {"procs", K_INT, O(procs), 1, 64, "processes; clients are spread over them and results merged [1]"},
    {"keepalive", K_INT, O(keepalive), 0, 65535, "MQTT keep alive, seconds [60]"},
    {"clean", K_TRUE, O(clean), 0, 0, "clean session / clean start (default)"},
    {"persistent", K_FALSE, O(clean), 0, 0, "persistent session (v5: session expiry 1 h)"},
    {"client-prefix", K_STR, O(prefix), 0, 0, "client id prefix; ids are PREFIX<n> [sb<pid>-]"},
    {"username", K_CRED, O(username), 0, 0, "CONNECT user name [none]"},
    {"password", K_CRED, O(password), 0, 0, "CONNECT password [none]"},
    {"conns", K_U32, O(conns), 1, 10000000, "conn: connections to open [1000]"},
    {"pubs", K_U32, O(pubs), 0, 1000000, "publishers (p2p: pairs) [per scenario]"},
    {"subs", K_U32, O(subs), 0, 1000000, "subscribers [per scenario]"},
    {"topics", K_U32, O(topics), 1, 10000000, "topics publishers spread over; retained: messages [per scenario]"},
    {"quiet", K_TRUE, O(quiet), 0, 0, "no progress lines on stderr"},
    {"subscribe", K_TRUE, O(subscribe), 0, 0,
     "conn: each connection subscribes to its own topic bench/PREFIX/c/<n> at --qos and counts what arrives"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

void opts_usage(FILE *out)
{
    fprintf(out, "Usage: shoal-bench SCENARIO [options]\n\n"
                 "A load generator for any MQTT broker. Progress once a second on stderr, one JSON\n"
                 "result on stdout. Latency runs from the intended send time, in microseconds.\n\nScenarios:\n");
    for (size_t i = 0; i < NSCENARIOS; i++) {
        fprintf(out, "  %-10s %s\n", scenarios[i].name, scenarios[i].help);
    }
    fprintf(out, "\nOptions:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[40];
        bool flag = opts[i].kind == K_TRUE || opts[i].kind == K_FALSE;
        snprintf(left, sizeof(left), "--%s%s", opts[i].name, flag ? "" : " V");
        fprintf(out, "  %-20s %s\n", left, opts[i].help);
    }
}

static void defaults(bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->size = 64;
    o->version = 4;
    o->rate = -1;
    o->inflight = 16;
    o->duration = 10;
    o->drain = 10;
    o->setup_timeout = 60;
    o->connect_timeout = 10;
    o->pending = 256;
    o->procs = 1;
    o->keepalive = 60;
    o->clean = true;
    snprintf(o->prefix, sizeof(o->prefix), "sb%d-", (int)getpid());
}

static int set_value(bench_opts *o, const opt *d, const char *v, port_list *ports, ip_list *hosts, ip_list *srcs)
{
    char *f = (char *)o + d->off;
    long l;
    double x;
    switch (d->kind) {
    case K_INT:
        return parse_long(v, (long)d->lo, (long)d->hi, &l) ? -1 : (*(int *)f = (int)l, 0);
    case K_U32:
        return parse_long(v, (long)d->lo, (long)d->hi, &l) ? -1 : (*(uint32_t *)f = (uint32_t)l, 0);
    case K_DBL:
        return parse_double(v, d->lo, d->hi, &x) ? -1 : (*(double *)f = x, 0);
    case K_STR:
        return strlen(v) >= sizeof(o->prefix) || strpbrk(v, "+#/") ? -1 : (strcpy(f, v), 0);
    case K_CRED:
        return strlen(v) >= sizeof(o->username) ? -1 : (strcpy(f, v), 0);
    case K_HOSTS:
        hosts->n = 0;
        return each_item(v, ip_item, hosts);
    case K_PORTS:
        ports->n = 0;
        return each_item(v, port_item, ports);
    case K_SRCS:
        srcs->n = 0;
        return each_item(v, ip_item, srcs);
    case K_TRUE:
    case K_FALSE:
        *(bool *)f = d->kind == K_TRUE;
        return 0;
    }
    return -1;
}

static const opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len)) {
            return &opts[i];
        }
    }
    return NULL;
}

static int apply_scenario_defaults(bench_opts *o, char *err, size_t errlen)
{
    const opts_scenario *sc = o->sc;
    if (o->rate < 0) {
        o->rate = sc->rate;
    }
    if (sc->map == MAP_NONE) {
        o->conns = o->conns ? o->conns : 1000;
        o->pubs = o->subs = 0;
        return 0;
    }
    o->pubs = o->pubs ? o->pubs : sc->pubs;
    o->subs = o->subs ? o->subs : sc->subs;
    if (sc->map == MAP_PAIR) {
        o->subs = o->pubs;
    }
    if (sc->map == MAP_RETAINED) {
        o->pubs = 0;
    }
    o->topics = o->topics ? o->topics : (sc->topics ? sc->topics : (o->pubs ? o->pubs : 1));
    if (sc->map != MAP_RETAINED && o->pubs == 0) {
        return fail(err, errlen, "%s needs at least one publisher", sc->name);
    }
    if (o->subs == 0) {
        return fail(err, errlen, "%s needs at least one subscriber", sc->name);
    }
    if (sc->split_addrs && o->n_addrs < 2) {
        return fail(err, errlen, "%s needs two addresses (e.g. --port 1883,1884)", sc->name);
    }
    return 0;
}

static void build_addrs(bench_opts *o, const ip_list *hosts, const port_list *ports)
{
    o->n_addrs = 0;
    for (int h = 0; h < hosts->n; h++) {
        for (int p = 0; p < ports->n && o->n_addrs < OPTS_MAX_ADDRS; p++) {
            struct sockaddr_in *sa = &o->addrs[o->n_addrs++];
            memset(sa, 0, sizeof(*sa));
            sa->sin_family = AF_INET;
            sa->sin_addr = hosts->v[h];
            sa->sin_port = htons(ports->v[p]);
        }
    }
}

static const opts_scenario *find_scenario(const char *name)
{
    for (size_t i = 0; i < NSCENARIOS; i++) {
        if (!strcmp(scenarios[i].name, name)) {
            return &scenarios[i];
        }
    }
    return NULL;
}

int opts_parse(bench_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    struct in_addr host_v[OPTS_MAX_ADDRS];
    ip_list hosts = {host_v, 0, OPTS_MAX_ADDRS};
    ip_list srcs = {o->srcs, 0, OPTS_MAX_SRCS};
    port_list ports = {{1883}, 1};
    defaults(o);
    parse_ip("127.0.0.1", &host_v[0]);
    hosts.n = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            opts_usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (o->sc || !(o->sc = find_scenario(a))) {
                return fail(err, errlen, "unknown scenario or stray argument '%s'", a);
            }
            continue;
        }
        const char *eq = strchr(a, '=');
        const opt *d = find_opt(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        if (!d) {
            return fail(err, errlen, "unknown option '%s'", a);
        }
        const char *v = eq ? eq + 1 : NULL;
        bool flag = d->kind == K_TRUE || d->kind == K_FALSE;
        if (!v && !flag) {
            if (i + 1 >= argc) {
                return fail(err, errlen, "--%s needs a value", d->name);
            }
            v = argv[++i];
        }
        if (set_value(o, d, v, &ports, &hosts, &srcs) != 0) {
            return fail(err, errlen, "bad value for --%s: '%s' (addresses must be in 127.0.0.0/8)", d->name,
                        v ? v : "");
        }
    }
    if (!o->sc) {
        return fail(err, errlen, "no scenario given (try --help)");
    }
    o->n_srcs = srcs.n;
    build_addrs(o, &hosts, &ports);
    return apply_scenario_defaults(o, err, errlen);
}

uint32_t opts_clients(const bench_opts *o)
{
    if (o->sc->map == MAP_NONE) {
        return o->conns;
    }
    return o->pubs + o->subs + (o->sc->map == MAP_RETAINED ? 1u : 0u);
}

/* The run's topic root: "bench/" and the prefix without trailing '-'. */
static int root(const bench_opts *o, char *buf, size_t len)
{
    size_t n = strlen(o->prefix);
    while (n > 1 && (o->prefix[n - 1] == '-' || o->prefix[n - 1] == '_')) {
        n--;
    }
    return snprintf(buf, len, "bench/%.*s/%c/", (int)n, o->prefix, o->sc->letter);
}

void opts_topic(const bench_opts *o, uint32_t pub, char *buf)
{
    int n = root(o, buf, OPTS_TOPIC_MAX);
    opts_map m = o->sc->map;
    uint32_t t = m == MAP_PAIR || m == MAP_RETAINED || m == MAP_NONE ? pub : pub % o->topics;
    snprintf(buf + n, OPTS_TOPIC_MAX - (size_t)n, "%u", t);
}

void opts_filter(const bench_opts *o, uint32_t sub, char *buf)
{
    if (o->sc->map == MAP_GROUP) {
        int n = snprintf(buf, OPTS_TOPIC_MAX, "$share/g/");
        n += root(o, buf + n, OPTS_TOPIC_MAX - (size_t)n);
        snprintf(buf + n, OPTS_TOPIC_MAX - (size_t)n, "+");
        return;
    }
    int n = root(o, buf, OPTS_TOPIC_MAX);
    if (o->sc->map == MAP_PAIR) {
        snprintf(buf + n, OPTS_TOPIC_MAX - (size_t)n, "%u", sub);
    } else {
        snprintf(buf + n, OPTS_TOPIC_MAX - (size_t)n, "+");
    }
}

void opts_addr_text(const struct sockaddr_in *sa, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(buf, len, "%s:%u", ip, ntohs(sa->sin_port));
}
