/* The broker's core objects and how they relate.
 *
 * broker  process-wide: config, backplane, subscription index, retained
 *         index, session registry, counters. Passed around, never global.
 * worker  one thread, one event_base, one listener (SO_REUSEPORT); owns its
 *         connections and the sessions attached to them. Other threads reach
 *         a worker only through its inbox.
 * conn    one client connection; lives on one worker for its whole life.
 * session MQTT session state; owned by one worker at a time (`owner`).
 *         Deliveries for a session owned elsewhere go to the owner's inbox;
 *         an owner that no longer holds it forwards them. */
#ifndef SHOAL_NODE_CORE_H
#define SHOAL_NODE_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/backplane.h"
#include "node/config.h"
#include "node/limits.h"
#include "node/msg.h"
#include "node/retain.h"
#include "node/trie.h"
#include "proto/packet.h"

struct event_base;
struct sockaddr;
struct event;
struct bufferevent;
struct evbuffer;
struct evconnlistener;
struct ws_conn;

typedef struct broker broker;
typedef struct worker worker;
typedef struct conn conn;
typedef struct session session;

/* Subscription ids carried with one delivered copy (MQTT 5 §3.3.4: all of
 * the matching subscriptions' identifiers). */
#define DELIVERY_MAX_SUB_IDS 4

/* One message on its way to one session. */
typedef struct delivery {
    msg *m;          /* ref held */
    uint8_t qos;     /* already downgraded to the subscription's */
    bool retain;     /* RETAIN flag to send */
    uint8_t n_sub_ids;
    uint32_t sub_ids[DELIVERY_MAX_SUB_IDS];
} delivery;

/* An outgoing QoS 1/2 message awaiting its acknowledgement. */
typedef struct inflight {
    uint16_t pid;
    uint8_t state; /* INF_WAIT_ACK, INF_WAIT_REC, INF_WAIT_COMP */
    delivery d;
} inflight;

enum { INF_WAIT_ACK = 1, INF_WAIT_REC, INF_WAIT_COMP };

typedef struct sub_entry {
    char *filter; /* the filter as subscribed, "$share/g/f" included */
    uint16_t len;
    sub_opts opts;
} sub_entry;

/* What only an offline session needs (its expiry and delayed will), made
 * when it goes offline with a deadline and freed once it has none: a
 * connected client's session carries one pointer for it. */
typedef struct session_offline {
    struct event *timer; /* the next deadline */
    worker *timer_w;     /* the worker whose loop the timer is on */
    uint64_t expire_at;  /* monotonic ms the session ends, 0 = never */
    uint64_t will_at;    /* monotonic ms the delayed will fires */
    msg *will;           /* delayed will, ref held */
} session_offline;

/* An inbound QoS 2 packet id, held from its PUBLISH until PUBREL (§4.3.3).
 * PUBREC is sent only once the message is durable (the backplane said so):
 * a resend of a pending id waits for that answer. */
typedef struct qos2_id {
    uint32_t conn_tag; /* low bits of the publishing connection's id: a late
                        * answer for an earlier use of the id (before a clean
                        * start) is not taken for this one */
    uint16_t pid;
    uint8_t state;     /* Q2_PENDING, Q2_DURABLE */
} qos2_id;

enum { Q2_PENDING = 1, Q2_DURABLE };

/* Fields are ordered widest first so that one session per client carries
 * no padding (docs/architecture.md, "Memory per connection"). */
struct session {
    session *reg_next;
    uint64_t epoch;
    conn *c;           /* attached connection, owner's thread only */
    session_offline *off; /* owner's thread only; NULL while nothing is due offline */
    /* Outgoing QoS 1/2 awaiting acks, in send order. */
    inflight *inf;
    /* Waiting to be sent: a ring buffer. */
    delivery *q;
    /* Inbound QoS 2 packet ids received, awaiting PUBREL (§4.3.3). */
    qos2_id *qos2_in;
    /* Subscriptions, to restore or remove them. */
    sub_entry *subs;
    /* While the connected client is behind (its queue passed the
     * back-pressure mark or its output buffer filled): when it last made
     * progress (now_ms). 0 once the queue has halved and the output has
     * room. Set by the owner, read by publishers (session_behind). */
    _Atomic uint64_t backlogged_ms;
    atomic_int refs;
    _Atomic int owner; /* worker index */
    /* Deliveries posted to the owner's inbox and not handled yet: the part
     * of a backlog the owner has not seen, which publishers count too. */
    _Atomic uint32_t incoming;
    uint32_t expiry_s; /* session expiry interval in force */
    uint32_t q_head;
    uint32_t q_len;
    uint32_t q_cap;
    uint32_t q_qos0;       /* QoS 0 deliveries in the queue */
    uint32_t n_subs;
    uint32_t cap_subs;
    /* 32 bits, and capacities as powers of two, so that no list's size can
     * wrap: each holds at most 65,535 (a packet id each). */
    uint32_t n_inf;
    uint32_t n_qos2_in;
    uint16_t id_len;
    uint16_t next_pid;     /* the last packet id handed out */
    uint16_t drops_logged; /* drop_reason bits already logged since the client last connected */
    uint8_t inf_cap_log2;  /* inf holds 1 << this (0: no list) */
    uint8_t qos2_cap_log2; /* qos2_in likewise */
    _Atomic bool online;
    uint8_t version;
    bool dead;         /* ended: deliveries are dropped */
    bool persistent;   /* outlives its connection */
    bool registered;       /* in the registry (under sess_lock) */
    char client_id[];  /* NUL-terminated, in this allocation */
};

/* The entries a list with capacity exponent `log2` holds. */
static inline uint32_t session_list_cap(uint8_t log2)
{
    return log2 ? 1u << log2 : 0;
}

/* The bytes of a session's allocation, its client id included. */
#define SESSION_SIZE(id_len) (offsetof(session, client_id) + (size_t)(id_len) + 1u)

enum conn_state {
    CS_NEW = 0,     /* waiting for CONNECT */
    CS_AUTH,        /* CONNECT taken, enhanced authentication in progress (AUTH only) */
    CS_CLAIMING,    /* CONNECT accepted, waiting for the session */
    CS_ACTIVE,
    CS_CLOSING,     /* flushing its last bytes */
    CS_CLOSED,      /* waiting to be freed */
};

/* A connection's publish-rate state (node/limits.c), made on first use. */
typedef struct conn_rate conn_rate;

/* What only some connections need, made on first use (conn_ext_get) and
 * freed with the connection, or once empty again (conn_ext_trim). */
typedef struct conn_ext {
    mqtt_bytes *aliases;      /* inbound topic aliases, owned copies, 1-based */
    mqtt_bytes *out_aliases;  /* outbound: alias i+1 stands for out_aliases[i] */
    char *tls_cn;             /* owned; client cert subject CN with --tls-cert-as-username, else NULL */
    struct ws_conn *ws;       /* owned; accepted on a WebSocket listener (node/ws_conn.c), else NULL */
    conn_rate *rate;          /* --max-publish-rate / --max-publish-bytes-rate (node/limits.c); NULL until needed */
    struct auth_exchange *ax; /* owned; an enhanced-auth exchange in progress (node/handle_auth.c) */
    uint16_t out_alias_used;
    uint16_t out_alias_cap;
} conn_ext;

/* Ordered widest first with no padding, flags as bits, rarely used state
 * in `x`: an idle connection should cost little (docs/architecture.md,
 * "Memory per connection"). */
struct conn {
    uint64_t id;
    worker *w;
    /* Transport (node/conn_io.c): a bufferevent for TLS and WebSocket, else
     * a bare event on fd (in this allocation, before the struct) and
     * buffers that exist only while holding bytes. */
    struct bufferevent *bev;
    struct evbuffer *in, *out;
    conn *prev, *next; /* the worker's list */
    session *s;        /* ref held while attached */
    /* Each only in its state, so they share the bytes. */
    union {
        uint64_t claim_epoch; /* CS_CLAIMING: the epoch of our claim */
        uint64_t closing_ms;  /* CS_CLOSING: when the close began */
    };
    uint64_t created_ms;
    uint64_t last_rx_ms;
    msg *will;              /* ref held */
    char *client_id;        /* copy until the session is attached */
    char *username;         /* auth (node/auth.c): NULL = anonymous; freed in conn_free */
    conn_ext *x;            /* NULL until a connection needs it */
    int fd;                 /* plain TCP */
    uint32_t client_max_packet;
    uint32_t will_delay;
    uint32_t requested_expiry;
    uint32_t session_expiry;
    uint16_t keepalive;
    uint16_t client_receive_max;
    uint16_t client_alias_max;
    uint16_t alias_max;     /* ours, granted to the client */
    uint16_t inbound_pending; /* QoS 1 received and not yet acknowledged (QoS 2: session.n_qos2_in) */
    uint16_t requested_keepalive;
    uint16_t limits_logged; /* limit_kind bits already logged for this connection (node/limits.c) */
    uint8_t ev_what;        /* EV_READ / EV_WRITE the socket's event is registered for */
    uint8_t state;
    uint8_t version;
    uint8_t paused;         /* PAUSE_* bits: input is handled only when none is set */
    uint8_t close_rc;
    bool read_off : 1;      /* reading disabled */
    bool io_stopped : 1;    /* closed: neither read nor written again */
    bool io_in_read : 1;    /* handling input just read: output is written at its end (conn_io.c) */
    bool io_queued : 1;     /* in the worker's flush queue (conn_io.c) */
    bool io_want_write : 1; /* output the socket did not take: EV_WRITE registered */
    bool request_problem_info : 1;
    bool sent_disconnect : 1;
    bool clean_start : 1;
    bool assigned_id : 1;
    bool tls : 1;           /* accepted on the TLS listener (node/tls.c) */
    bool tls_up : 1;        /* handshake completed */
    bool enhanced_auth : 1; /* CONNECT named SCRAM-SHA-256: AUTH is allowed, re-authentication too */
    char peer[];            /* "host:port", in this allocation */
};

/* c->x, made if needed. */
conn_ext *conn_ext_get(conn *c);
/* Free c->x if it holds nothing any more. */
void conn_ext_trim(conn *c);

static inline struct ws_conn *conn_ws(const conn *c)
{
    return c->x ? c->x->ws : NULL;
}

/* The longest conn.peer, "[IPv6]:port" and its terminator. */
#define CONN_PEER_MAX 48

/* Why a connection's input is not being handled (conn.paused bits). */
enum {
    PAUSE_CLAIM = 1, /* CONNECT accepted, the session is being fetched */
    PAUSE_RATE = 2,  /* over its publish rate: the socket is not read */
    PAUSE_OUTPUT = 4, /* output over --max-output-buffer: the socket is not read (node/conn.c) */
};

/* Items a worker receives from other threads. */
enum inbox_kind {
    IN_DELIVER = 1,  /* a delivery for session s */
    IN_TAKEOVER,     /* give session s to worker `from` for conn `conn_id` */
    IN_ADOPT,        /* session s is now yours, for conn `conn_id` */
    IN_REFUSED,      /* the claim of conn `conn_id` lost to a newer one */
    IN_STOP,         /* shut down */
    IN_REMOTE,       /* a message from the backplane to deliver here (d.m) */
    IN_QOS2_REPORT,  /* the backplane's answer for inbound QoS 2 id `pid` of session s:
                      * stored (`clean`), for the connection tagged `conn_id`,
                      * acknowledged with reason code `epoch` */
};

typedef struct inbox_item {
    uint8_t kind;
    bool clean;
    uint16_t pid;   /* IN_QOS2_REPORT */
    int from;
    session *s; /* ref held */
    uint64_t conn_id;
    uint64_t epoch;
    delivery d;
} inbox_item;

typedef struct item_vec {
    inbox_item *v;
    uint32_t n;
    uint32_t cap;
} item_vec;

struct worker {
    int id;
    broker *b;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *wake; /* EV_READ on wake_fd: the inbox has items */
    int wake_fd;        /* eventfd other threads write to */
    struct event *reap;
    struct event *tick;
    /* Plain TCP connections with output to write at the end of this turn
     * (node/conn_io.c). */
    struct event *flush;
    conn **flushq;
    uint32_t n_flush, cap_flush;
    pthread_mutex_t inbox_lock;
    item_vec inbox;
    /* --max-inbox (node/worker.c): QoS 0 deliveries are dropped while the
     * inbox holds that many items. Under inbox_lock. */
    bool inbox_full;
    uint32_t inbox_drops_tick;     /* dropped since the last 1 s tick */
    uint64_t inbox_drops_episode;  /* dropped since the inbox became full */
    item_vec *outbox;    /* one per worker, flushed once per batch */
    bool outbox_dirty;
    conn *conns;         /* live connections */
    conn **by_id;        /* open addressing on id, linear probing */
    uint32_t by_id_cap;  /* power of two */
    uint32_t by_id_used;
    conn *dead;          /* closed, freed by the reap event */
    uint32_t nconns;
    /* Per-worker counters, summed for $SYS and metrics. */
    _Atomic uint64_t msgs_in, msgs_out, bytes_in, bytes_out, dropped;
    /* --- metrics and health (node/metrics.c, node/http.c) --- */
    _Atomic uint64_t msgs_in_qos[3], msgs_out_qos[3];
    _Atomic uint64_t disconnects[256]; /* by reason code, counted in conn.c log_close */
    _Atomic uint64_t connacks[256];    /* CONNACKs sent, by MQTT 5 reason code (3.1.1 codes mapped) */
    _Atomic uint64_t tick_last_ms;     /* when the 1 s tick last ran (monotonic ms) */
    _Atomic uint64_t tick_lag_ms;      /* how late that tick ran */
    _Atomic uint32_t online;           /* CS_ACTIVE connections at the last tick */
    uint64_t tick_due_ms;              /* owner thread only */
    _Atomic uint64_t drops[DROP_COUNT];             /* by reason; `dropped` is their sum */
    _Atomic uint64_t limit_refusals[LIMIT_COUNT];   /* by limit */
    /* Gauges kept where queues and windows change. Signed: a session moves
     * between workers, so one worker may add what another subtracts. */
    _Atomic int64_t queued, inflight;
    /* --- end metrics and health --- */
    /* --- TLS (node/tls.c) --- */
    struct evconnlistener *tls_listener;
    _Atomic uint64_t tls_handshake_failures;
    _Atomic uint64_t tls_handshakes;   /* completed */
    /* --- end TLS --- */
    /* --- WebSocket (node/ws_conn.c) --- */
    struct evconnlistener *ws_listener;
    struct evconnlistener *wss_listener;
    /* --- end WebSocket --- */
};

typedef struct broker_stats {
    _Atomic uint64_t connections_total;
    _Atomic uint64_t connections_current;
    _Atomic uint64_t refused;
} broker_stats;

/* The session table starts this small and doubles as sessions come, so a
 * small broker does not pay for a big one. */
#define SESS_BUCKETS_MIN 1024

struct broker {
    config *cfg;
    backplane *bp;
    int nworkers;
    worker *workers;
    uint16_t port;          /* the bound MQTT port */
    char node_id[128];
    uint64_t start_ms;
    _Atomic bool stopping;
    _Atomic bool running;   /* workers started: the backplane may post to them */
    _Atomic uint64_t next_conn_id;
    broker_stats stats;
    pthread_rwlock_t subs_lock;
    trie *subs;
    pthread_rwlock_t retain_lock;
    retain *retained;
    pthread_mutex_t sess_lock;
    session **sess_tab; /* client id → session, chained through reg_next */
    uint32_t sess_buckets; /* a power of two, under sess_lock */
    _Atomic uint64_t sess_count;
    _Atomic uint64_t sess_online;      /* sessions with a connection (session.online) */
    _Atomic uint64_t sess_persistent;  /* registered sessions that outlive their connection */
    /* --- operations (node/http.c, node/admin.c) --- */
    _Atomic bool draining; /* listeners closed by POST /api/v1/drain: not ready */
    /* --- end operations --- */
    /* --- TLS (node/tls.c) --- */
    struct tls *tls;        /* NULL without --tls-port */
    uint16_t tls_port;      /* the bound TLS port, 0 = none */
    /* --- end TLS --- */
    /* --- WebSocket (node/ws_conn.c) --- */
    uint16_t ws_port;       /* the bound ports, 0 = none */
    uint16_t wss_port;
    /* --- end WebSocket --- */
    /* --- auth (node/auth.c) --- */
    struct auth *auth;               /* password and ACL tables, swapped on SIGHUP */
    _Atomic uint64_t auth_failures;  /* CONNECTs refused by authentication */
    /* --- end auth --- */
};

/* Monotonic milliseconds. */
uint64_t now_ms(void);

/* broker.c: the indexes, locks and session table (cfg is borrowed for the
 * broker's life); broker_free also frees the backplane, after bp_close. */
void broker_init(broker *b, config *cfg, int nworkers, trie_strategy strategy);
void broker_free(broker *b);

/* worker.c */
/* Loops and inboxes only: no listeners, no threads (worker_start_all's
 * first step; tests/fuzz runs these loops itself). */
int worker_init_all(broker *b);
int worker_start_all(broker *b);
void worker_stop_all(broker *b);
void worker_release_conns(broker *b);
void worker_free_all(broker *b);
void worker_post(worker *from, int to, const inbox_item *it);  /* batched; from may be NULL */
void worker_flush(worker *w);
/* Live connections by id, for completions that must look them up again. */
conn *worker_find_conn(worker *w, uint64_t id);
void worker_index_conn(worker *w, conn *c);
void worker_unindex_conn(worker *w, conn *c);
void worker_sys_tick(worker *w);

/* conn.c */
/* Transports, or'ed in conn_new's flags. */
#define CONN_TLS 1u /* wrap the socket in TLS (server side) with b->tls */
#define CONN_WS 2u  /* MQTT over WebSocket (node/ws_conn.c) */
conn *conn_new(worker *w, int fd, const struct sockaddr *sa, int salen, unsigned flags);
/* The same over a bufferevent the caller made (the connection owns and
 * frees it); conn_new's second half, which tests/fuzz drives over a
 * bufferevent pair. With CONN_TLS, bev is a server-side TLS bufferevent. */
conn *conn_new_bev(worker *w, struct bufferevent *bev, const char *peer, unsigned flags);
/* Close after flushing what is queued; sends DISCONNECT rc first for v5
 * when rc >= 0x80 and the connection is established. Idempotent. */
void conn_close(conn *c, uint8_t rc, const char *why);
/* Refuse with rc and close: a CONNACK before the connection is accepted,
 * else as conn_close (DISCONNECT for v5). */
void conn_refuse(conn *c, uint8_t rc, const char *why);
void conn_free(conn *c);
void conn_write(conn *c, const void *data, size_t len);
/* The output buffer, ready for one MQTT packet of len bytes that the caller
 * adds next (over WebSocket its frame header is already in). Only while the
 * connection is CS_ACTIVE. */
struct evbuffer *conn_output(conn *c, size_t len);
bool conn_output_full(const conn *c);
void conn_check_timers(conn *c, uint64_t now);
/* Clear pause reason `why` (PAUSE_*); once none is left, read again and
 * handle what waited. */
void conn_resume_reading(conn *c, uint8_t why);
void conn_drain_input(conn *c);

/* session.c */
session *session_new(broker *b, const char *client_id, size_t len, int owner);
void session_ref(session *s);
void session_unref(broker *b, session *s);
/* Deliver on the owner's thread: send now or queue. Consumes d->m's ref. */
void session_deliver(worker *w, session *s, delivery *d);
/* Send queued messages while the client's receive window allows. */
void session_pump(worker *w, session *s);
void session_resend(worker *w, session *s);
mqtt_rc session_ack(worker *w, session *s, uint8_t type, uint16_t pid);
void session_reset(broker *b, session *s);
/* Release queued and in-flight messages (counted as dropped, reason
 * session-ended, when `count`). */
void session_drop_messages(broker *b, session *s, bool count);
/* Keep b->sess_online / b->sess_persistent in step with the flags. */
void session_set_online(broker *b, session *s, bool online);
void session_set_persistent(broker *b, session *s, bool persistent);
void session_free_sub_strings(session *s);
void session_end(worker *w, session *s);
/* The connection went away: keep the session offline (persistent) or end
 * it. `will` (consumed, may be NULL) is published now, after will_delay
 * seconds, or when the session ends, whichever comes first. */
void session_detach(worker *w, session *s, msg *will, uint32_t will_delay);
void session_attach(worker *w, session *s, conn *c);
void session_add_sub(session *s, const char *filter, uint16_t len, const sub_opts *o);
bool session_remove_sub(session *s, const char *filter, uint16_t len);
bool session_has_sub(const session *s, const char *filter, uint16_t len);
qos2_id *session_qos2_find(session *s, uint16_t pid);
bool session_qos2_has(session *s, uint16_t pid);
/* Hold pid: pending until the backplane answers, or durable already. The
 * caller keeps the list within the receive maximum. */
qos2_id *session_qos2_add_state(session *s, uint16_t pid, uint8_t state, uint32_t conn_tag);
void session_qos2_add(session *s, uint16_t pid); /* durable */
bool session_qos2_remove(session *s, uint16_t pid);
/* The backplane answered for a pending inbound QoS 2 id (stored or not),
 * on any worker: the session's owner marks it durable and sends PUBREC
 * (reason code rc), or clears it and tells the connection holding the
 * session now, if any (v5 PUBREC 0x97, 3.1.1 close). */
void session_qos2_report(worker *w, session *s, uint16_t pid, uint32_t conn_tag, bool stored, uint8_t rc);
void session_arm_offline_timer(worker *w, session *s);

/* registry.c: client id → session */
session *registry_get(broker *b, const char *id, size_t len);
void registry_put(broker *b, session *s);
void registry_remove(broker *b, session *s);
/* Caller holds b->sess_lock: --max-sessions leaves no room for a new one. */
bool registry_full(broker *b);

/* limits.c */
/* Count a refusal; log it once per connection and limit. */
void limits_refused(conn *c, limit_kind l, const char *detail);
/* Count n dropped messages; log once per session (may be NULL) and reason. */
void limits_count_drop(worker *w, session *s, drop_reason r, uint64_t n);
/* Release a connection's publish-rate state. */
void limits_conn_free(conn *c);
/* May a PUBLISH of `bytes` be handled now? If the client is over its rate,
 * reading is paused until the bucket refills and false is returned: the
 * packet stays in the input buffer. */
bool limits_publish_admit(conn *c, size_t bytes);
/* After routing one of c's messages: if it went to a subscriber that is
 * behind, stop reading c for a while (TCP then slows the client) instead of
 * queueing without end; the pause grows while the backlog lasts. */
void limits_backpressure(conn *c, bool behind);
/* LIMIT_TOPIC_LENGTH or LIMIT_TOPIC_LEVELS if the topic (or filter) is over
 * --max-topic-length / --max-topic-levels, else LIMIT_COUNT. */
limit_kind limits_topic_check(const config *cfg, const uint8_t *topic, size_t len);
/* --max-sessions left no room for c's new session: CONNACK 0x97 (3.1.1:
 * 3), counted, and close. */
void limits_refuse_session_or_close(conn *c);
/* May p's retained message be stored (--max-retained)? A v5 QoS 1/2
 * publisher is refused with PUBACK/PUBREC 0x97 (false: drop the message);
 * anyone else cannot be told, so the message goes on without its retain
 * flag (true). */
bool limits_retain_admit(conn *c, mqtt_publish *p);
/* Once a second on one worker: free retained messages that have expired. */
void limits_tick(worker *w, uint64_t now);

/* remote.c: messages from the backplane */
void remote_message_hook(void *node, const bp_message *m, unsigned shard);
void remote_ready_hook(void *node, bool ready);
void remote_qos0_dropped_hook(void *node, int worker_id);
/* After bp_open, before the workers start: lower --max-packet-size to what
 * the backplane carries and say so in one log line. */
void remote_cap_packet_size(broker *b);
void remote_deliver(worker *w, msg *m);
/* Post from a thread that is not a worker (the backplane's). */
void worker_post_external(broker *b, int to, const inbox_item *it);
/* Convert between monotonic deadlines and wall-clock ones for the wire. */
uint64_t expiry_to_unix(uint64_t expiry_at_mono, uint64_t now_mono);

/* route.c: matching and fan-out */
/* Hand m to every matching session; *matched (may be NULL) gets how many
 * sessions it went to. True if one of them is behind (back-pressure). */
bool route_publish(worker *w, msg *m, uint32_t *matched);
/* Should a publisher to s be slowed down? While s is behind and has made
 * progress in the last BACKPRESSURE_STALL_MS: a client that took nothing
 * for that long is stuck, and it may not hold everybody else's publishers;
 * its excess is dropped (--max-queued, --max-output-buffer) instead. */
#define BACKPRESSURE_STALL_MS 2000
bool session_behind(const session *s, uint32_t mark);
/* --publisher-backpressure, at most --max-queued / 4 so that a publisher
 * on another worker, seen late, still stops well before drops; 0 = off. */
uint32_t session_backpressure_mark(const config *cfg);
void route_deliver_to(worker *w, session *s, delivery *d);
void route_retained_on_subscribe(worker *w, session *s, mqtt_bytes filter, const sub_opts *o);
/* Publish a will / internal message (origin 0). Consumes m. */
void route_publish_internal(worker *w, msg *m);

#endif
