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

void rk_refclock_init(rk_refclock *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
}

void rk_refclock_destroy(rk_refclock *c)
{
    pthread_mutex_destroy(&c->lock);
}

bool rk_refclock_add(rk_refclock *c, uint64_t sent_us, uint64_t recv_us, int64_t ref_us)
{
    if (recv_us < sent_us || ref_us <= 0) {
        return false;
    }
    uint64_t rtt = recv_us - sent_us;
    /* Redis read its clock between the send and the answer: the midpoint
     * is off by at most half the round trip either way. */
    uint64_t mid = sent_us + rtt / 2;
    pthread_mutex_lock(&c->lock);
    c->s[c->next] = (rk_refclock_sample){.offset_us = ref_us - (int64_t)mid, .rtt_us = rtt, .at_us = recv_us};
    c->next = (c->next + 1) % RK_REFCLOCK_SAMPLES;
    if (c->n < RK_REFCLOCK_SAMPLES) {
        c->n++;
    }
    pthread_mutex_unlock(&c->lock);
    return true;
}

/* Half the round trip, plus what the clocks may have drifted apart since. */
static uint64_t sample_error(const rk_refclock_sample *s, uint64_t now_us)
{
    uint64_t age = now_us > s->at_us ? now_us - s->at_us : 0;
    return s->rtt_us / 2 + age / (1000000u / RK_REFCLOCK_DRIFT_PPM);
}

bool rk_refclock_offset(rk_refclock *c, uint64_t now_us, int64_t *offset_us, uint64_t *err_us)
{
    pthread_mutex_lock(&c->lock);
    const rk_refclock_sample *best = NULL;
    uint64_t best_err = 0;
    for (unsigned i = 0; i < c->n; i++) {
        uint64_t e = sample_error(&c->s[i], now_us);
        if (!best || e < best_err) {
            best = &c->s[i];
            best_err = e;
        }
    }
    if (best) {
        *offset_us = best->offset_us;
        if (err_us) {
            *err_us = best_err;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return best != NULL;
}

uint64_t rk_expiry_move(uint64_t expiry_ms, uint64_t now_from_ms, uint64_t now_to_ms)
{
    if (expiry_ms == 0) {
        return 0;
    }
    if (expiry_ms <= now_from_ms) {
        /* Expired already: as long ago on the other clock, at least 1. */
        uint64_t ago = now_from_ms - expiry_ms;
        return now_to_ms > ago ? now_to_ms - ago : 1;
    }
    uint64_t left = expiry_ms - now_from_ms;
    return now_to_ms > UINT64_MAX - left ? UINT64_MAX : now_to_ms + left;
}
