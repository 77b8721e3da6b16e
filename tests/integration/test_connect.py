# SPDX-License-Identifier: Apache-2.0
"""CONNECT / CONNACK, keep alive and session takeover against the real broker."""
import re
import time

import pytest

import mqttraw as R
from paho.mqtt.packettypes import PacketTypes

from pahoclient import Client, props, uid


def roundtrip(node, version):
    """A fresh client of `version` publishes and receives one message."""
    topic = uid("rt")
    with Client(node, version=version) as c:
        c.subscribe(topic, 1)
        c.publish(topic, b"hello", qos=1)
        m = c.get()
        assert (m.topic, m.payload) == (topic, b"hello")


def test_v311_connect_paho(node):
    c = Client(node, version=4)
    flags, rc, _ = c.connack
    assert rc == 0 and not flags.session_present
    c.disconnect()
    roundtrip(node, 4)


def test_v5_connect_paho(node):
    c = Client(node, version=5)
    flags, rc, _ = c.connack
    assert rc == 0 and not flags.session_present
    c.disconnect()
    roundtrip(node, 5)


def test_v311_raw_connack_bytes(node):
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(uid("raw"), version=4))
        p = r.expect(R.CONNACK)
        assert p.body == b"\x00\x00"  # exactly: no session present, accepted


def test_v5_connack_default_properties(node):
    with R.RawClient(node) as r:
        ack = r.connect(uid("raw"))
        assert ack.rc == 0
        pr = ack.props
        assert pr.get(R.P_RECEIVE_MAX) == 256
        assert pr.get(R.P_MAX_PACKET_SIZE) == 268435455
        assert pr.get(R.P_TOPIC_ALIAS_MAX) == 64
        # Every feature flag is announced, and all are on by default.
        assert pr.get(R.P_RETAIN_AVAILABLE) == 1
        assert pr.get(R.P_WILDCARD_AVAILABLE) == 1
        assert pr.get(R.P_SUB_ID_AVAILABLE) == 1
        assert pr.get(R.P_SHARED_AVAILABLE) == 1
        # Maximum QoS absent means 2 (§3.2.2.3.4).
        assert pr.get(R.P_MAX_QOS, 2) == 2
        assert not pr.has(R.P_ASSIGNED_CLIENT_ID)


def test_v5_connack_properties_follow_flags(node_factory):
    n = node_factory("--receive-maximum", "7", "--max-packet-size", "100000", "--max-topic-alias", "9",
                     "--retain-available", "false", "--wildcard-subscriptions", "false",
                     "--subscription-identifiers", "false", "--shared-subscriptions", "false",
                     "--max-qos", "1")
    with R.RawClient(n) as r:
        ack = r.connect(uid("raw"))
        assert ack.rc == 0
        pr = ack.props
        assert pr.get(R.P_RECEIVE_MAX) == 7
        assert pr.get(R.P_MAX_PACKET_SIZE) == 100000
        assert pr.get(R.P_TOPIC_ALIAS_MAX) == 9
        assert pr.get(R.P_RETAIN_AVAILABLE) == 0
        assert pr.get(R.P_WILDCARD_AVAILABLE) == 0
        assert pr.get(R.P_SUB_ID_AVAILABLE) == 0
        assert pr.get(R.P_SHARED_AVAILABLE) == 0
        assert pr.get(R.P_MAX_QOS) == 1


def test_v5_empty_client_id_gets_assigned_id(node):
    with R.RawClient(node) as r:
        ack = r.connect("", properties={R.P_SESSION_EXPIRY: 30})
        assert ack.rc == 0
        assigned = ack.props.get(R.P_ASSIGNED_CLIENT_ID)
        assert assigned, ack
        r.send(R.disconnect(0))
        assert r.is_closed()
    # Two empty ids get two different identifiers.
    with R.RawClient(node) as r2:
        ack2 = r2.connect("")
        assert ack2.props.get(R.P_ASSIGNED_CLIENT_ID) not in (None, assigned)
    # The assigned id names a real session that can be resumed.
    with R.RawClient(node) as r3:
        ack3 = r3.connect(assigned, clean=False, properties={R.P_SESSION_EXPIRY: 30})
        assert ack3.rc == 0 and ack3.session_present


def test_v311_empty_id_without_clean_session_refused(node):
    with R.RawClient(node, version=4) as r:
        r.send(R.connect("", version=4, clean=False))
        p = r.expect(R.CONNACK)
        assert p.rc == 2 and not p.session_present  # identifier rejected
        assert r.is_closed()


def test_v311_empty_id_with_clean_session_accepted(node):
    with R.RawClient(node, version=4) as r:
        ack = r.connect("", version=4, clean=True)
        assert ack.rc == 0
        r.send(R.pingreq())
        r.expect(R.PINGRESP)


def test_client_id_too_long_refused(node):
    long_id = "x" * 300
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(long_id, version=4))
        assert r.expect(R.CONNACK).rc == 2
        assert r.is_closed()
    with R.RawClient(node) as r:
        r.send(R.connect(long_id))
        assert r.expect(R.CONNACK).rc == 0x85
        assert r.is_closed()


def test_unsupported_protocol_level(node):
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(uid("lvl"), version=6, proto_name="MQTT"))
        seen = r.wait_closed()
        acks = [p for p in seen if p.type == R.CONNACK]
        assert len(acks) == 1, seen
        # 3.1.1 "unacceptable protocol version" (1), or the v5 code 0x84.
        assert acks[0].body[1] in (0x01, 0x84), acks[0].body
    assert node.wait_log("event=bad_input") or node.wait_log("event=disconnect")


@pytest.mark.parametrize("version", [4, 5])
def test_wrong_protocol_name(node, version):
    with R.RawClient(node, version=version) as r:
        r.send(R.connect(uid("name"), version=version, proto_name="MQTX"))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


def test_mqisdp_name_with_level_4_refused(node):
    # "MQIsdp" is only valid with level 3.
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(uid("name"), version=4, proto_name="MQIsdp"))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


@pytest.mark.parametrize("version", [4, 5])
def test_reserved_connect_flag_closes(node, version):
    with R.RawClient(node, version=version) as r:
        r.send(R.connect(uid("rsv"), version=version, flags=0x03))  # clean + reserved bit 0
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


def test_connect_fixed_header_flags_nonzero_closes(node):
    pkt = bytearray(R.connect(uid("hdr"), version=4))
    pkt[0] |= 0x01
    with R.RawClient(node, version=4) as r:
        r.send(bytes(pkt))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


def test_server_keep_alive(node_factory):
    n = node_factory("--max-keepalive", "10")
    with R.RawClient(n) as r:
        ack = r.connect(uid("ka"), keepalive=60)
        assert ack.props.get(R.P_SERVER_KEEP_ALIVE) == 10
    with R.RawClient(n) as r:
        # 0 (no keep alive) is also above what the server allows.
        ack = r.connect(uid("ka"), keepalive=0)
        assert ack.props.get(R.P_SERVER_KEEP_ALIVE) == 10
    with R.RawClient(n) as r:
        ack = r.connect(uid("ka"), keepalive=5)
        # Within the limit: no property, or the same value.
        assert ack.props.get(R.P_SERVER_KEEP_ALIVE, 5) == 5


def test_server_keep_alive_enforced(node_factory):
    n = node_factory("--max-keepalive", "1")
    with R.RawClient(n) as r:
        ack = r.connect(uid("ka"), keepalive=600)
        assert ack.props.get(R.P_SERVER_KEEP_ALIVE) == 1
        t0 = time.time()
        seen = r.wait_closed(10)
        assert [p.rc for p in seen if p.type == R.DISCONNECT] == [0x8D], seen
        assert time.time() - t0 < 10


def test_keepalive_timeout_v5(node):
    with R.RawClient(node) as r:
        cid = uid("ka")
        assert r.connect(cid, keepalive=1).rc == 0
        t0 = time.time()
        seen = r.wait_closed(10)
        elapsed = time.time() - t0
        assert [p.rc for p in seen if p.type == R.DISCONNECT] == [0x8D], seen
        assert 1.0 <= elapsed < 10, elapsed
    assert R.wait_log_re(node, r"event=disconnect .*client=%s .*rc=0x8d" % re.escape(cid))


def test_keepalive_timeout_v311(node):
    with R.RawClient(node, version=4) as r:
        assert r.connect(uid("ka"), version=4, keepalive=1).rc == 0
        t0 = time.time()
        seen = r.wait_closed(10)
        assert seen == []  # 3.1.1 has no DISCONNECT from the server
        assert 1.0 <= time.time() - t0 < 10


def test_keepalive_pings_keep_connection(node):
    with R.RawClient(node) as r:
        assert r.connect(uid("ka"), keepalive=1).rc == 0
        end = time.time() + 3.5
        while time.time() < end:
            r.send(R.pingreq())
            assert r.expect(R.PINGRESP, timeout=5).type == R.PINGRESP
            time.sleep(0.4)  # pacing the client, not waiting for the broker
        r.send(R.pingreq())
        r.expect(R.PINGRESP)


def test_auth_method_refused(node):
    with R.RawClient(node) as r:
        r.send(R.connect(uid("auth"), properties=[(R.P_AUTH_METHOD, "SCRAM-SHA-1")]))
        p = r.expect(R.CONNACK)
        assert p.rc == 0x8C
        assert r.is_closed()


def test_mqtt31_raw(node):
    with R.RawClient(node, version=3) as r:
        r.send(R.connect(uid("v31"), version=3))
        p = r.expect(R.CONNACK)
        assert p.rc == 0
        topic = uid("t31")
        r.send(R.subscribe(1, [(topic, 1)], version=3))
        assert r.expect(R.SUBACK).codes == [1]
        r.send(R.publish(topic, b"x", qos=1, pid=2, version=3))
        got = {}
        while len(got) < 2:
            q = r.recv()
            got[q.type] = q
        assert got[R.PUBACK].pid == 2
        assert got[R.PUBLISH].payload == b"x" and got[R.PUBLISH].topic == topic


def test_mqtt31_paho(node):
    roundtrip(node, 3)


def test_takeover_v5(node):
    cid = uid("take")
    topic = uid("t")
    with R.RawClient(node) as first:
        assert first.connect(cid).rc == 0
        with Client(node, client_id=cid, version=5) as second:
            seen = first.wait_closed()
            assert [p.rc for p in seen if p.type == R.DISCONNECT] == [0x8E], seen
            second.subscribe(topic, 1)
            second.publish(topic, b"still here", qos=1)
            assert second.get().payload == b"still here"
            assert second.c.is_connected()


def test_takeover_v311(node):
    cid = uid("take")
    topic = uid("t")
    with R.RawClient(node, version=4) as first:
        assert first.connect(cid, version=4).rc == 0
        with Client(node, client_id=cid, version=4) as second:
            assert first.wait_closed() == []
            second.subscribe(topic, 1)
            second.publish(topic, b"ok", qos=1)
            assert second.get().payload == b"ok"


def _worker_of(node, sock):
    port = sock.getsockname()[1]
    pat = re.compile(r"event=accept conn=\d+ peer=127\.0\.0\.1:%d worker=(\d+)" % port)
    deadline = time.time() + 10
    while time.time() < deadline:
        m = pat.search(node.log())
        if m:
            return int(m.group(1))
        time.sleep(0.02)
    raise AssertionError("no accept log for port %d" % port)


def test_takeover_across_workers(node):
    """--workers 2: successive connections with one client id land on both
    workers; each takes the persistent session over from the previous one."""
    cid = uid("xw")
    topic = uid("t")
    workers = []
    prev = None
    for i in range(24):
        r = R.RawClient(node)
        r.send(R.connect(cid, clean=(i == 0), properties={R.P_SESSION_EXPIRY: 60}))
        ack = r.expect(R.CONNACK)
        assert ack.rc == 0
        assert ack.session_present == (i > 0), (i, ack)
        workers.append(_worker_of(node, r.sock))
        if prev is not None:
            seen = prev.wait_closed()
            assert [p.rc for p in seen if p.type == R.DISCONNECT] == [0x8E], (i, seen)
            prev.close()
        if i == 0:
            r.send(R.subscribe(1, [(topic, 1)]))
            assert r.expect(R.SUBACK).codes == [1]
        # The subscription lives in the session and follows it to the new owner.
        r.send(R.publish(topic, b"m%d" % i, qos=1, pid=100 + (i % 50)))
        got = []
        while len(got) < 2:
            p = r.recv()
            if p.type == R.PUBLISH:
                assert p.payload == b"m%d" % i, (i, p)
                r.send(R.puback(p.pid))
            got.append(p.type)
        assert sorted(got) == [R.PUBLISH, R.PUBACK]
        # Make sure our PUBACK was processed before the next takeover.
        r.send(R.pingreq())
        r.expect(R.PINGRESP)
        prev = r
        if i >= 5 and len(set(workers)) == 2:
            break
    prev.close()
    assert set(workers) == {0, 1}, workers


def test_takeover_v5_subscription_and_queue_survive(node):
    cid = uid("take")
    topic = uid("t")
    a = Client(node, client_id=cid, version=5, clean=True,
               properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    a.subscribe(topic, 1)
    b = Client(node, client_id=cid, version=5, clean=False,
               properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    assert b.session_present
    assert a.disconnected.wait(15)
    assert a.disconnect_rc == 0x8E
    with Client(node) as pub:
        pub.publish(topic, b"after takeover", qos=1)
    assert b.get().payload == b"after takeover"
    a.c.loop_stop()
    b.disconnect()


def test_v311_keepalive_above_max_is_not_silently_shortened(node_factory):
    """3.1.1 has no Server Keep Alive: a client asking for more than
    --max-keepalive must be refused at CONNACK or held to its own keep alive,
    never dropped for being idle less than 1.5 x what it asked for."""
    n = node_factory("--max-keepalive", "1")
    with R.RawClient(n, version=4) as r:
        ack = r.connect(uid("ka311"), version=4, keepalive=30)
        if ack.rc != 0:
            assert r.is_closed()
            return
        t0 = time.time()
        try:
            seen = r.wait_closed(4)
        except TimeoutError:
            return  # still connected after 4 s of silence: fine
        raise AssertionError("3.1.1 client with keep alive 30 was dropped after %.1f s of silence (got %r)"
                             % (time.time() - t0, seen))


def test_v311_password_without_username_refused(node):
    with R.RawClient(node, version=4) as r:
        r.send(R.connect(uid("pw"), version=4, password=b"secret"))
        seen = r.wait_closed()
        assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen


@pytest.mark.parametrize("version", [4, 5])
def test_username_and_password_accepted(node, version):
    with R.RawClient(node, version=version) as r:
        assert r.connect(uid("up"), version=version, username="alice", password=b"pw").rc == 0
        r.send(R.pingreq())
        r.expect(R.PINGRESP)


def test_v5_password_without_username_accepted(node):
    # MQTT 5 allows a password without a user name (§3.1.2.9).
    with R.RawClient(node) as r:
        assert r.connect(uid("pw5"), password=b"token").rc == 0


@pytest.mark.parametrize("prop", [(R.P_RECEIVE_MAX, 0), (R.P_MAX_PACKET_SIZE, 0)], ids=["receive-max-0", "max-packet-0"])
def test_v5_connect_property_zero_is_protocol_error(node, prop):
    with R.RawClient(node) as r:
        r.send(R.connect(uid("z"), properties=[prop]))
        seen = r.wait_closed()
        acks = [p for p in seen if p.type == R.CONNACK]
        assert len(acks) == 1 and acks[0].rc in (0x81, 0x82), seen


def test_v5_connect_duplicate_property_refused(node):
    with R.RawClient(node) as r:
        r.send(R.connect(uid("z"), properties=[(R.P_SESSION_EXPIRY, 1), (R.P_SESSION_EXPIRY, 2)]))
        seen = r.wait_closed()
        acks = [p for p in seen if p.type == R.CONNACK]
        assert len(acks) <= 1 and all(p.rc in (0x81, 0x82) for p in acks), seen


@pytest.mark.parametrize("expiry", [0, 30], ids=["no-session-expiry", "session-expiry-30"])
def test_connect_storm_same_client_id(node, expiry):
    """20 connections with one client id at once (--workers 2), 5 rounds:
    every connection gets an answer, exactly one is left standing (each
    earlier one is taken over), and that one works: it receives what it
    publishes to itself."""
    for round_ in range(5):
        _storm_round(node, expiry, round_)
    # The broker is healthy afterwards.
    roundtrip(node, 5)


def _storm_round(node, expiry, round_):
    cid = uid("storm")
    socks = [R.RawClient(node) for _ in range(20)]
    for r in socks:
        r.send(R.connect(cid, properties={R.P_SESSION_EXPIRY: expiry}))
    alive, hung = [], []
    deadline = time.time() + 10
    for r in socks:
        try:
            p = r.recv(max(0.1, deadline - time.time()))
        except R.Closed:
            continue
        except TimeoutError:
            hung.append(r.sock.getsockname()[1])
            continue
        if p.type == R.CONNACK and p.rc == 0:
            alive.append(r)
        else:
            assert p.type == R.DISCONNECT and p.rc == 0x8E, p
    assert hung == [], "round %d: no CONNACK and no close within 10 s for peer ports %s" % (round_, hung)
    # Of those that got CONNACK, all but one get taken over and closed.
    # Every CONNECT has been answered, so no takeover is still to come:
    # once one connection is left it is the one standing (it must then work
    # and still be open at the end of the round).
    standing = _left_open(alive, 10)
    assert len(standing) == 1, "round %d: %d connections with client id %s still open" % (
        round_, len(standing), cid)
    s = standing[0]
    topic = uid("t")
    s.send(R.subscribe(1, [(topic, 1)]))
    assert s.expect(R.SUBACK).codes == [1]
    s.send(R.publish(topic, b"survivor", qos=0))
    try:
        assert s.expect(R.PUBLISH, timeout=5).payload == b"survivor"
    except TimeoutError:
        raise AssertionError("round %d: the surviving connection of %s does not get its own messages"
                             % (round_, cid))
    s.send(R.pingreq())
    assert s.expect(R.PINGRESP).type == R.PINGRESP
    for r in socks:
        r.close()


def _left_open(clients, timeout):
    """Read all `clients` until at most one is still open (or `timeout`
    passes): every packet a closed one got must be DISCONNECT 0x8E. Returns
    those still open."""
    seen = {r: [] for r in clients}
    left = list(clients)
    deadline = time.time() + timeout
    while len(left) > 1 and time.time() < deadline:
        for r in list(left):
            try:
                seen[r].append(r.recv(0.02))
            except TimeoutError:
                continue
            except R.Closed:
                left.remove(r)
                assert all(p.type == R.DISCONNECT and p.rc == 0x8E for p in seen[r]), seen[r]
    for r in left:
        assert all(p.type == R.DISCONNECT and p.rc == 0x8E for p in seen[r]), seen[r]
    return left


@pytest.mark.parametrize("version", [4, 5])
def test_takeover_session_present_consistent(node, version):
    """A takes the id with a clean, non-persistent session and subscribes;
    B connects with the same id and clean start 0 while A is online. Either
    B resumes A's session (session present 1, subscription still there) or
    starts a new one (session present 0, no subscription) — not a mix."""
    cid, topic = uid("mix"), uid("t")
    a = R.RawClient(node, version=version)
    assert a.connect(cid, version=version, clean=True).rc == 0
    a.send(R.subscribe(1, [(topic, 1)], version=version))
    a.expect(R.SUBACK)
    b = R.RawClient(node, version=version)
    ack = b.connect(cid, version=version, clean=False)
    assert ack.rc == 0
    b.send(R.publish(topic, b"probe", qos=0, version=version))
    b.send(R.pingreq())
    got = []
    while True:
        p = b.recv()
        if p.type == R.PINGRESP:
            break
        got.append(p)
    # (a PUBLISH routed to B's own session arrives before or right after PINGRESP)
    try:
        got.append(b.recv(1))
    except TimeoutError:
        pass
    has_sub = any(p.type == R.PUBLISH and p.payload == b"probe" for p in got)
    assert has_sub == ack.session_present, \
        "CONNACK session present=%d but the old subscription %s" % (
            ack.session_present, "is still active" if has_sub else "is gone")
    a.close()
    b.close()


# --- CONNECT validation against §3.1.4 of both versions, one table -------------------------
#
# v5 §3.1.4: a CONNECT that does not match §3.1 is closed, and the Server MAY
# send a CONNACK with a code >= 0x80 first (Shoal does: 0x81, 0x82, ...).
# 3.1.1 §3.1.4 [MQTT-3.1.4-1]: a CONNECT that does not conform is closed
# WITHOUT a CONNACK; [MQTT-3.2.2-6]: a CONNACK only when one of the six
# return codes applies (1 level, 2 identifier, 4 user name or password, ...).
# Both: a wrong protocol name (§3.1.2.1) is another protocol, closed at once.

CLOSE = None


def _with_trailing_byte(pkt):
    # One byte past the payload: the remaining length covers it (< 128 here).
    assert pkt[1] < 127
    return R.fixed(R.CONNECT, 0, pkt[2:] + b"\xaa")


FORGED_ID = "abc\n2026-12-07T00:00:00.000Z info  event=auth_ok client=admin"

CONNECT_TABLE = [
    # (id, version the reply is read in, CONNECT bytes, CONNACK code or CLOSE)
    ("v31-empty-id", 3, lambda: R.connect("", version=3), 2),
    ("v31-id-ok", 3, lambda: R.connect(uid("v31"), version=3), 0),
    ("v311-empty-id-clean", 4, lambda: R.connect("", version=4), 0),
    ("v311-empty-id-persistent", 4, lambda: R.connect("", version=4, clean=False), 2),
    ("v311-wrong-name", 4, lambda: R.connect(uid("n"), version=4, proto_name="MQTX"), CLOSE),
    ("v5-wrong-name", 5, lambda: R.connect(uid("n"), version=5, proto_name="MQTX"), CLOSE),
    ("v31-wrong-name", 3, lambda: R.connect(uid("n"), version=3, proto_name="MQIsdX"), CLOSE),
    ("v311-level-6", 4, lambda: R.connect(uid("l"), version=6, proto_name="MQTT"), 1),
    ("v311-mqisdp-level-4", 4, lambda: R.connect(uid("l"), version=4, proto_name="MQIsdp"), 1),
    ("v311-reserved-flag", 4, lambda: R.connect(uid("r"), version=4, flags=0x03), CLOSE),
    ("v5-reserved-flag", 5, lambda: R.connect(uid("r"), version=5, flags=0x03), 0x81),
    ("v311-password-without-user", 4, lambda: R.connect(uid("p"), version=4, password=b"x"), CLOSE),
    ("v311-will-qos-3", 4, lambda: R.connect(uid("w"), version=4, will={"topic": "t", "qos": 3}), CLOSE),
    ("v5-will-qos-3", 5, lambda: R.connect(uid("w"), version=5, will={"topic": "t", "qos": 3}), 0x81),
    ("v311-will-topic-wildcard", 4, lambda: R.connect(uid("w"), version=4, will={"topic": "a/#"}), CLOSE),
    ("v5-will-topic-wildcard", 5, lambda: R.connect(uid("w"), version=5, will={"topic": "a/#"}), 0x90),
    ("v311-will-topic-newline", 4, lambda: R.connect(uid("w"), version=4, will={"topic": "a\nb"}), CLOSE),
    ("v5-will-topic-newline", 5, lambda: R.connect(uid("w"), version=5, will={"topic": "a\nb"}), 0x81),
    ("v311-id-bad-utf8", 4, lambda: R.connect(b"\xc3\x28id", version=4), CLOSE),
    ("v5-id-bad-utf8", 5, lambda: R.connect(b"\xc3\x28id", version=5), 0x81),
    ("v311-trailing-byte", 4, lambda: _with_trailing_byte(R.connect(uid("t"), version=4)), CLOSE),
    ("v311-id-300", 4, lambda: R.connect("x" * 300, version=4), 2),
    ("v5-id-300", 5, lambda: R.connect("x" * 300, version=5), 0x85),
    ("v311-id-forged-line", 4, lambda: R.connect(FORGED_ID, version=4), 2),
    ("v5-id-forged-line", 5, lambda: R.connect(FORGED_ID, version=5), 0x85),
    ("v31-id-escape", 3, lambda: R.connect("a\x1b[2Jb", version=3), 2),
    ("v5-id-c1-nel", 5, lambda: R.connect("a\u0085b", version=5), 0x85),
    ("v311-user-cr", 4, lambda: R.connect(uid("u"), version=4, username="bob\r", password=b"pw"), 4),
    ("v5-user-newline", 5, lambda: R.connect(uid("u"), version=5, username="bob\nevent=x"), 0x86),
    ("v5-user-del", 5, lambda: R.connect(uid("u"), version=5, username="bob\x7f"), 0x86),
    ("v5-receive-max-0", 5, lambda: R.connect(uid("z"), properties=[(R.P_RECEIVE_MAX, 0)]), 0x82),
    ("v5-topic-alias-in-connect", 5, lambda: R.connect(uid("z"), properties=[(R.P_TOPIC_ALIAS, 1)]), 0x81),
    ("v5-auth-data-without-method", 5, lambda: R.connect(uid("z"), properties=[(R.P_AUTH_DATA, b"x")]), 0x82),
]


@pytest.mark.parametrize("version,make,want", [r[1:] for r in CONNECT_TABLE], ids=[r[0] for r in CONNECT_TABLE])
def test_connect_validation_table(node, version, make, want):
    with R.RawClient(node, version=4 if version == 3 else version) as r:
        port = r.sock.getsockname()[1]
        r.send(make())
        if want == 0:
            ack = r.expect(R.CONNACK)
            assert ack.rc == 0, ack
            r.send(R.pingreq())
            r.expect(R.PINGRESP)
            return
        seen = r.wait_closed()
        if want is CLOSE:
            assert seen == [], "expected a close without CONNACK, got %r" % seen
        else:
            assert [(p.type, p.rc, p.session_present) for p in seen] == [(R.CONNACK, want, False)], seen
    # One INFO line names the peer.
    m = R.wait_log_re(node, r"info\s+event=(bad_input|disconnect) [^\n]*peer=127\.0\.0\.1:%d\b" % port)
    assert m, node.log()[-3000:]


def test_forged_client_id_never_reaches_the_log(node):
    """Issue 15 item 15 as the user tried it: the client id's second line
    never appears as a line of its own, and the node keeps serving."""
    for version in (4, 5):
        with R.RawClient(node, version=version) as r:
            r.send(R.connect(FORGED_ID, version=version))
            assert r.expect(R.CONNACK).rc == (0x85 if version == 5 else 2)
            assert r.is_closed()
    roundtrip(node, 5)
    assert not re.search(r"^\S+ info\s+event=auth_ok", node.log(), re.M), node.log()[-3000:]
    assert "client=admin" not in node.log()
