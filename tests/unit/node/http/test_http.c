/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP endpoint (node/http/http.c) of an in-process broker: routing (404,
 * 405 with Allow), the admin token (403, 401, 200), --metrics-auth, the
 * health endpoints and /metrics, bad query strings and paths. */
#include <criterion/criterion.h>
#include <string.h>

#include "http_client.h"

static void up_with_token(void)
{
    hc_up(HC_TOKEN, false);
}

/* Each test names its broker (token, --metrics-auth) in its own .init. */
TestSuite(http, .fini = hc_down);

Test(http, an_unknown_path_is_404_json, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/nope", NULL, &r), 404);
    cr_assert_not_null(strstr(r.body, "\"error\":\"no such endpoint: /nope\""), "%s", r.body);
    char ct[64];
    cr_assert_str_eq(hc_header(&r, "Content-Type", ct, sizeof(ct)), "application/json");
}

Test(http, a_known_path_with_another_method_is_405_with_allow, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_request("PUT", "/metrics", NULL, &r), 405);
    char allow[64];
    cr_assert_str_eq(hc_header(&r, "Allow", allow, sizeof(allow)), "GET");
    cr_assert_eq(hc_admin("POST", "/api/v1/clients/x", &r), 405);
    cr_assert_str_eq(hc_header(&r, "Allow", allow, sizeof(allow)), "GET, DELETE");
}

Test(http, ready_is_200_ok_on_a_serving_node, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/health/ready", NULL, &r), 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
}

Test(http, ready_is_503_while_stopping, .init = up_with_token)
{
    atomic_store(&hc_b.stopping, true);
    hc_res r;
    cr_assert_eq(hc_request("GET", "/health/ready", NULL, &r), 503);
    cr_assert_str_eq(r.body, "{\"status\":\"fail\",\"reason\":\"stopping\"}");
}

Test(http, metrics_are_prometheus_text, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/metrics", NULL, &r), 200);
    char ct[128];
    cr_assert_str_eq(hc_header(&r, "Content-Type", ct, sizeof(ct)), "text/plain; version=0.0.4; charset=utf-8");
    cr_assert_not_null(strstr(r.body, "# TYPE shoal_http_request_duration_seconds histogram"));
}

/* The whole API is behind the token, unknown paths included. */
Test(http, the_api_without_a_token_is_401_and_with_a_wrong_one_401, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/api/v1/node", NULL, &r), 401);
    char www[64];
    cr_assert_str_eq(hc_header(&r, "WWW-Authenticate", www, sizeof(www)), "Bearer realm=\"shoal\"");
    cr_assert_not_null(strstr(r.body, "missing bearer token"));
    cr_assert_eq(hc_request("GET", "/api/v1/node", "Bearer wrong", &r), 401);
    cr_assert_not_null(strstr(r.body, "invalid token"));
    cr_assert_eq(hc_request("GET", "/api/v1/nothing-here", NULL, &r), 401, "an unknown API path tells nothing");
    cr_assert_eq(hc_request("GET", "/api/v1/node", "Bearer " HC_TOKEN "x", &r), 401, "a longer token");
    cr_assert_eq(hc_admin("GET", "/api/v1/node", &r), 200);
}

Test(http, the_token_scheme_is_case_insensitive, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/api/v1/node", "bearer " HC_TOKEN, &r), 200);
}

Test(http, a_bad_query_parameter_is_400, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/clients?limit=-1", &r), 400);
    cr_assert_not_null(strstr(r.body, "limit must be an integer"), "%s", r.body);
    cr_assert_eq(hc_admin("GET", "/api/v1/clients?limit=10001", &r), 400);
    cr_assert_eq(hc_admin("GET", "/api/v1/clients?limit=10000", &r), 200);
}

Test(http, a_nul_in_a_percent_encoded_path_is_400, .init = up_with_token)
{
    hc_res r;
    cr_assert_eq(hc_admin("GET", "/api/v1/clients/a%00b", &r), 400);
    cr_assert_not_null(strstr(r.body, "bad percent-encoding"));
}

static void up_without_token(void)
{
    hc_up(NULL, false);
}

Test(http, without_an_admin_token_the_api_is_403, .init = up_without_token)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/api/v1/node", "Bearer anything", &r), 403);
    cr_assert_not_null(strstr(r.body, "admin API disabled"));
    cr_assert_eq(hc_request("GET", "/health/ready", NULL, &r), 200, "health stays open");
}

static void up_metrics_auth(void)
{
    hc_up(HC_TOKEN, true);
}

Test(http, metrics_auth_puts_metrics_and_health_behind_the_token, .init = up_metrics_auth)
{
    hc_res r;
    cr_assert_eq(hc_request("GET", "/metrics", NULL, &r), 401);
    cr_assert_eq(hc_request("GET", "/health/ready", NULL, &r), 401);
    cr_assert_eq(hc_admin("GET", "/metrics", &r), 200);
    cr_assert_eq(hc_request("GET", "/nope", NULL, &r), 404, "an unknown path outside the API is still 404");
}
