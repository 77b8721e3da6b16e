# SPDX-License-Identifier: Apache-2.0
"""PUBLISH in both directions: QoS flows, MQTT 5 properties, aliases, limits."""
import os
import socket
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import mqttraw as R
from pahoclient import Client, props, uid


def read_until_marker(r, marker_topic, ack=True, timeout=10):
    """Collect PUBLISH packets on a raw client until one on `marker_topic`;
    acknowledges QoS 1/2 on the way. Returns the packets before the marker."""
    out = []
    deadline = time.time() + timeout
    while True:
        p = r.recv(max(0.01, deadline - time.time()))
        if p.type != R.PUBLISH:
            if p.type == R.PUBREL:
                r.send(R.pubcomp(p.pid, version=r.version))
            continue
        if ack and p.qos == 1:
            r.send(R.puback(p.pid, version=r.version))
        elif ack and p.qos == 2:
            r.send(R.pubrec(p.pid, version=r.version))
        if p.topic == marker_topic:
            return out
        out.append(p)


def raw_sub(node, filters, version=5, cid=None, properties=None, connect_props=None):
    r = R.RawClient(node, version=version)
    ack = r.connect(cid or uid("rawsub"), version=version, properties=connect_props)
    assert ack.rc == 0
    r.send(R.subscribe(1, filters, version=version, properties=properties))
    sa = r.expect(R.SUBACK)
    assert all(c < 0x80 for c in sa.codes), sa
    return r


def raw_pub(node, version=5, cid=None, connect_props=None):
    r = R.RawClient(node, version=version)
    assert r.connect(cid or uid("rawpub"), version=version, properties=connect_props).rc == 0
    return r


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_roundtrip_qos(node, version, qos):
    topic = uid("rt")
    with Client(node, version=version) as sub, Client(node, version=version) as pub:
        assert sub.subscribe(topic, qos) == [qos]
        for i in range(5):
            pub.publish(topic, b"msg%d" % i, qos=qos)
        msgs = sub.get_n(5)
        assert [m.payload for m in msgs] == [b"msg%d" % i for i in range(5)]
        assert all(m.qos == qos and m.topic == topic for m in msgs)
        assert not any(m.retain for m in msgs)


@pytest.mark.parametrize("sub_qos,pub_qos,want", [(0, 2, 0), (1, 2, 1), (0, 1, 0), (2, 1, 1), (2, 0, 0)])
def test_qos_downgrade(node, sub_qos, pub_qos, want):
    topic = uid("dg")
    with Client(node) as sub, Client(node, version=4) as pub:
        sub.subscribe(topic, sub_qos)
        pub.publish(topic, b"x", qos=pub_qos)
        assert sub.get().qos == want


@pytest.mark.parametrize("version", [4, 5])
def test_inbound_qos2_exactly_once(node, version):
    topic = uid("eo")
    marker = uid("mark")
    sub = raw_sub(node, [(topic, 2), (marker, 2)])
    pub = raw_pub(node, version=version)
    pub.send(R.publish(topic, b"once", qos=2, pid=7, version=version))
    rec = pub.expect(R.PUBREC)
    assert rec.pid == 7 and rec.rc == 0
    # The client did not see PUBREC (say) and resends with DUP before PUBREL.
    pub.send(R.publish(topic, b"once", qos=2, pid=7, dup=True, version=version))
    rec = pub.expect(R.PUBREC)
    assert rec.pid == 7 and rec.rc == 0
    pub.send(R.pubrel(7, version=version))
    comp = pub.expect(R.PUBCOMP)
    assert comp.pid == 7 and comp.rc == 0
    # After PUBREL the id is free: the same id is a new message.
    pub.send(R.publish(topic, b"twice", qos=2, pid=7, version=version))
    assert pub.expect(R.PUBREC).pid == 7
    pub.send(R.pubrel(7, version=version))
    assert pub.expect(R.PUBCOMP).pid == 7
    pub.send(R.publish(marker, b"m", qos=2, pid=8, version=version))
    assert pub.expect(R.PUBREC).pid == 8
    pub.send(R.pubrel(8, version=version))
    assert pub.expect(R.PUBCOMP).pid == 8
    got = read_until_marker(sub, marker)
    assert [p.payload for p in got] == [b"once", b"twice"], got
    sub.close()
    pub.close()


def test_pubrel_unknown_id(node):
    with raw_pub(node) as pub:
        pub.send(R.pubrel(999))
        comp = pub.expect(R.PUBCOMP)
        assert comp.pid == 999 and comp.rc == 0x92
        pub.send(R.pingreq())
        pub.expect(R.PINGRESP)


@pytest.mark.parametrize("version", [4, 5])
def test_outbound_qos2_flow(node, version):
    topic = uid("oq2")
    sub = raw_sub(node, [(topic, 2)], version=version)
    with Client(node) as pub:
        pub.publish(topic, b"payload", qos=2)
    p = sub.expect(R.PUBLISH)
    assert p.qos == 2 and p.payload == b"payload" and not p.dup and p.pid
    sub.send(R.pubrec(p.pid, version=version))
    rel = sub.expect(R.PUBREL)
    assert rel.pid == p.pid and rel.flags == 0x02
    sub.send(R.pubcomp(p.pid, version=version))
    # Nothing else follows; the connection is healthy.
    sub.send(R.pingreq())
    assert sub.expect(R.PINGRESP).type == R.PINGRESP
    sub.close()


def test_outbound_qos1_flow_and_ids(node):
    topic = uid("oq1")
    sub = raw_sub(node, [(topic, 1)])
    with Client(node) as pub:
        for i in range(3):
            pub.publish(topic, b"%d" % i, qos=1)
    pids = []
    for i in range(3):
        p = sub.expect(R.PUBLISH)
        assert p.qos == 1 and p.payload == b"%d" % i
        pids.append(p.pid)
        sub.send(R.puback(p.pid))
    assert len(set(pids)) == 3 and 0 not in pids
    sub.close()


def test_overlapping_subscriptions_one_copy_v5(node):
    base = uid("ov")
    topic = base + "/b"
    marker = uid("mark")
    sub = R.RawClient(node)
    assert sub.connect(uid("ovsub")).rc == 0
    for pid, (flt, qos, sid) in enumerate([(base + "/+", 0, 1), (base + "/#", 1, 2), (topic, 2, 3)], start=1):
        sub.send(R.subscribe(pid, [(flt, qos)], properties={R.P_SUBSCRIPTION_ID: sid}))
        assert sub.expect(R.SUBACK).codes == [qos]
    sub.send(R.subscribe(9, [(marker, 2)]))
    sub.expect(R.SUBACK)
    with Client(node) as pub:
        pub.publish(topic, b"one", qos=2)
        pub.publish(base + "/c", b"two", qos=2)  # matches +, # only
        pub.publish(marker, b"m", qos=2)
    got = read_until_marker(sub, marker)
    assert [p.payload for p in got] == [b"one", b"two"], got
    one, two = got
    assert one.qos == 2
    assert sorted(one.props.all(R.P_SUBSCRIPTION_ID)) == [1, 2, 3]
    assert two.qos == 1
    assert sorted(two.props.all(R.P_SUBSCRIPTION_ID)) == [1, 2]
    sub.close()


def test_overlapping_subscriptions_one_copy_v311(node):
    base = uid("ov")
    topic = base + "/x/y"
    with Client(node, version=4) as sub, Client(node) as pub:
        sub.subscribe(base + "/#", 0)
        sub.subscribe(base + "/+/y", 1)
        sub.subscribe(topic, 0)
        pub.publish(topic, b"p", qos=2)
        before = sub.barrier(pub)
        assert [(m.payload, m.qos) for m in before] == [(b"p", 1)]


def test_message_expiry_forwarded(node):
    topic = uid("exp")
    sub = raw_sub(node, [(topic, 1)])
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"e", qos=1, pid=1, properties={R.P_MESSAGE_EXPIRY: 100}))
        pub.expect(R.PUBACK)
    p = sub.expect(R.PUBLISH)
    left = p.props.get(R.P_MESSAGE_EXPIRY)
    assert left is not None and 95 <= left <= 100, p
    sub.close()


def test_message_expiry_decremented(node):
    topic = uid("exp")
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"e", qos=1, pid=1, retain=True, properties={R.P_MESSAGE_EXPIRY: 60}))
        pub.expect(R.PUBACK)
        # Poll the retained copy until the broker reports time has passed.
        values = []
        deadline = time.time() + 10
        with R.RawClient(node) as sub:
            assert sub.connect(uid("s")).rc == 0
            pid = 1
            while time.time() < deadline:
                sub.send(R.subscribe(pid, [(topic, 1)]))
                sub.expect(R.SUBACK)
                p = sub.expect(R.PUBLISH)
                sub.send(R.puback(p.pid))
                values.append(p.props.get(R.P_MESSAGE_EXPIRY))
                if values[-1] is not None and values[-1] <= 58:
                    break
                pid += 1
                time.sleep(0.25)
        assert None not in values, values
        assert values == sorted(values, reverse=True), values
        assert values[-1] <= 58, values
        pub.send(R.publish(topic, b"", qos=1, pid=2, retain=True))
        pub.expect(R.PUBACK)


def test_expired_message_not_delivered_to_returning_session(node):
    topic = uid("exp")
    cid = uid("offline")
    sub = raw_sub(node, [(topic, 1)], cid=cid, connect_props={R.P_SESSION_EXPIRY: 60})
    sub.send(R.disconnect(0))
    assert sub.is_closed()
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"short", qos=1, pid=1, properties={R.P_MESSAGE_EXPIRY: 1}))
        pub.expect(R.PUBACK)
        pub.send(R.publish(topic, b"long", qos=1, pid=2, properties={R.P_MESSAGE_EXPIRY: 100}))
        pub.expect(R.PUBACK)
        t0 = time.time()
    # Let the short one expire (this is the behaviour under test: time passes).
    time.sleep(max(0, 2.2 - (time.time() - t0)))
    with R.RawClient(node) as again:
        ack = again.connect(cid, clean=False, properties={R.P_SESSION_EXPIRY: 60})
        assert ack.session_present
        p = again.expect(R.PUBLISH)
        assert p.payload == b"long", p
        left = p.props.get(R.P_MESSAGE_EXPIRY)
        assert left is not None and left <= 98, p
        again.send(R.puback(p.pid))
        again.send(R.pingreq())
        assert again.expect(R.PINGRESP).type == R.PINGRESP


def test_payload_format_invalid_utf8(node):
    topic = uid("pfi")
    sub = raw_sub(node, [(topic, 1)])
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"\xff\xfe bad", qos=0, properties={R.P_PAYLOAD_FORMAT: 1}))
        seen = pub.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x99)], seen
    # A valid UTF-8 payload with the indicator passes, the bad one never did.
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, "grüße".encode(), qos=1, pid=1, properties={R.P_PAYLOAD_FORMAT: 1}))
        assert pub.expect(R.PUBACK).rc == 0
    p = sub.expect(R.PUBLISH)
    assert p.payload == "grüße".encode() and p.props.get(R.P_PAYLOAD_FORMAT) == 1
    sub.close()


def test_properties_forwarded_unchanged_in_order(node):
    topic = uid("props")
    sub = raw_sub(node, [(topic, 1)])
    user = [("b", "2"), ("a", "1"), ("b", "3"), ("ключ", "значение")]
    sent = [(R.P_PAYLOAD_FORMAT, 1), (R.P_CONTENT_TYPE, "application/json"), (R.P_RESPONSE_TOPIC, "reply/here"),
            (R.P_CORRELATION_DATA, b"\x00\x01\xff corr")] + [(R.P_USER_PROPERTY, u) for u in user]
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b'{"x":1}', qos=1, pid=3, properties=sent))
        assert pub.expect(R.PUBACK).rc == 0
    p = sub.expect(R.PUBLISH)
    assert p.payload == b'{"x":1}'
    assert p.props.get(R.P_PAYLOAD_FORMAT) == 1
    assert p.props.get(R.P_CONTENT_TYPE) == "application/json"
    assert p.props.get(R.P_RESPONSE_TOPIC) == "reply/here"
    assert p.props.get(R.P_CORRELATION_DATA) == b"\x00\x01\xff corr"
    assert p.props.all(R.P_USER_PROPERTY) == user
    assert not p.props.has(R.P_TOPIC_ALIAS)
    sub.close()


def test_properties_forwarded_paho(node):
    topic = uid("props")
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(topic, 2)
        pr = props(ContentType="text/plain", ResponseTopic="r/t", CorrelationData=b"id-42",
                   UserProperty=[("k1", "v1"), ("k2", "v2"), ("k1", "v3")])
        pub.publish(topic, b"hi", qos=2, properties=pr)
        m = sub.get()
        assert m.properties.ContentType == "text/plain"
        assert m.properties.ResponseTopic == "r/t"
        assert m.properties.CorrelationData == b"id-42"
        assert m.properties.UserProperty == [("k1", "v1"), ("k2", "v2"), ("k1", "v3")]


def test_topic_alias_inbound(node):
    topic = uid("alias")
    sub = raw_sub(node, [(topic, 1)])
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"first", qos=1, pid=1, properties={R.P_TOPIC_ALIAS: 3}))
        assert pub.expect(R.PUBACK).rc == 0
        pub.send(R.publish("", b"second", qos=1, pid=2, properties={R.P_TOPIC_ALIAS: 3}))
        assert pub.expect(R.PUBACK).rc == 0
        pub.send(R.publish("", b"third", qos=0, properties={R.P_TOPIC_ALIAS: 3}))
        pub.send(R.pingreq())
        pub.expect(R.PINGRESP)
    got = [sub.expect(R.PUBLISH) for _ in range(3)]
    assert [(p.topic, p.payload) for p in got] == [(topic, b"first"), (topic, b"second"), (topic, b"third")]
    # The subscriber never granted aliases: none may be sent to it.
    assert not any(p.props.has(R.P_TOPIC_ALIAS) for p in got)
    sub.close()


def test_topic_alias_remapped(node):
    t1, t2 = uid("alias"), uid("alias")
    sub = raw_sub(node, [(t1, 0), (t2, 0)])
    with raw_pub(node) as pub:
        pub.send(R.publish(t1, b"a", properties={R.P_TOPIC_ALIAS: 1}))
        pub.send(R.publish(t2, b"b", properties={R.P_TOPIC_ALIAS: 1}))
        pub.send(R.publish("", b"c", properties={R.P_TOPIC_ALIAS: 1}))
        pub.send(R.pingreq())
        pub.expect(R.PINGRESP)
    got = [sub.expect(R.PUBLISH) for _ in range(3)]
    assert [(p.topic, p.payload) for p in got] == [(t1, b"a"), (t2, b"b"), (t2, b"c")]
    sub.close()


@pytest.mark.parametrize("alias", [0, 65, 65535])
def test_topic_alias_out_of_range(node, alias):
    with raw_pub(node) as pub:
        pub.send(R.publish(uid("t"), b"x", properties={R.P_TOPIC_ALIAS: alias}))
        seen = pub.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x94)], seen


def test_topic_alias_max_zero(node_factory):
    n = node_factory("--max-topic-alias", "0")
    with raw_pub(n) as pub:
        pub.send(R.publish(uid("t"), b"x", properties={R.P_TOPIC_ALIAS: 1}))
        seen = pub.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x94)], seen


def test_topic_alias_unknown_with_empty_topic(node):
    with raw_pub(node) as pub:
        pub.send(R.publish("", b"x", properties={R.P_TOPIC_ALIAS: 5}))
        seen = pub.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x82)], seen


def test_empty_topic_without_alias(node):
    with raw_pub(node) as pub:
        pub.send(R.publish("", b"x"))
        seen = pub.wait_closed()
        assert len(seen) == 1 and seen[0].type == R.DISCONNECT and seen[0].rc >= 0x80, seen


def test_receive_maximum_exceeded(node_factory):
    n = node_factory("--receive-maximum", "2")
    with raw_pub(n) as pub:
        for pid in (1, 2):
            pub.send(R.publish(uid("t"), b"x", qos=2, pid=pid))
            assert pub.expect(R.PUBREC).pid == pid
        # Two QoS 2 exchanges still open (no PUBREL): a third is one too many.
        pub.send(R.publish(uid("t"), b"x", qos=2, pid=3))
        seen = pub.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x93)], seen


def test_receive_maximum_respected_when_completed(node_factory):
    n = node_factory("--receive-maximum", "2")
    with raw_pub(n) as pub:
        for pid in range(1, 11):
            pub.send(R.publish(uid("t"), b"x", qos=2, pid=pid))
            assert pub.expect(R.PUBREC).pid == pid
            pub.send(R.pubrel(pid))
            assert pub.expect(R.PUBCOMP).pid == pid
        for pid in range(11, 21):
            pub.send(R.publish(uid("t"), b"x", qos=1, pid=pid))
            assert pub.expect(R.PUBACK).pid == pid


@pytest.mark.parametrize("topic", ["a/+/c", "a/#", "+", "#"])
def test_wildcard_in_publish_topic_v5(node, topic):
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"x", qos=1, pid=1))
        seen = pub.wait_closed()
        assert len(seen) == 1 and seen[0].type == R.DISCONNECT and seen[0].rc >= 0x80, seen
        assert seen[0].rc in (0x90, 0x81, 0x82), seen


def test_wildcard_in_publish_topic_v311(node):
    with raw_pub(node, version=4) as pub:
        pub.send(R.publish("a/+", b"x", qos=1, pid=1, version=4))
        assert pub.wait_closed() == []


def test_large_payload_5mb(node):
    topic = uid("big")
    payload = os.urandom(5 * 1024 * 1024)
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(topic, 1)
        pub.publish(topic, payload, qos=1)
        m = sub.get(timeout=30)
        assert m.payload == payload


def test_max_packet_size_inbound(node_factory):
    n = node_factory("--max-packet-size", "1024")
    topic = uid("mps")
    with Client(n) as sub:
        sub.subscribe(topic, 0)
        with raw_pub(n) as pub:
            pub.send(R.publish(topic, b"ok" * 100))
            pub.send(R.publish(topic, b"x" * 2000))
            seen = pub.wait_closed()
            assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x95)], seen
        assert sub.get().payload == b"ok" * 100
        # The limit applies to that client only; others carry on.
        with Client(n) as pub2:
            pub2.publish(topic, b"after", qos=1)
        assert sub.get().payload == b"after"


def test_no_local(node):
    topic = uid("nl")
    with Client(node) as a, Client(node) as other:
        from paho.mqtt.subscribeoptions import SubscribeOptions
        assert a.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True)) == [1]
        a.publish(topic, b"own", qos=1)
        other.publish(topic, b"theirs", qos=1)
        m = a.get()
        assert m.payload == b"theirs"
        assert a.barrier(a) == []


def test_no_local_only_affects_that_subscription(node):
    base = uid("nl")
    with Client(node) as a:
        from paho.mqtt.subscribeoptions import SubscribeOptions
        a.subscribe(base + "/x", options=SubscribeOptions(qos=1, noLocal=True))
        a.subscribe(base + "/+", options=SubscribeOptions(qos=1, noLocal=False))
        a.publish(base + "/x", b"own", qos=1)
        # One copy, from the subscription without No Local.
        assert [m.payload for m in a.barrier()] == [b"own"]


def test_retain_as_published(node):
    topic = uid("rap")
    marker = uid("mark")
    with R.RawClient(node) as sub:
        assert sub.connect(uid("s")).rc == 0
        sub.send(R.subscribe(1, [(topic, R.sub_options(qos=1, rap=True))], properties={R.P_SUBSCRIPTION_ID: 1}))
        sub.expect(R.SUBACK)
        sub.send(R.subscribe(2, [(topic + "/+", R.sub_options(qos=1, rap=False)), (marker, 1)]))
        sub.expect(R.SUBACK)
        with raw_pub(node) as pub:
            pub.send(R.publish(topic, b"r1", qos=1, pid=1, retain=True))
            pub.expect(R.PUBACK)
            pub.send(R.publish(topic + "/child", b"r2", qos=1, pid=2, retain=True))
            pub.expect(R.PUBACK)
            pub.send(R.publish(topic, b"plain", qos=1, pid=3))
            pub.expect(R.PUBACK)
            pub.send(R.publish(marker, b"m", qos=1, pid=4))
            pub.expect(R.PUBACK)
            got = read_until_marker(sub, marker)
            assert [(p.payload, p.retain) for p in got] == [(b"r1", True), (b"r2", False), (b"plain", False)]
            for t in (topic, topic + "/child"):
                pub.send(R.publish(t, b"", qos=1, pid=5, retain=True))
                pub.expect(R.PUBACK)


def test_client_maximum_packet_size(node):
    topic = uid("cmps")
    marker = uid("mark")
    sub = raw_sub(node, [(topic, 1), (marker, 1)], connect_props={R.P_MAX_PACKET_SIZE: 200})
    with Client(node) as pub:
        pub.publish(topic, b"small", qos=1)
        pub.publish(topic, b"L" * 500, qos=1)
        pub.publish(topic, b"Q" * 500, qos=0)
        pub.publish(topic, b"small again", qos=1)
        pub.publish(marker, b"m", qos=1)
    got = read_until_marker(sub, marker)
    assert [p.payload for p in got] == [b"small", b"small again"]
    sub.send(R.pingreq())
    assert sub.expect(R.PINGRESP).type == R.PINGRESP
    sub.close()


def test_max_qos_publish_refused(node_factory):
    n = node_factory("--max-qos", "1")
    with raw_pub(n) as pub:
        pub.send(R.publish(uid("t"), b"x", qos=1, pid=1))
        assert pub.expect(R.PUBACK).rc == 0x10  # accepted; no subscriber
        pub.send(R.publish(uid("t"), b"x", qos=2, pid=2))
        seen = pub.wait_closed()
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x9B)], seen


def test_publish_qos3_is_malformed(node):
    with raw_pub(node) as pub:
        pkt = bytearray(R.publish("a/b", b"x", qos=2, pid=1))
        pkt[0] |= 0x06  # QoS bits 11
        pub.send(bytes(pkt))
        seen = pub.wait_closed()
        assert len(seen) == 1 and seen[0].type == R.DISCONNECT and seen[0].rc == 0x81, seen


def test_publish_to_no_subscribers_acks_0x10(node):
    """The local backplane knows every subscriber: MQTT 5 §3.4.2.1 / §3.5.2.1
    0x10 No matching subscribers, as Mosquitto answers. It is still a
    success: the QoS 2 exchange goes on to PUBCOMP."""
    with raw_pub(node) as pub:
        pub.send(R.publish(uid("nobody"), b"x", qos=1, pid=1))
        ack = pub.expect(R.PUBACK)
        assert (ack.pid, ack.rc) == (1, 0x10)
        pub.send(R.publish(uid("nobody"), b"x", qos=2, pid=2))
        rec = pub.expect(R.PUBREC)
        assert (rec.pid, rec.rc) == (2, 0x10)
        pub.send(R.pubrel(2))
        comp = pub.expect(R.PUBCOMP)
        assert (comp.pid, comp.rc) == (2, 0)


def test_publish_to_a_subscriber_acks_0x00(node):
    topic = uid("somebody")
    sub = raw_sub(node, [(topic, 2)])
    with raw_pub(node) as pub:
        for qos, ptype in ((1, R.PUBACK), (2, R.PUBREC)):
            pub.send(R.publish(topic, b"x", qos=qos, pid=qos))
            ack = pub.expect(ptype)
            assert (ack.pid, ack.rc) == (qos, 0)
    sub.close()


def test_publish_to_no_subscribers_v311_plain_ack(node):
    """3.1.1 acks carry no reason code."""
    with raw_pub(node, version=4) as pub:
        pub.send(R.publish(uid("nobody"), b"x", qos=1, pid=1, version=4))
        ack = pub.expect(R.PUBACK)
        assert ack.pid == 1 and len(ack.body) == 2


@pytest.mark.parametrize("version", [4, 5])
def test_first_outgoing_packet_id_is_1(node, version):
    """A new session's first packet id is 1, as every other broker's is
    (byte-exact client test suites expect it)."""
    topic = uid("pid1")
    sub = raw_sub(node, [(topic, 1)], version=version)
    with Client(node) as pub:
        pub.publish(topic, b"first", qos=1)
    p = sub.expect(R.PUBLISH)
    assert (p.payload, p.pid) == (b"first", 1)
    sub.send(R.puback(1, version=version))
    sub.close()


@pytest.mark.parametrize("version", [4, 5])
def test_qos0_with_dup_is_malformed(node, version):
    with raw_pub(node, version=version) as pub:
        pub.send(R.publish("a/b", b"x", qos=0, dup=True, version=version))
        seen = pub.wait_closed()
        if version == 5:
            assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x81)], seen
        else:
            assert seen == []


@pytest.mark.parametrize("qos", [1, 2])
def test_ordering_under_load(node, qos):
    """500 messages from one publisher arrive complete and in order (more
    than the inflight window, so the queue and pump are exercised)."""
    topic = uid("order")
    n = 500
    with Client(node) as sub, Client(node, version=4) as pub:
        sub.subscribe(topic, qos)
        infos = [pub.publish(topic, b"%d" % i, qos=qos, wait=False) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        got = [int(m.payload) for m in sub.get_n(n, timeout=60)]
        assert got == list(range(n))


def test_fanout_across_workers(node):
    """10 subscribers (spread over both workers) each get 100 messages in order."""
    topic = uid("fan")
    subs = [Client(node) for _ in range(10)]
    try:
        for s in subs:
            s.subscribe(topic, 1)
        with Client(node) as pub:
            for i in range(100):
                pub.publish(topic, b"%d" % i, qos=1, wait=False)
            pub.publish(topic, b"100", qos=1)
        for s in subs:
            assert [int(m.payload) for m in s.get_n(101, timeout=60)] == list(range(101))
    finally:
        for s in subs:
            s.disconnect()


def test_many_publishers_one_subscriber(node):
    topic = uid("many")
    pubs = [Client(node, version=4) for _ in range(8)]
    with Client(node) as sub:
        sub.subscribe(topic + "/+", 2)
        for k, p in enumerate(pubs):
            for i in range(25):
                p.publish("%s/%d" % (topic, k), b"%d" % i, qos=(i % 3), wait=False)
        for p in pubs:
            p.publish("%s/%d" % (topic, pubs.index(p)), b"end", qos=1)
        got = sub.get_n(8 * 26, timeout=60)
        per = {}
        for m in got:
            per.setdefault(m.topic, []).append(m.payload)
        for k in range(8):
            # Nothing is dropped (nothing is slow); order holds per publisher
            # and QoS (§4.6: QoS 0 may overtake queued QoS 1/2).
            got_k = per["%s/%d" % (topic, k)]
            assert sorted(got_k) == sorted([b"%d" % i for i in range(25)] + [b"end"])
            for q in range(3):
                want = [b"%d" % i for i in range(25) if i % 3 == q]
                assert [x for x in got_k if x in want] == want
    for p in pubs:
        p.disconnect()


def test_slow_qos1_reader_loses_nothing(node_factory):
    """A QoS 1 subscriber that stops reading: once its output buffer is full
    the broker queues instead of writing; when it reads again everything
    arrives, in order, once."""
    n = node_factory("--max-inflight", "1000", "--max-output-buffer", "65536", "--max-queued", "100000")
    topic = uid("slow")
    r = R.RawClient(n)
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert r.connect(uid("slow"), properties={R.P_RECEIVE_MAX: 65535}).rc == 0
    r.send(R.subscribe(1, [(topic, 1)]))
    r.expect(R.SUBACK)
    count = 1000  # 16 MB: more than the socket buffers and the 64 kB output buffer hold
    with Client(n) as pub:
        for i in range(count):
            pub.publish(topic, (b"%06d" % i) + b"." * 16000, qos=1, wait=False)
        pub.publish(topic, b"%06d" % count, qos=1)
    got = []
    while len(got) <= count:
        p = r.expect(R.PUBLISH, timeout=30)
        r.send(R.puback(p.pid))
        got.append(int(p.payload[:6]))
    assert got == list(range(count + 1))
    r.close()


def test_long_topic(node_factory):
    # 2001 levels: over the default --max-topic-levels (128), so raised here.
    node = node_factory("--max-topic-levels", "4096")
    topic = uid("long") + "/" + "/".join("level%d" % i for i in range(2000))
    assert len(topic) > 10000
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(topic.split("/")[0] + "/#", 1)
        pub.publish(topic, b"deep", qos=1)
        m = sub.get()
        assert m.topic == topic and m.payload == b"deep"


def test_utf8_topics(node):
    b = uid("utf8")
    with Client(node) as sub, Client(node) as pub:
        sub.subscribe(b + "/温度/+", 1)
        pub.publish(b + "/温度/센서", "21℃".encode(), qos=1)
        pub.publish(b + "/temp/センサー", b"no", qos=1)
        got = sub.barrier(pub)
        assert [(m.topic, m.payload) for m in got] == [(b + "/温度/센서", "21℃".encode())]


def test_max_packet_size_boundary(node_factory):
    """A packet of exactly --max-packet-size bytes is accepted, one more is not."""
    n = node_factory("--max-packet-size", "1024")
    topic = uid("b")

    def pkt(payload_len):
        return R.publish(topic, b"e" * payload_len, qos=0)

    size = 1024 - len(pkt(200)) + 200
    exact, over = pkt(size), pkt(size + 1)
    assert (len(exact), len(over)) == (1024, 1025)
    with Client(n) as sub:
        sub.subscribe(topic, 0)
        with raw_pub(n) as pub:
            pub.send(exact)
            pub.send(R.pingreq())
            assert pub.expect(R.PINGRESP).type == R.PINGRESP
            assert len(sub.get().payload) == size
            pub.send(over)
            seen = pub.wait_closed()
            assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x95)], seen


def test_client_maximum_packet_size_boundary(node):
    topic = uid("cb")
    marker = uid("mark")
    # What the broker sends: PUBLISH QoS 1 with topic, packet id, no properties.
    size = lambda payload: len(R.publish(topic, payload, qos=1, pid=1))
    limit = 300
    fits = b"f" * (limit - size(b""))
    while size(fits) > limit:
        fits = fits[:-1]
    while size(fits + b"f") <= limit:
        fits += b"f"
    assert size(fits) == limit
    sub = raw_sub(node, [(topic, 1), (marker, 1)], connect_props={R.P_MAX_PACKET_SIZE: limit})
    with Client(node) as pub:
        pub.publish(topic, fits, qos=1)
        pub.publish(topic, fits + b"x", qos=1)
        pub.publish(marker, b"m", qos=1)
    got = read_until_marker(sub, marker)
    assert [len(p.payload) for p in got] == [len(fits)]
    sub.close()


def test_topic_alias_max_boundary(node):
    topic = uid("a")
    sub = raw_sub(node, [(topic, 0)])
    with raw_pub(node) as pub:
        pub.send(R.publish(topic, b"1", properties={R.P_TOPIC_ALIAS: 64}))
        pub.send(R.publish("", b"2", properties={R.P_TOPIC_ALIAS: 64}))
        pub.send(R.pingreq())
        pub.expect(R.PINGRESP)
    assert [sub.expect(R.PUBLISH).payload for _ in range(2)] == [b"1", b"2"]
    sub.close()


def test_inbound_qos2_exactly_once_across_reconnect(node):
    """PUBLISH QoS 2 → PUBREC, connection lost before PUBREL; the client
    resumes its session and resends with DUP: still one delivery."""
    topic = uid("eo")
    marker = uid("mark")
    cid = uid("q2pub")
    sub = raw_sub(node, [(topic, 2), (marker, 2)])
    pub = raw_pub(node, cid=cid, connect_props={R.P_SESSION_EXPIRY: 60})
    pub.send(R.publish(topic, b"once", qos=2, pid=42))
    assert pub.expect(R.PUBREC).pid == 42
    pub.close()
    assert R.wait_disconnect_logged(node, cid)
    pub = R.RawClient(node)
    ack = pub.connect(cid, clean=False, properties={R.P_SESSION_EXPIRY: 60})
    assert ack.session_present
    pub.send(R.publish(topic, b"once", qos=2, pid=42, dup=True))
    assert pub.expect(R.PUBREC).pid == 42
    pub.send(R.pubrel(42))
    comp = pub.expect(R.PUBCOMP)
    assert comp.pid == 42 and comp.rc == 0
    pub.send(R.publish(marker, b"m", qos=1, pid=43))
    pub.expect(R.PUBACK)
    got = read_until_marker(sub, marker)
    assert [p.payload for p in got] == [b"once"]
    sub.close()
    pub.close()


def test_many_concurrent_clients(node):
    """200 connections spread over the workers, each with its own topic."""
    base = uid("crowd")
    clients = []
    try:
        for i in range(200):
            r = R.RawClient(node)
            r.send(R.connect("%s-%d" % (base, i)))
            clients.append(r)
        for i, r in enumerate(clients):
            assert r.expect(R.CONNACK).rc == 0
            r.send(R.subscribe(1, [("%s/%d" % (base, i), 1)]))
        for r in clients:
            assert r.expect(R.SUBACK).codes == [1]
        with raw_pub(node) as pub:
            for i in range(200):
                pub.send(R.publish("%s/%d" % (base, i), b"%d" % i))
            pub.send(R.pingreq())
            pub.expect(R.PINGRESP)
        for i, r in enumerate(clients):
            p = r.expect(R.PUBLISH)
            assert p.payload == b"%d" % i
    finally:
        for r in clients:
            r.close()


def test_outbound_topic_aliases_when_the_client_allows(node):
    """MQTT 5 §3.3.2.3.4: the broker may replace a topic the client already
    learned by its alias, never exceeding the client's Topic Alias Maximum."""
    base = uid("oa")
    topics = [base + "/one", base + "/two", base + "/three"]
    with R.RawClient(node) as r:
        assert r.connect(uid("oa"), properties={R.P_TOPIC_ALIAS_MAX: 2}).rc == 0
        r.send(R.subscribe(1, [(base + "/#", 0)]))
        r.expect(R.SUBACK)
        pub = Client(node)
        for t in [topics[0], topics[0], topics[1], topics[2], topics[1]]:
            pub.publish(t, t.encode(), qos=0)
        got = [r.expect(R.PUBLISH) for _ in range(5)]
        seen = [(p.topic, p.props.get(R.P_TOPIC_ALIAS)) for p in got]
        assert seen == [(topics[0], 1), ("", 1), (topics[1], 2), (topics[2], None), ("", 2)], seen
        # The payload tells which topic an aliased message really had.
        assert [p.payload for p in got] == [t.encode() for t in [topics[0], topics[0], topics[1], topics[2],
                                                                    topics[1]]]
        pub.disconnect()


def test_no_outbound_aliases_without_topic_alias_maximum(node):
    base = uid("noa")
    with R.RawClient(node) as r:
        assert r.connect(uid("noa")).rc == 0
        r.send(R.subscribe(1, [(base, 0)]))
        r.expect(R.SUBACK)
        pub = Client(node)
        pub.publish(base, b"a", qos=0)
        pub.publish(base, b"b", qos=0)
        got = [r.expect(R.PUBLISH) for _ in range(2)]
        assert all(p.topic == base and not p.props.has(R.P_TOPIC_ALIAS) for p in got)
        pub.disconnect()
