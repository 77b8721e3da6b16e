/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP endpoint: server thread, route table, auth, /metrics and
 * /health. The /api/v1 handlers are in node/http/admin.c. */
#include "node/http/http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/http/http_impl.h"
#include "node/http/metrics.h"
#include "node/http/metrics_text.h"
#include "node/worker.h"

enum route_auth {
    AUTH_OPEN = 0, /* open unless --metrics-auth */
    AUTH_ADMIN,    /* always needs the admin token */
};

typedef struct route {
    const char *path;
    bool prefix; /* path is a prefix: the rest goes to http_req.rest */
    int method;  /* EVHTTP_REQ_GET, ... */
    uint8_t auth;
    const char *name; /* the handler label in metrics */
    void (*fn)(http_req *r);
} route;

static void h_metrics(http_req *r);
static void h_live(http_req *r);
static void h_ready(http_req *r);

static const route routes[] = {
    {"/metrics", false, EVHTTP_REQ_GET, AUTH_OPEN, "/metrics", h_metrics},
    {"/health/live", false, EVHTTP_REQ_GET, AUTH_OPEN, "/health/live", h_live},
    {"/health/ready", false, EVHTTP_REQ_GET, AUTH_OPEN, "/health/ready", h_ready},
    {"/api/v1/node", false, EVHTTP_REQ_GET, AUTH_ADMIN, "/api/v1/node", admin_node},
    {"/api/v1/nodes", false, EVHTTP_REQ_GET, AUTH_ADMIN, "/api/v1/nodes", admin_nodes},
    {"/api/v1/clients", false, EVHTTP_REQ_GET, AUTH_ADMIN, "/api/v1/clients", admin_clients},
    {"/api/v1/clients/", true, EVHTTP_REQ_GET, AUTH_ADMIN, "GET /api/v1/clients/{id}", admin_client_get},
    {"/api/v1/clients/", true, EVHTTP_REQ_DELETE, AUTH_ADMIN, "DELETE /api/v1/clients/{id}", admin_client_kick},
    {"/api/v1/retained", false, EVHTTP_REQ_GET, AUTH_ADMIN, "/api/v1/retained", admin_retained},
    {"/api/v1/retained/", true, EVHTTP_REQ_DELETE, AUTH_ADMIN, "DELETE /api/v1/retained/{topic}",
     admin_retained_delete},
    {"/api/v1/drain", false, EVHTTP_REQ_POST, AUTH_ADMIN, "/api/v1/drain", admin_drain},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Request duration buckets (seconds) for shoal_http_request_duration_seconds. */
static const double dur_bounds[] = {0.001, 0.005, 0.025, 0.1, 0.5, 2.5};
#define NBOUNDS (sizeof(dur_bounds) / sizeof(dur_bounds[0]))

struct http_server {
    broker *b;
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    bool started;
    uint16_t port;
    /* Per route, plus one for requests that matched none. HTTP thread only. */
    uint64_t dur_counts[NROUTES + 1][NBOUNDS + 1];
    double dur_sum[NROUTES + 1];
};

uint16_t http_port(const http_server *h)
{
    return h->port;
}

void http_url(const http_server *h, char *dst, size_t len)
{
    const char *bind = h->b->cfg->http.bind;
    if (!strcmp(bind, "0.0.0.0")) {
        snprintf(dst, len, "http://127.0.0.1:%u", h->port);
    } else if (!strcmp(bind, "::")) {
        snprintf(dst, len, "http://[::1]:%u", h->port);
    } else if (strchr(bind, ':')) {
        snprintf(dst, len, "http://[%s]:%u", bind, h->port);
    } else {
        snprintf(dst, len, "http://%s:%u", bind, h->port);
    }
}

/* --- replies ------------------------------------------------------------ */

static void reply(http_req *r, int code, const char *type, const char *body, size_t len)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(hd, "Content-Type", type);
    evhttp_add_header(hd, "Cache-Control", "no-store");
    r->code = code;
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, len);
    evhttp_send_reply(r->req, code, NULL, out);
    evbuffer_free(out);
}

void http_reply_json(http_req *r, int code, json_buf *body)
{
    reply(r, code, "application/json", body->p ? body->p : "", body->len);
    json_buf_free(body);
}

void http_reply_error(http_req *r, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "error");
    json_str(&j, text);
    json_obj_end(&j);
    http_reply_json(r, code, &j);
}

const char *http_query(http_req *r, const char *key)
{
    return evhttp_find_header(&r->query, key);
}

bool http_query_uint_or_reply(http_req *r, const char *key, uint64_t def, uint64_t max, uint64_t *out)
{
    const char *v = http_query(r, key);
    *out = def;
    if (!v) {
        return true;
    }
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (!*v || *end || v[0] == '-' || n > max) {
        http_reply_error(r, 400, "%s must be an integer in 0..%llu", key, (unsigned long long)max);
        return false;
    }
    *out = n;
    return true;
}

/* --- /metrics and /health ------------------------------------------------ */

static void http_metrics(http_server *h, metrics_text *t)
{
    metrics_text_family(t, "shoal_http_request_duration_seconds", "histogram",
                        "time to answer HTTP requests on this endpoint, by handler");
    for (size_t i = 0; i <= NROUTES; i++) {
        metrics_label l = {"handler", i < NROUTES ? routes[i].name : "other"};
        metrics_text_histogram(t, "shoal_http_request_duration_seconds", &l, 1, dur_bounds, h->dur_counts[i], NBOUNDS,
                               h->dur_sum[i]);
    }
}

static void h_metrics(http_req *r)
{
    metrics_text t = {0};
    metrics_collect(r->b, &t);
    http_metrics(r->h, &t);
    reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", t.p, t.len);
    metrics_text_free(&t);
}

static void health(http_req *r, const char *fail_reason)
{
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "status");
    json_str(&j, fail_reason ? "fail" : "ok");
    if (fail_reason) {
        json_key(&j, "reason");
        json_str(&j, fail_reason);
    }
    json_obj_end(&j);
    http_reply_json(r, fail_reason ? 503 : 200, &j);
}

/* Alive: the process answers and every worker loop is turning. */
static void h_live(http_req *r)
{
    int stuck;
    uint64_t silent;
    if (!metrics_loops_alive(r->b, now_ms(), &stuck, &silent)) {
        char why[96];
        snprintf(why, sizeof(why), "worker %d loop has not ticked for %llu ms", stuck, (unsigned long long)silent);
        health(r, why);
        return;
    }
    health(r, NULL);
}

/* Ready: listening, the backplane is ready, not draining or stopping. */
static void h_ready(http_req *r)
{
    broker *b = r->b;
    if (atomic_load(&b->stopping)) {
        health(r, "stopping");
    } else if (atomic_load(&b->ops.draining)) {
        health(r, "draining");
    } else if (!bp_is_ready(b->bp)) {
        health(r, "backplane not ready");
    } else {
        health(r, NULL);
    }
}

/* --- dispatch ------------------------------------------------------------ */

static bool token_matches(const char *header, const char *token)
{
    static const char bearer[] = "Bearer ";
    if (!header || strncasecmp(header, bearer, sizeof(bearer) - 1) != 0) {
        return false;
    }
    const char *given = header + sizeof(bearer) - 1;
    size_t n = strlen(token);
    if (strlen(given) != n) {
        return false;
    }
    /* Compare in constant time: the token is a secret. */
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)(given[i] ^ token[i]);
    }
    return diff == 0;
}

/* True if the request may go on; otherwise the refusal has been sent. */
static bool authorized_or_reply(http_req *r, bool admin)
{
    const config *cfg = r->b->cfg;
    if (!admin && !cfg->http.metrics_auth) {
        return true;
    }
    const char *token = cfg->http.admin_token;
    if (!token || !*token) {
        http_reply_error(r, 403, "admin API disabled: set --admin-token");
        return false;
    }
    const char *hdr = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Authorization");
    if (!token_matches(hdr, token)) {
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate", "Bearer realm=\"shoal\"");
        http_reply_error(r, 401, hdr ? "invalid token" : "missing bearer token");
        return false;
    }
    return true;
}

static const char *method_name(int m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    default:
        return "?";
    }
}

/* Find the route for (method, path). *path_known says whether some route
 * has this path with another method (405 rather than 404). */
static const route *find_route(int method, const char *path, bool *path_known, const char **rest)
{
    *path_known = false;
    for (size_t i = 0; i < NROUTES; i++) {
        const route *rt = &routes[i];
        size_t n = strlen(rt->path);
        bool hit = rt->prefix ? (!strncmp(path, rt->path, n) && path[n] != '\0') : !strcmp(path, rt->path);
        if (!hit) {
            continue;
        }
        *path_known = true;
        if (rt->method == method) {
            *rest = rt->prefix ? path + n : "";
            return rt;
        }
    }
    return NULL;
}

static void allow_header(http_req *r, const char *path)
{
    char allow[64] = "";
    for (size_t i = 0; i < NROUTES; i++) {
        size_t n = strlen(routes[i].path);
        bool hit = routes[i].prefix ? !strncmp(path, routes[i].path, n) && path[n] : !strcmp(path, routes[i].path);
        if (hit) {
            if (*allow) {
                strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
            }
            strncat(allow, method_name(routes[i].method), sizeof(allow) - strlen(allow) - 1);
        }
    }
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Allow", allow);
}

static void serve(http_req *r, const char *path, char **decoded, size_t *route_idx)
{
    int method = (int)evhttp_request_get_command(r->req);
    bool admin_area = !strncmp(path, "/api/", 5) || !strcmp(path, "/api");
    /* The whole API is behind the token, unknown paths included, so an
     * unauthenticated caller learns nothing about what exists. */
    if (admin_area && !authorized_or_reply(r, true)) {
        return;
    }
    bool known;
    const char *rest;
    const route *rt = find_route(method, path, &known, &rest);
    if (!rt) {
        if (known) {
            allow_header(r, path);
            http_reply_error(r, 405, "method not allowed");
        } else {
            http_reply_error(r, 404, "no such endpoint: %s", path);
        }
        return;
    }
    *route_idx = (size_t)(rt - routes);
    if (!admin_area && !authorized_or_reply(r, rt->auth == AUTH_ADMIN)) {
        return;
    }
    if (*rest) {
        size_t n = 0;
        *decoded = evhttp_uridecode(rest, 0, &n);
        if (!*decoded || strlen(*decoded) != n) {
            http_reply_error(r, 400, "bad percent-encoding in path");
            return;
        }
        r->rest = *decoded;
    }
    rt->fn(r);
}

static void observe(http_server *h, size_t idx, double secs)
{
    size_t b = 0;
    while (b < NBOUNDS && secs > dur_bounds[b]) {
        b++;
    }
    h->dur_counts[idx][b]++;
    h->dur_sum[idx] += secs;
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    http_server *h = arg;
    uint64_t t0 = now_ms();
    http_req r = {.b = h->b, .h = h, .req = req, .rest = ""};
    TAILQ_INIT(&r.query);
    char *peer_host = NULL;
    ev_uint16_t peer_port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer_host, &peer_port);
    snprintf(r.peer, sizeof(r.peer), "%s:%u", peer_host ? peer_host : "?", peer_port);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    int method = (int)evhttp_request_get_command(req);
    if (!path || !*path) {
        path = "/";
    }
    /* Sending the reply may free req (and path with it): log from a copy. */
    char logpath[121];
    sh_log_sample(logpath, sizeof(logpath), path, strlen(path));
    char *decoded = NULL;
    size_t idx = NROUTES;
    if (q && evhttp_parse_query_str(q, &r.query) != 0) {
        http_reply_error(&r, 400, "bad query string");
    } else {
        serve(&r, path, &decoded, &idx);
    }
    free(decoded);
    evhttp_clear_headers(&r.query);
    observe(h, idx, (double)(now_ms() - t0) / 1000.0);
    sh_log(SH_DEBUG, "event=http method=%s path=\"%s\" code=%d peer=%s", method_name(method), logpath, r.code, r.peer);
}

/* --- lifecycle ------------------------------------------------------------ */

static void *http_main(void *arg)
{
    http_server *h = arg;
    event_base_dispatch(h->base);
    return NULL;
}

static uint16_t bound_port(struct evhttp_bound_socket *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void http_free(http_server *h)
{
    if (h->http) {
        evhttp_free(h->http);
    }
    if (h->base) {
        event_base_free(h->base);
    }
    sh_free(h, sizeof(*h));
}

http_server *http_start(broker *b)
{
    const config *cfg = b->cfg;
    http_server *h = sh_calloc(1, sizeof(*h));
    h->b = b;
    h->base = event_base_new();
    h->http = h->base ? evhttp_new(h->base) : NULL;
    if (!h->http) {
        sh_log(SH_ERROR, "event=http_error msg=\"cannot create the event loop\"");
        http_free(h);
        return NULL;
    }
    /* PUT and PATCH get through to the router so they get a JSON 405. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 65536);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_gencb(h->http, request_cb, h);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(h->http, cfg->http.bind, (uint16_t)cfg->http.port);
    if (!s) {
        sh_log(SH_ERROR, "event=listen_error what=http bind=%s port=%d err=\"%s\"", cfg->http.bind, cfg->http.port,
               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        http_free(h);
        return NULL;
    }
    h->port = bound_port(s);
    if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
        sh_log(SH_ERROR, "event=http_error msg=\"cannot start the thread\"");
        http_free(h);
        return NULL;
    }
    h->started = true;
    sh_log(SH_INFO, "event=http_listening bind=%s port=%u admin_api=%s metrics_auth=%s", cfg->http.bind, h->port,
           cfg->http.admin_token && *cfg->http.admin_token ? "on" : "off", cfg->http.metrics_auth ? "on" : "off");
    return h;
}

void http_stop(http_server *h)
{
    if (!h) {
        return;
    }
    if (h->started) {
        event_base_loopexit(h->base, NULL);
        pthread_join(h->thread, NULL);
    }
    http_free(h);
}
