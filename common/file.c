/* SPDX-License-Identifier: Apache-2.0 */
#include "common/file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

char *sh_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    size_t cap = 4096, n = 0, r;
    char *s = sh_malloc(cap);
    while ((r = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            s = sh_realloc(s, cap, cap * 2);
            cap *= 2;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        sh_free(s, cap);
        errno = EIO;
        return NULL;
    }
    s[n] = '\0';
    /* Sized as a string, so that sh_free_str frees it. */
    return sh_realloc(s, cap, strlen(s) + 1);
}
