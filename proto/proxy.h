/* SPDX-License-Identifier: Apache-2.0 */
/* PROXY protocol header (HAProxy's doc/proxy-protocol.txt, versions 1 and
 * 2): what a load balancer puts in front of the client's bytes so that the
 * server learns the client's own address.
 *
 * Shaped like picohttpparser's phr_parse_request (and mqtt_frame_parse): a
 * pure function over the caller's bytes that answers length / need more /
 * bad, keeps no state, allocates nothing and never reads past len. */
#ifndef SHOAL_PROTO_PROXY_H
#define SHOAL_PROTO_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Same values as MQTT_NEED_MORE / MQTT_BAD (proto/frame.h). */
#define MQTT_PROXY_NEED_MORE (-2)
#define MQTT_PROXY_BAD (-1)

/* allowed_versions bits. */
#define MQTT_PROXY_V1 1u
#define MQTT_PROXY_V2 2u

/* §2.1: a v1 line, CRLF included, is at most 107 bytes. */
#define MQTT_PROXY_V1_MAX 107
/* A v2 header is 16 bytes plus its length field. The field allows 65,535;
 * Shoal refuses more than this many address and TLV bytes so that a
 * connection never buffers more than ~2 KiB before its header is whole.
 * Real senders stay far below (HAProxy with every TLV it can send, AWS NLB
 * and Azure Private Link TLVs: a few hundred bytes). */
#define MQTT_PROXY_V2_MAX_BODY 2048
#define MQTT_PROXY_V2_MAX (16 + MQTT_PROXY_V2_MAX_BODY)

/* The longest peer string mqtt_proxy_format_peer writes, NUL included:
 * "[" 39-char IPv6 "]:" 5-digit port NUL. Equals node/core.h CONN_PEER_MAX. */
#define MQTT_PROXY_PEER_MAX 48

enum mqtt_proxy_family {
    /* No address to use: keep the connection's own (v2 LOCAL, v1 UNKNOWN,
     * v2 AF_UNSPEC, AF_UNIX, or a protocol other than STREAM). */
    MQTT_PROXY_UNSPEC = 0,
    MQTT_PROXY_INET = 4,
    MQTT_PROXY_INET6 = 6,
};

/* One endpoint, ready for a sockaddr_in / sockaddr_in6: `addr` is in
 * network byte order (IPv4 in addr[0..3], the rest zero), `port` in host
 * byte order. */
typedef struct mqtt_proxy_addr {
    uint8_t family; /* enum mqtt_proxy_family */
    uint16_t port;
    uint8_t addr[16];
} mqtt_proxy_addr;

typedef struct mqtt_proxy_hdr {
    uint8_t version;     /* 1 or 2 once known (from the first byte) */
    bool local;          /* v2 LOCAL command: the balancer's own connection
                        (a health check), not a relayed client */
    mqtt_proxy_addr src; /* the client */
    mqtt_proxy_addr dst; /* the address the client connected to */
    /* On MQTT_PROXY_BAD: a short reason with static storage
     * ("v2 version", "v1 port", ...) for the log line; NULL otherwise. */
    const char *why;
} mqtt_proxy_hdr;

/* Parse one PROXY header at the start of buf[0..len).
 * allowed_versions: MQTT_PROXY_V1 and/or MQTT_PROXY_V2.
 * Returns the header's length (> 0; the stream's own bytes start there) and
 * fills *out; MQTT_PROXY_NEED_MORE while every byte so far can still begin
 * a valid header; MQTT_PROXY_BAD (out->why set) as soon as a byte shows it
 * cannot: a wrong signature byte (so a client speaking MQTT straight away is
 * refused on its first byte), a version not allowed, an unknown v2 command,
 * family or protocol, a v2 length above MQTT_PROXY_V2_MAX_BODY, an address
 * block shorter than its family needs, a TLV running past the header, a v1
 * line without CRLF in its first 107 bytes, a lone CR or LF, an address or
 * port that is not canonical (leading zeros, an octet above 255, a port
 * above 65535). Outputs are reset on entry. When src.family is
 * MQTT_PROXY_UNSPEC the header is valid but carries no address: keep the
 * connection's own. v2 TLVs are walked for bounds and otherwise ignored. */
int mqtt_proxy_parse(const uint8_t *buf, size_t len, unsigned allowed_versions, mqtt_proxy_hdr *out);

static inline bool mqtt_proxy_has_addr(const mqtt_proxy_hdr *h)
{
    return h->src.family != MQTT_PROXY_UNSPEC;
}

/* Write a's peer string as the node names connections: "1.2.3.4:5" or
 * "[2001:db8::1]:5" (RFC 5952 text, as inet_ntop writes it, IPv4-mapped
 * addresses included). Returns its length without the NUL, or 0 (writing
 * "" when cap > 0) if a has no address or cap is too small;
 * cap >= MQTT_PROXY_PEER_MAX always fits. */
size_t mqtt_proxy_format_peer(const mqtt_proxy_addr *a, char *dst, size_t cap);

#endif
