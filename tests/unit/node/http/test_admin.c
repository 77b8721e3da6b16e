/* SPDX-License-Identifier: Apache-2.0 */
/* The admin API (node/http/admin.c) through the HTTP endpoint of an in-process
 * broker with MQTT clients on it: the JSON it answers and what it changes
 * (a kick disconnects, a delete removes, a drain makes the node unready). */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "http_client.h"
#include "inproc_client.h"

static void up(void)
{
    hc_up(HC_TOKEN, false);
}

TestSuite(admin, .init = up, .fini = hc_down);

static void publish_retained(const char *topic, const char *payload)
{
    icl *c = icl_connected(&hc_b, 0, MQTT_V5, "retainer");
    icl_send_publish(c, topic, payload, 0, 0, true, NULL);
    icl_settle(c);
    icl_free(c);
}

Test(admin, node_describes_this_node)
{
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/node", &r), 200);
    cr_assert_not_null(strstr(r.body, "\"node_id\":\"inproc\""), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"workers\":2"));
    cr_assert_not_null(strstr(r.body, "\"backplane\":\"local\""));
    cr_assert_not_null(strstr(r.body, "\"ready\":true"));
    cr_assert_not_null(strstr(r.body, "\"draining\":false"));
    cr_assert_not_null(strstr(r.body, "\"connections\":0"));
}

Test(admin, nodes_lists_this_node_as_self)
{
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/nodes", &r), 200);
    cr_assert_str_eq(r.body, "{\"nodes\":[{\"node_id\":\"inproc\",\"address\":\"inproc:1883\",\"self\":true}]}");
}

/* Clients from every worker, sorted by id; offline persistent sessions too. */
Test(admin, clients_lists_connected_and_offline_sessions_sorted)
{
    icl *b1 = icl_connected(&hc_b, 1, MQTT_V5, "bravo");
    icl *a0 = icl_connected(&hc_b, 0, MQTT_V311, "alpha");
    icl *gone = icl_open(&hc_b, 0, MQTT_V311);
    mqtt_connect q;
    memset(&q, 0, sizeof(q));
    q.keepalive = 60; /* clean session 0: the session stays */
    icl_send_connect(gone, "charlie", &q);
    icl_settle(gone);
    icl_expect(gone, MQTT_CONNACK, NULL);
    icl_drop(gone);
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/clients", &r), 200);
    const char *a = strstr(r.body, "\"client_id\":\"alpha\"");
    const char *bb = strstr(r.body, "\"client_id\":\"bravo\"");
    const char *c = strstr(r.body, "{\"client_id\":\"charlie\",\"connected\":false}");
    cr_assert(a && bb && c && a < bb && bb < c, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"total\":3"));
    cr_assert_not_null(strstr(r.body, "\"version\":\"3.1.1\""));
    cr_assert_not_null(strstr(r.body, "\"worker\":1"));
    cr_assert_eq(hc_admin("GET", "/api/v1/clients?filter=rav", &r), 200);
    cr_assert_not_null(strstr(r.body, "\"total\":1"), "%s", r.body);
    cr_assert_eq(hc_admin("GET", "/api/v1/clients?limit=1&offset=1", &r), 200);
    cr_assert_not_null(strstr(r.body, "\"clients\":[{\"client_id\":\"bravo\""), "%s", r.body);
    icl_free(a0);
    icl_free(b1);
    icl_free(gone);
}

Test(admin, one_client_in_detail_with_its_subscriptions)
{
    icl *c = icl_connected(&hc_b, 1, MQTT_V5, "detail me");
    icl_subscribe1(c, "d/#", 1);
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/clients/detail%20me", &r), 200);
    cr_assert_not_null(strstr(r.body, "\"subscription_list\":[{\"filter\":\"d/#\",\"qos\":1}]"), "%s", r.body);
    cr_assert_eq(hc_admin("GET", "/api/v1/clients/nobody", &r), 404);
    cr_assert_not_null(strstr(r.body, "no client or session with id 'nobody'"));
    icl_free(c);
}

/* MQTT 5: DISCONNECT 0x98 Administrative action. */
Test(admin, a_kick_disconnects_the_client_with_0x98)
{
    icl *c = icl_connected(&hc_b, 1, MQTT_V5, "kickme");
    hc_res r;
    cr_assert_eq(hc_admin("DELETE", "/api/v1/clients/kickme", &r), 200);
    cr_assert_str_eq(r.body, "{\"kicked\":\"kickme\",\"connections\":1}");
    icl_expect_disconnect(c, MQTT_RC_ADMIN_ACTION);
    cr_assert_eq(hc_admin("DELETE", "/api/v1/clients/kickme", &r), 404, "no longer connected");
    icl_free(c);
}

Test(admin, retained_lists_sorted_by_topic_with_a_preview)
{
    publish_retained("r/b", "second");
    publish_retained("r/a", "first");
    publish_retained("other", "x");
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/retained?filter=r/%23", &r), 200);
    const char *a = strstr(r.body, "{\"topic\":\"r/a\",\"qos\":0,\"payload_bytes\":5,\"payload_preview\":\"first\"");
    const char *bb = strstr(r.body, "\"topic\":\"r/b\"");
    cr_assert(a && bb && a < bb, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"total\":2"));
    cr_assert_null(strstr(r.body, "other"));
    cr_assert_eq(hc_admin("GET", "/api/v1/retained?filter=a/%23/b", &r), 400);
}

Test(admin, deleting_a_retained_message_removes_it_once)
{
    publish_retained("del/me", "x");
    hc_res r;
    cr_assert_eq(hc_admin("DELETE", "/api/v1/retained/del%2Fme", &r), 200);
    cr_assert_str_eq(r.body, "{\"deleted\":\"del/me\"}");
    cr_assert_eq(hc_admin("DELETE", "/api/v1/retained/del%2Fme", &r), 404);
    cr_assert_eq(hc_admin("DELETE", "/api/v1/retained/bad%2F%2B", &r), 400, "a wildcard is not a topic name");
    icl *c = icl_connected(&hc_b, 0, MQTT_V5, "sub");
    icl_subscribe1(c, "del/#", 0);
    icl_expect_nothing(c);
    icl_free(c);
}

/* Turn the loops until the drain (node/drain.c, on the workers' timers)
 * is done, for up to 10 s. */
static void settle_drain(void)
{
    for (int i = 0; i < 1000 && drain_state_of(&hc_b) != DRAIN_DONE; i++) {
        inproc_settle(&hc_b, NULL, NULL);
        usleep(10 * 1000);
    }
    cr_assert_eq(drain_state_of(&hc_b), DRAIN_DONE);
}

/* Drain: not ready first, then every client gets 0x8B. */
Test(admin, drain_makes_the_node_unready_and_can_disconnect_everyone)
{
    icl *c = icl_connected(&hc_b, 0, MQTT_V5, "drained");
    hc_res r;
    cr_assert_eq(hc_admin("POST", "/api/v1/drain?disconnect=1", &r), 200);
    cr_assert_not_null(strstr(r.body, "\"status\":\"draining\""), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"started\":true"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"connections\":1"), "%s", r.body);
    settle_drain();
    mqtt_packet p;
    icl_expect(c, MQTT_DISCONNECT, &p);
    cr_assert_eq(p.u.reason.rc, MQTT_RC_SERVER_SHUTTING_DOWN);
    cr_assert_eq(hc_request("GET", "/health/ready", NULL, &r), 503);
    cr_assert_not_null(strstr(r.body, "draining"));
    icl_free(c);
}

Test(admin, drain_without_disconnect_keeps_the_clients)
{
    icl *c = icl_connected(&hc_b, 0, MQTT_V5, "stays");
    hc_res r;
    cr_assert_eq(hc_admin("POST", "/api/v1/drain?disconnect=0", &r), 200);
    cr_assert_not_null(strstr(r.body, "\"clients_disconnected\":0"), "%s", r.body);
    icl_expect_nothing(c);
    cr_assert_not_null(icl_conn(c));
    icl_free(c);
}
