/* Framing: the fixed header and the variable byte integer (§2.1, §1.5.5).
 * Only the framer can answer "need more bytes". */
#ifndef SHOAL_PROTO_FRAME_H
#define SHOAL_PROTO_FRAME_H

#include "proto/mqtt.h"

#define MQTT_NEED_MORE (-2)
#define MQTT_BAD (-1)

/* Largest remaining length a varint can carry (268,435,455). */
#define MQTT_MAX_REMAINING 268435455u

/* One complete packet found in a buffer. `body` points into that buffer. */
typedef struct mqtt_frame {
    uint8_t type;
    uint8_t flags;      /* low nibble of the first byte */
    uint8_t rc;         /* set when mqtt_frame_parse returns MQTT_BAD */
    uint8_t header_len; /* 2..5 */
    uint32_t body_len;  /* remaining length */
    const uint8_t *body;
} mqtt_frame;

/* Look for one packet at the start of buf[0..len).
 * Returns the packet's total length (> 0) and fills *f; MQTT_NEED_MORE when
 * the header or body is incomplete; MQTT_BAD with f->rc set to 0x81
 * (malformed: type 0, a 5-byte varint, non-minimal encoding is accepted as
 * the spec allows) or 0x95 (the packet would exceed max_size, which counts
 * the whole packet, header included; 0 means no limit).
 * An oversize packet is refused as soon as its header is read, before its
 * body arrives. Never reads past len. */
int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_size, mqtt_frame *f);

/* Variable byte integer. mqtt_varint_read returns bytes used (1..4),
 * MQTT_NEED_MORE if `len` ends inside it, or MQTT_BAD for a 5th byte. */
int mqtt_varint_read(const uint8_t *buf, size_t len, uint32_t *value);
uint32_t mqtt_varint_size(uint32_t value); /* 1..4 */
uint32_t mqtt_varint_write(uint32_t value, uint8_t *dst);

#endif
