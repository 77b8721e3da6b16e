/* The retained-message index: topic → message, with wildcard lookup for
 * a new subscription. Not thread-safe: the caller locks. */
#ifndef SHOAL_NODE_RETAIN_H
#define SHOAL_NODE_RETAIN_H

#include <stddef.h>
#include <stdint.h>

#include "node/msg.h"
#include "proto/mqtt.h"

typedef struct retain retain;

retain *retain_new(void);
void retain_free(retain *r);

/* Store m under its topic, replacing any older message (ref held: takes a
 * new ref of its own). An empty payload deletes the topic instead (§3.3.1.3). */
void retain_set(retain *r, msg *m);

/* Delete a topic; false if absent. */
bool retain_delete(retain *r, mqtt_bytes topic);

/* Every retained message whose topic matches `filter` and that has not
 * expired at now_ms (expired ones are dropped on the way). The callback
 * gets a borrowed message; take a ref to keep it. Returns the count. */
typedef void (*retain_cb)(void *arg, msg *m);
size_t retain_match(retain *r, mqtt_bytes filter, uint64_t now_ms, retain_cb cb, void *arg);

size_t retain_count(const retain *r);

#endif
