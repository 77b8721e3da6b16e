/* SPDX-License-Identifier: Apache-2.0 */
/* PINGREQ and DISCONNECT (node/mqtt/handle_misc.c) on an in-process broker:
 * PINGRESP, and what a DISCONNECT does to the will and the session. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(handle_misc, 1);

Test(handle_misc, pingreq_gets_pingresp)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "ping");
    icl_send_ping(c);
    icl_send_ping(c);
    icl_settle(c);
    icl_expect(c, MQTT_PINGRESP, NULL);
    cr_assert_eq(c->raw_len, 2);
    icl_expect(c, MQTT_PINGRESP, NULL);
    icl_expect_nothing(c);
    icl_free(c);
}

/* A client with a will on "will/<id>", and a subscriber to it. */
static icl *with_will(const char *id, uint32_t session_expiry)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.keepalive = 60;
    q.has_will = true;
    q.will_topic = icl_str("will/x");
    q.will_payload = icl_str("bye");
    if (session_expiry) {
        q.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
        q.props.session_expiry = session_expiry;
    }
    icl_send_connect(c, id, &q);
    icl_settle(c);
    icl_expect(c, MQTT_CONNACK, NULL);
    return c;
}

static icl *will_watcher(void)
{
    icl *w = icl_connected(&b, 0, MQTT_V5, "watcher");
    icl_subscribe1(w, "will/#", 0);
    return w;
}

/* §3.14.4: a normal DISCONNECT drops the will; the server closes silently. */
Test(handle_misc, a_normal_disconnect_drops_the_will_and_closes)
{
    icl *w = will_watcher();
    icl *c = with_will("dying", 0);
    icl_send_disconnect(c, MQTT_RC_SUCCESS, NULL);
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_expect_nothing(w);
    icl_free(c);
    icl_free(w);
}

Test(handle_misc, disconnect_with_will_0x04_publishes_the_will)
{
    icl *w = will_watcher();
    icl *c = with_will("dying", 0);
    icl_send_disconnect(c, MQTT_RC_DISCONNECT_WITH_WILL, NULL);
    icl_settle(c);
    icl_expect_closed(c);
    mqtt_packet p;
    icl_expect(w, MQTT_PUBLISH, &p);
    cr_assert_eq(p.u.publish.payload.len, 3);
    icl_free(c);
    icl_free(w);
}

/* The contrast: without DISCONNECT the will goes out. */
Test(handle_misc, a_close_without_disconnect_publishes_the_will)
{
    icl *w = will_watcher();
    icl *c = with_will("dying", 0);
    icl_drop(c);
    icl_expect(w, MQTT_PUBLISH, NULL);
    icl_free(c);
    icl_free(w);
}

/* §3.14.2.2.2: a Session Expiry of 0 at CONNECT cannot become non-zero. */
Test(handle_misc, disconnect_raising_a_zero_session_expiry_is_0x82)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "exp0");
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    pr.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    pr.session_expiry = 60;
    icl_send_disconnect(c, MQTT_RC_SUCCESS, &pr);
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
    icl_free(c);
}

/* DISCONNECT with Session Expiry 0 ends a session CONNECT made persistent:
 * the next CONNECT without clean start finds no session. */
Test(handle_misc, disconnect_with_expiry_0_ends_the_session)
{
    icl *c = with_will("persist", 300);
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    pr.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    pr.session_expiry = 0;
    icl_send_disconnect(c, MQTT_RC_SUCCESS, &pr);
    icl_settle(c);
    icl_expect_closed(c);
    icl *again = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.keepalive = 60;
    icl_send_connect(again, "persist", &q);
    icl_settle(again);
    mqtt_packet p;
    icl_expect(again, MQTT_CONNACK, &p);
    cr_assert_not(p.u.connack.session_present);
    icl_free(again);
    icl_free(c);
}

Test(handle_misc, a_persistent_session_survives_a_normal_disconnect)
{
    icl *c = with_will("persist", 300);
    icl_send_disconnect(c, MQTT_RC_SUCCESS, NULL);
    icl_settle(c);
    icl_expect_closed(c);
    icl *again = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.keepalive = 60;
    icl_send_connect(again, "persist", &q);
    icl_settle(again);
    mqtt_packet p;
    icl_expect(again, MQTT_CONNACK, &p);
    cr_assert(p.u.connack.session_present);
    icl_free(again);
    icl_free(c);
}
