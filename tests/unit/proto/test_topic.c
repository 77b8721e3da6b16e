/* SPDX-License-Identifier: Apache-2.0 */
/* proto/topic.c: topic names, filters, $share parsing and matching. */
#include <stdlib.h>

#include "harness.h"
#include "proto/topic.h"

#define L(s) (const uint8_t *)(s), (sizeof(s) - 1)

typedef struct topic_case {
    const char *s;
    size_t len;
    bool name_ok;
    bool filter_ok;
} topic_case;

#define T(lit, name_ok, filter_ok)               \
    {                                            \
        lit, sizeof(lit) - 1, name_ok, filter_ok \
    }

/* §4.7.1 examples plus the edge cases around empty levels and '$'. */
static const topic_case topics[] = {
    T("a", true, true),
    T("a/b/c", true, true),
    T("/", true, true),
    T("/a", true, true),
    T("a/", true, true),
    T("a//b", true, true),
    T("//", true, true),
    T("$SYS/broker", true, true),
    T("sport/tennis/player1", true, true),
    T("caf\xC3\xA9", true, true),
    T(" ", true, true),
    T("", false, false),
    T("#", false, true),
    T("+", false, true),
    T("+/+", false, true),
    T("/+", false, true),
    T("+/", false, true),
    T("a/#", false, true),
    T("a/+/b", false, true),
    T("sport/tennis/#", false, true),
    T("+/tennis/#", false, true),
    T("a#", false, false),
    T("a/#/b", false, false),
    T("#/", false, false),
    T("a+", false, false),
    T("+a", false, false),
    T("a/b+/c", false, false),
    T("##", false, false),
    T("++", false, false),
    T("a/\xC0\xAF", false, false),
    T("a\x00"
      "b",
      false, false),
};

ParameterizedTestParameters(topic, name_and_filter_table)
{
    TABLE_PARAMS(topics);
}

ParameterizedTest(size_t *i, topic, name_and_filter_table)
{
    const topic_case *c = &topics[*i];
    guard g;
    const uint8_t *b = guard_place(&g, (const uint8_t *)c->s, c->len);
    cr_assert_eq(mqtt_topic_name_valid(b, c->len), c->name_ok, "name \"%s\"", c->s);
    cr_assert_eq(mqtt_topic_filter_valid(b, c->len), c->filter_ok, "filter \"%s\"", c->s);
    guard_free(&g);
}

Test(topic, length_limit_65535)
{
    uint8_t *s = malloc(65536);
    cr_assert(s);
    memset(s, 'a', 65536);
    cr_assert(mqtt_topic_name_valid(s, 65535));
    cr_assert(mqtt_topic_filter_valid(s, 65535));
    cr_assert(!mqtt_topic_name_valid(s, 65536));
    cr_assert(!mqtt_topic_filter_valid(s, 65536));
    free(s);
}

Test(topic, has_wildcard)
{
    cr_assert(mqtt_topic_filter_has_wildcard(L("a/+")));
    cr_assert(mqtt_topic_filter_has_wildcard(L("#")));
    cr_assert(mqtt_topic_filter_has_wildcard(L("a+b")));
    cr_assert(!mqtt_topic_filter_has_wildcard(L("a/b")));
    cr_assert(!mqtt_topic_filter_has_wildcard(NULL, 0));
}

typedef struct share_case {
    const char *s;
    size_t len;
    int want;
    const char *group;
    const char *filter;
} share_case;

#define SH(lit, want, group, filter)              \
    {                                             \
        lit, sizeof(lit) - 1, want, group, filter \
    }

static const share_case shares[] = {
    SH("$share/g/t", 1, "g", "t"),
    SH("$share/group/a/b/#", 1, "group", "a/b/#"),
    SH("$share/g/+", 1, "g", "+"),
    SH("$share/g//", 1, "g", "/"),
    SH("$share/g/$SYS/x", 1, "g", "$SYS/x"),
    SH("$share/g/#", 1, "g", "#"),
    SH("a/b", 0, NULL, NULL),
    SH("$SYS/x", 0, NULL, NULL),
    SH("$share", 0, NULL, NULL),
    SH("$sharex/g/t", 0, NULL, NULL),
    SH("$SHARE/g/t", 0, NULL, NULL),
    SH("", 0, NULL, NULL),
    SH("$share/", -1, NULL, NULL),
    SH("$share/g", -1, NULL, NULL),
    SH("$share/g/", -1, NULL, NULL),
    SH("$share//t", -1, NULL, NULL),
    SH("$share/+/t", -1, NULL, NULL),
    SH("$share/#/t", -1, NULL, NULL),
    SH("$share/g+/t", -1, NULL, NULL),
    SH("$share/g/a/#/b", -1, NULL, NULL),
    SH("$share/g/a+", -1, NULL, NULL),
    SH("$share/\xC0\xAF/t", -1, NULL, NULL),
};

ParameterizedTestParameters(topic, share_parse_table)
{
    TABLE_PARAMS(shares);
}

ParameterizedTest(size_t *i, topic, share_parse_table)
{
    const share_case *c = &shares[*i];
    guard g;
    mqtt_bytes group = {NULL, 77}, filter = {NULL, 77};
    const uint8_t *b = guard_place(&g, (const uint8_t *)c->s, c->len);
    int got = mqtt_share_parse(b, c->len, &group, &filter);
    cr_assert_eq(got, c->want, "\"%s\": got %d", c->s, got);
    if (c->want == 1) {
        BYTES_IS(group, c->group);
        BYTES_IS(filter, c->filter);
        cr_assert(group.p > b && filter.p > group.p, "slices of the input");
    } else if (c->want == 0) {
        cr_assert_eq(group.len, 77, "untouched when not shared");
        cr_assert_null(filter.p);
    }
    guard_free(&g);
}

typedef struct match_case {
    const char *f;
    const char *t;
    bool want;
} match_case;

/* §4.7.1.2, §4.7.1.3 and §4.7.2 examples and edge cases. */
static const match_case matches[] = {
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true},
    {"#", "sport", true},
    {"#", "a/b/c", true},
    {"#", "/", true},
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+", "sport", true},
    {"+", "/finance", false},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+/#", "a", true},
    {"+/#", "a/b/c", true},
    {"a/b", "a/b", true},
    {"a/b", "a/b/c", false},
    {"a/b/c", "a/b", false},
    {"a/b", "a/bc", false},
    {"a/bc", "a/b", false},
    {"a//b", "a//b", true},
    {"a/+/b", "a//b", true},
    {"a/+/b", "a/x/b", true},
    {"a/+/b", "a/x/y/b", false},
    {"/a", "/a", true},
    {"/a", "a", false},
    {"a/", "a", false},
    {"a/#", "a/", true},
    {"a/#", "ab", false},
    {"+/+/+", "a/b/c", true},
    {"+/+/+", "a/b", false},
    /* §4.7.2: first-level wildcards never match '$' topics. */
    {"#", "$SYS/broker/load", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"a/+", "a/$x", true},
    {"a/#", "a/$x", true},
    {"A/b", "a/b", false},
};

ParameterizedTestParameters(topic, match_table)
{
    TABLE_PARAMS(matches);
}

ParameterizedTest(size_t *i, topic, match_table)
{
    const match_case *c = &matches[*i];
    guard gf, gt;
    size_t fl = strlen(c->f), tl = strlen(c->t);
    const uint8_t *f = guard_place(&gf, (const uint8_t *)c->f, fl);
    const uint8_t *t = guard_place(&gt, (const uint8_t *)c->t, tl);
    cr_assert_eq(mqtt_topic_match(f, fl, t, tl), c->want, "\"%s\" vs \"%s\"", c->f, c->t);
    guard_free(&gf);
    guard_free(&gt);
}

Test(topic, match_empty_inputs_are_safe)
{
    cr_assert(mqtt_topic_match(NULL, 0, NULL, 0));
    cr_assert(!mqtt_topic_match(L("a"), NULL, 0));
    cr_assert(!mqtt_topic_match(NULL, 0, L("a")));
}

Test(topic, exact_filter_matches_itself)
{
    for (size_t i = 0; i < N_OF(topics); i++) {
        if (topics[i].name_ok) {
            const uint8_t *s = (const uint8_t *)topics[i].s;
            cr_assert(mqtt_topic_match(s, topics[i].len, s, topics[i].len), "%s", topics[i].s);
        }
    }
}
