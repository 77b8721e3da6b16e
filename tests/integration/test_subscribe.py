# SPDX-License-Identifier: Apache-2.0
"""SUBSCRIBE / UNSUBSCRIBE: matching, reason codes, shared subscriptions, $SYS."""
import collections
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import mqttraw as R
from pahoclient import Client, props, uid


def received(sub, pub, topics):
    """Publish each topic (QoS 1) from pub, then return the topics sub got."""
    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    return sorted(m.topic for m in sub.barrier(pub))


def test_single_level_wildcard(node):
    b = uid("w")
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(b + "/+/c", 1)
        got = received(sub, pub, [b + "/x/c", b + "/x/d", b + "/c", b + "//c", b + "/x/y/c", b + "/yy/c"])
        assert got == sorted([b + "/x/c", b + "//c", b + "/yy/c"])


def test_multi_level_wildcard(node):
    b = uid("w")
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(b + "/#", 1)
        got = received(sub, pub, [b, b + "/", b + "/x", b + "/x/y/z", b + "x", "other/" + b])
        assert got == sorted([b, b + "/", b + "/x", b + "/x/y/z"])


def test_plus_at_start_and_hash_only(node):
    b = uid("w")
    with Client(node) as plus, Client(node) as hash_, Client(node) as pub:
        plus.subscribe("+/" + b, 1)
        hash_.subscribe("#", 1)
        topics = ["x/" + b, "/" + b, b, "x/y/" + b]
        for t in topics:
            pub.publish(t, b"1", qos=1)
        got = sorted(m.topic for m in plus.barrier(pub))
        assert got == sorted(["x/" + b, "/" + b])
        got = sorted(m.topic for m in hash_.barrier(pub) if not m.topic.startswith("barrier"))
        assert got == sorted(topics)


def test_sys_topics_not_matched_by_wildcards(node):
    with Client(node) as all_, Client(node) as sysplus, Client(node) as sys_, Client(node) as pub:
        all_.subscribe("#", 0)
        sysplus.subscribe("+/broker/uptime", 0)
        sys_.subscribe("$SYS/#", 0)
        # $SYS is published every second (--sys-interval 1): wait for it to flow.
        m = sys_.get()
        assert m.topic.startswith("$SYS/")
        deadline = time.time() + 2.5  # more than two $SYS rounds
        pub.publish(uid("normal"), b"n", qos=1)
        while time.time() < deadline:
            sys_.get()
        got = [m.topic for m in all_.messages.queue]
        assert not any(t.startswith("$") for t in got), got
        assert any(not t.startswith("$") for t in got), got
        assert list(sysplus.messages.queue) == []


def test_sys_uptime_and_version(node):
    with Client(node) as c:
        c.subscribe("$SYS/broker/uptime", 0)
        c.subscribe("$SYS/broker/version", 0)
        seen = {}
        deadline = time.time() + 15
        while len(seen) < 2 and time.time() < deadline:
            m = c.get()
            seen[m.topic] = m.payload
        assert int(seen["$SYS/broker/uptime"]) >= 0
        assert b"shoal" in seen["$SYS/broker/version"]
        # Uptime moves on.
        first = int(seen["$SYS/broker/uptime"])
        while True:
            m = c.get()
            if m.topic == "$SYS/broker/uptime" and int(m.payload) > first:
                break


def test_suback_codes_per_filter_v5(node):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        b = uid("f")
        r.send(R.subscribe(5, [(b + "/ok", 1), (b + "/#/b", 1), (b + "/+", 2), (b + "a#", 0), (b + "/+a", 0),
                               (b + "/q0", 0)]))
        sa = r.expect(R.SUBACK)
        assert sa.pid == 5
        assert sa.codes == [1, 0x8F, 2, 0x8F, 0x8F, 0]


def test_suback_codes_per_filter_v311(node):
    with R.RawClient(node, version=4) as r:
        assert r.connect(uid("s"), version=4).rc == 0
        b = uid("f")
        r.send(R.subscribe(6, [(b + "/ok", 2), (b + "/#/b", 1), (b + "/+", 1)], version=4))
        sa = r.expect(R.SUBACK)
        assert sa.pid == 6 and sa.codes == [2, 0x80, 1]


def test_suback_max_qos(node_factory):
    n = node_factory("--max-qos", "1")
    with R.RawClient(n) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("a", 2), ("b", 1), ("c", 0)]))
        assert r.expect(R.SUBACK).codes == [1, 1, 0]


def test_shared_subscriptions_disabled(node_factory):
    n = node_factory("--shared-subscriptions", "false")
    with R.RawClient(n) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("$share/g/a", 1), ("a", 1)]))
        assert r.expect(R.SUBACK).codes == [0x9E, 1]
    with R.RawClient(n, version=4) as r:
        assert r.connect(uid("s"), version=4).rc == 0
        r.send(R.subscribe(1, [("$share/g/a", 1)], version=4))
        assert r.expect(R.SUBACK).codes == [0x80]


def test_wildcard_subscriptions_disabled(node_factory):
    n = node_factory("--wildcard-subscriptions", "false")
    with R.RawClient(n) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("a/+", 1), ("a/#", 1), ("a/b", 1), ("$share/g/a/+", 1)]))
        assert r.expect(R.SUBACK).codes == [0xA2, 0xA2, 1, 0xA2]


def test_subscription_identifiers_disabled(node_factory):
    n = node_factory("--subscription-identifiers", "false")
    with R.RawClient(n) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("a", 1)], properties={R.P_SUBSCRIPTION_ID: 4}))
        assert r.expect(R.SUBACK).codes == [0xA1]
        r.send(R.subscribe(2, [("a", 1)]))
        assert r.expect(R.SUBACK).codes == [1]


def test_subscription_identifier_delivered(node):
    t = uid("sid")
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [(t, 1)], properties={R.P_SUBSCRIPTION_ID: 268435455}))
        r.expect(R.SUBACK)
        with Client(node) as pub:
            pub.publish(t, b"x", qos=1)
        p = r.expect(R.PUBLISH)
        assert p.props.all(R.P_SUBSCRIPTION_ID) == [268435455]


def test_subscription_identifier_zero_is_protocol_error(node):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("a", 1)], properties={R.P_SUBSCRIPTION_ID: 0}))
        seen = r.wait_closed()
        assert len(seen) == 1 and seen[0].type == R.DISCONNECT and seen[0].rc in (0x81, 0x82), seen


@pytest.mark.parametrize("opts", [0x03, 0x30, 0xC0], ids=["qos3", "retain-handling-3", "reserved-bits"])
def test_bad_subscription_options(node, opts):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("a", opts)]))
        seen = r.wait_closed()
        assert len(seen) == 1 and seen[0].type == R.DISCONNECT and seen[0].rc in (0x81, 0x82), seen


def test_subscribe_without_filters_is_an_error(node):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, []))
        seen = r.wait_closed()
        assert len(seen) == 1 and seen[0].type == R.DISCONNECT and seen[0].rc in (0x81, 0x82), seen


def test_unsuback_codes(node):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        t = uid("u")
        r.send(R.subscribe(1, [(t, 1), ("$share/g/" + t, 1)]))
        assert r.expect(R.SUBACK).codes == [1, 1]
        r.send(R.unsubscribe(2, [t, uid("never"), "$share/g/" + t]))
        ua = r.expect(R.UNSUBACK)
        assert ua.pid == 2 and ua.codes == [0x00, 0x11, 0x00]
        r.send(R.unsubscribe(3, [t]))
        assert r.expect(R.UNSUBACK).codes == [0x11]


def test_unsuback_v311(node):
    with R.RawClient(node, version=4) as r:
        assert r.connect(uid("s"), version=4).rc == 0
        r.send(R.unsubscribe(9, ["nothing"], version=4))
        ua = r.expect(R.UNSUBACK)
        assert ua.pid == 9 and ua.body == b"\x00\x09"


def test_unsubscribe_stops_delivery(node):
    t = uid("u")
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(t, 1)
        pub.publish(t, b"1", qos=1)
        assert sub.get().payload == b"1"
        assert sub.unsubscribe(t) == [0]
        pub.publish(t, b"2", qos=1)
        assert sub.barrier(pub) == []


def test_resubscribe_replaces(node):
    t = uid("re")
    with Client(node) as sub, Client(node) as pub:
        assert sub.subscribe(t, 0) == [0]
        assert sub.subscribe(t, 2) == [2]
        pub.publish(t, b"x", qos=2)
        got = sub.barrier(pub)
        assert [(m.payload, m.qos) for m in got] == [(b"x", 2)]


def test_shared_subscription_exactly_one_member(node):
    """3 members of $share/g1, a plain subscriber on the same topic: every
    message reaches exactly one member, and the plain subscriber gets all."""
    t = uid("shared")
    group = "$share/g1/" + t
    members = [Client(node) for _ in range(3)]
    plain = Client(node)
    try:
        for m in members:
            assert m.subscribe(group, 1) == [1]
        plain.subscribe(t, 1)
        with Client(node) as pub:
            for i in range(30):
                pub.publish(t, b"%d" % i, qos=1)
        everything = plain.get_n(30)
        assert sorted(int(m.payload) for m in everything) == list(range(30))
        ids = []
        deadline = time.time() + 15
        while len(ids) < 30:
            assert time.time() < deadline, sorted(ids)
            for m in members:
                try:
                    ids.append(int(m.messages.get(timeout=0.05).payload))
                except Exception:
                    pass
        assert sorted(ids) == list(range(30)), sorted(ids)
        # No extra copies turn up afterwards.
        for m in members:
            m.none(0.3)
        plain.none(0.1)
    finally:
        for m in members:
            m.disconnect()
        plain.disconnect()


def test_shared_subscription_even_split(node):
    """Round robin: 3 members, 30 messages → 10 each."""
    t = uid("shared")
    group = "$share/grp/" + t
    members = [Client(node) for _ in range(3)]
    try:
        for m in members:
            m.subscribe(group, 1)
        with Client(node) as pub:
            for i in range(30):
                pub.publish(t, b"%d" % i, qos=1)
        got = {i: [] for i in range(3)}
        total = 0
        deadline = time.time() + 15
        while total < 30:
            assert time.time() < deadline, got
            for i, m in enumerate(members):
                try:
                    msg = m.messages.get(timeout=0.05)
                except Exception:
                    continue
                got[i].append(int(msg.payload))
                total += 1
        assert sorted(sum(got.values(), [])) == list(range(30))
        assert [len(v) for v in got.values()] == [10, 10, 10], got
        for m in members:
            m.none(0.3)
    finally:
        for m in members:
            m.disconnect()


def test_shared_subscription_two_groups_and_plain(node):
    t = uid("shared")
    a = [Client(node) for _ in range(2)]
    b = [Client(node) for _ in range(2)]
    plain = Client(node)
    try:
        for m in a:
            m.subscribe("$share/A/" + t, 1)
        for m in b:
            m.subscribe("$share/B/" + t, 1)
        plain.subscribe(t, 1)
        with Client(node) as pub:
            for i in range(20):
                pub.publish(t, b"%d" % i, qos=1)
        assert sorted(int(m.payload) for m in plain.get_n(20)) == list(range(20))
        for grp in (a, b):
            ids = []
            deadline = time.time() + 15
            while len(ids) < 20:
                assert time.time() < deadline, ids
                for m in grp:
                    try:
                        ids.append(int(m.messages.get(timeout=0.05).payload))
                    except Exception:
                        pass
            assert sorted(ids) == list(range(20))
    finally:
        for m in a + b + [plain]:
            m.disconnect()


def test_shared_subscription_member_leaves(node):
    t = uid("shared")
    m1, m2 = Client(node), Client(node)
    try:
        m1.subscribe("$share/g/" + t, 1)
        m2.subscribe("$share/g/" + t, 1)
        m2.disconnect()
        with Client(node) as pub:
            for i in range(6):
                pub.publish(t, b"%d" % i, qos=1)
        assert sorted(int(m.payload) for m in m1.get_n(6)) == list(range(6))
    finally:
        m1.disconnect()


def test_shared_subscription_wildcard_filter(node):
    b = uid("shared")
    with Client(node) as m, Client(node) as pub:
        m.subscribe("$share/g/" + b + "/+", 1)
        pub.publish(b + "/x", b"1", qos=1)
        assert m.get().topic == b + "/x"


@pytest.mark.parametrize("flt", ["$share/g", "$share//a", "$share/g+/a", "$share/g#/a", "$share/"])
def test_shared_subscription_invalid(node, flt):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [(flt, 1)]))
        sa = r.expect(R.SUBACK)
        assert sa.codes == [0x8F], (flt, sa)


def test_shared_subscription_no_local_is_protocol_error(node):
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [("$share/g/a", R.sub_options(qos=1, no_local=True))]))
        seen = r.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x82)], seen


def test_shared_subscription_gets_no_retained(node):
    t = uid("shared")
    with Client(node) as pub, Client(node) as m:
        pub.publish(t, b"kept", qos=1, retain=True)
        m.subscribe("$share/g/" + t, 1)
        m.subscribe(t + "/other", 1)
        assert m.barrier(pub) == []
        pub.publish(t, b"", qos=1, retain=True)


def test_many_filters_in_one_subscribe(node):
    b = uid("many")
    filters = [(b + "/%d" % i, i % 3) for i in range(100)]
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, filters))
        assert r.expect(R.SUBACK).codes == [i % 3 for i in range(100)]
        with Client(node) as pub:
            pub.publish(b + "/99", b"x", qos=0)
        assert r.expect(R.PUBLISH).topic == b + "/99"


def test_resubscribe_replaces_subscription_identifier(node):
    t = uid("sid")
    with R.RawClient(node) as r:
        assert r.connect(uid("s")).rc == 0
        r.send(R.subscribe(1, [(t, 1)], properties={R.P_SUBSCRIPTION_ID: 5}))
        r.expect(R.SUBACK)
        r.send(R.subscribe(2, [(t, 1)]))
        r.expect(R.SUBACK)
        with Client(node) as pub:
            pub.publish(t, b"x", qos=1)
        p = r.expect(R.PUBLISH)
        assert p.props.all(R.P_SUBSCRIPTION_ID) == [], p
        r.send(R.subscribe(3, [(t, 1)], properties={R.P_SUBSCRIPTION_ID: 9}))
        r.expect(R.SUBACK, skip=(R.PUBLISH,))
        with Client(node) as pub:
            pub.publish(t, b"y", qos=1)
        while True:
            p = r.expect(R.PUBLISH)
            if p.payload == b"y":
                break
        assert p.props.all(R.P_SUBSCRIPTION_ID) == [9]


def test_sys_clients_connected_tracks_connections(node):
    with Client(node) as c:
        c.subscribe("$SYS/broker/clients/connected", 0)

        def wait_value(want):
            deadline = time.time() + 15
            last = None
            while time.time() < deadline:
                try:
                    last = int(c.messages.get(timeout=1).payload)
                except Exception:
                    continue
                if last == want:
                    return
            raise AssertionError("clients/connected stayed %r, expected %d" % (last, want))

        wait_value(1)
        extra = [R.RawClient(node) for _ in range(3)]
        for r in extra:
            assert r.connect(uid("x")).rc == 0
        wait_value(4)
        for r in extra:
            r.send(R.disconnect(0))
            r.close()
        wait_value(1)


def test_sys_messages_counters_move(node):
    with Client(node) as c:
        c.subscribe("$SYS/broker/messages/received", 0)
        first = int(c.get().payload)
        t = uid("cnt")
        for i in range(10):
            c.publish(t, b"x", qos=1)
        deadline = time.time() + 15
        while True:
            v = int(c.get().payload)
            if v >= first + 10:
                break
            assert time.time() < deadline, (first, v)


def test_sys_subscription_and_retained_counts(node):
    with Client(node) as c:
        b = uid("cnt")
        for i in range(5):
            c.publish("%s/%d" % (b, i), b"r", qos=1, retain=True)
        c.subscribe("$SYS/broker/retained messages/count", 0)
        c.subscribe("$SYS/broker/subscriptions/count", 0)
        seen = {}
        deadline = time.time() + 15
        while len(seen) < 2 or seen.get("$SYS/broker/retained messages/count", 0) < 5:
            assert time.time() < deadline, seen
            m = c.get()
            seen[m.topic] = int(m.payload)
        # 5 retained of ours plus the $SYS values themselves.
        assert seen["$SYS/broker/retained messages/count"] >= 5
        assert seen["$SYS/broker/subscriptions/count"] >= 2


def test_shared_subscription_offline_persistent_member(node):
    """A persistent member that went offline does not swallow messages while
    another member is online."""
    t = uid("shared")
    cid = uid("off")
    pr = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    off = Client(node, client_id=cid, properties=pr)
    off.subscribe("$share/g/" + t, 1)
    off.disconnect()
    with Client(node) as on, Client(node) as pub:
        on.subscribe("$share/g/" + t, 1)
        for i in range(10):
            pub.publish(t, b"%d" % i, qos=1)
        assert sorted(int(m.payload) for m in on.get_n(10)) == list(range(10))


def test_v311_subscribe_option_reserved_bits(node):
    with R.RawClient(node, version=4) as r:
        assert r.connect(uid("s"), version=4).rc == 0
        r.send(R.subscribe(1, [("a", 0x05)], version=4))  # bit 2 is reserved in 3.1.1
        seen = r.wait_closed()
        assert seen == [], seen


@pytest.mark.parametrize("version", [4, 5])
def test_empty_filter(node, version):
    with R.RawClient(node, version=version) as r:
        assert r.connect(uid("s"), version=version).rc == 0
        r.send(R.subscribe(1, [("", 0)], version=version))
        try:
            p = r.recv()
        except R.Closed:
            return  # closing is allowed
        if p.type == R.SUBACK:
            assert p.codes == [0x8F if version == 5 else 0x80]
        else:
            assert p.type == R.DISCONNECT and p.rc >= 0x80


class SysWatch:
    """Follows one $SYS value (published every second with --sys-interval 1)."""

    def __init__(self, node, topic):
        self.c = Client(node)
        self.topic = topic
        self.c.subscribe(topic, 0)

    def wait_for(self, pred, what, timeout=15):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                m = self.c.messages.get(timeout=1)
            except Exception:
                continue
            last = int(m.payload)
            if pred(last):
                return last
        raise AssertionError("%s: %s never happened (last %r)" % (self.topic, what, last))

    def close(self):
        self.c.disconnect()


def test_subscriptions_released_when_sessions_end(node):
    w = SysWatch(node, "$SYS/broker/subscriptions/count")
    try:
        base = w.wait_for(lambda v: v >= 1, "baseline")  # the watcher's own subscription
        b = uid("leak")
        # A clean session.
        c = Client(node)
        c.subscribe([("%s/a/%d" % (b, i), 1) for i in range(30)] + [("$share/g/%s/s/%d" % (b, i), 1)
                                                                     for i in range(10)])
        w.wait_for(lambda v: v == base + 40, "count +40")
        c.disconnect()
        w.wait_for(lambda v: v == base, "back to baseline after a clean disconnect")
        # A persistent session that expires.
        r = R.RawClient(node)
        cid = uid("exp")
        assert r.connect(cid, properties={R.P_SESSION_EXPIRY: 1}).rc == 0
        r.send(R.subscribe(1, [("%s/p/%d" % (b, i), 1) for i in range(20)]))
        r.expect(R.SUBACK)
        r.send(R.disconnect(0))
        assert r.is_closed()
        assert node.wait_log("event=session_expired client=%s" % cid, timeout=15)
        w.wait_for(lambda v: v == base, "back to baseline after session expiry")
        # A persistent session taken over with clean start.
        cid = uid("tk")
        r = R.RawClient(node)
        assert r.connect(cid, properties={R.P_SESSION_EXPIRY: 60}).rc == 0
        r.send(R.subscribe(1, [("%s/t/%d" % (b, i), 1) for i in range(10)]))
        r.expect(R.SUBACK)
        r2 = R.RawClient(node)
        assert r2.connect(cid, clean=True).rc == 0
        r.wait_closed()
        r2.send(R.disconnect(0))
        assert r2.is_closed()
        w.wait_for(lambda v: v == base, "back to baseline after clean takeover")
    finally:
        w.close()


def test_retained_count_follows_store(node):
    w = SysWatch(node, "$SYS/broker/retained messages/count")
    try:
        # Stable baseline: the $SYS values themselves are retained after the first round.
        prev = [None]

        def stable(v):
            ok = v == prev[0]
            prev[0] = v
            return ok

        base = w.wait_for(stable, "stable baseline")
        b = uid("rc")
        with Client(node) as p:
            for i in range(10):
                p.publish("%s/%d" % (b, i), b"x", qos=1, retain=True)
            w.wait_for(lambda v: v == base + 10, "count +10")
            for i in range(10):
                p.publish("%s/%d" % (b, i), b"", qos=1, retain=True)
        w.wait_for(lambda v: v == base, "count back to baseline after deletes")
    finally:
        w.close()
