/* SPDX-License-Identifier: Apache-2.0 */
/* A published application message: one allocation holding topic, the
 * properties to forward and the payload. Immutable once created; refcounted
 * atomically because it crosses workers. */
#ifndef SHOAL_NODE_MSG_H
#define SHOAL_NODE_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto/packet.h"

typedef struct msg {
    atomic_uint refs;
    uint8_t qos;
    bool retain;
    uint16_t topic_len;
    uint32_t props_len; /* pre-encoded forwarded properties, no length prefix */
    uint32_t payload_len;
    uint64_t expiry_at; /* monotonic ms; 0 = never expires */
    uint64_t origin;    /* the publishing session, when published on this node (No Local) */
    uint32_t alloc_size;
    /* Published on another node: its client's id, after the payload (No
     * Local); 0 otherwise. Here it fills what would be padding. */
    uint16_t publisher_len;
    /* Produced by this node (docs/architecture.md, "Offline queues and
     * positions": this node's records are one stream, the others another). */
    bool own;
    uint8_t *topic;
    uint8_t *props;
    uint8_t *payload;
    /* Where it sits in the cluster's stream: partition -1 = nowhere (the
     * local backplane, QoS 0 routed before it was written, internal). */
    int64_t off;
    /* Its time in the stream (Unix ms, the publishing node's clock, the
     * Kafka record's timestamp): every node reads the same, so shared
     * groups choose by the membership in force then (node/mqtt/share.c). */
    int64_t ts;
    int32_t part;
    /* This node's number for the message object, from 1: a retained copy
     * and its live delivery on this node are one object when no stream
     * position names them (node/mqtt/session.c, session_seen_retained). */
    uint64_t id;
    uint8_t data[];
} msg;

/* New message with one ref held by the caller. Forwards Payload Format
 * Indicator, Content Type, Response Topic, Correlation Data and User
 * Properties (in order); Message Expiry becomes expiry_at. Returns NULL
 * if the allocation fails (the size is client-controlled). */
msg *msg_new(mqtt_bytes topic, const mqtt_props *props, mqtt_bytes payload, uint8_t qos, bool retain, uint64_t origin,
             uint64_t now_ms);

static inline msg *msg_ref(msg *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void msg_unref(msg *m);

/* New message whose forwarded properties are given already encoded
 * (`props`, without the length prefix), e.g. from another node, where
 * `publisher` is the id of the client that published it (may be empty,
 * at most 65535 bytes; copied). */
msg *msg_new_raw(mqtt_bytes topic, const uint8_t *props, uint32_t props_len, mqtt_bytes payload, uint8_t qos,
                 bool retain, mqtt_bytes publisher);

/* The publishing client's id of a message from another node, else empty. */
static inline mqtt_bytes msg_publisher(const msg *m)
{
    mqtt_bytes id = {m->payload + m->payload_len, m->publisher_len};
    return id;
}

/* Remaining expiry in seconds (rounded up), 0 if none; sets *expired. */
uint32_t msg_expiry_left(const msg *m, uint64_t now_ms, bool *expired);

static inline bool msg_is_expired(const msg *m, uint64_t now_ms)
{
    return m->expiry_at != 0 && now_ms >= m->expiry_at;
}

#endif
