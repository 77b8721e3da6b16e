/* SPDX-License-Identifier: Apache-2.0 */
/* Matching and fan-out (node/route.c). */
#ifndef SHOAL_NODE_ROUTE_H
#define SHOAL_NODE_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "node/msg.h"
#include "node/trie.h"
#include "proto/packet.h"

typedef struct worker worker;
typedef struct session session;
typedef struct delivery delivery;

/* Hand m to every matching session; *matched (may be NULL) gets how many
 * sessions it went to. True if one of them is behind (back-pressure). */
bool route_publish(worker *w, msg *m, uint32_t *matched);
void route_deliver_to(worker *w, session *s, delivery *d);
void route_retained_on_subscribe(worker *w, session *s, mqtt_bytes filter, const sub_opts *o);
/* Publish a will / internal message (origin 0). Consumes m. */
void route_publish_internal(worker *w, msg *m);

#endif
