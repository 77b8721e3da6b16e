/* The backplane contract (tests/unit/cluster/backplane_contract.h) against
 * redis_kafka with a real Redis and Kafka, given by with_backends.sh in
 * SHOAL_TEST_REDIS_URL and SHOAL_TEST_KAFKA. Every test opens its own
 * members on a Kafka topic prefix unique to this run. */
#include <stdlib.h>

#define CONTRACT_SHARES_MESSAGES true
#include "tests/unit/cluster/backplane_contract.h"

static void contract_config(bp_config *cfg)
{
    static char prefix[64];
    const char *redis = getenv("SHOAL_TEST_REDIS_URL");
    const char *kafka = getenv("SHOAL_TEST_KAFKA");
    cr_assert(redis && kafka, "run through tests/integration/with_backends.sh");
    const char *run = getenv("SHOAL_TEST_RUN");
    snprintf(prefix, sizeof(prefix), "contract-%s.", run ? run : "x");
    cfg->redis_url = redis;
    cfg->kafka_brokers = kafka;
    cfg->kafka_topic_prefix = prefix;
}
