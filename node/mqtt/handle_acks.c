/* SPDX-License-Identifier: Apache-2.0 */
/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
#include "common/log.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/session_sync.h"
#include "node/worker.h"

/* §4.3.2 / §4.3.3: an ack for an unknown id is not fatal; v5 answers a
 * PUBREL or PUBREC it cannot match with 0x92. */
mqtt_rc handle_puback(conn *c, const mqtt_ack *p)
{
    session_ack(c->w, c->s, MQTT_PUBACK, p->packet_id);
    return MQTT_RC_SUCCESS;
}

mqtt_rc handle_pubrec(conn *c, const mqtt_ack *p)
{
    if (p->rc >= 0x80) {
        session_ack_failed(c->w, c->s, p->packet_id);
        return MQTT_RC_SUCCESS;
    }
    mqtt_rc rc = session_ack(c->w, c->s, MQTT_PUBREC, p->packet_id);
    inflight *f = rc == MQTT_RC_SUCCESS && c->s->st ? session_inflight_find(c->s, p->packet_id) : NULL;
    if (f && stream_hold_release(c->w, c->s, f)) {
        return MQTT_RC_SUCCESS; /* PUBREL once "PUBREC received" is stored (node/mqtt/session_stream.c) */
    }
    send_ack(c, MQTT_PUBREL, p->packet_id, rc == MQTT_RC_SUCCESS ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND, NULL);
    return MQTT_RC_SUCCESS;
}

mqtt_rc handle_pubrel(conn *c, const mqtt_ack *p)
{
    bool had = session_qos2_remove(c->s, p->packet_id);
    if (had && c->s->persistent) {
        sync_mark_dirty(c->w, c->s);
    }
    send_ack(c, MQTT_PUBCOMP, p->packet_id, had ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND, NULL);
    return MQTT_RC_SUCCESS;
}

mqtt_rc handle_pubcomp(conn *c, const mqtt_ack *p)
{
    session_ack(c->w, c->s, MQTT_PUBCOMP, p->packet_id);
    return MQTT_RC_SUCCESS;
}
