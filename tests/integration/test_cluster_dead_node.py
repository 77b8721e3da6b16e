# SPDX-License-Identifier: Apache-2.0
"""Wills and dead nodes (issue 17, docs/architecture.md "Wills and dead
nodes"): when a node is killed with SIGKILL, one survivor publishes the
wills of its clients once, honouring Will Delay, skips the will of a client
that reconnected elsewhere within its delay, and gives the dead node's
sessions their expiry in Redis.

Bound: a will without delay reaches a subscriber on another node within
the claim TTL (3 heartbeats, 0.9 s here) + the same again as a grace + the
survivors' poll (1 s) + a Kafka round trip; the tests wait up to WAIT
(30 s) for it, for ASan and a loaded machine."""
import time

import mqttraw as R
from conftest import Node
from pahoclient import uid
from test_cluster import ADMIN_TOKEN, WAIT, backends, cluster, redis_cli, wait_for  # noqa: F401 (fixtures)
from test_cluster_sessions import connect, connected_on, three  # noqa: F401


def will(topic, payload, qos=1, delay=None):
    w = {"topic": topic, "payload": payload, "qos": qos}
    if delay is not None:
        w["properties"] = {R.P_WILL_DELAY: delay}
    return w


def stored(backends, cid):
    """Has the client's session record a stored state (with its will)?"""
    return redis_cli(backends.redis_url, "HEXISTS", "shoal:sess:{%s}" % cid, "state") == ["1"]


def record_exists(backends, cid):
    return redis_cli(backends.redis_url, "EXISTS", "shoal:sess:{%s}" % cid) == ["1"]


def instance_listed(backends, node_id):
    """Is an instance of node_id still in the registry (not settled)?"""
    return any(k.endswith("|" + node_id) for k in redis_cli(backends.redis_url, "HKEYS", "shoal:instances"))


class Wills:
    """A subscriber to base/# on a surviving node, recording (payload, time)."""

    def __init__(self, node, base):
        self.r, _ = connect(node, uid("watch"))
        self.r.send(R.subscribe(1, [(base + "/#", 1)]))
        assert self.r.expect(R.SUBACK).codes == [1]
        self.got = []

    def pump(self, until, timeout):
        deadline = time.time() + timeout
        while not until() and time.time() < deadline:
            try:
                p = self.r.recv(timeout=0.5)
            except TimeoutError:
                continue
            if p is not None and p.type == R.PUBLISH:
                if p.qos:
                    self.r.send(R.puback(p.pid))
                self.got.append((p.payload, time.time()))
        return until()

    def count(self, payload):
        return sum(1 for p, _ in self.got if p == payload)


def killed_node(cluster, name):
    """A node outside the fixture (which fails a node that did not exit 0)."""
    return Node(*cluster.argv(name))


def kill(n):
    n.proc.kill()
    n.proc.wait(WAIT)
    return time.time()


def test_sigkill_publishes_each_will_once_with_delay_and_expires_sessions(cluster, backends):
    """Fails on the code before: no will of a killed node's client was ever
    published, and its records stayed in Redis without expiry."""
    name = uid("dead")
    n1 = killed_node(cluster, name)
    try:
        n2, n3 = cluster(uid("s2")), cluster(uid("s3"))
        base = uid("wills")
        watch = Wills(n3, base)
        ids = {k: uid(k) for k in ("v5", "v311", "delayed", "expiring")}
        c5, a = connect(n1, ids["v5"], will=will(base + "/v5", b"gone-v5"))
        assert a.rc == 0
        c4, a = connect(n1, ids["v311"], version=4, will=will(base + "/v311", b"gone-v311"))
        assert a.rc == 0
        cd, a = connect(n1, ids["delayed"], expiry=60, will=will(base + "/delayed", b"gone-late", delay=5))
        assert a.rc == 0
        ce, a = connect(n1, ids["expiring"], clean=False, expiry=4)
        assert a.rc == 0
        for k in ("v5", "v311", "delayed"):
            wait_for(lambda: stored(backends, ids[k]), "the will of %s stored" % k)
        wait_for(lambda: record_exists(backends, ids["expiring"]), "the persistent record")
        wait_for(lambda: instance_listed(backends, name), "node 1 registered")
        assert redis_cli(backends.redis_url, "PTTL", "shoal:sess:{%s}" % ids["expiring"]) == ["-1"]

        t_kill = kill(n1)
        assert watch.pump(lambda: watch.count(b"gone-v5") and watch.count(b"gone-v311"), WAIT), watch.got
        assert watch.pump(lambda: watch.count(b"gone-late"), WAIT), watch.got
        t_late = [t for p, t in watch.got if p == b"gone-late"][0]
        # MQTT 5 §3.1.3.2.2: not before the delay (the death is noticed after
        # the kill, so this holds whatever the machine's speed).
        assert t_late - t_kill >= 5.0, t_late - t_kill
        # Settled: the dead instance leaves the registry once every will is out.
        wait_for(lambda: not instance_listed(backends, name), "node 1's sessions settled")
        # The clean sessions' records are gone; the persistent ones expire
        # with their sessions (the delayed one 60 s, the other 4 s after the death).
        for k in ("v5", "v311"):
            wait_for(lambda: not record_exists(backends, ids[k]), "%s's record deleted" % k)
        assert 0 < int(redis_cli(backends.redis_url, "PTTL", "shoal:sess:{%s}" % ids["delayed"])[0]) <= 60000
        wait_for(lambda: not record_exists(backends, ids["expiring"]), "the persistent record expiring")
        # Once: nothing more arrives (a second publish would come within the
        # same bound as the first, from the same settled registry).
        watch.pump(lambda: False, 3)
        assert [watch.count(p) for p in (b"gone-v5", b"gone-v311", b"gone-late")] == [1, 1, 1], watch.got
        for c in (c5, c4, cd, ce):
            c.close()
        watch.r.close()
    finally:
        if n1.proc.poll() is None:
            n1.proc.kill()
            n1.proc.wait()


def test_reconnect_elsewhere_within_the_delay_cancels_the_will(cluster, backends):
    """A client of the killed node that reconnects on another node before
    its will's delay is up: its will is never published. A second client
    that does not come back is the control (its will does arrive)."""
    name = uid("dead")
    n1 = killed_node(cluster, name)
    try:
        n2, n3 = cluster(uid("s2"), "--admin-token", ADMIN_TOKEN), cluster(uid("s3"))
        base = uid("cancel")
        watch = Wills(n3, base)
        back, gone = uid("back"), uid("gone")
        cb, a = connect(n1, back, clean=False, expiry=120, will=will(base + "/back", b"should-not", delay=15))
        assert a.rc == 0
        cg, a = connect(n1, gone, expiry=120, will=will(base + "/gone", b"control", delay=2))
        assert a.rc == 0
        for cid in (back, gone):
            wait_for(lambda: stored(backends, cid), "the will of %s stored" % cid)
        wait_for(lambda: instance_listed(backends, name), "node 1 registered")
        t_kill = kill(n1)
        # The client retries until node 2 takes its session (node 1's claim
        # expires after 3 heartbeats).
        deadline = time.time() + WAIT
        while time.time() < deadline:
            r2, a = connect(n2, back, clean=False, expiry=120)
            if a.rc == 0:
                break
            r2.close()
            time.sleep(0.2)
        assert a.rc == 0 and a.session_present, a
        assert time.time() - t_kill < 15, "reconnected too late for this test to mean anything"
        wait_for(lambda: connected_on(n2, back) == 1, "the client on node 2")
        assert watch.pump(lambda: watch.count(b"control"), WAIT), watch.got
        # The instance is settled only after the cancelled will's due time
        # has passed without it (the survivor looks again then).
        wait_for(lambda: not instance_listed(backends, name), "node 1's sessions settled", timeout=WAIT + 15)
        watch.pump(lambda: False, 2)
        assert watch.count(b"should-not") == 0, watch.got
        assert watch.count(b"control") == 1, watch.got
        # The reconnected session is node 2's, not expiring while connected.
        assert redis_cli(backends.redis_url, "PTTL", "shoal:sess:{%s}" % back) == ["-1"]
        r2.close()
        cb.close()
        cg.close()
        watch.r.close()
    finally:
        if n1.proc.poll() is None:
            n1.proc.kill()
            n1.proc.wait()


def test_a_node_restarted_with_the_same_id_settles_its_predecessor_not_itself(cluster, backends):
    """A node killed and started again under the same --node-id is a new
    instance (a new token): it publishes its predecessor's clients' wills
    (here the only node left to do it) and never its own live clients'."""
    name = uid("phoenix")
    n1 = killed_node(cluster, name)
    n1b = None
    try:
        base = uid("again")
        old_tok = redis_cli(backends.redis_url, "GET", "shoal:node:{%s}" % name)[0].split("|")[0]
        ca, a = connect(n1, uid("old"), will={**will(base + "/old", b"old-will"), "retain": True})
        assert a.rc == 0
        wait_for(lambda: instance_listed(backends, name), "node 1 registered")
        wait_for(lambda: redis_cli(backends.redis_url, "KEYS", "shoal:sess:*"), "a record")
        kill(n1)
        n1b = killed_node(cluster, name)  # waits for the old claim to expire
        new_tok = redis_cli(backends.redis_url, "GET", "shoal:node:{%s}" % name)[0].split("|")[0]
        assert new_tok != old_tok
        cb, a = connect(n1b, uid("new"), will=will(base + "/new", b"new-will"))
        assert a.rc == 0
        watch = Wills(n1b, base)  # the old will is retained: it arrives whenever it was published
        assert watch.pump(lambda: watch.count(b"old-will"), WAIT), watch.got
        old_inst = "%s|%s" % (old_tok, name)
        wait_for(lambda: redis_cli(backends.redis_url, "HEXISTS", "shoal:instances", old_inst) == ["0"],
                 "the predecessor settled")
        assert "event=dead_node_reap instance=%s" % old_inst in n1b.log()
        assert redis_cli(backends.redis_url, "HEXISTS", "shoal:instances", "%s|%s" % (new_tok, name)) == ["1"]
        watch.pump(lambda: False, 2)
        assert watch.count(b"new-will") == 0, watch.got
        assert watch.count(b"old-will") == 1, watch.got
        cb.send(R.disconnect())  # normal disconnect: no will
        for c in (ca, cb, watch.r):
            c.close()
    finally:
        for n in (n1, n1b):
            if n and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
