/* SPDX-License-Identifier: Apache-2.0 */
/* node/auth/passwd.c: password lines, hashing, verification. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/auth/auth.h"

static const uint8_t *u8(const char *s)
{
    return (const uint8_t *)s;
}

Test(passwd, make_then_verify)
{
    char *line = passwd_make_line("alice", "s3cret", 6, 1000);
    cr_assert_not_null(line);
    cr_assert(!strncmp(line, "alice:$pbkdf2-sha512$1000$", 26));
    passwd_entry e;
    char err[128];
    cr_assert_eq(passwd_parse_line(line, &e, err, sizeof(err)), SH_OK, "%s", err);
    cr_assert_str_eq(e.user, "alice");
    cr_assert_eq(e.iterations, 1000);
    cr_assert_eq(e.salt_len, PASSWD_SALT_LEN);
    cr_assert_eq(e.hash_len, PASSWD_HASH_LEN);
    cr_assert(passwd_verify(&e, u8("s3cret"), 6));
    cr_assert_not(passwd_verify(&e, u8("s3cre"), 5));
    cr_assert_not(passwd_verify(&e, u8("s3cret!"), 7));
    cr_assert_not(passwd_verify(&e, u8(""), 0));
    sh_free_str(e.user);
    sh_free_str(line);
}

Test(passwd, salts_differ)
{
    char *a = passwd_make_line("u", "pw", 2, 1);
    char *b = passwd_make_line("u", "pw", 2, 1);
    cr_assert_str_neq(a, b);
    sh_free_str(a);
    sh_free_str(b);
}

#define KNOWN_HASH "LRBZ83k0jLq6tLoG1NTgI40Wnann2XwlqjiB/bp8owAeXc2DzPdMZKNG9dfoNmhepmpjOlNII9sdSjlArasEag=="

/* A known vector, computed independently:
 * python3 -c "import hashlib,base64;print(base64.b64encode(hashlib.pbkdf2_hmac('sha512',b'password',b'saltsalt',2)))" */
Test(passwd, known_vector)
{
    passwd_entry e;
    char err[128];
    const char *line = "bob:$pbkdf2-sha512$2$c2FsdHNhbHQ=$" KNOWN_HASH;
    cr_assert_eq(passwd_parse_line(line, &e, err, sizeof(err)), SH_OK, "%s", err);
    cr_assert(passwd_verify(&e, u8("password"), 8));
    cr_assert_not(passwd_verify(&e, u8("Password"), 8));
    sh_free_str(e.user);
}

Test(passwd, malformed_lines)
{
    const char *bad[] = {
        "nocolon",
        ":$pbkdf2-sha512$10$c2FsdA==$aGFzaA==",   /* empty user */
        "u:$7$10$c2FsdA==$aGFzaA==",              /* other scheme */
        "u:$pbkdf2-sha512$$c2FsdA==$aGFzaA==",    /* no iterations */
        "u:$pbkdf2-sha512$0$c2FsdA==$aGFzaA==",   /* zero iterations */
        "u:$pbkdf2-sha512$-5$c2FsdA==$aGFzaA==",  /* negative */
        "u:$pbkdf2-sha512$10x$c2FsdA==$aGFzaA==", /* junk after count */
        "u:$pbkdf2-sha512$10$c2FsdA==",           /* no hash */
        "u:$pbkdf2-sha512$10$c2Fsd!==$aGFzaA==",  /* bad base64 */
        "u:$pbkdf2-sha512$10$c2FsdA=$aGFzaA==",   /* bad length */
        "u:$pbkdf2-sha512$10$c2FsdA==$",          /* empty hash */
        "u:$pbkdf2-sha512$10$$aGFzaA==",          /* empty salt */
        "u:$pbkdf2-sha512$10$c2FsdA==$a=Fz",      /* '=' in the middle */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        passwd_entry e;
        char err[128] = "";
        cr_assert_eq(passwd_parse_line(bad[i], &e, err, sizeof(err)), SH_ERR, "accepted: %s", bad[i]);
        cr_assert(err[0], "no reason for %s", bad[i]);
    }
}

Test(passwd, table_parse_find)
{
    char *a = passwd_make_line("alice", "a", 1, 1);
    char *b = passwd_make_line("bob", "b", 1, 1);
    char text[1024];
    snprintf(text, sizeof(text), "# users\n\n%s\n   \n%s", b, a); /* no trailing newline */
    char err[128];
    passwd_table *t = passwd_parse(text, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(t->n, 2);
    const passwd_entry *e = passwd_find(t, "alice", 5);
    cr_assert_not_null(e);
    cr_assert(passwd_verify(e, u8("a"), 1));
    cr_assert_not_null(passwd_find(t, "bob", 3));
    cr_assert_null(passwd_find(t, "bo", 2));
    cr_assert_null(passwd_find(t, "bobby", 5));
    cr_assert_null(passwd_find(t, "carol", 5));
    passwd_free(t);
    sh_free_str(a);
    sh_free_str(b);
}

Test(passwd, table_errors_name_the_line)
{
    char err[128];
    cr_assert_null(passwd_parse("# c\ngarbage\n", err, sizeof(err)));
    cr_assert(strstr(err, "line 2"), "%s", err);
    char *a = passwd_make_line("dup", "a", 1, 1);
    char text[512];
    snprintf(text, sizeof(text), "%s\n%s\n", a, a);
    cr_assert_null(passwd_parse(text, err, sizeof(err)));
    cr_assert(strstr(err, "twice"), "%s", err);
    sh_free_str(a);
    passwd_table *t = passwd_parse("", err, sizeof(err));
    cr_assert_not_null(t);
    cr_assert_eq(t->n, 0);
    passwd_free(t);
}

/* --- $scram-sha-256$ entries --- */

/* RFC 7677 §3's user "pencil", salt and iterations; the keys computed
 * independently:
 * python3 -c "import hashlib,hmac,base64;s=base64.b64decode('W22ZaJ0SNY7soEsUEjb6gQ==');
 *   p=hashlib.pbkdf2_hmac('sha256',b'pencil',s,4096);c=hmac.new(p,b'Client Key','sha256').digest();
 *   print(base64.b64encode(hashlib.sha256(c).digest()),
 *         base64.b64encode(hmac.new(p,b'Server Key','sha256').digest()))" */
#define SCRAM_LINE                                                                                    \
    "user:$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$" \
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

Test(passwd, scram_known_vector)
{
    passwd_entry e;
    char err[128];
    cr_assert_eq(passwd_parse_line(SCRAM_LINE, &e, err, sizeof(err)), SH_OK, "%s", err);
    cr_assert_eq(e.scheme, PASSWD_SCRAM_SHA256);
    cr_assert_str_eq(e.user, "user");
    cr_assert_eq(e.iterations, 4096);
    cr_assert_eq(e.salt_len, 16);
    cr_assert_eq(e.hash_len, 32);
    /* A plain CONNECT password checks against the StoredKey. */
    cr_assert(passwd_verify(&e, u8("pencil"), 6));
    cr_assert_not(passwd_verify(&e, u8("pencil "), 7));
    cr_assert_not(passwd_verify(&e, u8(""), 0));
    sh_free_str(e.user);
}

Test(passwd, scram_make_then_verify)
{
    char *line = passwd_make_scram_line("carol", "s3cret", 6, 4096);
    cr_assert_not_null(line);
    cr_assert(!strncmp(line, "carol:$scram-sha-256$4096$", 26), "%s", line);
    passwd_entry e;
    char err[128];
    cr_assert_eq(passwd_parse_line(line, &e, err, sizeof(err)), SH_OK, "%s", err);
    cr_assert_eq(e.scheme, PASSWD_SCRAM_SHA256);
    cr_assert_eq(e.salt_len, PASSWD_SALT_LEN);
    cr_assert(passwd_verify(&e, u8("s3cret"), 6));
    cr_assert_not(passwd_verify(&e, u8("s3creT"), 6));
    sh_free_str(e.user);
    char *again = passwd_make_scram_line("carol", "s3cret", 6, 4096);
    cr_assert_str_neq(line, again); /* fresh salt */
    sh_free_str(again);
    sh_free_str(line);
}

Test(passwd, scram_malformed_lines)
{
    const char *K = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
    const char *fmt[] = {
        "u:$scram-sha-256$4096$c2FsdA==$%s",          /* no ServerKey */
        "u:$scram-sha-256$4096$c2FsdA==$%s$",         /* empty ServerKey */
        "u:$scram-sha-256$4096$c2FsdA==$%s$aGFzaA==", /* short ServerKey */
        "u:$scram-sha-256$4096$c2FsdA==$aGFzaA==$%s", /* short StoredKey */
        "u:$scram-sha-256$4096$c2FsdA==$%s$%s$",      /* trailing field */
        "u:$scram-sha-256$4096$%s",                   /* no keys */
        "u:$scram-sha-256$0$c2FsdA==$%s$%s",          /* zero iterations */
        "u:$scram-sha-256$4096$!!!!$%s$%s",           /* bad salt */
        "u:$scram-sha-256$4096$c2FsdA==$%s$%s!",      /* bad base64 */
        "u:$scram-sha-1$4096$c2FsdA==$%s$%s",         /* other scheme */
    };
    for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
        char line[512];
        snprintf(line, sizeof(line), fmt[i], K, K);
        passwd_entry e;
        char err[128] = "";
        cr_assert_eq(passwd_parse_line(line, &e, err, sizeof(err)), SH_ERR, "accepted: %s", line);
        cr_assert(err[0], "no reason for %s", line);
    }
}

Test(passwd, table_mixes_schemes)
{
    char *a = passwd_make_line("alice", "a", 1, 1);
    char text[1024];
    snprintf(text, sizeof(text), "%s\n%s\n", SCRAM_LINE, a);
    char err[128];
    passwd_table *t = passwd_parse(text, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(passwd_find(t, "alice", 5)->scheme, PASSWD_PBKDF2_SHA512);
    cr_assert_eq(passwd_find(t, "user", 4)->scheme, PASSWD_SCRAM_SHA256);
    cr_assert(passwd_verify(passwd_find(t, "user", 4), u8("pencil"), 6));
    cr_assert(passwd_verify(passwd_find(t, "alice", 5), u8("a"), 1));
    passwd_free(t);
    sh_free_str(a);
}
