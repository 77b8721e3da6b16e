/* SPDX-License-Identifier: Apache-2.0 */
/* AUTH: enhanced authentication (MQTT 5 §4.12) with SCRAM-SHA-256 (RFC 5802,
 * RFC 7677), the SASL messages carried in Authentication Data.
 *
 * At CONNECT:   CONNECT (method, client-first) → AUTH 0x18 (server-first)
 *               → AUTH 0x18 (client-final) → CONNACK 0x00 (server-final),
 *               then the usual claim of the client id (connect_proceed).
 * Re-authentication on an established connection (§4.12.1):
 *               AUTH 0x19 (client-first) → AUTH 0x18 (server-first)
 *               → AUTH 0x18 (client-final) → AUTH 0x00 (server-final);
 *               other packets keep flowing meanwhile.
 *
 * A failed exchange is refused with 0x86 (proof) or 0x87 (anything else in
 * the SCRAM messages), as CONNACK or DISCONNECT, and logged once
 * (event=auth_failed). Out-of-order AUTH packets are protocol errors. */
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/auth/scram.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/worker.h"
#include "proto/utf8.h"

/* One exchange, from client-first until server-final has been sent. */
struct auth_exchange {
    scram s;
    uint64_t started_ms;
    const char *doomed; /* static text: why the proof will be refused; NULL = real credentials */
};

/* What the client is told; the log line says which check failed, the
 * client must not learn whether the user exists. */
#define REFUSAL "authentication failed"

static bool is_scram(const mqtt_props *pr)
{
    size_t n = strlen(SCRAM_METHOD);
    return mqtt_props_has(pr, MQTT_PROP_AUTH_METHOD) && pr->auth_method.len == n &&
           memcmp(pr->auth_method.p, SCRAM_METHOD, n) == 0;
}

static void set_method(mqtt_props *pr, const char *data, size_t len)
{
    pr->present |= MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA);
    pr->auth_method.p = (const uint8_t *)SCRAM_METHOD;
    pr->auth_method.len = (uint32_t)strlen(SCRAM_METHOD);
    pr->auth_data.p = (const uint8_t *)data;
    pr->auth_data.len = (uint32_t)len;
}

static void send_step(conn *c, uint8_t rc, const char *data, size_t len)
{
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    set_method(&pr, data, len);
    send_auth(c, rc, &pr);
}

/* The exchange in progress, or NULL. */
static struct auth_exchange *ax_of(const conn *c)
{
    return c->x ? c->x->ax : NULL;
}

/* Count, log, tell the client (CONNACK or DISCONNECT) and close. Returns a
 * code below 0x80: the client has been told already. */
static mqtt_rc refuse(conn *c, uint8_t rc, const char *why)
{
    const scram *s = ax_of(c) ? &ax_of(c)->s : NULL;
    auth_scram_failed(c, s ? s->user : "", s ? s->user_len : 0, why);
    handle_auth_end(c);
    conn_refuse(c, rc, REFUSAL);
    return MQTT_RC_SUCCESS;
}

/* client-first → server-first. */
static mqtt_rc start(conn *c, const mqtt_props *pr, bool reauth)
{
    sh_assert(!ax_of(c));
    struct auth_exchange *ax = sh_calloc(1, sizeof(*ax));
    conn_ext_get(c)->ax = ax;
    ax->started_ms = now_ms();
    conn_timer_update(c); /* a re-authentication's deadline may be the nearest */
    scram *s = &ax->s;
    if (!mqtt_props_has(pr, MQTT_PROP_AUTH_DATA)) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, "no client-first message");
    }
    scram_rc r = scram_client_first(s, pr->auth_data.p, pr->auth_data.len);
    if (r != SCRAM_OK) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, scram_rc_name(r));
    }
    if (!mqtt_utf8_valid((const uint8_t *)s->user, s->user_len)) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, "user name is not UTF-8");
    }
    /* The connection's identity (ACL user, session) stays what it was. */
    if (reauth && (!c->username || strcmp(s->user, c->username) != 0)) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, "re-authentication as another user");
    }
    scram_cred cred;
    char nonce[SCRAM_SERVER_NONCE_LEN + 1];
    if (auth_scram_cred(c->w->b, s->user, s->user_len, &cred, &ax->doomed) != SH_OK ||
        scram_make_nonce(nonce, sizeof(nonce)) != 0 || scram_server_first(s, &cred, nonce) != SCRAM_OK) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, "no SCRAM credentials");
    }
    send_step(c, MQTT_RC_CONTINUE_AUTHENTICATION, s->server_first, s->server_first_len);
    return MQTT_RC_SUCCESS;
}

/* client-final → server-final (in CONNACK or AUTH 0x00). */
static mqtt_rc finish(conn *c, const mqtt_props *pr)
{
    struct auth_exchange *ax = ax_of(c);
    if (!mqtt_props_has(pr, MQTT_PROP_AUTH_DATA)) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, "no client-final message");
    }
    scram_rc r = scram_client_final(&ax->s, pr->auth_data.p, pr->auth_data.len);
    if (r == SCRAM_OK && ax->doomed) {
        r = SCRAM_BAD_PROOF;
    }
    if (r == SCRAM_BAD_PROOF) {
        return refuse(c, MQTT_RC_BAD_USER_OR_PASSWORD, ax->doomed ? ax->doomed : scram_rc_name(r));
    }
    if (r != SCRAM_OK) {
        return refuse(c, MQTT_RC_NOT_AUTHORIZED, scram_rc_name(r));
    }
    if (c->state == CS_AUTH) {
        c->username = sh_strndup(ax->s.user, ax->s.user_len);
        sh_log(SH_DEBUG, "event=auth_ok conn=%llu client=%s method=" SCRAM_METHOD " username=%s",
               (unsigned long long)c->id, c->client_id, c->username);
        /* The exchange is kept until connect_finish puts server-final in CONNACK. */
        return connect_proceed(c);
    }
    send_step(c, MQTT_RC_SUCCESS, ax->s.server_final, ax->s.server_final_len);
    sh_log(SH_INFO, "event=reauth conn=%llu client=%s method=" SCRAM_METHOD " username=%s", (unsigned long long)c->id,
           c->s ? c->s->client_id : "-", c->username);
    handle_auth_end(c);
    return MQTT_RC_SUCCESS;
}

mqtt_rc handle_auth(conn *c, const mqtt_reason *p)
{
    /* §4.12.0-7: no method at CONNECT, no AUTH. */
    if (!c->enhanced_auth) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    /* §4.12.0-5, §4.12.1-1: every AUTH names the method CONNECT named. */
    if (!is_scram(&p->props)) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (p->rc == MQTT_RC_REAUTHENTICATE && c->state == CS_ACTIVE && !ax_of(c)) {
        return start(c, &p->props, true);
    }
    if (p->rc == MQTT_RC_CONTINUE_AUTHENTICATION && ax_of(c)) {
        return finish(c, &p->props);
    }
    /* 0x18 with nothing in progress, 0x19 before CONNACK or during an
     * exchange, or 0x00 (only the server says Success). */
    return MQTT_RC_PROTOCOL_ERROR;
}

bool handle_auth_method_ok(conn *c, const mqtt_props *connect_props)
{
    /* SCRAM credentials come from the password file: without one the
     * method is not offered. */
    return is_scram(connect_props) && auth_has_passwords(c->w->b);
}

mqtt_rc handle_auth_connect(conn *c, const mqtt_props *connect_props)
{
    c->enhanced_auth = true;
    conn_set_state(c, CS_AUTH);
    return start(c, connect_props, false);
}

void handle_auth_connack_props(conn *c, mqtt_props *pr)
{
    const struct auth_exchange *ax = ax_of(c);
    if (ax && ax->s.server_final_len) {
        set_method(pr, ax->s.server_final, ax->s.server_final_len);
    }
}

void handle_auth_end(conn *c)
{
    struct auth_exchange *ax = ax_of(c);
    if (ax) {
        sh_free(ax, sizeof(*ax));
        c->x->ax = NULL;
        conn_ext_trim(c);
    }
}

bool handle_auth_overdue(const conn *c, uint64_t now, uint64_t limit_ms)
{
    const struct auth_exchange *ax = ax_of(c);
    return ax && now - ax->started_ms >= limit_ms;
}

uint64_t handle_auth_due(const conn *c, uint64_t limit_ms)
{
    const struct auth_exchange *ax = ax_of(c);
    return ax ? ax->started_ms + limit_ms : 0;
}
