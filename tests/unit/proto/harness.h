/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for the proto unit tests: guard-page placement (picohttpparser's
 * test.c trick: the input ends where a PROT_NONE page begins, so any
 * over-read crashes the forked test), and decode shortcuts. */
#ifndef SHOAL_TESTS_PROTO_HARNESS_H
#define SHOAL_TESTS_PROTO_HARNESS_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "packet_eq.h"
#include "proto/frame.h"
#include "proto/packet.h"
#include "vectors.h"

typedef struct guard {
    uint8_t *base;
    size_t size;
} guard;

/* Copy src[0..len) so that it ends exactly at a PROT_NONE page. */
static inline const uint8_t *guard_place(guard *g, const uint8_t *src, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + pg - 1) / pg;
    if (data_pages == 0) {
        data_pages = 1;
    }
    g->size = (data_pages + 1) * pg;
    g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(g->base != MAP_FAILED);
    uint8_t *fence = g->base + data_pages * pg;
    cr_assert_eq(mprotect(fence, pg, PROT_NONE), 0);
    if (len > 0) {
        memcpy(fence - len, src, len);
    }
    return fence - len;
}

static inline void guard_free(guard *g)
{
    munmap(g->base, g->size);
}

static inline const vec *vec_named(const char *name)
{
    for (size_t i = 0; i < N_VECTORS; i++) {
        if (strcmp(vectors[i].name, name) == 0) {
            return &vectors[i];
        }
    }
    cr_assert_fail("no vector %s", name);
    return NULL;
}

/* Frame the whole buffer (asserting it is exactly one packet). */
static inline void frame_exact(const uint8_t *b, size_t len, mqtt_frame *f)
{
    int n = mqtt_frame_parse(b, len, 0, f);
    cr_assert_eq(n, (int)len, "frame_parse gave %d for %zu bytes", n, len);
}

/* Frame and decode bytes that must be valid. */
static inline void decode_ok(const uint8_t *b, size_t len, uint8_t version, mqtt_packet *p)
{
    mqtt_frame f;
    frame_exact(b, len, &f);
    mqtt_rc rc = mqtt_decode(&f, version, p);
    cr_assert_eq(rc, MQTT_RC_SUCCESS, "decode gave 0x%02x (%s)", rc, mqtt_rc_name(rc));
}

#define DECODE_VEC(name, p) decode_ok(v_##name, sizeof(v_##name), vec_named(#name)->version, (p))

static inline bool str_is(mqtt_bytes b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.p, s, b.len) == 0);
}

#define BYTES_IS(b, s) cr_assert(str_is((b), (s)), "%s != \"%s\"", #b, (s))

/* The rc a corruption row yields: the framer's when it refuses, else the
 * decoder's. */
static inline uint8_t bad_rc(const bad *row)
{
    mqtt_frame f;
    mqtt_packet p;
    guard g;
    const uint8_t *b = guard_place(&g, row->bytes, row->len);
    int n = mqtt_frame_parse(b, row->len, row->max_size, &f);
    uint8_t rc;
    if (n == MQTT_BAD) {
        rc = f.rc;
    } else {
        cr_assert_eq(n, (int)row->len, "%s: frame_parse gave %d for %zu bytes", row->name, n, row->len);
        rc = (uint8_t)mqtt_decode(&f, row->version, &p);
    }
    guard_free(&g);
    return rc;
}

static inline void check_bad(const bad *row)
{
    uint8_t rc = bad_rc(row);
    cr_assert_eq(rc, row->rc, "%s: got 0x%02x (%s), want 0x%02x (%s)", row->name, rc, mqtt_rc_name(rc), row->rc,
                 mqtt_rc_name(row->rc));
}

/* Parameters are indices, not pointers: Criterion re-executes the test
 * binary for each parameter, and with ASLR a pointer into the parent's
 * tables means nothing in the child. */
static size_t param_idx[256] __attribute__((unused));

static inline struct criterion_test_params index_params(size_t n)
{
    cr_assert(n <= N_OF(param_idx));
    for (size_t i = 0; i < n; i++) {
        param_idx[i] = i;
    }
    return cr_make_param_array(size_t, param_idx, n);
}

#define VEC_PARAMS() return index_params(N_VECTORS)
#define TABLE_PARAMS(table) return index_params(N_OF(table))

#endif
