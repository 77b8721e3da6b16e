/* SPDX-License-Identifier: Apache-2.0 */
/* Broker metrics: every figure is read with atomics or under the index's
 * read lock, so a scrape never waits on a worker's loop. */
#include "node/http/metrics.h"
#include "node/broker.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

#include <string.h>

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "proto/mqtt.h"

#define TICK_MS 1000

void metrics_worker_init(worker *w)
{
    uint64_t now = now_ms();
    w->metrics.tick_due_ms = now + TICK_MS;
    atomic_store(&w->metrics.tick_last_ms, now);
}

void metrics_tick(worker *w, uint64_t now, uint32_t active)
{
    uint64_t lag = now > w->metrics.tick_due_ms ? now - w->metrics.tick_due_ms : 0;
    /* libevent schedules a persistent timeout from when it was due, or from
     * now if that is already past; follow it so lag does not accumulate. */
    w->metrics.tick_due_ms += TICK_MS;
    if (w->metrics.tick_due_ms <= now) {
        w->metrics.tick_due_ms = now + TICK_MS;
    }
    atomic_store_explicit(&w->metrics.tick_lag_ms, lag, memory_order_relaxed);
    atomic_store_explicit(&w->metrics.tick_last_ms, now, memory_order_relaxed);
    atomic_store_explicit(&w->metrics.online, active, memory_order_relaxed);
}

bool metrics_loops_alive(broker *b, uint64_t now, int *stuck, uint64_t *silent_ms)
{
    for (int i = 0; i < b->nworkers; i++) {
        uint64_t last = atomic_load_explicit(&b->workers[i].metrics.tick_last_ms, memory_order_relaxed);
        if (now > last && now - last > METRICS_LIVE_MS) {
            *stuck = i;
            *silent_ms = now - last;
            return false;
        }
    }
    return true;
}

static uint64_t sum(broker *b, size_t off)
{
    uint64_t total = 0;
    for (int i = 0; i < b->nworkers; i++) {
        total += atomic_load_explicit((_Atomic uint64_t *)((char *)&b->workers[i] + off), memory_order_relaxed);
    }
    return total;
}

static uint64_t sum_online(broker *b)
{
    uint64_t total = 0;
    for (int i = 0; i < b->nworkers; i++) {
        total += atomic_load_explicit(&b->workers[i].metrics.online, memory_order_relaxed);
    }
    return total;
}

/* A counter whose value is the sum of one worker field. */
typedef struct summed {
    const char *name;
    size_t off;
    const char *help;
} summed;

static const summed summed_counters[] = {
    {"shoal_messages_in_total", offsetof(worker, msgs_in), "PUBLISH packets received from clients"},
    {"shoal_messages_out_total", offsetof(worker, msgs_out), "PUBLISH packets sent to clients"},
    {"shoal_received_bytes_total", offsetof(worker, bytes_in), "MQTT bytes received from clients"},
    {"shoal_sent_bytes_total", offsetof(worker, bytes_out), "MQTT bytes queued to clients"},
    {"shoal_tls_handshake_failures_total", offsetof(worker, tls.handshake_failures),
     "TLS handshakes that failed or did not finish within the connect timeout"},
    {"shoal_tls_handshakes_total", offsetof(worker, tls.handshakes), "TLS handshakes completed"},
    {"shoal_proxy_headers_total", offsetof(worker, proxy.accepted), "PROXY protocol headers accepted"},
    {"shoal_proxy_untrusted_total", offsetof(worker, proxy.untrusted),
     "connections refused on a PROXY protocol listener: source outside --proxy-trusted"},
    {"shoal_proxy_bad_header_total", offsetof(worker, proxy.bad),
     "connections refused on a PROXY protocol listener: no valid header (malformed, closed, or not within the connect timeout)"},
};

static void per_qos(metrics_text *t, broker *b, const char *name, const char *help, size_t off)
{
    metrics_text_family(t, name, "counter", help);
    for (int q = 0; q < 3; q++) {
        char qs[2] = {(char)('0' + q), '\0'};
        metrics_label l = {"qos", qs};
        metrics_text_sample_u64(t, name, &l, 1, sum(b, off + (size_t)q * sizeof(_Atomic uint64_t)));
    }
}

/* Reasons always exported, zero or not, so rate() has a series from the
 * start; any other code appears once it happens. */
static bool always_exported(int rc)
{
    switch (rc) {
    case MQTT_RC_SUCCESS:
    case MQTT_RC_UNSPECIFIED:
    case MQTT_RC_MALFORMED:
    case MQTT_RC_PROTOCOL_ERROR:
    case MQTT_RC_SERVER_SHUTTING_DOWN:
    case MQTT_RC_KEEP_ALIVE_TIMEOUT:
    case MQTT_RC_SESSION_TAKEN_OVER:
    case MQTT_RC_ADMIN_ACTION:
        return true;
    default:
        return false;
    }
}

static bool connack_always_exported(int rc)
{
    return rc == MQTT_RC_SUCCESS || rc == MQTT_RC_BAD_USER_OR_PASSWORD || rc == MQTT_RC_NOT_AUTHORIZED ||
           rc == MQTT_RC_SERVER_UNAVAILABLE;
}

/* One series per reason code seen (plus the always exported ones), summed
 * over workers from the per-worker array at `off`. `zero_name` names 0x00. */
static void by_reason_code(metrics_text *t, broker *b, const char *name, const char *help, size_t off,
                           const char *zero_name, bool (*always)(int rc))
{
    metrics_text_family(t, name, "counter", help);
    for (int rc = 0; rc < 256; rc++) {
        uint64_t n = 0;
        for (int i = 0; i < b->nworkers; i++) {
            n += atomic_load_explicit((_Atomic uint64_t *)((char *)&b->workers[i] + off) + rc, memory_order_relaxed);
        }
        if (n == 0 && !always(rc)) {
            continue;
        }
        char code[8];
        snprintf(code, sizeof(code), "0x%02x", rc);
        metrics_label l[2] = {{"code", code}, {"reason", rc == 0 ? zero_name : mqtt_rc_name((uint8_t)rc)}};
        metrics_text_sample_u64(t, name, l, 2, n);
    }
}

static void disconnects(metrics_text *t, broker *b)
{
    /* 0x00 on a DISCONNECT is "normal disconnection", not "success". */
    by_reason_code(t, b, "shoal_disconnects_total",
                   "connections closed, by MQTT reason code (0x80: closed without DISCONNECT)",
                   offsetof(worker, metrics.disconnects), "normal", always_exported);
    by_reason_code(t, b, "shoal_connacks_total",
                   "CONNACKs sent, by MQTT 5 reason code (3.1.1 return codes counted as their MQTT 5 equivalent)",
                   offsetof(worker, metrics.connacks), "success", connack_always_exported);
}

/* A counter family with one series per value of an enum, all exported from
 * the start so rate() has a series before the first event. */
static void by_enum(metrics_text *t, broker *b, const char *name, const char *help, const char *label, size_t off,
                    int n, const char *(*label_of)(int))
{
    metrics_text_family(t, name, "counter", help);
    for (int i = 0; i < n; i++) {
        metrics_label l = {label, label_of(i)};
        metrics_text_sample_u64(t, name, &l, 1, sum(b, off + (size_t)i * sizeof(_Atomic uint64_t)));
    }
}

static const char *drop_label(int i)
{
    return drop_reason_name((drop_reason)i);
}

static const char *limit_label(int i)
{
    return limit_name((limit_kind)i);
}

/* Gauges kept per worker as signed deltas: their sum is the node's figure. */
static double sum_signed(broker *b, size_t off)
{
    int64_t total = 0;
    for (int i = 0; i < b->nworkers; i++) {
        total += atomic_load_explicit((_Atomic int64_t *)((char *)&b->workers[i] + off), memory_order_relaxed);
    }
    return total > 0 ? (double)total : 0;
}

static void sessions(metrics_text *t, broker *b)
{
    uint64_t total = atomic_load(&b->sess_count), online = atomic_load(&b->sess_online);
    /* Two separate reads: keep online + offline = total even mid-change. */
    if (online > total) {
        online = total;
    }
    metrics_text_family(t, "shoal_sessions", "gauge",
                        "sessions in the registry: online (a client is connected) or offline (persistent, kept "
                        "for its client)");
    metrics_label on = {"state", "online"}, off = {"state", "offline"};
    metrics_text_sample_u64(t, "shoal_sessions", &on, 1, online);
    metrics_text_sample_u64(t, "shoal_sessions", &off, 1, total - online);
    metrics_text_gauge(t, "shoal_sessions_persistent", "sessions that outlive their connection, online or not",
                       (double)atomic_load(&b->sess_persistent));
    metrics_text_gauge(t, "shoal_queued_messages", "messages queued for sessions, waiting to be sent",
                       sum_signed(b, offsetof(worker, metrics.queued)));
    metrics_text_gauge(t, "shoal_inflight_messages", "QoS 1/2 messages sent and not yet acknowledged",
                       sum_signed(b, offsetof(worker, metrics.inflight)));
}

static void workers(metrics_text *t, broker *b)
{
    metrics_text_family(t, "shoal_worker_loop_lag_seconds", "gauge",
                        "how late the worker's last 1 s tick fired: time its loop spent busy past the deadline");
    for (int i = 0; i < b->nworkers; i++) {
        char id[12];
        snprintf(id, sizeof(id), "%d", i);
        metrics_label l = {"worker", id};
        uint64_t lag = atomic_load_explicit(&b->workers[i].metrics.tick_lag_ms, memory_order_relaxed);
        metrics_text_sample(t, "shoal_worker_loop_lag_seconds", &l, 1, (double)lag / 1000.0);
    }
    metrics_text_family(t, "shoal_worker_connections_online", "gauge",
                        "established MQTT connections on each worker at its last tick");
    for (int i = 0; i < b->nworkers; i++) {
        char id[12];
        snprintf(id, sizeof(id), "%d", i);
        metrics_label l = {"worker", id};
        metrics_text_sample_u64(t, "shoal_worker_connections_online", &l, 1,
                                atomic_load_explicit(&b->workers[i].metrics.online, memory_order_relaxed));
    }
}

static uint64_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) {
        return 0;
    }
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
        resident = 0;
    }
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        return 0;
    }
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    /* opendir's own descriptor is in the listing. */
    return n ? n - 1 : 0;
}

static void process(metrics_text *t, broker *b, uint64_t now)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    struct rlimit rl;
    double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : 0;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    double start = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9 - (double)(now - b->start_ms) / 1000.0;

    metrics_text_gauge(t, "shoal_process_resident_memory_bytes", "resident set size (/proc/self/statm)",
                       (double)rss_bytes());
    metrics_text_gauge(t, "shoal_heap_bytes", "bytes the broker holds through its counted allocator",
                       (double)sh_allocated());
    metrics_text_gauge(t, "shoal_process_open_fds", "open file descriptors", (double)open_fds());
    metrics_text_gauge(t, "shoal_process_max_fds", "file descriptor limit (RLIMIT_NOFILE)", max_fds);
    metrics_text_family(t, "shoal_process_cpu_seconds_total", "counter", "user and system CPU time");
    metrics_text_sample(t, "shoal_process_cpu_seconds_total", NULL, 0, cpu);
    metrics_text_gauge(t, "shoal_process_start_time_seconds", "start time, seconds since the Unix epoch", start);
}

static void backplane_metrics(metrics_text *t, broker *b)
{
    bp_stats st;
    bp_get_stats(b->bp, &st);
    metrics_label kind = {"backplane", bp_kind(b->bp)};
    metrics_text_family(t, "shoal_backplane_info", "gauge", "the backplane in use (value is always 1)");
    metrics_text_sample_u64(t, "shoal_backplane_info", &kind, 1, 1);
    if (strcmp(bp_kind(b->bp), "local") == 0) {
        return;
    }
    metrics_label kafka = {"backend", "kafka"}, redis = {"backend", "redis"};
    metrics_text_family(t, "shoal_backend_up", "gauge", "1 when the cluster backend is reachable");
    metrics_text_sample_u64(t, "shoal_backend_up", &kafka, 1, st.kafka_up);
    metrics_text_sample_u64(t, "shoal_backend_up", &redis, 1, st.redis_up);
    metrics_text_counter(t, "shoal_kafka_produced_total", "records Kafka acknowledged", st.produced);
    metrics_text_counter(t, "shoal_kafka_produce_errors_total", "records Kafka refused or timed out",
                         st.produce_errors);
    metrics_text_counter(t, "shoal_kafka_consumed_total", "records from other nodes delivered here", st.consumed);
    metrics_text_counter(t, "shoal_kafka_records_skipped_total", "records of a newer format version, skipped",
                         st.skipped_newer);
    metrics_text_counter(t, "shoal_kafka_bad_records_total", "records that were not Shoal records", st.bad_records);
    metrics_text_counter(t, "shoal_redis_errors_total", "Redis commands that failed", st.redis_errors);
    metrics_text_counter(t, "shoal_cluster_lease_lost_total",
                         "times this node fenced itself: no membership renewal for the lease's fence point",
                         st.lease_lost);
    metrics_text_counter(t, "shoal_cluster_lease_regained_total", "times a renewal ended a fence", st.lease_regained);
    metrics_text_gauge(t, "shoal_cluster_fenced", "1 while this node is fenced (serves no client)", st.fenced);
    metrics_text_gauge(t, "shoal_kafka_consumer_lag_messages",
                       "records in the messages topic this node has not consumed yet", (double)st.consumer_lag);
    metrics_text_gauge(t, "shoal_kafka_paused_partitions",
                       "partitions paused because a worker or an online subscriber here is behind",
                       (double)st.paused_partitions);
    metrics_text_counter(t, "shoal_kafka_pauses_total", "times the stream was paused for a subscriber or a worker",
                         st.stream_pauses);
    metrics_text_family(t, "shoal_kafka_produce_latency_seconds", "histogram",
                        "time from produce to Kafka's acknowledgement (acks=all)");
    metrics_text_histogram(t, "shoal_kafka_produce_latency_seconds", NULL, 0, bp_latency_bounds, st.produce_latency,
                           BP_LATENCY_BUCKETS, st.produce_latency_sum);
    metrics_text_family(t, "shoal_kafka_consume_delay_seconds", "histogram",
                        "time from a record's produce timestamp (the publishing node's clock) to this node reading it");
    metrics_text_histogram(t, "shoal_kafka_consume_delay_seconds", NULL, 0, bp_latency_bounds, st.consume_delay,
                           BP_LATENCY_BUCKETS, st.consume_delay_sum);
    metrics_text_family(t, "shoal_redis_command_latency_seconds", "histogram", "time to a Redis reply");
    metrics_text_histogram(t, "shoal_redis_command_latency_seconds", NULL, 0, bp_latency_bounds, st.redis_latency,
                           BP_LATENCY_BUCKETS, st.redis_latency_sum);
}

void metrics_collect(broker *b, metrics_text *t)
{
    uint64_t now = now_ms();
    metrics_label info[2] = {{"version", SHOAL_VERSION}, {"node", b->node_id}};
    metrics_text_family(t, "shoal_build_info", "gauge", "the running version (value is always 1)");
    metrics_text_sample_u64(t, "shoal_build_info", info, 2, 1);
    metrics_text_gauge(t, "shoal_uptime_seconds", "seconds since the node started",
                       (double)(now - b->start_ms) / 1000.0);
    metrics_text_gauge(t, "shoal_workers", "worker threads", b->nworkers);
    metrics_text_gauge(t, "shoal_ready", "1 when /health/ready answers ok",
                       !atomic_load(&b->ops.draining) && !atomic_load(&b->stopping) && bp_is_ready(b->bp));
    metrics_text_gauge(t, "shoal_draining", "1 once a drain began (SIGTERM, POST /api/v1/drain): not ready",
                       atomic_load(&b->ops.draining));
    metrics_text_gauge(t, "shoal_drain_done", "1 once a drain finished (its clients are gone)",
                       drain_state_of(b) == DRAIN_DONE);
    metrics_text_counter(t, "shoal_drain_disconnected_total", "clients a drain disconnected on its schedule",
                         atomic_load(&b->drain.disconnected));
    metrics_text_counter(t, "shoal_drain_forced_total", "connections a drain closed at --drain-timeout",
                         atomic_load(&b->drain.forced));

    metrics_text_gauge(t, "shoal_connections_current", "open TCP connections, CONNECT pending included",
                       (double)atomic_load(&b->stats.connections_current));
    metrics_text_gauge(t, "shoal_connections_online",
                       "established MQTT connections (sum over workers at their last tick)", (double)sum_online(b));
    metrics_text_counter(t, "shoal_connections_total", "TCP connections accepted",
                         atomic_load(&b->stats.connections_total));
    metrics_text_counter(t, "shoal_connections_refused_total", "connections refused by --max-connections",
                         atomic_load(&b->stats.refused));
    metrics_text_counter(t, "shoal_auth_failures_total", "CONNECTs refused by authentication (node/auth/auth.c)",
                         atomic_load(&b->auth.failures));
    for (size_t i = 0; i < sizeof(summed_counters) / sizeof(summed_counters[0]); i++) {
        const summed *s = &summed_counters[i];
        metrics_text_counter(t, s->name, s->help, sum(b, s->off));
    }
    per_qos(t, b, "shoal_messages_in_by_qos_total", "PUBLISH packets received from clients, by QoS",
            offsetof(worker, metrics.msgs_in_qos));
    per_qos(t, b, "shoal_messages_out_by_qos_total", "PUBLISH packets sent to clients, by QoS",
            offsetof(worker, metrics.msgs_out_qos));
    by_enum(t, b, "shoal_messages_dropped_total", "messages that did not reach a subscriber, by reason", "reason",
            offsetof(worker, metrics.drops), DROP_COUNT, drop_label);
    by_enum(t, b, "shoal_limit_refusals_total", "times a client hit a limit (refused, paused or closed), by limit",
            "limit", offsetof(worker, metrics.limit_refusals), LIMIT_COUNT, limit_label);
    disconnects(t, b);

    pthread_rwlock_rdlock(&b->subs_lock);
    size_t subs = trie_count(b->subs), groups = trie_group_count(b->subs);
    pthread_rwlock_unlock(&b->subs_lock);
    pthread_rwlock_rdlock(&b->retain_lock);
    size_t retained = retain_count(b->retained);
    pthread_rwlock_unlock(&b->retain_lock);
    metrics_text_gauge(t, "shoal_subscriptions", "subscriptions, shared memberships included", (double)subs);
    metrics_text_gauge(t, "shoal_shared_groups", "shared subscription groups", (double)groups);
    metrics_text_gauge(t, "shoal_retained_messages", "retained messages", (double)retained);
    sessions(t, b);

    workers(t, b);
    process(t, b, now);
    backplane_metrics(t, b);
}
