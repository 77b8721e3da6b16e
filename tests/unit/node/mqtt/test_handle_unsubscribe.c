/* SPDX-License-Identifier: Apache-2.0 */
/* UNSUBSCRIBE (node/mqtt/handle_unsubscribe.c) on an in-process broker: the
 * UNSUBACK code per filter and that the filter stops matching. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(handle_unsubscribe, 1);

static mqtt_packet unsubscribe(icl *c, const char *const *filters, uint32_t n)
{
    mqtt_bytes f[8];
    for (uint32_t i = 0; i < n; i++) {
        f[i] = icl_str(filters[i]);
    }
    mqtt_props none;
    memset(&none, 0, sizeof(none));
    uint8_t buf[512];
    icl_write(c, buf, mqtt_encode_unsubscribe(9, &none, f, n, c->version, buf));
    icl_settle(c);
    mqtt_packet p;
    icl_expect(c, MQTT_UNSUBACK, &p);
    cr_assert_eq(p.u.suback.packet_id, 9);
    return p;
}

Test(handle_unsubscribe, each_filter_gets_0_or_0x11_in_order)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "u");
    icl_subscribe1(c, "a/+", 0);
    const char *f[] = {"a/+", "never", "a/+"};
    mqtt_packet p = unsubscribe(c, f, 3);
    cr_assert_eq(p.u.suback.codes.len, 3);
    cr_assert_eq(p.u.suback.codes.p[0], MQTT_RC_SUCCESS);
    cr_assert_eq(p.u.suback.codes.p[1], MQTT_RC_NO_SUBSCRIPTION_EXISTED);
    cr_assert_eq(p.u.suback.codes.p[2], MQTT_RC_NO_SUBSCRIPTION_EXISTED, "already removed");
    icl_free(c);
}

Test(handle_unsubscribe, a_removed_filter_no_longer_matches)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "u");
    icl_subscribe1(c, "gone", 0);
    const char *f[] = {"gone"};
    unsubscribe(c, f, 1);
    icl *pub = icl_connected(&b, 0, MQTT_V5, "p");
    icl_send_publish(pub, "gone", "x", 1, 1, false, NULL);
    icl_settle(pub);
    mqtt_packet p;
    icl_expect(pub, MQTT_PUBACK, &p);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    icl_expect_nothing(c);
    icl_free(pub);
    icl_free(c);
}

Test(handle_unsubscribe, a_shared_filter_is_removed_from_its_group)
{
    icl *c = icl_connected(&b, 0, MQTT_V5, "u");
    cr_assert_eq(icl_subscribe1(c, "$share/g/s", 0), 0);
    const char *f[] = {"$share/g/s", "s"};
    mqtt_packet p = unsubscribe(c, f, 2);
    cr_assert_eq(p.u.suback.codes.p[0], MQTT_RC_SUCCESS);
    cr_assert_eq(p.u.suback.codes.p[1], MQTT_RC_NO_SUBSCRIPTION_EXISTED, "the shared one is not the plain one");
    icl *pub = icl_connected(&b, 0, MQTT_V5, "p");
    icl_send_publish(pub, "s", "x", 1, 1, false, NULL);
    icl_settle(pub);
    icl_expect(pub, MQTT_PUBACK, &p);
    cr_assert_eq(p.u.ack.rc, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    icl_free(pub);
    icl_free(c);
}

/* 3.1.1 UNSUBACK carries no codes: 4 bytes. */
Test(handle_unsubscribe, v311_unsuback_is_four_bytes)
{
    icl *c = icl_connected(&b, 0, MQTT_V311, "u311");
    icl_subscribe1(c, "x", 0);
    const char *f[] = {"x", "y"};
    unsubscribe(c, f, 2);
    cr_assert_eq(c->raw_len, 4);
    icl_free(c);
}
