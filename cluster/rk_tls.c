/* SPDX-License-Identifier: Apache-2.0 */
/* The rediss:// bridge: Unix socket in, TLS to Redis out. */
#include "cluster/rk_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"

typedef struct pair pair;

struct rk_tls {
    char host[256];
    char port[8];
    SSL_CTX *ctx;
    struct event_base *base;
    struct evconnlistener *listener;
    pthread_t thread;
    char dir[80];
    char path[96];
    pair *pairs;
    /* Last TLS failure logged, so a Redis that keeps refusing us is one
     * line per change, not one per reconnect. Bridge thread only. */
    char last_err[256];
};

struct pair {
    rk_tls *t;
    struct bufferevent *local;  /* hiredis side */
    struct bufferevent *remote; /* TLS to Redis */
    pair *prev, *next;
};

static void pair_free(pair *p)
{
    rk_tls *t = p->t;
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        t->pairs = p->next;
    }
    if (p->next) {
        p->next->prev = p->prev;
    }
    if (p->local) {
        bufferevent_free(p->local);
    }
    if (p->remote) {
        bufferevent_free(p->remote);
    }
    sh_free(p, sizeof(*p));
}

static void note_error(rk_tls *t, const char *err)
{
    if (strcmp(t->last_err, err) != 0) {
        snprintf(t->last_err, sizeof(t->last_err), "%s", err);
        sh_log(SH_WARN, "event=redis_tls_error host=%s port=%s err=\"%s\"", t->host, t->port, err);
    }
}

static void remote_error(pair *p, short what)
{
    char err[256] = "";
    SSL *ssl = bufferevent_openssl_get_ssl(p->remote);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(p->remote)) != 0) {
        first = first ? first : e;
    }
    if (verify != X509_V_OK) {
        snprintf(err, sizeof(err), "certificate verify failed: %s", X509_verify_cert_error_string(verify));
    } else if (first && ERR_GET_LIB(first) != 0) {
        ERR_error_string_n(first, err, sizeof(err));
    } else {
        int sock_err = EVUTIL_SOCKET_ERROR();
        snprintf(err, sizeof(err), "%s",
                 (what & BEV_EVENT_EOF) || !sock_err ? "closed by Redis during the TLS handshake"
                                                     : evutil_socket_error_to_string(sock_err));
    }
    note_error(p->t, err);
}

static void relay(struct bufferevent *from, struct bufferevent *to)
{
    bufferevent_write_buffer(to, bufferevent_get_input(from));
}

static void local_read_cb(struct bufferevent *bev, void *arg)
{
    pair *p = arg;
    relay(bev, p->remote);
}

static void remote_read_cb(struct bufferevent *bev, void *arg)
{
    pair *p = arg;
    relay(bev, p->local);
}

static void local_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        pair_free(arg);
    }
}

static void remote_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    pair *p = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (p->t->last_err[0]) {
            sh_log(SH_INFO, "event=redis_tls_up host=%s port=%s", p->t->host, p->t->port);
            p->t->last_err[0] = '\0';
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (what & BEV_EVENT_ERROR) {
            remote_error(p, what);
        }
        /* Whatever Redis sent last still reaches hiredis before the close. */
        relay(p->remote, p->local);
        bufferevent_free(p->remote);
        p->remote = NULL;
        if (evbuffer_get_length(bufferevent_get_output(p->local)) == 0) {
            pair_free(p);
        } else {
            bufferevent_setcb(p->local, NULL, NULL, local_event_cb, p);
            bufferevent_disable(p->local, EV_READ);
        }
    }
}

static void local_write_cb(struct bufferevent *bev, void *arg)
{
    pair *p = arg;
    if (!p->remote && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        pair_free(p);
    }
}

static SSL *new_ssl(rk_tls *t)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl) {
        return NULL;
    }
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, t->host, &a4) == 1 || inet_pton(AF_INET6, t->host, &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t->host);
    } else {
        SSL_set_tlsext_host_name(ssl, t->host);
        SSL_set1_host(ssl, t->host);
    }
    return ssl;
}

static struct bufferevent *connect_remote(rk_tls *t)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(t->host, t->port, &hints, &ai);
    if (rc != 0) {
        note_error(t, gai_strerror(rc));
        return NULL;
    }
    struct bufferevent *sock = bufferevent_socket_new(t->base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = sock ? new_ssl(t) : NULL;
    struct bufferevent *bev = NULL;
    if (ssl && bufferevent_socket_connect(sock, ai->ai_addr, (int)ai->ai_addrlen) == 0) {
        bev = bufferevent_openssl_filter_new(t->base, sock, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (bev) {
            sock = NULL; /* owned by the filter now */
            ssl = NULL;
        }
    } else if (ssl) {
        note_error(t, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    if (ssl) {
        SSL_free(ssl);
    }
    if (sock) {
        bufferevent_free(sock);
    }
    freeaddrinfo(ai);
    return bev;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    rk_tls *t = arg;
    pair *p = sh_calloc(1, sizeof(*p));
    p->t = t;
    p->next = t->pairs;
    if (t->pairs) {
        t->pairs->prev = p;
    }
    t->pairs = p;
    p->local = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!p->local) {
        evutil_closesocket(fd);
        pair_free(p);
        return;
    }
    p->remote = connect_remote(t);
    if (!p->remote) {
        pair_free(p); /* hiredis sees the close and retries later */
        return;
    }
    bufferevent_setcb(p->local, local_read_cb, local_write_cb, local_event_cb, p);
    bufferevent_setcb(p->remote, remote_read_cb, NULL, remote_event_cb, p);
    bufferevent_enable(p->local, EV_READ | EV_WRITE);
    bufferevent_enable(p->remote, EV_READ | EV_WRITE);
}

static void *bridge_main(void *arg)
{
    rk_tls *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

static bool load_ctx(rk_tls *t, const rk_tls_opts *o)
{
    const char *what = "context";
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx) {
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    what = o->ca ? o->ca : "system CA store";
    if (o->ca ? SSL_CTX_load_verify_locations(t->ctx, o->ca, NULL) != 1
              : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        goto fail;
    }
    if (o->cert) {
        what = o->cert;
        if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert) != 1) {
            goto fail;
        }
        what = o->key ? o->key : o->cert;
        if (SSL_CTX_use_PrivateKey_file(t->ctx, what, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(t->ctx) != 1) {
            goto fail;
        }
    }
    return true;
fail:;
    char err[256] = "out of memory";
    unsigned long e = ERR_peek_last_error();
    if (e) {
        ERR_error_string_n(e, err, sizeof(err));
    }
    ERR_clear_error();
    sh_log(SH_ERROR, "event=redis_tls_error file=\"%s\" err=\"%s\"", what, err);
    return false;
}

static bool listen_unix(rk_tls *t)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(t->dir, sizeof(t->dir), "%s/shoal-redis-XXXXXX", tmp && *tmp && strlen(tmp) < 60 ? tmp : "/tmp");
    if (!mkdtemp(t->dir)) {
        sh_log(SH_ERROR, "event=redis_tls_error msg=\"cannot create %s: %s\"", t->dir, strerror(errno));
        t->dir[0] = '\0';
        return false;
    }
    snprintf(t->path, sizeof(t->path), "%s/redis.sock", t->dir);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", t->path);
    t->listener = evconnlistener_new_bind(t->base, accept_cb, t, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                          (struct sockaddr *)&sun, sizeof(sun));
    if (!t->listener) {
        sh_log(SH_ERROR, "event=redis_tls_error msg=\"cannot listen on %s: %s\"", t->path, strerror(errno));
        return false;
    }
    return true;
}

static void cleanup(rk_tls *t)
{
    while (t->pairs) {
        pair_free(t->pairs);
    }
    if (t->listener) {
        evconnlistener_free(t->listener);
    }
    if (t->path[0]) {
        unlink(t->path);
    }
    if (t->dir[0]) {
        rmdir(t->dir);
    }
    if (t->base) {
        event_base_free(t->base);
    }
    SSL_CTX_free(t->ctx);
    sh_free(t, sizeof(*t));
}

rk_tls *rk_tls_start(const rk_tls_opts *o)
{
    evthread_use_pthreads();
    rk_tls *t = sh_calloc(1, sizeof(*t));
    snprintf(t->host, sizeof(t->host), "%s", o->host);
    snprintf(t->port, sizeof(t->port), "%d", o->port);
    t->base = event_base_new();
    if (!t->base || !load_ctx(t, o) || !listen_unix(t)) {
        cleanup(t);
        return NULL;
    }
    if (pthread_create(&t->thread, NULL, bridge_main, t) != 0) {
        cleanup(t);
        return NULL;
    }
    return t;
}

const char *rk_tls_path(const rk_tls *t)
{
    return t->path;
}

void rk_tls_stop(rk_tls *t)
{
    if (!t) {
        return;
    }
    event_base_loopbreak(t->base);
    pthread_join(t->thread, NULL);
    cleanup(t);
}
