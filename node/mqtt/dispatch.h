/* SPDX-License-Identifier: Apache-2.0 */
/* The packet table: decode → handler, with the connection-state rules. */
#ifndef SHOAL_NODE_DISPATCH_H
#define SHOAL_NODE_DISPATCH_H

#include "proto/packet.h"

typedef struct conn conn;
typedef struct session session;
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

/* handle_connect.c: authenticated; check the will against the ACL, then
 * claim the client id (CONNACK follows, now or once the session arrives). */
mqtt_rc connect_proceed(conn *c);
/* The session is ours: attach, CONNACK, resend what was in flight
 * (node/mqtt/session_life.c calls it once a takeover completes). */
void connect_finish(conn *c, session *s, bool clean);
/* Claim the client id in this process: a new session at once, or ask the
 * worker that owns the existing one to hand it over. */
void connect_claim(conn *c);

/* handle_auth.c: enhanced authentication (SCRAM-SHA-256, MQTT 5 §4.12). */
/* Is the CONNECT's Authentication Method one this node runs? */
bool handle_auth_method_ok(conn *c, const mqtt_props *connect_props);
/* Start the exchange from CONNECT's Authentication Data: AUTH 0x18, or a
 * refusal already sent. */
mqtt_rc handle_auth_connect(conn *c, const mqtt_props *connect_props);
/* Add the method and server-final message to a successful CONNACK's
 * properties (borrowed from c until handle_auth_end). */
void handle_auth_connack_props(conn *c, mqtt_props *pr);
/* Release the exchange's state (idempotent). */
void handle_auth_end(conn *c);
/* A re-authentication open for longer than limit_ms. */
bool handle_auth_overdue(const conn *c, uint64_t now, uint64_t limit_ms);
/* When handle_auth_overdue becomes true; 0 with no exchange in progress. */
uint64_t handle_auth_due(const conn *c, uint64_t limit_ms);

#endif
