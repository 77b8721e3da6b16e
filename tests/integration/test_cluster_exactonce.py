# SPDX-License-Identifier: Apache-2.0
"""QoS 2 exactly once (MQTT 5 §4.3.3) across a session move to a node whose
Kafka consumer is behind the previous owner's: what the client completed
(PUBCOMP) or acknowledged (PUBACK) on node A is not delivered again by node
B when B's live stream reaches it (docs/architecture.md, "Offline queues
and positions": the stored marks are the session's floor).

Node B reaches Kafka through tcpproxy.py (a listener of its own, advertised
at the proxy's port, so every connection of B's goes through it); freezing
the proxy (SIGSTOP) holds B's consumer back deterministically while the
other nodes read on. Redis is direct: no lease or fence is involved."""
import os
import subprocess
import time

import pytest

import mqttraw as R
from pahoclient import uid
from tcpproxy import Proxy
from test_cluster import WAIT, free_port, run_env
from test_cluster_positions import publish_many
from test_cluster_sessions import connect, persistent, subscribe

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
# Generous for ASan on a loaded 2-core machine.
SLOW = 120


class Backends:
    """Redis and a Kafka with a second listener, PROXIED, whose advertised
    address is tcpproxy.py's port: a node bootstrapped there talks to Kafka
    only through the proxy."""

    def __init__(self, tmp):
        plain, cport, inner, outer = free_port(), free_port(), free_port(), free_port()
        props = os.path.join(tmp, "proxied.properties")
        with open(props, "w") as f:
            f.write("\n".join([
                "listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d,PROXIED://127.0.0.1:%d"
                % (plain, cport, inner),
                "advertised.listeners=PLAINTEXT://127.0.0.1:%d,PROXIED://127.0.0.1:%d" % (plain, outer),
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:PLAINTEXT",
                ""]))
        self.redis = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(free_port())])
        self.kafka = self.proxy = None
        try:
            self.kafka = run_env([os.path.join(ROOT, "deploy/kafka/start"), "--port", str(plain),
                                  "--controller-port", str(cport), "--server-config", props])
            self.proxy = Proxy(inner, outer)
        except BaseException:
            self.stop()
            raise
        self.redis_url = self.redis["REDIS_URL"]
        self.bootstrap = self.kafka["KAFKA_BOOTSTRAP"]
        self.proxied = "127.0.0.1:%d" % outer

    def cut(self):
        """Nothing crosses the proxy meanwhile (its connections stay open)."""
        return self.proxy.cut()

    def stop(self):
        if self.proxy:
            self.proxy.stop()
            self.proxy = None
        if self.kafka:
            subprocess.run([os.path.join(ROOT, "deploy/kafka/stop"), "--dir", self.kafka["KAFKA_DIR"]], check=True,
                           capture_output=True, timeout=120)
            self.kafka = None
        if self.redis:
            subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", self.redis["REDIS_DIR"]], check=True,
                           capture_output=True, timeout=60)
            self.redis = None


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    b = Backends(str(tmp_path_factory.mktemp("kafka-proxied")))
    yield b
    b.stop()


@pytest.fixture
def nodes(backends, node_factory):
    """make(name, proxied=False): a cluster node; proxied ones reach Kafka through the proxy."""
    prefix = uid("x") + "."

    def make(name, proxied=False):
        return node_factory("--workers", "2", "--node-id", name, "--redis", backends.redis_url, "--kafka",
                            backends.proxied if proxied else backends.bootstrap, "--kafka-replication", "1",
                            "--kafka-partitions", "4", "--kafka-topic-prefix", prefix, "--cluster-heartbeat", "300")
    return make


class Taker:
    """Takes PUBLISH packets and completes them (QoS 1 PUBACK; QoS 2 PUBREC,
    then PUBCOMP on PUBREL): `completed` are the QoS 2 payloads whose
    PUBCOMP was sent, `acked` the QoS 1 ones, `released` the packet ids of
    PUBREL. Payloads in `withhold` are left unfinished: no PUBACK, and no
    PUBCOMP after PUBREC (the server has the PUBREC)."""

    def __init__(self, r, withhold=()):
        self.r, self.withhold = r, set(withhold)
        self.packets, self.completed, self.acked, self.released = [], [], [], []
        self.pending = {}  # QoS 2 packet id -> payload, until PUBREL

    def step(self):
        try:
            pkt = self.r.recv(timeout=1)
        except TimeoutError:
            return
        if pkt.type == R.PUBLISH:
            self.packets.append(pkt)
            if pkt.qos == 1 and pkt.payload not in self.withhold:
                self.r.send(R.puback(pkt.pid))
                self.acked.append(pkt.payload)
            elif pkt.qos == 2:
                self.pending[pkt.pid] = pkt.payload
                self.r.send(R.pubrec(pkt.pid))
        elif pkt.type == R.PUBREL:
            self.released.append(pkt.pid)
            payload = self.pending.get(pkt.pid)
            if payload not in self.withhold:
                self.r.send(R.pubcomp(pkt.pid))
                if payload is not None:
                    self.completed.append(self.pending.pop(pkt.pid))

    def until(self, cond, what, timeout=SLOW):
        deadline = time.time() + timeout
        while not cond():
            assert time.time() < deadline, "timed out waiting for %s: %d packets, %d completed, %d acked" % (
                what, len(self.packets), len(self.completed), len(self.acked))
            self.step()

    def payloads(self, qos):
        return [p.payload for p in self.packets if p.qos == qos]

    def pid_of(self, payload):
        return [p.pid for p in self.packets if p.payload == payload]


def test_what_was_completed_on_a_node_ahead_is_not_delivered_again_by_a_node_behind(backends, nodes):
    """Before the fix, B's replay read only up to where B's consumer stood
    (before these messages), and B's live stream then delivered all of them
    again as new messages: the 2 x 20 completed QoS 2 ones a second time
    (new packet ids, no DUP) and the 20 acknowledged QoS 1 ones. Two more
    are left in flight on A: a QoS 2 one past PUBREC (B sends PUBREL for
    it, never the message) and an unacknowledged QoS 1 one (B resends it
    with DUP and its packet id, once)."""
    a, c = nodes(uid("a")), nodes(uid("c"))
    b = nodes(uid("b"), proxied=True)
    cid, base = uid("eo"), uid("eo")
    r, ack = connect(a, cid, **persistent(5))
    assert ack.rc == 0, ack
    subscribe(r, base + "/#", 2)
    on_a = Taker(r, withhold=(b"w000000", b"v000000"))
    n = 20
    from_c = [b"c%06d" % i for i in range(n)]  # another node's records, for A and B
    from_a = [b"a%06d" % i for i in range(n)]  # A's own records
    ones = [b"q%06d" % i for i in range(n)]
    with backends.cut():
        # B's consumer reads none of these until the cut ends.
        publish_many(c, base + "/two", n, 2, prefix=b"c")
        publish_many(a, base + "/two", n, 2, prefix=b"a")
        publish_many(c, base + "/one", n, 1, prefix=b"q")
        publish_many(c, base + "/two", 1, 2, prefix=b"w")
        publish_many(c, base + "/one", 1, 1, prefix=b"v")
        on_a.until(lambda: len(on_a.completed) == 2 * n and len(on_a.acked) == n and on_a.pid_of(b"v000000")
                   and on_a.pid_of(b"w000000") and on_a.pid_of(b"w000000")[0] in on_a.released,
                   "everything on A")
        assert sorted(on_a.completed) == sorted(from_c + from_a)
        assert on_a.acked == ones
        r.send(R.disconnect())
        assert r.is_closed(WAIT)
        r2, ack = connect(b, cid, **persistent(5), timeout=SLOW)
        assert ack.rc == 0 and ack.session_present, ack
        # The replay's end is fixed when it starts, while B's consumer is still behind.
        assert b.wait_log("event=replay_start", timeout=SLOW), b.log()[-3000:]
    on_b = Taker(r2)
    # Published after the cut: once B delivered these, its live stream has
    # passed everything above (one topic is one partition, in order).
    publish_many(c, base + "/two", 1, 2, prefix=b"z")
    publish_many(c, base + "/one", 1, 1, prefix=b"y")
    w_pid = on_a.pid_of(b"w000000")[0]
    on_b.until(lambda: b"z000000" in on_b.completed and b"y000000" in on_b.acked and w_pid in on_b.released
               and b"v000000" in on_b.acked, "the markers and the in-flight ones on B")
    again = [p for p in on_b.packets if p.payload in set(from_c + from_a + ones)]
    assert not again, "delivered again on B: %d, e.g. %r" % (len(again), again[:3])
    # In flight on A: PUBREL for the QoS 2 one (§4.4), the QoS 1 one again with DUP and its id.
    assert on_b.payloads(2) == [b"z000000"]
    assert on_b.payloads(1) == [b"v000000", b"y000000"]
    v = on_b.packets[[p.payload for p in on_b.packets].index(b"v000000")]
    assert v.dup and v.pid == on_a.pid_of(b"v000000")[0], v
    r2.send(R.disconnect())
    r2.close()
