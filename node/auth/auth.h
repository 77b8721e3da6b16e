/* SPDX-License-Identifier: Apache-2.0 */
/* Authentication (password file) and authorization (ACL file).
 *
 * passwd.c  the password file: parse, hash, verify, `shoal passwd`.
 * acl.c     the ACL file: parse, check a publish topic or a subscribe filter.
 * auth.c    the broker's side: load at start, swap on SIGHUP, the CONNECT,
 *           PUBLISH and SUBSCRIBE checks.
 *
 * Tables are immutable once built. A reload builds a new one and publishes
 * it with an atomic pointer store; workers load the pointer and read the
 * table without locks. Old tables are kept on a retired list until the
 * process exits (reloads are rare and tables small), so a worker that
 * loaded the old pointer just before the swap never reads freed memory. */
#ifndef SHOAL_NODE_AUTH_H
#define SHOAL_NODE_AUTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/auth/scram.h"
#include "proto/packet.h"

#include "common/status.h"

typedef struct broker broker;
typedef struct conn conn;

/* --- passwd.c --- */

#define PASSWD_DEFAULT_ITERATIONS 100000
#define PASSWD_SALT_LEN 16
#define PASSWD_HASH_LEN 64 /* SHA-512 output */

enum passwd_scheme {
    PASSWD_PBKDF2_SHA512 = 0, /* $pbkdf2-sha512$: plain CONNECT passwords only */
    PASSWD_SCRAM_SHA256,      /* $scram-sha-256$: SCRAM and plain passwords */
};

typedef struct passwd_entry {
    char *user;
    uint8_t scheme; /* enum passwd_scheme */
    int iterations;
    uint8_t salt[64];
    size_t salt_len;
    uint8_t hash[PASSWD_HASH_LEN]; /* SCRAM: StoredKey */
    size_t hash_len;
    uint8_t server_key[32]; /* SCRAM: ServerKey */
} passwd_entry;

typedef struct passwd_table {
    passwd_entry *v; /* sorted by user */
    size_t n;
    size_t cap;
} passwd_table;

/* One line (no newline) into e: "user:$pbkdf2-sha512$iterations$salt$hash"
 * or "user:$scram-sha-256$iterations$salt$StoredKey$ServerKey" (base64).
 * SH_OK or SH_ERR with a message in err. e->user is allocated on success (free with sh_free_str). */
int passwd_parse_line(const char *line, passwd_entry *e, char *err, size_t errlen);
/* A whole file's text; blank lines and '#' comments are skipped. NULL on
 * error, with "line N: why" in err. */
passwd_table *passwd_parse(const char *text, char *err, size_t errlen);
void passwd_free(passwd_table *t);
const passwd_entry *passwd_find(const passwd_table *t, const char *user, size_t len);
/* Constant-time comparison of the derived key (CRYPTO_memcmp); for a SCRAM
 * entry, of the StoredKey derived from pw. */
bool passwd_verify(const passwd_entry *e, const uint8_t *pw, size_t pwlen);
/* The same, giving up (false) once *cancel is set (node/auth/hash.c at stop). */
bool passwd_verify_or_cancel(const passwd_entry *e, const uint8_t *pw, size_t pwlen, const atomic_bool *cancel);
/* Format a line for user with a fresh random salt. Returns an allocated
 * string (free()), or NULL. */
char *passwd_make_line(const char *user, const char *pw, size_t pwlen, int iterations);
/* The same as a $scram-sha-256$ line. */
char *passwd_make_scram_line(const char *user, const char *pw, size_t pwlen, int iterations);
/* `shoal passwd [--scram] [-i N] [-D] FILE USER`; argv[0] is "passwd". */
int passwd_main(int argc, char **argv);

/* --- acl.c --- */

enum { ACL_READ = 1, ACL_WRITE = 2 };

typedef struct acl_rule {
    bool pattern;   /* %u / %c substituted; applies to everyone */
    char *user;     /* topic rules: owner, NULL = anonymous clients */
    uint8_t access; /* ACL_READ | ACL_WRITE */
    char *filter;
} acl_rule;

typedef struct acl {
    acl_rule *v;
    size_t n;
    size_t cap;
} acl;

acl *acl_parse(const char *text, char *err, size_t errlen);
void acl_free(acl *a);
/* May a client write (publish) / read topic? user NULL = anonymous. */
bool acl_check_topic(const acl *a, const char *user, const char *client_id, const uint8_t *topic, size_t len,
                     uint8_t access);
/* May a client subscribe to filter? Allowed when a read rule covers every
 * topic the filter can match (acl_filter_covers). */
bool acl_check_subscribe(const acl *a, const char *user, const char *client_id, const uint8_t *filter, size_t len);
/* Does rule filter r cover every topic that filter s matches? Level by
 * level: '#' in r covers the rest; '+' in r covers any one level of s but
 * '#'; a literal covers only the same literal; a wildcard in r's first level
 * never covers a '$' level (§4.7.2). */
bool acl_filter_covers(const char *r, size_t rlen, const uint8_t *s, size_t slen);

/* --- auth.c --- */

/* Load --password-file and --acl-file. SH_ERR with the reason on stderr. */
int auth_init(broker *b);
/* SIGHUP: re-read both files; a file that fails keeps the old table and
 * logs event=auth_reload_failed. */
void auth_reload(broker *b);
void auth_free(broker *b);
/* CONNECT: anonymous/password check; sets c->username. */
mqtt_rc auth_check_connect(conn *c, const mqtt_connect *p);
/* Is there a password file (the source of SCRAM credentials)? */
bool auth_has_passwords(broker *b);
/* SCRAM-SHA-256 credentials for user. A user without a SCRAM entry (unknown,
 * or a pbkdf2-sha512 entry) gets made-up ones, the same for the same name
 * for the life of the process, so that the exchange looks alike either way;
 * *doomed then says why the proof will be refused (NULL: real credentials).
 * SH_ERR without a password file. */
int auth_scram_cred(broker *b, const char *user, size_t len, scram_cred *cred, const char **doomed);
/* Count and log one failed SCRAM authentication (user may be empty). */
void auth_scram_failed(conn *c, const char *user, size_t len, const char *why);
bool auth_can_publish(conn *c, const uint8_t *topic, size_t len);
bool auth_can_subscribe(conn *c, const uint8_t *filter, size_t len);

/* --- hash.c: CONNECT passwords checked off the event loops --- */

typedef struct worker worker;
typedef struct inbox_item inbox_item;
/* Start --auth-threads hashing threads (threaded brokers with a password
 * file only; otherwise passwords are checked inline). */
int auth_hash_start(broker *b);
/* Stop them (before the workers): a check under way is cancelled, the
 * threads are joined; nothing is answered or queued after it returns. */
void auth_hash_stop(broker *b);
/* Drop the broker's hold on their state (auth_free). */
void auth_hash_free(broker *b);
/* Queue a check of pw against e for c and pause c (PAUSE_HASH); SH_ERR when
 * --auth-queue checks are waiting already. */
int auth_hash_submit(conn *c, const passwd_entry *e, const uint8_t *pw, uint32_t pwlen);
/* IN_AUTH_RESULT on c's worker: go on with the CONNECT or refuse it. */
void auth_hash_done(worker *w, const inbox_item *it);

/* --allow-anonymous, --password-file, --acl-file (config.auth). */
typedef struct auth_config {
    char *allow_anonymous; /* "true"/"false"/NULL as given; `anonymous` is the result */
    char *password_file;
    char *acl_file;
    int hash_queue;   /* --auth-queue: password checks waiting (node/auth/hash.c) */
    int hash_threads; /* --auth-threads */
    bool anonymous;
} auth_config;

/* The broker's auth state (broker.auth). */
typedef struct auth_state {
    struct auth *tables;        /* password and ACL tables, swapped on SIGHUP */
    _Atomic uint64_t failures;  /* CONNECTs refused by authentication */
    struct auth_hasher *hasher; /* node/auth/hash.c; NULL: passwords are checked inline */
} auth_state;

#endif
