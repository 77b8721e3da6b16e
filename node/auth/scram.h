/* SPDX-License-Identifier: Apache-2.0 */
/* SCRAM-SHA-256, server side (RFC 5802, RFC 7677), as pure functions over
 * the SASL messages plus one small state struct per exchange. No I/O, no
 * allocation; the caller looks up the user's credentials between the first
 * two steps and carries the messages in MQTT AUTH packets (node/mqtt/handle_auth.c).
 *
 *   scram_client_first()  parse client-first, learn the user name
 *   scram_server_first()  with the user's credentials: build server-first
 *   scram_client_final()  check client-final and the proof; build server-final
 *
 * User names are compared as bytes after =2C / =3D unescaping (no SASLprep);
 * channel binding is not offered ("n" and "y" are accepted, "p=" refused). */
#ifndef SHOAL_NODE_SCRAM_H
#define SHOAL_NODE_SCRAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define SCRAM_METHOD "SCRAM-SHA-256"
#define SCRAM_KEY_LEN 32 /* SHA-256 output */
#define SCRAM_DEFAULT_ITERATIONS 10000
#define SCRAM_MIN_ITERATIONS 4096 /* RFC 7677 §4 */
#define SCRAM_MAX_USER 256        /* bytes, after unescaping */
#define SCRAM_MAX_NONCE 128       /* the client's part */
#define SCRAM_MAX_MSG 1024        /* longest client message accepted */
#define SCRAM_SALT_MAX 64
#define SCRAM_SERVER_NONCE_LEN 24 /* ours: base64 of 18 random bytes */
#define SCRAM_SERVER_NONCE_MAX 32

typedef struct scram_cred {
    int iterations;
    uint8_t salt[SCRAM_SALT_MAX];
    size_t salt_len;
    uint8_t stored_key[SCRAM_KEY_LEN];
    uint8_t server_key[SCRAM_KEY_LEN];
} scram_cred;

/* Why a step failed; callers map them to MQTT reason codes. */
typedef enum scram_rc {
    SCRAM_OK = 0,
    SCRAM_MALFORMED,       /* missing or misplaced attribute, bad escape or base64, too long */
    SCRAM_CHANNEL_BINDING, /* "p=": the client requires channel binding */
    SCRAM_UNSUPPORTED,     /* an authzid or the mandatory "m=" extension */
    SCRAM_BAD_NONCE,       /* client-final does not repeat the combined nonce */
    SCRAM_BAD_BINDING,     /* c= does not repeat the gs2 header */
    SCRAM_BAD_PROOF,
} scram_rc;

const char *scram_rc_name(scram_rc rc);

/* One exchange. Zero it before scram_client_first(). */
typedef struct scram {
    char user[SCRAM_MAX_USER + 1]; /* unescaped, NUL-terminated */
    size_t user_len;
    char gs2[3];              /* "n,," or "y,," */
    char bare[SCRAM_MAX_MSG]; /* client-first-message-bare */
    size_t bare_len;
    char nonce[SCRAM_MAX_NONCE + SCRAM_SERVER_NONCE_MAX + 1]; /* client + server */
    size_t cnonce_len;
    size_t nonce_len;
    char server_first[SCRAM_MAX_NONCE + SCRAM_SERVER_NONCE_MAX + 128];
    size_t server_first_len;
    char server_final[64]; /* "v=" base64(ServerSignature) */
    size_t server_final_len;
    scram_cred cred;
} scram;

/* Parse client-first-message (msg borrowed until return). */
scram_rc scram_client_first(scram *s, const uint8_t *msg, size_t len);
/* Build server-first-message into s->server_first from the user's
 * credentials (copied) and a server nonce of printable ASCII without ','
 * (up to SCRAM_SERVER_NONCE_MAX chars). */
scram_rc scram_server_first(scram *s, const scram_cred *cred, const char *server_nonce);
/* Check client-final-message and its proof in constant time; on SCRAM_OK
 * s->server_final holds server-final-message. */
scram_rc scram_client_final(scram *s, const uint8_t *msg, size_t len);

/* A fresh server nonce (RAND_bytes), NUL-terminated; cap must exceed
 * SCRAM_SERVER_NONCE_LEN. SH_OK (0) or SH_ERR (-1). */
int scram_make_nonce(char *out, size_t cap);
/* PBKDF2-HMAC (RFC 8018 §5.2) with digest "SHA2-256" or "SHA2-512": the
 * same output as PKCS5_PBKDF2_HMAC, but it gives up (-1) once *cancel is
 * set (checked every PBKDF2_CANCEL_EVERY iterations; cancel may be NULL):
 * a password file may ask for minutes of it, and a stopping node must not
 * wait for that (node/auth/hash.c). 0 or -1. */
#define PBKDF2_CANCEL_EVERY 1024
int scram_pbkdf2(const char *digest, const uint8_t *pw, size_t pwlen, const uint8_t *salt, size_t salt_len,
                 int iterations, uint8_t *out, size_t outlen, const atomic_bool *cancel);
/* StoredKey and ServerKey from a password (PBKDF2-HMAC-SHA-256). 0, or -1
 * (also when *cancel was set meanwhile; cancel may be NULL). */
int scram_derive(const uint8_t *pw, size_t pwlen, const uint8_t *salt, size_t salt_len, int iterations,
                 uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN], const atomic_bool *cancel);

/* Strict base64 with padding: decoded length, or -1 for bad input or more
 * than cap bytes. */
int scram_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap);
/* Base64 with padding, NUL-terminated; cap >= 4 * ceil(len / 3) + 1.
 * Returns the encoded length. */
size_t scram_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap);

#endif
