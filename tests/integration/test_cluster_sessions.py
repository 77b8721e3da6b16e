# SPDX-License-Identifier: Apache-2.0
"""Sessions across nodes (issue 17 step 1) with a real Redis, a real Kafka
and three nodes: a persistent session resumes on another node with its
subscriptions, a client id has one live connection in the cluster (takeover
with 0x8E, the simultaneous-connect race), a clean start elsewhere removes
the old session everywhere, and wills go through the backplane.

Step 1 moves subscriptions, not queued messages: what was queued on the old
node while the client was offline does not follow it (step 2)."""
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

import mqttraw as R
from conftest import Node
from pahoclient import uid
from test_cluster import ADMIN_TOKEN, WAIT, backends, cluster, redis_cli, wait_for  # noqa: F401 (fixtures)

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def three(cluster):
    return [cluster(uid("n%d" % i), "--admin-token", ADMIN_TOKEN) for i in (1, 2, 3)]


def connected_on(node, cid):
    """Is client cid connected on node (its admin API)?"""
    req = urllib.request.Request(node.http_url + "/api/v1/clients?filter=" + cid,
                                 headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    with _opener.open(req, timeout=WAIT) as r:
        body = json.loads(r.read().decode())
    return sum(1 for c in body["clients"] if c["client_id"] == cid and c.get("connected"))


def connect(node, cid, version=5, clean=True, expiry=None, will=None, timeout=WAIT):
    r = R.RawClient(node, version=version, timeout=timeout)
    pr = {R.P_SESSION_EXPIRY: expiry} if expiry is not None and version == 5 else None
    return r, r.connect(cid, clean=clean, version=version, properties=pr, will=will)


def subscribe(r, filt, qos=1, sub_id=None, version=5):
    pr = {R.P_SUBSCRIPTION_ID: sub_id} if sub_id else None
    r.send(R.subscribe(1, [(filt, qos)], version=version, properties=pr))
    sa = r.expect(R.SUBACK)
    assert all(c < 0x80 for c in sa.codes), sa


def publish_qos1(node, topic, payload, version=5):
    p, ack = connect(node, uid("pub"), version=version)
    assert ack.rc == 0
    p.send(R.publish(topic, payload, qos=1, pid=1, version=version))
    p.expect(R.PUBACK)
    p.send(R.disconnect(version=version))
    p.close()


def expect_publish(r, topic, payload, timeout=WAIT):
    p = r.expect(R.PUBLISH, timeout=timeout)
    assert (p.topic, p.payload) == (topic, payload), p
    if p.qos:
        r.send(R.puback(p.pid, version=r.version))
    return p


def persistent(version):
    """Keyword arguments for a persistent session in either version."""
    return dict(version=version, clean=False, expiry=600 if version == 5 else None)


@pytest.mark.parametrize("version", [5, 4])
def test_persistent_session_resumes_on_another_node_with_its_subscriptions(cluster, version):
    """Fails on the code before step 1: node 3 knew nothing of the session
    (session present 0, no subscription)."""
    n1, n2, n3 = three(cluster)
    cid, base = uid("mover"), uid("mv")
    r, ack = connect(n1, cid, **persistent(version))
    assert ack.rc == 0 and not ack.session_present, ack
    subscribe(r, base + "/+", qos=1, sub_id=7 if version == 5 else None, version=version)
    r.send(R.disconnect(version=version))
    assert r.is_closed()

    r3, ack = connect(n3, cid, **persistent(version))
    assert ack.rc == 0 and ack.session_present, ack
    # Restored: a publish on node 2 after the reconnect arrives without a
    # new SUBSCRIBE, with its subscription identifier (v5).
    wait_for(lambda: connected_on(n3, cid) == 1, "the client on node 3")
    publish_qos1(n2, base + "/a", b"after-move", version=version)
    p = expect_publish(r3, base + "/a", b"after-move")
    if version == 5:
        assert p.props.get(R.P_SUBSCRIPTION_ID) in (7, [7]), p
    # Node 1 let go of it: not listed there, not even offline.
    assert connected_on(n1, cid) == 0
    r3.send(R.disconnect(version=version))
    r3.close()


class OneConnectionWatch:
    """Polls every node's admin API while a test runs. Nodes are asked in
    the order given, newest owner first: a client seen connected on a later
    node was still connected when an earlier node was asked, so two sightings
    in one round prove two connections at one instant."""

    def __init__(self, nodes, cid):
        self.nodes, self.cid = nodes, cid
        self.worst, self.rounds = 0, 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            seen = sum(connected_on(n, self.cid) for n in self.nodes)
            self.worst = max(self.worst, seen)
            self.rounds += 1

    def done(self):
        self.stop.set()
        self.t.join(WAIT)
        return self.worst


def test_takeover_across_nodes_closes_the_old_connection_with_0x8e(cluster):
    """Fails on the code before step 1: both connections stay up."""
    n1, n2, n3 = three(cluster)
    cid = uid("taken")
    old, ack = connect(n1, cid, expiry=600)
    assert ack.rc == 0
    wait_for(lambda: connected_on(n1, cid) == 1, "the client on node 1")
    watch = OneConnectionWatch([n2, n3, n1], cid)
    wait_for(lambda: watch.rounds >= 3, "the watcher's first rounds")
    new, ack = connect(n2, cid, clean=False, expiry=600)
    assert ack.rc == 0 and ack.session_present, ack
    d = old.expect(R.DISCONNECT)
    assert d.rc == 0x8E, d
    assert old.is_closed()
    wait_for(lambda: connected_on(n1, cid) == 0 and connected_on(n2, cid) == 1, "the move to node 2")
    wait_for(lambda: watch.rounds >= 10, "more rounds")
    assert watch.done() <= 1, "two live connections of %s at one instant" % cid
    # And back again, 3.1.1 this time: node 2's connection is closed.
    back, ack = connect(n1, cid, version=4, clean=False)
    assert ack.rc == 0 and ack.session_present
    assert new.is_closed()
    back.close()


def test_simultaneous_connects_on_two_nodes_leave_exactly_one(cluster):
    """Fails on the code before step 1: both connections survive."""
    n1, n2, _ = three(cluster)
    rounds = 20
    for i in range(rounds):
        cid = uid("race")
        clients, acks = [None, None], [None, None]
        go = threading.Barrier(2)

        def one(k, node):
            r = R.RawClient(node, version=5, timeout=WAIT)
            clients[k] = r
            go.wait()
            r.send(R.connect(cid, clean=False, properties={R.P_SESSION_EXPIRY: 600}))
            try:
                acks[k] = r.expect(R.CONNACK)
            except (R.Closed, TimeoutError):
                acks[k] = None

        ts = [threading.Thread(target=one, args=(k, n)) for k, n in enumerate((n1, n2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT * 2)

        def alive(k):
            if acks[k] is None or acks[k].rc != 0:
                return False
            try:
                clients[k].wait_closed(0.05)
                return False
            except TimeoutError:
                return True

        # The loser is closed (0x8E after its CONNACK, or before any CONNACK);
        # wait until the cluster agrees on one, then check it stays so.
        wait_for(lambda: sum(connected_on(n, cid) for n in (n1, n2)) == 1 and [alive(0), alive(1)].count(True) == 1,
                 "round %d: exactly one connection of %s" % (i, cid))
        time.sleep(0.2)  # not a timing assertion: a late close would show below
        survivors = [k for k in (0, 1) if alive(k)]
        assert len(survivors) == 1, "round %d: %d survivors" % (i, len(survivors))
        assert sum(connected_on(n, cid) for n in (n1, n2)) == 1
        for r in clients:
            r.close()


def test_clean_start_elsewhere_removes_the_session_everywhere(cluster):
    """Fails on the code before step 1: node 1 kept its session, so a later
    resume there found it (session present 1, the old subscription)."""
    n1, n2, n3 = three(cluster)
    cid, topic = uid("cleaner"), uid("cl") + "/t"
    r, _ = connect(n1, cid, expiry=600)
    subscribe(r, topic)
    r.send(R.disconnect())
    assert r.is_closed()

    r2, ack = connect(n2, cid, clean=True, expiry=0)
    assert ack.rc == 0 and not ack.session_present, ack
    publish_qos1(n3, topic, b"nobody")
    with pytest.raises(TimeoutError):
        r2.expect(R.PUBLISH, timeout=2)
    assert connected_on(n1, cid) == 0
    r2.send(R.disconnect())  # expiry 0: the session ends here
    assert r2.is_closed()

    r1, ack = connect(n1, cid, clean=False, expiry=600)
    assert ack.rc == 0 and not ack.session_present, ack
    publish_qos1(n3, topic, b"still-nobody")
    with pytest.raises(TimeoutError):
        r1.expect(R.PUBLISH, timeout=2)
    r1.close()


def will_watchers(nodes, topic):
    subs = []
    for n in nodes:
        s, _ = connect(n, uid("ww"))
        subscribe(s, topic)
        subs.append(s)
    return subs


def drop(r):
    """Close the socket without DISCONNECT: the will is due."""
    r.close()


def test_will_of_a_client_on_node_2_reaches_node_3(cluster):
    """Fails on the code before step 1: the will reached node 2's
    subscribers only."""
    n1, n2, n3 = three(cluster)
    topic = uid("will") + "/now"
    (s3,) = will_watchers([n3], topic)
    r, ack = connect(n2, uid("dying"), will={"topic": topic, "payload": b"gone", "qos": 1})
    assert ack.rc == 0
    drop(r)
    expect_publish(s3, topic, b"gone")


def test_delayed_will_reaches_another_node_after_the_delay(cluster):
    n1, n2, n3 = three(cluster)
    topic = uid("will") + "/late"
    (s3,) = will_watchers([n3], topic)
    will = {"topic": topic, "payload": b"late", "qos": 1, "properties": {R.P_WILL_DELAY: 2}}
    r, ack = connect(n2, uid("dying"), expiry=600, will=will)
    assert ack.rc == 0
    t0 = time.time()
    drop(r)
    expect_publish(s3, topic, b"late")
    assert time.time() - t0 >= 1.5  # never early (a lower bound only)


def test_reconnect_on_another_node_within_the_delay_cancels_the_will(cluster):
    """Fails on the code before step 1: node 2 kept the old session and
    published the will when the delay ran out (to its own subscriber)."""
    n1, n2, n3 = three(cluster)
    topic, cid = uid("will") + "/cancel", uid("back")
    s2, s3 = will_watchers([n2, n3], topic)
    will = {"topic": topic, "payload": b"must-not", "qos": 1, "properties": {R.P_WILL_DELAY: 3}}
    r, ack = connect(n2, cid, expiry=600, will=will)
    assert ack.rc == 0
    drop(r)
    back, ack = connect(n1, cid, clean=False, expiry=600)
    assert ack.rc == 0 and ack.session_present, ack
    # The delay passes with the client connected on node 1: no will anywhere.
    for s in (s2, s3):
        with pytest.raises(TimeoutError):
            s.expect(R.PUBLISH, timeout=5)
    back.close()


# ---- Redis losing data, Redis unreachable (issue 17 review) ----

@contextlib.contextmanager
def redis_stopped(backends):
    """SIGSTOP the test's Redis (it keeps its connections and answers
    nothing); SIGCONT it whatever happens."""
    with open(os.path.join(backends.redis["REDIS_DIR"], "redis.pid")) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_store_after_redis_lost_the_record_keeps_the_session(cluster, backends):
    """Redis restarted empty (here FLUSHALL): the owner's next store found no
    record. Failed before the fix: taken as a newer claim (stale), so the
    node closed the connection with 0x8E and dropped a session nobody else
    had claimed."""
    n1, n2, n3 = three(cluster)
    cid, topic = uid("flushed"), uid("fl") + "/t"
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    wait_for(lambda: connected_on(n1, cid) == 1, "the client on node 1")
    redis_cli(backends.redis_url, "FLUSHALL")
    subscribe(r, topic)  # stored into a record that is gone
    publish_qos1(n2, topic, b"still-mine")
    expect_publish(r, topic, b"still-mine")
    r.send(R.disconnect())
    assert r.is_closed()
    r3, ack = connect(n3, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    wait_for(lambda: connected_on(n3, cid) == 1, "the client on node 3")
    publish_qos1(n2, topic, b"moved")
    expect_publish(r3, topic, b"moved")
    r3.close()


def test_a_claim_before_the_owner_renewed_its_lost_lease_waits_for_its_release(cluster, backends):
    """Redis lost its data, the owner re-created the session's record with a
    store, and a claim elsewhere comes before the owner's next heartbeat has
    written its node-id claim again. Failed before the fix: the claim took
    the owner for dead (no node-id claim), did not wait for its release and
    resumed the state of the store that re-created the record, so node 3
    sent `still-mine`, which the client had acknowledged on node 1, again as
    a new message (the flake of the test above, whose DISCONNECT's store
    can reach Redis after node 3's claim on a loaded machine)."""
    # Heartbeats 10 s apart: node 1's id claim stays gone that long after
    # the FLUSHALL, the window this test moves the session in.
    n1, n2, n3 = [cluster(uid("n%d" % i), "--admin-token", ADMIN_TOKEN, "--cluster-heartbeat", "10000")
                  for i in (1, 2, 3)]
    cid, topic = uid("unrenewed"), uid("ur") + "/t"
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    wait_for(lambda: connected_on(n1, cid) == 1, "the client on node 1")
    redis_cli(backends.redis_url, "FLUSHALL")
    subscribe(r, topic)  # its store re-creates the record (the SUBACK follows it)
    publish_qos1(n2, topic, b"still-mine")
    expect_publish(r, topic, b"still-mine")
    r.send(R.pingreq())
    r.expect(R.PINGRESP)  # node 1 has the PUBACK
    r3, ack = connect(n3, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    d = r.expect(R.DISCONNECT)
    assert d.rc == 0x8E, d
    wait_for(lambda: connected_on(n3, cid) == 1, "the client on node 3")
    publish_qos1(n2, topic, b"moved")
    expect_publish(r3, topic, b"moved")
    r3.close()


@pytest.mark.parametrize("clean", [True, False])
def test_after_redis_lost_its_data_a_claim_elsewhere_closes_the_old_connection(cluster, backends, clean):
    """Invariant 3 across a Redis that lost its data. Failed before the fix:
    epochs started again at 1, node 2's claim found no previous owner, and
    node 1's idle connection (a clean one never stores; a persistent one
    only on a change) stayed live beside node 2's for good."""
    n1, n2, _ = three(cluster)
    cid = uid("twice")
    kw = dict(clean=True) if clean else persistent(5)
    old, ack = connect(n1, cid, **kw)
    assert ack.rc == 0
    wait_for(lambda: connected_on(n1, cid) == 1, "the client on node 1")
    redis_cli(backends.redis_url, "FLUSHALL")
    new, ack = connect(n2, cid, **kw)
    assert ack.rc == 0, ack
    d = old.expect(R.DISCONNECT)
    assert d.rc == 0x8E, d
    assert old.is_closed()
    wait_for(lambda: connected_on(n1, cid) == 0 and connected_on(n2, cid) == 1, "one connection, on node 2")
    assert not new.is_closed(0.5)
    new.close()


SLOW_LEASE = ("--cluster-heartbeat", "4000")  # lease 12 s, fence point 9 s (cluster/lease.h)


def test_a_subscription_made_while_redis_was_down_is_stored_once_it_is_back(cluster, backends):
    """Failed before the fix: the store that failed (Redis unreachable) was
    never tried again, so the record never had the subscription, and once
    node 1 died (no release to bring the state) the session resumed on
    node 2 without it."""
    # A lease whose fence point (9 s) comes well after the Redis command
    # timeout (3 s): the client stays connected while node 1 knows Redis is
    # down and has not fenced itself yet.
    n1 = Node(*cluster.argv(uid("n1"), "--admin-token", ADMIN_TOKEN, *SLOW_LEASE))  # killed below
    try:
        redis_down_store_retry(cluster, backends, n1)
    finally:
        if n1.proc.poll() is None:
            n1.proc.kill()
            n1.proc.wait()


def redis_down_store_retry(cluster, backends, n1):
    n2, n3 = [cluster(uid("n%d" % i), "--admin-token", ADMIN_TOKEN, *SLOW_LEASE) for i in (2, 3)]
    cid, topic = uid("retry"), uid("rt") + "/t"
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    wait_for(lambda: connected_on(n1, cid) == 1, "the client on node 1")
    with redis_stopped(backends):
        # Not before node 1 knows: a command it had sent already would run
        # once Redis resumes.
        wait_for(lambda: "event=redis_timeout" in n1.log(), "node 1 giving up on Redis")
        r.send(R.subscribe(1, [(topic, 1)]))  # its store fails: Redis is known to be down
        r.send(R.disconnect())
    # The SUBACK waits for the store (commit "SUBACK follows the store"), the
    # DISCONNECT for the SUBACK.
    r.expect(R.SUBACK, timeout=WAIT)
    assert r.is_closed()

    def stored():
        out = subprocess.run(["redis-cli", "-p", backends.redis_url.rsplit(":", 1)[1].split("/")[0], "--no-raw",
                              "HGET", "shoal:sess:{%s}" % cid, "state"], capture_output=True, timeout=WAIT)
        return topic.encode() in out.stdout
    wait_for(stored, "the subscription in the session's record")
    n1.proc.kill()
    n1.proc.wait()
    r2, ack = connect(n2, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    wait_for(lambda: connected_on(n2, cid) == 1, "the client on node 2")
    publish_qos1(n3, topic, b"kept")
    expect_publish(r2, topic, b"kept")
    r2.close()


def test_past_the_lease_point_without_redis_connections_close_and_sessions_are_reasserted(cluster, backends):
    """The decision for a node that cannot reach Redis for longer than its
    lease allows (docs/architecture.md, "Fencing"): before its lease can
    expire it closes every connection, persistent or clean (past the lease
    another node may claim any of their client ids: invariant 3), with
    DISCONNECT 0x8B; once the lease is renewed it serves again and
    re-asserts every session it kept, so the persistent client resumes its
    session with what was published meanwhile. Replaces the earlier
    decision (connections stay past the lease), which the failover suite's
    partition scenario showed breaks invariant 3."""
    n1, n2 = [cluster(uid("n%d" % i), "--admin-token", ADMIN_TOKEN) for i in (1, 2)]
    pcid, topic = uid("leased"), uid("ls") + "/t"
    p5, ack = connect(n1, pcid, **persistent(5))
    assert ack.rc == 0
    subscribe(p5, topic)
    c5, ack = connect(n1, uid("cleanly"))
    assert ack.rc == 0
    with redis_stopped(backends):
        assert n1.wait_log("event=lease_lost", timeout=WAIT)
        for r in (p5, c5):
            seen = r.wait_closed(WAIT)
            assert [(p.type, p.rc) for p in seen if p.type == R.DISCONNECT] == [(R.DISCONNECT, 0x8B)], seen
    assert n1.wait_log("event=lease_regained", timeout=WAIT)
    assert n1.wait_log("event=sessions_reasserted", timeout=WAIT)
    publish_qos1(n2, topic, b"after")
    # The re-asserted record hands the session over as usual.
    again, ack = connect(n2, pcid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    expect_publish(again, topic, b"after")
    again.close()


def test_restored_subscriptions_pass_this_nodes_acl_and_subscription_limit(cluster, tmp_path):
    """A session resumed on a node whose ACL no longer lets the client read
    a filter, or whose --max-subscriptions is lower, gets what a SUBSCRIBE
    there would have given it. Failed before the fix: every stored
    subscription came back, denied or over the limit."""
    base = uid("acl")
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite %s/ok/#\ntopic readwrite %s/ok2/#\ntopic write %s/no/#\n" % (base, base, base))
    n1 = cluster(uid("n1"), "--admin-token", ADMIN_TOKEN)
    n2 = cluster(uid("n2"), "--admin-token", ADMIN_TOKEN, "--acl-file", str(acl), "--allow-anonymous", "true")
    n3 = cluster(uid("n3"), "--admin-token", ADMIN_TOKEN, "--max-subscriptions", "1")
    cid = uid("restricted")
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    r.send(R.subscribe(1, [(base + "/ok/+", 1), (base + "/no/+", 1), (base + "/ok2/+", 1)]))
    assert r.expect(R.SUBACK).codes == [1, 1, 1]
    r.send(R.disconnect())
    assert r.is_closed()

    r2, ack = connect(n2, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    wait_for(lambda: connected_on(n2, cid) == 1, "the client on node 2")
    publish_qos1(n1, base + "/no/a", b"denied")
    publish_qos1(n1, base + "/ok/a", b"allowed")
    expect_publish(r2, base + "/ok/a", b"allowed")
    with pytest.raises(TimeoutError):
        expect_publish(r2, base + "/no/a", b"denied", timeout=2)
    assert n2.wait_log("event=acl_denied action=restore_subscription", timeout=WAIT)
    r2.send(R.disconnect())
    assert r2.is_closed()

    # Node 2 dropped the denied filter for good; node 3 keeps one of two.
    r3, ack = connect(n3, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    wait_for(lambda: connected_on(n3, cid) == 1, "the client on node 3")
    publish_qos1(n1, base + "/ok2/a", b"over")
    publish_qos1(n1, base + "/ok/b", b"first")
    expect_publish(r3, base + "/ok/b", b"first")
    with pytest.raises(TimeoutError):
        expect_publish(r3, base + "/ok2/a", b"over", timeout=2)
    assert n3.wait_log("event=limit limit=max-subscriptions action=restore_subscription", timeout=WAIT)
    r3.close()


def test_restored_shared_subscriptions_pass_this_nodes_shared_group_limit(cluster, backends):  # noqa: F811
    """A session moved to a node with a lower --max-shared-groups brings
    back only the shared groups a SUBSCRIBE there would have founded (the
    first ones, the rest dropped and logged): each group is in every one of
    that node's membership refreshes. Failed before the fix: all three
    groups came back on the node allowing two."""
    base = uid("sg")
    n1 = cluster(uid("n1"))
    n2_id = uid("n2")
    n2 = cluster(n2_id, "--max-shared-groups", "2")
    cid = uid("grouped")
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    groups = ["$share/%s-%d/%s/%d" % (base, i, base, i) for i in range(3)]
    r.send(R.subscribe(1, [(g, 1) for g in groups] + [(base + "/plain", 1)]))
    assert r.expect(R.SUBACK).codes == [1, 1, 1, 1]
    r.send(R.disconnect())
    assert r.is_closed()

    r2, ack = connect(n2, cid, **persistent(5))
    assert ack.rc == 0 and ack.session_present, ack
    assert n2.wait_log("event=limit limit=shared-groups action=restore_subscription", timeout=WAIT), n2.log()[-6000:]
    wait_for(lambda: sorted(g for g in redis_cli(backends.redis_url, "SMEMBERS", "shoal:share-node:" + n2_id)
                            if base in g) == ["%s-%d/%s/%d" % (base, i, base, i) for i in range(2)],
             "node 2 announcing the first two groups only")
    publish_qos1(n1, base + "/plain", b"kept")
    expect_publish(r2, base + "/plain", b"kept")
    r2.close()


def record_has(backends, cid, needle):
    out = subprocess.run(["redis-cli", "-p", backends.redis_url.rsplit(":", 1)[1].split("/")[0], "--no-raw",
                          "HGET", "shoal:sess:{%s}" % cid, "state"], capture_output=True, timeout=WAIT)
    return needle.encode() in out.stdout


def test_suback_of_a_persistent_session_follows_the_store_that_records_it(cluster, backends):
    """An acknowledged subscription survives the node: SUBACK waits for the
    store. Failed before the fix: SUBACK came at once while Redis was
    unreachable, for a subscription no record had."""
    n1 = cluster(uid("n1"), "--admin-token", ADMIN_TOKEN, "--cluster-heartbeat", "4000")  # lease 12 s
    cid, topic = uid("durable"), uid("du") + "/t"
    r, ack = connect(n1, cid, **persistent(5))
    assert ack.rc == 0
    with redis_stopped(backends):
        wait_for(lambda: "event=redis_timeout" in n1.log(), "node 1 giving up on Redis")
        r.send(R.subscribe(1, [(topic, 1)]))
        with pytest.raises(TimeoutError):
            r.expect(R.SUBACK, timeout=1)
    sa = r.expect(R.SUBACK, timeout=WAIT)
    assert sa.codes == [1], sa
    assert record_has(backends, cid, topic), "SUBACK before the record had the subscription"
    # And on a healthy cluster: by the SUBACK the record has it.
    topic2 = topic + "2"
    r.send(R.subscribe(2, [(topic2, 1)]))
    assert r.expect(R.SUBACK).codes == [1]
    assert record_has(backends, cid, topic2)
    r.close()
