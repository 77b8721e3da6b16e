/* SPDX-License-Identifier: Apache-2.0 */
/* The config of an in-process broker on the real Redis and Kafka that
 * tests/integration/with_backends.sh started: a topic prefix and node id of
 * its own (tag, pid, time), so runs never see each other's records. */
#ifndef SHOAL_TESTS_INTEGRATION_RK_CONFIG_H
#define SHOAL_TESTS_INTEGRATION_RK_CONFIG_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "node/config.h"

static inline void rk_test_config(config *cfg, const char *tag)
{
    const char *redis = getenv("SHOAL_TEST_REDIS_URL");
    const char *kafka = getenv("SHOAL_TEST_KAFKA");
    cr_assert(redis && kafka, "run through tests/integration/with_backends.sh");
    static char prefix[64], node[64];
    snprintf(prefix, sizeof(prefix), "%s-%d-%ld.", tag, (int)getpid(), (long)time(NULL));
    snprintf(node, sizeof(node), "%s-%d", tag, (int)getpid());
    char *argv[] = {"--redis",
                    (char *)redis,
                    "--kafka",
                    (char *)kafka,
                    "--kafka-topic-prefix",
                    prefix,
                    "--kafka-partitions",
                    "2",
                    "--kafka-replication",
                    "1",
                    "--node-id",
                    node};
    cr_assert_eq(config_load(cfg, (int)(sizeof(argv) / sizeof(argv[0])), argv), CONFIG_OK);
}

#endif
