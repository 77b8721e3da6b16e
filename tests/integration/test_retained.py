# SPDX-License-Identifier: Apache-2.0
"""Retained messages: store, replace, delete, wildcard lookup, Retain Handling,
expiry and --retain-available."""
import time

import pytest

import mqttraw as R
from pahoclient import Client, props, uid


def retained_for(node, flt, qos=1, version=5):
    """Subscribe a fresh client to `flt` and return the retained messages it
    gets (everything before a barrier)."""
    with Client(node, version=version) as c:
        c.subscribe(flt, qos)
        return c.barrier()


def test_set_replace_delete(node):
    t = uid("ret")
    with Client(node) as pub:
        pub.publish(t, b"v1", qos=1, retain=True)
        got = retained_for(node, t)
        assert [(m.payload, m.retain) for m in got] == [(b"v1", True)]
        pub.publish(t, b"v2", qos=1, retain=True)
        got = retained_for(node, t)
        assert [(m.payload, m.retain) for m in got] == [(b"v2", True)]
        pub.publish(t, b"", qos=1, retain=True)
        assert retained_for(node, t) == []
        # A non-retained publish does not touch the store.
        pub.publish(t, b"v3", qos=1, retain=True)
        pub.publish(t, b"live only", qos=1)
        assert [m.payload for m in retained_for(node, t)] == [b"v3"]
        pub.publish(t, b"", qos=1, retain=True)


def test_retained_delivered_v311(node):
    t = uid("ret")
    with Client(node, version=4) as pub:
        pub.publish(t, b"kept", qos=1, retain=True)
    got = retained_for(node, t, version=4)
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]


def test_live_retained_publish_to_existing_subscriber(node):
    t = uid("ret")
    with Client(node) as sub, Client(node, version=4) as sub4, Client(node) as pub:
        sub.subscribe(t, 1)
        sub4.subscribe(t, 1)
        pub.publish(t, b"live", qos=1, retain=True)
        # Existing subscriptions get it with RETAIN 0 (no Retain As Published).
        m = sub.get()
        assert (m.payload, m.retain) == (b"live", False)
        m = sub4.get()
        assert (m.payload, m.retain) == (b"live", False)
        # The delete (empty payload) is forwarded to subscribers as normal.
        pub.publish(t, b"", qos=1, retain=True)
        assert sub.get().payload == b""
        assert sub4.get().payload == b""


def test_wildcard_lookup(node):
    b = uid("ret")
    topics = [b, b + "/1", b + "/2/x", b + "/3", b + "/3/y/z"]
    with Client(node) as pub:
        for t in topics:
            pub.publish(t, t.encode(), qos=1, retain=True)
        assert sorted(m.topic for m in retained_for(node, b + "/+")) == [b + "/1", b + "/3"]
        assert sorted(m.topic for m in retained_for(node, b + "/#")) == sorted(topics)
        assert sorted(m.topic for m in retained_for(node, b + "/+/x")) == [b + "/2/x"]
        assert sorted(m.topic for m in retained_for(node, "+/2/x")) == [b + "/2/x"]
        assert sorted(m.topic for m in retained_for(node, "+/+/+")) == [b + "/2/x"]
        assert all(m.retain for m in retained_for(node, b + "/#"))
        for t in topics:
            pub.publish(t, b"", qos=1, retain=True)
        assert retained_for(node, b + "/#") == []


def test_hash_does_not_return_sys_retained(node):
    # Wait until $SYS values exist in the retained store.
    deadline = time.time() + 15
    while not retained_for(node, "$SYS/broker/version", qos=0):
        assert time.time() < deadline, "$SYS/broker/version never retained"
        time.sleep(0.1)
    got = retained_for(node, "#", qos=0)
    assert not any(m.topic.startswith("$") for m in got), [m.topic for m in got]
    got = retained_for(node, "+/broker/version", qos=0)
    assert got == [], [m.topic for m in got]


def test_retained_qos_downgraded(node):
    t = uid("ret")
    with Client(node) as pub:
        pub.publish(t, b"q2", qos=2, retain=True)
        assert [(m.qos, m.retain) for m in retained_for(node, t, qos=1)] == [(1, True)]
        assert [(m.qos, m.retain) for m in retained_for(node, t, qos=2)] == [(2, True)]
        assert [(m.qos, m.retain) for m in retained_for(node, t, qos=0)] == [(0, True)]
        pub.publish(t, b"", qos=1, retain=True)


def test_retained_keeps_properties_and_gets_sub_id(node):
    t = uid("ret")
    with R.RawClient(node) as pub:
        assert pub.connect(uid("p")).rc == 0
        pub.send(R.publish(t, b"x", qos=1, pid=1, retain=True,
                           properties=[(R.P_CONTENT_TYPE, "text/x"), (R.P_USER_PROPERTY, ("k", "v"))]))
        pub.expect(R.PUBACK)
    with R.RawClient(node) as sub:
        assert sub.connect(uid("s")).rc == 0
        sub.send(R.subscribe(1, [(t, 1)], properties={R.P_SUBSCRIPTION_ID: 77}))
        sub.expect(R.SUBACK)
        p = sub.expect(R.PUBLISH)
        assert p.retain and p.payload == b"x"
        assert p.props.get(R.P_CONTENT_TYPE) == "text/x"
        assert p.props.all(R.P_USER_PROPERTY) == [("k", "v")]
        assert p.props.all(R.P_SUBSCRIPTION_ID) == [77]


def _sub_retained(r, pid, flt, rh):
    """Subscribe with Retain Handling `rh`; return retained payloads sent."""
    marker = uid("mark")
    r.send(R.subscribe(pid, [(flt, R.sub_options(qos=1, retain_handling=rh))]))
    r.send(R.subscribe(pid + 1000, [(marker, 1)]))
    out = []
    acks = {}
    while True:
        p = r.recv()
        if p.type == R.SUBACK:
            acks[p.pid] = p.codes
            if p.pid == pid + 1000:
                r.send(R.publish(marker, b"m", qos=1, pid=pid + 2000))
        elif p.type == R.PUBLISH:
            r.send(R.puback(p.pid))
            if p.topic == marker:
                assert acks[pid] == [1]
                return out
            out.append((p.payload, p.retain))


@pytest.mark.parametrize("rh,first,again", [(0, True, True), (1, True, False), (2, False, False)])
def test_retain_handling(node, rh, first, again):
    t = uid("rh")
    with Client(node) as pub:
        pub.publish(t, b"kept", qos=1, retain=True)
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        assert _sub_retained(r, 1, t, rh) == ([(b"kept", True)] if first else [])
        # Same filter again: an existing subscription.
        assert _sub_retained(r, 2, t, rh) == ([(b"kept", True)] if again else [])
        # After unsubscribe it is new again.
        r.send(R.unsubscribe(3, [t]))
        assert r.expect(R.UNSUBACK, skip=(R.PUBACK,)).codes == [0]
        assert _sub_retained(r, 4, t, rh) == ([(b"kept", True)] if first else [])


def test_retained_message_expiry(node):
    t = uid("rexp")
    with R.RawClient(node) as pub:
        assert pub.connect(uid("p")).rc == 0
        pub.send(R.publish(t, b"short", qos=1, pid=1, retain=True, properties={R.P_MESSAGE_EXPIRY: 1}))
        pub.expect(R.PUBACK)
        t0 = time.time()
    # Right away it is there (the 1 s has not passed on this check's side).
    first = retained_for(node, t)
    if time.time() - t0 < 0.9:
        assert [m.payload for m in first] == [b"short"]
    # Poll until it is gone; it must go within a few seconds.
    deadline = t0 + 10
    while True:
        got = retained_for(node, t)
        if not got:
            break
        assert time.time() < deadline, "retained message with expiry 1 s still there after 10 s"
        time.sleep(0.2)
    assert time.time() - t0 >= 0.9


def test_retained_with_long_expiry_stays(node):
    t = uid("rexp")
    with R.RawClient(node) as pub:
        assert pub.connect(uid("p")).rc == 0
        pub.send(R.publish(t, b"long", qos=1, pid=1, retain=True, properties={R.P_MESSAGE_EXPIRY: 3600}))
        pub.expect(R.PUBACK)
    got = retained_for(node, t)
    assert [m.payload for m in got] == [b"long"]
    assert 3590 <= got[0].properties.MessageExpiryInterval <= 3600


def test_retain_not_available_v5(node_factory):
    n = node_factory("--retain-available", "false")
    with R.RawClient(n) as r:
        ack = r.connect(uid("p"))
        assert ack.props.get(R.P_RETAIN_AVAILABLE) == 0
        r.send(R.publish("a/b", b"no", qos=0))  # not retained: fine
        r.send(R.publish("a/b", b"x", qos=1, pid=1, retain=True))
        seen = r.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x9A)], seen
    assert retained_for(n, "a/b") == []


def test_retain_not_available_v311(node_factory):
    n = node_factory("--retain-available", "false")
    with R.RawClient(n, version=4) as r:
        assert r.connect(uid("p"), version=4).rc == 0
        r.send(R.publish("a/b", b"x", qos=1, pid=1, retain=True, version=4))
        assert r.wait_closed() == []


def test_retain_not_available_will_retain_refused(node_factory):
    n = node_factory("--retain-available", "false")
    with R.RawClient(n) as r:
        r.send(R.connect(uid("p"), will={"topic": "w", "payload": b"x", "retain": True}))
        assert r.expect(R.CONNACK).rc == 0x9A
        assert r.is_closed()


def test_many_retained(node):
    b = uid("many")
    with R.RawClient(node) as pub:
        assert pub.connect(uid("p")).rc == 0
        for i in range(200):
            pub.send(R.publish(b + "/%d" % i, b"%d" % i, retain=True))
        pub.send(R.pingreq())
        pub.expect(R.PINGRESP)
    got = retained_for(node, b + "/#", qos=0)
    assert sorted(int(m.payload) for m in got) == list(range(200))
