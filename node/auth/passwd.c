/* SPDX-License-Identifier: Apache-2.0 */
/* The password file: one line per user, base64 fields (with padding):
 *   user:$pbkdf2-sha512$iterations$salt$hash
 *       hash = PKCS5_PBKDF2_HMAC(password, salt, iterations, SHA-512)
 *   user:$scram-sha-256$iterations$salt$StoredKey$ServerKey
 *       RFC 5802 §3 with SHA-256: what a SCRAM server keeps, and enough to
 *       check a plain password too (derive StoredKey, compare). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/alloc.h"
#include "common/file.h"
#include "node/auth/auth.h"
#include "node/auth/scram.h"

#define PREFIX "$pbkdf2-sha512$"
#define SCRAM_PREFIX "$scram-sha-256$"

/* One base64 field ending at '$' (more == true) or at the end of the line. */
static const char *field(const char *p, bool more, uint8_t *out, size_t cap, int *n)
{
    const char *end = more ? strchr(p, '$') : p + strlen(p);
    if (!end) {
        *n = -1;
        return NULL;
    }
    *n = scram_b64_decode(p, (size_t)(end - p), out, cap);
    return more ? end + 1 : end;
}

int passwd_parse_line(const char *line, passwd_entry *e, char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    const char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        snprintf(err, errlen, "expected user:hash");
        return SH_ERR;
    }
    const char *h = colon + 1;
    if (!strncmp(h, PREFIX, strlen(PREFIX))) {
        e->scheme = PASSWD_PBKDF2_SHA512;
        h += strlen(PREFIX);
    } else if (!strncmp(h, SCRAM_PREFIX, strlen(SCRAM_PREFIX))) {
        e->scheme = PASSWD_SCRAM_SHA256;
        h += strlen(SCRAM_PREFIX);
    } else {
        snprintf(err, errlen, "hash must start with " PREFIX " or " SCRAM_PREFIX);
        return SH_ERR;
    }
    bool is_scram = e->scheme == PASSWD_SCRAM_SHA256;
    char *end;
    errno = 0;
    long it = strtol(h, &end, 10);
    if (errno || end == h || *end != '$' || it < 1 || it > INT_MAX) {
        snprintf(err, errlen, "bad iteration count");
        return SH_ERR;
    }
    int sl, hl, kl = SCRAM_KEY_LEN;
    const char *p = field(end + 1, true, e->salt, sizeof(e->salt), &sl);
    if (sl < 0) {
        snprintf(err, errlen, p ? "bad base64 salt" : "expected $salt$hash");
        return SH_ERR;
    }
    p = field(p, is_scram, e->hash, is_scram ? SCRAM_KEY_LEN : sizeof(e->hash), &hl);
    if (is_scram && hl >= 0) {
        p = field(p, false, e->server_key, sizeof(e->server_key), &kl);
    }
    if (hl < 0 || (is_scram && (hl != SCRAM_KEY_LEN || kl != SCRAM_KEY_LEN))) {
        snprintf(err, errlen, is_scram ? "expected $salt$StoredKey$ServerKey with 32-byte keys" : "bad base64 hash");
        return SH_ERR;
    }
    e->iterations = (int)it;
    e->salt_len = (size_t)sl;
    e->hash_len = (size_t)hl;
    e->user = sh_strndup(line, (size_t)(colon - line));
    return SH_OK;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const passwd_entry *)a)->user, ((const passwd_entry *)b)->user);
}

passwd_table *passwd_parse(const char *text, char *err, size_t errlen)
{
    passwd_table *t = sh_calloc(1, sizeof(*t));
    int lineno = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        char line[1024];
        if (len >= sizeof(line)) {
            snprintf(err, errlen, "line %d: too long", lineno);
            passwd_free(t);
            return NULL;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        while (len && isspace((unsigned char)line[len - 1])) {
            line[--len] = '\0';
        }
        p = nl ? nl + 1 : p + len;
        const char *s = line;
        while (isspace((unsigned char)*s)) {
            s++;
        }
        if (!*s || *s == '#') {
            continue;
        }
        passwd_entry e;
        char why[128];
        if (passwd_parse_line(s, &e, why, sizeof(why)) != SH_OK) {
            snprintf(err, errlen, "line %d: %s", lineno, why);
            passwd_free(t);
            return NULL;
        }
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            t->v = sh_realloc(t->v, t->cap * sizeof(passwd_entry), cap * sizeof(passwd_entry));
            t->cap = cap;
        }
        t->v[t->n++] = e;
    }
    if (t->n > 1) {
        qsort(t->v, t->n, sizeof(passwd_entry), entry_cmp);
        for (size_t i = 1; i < t->n; i++) {
            if (!strcmp(t->v[i - 1].user, t->v[i].user)) {
                snprintf(err, errlen, "user '%s' appears twice", t->v[i].user);
                passwd_free(t);
                return NULL;
            }
        }
    }
    return t;
}

void passwd_free(passwd_table *t)
{
    if (!t) {
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        sh_free_str(t->v[i].user);
    }
    sh_free(t->v, t->cap * sizeof(passwd_entry));
    sh_free(t, sizeof(*t));
}

const passwd_entry *passwd_find(const passwd_table *t, const char *user, size_t len)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *u = t->v[mid].user;
        int c = strncmp(u, user, len);
        if (c == 0 && u[len] != '\0') {
            c = 1; /* u is longer: it sorts after */
        }
        if (c == 0) {
            return &t->v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

bool passwd_verify(const passwd_entry *e, const uint8_t *pw, size_t pwlen)
{
    return passwd_verify_or_cancel(e, pw, pwlen, NULL);
}

bool passwd_verify_or_cancel(const passwd_entry *e, const uint8_t *pw, size_t pwlen, const atomic_bool *cancel)
{
    uint8_t out[PASSWD_HASH_LEN];
    if (e->scheme == PASSWD_SCRAM_SHA256) {
        uint8_t server_key[SCRAM_KEY_LEN];
        bool ok = scram_derive(pw, pwlen, e->salt, e->salt_len, e->iterations, out, server_key, cancel) == 0 &&
                  CRYPTO_memcmp(out, e->hash, SCRAM_KEY_LEN) == 0;
        OPENSSL_cleanse(out, sizeof(out));
        return ok;
    }
    if (e->hash_len == 0 || e->hash_len > sizeof(out) || pwlen > INT_MAX) {
        return false;
    }
    /* passwd_make_line derives with PKCS5_PBKDF2_HMAC: the same function. */
    bool ok = scram_pbkdf2("SHA2-512", pw, pwlen, e->salt, e->salt_len, e->iterations, out, e->hash_len, cancel) == 0 &&
              CRYPTO_memcmp(out, e->hash, e->hash_len) == 0;
    OPENSSL_cleanse(out, sizeof(out));
    return ok;
}

char *passwd_make_line(const char *user, const char *pw, size_t pwlen, int iterations)
{
    uint8_t salt[PASSWD_SALT_LEN], hash[PASSWD_HASH_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1 ||
        !PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, sizeof(salt), iterations, EVP_sha512(), sizeof(hash), hash)) {
        return NULL;
    }
    char s64[64], h64[128];
    EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
    EVP_EncodeBlock((unsigned char *)h64, hash, sizeof(hash));
    size_t n = strlen(user) + strlen(PREFIX) + 16 + strlen(s64) + strlen(h64) + 4;
    char *line = sh_malloc(n);
    snprintf(line, n, "%s:" PREFIX "%d$%s$%s", user, iterations, s64, h64);
    /* Callers free it as a string (sh_free_str). */
    return sh_realloc(line, n, strlen(line) + 1);
}

char *passwd_make_scram_line(const char *user, const char *pw, size_t pwlen, int iterations)
{
    uint8_t salt[PASSWD_SALT_LEN], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1 ||
        scram_derive((const uint8_t *)pw, pwlen, salt, sizeof(salt), iterations, stored, server, NULL) != 0) {
        return NULL;
    }
    char s64[64], k1[64], k2[64];
    scram_b64_encode(salt, sizeof(salt), s64, sizeof(s64));
    scram_b64_encode(stored, sizeof(stored), k1, sizeof(k1));
    scram_b64_encode(server, sizeof(server), k2, sizeof(k2));
    size_t n = strlen(user) + strlen(SCRAM_PREFIX) + 16 + strlen(s64) + strlen(k1) + strlen(k2) + 4;
    char *line = sh_malloc(n);
    snprintf(line, n, "%s:" SCRAM_PREFIX "%d$%s$%s$%s", user, iterations, s64, k1, k2);
    /* Callers free it as a string (sh_free_str). */
    return sh_realloc(line, n, strlen(line) + 1);
}

/* --- shoal passwd --- */

static int usage(void)
{
    fprintf(stderr, "usage: shoal passwd [--scram] [-i ITERATIONS] FILE USER   (password on stdin)\n"
                    "       shoal passwd -D FILE USER\n");
    return 2;
}

/* One line from fd 0, without its newline; on a TTY, prompt without echo. */
static int read_password(const char *prompt, char *buf, size_t cap)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!got) {
        return SH_ERR;
    }
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
        buf[--n] = '\0';
    }
    return SH_OK;
}

/* Temp file in the same directory, mode 0600, then rename over path. */
static int write_atomic(const char *path, const char *text)
{
    size_t n = strlen(path) + 16;
    char *tmp = sh_malloc(n);
    snprintf(tmp, n, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "shoal passwd: cannot create %s: %s\n", tmp, strerror(errno));
        sh_free(tmp, n);
        return SH_ERR;
    }
    size_t len = strlen(text), off = 0;
    int rc = fchmod(fd, 0600);
    while (rc == 0 && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            rc = -1;
        } else {
            off += (size_t)w;
        }
    }
    if (rc == 0) {
        rc = fsync(fd);
    }
    if (close(fd) != 0) {
        rc = -1;
    }
    if (rc == 0) {
        rc = rename(tmp, path);
    }
    if (rc != 0) {
        fprintf(stderr, "shoal passwd: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    sh_free(tmp, n);
    return rc == 0 ? SH_OK : SH_ERR;
}

int passwd_main(int argc, char **argv)
{
    bool del = false, use_scram = false;
    long iterations = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-D")) {
            del = true;
        } else if (!strcmp(argv[i], "--scram")) {
            use_scram = true;
        } else if (!strcmp(argv[i], "-i") && i + 1 < argc) {
            char *end;
            iterations = strtol(argv[++i], &end, 10);
            if (*end || iterations < 1 || iterations > 100000000) {
                fprintf(stderr, "shoal passwd: -i needs a count in 1..100000000\n");
                return 2;
            }
        } else {
            return usage();
        }
    }
    if (argc - i != 2) {
        return usage();
    }
    if (use_scram && iterations && iterations < SCRAM_MIN_ITERATIONS) {
        fprintf(stderr, "shoal passwd: SCRAM-SHA-256 needs -i %d or more (RFC 7677)\n", SCRAM_MIN_ITERATIONS);
        return 2;
    }
    if (!iterations) {
        iterations = use_scram ? SCRAM_DEFAULT_ITERATIONS : PASSWD_DEFAULT_ITERATIONS;
    }
    const char *path = argv[i], *user = argv[i + 1];
    if (!*user || strpbrk(user, ":\n\r")) {
        fprintf(stderr, "shoal passwd: a user name must be non-empty and contain no ':'\n");
        return 2;
    }
    char *old = sh_read_file(path);
    bool missing = !old && errno == ENOENT;
    if (!old && !(missing && !del)) {
        fprintf(stderr, "shoal passwd: cannot read %s: %s\n", path, missing ? "no such file" : strerror(errno));
        return 1;
    }
    char *line = NULL;
    if (!del) {
        char pw[1024], again[1024];
        if (read_password("Password: ", pw, sizeof(pw)) != SH_OK) {
            fprintf(stderr, "shoal passwd: no password on stdin\n");
            sh_free_str(old);
            return 1;
        }
        if (isatty(STDIN_FILENO) &&
            (read_password("Again: ", again, sizeof(again)) != SH_OK || strcmp(pw, again) != 0)) {
            fprintf(stderr, "shoal passwd: the passwords differ\n");
            sh_free_str(old);
            return 1;
        }
        if (!*pw) {
            fprintf(stderr, "shoal passwd: empty password\n");
            sh_free_str(old);
            return 1;
        }
        line = use_scram ? passwd_make_scram_line(user, pw, strlen(pw), (int)iterations)
                         : passwd_make_line(user, pw, strlen(pw), (int)iterations);
        OPENSSL_cleanse(pw, sizeof(pw));
        OPENSSL_cleanse(again, sizeof(again));
        if (!line) {
            fprintf(stderr, "shoal passwd: hashing failed\n");
            sh_free_str(old);
            return 1;
        }
    }
    /* Keep every other line (comments too) as it was; replace or drop USER's. */
    size_t ulen = strlen(user);
    size_t cap = (old ? strlen(old) : 0) + (line ? strlen(line) : 0) + 4;
    char *out = sh_malloc(cap);
    size_t o = 0;
    bool found = false;
    for (const char *p = old; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
        if (!strncmp(p, user, ulen) && p[ulen] == ':') {
            found = true;
            if (line) {
                o += (size_t)snprintf(out + o, cap - o, "%s\n", line);
                sh_free_str(line);
                line = NULL;
            }
        } else {
            memcpy(out + o, p, len);
            o += len;
            if (!nl) {
                out[o++] = '\n';
            }
        }
        p += len;
    }
    out[o] = '\0';
    if (line) {
        o += (size_t)snprintf(out + o, cap - o, "%s\n", line);
        sh_free_str(line);
    }
    sh_free_str(old);
    if (del && !found) {
        fprintf(stderr, "shoal passwd: no user '%s' in %s\n", user, path);
        sh_free(out, cap);
        return 1;
    }
    int rc = write_atomic(path, out);
    sh_free(out, cap);
    return rc == SH_OK ? 0 : 1;
}
