/* SPDX-License-Identifier: Apache-2.0 */
/* node/auth/acl.c: parsing the ACL file and checking access. */
#include <criterion/criterion.h>
#include <string.h>

#include "node/auth/auth.h"

static acl *parse(const char *text)
{
    char err[256] = "";
    acl *a = acl_parse(text, err, sizeof(err));
    cr_assert_not_null(a, "%s", err);
    return a;
}

static bool pub(const acl *a, const char *user, const char *cid, const char *topic)
{
    return acl_check_topic(a, user, cid, (const uint8_t *)topic, strlen(topic), ACL_WRITE);
}

static bool rd(const acl *a, const char *user, const char *cid, const char *topic)
{
    return acl_check_topic(a, user, cid, (const uint8_t *)topic, strlen(topic), ACL_READ);
}

static bool sub(const acl *a, const char *user, const char *cid, const char *filter)
{
    return acl_check_subscribe(a, user, cid, (const uint8_t *)filter, strlen(filter));
}

static const char *file = "# anonymous clients\n"
                          "topic read public/#\n"
                          "\n"
                          "user alice\n"
                          "topic readwrite alice/#\n"
                          "topic write cmd/+/in\n"
                          "topic news\n"
                          "user bob\n"
                          "topic read sensors/+/temp\n"
                          "pattern read users/%u/#\n"
                          "pattern write clients/%c/out\n";

Test(acl, topic_rules_by_user)
{
    acl *a = parse(file);
    cr_assert_eq(a->n, 7);
    cr_assert(rd(a, NULL, "c", "public/x"));
    cr_assert_not(pub(a, NULL, "c", "public/x"));
    cr_assert_not(rd(a, "alice", "c", "public/x")); /* anonymous rules are for anonymous clients */
    cr_assert(pub(a, "alice", "c", "alice/a/b"));
    cr_assert(rd(a, "alice", "c", "alice"));
    cr_assert(pub(a, "alice", "c", "cmd/7/in"));
    cr_assert_not(rd(a, "alice", "c", "cmd/7/in"));
    cr_assert(pub(a, "alice", "c", "news") && rd(a, "alice", "c", "news")); /* no word: readwrite */
    cr_assert_not(pub(a, "bob", "c", "alice/x"));
    cr_assert(rd(a, "bob", "c", "sensors/k/temp"));
    cr_assert_not(rd(a, "carol", "c", "sensors/k/temp")); /* default deny */
    acl_free(a);
}

Test(acl, patterns)
{
    acl *a = parse(file);
    cr_assert(rd(a, "carol", "c1", "users/carol/inbox"));
    cr_assert_not(rd(a, "carol", "c1", "users/dave/inbox"));
    cr_assert_not(rd(a, NULL, "c1", "users/%u/inbox")); /* no username: %u never matches */
    cr_assert(pub(a, NULL, "c1", "clients/c1/out"));
    cr_assert_not(pub(a, NULL, "c1", "clients/c2/out"));
    cr_assert_not(pub(a, "x", "+", "clients/+/out")); /* wildcards in ids never substitute */
    cr_assert_not(rd(a, "a/b", "c", "users/a/b/x"));
    acl_free(a);
}

Test(acl, subscribe_coverage)
{
    acl *a = parse(file);
    cr_assert(sub(a, "alice", "c", "alice/#"));
    cr_assert(sub(a, "alice", "c", "alice/+/x"));
    cr_assert(sub(a, "alice", "c", "alice"));
    cr_assert_not(sub(a, "alice", "c", "#"));
    cr_assert_not(sub(a, "alice", "c", "cmd/+/in")); /* write only */
    cr_assert(sub(a, "bob", "c", "sensors/+/temp"));
    cr_assert(sub(a, "bob", "c", "sensors/k/temp"));
    cr_assert_not(sub(a, "bob", "c", "sensors/#"));
    cr_assert_not(sub(a, "bob", "c", "sensors/+/#"));
    cr_assert(sub(a, "bob", "c", "users/bob/#"));
    cr_assert_not(sub(a, "bob", "c", "users/+/#"));
    acl_free(a);
}

Test(acl, covers)
{
    struct {
        const char *r, *s;
        bool ok;
    } v[] = {
        {"#", "a/b", true},         {"#", "#", true},        {"#", "$SYS/x", false},   {"+/x", "$SYS/x", false},
        {"$SYS/#", "$SYS/x", true}, {"a/+", "a/b", true},    {"a/+", "a/+", true},     {"a/+", "a/#", false},
        {"a/+", "a", false},        {"a/#", "a", true},      {"a/#", "a/+/c", true},   {"a/b", "a/+", false},
        {"a/b", "a/b", true},       {"a/b", "a/b/c", false}, {"a/+/c", "a/+/c", true}, {"a//b", "a//b", true},
        {"+/+", "a/b", true},       {"+/+", "a/b/c", false},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        cr_assert_eq(acl_filter_covers(v[i].r, strlen(v[i].r), (const uint8_t *)v[i].s, strlen(v[i].s)), v[i].ok,
                     "%s covers %s", v[i].r, v[i].s);
    }
}

Test(acl, parse_errors)
{
    const char *bad[] = {
        "topc read a\n", "topic\n", "topic read\n", "topic read a/#/b\n", "user\n", "pattern write a+\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        cr_assert_null(acl_parse(bad[i], err, sizeof(err)), "accepted: %s", bad[i]);
        cr_assert(strstr(err, "line 1"), "%s", err);
    }
    char err[256];
    cr_assert_null(acl_parse("# x\n\ntopic read ok\nbogus\n", err, sizeof(err)));
    cr_assert(strstr(err, "line 4"), "%s", err);
}

Test(acl, empty_denies_everything)
{
    acl *a = parse("# nothing\n");
    cr_assert_not(pub(a, NULL, "c", "a"));
    cr_assert_not(sub(a, "u", "c", "a"));
    acl_free(a);
}
