/* SPDX-License-Identifier: Apache-2.0 */
/* The session registry (node/mqtt/registry.c): client id → session, in
 * broker.sess_tab under broker.sess_lock. */
#ifndef SHOAL_NODE_REGISTRY_H
#define SHOAL_NODE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct broker broker;
typedef struct session session;

session *registry_get(broker *b, const char *id, size_t len);
void registry_put(broker *b, session *s);
void registry_remove(broker *b, session *s);
/* Caller holds b->sess_lock: --max-sessions leaves no room for a new one. */
bool registry_full(broker *b);

#endif
