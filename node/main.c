/* shoal: the broker process. */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/core.h"

static int start(broker *b, config *cfg)
{
    b->cfg = cfg;
    b->start_ms = now_ms();
    if (cfg->node_id) {
        snprintf(b->node_id, sizeof(b->node_id), "%s", cfg->node_id);
    } else {
        char host[64] = "shoal";
        gethostname(host, sizeof(host) - 1);
        snprintf(b->node_id, sizeof(b->node_id), "%s-%d", host, (int)getpid());
    }
    sh_log_setup((sh_level)sh_log_parse_level(cfg->log_level),
                 !strcmp(cfg->log_format, "json") ? SH_LOG_JSON
                                                  : (!strcmp(cfg->log_format, "logfmt") ? SH_LOG_LOGFMT : SH_LOG_TEXT),
                 b->node_id);
    b->nworkers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (b->nworkers < 1) {
        b->nworkers = 1;
    }
    trie_strategy strat = !strcmp(cfg->shared_strategy, "random")
                              ? TRIE_SHARED_RANDOM
                              : (!strcmp(cfg->shared_strategy, "sticky") ? TRIE_SHARED_STICKY : TRIE_SHARED_ROUND_ROBIN);
    b->subs = trie_new(strat);
    b->retained = retain_new();
    pthread_rwlock_init(&b->subs_lock, NULL);
    pthread_rwlock_init(&b->retain_lock, NULL);
    pthread_mutex_init(&b->sess_lock, NULL);
    b->sess_tab = sh_calloc(SESS_BUCKETS, sizeof(session *));
    bp_config bc = {
        .node_id = b->node_id, .redis_url = cfg->redis, .kafka_brokers = cfg->kafka, .heartbeat_ms = 1000,
    };
    bp_hooks hooks = {.node = b};
    b->bp = bp_open(&bc, &hooks);
    if (!b->bp) {
        return -1;
    }
    if (worker_start_all(b) != 0) {
        return -1;
    }
    return 0;
}

/* Free everything, so leak checkers see a clean exit: connections first
 * (they hold sessions), then sessions (their timers live on the loops), then
 * the loops, the indexes and the backplane. */
static void broker_free(broker *b)
{
    worker_release_conns(b);
    for (size_t i = 0; i < SESS_BUCKETS; i++) {
        session *s = b->sess_tab[i];
        while (s) {
            session *next = s->reg_next;
            s->reg_next = NULL;
            session_unref(b, s);
            s = next;
        }
    }
    sh_free(b->sess_tab, SESS_BUCKETS * sizeof(session *));
    worker_free_all(b);
    trie_free(b->subs);
    retain_free(b->retained);
    pthread_rwlock_destroy(&b->subs_lock);
    pthread_rwlock_destroy(&b->retain_lock);
    pthread_mutex_destroy(&b->sess_lock);
    bp_free(b->bp);
}

int main(int argc, char **argv)
{
    config cfg;
    int rc = config_load(&cfg, argc - 1, argv + 1);
    if (rc == 1) {
        return 0;
    }
    if (rc != 0) {
        return 2;
    }
    if (sh_log_parse_level(cfg.log_level) < 0) {
        fprintf(stderr, "shoal: --log-level must be debug, info, warn or error, not '%s'\n", cfg.log_level);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Signals are taken synchronously by the main thread; workers never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    broker b;
    memset(&b, 0, sizeof(b));
    if (start(&b, &cfg) != 0) {
        sh_log(SH_ERROR, "event=start_failed");
        return 1;
    }
    sh_log(SH_INFO, "event=ready node=%s port=%u workers=%d backplane=%s version=%s", b.node_id, b.port,
           b.nworkers, bp_kind(b.bp), SHOAL_VERSION);
    /* Scripts wait for this line. */
    printf("READY mqtt://%s:%u\n", cfg.bind, b.port);
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    sh_log(SH_INFO, "event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&b.stopping, true);
    worker_stop_all(&b);
    bp_close(b.bp);
    broker_free(&b);
    sh_log(SH_INFO, "event=stopped");
    config_free(&cfg);
    return 0;
}
