/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_seeds DIR: write every packet of tests/unit/proto/vectors.h (valid
 * and corrupted) and of refusals.h into DIR, one file each, plus one file holding all valid
 * vectors back to back, as the seed corpus for fuzz_decode. */
#include <stdio.h>
#include <string.h>

#include "refusals.h"
#include "vectors.h"

static int write_file(const char *dir, const char *prefix, const char *name, const uint8_t *b, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s_%s", dir, prefix, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) {
        perror(path);
        return -1;
    }
    size_t n = fwrite(b, 1, len, fp);
    int rc = fclose(fp);
    return n == len && rc == 0 ? 0 : -1;
}

static int write_table(const char *dir, const char *prefix, const bad *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (write_file(dir, prefix, rows[i].name, rows[i].bytes, rows[i].len) != 0) {
            return -1;
        }
    }
    return 0;
}

static int write_refusals(const char *dir)
{
    for (size_t i = 0; i < N_OF(refusals); i++) {
        if (write_file(dir, "refusal", refusals[i].name, refusals[i].bytes, refusals[i].len) != 0) {
            return -1;
        }
    }
    return 0;
}

static int write_stream(const char *dir)
{
    static uint8_t stream[16384];
    size_t total = 0;
    for (size_t i = 0; i < N_VECTORS && total + vectors[i].len <= sizeof(stream); i++) {
        memcpy(stream + total, vectors[i].bytes, vectors[i].len);
        total += vectors[i].len;
    }
    return write_file(dir, "stream", "all", stream, total);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    for (size_t i = 0; i < N_VECTORS; i++) {
        if (write_file(dir, "vec", vectors[i].name, vectors[i].bytes, vectors[i].len) != 0) {
            return 1;
        }
    }
    int rc = write_table(dir, "connect", corrupt_connect, N_OF(corrupt_connect));
    rc |= write_table(dir, "connack", corrupt_connack, N_OF(corrupt_connack));
    rc |= write_table(dir, "publish", corrupt_publish, N_OF(corrupt_publish));
    rc |= write_table(dir, "ack", corrupt_ack, N_OF(corrupt_ack));
    rc |= write_table(dir, "subscribe", corrupt_subscribe, N_OF(corrupt_subscribe));
    rc |= write_table(dir, "unsubscribe", corrupt_unsubscribe, N_OF(corrupt_unsubscribe));
    rc |= write_table(dir, "suback", corrupt_suback, N_OF(corrupt_suback));
    rc |= write_table(dir, "other", corrupt_other, N_OF(corrupt_other));
    rc |= write_refusals(dir);
    rc |= write_stream(dir);
    return rc == 0 ? 0 : 1;
}
