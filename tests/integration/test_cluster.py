"""The redis_kafka backplane with a real Redis and a real KRaft Kafka:
cross-node routing, retained messages and membership, backend outages."""
import json
import os
import socket
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import Node
from pahoclient import Client, props, uid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
WAIT = 30


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_env(cmd):
    """Run a deploy/* start script and parse its KEY=VALUE lines."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=240).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


class Backends:
    def __init__(self):
        self.redis_port = free_port()
        self.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(self.redis_port)])
        self.kafka = run_env([os.path.join(ROOT, "deploy/kafka/start"), "--port", str(free_port()),
                              "--controller-port", str(free_port())])
        self.redis_url = self.redis["REDIS_URL"]
        self.bootstrap = self.kafka["KAFKA_BOOTSTRAP"]

    def stop_redis(self):
        if self.redis:
            subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", self.redis["REDIS_DIR"]],
                           check=True, capture_output=True, timeout=60)
            self.redis = None

    def start_redis(self):
        self.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(self.redis_port)])

    def stop_kafka(self):
        if self.kafka:
            subprocess.run([os.path.join(ROOT, "deploy/kafka/stop"), "--dir", self.kafka["KAFKA_DIR"]],
                           check=True, capture_output=True, timeout=120)
            self.kafka = None

    def stop(self):
        self.stop_redis()
        self.stop_kafka()


@pytest.fixture(scope="module")
def backends():
    b = Backends()
    yield b
    b.stop()


@pytest.fixture
def cluster(backends, node_factory):
    """Start cluster nodes on the shared backends; the topic prefix is unique
    per test so tests never see each other's records."""
    prefix = uid("t") + "."

    def make(name):
        return node_factory("--workers", "2", "--node-id", name, "--redis", backends.redis_url, "--kafka",
                            backends.bootstrap, "--kafka-replication", "1", "--kafka-partitions", "4",
                            "--kafka-topic-prefix", prefix, "--cluster-heartbeat", "300")
    return make


def test_publish_on_one_node_reaches_subscribers_on_another(cluster):
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    for version in (5, 4):
        sub = Client(n2, version=version)
        topic = uid("x") + "/a"
        sub.subscribe(topic.rsplit("/", 1)[0] + "/+", qos=1)
        pub = Client(n1, version=version)
        pub.publish(topic, b"cross", qos=1)
        m = sub.get(WAIT)
        assert (m.topic, m.payload, m.qos) == (topic, b"cross", 1)
        sub.disconnect()
        pub.disconnect()


def test_per_topic_order_across_nodes_and_no_duplicates(cluster):
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    topic = uid("order")
    remote = Client(n2)
    local = Client(n1)
    remote.subscribe(topic, qos=1)
    local.subscribe(topic, qos=1)
    pub = Client(n1)
    for i in range(100):
        pub.publish(topic, str(i).encode(), qos=1, wait=False)
    got_remote = [int(m.payload) for m in remote.get_n(100, WAIT)]
    got_local = [int(m.payload) for m in local.get_n(100, WAIT)]
    assert got_remote == list(range(100))
    # The publishing node delivered at once and skipped its own records.
    assert got_local == list(range(100))
    local.barrier(pub)
    local.none(0.2)


def test_v5_properties_cross_nodes_unchanged(cluster):
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    topic = uid("props")
    sub = Client(n2)
    sub.subscribe(topic, qos=1)
    pub = Client(n1)
    p = props(ContentType="text/plain", ResponseTopic="reply/here", CorrelationData=b"\x00\x01",
              MessageExpiryInterval=60, UserProperty=[("a", "1"), ("b", "2"), ("a", "3")])
    pub.publish(topic, b"x", qos=1, properties=p)
    m = sub.get(WAIT)
    assert m.properties.ContentType == "text/plain"
    assert m.properties.ResponseTopic == "reply/here"
    assert m.properties.CorrelationData == b"\x00\x01"
    assert m.properties.UserProperty == [("a", "1"), ("b", "2"), ("a", "3")]
    assert 55 <= m.properties.MessageExpiryInterval <= 60


def test_retained_set_and_deleted_on_one_node_seen_on_another(cluster):
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    base = uid("ret")
    pub = Client(n1)
    pub.publish(base + "/keep", b"kept", qos=1, retain=True)
    pub.publish(base + "/gone", b"soon gone", qos=1, retain=True)
    pub.publish(base + "/gone", b"", qos=1, retain=True)
    # The marker is published last; once a subscriber on n2 sees it retained,
    # every earlier record of this publisher has been applied there too.
    pub.publish(base + "/zmarker", b"m", qos=1, retain=True)
    deadline = time.time() + WAIT
    while True:
        sub = Client(n2)
        sub.subscribe(base + "/#", qos=1)
        got = {}
        try:
            while True:
                m = sub.get(2)
                got[m.topic] = (m.payload, m.retain)
        except AssertionError:
            pass
        sub.disconnect()
        if base + "/zmarker" in got or time.time() > deadline:
            break
    assert got.get(base + "/keep") == (b"kept", True)
    assert base + "/gone" not in got


def test_new_node_loads_the_retained_snapshot(cluster):
    n1 = cluster(uid("n1"))
    topic = uid("snap")
    pub = Client(n1)
    pub.publish(topic, b"from-snapshot", qos=1, retain=True)
    pub.disconnect()
    n3 = cluster(uid("n3"))
    deadline = time.time() + WAIT
    while True:
        sub = Client(n3)
        sub.subscribe(topic, qos=1)
        try:
            m = sub.get(3)
            break
        except AssertionError:
            assert time.time() < deadline, "retained message never reached the new node"
        finally:
            sub.disconnect()
    assert (m.payload, m.retain) == (b"from-snapshot", True)


def test_membership_lists_live_nodes(cluster):
    a, b = uid("na"), uid("nb")
    n1, n2 = cluster(a), cluster(b)
    sub = Client(n1)
    sub.subscribe("$SYS/broker/cluster/nodes", qos=0)
    deadline = time.time() + WAIT
    while True:
        ids = {n["id"] for n in json.loads(sub.get(WAIT).payload)}
        if {a, b} <= ids:
            break
        assert time.time() < deadline, ids
    # A node that stops leaves the list within its heartbeat TTL.
    assert n2.stop() == 0
    deadline = time.time() + WAIT
    while b in ids:
        ids = {n["id"] for n in json.loads(sub.get(WAIT).payload)}
        assert time.time() < deadline, ids


def test_redis_outage_refuses_qos1_keeps_qos0_and_recovers(cluster, backends):
    n1 = cluster(uid("n1"))
    topic = uid("outage")
    sub = Client(n1, version=5)
    sub.subscribe(topic, qos=1)
    pub = Client(n1, version=5)
    backends.stop_redis()
    try:
        assert n1.wait_log("event=backplane_not_ready", WAIT), n1.log()[-2000:]
        # QoS 0 is still served locally.
        pub.publish(topic, b"q0", qos=0)
        assert sub.get(WAIT).payload == b"q0"
        # QoS 1 is refused with 0x97 rather than acknowledged without durability.
        acks = []
        pub.c.on_publish = lambda c, u, mid, rc, p: acks.append(int(rc.value))
        info = pub.publish(topic, b"q1", qos=1, wait=False)
        info.wait_for_publish(WAIT)
        assert acks == [0x97]
    finally:
        ready_lines = n1.log().count("event=backplane_ready")
        backends.start_redis()
    deadline = time.time() + WAIT
    while n1.log().count("event=backplane_ready") == ready_lines:
        assert time.time() < deadline, "node did not recover after Redis came back"
        time.sleep(0.05)
    acks.clear()
    pub.publish(topic, b"after", qos=1)
    assert acks == [0]
    msgs = [m.payload for m in sub.get_n(1, WAIT)]
    assert msgs == [b"after"]


def test_kafka_outage_refuses_qos1_with_0x97_and_closes_v311(cluster, backends):
    """Runs last in this module: Kafka does not come back."""
    n1 = cluster(uid("n1"))
    topic = uid("kdown")
    v5 = Client(n1, version=5)
    v311 = Client(n1, version=4)
    sub = Client(n1)
    sub.subscribe(topic, qos=1)
    backends.stop_kafka()
    # Until librdkafka notices, a publish waits for its delivery report
    # (message timeout 10 s) and is then refused: never acknowledged.
    acks = []
    v5.c.on_publish = lambda c, u, mid, rc, p: acks.append(int(rc.value))
    info = v5.publish(topic, b"lost?", qos=1, wait=False)
    info.wait_for_publish(WAIT)
    assert acks == [0x97]
    v311.publish(topic, b"lost?", qos=1, wait=False)
    assert v311.disconnected.wait(WAIT), "3.1.1 publisher was neither acked nor closed"
    # Local QoS 0 keeps flowing (refused QoS 1 copies may or may not have been
    # delivered locally, depending on when the outage was noticed).
    v5.publish(topic, b"q0", qos=0)
    deadline = time.time() + WAIT
    while sub.get(WAIT).payload != b"q0":
        assert time.time() < deadline
