/* SPDX-License-Identifier: Apache-2.0 */
/* common/alloc.c: every allocation is counted and every free uncounts it. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "common/alloc.h"

Test(alloc, malloc_and_free_are_counted)
{
    size_t before = sh_allocated();
    void *p = sh_malloc(100);
    cr_assert_eq(sh_allocated(), before + 100);
    sh_free(p, 100);
    cr_assert_eq(sh_allocated(), before);
}

Test(alloc, calloc_zeroes_and_counts)
{
    size_t before = sh_allocated();
    unsigned char *p = sh_calloc(10, 7);
    for (int i = 0; i < 70; i++) {
        cr_assert_eq(p[i], 0);
    }
    cr_assert_eq(sh_allocated(), before + 70);
    sh_free(p, 70);
    cr_assert_eq(sh_allocated(), before);
}

Test(alloc, realloc_moves_the_count)
{
    size_t before = sh_allocated();
    char *p = sh_malloc(8);
    memcpy(p, "abcdefg", 8);
    p = sh_realloc(p, 8, 4096);
    cr_assert_str_eq(p, "abcdefg");
    cr_assert_eq(sh_allocated(), before + 4096);
    p = sh_realloc(p, 4096, 16);
    cr_assert_eq(sh_allocated(), before + 16);
    sh_free(p, 16);
    cr_assert_eq(sh_allocated(), before);
}

Test(alloc, strings_are_sized_by_their_length)
{
    size_t before = sh_allocated();
    char *a = sh_strdup("hello");
    char *b = sh_strndup("hello world", 5);
    cr_assert_str_eq(a, "hello");
    cr_assert_str_eq(b, "hello");
    cr_assert_eq(sh_allocated(), before + 12);
    sh_free_str(a);
    sh_free_str(b);
    sh_free_str(NULL);
    cr_assert_eq(sh_allocated(), before);
}

Test(alloc, free_of_null_changes_nothing)
{
    size_t before = sh_allocated();
    sh_free(NULL, 1234);
    cr_assert_eq(sh_allocated(), before);
}

/* A size the multiplication would wrap must abort, not allocate a small
 * block that the caller then overruns. */
Test(alloc, calloc_overflow_aborts, .signal = SIGABRT)
{
    sh_calloc((size_t)-1 / 2, 3);
}
