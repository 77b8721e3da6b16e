/* SPDX-License-Identifier: Apache-2.0 */
/* The session state blob (node/mqtt/session_codec.c): round trips, every
 * truncation refused, a corruption table, and the bounds at their edge. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/mqtt/session_codec.h"

static mqtt_bytes B(const char *s)
{
    mqtt_bytes b = {(const uint8_t *)s, (uint32_t)strlen(s)};
    return b;
}

static bool bytes_eq(mqtt_bytes a, mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Content Type "t" and one User Property: valid PUBLISH properties. */
static const uint8_t PROPS[] = {0x03, 0x00, 0x01, 't', 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v'};

static sc_sub subs3[3];
static uint16_t ids3[3] = {1, 7, 65535};

static sc_state full_state(void)
{
    sc_state st;
    memset(&st, 0, sizeof(st));
    st.proto_version = 5;
    st.expiry_s = 3600;
    st.has_will = true;
    st.will.topic = B("will/t");
    st.will.payload = B("bye");
    st.will.props.p = PROPS;
    st.will.props.len = sizeof(PROPS);
    st.will.delay_s = 5;
    st.will.expiry_s = 60;
    st.will.qos = 1;
    st.will.retain = true;
    subs3[0].filter = B("a/+/c");
    subs3[0].opts = (sub_opts){2, true, true, 2, 268435455};
    subs3[1].filter = B("$share/g/x/#");
    subs3[1].opts = (sub_opts){1, false, false, 0, 0};
    subs3[2].filter = B("#");
    subs3[2].opts = (sub_opts){0, false, true, 1, 42};
    st.subs = subs3;
    st.n_subs = 3;
    st.qos2_in = ids3;
    st.n_qos2 = 3;
    return st;
}

static void encode(const sc_state *st, uint8_t **blob, uint32_t *len)
{
    cr_assert_eq(sc_encode(st, blob, len), SC_OK);
}

Test(session_codec, round_trip_full)
{
    sc_state in = full_state(), out;
    uint8_t *blob;
    uint32_t len;
    encode(&in, &blob, &len);
    cr_assert_eq(sc_decode(blob, len, &out), SC_OK);
    cr_assert_eq(out.proto_version, 5);
    cr_assert_eq(out.expiry_s, 3600);
    cr_assert(out.has_will);
    cr_assert(bytes_eq(out.will.topic, in.will.topic));
    cr_assert(bytes_eq(out.will.payload, in.will.payload));
    cr_assert(bytes_eq(out.will.props, in.will.props));
    cr_assert_eq(out.will.delay_s, 5);
    cr_assert_eq(out.will.expiry_s, 60);
    cr_assert_eq(out.will.qos, 1);
    cr_assert(out.will.retain);
    cr_assert_eq(out.n_subs, 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert(bytes_eq(out.subs[i].filter, subs3[i].filter));
        cr_assert_eq(out.subs[i].opts.qos, subs3[i].opts.qos);
        cr_assert_eq(out.subs[i].opts.no_local, subs3[i].opts.no_local);
        cr_assert_eq(out.subs[i].opts.rap, subs3[i].opts.rap);
        cr_assert_eq(out.subs[i].opts.retain_handling, subs3[i].opts.retain_handling);
        cr_assert_eq(out.subs[i].opts.sub_id, subs3[i].opts.sub_id);
    }
    cr_assert_eq(out.n_qos2, 3);
    cr_assert_eq(memcmp(out.qos2_in, ids3, sizeof(ids3)), 0);
    sc_state_free(&out);
    sh_free(blob, len);
}

Test(session_codec, round_trip_empty_and_v311_never_expires)
{
    sc_state in, out;
    memset(&in, 0, sizeof(in));
    in.proto_version = 4;
    in.expiry_s = UINT32_MAX;
    uint8_t *blob;
    uint32_t len;
    encode(&in, &blob, &len);
    cr_assert_eq(sc_decode(blob, len, &out), SC_OK);
    cr_assert_eq(out.proto_version, 4);
    cr_assert_eq(out.expiry_s, UINT32_MAX);
    cr_assert(!out.has_will);
    cr_assert_eq(out.n_subs, 0);
    cr_assert_eq(out.n_qos2, 0);
    sc_state_free(&out);
    sh_free(blob, len);
}

/* Every proper prefix of a valid blob is refused, and decoding it never
 * reads past its end (ASan would say so: each prefix is its own copy). */
Test(session_codec, every_truncation_refused)
{
    sc_state in = full_state(), out;
    uint8_t *blob;
    uint32_t len;
    encode(&in, &blob, &len);
    for (uint32_t n = 0; n < len; n++) {
        uint8_t *cut = sh_malloc(n ? n : 1);
        memcpy(cut, blob, n);
        sc_status rc = sc_decode(cut, n, &out);
        cr_assert_neq(rc, SC_OK, "a blob cut at %u of %u bytes was taken", n, len);
        cr_assert_null(out.subs);
        cr_assert_null(out.qos2_in);
        sh_free(cut, n ? n : 1);
    }
    sh_free(blob, len);
}

/* A blob with one byte changed: never a crash; the refusals below each
 * name the check that catches it. */
typedef struct corruption {
    const char *what;
    int offset; /* from the start; negative: from the end */
    uint8_t value;
    sc_status want;
} corruption;

static const corruption table[] = {
    {"bad magic", 0, 'X', SC_ECORRUPT},
    {"version 0", 2, 0, SC_ECORRUPT},
    {"newer version", 2, SC_VERSION + 1, SC_ENEWER},
    {"protocol level 2", 3, 2, SC_ECORRUPT},
    {"protocol level 6", 3, 6, SC_ECORRUPT},
    {"will flags reserved bit", 13, 0x09, SC_ECORRUPT},
    {"will QoS 3", 13, 0x03, SC_ECORRUPT},
    {"will section longer than the blob", 9, 0x7f, SC_ETRUNCATED},
    {"will topic with a wildcard", 24, '+', SC_ECORRUPT},
    {"will property id unknown", 34, 0x7f, SC_ECORRUPT},
    {"end section not empty", -1, 1, SC_ETRUNCATED},
    {"end section not last", -5, 9, SC_ETRUNCATED},
};

Test(session_codec, corruption_table)
{
    sc_state in = full_state(), out;
    uint8_t *blob;
    uint32_t len;
    encode(&in, &blob, &len);
    /* The offsets above assume this layout. */
    cr_assert_eq(blob[8], SC_SEC_WILL);
    cr_assert_eq(memcmp(blob + 24, "will/t", 6), 0);
    cr_assert_eq(blob[34], 0x03);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const corruption *t = &table[i];
        uint8_t *bad = sh_malloc(len);
        memcpy(bad, blob, len);
        size_t at = t->offset >= 0 ? (size_t)t->offset : len + (size_t)(ptrdiff_t)t->offset;
        bad[at] = t->value;
        sc_status rc = sc_decode(bad, len, &out);
        cr_expect_eq(rc, t->want, "%s: got %s, want %s", t->what, sc_status_name(rc), sc_status_name(t->want));
        if (rc == SC_OK) {
            sc_state_free(&out);
        }
        sh_free(bad, len);
    }
    sh_free(blob, len);
}

/* Hand-made blobs for what a byte flip cannot express. */
static uint8_t *blob_with(const uint8_t *sec, size_t sec_len, size_t *len)
{
    static const uint8_t head[] = {'S', 'S', SC_VERSION, 5, 0, 0, 0, 10};
    *len = sizeof(head) + sec_len + 5;
    uint8_t *b = sh_calloc(*len, 1);
    memcpy(b, head, sizeof(head));
    memcpy(b + sizeof(head), sec, sec_len);
    return b; /* the end section: five zero bytes */
}

static sc_status decode_section(const uint8_t *sec, size_t sec_len)
{
    size_t len;
    uint8_t *b = blob_with(sec, sec_len, &len);
    sc_state out;
    sc_status rc = sc_decode(b, len, &out);
    if (rc == SC_OK) {
        sc_state_free(&out);
    }
    sh_free(b, len);
    return rc;
}

Test(session_codec, hand_made_refusals)
{
    /* QoS 2 id 0, and one id twice. */
    const uint8_t zero[] = {SC_SEC_QOS2_IN, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0};
    cr_expect_eq(decode_section(zero, sizeof(zero)), SC_ECORRUPT);
    const uint8_t twice[] = {SC_SEC_QOS2_IN, 0, 0, 0, 8, 0, 0, 0, 2, 0, 9, 0, 9};
    cr_expect_eq(decode_section(twice, sizeof(twice)), SC_ECORRUPT);
    /* A count the bytes cannot hold: refused before allocating for it. */
    const uint8_t huge[] = {SC_SEC_SUBS, 0, 0, 0, 4, 0, 0, 0xff, 0xff};
    cr_expect_eq(decode_section(huge, sizeof(huge)), SC_ETRUNCATED);
    const uint8_t over[] = {SC_SEC_QOS2_IN, 0, 0, 0, 4, 0, 1, 0, 0};
    cr_expect_eq(decode_section(over, sizeof(over)), SC_ELIMIT);
    /* Subscriptions: an empty filter, a bad filter, a bad share, options. */
    const uint8_t empty[] = {SC_SEC_SUBS, 0, 0, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    cr_expect_eq(decode_section(empty, sizeof(empty)), SC_ECORRUPT);
    const uint8_t badf[] = {SC_SEC_SUBS, 0, 0, 0, 13, 0, 0, 0, 1, 0, 2, 'a', '#', 0, 0, 0, 0, 0};
    cr_expect_eq(decode_section(badf, sizeof(badf)), SC_ECORRUPT);
    const uint8_t share[] = {SC_SEC_SUBS, 0,   0,   0,   18,  0,   0, 0, 1, 0, 7, '$',
                             's',         'h', 'a', 'r', 'e', '/', 0, 0, 0, 0, 0};
    cr_expect_eq(decode_section(share, sizeof(share)), SC_ECORRUPT);
    const uint8_t rh3[] = {SC_SEC_SUBS, 0, 0, 0, 12, 0, 0, 0, 1, 0, 1, 'a', 0x30, 0, 0, 0, 0};
    cr_expect_eq(decode_section(rh3, sizeof(rh3)), SC_ECORRUPT);
    const uint8_t res[] = {SC_SEC_SUBS, 0, 0, 0, 12, 0, 0, 0, 1, 0, 1, 'a', 0x40, 0, 0, 0, 0};
    cr_expect_eq(decode_section(res, sizeof(res)), SC_ECORRUPT);
    const uint8_t subid[] = {SC_SEC_SUBS, 0, 0, 0, 12, 0, 0, 0, 1, 0, 1, 'a', 0, 0x10, 0, 0, 0};
    cr_expect_eq(decode_section(subid, sizeof(subid)), SC_ECORRUPT);
    /* Bytes left over inside a section; a section twice. */
    const uint8_t extra[] = {SC_SEC_QOS2_IN, 0, 0, 0, 7, 0, 0, 0, 1, 0, 5, 0xee};
    cr_expect_eq(decode_section(extra, sizeof(extra)), SC_ECORRUPT);
    const uint8_t dup[] = {SC_SEC_QOS2_IN, 0, 0, 0, 4, 0, 0, 0, 0, SC_SEC_QOS2_IN, 0, 0, 0, 4, 0, 0, 0, 0};
    cr_expect_eq(decode_section(dup, sizeof(dup)), SC_ECORRUPT);
    /* An unknown section (a later addition) is skipped. */
    const uint8_t later[] = {9, 0, 0, 0, 3, 1, 2, 3};
    cr_expect_eq(decode_section(later, sizeof(later)), SC_OK);
    /* A will payload length over the bound. */
    const uint8_t wl[] = {SC_SEC_WILL, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'w', 0, 0, 0, 0, 0x20, 0, 0, 1};
    cr_expect_eq(decode_section(wl, sizeof(wl)), SC_ELIMIT);
    /* A stream mark's node id holding a NUL: the stream keeps node ids as C
     * strings (a shorter id, freed by its strlen); the same id without the
     * NUL is taken. */
    uint8_t nul[] = {SC_SEC_STREAM, 0, 0,   0, 33, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 3,
                     'a',           0, 'b', 0, 0,  0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2};
    cr_expect_eq(decode_section(nul, sizeof(nul)), SC_ECORRUPT);
    nul[20] = 'x';
    cr_expect_eq(decode_section(nul, sizeof(nul)), SC_OK);
    cr_expect_eq(sc_decode(NULL, 0, &(sc_state){0}), SC_ETRUNCATED);
}

Test(session_codec, limits_at_the_edge)
{
    /* SC_MAX_SUBS subscriptions, the last with the longest filter, and
     * SC_MAX_QOS2 ids (every packet id): taken; one more of either is not. */
    static char longf[SC_MAX_FILTER];
    memset(longf, 'f', sizeof(longf));
    sc_sub *subs = sh_calloc(SC_MAX_SUBS + 1, sizeof(sc_sub));
    for (uint32_t i = 0; i <= SC_MAX_SUBS; i++) {
        subs[i].filter = B("s/+");
        subs[i].opts.qos = 1;
        subs[i].opts.sub_id = i;
    }
    subs[SC_MAX_SUBS - 1].filter.p = (const uint8_t *)longf;
    subs[SC_MAX_SUBS - 1].filter.len = SC_MAX_FILTER;
    uint16_t *ids = sh_malloc((SC_MAX_QOS2 + 1) * sizeof(uint16_t));
    for (uint32_t i = 0; i < SC_MAX_QOS2; i++) {
        ids[i] = (uint16_t)(i + 1);
    }
    ids[SC_MAX_QOS2] = 1;
    sc_state in, out;
    memset(&in, 0, sizeof(in));
    in.proto_version = 5;
    in.subs = subs;
    in.n_subs = SC_MAX_SUBS;
    in.qos2_in = ids;
    in.n_qos2 = SC_MAX_QOS2;
    uint8_t *blob;
    uint32_t len;
    encode(&in, &blob, &len);
    cr_assert_eq(sc_decode(blob, len, &out), SC_OK);
    cr_assert_eq(out.n_subs, SC_MAX_SUBS);
    cr_assert_eq(out.subs[SC_MAX_SUBS - 1].filter.len, SC_MAX_FILTER);
    cr_assert_eq(out.subs[SC_MAX_SUBS - 2].opts.sub_id, SC_MAX_SUBS - 2);
    cr_assert_eq(out.n_qos2, SC_MAX_QOS2);
    cr_assert_eq(out.qos2_in[SC_MAX_QOS2 - 1], 65535);
    sc_state_free(&out);
    sh_free(blob, len);
    in.n_subs = SC_MAX_SUBS + 1;
    cr_assert_eq(sc_encode(&in, &blob, &len), SC_ELIMIT);
    in.n_subs = SC_MAX_SUBS;
    in.n_qos2 = SC_MAX_QOS2 + 1;
    cr_assert_eq(sc_encode(&in, &blob, &len), SC_ELIMIT);
    sh_free(ids, (SC_MAX_QOS2 + 1) * sizeof(uint16_t));
    sh_free(subs, (SC_MAX_SUBS + 1) * sizeof(sc_sub));
}
