/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "bench/hist.h"

/* One histogram is ~35 KiB; keep them off the stack. */
static hist *new_hist(void)
{
    hist *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    hist_init(h);
    return h;
}

Test(hist, empty_reports_zero)
{
    hist *h = new_hist();
    cr_assert_eq(h->count, 0);
    cr_assert_eq(hist_percentile(h, 50), 0);
    cr_assert_eq(hist_percentile(h, 100), 0);
    cr_assert_float_eq(hist_mean(h), 0.0, 1e-9);
    free(h);
}

Test(hist, small_values_are_exact)
{
    hist *h = new_hist();
    for (uint64_t v = 0; v < 256; v++) {
        cr_assert_eq(hist_index(v), v);
        cr_assert_eq(hist_bucket_low((uint32_t)v), v);
        cr_assert_eq(hist_bucket_high((uint32_t)v), v);
        hist_record(h, v);
    }
    cr_assert_eq(hist_percentile(h, 50), 127);
    cr_assert_eq(hist_percentile(h, 0), 0);
    cr_assert_eq(hist_percentile(h, 100), 255);
    free(h);
}

Test(hist, every_value_lies_in_its_bucket_within_one_percent)
{
    srand(7);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = ((uint64_t)rand() << 31 ^ (uint64_t)rand()) >> (rand() % 62);
        if (v >> HIST_MAX_BITS) {
            continue;
        }
        uint32_t b = hist_index(v);
        cr_assert_lt(b, HIST_BUCKETS);
        uint64_t lo = hist_bucket_low(b);
        uint64_t hi = hist_bucket_high(b);
        cr_assert(lo <= v && v <= hi, "v=%lu in [%lu,%lu]", (unsigned long)v, (unsigned long)lo, (unsigned long)hi);
        /* 2 significant digits: a bucket spans less than 1% of its values. */
        cr_assert_leq((double)(hi - lo), (double)lo / 100.0);
    }
}

Test(hist, buckets_tile_the_range_without_gaps)
{
    for (uint32_t i = 1; i < HIST_BUCKETS; i++) {
        cr_assert_eq(hist_bucket_low(i), hist_bucket_high(i - 1) + 1, "bucket %u", i);
        cr_assert_eq(hist_index(hist_bucket_low(i)), i);
        cr_assert_eq(hist_index(hist_bucket_high(i)), i);
    }
    cr_assert_eq(hist_bucket_high(HIST_BUCKETS - 1), (UINT64_C(1) << HIST_MAX_BITS) - 1);
}

Test(hist, uniform_percentiles_within_one_percent)
{
    hist *h = new_hist();
    for (uint64_t v = 1; v <= 1000000; v++) {
        hist_record(h, v);
    }
    const double pcts[] = {10, 50, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        double want = pcts[i] * 10000.0;
        double got = (double)hist_percentile(h, pcts[i]);
        cr_assert(got >= want && got <= want * 1.01, "p%.1f: got %.0f want %.0f", pcts[i], got, want);
    }
    cr_assert_eq(h->min, 1);
    cr_assert_eq(h->max, 1000000);
    cr_assert_float_eq(hist_mean(h), 500000.5, 1e-6);
    free(h);
}

Test(hist, percentile_never_exceeds_max_nor_goes_below_min)
{
    hist *h = new_hist();
    hist_record(h, 1000001);
    cr_assert_eq(hist_percentile(h, 50), 1000001);
    cr_assert_eq(hist_percentile(h, 99.9), 1000001);
    /* Same bucket (4096 wide here): the bucket's top is capped at max. */
    hist_record(h, 1000002);
    cr_assert_eq(hist_percentile(h, 50), 1000002);
    hist_record(h, 3);
    cr_assert_eq(hist_percentile(h, 0), 3);
    cr_assert_eq(hist_percentile(h, 100), 1000002);
    free(h);
}

Test(hist, a_single_outlier_shows_in_the_tail_only)
{
    hist *h = new_hist();
    for (int i = 0; i < 999; i++) {
        hist_record(h, 100);
    }
    hist_record(h, 5000000);
    cr_assert_eq(hist_percentile(h, 50), 100);
    cr_assert_eq(hist_percentile(h, 99.9), 100);
    cr_assert_geq(hist_percentile(h, 99.95), 4950000);
    cr_assert_eq(hist_percentile(h, 100), 5000000);
    free(h);
}

Test(hist, huge_values_are_clamped_but_max_is_exact)
{
    hist *h = new_hist();
    uint64_t big = UINT64_C(1) << 50;
    hist_record(h, big);
    cr_assert_eq(hist_index(big), HIST_BUCKETS - 1);
    cr_assert_eq(h->max, big);
    cr_assert_eq(hist_percentile(h, 100), big);
    cr_assert_eq(hist_percentile(h, 50), big);
    free(h);
}

Test(hist, merge_equals_recording_everything_in_one)
{
    hist *a = new_hist();
    hist *b = new_hist();
    hist *all = new_hist();
    for (uint64_t v = 0; v < 50000; v++) {
        uint64_t x = (v * 7919) % 100003;
        hist_record(v % 3 ? a : b, x);
        hist_record(all, x);
    }
    hist_merge(a, b);
    cr_assert_eq(a->count, all->count);
    cr_assert_eq(a->min, all->min);
    cr_assert_eq(a->max, all->max);
    cr_assert_eq(a->sum, all->sum);
    cr_assert_arr_eq(a->counts, all->counts, sizeof(a->counts));
    for (double p = 0; p <= 100; p += 0.5) {
        cr_assert_eq(hist_percentile(a, p), hist_percentile(all, p));
    }
    free(a);
    free(b);
    free(all);
}

Test(hist, merging_an_empty_histogram_changes_nothing)
{
    hist *a = new_hist();
    hist *e = new_hist();
    hist_record(a, 42);
    hist_merge(a, e);
    cr_assert_eq(a->count, 1);
    cr_assert_eq(a->min, 42);
    hist_merge(e, a);
    cr_assert_eq(e->min, 42);
    cr_assert_eq(e->max, 42);
    free(a);
    free(e);
}

Test(hist, percentiles_are_monotonic)
{
    hist *h = new_hist();
    srand(3);
    for (int i = 0; i < 100000; i++) {
        hist_record(h, (uint64_t)(rand() % 1000) * (uint64_t)(rand() % 1000));
    }
    uint64_t prev = 0;
    for (double p = 0; p <= 100; p += 0.1) {
        uint64_t v = hist_percentile(h, p);
        cr_assert_geq(v, prev, "p%.1f", p);
        prev = v;
    }
    free(h);
}
