/* SPDX-License-Identifier: Apache-2.0 */
/* proto/props.c: the property table, reader, iterator and writer. Like
 * mosquitto's test/unit/property_read.c: per wire type a good value, a
 * duplicate and a bad value, each checking the rc and the bytes used. */
#include "harness.h"
#include "proto/props.h"

/* Read `len` bytes of block in context `ctx` against a guard page. */
static mqtt_rc read_block(const uint8_t *blk, size_t len, uint8_t ctx, mqtt_props *out, uint32_t *used)
{
    guard g;
    const uint8_t *b = guard_place(&g, blk, len);
    mqtt_bytes in = {b, (uint32_t)len};
    mqtt_rc rc = mqtt_props_read(in, ctx, out, used);
    if (rc == MQTT_RC_SUCCESS) {
        cr_assert_eq(out->raw.p, b, "raw starts at the length prefix");
    }
    guard_free(&g);
    return rc;
}

typedef struct prop_case {
    const char *what;
    uint8_t ctx;
    uint8_t blk[24];
    size_t len;
    uint8_t want;
} prop_case;

#define PC(what, ctx, want, ...)                                         \
    {                                                                    \
        what, ctx, {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__}), want \
    }

/* One row per wire type and rule. Blocks are: length varint, properties. */
static const prop_case prop_cases[] = {
    /* byte */
    PC("byte ok", MQTT_PUBLISH, 0x00, 0x02, 0x01, 0x01),
    PC("byte dup", MQTT_PUBLISH, 0x82, 0x04, 0x01, 0x01, 0x01, 0x00),
    PC("byte payload format 2", MQTT_PUBLISH, 0x82, 0x02, 0x01, 0x02),
    PC("byte truncated", MQTT_PUBLISH, 0x81, 0x01, 0x01),
    PC("request problem info 2", MQTT_CONNECT, 0x82, 0x02, 0x17, 0x02),
    PC("request response info 255", MQTT_CONNECT, 0x82, 0x02, 0x19, 0xFF),
    PC("maximum qos 2", MQTT_CONNACK, 0x82, 0x02, 0x24, 0x02),
    PC("maximum qos 0", MQTT_CONNACK, 0x00, 0x02, 0x24, 0x00),
    PC("retain available 2", MQTT_CONNACK, 0x82, 0x02, 0x25, 0x02),
    /* two byte integer */
    PC("u16 ok", MQTT_CONNECT, 0x00, 0x03, 0x21, 0xFF, 0xFF),
    PC("u16 dup", MQTT_CONNECT, 0x82, 0x06, 0x22, 0x00, 0x01, 0x22, 0x00, 0x01),
    PC("receive max 0", MQTT_CONNECT, 0x82, 0x03, 0x21, 0x00, 0x00),
    PC("topic alias 0", MQTT_PUBLISH, 0x94, 0x03, 0x23, 0x00, 0x00),
    PC("topic alias max 0 ok", MQTT_CONNACK, 0x00, 0x03, 0x22, 0x00, 0x00),
    PC("u16 truncated", MQTT_CONNACK, 0x81, 0x02, 0x13, 0x00),
    /* four byte integer */
    PC("u32 ok", MQTT_PUBLISH, 0x00, 0x05, 0x02, 0xFF, 0xFF, 0xFF, 0xFF),
    PC("u32 dup", MQTT_CONNECT, 0x82, 0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1),
    PC("max packet size 0", MQTT_CONNECT, 0x82, 0x05, 0x27, 0, 0, 0, 0),
    PC("u32 truncated", MQTT_PUBLISH, 0x81, 0x04, 0x02, 0, 0, 0),
    /* variable byte integer */
    PC("varint ok", MQTT_SUBSCRIBE, 0x00, 0x03, 0x0B, 0x80, 0x01),
    PC("sub id 0", MQTT_SUBSCRIBE, 0x82, 0x02, 0x0B, 0x00),
    PC("sub id dup in subscribe", MQTT_SUBSCRIBE, 0x82, 0x04, 0x0B, 0x01, 0x0B, 0x02),
    PC("sub id repeat in publish", MQTT_PUBLISH, 0x00, 0x04, 0x0B, 0x01, 0x0B, 0x02),
    PC("varint 5 bytes", MQTT_SUBSCRIBE, 0x81, 0x06, 0x0B, 0x80, 0x80, 0x80, 0x80, 0x01),
    PC("varint truncated", MQTT_SUBSCRIBE, 0x81, 0x02, 0x0B, 0x80),
    /* UTF-8 string */
    PC("string ok", MQTT_PUBLISH, 0x00, 0x05, 0x03, 0x00, 0x02, 'a', 'b'),
    PC("string empty ok", MQTT_PUBLISH, 0x00, 0x03, 0x03, 0x00, 0x00),
    PC("string dup", MQTT_PUBLISH, 0x82, 0x06, 0x08, 0x00, 0x00, 0x08, 0x00, 0x00),
    PC("string bad utf8", MQTT_PUBLISH, 0x81, 0x04, 0x03, 0x00, 0x01, 0xFF),
    PC("string U+0000", MQTT_PUBLISH, 0x81, 0x04, 0x03, 0x00, 0x01, 0x00),
    PC("string past block", MQTT_PUBLISH, 0x81, 0x04, 0x03, 0x00, 0x05, 'a'),
    /* binary */
    PC("binary ok, NUL inside", MQTT_PUBLISH, 0x00, 0x05, 0x09, 0x00, 0x02, 0x00, 0xFF),
    PC("binary dup", MQTT_CONNECT, 0x82, 0x06, 0x16, 0x00, 0x00, 0x16, 0x00, 0x00),
    PC("binary past block", MQTT_CONNECT, 0x81, 0x03, 0x16, 0x00, 0x09),
    /* pair */
    PC("user ok", MQTT_PUBLISH, 0x00, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'),
    PC("user repeats", MQTT_SUBACK, 0x00, 0x0A, 0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0),
    PC("user bad value", MQTT_PUBLISH, 0x81, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 0x80),
    PC("user missing value", MQTT_PUBLISH, 0x81, 0x04, 0x26, 0x00, 0x01, 'k'),
    PC("user in will", MQTT_PROPS_WILL, 0x00, 0x05, 0x26, 0, 0, 0, 0),
    PC("user not in pingreq", MQTT_PINGREQ, 0x81, 0x05, 0x26, 0, 0, 0, 0),
    /* identifiers and contexts: §2.2.2.2 "A Control Packet which contains
     * an Identifier which is not valid for its packet type ... is a
     * Malformed Packet", so 0x81, not 0x82. */
    PC("unknown id 0x00", MQTT_PUBLISH, 0x81, 0x01, 0x00),
    PC("unknown id 0x04", MQTT_PUBLISH, 0x81, 0x02, 0x04, 0x00),
    PC("unknown id 0x2B", MQTT_PUBLISH, 0x81, 0x02, 0x2B, 0x00),
    PC("unknown id 0x80", MQTT_PUBLISH, 0x81, 0x03, 0x80, 0x01, 0x00),
    PC("will delay in connect", MQTT_CONNECT, 0x81, 0x05, 0x18, 0, 0, 0, 1),
    PC("will delay in will", MQTT_PROPS_WILL, 0x00, 0x05, 0x18, 0, 0, 0, 1),
    PC("topic alias in will", MQTT_PROPS_WILL, 0x81, 0x03, 0x23, 0x00, 0x01),
    PC("session expiry in publish", MQTT_PUBLISH, 0x81, 0x05, 0x11, 0, 0, 0, 1),
    PC("reason string in publish", MQTT_PUBLISH, 0x81, 0x03, 0x1F, 0x00, 0x00),
    PC("reason string in pubrel", MQTT_PUBREL, 0x00, 0x03, 0x1F, 0x00, 0x00),
    PC("auth method in auth", MQTT_AUTH, 0x00, 0x03, 0x15, 0x00, 0x00),
    PC("server reference in disconnect", MQTT_DISCONNECT, 0x00, 0x03, 0x1C, 0x00, 0x00),
    PC("server keep alive in connect", MQTT_CONNECT, 0x81, 0x03, 0x13, 0x00, 0x01),
    /* block framing */
    PC("empty block", MQTT_PUBLISH, 0x00, 0x00),
    PC("length past input", MQTT_PUBLISH, 0x81, 0x05, 0x01, 0x01),
    PC("length varint 5 bytes", MQTT_PUBLISH, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00),
    PC("length varint truncated", MQTT_PUBLISH, 0x81, 0x80),
};

ParameterizedTestParameters(props, read_table)
{
    TABLE_PARAMS(prop_cases);
}

ParameterizedTest(size_t *i, props, read_table)
{
    const prop_case *c = &prop_cases[*i];
    mqtt_props out;
    uint32_t used = 99;
    mqtt_rc rc = read_block(c->blk, c->len, c->ctx, &out, &used);
    cr_assert_eq(rc, c->want, "%s: got 0x%02x want 0x%02x", c->what, rc, c->want);
    if (rc == MQTT_RC_SUCCESS) {
        cr_assert_eq(used, c->len, "%s: used %u of %zu", c->what, used, c->len);
        cr_assert_eq(out.raw.len, c->len, "%s", c->what);
    } else {
        cr_assert_eq(used, 0, "%s: nothing used on failure", c->what);
    }
}

/* A well-formed value of each wire type, inside the type's range. */
static size_t good_value(uint8_t wire, uint8_t *d)
{
    static const uint8_t byte1[] = {0x01}, u16[] = {0x00, 0x01}, u32[] = {0, 0, 0, 1}, vbi[] = {0x01},
                         str[] = {0x00, 0x01, 'a'}, pair[] = {0x00, 0x01, 'k', 0x00, 0x01, 'v'};
    const struct {
        const uint8_t *p;
        size_t n;
    } v[] = {
        [MQTT_WIRE_BYTE] = {byte1, 1}, [MQTT_WIRE_U16] = {u16, 2},    [MQTT_WIRE_U32] = {u32, 4},
        [MQTT_WIRE_VARINT] = {vbi, 1}, [MQTT_WIRE_STRING] = {str, 3}, [MQTT_WIRE_BINARY] = {str, 3},
        [MQTT_WIRE_PAIR] = {pair, 6},
    };
    memcpy(d, v[wire].p, v[wire].n);
    return v[wire].n;
}

/* Every identifier 0..127 in every context (the will and packet types 1..15),
 * with a well-formed value: accepted where table 2-4 lists it, otherwise
 * 0x81 (§2.2.2.2: not valid for its packet type, or unknown). */
Test(props, every_identifier_in_every_context)
{
    for (unsigned id = 0; id < 128; id++) {
        for (uint8_t ctx = 0; ctx < 16; ctx++) {
            uint8_t blk[16];
            uint8_t wire = mqtt_prop_wire_type((uint8_t)id);
            size_t n = 1;
            blk[n++] = (uint8_t)id;
            n += wire != MQTT_WIRE_NONE ? good_value(wire, blk + n) : 0;
            blk[0] = (uint8_t)(n - 1);
            mqtt_props out;
            uint32_t used;
            mqtt_rc rc = read_block(blk, n, ctx, &out, &used);
            mqtt_rc want = mqtt_prop_allowed((uint8_t)id, ctx) ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED;
            cr_assert_eq(rc, want, "id 0x%02x (%s) in context %u: got 0x%02x", id, mqtt_prop_name((uint8_t)id), ctx,
                         rc);
        }
    }
}

Test(props, read_stops_at_block_end)
{
    /* The block is 2 bytes; the byte after it belongs to the packet. */
    static const uint8_t b[] = {0x02, 0x01, 0x01, 0xAA, 0xBB};
    mqtt_props out;
    uint32_t used;
    cr_assert_eq(read_block(b, sizeof(b), MQTT_PUBLISH, &out, &used), MQTT_RC_SUCCESS);
    cr_assert_eq(used, 3);
    cr_assert_eq(out.payload_format, 1);
}

Test(props, every_defined_id_has_a_row)
{
    static const uint8_t ids[] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19,
                                  0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A};
    unsigned known = 0;
    for (unsigned id = 0; id < 256; id++) {
        if (mqtt_prop_wire_type((uint8_t)id) != MQTT_WIRE_NONE) {
            known++;
            cr_assert_str_neq(mqtt_prop_name((uint8_t)id), "unknown", "id 0x%02x", id);
        }
    }
    cr_assert_eq(known, sizeof(ids));
    for (size_t i = 0; i < sizeof(ids); i++) {
        cr_assert_neq(mqtt_prop_wire_type(ids[i]), MQTT_WIRE_NONE, "id 0x%02x", ids[i]);
    }
    cr_assert_str_eq(mqtt_prop_name(0x04), "unknown");
}

Test(props, wire_types_match_spec)
{
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_PAYLOAD_FORMAT), MQTT_WIRE_BYTE);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_RECEIVE_MAX), MQTT_WIRE_U16);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_SESSION_EXPIRY), MQTT_WIRE_U32);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_SUBSCRIPTION_ID), MQTT_WIRE_VARINT);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_CONTENT_TYPE), MQTT_WIRE_STRING);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_CORRELATION_DATA), MQTT_WIRE_BINARY);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_AUTH_DATA), MQTT_WIRE_BINARY);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_USER), MQTT_WIRE_PAIR);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_SERVER_KEEP_ALIVE), MQTT_WIRE_U16);
    cr_assert_eq(mqtt_prop_wire_type(MQTT_PROP_WILL_DELAY), MQTT_WIRE_U32);
}

Test(props, allowed_contexts_spot_checks)
{
    cr_assert(mqtt_prop_allowed(MQTT_PROP_TOPIC_ALIAS, MQTT_PUBLISH));
    cr_assert(!mqtt_prop_allowed(MQTT_PROP_TOPIC_ALIAS, MQTT_PROPS_WILL));
    cr_assert(mqtt_prop_allowed(MQTT_PROP_WILL_DELAY, MQTT_PROPS_WILL));
    cr_assert(!mqtt_prop_allowed(MQTT_PROP_WILL_DELAY, MQTT_CONNECT));
    cr_assert(mqtt_prop_allowed(MQTT_PROP_SUBSCRIPTION_ID, MQTT_SUBSCRIBE));
    cr_assert(!mqtt_prop_allowed(MQTT_PROP_SUBSCRIPTION_ID, MQTT_UNSUBSCRIBE));
    cr_assert(mqtt_prop_allowed(MQTT_PROP_REASON_STRING, MQTT_AUTH));
    cr_assert(!mqtt_prop_allowed(MQTT_PROP_REASON_STRING, MQTT_CONNECT));
    cr_assert(mqtt_prop_allowed(MQTT_PROP_SESSION_EXPIRY, MQTT_DISCONNECT));
    cr_assert(mqtt_prop_allowed(MQTT_PROP_SERVER_REFERENCE, MQTT_DISCONNECT));
    cr_assert(!mqtt_prop_allowed(MQTT_PROP_USER, MQTT_PINGRESP));
    cr_assert(!mqtt_prop_allowed(MQTT_PROP_USER, 16), "out-of-range context");
    cr_assert(!mqtt_prop_allowed(0x04, MQTT_PUBLISH));
}

/* §2.2.2.2 table: how many packets/contexts each property may appear in. */
Test(props, allowed_context_counts)
{
    static const struct {
        uint8_t id;
        unsigned n;
    } want[] = {
        {MQTT_PROP_PAYLOAD_FORMAT, 2}, {MQTT_PROP_SUBSCRIPTION_ID, 2}, {MQTT_PROP_SESSION_EXPIRY, 3},
        {MQTT_PROP_AUTH_METHOD, 3},    {MQTT_PROP_REASON_STRING, 9},   {MQTT_PROP_USER, 14},
        {MQTT_PROP_MAX_QOS, 1},        {MQTT_PROP_RECEIVE_MAX, 2},
    };
    for (size_t i = 0; i < N_OF(want); i++) {
        unsigned n = 0;
        for (uint8_t ctx = 0; ctx < 16; ctx++) {
            n += mqtt_prop_allowed(want[i].id, ctx) ? 1 : 0;
        }
        cr_assert_eq(n, want[i].n, "id 0x%02x allowed in %u contexts", want[i].id, n);
    }
}

Test(props, iterator_yields_every_property_in_order)
{
    mqtt_packet p;
    mqtt_prop_iter it;
    mqtt_prop pr;
    static const uint8_t want[] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x23, 0x0B, 0x0B, 0x26};
    size_t n = 0;
    DECODE_VEC(publish_v5_props, &p);
    mqtt_prop_iter_init(&it, &p.u.publish.props);
    while (mqtt_prop_next(&it, &pr)) {
        cr_assert_lt(n, sizeof(want));
        cr_assert_eq(pr.id, want[n], "property %zu", n);
        if (pr.id == MQTT_PROP_USER) {
            BYTES_IS(pr.a, "k");
            BYTES_IS(pr.b, "v");
        }
        n++;
    }
    cr_assert_eq(n, sizeof(want));
}

Test(props, iterator_on_empty_and_null)
{
    mqtt_prop_iter it;
    mqtt_prop pr;
    mqtt_props none = {0};
    mqtt_prop_iter_init(&it, &none);
    cr_assert(!mqtt_prop_next(&it, &pr));
    mqtt_prop_iter_init(&it, NULL);
    cr_assert(!mqtt_prop_next(&it, &pr));
}

Test(props, copy_user_properties_in_order)
{
    static const uint8_t blk[] = {0x12, 0x26, 0x00, 0x01, 'a', 0x00, 0x01, '1', 0x01, 0x01,
                                  0x26, 0x00, 0x02, 'b',  'b', 0x00, 0x02, '2', '2',  0x0B};
    mqtt_props pr;
    uint32_t used;
    uint8_t dst[64];
    /* The trailing 0x0B is outside the 18-byte block. */
    cr_assert_eq(mqtt_props_read((mqtt_bytes){blk, sizeof(blk) - 1}, MQTT_PUBLISH, &pr, &used), MQTT_RC_SUCCESS);
    cr_assert_eq(pr.n_user, 2);
    uint32_t size = mqtt_props_user_size(&pr);
    cr_assert_eq(size, 7 + 9);
    cr_assert_eq(mqtt_props_copy_user(&pr, dst), size);
    cr_assert_arr_eq(dst, blk + 1, 7);
    cr_assert_arr_eq(dst + 7, blk + 10, 9);
}

Test(props, user_prop_encoding)
{
    uint8_t dst[16];
    mqtt_bytes k = {(const uint8_t *)"key", 3}, v = {(const uint8_t *)"v", 1};
    cr_assert_eq(mqtt_user_prop_size(k, v), 1 + 2 + 3 + 2 + 1);
    cr_assert_eq(mqtt_encode_user_prop(k, v, dst), 9);
    static const uint8_t want[] = {0x26, 0x00, 0x03, 'k', 'e', 'y', 0x00, 0x01, 'v'};
    cr_assert_arr_eq(dst, want, sizeof(want));
}

/* Every single-valued property written from a struct reads back equal. */
Test(props, write_then_read_every_property)
{
    uint8_t buf[512];
    mqtt_props in = {0}, out;
    uint32_t used;
    static const uint32_t ids[] = {1, 268435455};
    in.present = ~UINT64_C(0);
    in.payload_format = 1;
    in.request_problem_info = 1;
    in.request_response_info = 0;
    in.max_qos = 1;
    in.retain_available = 1;
    in.wildcard_available = 0;
    in.sub_id_available = 1;
    in.shared_available = 1;
    in.receive_max = 65535;
    in.topic_alias_max = 3;
    in.topic_alias = 9;
    in.server_keep_alive = 120;
    in.message_expiry = 0xFFFFFFFF;
    in.session_expiry = 7;
    in.will_delay = 8;
    in.max_packet_size = 1 << 20;
    in.content_type = (mqtt_bytes){(const uint8_t *)"ct", 2};
    in.response_topic = (mqtt_bytes){(const uint8_t *)"rt", 2};
    in.correlation_data = (mqtt_bytes){(const uint8_t *)"\x00\x01", 2};
    in.assigned_client_id = (mqtt_bytes){(const uint8_t *)"cid", 3};
    in.auth_method = (mqtt_bytes){(const uint8_t *)"am", 2};
    in.auth_data = (mqtt_bytes){(const uint8_t *)"ad", 2};
    in.response_info = (mqtt_bytes){(const uint8_t *)"ri", 2};
    in.server_reference = (mqtt_bytes){(const uint8_t *)"sr", 2};
    in.reason_string = (mqtt_bytes){(const uint8_t *)"rs", 2};
    in.sub_ids = ids;
    in.n_sub_ids = 2;
    uint32_t n = mqtt_props_write(&in, buf);
    cr_assert_eq(n, mqtt_props_block_size(&in));
    cr_assert_eq(n, mqtt_varint_size(mqtt_props_body_size(&in)) + mqtt_props_body_size(&in));
    /* No context allows them all, so walk with the iterator instead. */
    mqtt_props view = {.raw = {buf, n}};
    mqtt_prop_iter it;
    mqtt_prop pr;
    unsigned count = 0;
    uint32_t last_sub = 0;
    mqtt_prop_iter_init(&it, &view);
    while (mqtt_prop_next(&it, &pr)) {
        count++;
        if (pr.id == MQTT_PROP_SUBSCRIPTION_ID) {
            last_sub = pr.u;
        }
    }
    cr_assert_eq(count, 25 + 2, "25 single-valued ids, then two sub ids");
    cr_assert_eq(last_sub, 268435455);
    /* And one context-valid subset through the real reader. */
    in.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX) | MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) |
                 MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA);
    in.sub_ids = NULL;
    in.n_sub_ids = 0;
    n = mqtt_props_write(&in, buf);
    cr_assert_eq(mqtt_props_read((mqtt_bytes){buf, n}, MQTT_CONNECT, &out, &used), MQTT_RC_SUCCESS);
    cr_assert_eq(used, n);
    cr_assert_eq(out.present, in.present);
    cr_assert_eq(out.receive_max, 65535);
    cr_assert_eq(out.max_packet_size, 1u << 20);
    BYTES_IS(out.auth_method, "am");
    BYTES_IS(out.auth_data, "ad");
}

Test(props, empty_and_null_blocks)
{
    uint8_t buf[4];
    mqtt_props none = {0};
    cr_assert_eq(mqtt_props_body_size(NULL), 0);
    cr_assert_eq(mqtt_props_block_size(NULL), 1);
    cr_assert_eq(mqtt_props_write(NULL, buf), 1);
    cr_assert_eq(buf[0], 0);
    cr_assert_eq(mqtt_props_block_size(&none), 1);
}

Test(props, unknown_present_bits_are_not_written)
{
    mqtt_props pr = {.present = MQTT_PROP_BIT(0x04) | MQTT_PROP_BIT(0x3F)};
    cr_assert_eq(mqtt_props_body_size(&pr), 0);
}

Test(props, large_user_property_block_length_varint)
{
    /* A 200-byte block needs a two-byte length prefix. */
    static uint8_t user[200];
    uint8_t buf[256];
    mqtt_bytes name = {user, 0}, value = {user, 195};
    memset(user, 'u', sizeof(user));
    uint8_t entry[256];
    uint32_t en = mqtt_encode_user_prop(name, value, entry);
    mqtt_props pr = {.user = {entry, en}};
    uint32_t n = mqtt_props_write(&pr, buf);
    cr_assert_eq(n, 2 + en);
    mqtt_props out;
    uint32_t used;
    cr_assert_eq(mqtt_props_read((mqtt_bytes){buf, n}, MQTT_PUBLISH, &out, &used), MQTT_RC_SUCCESS);
    cr_assert_eq(out.n_user, 1);
    cr_assert_eq(mqtt_props_user_size(&out), en);
}
