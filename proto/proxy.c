/* SPDX-License-Identifier: Apache-2.0 */
/* PROXY protocol header, versions 1 (text) and 2 (binary), after HAProxy's
 * doc/proxy-protocol.txt. Section numbers below are that document's.
 *
 * Every step either finds the bytes it needs, runs out of them (need more)
 * or sees a byte that no valid header can hold (bad), so a stream that is
 * not a PROXY header is refused as soon as it shows it, and every proper
 * prefix of a valid header is "need more". */
#include <string.h>

#include "proto/frame.h"
#include "proto/proxy.h"

_Static_assert(MQTT_PROXY_NEED_MORE == MQTT_NEED_MORE, "one need-more value");
_Static_assert(MQTT_PROXY_BAD == MQTT_BAD, "one bad value");

/* §2.2: the 12-byte v2 signature; its NUL and CRLFs make it a line no text
 * protocol accepts. */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int bad(mqtt_proxy_hdr *h, const char *why)
{
    h->why = why;
    return MQTT_PROXY_BAD;
}

/* ---------------- address text (v1) ---------------- */

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* §2.1: exactly four decimal numbers 0..255, "heading zeroes are not
 * permitted". The same rules as glibc's inet_pton(AF_INET). */
static bool ip4_parse(const uint8_t *s, size_t n, uint8_t out[4])
{
    size_t octets = 0;
    unsigned v = 0;
    size_t digits = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] >= '0' && s[i] <= '9') {
            if (digits > 0 && v == 0) {
                return false; /* a leading zero */
            }
            v = v * 10 + (unsigned)(s[i] - '0');
            if (v > 255) {
                return false;
            }
            digits++;
            continue;
        }
        if ((i < n && s[i] != '.') || digits == 0 || octets == 4) {
            return false;
        }
        out[octets++] = (uint8_t)v;
        v = 0;
        digits = 0;
    }
    return octets == 4;
}

/* §2.1: groups of up to four hex digits, one "::" at most for a run of
 * zero groups, 128 bits in all. Accepts exactly what glibc's
 * inet_pton(AF_INET6) accepts, the dotted IPv4 tail included, because
 * senders write these with inet_ntop ("::ffff:192.0.2.1"). */
static bool ip6_parse(const uint8_t *s, size_t n, uint8_t out[16])
{
    uint8_t tmp[16] = {0};
    size_t tp = 0, gap = SIZE_MAX, i = 0, tok = 0, digits = 0;
    unsigned v = 0;
    if (n == 0) {
        return false;
    }
    if (s[0] == ':') {
        if (n < 2 || s[1] != ':') {
            return false;
        }
        i = 1;
    }
    tok = i;
    while (i < n) {
        uint8_t c = s[i++];
        int d = hex_value(c);
        if (d >= 0) {
            if (digits == 4) {
                return false;
            }
            v = (v << 4) | (unsigned)d;
            digits++;
            continue;
        }
        if (c == ':') {
            tok = i;
            if (digits == 0) {
                if (gap != SIZE_MAX) {
                    return false; /* a second "::" */
                }
                gap = tp;
                continue;
            }
            if (i == n || tp + 2 > 16) {
                return false; /* a trailing single ':' or a ninth group */
            }
            tmp[tp++] = (uint8_t)(v >> 8);
            tmp[tp++] = (uint8_t)v;
            digits = 0;
            v = 0;
            continue;
        }
        if (c == '.' && tp + 4 <= 16 && ip4_parse(s + tok, n - tok, tmp + tp)) {
            tp += 4;
            digits = 0;
            break;
        }
        return false;
    }
    if (digits > 0) {
        if (tp + 2 > 16) {
            return false;
        }
        tmp[tp++] = (uint8_t)(v >> 8);
        tmp[tp++] = (uint8_t)v;
    }
    if (gap != SIZE_MAX) {
        /* "::" stands for at least one zero group. */
        if (tp == 16) {
            return false;
        }
        size_t tail = tp - gap;
        memmove(tmp + 16 - tail, tmp + gap, tail);
        memset(tmp + gap, 0, 16 - tail - gap);
        tp = 16;
    }
    if (tp != 16) {
        return false;
    }
    memcpy(out, tmp, 16);
    return true;
}

/* §2.1: a decimal 0..65535 without heading zeroes. */
static bool port_parse(const uint8_t *s, size_t n, uint16_t *port)
{
    uint32_t v = 0;
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v > 65535) {
        return false;
    }
    *port = (uint16_t)v;
    return true;
}

/* ---------------- version 1 ---------------- */

/* A cursor over the v1 line: `end` stops at 107 bytes, so running out of
 * bytes there means the CRLF is missing (bad), anywhere else that more
 * may come (need more). */
typedef struct v1cur {
    const uint8_t *b;
    size_t pos, end;
    bool capped;
} v1cur;

static int v1_short(const v1cur *c, mqtt_proxy_hdr *h)
{
    return c->capped ? bad(h, "v1 no CRLF in 107 bytes") : MQTT_PROXY_NEED_MORE;
}

enum { LIT_NO, LIT_PREFIX, LIT_MATCH };

/* How the bytes at the cursor compare with the literal s. */
static int lit(const v1cur *c, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (c->pos + i >= c->end) {
            return LIT_PREFIX;
        }
        if (c->b[c->pos + i] != (uint8_t)s[i]) {
            return LIT_NO;
        }
    }
    return LIT_MATCH;
}

static bool in_set(uint8_t ch, bool v6)
{
    if ((ch >= '0' && ch <= '9') || ch == '.') {
        return true;
    }
    return v6 && (ch == ':' || hex_value(ch) >= 0);
}

typedef enum tok_kind { TOK_IP4, TOK_IP6, TOK_PORT } tok_kind;

/* One field and the byte after it, which must be `delim`. Returns 1 with
 * [*s, *s + *n) set, or need more / bad. */
static int v1_token(v1cur *c, tok_kind k, uint8_t delim, const uint8_t **s, size_t *n, mqtt_proxy_hdr *h)
{
    /* The longest texts: "255.255.255.255", inet_ntop's 45-character
     * IPv6 form, "65535". */
    static const size_t max_len[] = {[TOK_IP4] = 15, [TOK_IP6] = 45, [TOK_PORT] = 5};
    size_t start = c->pos;
    while (c->pos < c->end && in_set(c->b[c->pos], k == TOK_IP6) && c->pos - start <= max_len[k]) {
        c->pos++;
    }
    if (c->pos - start > max_len[k]) {
        return bad(h, k == TOK_PORT ? "v1 port" : "v1 address");
    }
    if (c->pos == c->end) {
        return v1_short(c, h);
    }
    if (c->b[c->pos] != delim) {
        return bad(h, c->b[c->pos] == '\n' ? "v1 LF without CR" : k == TOK_PORT ? "v1 port" : "v1 address");
    }
    *s = c->b + start;
    *n = c->pos - start;
    c->pos++;
    return 1;
}

static int v1_addr(v1cur *c, bool v6, mqtt_proxy_addr *a, mqtt_proxy_hdr *h)
{
    const uint8_t *s;
    size_t n;
    int r = v1_token(c, v6 ? TOK_IP6 : TOK_IP4, ' ', &s, &n, h);
    if (r != 1) {
        return r;
    }
    bool ok = v6 ? ip6_parse(s, n, a->addr) : ip4_parse(s, n, a->addr);
    if (!ok) {
        return bad(h, "v1 address");
    }
    a->family = v6 ? MQTT_PROXY_INET6 : MQTT_PROXY_INET;
    return 1;
}

static int v1_port(v1cur *c, uint8_t delim, mqtt_proxy_addr *a, mqtt_proxy_hdr *h)
{
    const uint8_t *s;
    size_t n;
    int r = v1_token(c, TOK_PORT, delim, &s, &n, h);
    if (r != 1) {
        return r;
    }
    return port_parse(s, n, &a->port) ? 1 : bad(h, "v1 port");
}

/* The LF of the CRLF; the CR was consumed. §2.1: "must not tolerate a
 * single CR or LF character to end the line". */
static int v1_lf(v1cur *c, mqtt_proxy_hdr *h)
{
    if (c->pos == c->end) {
        return v1_short(c, h);
    }
    if (c->b[c->pos] != '\n') {
        return bad(h, "v1 CR without LF");
    }
    return (int)++c->pos;
}

/* "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", after "PROXY TCPx ". */
static int v1_tcp(v1cur *c, bool v6, mqtt_proxy_hdr *h)
{
    mqtt_proxy_addr src = {0}, dst = {0};
    int r = v1_addr(c, v6, &src, h);
    if (r == 1) {
        r = v1_addr(c, v6, &dst, h);
    }
    if (r == 1) {
        r = v1_port(c, ' ', &src, h);
    }
    if (r == 1) {
        r = v1_port(c, '\r', &dst, h);
    }
    if (r == 1) {
        r = v1_lf(c, h);
    }
    if (r > 0) {
        h->src = src;
        h->dst = dst;
    }
    return r;
}

/* §2.1: after "UNKNOWN" the sender may omit the rest of the line, and the
 * receiver ignores whatever comes before the CRLF. */
static int v1_unknown(v1cur *c, mqtt_proxy_hdr *h)
{
    if (c->pos == c->end) {
        return v1_short(c, h);
    }
    if (c->b[c->pos] == '\n') {
        return bad(h, "v1 LF without CR");
    }
    if (c->b[c->pos] != '\r' && c->b[c->pos] != ' ') {
        return bad(h, "v1 family");
    }
    while (c->pos < c->end && c->b[c->pos] != '\r' && c->b[c->pos] != '\n') {
        c->pos++;
    }
    if (c->pos == c->end) {
        return v1_short(c, h);
    }
    if (c->b[c->pos] == '\n') {
        return bad(h, "v1 LF without CR");
    }
    c->pos++;
    return v1_lf(c, h);
}

static int v1_parse(const uint8_t *buf, size_t len, mqtt_proxy_hdr *h)
{
    v1cur c = {buf, 0, len < MQTT_PROXY_V1_MAX ? len : MQTT_PROXY_V1_MAX, len >= MQTT_PROXY_V1_MAX};
    int m = lit(&c, "PROXY ");
    if (m != LIT_MATCH) {
        return m == LIT_NO ? bad(h, "signature") : MQTT_PROXY_NEED_MORE;
    }
    c.pos += 6;
    /* §2.1: "TCP4", "TCP6" or "UNKNOWN", each a prefix check so that a
     * wrong byte is refused where it appears. */
    static const char *const fams[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
    bool prefix = false;
    for (size_t i = 0; i < 3; i++) {
        m = lit(&c, fams[i]);
        if (m == LIT_MATCH) {
            c.pos += strlen(fams[i]);
            return i < 2 ? v1_tcp(&c, i == 1, h) : v1_unknown(&c, h);
        }
        prefix = prefix || m == LIT_PREFIX;
    }
    return prefix ? MQTT_PROXY_NEED_MORE : bad(h, "v1 family");
}

/* ---------------- version 2 ---------------- */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* §2.2: the address block of the PROXY command, by family; the ports
 * follow the addresses for INET and INET6. */
static void v2_addrs(const uint8_t *p, size_t alen, mqtt_proxy_hdr *h)
{
    uint8_t fam = alen == 4 ? MQTT_PROXY_INET : MQTT_PROXY_INET6;
    h->src.family = fam;
    h->dst.family = fam;
    memcpy(h->src.addr, p, alen);
    memcpy(h->dst.addr, p + alen, alen);
    h->src.port = be16(p + 2 * alen);
    h->dst.port = be16(p + 2 * alen + 2);
}

/* §2.2: TLVs fill the rest of the header; each is a type byte, a 16-bit
 * length and that many bytes. Skipped, but none may run past the end. */
static int v2_tlvs(const uint8_t *buf, size_t off, size_t total, mqtt_proxy_hdr *h)
{
    while (off < total) {
        if (total - off < 3) {
            return bad(h, "v2 TLV header past the end");
        }
        size_t vlen = be16(buf + off + 1);
        if (vlen > total - off - 3) {
            return bad(h, "v2 TLV past the end");
        }
        off += 3 + vlen;
    }
    return (int)total;
}

static int v2_parse(const uint8_t *buf, size_t len, mqtt_proxy_hdr *h)
{
    for (size_t i = 0; i < sizeof(v2_sig); i++) {
        if (i == len) {
            return MQTT_PROXY_NEED_MORE;
        }
        if (buf[i] != v2_sig[i]) {
            return bad(h, "signature");
        }
    }
    if (len < 13) {
        return MQTT_PROXY_NEED_MORE;
    }
    /* §2.2: the version nibble "must always be sent as \x2 and the
     * receiver must only accept this value"; commands other than LOCAL
     * (0) and PROXY (1) "must drop" the connection. */
    uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0F;
    if (ver != 2) {
        return bad(h, "v2 version");
    }
    if (cmd > 1) {
        return bad(h, "v2 command");
    }
    if (len < 14) {
        return MQTT_PROXY_NEED_MORE;
    }
    /* §2.2: families above AF_UNIX (3) and protocols above DGRAM (2)
     * "must be rejected as invalid". LOCAL "discards the protocol block
     * including the family", so its family byte is not looked at. */
    uint8_t fam = buf[13] >> 4, proto = buf[13] & 0x0F;
    if (cmd == 1 && fam > 3) {
        return bad(h, "v2 family");
    }
    if (cmd == 1 && proto > 2) {
        return bad(h, "v2 protocol");
    }
    if (len < 16) {
        return MQTT_PROXY_NEED_MORE;
    }
    size_t body = be16(buf + 14);
    if (body > MQTT_PROXY_V2_MAX_BODY) {
        return bad(h, "v2 length above the limit");
    }
    size_t total = 16 + body;
    if (len < total) {
        return MQTT_PROXY_NEED_MORE;
    }
    if (cmd == 0) {
        h->local = true;
        return (int)total;
    }
    /* AF_UNSPEC or protocol UNSPEC: the address bytes have no defined
     * layout, so they are skipped whole and the connection keeps its own
     * address ("the receiver should ignore address information"). */
    if (fam == 0 || proto == 0) {
        return (int)total;
    }
    /* §2.2: 2*4 + 2*2, 2*16 + 2*2 and 2*108 bytes. */
    static const size_t need[] = {[1] = 12, [2] = 36, [3] = 216};
    if (body < need[fam]) {
        return bad(h, "v2 address block short for its family");
    }
    /* Only TCP over IPv4/IPv6 names a client Shoal can use; UDP and UNIX
     * fall back to UNSPEC, which the spec allows for what a receiver does
     * not support. */
    int r = v2_tlvs(buf, 16 + need[fam], total, h);
    if (r > 0 && proto == 1 && fam != 3) {
        v2_addrs(buf + 16, fam == 1 ? 4 : 16, h);
    }
    return r;
}

int mqtt_proxy_parse(const uint8_t *buf, size_t len, unsigned allowed_versions, mqtt_proxy_hdr *out)
{
    /* Reset outputs so a partial parse never leaves stale values. */
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        return MQTT_PROXY_NEED_MORE;
    }
    /* §2.2 "identifying the protocol version": the first byte decides. */
    if (buf[0] == 'P' && (allowed_versions & MQTT_PROXY_V1)) {
        out->version = 1;
        return v1_parse(buf, len, out);
    }
    if (buf[0] == v2_sig[0] && (allowed_versions & MQTT_PROXY_V2)) {
        out->version = 2;
        return v2_parse(buf, len, out);
    }
    if (buf[0] == 'P' || buf[0] == v2_sig[0]) {
        return bad(out, "version not enabled");
    }
    return bad(out, "signature");
}

/* ---------------- peer text ---------------- */

static char *put_dec(char *p, unsigned v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        *p++ = tmp[--n];
    }
    return p;
}

static char *put_ip4(char *p, const uint8_t a[4])
{
    for (int i = 0; i < 4; i++) {
        if (i > 0) {
            *p++ = '.';
        }
        p = put_dec(p, a[i]);
    }
    return p;
}

static char *put_hex(char *p, unsigned v)
{
    static const char hex[] = "0123456789abcdef";
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
        unsigned d = (v >> shift) & 0xF;
        if (d != 0 || started || shift == 0) {
            *p++ = hex[d];
            started = true;
        }
    }
    return p;
}

/* RFC 5952 text, the way glibc's inet_ntop writes it: lower-case hex
 * without leading zeros, the first longest run of two or more zero groups
 * as "::", and a dotted tail for ::ffff:a.b.c.d and ::a.b.c.d. */
static char *put_ip6(char *p, const uint8_t a[16])
{
    unsigned w[8];
    int best = -1, best_len = 0, cur = -1, cur_len = 0;
    for (int i = 0; i < 8; i++) {
        w[i] = (unsigned)(a[2 * i] << 8) | a[2 * i + 1];
        if (w[i] == 0) {
            cur = cur < 0 ? i : cur;
            cur_len++;
            if (cur_len > best_len) {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur = -1;
            cur_len = 0;
        }
    }
    if (best_len < 2) {
        best = -1;
    }
    for (int i = 0; i < 8; i++) {
        if (best >= 0 && i >= best && i < best + best_len) {
            if (i == best) {
                *p++ = ':';
            }
            continue;
        }
        if (i > 0) {
            *p++ = ':';
        }
        if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xFFFF))) {
            return put_ip4(p, a + 12);
        }
        p = put_hex(p, w[i]);
    }
    if (best >= 0 && best + best_len == 8) {
        *p++ = ':';
    }
    return p;
}

size_t mqtt_proxy_format_peer(const mqtt_proxy_addr *a, char *dst, size_t cap)
{
    char tmp[MQTT_PROXY_PEER_MAX];
    char *p = tmp;
    if (a->family == MQTT_PROXY_INET) {
        p = put_ip4(p, a->addr);
    } else if (a->family == MQTT_PROXY_INET6) {
        *p++ = '[';
        p = put_ip6(p, a->addr);
        *p++ = ']';
    }
    size_t n = 0;
    if (p != tmp) {
        *p++ = ':';
        p = put_dec(p, a->port);
        n = (size_t)(p - tmp);
    }
    if (cap == 0) {
        return 0;
    }
    if (n >= cap) {
        n = 0;
    }
    memcpy(dst, tmp, n);
    dst[n] = '\0';
    return n;
}
