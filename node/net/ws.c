/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 6455, server side, as pure functions: the request head parser, the
 * handshake decision and response, the frame header codec, unmasking and
 * message sequencing. */
#include "node/net/ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proto/utf8.h"

/* §1.3: the GUID every server appends to the client's key. */
static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- request head ---- */

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
        return true;
    }
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Field value bytes: visible ASCII, obs-text, space and tab. */
static bool is_value_char(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || (ch >= 0x21 && ch != 0x7f);
}

static bool slice_is(ws_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

/* Store a header we look at; a repeated single-valued one is an error
 * (§4.2.1 forbids a second Sec-WebSocket-Key, and two Hosts are ambiguous). */
static int keep_header(ws_request *req, ws_slice name, ws_slice value)
{
    ws_slice *one = NULL;
    if (slice_is(name, "host")) {
        one = &req->host;
    } else if (slice_is(name, "upgrade")) {
        one = &req->upgrade;
    } else if (slice_is(name, "sec-websocket-key")) {
        one = &req->key;
    } else if (slice_is(name, "sec-websocket-version")) {
        one = &req->version;
    } else if (slice_is(name, "origin")) {
        one = &req->origin;
    } else if (slice_is(name, "connection")) {
        if (req->n_connection == WS_LIST_MAX) {
            return WS_BAD;
        }
        req->connection[req->n_connection++] = value;
        return 0;
    } else if (slice_is(name, "sec-websocket-protocol")) {
        if (req->n_protocol == WS_LIST_MAX) {
            return WS_BAD;
        }
        req->protocol[req->n_protocol++] = value;
        return 0;
    } else {
        return 0;
    }
    if (one->p) {
        return WS_BAD;
    }
    *one = value;
    return 0;
}

/* Out of bytes → need more; wrong byte → bad (picohttpparser's CHECK_EOF). */
#define NEED(n)                                \
    do {                                       \
        if ((size_t)(end - p) < (size_t)(n)) { \
            return WS_NEED_MORE;               \
        }                                      \
    } while (0)

/* "\r\n" at p: 1; need more: 0; anything else: -1. */
static int at_crlf(const char *p, const char *end)
{
    if (p == end) {
        return 0;
    }
    if (*p != '\r') {
        return -1;
    }
    if (p + 1 == end) {
        return 0;
    }
    return p[1] == '\n' ? 1 : -1;
}

/* One header line at *pp. Returns 1 when a header was read, 0 at the empty
 * line that ends the head (both advance *pp), or WS_NEED_MORE / WS_BAD. */
static int parse_header(const char **pp, const char *end, ws_request *req)
{
    const char *p = *pp;
    int crlf = at_crlf(p, end);
    if (crlf == 1) {
        *pp = p + 2;
        return 0;
    }
    if (crlf == 0) {
        return WS_NEED_MORE;
    }
    ws_slice name = {p, 0};
    for (;; p++) {
        NEED(1);
        if (*p == ':') {
            break;
        }
        /* A leading space would be a folded line (obs-fold): refused. */
        if (!is_tchar((unsigned char)*p)) {
            return WS_BAD;
        }
    }
    name.len = (size_t)(p - name.p);
    if (name.len == 0) {
        return WS_BAD;
    }
    p++;
    for (;; p++) {
        NEED(1);
        if (*p != ' ' && *p != '\t') {
            break;
        }
    }
    ws_slice value = {p, 0};
    for (;; p++) {
        NEED(1);
        if (*p == '\r') {
            break;
        }
        if (!is_value_char((unsigned char)*p)) {
            return WS_BAD;
        }
    }
    value.len = (size_t)(p - value.p);
    while (value.len && (value.p[value.len - 1] == ' ' || value.p[value.len - 1] == '\t')) {
        value.len--;
    }
    crlf = at_crlf(p, end);
    if (crlf <= 0) {
        return crlf == 0 ? WS_NEED_MORE : WS_BAD;
    }
    if (keep_header(req, name, value) != 0) {
        return WS_BAD;
    }
    *pp = p + 2;
    return 1;
}

/* "METHOD SP TARGET SP HTTP/1.x CRLF" */
static int parse_request_line(const char **pp, const char *end, ws_request *req)
{
    const char *p = *pp;
    req->method.p = p;
    for (;; p++) {
        NEED(1);
        if (*p == ' ') {
            break;
        }
        if (!is_tchar((unsigned char)*p)) {
            return WS_BAD;
        }
    }
    req->method.len = (size_t)(p - req->method.p);
    p++;
    req->target.p = p;
    for (;; p++) {
        NEED(1);
        if (*p == ' ') {
            break;
        }
        if ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f) {
            return WS_BAD;
        }
    }
    req->target.len = (size_t)(p - req->target.p);
    p++;
    if (req->method.len == 0 || req->target.len == 0) {
        return WS_BAD;
    }
    static const char proto[] = "HTTP/1.";
    for (size_t i = 0; i < sizeof(proto) - 1; i++, p++) {
        NEED(1);
        if (*p != proto[i]) {
            return WS_BAD;
        }
    }
    NEED(1);
    if (*p < '0' || *p > '9') {
        return WS_BAD;
    }
    req->minor_version = *p++ - '0';
    int crlf = at_crlf(p, end);
    if (crlf <= 0) {
        return crlf == 0 ? WS_NEED_MORE : WS_BAD;
    }
    *pp = p + 2;
    return 0;
}

int ws_parse_request(const char *buf, size_t len, ws_request *req)
{
    memset(req, 0, sizeof(*req));
    const char *p = buf, *end = buf + len;
    int rc = parse_request_line(&p, end, req);
    while (rc == 0 || rc == 1) {
        rc = parse_header(&p, end, req);
        if (rc == 0) {
            return (int)(p - buf);
        }
    }
    return rc;
}

/* ---- handshake ---- */

/* Calls fn on each element of comma-separated lists, spaces trimmed;
 * stops and returns true when fn does. */
static bool list_any(const ws_slice *v, size_t n, bool (*fn)(ws_slice, const void *), const void *arg)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = v[i].p, *end = v[i].p + v[i].len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end;
            ws_slice el = {p, (size_t)(e - p)};
            while (el.len && (*el.p == ' ' || *el.p == '\t')) {
                el.p++;
                el.len--;
            }
            while (el.len && (el.p[el.len - 1] == ' ' || el.p[el.len - 1] == '\t')) {
                el.len--;
            }
            if (el.len && fn(el, arg)) {
                return true;
            }
            p = comma ? comma + 1 : end;
        }
    }
    return false;
}

static bool token_nocase(ws_slice el, const void *lit)
{
    return slice_is(el, lit);
}

/* Subprotocol names compare exactly (§11.3.4). */
static bool mqtt_protocol(ws_slice el, const void *out)
{
    if ((el.len == 4 && !memcmp(el.p, "mqtt", 4)) || (el.len == 8 && !memcmp(el.p, "mqttv3.1", 8))) {
        *(ws_slice *)out = el;
        return true;
    }
    return false;
}

static bool origin_equal(ws_slice el, const void *origin)
{
    const ws_slice *o = origin;
    return el.len == o->len && strncasecmp(el.p, o->p, el.len) == 0;
}

static bool path_matches(ws_slice target, const char *path)
{
    const char *q = memchr(target.p, '?', target.len);
    size_t n = q ? (size_t)(q - target.p) : target.len;
    return n == strlen(path) && memcmp(target.p, path, n) == 0;
}

/* §4.1: 16 random bytes in base64 are 22 characters and "==". */
static bool key_valid(ws_slice k)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (k.len != 24 || k.p[22] != '=' || k.p[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; i++) {
        if (!k.p[i] || !strchr(b64, k.p[i])) {
            return false;
        }
    }
    return true;
}

static void refuse(ws_answer *ans, int status, const char *why)
{
    ans->status = status;
    ans->why = why;
}

void ws_handshake(const ws_request *req, const ws_policy *pol, ws_answer *ans)
{
    memset(ans, 0, sizeof(*ans));
    if (!slice_is(req->method, "GET")) {
        refuse(ans, 400, "method is not GET");
    } else if (req->minor_version < 1) {
        refuse(ans, 400, "HTTP/1.1 or later is required");
    } else if (!path_matches(req->target, pol->path)) {
        refuse(ans, 404, "no WebSocket endpoint at this path");
    } else if (!req->upgrade.p || !list_any(&req->upgrade, 1, token_nocase, "websocket")) {
        refuse(ans, 400, "not a WebSocket upgrade (Upgrade: websocket)");
    } else if (!list_any(req->connection, req->n_connection, token_nocase, "upgrade")) {
        refuse(ans, 400, "not a WebSocket upgrade (Connection: Upgrade)");
    } else if (!req->host.p) {
        refuse(ans, 400, "no Host header");
    } else if (!req->version.p || req->version.len != 2 || memcmp(req->version.p, "13", 2) != 0) {
        refuse(ans, 400, "Sec-WebSocket-Version must be 13");
        ans->bad_version = true;
    } else if (!req->key.p || !key_valid(req->key)) {
        refuse(ans, 400, "bad Sec-WebSocket-Key");
    } else if (pol->origins && *pol->origins && req->origin.p &&
               !list_any(&(ws_slice){pol->origins, strlen(pol->origins)}, 1, origin_equal, &req->origin)) {
        refuse(ans, 403, "Origin not allowed");
    } else if (req->n_protocol && !list_any(req->protocol, req->n_protocol, mqtt_protocol, &ans->protocol)) {
        refuse(ans, 400, "no supported subprotocol (mqtt, mqttv3.1)");
    } else {
        ans->status = 101;
        ans->why = "upgraded";
        ws_accept_key(req->key.p, req->key.len, ans->accept);
    }
}

size_t ws_response(const ws_answer *ans, char *dst)
{
    int n;
    if (ans->status == 101) {
        n = snprintf(dst, WS_RESPONSE_MAX,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s%.*s%s\r\n",
                     ans->accept, ans->protocol.len ? "Sec-WebSocket-Protocol: " : "", (int)ans->protocol.len,
                     ans->protocol.len ? ans->protocol.p : "", ans->protocol.len ? "\r\n" : "");
    } else {
        const char *text = ans->status == 403 ? "Forbidden" : (ans->status == 404 ? "Not Found" : "Bad Request");
        n = snprintf(dst, WS_RESPONSE_MAX,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\n%sContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n\r\n%s\n",
                     ans->status, text, ans->bad_version ? "Sec-WebSocket-Version: 13\r\n" : "", strlen(ans->why) + 1,
                     ans->why);
    }
    return n < 0 ? 0 : ((size_t)n < WS_RESPONSE_MAX ? (size_t)n : WS_RESPONSE_MAX - 1);
}

void ws_accept_key(const char *key, size_t len, char out[29])
{
    /* Keys are 24 characters (§4.1); a longer one is hashed as far as fits. */
    unsigned char buf[128 + sizeof(WS_GUID)];
    unsigned char md[SHA_DIGEST_LENGTH];
    if (len > 128) {
        len = 128;
    }
    memcpy(buf, key, len);
    memcpy(buf + len, WS_GUID, sizeof(WS_GUID) - 1);
    SHA1(buf, len + sizeof(WS_GUID) - 1, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* ---- frames ---- */

static int bad(ws_frame *f, uint16_t code, const char *why)
{
    f->close_code = code;
    f->why = why;
    return WS_BAD;
}

static bool opcode_known(uint8_t op)
{
    return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

int ws_frame_parse(const uint8_t *p, size_t len, uint64_t max_payload, ws_frame *f)
{
    memset(f, 0, sizeof(*f));
    if (len < 1) {
        return WS_NEED_MORE;
    }
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0f;
    bool control = (f->opcode & 0x08) != 0;
    /* §5.2: RSV1-3 must be 0 unless an extension says otherwise; we
     * negotiate none. */
    if (p[0] & 0x70) {
        return bad(f, WS_CLOSE_PROTOCOL, "RSV bits set");
    }
    if (!opcode_known(f->opcode)) {
        return bad(f, WS_CLOSE_PROTOCOL, "unknown opcode");
    }
    /* §5.5: control frames are never fragmented. */
    if (control && !f->fin) {
        return bad(f, WS_CLOSE_PROTOCOL, "fragmented control frame");
    }
    if (len < 2) {
        return WS_NEED_MORE;
    }
    /* §5.1: the server closes on an unmasked client frame. */
    if (!(p[1] & 0x80)) {
        return bad(f, WS_CLOSE_PROTOCOL, "unmasked frame");
    }
    uint64_t n = p[1] & 0x7f;
    if (control && n > WS_CONTROL_MAX) {
        return bad(f, WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
    }
    size_t hl = 2;
    if (n == 126) {
        if (len < 4) {
            return WS_NEED_MORE;
        }
        n = (uint64_t)p[2] << 8 | p[3];
        hl = 4;
        /* §5.2: "the minimal number of bytes MUST be used". */
        if (n < 126) {
            return bad(f, WS_CLOSE_PROTOCOL, "length not in its shortest form");
        }
    } else if (n == 127) {
        if (len < 10) {
            return WS_NEED_MORE;
        }
        n = 0;
        for (int i = 2; i < 10; i++) {
            n = n << 8 | p[i];
        }
        hl = 10;
        if ((n >> 63) || n <= 0xffff) {
            return bad(f, WS_CLOSE_PROTOCOL, "length not in its shortest form or over 2^63");
        }
    }
    if (!control && n > max_payload) {
        return bad(f, WS_CLOSE_TOO_BIG, "frame larger than --ws-max-frame");
    }
    if (len < hl + 4) {
        return WS_NEED_MORE;
    }
    memcpy(f->mask, p + hl, 4);
    f->len = n;
    return (int)(hl + 4);
}

size_t ws_frame_header(uint8_t *dst, uint8_t opcode, uint64_t len)
{
    dst[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        dst[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        dst[1] = 126;
        dst[2] = (uint8_t)(len >> 8);
        dst[3] = (uint8_t)len;
        return 4;
    }
    dst[1] = 127;
    for (int i = 0; i < 8; i++) {
        dst[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    }
    return 10;
}

uint64_t ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
    for (size_t i = 0; i < n; i++) {
        p[i] ^= mask[(off + i) & 3];
    }
    return off + n;
}

uint16_t ws_seq_next(ws_seq *s, const ws_frame *f)
{
    if (f->opcode & 0x08) {
        return 0;
    }
    if (f->opcode == WS_OP_CONT) {
        if (!s->in_message) {
            return WS_CLOSE_PROTOCOL;
        }
    } else if (s->in_message) {
        /* §5.4: fragments of one message are not interleaved with another. */
        return WS_CLOSE_PROTOCOL;
    } else if (f->opcode == WS_OP_TEXT) {
        return WS_CLOSE_UNSUPPORTED;
    }
    s->in_message = !f->fin;
    return 0;
}

/* §7.4: the codes an endpoint may send. */
static bool close_code_valid(uint16_t c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

uint16_t ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
    *code = WS_CLOSE_NO_STATUS;
    if (n == 0) {
        return 0;
    }
    if (n == 1) {
        return WS_CLOSE_PROTOCOL;
    }
    uint16_t c = (uint16_t)(p[0] << 8 | p[1]);
    if (!close_code_valid(c)) {
        return WS_CLOSE_PROTOCOL;
    }
    /* The reason is UTF-8 (§5.5.1); a NUL in it is refused too. */
    if (mqtt_utf8_check(p + 2, n - 2) == MQTT_UTF8_BAD) {
        return WS_CLOSE_BAD_DATA;
    }
    *code = c;
    return 0;
}
