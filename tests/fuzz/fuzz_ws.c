/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the WebSocket layer (node/net/ws.c): the upgrade request
 * parser and handshake decision, then frames as a client would send them.
 *
 * The first byte picks the policy (origin allow-list or not) and whether
 * the rest is a request head or a frame stream. Oracles beyond the
 * sanitizers: a parse never consumes more than it was given, a request is
 * parsed the same whole and fed byte by byte as a prefix (NEED_MORE until
 * complete), a 101 always names a valid accept key, and a frame header
 * decoded from a prefix agrees with the one decoded from the whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/net/ws.h"

static void check(int cond)
{
    if (!cond) {
        abort();
    }
}

static void fuzz_request(const char *buf, size_t len, const ws_policy *pol)
{
    ws_request req;
    int n = ws_parse_request(buf, len, &req);
    check(n == WS_NEED_MORE || n == WS_BAD || (n > 0 && (size_t)n <= len));
    if (n > 0) {
        /* Every strict prefix of a complete head is incomplete or bad. */
        for (size_t k = 0; k < (size_t)n; k += 1 + (size_t)n / 64) {
            ws_request part;
            int m = ws_parse_request(buf, k, &part);
            check(m == WS_NEED_MORE || m == WS_BAD);
        }
        ws_answer ans;
        ws_handshake(&req, pol, &ans);
        check(ans.status == 101 || ans.status == 400 || ans.status == 403 || ans.status == 404);
        if (ans.status == 101) {
            check(strlen(ans.accept) == 28);
        }
        char out[WS_RESPONSE_MAX];
        size_t rn = ws_response(&ans, out);
        check(rn > 0 && rn <= sizeof(out));
    }
}

static void fuzz_frames(const uint8_t *p, size_t len, uint64_t max)
{
    ws_seq seq = {0};
    uint8_t payload[256];
    while (len > 0) {
        ws_frame f;
        int n = ws_frame_parse(p, len, max, &f);
        if (n == WS_NEED_MORE) {
            check(len < WS_HEADER_MAX);
            return;
        }
        if (n == WS_BAD) {
            check(f.close_code == WS_CLOSE_PROTOCOL || f.close_code == WS_CLOSE_TOO_BIG);
            return;
        }
        check(n >= 2 && n <= WS_HEADER_MAX && (size_t)n <= len);
        /* The header decodes the same from exactly its own bytes. */
        ws_frame again;
        check(ws_frame_parse(p, (size_t)n, max, &again) == n && again.len == f.len && again.opcode == f.opcode);
        if (ws_seq_next(&seq, &f) != 0) {
            return;
        }
        p += n;
        len -= (size_t)n;
        size_t take = f.len < len ? (size_t)f.len : len;
        /* Unmasking in two pieces equals unmasking at once. */
        size_t chunk = take < sizeof(payload) ? take : sizeof(payload);
        uint8_t once[256];
        memcpy(payload, p, chunk);
        memcpy(once, p, chunk);
        uint64_t off = ws_unmask(payload, chunk / 2, f.mask, 0);
        ws_unmask(payload + chunk / 2, chunk - chunk / 2, f.mask, off);
        ws_unmask(once, chunk, f.mask, 0);
        check(memcmp(payload, once, chunk) == 0);
        if (f.opcode == WS_OP_CLOSE) {
            uint16_t code;
            uint16_t rc = ws_close_parse(once, chunk, &code);
            check(rc == 0 || rc == WS_CLOSE_PROTOCOL || rc == WS_CLOSE_BAD_DATA);
            return;
        }
        if (take < f.len) {
            return;
        }
        p += take;
        len -= take;
    }
}

/* libFuzzer's entry point, declared here for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t mode = data[0];
    ws_policy pol = {.path = "/mqtt", .origins = (mode & 2) ? "https://a.example,http://127.0.0.1:8000" : NULL};
    if (mode & 1) {
        fuzz_frames(data + 1, size - 1, (mode & 4) ? 125 : 1u << 20);
    } else {
        fuzz_request((const char *)data + 1, size - 1, &pol);
    }
    /* Header encoding round-trips through the client-side parser once
     * masked (servers never mask; flip the bit to reuse the parser). */
    uint64_t len = 0;
    for (size_t i = 1; i < size && i < 9; i++) {
        len = (len << 8) | data[i];
    }
    len &= (1ULL << 62) - 1;
    uint8_t hdr[WS_HEADER_MAX + 4];
    size_t hn = ws_frame_header(hdr, WS_OP_BINARY, len);
    check(hn == 2 || hn == 4 || hn == 10);
    hdr[1] |= 0x80;
    memset(hdr + hn, 0x5a, 4);
    ws_frame f;
    check(ws_frame_parse(hdr, hn + 4, UINT64_MAX, &f) == (int)hn + 4 && f.len == len && f.fin);
    return 0;
}
