/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/mqtt/retain.h"
#include "proto/props.h"

static mqtt_bytes B(const char *s)
{
    return (mqtt_bytes){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static msg *mk(const char *topic, const char *payload)
{
    msg *m = msg_new(B(topic), NULL, B(payload), 1, true, 0, 0);
    cr_assert_not_null(m);
    return m;
}

/* Store and drop our own ref: the index keeps its own. */
static void put(retain *r, const char *topic, const char *payload)
{
    msg *m = mk(topic, payload);
    retain_set(r, m);
    msg_unref(m);
}

/* Message Expiry Interval (MQTT 5 §3.3.2.3.3) of `secs`, created at now_ms. */
static msg *mk_expiring(const char *topic, uint32_t secs, uint64_t now_ms)
{
    mqtt_props pr;
    memset(&pr, 0, sizeof(pr));
    pr.present = MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
    pr.message_expiry = secs;
    msg *m = msg_new(B(topic), &pr, B("x"), 0, true, 0, now_ms);
    cr_assert_not_null(m);
    return m;
}

typedef struct seen {
    size_t n;
    char topics[16][64];
} seen;

static void seen_cb(void *arg, msg *m)
{
    seen *s = arg;
    if (s->n < 16) {
        snprintf(s->topics[s->n], sizeof(s->topics[0]), "%.*s", m->topic_len, (const char *)m->topic);
    }
    s->n++;
}

static bool has(const seen *s, const char *topic)
{
    for (size_t i = 0; i < s->n && i < 16; i++) {
        if (strcmp(s->topics[i], topic) == 0) {
            return true;
        }
    }
    return false;
}

static size_t match(retain *r, const char *filter, seen *s)
{
    memset(s, 0, sizeof(*s));
    size_t n = retain_match(r, B(filter), 0, seen_cb, s);
    cr_expect_eq(n, s->n);
    return n;
}

static void count_cb(void *arg, msg *m)
{
    (void)m;
    (*(size_t *)arg)++;
}

static retain *sample(void)
{
    retain *r = retain_new();
    const char *topics[] = {"a", "a/b", "a/c", "a/b/c", "a/x/c", "b/c", "/a", "a//c", "$SYS/up", "$SYS/a/b"};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        put(r, topics[i], "payload");
    }
    return r;
}

Test(retain, set_and_exact_lookup)
{
    retain *r = sample();
    seen s;
    cr_expect_eq(retain_count(r), 10);
    cr_expect_eq(match(r, "a/b", &s), 1);
    cr_expect(has(&s, "a/b"));
    cr_expect_eq(match(r, "a/b/c", &s), 1);
    cr_expect_eq(match(r, "a/d", &s), 0);
    cr_expect_eq(match(r, "a/b/c/d", &s), 0);
    retain_free(r);
}

static void last_cb(void *arg, msg *m)
{
    *(msg **)arg = m;
}

Test(retain, replace_keeps_one_and_releases_the_old)
{
    retain *r = retain_new();
    msg *first = mk("t", "one");
    msg *second = mk("t", "two");
    retain_set(r, first);
    cr_expect_eq(atomic_load(&first->refs), 2);
    retain_set(r, second);
    cr_expect_eq(atomic_load(&first->refs), 1);
    cr_expect_eq(atomic_load(&second->refs), 2);
    cr_expect_eq(retain_count(r), 1);
    /* Setting the same message again is harmless. */
    retain_set(r, second);
    cr_expect_eq(atomic_load(&second->refs), 2);
    msg *got = NULL;
    cr_expect_eq(retain_match(r, B("t"), 0, last_cb, &got), 1);
    cr_expect_eq(got, second);
    msg_unref(first);
    msg_unref(second);
    retain_free(r);
}

/* MQTT §3.3.1.3: a retained PUBLISH with an empty payload deletes. */
Test(retain, empty_payload_deletes_the_topic)
{
    size_t base = sh_allocated();
    retain *r = retain_new();
    size_t empty = sh_allocated();
    msg *m = mk("a/b/c", "data");
    retain_set(r, m);
    put(r, "a/b/c", "");
    cr_expect_eq(retain_count(r), 0);
    cr_expect_eq(atomic_load(&m->refs), 1);
    seen s;
    cr_expect_eq(match(r, "a/#", &s), 0);
    msg_unref(m);
    cr_expect_eq(sh_allocated(), empty, "leaked %zu bytes", sh_allocated() - empty);
    /* Deleting what is not there is a no-op. */
    put(r, "nothing/here", "");
    cr_expect_eq(retain_count(r), 0);
    retain_free(r);
    cr_expect_eq(sh_allocated(), base);
}

Test(retain, delete_returns_whether_it_existed_and_prunes)
{
    retain *r = retain_new();
    size_t empty = sh_allocated();
    put(r, "a/b/c", "1");
    put(r, "a/b", "2");
    put(r, "a/b/c/d/e", "3");
    cr_expect_not(retain_delete(r, B("a")));
    cr_expect_not(retain_delete(r, B("a/b/c/d")));
    cr_expect_not(retain_delete(r, B("x")));
    cr_expect(retain_delete(r, B("a/b/c")));
    cr_expect_not(retain_delete(r, B("a/b/c")));
    seen s;
    cr_expect_eq(match(r, "a/b/c/d/e", &s), 1);
    cr_expect(retain_delete(r, B("a/b/c/d/e")));
    cr_expect(retain_delete(r, B("a/b")));
    cr_expect_eq(retain_count(r), 0);
    cr_expect_eq(sh_allocated(), empty, "leaked %zu bytes", sh_allocated() - empty);
    retain_free(r);
}

Test(retain, plus_walks_one_level)
{
    retain *r = sample();
    seen s;
    cr_expect_eq(match(r, "a/+", &s), 2);
    cr_expect(has(&s, "a/b"));
    cr_expect(has(&s, "a/c"));
    cr_expect_eq(match(r, "a/+/c", &s), 3);
    cr_expect(has(&s, "a/b/c"));
    cr_expect(has(&s, "a/x/c"));
    cr_expect(has(&s, "a//c"));
    cr_expect_eq(match(r, "+", &s), 1);
    cr_expect(has(&s, "a"));
    cr_expect_eq(match(r, "+/+", &s), 4);
    cr_expect(has(&s, "/a"));
    cr_expect(has(&s, "b/c"));
    retain_free(r);
}

Test(retain, hash_walks_the_subtree_and_its_parent)
{
    retain *r = sample();
    seen s;
    cr_expect_eq(match(r, "a/#", &s), 6);
    cr_expect(has(&s, "a"));
    cr_expect(has(&s, "a/b/c"));
    cr_expect(has(&s, "a//c"));
    cr_expect_not(has(&s, "b/c"));
    cr_expect_eq(match(r, "a/b/#", &s), 2);
    cr_expect_eq(match(r, "+/c/#", &s), 2);
    cr_expect(has(&s, "a/c"));
    cr_expect(has(&s, "b/c"));
    cr_expect_eq(match(r, "#", &s), 8);
    retain_free(r);
}

/* MQTT §4.7.2: leading wildcards skip '$' topics; "$SYS/#" finds them. */
Test(retain, dollar_topics_hidden_from_leading_wildcards)
{
    retain *r = sample();
    seen s;
    match(r, "#", &s);
    cr_expect_not(has(&s, "$SYS/up"));
    cr_expect_eq(match(r, "+/up", &s), 0);
    cr_expect_eq(match(r, "+/a/b", &s), 0);
    cr_expect_eq(match(r, "$SYS/#", &s), 2);
    cr_expect(has(&s, "$SYS/up"));
    cr_expect(has(&s, "$SYS/a/b"));
    cr_expect_eq(match(r, "$SYS/+", &s), 1);
    retain_free(r);
}

Test(retain, empty_levels_are_real_levels)
{
    retain *r = retain_new();
    put(r, "/", "1");
    put(r, "a/", "2");
    put(r, "/a", "3");
    seen s;
    cr_expect_eq(match(r, "/", &s), 1);
    cr_expect_eq(match(r, "+/+", &s), 3);
    cr_expect_eq(match(r, "+", &s), 0);
    cr_expect_eq(match(r, "a/+", &s), 1);
    cr_expect(has(&s, "a/"));
    cr_expect_eq(match(r, "/#", &s), 2);
    retain_free(r);
}

Test(retain, expired_messages_dropped_during_match)
{
    size_t base = sh_allocated();
    retain *r = retain_new();
    msg *soon = mk_expiring("e/soon", 1, 1000);
    msg *late = mk_expiring("e/late", 60, 1000);
    retain_set(r, soon);
    retain_set(r, late);
    put(r, "e/never", "x");
    put(r, "e/soon/child", "x");
    size_t n = 0;
    cr_expect_eq(retain_match(r, B("e/#"), 1999, count_cb, &n), 4);
    cr_expect_eq(retain_count(r), 4);
    n = 0;
    cr_expect_eq(retain_match(r, B("e/#"), 2000, count_cb, &n), 3);
    cr_expect_eq(n, 3);
    cr_expect_eq(retain_count(r), 3);
    cr_expect_eq(atomic_load(&soon->refs), 1, "the index let go of it");
    /* Exact lookups drop them too. */
    n = 0;
    cr_expect_eq(retain_match(r, B("e/late"), 61000, count_cb, &n), 0);
    cr_expect_eq(retain_count(r), 2);
    msg_unref(soon);
    msg_unref(late);
    cr_expect(retain_delete(r, B("e/never")));
    cr_expect(retain_delete(r, B("e/soon/child")));
    retain_free(r);
    cr_expect_eq(sh_allocated(), base);
}

Test(retain, hundred_thousand_topics)
{
    enum { N = 100000 };
    char t[64];
    retain *r = retain_new();
    size_t empty = sh_allocated();
    size_t msgs = 0;
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "devices/%d/status", i);
        msg *m = mk(t, "on");
        msgs += m->alloc_size;
        retain_set(r, m);
        msg_unref(m);
    }
    cr_assert_eq(retain_count(r), N);
    size_t used = sh_allocated() - empty - msgs;
    cr_log_info("retain: %zu index bytes for %d topics = %.1f bytes each (messages excluded)", used, N,
                (double)used / N);
    size_t n = 0;
    cr_expect_eq(retain_match(r, B("devices/+/status"), 0, count_cb, &n), N);
    n = 0;
    cr_expect_eq(retain_match(r, B("devices/#"), 0, count_cb, &n), N);
    seen s;
    cr_expect_eq(match(r, "devices/4242/status", &s), 1);
    cr_expect_eq(match(r, "devices/4242/+", &s), 1);
    cr_expect_eq(match(r, "devices/+/other", &s), 0);
    for (int i = 0; i < N; i += 2) {
        snprintf(t, sizeof(t), "devices/%d/status", i);
        cr_assert(retain_delete(r, B(t)));
    }
    n = 0;
    cr_expect_eq(retain_match(r, B("devices/+/status"), 0, count_cb, &n), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "devices/%d/status", i);
        cr_assert_eq(match(r, t, &s), (size_t)(i % 2), "%s", t);
    }
    for (int i = 1; i < N; i += 2) {
        snprintf(t, sizeof(t), "devices/%d/status", i);
        cr_assert(retain_delete(r, B(t)));
    }
    cr_expect_eq(sh_allocated(), empty);
    retain_free(r);
}

/* Matching and freeing do not recurse, so a very deep topic is fine. */
Test(retain, very_deep_topic)
{
    enum { LEVELS = 20000 };
    static char t[2 * LEVELS];
    for (int i = 0; i < LEVELS; i++) {
        t[2 * i] = 'x';
        t[2 * i + 1] = '/';
    }
    t[2 * LEVELS - 1] = '\0';
    retain *r = retain_new();
    put(r, t, "deep");
    size_t n = 0;
    cr_expect_eq(retain_match(r, B("#"), 0, count_cb, &n), 1);
    n = 0;
    cr_expect_eq(retain_match(r, B(t), 0, count_cb, &n), 1);
    retain_free(r);
}

Test(retain, free_releases_every_message)
{
    size_t base = sh_allocated();
    retain *r = sample();
    msg *kept = mk("k/e/p/t", "x");
    retain_set(r, kept);
    retain_free(r);
    cr_expect_eq(atomic_load(&kept->refs), 1);
    msg_unref(kept);
    cr_expect_eq(sh_allocated(), base);
}

/* --- expiry without a lookup, and the cap ------------------------------ */

static size_t match_all(retain *r, uint64_t now)
{
    size_t n = 0;
    return retain_match(r, B("#"), now, count_cb, &n);
}

/* Expired messages leave the index (and their memory is freed) when the
 * sweep runs, in deadline order, whatever was set in between. */
Test(retain, expire_frees_due_messages_without_a_lookup)
{
    size_t base = sh_allocated();
    retain *r = retain_new();
    const uint32_t secs[] = {5, 1, 3, 9, 2, 7};
    for (int i = 0; i < 6; i++) {
        char t[16];
        snprintf(t, sizeof(t), "e/%d", i);
        msg *m = mk_expiring(t, secs[i], 0);
        retain_set(r, m);
        msg_unref(m);
    }
    put(r, "forever", "x");
    cr_expect_eq(retain_next_expiry(r), 1000);
    cr_expect_eq(retain_expire(r, 999), 0);
    cr_expect_eq(retain_expire(r, 1000), 1);
    cr_expect_eq(retain_count(r), 6);
    cr_expect_eq(retain_next_expiry(r), 2000);
    cr_expect_eq(retain_expire(r, 5500), 3); /* 2, 3 and 5 s */
    cr_expect_eq(retain_count(r), 3);
    cr_expect_eq(match_all(r, 5500), 3);
    cr_expect_eq(retain_expire(r, 100000), 2);
    cr_expect_eq(retain_count(r), 1);
    cr_expect_eq(retain_next_expiry(r), 0, "only a message that never expires is left");
    retain_free(r);
    cr_expect_eq(sh_allocated(), base);
}

/* Replacing or deleting a message takes its deadline with it. */
Test(retain, replace_and_delete_update_the_deadlines)
{
    size_t base = sh_allocated();
    retain *r = retain_new();
    msg *m = mk_expiring("a/b", 1, 0);
    retain_set(r, m);
    msg_unref(m);
    put(r, "a/b", "kept"); /* no expiry now */
    cr_expect_eq(retain_next_expiry(r), 0);
    cr_expect_eq(retain_expire(r, 5000), 0);
    cr_expect_eq(retain_count(r), 1);
    m = mk_expiring("a/c", 2, 0);
    retain_set(r, m);
    msg_unref(m);
    m = mk_expiring("a/d", 4, 0);
    retain_set(r, m);
    msg_unref(m);
    cr_expect(retain_delete(r, B("a/c")));
    cr_expect_eq(retain_next_expiry(r), 4000);
    m = mk_expiring("a/d", 1, 0); /* an earlier deadline for the same topic */
    retain_set(r, m);
    msg_unref(m);
    cr_expect_eq(retain_next_expiry(r), 1000);
    cr_expect_eq(retain_expire(r, 1000), 1);
    cr_expect_eq(retain_count(r), 1);
    /* An expired one found by a lookup leaves the deadlines too. */
    m = mk_expiring("a/e", 1, 0);
    retain_set(r, m);
    msg_unref(m);
    cr_expect_eq(match_all(r, 2000), 1);
    cr_expect_eq(retain_next_expiry(r), 0);
    retain_free(r);
    cr_expect_eq(sh_allocated(), base);
}

/* Many deadlines: the sweep always takes the earliest first. */
Test(retain, expire_thousands_in_order)
{
    retain *r = retain_new();
    enum { N = 5000 };
    for (int i = 0; i < N; i++) {
        char t[16];
        snprintf(t, sizeof(t), "x/%d", i);
        msg *m = mk_expiring(t, (uint32_t)((i * 7919) % N + 1), 0);
        retain_set(r, m);
        msg_unref(m);
    }
    size_t gone = 0;
    for (uint64_t s = 1; s <= N; s += 97) {
        gone += retain_expire(r, s * 1000);
        cr_assert_eq(gone, s);
        cr_assert_eq(retain_count(r), N - s);
        cr_assert_eq(retain_next_expiry(r), (s + 1) * 1000);
    }
    retain_free(r);
}

/* At the cap a new topic is refused; replacing one is not; deleting frees
 * a slot. */
Test(retain, cap_refuses_new_topics_only)
{
    size_t base = sh_allocated();
    retain *r = retain_new();
    retain_set_max(r, 2);
    msg *a = mk("a", "1"), *b = mk("b", "1"), *c = mk("c", "1"), *a2 = mk("a", "2"), *del = mk("b", "");
    cr_expect_eq(retain_set(r, a), SH_OK);
    cr_expect_eq(retain_set(r, b), SH_OK);
    cr_expect(!retain_has_room(r, B("c")));
    cr_expect(retain_has_room(r, B("a")));
    cr_expect_eq(retain_set(r, c), SH_ERR);
    cr_expect_eq(retain_count(r), 2);
    cr_expect_eq(atomic_load(&c->refs), 1, "a refused message holds no ref");
    cr_expect_eq(retain_set(r, a2), SH_OK);
    cr_expect_eq(retain_set(r, del), SH_OK); /* deleting is always allowed */
    cr_expect_eq(retain_count(r), 1);
    cr_expect(retain_has_room(r, B("c")));
    cr_expect_eq(retain_set(r, c), SH_OK);
    cr_expect_eq(retain_count(r), 2);
    retain_set_max(r, 0); /* no limit */
    put(r, "d", "1");
    cr_expect_eq(retain_count(r), 3);
    retain_free(r);
    msg_unref(a);
    msg_unref(b);
    msg_unref(c);
    msg_unref(a2);
    msg_unref(del);
    cr_expect_eq(sh_allocated(), base);
}
