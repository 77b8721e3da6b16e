/* SPDX-License-Identifier: Apache-2.0 */
#include "bench/track.h"

#include <string.h>

#include "common/alloc.h"

static void put32(uint8_t *d, uint32_t v)
{
    memcpy(d, &v, 4);
}

static uint32_t get32(const uint8_t *s)
{
    uint32_t v;
    memcpy(&v, s, 4);
    return v;
}

void track_stamp_write(const track_stamp *s, uint8_t *dst, size_t len)
{
    put32(dst, TRACK_MAGIC);
    put32(dst + 4, s->pub);
    put32(dst + 8, s->seq);
    memcpy(dst + 12, &s->intended_ns, 8);
    for (size_t i = TRACK_HEADER; i < len; i++) {
        dst[i] = (uint8_t)('a' + i % 26);
    }
}

bool track_stamp_read(const uint8_t *src, size_t len, track_stamp *out)
{
    if (len < TRACK_HEADER || get32(src) != TRACK_MAGIC) {
        return false;
    }
    out->pub = get32(src + 4);
    out->seq = get32(src + 8);
    memcpy(&out->intended_ns, src + 12, 8);
    return true;
}

void track_init(track *t)
{
    memset(t, 0, sizeof(*t));
}

static bool bit_get(const track *t, uint64_t seq)
{
    uint64_t i = seq % TRACK_WINDOW;
    return (t->bits[i / 64] >> (i % 64)) & 1u;
}

static void bit_set(track *t, uint64_t seq, bool on)
{
    uint64_t i = seq % TRACK_WINDOW;
    uint64_t m = UINT64_C(1) << (i % 64);
    t->bits[i / 64] = on ? (t->bits[i / 64] | m) : (t->bits[i / 64] & ~m);
}

track_result track_seen(track *t, uint64_t seq)
{
    if (seq >= t->next) {
        /* Forget the slots the window slides over: they now stand for the
         * skipped (so far missing) numbers next..seq-1. */
        if (seq - t->next >= TRACK_WINDOW) {
            memset(t->bits, 0, sizeof(t->bits));
        } else {
            for (uint64_t s = t->next; s < seq; s++) {
                bit_set(t, s, false);
            }
        }
        bit_set(t, seq, true);
        t->next = seq + 1;
        t->distinct++;
        return TRACK_NEW;
    }
    if (t->next - seq <= TRACK_WINDOW && bit_get(t, seq)) {
        t->dup++;
        return TRACK_DUP;
    }
    if (t->next - seq <= TRACK_WINDOW) {
        bit_set(t, seq, true);
    }
    t->late++;
    t->distinct++;
    return TRACK_LATE;
}

void track_map_init(track_map *m)
{
    memset(m, 0, sizeof(*m));
}

void track_map_free(track_map *m)
{
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->keys[i]) {
            sh_free(m->vals[i], sizeof(track));
        }
    }
    sh_free(m->keys, sizeof(uint32_t) * m->cap);
    sh_free(m->vals, sizeof(track *) * m->cap);
    track_map_init(m);
}

static uint32_t slot_of(const track_map *m, uint32_t key)
{
    uint32_t h = key * 2654435761u;
    uint32_t i = h & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key) {
        i = (i + 1) & (m->cap - 1);
    }
    return i;
}

static void grow(track_map *m)
{
    track_map old = *m;
    m->cap = old.cap ? old.cap * 2 : 8;
    m->keys = sh_calloc(m->cap, sizeof(uint32_t));
    m->vals = sh_calloc(m->cap, sizeof(track *));
    for (uint32_t i = 0; i < old.cap; i++) {
        if (old.keys[i]) {
            uint32_t j = slot_of(m, old.keys[i]);
            m->keys[j] = old.keys[i];
            m->vals[j] = old.vals[i];
        }
    }
    sh_free(old.keys, sizeof(uint32_t) * old.cap);
    sh_free(old.vals, sizeof(track *) * old.cap);
}

track *track_map_get(track_map *m, uint32_t pub)
{
    uint32_t key = pub + 1;
    if (m->cap == 0 || (m->used + 1) * 2 > m->cap) {
        grow(m);
    }
    uint32_t i = slot_of(m, key);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->vals[i] = sh_malloc(sizeof(track));
        track_init(m->vals[i]);
        m->used++;
    }
    return m->vals[i];
}

const track *track_map_find(const track_map *m, uint32_t pub)
{
    if (m->cap == 0) {
        return NULL;
    }
    uint32_t i = slot_of(m, pub + 1);
    return m->keys[i] ? m->vals[i] : NULL;
}
