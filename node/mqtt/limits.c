/* SPDX-License-Identifier: Apache-2.0 */
/* Limits that protect the node: refusal and drop accounting, the per-client
 * publish rate (reading paused until the bucket refills), topic sizes. */
#include "node/mqtt/limits.h"

#include "node/net/conn_io.h"
#include <event2/event.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/limits.h"
#include "node/mqtt/retain.h"
#include "node/mqtt/send.h"
#include "node/mqtt/session.h"
#include "node/worker.h"

static const char *const limit_names[LIMIT_COUNT] = {
    [LIMIT_CONNECTIONS] = "max-connections",
    [LIMIT_CONNECT_TIMEOUT] = "connect-timeout",
    [LIMIT_PACKET_SIZE] = "packet-size",
    [LIMIT_PUBLISH_RATE] = "publish-rate",
    [LIMIT_PUBLISH_BYTES] = "publish-bytes-rate",
    [LIMIT_SUBSCRIPTIONS] = "subscriptions",
    [LIMIT_TOPIC_LEVELS] = "topic-levels",
    [LIMIT_TOPIC_LENGTH] = "topic-length",
    [LIMIT_RECEIVE_MAX] = "receive-maximum",
    [LIMIT_BACKPRESSURE] = "subscriber-backlog",
    [LIMIT_OUTPUT_BUFFER] = "output-buffer",
    [LIMIT_SESSIONS] = "max-sessions",
    [LIMIT_RETAINED] = "max-retained",
    [LIMIT_SHARED_GROUPS] = "shared-groups",
};

static const char *const drop_names[DROP_COUNT] = {
    [DROP_QUEUE_FULL] = "queue-full",
    [DROP_QOS0_EVICTED] = "queue-full-qos0-evicted",
    [DROP_OUTPUT_FULL] = "output-buffer-full",
    [DROP_OFFLINE_QOS0] = "offline-qos0",
    [DROP_EXPIRED] = "expired",
    [DROP_TOO_LARGE] = "too-large-for-client",
    [DROP_ACL_DENIED] = "acl-denied",
    [DROP_SESSION_ENDED] = "session-ended",
    [DROP_INBOX_FULL] = "inbox-full",
    [DROP_BACKBONE] = "backbone-unavailable",
};

const char *limit_name(limit_kind l)
{
    return l < LIMIT_COUNT ? limit_names[l] : "?";
}

const char *drop_reason_name(drop_reason r)
{
    return r < DROP_COUNT ? drop_names[r] : "?";
}

/* ---- token bucket ---- */

void tb_init(token_bucket *tb, uint32_t rate, uint64_t now_ms)
{
    tb->milli = (int64_t)rate * 1000;
    tb->last_ms = now_ms;
}

void tb_refill(token_bucket *tb, uint32_t rate, uint64_t now_ms)
{
    if (now_ms <= tb->last_ms || rate == 0) {
        return;
    }
    /* rate tokens/s = rate thousandths of a token per ms; full at one
     * second's worth. Compared before multiplying, so nothing overflows. */
    uint64_t ms = now_ms - tb->last_ms;
    tb->last_ms = now_ms;
    int64_t cap = (int64_t)rate * 1000;
    int64_t room = cap - tb->milli;
    if (room <= 0) {
        return;
    }
    if (ms > (uint64_t)room / rate) {
        tb->milli = cap;
    } else {
        tb->milli += (int64_t)ms * rate;
    }
}

bool tb_ready(const token_bucket *tb)
{
    return tb->milli > 0;
}

void tb_take(token_bucket *tb, uint64_t n)
{
    tb->milli -= (int64_t)n * 1000;
}

uint64_t tb_wait_ms(const token_bucket *tb, uint32_t rate)
{
    if (tb->milli > 0 || rate == 0) {
        return 0;
    }
    /* The smallest ms with milli + ms * rate > 0. */
    return (uint64_t)(-tb->milli) / rate + 1;
}

uint32_t limits_max_subscriptions(const config *cfg)
{
    int max = cfg->limits.max_subscriptions;
    return max > 0 && (uint32_t)max < SESSION_MAX_SUBS ? (uint32_t)max : SESSION_MAX_SUBS;
}

uint32_t limits_topic_levels(const uint8_t *topic, size_t len)
{
    uint32_t n = 1;
    for (size_t i = 0; i < len; i++) {
        n += topic[i] == '/';
    }
    return n;
}

/* ---- accounting ---- */

void limits_refused(conn *c, limit_kind l, const char *detail)
{
    atomic_fetch_add_explicit(&c->w->metrics.limit_refusals[l], 1, memory_order_relaxed);
    if (c->limits_logged & (1u << l)) {
        return;
    }
    /* Once per connection and reason: a flood of refusals is one line. */
    c->limits_logged |= (uint16_t)(1u << l);
    const char *id = c->s ? c->s->client_id : (c->client_id ? c->client_id : "-");
    sh_log(SH_INFO, "event=limit limit=%s conn=%llu client=%s peer=%s %s", limit_name(l), (unsigned long long)c->id, id,
           c->peer, detail ? detail : "");
}

void limits_count_drop(worker *w, session *s, drop_reason r, uint64_t n)
{
    if (n == 0) {
        return;
    }
    atomic_fetch_add_explicit(&w->dropped, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics.drops[r], n, memory_order_relaxed);
    if (s && !(s->drops_logged & (1u << r))) {
        /* Once per session and reason until the client reconnects. */
        s->drops_logged |= (uint16_t)(1u << r);
        sh_log(SH_INFO, "event=drop reason=%s client=%s online=%d queued=%u", drop_reason_name(r), s->client_id,
               atomic_load_explicit(&s->online, memory_order_relaxed), s->q_len);
    }
}

/* ---- publish rate ---- */

/* A connection's publish-rate state, made on its first PUBLISH under a
 * rate limit: most connections never need it. */
struct conn_rate {
    token_bucket msgs;   /* --max-publish-rate */
    token_bucket bytes;  /* --max-publish-bytes-rate */
    struct event *timer; /* resumes reading after a rate pause; NULL until needed */
    uint16_t backoff_ms; /* the next back-pressure pause; 0 while nothing is behind */
};

static void rate_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    conn_resume_reading(c, PAUSE_RATE);
    worker_flush(c->w);
}

/* A publisher whose message went to a backlogged subscriber stops being
 * read for 5 ms (a subscriber that keeps up drains 1,000 messages in less),
 * then takes one more packet; while the backlog lasts each pause doubles, up
 * to 100 ms, so a stalled subscriber gains at most ~10 messages a second
 * per publisher instead of filling --max-queued. */
#define BACKPRESSURE_FIRST_MS 5
#define BACKPRESSURE_MAX_MS 100

/* Pause reading for ms: the socket is left unread, so TCP pushes back on
 * the client and nothing it sent is lost. */
static void pause_for(conn *c, uint64_t ms)
{
    conn_rate *r = c->x->rate;
    if (!r->timer) {
        r->timer = event_new(c->w->base, -1, 0, rate_timer_cb, c);
    }
    c->paused |= PAUSE_RATE;
    conn_io_read_enable(c, false);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(r->timer, &tv);
}

/* The connection's rate state, made on first use. */
static conn_rate *rate_state(conn *c, uint64_t now)
{
    conn_rate *r = c->x ? c->x->rate : NULL;
    if (!r) {
        const config *cfg = c->w->b->cfg;
        r = sh_calloc(1, sizeof(*r));
        tb_init(&r->msgs, cfg->limits.max_publish_rate, now);
        tb_init(&r->bytes, cfg->limits.max_publish_bytes_rate, now);
        conn_ext_get(c)->rate = r;
    }
    return r;
}

void limits_backpressure(conn *c, bool behind)
{
    if (!behind) {
        if (c->x && c->x->rate) {
            c->x->rate->backoff_ms = 0;
        }
        return;
    }
    if (c->paused & PAUSE_RATE) {
        return;
    }
    conn_rate *r = rate_state(c, now_ms());
    uint16_t ms = r->backoff_ms ? r->backoff_ms : BACKPRESSURE_FIRST_MS;
    r->backoff_ms = ms * 2 > BACKPRESSURE_MAX_MS ? BACKPRESSURE_MAX_MS : (uint16_t)(ms * 2);
    limits_refused(c, LIMIT_BACKPRESSURE, "action=pause-reading");
    pause_for(c, ms);
}

bool limits_publish_admit(conn *c, size_t bytes)
{
    const config *cfg = c->w->b->cfg;
    uint32_t mr = cfg->limits.max_publish_rate, br = cfg->limits.max_publish_bytes_rate;
    if (!mr && !br) {
        return true;
    }
    uint64_t now = now_ms();
    conn_rate *r = rate_state(c, now);
    uint64_t wait = 0;
    if (mr) {
        tb_refill(&r->msgs, mr, now);
        if (!tb_ready(&r->msgs)) {
            wait = tb_wait_ms(&r->msgs, mr);
            limits_refused(c, LIMIT_PUBLISH_RATE, "action=pause-reading");
        }
    }
    if (br) {
        tb_refill(&r->bytes, br, now);
        if (!tb_ready(&r->bytes)) {
            uint64_t wb = tb_wait_ms(&r->bytes, br);
            wait = wb > wait ? wb : wait;
            limits_refused(c, LIMIT_PUBLISH_BYTES, "action=pause-reading");
        }
    }
    if (wait) {
        pause_for(c, wait);
        return false;
    }
    if (mr) {
        tb_take(&r->msgs, 1);
    }
    if (br) {
        tb_take(&r->bytes, bytes);
    }
    return true;
}

void limits_conn_free(conn *c)
{
    conn_rate *r = c->x ? c->x->rate : NULL;
    if (!r) {
        return;
    }
    if (r->timer) {
        event_free(r->timer);
    }
    sh_free(r, sizeof(*r));
    c->x->rate = NULL;
    conn_ext_trim(c);
}

limit_kind limits_topic_check(const config *cfg, const uint8_t *topic, size_t len)
{
    if (len > (size_t)cfg->limits.max_topic_length) {
        return LIMIT_TOPIC_LENGTH;
    }
    if (limits_topic_levels(topic, len) > (uint32_t)cfg->limits.max_topic_levels) {
        return LIMIT_TOPIC_LEVELS;
    }
    return LIMIT_COUNT;
}

/* ---- sessions and retained messages ---- */

void limits_refuse_session_or_close(conn *c)
{
    limits_refused(c, LIMIT_SESSIONS, c->version == MQTT_V5 ? "action=connack-0x97" : "action=connack-3");
    /* 3.1.1 has no Quota exceeded: 0x97 maps to 3, Server unavailable. */
    send_connack_refusal(c, MQTT_RC_QUOTA_EXCEEDED);
    c->sent_disconnect = true;
    conn_close(c, MQTT_RC_QUOTA_EXCEEDED, "--max-sessions reached");
}

bool limits_retain_admit(conn *c, mqtt_publish *p)
{
    broker *b = c->w->b;
    if (!b->cfg->limits.max_retained || p->payload.len == 0) {
        return true; /* deleting always frees, never takes, a slot */
    }
    pthread_rwlock_rdlock(&b->retain_lock);
    bool room = retain_has_room(b->retained, p->topic);
    pthread_rwlock_unlock(&b->retain_lock);
    if (room) {
        return true;
    }
    if (c->version == MQTT_V5 && p->qos > 0) {
        /* MQTT 5 §3.4.2.1: 0x97 Quota exceeded. Refused whole, before
         * anyone sees it, so a retry makes no duplicate. */
        limits_refused(c, LIMIT_RETAINED, p->qos == 1 ? "action=puback-0x97" : "action=pubrec-0x97");
        send_ack(c, p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, p->packet_id, MQTT_RC_QUOTA_EXCEEDED,
                 "retained message limit reached");
        return false;
    }
    /* QoS 0 and 3.1.1 have no negative acknowledgement: closing would be
     * harsher than the limit asks, so the message is delivered as a normal
     * one (nor does it reach the cluster's retained snapshot). */
    limits_refused(c, LIMIT_RETAINED, "action=deliver-not-retained");
    p->retain = false;
    return true;
}

void limits_tick(worker *w, uint64_t now)
{
    broker *b = w->b;
    pthread_rwlock_rdlock(&b->retain_lock);
    uint64_t next = retain_next_expiry(b->retained);
    pthread_rwlock_unlock(&b->retain_lock);
    if (next == 0 || next > now) {
        return; /* the write lock only when something is due */
    }
    pthread_rwlock_wrlock(&b->retain_lock);
    size_t n = retain_expire(b->retained, now);
    pthread_rwlock_unlock(&b->retain_lock);
    sh_log(SH_DEBUG, "event=retained_expired count=%zu", n);
}
