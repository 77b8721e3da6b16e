/* The packet table: decode → handler, with the connection-state rules. */
#ifndef SHOAL_NODE_DISPATCH_H
#define SHOAL_NODE_DISPATCH_H

#include "node/core.h"
#include "proto/frame.h"

/* Decode one complete frame and run its handler. A code >= 0x80 means the
 * connection must close with that reason (conn.c does it). */
mqtt_rc dispatch_frame(conn *c, const mqtt_frame *f);

mqtt_rc handle_connect(conn *c, const mqtt_connect *p);
mqtt_rc handle_publish(conn *c, const mqtt_publish *p);
mqtt_rc handle_puback(conn *c, const mqtt_ack *p);
mqtt_rc handle_pubrec(conn *c, const mqtt_ack *p);
mqtt_rc handle_pubrel(conn *c, const mqtt_ack *p);
mqtt_rc handle_pubcomp(conn *c, const mqtt_ack *p);
mqtt_rc handle_subscribe(conn *c, const mqtt_subscribe *p);
mqtt_rc handle_unsubscribe(conn *c, const mqtt_unsubscribe *p);
mqtt_rc handle_pingreq(conn *c);
mqtt_rc handle_disconnect(conn *c, const mqtt_reason *p);
mqtt_rc handle_auth(conn *c, const mqtt_reason *p);

#endif
