/* SPDX-License-Identifier: Apache-2.0 */
/* A log-linear latency histogram in the manner of HdrHistogram, with
 * 2 significant digits.
 *
 * Values below 2^(HIST_SUB_BITS+1) get one bucket each. Above that, every
 * power-of-two range [2^m, 2^(m+1)) is split into 2^HIST_SUB_BITS equal
 * buckets, so a bucket is never wider than 1/128 of its lowest value (an
 * error below 1%). Values of 2^HIST_MAX_BITS and more share the last
 * bucket; min and max are kept exactly.
 *
 * The struct is flat (no pointers), so it can live in memory shared by
 * forked processes and be merged by plain addition. */
#ifndef SHOAL_BENCH_HIST_H
#define SHOAL_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
/* 2^40 µs is about 12.7 days. */
#define HIST_MAX_BITS 40
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t sum; /* for the mean */
    uint64_t counts[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t v);
/* Adds every value of src to dst. */
void hist_merge(hist *dst, const hist *src);

/* The value at percentile pct (0..100): the highest value equivalent to
 * the bucket holding the ceil(pct% * count)-th smallest value, capped at
 * max. pct 0 gives min, 100 gives max; an empty histogram gives 0. */
uint64_t hist_percentile(const hist *h, double pct);
double hist_mean(const hist *h);

/* Bucket geometry (exported for the tests): the bucket of v, and the
 * lowest and highest values that fall into bucket i. */
uint32_t hist_index(uint64_t v);
uint64_t hist_bucket_low(uint32_t i);
uint64_t hist_bucket_high(uint32_t i);

#endif
