/* SPDX-License-Identifier: Apache-2.0 */
#include "node/mqtt/dispatch.h"
#include "node/conn.h"

#include <string.h>

#include "common/log.h"

typedef mqtt_rc (*handler_fn)(conn *c, const mqtt_packet *p);

static mqtt_rc h_connect(conn *c, const mqtt_packet *p)
{
    return handle_connect(c, &p->u.connect);
}
static mqtt_rc h_publish(conn *c, const mqtt_packet *p)
{
    return handle_publish(c, &p->u.publish);
}
static mqtt_rc h_puback(conn *c, const mqtt_packet *p)
{
    return handle_puback(c, &p->u.ack);
}
static mqtt_rc h_pubrec(conn *c, const mqtt_packet *p)
{
    return handle_pubrec(c, &p->u.ack);
}
static mqtt_rc h_pubrel(conn *c, const mqtt_packet *p)
{
    return handle_pubrel(c, &p->u.ack);
}
static mqtt_rc h_pubcomp(conn *c, const mqtt_packet *p)
{
    return handle_pubcomp(c, &p->u.ack);
}
static mqtt_rc h_subscribe(conn *c, const mqtt_packet *p)
{
    return handle_subscribe(c, &p->u.subscribe);
}
static mqtt_rc h_unsubscribe(conn *c, const mqtt_packet *p)
{
    return handle_unsubscribe(c, &p->u.unsubscribe);
}
static mqtt_rc h_pingreq(conn *c, const mqtt_packet *p)
{
    return handle_pingreq(c);
}
static mqtt_rc h_disconnect(conn *c, const mqtt_packet *p)
{
    return handle_disconnect(c, &p->u.reason);
}
static mqtt_rc h_auth(conn *c, const mqtt_packet *p)
{
    return handle_auth(c, &p->u.reason);
}

typedef struct packet_rule {
    const char *name;
    handler_fn handle; /* NULL: a server never accepts this packet */
    bool before_connect;
} packet_rule;

static const packet_rule rules[16] = {
    [MQTT_CONNECT] = {"CONNECT", h_connect, true},  [MQTT_CONNACK] = {"CONNACK", NULL, false},
    [MQTT_PUBLISH] = {"PUBLISH", h_publish, false}, [MQTT_PUBACK] = {"PUBACK", h_puback, false},
    [MQTT_PUBREC] = {"PUBREC", h_pubrec, false},    [MQTT_PUBREL] = {"PUBREL", h_pubrel, false},
    [MQTT_PUBCOMP] = {"PUBCOMP", h_pubcomp, false}, [MQTT_SUBSCRIBE] = {"SUBSCRIBE", h_subscribe, false},
    [MQTT_SUBACK] = {"SUBACK", NULL, false},        [MQTT_UNSUBSCRIBE] = {"UNSUBSCRIBE", h_unsubscribe, false},
    [MQTT_UNSUBACK] = {"UNSUBACK", NULL, false},    [MQTT_PINGREQ] = {"PINGREQ", h_pingreq, false},
    [MQTT_PINGRESP] = {"PINGRESP", NULL, false},    [MQTT_DISCONNECT] = {"DISCONNECT", h_disconnect, false},
    [MQTT_AUTH] = {"AUTH", h_auth, false},
};

mqtt_rc dispatch_frame(conn *c, const mqtt_frame *f)
{
    const packet_rule *r = &rules[f->type & 15];
    if (c->state == CS_NEW && !r->before_connect) {
        /* §3.1.4-1 / §4.8: the first packet must be CONNECT. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (c->state == CS_AUTH && f->type != MQTT_AUTH) {
        /* §4.12: until CONNACK only AUTH may continue the exchange. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (c->state != CS_NEW && f->type == MQTT_CONNECT) {
        /* §3.1.0-2: a second CONNECT is a protocol error. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (!r->handle) {
        return MQTT_RC_PROTOCOL_ERROR;
    }
    if (c->state == CS_CLAIMING) {
        /* The session is still being fetched; the client may not send
         * before CONNACK in practice, but if it does, refuse cleanly. */
        return MQTT_RC_PROTOCOL_ERROR;
    }
    mqtt_packet p;
    if (f->type == MQTT_CONNECT) {
        memset(&p, 0, sizeof(p));
    }
    mqtt_rc rc = mqtt_decode(f, c->version, &p);
    if (rc != MQTT_RC_SUCCESS) {
        if (f->type == MQTT_CONNECT && p.type == MQTT_CONNECT) {
            c->version = p.u.connect.version;
        }
        return rc;
    }
    return r->handle(c, &p);
}
