/* SPDX-License-Identifier: Apache-2.0 */
/* shoal ctl: a tiny HTTP/1.1 client over a plain socket, a command table
 * and a table printer. */
#include "node/tools/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "node/http/json.h"

#define CTL_OK 0
#define CTL_ERR 1
#define CTL_USAGE 2
#define CONNECT_TIMEOUT_MS 10000
#define IO_TIMEOUT_S 30
#define MAX_RESPONSE (64u << 20)

typedef struct ctl {
    const char *url;
    const char *token;
    bool json;
    const char *filter;
    const char *limit;
    bool keep_clients; /* drain: the listeners only */
    bool no_wait;      /* drain: do not wait for it to finish */
    char host[256];
    char port[8];
    char base[256]; /* path prefix from the URL, no trailing '/' */
    const char *args[4];
    int nargs;
} ctl;

typedef struct response {
    int status;
    char *body;
    size_t len;
} response;

static void usage(FILE *out)
{
    fprintf(out, "Usage: shoal ctl [--url URL] [--token TOKEN] [--json] COMMAND\n\n"
                 "Commands:\n"
                 "  status                      this node: id, version, uptime, readiness\n"
                 "  nodes                       nodes of the cluster\n"
                 "  clients [--filter F] [--limit N]\n"
                 "                              connected clients and offline sessions (id contains F)\n"
                 "  kick CLIENTID               disconnect a client (MQTT 5: reason 0x98)\n"
                 "  drain [--no-wait]           drain the node: not ready, listeners closed, publishes\n"
                 "                              in flight answered, clients disconnected (MQTT 5: 0x8B,\n"
                 "                              or 0x9C with --server-reference); waits until done\n"
                 "  drain --keep-clients        only close the listeners and report not ready\n"
                 "  retained ls [FILTER]        retained messages matching FILTER (default #)\n"
                 "  retained rm TOPIC           delete the retained message on TOPIC\n\n"
                 "Options:\n"
                 "  --url URL      the node's HTTP endpoint [$SHOAL_URL or http://127.0.0.1:8080]\n"
                 "  --token TOKEN  admin token [$SHOAL_ADMIN_TOKEN]\n"
                 "  --json         print the API's JSON instead of a table\n\n"
                 "Exit status: 0 ok, 1 HTTP or API error, 2 usage error.\n");
}

/* --- URL and HTTP --------------------------------------------------------- */

static int parse_url(ctl *c)
{
    const char *u = c->url;
    if (strncasecmp(u, "http://", 7) != 0) {
        fprintf(stderr, "shoal ctl: --url must start with http://, not '%s'\n", u);
        return CTL_USAGE;
    }
    u += 7;
    const char *path = strchr(u, '/');
    size_t hostport = path ? (size_t)(path - u) : strlen(u);
    const char *colon = NULL;
    const char *h = u;
    size_t hlen;
    if (*u == '[') {
        const char *close = memchr(u, ']', hostport);
        if (!close) {
            fprintf(stderr, "shoal ctl: bad IPv6 address in --url '%s'\n", c->url);
            return CTL_USAGE;
        }
        h = u + 1;
        hlen = (size_t)(close - h);
        colon = close + 1 < u + hostport && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(u, ':', hostport);
        hlen = colon ? (size_t)(colon - u) : hostport;
    }
    size_t plen = colon ? (size_t)(u + hostport - colon - 1) : 0;
    if (hlen == 0 || hlen >= sizeof(c->host) || (colon && (plen == 0 || plen >= sizeof(c->port)))) {
        fprintf(stderr, "shoal ctl: bad --url '%s'\n", c->url);
        return CTL_USAGE;
    }
    memcpy(c->host, h, hlen);
    c->host[hlen] = '\0';
    if (colon) {
        memcpy(c->port, colon + 1, plen);
        c->port[plen] = '\0';
        if (strspn(c->port, "0123456789") != plen) {
            fprintf(stderr, "shoal ctl: bad port in --url '%s'\n", c->url);
            return CTL_USAGE;
        }
    } else {
        strcpy(c->port, "80");
    }
    snprintf(c->base, sizeof(c->base), "%s", path ? path : "");
    size_t bl = strlen(c->base);
    while (bl && c->base[bl - 1] == '/') {
        c->base[--bl] = '\0';
    }
    return CTL_OK;
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static void url_encode(char *dst, size_t dstlen, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (; *s && k + 4 < dstlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch)) {
            dst[k++] = (char)ch;
        } else {
            dst[k++] = '%';
            dst[k++] = hex[ch >> 4];
            dst[k++] = hex[ch & 15];
        }
    }
    dst[k] = '\0';
}

static int connect_to(const ctl *c, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int gai = getaddrinfo(c->host, c->port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", c->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    snprintf(err, errlen, "cannot connect to %s", c->url);
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int soerr = ETIMEDOUT;
            socklen_t sl = sizeof(soerr);
            if (poll(&p, 1, CONNECT_TIMEOUT_MS) == 1) {
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            }
            rc = soerr ? -1 : 0;
            errno = soerr;
        }
        if (rc != 0) {
            snprintf(err, errlen, "cannot connect to %s: %s", c->url, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        struct timeval tv = {IO_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    freeaddrinfo(res);
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Decode a chunked body in place; returns its length or -1. */
static long dechunk(char *p, size_t n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long sz = strtoul(p + in, &end, 16);
        char *eol = memmem(p + in, n - in, "\r\n", 2);
        if (end == p + in || !eol) {
            return -1;
        }
        in = (size_t)(eol - p) + 2;
        if (sz == 0) {
            return (long)out;
        }
        if (sz > n - in) {
            return -1;
        }
        memmove(p + out, p + in, sz);
        out += sz;
        in += sz + 2;
        if (in > n) {
            return -1;
        }
    }
}

/* Read to EOF into a NUL-terminated malloc'd buffer; NULL on error. */
static char *read_all(const ctl *c, int fd, size_t *len, char *err, size_t errlen)
{
    size_t cap = 16384;
    char *buf = malloc(cap);
    *len = 0;
    while (buf) {
        if (*len + 1 >= cap) {
            char *bigger = cap * 2 <= MAX_RESPONSE ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                snprintf(err, errlen, "response from %s too large", c->url);
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + *len, cap - *len - 1, 0);
        if (got == 0) {
            buf[*len] = '\0';
            return buf;
        }
        if (got < 0) {
            snprintf(err, errlen, "cannot read from %s: %s", c->url, strerror(errno));
            break;
        }
        *len += (size_t)got;
    }
    free(buf);
    return NULL;
}

/* Status line, headers, body (Content-Length or chunked). Takes buf. */
static int parse_response(const ctl *c, char *buf, size_t len, response *r, char *err, size_t errlen)
{
    char *hdr_end = strstr(buf, "\r\n\r\n");
    int minor;
    if (!hdr_end || sscanf(buf, "HTTP/1.%d %d", &minor, &r->status) != 2) {
        snprintf(err, errlen, "%s did not answer HTTP", c->url);
        free(buf);
        return -1;
    }
    *hdr_end = '\0';
    char *body = hdr_end + 4;
    size_t blen = len - (size_t)(body - buf);
    if (strcasestr(buf, "\r\nTransfer-Encoding: chunked")) {
        long dl = dechunk(body, blen);
        if (dl < 0) {
            snprintf(err, errlen, "bad chunked body from %s", c->url);
            free(buf);
            return -1;
        }
        blen = (size_t)dl;
    }
    /* The body moves to the front of the buffer, which the caller frees. */
    memmove(buf, body, blen);
    buf[blen] = '\0';
    r->body = buf;
    r->len = blen;
    return 0;
}

/* One request (Connection: close); the whole answer is read to EOF. */
static int http_call(const ctl *c, const char *method, const char *path, response *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    int fd = connect_to(c, err, errlen);
    if (fd < 0) {
        return -1;
    }
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: shoal-ctl/" SHOAL_VERSION
                     "\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: 0\r\n",
                     method, c->base, path, c->host, c->port);
    if (c->token && *c->token && n < (int)sizeof(req)) {
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Authorization: Bearer %s\r\n", c->token);
    }
    if (n < (int)sizeof(req)) {
        n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    }
    if (n >= (int)sizeof(req)) {
        snprintf(err, errlen, "request too long");
        close(fd);
        return -1;
    }
    if (!send_all(fd, req, (size_t)n)) {
        snprintf(err, errlen, "cannot send to %s: %s", c->url, strerror(errno));
        close(fd);
        return -1;
    }
    size_t len;
    char *buf = read_all(c, fd, &len, err, errlen);
    close(fd);
    return buf ? parse_response(c, buf, len, r, err, errlen) : -1;
}

/* --- output ------------------------------------------------------------------ */

/* Columns wide enough for UTF-8 text: count code points, not bytes. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) {
        w += ((unsigned char)*s & 0xc0) != 0x80;
    }
    return w;
}

static void cell_text(const json_val *v, char *dst, size_t len)
{
    if (!v || v->type == JSON_NULL) {
        snprintf(dst, len, "-");
    } else if (v->type == JSON_BOOL) {
        snprintf(dst, len, "%s", v->b ? "yes" : "no");
    } else if (v->type == JSON_NUM) {
        if (v->num == (double)(long long)v->num) {
            snprintf(dst, len, "%lld", (long long)v->num);
        } else {
            snprintf(dst, len, "%g", v->num);
        }
    } else if (v->type == JSON_STR) {
        snprintf(dst, len, "%s", v->str);
    } else {
        snprintf(dst, len, "%s", v->type == JSON_ARR ? "[...]" : "{...}");
    }
    /* A table row is one line: control characters would break it. */
    for (char *p = dst; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}

typedef struct column {
    const char *title;
    const char *key;
} column;

#define CELL 512

static void print_table(const column *cols, size_t ncols, const json_val *rows)
{
    size_t nrows = rows && rows->type == JSON_ARR ? rows->n : 0;
    size_t width[8] = {0};
    char cell[CELL];
    for (size_t k = 0; k < ncols; k++) {
        width[k] = strlen(cols[k].title);
        for (size_t i = 0; i < nrows; i++) {
            cell_text(json_get(&rows->items[i], cols[k].key), cell, sizeof(cell));
            size_t w = text_width(cell);
            width[k] = w > width[k] ? w : width[k];
        }
    }
    for (size_t i = 0; i <= nrows; i++) {
        for (size_t k = 0; k < ncols; k++) {
            if (i == 0) {
                snprintf(cell, sizeof(cell), "%s", cols[k].title);
            } else {
                cell_text(json_get(&rows->items[i - 1], cols[k].key), cell, sizeof(cell));
            }
            bool last = k + 1 == ncols;
            fputs(cell, stdout);
            for (size_t pad = text_width(cell); !last && pad < width[k] + 2; pad++) {
                fputc(' ', stdout);
            }
        }
        fputc('\n', stdout);
    }
}

static void print_duration(uint64_t s)
{
    if (s >= 86400) {
        printf("%llud%02lluh%02llum", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600),
               (unsigned long long)(s % 3600 / 60));
    } else if (s >= 3600) {
        printf("%lluh%02llum%02llus", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60),
               (unsigned long long)(s % 60));
    } else {
        printf("%llum%02llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
    }
}

/* --- commands ------------------------------------------------------------------ */

/* Runs a request; on success (2xx) returns 0 and either prints the JSON
 * (--json) or hands back the parsed body. Errors are printed here. */
static int call(const ctl *c, const char *method, const char *path, json_val **out)
{
    response r;
    char err[512];
    *out = NULL;
    if (http_call(c, method, path, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "shoal ctl: %s\n", err);
        return CTL_ERR;
    }
    json_val *v = json_parse(r.body, r.len);
    if (r.status < 200 || r.status > 299) {
        const json_val *e = json_get(v, "error");
        fprintf(stderr, "shoal ctl: %s (HTTP %d)\n", e && e->type == JSON_STR ? e->str : "request failed", r.status);
        json_free(v);
        free(r.body);
        return CTL_ERR;
    }
    if (!v) {
        fprintf(stderr, "shoal ctl: %s%s answered with invalid JSON\n", c->url, path);
        free(r.body);
        return CTL_ERR;
    }
    if (c->json) {
        fwrite(r.body, 1, r.len, stdout);
        if (r.len == 0 || r.body[r.len - 1] != '\n') {
            fputc('\n', stdout);
        }
    }
    free(r.body);
    *out = v;
    return CTL_OK;
}

static const char *str_of(const json_val *obj, const char *key)
{
    const json_val *v = json_get(obj, key);
    return v && v->type == JSON_STR ? v->str : "-";
}

static double num_of(const json_val *obj, const char *key)
{
    const json_val *v = json_get(obj, key);
    return v && v->type == JSON_NUM ? v->num : 0;
}

static int cmd_status(ctl *c)
{
    json_val *v;
    int rc = call(c, "GET", "/api/v1/node", &v);
    if (rc == CTL_OK && !c->json) {
        const json_val *ready = json_get(v, "ready");
        const json_val *draining = json_get(v, "draining");
        printf("node         %s\n", str_of(v, "node_id"));
        printf("version      %s\n", str_of(v, "version"));
        printf("uptime       ");
        print_duration((uint64_t)num_of(v, "uptime_s"));
        const char *state = draining && draining->b ? "draining" : (ready && ready->b ? "ready" : "not ready");
        printf("\nstate        %s\n", state);
        printf("backplane    %s\n", str_of(v, "backplane"));
        printf("workers      %.0f\n", num_of(v, "workers"));
        printf("mqtt port    %.0f\n", num_of(v, "port"));
        printf("http port    %.0f\n", num_of(v, "http_port"));
        printf("connections  %.0f\n", num_of(v, "connections"));
        printf("sessions     %.0f\n", num_of(v, "sessions"));
    }
    json_free(v);
    return rc;
}

static int cmd_nodes(ctl *c)
{
    json_val *v;
    int rc = call(c, "GET", "/api/v1/nodes", &v);
    if (rc == CTL_OK && !c->json) {
        static const column cols[] = {{"NODE", "node_id"}, {"ADDRESS", "address"}, {"SELF", "self"}};
        print_table(cols, 3, json_get(v, "nodes"));
    }
    json_free(v);
    return rc;
}

static int cmd_clients(ctl *c)
{
    char path[2048], f[1536] = "", lim[32] = "";
    url_encode(f, sizeof(f), c->filter ? c->filter : "");
    if (c->limit) {
        url_encode(lim, sizeof(lim), c->limit);
    }
    snprintf(path, sizeof(path), "/api/v1/clients?filter=%s%s%s", f, *lim ? "&limit=" : "", lim);
    json_val *v;
    int rc = call(c, "GET", path, &v);
    if (rc == CTL_OK && !c->json) {
        static const column cols[] = {
            {"CLIENT_ID", "client_id"}, {"CONNECTED", "connected"}, {"VERSION", "version"},
            {"PEER", "peer"},           {"KEEPALIVE", "keepalive"}, {"SUBS", "subscriptions"},
        };
        const json_val *rows = json_get(v, "clients");
        print_table(cols, 6, rows);
        size_t shown = rows && rows->type == JSON_ARR ? rows->n : 0;
        if ((double)shown < num_of(v, "total")) {
            printf("(%zu of %.0f shown; use --limit)\n", shown, num_of(v, "total"));
        }
    }
    json_free(v);
    return rc;
}

static int cmd_kick(ctl *c)
{
    char path[2048], id[1536];
    url_encode(id, sizeof(id), c->args[1]);
    snprintf(path, sizeof(path), "/api/v1/clients/%s", id);
    json_val *v;
    int rc = call(c, "DELETE", path, &v);
    if (rc == CTL_OK && !c->json) {
        printf("kicked %s\n", c->args[1]);
    }
    json_free(v);
    return rc;
}

/* Poll GET /api/v1/node until the drain is done, a little past its own
 * bound. Prints the final node JSON with --json. */
static int wait_drained(ctl *c, double timeout_ms)
{
    bool json = c->json;
    c->json = false;
    int rc = CTL_ERR;
    struct timeval t0, now;
    gettimeofday(&t0, NULL);
    for (;;) {
        json_val *v;
        if (call(c, "GET", "/api/v1/node", &v) != CTL_OK) {
            break;
        }
        const json_val *d = json_get(v, "drain");
        if (!strcmp(str_of(d, "state"), "done")) {
            if (json) {
                c->json = true;
                json_free(v);
                rc = call(c, "GET", "/api/v1/node", &v);
            } else {
                printf("drained: %.0f clients disconnected, %.0f closed at the timeout, in %.0f ms\n",
                       num_of(d, "disconnected"), num_of(d, "forced"), num_of(d, "elapsed_ms"));
                rc = CTL_OK;
            }
            json_free(v);
            break;
        }
        json_free(v);
        gettimeofday(&now, NULL);
        double ms = (double)(now.tv_sec - t0.tv_sec) * 1000.0 + (double)(now.tv_usec - t0.tv_usec) / 1000.0;
        if (ms > timeout_ms + 5000.0) {
            fprintf(stderr, "shoal ctl: the drain did not finish within %.0f ms\n", timeout_ms);
            break;
        }
        usleep(200 * 1000);
    }
    c->json = json;
    return rc;
}

static int cmd_drain(ctl *c)
{
    json_val *v;
    bool quiet = c->json && !c->keep_clients && !c->no_wait; /* --json: only the final state */
    bool json = c->json;
    c->json = c->json && !quiet;
    int rc = call(c, "POST", c->keep_clients ? "/api/v1/drain?disconnect=0" : "/api/v1/drain", &v);
    c->json = json;
    if (rc == CTL_OK && c->keep_clients && !c->json) {
        printf("draining: %.0f listeners closed, %.0f clients disconnected\n", num_of(v, "listeners_closed"),
               num_of(v, "clients_disconnected"));
    } else if (rc == CTL_OK && !c->keep_clients) {
        const json_val *d = json_get(v, "drain");
        if (!c->json) {
            printf("draining: %.0f connections, timeout %.0f ms\n", num_of(d, "connections"), num_of(d, "timeout_ms"));
            fflush(stdout);
        }
        if (!c->no_wait) {
            rc = wait_drained(c, num_of(d, "timeout_ms"));
        }
    }
    json_free(v);
    return rc;
}

static int cmd_retained_ls(ctl *c)
{
    char path[2048], f[1536];
    url_encode(f, sizeof(f), c->nargs > 2 ? c->args[2] : "#");
    snprintf(path, sizeof(path), "/api/v1/retained?filter=%s", f);
    if (c->limit) {
        char lim[32];
        url_encode(lim, sizeof(lim), c->limit);
        strncat(path, "&limit=", sizeof(path) - strlen(path) - 1);
        strncat(path, lim, sizeof(path) - strlen(path) - 1);
    }
    json_val *v;
    int rc = call(c, "GET", path, &v);
    if (rc == CTL_OK && !c->json) {
        static const column cols[] = {
            {"TOPIC", "topic"}, {"QOS", "qos"}, {"BYTES", "payload_bytes"}, {"PAYLOAD", "payload_preview"}};
        const json_val *rows = json_get(v, "retained");
        print_table(cols, 4, rows);
        size_t shown = rows && rows->type == JSON_ARR ? rows->n : 0;
        if ((double)shown < num_of(v, "total")) {
            printf("(%zu of %.0f shown; use --limit)\n", shown, num_of(v, "total"));
        }
    }
    json_free(v);
    return rc;
}

static int cmd_retained_rm(ctl *c)
{
    char path[2048], t[1536];
    url_encode(t, sizeof(t), c->args[2]);
    snprintf(path, sizeof(path), "/api/v1/retained/%s", t);
    json_val *v;
    int rc = call(c, "DELETE", path, &v);
    if (rc == CTL_OK && !c->json) {
        printf("deleted retained message on %s\n", c->args[2]);
    }
    json_free(v);
    return rc;
}

typedef struct command {
    const char *name;
    const char *sub; /* second word, or NULL */
    int min_args;    /* words, command included */
    int max_args;
    int (*fn)(ctl *c);
} command;

static const command commands[] = {
    {"status", NULL, 1, 1, cmd_status},        {"nodes", NULL, 1, 1, cmd_nodes},
    {"clients", NULL, 1, 1, cmd_clients},      {"kick", NULL, 2, 2, cmd_kick},
    {"drain", NULL, 1, 1, cmd_drain},          {"retained", "ls", 2, 3, cmd_retained_ls},
    {"retained", "rm", 3, 3, cmd_retained_rm},
};

/* Options may come anywhere; everything else is a command word. */
static int parse_args(ctl *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--url")      ? &c->url
                            : !strcmp(a, "--token")  ? &c->token
                            : !strcmp(a, "--filter") ? &c->filter
                            : !strcmp(a, "--limit")  ? &c->limit
                                                     : NULL;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shoal ctl: %s needs a value\n", a);
                return CTL_USAGE;
            }
            *slot = argv[++i];
        } else if (!strcmp(a, "--json")) {
            c->json = true;
        } else if (!strcmp(a, "--disconnect")) {
            /* The drain's default now; kept so scripts keep working. */
        } else if (!strcmp(a, "--keep-clients")) {
            c->keep_clients = true;
        } else if (!strcmp(a, "--no-wait")) {
            c->no_wait = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (a[0] == '-' && a[1] == '-' && a[2]) {
            fprintf(stderr, "shoal ctl: unknown option '%s'\n", a);
            return CTL_USAGE;
        } else if (c->nargs < (int)(sizeof(c->args) / sizeof(c->args[0]))) {
            c->args[c->nargs++] = a;
        } else {
            fprintf(stderr, "shoal ctl: too many arguments\n");
            return CTL_USAGE;
        }
    }
    return CTL_OK;
}

int ctl_main(int argc, char **argv)
{
    ctl c;
    memset(&c, 0, sizeof(c));
    c.url = getenv("SHOAL_URL") ? getenv("SHOAL_URL") : "http://127.0.0.1:8080";
    c.token = getenv("SHOAL_ADMIN_TOKEN");
    int rc = parse_args(&c, argc, argv);
    if (rc != CTL_OK) {
        usage(stderr);
        return rc;
    }
    if (c.nargs == 0) {
        usage(stderr);
        return CTL_USAGE;
    }
    if ((rc = parse_url(&c)) != CTL_OK) {
        return rc;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const command *cmd = &commands[i];
        if (strcmp(cmd->name, c.args[0]) != 0 || (cmd->sub && (c.nargs < 2 || strcmp(cmd->sub, c.args[1])))) {
            continue;
        }
        if (c.nargs < cmd->min_args || c.nargs > cmd->max_args) {
            fprintf(stderr, "shoal ctl: wrong number of arguments for '%s%s%s'\n", cmd->name, cmd->sub ? " " : "",
                    cmd->sub ? cmd->sub : "");
            usage(stderr);
            return CTL_USAGE;
        }
        return cmd->fn(&c);
    }
    fprintf(stderr, "shoal ctl: unknown command '%s'\n", c.args[0]);
    usage(stderr);
    return CTL_USAGE;
}
