/* SPDX-License-Identifier: Apache-2.0 */
/* Kafka TLS and SASL options onto librdkafka (cluster/rk_ksec.h). */
#include "cluster/rk_ksec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

static bool uses_sasl(const char *protocol)
{
    return !strcmp(protocol, "sasl_plaintext") || !strcmp(protocol, "sasl_ssl");
}

static int fail(const char *option, const char *file, const char *why)
{
    sh_log(SH_ERROR, "event=kafka_security_error option=%s file=\"%s\" err=\"%s\"", option, file, why);
    return -1;
}

static int readable(const char *option, const char *file)
{
    if (!file) {
        return 0;
    }
    FILE *f = fopen(file, "r");
    if (!f) {
        return fail(option, file, strerror(errno));
    }
    fclose(f);
    return 0;
}

/* The password is the file's first line, without its line end (a file
 * made by `echo` or a Kubernetes Secret with or without a newline). */
static int read_password(rk_ksec *s, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        return fail("kafka-sasl-password-file", file, strerror(errno));
    }
    char buf[RK_KSEC_PASSWORD_MAX + 2];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        return fail("kafka-sasl-password-file", file, "read error");
    }
    buf[n] = '\0';
    /* The line end among the bytes read: strcspn would stop at a NUL, and
     * the password would be cut there instead of refused. */
    size_t len = 0;
    while (len < n && buf[len] != '\r' && buf[len] != '\n') {
        len++;
    }
    int rc = 0;
    if (len == 0) {
        rc = fail("kafka-sasl-password-file", file, "the file's first line is empty");
    } else if (len > RK_KSEC_PASSWORD_MAX) {
        rc = fail("kafka-sasl-password-file", file, "the password is longer than 1024 bytes");
    } else if (memchr(buf, '\0', len)) {
        rc = fail("kafka-sasl-password-file", file, "the password holds a NUL byte");
    } else {
        s->password = sh_malloc(len + 1);
        memcpy(s->password, buf, len);
        s->password[len] = '\0';
        s->password_len = len;
    }
    memset(buf, 0, sizeof(buf));
    return rc;
}

int rk_ksec_load(rk_ksec *s, const bp_config *cfg)
{
    memset(s, 0, sizeof(*s));
    s->protocol = cfg->kafka_security_protocol ? cfg->kafka_security_protocol : "plaintext";
    if (readable("kafka-tls-ca", cfg->kafka_tls_ca) || readable("kafka-tls-cert", cfg->kafka_tls_cert) ||
        readable("kafka-tls-key", cfg->kafka_tls_key)) {
        return -1;
    }
    if (uses_sasl(s->protocol)) {
        if (!cfg->kafka_sasl_password_file) {
            return fail("kafka-sasl-password-file", "", "not set");
        }
        if (read_password(s, cfg->kafka_sasl_password_file) != 0) {
            return -1;
        }
    }
    s->loaded = true;
    const char *mech = uses_sasl(s->protocol) && cfg->kafka_sasl_mechanism ? cfg->kafka_sasl_mechanism : "-";
    sh_log(SH_INFO,
           "event=kafka_security protocol=%s ca=\"%s\" client_cert=%s sasl_mechanism=%s sasl_username=\"%s\" "
           "librdkafka=%s",
           s->protocol, cfg->kafka_tls_ca ? cfg->kafka_tls_ca : "", cfg->kafka_tls_cert ? "yes" : "no", mech,
           uses_sasl(s->protocol) && cfg->kafka_sasl_username ? cfg->kafka_sasl_username : "", rd_kafka_version_str());
    if (!strncmp(mech, "SCRAM", 5) && rd_kafka_version() < RK_KSEC_SCRAM_FIXED) {
        sh_log(SH_WARN,
               "event=kafka_security_scram_old librdkafka=%s msg=\"Kafka 4.x brokers refuse SCRAM from librdkafka "
               "before 2.6.1 (librdkafka#4895: the nonce is sent twice); with Kafka 4.x use PLAIN over sasl_ssl\"",
               rd_kafka_version_str());
    }
    if (!strcmp(s->protocol, "sasl_plaintext") && !strcmp(mech, "PLAIN")) {
        sh_log(SH_WARN, "event=kafka_security_weak msg=\"SASL PLAIN without TLS sends the password in clear: "
                        "use sasl_ssl, or SCRAM\"");
    }
    return 0;
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v, bool secret)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        sh_log(SH_ERROR, "event=kafka_config key=%s value=%s err=\"%s\"", k, secret ? "(hidden)" : v, err);
        return -1;
    }
    return 0;
}

int rk_ksec_apply(const rk_ksec *s, const bp_config *cfg, rd_kafka_conf_t *conf)
{
    if (!s->loaded) {
        sh_log(SH_ERROR, "event=kafka_security_error err=\"options not loaded\"");
        return -1;
    }
    if (set(conf, "security.protocol", s->protocol, false)) {
        return -1;
    }
    if (!strcmp(s->protocol, "ssl") || !strcmp(s->protocol, "sasl_ssl")) {
        /* The broker's name is checked against its certificate
         * (ssl.endpoint.identification.algorithm=https, librdkafka's
         * default since 2.0): said here so an older one does it too. */
        if (set(conf, "ssl.endpoint.identification.algorithm", "https", false) ||
            (cfg->kafka_tls_ca && set(conf, "ssl.ca.location", cfg->kafka_tls_ca, false)) ||
            (cfg->kafka_tls_cert && set(conf, "ssl.certificate.location", cfg->kafka_tls_cert, false)) ||
            (cfg->kafka_tls_key && set(conf, "ssl.key.location", cfg->kafka_tls_key, false))) {
            return -1;
        }
    }
    if (uses_sasl(s->protocol)) {
        if (set(conf, "sasl.mechanisms", cfg->kafka_sasl_mechanism, false) ||
            set(conf, "sasl.username", cfg->kafka_sasl_username, false) ||
            set(conf, "sasl.password", s->password, true)) {
            return -1;
        }
    }
    return 0;
}

void rk_ksec_free(rk_ksec *s)
{
    if (s->password) {
        /* volatile: the wipe of memory about to be freed is not optimised away. */
        volatile char *p = s->password;
        for (size_t i = 0; i < s->password_len; i++) {
            p[i] = 0;
        }
        sh_free(s->password, s->password_len + 1);
    }
    memset(s, 0, sizeof(*s));
}

bool rk_ksec_is_auth_error(rd_kafka_resp_err_t err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        return reason && strstr(reason, "SSL alert number") != NULL;
    }
    return err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL ||
           err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED || err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
}
