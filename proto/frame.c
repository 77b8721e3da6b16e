/* SPDX-License-Identifier: Apache-2.0 */
/* Framing: the fixed header (§2.1) and the Variable Byte Integer (§1.5.5).
 * Shaped like picohttpparser's phr_parse_request: a pure function over the
 * caller's bytes that answers length / need more / bad. */
#include <string.h>

#include "proto/codec_impl.h"
#include "proto/frame.h"

/* §1.5.5: at most four bytes, seven bits each, least significant first.
 * Non-minimal encodings (0x80 0x00) are accepted: the spec only asks
 * senders to use the minimum. */
int mqtt_varint_read(const uint8_t *buf, size_t len, uint32_t *value)
{
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len) {
            return MQTT_NEED_MORE;
        }
        v |= (uint32_t)(buf[i] & 0x7F) << (7 * i);
        if ((buf[i] & 0x80) == 0) {
            *value = v;
            return (int)i + 1;
        }
    }
    /* The fourth byte still had its continuation bit: a fifth byte would be
     * needed, which §1.5.5 forbids. */
    return MQTT_BAD;
}

uint32_t mqtt_varint_size(uint32_t value)
{
    if (value < 128u) {
        return 1;
    }
    if (value < 16384u) {
        return 2;
    }
    if (value < 2097152u) {
        return 3;
    }
    return 4;
}

uint32_t mqtt_varint_write(uint32_t value, uint8_t *dst)
{
    uint32_t n = 0;
    do {
        uint8_t b = (uint8_t)(value & 0x7F);
        value >>= 7;
        if (value > 0) {
            b |= 0x80;
        }
        dst[n++] = b;
    } while (value > 0 && n < 4);
    return n;
}

static int frame_bad(mqtt_frame *f, uint8_t rc)
{
    f->rc = rc;
    return MQTT_BAD;
}

int mqtt_frame_parse(const uint8_t *buf, size_t len, uint32_t max_size, mqtt_frame *f)
{
    /* Reset outputs so a partial parse never leaves stale values. */
    memset(f, 0, sizeof(*f));
    if (len < 1) {
        return MQTT_NEED_MORE;
    }
    f->type = (uint8_t)(buf[0] >> 4);
    f->flags = (uint8_t)(buf[0] & 0x0F);
    /* §2.1.2: packet type 0 is reserved, so the stream is not MQTT. */
    if (f->type == 0) {
        return frame_bad(f, MQTT_RC_MALFORMED);
    }
    uint32_t rem;
    int n = mqtt_varint_read(buf + 1, len - 1, &rem);
    if (n == MQTT_NEED_MORE) {
        return MQTT_NEED_MORE;
    }
    if (n == MQTT_BAD) {
        return frame_bad(f, MQTT_RC_MALFORMED);
    }
    uint64_t total = 1u + (uint64_t)n + rem;
    /* MQTT 5 §3.1.2.11.4 / §4.13: refuse an oversize packet from its
     * header alone, so its body is never buffered. */
    if (max_size != 0 && total > max_size) {
        return frame_bad(f, MQTT_RC_PACKET_TOO_LARGE);
    }
    /* The header is whole: say what the packet needs even when the body has
     * not arrived, so the caller never parses this header again. */
    f->header_len = (uint8_t)(1 + n);
    f->body_len = rem;
    if (len < total) {
        return MQTT_NEED_MORE;
    }
    f->body = buf + 1 + n;
    return (int)total;
}
