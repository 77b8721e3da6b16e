/* SPDX-License-Identifier: Apache-2.0 */
#include "cluster/rk_clock.h"

#include <string.h>

void rk_clocks_init(rk_clocks *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
}

void rk_clocks_destroy(rk_clocks *c)
{
    pthread_mutex_destroy(&c->lock);
}

static size_t clamp_len(size_t len)
{
    return len > RK_CLOCK_ID_MAX ? RK_CLOCK_ID_MAX : len;
}

static rk_clock_writer *find(rk_clocks *c, const uint8_t *id, size_t len)
{
    len = clamp_len(len);
    for (size_t i = 0; i < RK_CLOCK_WRITERS; i++) {
        rk_clock_writer *w = &c->w[i];
        if (w->used && w->id_len == len && memcmp(w->id, id, len) == 0) {
            return w;
        }
    }
    return NULL;
}

/* A free entry, else the writer read least recently (a node long gone). */
static rk_clock_writer *make_room(rk_clocks *c)
{
    rk_clock_writer *old = &c->w[0];
    for (size_t i = 0; i < RK_CLOCK_WRITERS; i++) {
        if (!c->w[i].used) {
            return &c->w[i];
        }
        if (c->w[i].last_ms < old->last_ms) {
            old = &c->w[i];
        }
    }
    return old;
}

void rk_clocks_observe(rk_clocks *c, const uint8_t *writer, size_t len, int64_t ts_ms, uint64_t now_unix_ms,
                       uint64_t now_mono_ms)
{
    if (ts_ms <= 0 || len == 0) {
        return;
    }
    int64_t d = (int64_t)now_unix_ms - ts_ms;
    pthread_mutex_lock(&c->lock);
    rk_clock_writer *w = find(c, writer, len);
    if (!w) {
        w = make_room(c);
        memset(w, 0, sizeof(*w));
        w->used = true;
        w->id_len = (uint8_t)clamp_len(len);
        memcpy(w->id, writer, w->id_len);
        w->cur = d;
        w->window_ms = now_mono_ms;
    } else if (now_mono_ms - w->window_ms >= RK_CLOCK_WINDOW_MS) {
        /* A new window (rk_clocks_offset drops the previous one when the
         * writer's clock stepped). */
        w->prev = w->cur;
        w->has_prev = true;
        w->cur = d;
        w->window_ms = now_mono_ms;
    } else if (d < w->cur) {
        w->cur = d;
    }
    w->last_ms = now_mono_ms;
    pthread_mutex_unlock(&c->lock);
}

bool rk_clocks_offset(rk_clocks *c, const uint8_t *writer, size_t len, int64_t *offset_ms)
{
    pthread_mutex_lock(&c->lock);
    rk_clock_writer *w = find(c, writer, len);
    if (w) {
        int64_t step = w->prev - w->cur;
        bool same_clock = w->has_prev && step <= RK_CLOCK_STEP_MS && step >= -RK_CLOCK_STEP_MS;
        *offset_ms = same_clock && w->prev < w->cur ? w->prev : w->cur;
    }
    pthread_mutex_unlock(&c->lock);
    return w != NULL;
}

uint64_t rk_expiry_local(uint64_t expiry_at_unix_ms, int64_t offset_ms)
{
    if (expiry_at_unix_ms == 0) {
        return 0;
    }
    int64_t local = (int64_t)(expiry_at_unix_ms > INT64_MAX ? INT64_MAX : expiry_at_unix_ms);
    if (offset_ms > 0 && local > INT64_MAX - offset_ms) {
        return UINT64_MAX; /* far in the future either way */
    }
    local += offset_ms;
    return local > 0 ? (uint64_t)local : 1; /* long expired, still an expiry */
}
