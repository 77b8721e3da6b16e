/* SPDX-License-Identifier: Apache-2.0 */
/* The session registry (client id → session): its table starts small and
 * doubles as sessions come, and no session is lost on the way. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "node/broker.h"
#include "node/mqtt/registry.h"
#include "node/mqtt/session.h"

static config cfg;
static broker b;

static void setup(void)
{
    memset(&cfg, 0, sizeof(cfg));
    broker_open_opts o = {.workers = 1};
    cr_assert_eq(broker_open(&b, &cfg, &o), BROKER_OK);
}

static void teardown(void)
{
    broker_close(&b);
}

TestSuite(registry, .init = setup, .fini = teardown);

static session *put(unsigned i)
{
    char id[32];
    int n = snprintf(id, sizeof(id), "client-%u", i);
    session *s = session_new(&b, id, (size_t)n, 0);
    pthread_mutex_lock(&b.sess_lock);
    registry_put(&b, s);
    pthread_mutex_unlock(&b.sess_lock);
    session_unref(&b, s); /* the registry holds its own ref */
    return s;
}

static session *get(unsigned i)
{
    char id[32];
    int n = snprintf(id, sizeof(id), "client-%u", i);
    pthread_mutex_lock(&b.sess_lock);
    session *s = registry_get(&b, id, (size_t)n);
    pthread_mutex_unlock(&b.sess_lock);
    return s;
}

Test(registry, table_grows_with_sessions_and_keeps_every_one)
{
    enum { N = 5000 };
    static session *all[N];
    cr_assert_eq(b.sess_buckets, SESS_BUCKETS_MIN);
    for (unsigned i = 0; i < N; i++) {
        all[i] = put(i);
    }
    cr_assert_geq(b.sess_buckets, N, "at most one session per bucket on average");
    cr_assert_lt(b.sess_buckets, 2 * N);
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(get(i), all[i], "client-%u", i);
    }
    /* Remove every other one; the rest stay reachable. */
    pthread_mutex_lock(&b.sess_lock);
    for (unsigned i = 0; i < N; i += 2) {
        registry_remove(&b, all[i]);
    }
    pthread_mutex_unlock(&b.sess_lock);
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(get(i), i % 2 ? all[i] : NULL, "client-%u after removals", i);
    }
    cr_assert_eq(atomic_load(&b.sess_count), N / 2);
}
