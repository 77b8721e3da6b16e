/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for proto/.
 *
 * The input is framed repeatedly under several maximum sizes; each frame is
 * decoded as protocol level 3, 4 and 5; every successful decode is encoded
 * again (size must equal bytes written), re-framed and re-decoded, and the
 * two decodes must be semantically equal (tests/unit/proto/packet_eq.h).
 * The string helpers (UTF-8, topic validators, matcher, $share parser), the
 * property reader and the entry cursors also run on slices of the input.
 * Any broken invariant aborts, which libFuzzer reports as a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "packet_eq.h"
#include "proto/frame.h"
#include "proto/packet.h"
#include "proto/props.h"
#include "proto/topic.h"
#include "proto/utf8.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encode a decoded packet, decode the result, compare. */
static void roundtrip(const mqtt_packet *a, uint8_t version, size_t frame_len)
{
    /* User properties and subscription ids never outnumber the bytes. */
    uint8_t *ubuf = malloc(frame_len + 1);
    uint32_t *ids = malloc((frame_len + 1) * sizeof(uint32_t));
    CHECK(ubuf != NULL && ids != NULL);
    mqtt_packet e = *a;
    packet_for_encode(&e, ubuf, ids);
    uint8_t ver = a->type == MQTT_CONNECT ? a->u.connect.version : version;
    size_t size = mqtt_size(&e, ver);
    uint8_t *out = malloc(size);
    CHECK(out != NULL);
    size_t n = mqtt_encode(&e, ver, out);
    CHECK(n == size);

    mqtt_frame f;
    mqtt_packet b;
    CHECK(mqtt_frame_parse(out, n, 0, &f) == (int)n);
    mqtt_rc rc = mqtt_decode(&f, version, &b);
    if (rc != MQTT_RC_SUCCESS) {
        fprintf(stderr, "re-decode of %s v%u failed: 0x%02x\n", mqtt_type_name(a->type), version, rc);
    }
    CHECK(rc == MQTT_RC_SUCCESS);
    CHECK(packet_eq(a, &b));
    free(out);
    free(ids);
    free(ubuf);
}

/* Walk what a decoder validated; the cursors must agree with the count. */
static void walk_entries(const mqtt_packet *p, uint8_t version)
{
    uint32_t n = 0;
    if (p->type == MQTT_SUBSCRIBE) {
        mqtt_bytes cur = p->u.subscribe.entries;
        mqtt_sub s;
        while (mqtt_sub_next(&cur, version, &s)) {
            CHECK(s.filter.len > 0 && s.qos <= 2 && s.retain_handling <= 2);
            n++;
        }
        CHECK(n == p->u.subscribe.count);
    } else if (p->type == MQTT_UNSUBSCRIBE) {
        mqtt_bytes cur = p->u.unsubscribe.entries;
        mqtt_bytes filter;
        while (mqtt_unsub_next(&cur, &filter)) {
            n++;
        }
        CHECK(n == p->u.unsubscribe.count);
    }
}

static void decode_frame(const mqtt_frame *f, size_t frame_len)
{
    for (uint8_t version = 3; version <= 5; version++) {
        mqtt_packet p;
        mqtt_rc rc = mqtt_decode(f, version, &p);
        /* Decoders answer success or a failure code, nothing in between. */
        CHECK(rc == MQTT_RC_SUCCESS || rc >= 0x80);
        if (rc == MQTT_RC_SUCCESS) {
            walk_entries(&p, version);
            roundtrip(&p, version, frame_len);
        }
    }
}

static void frame_all(const uint8_t *data, size_t size, uint32_t max_size)
{
    size_t off = 0;
    while (off < size) {
        mqtt_frame f;
        int n = mqtt_frame_parse(data + off, size - off, max_size, &f);
        if (n == MQTT_NEED_MORE) {
            /* A whole header says how much is missing: more than is here,
             * never past the largest packet, never a body pointer. */
            size_t need = mqtt_frame_size(&f);
            CHECK(f.body == NULL);
            CHECK(need == 0 || (need > size - off && need <= 5u + MQTT_MAX_REMAINING));
            CHECK(need != 0 || size - off < 5);
            return;
        }
        if (n == MQTT_BAD) {
            CHECK(f.rc == MQTT_RC_MALFORMED || (f.rc == MQTT_RC_PACKET_TOO_LARGE && max_size));
            return;
        }
        CHECK(n > 0 && (size_t)n <= size - off);
        CHECK((size_t)f.header_len + f.body_len == (size_t)n);
        CHECK(max_size == 0 || (uint32_t)n <= max_size);
        decode_frame(&f, (size_t)n);
        off += (size_t)n;
    }
}

/* Property reader on raw bytes in the context named by the first byte,
 * then write what it read and read that back. */
static void props_on(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return;
    }
    uint8_t ctx = data[0] & 0x0F;
    mqtt_bytes in = {data + 1, (uint32_t)(size - 1)};
    mqtt_props pr;
    uint32_t used;
    mqtt_rc rc = mqtt_props_read(in, ctx, &pr, &used);
    if (rc != MQTT_RC_SUCCESS) {
        CHECK(rc >= 0x80 && used == 0);
        return;
    }
    CHECK(used <= in.len && pr.raw.len == used);
    uint8_t *ubuf = malloc(size);
    uint32_t *ids = malloc(size * sizeof(uint32_t));
    CHECK(ubuf != NULL && ids != NULL);
    mqtt_props enc = pr;
    props_for_encode(&enc, ubuf, ids);
    uint32_t bsize = mqtt_props_block_size(&enc);
    uint8_t *out = malloc(bsize);
    CHECK(out != NULL);
    CHECK(mqtt_props_write(&enc, out) == bsize);
    mqtt_props back;
    CHECK(mqtt_props_read((mqtt_bytes){out, bsize}, ctx, &back, &used) == MQTT_RC_SUCCESS);
    CHECK(used == bsize && props_eq(&pr, &back));
    free(out);
    free(ids);
    free(ubuf);
}

/* String helpers on slices: the whole input and its two halves. */
static void strings_on(const uint8_t *data, size_t size)
{
    size_t half = size / 2;
    const uint8_t *a = data, *b = data + half;
    size_t alen = half, blen = size - half;
    mqtt_utf8 u = mqtt_utf8_check(data, size);
    CHECK(mqtt_utf8_valid(data, size) == (u != MQTT_UTF8_BAD));
    bool fvalid = mqtt_topic_filter_valid(a, alen);
    bool nvalid = mqtt_topic_name_valid(b, blen);
    CHECK(!mqtt_topic_name_valid(a, alen) || fvalid); /* every name is a filter */
    bool m = mqtt_topic_match(a, alen, b, blen);
    /* A valid name matches itself as a filter, and "#" matches every valid
     * name that does not start with '$' (§4.7.2). */
    if (nvalid) {
        CHECK(mqtt_topic_match(b, blen, b, blen));
        CHECK(mqtt_topic_match((const uint8_t *)"#", 1, b, blen) == (b[0] != '$'));
    }
    (void)m;
    mqtt_bytes group, filter;
    int s = mqtt_share_parse(data, size, &group, &filter);
    CHECK(s >= -1 && s <= 1);
    if (s == 1) {
        CHECK(group.len > 0 && mqtt_topic_filter_valid(filter.p, filter.len));
        CHECK(filter.p + filter.len == data + size);
    }
    (void)mqtt_topic_filter_has_wildcard(data, size);
}

/* The cursors must survive unvalidated bytes too. */
static void cursors_on(const uint8_t *data, size_t size)
{
    mqtt_bytes cur = {data, (uint32_t)size};
    mqtt_sub s;
    while (mqtt_sub_next(&cur, MQTT_V5, &s)) {
    }
    cur = (mqtt_bytes){data, (uint32_t)size};
    mqtt_bytes f;
    while (mqtt_unsub_next(&cur, &f)) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t max_sizes[] = {0, 2, 16, 128, 65536};
    for (size_t i = 0; i < sizeof(max_sizes) / sizeof(max_sizes[0]); i++) {
        frame_all(data, size, max_sizes[i]);
    }
    props_on(data, size);
    strings_on(data, size);
    cursors_on(data, size);
    return 0;
}
