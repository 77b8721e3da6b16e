# SPDX-License-Identifier: Apache-2.0
"""Cluster figures on /metrics, with a real Redis and Kafka."""
import re
import time
import urllib.request

import pytest

import test_http as H
from pahoclient import Client, uid
from test_cluster import Backends

WAIT = 30


@pytest.fixture(scope="module")
def backends():
    b = Backends()
    yield b
    b.stop()


def scrape(node):
    with urllib.request.urlopen(node.http_url + "/metrics", timeout=10) as r:
        return r.read().decode()


def value(text, name, labels=""):
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert m, "%s%s missing from /metrics" % (name, labels)
    return float(m.group(1))


def test_backplane_metrics_move_with_traffic(backends, node_factory):
    prefix = uid("m") + "."
    nodes = [node_factory("--node-id", uid(n), "--redis", backends.redis_url, "--kafka", backends.bootstrap,
                          "--kafka-replication", "1", "--kafka-partitions", "2", "--kafka-topic-prefix", prefix)
             for n in ("a", "b")]
    text = scrape(nodes[0])
    assert value(text, "shoal_backend_up", '{backend="kafka"}') == 1
    assert value(text, "shoal_backend_up", '{backend="redis"}') == 1
    assert 'shoal_backplane_info{backplane="redis_kafka"} 1' in text
    topic = uid("mt")
    sub = Client(nodes[1])
    sub.subscribe(topic, qos=1)
    pub = Client(nodes[0])
    for i in range(20):
        pub.publish(topic, b"x", qos=1)
    sub.get_n(20, WAIT)
    sent = scrape(nodes[0])
    assert value(sent, "shoal_kafka_produced_total") >= 20
    assert value(sent, "shoal_kafka_produce_latency_seconds_count") >= 20
    assert value(sent, "shoal_kafka_produce_errors_total") == 0
    deadline = time.time() + WAIT
    while True:
        got = scrape(nodes[1])
        if value(got, "shoal_kafka_consumed_total") >= 20 and value(got, "shoal_kafka_consumer_lag_messages") == 0:
            break
        assert time.time() < deadline, got
        time.sleep(0.1)
    # Every record read from the other node is timed from its produce timestamp.
    assert value(got, "shoal_kafka_consume_delay_seconds_count") >= 20
    assert value(got, "shoal_kafka_consume_delay_seconds_bucket", '{le="+Inf"}') >= 20
    # A retained publish writes the Redis snapshot: one timed Redis command.
    before = value(scrape(nodes[0]), "shoal_redis_command_latency_seconds_count")
    pub.publish(topic + "/r", b"kept", qos=1, retain=True)
    deadline = time.time() + WAIT
    while value(scrape(nodes[0]), "shoal_redis_command_latency_seconds_count") <= before:
        assert time.time() < deadline, "no Redis command was timed"
        time.sleep(0.1)
    assert value(scrape(nodes[0]), "shoal_redis_errors_total") == 0
    # The dashboard's backend panels use only what a clustered node exports.
    _, _, used = H.dashboard_exprs()
    live = set(re.findall(r"^(shoal_[a-zA-Z0-9_]+)", scrape(nodes[1]), re.M))
    backend = {m for m in used if H.CLUSTER_ONLY.search(m)}
    assert {"shoal_backend_up", "shoal_kafka_consume_delay_seconds_bucket"} <= backend, backend
    assert not sorted(backend - live), "dashboard uses metrics a clustered node does not export: %s" % sorted(backend - live)
