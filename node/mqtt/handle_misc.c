/* SPDX-License-Identifier: Apache-2.0 */
/* PINGREQ, DISCONNECT (AUTH: handle_auth.c). */
#include "common/log.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

mqtt_rc handle_pingreq(conn *c)
{
    send_pingresp(c);
    return MQTT_RC_SUCCESS;
}

mqtt_rc handle_disconnect(conn *c, const mqtt_reason *p)
{
    if (c->version == MQTT_V5 && mqtt_props_has(&p->props, MQTT_PROP_SESSION_EXPIRY)) {
        /* §3.14.2.2.2: zero at CONNECT cannot become non-zero now. */
        if (c->session_expiry == 0 && p->props.session_expiry != 0) {
            return MQTT_RC_PROTOCOL_ERROR;
        }
        uint32_t e = p->props.session_expiry;
        c->session_expiry = e;
        if (c->s) {
            c->s->expiry_s = e;
            session_set_persistent(c->w->b, c->s, e > 0);
        }
    }
    /* 0x04 asks for the will; any other client reason drops it (§3.14.4). */
    if (!(c->version == MQTT_V5 && p->rc == MQTT_RC_DISCONNECT_WITH_WILL)) {
        msg_unref(c->will);
        c->will = NULL;
    }
    c->sent_disconnect = true;
    conn_close(c, p->rc, "client DISCONNECT");
    return MQTT_RC_SUCCESS;
}
