/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration: every option is a flag (--name), a config-file key
 * ("name value" lines) and an environment variable (SHOAL_NAME). Precedence:
 * flag > environment > file > default. */
#ifndef SHOAL_NODE_CONFIG_H
#define SHOAL_NODE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "node/auth/auth.h"
#include "node/drain.h"
#include "node/http/http.h"
#include "node/mqtt/limits.h"
#include "node/net/proxy.h"
#include "node/net/tls.h"
#include "node/net/ws_conn.h"

typedef struct config {
    char *bind;
    int port;
    int workers;
    char *node_id;
    char *redis;
    char *redis_tls_ca;
    char *redis_tls_cert;
    char *redis_tls_key;
    char *kafka;
    char *config_file;
    char *log_level;
    char *log_format;
    int max_keepalive;
    uint32_t max_packet_size;
    int max_inflight;
    int max_queued;
    int max_topic_alias;
    int receive_maximum;
    int max_qos;
    bool retain_available;
    bool wildcard_subscriptions;
    bool subscription_identifiers;
    bool shared_subscriptions;
    char *shared_strategy;
    int connect_timeout;
    int sys_interval;
    int max_connections;
    uint32_t max_session_expiry;
    uint32_t max_output_buffer;
    uint32_t max_inbox; /* items waiting in one worker's inbox before QoS 0 is dropped */
    /* cluster */
    char *advertise;
    char *kafka_topic_prefix;
    int kafka_partitions;
    int kafka_linger_ms;
    int publisher_backpressure;
    int kafka_replication;
    char *kafka_acks;
    /* Kafka TLS and SASL: normalised by config_load (protocol lower case,
     * mechanism upper case); passed to cluster/ in bp_config. */
    char *kafka_security_protocol;
    char *kafka_tls_ca;
    char *kafka_tls_cert;
    char *kafka_tls_key;
    char *kafka_sasl_mechanism;
    char *kafka_sasl_username;
    char *kafka_sasl_password_file;
    int cluster_heartbeat;
    int cluster_lease; /* ms, 0 = 3 heartbeats (cluster/lease.h) */
    /* Feature options, each declared by its module. */
    limits_config limits; /* node/mqtt/limits.h */
    http_config http;     /* node/http/http.h */
    tls_config tls;       /* node/net/tls.h */
    ws_config ws;         /* node/net/ws_conn.h */
    auth_config auth;     /* node/auth/auth.h */
    proxy_config proxy;   /* node/net/proxy.h */
    drain_config drain;   /* node/drain.h */
} config;

typedef enum config_status {
    CONFIG_OK = 0,
    CONFIG_EXIT,    /* --help or --version was printed: exit 0 */
    CONFIG_INVALID, /* an invalid option or value, already explained on stderr: exit 2 */
} config_status;

/* Parse argv (after the program name), the environment and the config
 * file. config_free is needed whatever it returns. */
config_status config_load(config *cfg, int argc, char **argv);
void config_free(config *cfg);
void config_usage(FILE *out);

#endif
