/* SPDX-License-Identifier: Apache-2.0 */
/* Claiming a client id across workers, on a broker in this process
 * (inproc.h): the loser of two concurrent claims. */
#include <criterion/criterion.h>
#include <string.h>

#include "inproc_client.h"

ICL_SUITE(takeover, 2);

Test(takeover, the_loser_of_a_race_gets_no_packet_before_connack)
{
    icl *old = icl_connected(&b, 1, MQTT_V5, "race");

    /* A on worker 0 and B on worker 1 both claim before the owner (worker
     * 1) handles A's request: B's claim is newer, so A loses. */
    icl *a = icl_open(&b, 0, MQTT_V5);
    icl *bb = icl_open(&b, 1, MQTT_V5);
    icl_send_connect(a, "race", NULL);
    icl_send_connect(bb, "race", NULL);
    icl_settle(a);

    mqtt_packet p;
    uint8_t first = icl_next(a, &p);
    cr_assert(first == 0 || first == MQTT_CONNACK, "the first packet to A is %s, not CONNACK", mqtt_type_name(first));
    icl_expect_closed(a);
    icl_expect(bb, MQTT_CONNACK, &p);
    cr_assert_eq(p.u.connack.rc, MQTT_RC_SUCCESS);
    icl_expect(old, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_SESSION_TAKEN_OVER);

    icl_free(old);
    icl_free(a);
    icl_free(bb);
}
