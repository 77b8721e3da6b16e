/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's life (open, start, reload, stop, close), in one place for
 * the process (main.c), the in-process tests and the fuzzers. */
#include "node/broker.h"
#include "node/mqtt/session_stream.h"
#include "node/mqtt/stream_hold.h"

#include <event2/thread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/mqtt/remote.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/session.h"
#include "node/mqtt/session_sync.h"
#include "node/mqtt/share.h"
#include "node/worker.h"

static void name_node(broker *b, const config *cfg, const broker_open_opts *o)
{
    const char *id = o->node_id ? o->node_id : cfg->node_id;
    if (id) {
        snprintf(b->node_id, sizeof(b->node_id), "%s", id);
    } else {
        char host[64] = "shoal";
        gethostname(host, sizeof(host) - 1);
        snprintf(b->node_id, sizeof(b->node_id), "%s-%d", host, (int)getpid());
    }
    const char *addr = o->address ? o->address : cfg->advertise;
    if (addr) {
        snprintf(b->address, sizeof(b->address), "%s", addr);
    } else {
        char host[128] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(b->address, sizeof(b->address), "%s:%d", host, cfg->port);
    }
}

static void setup_log(const broker *b, const config *cfg)
{
    sh_log_setup((sh_level)sh_log_parse_level(cfg->log_level),
                 !strcmp(cfg->log_format, "json") ? SH_LOG_JSON
                                                  : (!strcmp(cfg->log_format, "logfmt") ? SH_LOG_LOGFMT : SH_LOG_TEXT),
                 b->node_id);
}

static trie_strategy shared_strategy(const config *cfg)
{
    const char *s = cfg->shared_strategy;
    if (s && !strcmp(s, "random")) {
        return TRIE_SHARED_RANDOM;
    }
    if (s && !strcmp(s, "sticky")) {
        return TRIE_SHARED_STICKY;
    }
    if (s && !strcmp(s, "hash-by-client-id")) {
        return TRIE_SHARED_HASH_CLIENT_ID;
    }
    if (s && !strcmp(s, "hash-by-topic")) {
        return TRIE_SHARED_HASH_TOPIC;
    }
    return TRIE_SHARED_ROUND_ROBIN;
}

/* The indexes, locks and session table. */
static void init_indexes(broker *b)
{
    b->start_ms = now_ms();
    b->share_strategy = shared_strategy(b->cfg);
    b->subs = trie_new(b->share_strategy);
    b->retained = retain_new();
    retain_set_max(b->retained, b->cfg->limits.max_retained);
    pthread_rwlock_init(&b->subs_lock, NULL);
    pthread_rwlock_init(&b->retain_lock, NULL);
    pthread_mutex_init(&b->sess_lock, NULL);
    b->sess_buckets = SESS_BUCKETS_MIN;
    b->sess_tab = sh_calloc(b->sess_buckets, sizeof(session *));
}

static broker_status open_backplane(broker *b)
{
    const config *cfg = b->cfg;
    bp_config bc = {
        .node_id = b->node_id,
        .address = b->address, /* not copied by bp_open: kept in the broker */
        .redis_url = cfg->redis,
        .redis_tls_ca = cfg->redis_tls_ca,
        .redis_tls_cert = cfg->redis_tls_cert,
        .redis_tls_key = cfg->redis_tls_key,
        .kafka_brokers = cfg->kafka,
        .kafka_topic_prefix = cfg->kafka_topic_prefix,
        .kafka_partitions = cfg->kafka_partitions,
        .kafka_replication = cfg->kafka_replication,
        .kafka_acks = cfg->kafka_acks,
        .kafka_linger_ms = cfg->kafka_linger_ms,
        .kafka_security_protocol = cfg->kafka_security_protocol,
        .kafka_tls_ca = cfg->kafka_tls_ca,
        .kafka_tls_cert = cfg->kafka_tls_cert,
        .kafka_tls_key = cfg->kafka_tls_key,
        .kafka_sasl_mechanism = cfg->kafka_sasl_mechanism,
        .kafka_sasl_username = cfg->kafka_sasl_username,
        .kafka_sasl_password_file = cfg->kafka_sasl_password_file,
        .heartbeat_ms = cfg->cluster_heartbeat,
        .lease_ms = cfg->cluster_lease,
    };
    bp_hooks hooks = {.node = b,
                      .remote_message = remote_message_hook,
                      .retained = remote_retained_hook,
                      .ready_changed = remote_ready_hook,
                      .qos0_dropped = remote_qos0_dropped_hook,
                      .session_revoked = sync_revoked_hook,
                      .remote_position = stream_position_hook,
                      .stream_behind = hold_stream_behind,
                      .sessions_reassert = sync_reassert_hook,
                      .fenced = sync_fence_hook,
                      .share_groups = remote_share_groups_hook,
                      .share_low = share_low_hook,
                      .share_dead = share_dead_hook};
    b->bp = bp_open(&bc, &hooks);
    if (!b->bp) {
        return BROKER_EOPEN;
    }
    stream_broker_init(b);
    /* Other nodes may choose this one for a group just after its last
     * member left: it hands those messages on (node/mqtt/share.c). */
    trie_keep_ghosts(b->subs, !bp_knows_all_subscribers(b->bp));
    remote_cap_packet_size(b);
    return BROKER_OK;
}

broker_status broker_open(broker *b, config *cfg, const broker_open_opts *o)
{
    memset(b, 0, sizeof(*b));
    b->cfg = cfg;
    b->threaded = o->threads;
    if (auth_init(b) != SH_OK) {
        return BROKER_EAUTH;
    }
    name_node(b, cfg, o);
    if (o->setup_log) {
        setup_log(b, cfg);
    }
    int n = o->workers > 0 ? o->workers : cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    b->nworkers = n < 1 ? 1 : n;
    init_indexes(b);
    if (open_backplane(b) != BROKER_OK) {
        return BROKER_EOPEN;
    }
    /* wss uses the TLS listener's certificates and their reload. */
    if (cfg->tls.port || cfg->ws.wss_port) {
        if (!(b->tls.ctx = tls_open(cfg))) {
            return BROKER_EOPEN;
        }
        b->tls.port = (uint16_t)cfg->tls.port;
    }
    b->ws.port = (uint16_t)cfg->ws.port;
    b->ws.wss_port = (uint16_t)cfg->ws.wss_port;
    /* Before the loops are made: they lock only if told first. */
    if (o->threads) {
        evthread_use_pthreads();
    }
    return worker_init_all(b) == 0 ? BROKER_OK : BROKER_EOPEN;
}

broker_status broker_start(broker *b)
{
    if (b->threaded) {
        if (worker_start_all(b) != 0 || auth_hash_start(b) != SH_OK) {
            return BROKER_EOPEN;
        }
    }
    atomic_store_explicit(&b->running, true, memory_order_release);
    /* HTTP after the workers: admin requests post to their loops. */
    if (b->threaded && !(b->ops.server = http_start(b))) {
        return BROKER_EOPEN;
    }
    return BROKER_OK;
}

void broker_reload(broker *b)
{
    auth_reload(b); /* password and ACL files */
    if (b->tls.ctx) {
        tls_reload(b->tls.ctx); /* TLS certificates; a failure keeps the current ones */
    }
}

void broker_stop(broker *b)
{
    atomic_store(&b->stopping, true);
    if (!b->threaded) {
        return;
    }
    http_stop(b->ops.server); /* before the workers: an admin request may be waiting on them */
    b->ops.server = NULL;
    auth_hash_stop(b); /* it posts to the workers */
    worker_stop_all(b);
}

/* Connections first (they hold sessions), then sessions (their timers live
 * on the loops), then the loops, the indexes and the backplane. */
static void free_state(broker *b)
{
    worker_release_conns(b);
    for (size_t i = 0; i < b->sess_buckets; i++) {
        session *s = b->sess_tab[i];
        while (s) {
            session *next = s->reg_next;
            s->reg_next = NULL;
            session_unref(b, s);
            s = next;
        }
    }
    sh_free(b->sess_tab, b->sess_buckets * sizeof(session *));
    worker_free_all(b);
    trie_free(b->subs);
    retain_free(b->retained);
    pthread_rwlock_destroy(&b->subs_lock);
    pthread_rwlock_destroy(&b->retain_lock);
    pthread_mutex_destroy(&b->sess_lock);
    bp_free(b->bp);
    stream_broker_free(b);
}

void broker_close(broker *b)
{
    if (b->bp) {
        bp_close(b->bp);
        worker_run_closed(b);
    }
    free_state(b);
    tls_close(b->tls.ctx);
    auth_free(b);
}
