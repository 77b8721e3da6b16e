/* SPDX-License-Identifier: Apache-2.0 */
#include "node/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster/lease.h"
#include "common/alloc.h"

enum opt_type { OPT_INT, OPT_U32, OPT_BOOL, OPT_STR };

typedef struct opt {
    const char *name;
    enum opt_type type;
    size_t off;
    const char *def;
    long min;
    long max;
    const char *help;
} opt;

#define O(f) offsetof(config, f)

static const opt opts[] = {
    {"bind", OPT_STR, O(bind), "0.0.0.0", 0, 0, "address the MQTT listener binds"},
    {"port", OPT_INT, O(port), "1883", 0, 65535, "MQTT over TCP port (0 = pick a free port)"},
    {"workers", OPT_INT, O(workers), "0", 0, 64, "worker threads (0 = one per core)"},
    {"node-id", OPT_STR, O(node_id), NULL, 0, 0, "node name in logs and the cluster (default hostname-pid)"},
    {"redis", OPT_STR, O(redis), NULL, 0, 0,
     "Redis URL for the cluster backplane (with --kafka): redis://[:password@]host[:port][/db], rediss:// for TLS"},
    {"redis-tls-ca", OPT_STR, O(redis_tls_ca), NULL, 0, 0,
     "rediss://: CA bundle (PEM) that verifies Redis (default: the system's)"},
    {"redis-tls-cert", OPT_STR, O(redis_tls_cert), NULL, 0, 0,
     "rediss://: client certificate (PEM), for Redis with tls-auth-clients"},
    {"redis-tls-key", OPT_STR, O(redis_tls_key), NULL, 0, 0, "rediss://: the client certificate's key (PEM)"},
    {"kafka", OPT_STR, O(kafka), NULL, 0, 0, "Kafka bootstrap brokers for the cluster backplane"},
    {"config", OPT_STR, O(config_file), NULL, 0, 0, "config file of 'key value' lines"},
    {"log-level", OPT_STR, O(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"log-format", OPT_STR, O(log_format), "text", 0, 0, "text, logfmt or json"},
    {"max-keepalive", OPT_INT, O(max_keepalive), "65535", 1, 65535,
     "largest keep alive granted (s); v5 clients get Server Keep Alive"},
    {"max-packet-size", OPT_U32, O(max_packet_size), "268435455", 64, 268435455, "largest packet accepted (bytes)"},
    {"max-inflight", OPT_INT, O(max_inflight), "32", 1, 65535, "unacknowledged QoS 1/2 messages sent to one client"},
    {"max-queued", OPT_INT, O(max_queued), "1000", 0, 10000000,
     "messages queued per session beyond inflight; more are dropped"},
    {"max-topic-alias", OPT_INT, O(max_topic_alias), "64", 0, 65535, "topic aliases a v5 client may use"},
    {"receive-maximum", OPT_INT, O(receive_maximum), "256", 1, 65535,
     "QoS 1/2 publishes a client may have unacknowledged"},
    {"max-qos", OPT_INT, O(max_qos), "2", 0, 2, "highest QoS accepted"},
    {"retain-available", OPT_BOOL, O(retain_available), "true", 0, 0, "accept retained messages"},
    {"wildcard-subscriptions", OPT_BOOL, O(wildcard_subscriptions), "true", 0, 0, "allow '+' and '#' in filters"},
    {"subscription-identifiers", OPT_BOOL, O(subscription_identifiers), "true", 0, 0,
     "allow v5 subscription identifiers"},
    {"shared-subscriptions", OPT_BOOL, O(shared_subscriptions), "true", 0, 0, "allow $share/<group>/<filter>"},
    {"shared-strategy", OPT_STR, O(shared_strategy), "round-robin", 0, 0,
     "round-robin, random, sticky, hash-by-client-id or hash-by-topic"},
    {"connect-timeout", OPT_INT, O(connect_timeout), "10", 1, 3600, "seconds a new connection has to send CONNECT"},
    {"sys-interval", OPT_INT, O(sys_interval), "10", 0, 86400, "seconds between $SYS updates (0 = off)"},
    {"max-connections", OPT_INT, O(max_connections), "0", 0, INT_MAX, "connections per node (0 = no limit)"},
    {"max-session-expiry", OPT_U32, O(max_session_expiry), "4294967295", 0, 4294967295L,
     "cap on session expiry (s), 3.1.1 clean session 0 and v5 0xFFFFFFFF (never) included; default: no cap"},
    {"advertise", OPT_STR, O(advertise), NULL, 0, 0,
     "host:port other nodes and clients are told (default node-id:port)"},
    {"kafka-topic-prefix", OPT_STR, O(kafka_topic_prefix), "shoal.", 0, 0, "prefix of the Kafka topics Shoal uses"},
    {"kafka-partitions", OPT_INT, O(kafka_partitions), "12", 1, 10000,
     "partitions of the messages topic when Shoal creates it"},
    {"kafka-replication", OPT_INT, O(kafka_replication), "3", 1, 32, "replication factor of topics Shoal creates"},
    {"kafka-acks", OPT_STR, O(kafka_acks), "all", 0, 0, "producer acks: all (durable, default), 1 or 0"},
    {"kafka-linger-ms", OPT_INT, O(kafka_linger_ms), "3", 0, 1000,
     "ms the producer waits to batch records: more adds that to QoS 1/2 acks, less means more Kafka requests"},
    /* Kafka TLS and SASL: checked by kafka_security_check below. */
    {"kafka-security-protocol", OPT_STR, O(kafka_security_protocol), "plaintext", 0, 0,
     "how the node reaches Kafka: plaintext, ssl, sasl_plaintext or sasl_ssl"},
    {"kafka-tls-ca", OPT_STR, O(kafka_tls_ca), NULL, 0, 0,
     "ssl, sasl_ssl: CA bundle (PEM) that verifies the brokers (default: the system's)"},
    {"kafka-tls-cert", OPT_STR, O(kafka_tls_cert), NULL, 0, 0,
     "ssl, sasl_ssl: client certificate (PEM), for brokers with ssl.client.auth=required"},
    {"kafka-tls-key", OPT_STR, O(kafka_tls_key), NULL, 0, 0, "ssl, sasl_ssl: the client certificate's key (PEM)"},
    {"kafka-sasl-mechanism", OPT_STR, O(kafka_sasl_mechanism), NULL, 0, 0,
     "sasl_plaintext, sasl_ssl: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
    {"kafka-sasl-username", OPT_STR, O(kafka_sasl_username), NULL, 0, 0, "sasl_plaintext, sasl_ssl: the user name"},
    {"kafka-sasl-password-file", OPT_STR, O(kafka_sasl_password_file), NULL, 0, 0,
     "sasl_plaintext, sasl_ssl: file holding the password (its first line), read at start (a password "
     "is no flag: every local user could read it with ps)"},
    {"cluster-heartbeat", OPT_INT, O(cluster_heartbeat), "1000", 100, 60000,
     "ms between node heartbeats in Redis (the lease is 3x unless --cluster-lease says)"},
    {"cluster-lease", OPT_INT, O(cluster_lease), "0", 0, LEASE_MAX_MS,
     "ms a node's membership lives in Redis without a renewal (0 = 3 x --cluster-heartbeat, at least that): "
     "a node cut off from Redis closes its clients at 3/4 of it, others take a dead node over after it"},
    {"publisher-backpressure", OPT_INT, O(publisher_backpressure), "1000", 0, 10000000,
     "messages queued for a connected subscriber at which its publishers' reading pauses until the queue halves (at most --max-queued/4; a subscriber behind for 2 s stops holding them; 0 = off: drop at --max-queued)"},
    {"max-output-buffer", OPT_U32, O(max_output_buffer), "4194304", 65536, 1073741824,
     "bytes buffered for a slow reader before QoS 0 is dropped and QoS 1/2 queued"},
    /* limits: config.limits (node/mqtt/limits.h) */
    {"max-publish-rate", OPT_U32, O(limits.max_publish_rate), "0", 0, 4294967295L,
     "PUBLISH packets per second one client may send; faster ones are paused, not refused (0 = no limit)"},
    {"max-publish-bytes-rate", OPT_U32, O(limits.max_publish_bytes_rate), "0", 0, 4294967295L,
     "PUBLISH bytes per second one client may send; faster ones are paused (0 = no limit)"},
    {"max-subscriptions", OPT_INT, O(limits.max_subscriptions), "0", 0, INT_MAX,
     "subscriptions per session, at most 65535; more get SUBACK 0x97 (3.1.1: 0x80) (0 = 65535)"},
    {"max-topic-levels", OPT_INT, O(limits.max_topic_levels), "128", 1, 65535,
     "levels in a topic name or filter; more get 0x90 (publish, will) or 0x8F (subscribe)"},
    {"max-topic-length", OPT_INT, O(limits.max_topic_length), "65535", 1, 65535,
     "bytes in a topic name or filter; longer get 0x90 (publish, will) or 0x8F (subscribe)"},
    {"max-inbox", OPT_U32, O(max_inbox), "1000000", 64, 100000000,
     "deliveries waiting for one worker thread (64 bytes each plus the message) past which QoS 0 ones are dropped and counted (reason inbox-full); QoS 1/2 and retained updates always go in"},
    {"queue-qos0", OPT_BOOL, O(limits.queue_qos0), "true", 0, 0,
     "queue QoS 0 messages for offline persistent sessions (within --max-queued; evicted first)"},
    {"max-sessions", OPT_U32, O(limits.max_sessions), "0", 0, 4294967295L,
     "sessions on this node, online and offline; a new client id past it gets CONNACK 0x97 (3.1.1: 3) (0 = no limit)"},
    {"max-retained", OPT_U32, O(limits.max_retained), "0", 0, 4294967295L,
     "retained messages on this node; a new topic past it is not stored: v5 QoS 1/2 gets PUBACK/PUBREC 0x97, others are delivered unretained (0 = no limit)"},
    {"max-shared-groups", OPT_U32, O(limits.max_shared_groups), "1000", 0, 4294967295L,
     "distinct shared groups ($share/<group>/<filter>) on this node, groups left in the last 10 membership refreshes included; a new group past it gets SUBACK 0x97 (3.1.1: 0x80). On a cluster node every refresh runs one Redis script over all of them (0 = no limit)"},
    /* HTTP endpoint: config.http (node/http/http.h) */
    {"http-port", OPT_INT, O(http.port), "8080", 0, 65535,
     "HTTP port for /metrics, /health and /api/v1 (0 = pick a free port)"},
    {"http-bind", OPT_STR, O(http.bind), "0.0.0.0", 0, 0, "address the HTTP endpoint binds"},
    {"admin-token", OPT_STR, O(http.admin_token), NULL, 0, 0,
     "Bearer token for /api/v1 (unset: the API answers 403); prefer SHOAL_ADMIN_TOKEN"},
    {"metrics-auth", OPT_BOOL, O(http.metrics_auth), "false", 0, 0,
     "require the admin token for /metrics and /health too"},
    /* TLS listener: config.tls (node/net/tls.h) */
    {"tls-port", OPT_INT, O(tls.port), "0", 0, 65535, "MQTT over TLS port (0 = no TLS listener)"},
    {"tls-cert", OPT_STR, O(tls.cert), NULL, 0, 0, "server certificate chain (PEM); reloaded on SIGHUP"},
    {"tls-key", OPT_STR, O(tls.key), NULL, 0, 0, "server private key (PEM); reloaded on SIGHUP"},
    {"tls-ca", OPT_STR, O(tls.ca), NULL, 0, 0, "CA bundle (PEM) that verifies client certificates"},
    {"tls-require-client-cert", OPT_BOOL, O(tls.require_client_cert), "false", 0, 0,
     "refuse TLS clients without a certificate signed by --tls-ca"},
    {"tls-cert-as-username", OPT_BOOL, O(tls.cert_as_username), "false", 0, 0,
     "the client certificate's subject CN becomes the username"},
    {"tls-min-version", OPT_STR, O(tls.min_version), "1.2", 0, 0, "lowest TLS version accepted: 1.2 or 1.3"},
    {"tls-ciphers", OPT_STR, O(tls.ciphers), NULL, 0, 0, "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)"},
    /* WebSocket listeners: config.ws (node/net/ws_conn.h) */
    {"ws-port", OPT_INT, O(ws.port), "0", 0, 65535, "MQTT over WebSocket port (0 = none; 8083 is the usual port)"},
    {"wss-port", OPT_INT, O(ws.wss_port), "0", 0, 65535,
     "MQTT over WebSocket over TLS port (0 = none; 8084 is usual); uses the --tls-* files"},
    {"ws-path", OPT_STR, O(ws.path), "/mqtt", 0, 0, "URL path of the WebSocket endpoint; other paths get HTTP 404"},
    {"ws-max-frame", OPT_U32, O(ws.max_frame), "0", 0, 4294967295L,
     "largest WebSocket frame payload accepted (bytes), larger: close 1009 (0 = --max-packet-size + 5)"},
    {"ws-origins", OPT_STR, O(ws.origins), NULL, 0, 0,
     "comma-separated Origins a browser may connect from (unset = any); others get HTTP 403"},
    /* PROXY protocol: config.proxy (node/net/proxy.h) */
    {"proxy-protocol", OPT_STR, O(proxy.protocol), "off", 0, 0,
     "PROXY protocol header expected before the client's bytes: off, v1 or v2 on every client listener, or per listener LISTENER=VERSION,... (mqtt, mqtts, ws, wss; unnamed: off); a connection without a valid header is refused"},
    {"proxy-trusted", OPT_STR, O(proxy.trusted), NULL, 0, 0,
     "comma-separated ADDRESS[/BITS] the PROXY headers may come from (the load balancers); other sources are refused; required with --proxy-protocol (0.0.0.0/0,::/0 = any)"},
    /* drain: config.drain (node/drain.h) */
    {"drain-timeout", OPT_INT, O(drain.timeout), "30", 1, 3600,
     "seconds a drain (SIGTERM, POST /api/v1/drain) may take in all: in-flight QoS 1/2 publishes answered, clients disconnected, sessions stored; what is left is then closed (SIGTERM: exit 0)"},
    {"drain-rate", OPT_U32, O(drain.rate), "500", 1, 1000000,
     "clients a drain disconnects per second, so they do not all reconnect to the other nodes at once; raised when needed to finish within two thirds of --drain-timeout"},
    {"server-reference", OPT_STR, O(drain.server_reference), NULL, 0, 0,
     "MQTT 5 Server Reference a drain sends its clients with DISCONNECT 0x9C Use another server (unset: 0x8B Server shutting down); 3.1.1 clients just see the close"},
    /* auth: config.auth (node/auth/auth.h) */
    {"allow-anonymous", OPT_STR, O(auth.allow_anonymous), NULL, 0, 0,
     "true or false: accept clients without a username (default true, false with --password-file)"},
    {"password-file", OPT_STR, O(auth.password_file), NULL, 0, 0,
     "user:$pbkdf2-sha512$... or user:$scram-sha-256$... lines (shoal passwd [--scram]); reloaded on SIGHUP"},
    {"acl-file", OPT_STR, O(auth.acl_file), NULL, 0, 0,
     "user/topic/pattern rules; with it, default deny; reloaded on SIGHUP"},
    {"auth-queue", OPT_INT, O(auth.hash_queue), "256", 1, 1000000,
     "CONNECT passwords waiting to be checked (PBKDF2, off the event loops); past it CONNACK 0x89 Server busy (3.1.1: 3)"},
    {"auth-threads", OPT_INT, O(auth.hash_threads), "1", 1, 64,
     "threads that check CONNECT passwords, at a lower CPU priority than the workers"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static config_status set_opt(config *cfg, const opt *o, const char *val, const char *from)
{
    char *field = (char *)cfg + o->off;
    if (o->type == OPT_STR) {
        char **s = (char **)field;
        sh_free_str(*s);
        *s = val ? sh_strdup(val) : NULL;
        return CONFIG_OK;
    }
    if (o->type == OPT_BOOL) {
        if (!strcasecmp(val, "true") || !strcmp(val, "1") || !strcasecmp(val, "yes") || !strcasecmp(val, "on")) {
            *(bool *)field = true;
        } else if (!strcasecmp(val, "false") || !strcmp(val, "0") || !strcasecmp(val, "no") ||
                   !strcasecmp(val, "off")) {
            *(bool *)field = false;
        } else {
            fprintf(stderr, "shoal: %s: %s must be true or false, not '%s'\n", from, o->name, val);
            return CONFIG_INVALID;
        }
        return CONFIG_OK;
    }
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < o->min || v > o->max) {
        fprintf(stderr, "shoal: %s: %s must be an integer in %ld..%ld, not '%s'\n", from, o->name, o->min, o->max, val);
        return CONFIG_INVALID;
    }
    if (o->type == OPT_INT) {
        *(int *)field = (int)v;
    } else {
        *(uint32_t *)field = (uint32_t)v;
    }
    return CONFIG_OK;
}

static const opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len)) {
            return &opts[i];
        }
    }
    return NULL;
}

void config_usage(FILE *out)
{
    fprintf(out, "Usage: shoal [options]\n\nShoal " SHOAL_VERSION
                 ", a clustered MQTT 3.1.1/5.0 broker. Without --redis and --kafka it runs\n"
                 "as a single node. Every option is also a config-file key and a SHOAL_* variable\n"
                 "(--max-inflight: key max-inflight, variable SHOAL_MAX_INFLIGHT).\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[48];
        snprintf(left, sizeof(left), "--%s %s", opts[i].name,
                 opts[i].type == OPT_BOOL ? "BOOL" : (opts[i].type == OPT_STR ? "STR" : "N"));
        fprintf(out, "  %-32s %s", left, opts[i].help);
        if (opts[i].def) {
            fprintf(out, " [%s]", opts[i].def);
        }
        fputc('\n', out);
    }
    fprintf(out, "  %-32s %s\n", "--check-config FILE", "check config file FILE as a start would, then exit 0 or 1");
    fprintf(out, "  %-32s %s\n  %-32s %s\n", "-h, --help", "show this help", "--version", "print the version");
}

static config_status load_file(config *cfg, const char *path, const char *set_by_flag)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "shoal: cannot read config file %s: %s\n", path, strerror(errno));
        return CONFIG_INVALID;
    }
    char line[4096];
    int lineno = 0;
    config_status rc = CONFIG_OK;
    /* Every bad line is reported (one start or --check-config shows them all). */
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p)) {
            p++;
        }
        if (*p == '#' || *p == '\0') {
            continue;
        }
        char *key = p;
        while (*p && !isspace((unsigned char)*p) && *p != '=') {
            p++;
        }
        size_t klen = (size_t)(p - key);
        while (isspace((unsigned char)*p) || *p == '=') {
            p++;
        }
        char *val = p;
        size_t vlen = strlen(val);
        while (vlen && isspace((unsigned char)val[vlen - 1])) {
            val[--vlen] = '\0';
        }
        const opt *o = find_opt(key, klen);
        char where[512];
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (!o) {
            fprintf(stderr, "shoal: %s: unknown key '%.*s'\n", where, (int)klen, key);
            rc = CONFIG_INVALID;
        } else if (!strchr(set_by_flag, (char)('A' + (o - opts))) && set_opt(cfg, o, val, where)) {
            rc = CONFIG_INVALID;
        }
    }
    fclose(f);
    return rc;
}

static config_status load_env(config *cfg, const char *set_by_flag)
{
    for (size_t i = 0; i < NOPTS; i++) {
        char env[64] = "SHOAL_";
        size_t j = 6;
        for (const char *n = opts[i].name; *n && j < sizeof(env) - 1; n++) {
            env[j++] = *n == '-' ? '_' : (char)toupper((unsigned char)*n);
        }
        env[j] = '\0';
        const char *v = getenv(env);
        if (v && !strchr(set_by_flag, (char)('A' + i))) {
            config_status rc = set_opt(cfg, &opts[i], v, env);
            if (rc) {
                return rc;
            }
        }
    }
    return CONFIG_OK;
}

/* Kafka TLS and SASL: what can be told without reading a file (so
 * --check-config catches it too); the files are read at start, in cluster/. */
static config_status kafka_security_check(config *cfg)
{
    char *p = cfg->kafka_security_protocol;
    for (char *c = p; *c; c++) {
        *c = (char)tolower((unsigned char)*c);
    }
    bool use_tls = !strcmp(p, "ssl") || !strcmp(p, "sasl_ssl");
    bool sasl = !strcmp(p, "sasl_plaintext") || !strcmp(p, "sasl_ssl");
    if (!use_tls && !sasl && strcmp(p, "plaintext")) {
        fprintf(stderr,
                "shoal: --kafka-security-protocol must be plaintext, ssl, sasl_plaintext or sasl_ssl, not '%s'\n", p);
        return CONFIG_INVALID;
    }
    if (strcmp(p, "plaintext") && !cfg->kafka) {
        fprintf(stderr, "shoal: --kafka-security-protocol needs --kafka\n");
        return CONFIG_INVALID;
    }
    const struct {
        const char *name;
        const char *v;
    } files[] = {{"--kafka-tls-ca", cfg->kafka_tls_ca},
                 {"--kafka-tls-cert", cfg->kafka_tls_cert},
                 {"--kafka-tls-key", cfg->kafka_tls_key},
                 {"--kafka-sasl-mechanism", cfg->kafka_sasl_mechanism},
                 {"--kafka-sasl-username", cfg->kafka_sasl_username},
                 {"--kafka-sasl-password-file", cfg->kafka_sasl_password_file}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (files[i].v && !*files[i].v) {
            fprintf(stderr, "shoal: %s is empty (leave it unset instead)\n", files[i].name);
            return CONFIG_INVALID;
        }
    }
    if (!use_tls && (cfg->kafka_tls_ca || cfg->kafka_tls_cert || cfg->kafka_tls_key)) {
        fprintf(stderr, "shoal: --kafka-tls-ca, --kafka-tls-cert and --kafka-tls-key need --kafka-security-protocol "
                        "ssl or sasl_ssl\n");
        return CONFIG_INVALID;
    }
    if (!cfg->kafka_tls_cert != !cfg->kafka_tls_key) {
        fprintf(stderr, "shoal: --kafka-tls-cert and --kafka-tls-key go together (a client certificate and its key)\n");
        return CONFIG_INVALID;
    }
    if (!sasl) {
        if (cfg->kafka_sasl_mechanism || cfg->kafka_sasl_username || cfg->kafka_sasl_password_file) {
            fprintf(stderr, "shoal: --kafka-sasl-mechanism, --kafka-sasl-username and --kafka-sasl-password-file "
                            "need --kafka-security-protocol sasl_plaintext or sasl_ssl\n");
            return CONFIG_INVALID;
        }
        return CONFIG_OK;
    }
    char *m = cfg->kafka_sasl_mechanism;
    if (!m) {
        fprintf(stderr,
                "shoal: --kafka-security-protocol %s needs --kafka-sasl-mechanism (PLAIN, SCRAM-SHA-256 or "
                "SCRAM-SHA-512)\n",
                p);
        return CONFIG_INVALID;
    }
    for (char *c = m; *c; c++) {
        *c = (char)toupper((unsigned char)*c);
    }
    if (strcmp(m, "PLAIN") && strcmp(m, "SCRAM-SHA-256") && strcmp(m, "SCRAM-SHA-512")) {
        fprintf(stderr, "shoal: --kafka-sasl-mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not '%s'\n", m);
        return CONFIG_INVALID;
    }
    if (!cfg->kafka_sasl_username) {
        fprintf(stderr, "shoal: --kafka-security-protocol %s needs --kafka-sasl-username\n", p);
        return CONFIG_INVALID;
    }
    if (!cfg->kafka_sasl_password_file) {
        fprintf(stderr, "shoal: --kafka-security-protocol %s needs --kafka-sasl-password-file\n", p);
        return CONFIG_INVALID;
    }
    return CONFIG_OK;
}

config_status config_load(config *cfg, int argc, char **argv)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].def) {
            set_opt(cfg, &opts[i], opts[i].def, "default");
        }
    }
    /* Letters mark options given as flags, so env and file don't override them. */
    char set_by_flag[NOPTS + 1];
    size_t nset = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            config_usage(stdout);
            return CONFIG_EXIT;
        }
        if (!strcmp(a, "--version")) {
            printf("shoal %s\n", SHOAL_VERSION);
            return CONFIG_EXIT;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "shoal: unexpected argument '%s' (see --help)\n", a);
            return CONFIG_INVALID;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = find_opt(name, nlen);
        if (!o) {
            fprintf(stderr, "shoal: unknown option '--%.*s' (see --help)\n", (int)nlen, name);
            return CONFIG_INVALID;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val && o->type == OPT_BOOL && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
            val = "true";
        } else if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shoal: option --%s needs a value\n", o->name);
                return CONFIG_INVALID;
            }
            val = argv[++i];
        }
        config_status rc = set_opt(cfg, o, val, "command line");
        if (rc) {
            return rc;
        }
        set_by_flag[nset++] = (char)('A' + (o - opts));
    }
    set_by_flag[nset] = '\0';
    config_status rc = load_env(cfg, set_by_flag);
    if (!rc && cfg->config_file) {
        rc = load_file(cfg, cfg->config_file, set_by_flag);
        if (!rc) {
            /* The environment still wins over the file. */
            rc = load_env(cfg, set_by_flag);
        }
    }
    if (rc) {
        return rc;
    }
    if (strcmp(cfg->shared_strategy, "round-robin") && strcmp(cfg->shared_strategy, "random") &&
        strcmp(cfg->shared_strategy, "sticky") && strcmp(cfg->shared_strategy, "hash-by-client-id") &&
        strcmp(cfg->shared_strategy, "hash-by-topic")) {
        fprintf(stderr,
                "shoal: --shared-strategy must be round-robin, random, sticky, hash-by-client-id or hash-by-topic, "
                "not '%s'\n",
                cfg->shared_strategy);
        return CONFIG_INVALID;
    }
    if (strcmp(cfg->kafka_acks, "all") && strcmp(cfg->kafka_acks, "-1") && strcmp(cfg->kafka_acks, "1") &&
        strcmp(cfg->kafka_acks, "0")) {
        fprintf(stderr, "shoal: --kafka-acks must be all, 1 or 0, not '%s'\n", cfg->kafka_acks);
        return CONFIG_INVALID;
    }
    if (cfg->cluster_lease && cfg->cluster_lease < lease_min_ms(cfg->cluster_heartbeat)) {
        /* cluster/lease.h: below 3 heartbeats one lost renewal would fence. */
        fprintf(stderr,
                "shoal: --cluster-lease must be 0 (3 x --cluster-heartbeat) or at least 3 x --cluster-heartbeat "
                "(%d ms), not %d\n",
                lease_min_ms(cfg->cluster_heartbeat), cfg->cluster_lease);
        return CONFIG_INVALID;
    }
    if (!cfg->redis != !cfg->kafka) {
        fprintf(stderr, "shoal: --redis and --kafka go together (neither: a single node)\n");
        return CONFIG_INVALID;
    }
    if (kafka_security_check(cfg) != CONFIG_OK) {
        return CONFIG_INVALID;
    }
    if (strcmp(cfg->log_format, "text") && strcmp(cfg->log_format, "logfmt") && strcmp(cfg->log_format, "json")) {
        fprintf(stderr, "shoal: --log-format must be text, logfmt or json, not '%s'\n", cfg->log_format);
        return CONFIG_INVALID;
    }
    if (cfg->http.metrics_auth && (!cfg->http.admin_token || !*cfg->http.admin_token)) {
        fprintf(stderr, "shoal: --metrics-auth needs --admin-token (or SHOAL_ADMIN_TOKEN)\n");
        return CONFIG_INVALID;
    }
    if (proxy_config_parse(&cfg->proxy)) {
        return 2;
    }
    if (cfg->drain.server_reference &&
        (!*cfg->drain.server_reference || strlen(cfg->drain.server_reference) > DRAIN_SERVER_REFERENCE_MAX)) {
        fprintf(stderr, "shoal: --server-reference must be 1..%d bytes\n", DRAIN_SERVER_REFERENCE_MAX);
        return CONFIG_INVALID;
    }
    if (cfg->ws.path[0] != '/') {
        fprintf(stderr, "shoal: --ws-path must start with '/', not '%s'\n", cfg->ws.path);
        return CONFIG_INVALID;
    }
    /* auth: anonymous by default only without a password file. */
    cfg->auth.anonymous = !cfg->auth.password_file;
    if (cfg->auth.allow_anonymous) {
        const char *v = cfg->auth.allow_anonymous;
        if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) {
            cfg->auth.anonymous = true;
        } else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) {
            cfg->auth.anonymous = false;
        } else {
            fprintf(stderr, "shoal: --allow-anonymous must be true or false, not '%s'\n", v);
            return CONFIG_INVALID;
        }
    }
    return CONFIG_OK;
}

void config_free(config *cfg)
{
    proxy_config_free(&cfg->proxy);
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].type == OPT_STR) {
            char **s = (char **)((char *)cfg + opts[i].off);
            sh_free_str(*s);
            *s = NULL;
        }
    }
}
