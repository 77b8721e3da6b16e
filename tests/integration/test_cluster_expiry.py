# SPDX-License-Identifier: Apache-2.0
"""Message expiry across nodes (issue 18, item "message expiry across
nodes"): the Message Expiry Interval counts from when the publishing node
received the message (MQTT 5 §3.3.2.3.3), whatever the clock of the node
that delivers it. A persistent subscriber, offline, resumes on node 2 a
message published on node 1: after the interval it is not delivered; before,
it is, with the interval decremented by the time it waited. With node 2's
wall clock an hour behind (libfaketime), today's nodes compared node 1's
wall-clock deadline with node 2's clock: the expired message was delivered.
Then node 2 estimated node 1's clock offset from the record's own transit
through Kafka, so a record that reached node 2 late came with its interval
inflated by the delay; now both nodes convert through Redis's clock
(docs/architecture.md, "Message expiry across nodes").
"""
import os
import signal
import time

import pytest

import faketime
import mqttraw as R
from pahoclient import uid
from test_cluster import WAIT, backends, cluster, metric, wait_for  # noqa: F401 (fixtures)
from test_cluster_sessions import connect, persistent, subscribe

def faked(offset):
    """The environment that runs a node with its wall clock `offset` off
    (tests/integration/faketime.py), or None for the real clock."""
    if offset is None:
        return None
    why = faketime.missing()
    if why:
        pytest.skip(why)
    return faketime.env(offset)


def setup(cluster, node_factory, offset):
    """Node 1 (real clock), node 2 (its clock `offset`); a persistent QoS 1
    subscriber that subscribed on node 1 and left."""
    n1 = cluster(uid("n1"))
    n2 = node_factory(*cluster.argv(uid("n2")), env=faked(offset))
    cid, topic = uid("sub"), uid("exp")
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    subscribe(r, topic, qos=1)
    r.send(R.disconnect())
    r.close()
    return n1, n2, cid, topic


def publish(node, topic, payload, expiry=None):
    p, ack = connect(node, uid("pub"))
    assert ack.rc == 0
    p.send(R.publish(topic, payload, qos=1, pid=1, properties={R.P_MESSAGE_EXPIRY: expiry} if expiry else None))
    p.expect(R.PUBACK)
    acked = time.time()
    p.send(R.disconnect())
    p.close()
    return acked


def consumed(n2, n):
    """Node 2 has taken n records from the other node off its live stream."""
    wait_for(lambda: metric(n2, "shoal_kafka_consumed_total") >= n, "node 2 consuming %d record(s)" % n)


@pytest.mark.parametrize("offset", [None, "-1h"], ids=["same-clock", "node2-1h-behind"])
def test_expired_message_is_not_delivered_on_another_node(cluster, node_factory, offset):
    n1, n2, cid, topic = setup(cluster, node_factory, offset)
    acked = publish(n1, topic, b"expires", expiry=2)
    consumed(n2, 1)
    # The interval is over (2 s after node 1 took it, with room for the
    # second's rounding); the subscriber comes back on node 2.
    time.sleep(max(0.0, acked + 3.0 - time.time()))
    r, ack = connect(n2, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    publish(n1, topic, b"after")
    p = r.expect(R.PUBLISH, timeout=WAIT)
    assert p.payload == b"after", "the expired message was delivered: %r (props %r)" % (p.payload, p.props)
    r.close()


@pytest.mark.parametrize("offset", [None, "+1800"], ids=["same-clock", "node2-30min-ahead"])
def test_message_before_its_expiry_is_delivered_with_the_interval_left(cluster, node_factory, offset):
    n1, n2, cid, topic = setup(cluster, node_factory, offset)
    acked = publish(n1, topic, b"lives", expiry=60)
    consumed(n2, 1)
    time.sleep(max(0.0, acked + 2.0 - time.time()))  # some of the interval passes
    r, ack = connect(n2, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    p = r.expect(R.PUBLISH, timeout=WAIT)
    assert p.payload == b"lives", p
    left = p.props.get(R.P_MESSAGE_EXPIRY)
    # MQTT 5 §3.3.2.3.3: the interval received minus the time it waited
    # in the server (at least the 2 s above, at most the 60 s).
    assert left is not None and 1 <= left <= 58, left
    r.send(R.puback(p.pid))
    r.close()


# How long node 2 is held off the stream (SIGSTOP) while node 1's record
# waits in Kafka, and node 2's heartbeat for that test: its lease (3 beats,
# fenced at three quarters, counted from a renewal up to one beat before the
# stop) outlives the pause with room for a slow machine.
LATE_S = 5.0
LATE_HEARTBEAT_MS = 10000


def test_interval_left_counts_from_the_publishing_node_when_the_record_reaches_node2_late(cluster, node_factory):
    """Node 2 reads node 1's record LATE_S seconds after node 1 took it (the
    first record it reads from node 1, as right after a start): the interval
    left still counts from node 1's receipt. Node 2 used to take the whole
    transit for clock skew and move the deadline later by it (MQTT 5
    §3.3.2.3.3: the interval sent is the one received minus the time the
    message waited in the server)."""
    n1 = cluster(uid("n1"))
    n2 = node_factory(*cluster.argv(uid("n2"), "--cluster-heartbeat", str(LATE_HEARTBEAT_MS)))
    cid, topic = uid("sub"), uid("late")
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    subscribe(r, topic, qos=1)
    r.send(R.disconnect())
    r.close()
    assert metric(n2, "shoal_kafka_consumed_total") == 0  # nothing of node 1's read before
    os.kill(n2.proc.pid, signal.SIGSTOP)
    try:
        acked = publish(n1, topic, b"late", expiry=60)
        time.sleep(max(0.0, acked + LATE_S - time.time()))  # the record waits in Kafka meanwhile
    finally:
        os.kill(n2.proc.pid, signal.SIGCONT)
    consumed(n2, 1)
    assert "lease_lost" not in n2.log(), n2.log()
    r, ack = connect(n2, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    p = r.expect(R.PUBLISH, timeout=WAIT)
    assert p.payload == b"late", p
    left = p.props.get(R.P_MESSAGE_EXPIRY)
    # At least LATE_S of the 60 s passed since node 1 acknowledged it.
    assert left is not None and 1 <= left <= 60 - int(LATE_S), left
    r.send(R.puback(p.pid))
    r.close()
