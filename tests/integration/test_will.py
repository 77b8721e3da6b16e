# SPDX-License-Identifier: Apache-2.0
"""Will messages: when they are published and when not, delay, retain."""
import time
import urllib.request

import pytest

import mqttraw as R
from pahoclient import Client, uid


def will_client(node, topic, payload=b"gone", qos=1, retain=False, will_props=None, version=5, expiry=None,
                cid=None, keepalive=60):
    r = R.RawClient(node, version=version)
    pr = {R.P_SESSION_EXPIRY: expiry} if expiry is not None else None
    will = {"topic": topic, "payload": payload, "qos": qos, "retain": retain, "properties": will_props}
    ack = r.connect(cid or uid("will"), version=version, will=will, properties=pr, keepalive=keepalive)
    assert ack.rc == 0, ack
    return r


def watcher(node, topic, qos=1):
    w = Client(node)
    w.subscribe(topic, qos)
    return w


@pytest.mark.parametrize("version", [3, 4, 5])
def test_will_on_abnormal_close(node, version):
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, payload=b"bye", version=version)
        r.close()  # socket closed without DISCONNECT
        m = w.get()
        assert (m.topic, m.payload, m.qos, m.retain) == (t, b"bye", 1, False)


def test_will_paho_v311(node):
    t = uid("w")
    with watcher(node, t) as w:
        c = Client(node, version=4, will={"topic": t, "payload": b"paho will", "qos": 2})
        c.kill()
        m = w.get()
        assert m.payload == b"paho will"


@pytest.mark.parametrize("version", [4, 5])
def test_no_will_on_normal_disconnect(node, version):
    t = uid("w")
    cid = uid("will")
    with watcher(node, t) as w:
        r = will_client(node, t, version=version, cid=cid)
        r.send(R.disconnect(0, version=version) if version == 5 else R.disconnect(version=4))
        assert r.wait_closed() == []
        assert R.wait_disconnect_logged(node, cid)
        assert w.barrier() == []
        w.none(1.0)


def test_will_on_disconnect_with_will_0x04(node):
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, payload=b"asked for")
        r.send(R.disconnect(0x04))
        assert r.wait_closed() == []
        assert w.get().payload == b"asked for"


def test_will_on_server_side_close(node):
    """A protocol violation closes the connection; the will goes out."""
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, payload=b"violated")
        r.send(R.publish("bad/+/topic", b"x"))
        seen = r.wait_closed()
        assert seen and seen[0].type == R.DISCONNECT and seen[0].rc >= 0x80
        assert w.get().payload == b"violated"


def test_will_on_keepalive_timeout(node):
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, payload=b"timed out", keepalive=1)
        m = w.get()
        assert m.payload == b"timed out"
        seen = r.wait_closed()
        assert [p.rc for p in seen] == [0x8D]


def _retained_count(node):
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(node.http_url + "/metrics",
                                                                            timeout=15) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("shoal_retained_messages "):
                return float(line.split()[1])
    return None


def test_will_retain(node):
    t = uid("w")
    stored = _retained_count(node)
    r = will_client(node, t, payload=b"last words", retain=True)
    r.close()
    # Wait until the will is stored: a subscriber that arrives while it is
    # being published may also get the live copy.
    deadline = time.time() + 15
    while _retained_count(node) != stored + 1:
        assert time.time() < deadline, "retained will never stored"
        time.sleep(0.1)
    # A subscriber that comes later gets it once, as a retained message.
    with Client(node) as c:
        c.subscribe(t, 1)
        got = c.barrier()
    assert [(m.payload, m.retain) for m in got] == [(b"last words", True)]


def test_will_properties_forwarded(node):
    t = uid("w")
    r = R.RawClient(node)
    with R.RawClient(node) as sub:
        assert sub.connect(uid("s")).rc == 0
        sub.send(R.subscribe(1, [(t, 1)]))
        sub.expect(R.SUBACK)
        r = will_client(node, t, will_props=[(R.P_CONTENT_TYPE, "text/plain"), (R.P_USER_PROPERTY, ("a", "1")),
                                             (R.P_USER_PROPERTY, ("b", "2")), (R.P_RESPONSE_TOPIC, "resp"),
                                             (R.P_MESSAGE_EXPIRY, 50)])
        r.close()
        p = sub.expect(R.PUBLISH)
        assert p.payload == b"gone" and p.qos == 1
        assert p.props.get(R.P_CONTENT_TYPE) == "text/plain"
        assert p.props.all(R.P_USER_PROPERTY) == [("a", "1"), ("b", "2")]
        assert p.props.get(R.P_RESPONSE_TOPIC) == "resp"
        assert 45 <= p.props.get(R.P_MESSAGE_EXPIRY, 0) <= 50
        assert not p.props.has(R.P_WILL_DELAY)


def test_will_delay_cancelled_by_reconnect(node):
    t = uid("w")
    cid = uid("will")
    with watcher(node, t) as w:
        r = will_client(node, t, cid=cid, expiry=10, will_props={R.P_WILL_DELAY: 2})
        r.close()
        t0 = time.time()
        assert R.wait_disconnect_logged(node, cid)
        r2 = R.RawClient(node)
        ack = r2.connect(cid, clean=False, properties={R.P_SESSION_EXPIRY: 10})
        assert ack.session_present
        assert time.time() - t0 < 1.5, "reconnect took too long for this test to mean anything"
        # Past the 2 s delay: still no will.
        w.none(max(0.1, 3.5 - (time.time() - t0)))
        r2.close()  # (this drop has no will: the new connection set none)
        w.none(0.5)


def test_will_delay_elapses(node):
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, expiry=10, will_props={R.P_WILL_DELAY: 2}, payload=b"delayed")
        r.close()
        t0 = time.time()
        m = w.get(timeout=15)
        elapsed = time.time() - t0
        assert m.payload == b"delayed"
        assert 1.5 <= elapsed <= 6, elapsed


def test_will_at_session_end_before_delay(node):
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, expiry=1, will_props={R.P_WILL_DELAY: 10}, payload=b"session over")
        r.close()
        t0 = time.time()
        m = w.get(timeout=15)
        elapsed = time.time() - t0
        assert m.payload == b"session over"
        assert 0.5 <= elapsed <= 5, elapsed


def test_will_delay_with_no_session_expiry_is_immediate(node):
    t = uid("w")
    with watcher(node, t) as w:
        r = will_client(node, t, will_props={R.P_WILL_DELAY: 30}, payload=b"now")
        r.close()
        t0 = time.time()
        assert w.get(timeout=10).payload == b"now"
        assert time.time() - t0 < 3


def test_will_on_takeover(node):
    t = uid("w")
    cid = uid("will")
    with watcher(node, t) as w:
        r = will_client(node, t, cid=cid, payload=b"taken over")
        with Client(node, client_id=cid):
            seen = r.wait_closed()
            assert [p.rc for p in seen if p.type == R.DISCONNECT] == [0x8E]
            assert w.get().payload == b"taken over"


def test_will_qos_above_max_refused(node_factory):
    n = node_factory("--max-qos", "0")
    with R.RawClient(n) as r:
        r.send(R.connect(uid("w"), will={"topic": "w", "payload": b"x", "qos": 1}))
        assert r.expect(R.CONNACK).rc == 0x9B
        assert r.is_closed()


@pytest.mark.parametrize("version", [4, 5])
def test_will_topic_with_wildcard_refused(node, version):
    with R.RawClient(node, version=version) as r:
        r.send(R.connect(uid("w"), version=version, will={"topic": "a/+", "payload": b"x"}))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


def test_will_qos3_is_malformed(node):
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(uid("w"), version=4, flags=0x02 | 0x04 | 0x18,
                         will={"topic": "w", "payload": b"x"}))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


def test_will_delay_not_published_on_takeover_resume(node):
    """A new connection resuming the session within the will delay cancels
    the delayed will of the connection it takes over (§3.1.3.2.2)."""
    t = uid("w")
    cid = uid("will")
    with watcher(node, t) as w:
        r = will_client(node, t, cid=cid, expiry=30, will_props={R.P_WILL_DELAY: 2}, payload=b"should not")
        r2 = R.RawClient(node)
        t0 = time.time()
        ack = r2.connect(cid, clean=False, properties={R.P_SESSION_EXPIRY: 30})
        assert ack.rc == 0 and ack.session_present
        assert [p.rc for p in r.wait_closed() if p.type == R.DISCONNECT] == [0x8E]
        w.none(max(0.1, 3.5 - (time.time() - t0)))
        r2.send(R.disconnect(0))
        r2.close()


def test_will_published_on_takeover_with_clean_start(node):
    t = uid("w")
    cid = uid("will")
    with watcher(node, t) as w:
        r = will_client(node, t, cid=cid, expiry=30, will_props={R.P_WILL_DELAY: 30}, payload=b"session ended")
        r2 = R.RawClient(node)
        ack = r2.connect(cid, clean=True)
        assert ack.rc == 0 and not ack.session_present
        assert w.get(timeout=10).payload == b"session ended"
        r2.close()


def test_will_payload_format_invalid(node):
    with R.RawClient(node) as r:
        r.send(R.connect(uid("w"), will={"topic": "w", "payload": b"\xff\xfe",
                                         "properties": {R.P_PAYLOAD_FORMAT: 1}}))
        seen = r.wait_closed()
        acks = [p for p in seen if p.type == R.CONNACK]
        assert len(acks) == 1 and acks[0].rc == 0x99, seen


@pytest.mark.parametrize("flags", [0x02 | 0x08, 0x02 | 0x20], ids=["will-qos-without-will", "will-retain-without-will"])
def test_will_bits_without_will_flag(node, flags):
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(uid("w"), version=4, flags=flags))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen
