/* SPDX-License-Identifier: Apache-2.0 */
#include "node/mqtt/msg.h"

#include <string.h>
#include <sys/time.h>

#include "common/alloc.h"
#include "proto/frame.h"
#include "proto/props.h"

/* The properties a server forwards unchanged (MQTT 5 §3.3.2.3). Message
 * Expiry is kept as a deadline and rewritten per delivery. */
static mqtt_props forwarded(const mqtt_props *in)
{
    mqtt_props out;
    memset(&out, 0, sizeof(out));
    if (!in) {
        return out;
    }
    const uint64_t keep = MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
                          MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) | MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA);
    out.present = in->present & keep;
    out.payload_format = in->payload_format;
    out.content_type = in->content_type;
    out.response_topic = in->response_topic;
    out.correlation_data = in->correlation_data;
    return out;
}

/* One allocation laid out as topic | props | payload | publisher; props
 * left for the caller to fill. NULL when the (client-controlled) size
 * cannot be had. */
static msg *msg_alloc(mqtt_bytes topic, uint32_t props_len, mqtt_bytes payload, uint8_t qos, bool retain,
                      uint64_t origin, mqtt_bytes publisher)
{
    size_t size = sizeof(msg) + topic.len + props_len + payload.len + publisher.len;
    msg *m = sh_trymalloc(size);
    if (!m) {
        return NULL;
    }
    memset(m, 0, sizeof(*m));
    atomic_init(&m->refs, 1);
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic.len;
    m->props_len = props_len;
    m->payload_len = payload.len;
    m->origin = origin;
    m->alloc_size = (uint32_t)size;
    m->part = -1;
    m->off = -1;
    static _Atomic uint64_t next_id = 1;
    m->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    m->ts = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    m->topic = m->data;
    m->props = m->topic + topic.len;
    m->payload = m->props + props_len;
    if (topic.len) {
        memcpy(m->topic, topic.p, topic.len);
    }
    if (payload.len) {
        memcpy(m->payload, payload.p, payload.len);
    }
    m->publisher_len = (uint16_t)publisher.len;
    if (publisher.len) {
        memcpy(m->payload + payload.len, publisher.p, publisher.len);
    }
    return m;
}

msg *msg_new(mqtt_bytes topic, const mqtt_props *props, mqtt_bytes payload, uint8_t qos, bool retain, uint64_t origin,
             uint64_t now_ms)
{
    mqtt_props fw = forwarded(props);
    uint32_t user_len = props ? mqtt_props_user_size(props) : 0;
    uint32_t fixed_len = mqtt_props_body_size(&fw);
    mqtt_bytes none = {NULL, 0};
    msg *m = msg_alloc(topic, fixed_len + user_len, payload, qos, retain, origin, none);
    if (!m) {
        return NULL;
    }
    if (props && mqtt_props_has(props, MQTT_PROP_MESSAGE_EXPIRY)) {
        m->expiry_at = now_ms + (uint64_t)props->message_expiry * 1000u;
    }
    if (fixed_len) {
        /* mqtt_props_write emits the length prefix too; keep only the body. */
        uint8_t tmp[fixed_len + 4];
        uint32_t n = mqtt_props_write(&fw, tmp);
        memcpy(m->props, tmp + (n - fixed_len), fixed_len);
    }
    if (user_len) {
        mqtt_props_copy_user(props, m->props + fixed_len);
    }
    return m;
}

msg *msg_new_raw(mqtt_bytes topic, const uint8_t *props, uint32_t props_len, mqtt_bytes payload, uint8_t qos,
                 bool retain, mqtt_bytes publisher)
{
    msg *m = msg_alloc(topic, props_len, payload, qos, retain, 0, publisher);
    if (m && props_len) {
        memcpy(m->props, props, props_len);
    }
    return m;
}

void msg_unref(msg *m)
{
    if (!m) {
        return;
    }
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        sh_free(m, m->alloc_size);
    }
}

uint32_t msg_expiry_left(const msg *m, uint64_t now_ms, bool *expired)
{
    *expired = false;
    if (m->expiry_at == 0) {
        return 0;
    }
    if (now_ms >= m->expiry_at) {
        *expired = true;
        return 0;
    }
    return (uint32_t)((m->expiry_at - now_ms + 999) / 1000);
}
