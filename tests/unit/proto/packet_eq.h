/* SPDX-License-Identifier: Apache-2.0 */
/* Semantic equality of decoded packets, and the preparation that turns a
 * decoded packet back into something the encoders accept. Plain C (no
 * Criterion) so that tests/fuzz/fuzz_decode.c can share it.
 *
 * Two decodes are equal when every field says the same thing: slices are
 * compared by content, properties field by field, and the repeatable User
 * Property / Subscription Identifier by walking both blocks in order. */
#ifndef SHOAL_TESTS_PROTO_PACKET_EQ_H
#define SHOAL_TESTS_PROTO_PACKET_EQ_H

#include <string.h>

#include "proto/packet.h"
#include "proto/props.h"

static inline bool bytes_eq(mqtt_bytes a, mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Next User Property or Subscription Identifier of a block. */
static inline bool next_repeatable(mqtt_prop_iter *it, mqtt_prop *pr)
{
    while (mqtt_prop_next(it, pr)) {
        if (pr->id == MQTT_PROP_USER || pr->id == MQTT_PROP_SUBSCRIPTION_ID) {
            return true;
        }
    }
    return false;
}

static inline bool repeatables_eq(const mqtt_props *a, const mqtt_props *b)
{
    mqtt_prop_iter ia, ib;
    mqtt_prop pa, pb;
    mqtt_prop_iter_init(&ia, a);
    mqtt_prop_iter_init(&ib, b);
    for (;;) {
        bool ma = next_repeatable(&ia, &pa);
        bool mb = next_repeatable(&ib, &pb);
        if (ma != mb) {
            return false;
        }
        if (!ma) {
            return true;
        }
        if (pa.id != pb.id || pa.u != pb.u || !bytes_eq(pa.a, pb.a) || !bytes_eq(pa.b, pb.b)) {
            return false;
        }
    }
}

static inline bool props_eq(const mqtt_props *a, const mqtt_props *b)
{
    return a->present == b->present && a->payload_format == b->payload_format &&
           a->request_problem_info == b->request_problem_info && a->request_response_info == b->request_response_info &&
           a->max_qos == b->max_qos && a->retain_available == b->retain_available &&
           a->wildcard_available == b->wildcard_available && a->sub_id_available == b->sub_id_available &&
           a->shared_available == b->shared_available && a->receive_max == b->receive_max &&
           a->topic_alias_max == b->topic_alias_max && a->topic_alias == b->topic_alias &&
           a->server_keep_alive == b->server_keep_alive && a->n_user == b->n_user && a->n_sub_ids == b->n_sub_ids &&
           a->message_expiry == b->message_expiry && a->session_expiry == b->session_expiry &&
           a->will_delay == b->will_delay && a->max_packet_size == b->max_packet_size && a->sub_id == b->sub_id &&
           bytes_eq(a->content_type, b->content_type) && bytes_eq(a->response_topic, b->response_topic) &&
           bytes_eq(a->correlation_data, b->correlation_data) &&
           bytes_eq(a->assigned_client_id, b->assigned_client_id) && bytes_eq(a->auth_method, b->auth_method) &&
           bytes_eq(a->auth_data, b->auth_data) && bytes_eq(a->response_info, b->response_info) &&
           bytes_eq(a->server_reference, b->server_reference) && bytes_eq(a->reason_string, b->reason_string) &&
           repeatables_eq(a, b);
}

static inline bool connect_eq(const mqtt_connect *a, const mqtt_connect *b)
{
    return a->version == b->version && bytes_eq(a->protocol_name, b->protocol_name) &&
           a->clean_start == b->clean_start && a->keepalive == b->keepalive && props_eq(&a->props, &b->props) &&
           bytes_eq(a->client_id, b->client_id) && a->has_will == b->has_will && a->will_qos == b->will_qos &&
           a->will_retain == b->will_retain && props_eq(&a->will_props, &b->will_props) &&
           bytes_eq(a->will_topic, b->will_topic) && bytes_eq(a->will_payload, b->will_payload) &&
           a->has_username == b->has_username && bytes_eq(a->username, b->username) &&
           a->has_password == b->has_password && bytes_eq(a->password, b->password);
}

static inline bool packet_eq(const mqtt_packet *a, const mqtt_packet *b)
{
    if (a->type != b->type) {
        return false;
    }
    const mqtt_publish *pa = &a->u.publish, *pb = &b->u.publish;
    const mqtt_ack *aa = &a->u.ack, *ab = &b->u.ack;
    const mqtt_subscribe *sa = &a->u.subscribe, *sb = &b->u.subscribe;
    const mqtt_unsubscribe *ua = &a->u.unsubscribe, *ub = &b->u.unsubscribe;
    const mqtt_suback *ka = &a->u.suback, *kb = &b->u.suback;
    const mqtt_reason *ra = &a->u.reason, *rb = &b->u.reason;
    switch (a->type) {
    case MQTT_CONNECT:
        return connect_eq(&a->u.connect, &b->u.connect);
    case MQTT_CONNACK:
        return a->u.connack.session_present == b->u.connack.session_present && a->u.connack.rc == b->u.connack.rc &&
               props_eq(&a->u.connack.props, &b->u.connack.props);
    case MQTT_PUBLISH:
        return pa->qos == pb->qos && pa->dup == pb->dup && pa->retain == pb->retain && bytes_eq(pa->topic, pb->topic) &&
               pa->packet_id == pb->packet_id && props_eq(&pa->props, &pb->props) && bytes_eq(pa->payload, pb->payload);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return aa->type == ab->type && aa->packet_id == ab->packet_id && aa->rc == ab->rc &&
               props_eq(&aa->props, &ab->props);
    case MQTT_SUBSCRIBE:
        return sa->packet_id == sb->packet_id && props_eq(&sa->props, &sb->props) &&
               bytes_eq(sa->entries, sb->entries) && sa->count == sb->count;
    case MQTT_UNSUBSCRIBE:
        return ua->packet_id == ub->packet_id && props_eq(&ua->props, &ub->props) &&
               bytes_eq(ua->entries, ub->entries) && ua->count == ub->count;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return ka->packet_id == kb->packet_id && props_eq(&ka->props, &kb->props) && bytes_eq(ka->codes, kb->codes);
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        return ra->rc == rb->rc && props_eq(&ra->props, &rb->props);
    default:
        return true; /* PINGREQ, PINGRESP: nothing but the type */
    }
}

/* Turn decoded properties into encodable ones: the User Properties are
 * copied into `ubuf` (mqtt_props.user) and the Subscription Identifiers
 * gathered into `ids` (mqtt_props.sub_ids). `ubuf` needs
 * mqtt_props_user_size() bytes and `ids` one slot per identifier; a block
 * of N bytes never needs more than N of either. Returns ubuf bytes used. */
static inline uint32_t props_for_encode(mqtt_props *p, uint8_t *ubuf, uint32_t *ids)
{
    mqtt_prop_iter it;
    mqtt_prop pr;
    uint32_t n = 0;
    mqtt_prop_iter_init(&it, p);
    while (mqtt_prop_next(&it, &pr)) {
        if (pr.id == MQTT_PROP_SUBSCRIPTION_ID) {
            ids[n++] = pr.u;
        }
    }
    uint32_t used = mqtt_props_copy_user(p, ubuf);
    p->user.p = ubuf;
    p->user.len = used;
    p->sub_ids = ids;
    p->n_sub_ids = (uint16_t)n;
    return used;
}

/* The properties of a decoded packet made encodable in place. `ubuf` and
 * `ids` must each hold as many entries as the frame had bytes. */
static inline void packet_for_encode(mqtt_packet *p, uint8_t *ubuf, uint32_t *ids)
{
    switch (p->type) {
    case MQTT_CONNECT: {
        uint32_t used = props_for_encode(&p->u.connect.props, ubuf, ids);
        (void)props_for_encode(&p->u.connect.will_props, ubuf + used, ids);
        return;
    }
    case MQTT_CONNACK:
        (void)props_for_encode(&p->u.connack.props, ubuf, ids);
        return;
    case MQTT_PUBLISH:
        (void)props_for_encode(&p->u.publish.props, ubuf, ids);
        return;
    case MQTT_SUBSCRIBE:
        (void)props_for_encode(&p->u.subscribe.props, ubuf, ids);
        return;
    case MQTT_UNSUBSCRIBE:
        (void)props_for_encode(&p->u.unsubscribe.props, ubuf, ids);
        return;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        (void)props_for_encode(&p->u.suback.props, ubuf, ids);
        return;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        (void)props_for_encode(&p->u.reason.props, ubuf, ids);
        return;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        (void)props_for_encode(&p->u.ack.props, ubuf, ids);
        return;
    default:
        return;
    }
}

#endif
