/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by node/http/http.c (server, routing, auth, health, metrics) and
 * node/http/admin.c (the /api/v1 handlers). Not for use outside node/. */
#ifndef SHOAL_NODE_HTTP_IMPL_H
#define SHOAL_NODE_HTTP_IMPL_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>

#include "node/broker.h"
#include "node/http/http.h"
#include "node/http/json.h"

/* One request being served, on the HTTP thread. */
typedef struct http_req {
    broker *b;
    http_server *h;
    struct evhttp_request *req;
    /* The path after a prefix route ("/api/v1/clients/" → the client id),
     * percent-decoded and NUL-free; "" for exact routes. */
    const char *rest;
    struct evkeyvalq query; /* decoded query string */
    char peer[64];          /* "host:port" of the caller, for audit logs */
    int code;               /* the status sent; req may be gone after it */
} http_req;

/* Send body (consumed) as application/json with this status. */
void http_reply_json(http_req *r, int code, json_buf *body);
/* {"error":"..."} with this status. */
void http_reply_error(http_req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A query parameter, or NULL. */
const char *http_query(http_req *r, const char *key);
/* A non-negative integer query parameter within [0, max]; def if absent.
 * Returns false (after replying 400) if it is malformed. */
bool http_query_uint_or_reply(http_req *r, const char *key, uint64_t def, uint64_t max, uint64_t *out);
/* admin.c: the /api/v1 handlers. */
void admin_node(http_req *r);
void admin_nodes(http_req *r);
void admin_clients(http_req *r);
void admin_client_get(http_req *r);
void admin_client_kick(http_req *r);
void admin_retained(http_req *r);
void admin_retained_delete(http_req *r);
void admin_drain(http_req *r);

#endif
