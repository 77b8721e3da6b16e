/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_proxy_seeds DIR: write every PROXY header of
 * tests/unit/proto/proxy_vectors.h (valid and corrupted) into DIR, one
 * file each, plus each valid header followed by an MQTT CONNECT and a few
 * address tokens, as the seed corpus for fuzz_proxy. */
#include <stdio.h>
#include <string.h>

#include "proxy_vectors.h"

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

int main(int argc, char **argv)
{
    static const char *const tokens[] = {"2001:db8::1", "::ffff:192.0.2.1", "192.0.2.1", "1:2:3:4:5:6:7:8",
                                         "fe80::1:2:3.4.5.6"};
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rc = 0;
    for (size_t i = 0; i < N_OF(proxy_vectors); i++) {
        const proxy_vec *v = &proxy_vectors[i];
        uint8_t buf[512];
        if (v->len + sizeof(v_connect_v311_min) > sizeof(buf)) {
            return 1;
        }
        memcpy(buf, v->bytes, v->len);
        memcpy(buf + v->len, v_connect_v311_min, sizeof(v_connect_v311_min));
        rc |= write_file(dir, "hdr", v->name, v->bytes, v->len);
        rc |= write_file(dir, "then_connect", v->name, buf, v->len + sizeof(v_connect_v311_min));
    }
    for (size_t i = 0; i < N_OF(proxy_corrupt); i++) {
        rc |= write_file(dir, "bad", proxy_corrupt[i].name, proxy_corrupt[i].bytes, proxy_corrupt[i].len);
    }
    for (size_t i = 0; i < N_OF(tokens); i++) {
        char name[16];
        snprintf(name, sizeof(name), "%zu", i);
        rc |= write_file(dir, "addr", name, (const uint8_t *)tokens[i], strlen(tokens[i]));
    }
    return rc == 0 ? 0 : 1;
}
