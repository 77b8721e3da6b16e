/* SPDX-License-Identifier: Apache-2.0 */
/* node/net/ws.c: the RFC 6455 handshake and frame codec, with the RFC's own
 * examples, every length form, fragmentation and corrupted input. Inputs sit
 * against a PROT_NONE page, so an over-read crashes the (forked) test. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "node/net/ws.h"

typedef struct guard {
    uint8_t *base;
    size_t size;
} guard;

/* Copy src so that it ends exactly where a PROT_NONE page begins. */
static uint8_t *guard_place(guard *g, const void *src, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + pg - 1) / pg + 1;
    g->size = (pages + 1) * pg;
    g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(g->base != MAP_FAILED);
    uint8_t *fence = g->base + pages * pg;
    cr_assert_eq(mprotect(fence, pg, PROT_NONE), 0);
    memcpy(fence - len, src, len);
    return fence - len;
}

static void guard_free(guard *g)
{
    munmap(g->base, g->size);
}

/* The slices in req point into g: free it after looking at them. */
static int parse_in(guard *g, const char *s, size_t len, ws_request *req)
{
    const char *p = (const char *)guard_place(g, s, len);
    return ws_parse_request(p, len, req);
}

static int parse_guarded(const char *s, size_t len, ws_request *req)
{
    guard g;
    int n = parse_in(&g, s, len, req);
    guard_free(&g);
    return n;
}

static int frame_guarded(const uint8_t *b, size_t len, uint64_t max, ws_frame *f)
{
    guard g;
    const uint8_t *p = guard_place(&g, b, len);
    int n = ws_frame_parse(p, len, max, f);
    guard_free(&g);
    return n;
}

static bool slice_eq(ws_slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* ---- handshake ---- */

/* RFC 6455 §1.3 */
Test(ws, accept_key_rfc_example)
{
    char out[29];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* RFC 6455 §1.2, with the subprotocols MQTT.js sends. */
static const char RFC_REQUEST[] = "GET /mqtt HTTP/1.1\r\n"
                                  "Host: server.example.com\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Origin: http://example.com\r\n"
                                  "Sec-WebSocket-Protocol: mqtt\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "\r\n";

Test(ws, parse_rfc_request)
{
    ws_request r;
    guard g;
    size_t len = strlen(RFC_REQUEST);
    cr_assert_eq(parse_in(&g, RFC_REQUEST, len, &r), (int)len);
    cr_assert(slice_eq(r.method, "GET"));
    cr_assert(slice_eq(r.target, "/mqtt"));
    cr_assert_eq(r.minor_version, 1);
    cr_assert(slice_eq(r.host, "server.example.com"));
    cr_assert(slice_eq(r.upgrade, "websocket"));
    cr_assert(slice_eq(r.key, "dGhlIHNhbXBsZSBub25jZQ=="));
    cr_assert(slice_eq(r.version, "13"));
    cr_assert(slice_eq(r.origin, "http://example.com"));
    cr_assert_eq(r.n_connection, 1);
    cr_assert_eq(r.n_protocol, 1);
    cr_assert(slice_eq(r.protocol[0], "mqtt"));
    guard_free(&g);
}

Test(ws, parse_every_prefix_needs_more)
{
    size_t len = strlen(RFC_REQUEST);
    size_t key_line = (size_t)(strstr(RFC_REQUEST, "Sec-WebSocket-Key") - RFC_REQUEST);
    ws_request r;
    cr_assert_eq(ws_parse_request(RFC_REQUEST, len, &r), (int)len);
    for (size_t i = 0; i < len; i++) {
        cr_assert_eq(parse_guarded(RFC_REQUEST, i, &r), WS_NEED_MORE, "prefix %zu", i);
        /* Outputs are reset on entry: nothing stale from the longer parse. */
        if (i <= key_line) {
            cr_assert_null(r.key.p, "prefix %zu", i);
        }
    }
}

Test(ws, parse_stops_at_the_head)
{
    /* A client may send its first frame right behind the request. */
    char buf[1024];
    size_t len = strlen(RFC_REQUEST);
    memcpy(buf, RFC_REQUEST, len);
    memcpy(buf + len, "\x82\x80xxxx", 6);
    ws_request r;
    cr_assert_eq(parse_guarded(buf, len + 6, &r), (int)len);
}

Test(ws, parse_refuses_malformed)
{
    static const char *bad[] = {
        "GET /mqtt HTTP/1.1\nHost: a\n\n",             /* bare LF */
        "GET /mqtt HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", /* folded header */
        "GET /mqtt HTTP/1.1\r\nHo st: a\r\n\r\n",      /* space in a name */
        "GET /mqtt HTTP/1.1\r\nHost a\r\n\r\n",        /* no colon */
        "GET /mqtt HTTP/1.1\r\n: a\r\n\r\n",           /* empty name */
        "GET /mqtt HTTP/1.1\r\nHost: a\x01\r\n\r\n",   /* control character */
        "GET /mqtt HTTP/1.1\r\nHost: a\rb\r\n\r\n",    /* CR inside a value */
        "GET /mqtt HTTP/2.0\r\n\r\n",                  /* not HTTP/1.x */
        "GET /mqtt HTTP/1.x\r\n\r\n",
        "GET /mqtt\r\n\r\n",           /* HTTP/0.9 */
        "GET  /mqtt HTTP/1.1\r\n\r\n", /* empty target */
        " GET /mqtt HTTP/1.1\r\n\r\n", /* empty method */
        "G\x01T /mqtt HTTP/1.1\r\n\r\n",
        "GET /mq\x7ftt HTTP/1.1\r\n\r\n",
        "GET /mqtt HTTP/1.1\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n\r\n", /* twice */
        "GET /mqtt HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET /mqtt HTTP/1.1\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n"
        "Sec-WebSocket-Protocol: c\r\nSec-WebSocket-Protocol: d\r\nSec-WebSocket-Protocol: e\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ws_request r;
        cr_assert_eq(parse_guarded(bad[i], strlen(bad[i]), &r), WS_BAD, "case %zu: %s", i, bad[i]);
    }
}

Test(ws, parse_lists_and_whitespace)
{
    static const char req[] = "GET /mqtt?x=1 HTTP/1.1\r\n"
                              "host:h\r\n"
                              "connection: keep-alive\r\n"
                              "Connection:\tUpgrade  \r\n"
                              "Sec-WebSocket-Protocol: foo, mqttv3.1 , mqtt\r\n"
                              "X-Other: \xc3\xa9t\xc3\xa9\r\n"
                              "\r\n";
    ws_request r;
    guard g;
    cr_assert_eq(parse_in(&g, req, strlen(req), &r), (int)strlen(req));
    cr_assert(slice_eq(r.host, "h"));
    cr_assert_eq(r.n_connection, 2);
    cr_assert(slice_eq(r.connection[1], "Upgrade"));
    cr_assert(slice_eq(r.protocol[0], "foo, mqttv3.1 , mqtt"));
    guard_free(&g);
}

static const ws_policy POLICY = {"/mqtt", NULL};

static void decide(const char *req, const ws_policy *pol, ws_answer *ans)
{
    ws_request r;
    int n = ws_parse_request(req, strlen(req), &r);
    cr_assert_eq(n, (int)strlen(req), "%s", req);
    ws_handshake(&r, pol, ans);
}

/* A request from parts; NULL leaves a header out. */
static const char *req_of(const char *line, const char *upgrade, const char *connection, const char *version,
                          const char *key, const char *protocol, const char *origin)
{
    static char buf[2048];
    int n = snprintf(buf, sizeof(buf), "%s\r\nHost: localhost\r\n", line);
    if (upgrade) {
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Upgrade: %s\r\n", upgrade);
    }
    if (connection) {
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Connection: %s\r\n", connection);
    }
    if (version) {
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Sec-WebSocket-Version: %s\r\n", version);
    }
    if (key) {
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Sec-WebSocket-Key: %s\r\n", key);
    }
    if (protocol) {
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Sec-WebSocket-Protocol: %s\r\n", protocol);
    }
    if (origin) {
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Origin: %s\r\n", origin);
    }
    snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\n");
    return buf;
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define GET "GET /mqtt HTTP/1.1"

Test(ws, handshake_accepts_and_answers_the_offered_protocol)
{
    ws_answer a;
    char resp[WS_RESPONSE_MAX];
    decide(RFC_REQUEST, &POLICY, &a);
    cr_assert_eq(a.status, 101);
    cr_assert(slice_eq(a.protocol, "mqtt"));
    cr_assert_str_eq(a.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ws_response(&a, resp);
    cr_assert_str_eq(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                           "Sec-WebSocket-Protocol: mqtt\r\n\r\n");

    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqttv3.1", NULL), &POLICY, &a);
    cr_assert_eq(a.status, 101);
    cr_assert(slice_eq(a.protocol, "mqttv3.1"));
    /* The first acceptable one offered wins. */
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "chat, mqttv3.1, mqtt", NULL), &POLICY, &a);
    cr_assert(slice_eq(a.protocol, "mqttv3.1"));
    /* Case-insensitive tokens, lists in Connection and Upgrade. */
    decide(req_of(GET, "WebSocket", "keep-alive, UPGRADE", "13", KEY, "mqtt", NULL), &POLICY, &a);
    cr_assert_eq(a.status, 101);
    /* The query string is not part of the path. */
    decide(req_of("GET /mqtt?token=1 HTTP/1.1", "websocket", "Upgrade", "13", KEY, "mqtt", NULL), &POLICY, &a);
    cr_assert_eq(a.status, 101);
}

Test(ws, handshake_without_protocol_has_no_protocol_header)
{
    ws_answer a;
    char resp[WS_RESPONSE_MAX];
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, NULL, NULL), &POLICY, &a);
    cr_assert_eq(a.status, 101);
    cr_assert_eq(a.protocol.len, 0);
    size_t n = ws_response(&a, resp);
    cr_assert_eq(n, strlen(resp));
    cr_assert_null(strstr(resp, "Sec-WebSocket-Protocol"));
    cr_assert_not_null(strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
}

Test(ws, handshake_refusals)
{
    struct {
        const char *req;
        int status;
    } cases[] = {
        {"/other", 404},           {"/mqtt/", 404},         {"/MQTT", 404},          {"POST", 400},
        {"HTTP/1.0", 400},         {"no upgrade", 400},     {"upgrade h2c", 400},    {"no connection", 400},
        {"connection close", 400}, {"no version", 400},     {"version 8", 400},      {"no key", 400},
        {"short key", 400},        {"key not base64", 400}, {"key no padding", 400}, {"protocol chat", 400},
        {"protocol MQTT", 400},
    };
    char buf[2048];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *c = cases[i].req;
        const char *line = GET, *up = "websocket", *conn = "Upgrade", *ver = "13", *key = KEY, *proto = "mqtt";
        if (c[0] == '/') {
            snprintf(buf, sizeof(buf), "GET %s HTTP/1.1", c);
            line = buf;
        } else if (!strcmp(c, "POST")) {
            line = "POST /mqtt HTTP/1.1";
        } else if (!strcmp(c, "HTTP/1.0")) {
            line = "GET /mqtt HTTP/1.0";
        } else if (!strcmp(c, "no upgrade")) {
            up = NULL;
        } else if (!strcmp(c, "upgrade h2c")) {
            up = "h2c";
        } else if (!strcmp(c, "no connection")) {
            conn = NULL;
        } else if (!strcmp(c, "connection close")) {
            conn = "close";
        } else if (!strcmp(c, "no version")) {
            ver = NULL;
        } else if (!strcmp(c, "version 8")) {
            ver = "8";
        } else if (!strcmp(c, "no key")) {
            key = NULL;
        } else if (!strcmp(c, "short key")) {
            key = "dGhlIHNhbXBsZQ==";
        } else if (!strcmp(c, "key not base64")) {
            key = "dGhlIHNhbXBsZSBub25j*Q==";
        } else if (!strcmp(c, "key no padding")) {
            key = "dGhlIHNhbXBsZSBub25jZQAA";
        } else if (!strcmp(c, "protocol chat")) {
            proto = "chat, superchat";
        } else if (!strcmp(c, "protocol MQTT")) {
            proto = "MQTT"; /* subprotocol names are case-sensitive */
        }
        ws_answer a;
        decide(req_of(line, up, conn, ver, key, proto, NULL), &POLICY, &a);
        cr_assert_eq(a.status, cases[i].status, "%s: %d %s", c, a.status, a.why);
        char resp[WS_RESPONSE_MAX];
        ws_response(&a, resp);
        char want[32];
        snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
        cr_assert(!strncmp(resp, want, strlen(want)), "%s", resp);
        cr_assert_not_null(strstr(resp, "Connection: close\r\n"));
        /* §4.4: a version refusal names the version we speak. */
        cr_assert_eq(strstr(resp, "Sec-WebSocket-Version: 13\r\n") != NULL,
                     !strcmp(c, "version 8") || !strcmp(c, "no version"));
    }
}

Test(ws, handshake_needs_host)
{
    static const char req[] = "GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n";
    ws_answer a;
    decide(req, &POLICY, &a);
    cr_assert_eq(a.status, 400);
}

Test(ws, handshake_origin_allow_list)
{
    ws_policy pol = {"/mqtt", "https://app.example.com, http://localhost:8080"};
    ws_answer a;
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqtt", "http://localhost:8080"), &pol, &a);
    cr_assert_eq(a.status, 101);
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqtt", "https://APP.example.com"), &pol, &a);
    cr_assert_eq(a.status, 101);
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqtt", "https://evil.example.com"), &pol, &a);
    cr_assert_eq(a.status, 403);
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqtt", "http://localhost:8081"), &pol, &a);
    cr_assert_eq(a.status, 403);
    /* Not from a browser: no Origin, no check. */
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqtt", NULL), &pol, &a);
    cr_assert_eq(a.status, 101);
    /* Empty list: any origin. */
    pol.origins = "";
    decide(req_of(GET, "websocket", "Upgrade", "13", KEY, "mqtt", "https://evil.example.com"), &pol, &a);
    cr_assert_eq(a.status, 101);
}

/* ---- frames ---- */

/* RFC 6455 §5.7 */
Test(ws, rfc_masked_text_hello)
{
    static const uint8_t b[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame f;
    cr_assert_eq(frame_guarded(b, sizeof(b), 1000, &f), 6);
    cr_assert(f.fin);
    cr_assert_eq(f.opcode, WS_OP_TEXT);
    cr_assert_eq(f.len, 5);
    uint8_t payload[5];
    memcpy(payload, b + 6, 5);
    cr_assert_eq(ws_unmask(payload, 5, f.mask, 0), 5);
    cr_assert(!memcmp(payload, "Hello", 5));
}

Test(ws, rfc_unmasked_frames_are_refused)
{
    /* §5.7's unmasked examples come from a server; from a client they are
     * a protocol error (§5.1). */
    static const uint8_t text[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t first[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    ws_frame f;
    cr_assert_eq(frame_guarded(text, sizeof(text), 1000, &f), WS_BAD);
    cr_assert_eq(f.close_code, WS_CLOSE_PROTOCOL);
    cr_assert_str_eq(f.why, "unmasked frame");
    cr_assert_eq(frame_guarded(first, sizeof(first), 1000, &f), WS_BAD);
}

Test(ws, rfc_server_headers)
{
    uint8_t h[WS_HEADER_MAX];
    /* §5.7: unmasked "Hello", 256 bytes and 64 KiB binary. */
    cr_assert_eq(ws_frame_header(h, WS_OP_TEXT, 5), 2);
    cr_assert(!memcmp(h, "\x81\x05", 2));
    cr_assert_eq(ws_frame_header(h, WS_OP_BINARY, 256), 4);
    cr_assert(!memcmp(h, "\x82\x7e\x01\x00", 4));
    cr_assert_eq(ws_frame_header(h, WS_OP_BINARY, 65536), 10);
    cr_assert(!memcmp(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
    cr_assert_eq(ws_frame_header(h, WS_OP_PONG, 0), 2);
    cr_assert(!memcmp(h, "\x8a\x00", 2));
    cr_assert_eq(ws_frame_header(h, WS_OP_BINARY, 125), 2);
    cr_assert_eq(ws_frame_header(h, WS_OP_BINARY, 126), 4);
    cr_assert_eq(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
}

/* A masked client header for len in its shortest form. */
static size_t client_header(uint8_t *h, uint8_t b0, uint64_t len)
{
    size_t n = ws_frame_header(h, b0 & 0x0f, len);
    h[0] = b0;
    h[1] |= 0x80;
    memcpy(h + n, "\x01\x02\x03\x04", 4);
    return n + 4;
}

Test(ws, every_length_form_and_every_prefix)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1ull << 32, (1ull << 63) - 1};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t h[WS_HEADER_MAX];
        size_t hl = client_header(h, 0x82, lens[i]);
        cr_assert_eq(hl, lens[i] < 126 ? 6u : (lens[i] <= 0xffff ? 8u : 14u));
        ws_frame f;
        cr_assert_eq(frame_guarded(h, hl, UINT64_MAX, &f), (int)hl, "len %llu", (unsigned long long)lens[i]);
        cr_assert_eq(f.len, lens[i]);
        cr_assert_eq(f.opcode, WS_OP_BINARY);
        cr_assert(f.fin);
        cr_assert(!memcmp(f.mask, "\x01\x02\x03\x04", 4));
        for (size_t k = 0; k < hl; k++) {
            cr_assert_eq(frame_guarded(h, k, UINT64_MAX, &f), WS_NEED_MORE, "len %llu prefix %zu",
                         (unsigned long long)lens[i], k);
        }
    }
}

Test(ws, lengths_not_in_shortest_form)
{
    ws_frame f;
    static const uint8_t l16[] = {0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4};                   /* 125 in 16 bits */
    static const uint8_t l64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}; /* 65535 in 64 bits */
    static const uint8_t msb[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};    /* 2^63 */
    cr_assert_eq(frame_guarded(l16, sizeof(l16), UINT64_MAX, &f), WS_BAD);
    cr_assert_eq(f.close_code, WS_CLOSE_PROTOCOL);
    cr_assert_eq(frame_guarded(l64, sizeof(l64), UINT64_MAX, &f), WS_BAD);
    cr_assert_eq(frame_guarded(msb, sizeof(msb), UINT64_MAX, &f), WS_BAD);
    cr_assert_eq(f.close_code, WS_CLOSE_PROTOCOL);
}

Test(ws, rsv_bits_refused_from_the_first_byte)
{
    static const uint8_t rsv[] = {0x40, 0x20, 0x10, 0x70};
    for (size_t i = 0; i < sizeof(rsv); i++) {
        uint8_t h[WS_HEADER_MAX];
        size_t hl = client_header(h, (uint8_t)(0x82 | rsv[i]), 3);
        ws_frame f;
        cr_assert_eq(frame_guarded(h, hl, 100, &f), WS_BAD);
        cr_assert_eq(f.close_code, WS_CLOSE_PROTOCOL);
        cr_assert_str_eq(f.why, "RSV bits set");
        /* Known from the first byte alone. */
        cr_assert_eq(frame_guarded(h, 1, 100, &f), WS_BAD);
    }
}

Test(ws, unknown_opcodes)
{
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof(ops); i++) {
        uint8_t h[WS_HEADER_MAX];
        size_t hl = client_header(h, (uint8_t)(0x80 | ops[i]), 0);
        ws_frame f;
        cr_assert_eq(frame_guarded(h, hl, 100, &f), WS_BAD, "opcode %u", ops[i]);
        cr_assert_eq(f.close_code, WS_CLOSE_PROTOCOL);
    }
    static const uint8_t known[] = {0, 1, 2, 8, 9, 0xa};
    for (size_t i = 0; i < sizeof(known); i++) {
        uint8_t h[WS_HEADER_MAX];
        size_t hl = client_header(h, (uint8_t)(0x80 | known[i]), 0);
        ws_frame f;
        cr_assert_eq(frame_guarded(h, hl, 100, &f), (int)hl, "opcode %u", known[i]);
    }
}

Test(ws, control_frames_are_short_and_final)
{
    uint8_t h[WS_HEADER_MAX];
    ws_frame f;
    size_t hl = client_header(h, 0x09, 4); /* ping without FIN */
    cr_assert_eq(frame_guarded(h, hl, 1000, &f), WS_BAD);
    cr_assert_eq(f.close_code, WS_CLOSE_PROTOCOL);
    hl = client_header(h, 0x89, 126); /* ping of 126 bytes */
    cr_assert_eq(frame_guarded(h, hl, 1000, &f), WS_BAD);
    hl = client_header(h, 0x88, 125);
    cr_assert_eq(frame_guarded(h, hl, 1000, &f), (int)hl);
    /* --ws-max-frame limits data frames, not control frames. */
    hl = client_header(h, 0x89, 125);
    cr_assert_eq(frame_guarded(h, hl, 10, &f), (int)hl);
}

Test(ws, oversize_data_frames)
{
    uint8_t h[WS_HEADER_MAX];
    ws_frame f;
    size_t hl = client_header(h, 0x82, 100);
    cr_assert_eq(frame_guarded(h, hl, 100, &f), (int)hl);
    hl = client_header(h, 0x82, 101);
    cr_assert_eq(frame_guarded(h, hl, 100, &f), WS_BAD);
    cr_assert_eq(f.close_code, WS_CLOSE_TOO_BIG);
    hl = client_header(h, 0x00, 70000); /* a continuation counts too */
    cr_assert_eq(frame_guarded(h, hl, 65536, &f), WS_BAD);
    cr_assert_eq(f.close_code, WS_CLOSE_TOO_BIG);
    /* Known once the length is there, before the mask. */
    cr_assert_eq(frame_guarded(h, 10, 65536, &f), WS_BAD);
    cr_assert_eq(frame_guarded(h, 9, 65536, &f), WS_NEED_MORE);
}

Test(ws, unmask_in_pieces_equals_whole)
{
    const uint8_t mask[4] = {0xa1, 0xb2, 0xc3, 0xd4};
    uint8_t whole[1000], pieces[1000];
    for (size_t i = 0; i < sizeof(whole); i++) {
        whole[i] = pieces[i] = (uint8_t)(i * 7);
    }
    ws_unmask(whole, sizeof(whole), mask, 0);
    uint64_t off = 0;
    size_t cuts[] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233};
    size_t at = 0;
    for (size_t i = 0; at < sizeof(pieces); i++) {
        size_t n = cuts[i % 12];
        if (at + n > sizeof(pieces)) {
            n = sizeof(pieces) - at;
        }
        off = ws_unmask(pieces + at, n, mask, off);
        at += n;
    }
    cr_assert_eq(off, sizeof(pieces));
    cr_assert(!memcmp(whole, pieces, sizeof(whole)));
    /* Masking twice gives the original back. */
    ws_unmask(whole, sizeof(whole), mask, 0);
    cr_assert_eq(whole[999], (uint8_t)(999 * 7));
}

/* ---- fragmentation ---- */

static ws_frame fr(uint8_t opcode, bool fin)
{
    ws_frame f;
    memset(&f, 0, sizeof(f));
    f.opcode = opcode;
    f.fin = fin;
    return f;
}

Test(ws, fragments_with_control_frames_between)
{
    /* §5.4: control frames may be injected in the middle of a message. */
    ws_seq s = {false};
    ws_frame seq[] = {fr(WS_OP_BINARY, false), fr(WS_OP_PING, true),  fr(WS_OP_CONT, false), fr(WS_OP_PONG, true),
                      fr(WS_OP_CONT, false),   fr(WS_OP_CLOSE, true), fr(WS_OP_CONT, true),  fr(WS_OP_BINARY, true)};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        cr_assert_eq(ws_seq_next(&s, &seq[i]), 0, "frame %zu", i);
        if (i < 6) {
            cr_assert(s.in_message, "frame %zu", i);
        }
    }
    cr_assert_not(s.in_message);
}

Test(ws, fragments_out_of_sequence)
{
    ws_seq s = {false};
    ws_frame cont = fr(WS_OP_CONT, true);
    cr_assert_eq(ws_seq_next(&s, &cont), WS_CLOSE_PROTOCOL);
    ws_frame first = fr(WS_OP_BINARY, false), again = fr(WS_OP_BINARY, true);
    s.in_message = false;
    cr_assert_eq(ws_seq_next(&s, &first), 0);
    cr_assert_eq(ws_seq_next(&s, &again), WS_CLOSE_PROTOCOL);
    ws_frame text = fr(WS_OP_TEXT, true), text_first = fr(WS_OP_TEXT, false);
    s.in_message = false;
    cr_assert_eq(ws_seq_next(&s, &text), WS_CLOSE_UNSUPPORTED);
    cr_assert_eq(ws_seq_next(&s, &text_first), WS_CLOSE_UNSUPPORTED);
}

/* ---- close frames ---- */

Test(ws, close_payloads)
{
    uint16_t code;
    cr_assert_eq(ws_close_parse(NULL, 0, &code), 0);
    cr_assert_eq(code, WS_CLOSE_NO_STATUS);
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x03", 1, &code), WS_CLOSE_PROTOCOL);
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x03\xe8", 2, &code), 0);
    cr_assert_eq(code, 1000);
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x03\xe9"
                                                 "bye \xc3\xa9",
                                8, &code),
                 0);
    cr_assert_eq(code, 1001);
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x0b\xb8", 2, &code), 0); /* 3000 */
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x13\x87", 2, &code), 0); /* 4999 */
    static const uint16_t refused[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        uint8_t b[2] = {(uint8_t)(refused[i] >> 8), (uint8_t)refused[i]};
        cr_assert_eq(ws_close_parse(b, 2, &code), WS_CLOSE_PROTOCOL, "code %u", refused[i]);
    }
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x03\xe8\xff\xfe", 4, &code), WS_CLOSE_BAD_DATA);
    cr_assert_eq(ws_close_parse((const uint8_t *)"\x03\xe8\xc3", 3, &code), WS_CLOSE_BAD_DATA);
}
