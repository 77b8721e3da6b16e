# SPDX-License-Identifier: Apache-2.0
"""A slow but online persistent subscriber whose queue passes --max-queued
(issue 17) with a real Redis, a real Kafka and two nodes: what spills to
Kafka is replayed while the client stays connected, the replay catches up
with the live stream and hands over to it without a gap or a duplicate, and
QoS 1 keeps its order (MQTT 4.6); several slow subscribers on one node each
catch up, and a fast one on the same node still gets everything
(docs/architecture.md, "Offline queues and positions" and "Cross-node
back-pressure")."""
import threading
import time

import mqttraw as R
from pahoclient import uid
from slowclient import Slow
from test_cluster import WAIT, backends, cluster, metric, wait_for  # noqa: F401 (fixtures)
from test_cluster_positions import publish_many
from test_cluster_sessions import connect

N = 3000
MAX_QUEUED = "50"
# Generous: the machine is shared and ASan is 5-10x slower.
TIMEOUT = 400


def want(n=N):
    return [b"m%06d" % i for i in range(n)]


def spilled(node, cid):
    return lambda: any("event=queue_spilled" in ln and "client=%s " % cid in ln + " " for ln in node.log_lines)


def replay_begun(node, cid):
    return lambda: any("event=replay_begin" in ln and ("client=%s" % cid) in ln.split() for ln in node.log_lines)


def replays(node):
    return sum(1 for ln in list(node.log_lines) if "event=replay_begin" in ln)


def run(n1, n2, subs, topic):
    for s in subs:
        s.start()
    pub = threading.Thread(target=publish_many, args=(n1 or n2, topic, N, 1))
    pub.start()
    deadline = time.time() + TIMEOUT
    for s in subs:
        s.wait(max(1, deadline - time.time()))
    pub.join(timeout=max(1, deadline - time.time()))
    return pub


def two_nodes(cluster, *args):
    n1 = cluster(uid("p1"))
    n2 = cluster(uid("s2"), "--max-queued", MAX_QUEUED, *args)
    return n1, n2


def test_a_slow_online_persistent_subscriber_gets_everything_in_order(cluster):
    """Receive Maximum 1 and a short pause per message, on the other node
    from a publisher at full speed: all 3,000 arrive in order, once, on the
    one connection."""
    n1, n2 = two_nodes(cluster)
    topic = uid("sp") + "/t"
    s = Slow(n2, topic, N, delay=0.002)
    run(n1, n2, [s], topic)
    s.check("slow")
    s.close()


def test_a_subscriber_that_spills_while_online_replays_and_catches_up(cluster):
    """The same subscriber stops reading long enough to be let go by the
    back-pressure (stuck: 2 s without taking a message), so its queue spills
    to Kafka while it is still connected; once it reads again, the replay
    must bring back what spilled and hand over to the live stream with no
    gap, no duplicate and in order, without a reconnect."""
    n1, n2 = two_nodes(cluster)
    topic = uid("sp") + "/t"
    s = Slow(n2, topic, N, delay=0.001, stall=200)
    s.stall_until = spilled(n2, s.cid)
    run(n1, n2, [s], topic)
    assert s.stalled, "never spilled"
    s.check("spilled")
    assert replays(n2) >= 1
    s.close()


def test_two_slow_subscribers_and_a_fast_one_on_one_node(cluster):
    """Two slow persistent subscribers at different speeds, one of which
    spills while online, and a fast persistent subscriber, all on node 2:
    each gets all 3,000 in order without reconnecting. Replays run one at
    a time per node: one slow subscriber's replay must not keep another's
    from catching up."""
    n1, n2 = two_nodes(cluster)
    topic = uid("sp") + "/t"
    a = Slow(n2, topic, N, delay=0.004, stall=100)
    a.stall_until = spilled(n2, a.cid)
    b = Slow(n2, topic, N, delay=0.001, stall=300)
    b.stall_until = spilled(n2, b.cid)
    fast = Slow(n2, topic, N, receive_max=None)
    run(n1, n2, [fast, a, b], topic)
    fast.check("fast")
    a.check("slow a")
    b.check("slow b")
    for s in (a, b, fast):
        s.close()


def test_a_replay_that_waits_for_its_client_does_not_hold_up_another(cluster):
    """Slow subscriber A spills 1,500 messages, its replay starts, and A
    then stops reading (connected: its replay waits for it). Then 1,500
    more are published, subscriber B on the same node spills some of them
    and reads again: B must catch up and get all 3,000 in order without
    reconnecting, though A's replay never ends. Before the fix replays ran
    strictly one after another per node and B's waited behind A's for as
    long as A took nothing."""
    n1, n2 = two_nodes(cluster)
    topic = uid("sp") + "/t"
    half = N // 2
    first_done = threading.Event()
    # No keep alive: A stays connected however long it takes nothing.
    a = Slow(n2, topic, N, delay=0.001, stall=100, keepalive=0)
    a.stall_until = lambda: first_done.is_set() and spilled(n2, a.cid)()
    begun, mark = replay_begun(n2, a.cid), []

    def halt():
        if not mark and begun():
            mark.append(len(a.got))
        return bool(mark) and len(a.got) >= mark[0] + 20

    a.halt = halt
    b = Slow(n2, topic, N, delay=0.001, stall=half + 100)
    b.stall_until = spilled(n2, b.cid)
    b.start()
    a.start()
    publish_many(n1, topic, half, 1, prefix=b"m")
    first_done.set()
    wait_for(lambda: a.halted, "A halted in its replay", timeout=TIMEOUT)
    pub = threading.Thread(target=publish_many, args=(n1, topic, N - half, 1), kwargs={"prefix": b"n"})
    pub.start()
    b.wait(240)
    pub.join(timeout=60)
    assert not a.closed
    assert b.stalled, "B never spilled"
    b.expect = [b"m%06d" % i for i in range(half)] + [b"n%06d" % i for i in range(N - half)]
    b.check("b")
    a._stop = True
    a.close()
    b.close()


def publish_retained(node, topics, payloads):
    """One acknowledged QoS 1 retained publish per topic."""
    p, ack = connect(node, uid("rp"))
    assert ack.rc == 0
    for i, (t, pl) in enumerate(zip(topics, payloads)):
        p.send(R.publish(t, pl, qos=1, retain=True, pid=i + 1))
        pa = p.expect(R.PUBACK)
        assert pa.rc in (None, 0), pa
    p.send(R.disconnect())
    p.close()


def test_retained_messages_reach_a_subscriber_that_subscribes_during_its_replay(cluster):
    """A persistent subscriber spills, its replay from Kafka starts, and
    while the replay waits for it (the client reads nothing) it subscribes
    to topics that hold retained messages on the other node. Each retained
    message must arrive once it reads again (MQTT 5 §3.3.1.3): it is not a
    record the replay brings back, whatever the stream position the
    retained index keeps with it. Before the fix the index kept partition 0
    offset 0 for every retained message, so the replay logic took each for
    a record below the replay's end and dropped it ("the replay reads
    it"). 24 retained topics: on 4 partitions partition 0 holds a record."""
    n1, n2 = two_nodes(cluster)
    topic = uid("sp") + "/t"
    rt = uid("rt")
    rtopics = ["%s/%02d" % (rt, i) for i in range(24)]
    rpay = [b"ret%02d" % i for i in range(24)]
    publish_retained(n1, rtopics, rpay)
    # Node 2's index has them all before the test goes on.
    with R.RawClient(n2, version=5, timeout=WAIT) as c:
        assert c.connect(uid("chk"), clean=True, version=5).rc == 0
        c.send(R.subscribe(1, [(rt + "/#", 1)]))
        c.expect(R.SUBACK)
        seen = set()
        deadline = time.time() + TIMEOUT
        while len(seen) < len(rpay) and time.time() < deadline:
            pkt = c.recv(timeout=WAIT)
            if pkt is not None and pkt.type == R.PUBLISH:
                seen.add(pkt.payload)
                if pkt.qos == 1:
                    c.send(R.puback(pkt.pid))
        assert seen == set(rpay), "node 2 has %d of %d retained" % (len(seen), len(rpay))
    half = 1000
    pub_done = threading.Event()
    a = Slow(n2, topic, N, delay=0.001, stall=100, keepalive=0)
    a.stall_until = lambda: pub_done.is_set() and spilled(n2, a.cid)()
    begun, mark = replay_begun(n2, a.cid), []

    def halt():
        if not mark and begun():
            mark.append(len(a.got))
        return bool(mark) and len(a.got) >= mark[0] + 20

    a.halt = halt
    a.start()
    publish_many(n1, topic, half, 1)
    pub_done.set()
    wait_for(lambda: a.halted, "A halted in its replay", timeout=TIMEOUT)
    # Live records while it waits fill what node 2 holds for after the
    # replay (--max-queued) and spill past it: the retained copies must
    # still come (Kafka cannot bring them back; a held record it can).
    live = 2 * int(MAX_QUEUED)
    before = metric(n2, "shoal_kafka_consumed_total")
    publish_many(n1, topic, live, 1, prefix=b"l")
    wait_for(lambda: metric(n2, "shoal_kafka_consumed_total") >= before + live, "node 2 to read the live records")
    a.r.send(R.subscribe(2, [(rt + "/#", 1)]))
    a.halt = None
    a.halted = False
    wait_for(lambda: all(p in a.got for p in rpay), "every retained message after SUBSCRIBE in a replay",
             timeout=120)
    wait_for(lambda: len(a.got) >= half + live + len(rpay), "the replay to the end", timeout=TIMEOUT)
    a._stop = True
    a.t.join(WAIT)
    assert a.error is None, a.error
    assert not a.closed
    assert sorted(p for p in a.got if p.startswith(b"ret")) == rpay, "each retained message once"
    assert [p for p in a.got if p.startswith(b"m")] == want(half), "the replay kept its order"
    assert [p for p in a.got if p.startswith(b"l")] == [b"l%06d" % i for i in range(live)], "live ones in order"
    a.close()


def test_single_node_slow_persistent_subscriber_slows_its_publisher_instead(node_factory):
    """A single node has no Kafka to spill to: past --max-queued a
    persistent session is like any other, its local publishers are slowed
    (--publisher-backpressure, at most --max-queued/4) while it is behind,
    so a slow but reading subscriber still gets all 3,000 in order."""
    n = node_factory("--max-queued", MAX_QUEUED)
    topic = uid("sp") + "/t"
    s = Slow(n, topic, N, delay=0.001)
    run(None, n, [s], topic)
    s.check("single")
    s.close()
