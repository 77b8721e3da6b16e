/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rk_record.h"

static bp_message sample(void)
{
    static const uint8_t props[] = {0x26, 0, 1, 'k', 0, 1, 'v'};
    bp_message m = {
        .topic = (const uint8_t *)"a/b",
        .topic_len = 3,
        .payload = (const uint8_t *)"hello\0x",
        .payload_len = 7,
        .props = props,
        .props_len = sizeof(props),
        .expiry_at_unix_ms = 0x0102030405060708ull,
        .qos = 2,
        .retain = true,
    };
    return m;
}

/* The decoder's verdict on buf, fields ignored. */
static rk_record_status status_of(const uint8_t *buf, size_t n)
{
    bp_message out;
    const uint8_t *origin;
    size_t olen;
    return rk_record_decode(buf, n, &out, &origin, &olen);
}

Test(rk_record, round_trip_keeps_every_field)
{
    bp_message m = sample();
    size_t n = rk_record_size(&m, "node-1");
    uint8_t *buf = malloc(n);
    cr_assert_eq(rk_record_encode(&m, "node-1", buf), n);
    bp_message out;
    const uint8_t *origin;
    size_t olen;
    cr_assert_eq(rk_record_decode(buf, n, &out, &origin, &olen), RK_RECORD_OK);
    cr_assert_eq(olen, 6);
    cr_assert_arr_eq(origin, "node-1", 6);
    cr_assert_eq(out.qos, 2);
    cr_assert(out.retain);
    cr_assert_eq(out.expiry_at_unix_ms, m.expiry_at_unix_ms);
    cr_assert_eq(out.topic_len, 3);
    cr_assert_arr_eq(out.topic, "a/b", 3);
    cr_assert_eq(out.payload_len, 7);
    cr_assert_arr_eq(out.payload, "hello\0x", 7);
    cr_assert_eq(out.props_len, m.props_len);
    cr_assert_arr_eq(out.props, m.props, m.props_len);
    free(buf);
}

Test(rk_record, empty_payload_and_no_props)
{
    bp_message m = {.topic = (const uint8_t *)"t", .topic_len = 1, .qos = 0};
    uint8_t buf[64];
    size_t n = rk_record_encode(&m, "", buf);
    cr_assert_eq(n, rk_record_size(&m, ""));
    bp_message out;
    const uint8_t *origin;
    size_t olen;
    cr_assert_eq(rk_record_decode(buf, n, &out, &origin, &olen), RK_RECORD_OK);
    cr_assert_eq(out.payload_len, 0);
    cr_assert_eq(olen, 0);
}

/* The bytes carry no place in the stream: the decoded message names none
 * (partition -1) until its reader sets it, never partition 0 offset 0, a
 * real record's place (the retained index keeps it, node/mqtt/session.h). */
Test(rk_record, decoded_message_has_no_stream_position)
{
    bp_message m = sample();
    m.partition = 3;
    m.offset = 42;
    size_t n = rk_record_size(&m, "node-1");
    uint8_t *buf = malloc(n);
    cr_assert_eq(rk_record_encode(&m, "node-1", buf), n);
    bp_message out;
    const uint8_t *origin;
    size_t olen;
    cr_assert_eq(rk_record_decode(buf, n, &out, &origin, &olen), RK_RECORD_OK);
    cr_assert_eq(out.partition, -1);
    cr_assert_eq(out.offset, -1);
    free(buf);
}

Test(rk_record, version_4_is_newer_skipped_not_misread)
{
    bp_message m = sample();
    uint8_t buf[128];
    size_t n = rk_record_encode(&m, "n", buf);
    buf[2] = RK_RECORD_VERSION + 1;
    cr_assert_eq(buf[2], 4);
    /* A later release may change everything after the version byte. */
    buf[5] = 200;
    cr_assert_eq(status_of(buf, n), RK_RECORD_NEWER);
}

Test(rk_record, every_truncation_is_bad_never_an_overread)
{
    bp_message m = sample();
    m.client_id = (const uint8_t *)"client-x";
    m.client_id_len = 8;
    uint8_t full[128];
    size_t n = rk_record_encode(&m, "node-1", full);
    /* Truncating inside the payload is still a valid (shorter) record, so
     * only prefixes that cut the header or topic must fail. */
    size_t header = n - m.payload_len;
    for (size_t len = 0; len < header; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, full, len);
        cr_assert_eq(status_of(copy, len), RK_RECORD_BAD, "len %zu", len);
        free(copy);
    }
}

Test(rk_record, foreign_bytes_are_bad)
{
    const uint8_t junk[] = "{\"json\":true}";
    cr_assert_eq(status_of(junk, sizeof(junk)), RK_RECORD_BAD);
}

Test(rk_record, qos_out_of_range_is_bad)
{
    bp_message m = sample();
    uint8_t buf[128];
    size_t n = rk_record_encode(&m, "n", buf);
    buf[4] = 3;
    cr_assert_eq(status_of(buf, n), RK_RECORD_BAD);
}

static void decode_ok(const uint8_t *buf, size_t n, bp_message *out)
{
    const uint8_t *origin;
    size_t olen;
    cr_assert_eq(rk_record_decode(buf, n, out, &origin, &olen), RK_RECORD_OK);
    cr_assert_eq(olen, 6);
    cr_assert_arr_eq(origin, "node-1", 6);
}

static void assert_sample_fields(const bp_message *out, const bp_message *m)
{
    cr_assert_eq(out->qos, 2);
    cr_assert(out->retain);
    cr_assert_eq(out->expiry_at_unix_ms, m->expiry_at_unix_ms);
    cr_assert_eq(out->props_len, m->props_len);
    cr_assert_arr_eq(out->props, m->props, m->props_len);
    cr_assert_eq(out->topic_len, 3);
    cr_assert_arr_eq(out->topic, "a/b", 3);
    cr_assert_eq(out->payload_len, 7);
    cr_assert_arr_eq(out->payload, "hello\0x", 7);
}

/* The sample has an expiry: version 3, its deadline on the cluster clock
 * (the codec carries it as it is; the writer converted it). */
Test(rk_record, v3_round_trip_keeps_the_client_id)
{
    bp_message m = sample();
    m.client_id = (const uint8_t *)"client-x";
    m.client_id_len = 8;
    uint8_t buf[128];
    size_t n = rk_record_encode(&m, "node-1", buf);
    cr_assert_eq(n, rk_record_size(&m, "node-1"));
    cr_assert_eq(buf[2], 3);
    cr_assert_eq(rk_record_version(buf), RK_RECORD_VERSION_CLUSTER_CLOCK);
    bp_message out;
    decode_ok(buf, n, &out);
    cr_assert_eq(out.client_id_len, 8);
    cr_assert_arr_eq(out.client_id, "client-x", 8);
    assert_sample_fields(&out, &m);
}

Test(rk_record, v3_round_trip_without_a_client_id)
{
    bp_message m = sample();
    uint8_t buf[128];
    size_t n = rk_record_encode(&m, "node-1", buf);
    cr_assert_eq(n, rk_record_size(&m, "node-1"));
    cr_assert_eq(buf[2], 3);
    bp_message out;
    decode_ok(buf, n, &out);
    cr_assert_eq(out.client_id_len, 0);
    cr_assert_null(out.client_id);
    assert_sample_fields(&out, &m);
}

/* Without an expiry versions 2 and 3 say the same: version 2, which the
 * previous release still reads during a rolling upgrade. */
Test(rk_record, a_record_without_an_expiry_is_written_as_version_2)
{
    bp_message m = sample();
    m.expiry_at_unix_ms = 0;
    uint8_t buf[128];
    size_t n = rk_record_encode(&m, "node-1", buf);
    cr_assert_eq(buf[2], 2);
    bp_message out;
    decode_ok(buf, n, &out);
    cr_assert_eq(out.expiry_at_unix_ms, 0);
    cr_assert_eq(rk_record_version(buf), RK_RECORD_VERSION_NO_EXPIRY);
}

Test(rk_record, v1_record_still_decodes_without_a_client_id)
{
    /* Written byte by byte as docs/architecture.md gives version 1, as an
     * older node writes it. */
    static const uint8_t v1[] = {
        'S', 'H', 1,   1,   2,    6, 'n', 'o', 'd', 'e', '-', '1', 1, 2, 3, 4, 5, 6, 7, 8, /* expiry */
        0,   0,   0,   7,   0x26, 0, 1,   'k', 0,   1,   'v',                              /* properties */
        0,   3,   'a', '/', 'b',                                                           /* topic */
        'h', 'e', 'l', 'l', 'o',  0, 'x',                                                  /* payload */
    };
    bp_message m = sample();
    bp_message out;
    decode_ok(v1, sizeof(v1), &out);
    cr_assert_eq(out.client_id_len, 0);
    cr_assert_null(out.client_id);
    assert_sample_fields(&out, &m);
}

Test(rk_record, truncated_client_id_is_bad)
{
    bp_message m = sample();
    m.client_id = (const uint8_t *)"client-x";
    m.client_id_len = 8;
    uint8_t buf[128];
    size_t n = rk_record_encode(&m, "n", buf);
    /* The client id length runs past the end of the record. */
    size_t at = 6 + 1;
    buf[at] = 0xff;
    buf[at + 1] = 0xff;
    cr_assert_eq(status_of(buf, n), RK_RECORD_BAD);
    /* Cut inside the client id bytes. */
    buf[at] = 0;
    buf[at + 1] = 8;
    for (size_t len = at; len < at + 2 + 8; len++) {
        cr_assert_eq(status_of(buf, len), RK_RECORD_BAD, "len %zu", len);
    }
}
