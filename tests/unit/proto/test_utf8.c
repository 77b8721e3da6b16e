/* SPDX-License-Identifier: Apache-2.0 */
/* proto/utf8.c: §1.5.4 UTF-8 rules. */
#include "harness.h"
#include "proto/utf8.h"

typedef struct utf8_case {
    const char *what;
    const char *s;
    size_t len;
    mqtt_utf8 want;
} utf8_case;

#define U(what, lit, want)               \
    {                                    \
        what, lit, sizeof(lit) - 1, want \
    }

static const utf8_case cases[] = {
    U("empty", "", MQTT_UTF8_OK),
    U("ascii", "hello/world", MQTT_UTF8_OK),
    U("long ascii", "abcdefghijklmnopqrstuvwxyz0123456789", MQTT_UTF8_OK),
    U("two byte", "caf\xC3\xA9", MQTT_UTF8_OK),
    U("three byte", "\xE2\x82\xAC", MQTT_UTF8_OK),
    U("four byte", "\xF0\x9F\x98\x80", MQTT_UTF8_OK),
    U("U+10FFFF", "\xF4\x8F\xBF\xBF", MQTT_UTF8_OK),
    U("U+FEFF BOM kept",
      "\xEF\xBB\xBF"
      "a",
      MQTT_UTF8_OK),
    U("U+FFFF noncharacter", "\xEF\xBF\xBF", MQTT_UTF8_OK),
    U("U+D7FF before surrogates", "\xED\x9F\xBF", MQTT_UTF8_OK),
    U("U+E000 after surrogates", "\xEE\x80\x80", MQTT_UTF8_OK),
    U("U+0800 smallest 3-byte", "\xE0\xA0\x80", MQTT_UTF8_OK),
    U("U+10000 smallest 4-byte", "\xF0\x90\x80\x80", MQTT_UTF8_OK),
    U("U+0080 smallest 2-byte", "\xC2\x80", MQTT_UTF8_CONTROL),
    U("U+0001",
      "a\x01"
      "b",
      MQTT_UTF8_CONTROL),
    U("U+001F", "\x1F", MQTT_UTF8_CONTROL),
    U("U+007F", "abcdefgh\x7F", MQTT_UTF8_CONTROL),
    U("U+009F", "\xC2\x9F", MQTT_UTF8_CONTROL),
    U("U+00A0 not control", "\xC2\xA0", MQTT_UTF8_OK),
    U("U+0000",
      "a\x00"
      "b",
      MQTT_UTF8_BAD),
    U("U+0000 in a long run", "abcdefghij\x00klmnop", MQTT_UTF8_BAD),
    U("overlong NUL", "\xC0\x80", MQTT_UTF8_BAD),
    U("overlong slash", "\xC0\xAF", MQTT_UTF8_BAD),
    U("overlong C1", "\xC1\xBF", MQTT_UTF8_BAD),
    U("overlong 3-byte", "\xE0\x80\xAF", MQTT_UTF8_BAD),
    U("overlong 3-byte max", "\xE0\x9F\xBF", MQTT_UTF8_BAD),
    U("overlong 4-byte", "\xF0\x8F\xBF\xBF", MQTT_UTF8_BAD),
    U("surrogate D800", "\xED\xA0\x80", MQTT_UTF8_BAD),
    U("surrogate DFFF", "\xED\xBF\xBF", MQTT_UTF8_BAD),
    U("above U+10FFFF", "\xF4\x90\x80\x80", MQTT_UTF8_BAD),
    U("F5 lead", "\xF5\x80\x80\x80", MQTT_UTF8_BAD),
    U("FF byte", "\xFF", MQTT_UTF8_BAD),
    U("FE byte", "ab\xFE", MQTT_UTF8_BAD),
    U("lone continuation", "\x80", MQTT_UTF8_BAD),
    U("continuation after ascii run", "abcdefgh\xBF", MQTT_UTF8_BAD),
    U("truncated 2-byte", "\xC3", MQTT_UTF8_BAD),
    U("truncated 3-byte", "\xE2\x82", MQTT_UTF8_BAD),
    U("truncated 4-byte", "\xF0\x9F\x98", MQTT_UTF8_BAD),
    U("bad continuation", "\xC3\x28", MQTT_UTF8_BAD),
    U("bad third byte", "\xE2\x82\x28", MQTT_UTF8_BAD),
    U("bad fourth byte", "\xF0\x9F\x98\x28", MQTT_UTF8_BAD),
    U("5-byte form", "\xF8\x88\x80\x80\x80", MQTT_UTF8_BAD),
};

ParameterizedTestParameters(utf8, table)
{
    TABLE_PARAMS(cases);
}

/* Each case runs against a guard page, so a decoder that reads past a
 * truncated sequence crashes. */
ParameterizedTest(size_t *i, utf8, table)
{
    const utf8_case *c = &cases[*i];
    guard g;
    const uint8_t *b = guard_place(&g, (const uint8_t *)c->s, c->len);
    mqtt_utf8 got = mqtt_utf8_check(b, c->len);
    cr_assert_eq(got, c->want, "%s: got %d want %d", c->what, got, c->want);
    cr_assert_eq(mqtt_utf8_valid(b, c->len), c->want != MQTT_UTF8_BAD, "%s", c->what);
    guard_free(&g);
}

/* The 8-byte fast path must not hide a bad or control byte at any offset. */
Test(utf8, fast_path_every_offset)
{
    uint8_t buf[40];
    for (size_t pos = 0; pos < sizeof(buf); pos++) {
        memset(buf, 'a', sizeof(buf));
        buf[pos] = 0x00;
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_BAD, "NUL at %zu", pos);
        buf[pos] = 0x1B;
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_CONTROL, "ESC at %zu", pos);
        buf[pos] = 0x7F;
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_CONTROL, "DEL at %zu", pos);
        buf[pos] = 0x80;
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_BAD, "0x80 at %zu", pos);
        buf[pos] = ' ';
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_OK, "space at %zu", pos);
        buf[pos] = '~';
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_OK, "tilde at %zu", pos);
    }
}

/* A multi-byte character straddling the 8-byte chunk boundary. */
Test(utf8, multibyte_across_chunk_boundary)
{
    for (size_t pos = 0; pos + 4 <= 24; pos++) {
        uint8_t buf[24];
        memset(buf, 'x', sizeof(buf));
        memcpy(buf + pos, "\xF0\x9F\x98\x80", 4);
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_OK, "at %zu", pos);
        buf[pos + 3] = 'x';
        cr_assert_eq(mqtt_utf8_check(buf, sizeof(buf)), MQTT_UTF8_BAD, "cut at %zu", pos);
    }
}

/* Every ASCII byte value classified one by one. */
Test(utf8, every_single_byte)
{
    for (unsigned c = 0; c < 256; c++) {
        uint8_t b = (uint8_t)c;
        mqtt_utf8 want;
        if (c == 0 || c >= 0x80) {
            want = MQTT_UTF8_BAD;
        } else if (c < 0x20 || c == 0x7F) {
            want = MQTT_UTF8_CONTROL;
        } else {
            want = MQTT_UTF8_OK;
        }
        cr_assert_eq(mqtt_utf8_check(&b, 1), want, "byte 0x%02x", c);
    }
}

/* Exhaustive over all two-byte sequences against a straightforward
 * reference (RFC 3629 for 2-byte forms). */
Test(utf8, all_two_byte_sequences)
{
    for (unsigned a = 0xC0; a < 0x100; a++) {
        for (unsigned b = 0; b < 0x100; b++) {
            uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
            bool well = a >= 0xC2 && a <= 0xDF && b >= 0x80 && b <= 0xBF;
            cr_assert_eq(mqtt_utf8_valid(s, 2), well, "%02x %02x", a, b);
        }
    }
}

Test(utf8, null_pointer_with_zero_length)
{
    cr_assert_eq(mqtt_utf8_check(NULL, 0), MQTT_UTF8_OK);
}
