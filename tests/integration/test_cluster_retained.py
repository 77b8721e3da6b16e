# SPDX-License-Identifier: Apache-2.0
"""Retained messages in a cluster: Kafka's order is the truth (issue 17).
Every node applies retained updates from the stream, its own included; the
Redis snapshot (shoal:retained, positions in shoal:retained:at) only moves
forward by stream offset, deletes are tombstones, and a node catches up from
the snapshot's watermarks when it starts. Real Redis, real Kafka, 2-3 nodes."""
import json
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request

from pahoclient import Client, uid
from test_cluster import (ADMIN_TOKEN, WAIT, backends, cluster, http_get, redis_call,  # noqa: F401 (fixtures)
                          wait_for)

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def admin(node, method, path):
    req = urllib.request.Request(node.http_url + path, method=method,
                                 headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    try:
        with _opener.open(req, timeout=WAIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def retained_on(node, topic):
    """The retained payload preview the node's index holds for topic (admin
    API), or None."""
    status, body = admin(node, "GET", "/api/v1/retained?filter=" + urllib.request.quote(topic, safe=""))
    assert status == 200, body
    rows = json.loads(body)["retained"]
    return rows[0]["payload_preview"].encode() if rows else None


def snapshot_value(backends, topic):
    """The payload shoal:retained holds for topic (the record's tail), or None."""
    v = redis_call(backends.redis_url, "HGET", "shoal:retained", topic)
    return v


def snapshot_payload_is(backends, topic, payload):
    v = snapshot_value(backends, topic)
    if payload is None:
        return v is None
    return v is not None and v.endswith(payload)


def kafka_last_payload(backends, ktopic, topic, candidates):
    """The payload of the last record keyed `topic` in Kafka's order (which
    of `candidates` the last record's value ends with)."""
    seen = kafka_payloads(backends, ktopic, topic, candidates)
    return seen[-1] if seen else None


def kafka_payloads(backends, ktopic, topic, candidates):
    """Which of `candidates` the records keyed `topic` end with, in Kafka's
    order (one read of the topic)."""
    sep = b"\x1e<shoal-record-end>\x1e"
    out = subprocess.run(["kcat", "-C", "-b", backends.bootstrap, "-t", ktopic, "-o", "beginning", "-e", "-q",
                          "-f", "%k\x1f%s" + sep.decode()],
                         check=True, capture_output=True, timeout=60).stdout
    seen = []
    for rec in out.split(sep):
        key, _, value = rec.partition(b"\x1f")
        if key.decode(errors="replace") == topic and value:
            for c in candidates:
                if value.endswith(c):
                    seen.append(c)
    return seen


def redis_pid(backends):
    with open(os.path.join(backends.redis["REDIS_DIR"], "redis.pid")) as f:
        return int(f.read())


def ready(node):
    return http_get(node, "/health/ready")[0]


def admin_node(cluster, name, *extra):
    return cluster(name, "--admin-token", ADMIN_TOKEN, *extra)


def test_concurrent_sets_on_two_nodes_converge_to_kafkas_last(cluster, backends):
    """Two nodes set the same topic at the same instant, many rounds, QoS 0
    and QoS 1: every node and the snapshot end with the value Kafka ordered
    last (today each node kept the other's)."""
    n1, n2 = admin_node(cluster, uid("n1")), admin_node(cluster, uid("n2"))
    p1, p2 = Client(n1), Client(n2)
    topic = uid("race") + "/t"
    for rnd in range(12):
        qos = rnd % 2
        vals = [b"a-%d" % rnd, b"b-%d" % rnd]
        go = threading.Barrier(2)

        def pub(client, value):
            go.wait(10)
            client.publish(topic, value, qos=qos, retain=True)
        ts = [threading.Thread(target=pub, args=(p, v)) for p, v in ((p1, vals[0]), (p2, vals[1]))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(WAIT)
        last = wait_for(lambda: last_of_both(backends, cluster.topic, topic, vals),
                        "both records of round %d in Kafka" % rnd)
        for n in (n1, n2):
            wait_for(lambda n=n: retained_on(n, topic) == last,
                     "round %d: %s holds Kafka's last value %r (has %r)" % (rnd, n.port, last, retained_on(n, topic)))
        wait_for(lambda: snapshot_payload_is(backends, topic, last), "round %d: the snapshot holds %r" % (rnd, last))
    # A node started now loads the same value.
    n3 = admin_node(cluster, uid("n3"))
    assert retained_on(n3, topic) == last


def last_of_both(backends, ktopic, topic, vals):
    """Kafka's last of `vals` once it holds a record of each, else None."""
    seen = kafka_payloads(backends, ktopic, topic, vals)
    return seen[-1] if all(v in seen for v in vals) else None


def test_qos1_retained_then_qos0_retained_the_later_wins(cluster, backends):
    """A QoS 1 retained set followed at once by a QoS 0 one on the same
    topic from the same client: the QoS 0 one is later in the stream and
    wins on the publishing node too (today the QoS 1 one, stored at its
    delivery report, overwrote it there)."""
    n1, n2 = admin_node(cluster, uid("n1")), admin_node(cluster, uid("n2"))
    pub = Client(n1)
    for i in range(5):
        topic = uid("q10") + "/t"
        info = pub.publish(topic, b"first-qos1", qos=1, retain=True, wait=False)
        pub.publish(topic, b"second-qos0", qos=0, retain=True)
        info.wait_for_publish(WAIT)
        for n in (n1, n2):
            wait_for(lambda n=n: retained_on(n, topic) == b"second-qos0",
                     "round %d: node %s holds the later set (has %r)" % (i, n.port, retained_on(n, topic)))
        wait_for(lambda: snapshot_payload_is(backends, topic, b"second-qos0"), "the snapshot holds the later set")


def test_qos1_retained_publisher_sees_its_own_set_after_puback(cluster):
    """Read your writes on the publishing node: once a QoS 1 retained
    publish is acknowledged, a subscriber there gets it."""
    n1, _ = cluster(uid("n1")), cluster(uid("n2"))
    pub = Client(n1)
    for i in range(10):
        topic = uid("ryw") + "/t"
        pub.publish(topic, b"v%d" % i, qos=1, retain=True)
        sub = Client(n1)
        sub.subscribe(topic, qos=1)
        m = sub.get(WAIT)
        assert (m.payload, m.retain) == (b"v%d" % i, True)
        sub.disconnect()


def test_admin_delete_on_one_node_removes_it_on_all(cluster, backends):
    nodes = [admin_node(cluster, uid("n%d" % i)) for i in (1, 2, 3)]
    topic = uid("adm") + "/t"
    Client(nodes[0]).publish(topic, b"kept-until-admin", qos=1, retain=True)
    for n in nodes:
        wait_for(lambda n=n: retained_on(n, topic) == b"kept-until-admin", "the set on every node")
    wait_for(lambda: snapshot_payload_is(backends, topic, b"kept-until-admin"), "the set in the snapshot")
    sub = Client(nodes[2])
    sub.subscribe(topic, qos=1)
    assert sub.get(WAIT).payload == b"kept-until-admin"
    status, body = admin(nodes[1], "DELETE", "/api/v1/retained/" + topic)
    assert status == 200, body
    for n in nodes:
        wait_for(lambda n=n: retained_on(n, topic) is None, "the delete on node %s" % n.port)
    wait_for(lambda: snapshot_value(backends, topic) is None, "the delete in the snapshot")
    # Not a message: a live subscriber sees nothing of an admin delete.
    sub.none(1.0)
    # Deleting what is not there: 404, as on a single node.
    status, _ = admin(nodes[0], "DELETE", "/api/v1/retained/" + topic)
    assert status == 404
    # A node started now does not bring it back.
    n4 = admin_node(cluster, uid("n4"))
    assert retained_on(n4, topic) is None


def test_delete_then_restart_a_node_stays_deleted(cluster, backends):
    n1 = admin_node(cluster, uid("n1"))
    n2_id = uid("n2")
    n2 = admin_node(cluster, n2_id)
    topic = uid("del") + "/t"
    pub = Client(n1)
    pub.publish(topic, b"to-delete", qos=1, retain=True)
    wait_for(lambda: retained_on(n2, topic) == b"to-delete", "the set on n2")
    pub.publish(topic, b"", qos=1, retain=True)
    wait_for(lambda: retained_on(n2, topic) is None, "the delete on n2")
    wait_for(lambda: snapshot_value(backends, topic) is None, "the delete in the snapshot")
    # The tombstone keeps the position the delete had.
    at = redis_call(backends.redis_url, "HGET", "shoal:retained:at", topic)
    assert at is not None and at.count(b":") == 2, at
    assert n2.stop() == 0
    # Make the restarted node replay the whole stream (its watermarks back
    # at 0): it reads the set again, older than the tombstone, which must
    # neither come back in its index nor overwrite the snapshot.
    for p in range(cluster.partitions):
        redis_call(backends.redis_url, "HSET", "shoal:retained:offsets", str(p), "0")
    n2 = admin_node(cluster, n2_id)
    assert retained_on(n2, topic) is None
    assert snapshot_value(backends, topic) is None
    assert redis_call(backends.redis_url, "HGET", "shoal:retained:at", topic) == at
    assert retained_on(n1, topic) is None


def test_set_and_delete_while_redis_is_stopped_reach_the_snapshot(cluster, backends):
    """Redis hangs (SIGSTOP) and the nodes notice; a QoS 0 retained set and
    a delete still go through Kafka to every node, and once Redis answers
    again the snapshot catches up: a node started afterwards sees the set
    and not the deleted one. The nodes' lease is long (12 s): they notice
    the hung Redis (its command timeout) well before they would fence
    themselves and close the publisher (test_cluster_fence.py)."""
    lease = ("--cluster-heartbeat", "4000")
    n1, n2 = admin_node(cluster, uid("n1"), *lease), admin_node(cluster, uid("n2"), *lease)
    base = uid("stop")
    pub = Client(n1)
    pub.publish(base + "/gone", b"old", qos=1, retain=True)
    wait_for(lambda: snapshot_payload_is(backends, base + "/gone", b"old"), "the first set in the snapshot")
    pid = redis_pid(backends)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: ready(n1) == 503 and ready(n2) == 503, "the nodes to notice Redis is gone", timeout=60)
        pub.publish(base + "/new", b"set-during-outage", qos=0, retain=True)
        pub.publish(base + "/gone", b"", qos=0, retain=True)
        wait_for(lambda: retained_on(n2, base + "/new") == b"set-during-outage", "the set on n2 (through Kafka)")
        wait_for(lambda: retained_on(n2, base + "/gone") is None, "the delete on n2 (through Kafka)")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: ready(n1) == 200, "n1 ready again", timeout=60)
    wait_for(lambda: snapshot_payload_is(backends, base + "/new", b"set-during-outage"),
             "the set made during the outage in the snapshot", timeout=60)
    wait_for(lambda: snapshot_value(backends, base + "/gone") is None,
             "the delete made during the outage in the snapshot", timeout=60)
    n3 = admin_node(cluster, uid("n3"))
    assert retained_on(n3, base + "/new") == b"set-during-outage"
    assert retained_on(n3, base + "/gone") is None
