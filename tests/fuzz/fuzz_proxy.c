/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for proto/proxy.c, the PROXY protocol header parser.
 *
 * The input is parsed as a header with each set of allowed versions. The
 * answer must be one of length / need more / bad, consistent with the
 * answers for shorter prefixes (a header's proper prefixes need more; once
 * refused, longer input stays refused), and a parsed address must format
 * as inet_ntop does and parse back from a v1 line. The input is also tried
 * as a v1 address token, whose verdict must match glibc's inet_pton. Any
 * broken invariant aborts, which libFuzzer reports as a crash. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxy.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const mqtt_proxy_addr no_addr;

/* The peer text equals "[" inet_ntop "]:port" (or "a.b.c.d:port"), and the
 * host part parses back to the same address from a v1 line. */
static void check_addr(const mqtt_proxy_addr *a)
{
    if (a->family == MQTT_PROXY_UNSPEC) {
        CHECK(memcmp(a, &no_addr, sizeof(*a)) == 0);
        return;
    }
    CHECK(a->family == MQTT_PROXY_INET || a->family == MQTT_PROXY_INET6);
    bool v6 = a->family == MQTT_PROXY_INET6;
    char host[INET6_ADDRSTRLEN], want[64], got[MQTT_PROXY_PEER_MAX];
    CHECK(inet_ntop(v6 ? AF_INET6 : AF_INET, a->addr, host, sizeof(host)) != NULL);
    snprintf(want, sizeof(want), v6 ? "[%s]:%u" : "%s:%u", host, a->port);
    size_t n = mqtt_proxy_format_peer(a, got, sizeof(got));
    CHECK(n == strlen(want) && strcmp(got, want) == 0);

    char line[160];
    int len = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n", v6 ? "TCP6" : "TCP4", host, host, a->port,
                       a->port);
    CHECK(len > 0 && (size_t)len <= MQTT_PROXY_V1_MAX);
    mqtt_proxy_hdr h;
    CHECK(mqtt_proxy_parse((const uint8_t *)line, (size_t)len, MQTT_PROXY_V1, &h) == len);
    CHECK(h.src.family == a->family && h.src.port == a->port);
    CHECK(memcmp(h.src.addr, a->addr, 16) == 0);
}

static int parse(const uint8_t *data, size_t size, unsigned versions, mqtt_proxy_hdr *h)
{
    int n = mqtt_proxy_parse(data, size, versions, h);
    if (n == MQTT_PROXY_NEED_MORE) {
        CHECK(h->why == NULL && !h->local);
        CHECK(h->src.family == MQTT_PROXY_UNSPEC && h->dst.family == MQTT_PROXY_UNSPEC);
    } else if (n == MQTT_PROXY_BAD) {
        CHECK(h->why != NULL && !h->local);
        CHECK(h->src.family == MQTT_PROXY_UNSPEC && h->dst.family == MQTT_PROXY_UNSPEC);
    } else {
        CHECK(n > 0 && (size_t)n <= size && h->why == NULL);
        CHECK(h->version == 1 || h->version == 2);
        CHECK(versions & (h->version == 1 ? MQTT_PROXY_V1 : MQTT_PROXY_V2));
        CHECK((size_t)n <= (h->version == 1 ? MQTT_PROXY_V1_MAX : MQTT_PROXY_V2_MAX));
        CHECK(h->src.family == h->dst.family);
        CHECK(!h->local || h->src.family == MQTT_PROXY_UNSPEC);
    }
    return n;
}

static void headers_on(const uint8_t *data, size_t size)
{
    static const unsigned masks[] = {MQTT_PROXY_V1, MQTT_PROXY_V2, MQTT_PROXY_V1 | MQTT_PROXY_V2};
    for (size_t m = 0; m < sizeof(masks) / sizeof(masks[0]); m++) {
        mqtt_proxy_hdr h, p;
        int n = parse(data, size, masks[m], &h);
        if (n > 0) {
            check_addr(&h.src);
            check_addr(&h.dst);
            /* The header alone gives the same answer; one byte less needs
             * more. */
            CHECK(parse(data, (size_t)n, masks[m], &p) == n);
            CHECK(memcmp(&p, &h, sizeof(h)) == 0);
            CHECK(parse(data, (size_t)n - 1, masks[m], &p) == MQTT_PROXY_NEED_MORE);
        } else if (size > 0) {
            /* Need more stays need more on a prefix; bad on a prefix
             * means bad here, for the same reason. */
            int q = parse(data, size - 1, masks[m], &p);
            CHECK(n == MQTT_PROXY_BAD || q == MQTT_PROXY_NEED_MORE);
            CHECK(q != MQTT_PROXY_BAD || strcmp(p.why, h.why) == 0);
            /* A whole header on the prefix would be one here too. */
            CHECK(q <= 0);
        }
    }
}

/* The input as a v1 source address: accepted exactly when inet_pton
 * accepts it, as the same address. */
static void address_on(const uint8_t *data, size_t size, bool v6)
{
    if (size == 0 || size > 45) {
        return;
    }
    char tok[46];
    for (size_t i = 0; i < size; i++) {
        if (data[i] == ' ' || data[i] == '\r' || data[i] == '\n' || data[i] == 0) {
            return;
        }
        tok[i] = (char)data[i];
    }
    tok[size] = '\0';
    char line[128];
    int len = snprintf(line, sizeof(line), "PROXY %s %s %s 1 2\r\n", v6 ? "TCP6" : "TCP4", tok, v6 ? "::1" : "1.1.1.1");
    CHECK(len > 0 && (size_t)len < sizeof(line));
    uint8_t want[16] = {0};
    bool ok = inet_pton(v6 ? AF_INET6 : AF_INET, tok, want) == 1;
    mqtt_proxy_hdr h;
    int n = mqtt_proxy_parse((const uint8_t *)line, (size_t)len, MQTT_PROXY_V1, &h);
    if (ok) {
        CHECK(n == len && memcmp(h.src.addr, want, 16) == 0);
    } else {
        CHECK(n == MQTT_PROXY_BAD);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    headers_on(data, size);
    address_on(data, size, true);
    address_on(data, size, false);
    return 0;
}
