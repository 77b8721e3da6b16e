/* SPDX-License-Identifier: Apache-2.0 */
/* CONNECT (node/mqtt/handle_connect.c) on an in-process broker: the CONNACK
 * bytes (reason code, properties, session present) for each case. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(handle_connect, 1);

static mqtt_connect plain(void)
{
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.keepalive = 60;
    return q;
}

/* CONNECT, settle, and the CONNACK (the connection may be gone after). */
static mqtt_connack connack_for(icl *c, const char *id, const mqtt_connect *q)
{
    icl_send_connect(c, id, q);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_CONNACK, &p);
    return p.u.connack;
}

static void expect_refused(uint8_t version, const char *id, const mqtt_connect *q, uint8_t rc)
{
    icl *c = icl_open(&b, 0, version);
    mqtt_connack a = connack_for(c, id, q);
    cr_assert_eq(a.rc, rc, "CONNACK 0x%02x, expected 0x%02x", a.rc, rc);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

Test(handle_connect, v5_connack_announces_the_limits)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q = plain();
    mqtt_connack a = connack_for(c, "lim", &q);
    cr_assert_eq(a.rc, 0);
    cr_assert(mqtt_props_has(&a.props, MQTT_PROP_RECEIVE_MAX));
    cr_assert_eq(a.props.receive_max, cfg.receive_maximum);
    cr_assert(mqtt_props_has(&a.props, MQTT_PROP_MAX_PACKET_SIZE));
    cr_assert_eq(a.props.max_packet_size, cfg.max_packet_size);
    cr_assert(mqtt_props_has(&a.props, MQTT_PROP_RETAIN_AVAILABLE));
    cr_assert_not(mqtt_props_has(&a.props, MQTT_PROP_ASSIGNED_CLIENT_ID));
    icl_free(c);
}

/* §3.2.2.3.7: an empty client id gets one, named in the CONNACK. */
Test(handle_connect, an_empty_client_id_is_assigned_one)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q = plain();
    mqtt_connack a = connack_for(c, "", &q);
    cr_assert_eq(a.rc, 0);
    cr_assert(mqtt_props_has(&a.props, MQTT_PROP_ASSIGNED_CLIENT_ID));
    cr_assert_gt(a.props.assigned_client_id.len, 0);
    icl_free(c);
}

/* §3.1.3-8: 3.1.1 refuses an empty id without clean session (rc 2). */
Test(handle_connect, v311_empty_id_without_clean_session_is_refused_with_2)
{
    mqtt_connect q = plain();
    q.clean_start = false;
    expect_refused(MQTT_V311, "", &q, 2);
}

Test(handle_connect, a_client_id_over_256_bytes_is_0x85)
{
    char id[258];
    memset(id, 'a', 257);
    id[257] = 0;
    mqtt_connect q = plain();
    expect_refused(MQTT_V5, id, &q, MQTT_RC_CLIENT_ID_INVALID);
}

Test(handle_connect, a_will_over_max_qos_is_0x9b)
{
    cfg.max_qos = 0;
    mqtt_connect q = plain();
    q.has_will = true;
    q.will_qos = 1;
    q.will_topic = icl_str("w");
    expect_refused(MQTT_V5, "w", &q, MQTT_RC_QOS_NOT_SUPPORTED);
}

Test(handle_connect, a_will_topic_with_a_wildcard_is_0x90)
{
    mqtt_connect q = plain();
    q.has_will = true;
    q.will_topic = icl_str("w/#");
    expect_refused(MQTT_V5, "w", &q, MQTT_RC_TOPIC_NAME_INVALID);
}

Test(handle_connect, a_retained_will_without_retain_is_0x9a)
{
    cfg.retain_available = false;
    mqtt_connect q = plain();
    q.has_will = true;
    q.will_retain = true;
    q.will_topic = icl_str("w");
    expect_refused(MQTT_V5, "w", &q, MQTT_RC_RETAIN_NOT_SUPPORTED);
}

/* §4.12.0-1: an unsupported authentication method is 0x8C. */
Test(handle_connect, an_unknown_authentication_method_is_0x8c)
{
    mqtt_connect q = plain();
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
    q.props.auth_method = icl_str("KERBEROS");
    expect_refused(MQTT_V5, "am", &q, MQTT_RC_BAD_AUTH_METHOD);
}

/* v5: keep alive 0 or over --max-keepalive is replaced (Server Keep Alive). */
Test(handle_connect, keep_alive_over_the_maximum_is_lowered_in_the_connack)
{
    cfg.max_keepalive = 30;
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q = plain();
    q.keepalive = 600;
    mqtt_connack a = connack_for(c, "ka", &q);
    cr_assert_eq(a.rc, 0);
    cr_assert(mqtt_props_has(&a.props, MQTT_PROP_SERVER_KEEP_ALIVE));
    cr_assert_eq(a.props.server_keep_alive, 30);
    cr_assert_eq(icl_conn(c)->keepalive, 30);
    icl_free(c);
}

Test(handle_connect, a_session_expiry_over_the_maximum_is_lowered_in_the_connack)
{
    cfg.max_session_expiry = 100;
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q = plain();
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    q.props.session_expiry = 5000;
    mqtt_connack a = connack_for(c, "se", &q);
    cr_assert(mqtt_props_has(&a.props, MQTT_PROP_SESSION_EXPIRY));
    cr_assert_eq(a.props.session_expiry, 100);
    icl_free(c);
}

/* Session Present: only when a persistent session is resumed. */
Test(handle_connect, session_present_only_when_a_persistent_session_is_resumed)
{
    mqtt_connect q = plain();
    q.clean_start = false;
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    q.props.session_expiry = 300;
    icl *c = icl_open(&b, 0, MQTT_V5);
    cr_assert_not(connack_for(c, "keep", &q).session_present);
    icl_drop(c);
    icl *d = icl_open(&b, 0, MQTT_V5);
    cr_assert(connack_for(d, "keep", &q).session_present);
    icl_drop(d);
    q.clean_start = true;
    icl *e = icl_open(&b, 0, MQTT_V5);
    cr_assert_not(connack_for(e, "keep", &q).session_present, "clean start discards it");
    icl_free(c);
    icl_free(d);
    icl_free(e);
}

/* A resumed session keeps its subscriptions. */
Test(handle_connect, a_resumed_session_keeps_its_subscriptions)
{
    mqtt_connect q = plain();
    q.clean_start = false;
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    q.props.session_expiry = 300;
    icl *c = icl_open(&b, 0, MQTT_V5);
    connack_for(c, "resume", &q);
    icl_subscribe1(c, "r", 0);
    icl_drop(c);
    icl *d = icl_open(&b, 0, MQTT_V5);
    connack_for(d, "resume", &q);
    icl *pub = icl_connected(&b, 0, MQTT_V5, "pub");
    icl_send_publish(pub, "r", "x", 0, 0, false, NULL);
    icl_settle(pub);
    icl_expect(d, MQTT_PUBLISH, NULL);
    icl_free(pub);
    icl_free(c);
    icl_free(d);
}

/* Taking over a connected client id: the old connection gets 0x8E. */
Test(handle_connect, the_same_client_id_takes_the_session_over)
{
    icl *old = icl_connected(&b, 0, MQTT_V5, "twin");
    icl *c = icl_connected(&b, 0, MQTT_V5, "twin");
    icl_expect_disconnect(old, MQTT_RC_SESSION_TAKEN_OVER);
    cr_assert_not_null(icl_conn(c));
    icl_free(old);
    icl_free(c);
}
