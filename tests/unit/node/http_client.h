/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP endpoint (node/http/http.c) of an in-process broker (inproc.h), on
 * port 0 of 127.0.0.1, and a blocking HTTP/1.0 client. The client runs on
 * its own thread while the test's thread turns the workers' loops: an admin
 * request posts work to the workers and waits for their answer. Shared by
 * test_http.c and test_admin.c. */
#ifndef SHOAL_TESTS_HTTP_CLIENT_H
#define SHOAL_TESTS_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "inproc.h"
#include "node/http/http.h"

#define HC_TOKEN "s3cret-token"

static config hc_cfg;
static broker hc_b;
static http_server *hc_h;

/* A broker with the HTTP endpoint and --admin-token HC_TOKEN (token NULL:
 * no token). */
static inline void hc_up(const char *token, bool metrics_auth)
{
    /* The HTTP thread posts to the workers' loops: they must lock. */
    evthread_use_pthreads();
    char *argv[] = {"--http-port",   "0",           "--http-bind",    "127.0.0.1",
                    "--admin-token", (char *)token, "--metrics-auth", metrics_auth ? "true" : "false"};
    int argc = token ? 8 : 4;
    if (!token) {
        argv[4] = "--metrics-auth";
        argv[5] = metrics_auth ? "true" : "false";
        argc = 6;
    }
    cr_assert_eq(config_load(&hc_cfg, argc, argv), 0);
    cr_assert_eq(inproc_up(&hc_b, &hc_cfg, 2), 0);
    hc_h = http_start(&hc_b);
    cr_assert_not_null(hc_h);
    cr_assert_neq(http_port(hc_h), 0);
}

static inline void hc_down(void)
{
    http_stop(hc_h);
    inproc_down(&hc_b);
    config_free(&hc_cfg);
}

typedef struct hc_res {
    int status;
    char headers[2048];
    char body[16384];
} hc_res;

typedef struct hc_call {
    const char *method;
    const char *path;
    const char *auth; /* the Authorization header, or NULL */
    hc_res *res;
    atomic_bool done;
} hc_call;

static void *hc_thread(void *arg)
{
    hc_call *c = arg;
    memset(c->res, 0, sizeof(*c->res));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(http_port(hc_h))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char req[1024];
        int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: test\r\n%s%s%s\r\n", c->method, c->path,
                         c->auth ? "Authorization: " : "", c->auth ? c->auth : "", c->auth ? "\r\n" : "");
        if (write(fd, req, (size_t)n) == n) {
            char all[sizeof(c->res->headers) + sizeof(c->res->body)];
            size_t got = 0;
            ssize_t r;
            while (got < sizeof(all) - 1 && (r = read(fd, all + got, sizeof(all) - 1 - got)) > 0) {
                got += (size_t)r;
            }
            all[got] = 0;
            char *sep = strstr(all, "\r\n\r\n");
            if (sep && sscanf(all, "HTTP/1.%*d %d", &c->res->status) == 1) {
                size_t hl = (size_t)(sep - all);
                hl = hl < sizeof(c->res->headers) - 1 ? hl : sizeof(c->res->headers) - 1;
                memcpy(c->res->headers, all, hl);
                size_t bl = strlen(sep + 4);
                bl = bl < sizeof(c->res->body) - 1 ? bl : sizeof(c->res->body) - 1;
                memcpy(c->res->body, sep + 4, bl);
            }
        }
    }
    close(fd);
    atomic_store(&c->done, true);
    return NULL;
}

/* Make the request; the workers' loops turn here until it is answered.
 * Returns the status (0: no answer). */
static inline int hc_request(const char *method, const char *path, const char *auth, hc_res *res)
{
    hc_call c = {.method = method, .path = path, .auth = auth, .res = res};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hc_thread, &c), 0);
    while (!atomic_load(&c.done)) {
        for (int i = 0; i < hc_b.nworkers; i++) {
            event_base_loop(hc_b.workers[i].base, EVLOOP_NONBLOCK);
        }
        sched_yield();
    }
    pthread_join(t, NULL);
    inproc_settle(&hc_b, NULL, NULL);
    return res->status;
}

/* With the admin token. */
static inline int hc_admin(const char *method, const char *path, hc_res *res)
{
    return hc_request(method, path, "Bearer " HC_TOKEN, res);
}

/* The header's value in the response (case-sensitive name), or "". */
static inline const char *hc_header(const hc_res *r, const char *name, char *dst, size_t len)
{
    dst[0] = 0;
    char key[128];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strstr(r->headers, key);
    if (p) {
        p += strlen(key);
        size_t n = strcspn(p, "\r\n");
        snprintf(dst, len, "%.*s", (int)n, p);
    }
    return dst;
}

#endif
