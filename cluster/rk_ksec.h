/* SPDX-License-Identifier: Apache-2.0 */
/* Kafka TLS and SASL: the node's --kafka-security-protocol, --kafka-tls-*
 * and --kafka-sasl-* options as librdkafka properties.
 *
 * The options were checked by node/config.c (a certificate without its
 * key, SASL without a mechanism...); here the files are read, once, at
 * open: each must be readable, and the password is the first line of
 * its file. The password is held only here and in librdkafka's copy; it
 * is never logged. */
#ifndef SHOAL_CLUSTER_RK_KSEC_H
#define SHOAL_CLUSTER_RK_KSEC_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#include "cluster/backplane.h"

/* librdkafka before 2.6.1 sends the SCRAM nonce twice in its final
 * message; Kafka 4.x checks it as RFC 5802 says and refuses the login
 * (librdkafka#4895). Debian 12 ships 2.0.2. */
#define RK_KSEC_SCRAM_FIXED 0x020601ff

/* A password file holds one password, not a keystore. */
#define RK_KSEC_PASSWORD_MAX 1024

typedef struct rk_ksec {
    const char *protocol; /* "plaintext" when unset */
    bool loaded;
    char *password; /* NULL without SASL */
    size_t password_len;
} rk_ksec;

/* Check that every file the options name is readable and read the
 * password. Returns -1 after logging event=kafka_security_error with the
 * option and the file (never the password). */
int rk_ksec_load(rk_ksec *s, const bp_config *cfg);
/* Set security.protocol, ssl.* and sasl.* on conf. Returns -1 after
 * logging the property that librdkafka refused (not its value when it is
 * the password). */
int rk_ksec_apply(const rk_ksec *s, const bp_config *cfg, rd_kafka_conf_t *conf);
/* Wipe and free the password. */
void rk_ksec_free(rk_ksec *s);

/* Is this librdkafka error (and its text) a refusal by the brokers that
 * retrying will not cure: TLS handshake, certificate, SASL credentials?
 * A TLS alert from the broker counts: with TLS 1.3 a refused client
 * certificate reaches the client only as an alert on its next read, which
 * librdkafka reports as a transport error ("SSL alert number 42"). */
bool rk_ksec_is_auth_error(rd_kafka_resp_err_t err, const char *reason);

#endif
