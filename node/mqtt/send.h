/* SPDX-License-Identifier: Apache-2.0 */
/* Encoding packets onto a connection. */
#ifndef SHOAL_NODE_SEND_H
#define SHOAL_NODE_SEND_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/packet.h"

typedef struct conn conn;
typedef struct delivery delivery;

void send_connack(conn *c, bool session_present, uint8_t rc, const mqtt_props *props);
/* CONNACK for a refused CONNECT in the client's protocol version; for
 * 3.1.1 codes without a return code the connection is just closed. */
void send_connack_refusal(conn *c, uint8_t rc);
void send_ack(conn *c, uint8_t type, uint16_t pid, uint8_t rc, const char *reason);
void send_suback(conn *c, uint16_t pid, const uint8_t *codes, uint32_t n);
void send_unsuback(conn *c, uint16_t pid, const uint8_t *codes, uint32_t n);
void send_pingresp(conn *c);
void send_disconnect(conn *c, uint8_t rc, const char *reason);
/* AUTH with reason code rc and properties (method and data), v5 only. */
void send_auth(conn *c, uint8_t rc, const mqtt_props *props);
/* PUBLISH of one delivery; pid 0 for QoS 0. Returns false if the packet
 * exceeds the client's Maximum Packet Size (it is then dropped, §3.1.2.11.4). */
bool send_publish(conn *c, const delivery *d, uint16_t pid, bool dup);

#endif
