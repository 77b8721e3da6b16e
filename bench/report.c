/* SPDX-License-Identifier: Apache-2.0 */
#include "bench/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static const char *const phase_names[] = {
    [PHASE_SETUP] = "setup", [PHASE_WAIT] = "wait", [PHASE_RUN] = "run", [PHASE_DRAIN] = "drain", [PHASE_DONE] = "done",
};

const char *report_phase_name(board_phase ph)
{
    return ph <= PHASE_DONE ? phase_names[ph] : "?";
}

void report_live_sum(const board *b, report_live *out)
{
    memset(out, 0, sizeof(*out));
    out->phase = PHASE_DONE;
    for (uint32_t i = 0; i < b->procs; i++) {
        board_live *l = &b->live[i];
        out->attempted += board_get(l->attempted);
        out->connected += board_get(l->connected);
        out->refused += board_get(l->refused);
        out->dropped += board_get(l->dropped);
        out->errors += board_get(l->errors);
        out->sent += board_get(l->sent);
        out->acked += board_get(l->acked);
        out->received += board_get(l->received);
        board_phase ph = (board_phase)board_get(l->phase);
        out->phase = ph < out->phase ? ph : out->phase;
    }
}

void report_progress(FILE *out, double elapsed, const report_live *now, const report_live *prev, double dt)
{
    double d = dt > 0 ? dt : 1;
    fprintf(out,
            "[%7.1fs] %-5s conns %llu/%llu refused %llu dropped %llu | out %.0f/s in %.0f/s conn %.0f/s | "
            "errors %llu recv %llu\n",
            elapsed, report_phase_name(now->phase), (unsigned long long)(now->connected - now->dropped),
            (unsigned long long)now->attempted, (unsigned long long)now->refused, (unsigned long long)now->dropped,
            (double)(now->sent - prev->sent) / d, (double)(now->received - prev->received) / d,
            (double)(now->connected - prev->connected) / d, (unsigned long long)now->errors,
            (unsigned long long)now->received);
    fflush(out);
}

/* ---- merging ---- */

typedef struct merged {
    board_result r;
    uint64_t first_attempt_ns, last_connack_ns, last_recv_ns;
    int written;
} merged;

static void merge_one(merged *m, const board_result *x)
{
    board_result *r = &m->r;
    r->attempted += x->attempted;
    r->connected += x->connected;
    r->refused += x->refused;
    r->dropped += x->dropped;
    r->errors += x->errors;
    r->sent += x->sent;
    r->acked += x->acked;
    r->backlog += x->backlog;
    r->expected += x->expected;
    r->received += x->received;
    r->lost += x->lost;
    r->dup += x->dup;
    r->ooo += x->ooo;
    r->rounds += x->rounds;
    hist_merge(&r->lat, &x->lat);
    hist_merge(&r->conn_lat, &x->conn_lat);
    hist_merge(&r->send_delay, &x->send_delay);
    if (x->first_attempt_ns && (!m->first_attempt_ns || x->first_attempt_ns < m->first_attempt_ns)) {
        m->first_attempt_ns = x->first_attempt_ns;
    }
    m->last_connack_ns = x->last_connack_ns > m->last_connack_ns ? x->last_connack_ns : m->last_connack_ns;
    m->last_recv_ns = x->last_recv_ns > m->last_recv_ns ? x->last_recv_ns : m->last_recv_ns;
}

/* A shared group is judged per publisher over all workers' members: what
 * the group got beyond what was sent were extra copies. */
static void judge_group(merged *m, const board *b)
{
    for (uint32_t p = 0; p < b->n_pubs; p++) {
        uint64_t acked = board_get(b->pub_acked[p]);
        uint64_t sent = board_get(b->pub_sent[p]);
        uint64_t got = board_get(b->pub_distinct[p]);
        m->r.expected += acked;
        m->r.lost += acked > got ? acked - got : 0;
        m->r.dup += got > sent ? got - sent : 0;
    }
}

/* ---- JSON ---- */

static void json_hist(FILE *out, const char *name, const hist *h)
{
    fprintf(out,
            "\"%s\":{\"count\":%llu,\"min\":%llu,\"mean\":%.1f,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,"
            "\"p99_9\":%llu,\"max\":%llu}",
            name, (unsigned long long)h->count, (unsigned long long)(h->count ? h->min : 0), hist_mean(h),
            (unsigned long long)hist_percentile(h, 50), (unsigned long long)hist_percentile(h, 90),
            (unsigned long long)hist_percentile(h, 99), (unsigned long long)hist_percentile(h, 99.9),
            (unsigned long long)h->max);
}

/* Percentiles 100 * (1 - 10^(-i/10)) for i = 0..50, then 100: even steps
 * on the log scale HDR plots use. */
static void json_cdf(FILE *out, const hist *h)
{
    fprintf(out, "\"latency_cdf\":[");
    for (int i = 0; i <= 50; i++) {
        double pct = 100.0 * (1.0 - pow(10.0, -i / 10.0));
        fprintf(out, "[%.4f,%llu],", pct, (unsigned long long)hist_percentile(h, pct));
    }
    fprintf(out, "[100,%llu]]", (unsigned long long)h->max);
}

static void json_config(FILE *out, const bench_opts *o)
{
    fprintf(out,
            "\"config\":{\"qos\":%d,\"size\":%u,\"version\":%d,\"rate\":%.1f,\"inflight\":%u,"
            "\"duration\":%.1f,\"drain\":%.1f,\"procs\":%d,\"pending\":%u,\"keepalive\":%d,\"clean\":%s,"
            "\"conns\":%u,\"subscribe\":%s,\"pubs\":%u,\"subs\":%u,\"topics\":%u,\"srcs\":%d,\"client_prefix\":\"%s\","
            "\"addresses\":[",
            o->qos, o->size, o->version, o->rate, o->inflight, o->duration, o->drain, o->procs, o->pending,
            o->keepalive, o->clean ? "true" : "false", o->conns, o->subscribe ? "true" : "false", o->pubs, o->subs,
            o->topics, o->n_srcs, o->prefix);
    for (int i = 0; i < o->n_addrs; i++) {
        char a[32];
        opts_addr_text(&o->addrs[i], a, sizeof(a));
        fprintf(out, "%s\"%s\"", i ? "," : "", a);
    }
    fprintf(out, "]}");
}

static double per_s(uint64_t n, double secs)
{
    return secs > 0 ? (double)n / secs : 0.0;
}

static void json_counts_rates(FILE *out, const bench_opts *o, const merged *m, uint64_t start_ns)
{
    const board_result *r = &m->r;
    fprintf(out,
            "\"counts\":{\"attempted\":%llu,\"connected\":%llu,\"refused\":%llu,\"dropped\":%llu,"
            "\"errors\":%llu,\"sent\":%llu,\"acked\":%llu,\"unacked\":%llu,\"backlog\":%llu,"
            "\"expected\":%llu,\"received\":%llu,\"lost\":%llu,\"duplicated\":%llu,"
            "\"out_of_order\":%llu,\"rounds\":%llu},",
            (unsigned long long)r->attempted, (unsigned long long)r->connected, (unsigned long long)r->refused,
            (unsigned long long)r->dropped, (unsigned long long)r->errors, (unsigned long long)r->sent,
            (unsigned long long)r->acked, (unsigned long long)(o->qos && r->sent > r->acked ? r->sent - r->acked : 0),
            (unsigned long long)r->backlog, (unsigned long long)r->expected, (unsigned long long)r->received,
            (unsigned long long)r->lost, (unsigned long long)r->dup, (unsigned long long)r->ooo,
            (unsigned long long)r->rounds);
    double run_s = o->duration;
    double recv_s = run_s;
    if (start_ns && m->last_recv_ns > start_ns && (double)(m->last_recv_ns - start_ns) / 1e9 > recv_s) {
        recv_s = (double)(m->last_recv_ns - start_ns) / 1e9;
    }
    double conn_s = m->last_connack_ns > m->first_attempt_ns ? (double)(m->last_connack_ns - m->first_attempt_ns) / 1e9
                                                             : 0;
    fprintf(out, "\"rates\":{\"sent_per_s\":%.1f,\"received_per_s\":%.1f,\"connects_per_s\":%.1f},",
            o->sc->map == MAP_RETAINED ? 0.0 : per_s(r->sent, run_s), per_s(r->received, recv_s),
            per_s(r->connected, conn_s));
    fprintf(out, "\"seconds\":{\"connect\":%.3f,\"run\":%.3f,\"receive\":%.3f},", conn_s, run_s, recv_s);
}

void report_json(FILE *out, const bench_opts *o, const board *b, const char *status)
{
    merged *m = sh_calloc(1, sizeof(*m));
    hist_init(&m->r.lat);
    hist_init(&m->r.conn_lat);
    hist_init(&m->r.send_delay);
    for (uint32_t i = 0; i < b->procs; i++) {
        if (b->res[i].written) {
            merge_one(m, &b->res[i]);
            m->written++;
        }
    }
    if (o->sc->map == MAP_GROUP) {
        judge_group(m, b);
    }
    fprintf(out, "{\"tool\":\"shoal-bench\",\"scenario\":\"%s\",\"status\":\"%s\",\"workers_reported\":%d,",
            o->sc->name, m->written < (int)b->procs && !strcmp(status, "ok") ? "incomplete" : status, m->written);
    json_config(out, o);
    fprintf(out, ",");
    json_counts_rates(out, o, m, board_get(b->start_ns));
    json_hist(out, "latency_us", &m->r.lat);
    fprintf(out, ",");
    json_hist(out, "connect_latency_us", &m->r.conn_lat);
    fprintf(out, ",");
    json_hist(out, "send_delay_us", &m->r.send_delay);
    fprintf(out, ",");
    json_cdf(out, &m->r.lat);
    fprintf(out, "}\n");
    fflush(out);
    sh_free(m, sizeof(*m));
}
