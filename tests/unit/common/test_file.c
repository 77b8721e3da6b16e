/* SPDX-License-Identifier: Apache-2.0 */
/* common/file.c: a whole file as a string. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/file.h"

static char path[64];

static void write_tmp(const char *data, size_t n)
{
    strcpy(path, "/tmp/shoal-test-file-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    close(fd);
}

Test(file, reads_small_and_large_files_and_frees_exactly)
{
    size_t sizes[] = {0, 1, 4094, 4095, 4096, 10000};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        char *data = malloc(n + 1);
        memset(data, 'x', n);
        write_tmp(data, n);
        size_t before = sh_allocated();
        char *s = sh_read_file(path);
        cr_assert_not_null(s);
        cr_assert_eq(strlen(s), n, "size %zu", n);
        cr_assert_eq(sh_allocated(), before + n + 1);
        sh_free_str(s);
        cr_assert_eq(sh_allocated(), before);
        unlink(path);
        free(data);
    }
}

Test(file, missing_file_sets_errno)
{
    errno = 0;
    cr_assert_null(sh_read_file("/nonexistent/shoal/file"));
    cr_assert_eq(errno, ENOENT);
}

Test(file, nul_byte_ends_the_text)
{
    write_tmp("ab\0cd", 5);
    size_t before = sh_allocated();
    char *s = sh_read_file(path);
    cr_assert_str_eq(s, "ab");
    sh_free_str(s);
    cr_assert_eq(sh_allocated(), before);
    unlink(path);
}
