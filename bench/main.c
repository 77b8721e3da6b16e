/* SPDX-License-Identifier: Apache-2.0 */
/* shoal-bench: forks --procs workers that share a board (bench/board.h),
 * prints their merged progress once a second on stderr and the merged
 * result as JSON on stdout. The parent enforces a hard deadline, so a run
 * ends even if a worker or the broker hangs. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/board.h"
#include "bench/opts.h"
#include "bench/report.h"
#include "bench/run.h"

#define MAX_PROCS 64

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = sig;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Raise the soft fd limit to the hard one, and check the busiest worker
 * fits under it. */
static int raise_nofile(const bench_opts *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    uint64_t per_proc = (opts_clients(o) + (uint32_t)o->procs - 1) / (uint32_t)o->procs;
    if (rl.rlim_cur != RLIM_INFINITY && per_proc + 32 > rl.rlim_cur) {
        fprintf(stderr, "shoal-bench: %llu clients per process exceed the fd limit %llu; use more --procs\n",
                (unsigned long long)per_proc, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int spawn(const bench_opts *o, board *b, pid_t *pids)
{
    for (int i = 0; i < o->procs; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("shoal-bench: fork");
            return -1;
        }
        if (pid == 0) {
            signal(SIGINT, SIG_IGN);
            signal(SIGTERM, SIG_DFL);
            _exit(run_worker(o, b, i) == 0 ? 0 : 1);
        }
        pids[i] = pid;
    }
    return 0;
}

static void signal_all(const pid_t *pids, int n, int sig)
{
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0) {
            kill(pids[i], sig);
        }
    }
}

/* Reaps finished workers; returns how many are still running and sets
 * *failed when one exited badly. */
static int reap(pid_t *pids, int n, bool *failed)
{
    int running = 0;
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0) {
            continue;
        }
        int st;
        pid_t w = waitpid(pids[i], &st, WNOHANG);
        if (w == pids[i]) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "shoal-bench: worker %d (pid %d) %s %d\n", i, (int)pids[i],
                        WIFSIGNALED(st) ? "killed by signal" : "exited with",
                        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
                *failed = true;
            }
            pids[i] = 0;
        } else {
            running++;
        }
    }
    return running;
}

/* Progress every second and the one-off phase lines ("HOLD" is what
 * scripts wait for before sampling a broker's memory). */
static void supervise(const bench_opts *o, board *b, pid_t *pids, const char **status)
{
    double t0 = mono_s(), last = t0;
    /* Setup, run, the drain's own cap (10x), and the close and clear waits. */
    double hard = o->setup_timeout + o->duration + 10 * o->drain + 60;
    report_live prev, now;
    report_live_sum(b, &prev);
    bool failed = false, stopping = false, held = false;
    while (reap(pids, o->procs, &failed) > 0) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        double t = mono_s();
        report_live_sum(b, &now);
        if (!held && now.phase >= PHASE_RUN) {
            held = true;
            if (!o->quiet || o->sc->map == MAP_NONE) {
                fprintf(stderr, "%s connected=%llu refused=%llu elapsed=%.1fs\n",
                        o->sc->map == MAP_NONE ? "HOLD" : "RUN", (unsigned long long)now.connected,
                        (unsigned long long)now.refused, t - t0);
            }
        }
        if (t - last >= 1.0) {
            if (!o->quiet) {
                report_progress(stderr, t - t0, &now, &prev, t - last);
            }
            prev = now;
            last = t;
        }
        if (stop_requested && !stopping) {
            stopping = true;
            signal_all(pids, o->procs, SIGTERM);
        }
        if (t - t0 > hard) {
            fprintf(stderr, "shoal-bench: hard deadline of %.0fs passed, killing workers\n", hard);
            signal_all(pids, o->procs, SIGKILL);
            *status = "killed after deadline";
        }
    }
    if (failed && !strcmp(*status, "ok")) {
        *status = "worker failed";
    }
    if (stopping && !strcmp(*status, "ok")) {
        *status = "interrupted";
    }
}

int main(int argc, char **argv)
{
    bench_opts *o = calloc(1, sizeof(*o));
    char err[256];
    int rc = o ? opts_parse(o, argc, argv, err, sizeof(err)) : -1;
    if (rc == 1) {
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "shoal-bench: %s\n", o ? err : "out of memory");
        return 2;
    }
    if (raise_nofile(o) != 0) {
        return 2;
    }
    board *b = board_create((uint32_t)o->procs, o->pubs);
    if (!b) {
        perror("shoal-bench: mmap");
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pid_t pids[MAX_PROCS] = {0};
    const char *status = "ok";
    if (spawn(o, b, pids) != 0) {
        signal_all(pids, o->procs, SIGKILL);
        status = "fork failed";
    }
    supervise(o, b, pids, &status);
    report_json(stdout, o, b, status);
    report_live live;
    report_live_sum(b, &live);
    int exit_code = strcmp(status, "ok") != 0 || live.connected == 0 ? 1 : 0;
    board_destroy(b);
    free(o);
    return exit_code;
}
