/* SPDX-License-Identifier: Apache-2.0 */
/* CONNECT passwords checked off the event loops. A password entry is
 * PBKDF2 with many iterations (~90 ms for pbkdf2-sha512 at its default):
 * on a worker's thread, a burst of logins would stall every client of that
 * worker for as long. So the worker queues the check here and pauses the
 * connection (CS_AUTH, PAUSE_HASH); --auth-threads threads, at a lower CPU
 * priority than the workers, take the checks in order and post each answer
 * to the connection's worker (IN_AUTH_RESULT), which goes on with the
 * CONNECT (connect_proceed) or refuses it.
 *
 * Bounds: at most --auth-queue checks wait; past that CONNECT is refused
 * with 0x89 Server busy (3.1.1: 3 Server unavailable) at once. A check
 * whose connection has passed --connect-timeout is skipped (the worker has
 * closed it); an answer for a connection closed meanwhile finds no
 * connection in CS_AUTH with that id and is dropped.
 *
 * Stopping (broker_stop, before the workers) cancels a check under way
 * (a password file may ask for minutes of PBKDF2: scram_pbkdf2 looks at
 * `cancel` every PBKDF2_CANCEL_EVERY iterations), drops the queued ones and
 * joins the threads; each ends with OPENSSL_thread_stop(). A thread left
 * running, or one still exiting when main() returns, loses its OpenSSL
 * thread state (ERR_STATE, 904 bytes) to OPENSSL_cleanup at exit: a leak
 * under LeakSanitizer, and OpenSSL freed under a thread still hashing.
 * Answers are posted under the lock only while not stopped; a job holds a
 * copy of its entry (a SIGHUP may free the table meanwhile). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h"
#include "node/broker.h"
#include "node/conn.h"
#include "node/mqtt/dispatch.h"
#include "node/worker.h"

/* Hashing threads yield to the event loops: a login storm takes the CPU
 * the workers leave, not theirs. */
#define HASH_NICE 10

typedef struct hash_job {
    struct hash_job *next;
    passwd_entry e; /* a copy (user NULL): the table may be freed meanwhile */
    uint64_t conn_id;
    uint64_t deadline_ms; /* the connection's connect timeout */
    int worker;
    uint32_t pwlen;
    uint8_t pw[]; /* cleansed before it is freed */
} hash_job;

struct auth_hasher {
    broker *b;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    hash_job *head, *tail;
    uint32_t queued;
    uint32_t max_queued;
    bool stop;
    atomic_bool cancel; /* set with stop: a check under way gives up */
    pthread_t *threads; /* cap of them */
    int cap;
    int nthreads; /* started and not joined yet */
};

static void job_free(hash_job *j)
{
    OPENSSL_cleanse(j->pw, j->pwlen);
    sh_free(j, sizeof(*j) + j->pwlen);
}

static hash_job *take(struct auth_hasher *h)
{
    pthread_mutex_lock(&h->lock);
    while (!h->head && !h->stop) {
        pthread_cond_wait(&h->cond, &h->lock);
    }
    hash_job *j = h->stop ? NULL : h->head;
    if (j) {
        h->head = j->next;
        if (!h->head) {
            h->tail = NULL;
        }
        h->queued--;
    }
    pthread_mutex_unlock(&h->lock);
    return j;
}

static void hasher_free(struct auth_hasher *h)
{
    while (h->head) {
        hash_job *j = h->head;
        h->head = j->next;
        job_free(j);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    sh_free(h->threads, (size_t)h->cap * sizeof(pthread_t));
    sh_free(h, sizeof(*h));
}

/* Post the answer unless stopped: under the lock, so that once
 * auth_hash_stop has returned nothing reaches the workers. */
static void answer(struct auth_hasher *h, const hash_job *j, bool ok)
{
    inbox_item it;
    memset(&it, 0, sizeof(it));
    it.kind = IN_AUTH_RESULT;
    it.conn_id = j->conn_id;
    it.clean = ok;
    pthread_mutex_lock(&h->lock);
    if (!h->stop) {
        worker_post_external(h->b, j->worker, &it);
    }
    pthread_mutex_unlock(&h->lock);
}

static void *hash_main(void *arg)
{
    struct auth_hasher *h = arg;
    /* Linux: nice is per thread (a thread id is a process id here). */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), HASH_NICE) != 0) {
        sh_log(SH_WARN, "event=auth_hash_nice_failed nice=%d", HASH_NICE);
    }
    hash_job *j;
    while ((j = take(h)) != NULL) {
        if (now_ms() < j->deadline_ms) {
            sh_log(SH_DEBUG, "event=auth_hash_check conn=%llu iterations=%d", (unsigned long long)j->conn_id,
                   j->e.iterations);
            bool ok = passwd_verify_or_cancel(&j->e, j->pw, j->pwlen, &h->cancel);
            answer(h, j, ok); /* not when cancelled: stop is set first */
        }
        job_free(j);
    }
    /* Free this thread's OpenSSL state (its error queue) now, while the
     * library is up: its thread-exit hook may run after OPENSSL_cleanup. */
    OPENSSL_thread_stop();
    return NULL;
}

int auth_hash_start(broker *b)
{
    const auth_config *ac = &b->cfg->auth;
    if (!b->threaded || !ac->password_file) {
        return SH_OK; /* checked inline (tests' single-threaded brokers), or nothing to check */
    }
    struct auth_hasher *h = sh_calloc(1, sizeof(*h));
    h->b = b;
    h->max_queued = ac->hash_queue > 0 ? (uint32_t)ac->hash_queue : 1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    atomic_init(&h->cancel, false);
    h->cap = ac->hash_threads > 0 ? ac->hash_threads : 1;
    h->threads = sh_calloc((size_t)h->cap, sizeof(pthread_t));
    b->auth.hasher = h; /* from here auth_hash_stop joins what started */
    while (h->nthreads < h->cap && pthread_create(&h->threads[h->nthreads], NULL, hash_main, h) == 0) {
        h->nthreads++;
    }
    if (h->nthreads == 0) {
        sh_log(SH_ERROR, "event=auth_hash_thread_failed");
        return SH_ERR;
    }
    return SH_OK;
}

void auth_hash_stop(broker *b)
{
    struct auth_hasher *h = b->auth.hasher;
    if (!h) {
        return;
    }
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    atomic_store_explicit(&h->cancel, true, memory_order_relaxed);
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    /* Within PBKDF2_CANCEL_EVERY iterations of a check under way. */
    for (int i = 0; i < h->nthreads; i++) {
        pthread_join(h->threads[i], NULL);
    }
    h->nthreads = 0;
}

void auth_hash_free(broker *b)
{
    struct auth_hasher *h = b->auth.hasher;
    if (h) {
        auth_hash_stop(b); /* when broker_stop did not */
        b->auth.hasher = NULL;
        hasher_free(h);
    }
}

int auth_hash_submit(conn *c, const passwd_entry *e, const uint8_t *pw, uint32_t pwlen)
{
    broker *b = c->w->b;
    struct auth_hasher *h = b->auth.hasher;
    hash_job *j = sh_malloc(sizeof(*j) + pwlen);
    j->next = NULL;
    j->e = *e;
    j->e.user = NULL;
    j->conn_id = c->id;
    j->deadline_ms = c->created_ms + (uint64_t)b->cfg->connect_timeout * 1000u;
    j->worker = c->w->id;
    j->pwlen = pwlen;
    if (pwlen) {
        memcpy(j->pw, pw, pwlen);
    }
    pthread_mutex_lock(&h->lock);
    bool full = h->stop || h->queued >= h->max_queued;
    if (!full) {
        if (h->tail) {
            h->tail->next = j;
        } else {
            h->head = j;
        }
        h->tail = j;
        h->queued++;
        pthread_cond_signal(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    if (full) {
        job_free(j);
        return SH_ERR;
    }
    c->paused |= PAUSE_HASH;
    return SH_OK;
}

void auth_hash_done(worker *w, const inbox_item *it)
{
    conn *c = worker_find_conn(w, it->conn_id);
    if (!c || c->state != CS_AUTH || !(c->paused & PAUSE_HASH)) {
        return; /* closed meanwhile (or timed out) */
    }
    c->paused &= (uint8_t)~PAUSE_HASH;
    if (!it->clean) {
        atomic_fetch_add_explicit(&w->b->auth.failures, 1, memory_order_relaxed);
        sh_log(SH_INFO, "event=auth_failed conn=%llu client=%s peer=%s username=%s reason=\"bad password\"",
               (unsigned long long)c->id, c->client_id ? c->client_id : "-", c->peer, c->username ? c->username : "-");
        conn_refuse(c, MQTT_RC_BAD_USER_OR_PASSWORD, "bad password");
        return;
    }
    /* Input waits until the session is attached: connect_finish resumes it. */
    c->paused |= PAUSE_CLAIM;
    mqtt_rc rc = connect_proceed(c);
    if (rc >= 0x80) {
        conn_refuse(c, rc, mqtt_rc_name(rc));
    }
}
