/* The broker's shared state: set up and torn down in one place for the
 * process (main.c) and for in-process tests and fuzzers. */
#include "common/alloc.h"
#include "node/broker.h"
#include "node/session.h"
#include "node/worker.h"
#include "node/retain.h"

void broker_init(broker *b, config *cfg, int nworkers, trie_strategy strategy)
{
    b->cfg = cfg;
    b->start_ms = now_ms();
    b->nworkers = nworkers;
    b->subs = trie_new(strategy);
    b->retained = retain_new();
    retain_set_max(b->retained, cfg->limits.max_retained);
    pthread_rwlock_init(&b->subs_lock, NULL);
    pthread_rwlock_init(&b->retain_lock, NULL);
    pthread_mutex_init(&b->sess_lock, NULL);
    b->sess_buckets = SESS_BUCKETS_MIN;
    b->sess_tab = sh_calloc(b->sess_buckets, sizeof(session *));
}

/* Connections first (they hold sessions), then sessions (their timers live
 * on the loops), then the loops, the indexes and the backplane. */
void broker_free(broker *b)
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
}
