/* SPDX-License-Identifier: Apache-2.0 */
#include "bench/board.h"

#include <stddef.h>
#include <sys/mman.h>

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

board *board_create(uint32_t procs, uint32_t n_pubs)
{
    size_t head = align64(sizeof(board));
    size_t live = align64(sizeof(board_live) * procs);
    size_t res = align64(sizeof(board_result) * procs);
    size_t pubs = align64(sizeof(_Atomic uint64_t) * (n_pubs ? n_pubs : 1));
    size_t total = head + live + res + 3 * pubs;
    char *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return NULL;
    }
    board *b = (board *)m;
    b->procs = procs;
    b->n_pubs = n_pubs;
    b->bytes = total;
    b->live = (board_live *)(m + head);
    b->res = (board_result *)(m + head + live);
    b->pub_sent = (_Atomic uint64_t *)(m + head + live + res);
    b->pub_acked = (_Atomic uint64_t *)(m + head + live + res + pubs);
    b->pub_distinct = (_Atomic uint64_t *)(m + head + live + res + 2 * pubs);
    return b;
}

void board_destroy(board *b)
{
    if (b) {
        munmap(b, b->bytes);
    }
}
