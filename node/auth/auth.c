/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's side of authentication and authorization: tables loaded at
 * start and swapped on SIGHUP (see node/auth/auth.h for the lifetime rule), and
 * the checks CONNECT, PUBLISH and SUBSCRIBE call. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

/* What a reload replaced: freed at exit only. */
typedef struct retired {
    struct retired *next;
    passwd_table *users;
    acl *acl;
} retired;

struct auth {
    _Atomic(passwd_table *) users; /* NULL: no --password-file */
    _Atomic(acl *) acl;            /* NULL: no --acl-file, everything allowed */
    pthread_mutex_t reload_lock;
    retired *old;
    uint8_t fake_secret[32]; /* per process: made-up SCRAM salts (auth_scram_cred) */
};

static char *slurp(const char *path, char *err, size_t errlen)
{
    char *s = sh_read_file(path);
    if (!s) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    }
    return s;
}

static passwd_table *load_users(const char *path, char *err, size_t errlen)
{
    char *text = slurp(path, err, errlen);
    if (!text) {
        return NULL;
    }
    char why[256];
    passwd_table *t = passwd_parse(text, why, sizeof(why));
    sh_free_str(text);
    if (!t) {
        snprintf(err, errlen, "%s: %s", path, why);
    }
    return t;
}

static acl *load_acl(const char *path, char *err, size_t errlen)
{
    char *text = slurp(path, err, errlen);
    if (!text) {
        return NULL;
    }
    char why[256];
    acl *a = acl_parse(text, why, sizeof(why));
    sh_free_str(text);
    if (!a) {
        snprintf(err, errlen, "%s: %s", path, why);
    }
    return a;
}

int auth_init(broker *b)
{
    struct auth *a = sh_calloc(1, sizeof(*a));
    pthread_mutex_init(&a->reload_lock, NULL);
    b->auth.tables = a;
    if (RAND_bytes(a->fake_secret, sizeof(a->fake_secret)) != 1) {
        fprintf(stderr, "shoal: no random bytes for authentication\n");
        return SH_ERR;
    }
    char err[512];
    if (b->cfg->auth.password_file) {
        passwd_table *t = load_users(b->cfg->auth.password_file, err, sizeof(err));
        if (!t) {
            fprintf(stderr, "shoal: --password-file %s\n", err);
            return SH_ERR;
        }
        atomic_store(&a->users, t);
    }
    if (b->cfg->auth.acl_file) {
        acl *l = load_acl(b->cfg->auth.acl_file, err, sizeof(err));
        if (!l) {
            fprintf(stderr, "shoal: --acl-file %s\n", err);
            return SH_ERR;
        }
        atomic_store(&a->acl, l);
    }
    return SH_OK;
}

void auth_reload(broker *b)
{
    struct auth *a = b->auth.tables;
    if (!a) {
        return;
    }
    pthread_mutex_lock(&a->reload_lock);
    char err[512];
    if (b->cfg->auth.password_file) {
        passwd_table *t = load_users(b->cfg->auth.password_file, err, sizeof(err));
        if (t) {
            retired *r = sh_calloc(1, sizeof(*r));
            r->users = atomic_exchange(&a->users, t);
            r->next = a->old;
            a->old = r;
            sh_log(SH_INFO, "event=auth_reload file=password users=%zu", t->n);
        } else {
            sh_log(SH_ERROR, "event=auth_reload_failed file=password reason=\"%s\"", err);
        }
    }
    if (b->cfg->auth.acl_file) {
        acl *l = load_acl(b->cfg->auth.acl_file, err, sizeof(err));
        if (l) {
            retired *r = sh_calloc(1, sizeof(*r));
            r->acl = atomic_exchange(&a->acl, l);
            r->next = a->old;
            a->old = r;
            sh_log(SH_INFO, "event=auth_reload file=acl rules=%zu", l->n);
        } else {
            sh_log(SH_ERROR, "event=auth_reload_failed file=acl reason=\"%s\"", err);
        }
    }
    pthread_mutex_unlock(&a->reload_lock);
}

void auth_free(broker *b)
{
    auth_hash_free(b);
    struct auth *a = b->auth.tables;
    if (!a) {
        return;
    }
    passwd_free(atomic_load(&a->users));
    acl_free(atomic_load(&a->acl));
    while (a->old) {
        retired *r = a->old;
        a->old = r->next;
        passwd_free(r->users);
        acl_free(r->acl);
        sh_free(r, sizeof(*r));
    }
    pthread_mutex_destroy(&a->reload_lock);
    sh_free(a, sizeof(*a));
    b->auth.tables = NULL;
}

static mqtt_rc fail(conn *c, const mqtt_connect *p, mqtt_rc rc, const char *why)
{
    atomic_fetch_add_explicit(&c->w->b->auth.failures, 1, memory_order_relaxed);
    sh_log(SH_INFO, "event=auth_failed conn=%llu client=%.*s peer=%s username=%.*s reason=\"%s\"",
           (unsigned long long)c->id, (int)p->client_id.len, (const char *)p->client_id.p, c->peer,
           p->has_username ? (int)p->username.len : 1, p->has_username ? (const char *)p->username.p : "-", why);
    return rc;
}

mqtt_rc auth_check_connect(conn *c, const mqtt_connect *p)
{
    broker *b = c->w->b;
    if (c->x && c->x->tls_cn) {
        /* --tls-cert-as-username: the verified certificate's CN is the
         * username (node/net/tls.c sets tls_cn only then); no password check.
         * It moves over, so the connection keeps one copy. */
        c->username = c->x->tls_cn;
        c->x->tls_cn = NULL;
        conn_ext_trim(c);
        return MQTT_RC_SUCCESS;
    }
    if (p->has_username) {
        c->username = sh_strndup((const char *)p->username.p, p->username.len);
    }
    if (!c->username) {
        return b->cfg->auth.anonymous ? MQTT_RC_SUCCESS : fail(c, p, MQTT_RC_NOT_AUTHORIZED, "no username");
    }
    passwd_table *t = atomic_load_explicit(&b->auth.tables->users, memory_order_acquire);
    if (!t) {
        return MQTT_RC_SUCCESS; /* no password file: usernames are taken as given */
    }
    const passwd_entry *e = passwd_find(t, (const char *)p->username.p, p->username.len);
    if (!e) {
        return fail(c, p, MQTT_RC_BAD_USER_OR_PASSWORD, "unknown user");
    }
    if (!p->has_password) {
        return fail(c, p, MQTT_RC_BAD_USER_OR_PASSWORD, "bad password");
    }
    if (b->auth.hasher) {
        /* Off the loop (node/auth/hash.c): handle_connect sees PAUSE_HASH. */
        if (auth_hash_submit(c, e, p->password.p, p->password.len) != SH_OK) {
            return fail(c, p, MQTT_RC_SERVER_BUSY, "password checks queued at --auth-queue");
        }
        return MQTT_RC_SUCCESS;
    }
    if (!passwd_verify(e, p->password.p, p->password.len)) {
        return fail(c, p, MQTT_RC_BAD_USER_OR_PASSWORD, "bad password");
    }
    return MQTT_RC_SUCCESS;
}

bool auth_has_passwords(broker *b)
{
    return atomic_load_explicit(&b->auth.tables->users, memory_order_acquire) != NULL;
}

int auth_scram_cred(broker *b, const char *user, size_t len, scram_cred *cred, const char **doomed)
{
    struct auth *a = b->auth.tables;
    passwd_table *t = atomic_load_explicit(&a->users, memory_order_acquire);
    if (!t) {
        return SH_ERR;
    }
    memset(cred, 0, sizeof(*cred));
    const passwd_entry *e = passwd_find(t, user, len);
    if (e && e->scheme == PASSWD_SCRAM_SHA256) {
        cred->iterations = e->iterations;
        cred->salt_len = e->salt_len < sizeof(cred->salt) ? e->salt_len : sizeof(cred->salt);
        memcpy(cred->salt, e->salt, cred->salt_len);
        memcpy(cred->stored_key, e->hash, SCRAM_KEY_LEN);
        memcpy(cred->server_key, e->server_key, SCRAM_KEY_LEN);
        *doomed = NULL;
        return SH_OK;
    }
    *doomed = e ? "no SCRAM-SHA-256 entry for this user (pbkdf2-sha512 only)" : "unknown user";
    /* Salt = HMAC(secret, user): stable per name, like a real entry's, and
     * unpredictable. The keys are random; the proof is refused anyway. */
    uint8_t mac[SCRAM_KEY_LEN];
    unsigned n = sizeof(mac);
    if (!HMAC(EVP_sha256(), a->fake_secret, sizeof(a->fake_secret), (const uint8_t *)user, len, mac, &n) ||
        RAND_bytes(cred->stored_key, SCRAM_KEY_LEN) != 1 || RAND_bytes(cred->server_key, SCRAM_KEY_LEN) != 1) {
        return SH_ERR;
    }
    cred->iterations = SCRAM_DEFAULT_ITERATIONS;
    cred->salt_len = PASSWD_SALT_LEN;
    memcpy(cred->salt, mac, PASSWD_SALT_LEN);
    return SH_OK;
}

void auth_scram_failed(conn *c, const char *user, size_t len, const char *why)
{
    atomic_fetch_add_explicit(&c->w->b->auth.failures, 1, memory_order_relaxed);
    char name[65];
    sh_log_sample(name, sizeof(name), user, len < 64 ? len : 64);
    const char *id = c->s ? c->s->client_id : (c->client_id ? c->client_id : "-");
    sh_log(SH_INFO, "event=auth_failed conn=%llu client=%s peer=%s username=%s method=" SCRAM_METHOD " reason=\"%s\"",
           (unsigned long long)c->id, id, c->peer, len ? name : "-", why);
}

static const char *client_id_of(conn *c)
{
    return c->s ? c->s->client_id : c->client_id;
}

bool auth_can_publish(conn *c, const uint8_t *topic, size_t len)
{
    acl *l = atomic_load_explicit(&c->w->b->auth.tables->acl, memory_order_acquire);
    return !l || acl_check_topic(l, c->username, client_id_of(c), topic, len, ACL_WRITE);
}

bool auth_can_subscribe(conn *c, const uint8_t *filter, size_t len)
{
    acl *l = atomic_load_explicit(&c->w->b->auth.tables->acl, memory_order_acquire);
    return !l || acl_check_subscribe(l, c->username, client_id_of(c), filter, len);
}
