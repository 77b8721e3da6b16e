/* SPDX-License-Identifier: Apache-2.0 */
/* Framing: the fixed header and the variable byte integer (§2.1, §1.5.5).
 * Only the framer can answer "need more bytes". */
#ifndef SHOAL_PROTO_FRAME_H
#define SHOAL_PROTO_FRAME_H

#include "proto/mqtt.h"

#define MQTT_NEED_MORE (-2)
#define MQTT_BAD (-1)

/* Largest remaining length a varint can carry (268,435,455). */
#define MQTT_MAX_REMAINING 268435455u

/* One packet found at the start of a buffer. Once its fixed header is whole,
 * header_len and body_len are set (even while the body is still missing);
 * `body` points into the buffer only when the whole packet is there. */
typedef struct mqtt_frame {
    uint8_t type;
    uint8_t flags;      /* low nibble of the first byte */
    uint8_t rc;         /* set when mqtt_frame_parse returns MQTT_BAD */
    uint8_t header_len; /* 2..5; 0 while the header is incomplete */
    uint32_t body_len;  /* remaining length */
    const uint8_t *body;
} mqtt_frame;

/* Look for one packet at the start of buf[0..len).
 * Returns the packet's total length (> 0) and fills *f; MQTT_NEED_MORE when
 * the header or body is incomplete (once the header is whole,
 * mqtt_frame_size(f) says how many bytes the packet needs, so a reader
 * parses the header once and waits for exactly that many); MQTT_BAD with
 * f->rc set to 0x81
 * (malformed: type 0, a 5-byte varint, non-minimal encoding is accepted as
 * the spec allows) or 0x95 (the packet would exceed max_size, which counts
 * the whole packet, header included; 0 means no limit).
 * An oversize packet is refused as soon as its header is read, before its
 * body arrives. Never reads past len. */
int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_size, mqtt_frame *f);

/* Bytes the whole packet takes, header included; 0 while the header is
 * incomplete. */
static inline size_t mqtt_frame_size(const mqtt_frame *f)
{
    return f->header_len != 0 ? (size_t)f->header_len + f->body_len : 0;
}

/* Point a frame whose header was parsed from a copy (a reader's peek at the
 * first bytes) at the contiguous packet, header included, without parsing
 * it again. The packet must hold mqtt_frame_size(f) bytes. */
static inline void mqtt_frame_bind(mqtt_frame *f, const uint8_t *packet)
{
    f->body = packet + f->header_len;
}

/* Variable byte integer. mqtt_varint_read returns bytes used (1..4),
 * MQTT_NEED_MORE if `len` ends inside it, or MQTT_BAD for a 5th byte. */
int mqtt_varint_read(const uint8_t *buf, size_t len, uint32_t *value);
uint32_t mqtt_varint_size(uint32_t value); /* 1..4 */
uint32_t mqtt_varint_write(uint32_t value, uint8_t *dst);

#endif
