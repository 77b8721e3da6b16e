/* SPDX-License-Identifier: Apache-2.0 */
/* SCRAM-SHA-256 server side (RFC 5802 §5, §7; RFC 7677). The messages are
 * comma-separated "x=value" attributes in a fixed order; each parser walks
 * them with a cursor and refuses anything out of place. */
#include "node/auth/scram.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const char *scram_rc_name(scram_rc rc)
{
    static const char *names[] = {
        [SCRAM_OK] = "ok",
        [SCRAM_MALFORMED] = "malformed SCRAM message",
        [SCRAM_CHANNEL_BINDING] = "channel binding requested",
        [SCRAM_UNSUPPORTED] = "unsupported SCRAM attribute",
        [SCRAM_BAD_NONCE] = "nonce mismatch",
        [SCRAM_BAD_BINDING] = "channel binding data mismatch",
        [SCRAM_BAD_PROOF] = "invalid proof",
    };
    return (unsigned)rc < sizeof(names) / sizeof(names[0]) ? names[rc] : "?";
}

static int b64_value(char ch)
{
    const char *p = ch ? strchr(B64, ch) : NULL;
    return p ? (int)(p - B64) : -1;
}

int scram_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
    if (len == 0 || len % 4 != 0) {
        return -1;
    }
    size_t pad = (s[len - 1] == '=') + (s[len - 1] == '=' && s[len - 2] == '=');
    size_t n = len / 4 * 3 - pad;
    if (n > cap) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            bool padding = i + 4 == len && (size_t)k >= 4 - pad;
            v[k] = padding ? (s[i + k] == '=' ? 0 : -1) : b64_value(s[i + k]);
            if (v[k] < 0) {
                return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        uint8_t b[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
        for (int k = 0; k < 3 && o < n; k++) {
            out[o++] = b[k];
        }
    }
    return (int)n;
}

size_t scram_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t need = (len + 2) / 3 * 4;
    if (cap <= need) {
        if (cap) {
            out[0] = '\0';
        }
        return 0;
    }
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return need;
}

/* A cursor over one message: the text and what is left of it. */
typedef struct cur {
    const char *p;
    size_t len;
} cur;

/* Take "k=value" up to the next ',' (consumed) or the end. */
static bool attr(cur *c, char k, const char **val, size_t *vlen)
{
    if (c->len < 2 || c->p[0] != k || c->p[1] != '=') {
        return false;
    }
    const char *v = c->p + 2;
    const char *comma = memchr(v, ',', c->len - 2);
    size_t n = comma ? (size_t)(comma - v) : c->len - 2;
    *val = v;
    *vlen = n;
    size_t used = 2 + n + (comma ? 1 : 0);
    c->p += used;
    c->len -= used;
    return !comma || c->len > 0; /* a trailing ',' is malformed */
}

/* RFC 5802 §7: extensions are "ALPHA=value"; unknown ones are ignored. */
static bool skip_extensions(cur *c)
{
    while (c->len) {
        char k = c->p[0];
        const char *v;
        size_t n;
        if (!((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z')) || !attr(c, k, &v, &n)) {
            return false;
        }
    }
    return true;
}

/* printable = %x21-2B / %x2D-7E: any visible character but ','. */
static bool nonce_ok(const char *p, size_t n, size_t max)
{
    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] > 0x7E || p[i] == ',') {
            return false;
        }
    }
    return true;
}

/* saslname: '=' only as =2C or =3D; no NUL (the name is a C string here). */
static bool unescape_user(scram *s, const char *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '=') {
            if (i + 2 >= n) {
                return false;
            }
            if (p[i + 1] == '2' && p[i + 2] == 'C') {
                ch = ',';
            } else if (p[i + 1] == '3' && p[i + 2] == 'D') {
                ch = '=';
            } else {
                return false;
            }
            i += 2;
        } else if (ch == '\0') {
            return false;
        }
        if (o == SCRAM_MAX_USER) {
            return false;
        }
        s->user[o++] = ch;
    }
    s->user[o] = '\0';
    s->user_len = o;
    return o > 0;
}

scram_rc scram_client_first(scram *s, const uint8_t *msg, size_t len)
{
    const char *m = (const char *)msg;
    if (len < 3 || len > SCRAM_MAX_MSG) {
        return SCRAM_MALFORMED;
    }
    /* gs2-header = gs2-cbind-flag "," [authzid] "," */
    if (m[0] == 'p' && m[1] == '=') {
        return SCRAM_CHANNEL_BINDING;
    }
    if ((m[0] != 'n' && m[0] != 'y') || m[1] != ',') {
        return SCRAM_MALFORMED;
    }
    if (m[2] == 'a' && len > 3 && m[3] == '=') {
        return SCRAM_UNSUPPORTED; /* authorization identities are not offered */
    }
    if (m[2] != ',') {
        return SCRAM_MALFORMED;
    }
    memcpy(s->gs2, m, 3);
    cur c = {m + 3, len - 3};
    if (c.len >= 2 && c.p[0] == 'm' && c.p[1] == '=') {
        return SCRAM_UNSUPPORTED; /* §5.1: a server must fail on "m" */
    }
    memcpy(s->bare, c.p, c.len);
    s->bare_len = c.len;
    const char *v;
    size_t n;
    if (!attr(&c, 'n', &v, &n) || !unescape_user(s, v, n)) {
        return SCRAM_MALFORMED;
    }
    if (!attr(&c, 'r', &v, &n) || !nonce_ok(v, n, SCRAM_MAX_NONCE) || !skip_extensions(&c)) {
        return SCRAM_MALFORMED;
    }
    memcpy(s->nonce, v, n);
    s->cnonce_len = n;
    s->nonce_len = n;
    s->nonce[n] = '\0';
    return SCRAM_OK;
}

scram_rc scram_server_first(scram *s, const scram_cred *cred, const char *server_nonce)
{
    size_t sn = strlen(server_nonce);
    if (!nonce_ok(server_nonce, sn, SCRAM_SERVER_NONCE_MAX) || cred->salt_len == 0 || cred->salt_len > SCRAM_SALT_MAX ||
        cred->iterations < 1) {
        return SCRAM_MALFORMED;
    }
    s->cred = *cred;
    memcpy(s->nonce + s->cnonce_len, server_nonce, sn);
    s->nonce_len = s->cnonce_len + sn;
    s->nonce[s->nonce_len] = '\0';
    char salt[SCRAM_SALT_MAX / 3 * 4 + 8];
    scram_b64_encode(cred->salt, cred->salt_len, salt, sizeof(salt));
    int n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%d", s->nonce, salt, cred->iterations);
    if (n < 0 || (size_t)n >= sizeof(s->server_first)) {
        return SCRAM_MALFORMED;
    }
    s->server_first_len = (size_t)n;
    return SCRAM_OK;
}

static bool hmac(const uint8_t *key, const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int n = SCRAM_KEY_LEN;
    return HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, data, len, out, &n) != NULL && n == SCRAM_KEY_LEN;
}

/* client-final = "c=" b64(gs2 header) ",r=" nonce ["," ext] ",p=" proof */
scram_rc scram_client_final(scram *s, const uint8_t *msg, size_t len)
{
    const char *m = (const char *)msg;
    if (len > SCRAM_MAX_MSG || s->server_first_len == 0) {
        return SCRAM_MALFORMED;
    }
    cur c = {m, len};
    const char *v;
    size_t n;
    uint8_t cb[SCRAM_MAX_MSG];
    if (!attr(&c, 'c', &v, &n)) {
        return SCRAM_MALFORMED;
    }
    int cbn = scram_b64_decode(v, n, cb, sizeof(cb));
    if (cbn < 0) {
        return SCRAM_MALFORMED;
    }
    bool binding_ok = cbn == 3 && memcmp(cb, s->gs2, 3) == 0;
    if (!attr(&c, 'r', &v, &n)) {
        return SCRAM_MALFORMED;
    }
    bool nonce_same = n == s->nonce_len && memcmp(v, s->nonce, n) == 0;
    /* The proof is the last attribute; everything before it is signed. */
    const char *proof = NULL;
    size_t proof_len = 0, without_proof = 0;
    while (c.len) {
        size_t at = (size_t)(c.p - m);
        char k = c.p[0];
        if (!((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z')) || !attr(&c, k, &v, &n)) {
            return SCRAM_MALFORMED;
        }
        if (k == 'p') {
            if (c.len != 0) {
                return SCRAM_MALFORMED;
            }
            proof = v;
            proof_len = n;
            without_proof = at - 1; /* drop the ',' before "p=" */
        }
    }
    uint8_t p[SCRAM_KEY_LEN + 8];
    if (!proof || scram_b64_decode(proof, proof_len, p, sizeof(p)) != SCRAM_KEY_LEN) {
        return SCRAM_MALFORMED;
    }
    if (!binding_ok) {
        return SCRAM_BAD_BINDING;
    }
    if (!nonce_same) {
        return SCRAM_BAD_NONCE;
    }
    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    char am[SCRAM_MAX_MSG * 2 + sizeof(s->server_first) + 2];
    size_t an = 0;
    memcpy(am + an, s->bare, s->bare_len);
    an += s->bare_len;
    am[an++] = ',';
    memcpy(am + an, s->server_first, s->server_first_len);
    an += s->server_first_len;
    am[an++] = ',';
    memcpy(am + an, m, without_proof);
    an += without_proof;
    uint8_t sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    if (!hmac(s->cred.stored_key, am, an, sig)) {
        return SCRAM_BAD_PROOF;
    }
    for (int i = 0; i < SCRAM_KEY_LEN; i++) {
        key[i] = p[i] ^ sig[i];
    }
    SHA256(key, sizeof(key), stored);
    bool ok = CRYPTO_memcmp(stored, s->cred.stored_key, SCRAM_KEY_LEN) == 0;
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok || !hmac(s->cred.server_key, am, an, sig)) {
        return SCRAM_BAD_PROOF;
    }
    memcpy(s->server_final, "v=", 2);
    s->server_final_len = 2 + scram_b64_encode(sig, sizeof(sig), s->server_final + 2, sizeof(s->server_final) - 2);
    return SCRAM_OK;
}

int scram_make_nonce(char *out, size_t cap)
{
    uint8_t r[SCRAM_SERVER_NONCE_LEN / 4 * 3];
    if (cap <= SCRAM_SERVER_NONCE_LEN || RAND_bytes(r, sizeof(r)) != 1) {
        return -1;
    }
    scram_b64_encode(r, sizeof(r), out, cap);
    return 0;
}

static bool cancelled(const atomic_bool *cancel)
{
    return cancel && atomic_load_explicit(cancel, memory_order_relaxed);
}

/* One HMAC over a key set up once: EVP_MAC_init with a NULL key starts
 * again from the key already set (cheaper than a new context each time). */
static bool mac_once(EVP_MAC_CTX *m, const uint8_t *a, size_t an, const uint8_t *b, size_t bn, uint8_t *out,
                     size_t outlen)
{
    size_t got = 0;
    return EVP_MAC_init(m, NULL, 0, NULL) == 1 && EVP_MAC_update(m, a, an) == 1 &&
           (bn == 0 || EVP_MAC_update(m, b, bn) == 1) && EVP_MAC_final(m, out, &got, outlen) == 1 && got == outlen;
}

/* T_i = U_1 ^ ... ^ U_c, U_1 = PRF(P, S || INT(i)), U_j = PRF(P, U_{j-1}). */
static bool pbkdf2_block(EVP_MAC_CTX *m, const uint8_t *salt, size_t salt_len, uint32_t i, int iterations, uint8_t *t,
                         size_t mdlen, const atomic_bool *cancel)
{
    uint8_t u[EVP_MAX_MD_SIZE], be[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
    bool ok = mac_once(m, salt, salt_len, be, sizeof(be), u, mdlen);
    if (ok) {
        memcpy(t, u, mdlen);
    }
    for (int j = 1; ok && j < iterations; j++) {
        if (j % PBKDF2_CANCEL_EVERY == 0 && cancelled(cancel)) {
            ok = false;
            break;
        }
        ok = mac_once(m, u, mdlen, NULL, 0, u, mdlen);
        for (size_t k = 0; ok && k < mdlen; k++) {
            t[k] ^= u[k];
        }
    }
    OPENSSL_cleanse(u, sizeof(u));
    return ok;
}

int scram_pbkdf2(const char *digest, const uint8_t *pw, size_t pwlen, const uint8_t *salt, size_t salt_len,
                 int iterations, uint8_t *out, size_t outlen, const atomic_bool *cancel)
{
    if (iterations < 1 || outlen == 0) {
        return -1;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *m = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
                           OSSL_PARAM_construct_end()};
    /* A key pointer even for an empty password: NULL would mean "keep the key". */
    bool ok = m && EVP_MAC_init(m, pwlen ? pw : (const uint8_t *)"", pwlen, params) == 1;
    size_t mdlen = ok ? EVP_MAC_CTX_get_mac_size(m) : 0;
    ok = ok && mdlen > 0 && mdlen <= EVP_MAX_MD_SIZE;
    uint8_t t[EVP_MAX_MD_SIZE];
    for (uint32_t i = 1; ok && outlen > 0; i++) {
        ok = pbkdf2_block(m, salt, salt_len, i, iterations, t, mdlen, cancel);
        size_t n = outlen < mdlen ? outlen : mdlen;
        if (ok) {
            memcpy(out, t, n);
            out += n;
            outlen -= n;
        }
    }
    OPENSSL_cleanse(t, sizeof(t));
    EVP_MAC_CTX_free(m);
    EVP_MAC_free(mac);
    return ok ? 0 : -1;
}

int scram_derive(const uint8_t *pw, size_t pwlen, const uint8_t *salt, size_t salt_len, int iterations,
                 uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN], const atomic_bool *cancel)
{
    uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    if (pwlen > INT_MAX || salt_len > INT_MAX || iterations < 1) {
        return -1;
    }
    int rc = -1;
    if (scram_pbkdf2("SHA2-256", pw, pwlen, salt, salt_len, iterations, salted, SCRAM_KEY_LEN, cancel) == 0 &&
        hmac(salted, "Client Key", 10, client_key) && hmac(salted, "Server Key", 10, server_key)) {
        SHA256(client_key, sizeof(client_key), stored_key);
        rc = 0;
    }
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return rc;
}
