/* SPDX-License-Identifier: Apache-2.0 */
/* WebSocket (RFC 6455) as MQTT's transport, server side: the opening
 * handshake and the frame header as pure functions over bytes. No I/O, no
 * allocation, no state between calls except what the caller passes in; the
 * connection glue is node/net/ws_conn.c. */
#ifndef SHOAL_NODE_WS_H
#define SHOAL_NODE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return values of the parsers (like picohttpparser). */
#define WS_NEED_MORE (-2)
#define WS_BAD (-1)

/* Largest request head accepted before the upgrade (request line and
 * headers); a longer one is refused with 400. */
#define WS_REQUEST_MAX 8192
/* Largest frame header: 2 bytes, 8 of extended length, 4 of mask. */
#define WS_HEADER_MAX 14
/* Control frames carry at most 125 bytes (§5.5). */
#define WS_CONTROL_MAX 125
/* Room for any response ws_response() writes. */
#define WS_RESPONSE_MAX 512

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close status codes (§7.4.1) that Shoal sends. */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003, /* a text frame: MQTT is binary */
    WS_CLOSE_NO_STATUS = 1005,   /* never on the wire: a close frame without a code */
    WS_CLOSE_BAD_DATA = 1007,    /* a close reason that is not UTF-8 */
    WS_CLOSE_TOO_BIG = 1009,
};

/* Pointer and length into the caller's buffer. */
typedef struct ws_slice {
    const char *p;
    size_t len;
} ws_slice;

/* Headers that may be repeated and are read as comma-separated lists. */
#define WS_LIST_MAX 4

/* A parsed request head; every slice borrows the parsed buffer. */
typedef struct ws_request {
    ws_slice method;
    ws_slice target;   /* path and query as sent */
    int minor_version; /* HTTP/1.x */
    ws_slice host;
    ws_slice upgrade;
    ws_slice key;
    ws_slice version;
    ws_slice origin;
    ws_slice connection[WS_LIST_MAX];
    uint8_t n_connection;
    ws_slice protocol[WS_LIST_MAX];
    uint8_t n_protocol;
} ws_request;

/* Parse one HTTP/1.x request head (request line, headers, empty line).
 * Returns the bytes consumed (>0), WS_NEED_MORE when the head is not complete
 * yet, or WS_BAD. Lines end in CRLF; folded headers, control characters and
 * more than WS_LIST_MAX lines of a list header are WS_BAD. `req` is reset on
 * entry, so a partial parse leaves no stale slices. */
int ws_parse_request(const char *buf, size_t len, ws_request *req);

/* What the listener accepts. Borrowed for the call. */
typedef struct ws_policy {
    const char *path;    /* "/mqtt"; the query string is ignored */
    const char *origins; /* comma-separated allow-list; NULL or "" = any */
} ws_policy;

/* The decision on one request. */
typedef struct ws_answer {
    int status;        /* 101, 400, 403 or 404 */
    const char *why;   /* static text for the log and the error body */
    bool bad_version;  /* 400 for the version: the response names 13 */
    ws_slice protocol; /* 101: the subprotocol chosen, empty when none was offered */
    char accept[29];   /* 101: Sec-WebSocket-Accept */
} ws_answer;

/* Check a parsed request against the policy (§4.2.1): GET, HTTP/1.1 or
 * later, the path (else 404), Host, Upgrade: websocket, Connection: Upgrade,
 * Sec-WebSocket-Version 13 and a Sec-WebSocket-Key of 16 bytes in base64
 * (else 400), the Origin when the allow-list is set (else 403; a request
 * without Origin, i.e. not from a browser, passes), and the subprotocol:
 * "mqtt" or "mqttv3.1", the first offered wins; offering only others is 400,
 * offering none is accepted without the header (as Mosquitto does). */
void ws_handshake(const ws_request *req, const ws_policy *pol, ws_answer *ans);

/* The HTTP response for ans (101 with its headers, or the error with a
 * one-line text body). Returns its length; dst has WS_RESPONSE_MAX bytes. */
size_t ws_response(const ws_answer *ans, char *dst);

/* Sec-WebSocket-Accept for a key (§4.2.2): base64(SHA-1(key ++ GUID)),
 * 28 characters and a NUL. */
void ws_accept_key(const char *key, size_t len, char out[29]);

/* One frame header (§5.2). */
typedef struct ws_frame {
    bool fin;
    uint8_t opcode;
    uint8_t mask[4];
    uint64_t len;        /* payload length */
    uint16_t close_code; /* when the parse returns WS_BAD: the close code */
    const char *why;     /* and the reason, static text for the log */
} ws_frame;

/* Decode the header of a frame sent by a client. Returns the header size
 * (2..14), WS_NEED_MORE, or WS_BAD with f->close_code set: 1002 for RSV bits
 * (no extension is negotiated), an unknown opcode, a fragmented or long
 * control frame, an unmasked frame (§5.1: clients mask every frame), or a
 * length not in its shortest form or above 2^63; 1009 for a data frame whose
 * payload exceeds max_payload. Only complete fields are looked at: an error
 * is reported as soon as the bytes that show it are there. */
int ws_frame_parse(const uint8_t *p, size_t len, uint64_t max_payload, ws_frame *f);

/* Encode the header of an unmasked, final frame as a server sends it.
 * Returns its size: 2, 4 or 10 bytes (dst has WS_HEADER_MAX). */
size_t ws_frame_header(uint8_t *dst, uint8_t opcode, uint64_t len);

/* XOR n bytes with the masking key, starting at byte `off` of the payload
 * (so a payload can be unmasked in pieces). Returns the offset after them. */
uint64_t ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off);

/* Message framing across frames (§5.4): which frame may come next. */
typedef struct ws_seq {
    bool in_message; /* a fragmented message waits for continuations */
} ws_seq;

/* 0 when frame f may come now (and s is advanced), else the close code:
 * 1002 for a continuation with no message to continue or a new data frame
 * inside a fragmented one; 1003 for a text message (MQTT is binary).
 * Control frames may come between fragments and leave s alone. */
uint16_t ws_seq_next(ws_seq *s, const ws_frame *f);

/* Read the payload of a close frame (§5.5.1, §7.4): empty (the code is then
 * 1005) or a valid status code and a UTF-8 reason. Returns 0 and sets
 * *code, or the close code to answer with (1002 or 1007). */
uint16_t ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);

#endif
