/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's connection index (id → conn), which every delayed
 * completion uses to find its connection again. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/conn.h"
#include "node/worker.h"

static worker w;

static void setup(void)
{
    memset(&w, 0, sizeof(w));
}

static void teardown(void)
{
    sh_free(w.by_id, w.by_id_cap * sizeof(conn *));
}

TestSuite(worker, .init = setup, .fini = teardown);

Test(worker, index_finds_every_connection_and_forgets_removed_ones)
{
    enum { N = 5000 };
    conn *cs = calloc(N, sizeof(conn));
    for (int i = 0; i < N; i++) {
        /* Ids in clusters and far apart, as a long-running node sees them. */
        cs[i].id = i % 7 == 0 ? (uint64_t)i * 1000003u + 1 : (uint64_t)i + 1;
        worker_index_conn(&w, &cs[i]);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(worker_find_conn(&w, cs[i].id), &cs[i], "id %llu", (unsigned long long)cs[i].id);
    }
    /* Remove every third; the rest must stay reachable across the holes. */
    for (int i = 0; i < N; i += 3) {
        worker_unindex_conn(&w, &cs[i]);
    }
    for (int i = 0; i < N; i++) {
        conn *want = i % 3 == 0 ? NULL : &cs[i];
        cr_assert_eq(worker_find_conn(&w, cs[i].id), want, "id %llu after removals", (unsigned long long)cs[i].id);
    }
    cr_assert_eq(w.by_id_used, N - (N + 2) / 3);
    free(cs);
}

Test(worker, unknown_id_on_empty_and_full_index)
{
    cr_assert_null(worker_find_conn(&w, 42));
    conn c = {.id = 7};
    worker_index_conn(&w, &c);
    cr_assert_null(worker_find_conn(&w, 42));
    worker_unindex_conn(&w, &c);
    cr_assert_null(worker_find_conn(&w, 7));
    cr_assert_eq(w.by_id_used, 0);
}
