/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for node/mqtt/session_codec.c: a session record read
 * from Redis, which a corrupted or hostile record must not turn into a
 * crash, a leak or a state the node cannot handle.
 *
 * The input is decoded. A refused record must leave nothing allocated (a
 * leak is reported by LeakSanitizer). An accepted one must hold what the
 * decoder promises (every filter valid, counts within the SC_MAX_ limits,
 * packet ids non-zero, states 1-3), must encode again, and the encoding
 * must decode to the same state. Any broken invariant aborts, which
 * libFuzzer reports as a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/mqtt/session_codec.h"
#include "proto/topic.h"
#include "tests/fuzz/fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool bytes_eq(mqtt_bytes a, mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void check_valid(const sc_state *st)
{
    CHECK(st->proto_version >= 3 && st->proto_version <= 5);
    CHECK(st->n_subs <= SC_MAX_SUBS && st->n_qos2 <= SC_MAX_QOS2 && st->n_inflight <= SC_MAX_INFLIGHT);
    CHECK(st->n_parts <= SC_MAX_PARTS && st->n_rules <= SC_MAX_RULES);
    CHECK(st->n_parts || st->n_rules == 0);
    for (uint32_t i = 0; i < st->n_subs; i++) {
        const sc_sub *s = &st->subs[i];
        mqtt_bytes group, filter;
        int shared = mqtt_share_parse(s->filter.p, s->filter.len, &group, &filter);
        CHECK(s->filter.len > 0 && shared >= 0);
        CHECK(shared ? mqtt_topic_filter_valid(filter.p, filter.len)
                     : mqtt_topic_filter_valid(s->filter.p, s->filter.len));
        CHECK(s->opts.qos <= 2 && s->opts.retain_handling <= 2);
    }
    for (uint32_t i = 0; i < st->n_qos2; i++) {
        CHECK(st->qos2_in[i] != 0);
    }
    for (uint32_t i = 0; i < st->n_inflight; i++) {
        const sc_inflight *f = &st->inflight[i];
        CHECK(f->pid != 0 && f->state >= 1 && f->state <= 3 && f->part >= -1 && f->off >= -1);
    }
    for (uint32_t p = 0; p < st->n_parts; p++) {
        CHECK(st->pos[p] >= -1);
    }
    for (uint32_t i = 0; i < st->n_rules; i++) {
        const sc_rule *r = &st->rules[i];
        CHECK(r->node.len <= SC_MAX_NODE_ID && r->hi_own && r->hi_other);
        /* A node id is a C string to the stream (session_stream.c). */
        CHECK(memchr(r->node.p, 0, r->node.len) == NULL);
    }
    if (st->has_will) {
        CHECK(st->will.qos <= 2 && mqtt_topic_name_valid(st->will.topic.p, st->will.topic.len));
    }
}

static void check_same(const sc_state *a, const sc_state *b)
{
    CHECK(a->proto_version == b->proto_version && a->expiry_s == b->expiry_s && a->has_will == b->has_will);
    if (a->has_will) {
        const sc_will *x = &a->will, *y = &b->will;
        CHECK(bytes_eq(x->topic, y->topic) && bytes_eq(x->payload, y->payload) && bytes_eq(x->props, y->props));
        CHECK(x->delay_s == y->delay_s && x->expiry_s == y->expiry_s && x->qos == y->qos && x->retain == y->retain);
    }
    CHECK(a->n_subs == b->n_subs && a->n_qos2 == b->n_qos2 && a->n_inflight == b->n_inflight);
    CHECK(a->n_parts == b->n_parts && a->n_rules == b->n_rules);
    for (uint32_t i = 0; i < a->n_subs; i++) {
        CHECK(bytes_eq(a->subs[i].filter, b->subs[i].filter));
        CHECK(memcmp(&a->subs[i].opts, &b->subs[i].opts, sizeof(sub_opts)) == 0);
    }
    CHECK(a->n_qos2 == 0 || memcmp(a->qos2_in, b->qos2_in, a->n_qos2 * sizeof(uint16_t)) == 0);
    for (uint32_t i = 0; i < a->n_inflight; i++) {
        const sc_inflight *x = &a->inflight[i], *y = &b->inflight[i];
        CHECK(x->pid == y->pid && x->state == y->state && x->part == y->part && x->off == y->off);
    }
    CHECK(a->n_parts == 0 || memcmp(a->pos, b->pos, a->n_parts * sizeof(int64_t)) == 0);
    for (uint32_t i = 0; i < a->n_rules; i++) {
        CHECK(bytes_eq(a->rules[i].node, b->rules[i].node));
        CHECK(memcmp(a->rules[i].hi_own, b->rules[i].hi_own, a->n_parts * sizeof(int64_t)) == 0);
        CHECK(memcmp(a->rules[i].hi_other, b->rules[i].hi_other, a->n_parts * sizeof(int64_t)) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: a read past the record is caught. */
    uint8_t *blob = malloc(size ? size : 1);
    memcpy(blob, data, size);
    sc_state st;
    sc_status rc = sc_decode(size ? blob : NULL, size, &st);
    if (rc != SC_OK) {
        CHECK(st.subs == NULL && st.qos2_in == NULL && st.inflight == NULL && st.pos == NULL && st.rules == NULL);
        free(blob);
        return 0;
    }
    check_valid(&st);
    uint8_t *out = NULL;
    uint32_t len = 0;
    CHECK(sc_encode(&st, &out, &len) == SC_OK);
    sc_state again;
    CHECK(sc_decode(out, len, &again) == SC_OK);
    check_same(&st, &again);
    sc_state_free(&again);
    sh_free(out, len);
    sc_state_free(&st);
    free(blob);
    return 0;
}
