# SPDX-License-Identifier: Apache-2.0
"""Drain on cluster nodes (redis_kafka, real Redis and Kafka; issue 19): a
QoS 1 publish still waiting for Kafka when SIGTERM comes is acknowledged
before the client is disconnected; a persistent session disconnected by a
drain resumes on another node at once; and a rolling restart of three nodes
loses no acknowledged QoS 1 message."""
import signal
import threading
import time

import pytest

import mqttraw as R
from pahoclient import uid
from test_cluster import WAIT, backends, cluster, metric, wait_for  # noqa: F401 (fixtures)
from test_cluster_sessions import connect, persistent, publish_qos1, subscribe


def test_publish_waiting_for_kafka_is_acked_before_the_disconnect(cluster):
    """--kafka-linger-ms 1000 holds the produce about a second. Before the
    drain, SIGTERM closed the publisher with 0x8B and no PUBACK."""
    n1 = cluster(uid("n1"), "--kafka-linger-ms", "1000")
    n2 = cluster(uid("n2"))
    topic = uid("inflight")
    sub, ack = connect(n2, uid("sub"))
    subscribe(sub, topic, qos=1)
    pub, ack = connect(n1, uid("pub"))
    assert ack.rc == 0
    pub.send(R.publish(topic, b"in flight", qos=1, pid=9))
    wait_for(lambda: metric(n1, "shoal_messages_in_by_qos_total", qos="1") == 1, "node 1 to take the publish")
    n1.proc.send_signal(signal.SIGTERM)
    seen = pub.wait_closed(WAIT)
    assert [(p.type, getattr(p, "pid", None)) for p in seen] == [(R.PUBACK, 9), (R.DISCONNECT, None)], seen
    assert seen[0].rc in (0, 0x10) and seen[1].rc == 0x8B, seen
    p = sub.expect(R.PUBLISH, timeout=WAIT)
    assert (p.topic, p.payload) == (topic, b"in flight")
    assert n1.proc.wait(timeout=WAIT) == 0


@pytest.mark.parametrize("version", [5, 4])
def test_drained_session_resumes_on_another_node(cluster, version):
    n1, n2 = cluster(uid("n1")), cluster(uid("n2"))
    cid, topic = uid("mover"), uid("mv")
    r, ack = connect(n1, cid, **persistent(version))
    assert ack.rc == 0 and not ack.session_present
    subscribe(r, topic, qos=1, version=version)
    n1.proc.send_signal(signal.SIGTERM)
    seen = r.wait_closed(WAIT)
    assert [(p.type, p.rc) for p in seen] == ([(R.DISCONNECT, 0x8B)] if version == 5 else []), seen
    # Reconnect as soon as the drain let go, while node 1 may still be up:
    # the session (stored when it went offline) is there, with its
    # subscription, without waiting for node 1's membership to expire.
    r2, ack = connect(n2, cid, **persistent(version))
    assert ack.rc == 0 and ack.session_present, ack
    publish_qos1(n2, topic, b"after drain", version=version)
    p = r2.expect(R.PUBLISH, timeout=WAIT)
    assert (p.topic, p.payload) == (topic, b"after drain")
    assert n1.proc.wait(timeout=WAIT) == 0


class Balancer:
    """What the load balancer does for these clients: the next node that
    accepts a connection, in turn."""

    def __init__(self, nodes):
        self.nodes, self.i = nodes, 0
        self.lock = threading.Lock()

    def connect(self, cid, **kw):
        deadline = time.time() + WAIT
        while True:
            with self.lock:
                n = self.nodes[self.i % len(self.nodes)]
                self.i += 1
            try:
                r, ack = connect(n, cid, timeout=5, **kw)
                if ack.rc == 0:
                    return r, ack
                r.close()
            except (OSError, R.Closed, TimeoutError):
                pass
            assert time.time() < deadline, "no node took " + cid
            time.sleep(0.05)


def test_rolling_restart_loses_no_acknowledged_message(cluster):
    """Each node in turn: SIGTERM (drain), exit 0, started again with its
    node id until READY, while a publisher sends QoS 1 through the
    balancer and a persistent QoS 1 subscriber follows its drains."""
    names = [uid("n%d" % i) for i in (1, 2, 3)]
    nodes = [cluster(name) for name in names]
    lb = Balancer(nodes)
    topic = uid("roll")
    sub_id = uid("rsub")
    got, acked = set(), set()
    stop_pub, stop_sub, subscribed = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def subscriber():
        while not stop_sub.is_set():
            r, ack = lb.connect(sub_id, **persistent(5))
            if not subscribed.is_set():
                subscribe(r, topic, qos=1)
                subscribed.set()
            else:
                assert ack.session_present, ack
            try:
                while not stop_sub.is_set():
                    try:
                        p = r.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    if p.type == R.PUBLISH:
                        got.add(p.payload)
                        r.send(R.puback(p.pid))
                    elif p.type == R.DISCONNECT:
                        break
            except (R.Closed, OSError):
                pass
            finally:
                r.close()

    def publisher():
        i = 0
        while not stop_pub.is_set():
            r, _ = lb.connect(uid("rpub"))
            try:
                while not stop_pub.is_set():
                    payload = b"m%d" % i
                    r.send(R.publish(topic, payload, qos=1, pid=i % 60000 + 1))
                    i += 1
                    p = r.expect(R.PUBACK, timeout=WAIT)
                    if p.rc < 0x80:
                        acked.add(payload)
                    time.sleep(0.02)
            except (R.Closed, OSError, TimeoutError, AssertionError):
                pass  # not acknowledged: may be lost, and is not counted
            finally:
                r.close()

    def run(fn):
        def wrap():
            try:
                fn()
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
        t = threading.Thread(target=wrap, daemon=True)
        t.start()
        return t

    ts = run(subscriber)
    assert subscribed.wait(WAIT)
    tp = run(publisher)
    wait_for(lambda: len(got) >= 20, "messages flowing")
    for k in range(3):
        nodes[k].proc.send_signal(signal.SIGTERM)
        assert nodes[k].proc.wait(timeout=WAIT + 30) == 0
        nodes[k] = cluster(names[k])  # the same node id again, READY
        lb.nodes = list(nodes)
        n_before = len(acked)
        wait_for(lambda: len(acked) >= n_before + 20, "publishing after node %d restarted" % (k + 1))
    stop_pub.set()
    tp.join(WAIT)
    deadline = time.time() + WAIT
    while time.time() < deadline and not acked <= got:
        time.sleep(0.1)
    stop_sub.set()
    ts.join(WAIT)
    assert not errors, errors
    lost = sorted(acked - got, key=lambda b: int(b[1:]))
    assert not lost, "%d of %d acknowledged messages lost: %r" % (len(lost), len(acked), lost[:20])
