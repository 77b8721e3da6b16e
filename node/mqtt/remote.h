/* SPDX-License-Identifier: Apache-2.0 */
/* Messages from the backplane (node/mqtt/remote.c): its hooks, and delivery
 * of what other nodes published. */
#ifndef SHOAL_NODE_REMOTE_H
#define SHOAL_NODE_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/backplane.h"
#include "node/mqtt/msg.h"

typedef struct broker broker;
typedef struct worker worker;

void remote_message_hook(void *node, const bp_message *m, unsigned shard);
void remote_ready_hook(void *node, bool ready);
/* bp_hooks.share_groups: this node's shared groups and member counts. */
void remote_share_groups_hook(void *node, void (*emit)(void *ctx, const uint8_t *key, size_t len, uint32_t members),
                              void *ctx);
/* Apply a retained update from the backplane to the index, on the calling
 * thread (bp_hooks.retained). */
void remote_retained_hook(void *node, const bp_message *m);
void remote_qos0_dropped_hook(void *node, int worker_id);
/* After bp_open, before the workers start: lower --max-packet-size to what
 * the backplane carries and say so in one log line. */
void remote_cap_packet_size(broker *b);
void remote_deliver(worker *w, msg *m);
/* A message of the stream as this node keeps it (expiry on its clock,
 * place in the stream); NULL when expired or out of memory. */
msg *remote_msg_new(const bp_message *bm);
/* Convert between monotonic deadlines and wall-clock ones for the wire. */
uint64_t expiry_to_unix(uint64_t expiry_at_mono, uint64_t now_mono);
/* m as it goes out on the backplane (borrowing m's bytes): topic, payload,
 * properties, QoS, retain flag, expiry on the wall clock and m's time. No
 * client id: a client's publish sets it (No Local on the other nodes). */
bp_message remote_bp_message(const msg *m);

#endif
