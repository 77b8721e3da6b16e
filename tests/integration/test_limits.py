# SPDX-License-Identifier: Apache-2.0
"""Limits that protect the node: per-client publish rates (reading paused,
nothing lost), subscriptions per client, topic levels and length (publish,
subscribe, will), the queue policy for a full session queue, and one log
line per client and limit however often it is hit."""
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

import pytest

import mqttraw as R
from pahoclient import Client, uid
from test_http import wait_for

WAIT = 30  # seconds: generous, the machine is a noisy 2-core box
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def metric(node, name, **labels):
    """One sample from the node's /metrics, or None."""
    with _opener.open(node.http_url + "/metrics", timeout=WAIT) as r:
        text = r.read().decode()
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == str(v) for k, v in labels.items()):
            return float(m.group(3))
    return None


def limit_lines(node, limit, client):
    return [l for l in node.log().splitlines()
            if "event=limit limit=%s " % limit in l and " client=%s " % client in l]


def the_limit_line(node, limit, client):
    """Exactly one `event=limit` line for this client: waited for, since a
    reader thread takes the node's log (the metric can be seen first)."""
    wait_for(lambda: limit_lines(node, limit, client), "the %s log line" % limit)
    lines = limit_lines(node, limit, client)
    assert len(lines) == 1, lines


def raw(node, cid, version=5, **kw):
    r = R.RawClient(node, version=version, timeout=WAIT)
    ack = r.connect(cid, version=version, **kw)
    return r, ack


# --- publish rate ---------------------------------------------------------------------


def test_publish_rate_pauses_reading_and_loses_nothing(node_factory):
    """A client publishing QoS 0 as fast as it can with --max-publish-rate 50
    gets about 50/s through, every message arrives in order, and another
    client publishing meanwhile is not held up."""
    n = node_factory("--workers", "2", "--max-publish-rate", "50")
    t, t2 = uid("rate"), uid("healthy")
    count = 300
    sub = Client(n)
    sub.subscribe(t, 0)
    other_sub = Client(n)
    other_sub.subscribe(t2, 1)
    cid = uid("flooder")
    pub, ack = raw(n, cid)
    assert ack.rc == 0
    start = time.time()
    pub.send(b"".join(R.publish(t, b"%d" % i) for i in range(count)))
    # While the flooder's backlog drains at 50/s (about 5 s), a healthy
    # client's messages go straight through.
    with Client(n) as healthy:
        for i in range(5):
            healthy.publish(t2, b"h%d" % i, qos=1)
    got_healthy = [m.payload for m in other_sub.get_n(5, timeout=WAIT)]
    healthy_done = time.time()
    assert got_healthy == [b"h%d" % i for i in range(5)]
    got = [m.payload for m in sub.get_n(count, timeout=60)]
    elapsed = time.time() - start
    assert got == [b"%d" % i for i in range(count)], "lost or reordered"
    assert healthy_done < start + elapsed - 1, "the healthy client waited for the flooder's backlog"
    # One second's burst, then 50/s: (300 - 50) / 50 = 5 s; a generous band.
    rate = (count - 50) / elapsed
    print("publish rate: %d messages in %.2f s, %.1f/s after the burst" % (count, elapsed, rate))
    assert 15 <= rate <= 65, "%.1f msg/s" % rate
    assert metric(n, "shoal_limit_refusals_total", limit="publish-rate") > 0
    the_limit_line(n, "publish-rate", cid)
    pub.send(R.pingreq())
    assert pub.expect(R.PINGRESP).type == R.PINGRESP
    pub.close()
    sub.disconnect()
    other_sub.disconnect()


def test_publish_bytes_rate(node_factory):
    """--max-publish-bytes-rate 20000: 100 KB of QoS 1 takes about 4 s and
    every message is acknowledged and delivered in order."""
    n = node_factory("--max-publish-bytes-rate", "20000")
    t = uid("bytes")
    sub = Client(n)
    sub.subscribe(t, 1)
    cid = uid("bulk")
    pub, _ = raw(n, cid)
    count, size = 100, 1000
    start = time.time()
    pub.send(b"".join(R.publish(t, b"%04d" % i + b"x" * (size - 4), qos=1, pid=i + 1) for i in range(count)))
    acks = [pub.expect(R.PUBACK, timeout=60) for _ in range(count)]
    elapsed = time.time() - start
    assert [a.pid for a in acks] == list(range(1, count + 1))
    assert all(a.rc == 0 for a in acks)
    got = [m.payload[:4] for m in sub.get_n(count, timeout=WAIT)]
    assert got == [b"%04d" % i for i in range(count)]
    # 20 KB burst, then 20 KB/s: about 4 s for the rest.
    print("bytes rate: %d bytes in %.2f s" % (count * size, elapsed))
    assert elapsed >= 2.5, elapsed
    assert metric(n, "shoal_limit_refusals_total", limit="publish-bytes-rate") > 0
    the_limit_line(n, "publish-bytes-rate", cid)
    pub.close()
    sub.disconnect()


# --- subscriptions per client --------------------------------------------------------------


@pytest.mark.parametrize("version", [5, 4])
def test_max_subscriptions(node_factory, version):
    n = node_factory("--max-subscriptions", "3")
    base = uid("ms")
    a, b, c, d, e = ("%s/%s" % (base, x) for x in "abcde")
    cid = uid("subs")
    r, ack = raw(n, cid, version=version)
    assert ack.rc == 0
    r.send(R.subscribe(1, [(a, 1), (b, 1)], version=version))
    assert r.expect(R.SUBACK).codes == [1, 1]
    # Re-subscribing a counts once; c is the third; d and e are over.
    r.send(R.subscribe(2, [(a, 0), (c, 1), (d, 1), (e, 1)], version=version))
    refused = 0x97 if version == 5 else 0x80
    assert r.expect(R.SUBACK).codes == [0, 1, refused, refused]
    # The granted ones work, the refused ones do not.
    with Client(n) as pub:
        pub.publish(d, b"no", qos=1)
        pub.publish(c, b"yes", qos=1)
    p = r.expect(R.PUBLISH)
    assert (p.topic, p.payload) == (c, b"yes")
    r.send(R.puback(p.pid))
    # Freeing a slot lets a new filter in.
    r.send(R.unsubscribe(3, [b], version=version))
    r.expect(R.UNSUBACK)
    r.send(R.subscribe(4, [(d, 1)], version=version))
    assert r.expect(R.SUBACK).codes == [1]
    assert metric(n, "shoal_limit_refusals_total", limit="subscriptions") == 2
    the_limit_line(n, "subscriptions", cid)
    # Another client has its own allowance.
    with Client(n, version=version) as other:
        assert other.subscribe([(a, 0), (b, 0), (c, 0)]) == [0, 0, 0]
    r.close()


def test_subscriptions_without_a_limit_stop_at_65535(node_factory):
    """--max-subscriptions 0 still bounds a session's list: 65,535 (what a
    session record holds, SC_MAX_SUBS; past it a cluster node could no
    longer store the session). The 65,535th filter is granted, the next
    new one gets 0x97 with the limit's log line; re-subscribing a held one
    still works, and the node keeps serving."""
    n = node_factory()
    base = uid("cap")
    cid = uid("subs")
    r, ack = raw(n, cid)
    assert ack.rc == 0
    total, batch, pid = 65535, 5000, 1
    for start in range(0, total, batch):
        flts = ["%s/%d" % (base, i) for i in range(start, min(start + batch, total))]
        r.send(R.subscribe(pid, [(f, 0) for f in flts]))
        assert r.expect(R.SUBACK, timeout=WAIT * 4).codes == [0] * len(flts)
        pid += 1
    r.send(R.subscribe(pid, [("%s/over" % base, 1), ("%s/7" % base, 1)]))
    assert r.expect(R.SUBACK, timeout=WAIT * 4).codes == [0x97, 1]
    the_limit_line(n, "subscriptions", cid)
    with Client(n) as pub:
        pub.publish("%s/over" % base, b"no", qos=1)
        pub.publish("%s/7" % base, b"yes", qos=1)
    p = r.expect(R.PUBLISH, timeout=WAIT)
    assert (p.topic, p.payload) == ("%s/7" % base, b"yes")
    r.close()


# --- topic levels and length ------------------------------------------------------------------


@pytest.fixture
def topic_node(node_factory):
    return node_factory("--max-topic-levels", "4", "--max-topic-length", "32")


def test_publish_topic_limits_v5_qos1_and_2_get_0x90(topic_node):
    n = topic_node
    watcher = Client(n)
    base = uid("tl")[:12]
    watcher.subscribe(base + "/#", 1)
    cid = uid("deep")
    r, _ = raw(n, cid)
    deep = base + "/b/c/d/e"          # 5 levels
    long_ = base + "/" + "x" * 40     # over 32 bytes
    ok = base + "/b/c/d"              # 4 levels, within 32 bytes
    assert len(ok) <= 32
    r.send(R.publish(deep, b"1", qos=1, pid=1))
    a = r.expect(R.PUBACK)
    assert (a.pid, a.rc) == (1, 0x90)
    r.send(R.publish(long_, b"2", qos=2, pid=2))
    a = r.expect(R.PUBREC)
    assert (a.pid, a.rc) == (2, 0x90)
    # The connection stays; a topic within the limits goes through.
    r.send(R.publish(ok, b"fine", qos=1, pid=3))
    a = r.expect(R.PUBACK)
    assert (a.pid, a.rc) == (3, 0)
    m = watcher.get()
    assert (m.topic, m.payload) == (ok, b"fine")
    watcher.none()
    r.close()
    watcher.disconnect()


def test_default_topic_levels_is_128(node_factory):
    n = node_factory()
    r, _ = raw(n, uid("levels"))
    base = uid("d")
    r.send(R.publish(base + "/x" * 127, b"ok", qos=1, pid=1))      # 128 levels
    r.send(R.publish(base + "/x" * 128, b"over", qos=1, pid=2))    # 129 levels
    # 0x10: accepted, no subscriber; 0x90: refused.
    assert [(a.pid, a.rc) for a in (r.expect(R.PUBACK), r.expect(R.PUBACK))] == [(1, 0x10), (2, 0x90)]
    r.close()


def test_publish_topic_limits_v5_qos0_disconnects_0x90(topic_node):
    r, _ = raw(topic_node, uid("deep0"))
    r.send(R.publish(uid("x")[:8] + "/a/b/c/d/e", b"x", qos=0))
    seen = r.wait_closed()
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x90)], seen


def test_publish_topic_limits_v311_closes(topic_node):
    r, _ = raw(topic_node, uid("deep311"), version=4)
    r.send(R.publish(uid("x")[:8] + "/" + "y" * 40, b"x", qos=1, pid=1, version=4))
    assert r.wait_closed() == []


@pytest.mark.parametrize("version", [5, 4])
def test_subscribe_topic_limits(topic_node, version):
    r, _ = raw(topic_node, uid("subdeep"), version=version)
    base = uid("f")[:10]
    r.send(R.subscribe(1, [(base + "/+/c/d/#", 1), ("$share/g/" + base + "/b/c/d/e", 1),
                           (base + "/" + "z" * 40, 1), (base + "/+/c/#", 1)], version=version))
    bad = 0x8F if version == 5 else 0x80
    assert r.expect(R.SUBACK).codes == [bad, bad, bad, 1]
    r.close()


@pytest.mark.parametrize("version", [5, 4])
def test_will_topic_limits(topic_node, version):
    r = R.RawClient(topic_node, version=version, timeout=WAIT)
    ack = r.connect(uid("willdeep"), version=version,
                    will={"topic": uid("w")[:8] + "/a/b/c/d", "payload": b"bye", "qos": 1})
    # v5: Topic Name invalid; 3.1.1 has no such code: 0x03 server unavailable.
    assert ack.rc == (0x90 if version == 5 else 0x03)
    assert r.is_closed()


# --- queue policy -------------------------------------------------------------------------


def test_full_queue_evicts_oldest_qos0_and_keeps_qos1(node_factory):
    """An offline persistent subscriber with --max-queued 10 is sent 5 QoS 1
    and 25 QoS 0 messages: it gets every QoS 1 and the newest QoS 0, in
    order; the rest are counted as evicted."""
    n = node_factory("--max-queued", "10")
    cid, t = uid("slow"), uid("mix")
    r, _ = raw(n, cid, clean=True, properties={R.P_SESSION_EXPIRY: 300})
    r.send(R.subscribe(1, [(t, 1)]))
    assert r.expect(R.SUBACK).codes == [1]
    r.send(R.disconnect(0))
    assert r.is_closed()
    wait_for(lambda: metric(n, "shoal_sessions", state="offline") == 1, "the session to be offline")
    evicted0 = metric(n, "shoal_messages_dropped_total", reason="queue-full-qos0-evicted")
    with Client(n) as pub:
        for i in range(30):
            pub.publish(t, b"%d" % i, qos=1 if i % 6 == 0 else 0)
    wait_for(lambda: metric(n, "shoal_messages_dropped_total", reason="queue-full-qos0-evicted") == evicted0 + 20,
             "20 QoS 0 evictions")
    assert metric(n, "shoal_queued_messages") == 10
    assert metric(n, "shoal_messages_dropped_total", reason="queue-full") == 0
    r, ack = raw(n, cid, clean=False, properties={R.P_SESSION_EXPIRY: 300})
    assert ack.session_present
    got = []
    for _ in range(10):
        p = r.expect(R.PUBLISH)
        if p.qos:
            r.send(R.puback(p.pid))
        got.append((int(p.payload), p.qos))
    assert got == [(0, 1), (6, 1), (12, 1), (18, 1), (24, 1), (25, 0), (26, 0), (27, 0), (28, 0), (29, 0)], got
    wait_for(lambda: metric(n, "shoal_queued_messages") == 0, "the queue to drain")
    wait_for(lambda: metric(n, "shoal_inflight_messages") == 0, "the acks to clear the window")
    r.close()


def test_full_queue_of_qos1_refuses_the_new_message(node_factory):
    n = node_factory("--max-queued", "3")
    cid, t = uid("full"), uid("q1")
    r, _ = raw(n, cid, properties={R.P_SESSION_EXPIRY: 300})
    r.send(R.subscribe(1, [(t, 1)]))
    r.expect(R.SUBACK)
    r.send(R.disconnect(0))
    assert r.is_closed()
    wait_for(lambda: metric(n, "shoal_sessions", state="offline") == 1, "the session to be offline")
    with Client(n) as pub:
        for i in range(5):
            pub.publish(t, b"%d" % i, qos=1)
        pub.publish(t, b"late0", qos=0)
    wait_for(lambda: metric(n, "shoal_messages_dropped_total", reason="queue-full") == 3, "3 refused")
    assert n.wait_log("event=drop reason=queue-full ")
    assert len([l for l in n.log().splitlines() if "event=drop reason=queue-full " in l and cid in l]) == 1
    r, ack = raw(n, cid, clean=False, properties={R.P_SESSION_EXPIRY: 300})
    got = []
    for _ in range(3):
        p = r.expect(R.PUBLISH)
        r.send(R.puback(p.pid))
        got.append(p.payload)
    assert got == [b"0", b"1", b"2"]
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP  # nothing else came
    r.close()


# --- logged once ----------------------------------------------------------------------------


def test_a_thousand_refusals_log_one_line(topic_node):
    n = topic_node
    cid = uid("noisy")
    r, _ = raw(n, cid)
    deep = uid("n")[:8] + "/a/b/c/d/e"
    before = metric(n, "shoal_limit_refusals_total", limit="topic-levels")
    r.send(b"".join(R.publish(deep, b"x", qos=1, pid=i % 65535 + 1) for i in range(1000)))
    for _ in range(1000):
        assert r.expect(R.PUBACK).rc == 0x90
    assert metric(n, "shoal_limit_refusals_total", limit="topic-levels") == before + 1000
    the_limit_line(n, "topic-levels", cid)
    # A second connection of the same client logs once again.
    r.close()
    r, _ = raw(n, cid)
    r.send(R.publish(deep, b"x", qos=1, pid=1))
    assert r.expect(R.PUBACK).rc == 0x90
    wait_for(lambda: len(limit_lines(n, "topic-levels", cid)) == 2, "one line for the new connection")
    r.close()


def test_help_lists_the_limits():
    import subprocess
    from conftest import SHOAL_BIN
    out = subprocess.run([SHOAL_BIN, "--help"], capture_output=True, text=True, timeout=WAIT).stdout
    for flag in ("--max-publish-rate", "--max-publish-bytes-rate", "--max-subscriptions", "--max-topic-levels",
                 "--max-topic-length", "--queue-qos0", "--max-sessions", "--max-retained", "--max-output-buffer",
                 "--max-shared-groups"):
        assert flag in out, flag


# --- publisher back-pressure ---------------------------------------------------------


PAD = b"x" * 1000


def _payload(i):
    # 1 KB each: a read turn takes at most 16 KiB, so the publisher is
    # checked every ~16 messages rather than every ~800.
    return b"%d:" % i + PAD


def _flood_a_stalled_subscriber(n, count):
    """A v5 subscriber taking at most 10 unacknowledged QoS 1 messages
    (Receive Maximum 10) stalls for 1 s while one publisher sends `count`
    QoS 1 messages as fast as its socket takes them (a thread: a paused
    publisher's send blocks). Returns (subscriber, publisher, sender thread,
    publisher PUBACKs seen during the stall)."""
    t = uid("bp")
    sub, ack = raw(n, uid("slow"), properties={R.P_RECEIVE_MAX: 10})
    assert ack.rc == 0
    sub.send(R.subscribe(1, [(t, 1)]))
    sub.expect(R.SUBACK)
    pub, ack = raw(n, uid("fast"))
    assert ack.rc == 0
    data = b"".join(R.publish(t, _payload(i), qos=1, pid=i + 1) for i in range(count))
    sender = threading.Thread(target=pub.send, args=(data,), daemon=True)
    sender.start()
    acked = 0
    # Shorter than the 2 s after which a subscriber counts as stuck and
    # stops holding its publishers back.
    stall_end = time.time() + 1
    while time.time() < stall_end:
        try:
            pub.expect(R.PUBACK, timeout=stall_end - time.time())
            acked += 1
        except TimeoutError:
            break
    return sub, pub, sender, acked


def _drain(sub, pub, sender, count, acked):
    got = []
    while len(got) < count:
        try:
            p = sub.expect(R.PUBLISH, timeout=5)
        except TimeoutError:
            break
        sub.send(R.puback(p.pid))
        got.append(p.payload)
    sender.join(WAIT)
    assert not sender.is_alive(), "the publisher could not send everything"
    while acked < count:
        pub.expect(R.PUBACK)
        acked += 1
    return got


def test_a_slow_subscriber_pauses_its_publisher_and_nothing_is_dropped(node_factory):
    """With the defaults (--max-queued 1000, --publisher-backpressure 1000,
    so pausing starts at 250 queued), a publisher flooding a stalled but
    connected subscriber is paused instead of having acknowledged messages
    dropped: during the stall it gets far fewer than all its PUBACKs, the
    pause is counted and logged once, and when the subscriber catches up
    every message arrives in order and nothing was dropped."""
    n = node_factory("--workers", "2")
    count = 2000
    sub, pub, sender, acked = _flood_a_stalled_subscriber(n, count)
    assert acked < 1000, "the publisher was not slowed: %d PUBACKs during the stall; %s" % (
        acked, [l for l in n.log().splitlines() if "event=limit" in l or "event=drop" in l or "connect" in l][:20])
    assert metric(n, "shoal_limit_refusals_total", limit="subscriber-backlog") > 0
    got = _drain(sub, pub, sender, count, acked)
    assert got == [_payload(i) for i in range(count)], "lost or reordered: %d of %d" % (len(got), count)
    assert metric(n, "shoal_messages_dropped_total", reason="queue-full") == 0
    assert n.wait_log("event=limit limit=subscriber-backlog ")
    pub.send(R.pingreq())
    assert pub.expect(R.PINGRESP).type == R.PINGRESP
    sub.close()
    pub.close()


def test_without_backpressure_a_full_queue_drops(node_factory):
    """--publisher-backpressure 0: the same flood is taken at full speed and
    whatever does not fit in --max-queued is dropped and counted."""
    n = node_factory("--workers", "2", "--publisher-backpressure", "0")
    count = 2000
    sub, pub, sender, acked = _flood_a_stalled_subscriber(n, count)
    assert acked == count
    wait_for(lambda: metric(n, "shoal_messages_dropped_total", reason="queue-full") > 0, "queue-full drops")
    got = _drain(sub, pub, sender, count, acked)
    assert len(got) < count
    sub.close()
    pub.close()


# --- replies to a client that never reads -----------------------------------------------


def _rss_bytes(node):
    with open("/proc/%d/status" % node.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _reply_flood(version=4, publishes=60000, pings_each=200):
    """QoS 1 publishes, each followed by PINGREQs, as one byte string, and
    the replies the node owes for them in order: a PUBACK each, a PINGRESP
    each (2 bytes for 2: what the client sends is what the node must hold)."""
    t = uid("unread")
    sent, want = [], []
    ping, pingresp = R.pingreq(), bytes([R.PINGRESP << 4, 0])
    for i in range(publishes):
        pid = i % 65535 + 1
        sent.append(R.publish(t, b"", qos=1, pid=pid, version=version) + ping * pings_each)
        want.append(bytes([R.PUBACK << 4, 2, pid >> 8, pid & 0xFF]) + pingresp * pings_each)
    return b"".join(sent), b"".join(want)


def _send_until_stalled(sock, data, stall_s=3.0, chunk=16384):
    """Send `data` until it is all sent or the socket takes nothing for
    `stall_s` seconds; returns the bytes sent. A timed-out chunk is resent
    unchanged (what TLS requires)."""
    sock.settimeout(0.2)
    sent, last_progress = 0, time.time()
    while sent < len(data) and time.time() - last_progress < stall_s:
        try:
            n = sock.send(data[sent:sent + chunk])
        except (socket.timeout, ssl.SSLWantWriteError):
            continue
        sent += n
        last_progress = time.time()
    return sent


def _finish(sock, data, sent, want, timeout=120):
    """Read every reply while sending the rest; returns what was read."""
    got = bytearray()
    deadline = time.time() + timeout
    while len(got) < len(want) and time.time() < deadline:
        # Everything readable first (a TLS recv returns one record), then
        # as much as the socket takes.
        sock.settimeout(0.01)
        while True:
            try:
                b = sock.recv(1 << 20)
            except (socket.timeout, ssl.SSLWantReadError):
                break
            if not b:
                return bytes(got)
            got += b
        while sent < len(data):
            try:
                sent += sock.send(data[sent:sent + 16384])
            except (socket.timeout, ssl.SSLWantWriteError):
                break
    return bytes(got)


def _unread_replies_are_bounded(n, sock):
    """A 3.1.1 client whose receive buffer is small sends QoS 1 publishes and
    PINGREQs and reads nothing: the node stops reading it once its output is
    over --max-output-buffer (so the client's sends stall), the node's
    memory stays flat, another client is served meanwhile, and once the
    client reads it gets every reply in order."""
    sock.settimeout(WAIT)
    sock.sendall(R.connect(uid("unread"), version=4))
    connack = b""
    while len(connack) < 4:
        connack += sock.recv(4 - len(connack))
    assert connack == bytes([R.CONNACK << 4, 2, 0, 0])
    data, want = _reply_flood()
    rss0 = _rss_bytes(n)
    sent = _send_until_stalled(sock, data)
    grown = _rss_bytes(n) - rss0
    print("sent %d of %d bytes before stalling; node RSS grew %d KiB" % (sent, len(data), grown // 1024))
    assert sent < len(data), "the node read everything: its replies sit in its heap (RSS +%d KiB)" % (grown // 1024)
    # What stalled the client is a few MB of socket buffers and at most
    # --max-output-buffer of replies, not the 24 MB it sent.
    assert grown < 8 << 20, "node RSS grew %d KiB" % (grown // 1024)
    assert metric(n, "shoal_limit_refusals_total", limit="output-buffer") > 0
    assert n.wait_log("event=limit limit=output-buffer ")
    # Another client is served while this one is paused.
    t = uid("other")
    with Client(n) as other:
        other.subscribe(t, 1)
        other.publish(t, b"still here", qos=1)
        assert other.get().payload == b"still here"
    got = _finish(sock, data, sent, want)
    assert len(got) == len(want), "got %d of %d reply bytes" % (len(got), len(want))
    assert got == want, "replies out of order or corrupted"
    sock.close()


def _small_rcvbuf_socket(port):
    """A socket whose kernel takes little of what the node sends. Not much
    smaller: under an MSS (64 KiB on loopback) the kernel's window updates
    stall the transfer when the client does read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    return s


# Under ASan freed memory waits in a quarantine (16 MB in pytest.sh), which
# would count as growth here; release binaries ignore this.
SMALL_QUARANTINE = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"}


def test_unread_replies_pause_reading_tcp(node_factory):
    n = node_factory("--workers", "2", "--max-output-buffer", "65536", env=SMALL_QUARANTINE)
    _unread_replies_are_bounded(n, _small_rcvbuf_socket(n.port))


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory):
    from certs import make_ca, make_cert
    d = str(tmp_path_factory.mktemp("pki"))
    make_ca(d, "ca")
    return make_cert(d, "ca", "server", "localhost", True)


def test_unread_replies_pause_reading_tls(node_factory, server_cert):
    cert, key = server_cert
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    n = node_factory("--workers", "2", "--max-output-buffer", "65536", "--tls-port", str(port),
                     "--tls-cert", cert, "--tls-key", key, env=SMALL_QUARANTINE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(_small_rcvbuf_socket(n.tls_port))
    _unread_replies_are_bounded(n, s)


# --- sessions -----------------------------------------------------------------------------


def _sessions(n):
    return sum(metric(n, "shoal_sessions", state=s) or 0 for s in ("online", "offline"))


@pytest.mark.parametrize("version", [5, 4])
def test_max_sessions(node_factory, version):
    """--max-sessions 2 counts every session the node holds, offline
    persistent ones included: a third client id is refused (v5 CONNACK 0x97
    Quota exceeded, 3.1.1 return code 3 Server unavailable), an existing
    session is still resumed, and a session that ends frees its slot."""
    n = node_factory("--max-sessions", "2")
    persistent = {R.P_SESSION_EXPIRY: 300} if version == 5 else None
    a, b, c = uid("sa"), uid("sb"), uid("sc")
    r, ack = raw(n, a, version=version, clean=version == 5, properties=persistent)
    assert ack.rc == 0
    r.send(R.disconnect(0) if version == 5 else R.disconnect(version=4))
    assert r.is_closed()
    wait_for(lambda: metric(n, "shoal_sessions", state="offline") == 1, "a's session to be offline")
    rb, ack = raw(n, b, version=version)
    assert ack.rc == 0
    assert _sessions(n) == 2
    # The third is refused, and the connection closed.
    rc_, ack = raw(n, c, version=version)
    assert ack.rc == (0x97 if version == 5 else 3)
    assert rc_.is_closed()
    assert metric(n, "shoal_limit_refusals_total", limit="max-sessions") == 1
    assert n.wait_log("event=limit limit=max-sessions ")
    # Resuming an existing session takes no new slot.
    r, ack = raw(n, a, version=version, clean=False, properties=persistent)
    assert ack.rc == 0 and ack.session_present
    # b's clean session ends with its connection: its slot is free again.
    rb.send(R.disconnect(0) if version == 5 else R.disconnect(version=4))
    assert rb.is_closed()
    wait_for(lambda: _sessions(n) == 1, "b's session to end")
    rc_, ack = raw(n, c, version=version)
    assert ack.rc == 0
    rc_.close()
    r.close()


@pytest.mark.parametrize("version", [5, 4])
def test_max_session_expiry_caps_sessions_that_never_expire(node_factory, version):
    """A 3.1.1 persistent session (clean session 0) and a v5 one with
    Session Expiry 0xFFFFFFFF never expire by default; --max-session-expiry
    caps them too (v5 is told in CONNACK)."""
    n = node_factory("--max-session-expiry", "1")
    cid, t = uid("forever"), uid("t")
    if version == 5:
        r, ack = raw(n, cid, version=5, clean=True, properties={R.P_SESSION_EXPIRY: 0xFFFFFFFF})
        assert ack.props.get(R.P_SESSION_EXPIRY) == 1
    else:
        r, ack = raw(n, cid, version=4, clean=False)
    assert ack.rc == 0
    r.send(R.subscribe(1, [(t, 1)], version=version))
    r.expect(R.SUBACK)
    r.send(R.disconnect(0) if version == 5 else R.disconnect(version=4))
    assert r.is_closed()
    assert n.wait_log("event=session_expired client=%s" % cid, timeout=WAIT)
    r, ack = raw(n, cid, version=version, clean=False,
                 properties={R.P_SESSION_EXPIRY: 0xFFFFFFFF} if version == 5 else None)
    assert ack.rc == 0 and not ack.session_present
    r.close()


def test_max_session_expiry_caps_the_disconnect_value(node_factory):
    """A v5 DISCONNECT may change the Session Expiry Interval: the cap holds there too."""
    n = node_factory("--max-session-expiry", "1")
    cid = uid("ext")
    r, ack = raw(n, cid, properties={R.P_SESSION_EXPIRY: 1})
    r.send(R.disconnect(0, properties={R.P_SESSION_EXPIRY: 0xFFFFFFFF}))
    assert r.is_closed()
    assert n.wait_log("event=session_expired client=%s" % cid, timeout=WAIT)


def test_default_session_expiry_is_never(node_factory):
    """Without --max-session-expiry a 3.1.1 persistent session outlives a
    v5 one of 1 s."""
    n = node_factory()
    keep, ref = uid("keep"), uid("ref")
    r, _ = raw(n, keep, version=4, clean=False)
    r.send(R.disconnect(version=4))
    assert r.is_closed()
    q, _ = raw(n, ref, properties={R.P_SESSION_EXPIRY: 1})
    q.send(R.disconnect(0))
    assert q.is_closed()
    assert n.wait_log("event=session_expired client=%s" % ref, timeout=WAIT)
    assert "event=session_expired client=%s" % keep not in n.log()
    r, ack = raw(n, keep, version=4, clean=False)
    assert ack.session_present
    r.close()


# --- retained messages ---------------------------------------------------------------------


def test_max_retained(node_factory):
    """--max-retained 2: two topics are stored; a third is refused (v5 QoS
    1/2: PUBACK/PUBREC 0x97, and nobody gets it); replacing a stored topic
    is fine; deleting one frees a slot; QoS 0 and 3.1.1 publishers, who
    cannot be told, have their message delivered but not retained."""
    n = node_factory("--max-retained", "2", "--sys-interval", "0")  # $SYS topics would count too
    base = uid("rt")
    ta, tb, tc, td = ("%s/%s" % (base, x) for x in "abcd")
    live = Client(n)
    live.subscribe(base + "/#", 1)
    cid = uid("retainer")
    r, _ = raw(n, cid)
    r.send(R.publish(ta, b"a1", qos=1, pid=1, retain=True))
    r.send(R.publish(tb, b"b1", qos=1, pid=2, retain=True))
    assert [(a.pid, a.rc) for a in (r.expect(R.PUBACK), r.expect(R.PUBACK))] == [(1, 0), (2, 0)]
    assert [m.payload for m in live.get_n(2)] == [b"a1", b"b1"]
    r.send(R.publish(tc, b"c1", qos=1, pid=3, retain=True))
    a = r.expect(R.PUBACK)
    assert (a.pid, a.rc) == (3, 0x97)
    r.send(R.publish(tc, b"c2", qos=2, pid=4, retain=True))
    a = r.expect(R.PUBREC)
    assert (a.pid, a.rc) == (4, 0x97)
    live.none()
    assert metric(n, "shoal_retained_messages") == 2
    assert metric(n, "shoal_limit_refusals_total", limit="max-retained") == 2
    assert n.wait_log("event=limit limit=max-retained ")
    # A replacement needs no slot.
    r.send(R.publish(ta, b"a2", qos=1, pid=5, retain=True))
    assert r.expect(R.PUBACK).rc == 0
    # QoS 0 (v5) and a 3.1.1 QoS 1: delivered, not retained.
    r.send(R.publish(tc, b"c3", qos=0, retain=True))
    with Client(n, version=4) as old:
        old.publish(td, b"d1", qos=1, retain=True)
    assert sorted(m.payload for m in live.get_n(3)) == [b"a2", b"c3", b"d1"]
    assert metric(n, "shoal_retained_messages") == 2
    with Client(n) as fresh:
        fresh.subscribe(base + "/#", 0)
        assert sorted(m.payload for m in fresh.get_n(2)) == [b"a2", b"b1"]
        fresh.none()
    # Deleting one frees a slot.
    r.send(R.publish(tb, b"", qos=1, pid=6, retain=True))
    assert r.expect(R.PUBACK).rc == 0
    live.get()
    r.send(R.publish(tc, b"c4", qos=1, pid=7, retain=True))
    assert r.expect(R.PUBACK).rc == 0
    assert metric(n, "shoal_retained_messages") == 2
    r.close()
    live.disconnect()


def test_expired_retained_message_is_freed_without_a_lookup(node_factory):
    """A retained message with Message Expiry 1 s leaves the index when it
    expires (the gauge drops with nobody subscribing or listing), and then
    neither a new subscriber nor the admin API sees it."""
    from test_http import TOKEN, api
    n = node_factory("--admin-token", TOKEN, "--sys-interval", "0")  # the gauge counts $SYS topics too
    base = uid("exp")
    r, _ = raw(n, uid("pub"))
    r.send(R.publish(base + "/short", b"gone soon", qos=1, pid=1, retain=True,
                     properties={R.P_MESSAGE_EXPIRY: 1}))
    # Stored, and nobody subscribes yet: 0x10 No matching subscribers.
    assert r.expect(R.PUBACK).rc == 0x10
    r.send(R.publish(base + "/long", b"stays", qos=1, pid=2, retain=True))
    assert r.expect(R.PUBACK).rc == 0x10
    assert metric(n, "shoal_retained_messages") == 2
    wait_for(lambda: metric(n, "shoal_retained_messages") == 1, "the expired message to be freed")
    status, body = api(n, "GET", "/api/v1/retained?filter=" + urllib.parse.quote(base + "/#"))
    assert status == 200
    assert [x["topic"] for x in body["retained"]] == [base + "/long"]
    with Client(n) as fresh:
        fresh.subscribe(base + "/#", 1)
        assert fresh.get().payload == b"stays"
        fresh.none()
    r.close()


def test_session_and_retained_caps_from_env_and_config_file(node_factory, tmp_path):
    """Each flag is also a SHOAL_* variable and a config-file key."""
    conf = tmp_path / "shoal.conf"
    conf.write_text("max-retained 1\n")
    n = node_factory("--config", str(conf), "--sys-interval", "0", env={"SHOAL_MAX_SESSIONS": "1"})
    r, ack = raw(n, uid("one"))
    assert ack.rc == 0
    r.send(R.publish(uid("k"), b"1", qos=1, pid=1, retain=True))
    assert r.expect(R.PUBACK).rc == 0x10  # stored; no subscriber
    r.send(R.publish(uid("k"), b"2", qos=1, pid=2, retain=True))
    assert r.expect(R.PUBACK).rc == 0x97
    r2, ack = raw(n, uid("two"))
    assert ack.rc == 0x97
    r.close()
    r2.close()
