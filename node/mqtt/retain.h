/* SPDX-License-Identifier: Apache-2.0 */
/* The retained-message index: topic → message, with wildcard lookup for
 * a new subscription. Not thread-safe: the caller locks. */
#ifndef SHOAL_NODE_RETAIN_H
#define SHOAL_NODE_RETAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/mqtt/msg.h"
#include "proto/mqtt.h"

#ifndef SH_OK
#define SH_OK 0
#define SH_ERR (-1)
#endif

typedef struct retain retain;

retain *retain_new(void);
void retain_free(retain *r);

/* At most `max` messages (--max-retained; 0 = no limit). */
void retain_set_max(retain *r, size_t max);

/* Store m under its topic, replacing any older message (ref held: takes a
 * new ref of its own). An empty payload deletes the topic instead (§3.3.1.3).
 * SH_ERR (nothing stored, no ref taken) for a new topic at the cap. */
int retain_set(retain *r, msg *m);

/* Whether a message for `topic` would be stored: under the cap, or the
 * topic holds one already (a replacement does not grow the index). */
bool retain_has_room(const retain *r, mqtt_bytes topic);

/* Whether the topic holds a message (expired or not). */
bool retain_has(const retain *r, mqtt_bytes topic);

/* Delete a topic; false if absent. */
bool retain_delete(retain *r, mqtt_bytes topic);

/* Every retained message whose topic matches `filter` and that has not
 * expired at now_ms (expired ones are dropped on the way). The callback
 * gets a borrowed message; take a ref to keep it. Returns the count. */
typedef void (*retain_cb)(void *arg, msg *m);
size_t retain_match(retain *r, mqtt_bytes filter, uint64_t now_ms, retain_cb cb, void *arg);

size_t retain_count(const retain *r);

/* Remove every message whose Message Expiry has passed at now_ms, earliest
 * first, without a lookup to find it; returns how many. */
size_t retain_expire(retain *r, uint64_t now_ms);
/* The earliest expiry deadline held (monotonic ms), 0 if none expires. */
uint64_t retain_next_expiry(const retain *r);

#endif
