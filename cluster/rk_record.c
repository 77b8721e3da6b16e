/* SPDX-License-Identifier: Apache-2.0 */
#include "cluster/rk_record.h"

#include <stdbool.h>
#include <string.h>

static uint8_t *put16(uint8_t *d, uint16_t v)
{
    d[0] = (uint8_t)(v >> 8);
    d[1] = (uint8_t)v;
    return d + 2;
}

static uint8_t *put32(uint8_t *d, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        *d++ = (uint8_t)(v >> (i * 8));
    }
    return d;
}

static uint8_t *put64(uint8_t *d, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        *d++ = (uint8_t)(v >> (i * 8));
    }
    return d;
}

static uint64_t get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static size_t origin_len(const char *origin)
{
    size_t n = origin ? strlen(origin) : 0;
    return n > 255 ? 255 : n;
}

size_t rk_record_size(const bp_message *m, const char *origin)
{
    return 2 + 1 + 1 + 1 + 1 + origin_len(origin) + 2 + m->client_id_len + 8 + 4 + m->props_len + 2 + m->topic_len +
           m->payload_len;
}

size_t rk_record_encode(const bp_message *m, const char *origin, uint8_t *dst)
{
    uint8_t *d = dst;
    size_t olen = origin_len(origin);
    *d++ = 'S';
    *d++ = 'H';
    *d++ = m->expiry_at_unix_ms ? RK_RECORD_VERSION : RK_RECORD_VERSION_NO_EXPIRY;
    *d++ = (uint8_t)((m->retain ? RK_FLAG_RETAIN : 0) | (m->retain_only ? RK_FLAG_RETAIN_ONLY : 0));
    *d++ = m->qos;
    *d++ = (uint8_t)olen;
    memcpy(d, origin, olen);
    d += olen;
    d = put16(d, m->client_id_len);
    if (m->client_id_len) {
        memcpy(d, m->client_id, m->client_id_len);
    }
    d += m->client_id_len;
    d = put64(d, m->expiry_at_unix_ms);
    d = put32(d, m->props_len);
    if (m->props_len) {
        memcpy(d, m->props, m->props_len);
    }
    d += m->props_len;
    d = put16(d, (uint16_t)m->topic_len);
    memcpy(d, m->topic, m->topic_len);
    d += m->topic_len;
    if (m->payload_len) {
        memcpy(d, m->payload, m->payload_len);
    }
    d += m->payload_len;
    return (size_t)(d - dst);
}

/* A length-prefixed field at *pos: the slice, or false if the record ends
 * inside it. */
static bool take(const uint8_t *buf, size_t len, size_t *pos, int prefix, const uint8_t **p, size_t *n)
{
    if (len - *pos < (size_t)prefix) {
        return false;
    }
    uint64_t v = get(buf + *pos, prefix);
    *pos += (size_t)prefix;
    if (v > len - *pos) {
        return false;
    }
    *p = buf + *pos;
    *n = (size_t)v;
    *pos += (size_t)v;
    return true;
}

rk_record_status rk_record_decode(const uint8_t *buf, size_t len, bp_message *m, const uint8_t **origin, size_t *olen)
{
    if (len < 3 || buf[0] != 'S' || buf[1] != 'H') {
        return RK_RECORD_BAD;
    }
    uint8_t version = buf[2];
    if (version > RK_RECORD_VERSION) {
        return RK_RECORD_NEWER;
    }
    if (version == 0 || len < 5) {
        return RK_RECORD_BAD;
    }
    memset(m, 0, sizeof(*m));
    /* The bytes do not say where the record sits: the reader sets it. */
    m->partition = -1;
    m->offset = -1;
    m->retain = (buf[3] & RK_FLAG_RETAIN) != 0;
    m->retain_only = (buf[3] & RK_FLAG_RETAIN_ONLY) != 0;
    m->qos = buf[4];
    size_t pos = 5;
    if (m->qos > 2 || !take(buf, len, &pos, 1, origin, olen)) {
        return RK_RECORD_BAD;
    }
    if (version >= 2) {
        const uint8_t *id;
        size_t idlen;
        if (!take(buf, len, &pos, 2, &id, &idlen)) {
            return RK_RECORD_BAD;
        }
        m->client_id = idlen ? id : NULL;
        m->client_id_len = (uint16_t)idlen;
    }
    if (len - pos < 8) {
        return RK_RECORD_BAD;
    }
    m->expiry_at_unix_ms = get(buf + pos, 8);
    pos += 8;
    const uint8_t *p;
    size_t n;
    if (!take(buf, len, &pos, 4, &p, &n)) {
        return RK_RECORD_BAD;
    }
    m->props = p;
    m->props_len = (uint32_t)n;
    if (!take(buf, len, &pos, 2, &p, &n) || n == 0) {
        return RK_RECORD_BAD;
    }
    m->topic = p;
    m->topic_len = (uint32_t)n;
    m->payload = buf + pos;
    m->payload_len = (uint32_t)(len - pos);
    return RK_RECORD_OK;
}
