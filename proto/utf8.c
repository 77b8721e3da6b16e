/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 Encoded Strings (§1.5.4): well-formed per RFC 3629 (Unicode table
 * 3-7: no overlongs, no surrogates D800..DFFF, nothing above U+10FFFF) and
 * no U+0000 [MQTT-1.5.4-1, -2]. Control characters U+0001..U+001F and
 * U+007F..U+009F are reported, not refused here [MQTT-1.5.4-3 lets a
 * receiver choose]; the decoders refuse them where Shoal logs the string. */
#include <string.h>

#include "proto/utf8.h"

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* True when all 8 bytes are printable ASCII (0x20..0x7E): no high bit, no
 * byte below 0x20 (which also catches NUL) and no DEL. Classic SWAR tests:
 * (x - n*ONES) & ~x & HIGHS is non-zero iff some byte is below n (n<=128). */
static bool chunk_printable(const uint8_t *s)
{
    uint64_t x;
    memcpy(&x, s, sizeof(x));
    uint64_t below_space = (x - 0x20 * ONES) & ~x & HIGHS;
    uint64_t d = x ^ (0x7F * ONES);
    uint64_t has_del = (d - ONES) & ~d & HIGHS;
    return ((x & HIGHS) | below_space | has_del) == 0;
}

/* Decode one code point at s[0..len). Returns its length, or 0 when
 * ill-formed. Sets *cp. The ranges of the second byte follow Unicode table
 * 3-7, which rules out overlongs, surrogates and > U+10FFFF in one go. */
static size_t decode_one(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t c = s[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        *cp = c & 0x0F;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        *cp = c & 0x07;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    return n;
}

static bool is_control(uint32_t cp)
{
    return (cp >= 0x01 && cp <= 0x1F) || (cp >= 0x7F && cp <= 0x9F);
}

mqtt_utf8 mqtt_utf8_check(const uint8_t *s, size_t len)
{
    bool control = false;
    size_t i = 0;
    while (i < len) {
        /* Topics and ids are mostly ASCII: skip 8 bytes at a time. */
        if (len - i >= 8 && chunk_printable(s + i)) {
            i += 8;
            continue;
        }
        uint32_t cp;
        size_t n = decode_one(s + i, len - i, &cp);
        if (n == 0 || cp == 0) {
            return MQTT_UTF8_BAD;
        }
        control = control || is_control(cp);
        i += n;
    }
    return control ? MQTT_UTF8_CONTROL : MQTT_UTF8_OK;
}

bool mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    return mqtt_utf8_check(s, len) != MQTT_UTF8_BAD;
}
