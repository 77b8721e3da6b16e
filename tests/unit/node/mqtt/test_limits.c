/* SPDX-License-Identifier: Apache-2.0 */
/* The token bucket behind --max-publish-rate / --max-publish-bytes-rate,
 * topic level counting, and the names metrics export. */
#include <criterion/criterion.h>
#include <string.h>

#include "node/mqtt/limits.h"

Test(limits, bucket_starts_with_one_seconds_burst)
{
    token_bucket tb;
    tb_init(&tb, 50, 1000);
    int sent = 0;
    while (tb_ready(&tb)) {
        tb_take(&tb, 1);
        sent++;
    }
    cr_assert_eq(sent, 50);
    /* Empty: any fraction of a token lets the next one go (and puts the
     * bucket in debt), so 1 ms will do; after that one, 20 ms at 50/s. */
    cr_assert_eq(tb_wait_ms(&tb, 50), 1);
    tb_refill(&tb, 50, 1001);
    cr_assert(tb_ready(&tb));
    tb_take(&tb, 1);
    cr_assert_eq(tb_wait_ms(&tb, 50), 20);
}

Test(limits, bucket_rate_over_ten_seconds)
{
    token_bucket tb;
    tb_init(&tb, 50, 0);
    uint64_t now = 0;
    int sent = 0;
    /* A client sending as fast as it may, in 1 ms steps: one second's burst,
     * then exactly the rate. */
    for (now = 0; now <= 10000; now++) {
        tb_refill(&tb, 50, now);
        while (tb_ready(&tb)) {
            tb_take(&tb, 1);
            sent++;
        }
    }
    cr_assert(sent >= 50 + 500 - 1 && sent <= 50 + 500 + 1, "sent %d", sent);
}

Test(limits, wait_is_exact_for_a_debt)
{
    token_bucket tb;
    tb_init(&tb, 1000, 0); /* 1000 bytes/s */
    tb_take(&tb, 5000);    /* one large packet: 4000 bytes of debt */
    cr_assert_not(tb_ready(&tb));
    uint64_t w = tb_wait_ms(&tb, 1000);
    cr_assert_eq(w, 4001, "wait %llu", (unsigned long long)w);
    tb_refill(&tb, 1000, w - 1);
    cr_assert_not(tb_ready(&tb));
    tb_refill(&tb, 1000, w);
    cr_assert(tb_ready(&tb));
}

Test(limits, refill_caps_at_one_second_and_never_overflows)
{
    token_bucket tb;
    tb_init(&tb, 4000000000u, 0);
    tb_take(&tb, 1);
    tb_refill(&tb, 4000000000u, UINT64_C(1) << 62);
    cr_assert_eq(tb.milli, (int64_t)4000000000u * 1000);
    tb_refill(&tb, 4000000000u, (UINT64_C(1) << 62) + 5); /* already full */
    cr_assert_eq(tb.milli, (int64_t)4000000000u * 1000);
}

Test(limits, clock_going_back_changes_nothing)
{
    token_bucket tb;
    tb_init(&tb, 10, 500);
    tb_take(&tb, 10);
    tb_refill(&tb, 10, 400);
    cr_assert_not(tb_ready(&tb));
    cr_assert_eq(tb.last_ms, 500);
}

Test(limits, topic_levels)
{
    cr_assert_eq(limits_topic_levels((const uint8_t *)"a", 1), 1);
    cr_assert_eq(limits_topic_levels((const uint8_t *)"a/b/c", 5), 3);
    cr_assert_eq(limits_topic_levels((const uint8_t *)"/", 1), 2);
    cr_assert_eq(limits_topic_levels((const uint8_t *)"a//", 3), 3);
}

Test(limits, every_reason_and_limit_has_a_metric_name)
{
    for (int i = 0; i < DROP_COUNT; i++) {
        const char *n = drop_reason_name((drop_reason)i);
        cr_assert(n && *n && strcmp(n, "?") != 0, "drop reason %d", i);
    }
    for (int i = 0; i < LIMIT_COUNT; i++) {
        const char *n = limit_name((limit_kind)i);
        cr_assert(n && *n && strcmp(n, "?") != 0, "limit %d", i);
    }
    cr_assert_str_eq(drop_reason_name(DROP_QOS0_EVICTED), "queue-full-qos0-evicted");
    cr_assert_str_eq(limit_name(LIMIT_PUBLISH_RATE), "publish-rate");
}
