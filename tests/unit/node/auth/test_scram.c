/* SPDX-License-Identifier: Apache-2.0 */
/* node/auth/scram.c: the SCRAM-SHA-256 server steps against RFC 7677 §3 and
 * against malformed client messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "node/auth/scram.h"

/* RFC 7677 §3 */
#define CFIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define SFIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define CFINAL_NOPROOF "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define CFINAL CFINAL_NOPROOF ",p=" PROOF
#define SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* Exactly len bytes on the heap, so ASan catches any read past the end. */
static scram_rc first(scram *s, const char *msg, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    memcpy(b, msg, len);
    scram_rc rc = scram_client_first(s, b, len);
    free(b);
    return rc;
}

static scram_rc final(scram *s, const char *msg, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    memcpy(b, msg, len);
    scram_rc rc = scram_client_final(s, b, len);
    free(b);
    return rc;
}

static scram_cred pencil_cred(void)
{
    scram_cred c;
    memset(&c, 0, sizeof(c));
    c.iterations = 4096;
    c.salt_len = (size_t)scram_b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, c.salt, sizeof(c.salt));
    cr_assert_eq(c.salt_len, 16);
    cr_assert_eq(
        scram_derive((const uint8_t *)"pencil", 6, c.salt, c.salt_len, c.iterations, c.stored_key, c.server_key, NULL),
        0);
    return c;
}

/* The server after RFC 7677's first two messages. */
static void rfc_start(scram *s)
{
    memset(s, 0, sizeof(*s));
    cr_assert_eq(first(s, CFIRST, strlen(CFIRST)), SCRAM_OK);
    scram_cred c = pencil_cred();
    cr_assert_eq(scram_server_first(s, &c, SNONCE), SCRAM_OK);
}

/* The client's side, computed here with OpenSSL directly: the proof for
 * password pw over the given messages, base64 into out. */
static void client_proof(const char *pw, const scram *s, const char *final_noproof, char *out, size_t cap)
{
    uint8_t salted[32], ckey[32], stored[32], sig[32], proof[32];
    unsigned n = 32;
    PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), s->cred.salt, (int)s->cred.salt_len, s->cred.iterations, EVP_sha256(), 32,
                      salted);
    HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, ckey, &n);
    SHA256(ckey, 32, stored);
    char am[4096];
    int an = snprintf(am, sizeof(am), "%.*s,%.*s,%s", (int)s->bare_len, s->bare, (int)s->server_first_len,
                      s->server_first, final_noproof);
    HMAC(EVP_sha256(), stored, 32, (const uint8_t *)am, (size_t)an, sig, &n);
    for (int i = 0; i < 32; i++) {
        proof[i] = ckey[i] ^ sig[i];
    }
    scram_b64_encode(proof, 32, out, cap);
}

Test(scram, rfc7677_vector)
{
    scram s;
    rfc_start(&s);
    cr_assert_str_eq(s.user, "user");
    cr_assert_eq(s.server_first_len, strlen(SFIRST));
    cr_assert(!memcmp(s.server_first, SFIRST, strlen(SFIRST)), "%.*s", (int)s.server_first_len, s.server_first);
    cr_assert_eq(final(&s, CFINAL, strlen(CFINAL)), SCRAM_OK);
    cr_assert_eq(s.server_final_len, strlen(SFINAL));
    cr_assert(!memcmp(s.server_final, SFINAL, strlen(SFINAL)), "%.*s", (int)s.server_final_len, s.server_final);
}

Test(scram, client_side_proof_matches_rfc)
{
    scram s;
    rfc_start(&s);
    char p[64];
    client_proof("pencil", &s, CFINAL_NOPROOF, p, sizeof(p));
    cr_assert_str_eq(p, PROOF);
}

Test(scram, wrong_password_is_bad_proof)
{
    scram s;
    rfc_start(&s);
    char p[64], msg[512];
    client_proof("pencil!", &s, CFINAL_NOPROOF, p, sizeof(p));
    snprintf(msg, sizeof(msg), "%s,p=%s", CFINAL_NOPROOF, p);
    cr_assert_eq(final(&s, msg, strlen(msg)), SCRAM_BAD_PROOF);
    cr_assert_eq(s.server_final_len, 0);
}

Test(scram, flipped_proof_bit_is_bad_proof)
{
    scram s;
    rfc_start(&s);
    char msg[] = CFINAL;
    msg[strlen(msg) - 3] ^= 1; /* 'Q' -> 'P': still base64 */
    cr_assert_eq(final(&s, msg, strlen(msg)), SCRAM_BAD_PROOF);
}

Test(scram, y_flag_and_extensions_accepted)
{
    scram s;
    memset(&s, 0, sizeof(s));
    const char *cf = "y,,n=user,r=abc,x=ignored";
    cr_assert_eq(first(&s, cf, strlen(cf)), SCRAM_OK);
    scram_cred c = pencil_cred();
    cr_assert_eq(scram_server_first(&s, &c, "XYZ"), SCRAM_OK);
    cr_assert_str_eq(s.nonce, "abcXYZ");
    /* c= is base64("y,,") */
    const char *noproof = "c=eSws,r=abcXYZ,z=ext";
    char p[64], msg[256];
    client_proof("pencil", &s, noproof, p, sizeof(p));
    snprintf(msg, sizeof(msg), "%s,p=%s", noproof, p);
    cr_assert_eq(final(&s, msg, strlen(msg)), SCRAM_OK);
    cr_assert(s.server_final_len > 2);
}

Test(scram, binding_must_repeat_gs2_header)
{
    scram s;
    rfc_start(&s);
    const char *noproof = "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    char p[64], msg[512];
    client_proof("pencil", &s, noproof, p, sizeof(p));
    snprintf(msg, sizeof(msg), "%s,p=%s", noproof, p);
    cr_assert_eq(final(&s, msg, strlen(msg)), SCRAM_BAD_BINDING);
}

Test(scram, user_name_unescaped)
{
    scram s;
    memset(&s, 0, sizeof(s));
    const char *cf = "n,,n=a=2Cb=3Dc,r=abc";
    cr_assert_eq(first(&s, cf, strlen(cf)), SCRAM_OK);
    cr_assert_str_eq(s.user, "a,b=c");
    cr_assert_eq(s.user_len, 5);
}

Test(scram, client_first_refusals)
{
    static const struct {
        const char *msg;
        scram_rc rc;
    } cases[] = {
        {"p=tls-unique,,n=user,r=abc", SCRAM_CHANNEL_BINDING},
        {"n,a=admin,n=user,r=abc", SCRAM_UNSUPPORTED},
        {"n,,m=ext,n=user,r=abc", SCRAM_UNSUPPORTED},
        {"", SCRAM_MALFORMED},
        {"n,", SCRAM_MALFORMED},
        {"n,,", SCRAM_MALFORMED},
        {"x,,n=user,r=abc", SCRAM_MALFORMED},
        {"n,n=user,r=abc", SCRAM_MALFORMED},
        {"n,,r=abc", SCRAM_MALFORMED},  /* no user */
        {"n,,n=user", SCRAM_MALFORMED}, /* no nonce */
        {"n,,n=user,", SCRAM_MALFORMED},
        {"n,,n=user,r=", SCRAM_MALFORMED},       /* empty nonce */
        {"n,,n=,r=abc", SCRAM_MALFORMED},        /* empty user */
        {"n,,n=us=2Xer,r=abc", SCRAM_MALFORMED}, /* bad escape */
        {"n,,n=user=,r=abc", SCRAM_MALFORMED},
        {"n,,n=user=2,r=abc", SCRAM_MALFORMED},
        {"n,,n=user,r=a b", SCRAM_MALFORMED},  /* space in nonce */
        {"n,,n=user,r=abc,", SCRAM_MALFORMED}, /* trailing comma */
        {"n,,n=user,r=abc,1=x", SCRAM_MALFORMED},
        {"n,,r=abc,n=user", SCRAM_MALFORMED}, /* order */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        scram s;
        memset(&s, 0, sizeof(s));
        scram_rc rc = first(&s, cases[i].msg, strlen(cases[i].msg));
        cr_assert_eq(rc, cases[i].rc, "'%s': got %s", cases[i].msg, scram_rc_name(rc));
    }
    /* A NUL inside the user name. */
    scram s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(first(&s, "n,,n=u\0r,r=abc", 14), SCRAM_MALFORMED);
}

Test(scram, client_first_too_long)
{
    char msg[SCRAM_MAX_MSG + 64];
    int n = snprintf(msg, sizeof(msg), "n,,n=user,r=");
    memset(msg + n, 'a', sizeof(msg) - (size_t)n);
    scram s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(first(&s, msg, sizeof(msg)), SCRAM_MALFORMED);
    /* A nonce over the limit in a message under it. */
    cr_assert_eq(first(&s, msg, (size_t)n + SCRAM_MAX_NONCE + 1), SCRAM_MALFORMED);
    cr_assert_eq(first(&s, msg, (size_t)n + SCRAM_MAX_NONCE), SCRAM_OK);
}

Test(scram, client_final_refusals)
{
    static const struct {
        const char *msg;
        scram_rc rc;
    } cases[] = {
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=" PROOF, SCRAM_BAD_NONCE}, /* the client's nonce only */
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,p=" PROOF, SCRAM_BAD_NONCE},
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!!!", SCRAM_MALFORMED},
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzb", SCRAM_MALFORMED},
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", SCRAM_MALFORMED}, /* no proof */
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=" PROOF ",x=1", SCRAM_MALFORMED},
        {"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=" PROOF ",", SCRAM_MALFORMED},
        {"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=" PROOF, SCRAM_MALFORMED}, /* no c= */
        {"c=bi*s,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=" PROOF, SCRAM_MALFORMED},
        {"c=biws,p=" PROOF, SCRAM_MALFORMED}, /* no r= */
        {"", SCRAM_MALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        scram s;
        rfc_start(&s);
        scram_rc rc = final(&s, cases[i].msg, strlen(cases[i].msg));
        cr_assert_eq(rc, cases[i].rc, "'%s': got %s", cases[i].msg, scram_rc_name(rc));
        cr_assert_eq(s.server_final_len, 0);
    }
}

Test(scram, client_final_every_prefix_refused)
{
    scram s;
    rfc_start(&s);
    for (size_t n = 0; n < strlen(CFINAL); n++) {
        scram t = s;
        cr_assert_neq(final(&t, CFINAL, n), SCRAM_OK, "prefix %zu accepted", n);
    }
}

Test(scram, client_final_before_server_first)
{
    scram s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(first(&s, CFIRST, strlen(CFIRST)), SCRAM_OK);
    cr_assert_eq(final(&s, CFINAL, strlen(CFINAL)), SCRAM_MALFORMED);
}

Test(scram, server_nonce_is_fresh_printable)
{
    char a[32], b[32];
    cr_assert_eq(scram_make_nonce(a, sizeof(a)), 0);
    cr_assert_eq(scram_make_nonce(b, sizeof(b)), 0);
    cr_assert_eq(strlen(a), SCRAM_SERVER_NONCE_LEN);
    cr_assert_str_neq(a, b);
    cr_assert_null(strchr(a, ','));
}

Test(scram, base64)
{
    uint8_t out[16];
    cr_assert_eq(scram_b64_decode("biws", 4, out, sizeof(out)), 3);
    cr_assert(!memcmp(out, "n,,", 3));
    cr_assert_eq(scram_b64_decode("YQ==", 4, out, sizeof(out)), 1);
    cr_assert_eq(scram_b64_decode("YWI=", 4, out, sizeof(out)), 2);
    cr_assert_eq(scram_b64_decode("YQ=", 3, out, sizeof(out)), -1);
    cr_assert_eq(scram_b64_decode("Y===", 4, out, sizeof(out)), -1);
    cr_assert_eq(scram_b64_decode("=YWI", 4, out, sizeof(out)), -1);
    cr_assert_eq(scram_b64_decode("YQ==YQ==", 8, out, sizeof(out)), -1);
    cr_assert_eq(scram_b64_decode("Y\0==", 4, out, sizeof(out)), -1);
    cr_assert_eq(scram_b64_decode("", 0, out, sizeof(out)), -1);
    cr_assert_eq(scram_b64_decode("YWJj", 4, out, 2), -1); /* over cap */
    char enc[16];
    cr_assert_eq(scram_b64_encode((const uint8_t *)"ab", 2, enc, sizeof(enc)), 4);
    cr_assert_str_eq(enc, "YWI=");
    cr_assert_eq(scram_b64_encode((const uint8_t *)"abc", 3, enc, 4), 0); /* no room for NUL */
}

/* scram_pbkdf2 against OpenSSL's PKCS5_PBKDF2_HMAC: both digests, around
 * the cancel check's period, an empty password, output over one block. */
Test(scram, pbkdf2_matches_openssl)
{
    static const int iters[] = {1, 2, PBKDF2_CANCEL_EVERY - 1, PBKDF2_CANCEL_EVERY, PBKDF2_CANCEL_EVERY + 1, 3000};
    static const size_t lens[] = {20, 32, 64, 100};
    const uint8_t salt[] = "NaCl-and-pepper";
    const char *pws[] = {"", "password",
                         "a rather longer password than any hash block is wide, over 128 bytes ......"
                         "......................................................"};
    for (int d = 0; d < 2; d++) {
        for (size_t i = 0; i < sizeof(iters) / sizeof(iters[0]); i++) {
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
                for (size_t p = 0; p < sizeof(pws) / sizeof(pws[0]); p++) {
                    uint8_t want[100], got[100];
                    size_t pwlen = strlen(pws[p]);
                    cr_assert_eq(PKCS5_PBKDF2_HMAC(pws[p], (int)pwlen, salt, sizeof(salt) - 1, iters[i],
                                                   d ? EVP_sha512() : EVP_sha256(), (int)lens[l], want),
                                 1);
                    cr_assert_eq(scram_pbkdf2(d ? "SHA2-512" : "SHA2-256", (const uint8_t *)pws[p], pwlen, salt,
                                              sizeof(salt) - 1, iters[i], got, lens[l], NULL),
                                 0);
                    cr_assert(!memcmp(want, got, lens[l]), "digest %d iterations %d length %zu password %zu", d,
                              iters[i], lens[l], p);
                }
            }
        }
    }
}

Test(scram, pbkdf2_gives_up_once_cancelled)
{
    atomic_bool cancel;
    atomic_init(&cancel, true);
    uint8_t out[64];
    const uint8_t salt[] = "salt";
    /* Checked every PBKDF2_CANCEL_EVERY iterations: a shorter one ends. */
    cr_assert_eq(scram_pbkdf2("SHA2-512", (const uint8_t *)"pw", 2, salt, 4, 2000000000, out, 64, &cancel), -1);
    cr_assert_eq(scram_pbkdf2("SHA2-512", (const uint8_t *)"pw", 2, salt, 4, PBKDF2_CANCEL_EVERY, out, 64, &cancel), 0);
    uint8_t stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
    cr_assert_eq(scram_derive((const uint8_t *)"pw", 2, salt, 4, 2000000000, stored, server, &cancel), -1);
    atomic_store(&cancel, false);
    cr_assert_eq(scram_pbkdf2("SHA2-512", (const uint8_t *)"pw", 2, salt, 4, 5000, out, 64, &cancel), 0);
}
