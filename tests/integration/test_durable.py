# SPDX-License-Identifier: Apache-2.0
"""QoS 1/2 on a cluster node while Kafka does not answer (its broker
process stopped with SIGSTOP, so a produce waits for its delivery report,
20 s, and is then refused): nothing is acknowledged or delivered before it
is durable (issue 15 items 3 and 4).

Each test waits the producer's 20 s message timeout with Kafka frozen, so
the module freezes Kafka once for all of them: every test is a scenario
(steps before, during and after the freeze, on its own nodes and topics)
that a module fixture runs, the frozen steps of all at the same time; each
test then reports its own scenario's outcome."""
import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest

import mqttraw as R
from pahoclient import uid
from conftest import Node
from test_cluster import WAIT, Backends


@pytest.fixture(scope="module")
def backends():
    b = Backends()
    yield b
    b.stop()


@contextmanager
def kafka_frozen(backends):
    """The Kafka broker this module started, stopped (SIGSTOP) and then
    continued: TCP stays up, nothing answers."""
    with open(os.path.join(backends.kafka_dir, "broker-1.pid")) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def nothing_within(r, seconds):
    """No packet arrives within `seconds` (the connection may stay open)."""
    try:
        p = r.recv(seconds)
    except TimeoutError:
        return True
    raise AssertionError("unexpected %r" % (p,))


def session(node, cid, version):
    r = R.RawClient(node, version=version, timeout=WAIT)
    pr = {R.P_SESSION_EXPIRY: 300} if version == 5 else None
    ack = r.connect(cid, clean=False, version=version, properties=pr)
    assert ack.rc == 0, ack
    return r


def ready(node):
    """A QoS 1 round trip through Kafka works (after a thaw it may take a while)."""
    deadline = time.time() + 90
    while True:
        r = R.RawClient(node, timeout=WAIT)
        r.connect(uid("probe"))
        r.send(R.publish(uid("probe"), b"p", qos=1, pid=1))
        try:
            if r.expect(R.PUBACK).rc < 0x80:
                r.close()
                return
        except (R.Closed, TimeoutError):
            pass
        r.close()
        assert time.time() < deadline, "node never acknowledged a QoS 1 publish again"
        time.sleep(1)


def qos2_resend(cluster, version):
    """The steps of test_qos2_resend_of_a_pending_id_waits_for_durability;
    each yield is the freeze starting, then ending."""
    n1 = cluster(uid("n1"))
    ready(n1)
    cid, topic = uid("q2p"), uid("q2t")
    first = session(n1, cid, version)
    yield
    # Kafka frozen (every scenario at once) until the next yield.
    first.send(R.publish(topic, b"m", qos=2, pid=5, version=version))
    assert nothing_within(first, 1)
    first.close()
    again = session(n1, cid, version)
    again.send(R.publish(topic, b"m", qos=2, pid=5, dup=True, version=version))
    # Not acknowledged before Kafka has answered (20 s message timeout).
    assert nothing_within(again, 3)
    if version == 5:
        rec = again.expect(R.PUBREC, timeout=WAIT)
        assert (rec.pid, rec.rc) == (5, 0x97), rec
    else:
        assert again.wait_closed(WAIT) == []
    yield
    ready(n1)
    last = session(n1, cid, version)
    last.send(R.publish(topic, b"m", qos=2, pid=5, dup=True, version=version))
    rec = last.expect(R.PUBREC, timeout=90)
    assert rec.pid == 5 and rec.rc < 0x80, rec
    last.send(R.pubrel(5, version=version))
    assert last.expect(R.PUBCOMP).pid == 5
    last.close()
    assert n1.proc.poll() is None


def local_subscriber(cluster, qos):
    """The steps of test_local_subscriber_never_sees_a_refused_message;
    each yield is the freeze starting, then ending."""
    n1 = cluster(uid("n1"))
    ready(n1)
    topic = uid("loc")
    sub = R.RawClient(n1, timeout=WAIT)
    sub.connect(uid("sub"))
    sub.send(R.subscribe(1, [(topic, 2)]))
    sub.expect(R.SUBACK)
    pub = R.RawClient(n1, timeout=WAIT)
    pub.connect(uid("pub"))
    yield
    # Kafka frozen (every scenario at once) until the next yield.
    pub.send(R.publish(topic, b"refused", qos=qos, pid=1))
    ack = pub.expect(R.PUBACK if qos == 1 else R.PUBREC, timeout=WAIT)
    assert (ack.pid, ack.rc) == (1, 0x97), ack
    pub.send(R.publish(topic, b"q0", qos=0))
    p = sub.expect(R.PUBLISH)
    assert p.payload == b"q0", p
    yield
    ready(n1)
    pub.send(R.publish(topic, b"stored", qos=qos, pid=2))
    ack = pub.expect(R.PUBACK if qos == 1 else R.PUBREC, timeout=90)
    assert (ack.pid, ack.rc) == (2, 0), ack
    p = sub.expect(R.PUBLISH, timeout=WAIT)
    assert p.payload == b"stored", p
    assert nothing_within(sub, 0.5)
    sub.close()
    pub.close()


SCENARIOS = {"qos2-resend-v%d" % v: (qos2_resend, v) for v in (4, 5)}
SCENARIOS.update({"local-subscriber-qos%d" % q: (local_subscriber, q) for q in (1, 2)})


class Outcomes:
    """What each scenario raised (None: passed)."""

    def __init__(self):
        self.errors = {}
        self.nodes = {}  # scenario -> its nodes

    def check(self, name):
        err = self.errors[name]
        if err is not None:
            raise err


def _advance(out, name, steps):
    """Run a scenario to its next yield; record what it raised, if anything."""
    if out.errors.get(name) is not None:
        return
    try:
        next(steps)
    except StopIteration:
        pass
    except BaseException as e:  # reported by the scenario's own test
        out.errors[name] = e


def _together(out, names, steps):
    threads = [threading.Thread(target=_advance, args=(out, n, steps[n])) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(scope="module")
def outcomes(backends):
    """Run every scenario: the steps before the freeze one after the other
    (they start nodes), those during one freeze of Kafka together, those
    after it together; then stop the nodes (a clean exit is part of each
    scenario's outcome)."""
    out = Outcomes()
    try:
        _run(out, backends)
    finally:
        for nodes in out.nodes.values():
            for n in nodes:
                if n.proc.poll() is None:
                    n.proc.terminate()
        for name, nodes in out.nodes.items():
            for n in nodes:
                rc = n.wait_stopped()
                # A crash or an ASan report fails the scenario that used the node.
                if rc != 0 and out.errors[name] is None:
                    out.errors[name] = AssertionError("shoal exited with %s\n%s" % (rc, n.log()[-4000:]))
    return out


def _run(out, backends):
    steps = {}
    for name, (scenario, arg) in SCENARIOS.items():
        prefix = uid("t") + "."
        out.errors[name] = None
        out.nodes[name] = []

        def make(node_name, *extra, _nodes=out.nodes[name], _prefix=prefix):
            n = Node("--workers", "2", "--node-id", node_name, "--redis", backends.redis_url, "--kafka",
                     backends.bootstrap, "--kafka-replication", "1", "--kafka-partitions", "4",
                     "--kafka-topic-prefix", _prefix, "--cluster-heartbeat", "300", *extra)
            _nodes.append(n)
            return n
        steps[name] = scenario(make, arg)
        _advance(out, name, steps[name])
    with kafka_frozen(backends):
        _together(out, list(steps), steps)
    _together(out, list(steps), steps)


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_resend_of_a_pending_id_waits_for_durability(outcomes, version):
    """PUBLISH QoS 2 while Kafka hangs, the connection drops, the client
    comes back to its session and resends with DUP: no PUBREC until the
    delivery report. The report fails: the id is cleared through the session
    and the connection that now holds it is told (v5 PUBREC 0x97, 3.1.1
    close); the next resend is a new message, stored and acknowledged."""
    outcomes.check("qos2-resend-v%d" % version)


@pytest.mark.parametrize("qos", [1, 2])
def test_local_subscriber_never_sees_a_refused_message(outcomes, qos):
    """QoS 1/2 is routed to local subscribers only once Kafka has stored it:
    a message its publisher is told was refused reached nobody. QoS 0 stays
    immediate."""
    outcomes.check("local-subscriber-qos%d" % qos)
