/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"

static void quiet(void)
{
    cr_redirect_stderr();
    cr_redirect_stdout();
    unsetenv("SHOAL_PORT");
    unsetenv("SHOAL_MAX_QOS");
}

TestSuite(config, .init = quiet);

static config_status load(config *c, int argc, const char **argv)
{
    return config_load(c, argc, (char **)argv);
}

Test(config, defaults)
{
    config c;
    cr_assert_eq(load(&c, 0, NULL), 0);
    cr_assert_eq(c.port, 1883);
    cr_assert_eq(c.max_qos, 2);
    cr_assert(c.retain_available);
    cr_assert_str_eq(c.shared_strategy, "round-robin");
    cr_assert_eq(c.max_packet_size, 268435455u);
    config_free(&c);
}

Test(config, flags_in_both_forms)
{
    config c;
    const char *argv[] = {"--port", "1999", "--max-qos=1", "--retain-available", "false", "--wildcard-subscriptions"};
    cr_assert_eq(load(&c, 6, argv), 0);
    cr_assert_eq(c.port, 1999);
    cr_assert_eq(c.max_qos, 1);
    cr_assert_not(c.retain_available);
    cr_assert(c.wildcard_subscriptions);
    config_free(&c);
}

Test(config, invalid_values_are_exit_code_2)
{
    config c;
    const char *a1[] = {"--port", "abc"};
    cr_assert_eq(load(&c, 2, a1), CONFIG_INVALID);
    const char *a2[] = {"--max-qos", "7"};
    cr_assert_eq(load(&c, 2, a2), CONFIG_INVALID);
    const char *a3[] = {"--no-such-flag"};
    cr_assert_eq(load(&c, 1, a3), CONFIG_INVALID);
    const char *a4[] = {"--retain-available=maybe"};
    cr_assert_eq(load(&c, 1, a4), CONFIG_INVALID);
    const char *a5[] = {"--shared-strategy", "fastest"};
    cr_assert_eq(load(&c, 2, a5), CONFIG_INVALID);
    const char *a6[] = {"--port"};
    cr_assert_eq(load(&c, 1, a6), CONFIG_INVALID);
}

Test(config, help_returns_1)
{
    config c;
    const char *argv[] = {"--help"};
    cr_assert_eq(load(&c, 1, argv), CONFIG_EXIT);
}

Test(config, env_then_flag_precedence)
{
    config c;
    setenv("SHOAL_PORT", "2001", 1);
    setenv("SHOAL_MAX_QOS", "1", 1);
    const char *argv[] = {"--port", "2002"};
    cr_assert_eq(load(&c, 2, argv), 0);
    cr_assert_eq(c.port, 2002, "flag beats env");
    cr_assert_eq(c.max_qos, 1, "env applies");
    config_free(&c);
}

Test(config, file_keys_and_precedence)
{
    char path[] = "/tmp/shoal-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# comment\nport 3001\nmax-inflight = 7\n\nshared-strategy sticky\nmax-qos 0\n");
    fclose(f);
    setenv("SHOAL_MAX_QOS", "1", 1);
    config c;
    const char *argv[] = {"--config", path, "--port", "3002"};
    cr_assert_eq(load(&c, 4, argv), 0);
    cr_assert_eq(c.port, 3002, "flag beats file");
    cr_assert_eq(c.max_inflight, 7);
    cr_assert_str_eq(c.shared_strategy, "sticky");
    cr_assert_eq(c.max_qos, 1, "env beats file");
    config_free(&c);
    unlink(path);
}

Test(config, file_with_unknown_key_is_an_error)
{
    char path[] = "/tmp/shoal-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "prot 3001\n");
    fclose(f);
    config c;
    const char *argv[] = {"--config", path};
    cr_assert_eq(load(&c, 2, argv), CONFIG_INVALID);
    unlink(path);
}

/* ---- Kafka TLS and SASL (--kafka-security-protocol and friends) ---- */

static config_status kafka_load(config *c, int argc, const char **extra)
{
    const char *argv[32] = {"--redis", "redis://127.0.0.1:6379", "--kafka", "127.0.0.1:9092"};
    for (int i = 0; i < argc; i++) {
        argv[4 + i] = extra[i];
    }
    return load(c, 4 + argc, argv);
}

/* The stderr a load wrote, for the message checks (criterion redirects it). */
static bool said(const char *needle)
{
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

Test(config, kafka_security_defaults_to_plaintext)
{
    config c;
    cr_assert_eq(kafka_load(&c, 0, NULL), CONFIG_OK);
    cr_assert_str_eq(c.kafka_security_protocol, "plaintext");
    cr_assert_null(c.kafka_tls_ca);
    cr_assert_null(c.kafka_sasl_mechanism);
    cr_assert_null(c.kafka_sasl_password_file);
    config_free(&c);
}

Test(config, kafka_sasl_ssl_with_every_option)
{
    config c;
    const char *a[] = {"--kafka-security-protocol",
                       "SASL_SSL",
                       "--kafka-tls-ca",
                       "/ca.pem",
                       "--kafka-tls-cert",
                       "/c.pem",
                       "--kafka-tls-key",
                       "/k.pem",
                       "--kafka-sasl-mechanism",
                       "scram-sha-512",
                       "--kafka-sasl-username",
                       "shoal",
                       "--kafka-sasl-password-file",
                       "/pw"};
    cr_assert_eq(kafka_load(&c, 14, a), CONFIG_OK);
    /* Normalised to the spellings librdkafka documents. */
    cr_assert_str_eq(c.kafka_security_protocol, "sasl_ssl");
    cr_assert_str_eq(c.kafka_sasl_mechanism, "SCRAM-SHA-512");
    cr_assert_str_eq(c.kafka_sasl_username, "shoal");
    config_free(&c);
}

Test(config, kafka_security_options_from_env_and_file)
{
    char path[] = "/tmp/shoal-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "kafka-security-protocol sasl_plaintext\nkafka-sasl-mechanism PLAIN\nkafka-sasl-username u\n");
    fclose(f);
    setenv("SHOAL_KAFKA_SASL_PASSWORD_FILE", "/run/secrets/pw", 1);
    config c;
    const char *a[] = {"--config", path};
    config_status rc = kafka_load(&c, 2, a);
    unsetenv("SHOAL_KAFKA_SASL_PASSWORD_FILE");
    unlink(path);
    cr_assert_eq(rc, CONFIG_OK);
    cr_assert_str_eq(c.kafka_security_protocol, "sasl_plaintext");
    cr_assert_str_eq(c.kafka_sasl_password_file, "/run/secrets/pw");
    config_free(&c);
}

Test(config, kafka_unknown_security_protocol)
{
    config c;
    const char *a[] = {"--kafka-security-protocol", "tls"};
    cr_assert_eq(kafka_load(&c, 2, a), CONFIG_INVALID);
    cr_assert(said("--kafka-security-protocol must be plaintext, ssl, sasl_plaintext or sasl_ssl, not 'tls'"));
    config_free(&c);
}

Test(config, kafka_tls_files_need_a_tls_protocol)
{
    config c;
    const char *a[] = {"--kafka-tls-ca", "/ca.pem"};
    cr_assert_eq(kafka_load(&c, 2, a), CONFIG_INVALID);
    cr_assert(said("--kafka-tls-ca, --kafka-tls-cert and --kafka-tls-key need --kafka-security-protocol ssl or "
                   "sasl_ssl"));
    config_free(&c);
}

Test(config, kafka_cert_without_key_and_key_without_cert)
{
    config c;
    const char *a[] = {"--kafka-security-protocol", "ssl", "--kafka-tls-cert", "/c.pem"};
    cr_assert_eq(kafka_load(&c, 4, a), CONFIG_INVALID);
    config_free(&c);
    const char *b[] = {"--kafka-security-protocol", "ssl", "--kafka-tls-key", "/k.pem"};
    cr_assert_eq(kafka_load(&c, 4, b), CONFIG_INVALID);
    cr_assert(said("--kafka-tls-cert and --kafka-tls-key go together"));
    config_free(&c);
}

Test(config, kafka_sasl_protocol_needs_mechanism_username_and_password_file)
{
    config c;
    const char *a[] = {"--kafka-security-protocol",  "sasl_ssl", "--kafka-sasl-username", "u",
                       "--kafka-sasl-password-file", "/pw"};
    cr_assert_eq(kafka_load(&c, 6, a), CONFIG_INVALID);
    cr_assert(said("needs --kafka-sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"));
    config_free(&c);
    const char *b[] = {"--kafka-security-protocol",  "sasl_ssl", "--kafka-sasl-mechanism", "PLAIN",
                       "--kafka-sasl-password-file", "/pw"};
    cr_assert_eq(kafka_load(&c, 6, b), CONFIG_INVALID);
    cr_assert(said("needs --kafka-sasl-username"));
    config_free(&c);
    const char *d[] = {"--kafka-security-protocol", "sasl_ssl", "--kafka-sasl-mechanism", "PLAIN",
                       "--kafka-sasl-username",     "u"};
    cr_assert_eq(kafka_load(&c, 6, d), CONFIG_INVALID);
    cr_assert(said("needs --kafka-sasl-password-file"));
    config_free(&c);
}

Test(config, kafka_unknown_sasl_mechanism)
{
    config c;
    const char *a[] = {"--kafka-security-protocol", "sasl_ssl", "--kafka-sasl-mechanism",     "GSSAPI",
                       "--kafka-sasl-username",     "u",        "--kafka-sasl-password-file", "/pw"};
    cr_assert_eq(kafka_load(&c, 8, a), CONFIG_INVALID);
    cr_assert(said("--kafka-sasl-mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not 'GSSAPI'"));
    config_free(&c);
}

Test(config, kafka_sasl_options_need_a_sasl_protocol)
{
    config c;
    const char *a[] = {"--kafka-security-protocol", "ssl", "--kafka-sasl-username", "u"};
    cr_assert_eq(kafka_load(&c, 4, a), CONFIG_INVALID);
    cr_assert(said("need --kafka-security-protocol sasl_plaintext or sasl_ssl"));
    config_free(&c);
}

Test(config, kafka_security_without_kafka)
{
    config c;
    const char *a[] = {"--kafka-security-protocol", "ssl"};
    cr_assert_eq(load(&c, 2, a), CONFIG_INVALID);
    cr_assert(said("--kafka-security-protocol needs --kafka"));
    config_free(&c);
}

Test(config, kafka_empty_file_names_are_refused)
{
    config c;
    const char *a[] = {"--kafka-security-protocol", "ssl", "--kafka-tls-ca", ""};
    cr_assert_eq(kafka_load(&c, 4, a), CONFIG_INVALID);
    cr_assert(said("--kafka-tls-ca is empty"));
    config_free(&c);
}

/* --cluster-lease (cluster/lease.h): 0 = 3 heartbeats; otherwise at least
 * 3 heartbeats (one lost renewal must not fence) and at most 10 minutes. */
Test(config, cluster_lease_defaults_to_three_heartbeats)
{
    config c;
    cr_assert_eq(load(&c, 0, NULL), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 0);
    cr_assert_eq(c.cluster_heartbeat, 1000);
    config_free(&c);
}

Test(config, cluster_lease_accepted_from_three_heartbeats_to_ten_minutes)
{
    config c;
    const char *a1[] = {"--cluster-lease", "10000"};
    cr_assert_eq(load(&c, 2, a1), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 10000);
    config_free(&c);
    const char *a2[] = {"--cluster-lease", "3000"};
    cr_assert_eq(load(&c, 2, a2), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 3000);
    config_free(&c);
    const char *a3[] = {"--cluster-lease", "600000", "--cluster-heartbeat", "60000"};
    cr_assert_eq(load(&c, 4, a3), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 600000);
    config_free(&c);
    const char *a4[] = {"--cluster-heartbeat", "300", "--cluster-lease", "900"};
    cr_assert_eq(load(&c, 4, a4), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 900);
    config_free(&c);
}

Test(config, cluster_lease_below_three_heartbeats_is_refused)
{
    config c;
    const char *a[] = {"--cluster-lease", "2999"};
    cr_assert_eq(load(&c, 2, a), CONFIG_INVALID);
    cr_assert(said("--cluster-lease must be 0 (3 x --cluster-heartbeat) or at least 3 x --cluster-heartbeat "
                   "(3000 ms), not 2999"));
    config_free(&c);
}

Test(config, cluster_lease_minimum_follows_the_heartbeat)
{
    config c;
    const char *a[] = {"--cluster-heartbeat", "5000", "--cluster-lease", "10000"};
    cr_assert_eq(load(&c, 4, a), CONFIG_INVALID);
    cr_assert(said("at least 3 x --cluster-heartbeat (15000 ms), not 10000"));
    config_free(&c);
}

Test(config, cluster_lease_above_ten_minutes_or_negative_is_refused)
{
    config c;
    const char *a1[] = {"--cluster-lease", "600001"};
    cr_assert_eq(load(&c, 2, a1), CONFIG_INVALID);
    config_free(&c);
    const char *a2[] = {"--cluster-lease", "-1"};
    cr_assert_eq(load(&c, 2, a2), CONFIG_INVALID);
    cr_assert(said("cluster-lease must be an integer in 0..600000"));
    config_free(&c);
}

Test(config, cluster_lease_from_env_and_file)
{
    char path[] = "/tmp/shoal-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "cluster-lease 12000\n");
    fclose(f);
    config c;
    const char *a1[] = {"--config", path};
    cr_assert_eq(load(&c, 2, a1), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 12000);
    config_free(&c);
    setenv("SHOAL_CLUSTER_LEASE", "15000", 1);
    cr_assert_eq(load(&c, 2, a1), CONFIG_OK);
    cr_assert_eq(c.cluster_lease, 15000, "env beats file");
    config_free(&c);
    setenv("SHOAL_CLUSTER_LEASE", "100", 1);
    cr_assert_eq(load(&c, 0, NULL), CONFIG_INVALID);
    config_free(&c);
    unsetenv("SHOAL_CLUSTER_LEASE");
    unlink(path);
}
