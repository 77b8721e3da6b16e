/* SPDX-License-Identifier: Apache-2.0 */
/* Matching and fan-out (node/mqtt/route.c). */
#ifndef SHOAL_NODE_ROUTE_H
#define SHOAL_NODE_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "node/mqtt/msg.h"
#include "node/mqtt/trie.h"
#include "proto/packet.h"

typedef struct worker worker;
typedef struct session session;
typedef struct delivery delivery;

/* Hand m to every matching session; *matched (may be NULL) gets how many
 * sessions it went to. True if one of them is behind (back-pressure). */
bool route_publish(worker *w, msg *m, uint32_t *matched);
void route_deliver_to(worker *w, session *s, delivery *d);
/* Fold one subscription of a session that m matched into d (MQTT 5
 * §3.3.4): the highest granted QoS (first: the session's first one),
 * Retain As Published, and its subscription identifier. */
void route_fold(delivery *d, bool first, const msg *m, const sub_opts *o);
void route_retained_on_subscribe(worker *w, session *s, mqtt_bytes filter, const sub_opts *o);
/* Publish a will / internal message (origin 0) on this node. Consumes m. */
void route_publish_internal(worker *w, msg *m);
/* Publish a will: through the backplane (other nodes, the retained
 * snapshot) and to this node's subscribers, QoS 1/2 once the backplane
 * has it, as a client's publish. Consumes m. */
void route_publish_will(worker *w, msg *m);
/* A will the backplane has (or a dead node's, node/mqtt/dead_node.c): to this
 * node's subscribers (and its retained index when the backplane does not
 * bring it back). Takes m's ref. */
void route_will_local(worker *w, msg *m);

#endif
