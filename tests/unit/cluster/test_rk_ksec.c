/* SPDX-License-Identifier: Apache-2.0 */
/* Kafka TLS and SASL options onto a real librdkafka configuration. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/rk_ksec.h"
#include "common/log.h"

static char dir[] = "/tmp/shoal-ksec-XXXXXX";

static void setup(void)
{
    cr_redirect_stderr();
    sh_log_setup(SH_DEBUG, SH_LOG_TEXT, "test");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(rk_ksec, .init = setup, .fini = teardown);

static const char *file_with(const char *name, const char *text)
{
    static char path[8][256];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* A property as librdkafka holds it, "" when unset. */
static const char *prop(rd_kafka_conf_t *conf, const char *k)
{
    static char v[1200];
    size_t n = sizeof(v);
    if (rd_kafka_conf_get(conf, k, v, &n) != RD_KAFKA_CONF_OK) {
        return "";
    }
    return v;
}

static char *stderr_text(void)
{
    static char buf[16384];
    fflush(stderr);
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    return buf;
}

Test(rk_ksec, plaintext_by_default)
{
    bp_config cfg = {0};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), 0);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rk_ksec_apply(&s, &cfg, conf), 0);
    cr_assert_str_eq(prop(conf, "security.protocol"), "plaintext");
    cr_assert_str_eq(prop(conf, "sasl.username"), "");
    rd_kafka_conf_destroy(conf);
    rk_ksec_free(&s);
}

Test(rk_ksec, sasl_ssl_maps_every_option_and_never_logs_the_password)
{
    const char *ca = file_with("ca.pem", "x"), *cert = file_with("c.pem", "x"), *key = file_with("k.pem", "x");
    bp_config cfg = {.kafka_security_protocol = "sasl_ssl",
                     .kafka_tls_ca = ca,
                     .kafka_tls_cert = cert,
                     .kafka_tls_key = key,
                     .kafka_sasl_mechanism = "SCRAM-SHA-256",
                     .kafka_sasl_username = "shoal",
                     .kafka_sasl_password_file = file_with("pw", "s3cret-Pa55\n")};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), 0);
    cr_assert_str_eq(s.password, "s3cret-Pa55", "the line end is not part of it");
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rk_ksec_apply(&s, &cfg, conf), 0);
    cr_assert_str_eq(prop(conf, "security.protocol"), "sasl_ssl");
    cr_assert_str_eq(prop(conf, "ssl.ca.location"), ca);
    cr_assert_str_eq(prop(conf, "ssl.certificate.location"), cert);
    cr_assert_str_eq(prop(conf, "ssl.key.location"), key);
    cr_assert_str_eq(prop(conf, "ssl.endpoint.identification.algorithm"), "https");
    cr_assert_str_eq(prop(conf, "sasl.mechanisms"), "SCRAM-SHA-256");
    cr_assert_str_eq(prop(conf, "sasl.username"), "shoal");
    cr_assert_str_eq(prop(conf, "sasl.password"), "s3cret-Pa55");
    rd_kafka_conf_destroy(conf);
    rk_ksec_free(&s);
    cr_assert_null(s.password);
    char *log = stderr_text();
    cr_assert(strstr(log, "event=kafka_security protocol=sasl_ssl"), "%s", log);
    cr_assert(strstr(log, "sasl_username=\"shoal\""), "%s", log);
    cr_assert_null(strstr(log, "s3cret"), "%s", log);
}

Test(rk_ksec, ssl_leaves_sasl_unset)
{
    bp_config cfg = {.kafka_security_protocol = "ssl", .kafka_tls_ca = file_with("ca.pem", "x")};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), 0);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rk_ksec_apply(&s, &cfg, conf), 0);
    cr_assert_str_eq(prop(conf, "security.protocol"), "ssl");
    cr_assert_str_eq(prop(conf, "sasl.username"), "");
    cr_assert_str_eq(prop(conf, "ssl.certificate.location"), "");
    rd_kafka_conf_destroy(conf);
    rk_ksec_free(&s);
}

Test(rk_ksec, unreadable_files_are_named)
{
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing-ca.pem", dir);
    bp_config cfg = {.kafka_security_protocol = "ssl", .kafka_tls_ca = missing};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), -1);
    rk_ksec_free(&s);
    char *log = stderr_text();
    cr_assert(strstr(log, "event=kafka_security_error option=kafka-tls-ca"), "%s", log);
    cr_assert(strstr(log, "missing-ca.pem"), "%s", log);
    cr_assert(strstr(log, "No such file or directory"), "%s", log);
}

Test(rk_ksec, unreadable_password_file)
{
    const char *pw = file_with("pw", "secret\n");
    chmod(pw, 0);
    if (access(pw, R_OK) == 0) {
        cr_skip_test("running as root: every file is readable");
    }
    bp_config cfg = {.kafka_security_protocol = "sasl_plaintext",
                     .kafka_sasl_mechanism = "PLAIN",
                     .kafka_sasl_username = "u",
                     .kafka_sasl_password_file = pw};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), -1);
    rk_ksec_free(&s);
    cr_assert(strstr(stderr_text(), "option=kafka-sasl-password-file"));
}

Test(rk_ksec, empty_password_is_refused)
{
    bp_config cfg = {.kafka_security_protocol = "sasl_ssl",
                     .kafka_sasl_mechanism = "PLAIN",
                     .kafka_sasl_username = "u",
                     .kafka_sasl_password_file = file_with("pw", "\nsecond line\n")};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), -1);
    rk_ksec_free(&s);
    cr_assert(strstr(stderr_text(), "first line is empty"));
}

Test(rk_ksec, password_without_newline_and_with_crlf)
{
    const char *texts[] = {"pw-no-newline", "pw-no-newline\r\n"};
    for (int i = 0; i < 2; i++) {
        bp_config cfg = {.kafka_security_protocol = "sasl_plaintext",
                         .kafka_sasl_mechanism = "SCRAM-SHA-512",
                         .kafka_sasl_username = "u",
                         .kafka_sasl_password_file = file_with(i ? "pw2" : "pw1", texts[i])};
        rk_ksec s;
        cr_assert_eq(rk_ksec_load(&s, &cfg), 0);
        cr_assert_str_eq(s.password, "pw-no-newline");
        rk_ksec_free(&s);
    }
}

/* A password file holding a NUL byte in its first line is refused, not
 * cut at the NUL (librdkafka would get another password than the file's). */
Test(rk_ksec, password_with_a_nul_byte_is_refused)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/pwnul", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fwrite("abc\0def\n", 1, 8, f);
    fclose(f);
    bp_config cfg = {.kafka_security_protocol = "sasl_ssl",
                     .kafka_sasl_mechanism = "PLAIN",
                     .kafka_sasl_username = "u",
                     .kafka_sasl_password_file = path};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), -1);
    cr_assert_null(s.password);
    rk_ksec_free(&s);
    cr_assert(strstr(stderr_text(), "holds a NUL byte"));
}

/* The bound's edge: RK_KSEC_PASSWORD_MAX bytes pass, one more is refused. */
Test(rk_ksec, password_at_and_over_the_limit)
{
    static char text[RK_KSEC_PASSWORD_MAX + 3];
    for (int over = 0; over < 2; over++) {
        size_t n = RK_KSEC_PASSWORD_MAX + (size_t)over;
        memset(text, 'p', n);
        text[n] = '\n';
        text[n + 1] = '\0';
        bp_config cfg = {.kafka_security_protocol = "sasl_ssl",
                         .kafka_sasl_mechanism = "PLAIN",
                         .kafka_sasl_username = "u",
                         .kafka_sasl_password_file = file_with(over ? "pwover" : "pwmax", text)};
        rk_ksec s;
        cr_assert_eq(rk_ksec_load(&s, &cfg), over ? -1 : 0);
        if (!over) {
            cr_assert_eq(s.password_len, RK_KSEC_PASSWORD_MAX);
        }
        rk_ksec_free(&s);
    }
    cr_assert(strstr(stderr_text(), "longer than 1024 bytes"));
}

Test(rk_ksec, plain_without_tls_is_warned_about)
{
    bp_config cfg = {.kafka_security_protocol = "sasl_plaintext",
                     .kafka_sasl_mechanism = "PLAIN",
                     .kafka_sasl_username = "u",
                     .kafka_sasl_password_file = file_with("pw", "p\n")};
    rk_ksec s;
    cr_assert_eq(rk_ksec_load(&s, &cfg), 0);
    rk_ksec_free(&s);
    cr_assert(strstr(stderr_text(), "event=kafka_security_weak"));
}

Test(rk_ksec, auth_errors)
{
    cr_assert(rk_ksec_is_auth_error(RD_KAFKA_RESP_ERR__SSL, "SSL handshake failed"));
    cr_assert(rk_ksec_is_auth_error(RD_KAFKA_RESP_ERR__AUTHENTICATION, "SASL authentication error"));
    /* TLS 1.3: the broker's refusal of the client certificate, read as an alert. */
    cr_assert(rk_ksec_is_auth_error(RD_KAFKA_RESP_ERR__TRANSPORT,
                                    "ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A000412:SSL "
                                    "routines::sslv3 alert bad certificate: SSL alert number 42"));
    cr_assert_not(rk_ksec_is_auth_error(RD_KAFKA_RESP_ERR__TRANSPORT, "Connection refused"));
    cr_assert_not(rk_ksec_is_auth_error(RD_KAFKA_RESP_ERR__TRANSPORT, NULL));
    cr_assert_not(rk_ksec_is_auth_error(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "all down"));
}
