/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/http/json.h"

Test(json, writer_places_commas)
{
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "a");
    json_u64(&j, 1);
    json_key(&j, "b");
    json_arr(&j);
    json_str(&j, "x");
    json_bool(&j, true);
    json_null(&j);
    json_obj(&j);
    json_obj_end(&j);
    json_i64(&j, -5);
    json_arr_end(&j);
    json_key(&j, "c");
    json_raw(&j, "{\"d\":2}", 7);
    json_key(&j, "e");
    json_str(&j, NULL);
    json_obj_end(&j);
    cr_expect_str_eq(j.p, "{\"a\":1,\"b\":[\"x\",true,null,{},-5],\"c\":{\"d\":2},\"e\":null}");
    json_buf_free(&j);
}

Test(json, writer_escapes)
{
    json_buf j = {0};
    json_str(&j, "q\"b\\n\nt\tc\x01"
                 "d\x7f"
                 "é");
    cr_expect_str_eq(j.p, "\"q\\\"b\\\\n\\nt\\tc\\u0001d\\u007fé\"");
    json_buf_free(&j);
}

Test(json, writer_strn_keeps_embedded_bytes)
{
    json_buf j = {0};
    json_strn(&j, "a\0b", 3);
    cr_expect_str_eq(j.p, "\"a\\u0000b\"");
    json_buf_free(&j);
}

Test(json, take_hands_over_and_empties)
{
    size_t base = sh_allocated();
    json_buf j = {0};
    size_t cap;
    char *empty = json_take(&j, &cap);
    cr_expect_str_eq(empty, "");
    sh_free(empty, cap);
    json_u64(&j, 42);
    char *p = json_take(&j, &cap);
    cr_expect_str_eq(p, "42");
    cr_expect_null(j.p);
    cr_expect_eq(j.len, 0);
    sh_free(p, cap);
    cr_expect_eq(sh_allocated(), base);
}

Test(json, roundtrip_through_reader)
{
    json_buf j = {0};
    json_obj(&j);
    json_key(&j, "id");
    json_str(&j, "we\"ird\\ id\n\x01 ü 😀");
    json_key(&j, "n");
    json_u64(&j, 123456789);
    json_obj_end(&j);
    json_val *v = json_parse(j.p, j.len);
    cr_assert_not_null(v);
    cr_expect_str_eq(json_get(v, "id")->str, "we\"ird\\ id\n\x01 ü 😀");
    cr_expect_eq(json_get(v, "n")->num, 123456789.0);
    cr_expect_null(json_get(v, "missing"));
    json_free(v);
    json_buf_free(&j);
}

Test(json, reader_values)
{
    const char *doc = " {\"a\": [1, -2.5e1, true, false, null, \"s\", {}], \"b\": {\"c\": []}} ";
    json_val *v = json_parse(doc, strlen(doc));
    cr_assert_not_null(v);
    const json_val *a = json_get(v, "a");
    cr_assert_eq(a->type, JSON_ARR);
    cr_assert_eq(a->n, 7);
    cr_expect_eq(a->items[0].num, 1);
    cr_expect_eq(a->items[1].num, -25);
    cr_expect(a->items[2].type == JSON_BOOL && a->items[2].b);
    cr_expect(a->items[3].type == JSON_BOOL && !a->items[3].b);
    cr_expect_eq(a->items[4].type, JSON_NULL);
    cr_expect_str_eq(a->items[5].str, "s");
    cr_expect_eq(a->items[6].type, JSON_OBJ);
    cr_expect_eq(json_get(json_get(v, "b"), "c")->type, JSON_ARR);
    json_free(v);
}

Test(json, reader_unicode_escapes)
{
    const char *doc = "\"\\u00e9\\ud83d\\ude00\\/\\b\"";
    json_val *v = json_parse(doc, strlen(doc));
    cr_assert_not_null(v);
    cr_expect_str_eq(v->str, "é😀/\b");
    json_free(v);
}

Test(json, reader_refuses_every_proper_prefix)
{
    const char *doc = "{\"a\":[1,\"x\\u00e9\",true,null],\"b\":{\"c\":false}}";
    size_t n = strlen(doc);
    for (size_t i = 0; i < n; i++) {
        char *copy = malloc(i + 1);
        memcpy(copy, doc, i);
        json_val *v = json_parse(copy, i);
        cr_expect_null(v, "prefix of %zu bytes parsed", i);
        json_free(v);
        free(copy);
    }
    json_val *v = json_parse(doc, n);
    cr_expect_not_null(v);
    json_free(v);
}

Test(json, reader_refuses_bad_input)
{
    const char *bad[] = {
        "",         "{",       "[1,]",      "{\"a\" 1}",   "{\"a\":1,}",  "tru",
        "nul",      "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\u0000\"",
        "\"a\nb\"", "1 2",     "--1",       "{1:2}",       "[1}",         "01x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_val *v = json_parse(bad[i], strlen(bad[i]));
        cr_expect_null(v, "accepted '%s'", bad[i]);
        json_free(v);
    }
}

Test(json, reader_limits_nesting)
{
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    cr_expect_null(json_parse(deep, sizeof(deep)));
    json_val *ok = json_parse(deep + 40, 120); /* 60 levels */
    cr_expect_not_null(ok);
    json_free(ok);
}
