/* SPDX-License-Identifier: Apache-2.0 */
/* shoal: the broker process. */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "node/auth/auth.h" /* passwords and ACLs, shoal passwd */
#include "node/broker.h"
#include "node/drain.h"
#include "node/http/http.h" /* metrics, health, admin API */
#include "node/tools/ctl.h" /* shoal ctl */
#include "node/worker.h"    /* now_ms */

/* Checks config_load leaves to main; the reason goes to stderr. */
static bool log_level_valid(const config *cfg)
{
    if (sh_log_parse_level(cfg->log_level) < 0) {
        fprintf(stderr, "shoal: --log-level must be debug, info, warn or error, not '%s'\n", cfg->log_level);
        return false;
    }
    return true;
}

/* `shoal --check-config FILE [options]`: load FILE, the environment and the
 * options exactly as a start would (--check-config FILE stands for --config
 * FILE), report every bad line, and exit 0 or 1 without opening anything but
 * FILE. The files the config names (certificates, password file, ACL) are
 * not read: they may exist only where the node runs. */
static int check_config_main(int argc, char **argv)
{
    char **args = sh_calloc((size_t)argc + 1, sizeof(*args));
    const char *file = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check-config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shoal: --check-config needs a file\n");
                sh_free(args, ((size_t)argc + 1) * sizeof(*args));
                return 1;
            }
            args[n++] = (char *)"--config";
            args[n++] = argv[++i];
            file = argv[i];
        } else {
            args[n++] = argv[i];
        }
    }
    config cfg;
    config_status rc = config_load(&cfg, n, args);
    bool ok = rc == CONFIG_OK && log_level_valid(&cfg);
    if (ok) {
        printf("shoal: %s: ok\n", file);
    }
    config_free(&cfg);
    sh_free(args, ((size_t)argc + 1) * sizeof(*args));
    return ok || rc == CONFIG_EXIT ? 0 : 1;
}

/* SIGTERM: drain (node/drain.c; maybe begun already by POST
 * /api/v1/drain), then stop. A second SIGTERM, or SIGINT, stops at once;
 * SIGHUP still reloads. Returns the signal that ends the wait (SIGTERM
 * when the drain finished). */
static int drain_then_stop(broker *b, const sigset_t *set)
{
    drain_begin(b, "SIGTERM");
    /* The drain ends by --drain-timeout; this is for a worker that does
     * not answer at all (liveness would report it). */
    uint64_t give_up = now_ms() + (uint64_t)b->cfg->drain.timeout * 1000u + 2000u;
    const struct timespec poll = {0, 50 * 1000 * 1000};
    while (drain_state_of(b) != DRAIN_DONE && now_ms() < give_up) {
        int sig = sigtimedwait(set, NULL, &poll);
        if (sig == SIGHUP) {
            broker_reload(b);
        } else if (sig == SIGTERM || sig == SIGINT) {
            sh_log(SH_WARN, "event=drain_aborted signal=%s remaining=%llu", sig == SIGINT ? "SIGINT" : "SIGTERM",
                   (unsigned long long)drain_remaining(b));
            return sig;
        }
    }
    return SIGTERM;
}

int main(int argc, char **argv)
{
    /* `shoal ctl ...`: the admin client, not a broker. */
    if (argc > 1 && !strcmp(argv[1], "ctl")) {
        return ctl_main(argc - 1, argv + 1);
    }
    /* `shoal passwd ...`: edit a password file. */
    if (argc > 1 && !strcmp(argv[1], "passwd")) {
        return passwd_main(argc - 1, argv + 1);
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check-config")) {
            return check_config_main(argc, argv);
        }
    }
    config cfg;
    config_status rc = config_load(&cfg, argc - 1, argv + 1);
    if (rc != CONFIG_OK) {
        config_free(&cfg); /* so leak checkers see --help and bad flags exit clean */
        return rc == CONFIG_EXIT ? 0 : 2;
    }
    if (!log_level_valid(&cfg)) {
        config_free(&cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Signals are taken synchronously by the main thread; workers never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP); /* reload the TLS certificates */
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    broker b;
    broker_open_opts opts = {.threads = true, .setup_log = true};
    broker_status st = broker_open(&b, &cfg, &opts);
    if (st == BROKER_EAUTH) { /* the reason is on stderr */
        auth_free(&b);
        config_free(&cfg);
        return 2;
    }
    if (st != BROKER_OK || broker_start(&b) != BROKER_OK) {
        sh_log(SH_ERROR, "event=start_failed");
        /* What the open and the start got as far as making, freed the one
         * way (so leak checkers see a failed start exit clean too). */
        broker_stop(&b);
        broker_close(&b);
        config_free(&cfg);
        return 1;
    }
    char http_url_buf[128];
    http_url(b.ops.server, http_url_buf, sizeof(http_url_buf));
    if (cfg.auth.anonymous && strncmp(cfg.bind, "127.", 4) && strcmp(cfg.bind, "::1") &&
        strcmp(cfg.bind, "localhost")) {
        sh_log(SH_WARN,
               "event=anonymous_access bind=%s msg=\"clients without a username are accepted on a "
               "non-loopback address; set --password-file or --allow-anonymous false\"",
               cfg.bind);
    }
    sh_log(SH_INFO, "event=ready node=%s port=%u tls_port=%u ws_port=%u wss_port=%u workers=%d backplane=%s version=%s",
           b.node_id, b.port, b.tls.port, b.ws.port, b.ws.wss_port, b.nworkers, bp_kind(b.bp), SHOAL_VERSION);
    /* Scripts wait for READY, the last startup line; HTTP, TLS, WS and WSS come just before it. */
    printf("HTTP %s\n", http_url_buf);
    if (b.tls.port) {
        printf("TLS mqtts://%s:%u\n", cfg.bind, b.tls.port);
    }
    if (b.ws.port) {
        printf("WS ws://%s:%u%s\n", cfg.bind, b.ws.port, cfg.ws.path);
    }
    if (b.ws.wss_port) {
        printf("WSS wss://%s:%u%s\n", cfg.bind, b.ws.wss_port, cfg.ws.path);
    }
    printf("READY mqtt://%s:%u\n", cfg.bind, b.port);
    fflush(stdout);

    int sig = 0;
    for (;;) {
        sigwait(&set, &sig);
        if (sig != SIGHUP) {
            break;
        }
        broker_reload(&b); /* password and ACL files, TLS certificates */
    }
    if (sig == SIGTERM) {
        sig = drain_then_stop(&b, &set);
    }
    sh_log(SH_INFO, "event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    broker_stop(&b);
    broker_close(&b); /* everything, so leak checkers see a clean exit */
    sh_log(SH_INFO, "event=stopped");
    config_free(&cfg);
    return 0;
}
