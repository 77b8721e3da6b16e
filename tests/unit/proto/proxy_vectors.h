/* SPDX-License-Identifier: Apache-2.0 */
/* PROXY protocol headers (HAProxy doc/proxy-protocol.txt), valid and
 * corrupted, shared by tests/unit/proto/test_proxy.c and the fuzz seed
 * generator (tests/fuzz/make_proxy_seeds.c). Plain data only. */
#ifndef SHOAL_TESTS_PROTO_PROXY_VECTORS_H
#define SHOAL_TESTS_PROTO_PROXY_VECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proxy.h"
#include "vectors.h"

/* A text line without its terminating NUL. */
#define S(str) (const uint8_t *)(str), sizeof(str) - 1

/* §2.2: the v2 signature. */
#define SIG2 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
#define BOTH (MQTT_PROXY_V1 | MQTT_PROXY_V2)

#define X10 "xxxxxxxxxx"
#define FFFF8 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#define FFFF6_V4 "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"

/* 192.0.2.1:56400 -> 198.51.100.2:1883 */
#define V2_TCP4_BLOCK 192, 0, 2, 1, 198, 51, 100, 2, 0xDC, 0x50, 0x07, 0x5B
/* [2001:db8::1]:51000 -> [2001:db8::2]:8883 */
#define V6_DB8(last) 0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last
#define V2_TCP6_BLOCK V6_DB8(1), V6_DB8(2), 0xC7, 0x38, 0x22, 0xB3

typedef struct proxy_vec {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    uint8_t version;
    bool local;
    const char *src; /* peer text; "" when the header names no address */
    const char *dst;
} proxy_vec;

static const proxy_vec proxy_vectors[] __attribute__((unused)) = {
    /* ---- version 1 (§2.1) ---- */
    {"v1_tcp4", S("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), 1, false, "192.168.0.1:56324",
     "192.168.0.11:443"},
    {"v1_tcp4_longest", S("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), 1, false,
     "255.255.255.255:65535", "255.255.255.255:65535"},
    {"v1_tcp4_zeros", S("PROXY TCP4 0.0.0.0 10.0.0.1 0 1883\r\n"), 1, false, "0.0.0.0:0", "10.0.0.1:1883"},
    {"v1_tcp6", S("PROXY TCP6 2001:db8::1 2001:db8::2 51000 8883\r\n"), 1, false, "[2001:db8::1]:51000",
     "[2001:db8::2]:8883"},
    {"v1_tcp6_mapped", S("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 1883\r\n"), 1, false, "[::ffff:192.0.2.1]:1", "[::1]:1883"},
    /* §2.1 writes "sets of 4 hexadecimal digits (upper or lower case)". */
    {"v1_tcp6_full_groups",
     S("PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 fe80:0000:0000:0000:0000:0000:0000:00ff "
       "443 80\r\n"),
     1, false, "[2001:db8::1]:443", "[fe80::ff]:80"},
    /* §2.1: the longest TCP6 line, 104 bytes. */
    {"v1_tcp6_longest", S("PROXY TCP6 " FFFF8 " " FFFF8 " 65535 65535\r\n"), 1, false, "[" FFFF8 "]:65535",
     "[" FFFF8 "]:65535"},
    {"v1_unknown_short", S("PROXY UNKNOWN\r\n"), 1, false, "", ""},
    /* §2.1: "worst case (optional fields set to 0xff)", 107 bytes. */
    {"v1_unknown_longest", S("PROXY UNKNOWN " FFFF8 " " FFFF8 " 65535 65535\r\n"), 1, false, "", ""},
    {"v1_unknown_anything", S("PROXY UNKNOWN whatever \x01\xff\r\n"), 1, false, "", ""},

    /* ---- version 2 (§2.2) ---- */
    {"v2_tcp4", B(SIG2, 0x21, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), 2, false, "192.0.2.1:56400", "198.51.100.2:1883"},
    {"v2_tcp6", B(SIG2, 0x21, 0x21, 0x00, 0x24, V2_TCP6_BLOCK), 2, false, "[2001:db8::1]:51000", "[2001:db8::2]:8883"},
    {"v2_tcp6_mapped",
     B(SIG2, 0x21, 0x21, 0x00, 0x24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 203, 0, 113, 7, V6_DB8(9), 0x00, 0x50,
       0x07, 0x5B),
     2, false, "[::ffff:203.0.113.7]:80", "[2001:db8::9]:1883"},
    /* ALPN "mqtt", NOOP with no value, AWS's VPC endpoint id (0xEA), and
     * an SSL TLV with a version sub-TLV. */
    {"v2_tcp4_tlvs",
     B(SIG2, 0x21, 0x11, 0x00, 0x2E, V2_TCP4_BLOCK, 0x01, 0x00, 0x04, 'm', 'q', 't', 't', 0x04, 0x00, 0x00, 0xEA, 0x00,
       0x05, 'v', 'p', 'c', '-', '1', 0x20, 0x00, 0x0D, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x05, 'T', 'L', 'S', 'v', '3'),
     2, false, "192.0.2.1:56400", "198.51.100.2:1883"},
    /* A TLV whose value ends exactly at the header's end. */
    {"v2_tcp4_tlv_to_the_end", B(SIG2, 0x21, 0x11, 0x00, 0x0F, V2_TCP4_BLOCK, 0x04, 0x00, 0x00), 2, false,
     "192.0.2.1:56400", "198.51.100.2:1883"},
    /* LOCAL: a health check from the balancer itself. */
    {"v2_local", B(SIG2, 0x20, 0x00, 0x00, 0x00), 2, true, "", ""},
    {"v2_local_with_block", B(SIG2, 0x20, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), 2, true, "", ""},
    /* LOCAL "discards the protocol block including the family". */
    {"v2_local_any_family", B(SIG2, 0x20, 0xFF, 0x00, 0x02, 0xAA, 0xBB), 2, true, "", ""},
    {"v2_unspec", B(SIG2, 0x21, 0x00, 0x00, 0x00), 2, false, "", ""},
    {"v2_unspec_with_bytes", B(SIG2, 0x21, 0x00, 0x00, 0x03, 1, 2, 3), 2, false, "", ""},
    {"v2_tcp4_protocol_unspec", B(SIG2, 0x21, 0x10, 0x00, 0x0C, V2_TCP4_BLOCK), 2, false, "", ""},
    {"v2_udp4", B(SIG2, 0x21, 0x12, 0x00, 0x0C, V2_TCP4_BLOCK), 2, false, "", ""},
};

typedef struct proxy_bad {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    unsigned versions;
    size_t bad_from; /* the shortest prefix already refused; shorter ones need more */
    const char *why;
} proxy_bad;

static const proxy_bad proxy_corrupt[] __attribute__((unused)) = {
    /* ---- not a PROXY header at all ---- */
    {"mqtt_connect", v_connect_v311_min, sizeof(v_connect_v311_min), BOTH, 1, "signature"},
    {"tls_client_hello", B(0x16, 0x03, 0x01, 0x00, 0xA5, 0x01), BOTH, 1, "signature"},
    {"http_get", S("GET /mqtt HTTP/1.1\r\n"), BOTH, 1, "signature"},
    {"http2_preface", S("PRI * HTTP/2.0\r\n"), BOTH, 3, "signature"},
    {"v1_bad_signature", S("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), BOTH, 5, "signature"},
    {"v1_no_space", S("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), BOTH, 6, "signature"},
    /* The signature's last byte 0x0A changed to 0x09. */
    {"v2_bad_signature",
     B(0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x09, 0x21, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK),
     BOTH, 12, "signature"},
    {"v2_signature_byte_8", B(0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x52), BOTH, 8, "signature"},

    /* ---- a version the listener does not take ---- */
    {"v1_on_v2_listener", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), MQTT_PROXY_V2, 1, "version not enabled"},
    {"v2_on_v1_listener", B(SIG2, 0x21, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), MQTT_PROXY_V1, 1, "version not enabled"},
    {"nothing_enabled", S("PROXY UNKNOWN\r\n"), 0, 1, "version not enabled"},

    /* ---- v2 fixed part ---- */
    {"v2_version_1", B(SIG2, 0x11, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 13, "v2 version"},
    {"v2_version_3", B(SIG2, 0x31, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 13, "v2 version"},
    {"v2_version_0", B(SIG2, 0x01, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 13, "v2 version"},
    {"v2_command_2", B(SIG2, 0x22, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 13, "v2 command"},
    {"v2_command_f", B(SIG2, 0x2F, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 13, "v2 command"},
    {"v2_family_4", B(SIG2, 0x21, 0x41, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 14, "v2 family"},
    {"v2_family_f", B(SIG2, 0x21, 0xF1, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 14, "v2 family"},
    {"v2_protocol_3", B(SIG2, 0x21, 0x13, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 14, "v2 protocol"},
    /* A length no buffer should hold: refused from the length field alone. */
    {"v2_length_65535", B(SIG2, 0x21, 0x11, 0xFF, 0xFF, V2_TCP4_BLOCK), BOTH, 16, "v2 length above the limit"},
    {"v2_length_2049", B(SIG2, 0x21, 0x11, 0x08, 0x01, V2_TCP4_BLOCK), BOTH, 16, "v2 length above the limit"},

    /* ---- v2 address block and TLVs (judged once the header is whole) ---- */
    {"v2_tcp4_block_short", B(SIG2, 0x21, 0x11, 0x00, 0x08, 192, 0, 2, 1, 198, 51, 100, 2), BOTH, 24,
     "v2 address block short for its family"},
    {"v2_tcp4_block_empty", B(SIG2, 0x21, 0x11, 0x00, 0x00), BOTH, 16, "v2 address block short for its family"},
    {"v2_tcp6_block_short", B(SIG2, 0x21, 0x21, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 28,
     "v2 address block short for its family"},
    {"v2_unix_block_short", B(SIG2, 0x21, 0x31, 0x00, 0x0C, V2_TCP4_BLOCK), BOTH, 28,
     "v2 address block short for its family"},
    {"v2_tlv_past_the_end", B(SIG2, 0x21, 0x11, 0x00, 0x11, V2_TCP4_BLOCK, 0x01, 0x00, 0x05, 'm', 'q'), BOTH, 33,
     "v2 TLV past the end"},
    {"v2_tlv_length_one_over", B(SIG2, 0x21, 0x11, 0x00, 0x13, V2_TCP4_BLOCK, 0x01, 0x00, 0x05, 'm', 'q', 't', 't'),
     BOTH, 35, "v2 TLV past the end"},
    {"v2_tlv_header_cut", B(SIG2, 0x21, 0x11, 0x00, 0x0E, V2_TCP4_BLOCK, 0x04, 0x00), BOTH, 30,
     "v2 TLV header past the end"},
    {"v2_second_tlv_past_the_end",
     B(SIG2, 0x21, 0x11, 0x00, 0x13, V2_TCP4_BLOCK, 0x04, 0x00, 0x00, 0x01, 0xFF, 0xFF, 'x'), BOTH, 35,
     "v2 TLV past the end"},

    /* ---- v1 line ---- */
    {"v1_family_tcp5", S("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), BOTH, 10, "v1 family"},
    {"v1_family_lower_case", S("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), BOTH, 7, "v1 family"},
    {"v1_two_spaces", S("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), BOTH, 7, "v1 family"},
    {"v1_unknown_suffix", S("PROXY UNKNOWNX\r\n"), BOTH, 14, "v1 family"},
    {"v1_unknown_lf_only", S("PROXY UNKNOWN\n"), BOTH, 14, "v1 LF without CR"},
    {"v1_unknown_lf_later", S("PROXY UNKNOWN abc\n"), BOTH, 18, "v1 LF without CR"},
    {"v1_cr_without_lf", S("PROXY UNKNOWN\rX"), BOTH, 15, "v1 CR without LF"},
    {"v1_tcp4_lf_only", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), BOTH, 31, "v1 LF without CR"},
    {"v1_tcp4_cr_then_junk", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), BOTH, 32, "v1 CR without LF"},
    /* §2.1: "If the CRLF sequence is not found in the first 107 characters,
     * the receiver should declare the line invalid." */
    {"v1_unknown_no_crlf_in_107", S("PROXY UNKNOWN " X10 X10 X10 X10 X10 X10 X10 X10 X10 "xxx\r\n"), BOTH, 107,
     "v1 no CRLF in 107 bytes"},
    {"v1_tcp6_line_over_107", S("PROXY TCP6 " FFFF6_V4 " " FFFF6_V4 " 65535 65535\r\n"), BOTH, 107,
     "v1 no CRLF in 107 bytes"},
    {"v1_octet_256", S("PROXY TCP4 256.1.1.1 1.1.1.1 1 2\r\n"), BOTH, 21, "v1 address"},
    {"v1_three_octets", S("PROXY TCP4 1.2.3 1.1.1.1 1 2\r\n"), BOTH, 17, "v1 address"},
    {"v1_five_octets", S("PROXY TCP4 1.2.3.4.5 1.1.1.1 1 2\r\n"), BOTH, 21, "v1 address"},
    {"v1_empty_octet", S("PROXY TCP4 1..3.4 1.1.1.1 1 2\r\n"), BOTH, 18, "v1 address"},
    {"v1_empty_address", S("PROXY TCP4  1.1.1.1 1 2\r\n"), BOTH, 12, "v1 address"},
    /* §2.1: "Heading zeroes are not permitted", lest 010 read as octal.
     * (HAProxy's own receiver reads them as decimal; Shoal follows the
     * spec, which every sender obeys.) */
    {"v1_octet_leading_zero", S("PROXY TCP4 10.0.0.010 1.1.1.1 1 2\r\n"), BOTH, 22, "v1 address"},
    {"v1_octet_00", S("PROXY TCP4 10.00.0.1 1.1.1.1 1 2\r\n"), BOTH, 21, "v1 address"},
    {"v1_address_too_long", S("PROXY TCP4 1.2.3.4000000000000 1.1.1.1 1 2\r\n"), BOTH, 27, "v1 address"},
    {"v1_ipv6_in_tcp4", S("PROXY TCP4 ::1 1.1.1.1 1 2\r\n"), BOTH, 12, "v1 address"},
    {"v1_ipv4_in_tcp6", S("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), BOTH, 19, "v1 address"},
    {"v1_ipv6_two_gaps", S("PROXY TCP6 1::2::3 ::1 1 2\r\n"), BOTH, 19, "v1 address"},
    {"v1_ipv6_nine_groups", S("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), BOTH, 29, "v1 address"},
    {"v1_ipv6_seven_groups", S("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"), BOTH, 25, "v1 address"},
    {"v1_ipv6_five_digits", S("PROXY TCP6 12345::1 ::1 1 2\r\n"), BOTH, 20, "v1 address"},
    {"v1_ipv6_gap_for_nothing", S("PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n"), BOTH, 28, "v1 address"},
    {"v1_ipv6_zone", S("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), BOTH, 19, "v1 address"},
    {"v1_port_65536", S("PROXY TCP4 1.2.3.4 5.6.7.8 65536 443\r\n"), BOTH, 33, "v1 port"},
    {"v1_port_99999", S("PROXY TCP4 1.2.3.4 5.6.7.8 443 99999\r\n"), BOTH, 37, "v1 port"},
    {"v1_port_six_digits", S("PROXY TCP4 1.2.3.4 5.6.7.8 100000 443\r\n"), BOTH, 33, "v1 port"},
    {"v1_port_leading_zero", S("PROXY TCP4 1.2.3.4 5.6.7.8 0443 443\r\n"), BOTH, 32, "v1 port"},
    {"v1_port_00", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"), BOTH, 32, "v1 port"},
    {"v1_port_negative", S("PROXY TCP4 1.2.3.4 5.6.7.8 -1 443\r\n"), BOTH, 28, "v1 port"},
    {"v1_port_missing", S("PROXY TCP4 1.2.3.4 5.6.7.8 443\r\n"), BOTH, 31, "v1 port"},
    {"v1_port_empty", S("PROXY TCP4 1.2.3.4 5.6.7.8  443\r\n"), BOTH, 28, "v1 port"},
    {"v1_nul_in_line", B('P', 'R', 'O', 'X', 'Y', ' ', 'T', 'C', 'P', '4', ' ', '1', 0x00), BOTH, 13, "v1 address"},
};

#endif
