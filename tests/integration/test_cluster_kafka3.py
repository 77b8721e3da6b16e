# SPDX-License-Identifier: Apache-2.0
"""A real three-broker KRaft Kafka (RF 3, min.insync.replicas 2) under the
cluster: one broker killed costs nothing (every QoS 1 publish acknowledged
and delivered, the nodes stay ready); two killed and the topic cannot take
an acks=all write, so QoS 1 publishes are refused (v5 PUBACK 0x97, never a
false 0x00) and the nodes report not ready until a broker returns.

One Redis and one three-broker Kafka for the module (~13 s and ~410 MB per
broker to start): brokers are SIGKILLed and restarted with their own
command line, and each test leaves all three in sync for the next."""
import os
import signal
import subprocess
import threading
import time

import pytest

from pahoclient import Client, uid
from test_cluster import ROOT, WAIT, free_port, http_get, metric, run_env, wait_for

BROKERS = 3

# How long after two brokers die the publishing node must be not ready:
# a record waits at most 20 s for Kafka (the producer's message timeout),
# 3 failed deliveries in a row mark Kafka down (the survivor's metadata
# still looks writable: no controller quorum to change it), and the probe
# looks once a second (2 s timeout). 20 s + 3 s, doubled for a noisy machine.
NOT_READY_BOUND = 50

# A killed broker is fenced (broker.session.timeout.ms, 9 s) and rejoins
# the ISR after a restart in ~8 s; generous for a loaded machine.
REJOIN = 120


class Kafka3:
    """Redis and a three-broker Kafka started by deploy/*; brokers can be
    SIGKILLed and restarted exactly as deploy/kafka/start ran them."""

    def __init__(self):
        self.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(free_port())])
        self.redis_url = self.redis["REDIS_URL"]
        # Node i uses port P+i-1 and C+i-1: leave room above the free ports.
        port, cport = free_port(), free_port()
        self.kafka = run_env([os.path.join(ROOT, "deploy/kafka/start"), "--brokers", str(BROKERS),
                              "--port", str(port), "--controller-port", str(cport)])
        self.dir = self.kafka["KAFKA_DIR"]
        self.bootstrap = self.kafka["KAFKA_BOOTSTRAP"]
        self.argv = {}  # broker -> (command line, environment) of a killed broker
        self.children = []

    def pid(self, i):
        with open(os.path.join(self.dir, "broker-%d.pid" % i)) as f:
            return int(f.read())

    def kill(self, i):
        """SIGKILL broker i (a crash: no controlled shutdown, no socket
        closed cleanly by Kafka)."""
        pid = self.pid(i)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        assert any("broker-%d/server.properties" % i in a for a in argv), argv
        self.argv[i] = argv
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists("/proc/%d/cmdline" % pid)
                 or open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] in ("Z", "X"),
                 "broker %d (pid %d) gone" % (i, pid))

    def restart(self, i):
        """Start killed broker i again (same config, data and ports); its
        PID goes where deploy/kafka/stop looks."""
        bd = os.path.join(self.dir, "broker-%d" % i)
        with open(os.path.join(bd, "stdout.log"), "ab") as out:
            p = subprocess.Popen(self.argv.pop(i), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.children.append(p)
        with open(os.path.join(self.dir, "broker-%d.pid" % i), "w") as f:
            f.write("%d\n" % p.pid)

    def partitions(self, topic):
        """[(leader, {isr})] per partition, as a live broker sees them."""
        out = subprocess.run(["kcat", "-b", self.bootstrap, "-L", "-t", topic, "-m", "5"], capture_output=True,
                             text=True, timeout=60).stdout
        parts = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("partition ") and "isrs:" in line:
                leader = int(line.split("leader ", 1)[1].split(",", 1)[0])
                isr = {int(x) for x in line.split("isrs:", 1)[1].strip().split(",") if x.strip()}
                parts.append((leader, isr))
        return parts

    def in_sync(self, topic):
        """Every partition led and fully replicated by all three brokers."""
        parts = self.partitions(topic)
        return bool(parts) and all(l > 0 and isr == set(range(1, BROKERS + 1)) for l, isr in parts)

    def heal(self, topic):
        """Restart every killed broker and wait until all are in sync again."""
        for i in list(self.argv):
            self.restart(i)
        wait_for(lambda: self.in_sync(topic), "all %d brokers back in sync on %s" % (BROKERS, topic), REJOIN)

    def stop(self):
        for i in list(self.argv):  # killed and never restarted: no pid to stop
            os.remove(os.path.join(self.dir, "broker-%d.pid" % i))
        subprocess.run([os.path.join(ROOT, "deploy/kafka/stop"), "--dir", self.dir], check=True,
                       capture_output=True, timeout=120)
        for p in self.children:
            p.wait(timeout=30)
        subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", self.redis["REDIS_DIR"]], check=True,
                       capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def kafka3():
    k = Kafka3()
    yield k
    k.stop()


@pytest.fixture
def cluster(kafka3, node_factory):
    """Nodes on the three brokers; the topic (RF 3, min.insync.replicas 2,
    made by the first node) is new for each test."""
    prefix = uid("k3") + "."

    def make(name):
        return node_factory("--workers", "2", "--node-id", name, "--redis", kafka3.redis_url, "--kafka",
                            kafka3.bootstrap, "--kafka-replication", "3", "--kafka-partitions", "3",
                            "--kafka-topic-prefix", prefix, "--cluster-heartbeat", "300")
    make.topic = prefix + "messages"
    yield make
    kafka3.heal(make.topic)


def kafka_log(node):
    """The node's Kafka and readiness lines, for failure messages."""
    return "".join(l for l in node.log_lines if "event=kafka" in l or "event=backplane" in l)[-6000:]


def ready(node):
    return http_get(node, "/health/ready")[0]


class Watch:
    """Samples /health/ready of some nodes every 0.2 s on a thread."""

    def __init__(self, *nodes):
        self.nodes = nodes
        self.samples = []  # (time, node index, status)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            for i, n in enumerate(self.nodes):
                self.samples.append((time.time(), i, ready(n)))
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._t.join()
        return self.samples


def publisher(node):
    """A v5 client whose QoS 1 reason codes land in .acks by message id."""
    pub = Client(node, version=5)
    pub.acks = {}
    pub.c.on_publish = lambda c, u, mid, rc, p: pub.acks.__setitem__(mid, int(rc.value))
    return pub


def wait_acked(pub, infos, timeout=WAIT):
    for info in infos:
        info.wait_for_publish(timeout)
        assert info.mid in pub.acks, "publish %d not answered" % info.mid
    return [pub.acks[i.mid] for i in infos]


def test_one_broker_killed_loses_nothing_and_stays_ready(cluster, kafka3):
    """SIGKILL one of three brokers while QoS 1 flows across nodes: the
    partitions it led move (after it is fenced) and its replicas leave the
    ISR, which keeps min.insync.replicas 2: every publish is acknowledged
    0x00 and delivered once, in order, and both nodes stay ready."""
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    topic = uid("one")
    sub = Client(n2, version=5)
    sub.subscribe(topic, qos=1)
    pub = publisher(n1)
    assert kafka3.in_sync(cluster.topic)
    watch = Watch(n1, n2)
    infos = []

    def send(k):
        for _ in range(k):
            infos.append(pub.publish(topic, b"m%d" % len(infos), qos=1, wait=False))
            time.sleep(0.02)

    send(50)
    kafka3.kill(3)
    # Publish through the failover: until no partition lists broker 3 as
    # leader or in sync any more, then some more.
    deadline = time.time() + REJOIN
    while not all(l != 3 and 3 not in isr for l, isr in kafka3.partitions(cluster.topic)):
        assert time.time() < deadline, kafka3.partitions(cluster.topic)
        send(25)
    send(50)
    codes = wait_acked(pub, infos, 60)
    samples = watch.stop()
    assert codes == [0] * len(infos), ([(i, c) for i, c in enumerate(codes) if c], kafka_log(n1))
    got = [m.payload for m in sub.get_n(len(infos), WAIT)]
    assert got == [b"m%d" % i for i in range(len(infos))]
    sub.none(0.5)
    assert [s for s in samples if s[2] != 200] == [], "not ready with one broker down"
    for n in (n1, n2):
        assert "event=kafka_down" not in n.log() and "event=backplane_not_ready" not in n.log(), n.log()[-3000:]


def test_two_brokers_killed_refuse_qos1_not_ready_and_recover(cluster, kafka3):
    """SIGKILL two of three brokers: no acks=all write can succeed (and the
    controller quorum is gone, so the survivor's metadata still shows the
    dead brokers as leaders and in sync). Every QoS 1 publish is refused
    with 0x97, never acknowledged; the node is not ready within
    NOT_READY_BOUND and stays so; once one broker is back it is ready
    again, publishes are acknowledged and delivered, and nothing refused
    while not ready was ever delivered."""
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    topic = uid("two")
    sub = Client(n2, version=5)
    sub.subscribe(topic, qos=1)
    pub = publisher(n1)
    info = pub.publish(topic, b"before", qos=1)
    assert pub.acks[info.mid] == 0
    assert sub.get(WAIT).payload == b"before"
    assert ready(n1) == 200 and ready(n2) == 200
    kafka3.kill(2)
    kafka3.kill(3)
    killed = time.time()
    # Publish (twice a second) until the node gives up.
    refused = []
    while ready(n1) == 200:
        assert time.time() < killed + NOT_READY_BOUND, "still ready %d s after two brokers died:\n%s" % (
            NOT_READY_BOUND, kafka_log(n1))
        refused.append(pub.publish(topic, b"r%d" % len(refused), qos=1, wait=False))
        time.sleep(0.5)
    took = time.time() - killed
    assert "event=kafka_down" in n1.log(), n1.log()[-3000:]
    # Not ready: refused at once, not after the 20 s message timeout.
    info = pub.publish(topic, b"refused", qos=1, wait=False)
    info.wait_for_publish(5)
    assert pub.acks.get(info.mid) == 0x97, pub.acks
    codes = wait_acked(pub, refused, 60)
    assert codes and set(codes) == {0x97}, codes
    assert metric(n1, "shoal_backend_up", backend="kafka") == 0, kafka_log(n1)
    # It stays not ready while the topic cannot be written (no flapping
    # back to ready on stale metadata), and so does the idle node.
    watch = Watch(n1, n2)
    wait_for(lambda: ready(n2) == 503, "idle node /health/ready 503", NOT_READY_BOUND)
    more = [pub.publish(topic, b"x%d" % i, qos=1, wait=False) for i in range(5)]
    assert set(wait_acked(pub, more, 30)) == {0x97}
    wait_for(lambda: len({t for t, i, s in watch.samples if i == 0}) >= 25, "5 s of readiness samples")
    restarted = time.time()
    kafka3.restart(2)
    wait_for(lambda: ready(n1) == 200 and ready(n2) == 200, "ready again with two brokers", REJOIN)
    samples = watch.stop()
    for node in (0, 1):
        mine = [(t, s) for t, i, s in samples if i == node and t < restarted]
        down = next(t for t, s in mine if s == 503)
        flaps = [round(t - killed, 1) for t, s in mine if t > down and s == 200]
        assert flaps == [], "node %d ready while two brokers were down, at %s s" % (node + 1, flaps)
    after = [pub.publish(topic, b"a%d" % i, qos=1, wait=False) for i in range(20)]
    assert wait_acked(pub, after, 60) == [0] * 20
    # A write that timed out in flight may still sit in the surviving
    # leader's log and be committed once a broker is back: those (r*) may
    # arrive, refused or not. What was refused before it reached Kafka
    # (while not ready) never does.
    got, deadline = [], time.time() + WAIT
    while [p for p in got if p.startswith(b"a")] != [b"a%d" % i for i in range(20)]:
        assert time.time() < deadline and len(got) < 200, got
        got.append(sub.get(WAIT).payload)
    sub.none(1)
    assert all(p.startswith((b"a", b"r")) for p in got), got
    print("not ready %.1f s after two brokers were killed" % took)
