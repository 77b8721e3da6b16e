/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the proto/ sources: cursor readers, big-endian writers and the
 * fixed-header rules. Never include this from outside proto/.
 *
 * Readers follow HAProxy's mqtt_read_* (src/mqtt.c): a cursor is a borrowed
 * slice; each reader checks the bytes it needs against the cursor, advances
 * it on success and leaves it untouched on failure. A reader failing inside
 * a complete frame always means 0x81 Malformed (never "need more"). */
#ifndef SHOAL_PROTO_CODEC_IMPL_H
#define SHOAL_PROTO_CODEC_IMPL_H

#include <string.h>

#include "proto/frame.h"
#include "proto/mqtt.h"
#include "proto/props.h"
#include "proto/utf8.h"

static inline mqtt_bytes cur_make(const uint8_t *p, uint32_t len)
{
    mqtt_bytes c = {p, len};
    return c;
}

static inline void cur_skip(mqtt_bytes *c, uint32_t n)
{
    c->p += n;
    c->len -= n;
}

/* §1.5.1 One Byte Integer. */
static inline bool rd_u8(mqtt_bytes *c, uint8_t *v)
{
    if (c->len < 1) {
        return false;
    }
    *v = c->p[0];
    cur_skip(c, 1);
    return true;
}

/* §1.5.2 Two Byte Integer, big-endian. */
static inline bool rd_u16(mqtt_bytes *c, uint16_t *v)
{
    if (c->len < 2) {
        return false;
    }
    *v = (uint16_t)((c->p[0] << 8) | c->p[1]);
    cur_skip(c, 2);
    return true;
}

/* §1.5.3 Four Byte Integer, big-endian. */
static inline bool rd_u32(mqtt_bytes *c, uint32_t *v)
{
    if (c->len < 4) {
        return false;
    }
    *v = ((uint32_t)c->p[0] << 24) | ((uint32_t)c->p[1] << 16) | ((uint32_t)c->p[2] << 8) | (uint32_t)c->p[3];
    cur_skip(c, 4);
    return true;
}

/* §1.5.5 Variable Byte Integer inside a frame: running out is malformed. */
static inline bool rd_varint(mqtt_bytes *c, uint32_t *v)
{
    int n = mqtt_varint_read(c->p, c->len, v);
    if (n <= 0) {
        return false;
    }
    cur_skip(c, (uint32_t)n);
    return true;
}

/* §1.5.6 Binary Data: two-byte length then that many bytes. */
static inline bool rd_bin(mqtt_bytes *c, mqtt_bytes *out)
{
    mqtt_bytes t = *c;
    uint16_t n;
    if (!rd_u16(&t, &n) || t.len < n) {
        return false;
    }
    *out = cur_make(t.p, n);
    cur_skip(&t, n);
    *c = t;
    return true;
}

/* §1.5.4 UTF-8 Encoded String: Binary Data that must also be valid UTF-8
 * (ill-formed strings make the packet malformed, §1.5.4 last paragraph). */
static inline bool rd_str(mqtt_bytes *c, mqtt_bytes *out)
{
    mqtt_bytes t = *c;
    if (!rd_bin(&t, out) || !mqtt_utf8_valid(out->p, out->len)) {
        return false;
    }
    *c = t;
    return true;
}

/* A topic name or filter, or another string Shoal logs and shows (client
 * id, user name): a UTF-8 Encoded String without the control characters
 * U+0001..U+001F and U+007F..U+009F. [MQTT-1.5.4-3] lets a receiver treat
 * them as a Malformed Packet, as Mosquitto does; refusing them here means
 * a newline can never forge a log line or reach the admin API. */
static inline bool rd_printable(mqtt_bytes *c, mqtt_bytes *out)
{
    mqtt_bytes t = *c;
    if (!rd_bin(&t, out) || mqtt_utf8_check(out->p, out->len) != MQTT_UTF8_OK) {
        return false;
    }
    *c = t;
    return true;
}

static inline uint8_t *wr_u8(uint8_t *d, uint8_t v)
{
    d[0] = v;
    return d + 1;
}

static inline uint8_t *wr_u16(uint8_t *d, uint16_t v)
{
    d[0] = (uint8_t)(v >> 8);
    d[1] = (uint8_t)v;
    return d + 2;
}

static inline uint8_t *wr_u32(uint8_t *d, uint32_t v)
{
    d[0] = (uint8_t)(v >> 24);
    d[1] = (uint8_t)(v >> 16);
    d[2] = (uint8_t)(v >> 8);
    d[3] = (uint8_t)v;
    return d + 4;
}

static inline uint8_t *wr_varint(uint8_t *d, uint32_t v)
{
    return d + mqtt_varint_write(v, d);
}

/* Two-byte length then the bytes; p may be NULL when len is 0. */
static inline uint8_t *wr_bin(uint8_t *d, mqtt_bytes b)
{
    d = wr_u16(d, (uint16_t)b.len);
    if (b.len > 0) {
        memcpy(d, b.p, b.len);
    }
    return d + b.len;
}

static inline uint8_t *wr_raw(uint8_t *d, mqtt_bytes b)
{
    if (b.len > 0) {
        memcpy(d, b.p, b.len);
    }
    return d + b.len;
}

/* Fixed header: type/flags byte then the remaining length. */
static inline uint8_t *wr_header(uint8_t *d, uint8_t type, uint8_t flags, uint32_t rem)
{
    d = wr_u8(d, (uint8_t)((type << 4) | (flags & 0x0F)));
    return wr_varint(d, rem);
}

static inline size_t packet_size(uint32_t rem)
{
    return 1u + mqtt_varint_size(rem) + rem;
}

static inline bool is_v5(uint8_t version)
{
    return version >= MQTT_V5;
}

/* The frame's body as a cursor. */
static inline mqtt_bytes frame_body(const mqtt_frame *f)
{
    return cur_make(f->body, f->body_len);
}

/* §2.1.3: the required fixed-header flags, -1 for PUBLISH whose flags
 * carry DUP/QoS/RETAIN and are checked by its decoder, -2 for type 0 or
 * anything above 15. */
int mqtt__required_flags(uint8_t type);

/* True when the frame's type is `type` and its flags are the required
 * ones (§2.1.3: anything else is malformed). */
bool mqtt__flags_ok(const mqtt_frame *f, uint8_t type);

/* Read a v5 property block when `version` is 5; otherwise zero `out`. */
mqtt_rc mqtt__read_props(mqtt_bytes *c, uint8_t version, uint8_t ctx, mqtt_props *out);

/* Whether a reason code may appear in a packet of `type` (v5 tables of
 * §3.x.2.1); ctx is the packet type. */
bool mqtt__rc_allowed(uint8_t type, uint8_t rc);

/* v5 block size for encoding (0 for older versions). */
static inline uint32_t props_size_v(const mqtt_props *pr, uint8_t version)
{
    return is_v5(version) ? mqtt_props_block_size(pr) : 0;
}

/* Write a v5 block (nothing for older versions); NULL props is empty. */
uint8_t *mqtt__write_props(uint8_t *d, const mqtt_props *pr, uint8_t version);

#endif
