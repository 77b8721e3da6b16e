/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "node/http/metrics_text.h"

#define EXPECT_TEXT(t, want) cr_expect_str_eq((t)->p ? (t)->p : "", (want))

Test(metrics_text, counter_has_help_type_and_exact_value)
{
    metrics_text t = {0};
    metrics_text_counter(&t, "shoal_messages_in_total", "PUBLISH packets received", 18446744073709551615ull);
    EXPECT_TEXT(&t, "# HELP shoal_messages_in_total PUBLISH packets received\n"
                    "# TYPE shoal_messages_in_total counter\n"
                    "shoal_messages_in_total 18446744073709551615\n");
    cr_expect_eq(t.len, strlen(t.p));
    metrics_text_free(&t);
}

Test(metrics_text, u64_beyond_double_precision_stays_exact)
{
    metrics_text t = {0};
    metrics_text_sample_u64(&t, "x_total", NULL, 0, (1ull << 53) + 1);
    EXPECT_TEXT(&t, "x_total 9007199254740993\n");
    metrics_text_free(&t);
}

Test(metrics_text, gauge_doubles_and_special_values)
{
    metrics_text t = {0};
    metrics_text_sample(&t, "g", NULL, 0, 0.25);
    metrics_text_sample(&t, "g", NULL, 0, -3);
    metrics_text_sample(&t, "g", NULL, 0, 1e-9);
    metrics_text_sample(&t, "g", NULL, 0, NAN);
    metrics_text_sample(&t, "g", NULL, 0, INFINITY);
    metrics_text_sample(&t, "g", NULL, 0, -INFINITY);
    EXPECT_TEXT(&t, "g 0.25\ng -3\ng 1e-09\ng NaN\ng +Inf\ng -Inf\n");
    metrics_text_free(&t);
}

Test(metrics_text, gauge_family)
{
    metrics_text t = {0};
    metrics_text_gauge(&t, "shoal_heap_bytes", "heap", 1024);
    EXPECT_TEXT(&t, "# HELP shoal_heap_bytes heap\n# TYPE shoal_heap_bytes gauge\nshoal_heap_bytes 1024\n");
    metrics_text_free(&t);
}

Test(metrics_text, labels_in_order_with_commas)
{
    metrics_text t = {0};
    metrics_label l[3] = {{"code", "0x98"}, {"reason", "admin-action"}, {"empty", ""}};
    metrics_text_sample_u64(&t, "d_total", l, 3, 7);
    EXPECT_TEXT(&t, "d_total{code=\"0x98\",reason=\"admin-action\",empty=\"\"} 7\n");
    metrics_text_free(&t);
}

Test(metrics_text, label_values_are_escaped)
{
    metrics_text t = {0};
    metrics_label l = {"client", "a\\b\"c\nd}e,f=g"};
    metrics_text_sample_u64(&t, "m", &l, 1, 1);
    EXPECT_TEXT(&t, "m{client=\"a\\\\b\\\"c\\nd}e,f=g\"} 1\n");
    metrics_text_free(&t);
}

Test(metrics_text, null_label_value_is_empty)
{
    metrics_text t = {0};
    metrics_label l = {"node", NULL};
    metrics_text_sample_u64(&t, "m", &l, 1, 1);
    EXPECT_TEXT(&t, "m{node=\"\"} 1\n");
    metrics_text_free(&t);
}

Test(metrics_text, help_escapes_backslash_and_newline_but_not_quotes)
{
    metrics_text t = {0};
    metrics_text_family(&t, "m", "gauge", "say \"hi\"\\now\nnext");
    EXPECT_TEXT(&t, "# HELP m say \"hi\"\\\\now\\nnext\n# TYPE m gauge\n");
    metrics_text_free(&t);
}

Test(metrics_text, histogram_buckets_are_cumulative)
{
    metrics_text t = {0};
    const double bounds[] = {0.005, 0.1, 1};
    const uint64_t counts[] = {2, 0, 3, 1}; /* last: above 1 */
    metrics_text_family(&t, "lat_seconds", "histogram", "latency");
    metrics_text_histogram(&t, "lat_seconds", NULL, 0, bounds, counts, 3, 4.5);
    EXPECT_TEXT(&t, "# HELP lat_seconds latency\n"
                    "# TYPE lat_seconds histogram\n"
                    "lat_seconds_bucket{le=\"0.005\"} 2\n"
                    "lat_seconds_bucket{le=\"0.1\"} 2\n"
                    "lat_seconds_bucket{le=\"1\"} 5\n"
                    "lat_seconds_bucket{le=\"+Inf\"} 6\n"
                    "lat_seconds_sum 4.5\n"
                    "lat_seconds_count 6\n");
    metrics_text_free(&t);
}

Test(metrics_text, histogram_keeps_labels_before_le)
{
    metrics_text t = {0};
    const double bounds[] = {1};
    const uint64_t counts[] = {1, 0};
    metrics_label l = {"handler", "/metrics"};
    metrics_text_histogram(&t, "h", &l, 1, bounds, counts, 1, 0.5);
    EXPECT_TEXT(&t, "h_bucket{handler=\"/metrics\",le=\"1\"} 1\n"
                    "h_bucket{handler=\"/metrics\",le=\"+Inf\"} 1\n"
                    "h_sum{handler=\"/metrics\"} 0.5\n"
                    "h_count{handler=\"/metrics\"} 1\n");
    metrics_text_free(&t);
}

Test(metrics_text, empty_histogram)
{
    metrics_text t = {0};
    const uint64_t counts[] = {0};
    metrics_text_histogram(&t, "h", NULL, 0, NULL, counts, 0, 0);
    EXPECT_TEXT(&t, "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
    metrics_text_free(&t);
}

Test(metrics_text, names)
{
    cr_expect(metrics_text_valid_name("shoal_messages_in_total", false));
    cr_expect(metrics_text_valid_name("job:rate5m", false));
    cr_expect(metrics_text_valid_name("_x9", false));
    cr_expect_not(metrics_text_valid_name("9x", false));
    cr_expect_not(metrics_text_valid_name("", false));
    cr_expect_not(metrics_text_valid_name(NULL, false));
    cr_expect_not(metrics_text_valid_name("a-b", false));
    cr_expect_not(metrics_text_valid_name("a b", false));
    cr_expect(metrics_text_valid_name("worker", true));
    cr_expect_not(metrics_text_valid_name("a:b", true));
    cr_expect_not(metrics_text_valid_name("__name__", true));
}

Test(metrics_text, grows_and_frees_every_byte)
{
    size_t base = sh_allocated();
    metrics_text t = {0};
    for (int i = 0; i < 5000; i++) {
        metrics_label l = {"worker", "12345678901234567890"};
        metrics_text_sample_u64(&t, "shoal_worker_loop_lag_seconds", &l, 1, (uint64_t)i);
    }
    cr_expect_eq(t.len, strlen(t.p));
    cr_expect(strstr(t.p, "shoal_worker_loop_lag_seconds{worker=\"12345678901234567890\"} 4999\n") != NULL);
    cr_expect(t.cap > t.len);
    metrics_text_free(&t);
    cr_expect_eq(sh_allocated(), base);
    cr_expect_null(t.p);
}
