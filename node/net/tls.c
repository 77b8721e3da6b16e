/* SPDX-License-Identifier: Apache-2.0 */
/* TLS contexts. One SSL_CTX serves every worker: OpenSSL 3 makes creating
 * SSL objects from a shared context thread-safe.
 *
 * Reload without dropping connections: SSL_new takes a reference on its
 * SSL_CTX, so a connection keeps the context it was accepted with. The swap
 * only has to make sure no worker is between reading the pointer and
 * SSL_new when the old context's last reference goes; a rwlock around that
 * pair does it (the write side is taken once per SIGHUP), and the old
 * context is then freed as soon as its last connection ends. */
#include "node/net/tls.h"
#include "node/config.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

struct tls {
    const config *cfg;
    pthread_rwlock_t lock;
    SSL_CTX *ctx; /* under lock */
};

/* The OpenSSL error queue as one line, emptied. */
static void ssl_errors(char *dst, size_t len)
{
    unsigned long e;
    size_t used = 0;
    dst[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        int n = snprintf(dst + used, len - used, "%s%s", used ? "; " : "", one);
        if (n < 0 || (size_t)n >= len - used) {
            ERR_clear_error();
            break;
        }
        used += (size_t)n;
    }
    if (!dst[0]) {
        snprintf(dst, len, "unknown error");
    }
}

/* Returns the new context, or NULL with the reason in why. */
static SSL_CTX *build_ctx(const config *cfg, char *why, size_t len)
{
    char err[512];
    const char *step = NULL;
    const char *file = "";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        step = "SSL_CTX_new";
        goto fail;
    }
    int minv = !strcmp(cfg->tls.min_version, "1.3") ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (cfg->tls.ciphers && *cfg->tls.ciphers && SSL_CTX_set_cipher_list(ctx, cfg->tls.ciphers) != 1) {
        step = "tls-ciphers";
        file = cfg->tls.ciphers;
        goto fail;
    }
    file = cfg->tls.cert;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1) {
        step = "tls-cert";
        goto fail;
    }
    file = cfg->tls.key;
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls.key, SSL_FILETYPE_PEM) != 1) {
        step = "tls-key";
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        step = "tls-key does not match tls-cert";
        goto fail;
    }
    if (cfg->tls.ca && *cfg->tls.ca) {
        file = cfg->tls.ca;
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls.ca, NULL) != 1) {
            step = "tls-ca";
            goto fail;
        }
        /* Tell clients which CAs we accept, so they pick the right cert. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls.ca);
        if (names) {
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        int mode = SSL_VERIFY_PEER | (cfg->tls.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    /* Without an id context, resuming a session with a verified peer fails. */
    static const unsigned char sid[] = "shoal";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    return ctx;
fail:
    ssl_errors(err, sizeof(err));
    snprintf(why, len, "step=%s file=\"%s\" err=\"%s\"", step, file, err);
    SSL_CTX_free(ctx);
    return NULL;
}

static int check_config(const config *cfg)
{
    const char *msg = NULL;
    if (!cfg->tls.cert || !*cfg->tls.cert || !cfg->tls.key || !*cfg->tls.key) {
        msg = "--tls-port and --wss-port need --tls-cert and --tls-key";
    } else if (strcmp(cfg->tls.min_version, "1.2") && strcmp(cfg->tls.min_version, "1.3")) {
        msg = "--tls-min-version must be 1.2 or 1.3";
    } else if ((cfg->tls.require_client_cert || cfg->tls.cert_as_username) && (!cfg->tls.ca || !*cfg->tls.ca)) {
        /* An unverified certificate proves nothing about its subject. */
        msg = "--tls-require-client-cert and --tls-cert-as-username need --tls-ca";
    }
    if (msg) {
        sh_log(SH_ERROR, "event=tls_error msg=\"%s\"", msg);
        return -1;
    }
    return 0;
}

tls *tls_open(const config *cfg)
{
    if (check_config(cfg) != 0) {
        return NULL;
    }
    char why[768];
    SSL_CTX *ctx = build_ctx(cfg, why, sizeof(why));
    if (!ctx) {
        sh_log(SH_ERROR, "event=tls_error %s", why);
        return NULL;
    }
    tls *t = sh_calloc(1, sizeof(*t));
    t->cfg = cfg;
    t->ctx = ctx;
    pthread_rwlock_init(&t->lock, NULL);
    return t;
}

int tls_reload(tls *t)
{
    char why[768];
    SSL_CTX *ctx = build_ctx(t->cfg, why, sizeof(why));
    if (!ctx) {
        sh_log(SH_WARN, "event=tls_reload_failed %s msg=\"keeping the current certificates\"", why);
        return -1;
    }
    pthread_rwlock_wrlock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_rwlock_unlock(&t->lock);
    /* Connections accepted with `old` hold their own references. */
    SSL_CTX_free(old);
    sh_log(SH_INFO, "event=tls_reloaded cert=%s", t->cfg->tls.cert);
    return 0;
}

struct ssl_st *tls_new_ssl(tls *t)
{
    pthread_rwlock_rdlock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_rwlock_unlock(&t->lock);
    return ssl;
}

void tls_peer_cn(struct bufferevent *bev, char *dst, size_t len)
{
    dst[0] = '\0';
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    X509 *peer = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
    if (!peer) {
        return;
    }
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, dst, (int)len);
    if (n < 0) {
        dst[0] = '\0';
    }
    X509_free(peer);
}

void tls_describe(struct bufferevent *bev, char *dst, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    snprintf(dst, len, "%s %s", ssl ? SSL_get_version(ssl) : "-", ssl ? SSL_get_cipher_name(ssl) : "-");
}

void tls_bev_error(struct bufferevent *bev, char *dst, size_t len)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (!e) {
        snprintf(dst, len, "-");
        return;
    }
    ERR_error_string_n(e, dst, len);
    while (bufferevent_get_openssl_error(bev)) {
    }
}

void tls_close(tls *t)
{
    if (!t) {
        return;
    }
    SSL_CTX_free(t->ctx);
    pthread_rwlock_destroy(&t->lock);
    sh_free(t, sizeof(*t));
}
