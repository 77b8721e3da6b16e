/* SPDX-License-Identifier: Apache-2.0 */
/* AUTH (node/mqtt/handle_auth.c) on an in-process broker without a password
 * file: SCRAM is not offered, so every AUTH is a protocol error (MQTT 5
 * §4.12.0-7). The exchange itself runs in tests/integration. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(handle_auth, 1);

static void send_auth(icl *c, uint8_t rc, const char *method)
{
    mqtt_reason r;
    memset(&r, 0, sizeof(r));
    r.rc = rc;
    if (method) {
        r.props.present = MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
        r.props.auth_method = icl_str(method);
    }
    uint8_t buf[128];
    icl_write(c, buf, mqtt_encode_auth(&r, buf));
}

/* §4.12.0-7: no method at CONNECT, no AUTH. */
Test(handle_auth, auth_without_a_method_at_connect_is_disconnect_0x82)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "a");
    send_auth(c, MQTT_RC_REAUTHENTICATE, "SCRAM-SHA-256");
    icl_settle(c);
    icl_expect_disconnect(c, MQTT_RC_PROTOCOL_ERROR);
    icl_free(c);
}

Test(handle_auth, auth_before_connect_closes_without_a_packet)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    send_auth(c, MQTT_RC_CONTINUE_AUTHENTICATION, "SCRAM-SHA-256");
    icl_settle(c);
    icl_expect_nothing(c);
    icl_expect_closed(c);
    icl_free(c);
}

/* Without a password file SCRAM is not offered: CONNACK 0x8C. */
Test(handle_auth, scram_without_a_password_file_is_0x8c)
{
    icl *c = icl_open(&b, 0, MQTT_V5);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.clean_start = true;
    q.props.present = MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD);
    q.props.auth_method = icl_str("SCRAM-SHA-256");
    icl_send_connect(c, "scram", &q);
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_CONNACK, &p);
    cr_assert_eq(p.u.connack.rc, MQTT_RC_BAD_AUTH_METHOD);
    icl_expect_closed(c);
    icl_free(c);
}
