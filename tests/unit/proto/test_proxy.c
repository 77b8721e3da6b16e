/* SPDX-License-Identifier: Apache-2.0 */
/* proto/proxy.c: mqtt_proxy_parse() and mqtt_proxy_format_peer().
 * Four runs per vector (whole, every proper prefix, one byte at a time,
 * against a guard page) and a corruption table whose every row says from
 * which prefix on it is refused and why. */
#include <arpa/inet.h>
#include <stdio.h>

#include "harness.h"
#include "proto/proxy.h"
#include "proxy_vectors.h"

static unsigned own_version(const proxy_vec *v)
{
    return v->version == 1 ? MQTT_PROXY_V1 : MQTT_PROXY_V2;
}

static void peer_is(const mqtt_proxy_addr *a, const char *want, const char *name, const char *which)
{
    char got[MQTT_PROXY_PEER_MAX];
    size_t n = mqtt_proxy_format_peer(a, got, sizeof(got));
    cr_assert_str_eq(got, want, "%s: %s is \"%s\", want \"%s\"", name, which, got, want);
    cr_assert_eq(n, strlen(want), "%s: %s length %zu", name, which, n);
}

/* Parse a whole vector (at b, possibly with more bytes after it) and check
 * every output. */
static void check_vec(const proxy_vec *v, const uint8_t *b, size_t len, unsigned versions)
{
    mqtt_proxy_hdr h;
    int n = mqtt_proxy_parse(b, len, versions, &h);
    cr_assert_eq(n, (int)v->len, "%s: gave %d (%s), want %zu", v->name, n, h.why ? h.why : "-", v->len);
    cr_assert_null(h.why, "%s", v->name);
    cr_assert_eq(h.version, v->version, "%s: version %u", v->name, h.version);
    cr_assert_eq(h.local, v->local, "%s: local", v->name);
    cr_assert_eq(mqtt_proxy_has_addr(&h), v->src[0] != '\0', "%s: has_addr", v->name);
    cr_assert_eq(h.src.family, h.dst.family, "%s", v->name);
    peer_is(&h.src, v->src, v->name, "src");
    peer_is(&h.dst, v->dst, v->name, "dst");
}

Test(proxy, vectors_whole)
{
    for (size_t i = 0; i < N_OF(proxy_vectors); i++) {
        const proxy_vec *v = &proxy_vectors[i];
        check_vec(v, v->bytes, v->len, MQTT_PROXY_V1 | MQTT_PROXY_V2);
        check_vec(v, v->bytes, v->len, own_version(v));
    }
}

Test(proxy, vectors_against_a_guard_page)
{
    for (size_t i = 0; i < N_OF(proxy_vectors); i++) {
        const proxy_vec *v = &proxy_vectors[i];
        guard g;
        const uint8_t *b = guard_place(&g, v->bytes, v->len);
        check_vec(v, b, v->len, own_version(v));
        guard_free(&g);
    }
}

/* Every proper prefix, each ending at a guard page, needs more, and leaves
 * no address or reason behind. */
Test(proxy, every_proper_prefix_needs_more)
{
    for (size_t i = 0; i < N_OF(proxy_vectors); i++) {
        const proxy_vec *v = &proxy_vectors[i];
        for (size_t k = 0; k < v->len; k++) {
            guard g;
            mqtt_proxy_hdr h;
            const uint8_t *b = guard_place(&g, v->bytes, k);
            int n = mqtt_proxy_parse(b, k, MQTT_PROXY_V1 | MQTT_PROXY_V2, &h);
            cr_assert_eq(n, MQTT_PROXY_NEED_MORE, "%s: prefix %zu gave %d (%s)", v->name, k, n, h.why ? h.why : "-");
            cr_assert_null(h.why, "%s: prefix %zu", v->name, k);
            cr_assert_eq(h.src.family, MQTT_PROXY_UNSPEC, "%s: prefix %zu", v->name, k);
            cr_assert_eq(h.dst.family, MQTT_PROXY_UNSPEC, "%s: prefix %zu", v->name, k);
            cr_assert(!h.local, "%s: prefix %zu", v->name, k);
            cr_assert_eq(h.version, k == 0 ? 0 : v->version, "%s: prefix %zu", v->name, k);
            guard_free(&g);
        }
    }
}

/* The reader's path: bytes arrive one at a time and the client's CONNECT
 * follows the header; the header pops out exactly at its last byte and
 * never takes a byte of the CONNECT. */
Test(proxy, one_byte_at_a_time_then_connect)
{
    for (size_t i = 0; i < N_OF(proxy_vectors); i++) {
        const proxy_vec *v = &proxy_vectors[i];
        uint8_t stream[256];
        size_t total = v->len + sizeof(v_connect_v311_min);
        cr_assert_leq(total, sizeof(stream));
        memcpy(stream, v->bytes, v->len);
        memcpy(stream + v->len, v_connect_v311_min, sizeof(v_connect_v311_min));
        uint8_t acc[256];
        for (size_t have = 1; have <= total; have++) {
            acc[have - 1] = stream[have - 1];
            if (have < v->len) {
                mqtt_proxy_hdr h;
                cr_assert_eq(mqtt_proxy_parse(acc, have, own_version(v), &h), MQTT_PROXY_NEED_MORE, "%s: %zu bytes",
                             v->name, have);
            } else {
                check_vec(v, acc, have, own_version(v));
            }
        }
    }
}

/* Each corruption row: every prefix shorter than bad_from needs more, and
 * from bad_from on (the byte that shows it) it is refused, for the stated
 * reason. */
Test(proxy, corruption_table)
{
    for (size_t i = 0; i < N_OF(proxy_corrupt); i++) {
        const proxy_bad *r = &proxy_corrupt[i];
        cr_assert_leq(r->bad_from, r->len, "%s", r->name);
        for (size_t k = 0; k <= r->len; k++) {
            guard g;
            mqtt_proxy_hdr h;
            const uint8_t *b = guard_place(&g, r->bytes, k);
            int n = mqtt_proxy_parse(b, k, r->versions, &h);
            if (k < r->bad_from) {
                cr_assert_eq(n, MQTT_PROXY_NEED_MORE, "%s: prefix %zu gave %d (%s)", r->name, k, n,
                             h.why ? h.why : "-");
            } else {
                cr_assert_eq(n, MQTT_PROXY_BAD, "%s: prefix %zu gave %d", r->name, k, n);
                cr_assert_str_eq(h.why, r->why, "%s: prefix %zu: \"%s\", want \"%s\"", r->name, k, h.why, r->why);
                cr_assert_eq(h.src.family, MQTT_PROXY_UNSPEC, "%s", r->name);
                cr_assert(!h.local, "%s", r->name);
            }
            guard_free(&g);
        }
    }
}

Test(proxy, reset_outputs_on_entry)
{
    const proxy_vec *v = &proxy_vectors[0];
    mqtt_proxy_hdr h;
    memset(&h, 0xAB, sizeof(h));
    cr_assert_eq(mqtt_proxy_parse(v->bytes, 10, MQTT_PROXY_V1, &h), MQTT_PROXY_NEED_MORE);
    mqtt_proxy_hdr zero;
    memset(&zero, 0, sizeof(zero));
    zero.version = 1;
    cr_assert_eq(memcmp(&h, &zero, sizeof(h)), 0);
    memset(&h, 0xAB, sizeof(h));
    cr_assert_eq(mqtt_proxy_parse(NULL, 0, MQTT_PROXY_V1, &h), MQTT_PROXY_NEED_MORE);
    zero.version = 0;
    cr_assert_eq(memcmp(&h, &zero, sizeof(h)), 0);
}

/* Only the first header is the header: a second one is the stream's. */
Test(proxy, consumes_only_the_first_header)
{
    static const uint8_t two[] = {SIG2, 0x21, 0x11, 0x00, 0x0C, V2_TCP4_BLOCK, SIG2, 0x20, 0x00, 0x00, 0x00};
    mqtt_proxy_hdr h;
    cr_assert_eq(mqtt_proxy_parse(two, sizeof(two), MQTT_PROXY_V2, &h), 28);
    cr_assert(!h.local);
    cr_assert_eq(h.src.port, 56400);
}

/* The v2 body limit is MQTT_PROXY_V2_MAX_BODY: exactly that many address
 * and TLV bytes pass; one more is refused from the length field alone. */
Test(proxy, v2_body_at_the_limit)
{
    static uint8_t b[MQTT_PROXY_V2_MAX + 1];
    static const uint8_t head[] = {SIG2, 0x21, 0x11, 0x08, 0x00, V2_TCP4_BLOCK};
    size_t tlv = MQTT_PROXY_V2_MAX_BODY - 12 - 3;
    memcpy(b, head, sizeof(head));
    b[sizeof(head)] = 0x04; /* NOOP */
    b[sizeof(head) + 1] = (uint8_t)(tlv >> 8);
    b[sizeof(head) + 2] = (uint8_t)tlv;
    guard g;
    mqtt_proxy_hdr h;
    const uint8_t *p = guard_place(&g, b, MQTT_PROXY_V2_MAX);
    cr_assert_eq(mqtt_proxy_parse(p, MQTT_PROXY_V2_MAX, MQTT_PROXY_V2, &h), MQTT_PROXY_V2_MAX);
    cr_assert_eq(h.src.port, 56400);
    cr_assert_eq(mqtt_proxy_parse(p, MQTT_PROXY_V2_MAX - 1, MQTT_PROXY_V2, &h), MQTT_PROXY_NEED_MORE);
    guard_free(&g);
    b[14] = 0x08;
    b[15] = 0x01;
    cr_assert_eq(mqtt_proxy_parse(b, 16, MQTT_PROXY_V2, &h), MQTT_PROXY_BAD);
}

/* The v1 line limit: a 107-byte line passes, and at 107 bytes without a
 * CRLF the line is refused; at 106 it may still end. */
Test(proxy, v1_line_at_the_limit)
{
    const proxy_vec *v = NULL;
    for (size_t i = 0; i < N_OF(proxy_vectors); i++) {
        if (strcmp(proxy_vectors[i].name, "v1_unknown_longest") == 0) {
            v = &proxy_vectors[i];
        }
    }
    cr_assert_not_null(v);
    cr_assert_eq(v->len, MQTT_PROXY_V1_MAX);
    uint8_t b[MQTT_PROXY_V1_MAX + 1];
    memcpy(b, v->bytes, v->len);
    mqtt_proxy_hdr h;
    /* The CRLF becomes "xx". */
    b[MQTT_PROXY_V1_MAX - 2] = 'x';
    b[MQTT_PROXY_V1_MAX - 1] = 'x';
    cr_assert_eq(mqtt_proxy_parse(b, MQTT_PROXY_V1_MAX - 1, MQTT_PROXY_V1, &h), MQTT_PROXY_NEED_MORE);
    cr_assert_eq(mqtt_proxy_parse(b, MQTT_PROXY_V1_MAX, MQTT_PROXY_V1, &h), MQTT_PROXY_BAD);
    cr_assert_str_eq(h.why, "v1 no CRLF in 107 bytes");
    /* A CRLF one byte later, ending the line at 108 bytes. */
    b[MQTT_PROXY_V1_MAX - 1] = '\r';
    b[MQTT_PROXY_V1_MAX] = '\n';
    cr_assert_eq(mqtt_proxy_parse(b, sizeof(b), MQTT_PROXY_V1, &h), MQTT_PROXY_BAD);
    cr_assert_str_eq(h.why, "v1 no CRLF in 107 bytes");
}

/* ---------------- address text against glibc ---------------- */

/* Does "PROXY TCP6 <s> ::1 1 2\r\n" (or TCP4 with 1.1.1.1) parse, and to
 * what source address? Returns 1, 0 (bad) or -1 (s cannot be a token). */
static int v1_accepts(const char *s, bool v6, uint8_t addr[16])
{
    char line[160];
    int n = snprintf(line, sizeof(line), "PROXY %s %s %s 1 2\r\n", v6 ? "TCP6" : "TCP4", s, v6 ? "::1" : "1.1.1.1");
    cr_assert(n > 0 && (size_t)n < sizeof(line));
    mqtt_proxy_hdr h;
    int r = mqtt_proxy_parse((const uint8_t *)line, (size_t)n, MQTT_PROXY_V1, &h);
    cr_assert(r == n || r == MQTT_PROXY_BAD, "%s gave %d", line, r);
    if (r == n) {
        memcpy(addr, h.src.addr, 16);
        return 1;
    }
    return 0;
}

static void agrees_with_inet_pton(const char *s, bool v6)
{
    uint8_t want[16] = {0}, got[16] = {0};
    int ok = inet_pton(v6 ? AF_INET6 : AF_INET, s, want) == 1;
    int mine = v1_accepts(s, v6, got);
    cr_assert_eq(mine, ok, "\"%s\" (%s): inet_pton %d, parser %d", s, v6 ? "v6" : "v4", ok, mine);
    if (ok) {
        cr_assert_eq(memcmp(got, want, v6 ? 16 : 4), 0, "\"%s\"", s);
    }
}

Test(proxy, v1_addresses_parse_as_inet_pton_does)
{
    static const char *const v6[] = {
        "::",
        "::1",
        "1::",
        "1::2",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "1:2:3:4:5::1.2.3.4",
        "::ffff:1.2.3",
        "::ffff:01.2.3.4",
        "::ffff:1.2.3.4.5",
        ":::",
        ":1",
        "1:",
        "1:::2",
        "::1::",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:",
        "12345::",
        "0000::ffff",
        "00000::",
        "a:B:c:D:e:F:0:9",
        "g::1",
        "1.2.3.4",
        "::1.2.3.4:5",
        "1::2:3:4:5:6:7",
        "1::2:3:4:5:6:7:8",
        "::ffff:256.1.1.1",
        "::ffff:1.2.3.4.",
        "fe80::",
        "::0.0.0.0",
        ":",
        "1.2.3.4::",
        "::1:2.3.4.5",
    };
    static const char *const v4[] = {
        "0.0.0.0",  "255.255.255.255", "1.2.3.4", "256.0.0.0", "1.2.3",    "1.2.3.4.5",       "01.2.3.4",
        "0.0.0.00", "1..2.3",          ".1.2.3",  "1.2.3.",    "1.2.3.04", "100.200.250.199", "999.1.1.1",
    };
    for (size_t i = 0; i < N_OF(v6); i++) {
        agrees_with_inet_pton(v6[i], true);
    }
    for (size_t i = 0; i < N_OF(v4); i++) {
        agrees_with_inet_pton(v4[i], false);
    }
}

/* A small deterministic generator (xorshift32). */
static uint32_t rnd_state = 0x12345678u;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Random strings over the address alphabet, mostly well-formed-looking. */
Test(proxy, v1_random_addresses_parse_as_inet_pton_does)
{
    static const char v6set[] = "0123456789abcdefABCDEF:::::....";
    static const char v4set[] = "0123456789012345....";
    for (int i = 0; i < 200000; i++) {
        bool v6 = i % 2 == 0;
        char s[48];
        size_t n = 1 + rnd() % (v6 ? 45 : 15);
        for (size_t k = 0; k < n; k++) {
            s[k] = v6 ? v6set[rnd() % (sizeof(v6set) - 1)] : v4set[rnd() % (sizeof(v4set) - 1)];
        }
        s[n] = '\0';
        agrees_with_inet_pton(s, v6);
    }
}

/* An address with runs of zero groups, the cases RFC 5952 cares about. */
static void random_v6(uint8_t a[16])
{
    for (int g = 0; g < 8; g++) {
        uint32_t r = rnd();
        unsigned w = r % 3 == 0 ? (r >> 8) & 0xFFFF : 0;
        if (r % 11 == 1) {
            w = 0xFFFF;
        }
        a[2 * g] = (uint8_t)(w >> 8);
        a[2 * g + 1] = (uint8_t)w;
    }
    if (rnd() % 5 == 0) { /* IPv4-mapped */
        memset(a, 0, 10);
        a[10] = a[11] = 0xFF;
    }
}

/* The peer text is what node/conn.c writes today: "[" inet_ntop "]:port",
 * and it parses back to the same address. */
Test(proxy, format_peer_matches_inet_ntop)
{
    for (int i = 0; i < 100000; i++) {
        mqtt_proxy_addr a = {0};
        bool v6 = i % 2 == 0;
        a.family = v6 ? MQTT_PROXY_INET6 : MQTT_PROXY_INET;
        a.port = (uint16_t)rnd();
        if (v6) {
            random_v6(a.addr);
        } else {
            uint32_t r = rnd();
            memcpy(a.addr, &r, 4);
        }
        char host[INET6_ADDRSTRLEN], want[64], got[MQTT_PROXY_PEER_MAX];
        cr_assert_not_null(inet_ntop(v6 ? AF_INET6 : AF_INET, a.addr, host, sizeof(host)));
        snprintf(want, sizeof(want), v6 ? "[%s]:%u" : "%s:%u", host, a.port);
        size_t n = mqtt_proxy_format_peer(&a, got, sizeof(got));
        cr_assert_str_eq(got, want);
        cr_assert_eq(n, strlen(want));
        uint8_t back[16] = {0};
        cr_assert_eq(v1_accepts(host, v6, back), 1, "%s", host);
        cr_assert_eq(memcmp(back, a.addr, v6 ? 16 : 4), 0, "%s", host);
    }
}

Test(proxy, format_peer_longest_and_short_buffers)
{
    mqtt_proxy_addr a = {.family = MQTT_PROXY_INET6, .port = 65535};
    memset(a.addr, 0xFF, 16);
    char b[MQTT_PROXY_PEER_MAX];
    cr_assert_eq(mqtt_proxy_format_peer(&a, b, sizeof(b)), MQTT_PROXY_PEER_MAX - 1);
    cr_assert_str_eq(b, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    cr_assert_eq(mqtt_proxy_format_peer(&a, b, MQTT_PROXY_PEER_MAX - 1), 0);
    cr_assert_str_eq(b, "");
    cr_assert_eq(mqtt_proxy_format_peer(&a, b, 0), 0);
    mqtt_proxy_addr none = {0};
    b[0] = 'x';
    cr_assert_eq(mqtt_proxy_format_peer(&none, b, sizeof(b)), 0);
    cr_assert_str_eq(b, "");
    mqtt_proxy_addr v4 = {.family = MQTT_PROXY_INET, .port = 1, .addr = {10, 0, 0, 1}};
    cr_assert_eq(mqtt_proxy_format_peer(&v4, b, sizeof("10.0.0.1:1")), 10);
    cr_assert_eq(mqtt_proxy_format_peer(&v4, b, sizeof("10.0.0.1:1") - 1), 0);
}
