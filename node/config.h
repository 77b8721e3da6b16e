/* Configuration: every option is a flag (--name), a config-file key
 * ("name value" lines) and an environment variable (SHOAL_NAME). Precedence:
 * flag > environment > file > default. */
#ifndef SHOAL_NODE_CONFIG_H
#define SHOAL_NODE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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
    /* --- limits (node/limits.c) --- */
    uint32_t max_publish_rate;       /* PUBLISH/s per connection, 0 = no limit */
    uint32_t max_publish_bytes_rate; /* PUBLISH bytes/s per connection, 0 = no limit */
    int max_subscriptions;           /* per session, 0 = no limit */
    int max_topic_levels;
    int max_topic_length;
    bool queue_qos0;                 /* queue QoS 0 for offline persistent sessions */
    uint32_t max_sessions;           /* sessions on the node, online and offline, 0 = no limit */
    uint32_t max_retained;           /* retained messages on the node, 0 = no limit */
    /* --- end limits --- */
    /* cluster */
    char *advertise;
    char *kafka_topic_prefix;
    int kafka_partitions;
    int kafka_linger_ms;
    int publisher_backpressure;
    int kafka_replication;
    char *kafka_acks;
    int cluster_heartbeat;
    /* --- HTTP endpoint (node/http.c) --- */
    int http_port;
    char *http_bind;
    char *admin_token;
    bool metrics_auth;
    /* --- end HTTP endpoint --- */
    /* --- TLS listener (node/tls.c) --- */
    int tls_port;
    char *tls_cert;
    char *tls_key;
    char *tls_ca;
    bool tls_require_client_cert;
    bool tls_cert_as_username;
    char *tls_min_version;
    char *tls_ciphers;
    /* --- end TLS listener --- */
    /* --- WebSocket listeners (node/ws_conn.c) --- */
    int ws_port;
    int wss_port;
    char *ws_path;
    uint32_t ws_max_frame;
    char *ws_origins;
    /* --- end WebSocket listeners --- */
    /* --- auth (node/auth.c) --- */
    char *allow_anonymous; /* "true"/"false"/NULL as given; `anonymous` is the result */
    char *password_file;
    char *acl_file;
    bool anonymous;
    /* --- end auth --- */
} config;

/* Parse argv (after the program name), the environment and the config
 * file. Returns 0 on success, 1 when --help/--version was printed, 2 on an
 * invalid value (the message is already on stderr). */
int config_load(config *cfg, int argc, char **argv);
void config_free(config *cfg);
void config_usage(FILE *out);

#endif
