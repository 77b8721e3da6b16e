/* SPDX-License-Identifier: Apache-2.0 */
#include "bench/hist.h"

#include <math.h>
#include <string.h>

void hist_init(hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t hist_index(uint64_t v)
{
    if (v < HIST_SUB) {
        return (uint32_t)v;
    }
    if (v >> HIST_MAX_BITS) {
        return HIST_BUCKETS - 1;
    }
    uint32_t m = 63u - (uint32_t)__builtin_clzll(v); /* v in [2^m, 2^(m+1)) */
    uint32_t shift = m - HIST_SUB_BITS;
    /* Range m starts at bucket (m - SUB_BITS + 1) * SUB; the sub-bucket is
     * the SUB_BITS bits below the leading one. */
    return ((shift + 1u) << HIST_SUB_BITS) | (uint32_t)((v >> shift) & (HIST_SUB - 1u));
}

uint64_t hist_bucket_low(uint32_t i)
{
    uint32_t k = i >> HIST_SUB_BITS;
    uint64_t s = i & (HIST_SUB - 1u);
    if (k == 0) {
        return s;
    }
    return (HIST_SUB + s) << (k - 1u);
}

uint64_t hist_bucket_high(uint32_t i)
{
    uint32_t k = i >> HIST_SUB_BITS;
    if (k == 0) {
        return i;
    }
    return hist_bucket_low(i) + (UINT64_C(1) << (k - 1u)) - 1u;
}

void hist_record(hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) {
        h->min = v;
    }
    if (v > h->max) {
        h->max = v;
    }
}

void hist_merge(hist *dst, const hist *src)
{
    if (src->count == 0) {
        return;
    }
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        dst->counts[i] += src->counts[i];
    }
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

uint64_t hist_percentile(const hist *h, double pct)
{
    if (h->count == 0) {
        return 0;
    }
    if (pct <= 0.0) {
        return h->min;
    }
    if (pct >= 100.0) {
        return h->max;
    }
    /* The tolerance keeps 99.9% of 1000 at 999: the product comes out a
     * hair above it in binary floating point. */
    uint64_t want = (uint64_t)ceil(pct / 100.0 * (double)h->count * (1.0 - 1e-12));
    if (want == 0) {
        want = 1;
    }
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_bucket_high(i);
            if (v > h->max) {
                v = h->max;
            }
            return v < h->min ? h->min : v;
        }
    }
    return h->max;
}

double hist_mean(const hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
