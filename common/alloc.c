/* SPDX-License-Identifier: Apache-2.0 */
#include "common/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_size_t allocated;

static void oom(size_t n)
{
    fprintf(stderr, "shoal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sh_trymalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p) {
        atomic_fetch_add_explicit(&allocated, n, memory_order_relaxed);
    }
    return p;
}

void *sh_malloc(size_t n)
{
    void *p = sh_trymalloc(n);
    if (!p) {
        oom(n);
    }
    return p;
}

void *sh_calloc(size_t count, size_t n)
{
    if (n && count > (size_t)-1 / n) {
        oom((size_t)-1);
    }
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) {
        oom(count * n);
    }
    atomic_fetch_add_explicit(&allocated, count * n, memory_order_relaxed);
    return p;
}

void *sh_realloc(void *p, size_t old_n, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        oom(n);
    }
    atomic_fetch_sub_explicit(&allocated, old_n, memory_order_relaxed);
    atomic_fetch_add_explicit(&allocated, n, memory_order_relaxed);
    return q;
}

void sh_free(void *p, size_t n)
{
    if (!p) {
        return;
    }
    atomic_fetch_sub_explicit(&allocated, n, memory_order_relaxed);
    free(p);
}

char *sh_strndup(const char *s, size_t n)
{
    char *d = sh_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sh_strdup(const char *s)
{
    return sh_strndup(s, strlen(s));
}

void sh_free_str(char *s)
{
    if (s) {
        sh_free(s, strlen(s) + 1);
    }
}

size_t sh_allocated(void)
{
    return atomic_load_explicit(&allocated, memory_order_relaxed);
}
