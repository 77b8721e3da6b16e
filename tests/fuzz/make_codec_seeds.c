/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_codec_seeds DIR: write a few session records (node/mqtt/
 * session_codec.c) into DIR as the seed corpus for fuzz_session_codec: an
 * empty one, one with a will, subscriptions (shared ones too), inbound
 * QoS 2 ids, in-flight entries and stream positions with marks, and all of
 * them at once. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/mqtt/session_codec.h"

#define B(s) ((mqtt_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static int write_state(const char *dir, const char *name, const sc_state *st)
{
    uint8_t *out;
    uint32_t len;
    if (sc_encode(st, &out, &len) != SC_OK) {
        fprintf(stderr, "%s: does not encode\n", name);
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) {
        perror(path);
        sh_free(out, len);
        return -1;
    }
    size_t n = fwrite(out, 1, len, fp);
    int rc = fclose(fp);
    sh_free(out, len);
    return n == len && rc == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rc = 0;
    sc_state st = {.proto_version = 5, .expiry_s = 3600};
    rc |= write_state(dir, "empty", &st);

    st.has_will = true;
    st.will = (sc_will){.topic = B("will/t"), .payload = B("gone"), .props = B("\x01\x01"), .delay_s = 5, .qos = 1};
    rc |= write_state(dir, "will", &st);
    st.has_will = false;

    sc_sub subs[] = {{B("a/+/c"), {.qos = 1, .sub_id = 7}},
                     {B("$share/g/x/#"), {.qos = 2, .no_local = true}},
                     {B("#"), {.rap = true, .retain_handling = 2}}};
    st.subs = subs;
    st.n_subs = 3;
    rc |= write_state(dir, "subs", &st);

    uint16_t qos2[] = {1, 2, 65535};
    st.qos2_in = qos2;
    st.n_qos2 = 3;
    sc_inflight inf[] = {{1, 1, 0, 10}, {2, 2, 1, 11}, {3, 3, -1, -1}};
    st.inflight = inf;
    st.n_inflight = 3;
    int64_t pos[] = {5, -1, 7}, own[] = {1, 2, 3}, other[] = {-1, 4, 5};
    sc_rule rules[] = {{B("node-a"), own, other}, {B("node-b"), other, own}};
    st.pos = pos;
    st.n_parts = 3;
    st.rules = rules;
    st.n_rules = 2;
    rc |= write_state(dir, "all", &st);

    st.has_will = true;
    st.proto_version = 4;
    rc |= write_state(dir, "all_will_v311", &st);
    return rc ? 1 : 0;
}
