/* SPDX-License-Identifier: Apache-2.0 */
/* The Kafka record that carries one MQTT message between nodes.
 *
 * Layout, big endian (docs/architecture.md has the table):
 *   magic "SH" | version u8 | flags u8 (bit 0 retain, bit 1 retain only) | qos u8 |
 *   origin_len u8 | origin bytes |
 *   client_id_len u16 | client_id bytes (version 2 on; 0 = none) |
 *   expiry_at_unix_ms u64 |
 *   props_len u32 | props | topic_len u16 | topic | payload (the rest)
 * Writers write the current version; a reader takes every version up to
 * its own (version 1 has no client id) and skips a newer one (and counts
 * it), so nodes of different releases can share a topic during a rollout. */
#ifndef SHOAL_CLUSTER_RK_RECORD_H
#define SHOAL_CLUSTER_RK_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/backplane.h"

#define RK_RECORD_VERSION 2
/* flags: bit 0 retain; bit 1 a retained-index change only, not a message
 * (an admin delete: nobody receives it). A reader that does not know bit 1
 * (before issue 17) would deliver the empty payload as a message. */
#define RK_FLAG_RETAIN 1u
#define RK_FLAG_RETAIN_ONLY 2u

typedef enum rk_record_status {
    RK_RECORD_OK = 0,
    RK_RECORD_NEWER = 1, /* a later format: skip it */
    RK_RECORD_BAD = -1,  /* not a Shoal record, or truncated */
} rk_record_status;

size_t rk_record_size(const bp_message *m, const char *origin);
/* Writes exactly rk_record_size() bytes. */
size_t rk_record_encode(const bp_message *m, const char *origin, uint8_t *dst);
/* Decodes into *m (slices into buf, client_id NULL/0 when the record has
 * none) and the origin slice. */
rk_record_status rk_record_decode(const uint8_t *buf, size_t len, bp_message *m, const uint8_t **origin,
                                  size_t *origin_len);

#endif
