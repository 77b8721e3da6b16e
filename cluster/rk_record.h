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
 * it), so nodes of different releases can share a topic during a rollout.
 *
 * Version 3 has version 2's layout, with the expiry deadline on the cluster
 * clock (Redis's, rk_clock.h) instead of the writer's wall clock. A
 * previous release would read it as a wall-clock deadline and move it by
 * its estimate of the writer's wall clock: wrong by the writer's offset to
 * Redis. It skips version 3 instead. Only a record with an expiry is
 * written as version 3: without one the two versions say the same, and a
 * record without an expiry stays version 2 so that nodes of the previous
 * release still take it during a rolling upgrade. */
#ifndef SHOAL_CLUSTER_RK_RECORD_H
#define SHOAL_CLUSTER_RK_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/backplane.h"

#define RK_RECORD_VERSION 3
/* From this version on the expiry deadline is on the cluster clock. */
#define RK_RECORD_VERSION_CLUSTER_CLOCK 3
/* What a record without an expiry is written as (see above). */
#define RK_RECORD_VERSION_NO_EXPIRY 2
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
/* Writes exactly rk_record_size() bytes; m's expiry must be on the cluster
 * clock already (the writer converts it). */
size_t rk_record_encode(const bp_message *m, const char *origin, uint8_t *dst);
/* Decodes into *m (slices into buf, client_id NULL/0 when the record has
 * none) and the origin slice. */
rk_record_status rk_record_decode(const uint8_t *buf, size_t len, bp_message *m, const uint8_t **origin,
                                  size_t *origin_len);
/* The version of a record rk_record_decode() took (RK_RECORD_OK). */
static inline int rk_record_version(const uint8_t *buf)
{
    return buf[2];
}

#endif
