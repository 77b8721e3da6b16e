# SPDX-License-Identifier: Apache-2.0
"""The redis_kafka backplane with a real Redis and a real KRaft Kafka:
cross-node routing, retained messages and membership, backend outages."""
import collections
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqttraw as R
from certs import make_ca, make_cert
from conftest import SHOAL_BIN, Node
from pahoclient import Client, props, uid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
WAIT = 30
HEARTBEAT_MS = 300  # --cluster-heartbeat of the cluster fixture's nodes
# --cluster-lease of the nodes in the backend outage tests, whose claim is
# that an outage shorter than the fence point (3/4 of the lease) closes no
# client. The fixture's default lease (3 x 300 ms) fences 675 ms after the
# last renewal: on a loaded 2-core CI machine the node's backplane thread
# waited 330 ms and more on the run queue (its CPU time 0, Redis answering
# in ms), a Kafka restart's JVM start being the worst, and a fence 834 ms
# after the last renewal closed the clients of a test that is about Kafka.
# The Redis outage lasts as long as two scripts that stop and start Redis.
OUTAGE_LEASE_MS = 30000
ADMIN_TOKEN = "cluster-admin-token"


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


# Never go through a proxy from the environment: everything is on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(node, path):
    """(status, body text); HTTP errors are returned, not raised."""
    try:
        with _opener.open(node.http_url + path, timeout=WAIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric(node, name, **labels):
    """One sample from the node's /metrics, or None if it is not there."""
    status, body = http_get(node, "/metrics")
    assert status == 200, body
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            got = dict(_LABEL.findall(m.group(2) or ""))
            if all(got.get(k) == str(v) for k, v in labels.items()):
                return float(m.group(3))
    return None


def wait_for(cond, what, timeout=WAIT):
    """Poll cond() until it returns something true; fail after timeout."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.time() < deadline, "timed out after %ss waiting for %s" % (timeout, what)
        time.sleep(0.1)


def kcat_produce(bootstrap, topic, partition, key, value):
    """Produce one record with exactly these value bytes (a file argument is
    one message: stdin would be split at newlines)."""
    with tempfile.NamedTemporaryFile(prefix="shoal-record-") as f:
        f.write(value)
        f.flush()
        subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", str(partition), "-k", key, f.name],
                       check=True, capture_output=True, timeout=60)


def kcat_partition_of(bootstrap, topic, key):
    """The partition holding the records keyed `key` (reads the topic from the start)."""
    out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                          "-f", "%p %k\\n"], check=True, capture_output=True, timeout=60).stdout
    parts = {int(p) for p, _, k in (l.decode(errors="replace").partition(" ") for l in out.splitlines())
             if k == key}
    assert len(parts) == 1, (key, parts)
    return parts.pop()


def record(topic, payload, origin="kcat-test", qos=1, retain=False, props=b"", expiry=0, version=1, client_id=None):
    """A backplane record as docs/architecture.md describes it (version 2
    when client_id, the publishing client's id, is given)."""
    t, o = topic.encode(), origin.encode()
    if client_id is not None:
        version = 2
        o += struct.pack(">H", len(client_id.encode())) + client_id.encode()
        head = bytes([version, 1 if retain else 0, qos, len(origin.encode())])
    else:
        head = bytes([version, 1 if retain else 0, qos, len(o)])
    return (b"SH" + head + o + struct.pack(">QI", expiry, len(props))
            + props + struct.pack(">H", len(t)) + t + payload)


class Backends:
    def __init__(self):
        self.redis_port = free_port()
        self.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(self.redis_port)])
        self.kafka = run_env([os.path.join(ROOT, "deploy/kafka/start"), "--port", str(free_port()),
                              "--controller-port", str(free_port())])
        self.kafka_dir = self.kafka["KAFKA_DIR"]
        self.redis_url = self.redis["REDIS_URL"]
        self.bootstrap = self.kafka["KAFKA_BOOTSTRAP"]

    def stop_redis(self):
        if self.redis:
            subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", self.redis["REDIS_DIR"]],
                           check=True, capture_output=True, timeout=60)
            self.redis = None

    def start_redis(self):
        self.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(self.redis_port)])

    def stop_kafka(self, keep=False):
        """Stop Kafka; with keep its data dir stays for start_kafka()."""
        if self.kafka:
            subprocess.run([os.path.join(ROOT, "deploy/kafka/stop"), "--dir", self.kafka_dir]
                           + (["--keep"] if keep else []), check=True, capture_output=True, timeout=120)
            self.kafka = None
            if not keep:
                self.kafka_dir = None

    def start_kafka(self):
        """Restart the Kafka kept by stop_kafka(keep=True): same ports, cluster id and data."""
        self.kafka = run_env([os.path.join(ROOT, "deploy/kafka/start"), "--dir", self.kafka_dir, "--reuse"])
        assert self.kafka["KAFKA_BOOTSTRAP"] == self.bootstrap, self.kafka

    def stop(self):
        self.stop_redis()
        if self.kafka is None and self.kafka_dir and os.path.isdir(self.kafka_dir):
            self.kafka = {"KAFKA_DIR": self.kafka_dir}  # kept but not running: remove it
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

    def argv(name, *extra):
        return ["--workers", "2", "--node-id", name, "--redis", backends.redis_url, "--kafka", backends.bootstrap,
                "--kafka-replication", "1", "--kafka-partitions", "4", "--kafka-topic-prefix", prefix,
                "--cluster-heartbeat", str(HEARTBEAT_MS), *extra]

    def make(name, *extra):
        return node_factory(*argv(name, *extra))
    make.argv = argv  # the arguments make() starts a node with, for tests that run it themselves
    make.topic = prefix + "messages"  # the Kafka topic these nodes share
    make.partitions = 4
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


def test_node_reads_everything_published_after_it_is_ready(cluster):
    """A node starts reading the stream where it stood when it said READY,
    not wherever "the end" is once its consumer gets round to it: records
    produced by other nodes right after READY reach its subscribers, also
    when the nodes start together on a topic created that moment."""
    started = {}
    threads = [threading.Thread(target=lambda k=k: started.__setitem__(k, cluster(uid(k)))) for k in ("n1", "n2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    n1, n2 = started["n1"], started["n2"]
    topic = uid("fresh")
    sub = Client(n2)
    sub.subscribe(topic, qos=1)
    pub = Client(n1)
    for i in range(300):
        pub.publish(topic, str(i).encode(), qos=1, wait=False)
    assert [int(m.payload) for m in sub.get_n(300, WAIT)] == list(range(300))


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


@pytest.mark.parametrize("version", [5, 4])
def test_qos_levels_cross_node_exactly_once_no_loss_in_order(cluster, version):
    """Publisher on A; subscribers on B, C and A itself. QoS 2: each message
    exactly once; QoS 1 and 0: nothing lost or repeated; per-topic order
    kept over 2000 QoS 1 messages interleaved with the other levels."""
    # Room for the whole burst in each session: the default --max-queued
    # (1000) may legitimately drop messages a slow Python reader has not
    # taken yet, and this test is about the backplane, not that limit.
    extra = ("--max-queued", "20000")
    a, b, c = cluster(uid("na"), *extra), cluster(uid("nb"), *extra), cluster(uid("nc"), *extra)
    base = uid("q")
    topics = {q: "%s/q%d" % (base, q) for q in (0, 1, 2)}
    counts = {1: 2000, 2: 500, 0: 500}
    subs = {}
    for name, n in (("B", b), ("C", c), ("A", a)):
        sub = Client(n, version=version)
        for q in (0, 1, 2):
            assert sub.subscribe(topics[q], qos=q) == [q]
        subs[name] = sub
    pub = Client(a, version=version)
    infos = []
    for i in range(counts[1]):
        infos.append(pub.publish(topics[1], b"%d" % i, qos=1, wait=False))
        if i % 4 == 0:
            infos.append(pub.publish(topics[2], b"%d" % (i // 4), qos=2, wait=False))
            pub.publish(topics[0], b"%d" % (i // 4), qos=0, wait=False)
    total = sum(counts.values())
    deadline = time.time() + 180
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.time()))
        assert info.is_published(), "publish mid %d not acknowledged" % info.mid
    for name, sub in subs.items():
        got = sub.get_n(total, max(1, deadline - time.time()))
        by_topic = collections.defaultdict(list)
        for m in got:
            by_topic[m.topic].append((int(m.payload), m.qos))
        for q in (0, 1, 2):
            seq = [i for i, _ in by_topic[topics[q]]]
            assert {mq for _, mq in by_topic[topics[q]]} == {q}, (name, q)
            if q == 2:
                dup = {i: k for i, k in collections.Counter(seq).items() if k != 1}
                assert not dup, "QoS 2 on %s: delivered more than once: %s" % (name, dup)
            missing = sorted(set(range(counts[q])) - set(seq))
            assert not missing, "QoS %d on %s: %d lost, first %s" % (q, name, len(missing), missing[:10])
            assert seq == list(range(counts[q])), "QoS %d on %s: out of order or repeated" % (q, name)
    # Nothing more comes after the counted messages (no late duplicates).
    for sub in subs.values():
        sub.barrier(pub)
        sub.none(0.5)


def test_wildcards_and_dollar_topics_across_nodes(cluster):
    a, b = cluster(uid("na")), cluster(uid("nb"))
    base = uid("w")
    dollar = "$app/%s/x" % base  # accepted from clients: only wildcards keep them out
    filters = {"hash": "#", "plus": base + "/+/b", "mid": "+/a/#", "dollar": "$app/%s/#" % base,
               "dollar_plus": "$app/+/x"}
    subs = {}
    for name, flt in filters.items():
        subs[name] = Client(b)
        subs[name].subscribe(flt, qos=1)
    local_hash = Client(a)
    local_hash.subscribe("#", qos=1)
    pub = Client(a)
    published = [base + "/a/b", base + "/x/b", base + "/a/c/d", dollar]
    for t in published:
        pub.publish(t, t.encode(), qos=1)
    want = {
        "hash": {base + "/a/b", base + "/x/b", base + "/a/c/d"},
        "plus": {base + "/a/b", base + "/x/b"},
        "mid": {base + "/a/b", base + "/a/c/d"},
        "dollar": {dollar},
        "dollar_plus": {dollar},
    }
    for name, topics in want.items():
        got = [m.topic for m in subs[name].get_n(len(topics), WAIT)]
        assert sorted(got) == sorted(topics), (name, filters[name], got)
    assert sorted(m.topic for m in local_hash.get_n(3, WAIT)) == sorted(want["hash"])
    # The '$' message has been routed on B (its subscribers there have it);
    # a later marker reaches the '#' subscribers only after anything that
    # routing could have queued for them.
    marker = base + "/zz"
    pub.publish(marker, b"m", qos=1)
    assert subs["hash"].get(WAIT).topic == marker
    assert local_hash.get(WAIT).topic == marker
    for sub in list(subs.values()) + [local_hash]:
        sub.none(1.0)


def test_subscription_ids_and_user_properties_cross_nodes(cluster):
    a, b = cluster(uid("na")), cluster(uid("nb"))
    base = uid("sid")
    topic = base + "/b"
    sub = R.RawClient(b)
    assert sub.connect(uid("sidsub")).rc == 0
    for pid, (flt, qos, sid) in enumerate([(base + "/+", 0, 1), (base + "/#", 1, 2), (topic, 2, 3)], start=1):
        sub.send(R.subscribe(pid, [(flt, qos)], properties={R.P_SUBSCRIPTION_ID: sid}))
        assert sub.expect(R.SUBACK).codes == [qos]
    users = [("a", "1"), ("b", "2"), ("a", "3")]
    pub = Client(a)
    pub.publish(topic, b"one", qos=2, properties=props(UserProperty=users))
    pub.publish(base + "/c", b"two", qos=2, properties=props(UserProperty=[("only", "two")]))
    got = {}
    deadline = time.time() + WAIT
    while len(got) < 2:
        p = sub.recv(max(0.01, deadline - time.time()))
        if p.type == R.PUBREL:
            sub.send(R.pubcomp(p.pid))
            continue
        assert p.type == R.PUBLISH, p
        assert p.payload not in got, "second copy of %r" % p
        if p.qos == 1:
            sub.send(R.puback(p.pid))
        elif p.qos == 2:
            sub.send(R.pubrec(p.pid))
        got[p.payload] = p
    one, two = got[b"one"], got[b"two"]
    # One copy per message, carrying every matching subscription's identifier.
    assert one.qos == 2 and sorted(one.props.all(R.P_SUBSCRIPTION_ID)) == [1, 2, 3]
    assert two.qos == 1 and sorted(two.props.all(R.P_SUBSCRIPTION_ID)) == [1, 2]
    assert one.props.all(R.P_USER_PROPERTY) == users
    assert two.props.all(R.P_USER_PROPERTY) == [("only", "two")]
    # No further copies.
    try:
        p = sub.recv(1.0)
        while p.type == R.PUBREL:
            sub.send(R.pubcomp(p.pid))
            p = sub.recv(1.0)
        raise AssertionError("unexpected packet %r" % p)
    except TimeoutError:
        pass
    sub.close()


def test_no_local_holds_for_the_same_client_id_across_nodes(cluster, backends):
    """MQTT 5 §3.8.3.1: No Local is about the publisher's client id, on any
    node. X's session moves from B to A with its No Local subscription (one
    connection per client id in the cluster): X's own messages published
    through A never come back to it, another client's do, and another
    client's No Local subscription on B gets X's. A record from another
    node carrying X's client id (version 2) is not delivered to X either."""
    a, b = cluster(uid("na")), cluster(uid("nb"))
    topic = uid("nolocal")
    xid = uid("x")
    keep = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    x = Client(b, client_id=xid, clean=False, properties=keep)
    assert x.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True)) == [1]
    x.disconnect()
    z = Client(b)
    assert z.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True)) == [1]

    x = Client(a, client_id=xid, clean=False, properties=keep)
    assert x.session_present
    own = [b"own-%d" % i for i in range(5)]
    for p in own:
        x.publish(topic, p, qos=1)
    y = Client(a)
    y.publish(topic, b"from-y", qos=1)
    # Same topic, same partition: once Z has Y's message, B has routed X's.
    assert [m.payload for m in z.get_n(len(own) + 1, WAIT)] == own + [b"from-y"]
    m = x.get(WAIT)
    assert (m.topic, m.payload, m.qos) == (topic, b"from-y", 1)
    assert x.barrier() == []
    x.disconnect()
    y.disconnect()

    # Back on B; records as another node writes them, with X's id and another.
    x = Client(b, client_id=xid, clean=False, properties=keep)
    assert x.session_present
    part = kcat_partition_of(backends.bootstrap, cluster.topic, topic)
    kcat_produce(backends.bootstrap, cluster.topic, part, topic, record(topic, b"x-elsewhere", client_id=xid))
    kcat_produce(backends.bootstrap, cluster.topic, part, topic, record(topic, b"w-elsewhere", client_id="w"))
    assert [m.payload for m in z.get_n(2, WAIT)] == [b"x-elsewhere", b"w-elsewhere"]
    m = x.get(WAIT)
    assert (m.topic, m.payload, m.qos) == (topic, b"w-elsewhere", 1)
    assert x.barrier() == []
    x.disconnect()
    z.disconnect()


def test_newer_record_version_skipped_and_counted_and_traffic_flows_on(cluster, backends):
    a, b = cluster(uid("na")), cluster(uid("nb"))
    topic = uid("ver")
    sub = Client(b)
    sub.subscribe(topic, qos=1)
    pub = Client(a)
    pub.publish(topic, b"before", qos=1)
    assert sub.get(WAIT).payload == b"before"
    assert metric(b, "shoal_kafka_records_skipped_total") == 0
    consumed = metric(b, "shoal_kafka_consumed_total")
    assert consumed >= 1
    # Into the partition B just read `topic` from, so the record after it
    # proves B got past the unknown one.
    part = kcat_partition_of(backends.bootstrap, cluster.topic, topic)
    # Version 4: newer than this release writes (3) or reads.
    kcat_produce(backends.bootstrap, cluster.topic, part, topic, b"SH\x04" + b"\x00\xffnot a v3 record\n" * 4)
    for n in (b, a):
        wait_for(lambda: metric(n, "shoal_kafka_records_skipped_total") >= 1, "skipped records >= 1", 30)
    pub.publish(topic, b"after", qos=1)
    m = sub.get(WAIT)
    assert (m.topic, m.payload) == (topic, b"after")
    sub.none(0.5)
    assert metric(b, "shoal_kafka_records_skipped_total") == 1
    assert metric(b, "shoal_kafka_consumed_total") == consumed + 1
    assert "kafka_bad_record" not in b.log()
    # The documented version 1 format, written by hand, is delivered like a
    # record from another node.
    hand = R.props([(R.P_USER_PROPERTY, ("src", "kcat"))])
    body = hand[1:]  # the record holds the properties without their length prefix
    assert hand[0] == len(body)
    kcat_produce(backends.bootstrap, cluster.topic, part, topic, record(topic, b"by hand\n", props=body))
    m = sub.get(WAIT)
    assert (m.topic, m.payload, m.qos) == (topic, b"by hand\n", 1)
    assert m.properties.UserProperty == [("src", "kcat")]
    assert metric(b, "shoal_kafka_records_skipped_total") == 1


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


def redis_call(url, *args):
    """One command over a raw RESP socket (binary-safe both ways): the reply
    as bytes, int, None or a list of those."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline()
            kind, rest = line[:1], line[1:-2]
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2]
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            if kind == b":":
                return int(rest)
            assert kind == b"+", line
            return rest
        return read()


def retained_snapshot(url):
    """shoal:retained as {topic: record bytes}."""
    flat = redis_call(url, "HGETALL", "shoal:retained")
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def record_v2(topic, payload, expiry, origin="other-node", client_id=b""):
    """A version 2 record (with the client id field) as a node writes it."""
    t, o = topic.encode(), origin.encode()
    return (b"SH" + bytes([2, 1, 1, len(o)]) + o + struct.pack(">H", len(client_id)) + client_id
            + struct.pack(">QI", expiry, 0) + struct.pack(">H", len(t)) + t + payload)


def test_expired_retained_records_leave_the_redis_snapshot(cluster, backends):
    """Item 8: a retained message whose Message Expiry has passed is deleted
    from shoal:retained by the nodes' sweep (rk_sweep.c), judged by Redis's
    clock from the record's own expiry; records without expiry, with a
    future one, overwritten by a fresh value, or not understood stay."""
    base = uid("sweep")
    url = backends.redis_url
    sec, usec = (int(v) for v in redis_call(url, "TIME"))
    redis_now = sec * 1000 + usec // 1000
    # Written as other nodes (or an older release, version 1) would have.
    crafted = {
        base + "/v2-expired": (record_v2(base + "/v2-expired", b"a", redis_now - 1000), False),
        base + "/v2-expired-cid": (record_v2(base + "/v2-expired-cid", b"b", redis_now - 1, client_id=b"x" * 300),
                                   False),
        base + "/v1-expired": (record(base + "/v1-expired", b"c", retain=True, expiry=redis_now - 1000), False),
        base + "/v2-future": (record_v2(base + "/v2-future", b"d", redis_now + 3600_000), True),
        # Version 3: the same layout, the deadline on Redis's clock.
        base + "/v3-expired": (b"SH\x03" + record_v2(base + "/v3-expired", b"h", redis_now - 1000)[3:], False),
        base + "/v3-future": (b"SH\x03" + record_v2(base + "/v3-future", b"i", redis_now + 3600_000)[3:], True),
        base + "/v1-none": (record(base + "/v1-none", b"e", retain=True, expiry=0), True),
        base + "/garbage": (b"not a record at all, not even close", True),
        base + "/newer": (b"SH\x09" + record_v2(base + "/newer", b"f", redis_now - 1000)[3:], True),
        base + "/truncated": (record_v2(base + "/truncated", b"g", redis_now - 1000)[:20], True),
    }
    # An expired value overwritten by a fresh one before any sweep: the
    # sweep judges the value it reads, never an earlier one.
    redis_call(url, "HSET", "shoal:retained", base + "/raw-over", record_v2(base + "/raw-over", b"old", 1))
    for topic, (value, _) in crafted.items():
        redis_call(url, "HSET", "shoal:retained", topic, value)
    fresh = record_v2(base + "/raw-over", b"fresh", 0)
    redis_call(url, "HSET", "shoal:retained", base + "/raw-over", fresh)
    crafted[base + "/raw-over"] = (fresh, True)

    n1 = cluster(uid("n1"))
    pub = Client(n1)
    pub.publish(base + "/short", b"one second", qos=1, retain=True, properties=props(MessageExpiryInterval=1))
    pub.publish(base + "/none", b"forever", qos=1, retain=True)
    pub.publish(base + "/long", b"an hour", qos=1, retain=True, properties=props(MessageExpiryInterval=3600))
    pub.publish(base + "/over", b"short-lived", qos=1, retain=True, properties=props(MessageExpiryInterval=1))
    pub.publish(base + "/over", b"replaced", qos=1, retain=True)
    published = time.time()
    pub.disconnect()
    mine = [base + "/short", base + "/none", base + "/long"]
    wait_for(lambda: set(mine) <= set(retained_snapshot(url))
             and retained_snapshot(url).get(base + "/over", b"").endswith(b"replaced"),
             "the node's retained records in Redis")

    # Bound: the 1 s expiry, then at most one sweep interval (2 s) until a
    # run reaches it (a hash this small comes back whole from one HSCAN).
    gone = [base + "/short"] + [t for t, (_, keep) in crafted.items() if not keep]
    wait_for(lambda: not set(gone) & set(retained_snapshot(url)), "the expired records leaving shoal:retained")
    took = time.time() - published
    # One more full sweep after that cannot take the rest either.
    redis_call(url, "HSET", "shoal:retained", base + "/marker", record_v2(base + "/marker", b"m", 1))
    wait_for(lambda: base + "/marker" not in retained_snapshot(url), "a later sweep")
    snap = retained_snapshot(url)
    for topic, (value, keep) in crafted.items():
        if keep:
            assert snap.get(topic) == value, topic
    for topic, payload in ((base + "/none", b"forever"), (base + "/long", b"an hour"), (base + "/over", b"replaced")):
        assert snap[topic].endswith(payload), topic
    print("expired retained record left Redis %.1f s after its publish" % took)


@pytest.fixture(scope="module")
def redis_tls(tmp_path_factory):
    """A second Redis that speaks only TLS and wants client certificates (the
    default of Redis' tls-auth-clients), with its own CA."""
    d = str(tmp_path_factory.mktemp("redis-pki"))
    p = types.SimpleNamespace()
    p.ca = make_ca(d, "redisca")
    p.cert, p.key = make_cert(d, "redisca", "redis", "localhost", True)
    p.client_cert, p.client_key = make_cert(d, "redisca", "node", "shoal-node", False)
    p.other_ca = make_ca(d, "other")
    env = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(free_port()), "--tls-cert", p.cert,
                   "--tls-key", p.key, "--tls-ca", p.ca])
    p.url = env["REDIS_URL"]
    p.cli = ["redis-cli", "--tls", "--cacert", p.ca, "--cert", p.client_cert, "--key", p.client_key,
             "-p", p.url.rsplit(":", 1)[1]]
    yield p
    subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", env["REDIS_DIR"]], check=True,
                   capture_output=True, timeout=60)


def test_rediss_backplane_with_client_certificate(cluster, redis_tls):
    assert redis_tls.url.startswith("rediss://127.0.0.1:")
    tls = ("--redis", redis_tls.url, "--redis-tls-ca", redis_tls.ca, "--redis-tls-cert", redis_tls.client_cert,
           "--redis-tls-key", redis_tls.client_key)
    n1, n2 = cluster(uid("n1"), *tls), cluster(uid("n2"), *tls)
    for n in (n1, n2):
        wait_for(lambda: http_get(n, "/health/ready")[0] == 200, "ready over rediss://")
        assert metric(n, "shoal_backend_up", backend="redis") == 1
    topic = uid("tls")
    sub = Client(n2)
    sub.subscribe(topic, qos=1)
    pub = Client(n1)
    pub.publish(topic, b"over-tls", qos=1, retain=True)
    assert sub.get(WAIT).payload == b"over-tls"
    # The retained snapshot went to the TLS Redis...
    wait_for(lambda: topic.encode() in subprocess.run(redis_tls.cli + ["HKEYS", "shoal:retained"],
                                                      capture_output=True, timeout=30).stdout,
             "the retained topic in the TLS Redis")
    # ...and a node started now loads it through the same bridge.
    n3 = cluster(uid("n3"), *tls)
    late = Client(n3)
    late.subscribe(topic, qos=1)
    m = late.get(WAIT)
    assert (m.payload, m.retain) == (b"over-tls", True)
    for n in (n1, n2, n3):
        assert "event=redis_tls_error" not in n.log()


@pytest.mark.parametrize("case", ["wrong-ca", "no-client-cert"])
def test_rediss_refused_node_does_not_start(backends, redis_tls, case):
    args = ["--redis-tls-ca", redis_tls.other_ca, "--redis-tls-cert", redis_tls.client_cert, "--redis-tls-key",
            redis_tls.client_key] if case == "wrong-ca" else ["--redis-tls-ca", redis_tls.ca]
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1", "--node-id", uid("bad"),
                        "--redis", redis_tls.url, "--kafka", backends.bootstrap, "--kafka-replication", "1",
                        "--kafka-partitions", "1", "--kafka-topic-prefix", uid("t") + ".", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "READY" not in r.stdout, r.stdout
    # The reason is in the log, not just "unreachable".
    assert "event=redis_tls_error" in r.stderr, r.stderr[-3000:]
    if case == "wrong-ca":
        assert "certificate verify failed" in r.stderr, r.stderr[-3000:]
    assert "event=redis_unreachable" in r.stderr


def test_rediss_bad_certificate_file_exits(backends, redis_tls, tmp_path):
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1", "--redis", redis_tls.url,
                        "--kafka", backends.bootstrap, "--redis-tls-ca", str(tmp_path / "missing.pem")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "READY" not in r.stdout
    assert "event=redis_tls_error" in r.stderr and "missing.pem" in r.stderr, r.stderr[-3000:]


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


def api_nodes(node):
    """GET /api/v1/nodes with the admin token: (status, {node_id: record})."""
    req = urllib.request.Request(node.http_url + "/api/v1/nodes", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    try:
        with _opener.open(req, timeout=WAIT) as r:
            return r.status, {n["node_id"]: n for n in json.loads(r.read())["nodes"]}
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ctl_nodes(node, *flags):
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_URL", "SHOAL_ADMIN_TOKEN")}
    return subprocess.run([SHOAL_BIN, "ctl", "--url", node.http_url, "--token", ADMIN_TOKEN, *flags, "nodes"],
                          capture_output=True, text=True, timeout=WAIT, env=env)


def test_nodes_api_and_ctl_nodes_on_three_nodes(cluster):
    """GET /api/v1/nodes and `shoal ctl nodes` list every live node of the
    cluster with the address it advertises, from whichever node is asked
    (it used to call a NULL operation and kill the node)."""
    ids = [uid("api%d" % i) for i in (1, 2, 3)]
    addr = {n: "127.0.0.%d:%d" % (i + 1, 18830 + i) for i, n in enumerate(ids)}
    nodes = [cluster(n, "--admin-token", ADMIN_TOKEN, "--advertise", addr[n]) for n in ids]
    for me, node in zip(ids, nodes):
        def listed(node=node):
            status, got = api_nodes(node)
            assert status == 200, got
            return got if set(ids) <= set(got) else None
        got = wait_for(listed, "all three nodes in %s's /api/v1/nodes" % me)
        for n in ids:
            assert got[n]["address"] == addr[n], got
            assert got[n]["self"] is (n == me), got
        r = ctl_nodes(node)
        assert r.returncode == 0, r.stderr
        rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:] if line.strip()}
        assert r.stdout.split()[:3] == ["NODE", "ADDRESS", "SELF"], r.stdout
        for n in ids:
            assert rows[n] == [addr[n], "yes" if n == me else "no"], r.stdout
        r = ctl_nodes(node, "--json")
        assert r.returncode == 0 and set(ids) <= {n["node_id"] for n in json.loads(r.stdout)["nodes"]}, r.stdout
    # A node that stops leaves the list at once (it removes itself); the others stay.
    assert nodes[2].stop() == 0
    status, got = api_nodes(nodes[0])
    assert status == 200 and ids[2] not in got and {ids[0], ids[1]} <= set(got), got


def test_nodes_api_answers_503_while_redis_is_down(cluster, backends):
    n1 = cluster(uid("n503"), "--admin-token", ADMIN_TOKEN)
    backends.stop_redis()
    try:
        assert n1.wait_log("event=backplane_not_ready", WAIT), n1.log()[-2000:]
        status, body = api_nodes(n1)
        assert status == 503 and "backplane" in body, (status, body)
    finally:
        backends.start_redis()
    assert n1.wait_log("event=backplane_ready", WAIT)
    wait_for(lambda: api_nodes(n1)[0] == 200, "/api/v1/nodes answering again")


def test_second_node_with_the_same_node_id_refuses_to_start(cluster):
    """Two nodes with one --node-id would each skip the other's records as
    their own: the second one refuses to start, says why, exits non-zero,
    and the first keeps serving across the cluster."""
    dup, other = uid("dup"), uid("other")
    n1, n2 = cluster(dup), cluster(other)
    started = time.time()
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1",
                        *cluster.argv(dup)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "READY" not in r.stdout, (r.returncode, r.stdout, r.stderr[-3000:])
    assert "event=node_id_taken node_id=%s" % dup in r.stderr, r.stderr[-3000:]
    assert "another running node" in r.stderr, r.stderr[-3000:]
    # It waited for at most about one claim TTL (3 heartbeats), not forever.
    assert time.time() - started < 60
    # The first node with that id is unharmed: cross-node delivery both ways.
    for a, b in ((n1, n2), (n2, n1)):
        topic = uid("dup")
        sub = Client(b)
        sub.subscribe(topic, qos=1)
        Client(a).publish(topic, b"still-one", qos=1)
        assert sub.get(WAIT).payload == b"still-one"
        sub.disconnect()


def test_node_restarted_after_sigkill_with_its_id_starts_once_its_claim_expires(cluster):
    """A node killed with SIGKILL cannot release its id; started again with
    the same id it waits for the old claim to expire (a few heartbeats) and
    then serves, rather than being locked out."""
    name = uid("phoenix")
    first = Node(*cluster.argv(name))
    try:
        first.proc.kill()
        first.proc.wait(WAIT)
        again = cluster(name)
        assert "event=node_id_wait node_id=%s" % name in again.log(), again.log()[-3000:]
        peer = cluster(uid("peer"))
        topic = uid("phoenix")
        sub = Client(peer)
        sub.subscribe(topic, qos=1)
        Client(again).publish(topic, b"back", qos=1)
        assert sub.get(WAIT).payload == b"back"
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait()


def redis_cli(url, *args):
    port = url.rsplit(":", 1)[1].split("/")[0]
    return subprocess.run(["redis-cli", "-p", port, *args], check=True, capture_output=True, text=True,
                          timeout=WAIT).stdout.split()


def test_membership_expiry_is_redis_time_and_a_killed_node_leaves(cluster, backends):
    """A member's expiry is written by Redis from its own TIME (never a
    node's wall clock): the score is Redis's now + the claim TTL, and the
    claim key carries that TTL. Live nodes stay listed beat after beat; a
    node killed without stopping leaves within a few heartbeats."""
    a_id, b_id = uid("clock"), uid("doomed")
    a = cluster(a_id, "--admin-token", ADMIN_TOKEN)
    doomed = Node(*cluster.argv(b_id, "--admin-token", ADMIN_TOKEN))
    try:
        ttl = 3 * HEARTBEAT_MS
        sec, usec = (int(v) for v in redis_cli(backends.redis_url, "TIME"))
        redis_now = sec * 1000 + usec // 1000
        expiry = float(redis_cli(backends.redis_url, "ZSCORE", "shoal:members", a_id)[0])
        assert redis_now < expiry <= redis_now + ttl, (redis_now, expiry)
        pttl = int(redis_cli(backends.redis_url, "PTTL", "shoal:node:{%s}" % a_id)[0])
        assert 0 < pttl <= ttl, pttl
        deadline = time.time() + 10 * HEARTBEAT_MS / 1000
        while time.time() < deadline:
            for n in (a, doomed):
                status, got = api_nodes(n)
                assert status == 200 and {a_id, b_id} <= set(got), got
            time.sleep(HEARTBEAT_MS / 1000 / 3)
        doomed.proc.kill()
        doomed.proc.wait(WAIT)
        wait_for(lambda: b_id not in api_nodes(a)[1], "the killed node leaving the list",
                 timeout=20 * HEARTBEAT_MS / 1000)
        assert a_id in api_nodes(a)[1]
    finally:
        if doomed.proc.poll() is None:
            doomed.proc.kill()
            doomed.proc.wait()


def test_redis_outage_refuses_qos1_keeps_qos0_and_recovers(cluster, backends):
    """Until its lease's fence point (test_cluster_fence.py; 22.5 s with this
    30 s lease) a node without Redis serves QoS 0 locally and refuses QoS 1
    rather than acknowledge it without durability; it recovers by itself."""
    n1 = cluster(uid("n1"), "--cluster-lease", str(OUTAGE_LEASE_MS))
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
        # (Keyed by mid: paho may still report the QoS 0 publish above.)
        acks = {}
        pub.c.on_publish = lambda c, u, mid, rc, p: acks.__setitem__(mid, int(rc.value))
        info = pub.publish(topic, b"q1", qos=1, wait=False)
        info.wait_for_publish(WAIT)
        assert acks[info.mid] == 0x97, acks
    finally:
        ready_lines = n1.log().count("event=backplane_ready")
        backends.start_redis()
    deadline = time.time() + WAIT
    while n1.log().count("event=backplane_ready") == ready_lines:
        assert time.time() < deadline, "node did not recover after Redis came back"
        time.sleep(0.05)
    # The outage was shorter than the fence point: no client was closed.
    assert "event=lease_lost" not in n1.log(), n1.log()[-3000:]
    assert not sub.disconnected.is_set() and not pub.disconnected.is_set()
    info = pub.publish(topic, b"after", qos=1)
    assert acks[info.mid] == 0, acks
    msgs = [m.payload for m in sub.get_n(1, WAIT)]
    assert msgs == [b"after"]


def test_kafka_outage_and_recovery_without_node_restart(cluster, backends):
    """Kafka goes away and comes back on the same ports and data: readiness,
    the backend gauge and QoS 1 acks follow it, and the same node processes
    and connections carry cross-node traffic again."""
    lease = ("--cluster-lease", str(OUTAGE_LEASE_MS))
    n1, n2 = cluster(uid("n1"), *lease), cluster(uid("n2"), *lease)
    pids = (n1.proc.pid, n2.proc.pid)
    topic = uid("krec")
    sub = Client(n2, version=5)
    sub.subscribe(topic, qos=1)
    pub = Client(n1, version=5)
    acks = []
    pub.c.on_publish = lambda c, u, mid, rc, p: acks.append(int(rc.value))
    pub.publish(topic, b"before", qos=1)
    assert acks == [0]
    assert sub.get(WAIT).payload == b"before"
    for n in (n1, n2):
        assert http_get(n, "/health/ready")[0] == 200
        assert metric(n, "shoal_backend_up", backend="kafka") == 1
    backends.stop_kafka(keep=True)
    try:
        for n in (n1, n2):
            wait_for(lambda: http_get(n, "/health/ready")[0] == 503, "/health/ready 503 without Kafka", 60)
            assert metric(n, "shoal_backend_up", backend="kafka") == 0
            assert metric(n, "shoal_backend_up", backend="redis") == 1
        acks.clear()
        pub.publish(topic, b"refused", qos=1, wait=False).wait_for_publish(WAIT)
        assert acks == [0x97]
    finally:
        backends.start_kafka()
    for n in (n1, n2):
        wait_for(lambda: http_get(n, "/health/ready")[0] == 200, "/health/ready 200 after Kafka returned", 90)
        assert metric(n, "shoal_backend_up", backend="kafka") == 1
        assert "event=lease_lost" not in n.log(), n.log()[-3000:]  # Redis was there all along
    acks.clear()
    for i in range(20):
        pub.publish(topic, b"after-%d" % i, qos=1)
    assert acks == [0] * 20
    got = [m.payload for m in sub.get_n(20, WAIT)]
    assert got == [b"after-%d" % i for i in range(20)]
    sub.none(0.5)  # the refused message was never delivered anywhere
    # The same processes and connections throughout.
    assert (n1.proc.pid, n2.proc.pid) == pids and n1.proc.poll() is None and n2.proc.poll() is None
    assert not sub.disconnected.is_set() and not pub.disconnected.is_set()
    for n in (n1, n2):
        assert n.log().count("event=kafka_ready") == 1, n.log()[-3000:]
        assert "event=kafka_down" in n.log()


def test_kafka_outage_refuses_qos1_with_0x97_and_closes_v311(cluster, backends):
    """Runs last in this module: Kafka does not come back."""
    n1 = cluster(uid("n1"), "--cluster-lease", str(OUTAGE_LEASE_MS))
    topic = uid("kdown")
    v5 = Client(n1, version=5)
    v311 = Client(n1, version=4)
    sub = Client(n1)
    sub.subscribe(topic, qos=1)
    backends.stop_kafka()
    # Until librdkafka notices, a publish waits for its delivery report
    # (message timeout 20 s) and is then refused: never acknowledged.
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
    assert "event=lease_lost" not in n1.log(), n1.log()[-3000:]  # the 3.1.1 close was not a fence
