/* SPDX-License-Identifier: Apache-2.0 */
/* Preloaded before libfaketime (tests/integration/faketime.py) so that a
 * node runs with its wall clock off while librdkafka keeps working.
 *
 * libfaketime 0.9.10 fakes timespec_get(), which librdkafka uses for the
 * absolute deadlines of its condition-variable waits (rd_timeout_init_timespec),
 * and those deadlines are not moved back to the real clock the condition
 * variable waits on: with the clock behind, a wait ends at once (rd_kafka_new
 * fails with "Timed out waiting for 1 background thread(s) to initialize");
 * ahead, every timed wait lasts the offset longer (rd_kafka_destroy hangs).
 * Shoal's own wall clock (clock_gettime, gettimeofday, time) stays faked; it
 * uses neither timespec_get nor a CLOCK_REALTIME condition variable (its one
 * timed wait, node/http/admin.c, is on CLOCK_MONOTONIC, which
 * FAKETIME_DONT_FAKE_MONOTONIC=1 leaves alone). So both go straight to libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

static void *libc(void)
{
    static void *h;
    if (!h) {
        h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    }
    return h;
}

int timespec_get(struct timespec *ts, int base)
{
    static int (*real)(struct timespec *, int);
    if (!real) {
        real = (int (*)(struct timespec *, int))dlsym(libc(), "timespec_get");
    }
    return real(ts, base);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abstime)
{
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    if (!real) {
        real = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))dlvsym(
            libc(), "pthread_cond_timedwait", "GLIBC_2.3.2");
    }
    return real(c, m, abstime);
}
