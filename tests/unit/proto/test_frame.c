/* SPDX-License-Identifier: Apache-2.0 */
/* proto/frame.c: the Variable Byte Integer and mqtt_frame_parse(). */
#include "harness.h"

typedef struct varint_case {
    uint8_t bytes[5];
    size_t len;
    int want; /* bytes used, MQTT_NEED_MORE or MQTT_BAD */
    uint32_t value;
} varint_case;

/* §1.5.5 table 1-1 boundaries, plus non-minimal and oversize forms. */
static const varint_case varints[] = {
    {{0x00}, 1, 1, 0},
    {{0x7F}, 1, 1, 127},
    {{0x80, 0x01}, 2, 2, 128},
    {{0xFF, 0x7F}, 2, 2, 16383},
    {{0x80, 0x80, 0x01}, 3, 3, 16384},
    {{0xFF, 0xFF, 0x7F}, 3, 3, 2097151},
    {{0x80, 0x80, 0x80, 0x01}, 4, 4, 2097152},
    {{0xFF, 0xFF, 0xFF, 0x7F}, 4, 4, 268435455},
    {{0x80, 0x00}, 2, 2, 0},             /* non-minimal: accepted */
    {{0x81, 0x80, 0x80, 0x00}, 4, 4, 1}, /* non-minimal: accepted */
    {{0x80}, 1, MQTT_NEED_MORE, 0},
    {{0xFF, 0xFF, 0xFF}, 3, MQTT_NEED_MORE, 0},
    {{0x80, 0x80, 0x80, 0x80}, 4, MQTT_BAD, 0},
    {{0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, 5, MQTT_BAD, 0},
    {{0}, 0, MQTT_NEED_MORE, 0},
};

Test(frame, varint_read_table)
{
    for (size_t i = 0; i < N_OF(varints); i++) {
        const varint_case *c = &varints[i];
        guard g;
        uint32_t v = 0xDEADBEEF;
        const uint8_t *b = guard_place(&g, c->bytes, c->len);
        int n = mqtt_varint_read(b, c->len, &v);
        cr_assert_eq(n, c->want, "case %zu: got %d", i, n);
        if (n > 0) {
            cr_assert_eq(v, c->value, "case %zu: value %u", i, v);
        }
        guard_free(&g);
    }
}

Test(frame, varint_write_size_and_read_back)
{
    static const uint32_t values[] = {0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 12345678, 268435455};
    for (size_t i = 0; i < N_OF(values); i++) {
        uint8_t buf[4];
        uint32_t n = mqtt_varint_write(values[i], buf);
        uint32_t back;
        cr_assert_eq(n, mqtt_varint_size(values[i]));
        cr_assert_eq(mqtt_varint_read(buf, n, &back), (int)n);
        cr_assert_eq(back, values[i]);
    }
}

Test(frame, varint_sizes)
{
    cr_assert_eq(mqtt_varint_size(0), 1);
    cr_assert_eq(mqtt_varint_size(127), 1);
    cr_assert_eq(mqtt_varint_size(128), 2);
    cr_assert_eq(mqtt_varint_size(16383), 2);
    cr_assert_eq(mqtt_varint_size(16384), 3);
    cr_assert_eq(mqtt_varint_size(2097151), 3);
    cr_assert_eq(mqtt_varint_size(2097152), 4);
    cr_assert_eq(mqtt_varint_size(MQTT_MAX_REMAINING), 4);
}

Test(frame, fields_of_a_frame)
{
    mqtt_frame f;
    int n = mqtt_frame_parse(v_pubrel_v311, sizeof(v_pubrel_v311), 0, &f);
    cr_assert_eq(n, 4);
    cr_assert_eq(f.type, MQTT_PUBREL);
    cr_assert_eq(f.flags, 0x2);
    cr_assert_eq(f.rc, 0);
    cr_assert_eq(f.header_len, 2);
    cr_assert_eq(f.body_len, 2);
    cr_assert_eq(f.body, v_pubrel_v311 + 2);
}

Test(frame, consumes_only_the_first_packet)
{
    uint8_t two[64];
    memcpy(two, v_puback_v311, 4);
    memcpy(two + 4, v_pingreq, 2);
    mqtt_frame f;
    cr_assert_eq(mqtt_frame_parse(two, 6, 0, &f), 4);
    cr_assert_eq(f.type, MQTT_PUBACK);
    cr_assert_eq(mqtt_frame_parse(two + 4, 2, 0, &f), 2);
    cr_assert_eq(f.type, MQTT_PINGREQ);
}

Test(frame, empty_input_needs_more)
{
    mqtt_frame f;
    cr_assert_eq(mqtt_frame_parse(NULL, 0, 0, &f), MQTT_NEED_MORE);
}

Test(frame, type_0_is_malformed_from_first_byte)
{
    static const uint8_t b[] = {0x00};
    mqtt_frame f;
    cr_assert_eq(mqtt_frame_parse(b, 1, 0, &f), MQTT_BAD);
    cr_assert_eq(f.rc, MQTT_RC_MALFORMED);
}

Test(frame, five_byte_varint_is_malformed)
{
    static const uint8_t b[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    mqtt_frame f;
    cr_assert_eq(mqtt_frame_parse(b, sizeof(b), 0, &f), MQTT_BAD);
    cr_assert_eq(f.rc, MQTT_RC_MALFORMED);
    /* Known as soon as the fourth length byte has its continuation bit. */
    cr_assert_eq(mqtt_frame_parse(b, 5, 0, &f), MQTT_BAD);
}

Test(frame, oversize_refused_from_header_alone)
{
    /* 1 + 3 + 2097151 bytes announced; only the header is here. */
    static const uint8_t b[] = {0x30, 0xFF, 0xFF, 0x7F};
    mqtt_frame f;
    cr_assert_eq(mqtt_frame_parse(b, sizeof(b), 1000, &f), MQTT_BAD);
    cr_assert_eq(f.rc, MQTT_RC_PACKET_TOO_LARGE);
    cr_assert_eq(mqtt_frame_parse(b, sizeof(b), 0, &f), MQTT_NEED_MORE, "0 means no limit");
}

Test(frame, max_size_counts_the_whole_packet)
{
    mqtt_frame f;
    size_t len = sizeof(v_publish_v311_qos0); /* 12 bytes, body 10 */
    cr_assert_eq(mqtt_frame_parse(v_publish_v311_qos0, len, (uint32_t)len, &f), (int)len);
    cr_assert_eq(mqtt_frame_parse(v_publish_v311_qos0, len, (uint32_t)len - 1, &f), MQTT_BAD);
    cr_assert_eq(f.rc, MQTT_RC_PACKET_TOO_LARGE);
}

Test(frame, largest_remaining_length_needs_more)
{
    static const uint8_t b[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00};
    mqtt_frame f;
    cr_assert_eq(mqtt_frame_parse(b, sizeof(b), 0, &f), MQTT_NEED_MORE);
}

Test(frame, reset_outputs_on_entry)
{
    mqtt_frame f;
    memset(&f, 0xAB, sizeof(f));
    cr_assert_eq(mqtt_frame_parse(v_pingreq, 1, 0, &f), MQTT_NEED_MORE);
    cr_assert_null(f.body);
    cr_assert_eq(f.body_len, 0);
    cr_assert_eq(f.rc, 0);
}

/* Byte-at-a-time framing: every vector, concatenated into one stream, fed
 * one byte at a time into an accumulating buffer; each packet must pop out
 * exactly when its last byte arrives, and decode. */
Test(frame, stream_of_all_vectors_byte_at_a_time)
{
    static uint8_t stream[8192], acc[8192];
    size_t total = 0, have = 0, next = 0;
    for (size_t i = 0; i < N_VECTORS; i++) {
        memcpy(stream + total, vectors[i].bytes, vectors[i].len);
        total += vectors[i].len;
    }
    size_t boundary = vectors[0].len;
    for (size_t i = 0; i < total; i++) {
        acc[have++] = stream[i];
        mqtt_frame f;
        mqtt_packet p;
        int n = mqtt_frame_parse(acc, have, 0, &f);
        if (i + 1 < boundary) {
            cr_assert_eq(n, MQTT_NEED_MORE, "%s: byte %zu", vectors[next].name, i);
            continue;
        }
        cr_assert_eq(n, (int)vectors[next].len, "%s", vectors[next].name);
        cr_assert_eq(mqtt_decode(&f, vectors[next].version, &p), MQTT_RC_SUCCESS, "%s", vectors[next].name);
        have = 0;
        next++;
        boundary += next < N_VECTORS ? vectors[next].len : 0;
    }
    cr_assert_eq(next, N_VECTORS);
}

/* A buffer holding several packets at once yields them in order. */
Test(frame, stream_of_all_vectors_at_once)
{
    static uint8_t stream[8192];
    size_t total = 0, off = 0;
    for (size_t i = 0; i < N_VECTORS; i++) {
        memcpy(stream + total, vectors[i].bytes, vectors[i].len);
        total += vectors[i].len;
    }
    for (size_t i = 0; i < N_VECTORS; i++) {
        mqtt_frame f;
        int n = mqtt_frame_parse(stream + off, total - off, 0, &f);
        cr_assert_eq(n, (int)vectors[i].len, "%s", vectors[i].name);
        off += (size_t)n;
    }
    cr_assert_eq(off, total);
}

/* Length of the fixed header of a complete packet: 1 + its varint. */
static size_t header_len_of(const uint8_t *b, size_t len)
{
    uint32_t rem;
    int n = mqtt_varint_read(b + 1, len - 1, &rem);
    cr_assert_gt(n, 0);
    return 1u + (size_t)n;
}

/* Every prefix of every vector, each ending at a guard page: before the
 * header is whole the framer knows nothing but type and flags; from the
 * last header byte on it says how many bytes the packet needs, so a reader
 * parses the header once and then waits for exactly that many. */
Test(frame, every_prefix_reports_the_needed_length)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        const vec *v = &vectors[i];
        size_t hl = header_len_of(v->bytes, v->len);
        for (size_t k = 0; k <= v->len; k++) {
            guard g;
            mqtt_frame f;
            const uint8_t *b = guard_place(&g, v->bytes, k);
            int n = mqtt_frame_parse(b, k, 0, &f);
            if (k == v->len) {
                cr_assert_eq(n, (int)v->len, "%s: whole packet gave %d", v->name, n);
                cr_assert_eq(f.body, b + hl, "%s", v->name);
            } else {
                cr_assert_eq(n, MQTT_NEED_MORE, "%s: prefix %zu gave %d", v->name, k, n);
                cr_assert_null(f.body, "%s: prefix %zu has a body", v->name, k);
            }
            if (k >= hl) {
                cr_assert_eq(f.header_len, hl, "%s: prefix %zu header %u", v->name, k, f.header_len);
                cr_assert_eq(mqtt_frame_size(&f), v->len, "%s: prefix %zu needs %zu", v->name, k, mqtt_frame_size(&f));
                cr_assert_eq(f.type, v->bytes[0] >> 4);
            } else {
                cr_assert_eq(f.header_len, 0, "%s: prefix %zu", v->name, k);
                cr_assert_eq(mqtt_frame_size(&f), 0, "%s: prefix %zu", v->name, k);
            }
            guard_free(&g);
        }
    }
}

/* The largest packet announces its size from its five header bytes. */
Test(frame, header_alone_gives_the_largest_size)
{
    static const uint8_t b[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    guard g;
    mqtt_frame f;
    const uint8_t *p = guard_place(&g, b, sizeof(b));
    cr_assert_eq(mqtt_frame_parse(p, sizeof(b), 0, &f), MQTT_NEED_MORE);
    cr_assert_eq(f.header_len, 5);
    cr_assert_eq(f.body_len, MQTT_MAX_REMAINING);
    cr_assert_eq(mqtt_frame_size(&f), 5u + MQTT_MAX_REMAINING);
    guard_free(&g);
}

/* The reader's path: parse the header from a copy of its first bytes, then
 * bind the frame to the contiguous packet without parsing it again. */
Test(frame, bind_points_the_body_into_the_packet)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        const vec *v = &vectors[i];
        uint8_t head[5];
        size_t hn = v->len < 5 ? v->len : 5;
        memcpy(head, v->bytes, hn);
        mqtt_frame f;
        int n = mqtt_frame_parse(head, hn, 0, &f);
        cr_assert(n == MQTT_NEED_MORE || n == (int)v->len, "%s", v->name);
        cr_assert_eq(mqtt_frame_size(&f), v->len, "%s", v->name);
        mqtt_frame_bind(&f, v->bytes);
        mqtt_frame whole;
        cr_assert_eq(mqtt_frame_parse(v->bytes, v->len, 0, &whole), (int)v->len);
        cr_assert_eq(memcmp(&f, &whole, sizeof(f)), 0, "%s", v->name);
    }
}
