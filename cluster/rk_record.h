/* The Kafka record that carries one MQTT message between nodes.
 *
 * Layout, big endian (docs/architecture.md has the table):
 *   magic "SH" | version u8 | flags u8 (bit 0 retain) | qos u8 |
 *   origin_len u8 | origin bytes | expiry_at_unix_ms u64 |
 *   props_len u32 | props | topic_len u16 | topic | payload (the rest)
 * A reader skips a record whose version is newer than it knows (and counts
 * it), so nodes of different releases can share a topic during a rollout. */
#ifndef SHOAL_CLUSTER_RK_RECORD_H
#define SHOAL_CLUSTER_RK_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/backplane.h"

#define RK_RECORD_VERSION 1

typedef enum rk_record_status {
    RK_RECORD_OK = 0,
    RK_RECORD_NEWER = 1,     /* a later format: skip it */
    RK_RECORD_BAD = -1,      /* not a Shoal record, or truncated */
} rk_record_status;

size_t rk_record_size(const bp_message *m, const char *origin);
/* Writes exactly rk_record_size() bytes. */
size_t rk_record_encode(const bp_message *m, const char *origin, uint8_t *dst);
/* Decodes into *m (slices into buf) and the origin slice. */
rk_record_status rk_record_decode(const uint8_t *buf, size_t len, bp_message *m, const uint8_t **origin,
                                  size_t *origin_len);

#endif
