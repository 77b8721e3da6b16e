/* SPDX-License-Identifier: Apache-2.0 */
/* One allocator door: every allocation is counted and a failure aborts in
 * one place. Use sh_trymalloc only where a client controls the size. */
#ifndef SHOAL_COMMON_ALLOC_H
#define SHOAL_COMMON_ALLOC_H

#include <stddef.h>

void *sh_malloc(size_t n);
void *sh_calloc(size_t count, size_t n);
void *sh_realloc(void *p, size_t old_n, size_t n);
void sh_free(void *p, size_t n);
char *sh_strndup(const char *s, size_t n);
char *sh_strdup(const char *s);
/* Free a string made by sh_strdup/sh_strndup (its size is its length + 1). */
void sh_free_str(char *s);
/* Returns NULL on failure instead of aborting. */
void *sh_trymalloc(size_t n);

/* Bytes currently allocated through these functions, all threads. */
size_t sh_allocated(void);

#endif
