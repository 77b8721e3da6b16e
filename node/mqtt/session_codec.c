/* SPDX-License-Identifier: Apache-2.0 */
/* A session's durable state blob (node/mqtt/session_codec.h).
 *
 * Layout, all integers big endian:
 *   magic "SS" | version u8 | protocol level u8 | session expiry u32
 *   then sections until the end: type u8 | length u32 | body
 *   SC_SEC_WILL:    flags u8 (bits 0-1 QoS, bit 2 retain) | delay u32 |
 *                   message expiry u32 | topic u16+bytes | properties
 *                   u32+bytes | payload u32+bytes
 *   SC_SEC_SUBS:    count u32, then per subscription: filter u16+bytes |
 *                   options u8 (bits 0-1 QoS, 2 No Local, 3 Retain As
 *                   Published, 4-5 Retain Handling) | subscription id u32
 *   SC_SEC_QOS2_IN: count u32, then a u16 packet id each
 *   SC_SEC_END:     length 0, last: a blob cut at a section boundary is
 *                   refused too
 * A body must be consumed exactly; unknown section types are skipped. */
#include "node/mqtt/session_codec.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "proto/props.h"
#include "proto/topic.h"

#define SC_HEAD 8             /* magic, version, protocol level, expiry */
#define SUB_MIN 7             /* filter length, one byte of filter, options, id */
#define SUB_ID_MAX 268435455u /* a Variable Byte Integer's largest value (§3.3.2.3.8) */

const char *sc_status_name(sc_status st)
{
    switch (st) {
    case SC_OK:
        return "ok";
    case SC_ETRUNCATED:
        return "truncated";
    case SC_ECORRUPT:
        return "corrupt";
    case SC_ENEWER:
        return "newer-version";
    case SC_ELIMIT:
        return "over-limit";
    }
    return "unknown";
}

/* ---- encode ---- */

typedef struct wbuf {
    uint8_t *p;
    size_t n;
} wbuf;

static void put8(wbuf *w, uint8_t v)
{
    w->p[w->n++] = v;
}

static void put16(wbuf *w, uint16_t v)
{
    put8(w, (uint8_t)(v >> 8));
    put8(w, (uint8_t)v);
}

static void put32(wbuf *w, uint32_t v)
{
    put16(w, (uint16_t)(v >> 16));
    put16(w, (uint16_t)v);
}

static void put64(wbuf *w, int64_t v)
{
    put32(w, (uint32_t)((uint64_t)v >> 32));
    put32(w, (uint32_t)(uint64_t)v);
}

static void put_bytes(wbuf *w, mqtt_bytes b)
{
    if (b.len) {
        memcpy(w->p + w->n, b.p, b.len);
    }
    w->n += b.len;
}

static size_t will_size(const sc_will *wl)
{
    return 1 + 4 + 4 + 2 + (size_t)wl->topic.len + 4 + wl->props.len + 4 + wl->payload.len;
}

static size_t subs_size(const sc_state *st)
{
    size_t n = 4;
    for (uint32_t i = 0; i < st->n_subs; i++) {
        n += 2 + (size_t)st->subs[i].filter.len + 1 + 4;
    }
    return n;
}

static size_t inflight_size(const sc_state *st)
{
    return 4 + (size_t)st->n_inflight * 15;
}

static size_t stream_size(const sc_state *st)
{
    size_t n = 4 + (size_t)st->n_parts * 8 + 1;
    for (uint32_t i = 0; i < st->n_rules; i++) {
        n += 1 + st->rules[i].node.len + (size_t)st->n_parts * 16;
    }
    return n;
}

static uint8_t opts_byte(const sub_opts *o)
{
    return (uint8_t)(o->qos | (o->no_local ? 4 : 0) | (o->rap ? 8 : 0) | (o->retain_handling << 4));
}

static sc_status check_for_encode(const sc_state *st)
{
    if (st->n_subs > SC_MAX_SUBS || st->n_qos2 > SC_MAX_QOS2 || st->n_inflight > SC_MAX_INFLIGHT ||
        st->n_parts > SC_MAX_PARTS || st->n_rules > SC_MAX_RULES) {
        return SC_ELIMIT;
    }
    for (uint32_t i = 0; i < st->n_rules; i++) {
        if (st->rules[i].node.len > SC_MAX_NODE_ID) {
            return SC_ELIMIT;
        }
    }
    for (uint32_t i = 0; i < st->n_inflight; i++) {
        if (st->inflight[i].pid == 0 || st->inflight[i].state < 1 || st->inflight[i].state > 3) {
            return SC_ECORRUPT;
        }
    }
    for (uint32_t i = 0; i < st->n_subs; i++) {
        const sc_sub *s = &st->subs[i];
        if (s->filter.len == 0 || s->filter.len > SC_MAX_FILTER) {
            return s->filter.len ? SC_ELIMIT : SC_ECORRUPT;
        }
        if (s->opts.qos > 2 || s->opts.retain_handling > 2 || s->opts.sub_id > SUB_ID_MAX) {
            return SC_ECORRUPT;
        }
    }
    if (st->has_will) {
        const sc_will *wl = &st->will;
        if (wl->qos > 2 || wl->topic.len == 0 || wl->topic.len > 65535) {
            return SC_ECORRUPT;
        }
        if (wl->payload.len > SC_MAX_WILL_PAYLOAD || wl->props.len > SC_MAX_WILL_PAYLOAD) {
            return SC_ELIMIT;
        }
    }
    return SC_OK;
}

sc_status sc_encode(const sc_state *st, uint8_t **out, uint32_t *len)
{
    sc_status rc = check_for_encode(st);
    if (rc != SC_OK) {
        return rc;
    }
    size_t size = SC_HEAD + 5; /* and the end section */
    if (st->has_will) {
        size += 5 + will_size(&st->will);
    }
    if (st->n_subs) {
        size += 5 + subs_size(st);
    }
    if (st->n_qos2) {
        size += 5 + 4 + 2 * (size_t)st->n_qos2;
    }
    if (st->n_inflight) {
        size += 5 + inflight_size(st);
    }
    if (st->n_parts) {
        size += 5 + stream_size(st);
    }
    if (size > UINT32_MAX) {
        return SC_ELIMIT;
    }
    wbuf w = {sh_malloc(size), 0};
    put8(&w, 'S');
    put8(&w, 'S');
    put8(&w, SC_VERSION);
    put8(&w, st->proto_version);
    put32(&w, st->expiry_s);
    if (st->has_will) {
        const sc_will *wl = &st->will;
        put8(&w, SC_SEC_WILL);
        put32(&w, (uint32_t)will_size(wl));
        put8(&w, (uint8_t)(wl->qos | (wl->retain ? 4 : 0)));
        put32(&w, wl->delay_s);
        put32(&w, wl->expiry_s);
        put16(&w, (uint16_t)wl->topic.len);
        put_bytes(&w, wl->topic);
        put32(&w, wl->props.len);
        put_bytes(&w, wl->props);
        put32(&w, wl->payload.len);
        put_bytes(&w, wl->payload);
    }
    if (st->n_subs) {
        put8(&w, SC_SEC_SUBS);
        put32(&w, (uint32_t)subs_size(st));
        put32(&w, st->n_subs);
        for (uint32_t i = 0; i < st->n_subs; i++) {
            const sc_sub *s = &st->subs[i];
            put16(&w, (uint16_t)s->filter.len);
            put_bytes(&w, s->filter);
            put8(&w, opts_byte(&s->opts));
            put32(&w, s->opts.sub_id);
        }
    }
    if (st->n_qos2) {
        put8(&w, SC_SEC_QOS2_IN);
        put32(&w, 4 + 2 * st->n_qos2);
        put32(&w, st->n_qos2);
        for (uint32_t i = 0; i < st->n_qos2; i++) {
            put16(&w, st->qos2_in[i]);
        }
    }
    if (st->n_inflight) {
        put8(&w, SC_SEC_INFLIGHT);
        put32(&w, (uint32_t)inflight_size(st));
        put32(&w, st->n_inflight);
        for (uint32_t i = 0; i < st->n_inflight; i++) {
            const sc_inflight *f = &st->inflight[i];
            put16(&w, f->pid);
            put8(&w, f->state);
            put32(&w, (uint32_t)f->part);
            put64(&w, f->off);
        }
    }
    if (st->n_parts) {
        put8(&w, SC_SEC_STREAM);
        put32(&w, (uint32_t)stream_size(st));
        put32(&w, st->n_parts);
        for (uint32_t p = 0; p < st->n_parts; p++) {
            put64(&w, st->pos[p]);
        }
        put8(&w, (uint8_t)st->n_rules);
        for (uint32_t i = 0; i < st->n_rules; i++) {
            const sc_rule *rl = &st->rules[i];
            put8(&w, (uint8_t)rl->node.len);
            put_bytes(&w, rl->node);
            for (uint32_t p = 0; p < st->n_parts; p++) {
                put64(&w, rl->hi_own[p]);
                put64(&w, rl->hi_other[p]);
            }
        }
    }
    put8(&w, SC_SEC_END);
    put32(&w, 0);
    *out = w.p;
    *len = (uint32_t)w.n;
    return SC_OK;
}

/* ---- decode ---- */

typedef struct rbuf {
    const uint8_t *p;
    size_t left;
} rbuf;

static bool get8(rbuf *r, uint8_t *v)
{
    if (r->left < 1) {
        return false;
    }
    *v = r->p[0];
    r->p++;
    r->left--;
    return true;
}

static bool get16(rbuf *r, uint16_t *v)
{
    if (r->left < 2) {
        return false;
    }
    *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    r->left -= 2;
    return true;
}

static bool get32(rbuf *r, uint32_t *v)
{
    if (r->left < 4) {
        return false;
    }
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return true;
}

static bool get64(rbuf *r, int64_t *v)
{
    uint32_t hi, lo;
    if (!get32(r, &hi) || !get32(r, &lo)) {
        return false;
    }
    *v = (int64_t)((uint64_t)hi << 32 | lo);
    return true;
}

static bool get_bytes(rbuf *r, size_t n, mqtt_bytes *out)
{
    if (r->left < n) {
        return false;
    }
    out->p = r->p;
    out->len = (uint32_t)n;
    r->p += n;
    r->left -= n;
    return true;
}

/* Forwarded properties as a PUBLISH would carry them: what a subscriber
 * gets must parse. mqtt_props_read wants the length prefix. */
static bool props_valid(mqtt_bytes props)
{
    if (props.len == 0) {
        return true;
    }
    uint8_t *tmp = sh_malloc((size_t)props.len + 4);
    size_t n = 0;
    uint32_t v = props.len;
    do {
        uint8_t byte = v % 128;
        v /= 128;
        tmp[n++] = (uint8_t)(byte | (v ? 128 : 0));
    } while (v);
    memcpy(tmp + n, props.p, props.len);
    mqtt_props pr;
    uint32_t used = 0;
    mqtt_bytes in = {tmp, (uint32_t)(n + props.len)};
    bool ok = mqtt_props_read(in, MQTT_PUBLISH, &pr, &used) == MQTT_RC_SUCCESS && used == in.len;
    sh_free(tmp, (size_t)props.len + 4);
    return ok;
}

static sc_status decode_will(rbuf *r, sc_state *st)
{
    sc_will *wl = &st->will;
    uint8_t flags;
    uint16_t tlen;
    uint32_t plen, len;
    if (!get8(r, &flags) || !get32(r, &wl->delay_s) || !get32(r, &wl->expiry_s) || !get16(r, &tlen) ||
        !get_bytes(r, tlen, &wl->topic) || !get32(r, &plen)) {
        return SC_ETRUNCATED;
    }
    if (plen > SC_MAX_WILL_PAYLOAD) {
        return SC_ELIMIT;
    }
    if (!get_bytes(r, plen, &wl->props) || !get32(r, &len)) {
        return SC_ETRUNCATED;
    }
    if (len > SC_MAX_WILL_PAYLOAD) {
        return SC_ELIMIT;
    }
    if (!get_bytes(r, len, &wl->payload)) {
        return SC_ETRUNCATED;
    }
    wl->qos = flags & 3;
    wl->retain = (flags & 4) != 0;
    if ((flags & ~7u) || wl->qos > 2 || !mqtt_topic_name_valid(wl->topic.p, wl->topic.len) || !props_valid(wl->props)) {
        return SC_ECORRUPT;
    }
    st->has_will = true;
    return SC_OK;
}

static bool filter_valid(mqtt_bytes f)
{
    mqtt_bytes group, filter;
    int shared = mqtt_share_parse(f.p, f.len, &group, &filter);
    if (shared < 0) {
        return false;
    }
    return shared ? mqtt_topic_filter_valid(filter.p, filter.len) : mqtt_topic_filter_valid(f.p, f.len);
}

static sc_status decode_sub(rbuf *r, sc_sub *s)
{
    uint16_t flen;
    uint8_t o;
    if (!get16(r, &flen) || !get_bytes(r, flen, &s->filter) || !get8(r, &o) || !get32(r, &s->opts.sub_id)) {
        return SC_ETRUNCATED;
    }
    s->opts.qos = o & 3;
    s->opts.no_local = (o & 4) != 0;
    s->opts.rap = (o & 8) != 0;
    s->opts.retain_handling = (o >> 4) & 3;
    if ((o & 0xC0) || s->opts.qos > 2 || s->opts.retain_handling > 2 || s->opts.sub_id > SUB_ID_MAX || flen == 0 ||
        !filter_valid(s->filter)) {
        return SC_ECORRUPT;
    }
    return SC_OK;
}

static sc_status decode_subs(rbuf *r, sc_state *st)
{
    uint32_t n;
    if (!get32(r, &n)) {
        return SC_ETRUNCATED;
    }
    if (n > SC_MAX_SUBS) {
        return SC_ELIMIT;
    }
    if ((size_t)n * SUB_MIN > r->left) {
        return SC_ETRUNCATED; /* before allocating for a count the bytes cannot hold */
    }
    st->subs = sh_calloc(n ? n : 1, sizeof(sc_sub));
    st->n_subs = n;
    for (uint32_t i = 0; i < n; i++) {
        sc_status rc = decode_sub(r, &st->subs[i]);
        if (rc != SC_OK) {
            return rc;
        }
    }
    return SC_OK;
}

static sc_status decode_qos2(rbuf *r, sc_state *st)
{
    uint32_t n;
    if (!get32(r, &n)) {
        return SC_ETRUNCATED;
    }
    if (n > SC_MAX_QOS2) {
        return SC_ELIMIT;
    }
    if ((size_t)n * 2 > r->left) {
        return SC_ETRUNCATED;
    }
    st->qos2_in = sh_malloc((n ? n : 1) * sizeof(uint16_t));
    st->n_qos2 = n;
    uint8_t *seen = sh_calloc(65536 / 8, 1);
    sc_status rc = SC_OK;
    for (uint32_t i = 0; i < n && rc == SC_OK; i++) {
        uint16_t pid = 0;
        get16(r, &pid); /* the count was checked against the bytes left */
        if (pid == 0 || (seen[pid / 8] & (1u << (pid % 8)))) {
            rc = SC_ECORRUPT; /* packet id 0, or one held twice */
        }
        seen[pid / 8] |= (uint8_t)(1u << (pid % 8));
        st->qos2_in[i] = pid;
    }
    sh_free(seen, 65536 / 8);
    return rc;
}

static sc_status decode_inflight(rbuf *r, sc_state *st)
{
    uint32_t n;
    if (!get32(r, &n)) {
        return SC_ETRUNCATED;
    }
    if (n > SC_MAX_INFLIGHT) {
        return SC_ELIMIT;
    }
    if ((size_t)n * 15 > r->left) {
        return SC_ETRUNCATED;
    }
    st->inflight = sh_calloc(n ? n : 1, sizeof(sc_inflight));
    st->n_inflight = n;
    for (uint32_t i = 0; i < n; i++) {
        sc_inflight *f = &st->inflight[i];
        uint32_t part = 0;
        get16(r, &f->pid); /* the count was checked against the bytes left */
        get8(r, &f->state);
        get32(r, &part);
        get64(r, &f->off);
        f->part = (int32_t)part;
        if (f->pid == 0 || f->state < 1 || f->state > 3 || f->part < -1 || f->off < -1) {
            return SC_ECORRUPT;
        }
    }
    return SC_OK;
}

static sc_status decode_stream(rbuf *r, sc_state *st)
{
    uint32_t n;
    uint8_t rules = 0;
    if (!get32(r, &n)) {
        return SC_ETRUNCATED;
    }
    if (n > SC_MAX_PARTS || n == 0) {
        return n ? SC_ELIMIT : SC_ECORRUPT;
    }
    if ((size_t)n * 8 + 1 > r->left) {
        return SC_ETRUNCATED;
    }
    st->pos = sh_malloc(n * sizeof(int64_t));
    st->n_parts = n;
    for (uint32_t p = 0; p < n; p++) {
        get64(r, &st->pos[p]);
        if (st->pos[p] < -1) {
            return SC_ECORRUPT;
        }
    }
    get8(r, &rules);
    if (rules > SC_MAX_RULES) {
        return SC_ELIMIT;
    }
    if ((size_t)rules * (1 + (size_t)n * 16) > r->left) {
        return SC_ETRUNCATED;
    }
    st->rules = sh_calloc(rules ? rules : 1, sizeof(sc_rule));
    st->n_rules = rules;
    for (uint32_t i = 0; i < rules; i++) {
        sc_rule *rl = &st->rules[i];
        uint8_t len;
        if (!get8(r, &len) || !get_bytes(r, len, &rl->node)) {
            return SC_ETRUNCATED;
        }
        if (memchr(rl->node.p, 0, len)) {
            return SC_ECORRUPT; /* node ids are C strings to the stream (session_stream.c) */
        }
        if (r->left < (size_t)n * 16) {
            return SC_ETRUNCATED;
        }
        rl->hi_own = sh_malloc(n * sizeof(int64_t));
        rl->hi_other = sh_malloc(n * sizeof(int64_t));
        for (uint32_t p = 0; p < n; p++) {
            get64(r, &rl->hi_own[p]);
            get64(r, &rl->hi_other[p]);
        }
    }
    return SC_OK;
}

static sc_status decode_section(uint8_t type, rbuf *body, sc_state *st, unsigned *seen)
{
    if (type < 32) {
        if (*seen & (1u << type)) {
            return SC_ECORRUPT; /* a section twice */
        }
        *seen |= 1u << type;
    }
    switch (type) {
    case SC_SEC_WILL:
        return decode_will(body, st);
    case SC_SEC_SUBS:
        return decode_subs(body, st);
    case SC_SEC_QOS2_IN:
        return decode_qos2(body, st);
    case SC_SEC_INFLIGHT:
        return decode_inflight(body, st);
    case SC_SEC_STREAM:
        return decode_stream(body, st);
    default:
        body->left = 0; /* a later addition this node may ignore */
        return SC_OK;
    }
}

static sc_status decode_all(rbuf *r, sc_state *st)
{
    uint8_t m1, m2, version;
    if (!get8(r, &m1) || !get8(r, &m2)) {
        return SC_ETRUNCATED;
    }
    if (m1 != 'S' || m2 != 'S') {
        return SC_ECORRUPT;
    }
    if (!get8(r, &version)) {
        return SC_ETRUNCATED;
    }
    if (version > SC_VERSION) {
        return SC_ENEWER;
    }
    if (version == 0) {
        return SC_ECORRUPT;
    }
    if (!get8(r, &st->proto_version) || !get32(r, &st->expiry_s)) {
        return SC_ETRUNCATED;
    }
    if (st->proto_version < 3 || st->proto_version > 5) {
        return SC_ECORRUPT;
    }
    unsigned seen = 0;
    while (r->left) {
        uint8_t type;
        uint32_t len;
        if (!get8(r, &type) || !get32(r, &len)) {
            return SC_ETRUNCATED;
        }
        if (len > r->left) {
            return SC_ETRUNCATED;
        }
        if (type == SC_SEC_END) {
            return len == 0 && r->left == 0 ? SC_OK : SC_ECORRUPT;
        }
        rbuf body = {r->p, len};
        r->p += len;
        r->left -= len;
        sc_status rc = decode_section(type, &body, st, &seen);
        if (rc != SC_OK) {
            return rc;
        }
        if (body.left) {
            return SC_ECORRUPT; /* bytes left over inside a section */
        }
    }
    return SC_ETRUNCATED; /* no end section */
}

sc_status sc_decode(const uint8_t *blob, size_t len, sc_state *st)
{
    memset(st, 0, sizeof(*st));
    if (!blob) {
        return SC_ETRUNCATED;
    }
    rbuf r = {blob, len};
    sc_status rc = decode_all(&r, st);
    if (rc != SC_OK) {
        sc_state_free(st);
    }
    return rc;
}

void sc_state_free(sc_state *st)
{
    if (st->subs) {
        sh_free(st->subs, (st->n_subs ? st->n_subs : 1) * sizeof(sc_sub));
    }
    if (st->qos2_in) {
        sh_free(st->qos2_in, (st->n_qos2 ? st->n_qos2 : 1) * sizeof(uint16_t));
    }
    if (st->inflight) {
        sh_free(st->inflight, (st->n_inflight ? st->n_inflight : 1) * sizeof(sc_inflight));
    }
    if (st->rules) {
        for (uint32_t i = 0; i < st->n_rules; i++) {
            if (st->rules[i].hi_own) {
                sh_free(st->rules[i].hi_own, st->n_parts * sizeof(int64_t));
                sh_free(st->rules[i].hi_other, st->n_parts * sizeof(int64_t));
            }
        }
        sh_free(st->rules, (st->n_rules ? st->n_rules : 1) * sizeof(sc_rule));
    }
    if (st->pos) {
        sh_free(st->pos, st->n_parts * sizeof(int64_t));
    }
    memset(st, 0, sizeof(*st));
}
