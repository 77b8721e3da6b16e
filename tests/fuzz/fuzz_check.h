/* SPDX-License-Identifier: Apache-2.0 */
/* What every fuzz target asserts with: a failed invariant aborts, so
 * libFuzzer keeps the input that broke it. */
#ifndef SHOAL_TESTS_FUZZ_CHECK_H
#define SHOAL_TESTS_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif
