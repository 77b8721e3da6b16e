/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP endpoint: GET /metrics (Prometheus text 0.0.4), GET
 * /health/live and /health/ready, and the admin API under /api/v1/
 * (node/http/admin.c). It runs on its own thread with its own event_base, so a
 * slow scrape or a slow admin client never stalls an MQTT worker; it reads
 * counters with atomics and reaches worker-owned objects only by posting
 * work to the owning worker's loop. */
#ifndef SHOAL_NODE_HTTP_H
#define SHOAL_NODE_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct broker broker;

typedef struct http_server http_server;

/* Bind --http-bind:--http-port and start the thread. Call after
 * the workers start (broker_start; the workers' loops must exist). Returns NULL and logs
 * why on failure (e.g. the port is taken). */
http_server *http_start(broker *b);

/* The bound port (the chosen one with --http-port 0). */
uint16_t http_port(const http_server *h);

/* "http://127.0.0.1:8080": the URL to reach the endpoint from this host
 * (a wildcard bind address becomes loopback). */
void http_url(const http_server *h, char *dst, size_t len);

/* Stop the thread, then free. Call before worker_stop_all: an admin
 * request in flight may be waiting on a worker. Blocks until the request
 * being served (if any) finishes. NULL is ignored. */
void http_stop(http_server *h);

/* --http-* and --admin-token options (config.http). */
typedef struct http_config {
    int port;
    char *bind;
    char *admin_token;
    bool metrics_auth;
} http_config;

/* Operations state (broker.ops), node/http/admin.c. */
typedef struct http_ops {
    http_server *server;   /* NULL until broker_start (not in-process) */
    _Atomic bool draining; /* listeners closed by POST /api/v1/drain: not ready */
} http_ops;

#endif
