/* SPDX-License-Identifier: Apache-2.0 */
/* A session's durable state as one blob (node/mqtt/session_codec.c): what the
 * cluster's session record holds (cluster/backplane.h, "Session records";
 * docs/architecture.md, "Session state blob"). Pure functions: no broker,
 * no session, no I/O, so the format can be tested byte by byte.
 *
 * The blob comes back from Redis, written by any node of any release, so
 * the decoder treats it as untrusted: every length is checked against what
 * is left and against the limits below, every topic and property block is
 * validated, and a blob it does not understand is refused as a whole
 * (SC_ENEWER, SC_ECORRUPT), never half applied. */
#ifndef SHOAL_NODE_SESSION_CODEC_H
#define SHOAL_NODE_SESSION_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/mqtt/trie.h"
#include "proto/packet.h"

/* The version this node writes and reads. A newer one is refused: its
 * writer may rely on fields this node would drop (Step 2 adds sections for
 * outgoing in-flight references and Kafka positions; an addition a reader
 * may ignore is a new section type, not a new version). */
#define SC_VERSION 1

/* Bounds of one blob, whatever the configuration: a bad blob costs at most
 * this much to look at. A session holds at most SC_MAX_SUBS
 * subscriptions whatever --max-subscriptions says (SESSION_MAX_SUBS,
 * node/mqtt/limits.c), so the encoder never has to refuse one for that. */
#define SC_MAX_SUBS 65535u
#define SC_MAX_FILTER 65535u                       /* a filter, $share/<group>/ included (MQTT string) */
#define SC_MAX_QOS2 65535u                         /* one per packet id */
#define SC_MAX_WILL_PAYLOAD (256u * 1024u * 1024u) /* MQTT's own limit on a packet */

/* Section types. Unknown types are skipped (room for later additions);
 * a known one may appear once. */
enum {
    SC_SEC_END = 0, /* the last section, empty */
    SC_SEC_WILL = 1,
    SC_SEC_SUBS = 2,
    SC_SEC_QOS2_IN = 3,
    SC_SEC_INFLIGHT = 4, /* outgoing QoS 1/2: packet id -> stream reference and state */
    SC_SEC_STREAM = 5,   /* positions per partition and the marks of what was sent */
};

#define SC_MAX_INFLIGHT 65535u
#define SC_MAX_PARTS 65535u
#define SC_MAX_RULES 8u
#define SC_MAX_NODE_ID 255u

typedef enum sc_status {
    SC_OK = 0,
    SC_ETRUNCATED = -1, /* ends inside a field */
    SC_ECORRUPT = -2,   /* a value out of range, bad magic, a duplicate, trailing bytes */
    SC_ENEWER = -3,     /* a version this node does not know */
    SC_ELIMIT = -4,     /* over one of the SC_MAX_* bounds */
} sc_status;

const char *sc_status_name(sc_status st);

typedef struct sc_sub {
    mqtt_bytes filter; /* as subscribed, "$share/g/f" included */
    sub_opts opts;     /* qos, no_local, rap, retain_handling, sub_id */
} sc_sub;

typedef struct sc_will {
    mqtt_bytes topic;
    mqtt_bytes payload;
    mqtt_bytes props;  /* pre-encoded forwarded PUBLISH properties, no length prefix */
    uint32_t delay_s;  /* Will Delay Interval */
    uint32_t expiry_s; /* Message Expiry Interval left, 0 = none */
    uint8_t qos;
    bool retain;
} sc_will;

/* An outgoing QoS 1/2 message by reference (node/mqtt/session_stream.c). */
typedef struct sc_inflight {
    uint16_t pid;
    uint8_t state; /* 1 PUBLISH sent, 2 PUBLISH sent (QoS 2), 3 PUBREC received */
    int32_t part;  /* -1: no reference */
    int64_t off;
} sc_inflight;

/* What one node sent the session (docs/architecture.md, "Offline queues
 * and positions"): per partition, every record of that node's own stream
 * below hi_own and of the other nodes' below hi_other went out. */
typedef struct sc_rule {
    mqtt_bytes node;
    int64_t *hi_own; /* n_parts each; decode: allocated */
    int64_t *hi_other;
} sc_rule;

/* The state; on decode every mqtt_bytes points into the blob (borrowed). */
typedef struct sc_state {
    uint8_t proto_version; /* MQTT protocol level: 3, 4, 5 */
    uint32_t expiry_s;     /* Session Expiry Interval; UINT32_MAX = never */
    bool has_will;
    sc_will will;
    uint32_t n_subs;
    sc_sub *subs; /* decode: allocated (sc_state_free) */
    uint32_t n_qos2;
    uint16_t *qos2_in; /* durable inbound QoS 2 ids; decode: allocated */
    uint32_t n_inflight;
    sc_inflight *inflight; /* decode: allocated */
    uint32_t n_parts;      /* 0: no stream section */
    int64_t *pos;          /* where a replay starts, per partition (-1 none); decode: allocated */
    uint32_t n_rules;
    sc_rule *rules; /* decode: allocated */
} sc_state;

/* Encode st into a new buffer (*out, *len; sh_free(*out, *len)). SC_ELIMIT
 * when st is over a bound, SC_ECORRUPT when a value is out of range. */
sc_status sc_encode(const sc_state *st, uint8_t **out, uint32_t *len);

/* Decode blob into st (pointers borrowed from blob; free with
 * sc_state_free). On failure st holds nothing to free. */
sc_status sc_decode(const uint8_t *blob, size_t len, sc_state *st);
void sc_state_free(sc_state *st);

#endif
