# SPDX-License-Identifier: Apache-2.0
"""Persistent sessions: queued messages, expiry, clean start, resend with DUP,
queue limits and the inflight window."""
import threading
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import mqttraw as R
from pahoclient import Client, props, uid

NEVER = 0xFFFFFFFF


def publish_n(node, topic, n, qos=1, prefix=b"m"):
    with Client(node) as pub:
        for i in range(n):
            pub.publish(topic, prefix + b"%d" % i, qos=qos)


def raw_session(node, cid, expiry=None, clean=True, version=5, subs=None):
    r = R.RawClient(node, version=version)
    pr = {R.P_SESSION_EXPIRY: expiry} if expiry is not None and version == 5 else None
    ack = r.connect(cid, clean=clean, version=version, properties=pr)
    assert ack.rc == 0, ack
    if subs:
        r.send(R.subscribe(1, subs, version=version))
        sa = r.expect(R.SUBACK)
        assert all(c < 0x80 for c in sa.codes)
    return r, ack


def test_persistent_session_v311(node):
    cid, t = uid("p311"), uid("t")
    c = Client(node, client_id=cid, version=4, clean=False)
    assert not c.session_present
    c.subscribe(t, 1)
    c.disconnect()
    publish_n(node, t, 3)
    c = Client(node, client_id=cid, version=4, clean=False)
    assert c.session_present
    assert [m.payload for m in c.get_n(3)] == [b"m0", b"m1", b"m2"]
    # Still subscribed, live.
    publish_n(node, t, 1, prefix=b"live")
    assert c.get().payload == b"live0"
    c.disconnect()
    # Clean session discards it.
    c = Client(node, client_id=cid, version=4, clean=True)
    assert not c.session_present
    c.disconnect()
    c = Client(node, client_id=cid, version=4, clean=False)
    assert not c.session_present
    c.disconnect()


def test_v311_clean_session_not_kept(node):
    cid, t = uid("c311"), uid("t")
    r, ack = raw_session(node, cid, version=4, clean=True, subs=[(t, 1)])
    assert not ack.session_present
    r.send(R.disconnect(version=4))
    assert r.is_closed()
    publish_n(node, t, 1)
    r, ack = raw_session(node, cid, version=4, clean=False)
    assert not ack.session_present
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP  # nothing queued came first
    r.close()


def test_v5_session_resumed_within_expiry(node):
    cid, t = uid("p5"), uid("t")
    c = Client(node, client_id=cid, clean=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    c.subscribe(t, 2)
    c.disconnect()
    publish_n(node, t, 3, qos=2)
    c = Client(node, client_id=cid, clean=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    assert c.session_present
    msgs = c.get_n(3)
    assert [(m.payload, m.qos) for m in msgs] == [(b"m0", 2), (b"m1", 2), (b"m2", 2)]
    c.disconnect()


def test_v5_default_expiry_zero_ends_session(node):
    cid, t = uid("p5"), uid("t")
    r, _ = raw_session(node, cid, subs=[(t, 1)])
    r.send(R.disconnect(0))
    assert r.is_closed()
    r, ack = raw_session(node, cid, clean=False)
    assert not ack.session_present
    r.close()


def test_v5_session_expiry_lapses(node):
    cid, t = uid("exp"), uid("t")
    r, _ = raw_session(node, cid, expiry=2, subs=[(t, 1)])
    r.send(R.disconnect(0))
    assert r.is_closed()
    t0 = time.time()
    assert node.wait_log("event=session_expired client=%s" % cid, timeout=15)
    assert time.time() - t0 >= 1.5
    r, ack = raw_session(node, cid, expiry=2, clean=False)
    assert not ack.session_present
    # The old subscription went with it.
    with Client(node) as pub:
        pub.publish(t, b"x", qos=1)
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP
    r.close()


def test_v5_session_expiry_never(node):
    """0xFFFFFFFF never expires: still there after a 2 s session has expired."""
    never, short, t = uid("never"), uid("short"), uid("t")
    a, _ = raw_session(node, never, expiry=NEVER, subs=[(t, 1)])
    b, _ = raw_session(node, short, expiry=2)
    for r in (a, b):
        r.send(R.disconnect(0))
        assert r.is_closed()
    publish_n(node, t, 1)
    assert node.wait_log("event=session_expired client=%s" % short, timeout=15)
    a, ack = raw_session(node, never, expiry=NEVER, clean=False)
    assert ack.session_present
    p = a.expect(R.PUBLISH)
    assert p.payload == b"m0"
    a.send(R.puback(p.pid))
    assert "event=session_expired client=%s" % never not in node.log()
    a.close()


def test_v5_clean_start_discards(node):
    cid, t = uid("cs"), uid("t")
    r, _ = raw_session(node, cid, expiry=60, subs=[(t, 1)])
    r.send(R.disconnect(0))
    assert r.is_closed()
    publish_n(node, t, 2)
    r, ack = raw_session(node, cid, expiry=60, clean=True)
    assert not ack.session_present
    # Neither the queued messages nor the subscription survive.
    publish_n(node, t, 1, prefix=b"after")
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP
    r.send(R.disconnect(0))
    assert r.is_closed()
    r, ack = raw_session(node, cid, expiry=60, clean=False)
    assert ack.session_present
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP
    r.close()


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("graceful", [True, False], ids=["disconnect", "drop"])
def test_unacked_qos1_resent_with_dup(node, version, graceful):
    cid, t = uid("dup"), uid("t")
    # v5: clean start with an expiry; 3.1.1: clean session 0 on a new id.
    r, _ = raw_session(node, cid, expiry=60, clean=(version == 5), version=version, subs=[(t, 1)])
    publish_n(node, t, 2)
    first = [r.expect(R.PUBLISH), r.expect(R.PUBLISH)]
    assert [p.dup for p in first] == [False, False]
    # No PUBACK. Leave.
    if graceful:
        r.send(R.disconnect(0, version=version) if version == 5 else R.disconnect(version=4))
        assert r.is_closed()
    else:
        r.close()
    r, ack = raw_session(node, cid, expiry=60, clean=False, version=version)
    assert ack.session_present
    again = [r.expect(R.PUBLISH), r.expect(R.PUBLISH)]
    assert [(p.pid, p.payload, p.qos) for p in again] == [(p.pid, p.payload, p.qos) for p in first]
    assert [p.dup for p in again] == [True, True]
    closes = node.log().count("event=disconnect conn=")
    for p in again:
        r.send(R.puback(p.pid, version=version))
    # Acknowledged: not sent a third time. Wait until the broker has seen the
    # close: acks still in flight on a connection that a new one takes over
    # may be lost, as with any broker.
    r.close()
    deadline = time.time() + 10
    while node.log().count("event=disconnect conn=") == closes:
        assert time.time() < deadline, "broker never noticed the close"
        time.sleep(0.01)
    r, ack = raw_session(node, cid, expiry=60, clean=False, version=version)
    assert ack.session_present
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP
    r.close()


def test_unacked_qos2_resend_publish_then_pubrel(node):
    cid, t = uid("dup2"), uid("t")
    r, _ = raw_session(node, cid, expiry=60, subs=[(t, 2)])
    publish_n(node, t, 2, qos=2)
    p1, p2 = r.expect(R.PUBLISH), r.expect(R.PUBLISH)
    # p1: PUBREC sent, PUBCOMP never; p2: nothing sent.
    r.send(R.pubrec(p1.pid))
    rel = r.expect(R.PUBREL)
    assert rel.pid == p1.pid
    r.close()
    r, ack = raw_session(node, cid, expiry=60, clean=False)
    assert ack.session_present
    got = [r.recv(), r.recv()]
    kinds = {(p.type, p.pid) for p in got}
    assert kinds == {(R.PUBREL, p1.pid), (R.PUBLISH, p2.pid)}, got
    pub = [p for p in got if p.type == R.PUBLISH][0]
    assert pub.dup and pub.payload == p2.payload
    r.send(R.pubcomp(p1.pid))
    r.send(R.pubrec(p2.pid))
    assert r.expect(R.PUBREL).pid == p2.pid
    r.send(R.pubcomp(p2.pid))
    r.send(R.pingreq())
    assert r.expect(R.PINGRESP).type == R.PINGRESP
    r.close()


def test_max_queued(node_factory):
    n = node_factory("--max-queued", "5")
    cid, t = uid("mq"), uid("t")
    r, _ = raw_session(n, cid, expiry=60, subs=[(t, 1)])
    r.send(R.disconnect(0))
    assert r.is_closed()
    publish_n(n, t, 12)
    r, ack = raw_session(n, cid, expiry=60, clean=False)
    assert ack.session_present
    marker = uid("mark")
    r.send(R.subscribe(2, [(marker, 1)]))
    got = []
    while True:
        p = r.recv()
        if p.type == R.SUBACK:
            with Client(n) as pub:
                pub.publish(marker, b"m", qos=1)
            continue
        assert p.type == R.PUBLISH
        r.send(R.puback(p.pid))
        if p.topic == marker:
            break
        got.append(p.payload)
    assert len(got) == 5, got
    assert got == [b"m%d" % i for i in range(5)], got  # the oldest are kept, newer dropped
    r.close()


def test_max_inflight_window(node_factory):
    n = node_factory("--max-inflight", "2")
    t = uid("t")
    r, _ = raw_session(n, uid("win"), subs=[(t, 1)])
    publish_n(n, t, 5)
    a, b = r.expect(R.PUBLISH), r.expect(R.PUBLISH)
    # Window full: nothing more until an ack.
    with pytest.raises(TimeoutError):
        r.recv(timeout=0.7)
    r.send(R.puback(a.pid))
    c = r.expect(R.PUBLISH)
    assert [a.payload, b.payload, c.payload] == [b"m0", b"m1", b"m2"]
    r.send(R.puback(b.pid))
    r.send(R.puback(c.pid))
    rest = [r.expect(R.PUBLISH), r.expect(R.PUBLISH)]
    assert [p.payload for p in rest] == [b"m3", b"m4"]
    r.close()


def test_client_receive_maximum(node):
    t = uid("t")
    r = R.RawClient(node)
    assert r.connect(uid("rm"), properties={R.P_RECEIVE_MAX: 1}).rc == 0
    r.send(R.subscribe(1, [(t, 2)]))
    r.expect(R.SUBACK)
    publish_n(node, t, 3, qos=2)
    p = r.expect(R.PUBLISH)
    with pytest.raises(TimeoutError):
        r.recv(timeout=0.7)
    r.send(R.pubrec(p.pid))
    r.expect(R.PUBREL)
    # Still in flight until PUBCOMP.
    with pytest.raises(TimeoutError):
        r.recv(timeout=0.5)
    r.send(R.pubcomp(p.pid))
    p2 = r.expect(R.PUBLISH)
    assert (p.payload, p2.payload) == (b"m0", b"m1")
    r.close()


def test_disconnect_session_expiry_zero_to_nonzero_is_protocol_error(node):
    r, _ = raw_session(node, uid("d0"))
    r.send(R.disconnect(0, properties={R.P_SESSION_EXPIRY: 60}))
    seen = r.wait_closed()
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x82)], seen
    r.close()


def test_disconnect_session_expiry_set_to_zero_ends_session(node):
    cid = uid("d1")
    r, _ = raw_session(node, cid, expiry=60)
    r.send(R.disconnect(0, properties={R.P_SESSION_EXPIRY: 0}))
    assert r.wait_closed() == []
    r, ack = raw_session(node, cid, expiry=60, clean=False)
    assert not ack.session_present
    r.close()


def test_disconnect_session_expiry_extended(node):
    cid = uid("d2")
    r, _ = raw_session(node, cid, expiry=1)
    r.send(R.disconnect(0, properties={R.P_SESSION_EXPIRY: 600}))
    assert r.wait_closed() == []
    # A 1 s reference session expires; ours, extended to 600 s, does not.
    ref = uid("ref")
    q, _ = raw_session(node, ref, expiry=1)
    q.send(R.disconnect(0))
    assert q.is_closed()
    assert node.wait_log("event=session_expired client=%s" % ref, timeout=15)
    r, ack = raw_session(node, cid, expiry=60, clean=False)
    assert ack.session_present
    r.close()


def test_max_session_expiry_cap(node_factory):
    n = node_factory("--max-session-expiry", "5")
    with R.RawClient(n) as r:
        ack = r.connect(uid("cap"), properties={R.P_SESSION_EXPIRY: 1000})
        assert ack.props.get(R.P_SESSION_EXPIRY) == 5


def test_qos0_live_to_persistent_session(node):
    """Sanity: a persistent session gets live QoS 0 while connected."""
    cid, t = uid("q0"), uid("t")
    with Client(node, client_id=cid, version=4, clean=False) as c:
        c.subscribe(t, 0)
        publish_n(node, t, 3, qos=0)
        assert [m.payload for m in c.get_n(3)] == [b"m0", b"m1", b"m2"]


def test_offline_queue_order(node):
    cid, t = uid("oq"), uid("t")
    r, _ = raw_session(node, cid, expiry=60, subs=[(t, 2)])
    r.send(R.disconnect(0))
    assert r.is_closed()
    with Client(node) as pub:
        for i in range(200):
            pub.publish(t, b"%d" % i, qos=1 + (i % 2), wait=False)
        pub.publish(t, b"200", qos=1)
    r, ack = raw_session(node, cid, expiry=60, clean=False)
    assert ack.session_present
    got = []
    while len(got) < 201:
        p = r.recv()
        if p.type == R.PUBLISH:
            got.append(int(p.payload))
            r.send(R.puback(p.pid) if p.qos == 1 else R.pubrec(p.pid))
        elif p.type == R.PUBREL:
            r.send(R.pubcomp(p.pid))
    assert got == list(range(201))
    r.close()


def test_takeover_while_publishing_loses_nothing(node):
    """QoS 1 flows to a persistent session while a second connection takes
    it over (on either worker): every message reaches one of them."""
    cid, t = uid("tk"), uid("t")
    pr = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    a = Client(node, client_id=cid, clean=True, properties=pr)
    a.subscribe(t, 1)
    pub = Client(node, version=4)
    n = 400
    done = threading.Event()

    def publish_all():
        for i in range(n):
            pub.publish(t, b"%d" % i, qos=1, wait=False)
        done.set()

    th = threading.Thread(target=publish_all)
    th.start()
    # Take over once messages are flowing.
    first = int(a.get().payload)
    b = Client(node, client_id=cid, clean=False, properties=pr)
    assert b.session_present
    th.join()
    assert done.is_set()
    pub.publish(t, b"%d" % n, qos=1)
    seen = {first}
    while not a.messages.empty():
        seen.add(int(a.messages.get().payload))
    deadline = time.time() + 60
    while n not in seen or len(seen) < n + 1:
        assert time.time() < deadline, "missing: %s" % sorted(set(range(n + 1)) - seen)[:20]
        try:
            seen.add(int(b.messages.get(timeout=1).payload))
        except Exception:
            pass
        while not a.messages.empty():
            seen.add(int(a.messages.get().payload))
    assert seen == set(range(n + 1))
    a.c.loop_stop()
    b.disconnect()
    pub.disconnect()


def _pub_qos2_ids(r, ids, version, topic):
    """Send QoS 2 PUBLISHes with these ids (pipelined, never PUBREL) and
    return the packets that came back, stopping early if the server closes."""
    r.send(b"".join(R.publish(topic, b"q2", qos=2, pid=i, version=version) for i in ids))
    seen = []
    try:
        while len(seen) < len(ids):
            p = r.recv()
            seen.append(p)
            if p.type == R.DISCONNECT:
                r.wait_closed()
                break
    except R.Closed:
        pass
    return seen


@pytest.mark.parametrize("version", [4, 5])
def test_held_qos2_ids_count_against_receive_maximum_across_reconnects(node, version):
    """The reproduction of a heap overflow (issue 15 item 1): a persistent
    session sends 250 QoS 2 PUBLISHes with new ids per connection, never
    PUBREL, reconnects, and repeats up to 132 times; the id list once
    doubled to 65,536 entries in a 16-bit capacity (0) and was written past.
    The ids the session holds from earlier connections count against the
    receive maximum (256): the 257th is refused (v5 DISCONNECT 0x93, 3.1.1
    close) and the node keeps serving everyone else."""
    cid, topic = uid("q2hold"), uid("q2t")
    pr = {R.P_SESSION_EXPIRY: NEVER} if version == 5 else None
    next_id, held, refused = 1, 0, None
    for round_ in range(132):
        r = R.RawClient(node, version=version)
        ack = r.connect(cid, clean=False, version=version, properties=pr)
        assert ack.rc == 0, ack
        ids = list(range(next_id, next_id + 250))
        next_id += 250
        seen = _pub_qos2_ids(r, ids, version, topic)
        recs = [p for p in seen if p.type == R.PUBREC]
        assert [p.pid for p in recs] == ids[:len(recs)] and all(p.rc < 0x80 for p in recs), seen[-3:]
        held += len(recs)
        if len(recs) < len(ids):
            refused = (round_, seen[len(recs):])
            assert r.closed
            break
        r.send(R.disconnect(version=version))
        assert r.is_closed()
    assert refused is not None, "never refused: the session holds %d QoS 2 ids" % held
    round_, rest = refused
    # Exactly at the bound: 256 held, the 257th refused, in the second connection.
    assert (round_, held) == (1, 256), (round_, held)
    if version == 5:
        assert [(p.type, p.rc) for p in rest] == [(R.DISCONNECT, 0x93)], rest
    else:
        assert rest == [], rest
    # The session is intact: a resend of a held id (at the bound) still gets
    # its PUBREC, and PUBREL frees the ids.
    r = R.RawClient(node, version=version)
    assert r.connect(cid, clean=False, version=version, properties=pr).session_present
    r.send(R.publish(topic, b"q2", qos=2, pid=256, dup=True, version=version))
    assert r.expect(R.PUBREC).pid == 256
    r.send(b"".join(R.pubrel(i, version=version) for i in range(1, 257)))
    for i in range(1, 257):
        comp = r.expect(R.PUBCOMP)
        assert (comp.pid, comp.rc) == (i, 0)
    r.send(R.publish(topic, b"q2", qos=2, pid=300, version=version))
    assert r.expect(R.PUBREC).pid == 300
    r.close()
    # The node is healthy: another client still works.
    t = uid("alive")
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(t, 1)
        pub.publish(t, b"alive", qos=1)
        assert sub.get().payload == b"alive"
    assert node.proc.poll() is None
