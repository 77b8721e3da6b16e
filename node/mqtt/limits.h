/* SPDX-License-Identifier: Apache-2.0 */
/* Limits that protect the node: the reasons a client is refused or a
 * message is dropped (each counted per worker and exported as metrics), a
 * token bucket for per-client publish rates, and topic size checks. */
#ifndef SHOAL_NODE_LIMITS_H
#define SHOAL_NODE_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/packet.h"

/* Client-facing refusals, shoal_limit_refusals_total{limit}. Each is logged
 * once per connection (a bit in conn.limits_logged), counted every time. */
typedef enum limit_kind {
    LIMIT_CONNECTIONS = 0, /* --max-connections: accept closed at once */
    LIMIT_CONNECT_TIMEOUT, /* --connect-timeout: no CONNECT in time */
    LIMIT_PACKET_SIZE,     /* --max-packet-size: 0x95 and close */
    LIMIT_PUBLISH_RATE,    /* --max-publish-rate: reading paused */
    LIMIT_PUBLISH_BYTES,   /* --max-publish-bytes-rate: reading paused */
    LIMIT_SUBSCRIPTIONS,   /* --max-subscriptions: SUBACK 0x97 / 0x80 */
    LIMIT_TOPIC_LEVELS,    /* --max-topic-levels: 0x90 / 0x8F */
    LIMIT_TOPIC_LENGTH,    /* --max-topic-length: 0x90 / 0x8F */
    LIMIT_RECEIVE_MAX,     /* --receive-maximum exceeded by the client: 0x93 */
    LIMIT_BACKPRESSURE,    /* --publisher-backpressure: a subscriber is behind, reading paused */
    LIMIT_OUTPUT_BUFFER,   /* --max-output-buffer: replies the client does not read, reading paused */
    LIMIT_SESSIONS,        /* --max-sessions: a new session refused, CONNACK 0x97 / 3 */
    LIMIT_RETAINED,        /* --max-retained: a new retained topic not stored (v5 QoS 1/2: 0x97) */
    LIMIT_SHARED_GROUPS,   /* --max-shared-groups: a new shared group, SUBACK 0x97 / 0x80 */
    LIMIT_COUNT
} limit_kind;

/* Why a message did not reach a subscriber, shoal_messages_dropped_total{reason}. */
typedef enum drop_reason {
    DROP_QUEUE_FULL = 0, /* --max-queued reached, no QoS 0 to evict: the new message */
    DROP_QOS0_EVICTED,   /* --max-queued reached: the oldest queued QoS 0 made room */
    DROP_OUTPUT_FULL,    /* QoS 0 to an online client whose output buffer is full */
    DROP_OFFLINE_QOS0,   /* QoS 0 to an offline session with --queue-qos0 false */
    DROP_EXPIRED,        /* Message Expiry passed before it could be sent */
    DROP_TOO_LARGE,      /* larger than the client's Maximum Packet Size */
    DROP_ACL_DENIED,     /* a publish the ACL refused */
    DROP_SESSION_ENDED,  /* queued or in flight when the session ended or started clean */
    DROP_INBOX_FULL,     /* QoS 0 for a worker whose inbox holds --max-inbox items */
    DROP_BACKBONE,       /* QoS 0 not passed to other nodes: Kafka down or its producer queue full */
    DROP_COUNT
} drop_reason;

/* Names as exported in metrics and logs, e.g. "publish-rate", "queue-full". */
const char *limit_name(limit_kind l);
const char *drop_reason_name(drop_reason r);

/* A token bucket in thousandths of a token, so integer rates stay exact.
 * It may go into debt: one packet larger than a second's worth still
 * passes, and the debt then delays the next one (no packet is ever stuck). */
typedef struct token_bucket {
    int64_t milli;    /* tokens x 1000; <= 0: empty */
    uint64_t last_ms; /* when it was last refilled */
} token_bucket;

/* Start full: a second's worth of tokens. */
void tb_init(token_bucket *tb, uint32_t rate, uint64_t now_ms);
/* Add what accrued since the last refill, up to one second's worth. */
void tb_refill(token_bucket *tb, uint32_t rate, uint64_t now_ms);
/* True if the bucket has anything left (a packet may go). */
bool tb_ready(const token_bucket *tb);
/* Take n tokens (may go into debt). */
void tb_take(token_bucket *tb, uint64_t n);
/* Milliseconds until tb_ready() holds again at `rate` tokens/s (0 if now). */
uint64_t tb_wait_ms(const token_bucket *tb, uint32_t rate);

/* Topic levels: one more than the number of '/'. */
uint32_t limits_topic_levels(const uint8_t *topic, size_t len);

typedef struct config config;
typedef struct conn conn;
typedef struct worker worker;
typedef struct session session;

/* The longest shared group key, "<group>/<filter>", a subscription may
 * name: the key goes into every membership refresh's Redis script (and
 * log lines) for as long as the group lives, so its bytes are bounded as
 * the number of groups is (--max-shared-groups): 1,000 keys of 60 KB made
 * each refresh carry 60 MB. A longer one gets SUBACK 0x8F (3.1.1: 0x80). */
#define SHARE_KEY_MAX 1024u
/* Subscriptions a session may hold: --max-subscriptions, at most
 * SESSION_MAX_SUBS (also when the option is 0, "no limit"). */
uint32_t limits_max_subscriptions(const config *cfg);
/* Count a refusal; log it once per connection and limit. */
void limits_refused(conn *c, limit_kind l, const char *detail);
/* Count n dropped messages; log once per session (may be NULL) and reason. */
void limits_count_drop(worker *w, session *s, drop_reason r, uint64_t n);
/* Release a connection's publish-rate state. */
void limits_conn_free(conn *c);
/* May a PUBLISH of `bytes` be handled now? If the client is over its rate,
 * reading is paused until the bucket refills and false is returned: the
 * packet stays in the input buffer. */
bool limits_publish_admit(conn *c, size_t bytes);
/* After routing one of c's messages: if it went to a subscriber that is
 * behind, stop reading c for a while (TCP then slows the client) instead of
 * queueing without end; the pause grows while the backlog lasts. */
void limits_backpressure(conn *c, bool behind);
/* LIMIT_TOPIC_LENGTH or LIMIT_TOPIC_LEVELS if the topic (or filter) is over
 * --max-topic-length / --max-topic-levels, else LIMIT_COUNT. */
limit_kind limits_topic_check(const config *cfg, const uint8_t *topic, size_t len);
/* --max-sessions left no room for c's new session: CONNACK 0x97 (3.1.1:
 * 3), counted, and close. */
void limits_refuse_session_or_close(conn *c);
/* May p's retained message be stored (--max-retained)? A v5 QoS 1/2
 * publisher is refused with PUBACK/PUBREC 0x97 (false: drop the message);
 * anyone else cannot be told, so the message goes on without its retain
 * flag (true). */
bool limits_retain_admit(conn *c, mqtt_publish *p);
/* Once a second on one worker: free retained messages that have expired. */
void limits_tick(worker *w, uint64_t now);

/* The options behind the limits above (config.limits). */
typedef struct limits_config {
    uint32_t max_publish_rate;       /* PUBLISH/s per connection, 0 = no limit */
    uint32_t max_publish_bytes_rate; /* PUBLISH bytes/s per connection, 0 = no limit */
    int max_subscriptions;           /* per session, 0 = SESSION_MAX_SUBS (limits_max_subscriptions) */
    int max_topic_levels;
    int max_topic_length;
    bool queue_qos0;       /* queue QoS 0 for offline persistent sessions */
    uint32_t max_sessions; /* sessions on the node, online and offline, 0 = no limit */
    uint32_t max_retained; /* retained messages on the node, 0 = no limit */
    /* distinct shared groups on the node, those left in the last refreshes
     * included, 0 = no limit */
    uint32_t max_shared_groups;
} limits_config;

#endif
