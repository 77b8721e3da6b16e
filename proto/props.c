/* SPDX-License-Identifier: Apache-2.0 */
/* MQTT 5 properties (§2.2.2): one const table indexed by identifier, one
 * reader loop switching on the wire type, one writer. Adding a property
 * means adding one table row (unlike mosquitto's six parallel switches). */
#include <stddef.h>
#include <string.h>

#include "proto/codec_impl.h"
#include "proto/props.h"

/* Contexts are packet types, plus bit 0 for the will properties. */
#define C(t) (1u << (t))
#define WILL C(MQTT_PROPS_WILL)
#define ACKS (C(MQTT_PUBACK) | C(MQTT_PUBREC) | C(MQTT_PUBREL) | C(MQTT_PUBCOMP))
#define PACKETS 0xFFFEu /* packet types 1..15 */
#define USER_CTX ((PACKETS & ~C(MQTT_PINGREQ) & ~C(MQTT_PINGRESP)) | WILL)

typedef struct prop_def {
    uint8_t wire;    /* enum mqtt_prop_wire; NONE = unknown identifier */
    uint8_t bad_rc;  /* answer for an out-of-range integer */
    uint16_t ctx;    /* contexts where the property may appear */
    uint16_t repeat; /* contexts where it may appear more than once */
    uint16_t off;    /* its field in mqtt_props (first value only) */
    uint32_t lo, hi; /* allowed integer range */
    const char *name;
} prop_def;

#define ANY 0, UINT32_MAX
#define BOOL 0, 1
/* P(wire, contexts, field, lo, hi, name); the indirection lets ANY and BOOL
 * expand into their two range arguments first. */
#define P(...) P_(__VA_ARGS__)
#define P_(w, c, field, lo, hi, nm)                                                \
    {                                                                              \
        w, MQTT_RC_PROTOCOL_ERROR, (c), 0, offsetof(mqtt_props, field), lo, hi, nm \
    }

/* §2.2.2.2 table 2-4: wire types and the packets allowed to carry each.
 * Range rules cite the section that makes a value a Protocol Error. */
static const prop_def defs[MQTT_PROP_SHARED_AVAILABLE + 1] = {
    /* §3.3.2.3.2: 0 or 1 */
    [MQTT_PROP_PAYLOAD_FORMAT] = P(MQTT_WIRE_BYTE, C(MQTT_PUBLISH) | WILL, payload_format, BOOL,
                                   "payload-format-indicator"),
    [MQTT_PROP_MESSAGE_EXPIRY] = P(MQTT_WIRE_U32, C(MQTT_PUBLISH) | WILL, message_expiry, ANY,
                                   "message-expiry-interval"),
    [MQTT_PROP_CONTENT_TYPE] = P(MQTT_WIRE_STRING, C(MQTT_PUBLISH) | WILL, content_type, ANY, "content-type"),
    [MQTT_PROP_RESPONSE_TOPIC] = P(MQTT_WIRE_STRING, C(MQTT_PUBLISH) | WILL, response_topic, ANY, "response-topic"),
    [MQTT_PROP_CORRELATION_DATA] = P(MQTT_WIRE_BINARY, C(MQTT_PUBLISH) | WILL, correlation_data, ANY,
                                     "correlation-data"),
    /* §3.8.2.1.2: 0 is a Protocol Error. It may repeat in PUBLISH
     * (§3.3.2.3.8, one per matching subscription) but not in SUBSCRIBE. */
    [MQTT_PROP_SUBSCRIPTION_ID] = {MQTT_WIRE_VARINT, MQTT_RC_PROTOCOL_ERROR, C(MQTT_PUBLISH) | C(MQTT_SUBSCRIBE),
                                   C(MQTT_PUBLISH), offsetof(mqtt_props, sub_id), 1, MQTT_MAX_REMAINING,
                                   "subscription-identifier"},
    [MQTT_PROP_SESSION_EXPIRY] = P(MQTT_WIRE_U32, C(MQTT_CONNECT) | C(MQTT_CONNACK) | C(MQTT_DISCONNECT),
                                   session_expiry, ANY, "session-expiry-interval"),
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = P(MQTT_WIRE_STRING, C(MQTT_CONNACK), assigned_client_id, ANY,
                                       "assigned-client-identifier"),
    [MQTT_PROP_SERVER_KEEP_ALIVE] = P(MQTT_WIRE_U16, C(MQTT_CONNACK), server_keep_alive, ANY, "server-keep-alive"),
    [MQTT_PROP_AUTH_METHOD] = P(MQTT_WIRE_STRING, C(MQTT_CONNECT) | C(MQTT_CONNACK) | C(MQTT_AUTH), auth_method, ANY,
                                "authentication-method"),
    [MQTT_PROP_AUTH_DATA] = P(MQTT_WIRE_BINARY, C(MQTT_CONNECT) | C(MQTT_CONNACK) | C(MQTT_AUTH), auth_data, ANY,
                              "authentication-data"),
    /* §3.1.2.11.7: 0 or 1 */
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = P(MQTT_WIRE_BYTE, C(MQTT_CONNECT), request_problem_info, BOOL,
                                         "request-problem-information"),
    [MQTT_PROP_WILL_DELAY] = P(MQTT_WIRE_U32, WILL, will_delay, ANY, "will-delay-interval"),
    /* §3.1.2.11.6: 0 or 1 */
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = P(MQTT_WIRE_BYTE, C(MQTT_CONNECT), request_response_info, BOOL,
                                          "request-response-information"),
    [MQTT_PROP_RESPONSE_INFO] = P(MQTT_WIRE_STRING, C(MQTT_CONNACK), response_info, ANY, "response-information"),
    [MQTT_PROP_SERVER_REFERENCE] = P(MQTT_WIRE_STRING, C(MQTT_CONNACK) | C(MQTT_DISCONNECT), server_reference, ANY,
                                     "server-reference"),
    [MQTT_PROP_REASON_STRING] = P(MQTT_WIRE_STRING,
                                  C(MQTT_CONNACK) | ACKS | C(MQTT_SUBACK) | C(MQTT_UNSUBACK) | C(MQTT_DISCONNECT) |
                                      C(MQTT_AUTH),
                                  reason_string, ANY, "reason-string"),
    /* §3.1.2.11.3: 0 is a Protocol Error */
    [MQTT_PROP_RECEIVE_MAX] = P(MQTT_WIRE_U16, C(MQTT_CONNECT) | C(MQTT_CONNACK), receive_max, 1, UINT16_MAX,
                                "receive-maximum"),
    [MQTT_PROP_TOPIC_ALIAS_MAX] = P(MQTT_WIRE_U16, C(MQTT_CONNECT) | C(MQTT_CONNACK), topic_alias_max, ANY,
                                    "topic-alias-maximum"),
    /* §3.3.2.3.4: Topic Alias 0 is not permitted, so 0x94 */
    [MQTT_PROP_TOPIC_ALIAS] = {MQTT_WIRE_U16, MQTT_RC_TOPIC_ALIAS_INVALID, C(MQTT_PUBLISH), 0,
                               offsetof(mqtt_props, topic_alias), 1, UINT16_MAX, "topic-alias"},
    /* §3.2.2.3.4: 0 or 1 */
    [MQTT_PROP_MAX_QOS] = P(MQTT_WIRE_BYTE, C(MQTT_CONNACK), max_qos, BOOL, "maximum-qos"),
    /* §3.2.2.3.5 */
    [MQTT_PROP_RETAIN_AVAILABLE] = P(MQTT_WIRE_BYTE, C(MQTT_CONNACK), retain_available, BOOL, "retain-available"),
    /* §3.1.2.11.8: repeatable everywhere it is allowed. */
    [MQTT_PROP_USER] = {MQTT_WIRE_PAIR, MQTT_RC_PROTOCOL_ERROR, USER_CTX, USER_CTX, 0, ANY, "user-property"},
    /* §3.1.2.11.4: 0 is a Protocol Error */
    [MQTT_PROP_MAX_PACKET_SIZE] = P(MQTT_WIRE_U32, C(MQTT_CONNECT) | C(MQTT_CONNACK), max_packet_size, 1, UINT32_MAX,
                                    "maximum-packet-size"),
    /* §3.2.2.3.11..13: 0 or 1 */
    [MQTT_PROP_WILDCARD_AVAILABLE] = P(MQTT_WIRE_BYTE, C(MQTT_CONNACK), wildcard_available, BOOL,
                                       "wildcard-subscription-available"),
    [MQTT_PROP_SUB_ID_AVAILABLE] = P(MQTT_WIRE_BYTE, C(MQTT_CONNACK), sub_id_available, BOOL,
                                     "subscription-identifier-available"),
    [MQTT_PROP_SHARED_AVAILABLE] = P(MQTT_WIRE_BYTE, C(MQTT_CONNACK), shared_available, BOOL,
                                     "shared-subscription-available"),
};

#define N_DEFS (sizeof(defs) / sizeof(defs[0]))

static const prop_def *def_of(uint32_t id)
{
    return id < N_DEFS && defs[id].wire != MQTT_WIRE_NONE ? &defs[id] : NULL;
}

enum mqtt_prop_wire mqtt_prop_wire_type(uint8_t id)
{
    const prop_def *d = def_of(id);
    return d != NULL ? (enum mqtt_prop_wire)d->wire : MQTT_WIRE_NONE;
}

bool mqtt_prop_allowed(uint8_t id, uint8_t ctx)
{
    const prop_def *d = def_of(id);
    return d != NULL && ctx < 16 && (d->ctx & C(ctx)) != 0;
}

const char *mqtt_prop_name(uint8_t id)
{
    const prop_def *d = def_of(id);
    return d != NULL ? d->name : "unknown";
}

/* One value of wire type `wire` (§1.5). Strings must be valid UTF-8
 * (§1.5.4, malformed otherwise). */
static bool read_value(mqtt_bytes *c, uint8_t wire, mqtt_prop *pr)
{
    uint8_t u8;
    uint16_t u16;
    switch (wire) {
    case MQTT_WIRE_BYTE:
        if (!rd_u8(c, &u8)) {
            return false;
        }
        pr->u = u8;
        return true;
    case MQTT_WIRE_U16:
        if (!rd_u16(c, &u16)) {
            return false;
        }
        pr->u = u16;
        return true;
    case MQTT_WIRE_U32:
        return rd_u32(c, &pr->u);
    case MQTT_WIRE_VARINT:
        return rd_varint(c, &pr->u);
    case MQTT_WIRE_STRING:
        return rd_str(c, &pr->a);
    case MQTT_WIRE_BINARY:
        return rd_bin(c, &pr->a);
    case MQTT_WIRE_PAIR:
        return rd_str(c, &pr->a) && rd_str(c, &pr->b);
    default:
        return false;
    }
}

/* One property: identifier then value. Every defined identifier is below
 * 128, so its Variable Byte Integer is one byte; anything else is unknown
 * and therefore malformed (§2.2.2.2). */
static bool read_one(mqtt_bytes *c, mqtt_prop *pr)
{
    memset(pr, 0, sizeof(*pr));
    uint8_t id;
    if (!rd_u8(c, &id) || def_of(id) == NULL) {
        return false;
    }
    pr->id = id;
    return read_value(c, defs[id].wire, pr);
}

/* Copy the first value of a property into its field. */
static void store_value(const prop_def *d, const mqtt_prop *pr, mqtt_props *out)
{
    uint8_t *field = (uint8_t *)out + d->off;
    uint8_t u8 = (uint8_t)pr->u;
    uint16_t u16 = (uint16_t)pr->u;
    switch (d->wire) {
    case MQTT_WIRE_BYTE:
        memcpy(field, &u8, sizeof(u8));
        break;
    case MQTT_WIRE_U16:
        memcpy(field, &u16, sizeof(u16));
        break;
    case MQTT_WIRE_U32:
    case MQTT_WIRE_VARINT:
        memcpy(field, &pr->u, sizeof(pr->u));
        break;
    case MQTT_WIRE_STRING:
    case MQTT_WIRE_BINARY:
        memcpy(field, &pr->a, sizeof(pr->a));
        break;
    default:
        break; /* User Property pairs are walked with the iterator. */
    }
}

static bool is_integer(uint8_t wire)
{
    return wire >= MQTT_WIRE_BYTE && wire <= MQTT_WIRE_VARINT;
}

static void count_up(uint16_t *n)
{
    /* Informational counts; the iterator stays exact past 65535. */
    if (*n < UINT16_MAX) {
        (*n)++;
    }
}

/* Context, duplicate and range checks for one property, then store it. */
static mqtt_rc accept_one(const mqtt_prop *pr, uint16_t ctx_bit, uint64_t *seen, mqtt_props *out)
{
    const prop_def *d = &defs[pr->id];
    uint64_t bit = MQTT_PROP_BIT(pr->id);
    if ((d->ctx & ctx_bit) == 0) {
        /* §2.2.2.2: "A Control Packet which contains an Identifier which is
         * not valid for its packet type ... is a Malformed Packet." */
        return MQTT_RC_MALFORMED;
    }
    if ((*seen & bit) != 0 && (d->repeat & ctx_bit) == 0) {
        return MQTT_RC_PROTOCOL_ERROR; /* §2.2.2.2: "more than once" */
    }
    if (is_integer(d->wire) && (pr->u < d->lo || pr->u > d->hi)) {
        return (mqtt_rc)d->bad_rc;
    }
    if ((*seen & bit) == 0 && d->wire != MQTT_WIRE_PAIR) {
        store_value(d, pr, out);
    }
    *seen |= bit;
    if (pr->id == MQTT_PROP_USER) {
        count_up(&out->n_user);
    } else if (pr->id == MQTT_PROP_SUBSCRIPTION_ID) {
        count_up(&out->n_sub_ids);
    }
    return MQTT_RC_SUCCESS;
}

mqtt_rc mqtt_props_read(mqtt_bytes in, uint8_t ctx, mqtt_props *out, uint32_t *used)
{
    memset(out, 0, sizeof(*out));
    *used = 0;
    uint32_t plen;
    int n = mqtt_varint_read(in.p, in.len, &plen);
    /* §2.2.2.1: the block must fit in what is left of the packet. */
    if (n <= 0 || plen > in.len - (uint32_t)n || ctx >= 16) {
        return MQTT_RC_MALFORMED;
    }
    mqtt_bytes c = cur_make(in.p + n, plen);
    uint64_t seen = 0;
    while (c.len > 0) {
        mqtt_prop pr;
        if (!read_one(&c, &pr)) {
            return MQTT_RC_MALFORMED;
        }
        mqtt_rc rc = accept_one(&pr, (uint16_t)C(ctx), &seen, out);
        if (rc != MQTT_RC_SUCCESS) {
            return rc;
        }
    }
    out->present = seen;
    out->raw = cur_make(in.p, (uint32_t)n + plen);
    *used = (uint32_t)n + plen;
    return MQTT_RC_SUCCESS;
}

mqtt_rc mqtt__read_props(mqtt_bytes *c, uint8_t version, uint8_t ctx, mqtt_props *out)
{
    if (!is_v5(version)) {
        memset(out, 0, sizeof(*out));
        return MQTT_RC_SUCCESS;
    }
    uint32_t used;
    mqtt_rc rc = mqtt_props_read(*c, ctx, out, &used);
    if (rc == MQTT_RC_SUCCESS) {
        cur_skip(c, used);
    }
    return rc;
}

void mqtt_prop_iter_init(mqtt_prop_iter *it, const mqtt_props *props)
{
    it->rest = cur_make(NULL, 0);
    if (props == NULL || props->raw.len == 0) {
        return;
    }
    uint32_t plen;
    int n = mqtt_varint_read(props->raw.p, props->raw.len, &plen);
    if (n > 0 && plen <= props->raw.len - (uint32_t)n) {
        it->rest = cur_make(props->raw.p + n, plen);
    }
}

bool mqtt_prop_next(mqtt_prop_iter *it, mqtt_prop *out)
{
    if (it->rest.len == 0) {
        return false;
    }
    if (!read_one(&it->rest, out)) {
        /* Only reachable with a block that was not validated. */
        it->rest.len = 0;
        return false;
    }
    return true;
}

uint32_t mqtt_user_prop_size(mqtt_bytes name, mqtt_bytes value)
{
    return 1u + 2u + name.len + 2u + value.len;
}

uint32_t mqtt_encode_user_prop(mqtt_bytes name, mqtt_bytes value, uint8_t *dst)
{
    uint8_t *d = wr_u8(dst, MQTT_PROP_USER);
    d = wr_bin(d, name);
    d = wr_bin(d, value);
    return (uint32_t)(d - dst);
}

uint32_t mqtt_props_user_size(const mqtt_props *props)
{
    mqtt_prop_iter it;
    mqtt_prop pr;
    uint32_t n = 0;
    mqtt_prop_iter_init(&it, props);
    while (mqtt_prop_next(&it, &pr)) {
        if (pr.id == MQTT_PROP_USER) {
            n += mqtt_user_prop_size(pr.a, pr.b);
        }
    }
    return n;
}

uint32_t mqtt_props_copy_user(const mqtt_props *props, uint8_t *dst)
{
    mqtt_prop_iter it;
    mqtt_prop pr;
    uint32_t n = 0;
    mqtt_prop_iter_init(&it, props);
    while (mqtt_prop_next(&it, &pr)) {
        if (pr.id == MQTT_PROP_USER) {
            n += mqtt_encode_user_prop(pr.a, pr.b, dst + n);
        }
    }
    return n;
}

/* Single-valued properties are written by the generic loop; the two
 * repeatable ones have their own encode-side fields. */
static bool single_valued(uint32_t id, uint64_t present)
{
    return (present & MQTT_PROP_BIT(id)) != 0 && def_of(id) != NULL && id != MQTT_PROP_USER &&
           id != MQTT_PROP_SUBSCRIPTION_ID;
}

static uint32_t load_u(const prop_def *d, const mqtt_props *pr)
{
    const uint8_t *field = (const uint8_t *)pr + d->off;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    if (d->wire == MQTT_WIRE_BYTE) {
        memcpy(&u8, field, sizeof(u8));
        return u8;
    }
    if (d->wire == MQTT_WIRE_U16) {
        memcpy(&u16, field, sizeof(u16));
        return u16;
    }
    memcpy(&u32, field, sizeof(u32));
    return u32;
}

static mqtt_bytes load_bytes(const prop_def *d, const mqtt_props *pr)
{
    mqtt_bytes b;
    memcpy(&b, (const uint8_t *)pr + d->off, sizeof(b));
    return b;
}

static uint32_t value_size(const prop_def *d, const mqtt_props *pr)
{
    switch (d->wire) {
    case MQTT_WIRE_BYTE:
        return 1;
    case MQTT_WIRE_U16:
        return 2;
    case MQTT_WIRE_U32:
        return 4;
    case MQTT_WIRE_VARINT:
        return mqtt_varint_size(load_u(d, pr));
    default:
        return 2u + load_bytes(d, pr).len;
    }
}

static uint8_t *write_value(uint8_t *dst, const prop_def *d, const mqtt_props *pr)
{
    switch (d->wire) {
    case MQTT_WIRE_BYTE:
        return wr_u8(dst, (uint8_t)load_u(d, pr));
    case MQTT_WIRE_U16:
        return wr_u16(dst, (uint16_t)load_u(d, pr));
    case MQTT_WIRE_U32:
        return wr_u32(dst, load_u(d, pr));
    case MQTT_WIRE_VARINT:
        return wr_varint(dst, load_u(d, pr));
    default:
        return wr_bin(dst, load_bytes(d, pr));
    }
}

/* Subscription Identifiers to write: the sub_ids array when given, else
 * the single decoded-style sub_id when its bit is set. */
static uint32_t sub_id_count(const mqtt_props *pr)
{
    if (pr->sub_ids != NULL) {
        return pr->n_sub_ids;
    }
    return mqtt_props_has(pr, MQTT_PROP_SUBSCRIPTION_ID) ? 1 : 0;
}

static uint32_t sub_id_at(const mqtt_props *pr, uint32_t i)
{
    return pr->sub_ids != NULL ? pr->sub_ids[i] : pr->sub_id;
}

uint32_t mqtt_props_body_size(const mqtt_props *props)
{
    if (props == NULL) {
        return 0;
    }
    uint32_t n = 0;
    /* Only the bits set: most messages carry none (3.1.1 ones never). */
    for (uint64_t bits = props->present; bits != 0; bits &= bits - 1) {
        uint32_t id = (uint32_t)__builtin_ctzll(bits);
        if (single_valued(id, props->present)) {
            n += 1u + value_size(&defs[id], props);
        }
    }
    uint32_t k = sub_id_count(props);
    for (uint32_t i = 0; i < k; i++) {
        n += 1u + mqtt_varint_size(sub_id_at(props, i));
    }
    return n + props->user.len;
}

uint32_t mqtt_props_block_size(const mqtt_props *props)
{
    uint32_t body = mqtt_props_body_size(props);
    return mqtt_varint_size(body) + body;
}

uint32_t mqtt_props_write(const mqtt_props *props, uint8_t *dst)
{
    uint8_t *d = wr_varint(dst, mqtt_props_body_size(props));
    if (props == NULL) {
        return (uint32_t)(d - dst);
    }
    for (uint64_t bits = props->present; bits != 0; bits &= bits - 1) { /* ascending ids, as before */
        uint32_t id = (uint32_t)__builtin_ctzll(bits);
        if (single_valued(id, props->present)) {
            d = wr_u8(d, (uint8_t)id);
            d = write_value(d, &defs[id], props);
        }
    }
    uint32_t k = sub_id_count(props);
    for (uint32_t i = 0; i < k; i++) {
        d = wr_u8(d, MQTT_PROP_SUBSCRIPTION_ID);
        d = wr_varint(d, sub_id_at(props, i));
    }
    d = wr_raw(d, props->user);
    return (uint32_t)(d - dst);
}

uint8_t *mqtt__write_props(uint8_t *d, const mqtt_props *pr, uint8_t version)
{
    if (!is_v5(version)) {
        return d;
    }
    return d + mqtt_props_write(pr, d);
}
