# SPDX-License-Identifier: Apache-2.0
"""Fencing (docs/architecture.md, "Fencing"): a node cut off from Redis
cannot renew its membership lease, and once the lease lapses another node
may take over its client ids. Invariant 3 (one live connection per client
id) holds only if the cut node closes its clients first: it fences itself
a margin before the lease's TTL, refuses CONNECT and says not ready until
Redis renews its lease, and then writes none of the state another node took
over. One node reaches Redis through a TCP forwarder that the test freezes
(SIGSTOP: connections stay open, nothing crosses), the other directly."""
import os
import re
import threading
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from pahoclient import Client, props, uid
from conftest import Node
from tcpproxy import Proxy
from test_cluster import WAIT, Backends, http_get, metric, redis_cli, wait_for

HEARTBEAT_MS = 1000  # TTL 3 s, fence point 2.25 s after the last renewal's send (cluster/lease.h)
EXPIRY = props(PacketTypes.CONNECT, SessionExpiryInterval=600)


@pytest.fixture(scope="module")
def backends():
    b = Backends()
    yield b
    b.stop()


@pytest.fixture
def proxy(backends):
    port = int(re.search(r":(\d+)(/\d*)?$", backends.redis_url).group(1))
    p = Proxy(port)
    yield p
    p.stop()


@pytest.fixture
def cluster(backends, node_factory):
    prefix = uid("f") + "."

    def argv(name, redis_url=None, *extra):
        return ("--workers", "2", "--node-id", name, "--redis", redis_url or backends.redis_url, "--kafka",
                backends.bootstrap, "--kafka-replication", "1", "--kafka-partitions", "4", "--kafka-topic-prefix",
                prefix, "--cluster-heartbeat", str(HEARTBEAT_MS), *extra)

    def make(name, redis_url=None, *extra):
        return node_factory(*argv(name, redis_url, *extra))
    make.argv = argv
    return make


def via(backends, proxy):
    return re.sub(r":(\d+)((/\d*)?)$", r":%d\2" % proxy.port, backends.redis_url)


def ready(node):
    return http_get(node, "/health/ready")[0]


class Claimer(threading.Thread):
    """Connects client_id to a node again and again (clean start 0) until
    the CONNACK says success; keeps that connection."""

    def __init__(self, node, client_id):
        super().__init__(daemon=True)
        self.node, self.client_id = node, client_id
        self.client = None
        self.connected_at = None
        self.refusals = []
        self.stop = threading.Event()
        self.done = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                c = Client(self.node, client_id=self.client_id, version=5, clean=False, properties=EXPIRY,
                           expect_rc=None)
                if c.connack[1] == 0:
                    self.connected_at = time.monotonic()
                    self.client = c
                    return
                self.refusals.append(int(c.connack[1].value))
                c.kill()
                self.stop.wait(0.2)
        finally:
            self.done.set()


def test_node_cut_from_redis_fences_before_its_lease_expires_and_the_session_moves_intact(cluster, backends,
                                                                                          proxy):
    """The cut node closes its persistent client (DISCONNECT 0x8B), its
    clean MQTT 5 client and its 3.1.1 client before the same client id can
    connect through the other node; that connection gets the session with
    its subscription and every message acknowledged meanwhile. The cut node
    refuses CONNECT (0x88) and is not ready while fenced; when Redis is back
    it serves again, and its stale copy of the session is refused, not
    written over the new owner's."""
    n1 = cluster(uid("cut"), via(backends, proxy))
    n2 = cluster(uid("ok"))
    topic = uid("fence")
    cid = uid("persist")
    sub = Client(n1, client_id=cid, version=5, clean=False, properties=EXPIRY)
    assert sub.subscribe(topic + "/#", qos=1) == [1]
    clean5 = Client(n1, version=5)
    clean3 = Client(n1, version=4)
    pub = Client(n2, version=5)
    acked = []

    def publish(tag):
        pub.publish("%s/x" % topic, tag, qos=1)  # waits for PUBACK: durable in Kafka
        acked.append(tag)

    for i in range(5):
        publish(b"before-%d" % i)
    got = [m.payload for m in sub.get_n(5, WAIT)]
    assert got == acked
    assert ready(n1) == 200

    claimer = Claimer(n2, cid)
    with proxy.cut():
        claimer.start()
        i = 0
        while not claimer.done.wait(0.1):
            publish(b"during-%d" % i)
            i += 1
        assert claimer.client is not None, claimer.refusals
        # Invariant 3: the cut node let go of the client id before the
        # other node could give it a connection.
        assert sub.disconnected.is_set(), ("the cut node still holds %s, which connected on the other node" % cid,
                                           n1.log()[-3000:])
        assert sub.disconnect_rc.value == 0x8B, sub.disconnect_rc
        for c in (clean5, clean3):
            assert c.disconnected.wait(WAIT), "a clean session's connection stayed open on the fenced node"
        assert clean5.disconnect_rc.value == 0x8B
        assert "event=lease_lost" in n1.log()
        assert claimer.client.session_present
        # Fenced: not ready, CONNECT refused with 0x88 Server unavailable.
        wait_for(lambda: ready(n1) == 503, "/health/ready 503 on the fenced node")
        late = Client(n1, version=5, expect_rc=None)
        assert late.connack[1].value == 0x88, late.connack
        late.kill()
        assert metric(n1, "shoal_cluster_fenced") == 1
        for j in range(3):
            publish(b"after-%d" % j)
    # The session moved with its subscription: everything acknowledged
    # since the SUBSCRIBE reached it, on one connection or the other.
    mine = claimer.client
    seen = set(got) | {m.payload for m in sub.get_n(sub.messages.qsize(), 1)}
    deadline = time.time() + WAIT
    while not set(acked) <= seen and time.time() < deadline:
        try:
            seen.add(mine.get(0.5).payload)
        except AssertionError:
            pass
    assert set(acked) <= seen, sorted(set(acked) - seen)

    # Redis back: the cut node renews its lease and serves again; its copy
    # of the session is refused as stale, the new owner keeps it.
    assert n1.wait_log("event=lease_regained", WAIT), n1.log()[-3000:]
    # The cut node drops its copy without writing it: the other node's
    # revoke (held up in the cut link) or its own store, refused as stale.
    wait_for(lambda: any(e in n1.log() for e in ("event=session_revoked client=%s" % cid,
                                                   "event=session_fenced client=%s" % cid)),
             "the cut node letting go of %s" % cid)
    wait_for(lambda: ready(n1) == 200, "/health/ready 200 once the lease is renewed")
    again = Client(n1, version=5)
    info = again.publish("%s/x" % topic, b"via-n1", qos=1, wait=False)
    info.wait_for_publish(WAIT)
    assert info.is_published(), ("no PUBACK from the node back from its fence", n1.log()[-6000:])
    deadline = time.time() + WAIT
    while time.time() < deadline:
        m = mine.get(WAIT)
        if m.payload == b"via-n1":
            break
    else:
        raise AssertionError("no message after the heal")
    assert not mine.disconnected.is_set(), mine.disconnect_rc
    assert metric(n1, "shoal_cluster_lease_lost_total") == 1
    assert metric(n1, "shoal_cluster_lease_regained_total") == 1
    assert metric(n1, "shoal_cluster_fenced") == 0
    assert metric(n2, "shoal_cluster_lease_lost_total") == 0
    assert n1.log().count("event=lease_lost") == 1


def test_single_node_without_redis_never_fences(node_factory):
    """The embedded default has no lease: nothing to fence, no lease metrics."""
    n = node_factory()
    c = Client(n, client_id=uid("solo"), version=5, clean=False, properties=EXPIRY)
    assert metric(n, "shoal_cluster_lease_lost_total") is None
    assert not c.disconnected.is_set()


def test_cut_node_back_after_a_survivor_reaped_it_does_not_write_its_stale_session(cluster, backends, proxy):
    """Cut off long enough for the other node to take it for dead and
    settle its session records (reaped), the node comes back with its own,
    older copy of the session. Its store is refused (the record was settled
    for this very instance, though its epoch is unchanged) and it drops the
    copy; the client resumes the settled session through any node. Failed
    before the store script checked 'reaped': the stale copy was written
    over the settled record."""
    name1 = uid("cut")
    n1 = cluster(name1, via(backends, proxy))
    n2 = cluster(uid("ok"))
    topic = uid("reap")
    cid = uid("persist")
    sub = Client(n1, client_id=cid, version=5, clean=False, properties=EXPIRY)
    assert sub.subscribe(topic + "/#", qos=1) == [1]
    pub = Client(n2, version=5)
    pub.publish("%s/x" % topic, b"before", qos=1)
    assert sub.get(WAIT).payload == b"before"
    settled = "event=dead_node_settled instance="
    with proxy.cut():
        assert sub.disconnected.wait(WAIT), "the cut node kept its client"
        wait_for(lambda: any(settled in line and line.split(settled)[1].split()[0].endswith("|" + name1)
                             for line in n2.log().splitlines()), "node 2 settling the cut node's sessions", 60)
        pub.publish("%s/x" % topic, b"while-cut", qos=1)
    assert n1.wait_log("event=lease_regained", WAIT), n1.log()[-3000:]
    assert n1.wait_log("event=session_fenced client=%s" % cid, WAIT), n1.log()[-3000:]
    again = Client(n2, client_id=cid, version=5, clean=False, properties=EXPIRY)
    assert again.session_present
    got = set()
    deadline = time.time() + WAIT
    while b"while-cut" not in got and time.time() < deadline:
        try:
            got.add(again.get(1).payload)
        except AssertionError:
            pass
    assert b"while-cut" in got, got


def test_a_longer_lease_rides_out_a_redis_outage_that_fences_the_default(cluster, backends, proxy):
    """--cluster-lease: both nodes reach Redis through the link the test
    freezes, one with the default lease (3 heartbeats: fenced 2.25 s after
    its last renewal), one with a 15 s lease (fenced after 11.25 s). The
    link stays cut until the default node has fenced and past the default
    lease itself (4 s): the default node closes its clients, the other keeps
    every connection, and once Redis is back its clients publish and
    subscribe as before. Failed before --cluster-lease existed (the node
    refused the option; every node fenced at 2.25 s)."""
    n_def = cluster(uid("def"), via(backends, proxy))
    name = uid("long")
    n_long = cluster(name, via(backends, proxy), "--cluster-lease", "15000")
    # The lease is in Redis with the membership, for the other nodes.
    wait_for(lambda: redis_cli(backends.redis_url, "HGET", "shoal:leases", name) == ["15000"],
             "the node's lease in shoal:leases")
    topic = uid("blip")
    sub = Client(n_long, client_id=uid("persist"), version=5, clean=False, properties=EXPIRY)
    assert sub.subscribe(topic + "/#", qos=1) == [1]
    clean5 = Client(n_long, version=5)
    clean3 = Client(n_long, version=4)
    pub = Client(n_long, version=5)
    victim = Client(n_def, version=5)
    pub.publish("%s/x" % topic, b"before", qos=1)
    assert sub.get(WAIT).payload == b"before"

    with proxy.cut():
        cut_at = time.monotonic()
        assert victim.disconnected.wait(WAIT), "the default-lease node kept its client"
        assert victim.disconnect_rc.value == 0x8B, victim.disconnect_rc
        assert n_def.wait_log("event=lease_lost", WAIT), n_def.log()[-3000:]
        # The outage's length is what this test is about: past the default
        # lease too (its claim expired in Redis), well short of 11.25 s.
        threading.Event().wait(max(0.0, cut_at + 4.0 - time.monotonic()))
        for c in (sub, clean5, clean3, pub):
            assert not c.disconnected.is_set(), ("a client of the long-lease node was disconnected",
                                                 c.disconnect_rc, n_long.log()[-3000:])
        assert "event=lease_lost" not in n_long.log(), n_long.log()[-3000:]

    # Redis back: the default node serves again; the long-lease node never
    # stopped, and its connections carry on.
    assert n_def.wait_log("event=lease_regained", WAIT), n_def.log()[-3000:]
    wait_for(lambda: ready(n_long) == 200, "/health/ready 200 on the long-lease node once Redis is back")
    pub.publish("%s/x" % topic, b"after", qos=1)
    assert sub.get(WAIT).payload == b"after"
    # A new subscription of the persistent session (its SUBACK waits for
    # Redis to record it) and a message from the other node reach it.
    assert sub.subscribe(topic + "2/#", qos=1) == [1]
    other = Client(n_def, version=5)
    other.publish("%s2/y" % topic, b"from-the-other-node", qos=1)
    assert sub.get(WAIT).payload == b"from-the-other-node"
    for c in (sub, clean5, clean3, pub):
        assert not c.disconnected.is_set(), c.disconnect_rc
    assert metric(n_long, "shoal_cluster_lease_lost_total") == 0
    assert metric(n_long, "shoal_cluster_fenced") == 0
    assert metric(n_def, "shoal_cluster_lease_lost_total") == 1


def reaped(node, name):
    """Has node begun to settle a dead instance of node id `name`?"""
    return any(line.split("instance=")[1].split()[0].endswith("|" + name)
               for line in node.log().splitlines() if "event=dead_node_reap instance=" in line)


def test_a_dead_node_is_taken_over_after_its_own_longer_lease(cluster, backends):
    """A node with a 20 s lease is killed (SIGKILL); the survivor's own lease
    is the default 3 s. The survivor judges the dead node by the dead node's
    lease: its client's will is not out before 12 s (the default would have
    published it after about 3 s + a 3 s grace), and is out eventually
    (20 s + the grace + polls). A client that connects to the survivor
    while the dead node's claim still runs waits for it, as long as the dead
    node's lease says, and gets its session: no CONNACK 0x88 after the
    survivor's own 3 s + 2 s. Failed before --cluster-lease existed."""
    lease_ms = 20000
    name = uid("dead")
    dead = Node(*cluster.argv(name, None, "--cluster-lease", str(lease_ms)))
    try:
        survivor = cluster(uid("ok"))
        base = uid("will")
        watch = Client(survivor, version=5)
        assert watch.subscribe(base + "/#", qos=1) == [1]
        willing = Client(dead, client_id=uid("w"), version=5,
                         will={"topic": base + "/gone", "payload": b"gone", "qos": 1})
        cid = uid("taken")
        held = Client(dead, client_id=cid, version=5, clean=False, properties=EXPIRY)
        assert held.subscribe(base + "/kept/#", qos=1) == [1]
        wait_for(lambda: redis_cli(backends.redis_url, "HGET", "shoal:leases", name) == [str(lease_ms)],
                 "the dead node's lease in shoal:leases")
        # The will client's record (with its will) is in Redis before the kill.
        wait_for(lambda: any(k.endswith("|" + name) for k in redis_cli(backends.redis_url, "HKEYS", "shoal:instances")),
                 "the node registered")
        dead.proc.kill()
        dead.proc.wait(WAIT)
        killed_at = time.monotonic()
        # Lower bound only (a slow machine makes it later, never earlier):
        # nothing before 12 s, 60 % of the dead node's lease.
        watch.none(max(0.0, killed_at + 12.0 - time.monotonic()))
        assert not reaped(survivor, name), survivor.log()[-3000:]
        # The client comes back through the survivor while the dead node's
        # claim still runs (about 8 s more).
        claimer = Claimer(survivor, cid)
        claimer.start()
        assert claimer.done.wait(WAIT), "no CONNACK"
        assert claimer.client is not None and claimer.refusals == [], (claimer.refusals, survivor.log()[-3000:])
        assert claimer.client.session_present
        # The will is published once the dead node's lease ran out.
        m = watch.get(lease_ms / 1000 + WAIT)
        assert (m.topic, m.payload) == (base + "/gone", b"gone")
        assert reaped(survivor, name)
        assert willing.disconnected.is_set()
    finally:
        if dead.proc.poll() is None:
            dead.proc.kill()
            dead.proc.wait()


def test_a_restart_waits_for_its_predecessors_longer_lease(cluster, backends):
    """A node killed with a 30 s lease starts again under its id with the
    default lease (3 s). Its predecessor's claim still runs for up to 30 s
    (long enough that the restart reaches its claim before, however slow
    its start): the restart waits for it as long as the predecessor's lease
    says (read from shoal:leases) plus a heartbeat, not its own 3 s + 1 s,
    after which it would have taken the claim for a running node's and
    exited (event=node_id_taken)."""
    name = uid("re")
    old = Node(*cluster.argv(name, None, "--cluster-lease", "30000"))
    try:
        wait_for(lambda: redis_cli(backends.redis_url, "HGET", "shoal:leases", name) == ["30000"],
                 "the node's lease in shoal:leases")
        old.proc.kill()
        old.proc.wait(WAIT)
        new = cluster(name)  # returns once the node is up
        assert "event=node_id_claimed" in new.log(), new.log()[-3000:]
        assert "max_wait_ms=%d " % (30000 + HEARTBEAT_MS) in new.log(), new.log()[-3000:]
        assert redis_cli(backends.redis_url, "HGET", "shoal:leases", name) == ["3000"]
    finally:
        if old.proc.poll() is None:
            old.proc.kill()
            old.proc.wait()


def test_a_late_renewal_reply_sends_the_next_renewal_at_once(cluster, backends, proxy):
    """One renewal is out at a time, so a heartbeat that fires while one is
    held up skips its beat. When the late reply comes, the next renewal goes
    at once (cluster/lease.h, lease_after_reply), not at the beat after, which
    left it a quarter heartbeat before the fence point. The link to Redis is
    cut until a beat was skipped (1 to 2 heartbeats), then healed: the node's
    debug log says what sent the renewal after the late reply, and Redis
    acknowledges it."""
    name = uid("late")
    n = cluster(name, via(backends, proxy))
    wait_for(lambda: "event=lease_renewed node_id=%s " % name in n.log(), "a first acknowledged renewal")
    with proxy.cut():
        start = len(n.log())
        wait_for(lambda: n.log().find("event=lease_renewal_skipped", start) + 1, "a beat skipped: a renewal out")
    skipped = n.log().find("event=lease_renewal_skipped", start)
    sent = wait_for(lambda: n.log().find("event=lease_renewal_sent", skipped) + 1, "a renewal after the late reply") - 1
    line = n.log()[sent:].splitlines()[0]
    assert "reason=late_reply" in line, ("the renewal after the late reply waited for a beat", line)
    acked = wait_for(lambda: n.log().find("event=lease_renewed", sent) + 1, "its acknowledgement") - 1
    # sent_after_prev_ms: the late renewal's send to this one's (before: 2
    # heartbeats, whatever the reply's delay).
    print(n.log()[acked:].splitlines()[0])
