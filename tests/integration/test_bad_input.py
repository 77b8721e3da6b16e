# SPDX-License-Identifier: Apache-2.0
"""Bad clients: each is refused or closed, logged, and never disturbs a
well-behaved client connected at the same time."""
import re
import socket
import threading
import time

import pytest

import mqttraw as R
from pahoclient import Client, uid


class Healthy:
    """A paho subscriber and publisher that must keep working throughout."""

    def __init__(self, node):
        self.topic = uid("healthy")
        self.sub = Client(node, version=5)
        self.pub = Client(node, version=4)
        self.sub.subscribe(self.topic, 1)
        self.n = 0

    def check(self):
        self.n += 1
        payload = b"ok-%d" % self.n
        self.pub.publish(self.topic, payload, qos=1)
        m = self.sub.get()
        assert m.payload == payload
        assert self.sub.c.is_connected() and self.pub.c.is_connected()

    def close(self):
        self.sub.disconnect()
        self.pub.disconnect()


@pytest.fixture
def healthy(node):
    h = Healthy(node)
    h.check()
    yield h
    h.check()
    h.close()


def assert_logged(node, sock_port, timeout=10):
    """The log names this peer in a bad_input or disconnect line."""
    m = R.wait_log_re(node, r"event=(bad_input|disconnect) [^\n]*peer=127\.0\.0\.1:%d\b" % sock_port, timeout)
    assert m, "no bad_input/disconnect log line for peer port %d\n%s" % (sock_port, node.log()[-3000:])


def bad(node, version=5, connect=True):
    r = R.RawClient(node, version=version)
    if connect:
        assert r.connect(uid("bad"), version=version).rc == 0
    return r


def closed_with(r, v5_rc=None):
    """The server closes the connection; a v5 client gets at most one
    DISCONNECT with a failure code (and exactly `v5_rc` if given)."""
    seen = r.wait_closed()
    if r.version == 5:
        assert len(seen) <= 1, seen
        if seen:
            assert seen[0].type == R.DISCONNECT and seen[0].rc >= 0x80, seen
        if v5_rc is not None:
            assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, v5_rc)], seen
    else:
        assert seen == [], seen
    return seen


def test_garbage_before_connect(node, healthy):
    r = bad(node, connect=False)
    port = r.sock.getsockname()[1]
    r.send(b"\x00\x01\x02garbage, not MQTT at all\r\n\r\n")
    assert r.wait_closed() == []
    assert_logged(node, port)
    healthy.check()


def test_http_request_to_mqtt_port(node_factory):
    """'GET ' reads as a PUBACK header with remaining length 69; the request is
    shorter, so the broker may wait for more, but not past the connect timeout."""
    n = node_factory("--connect-timeout", "2")
    h = Healthy(n)
    try:
        r = bad(n, connect=False)
        port = r.sock.getsockname()[1]
        r.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        t0 = time.time()
        seen = r.wait_closed(15)
        assert seen == [], seen
        assert time.time() - t0 < 6
        assert_logged(n, port)
        h.check()
    finally:
        h.close()


@pytest.mark.parametrize("version", [4, 5])
def test_garbage_after_connect(node, healthy, version):
    r = bad(node, version=version)
    port = r.sock.getsockname()[1]
    r.send(b"\x00\x05hello")  # packet type 0 is reserved
    closed_with(r)
    assert_logged(node, port)
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
def test_second_connect(node, healthy, version):
    r = bad(node, version=version)
    port = r.sock.getsockname()[1]
    r.send(R.connect(uid("again"), version=version))
    closed_with(r, 0x82 if version == 5 else None)
    assert_logged(node, port)
    healthy.check()


def test_publish_before_connect(node, healthy):
    r = bad(node, connect=False)
    port = r.sock.getsockname()[1]
    r.send(R.publish("a/b", b"sneaky", qos=0, version=4))
    assert r.wait_closed() == []  # no CONNACK, nothing
    assert_logged(node, port)
    healthy.check()


def test_subscribe_before_connect(node, healthy):
    r = bad(node, connect=False)
    r.send(R.subscribe(1, [("#", 0)], version=4))
    assert r.wait_closed() == []
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("topic", [b"a/\xc3\x28", b"\xff\xfe", b"a\x00b", b"\xed\xa0\x80",
                                   b"a\nevent=auth_ok", b"a\rb", b"a\x1b[2Jb", b"a\x7fb", b"a\xc2\x9bb"],
                         ids=["bad-continuation", "ff-fe", "nul", "surrogate",
                              "newline", "cr", "escape", "del", "c1-csi"])
def test_invalid_utf8_topic(node, healthy, version, topic):
    sub = Client(node)
    sub.subscribe("#", 0)
    r = bad(node, version=version)
    port = r.sock.getsockname()[1]
    r.send(R.publish(topic, b"x", qos=0, version=version))
    closed_with(r)
    assert_logged(node, port)
    healthy.check()
    # Nothing with that topic got through to a catch-all subscriber.
    assert all(m.topic.startswith("healthy") or m.topic.startswith("barrier") for m in sub.barrier())
    sub.disconnect()


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("filt", [b"a/\nb", b"#\x01", b"a\xc2\x85"], ids=["newline", "u0001", "c1-nel"])
def test_control_character_filter(node, healthy, version, filt):
    """[MQTT-1.5.4-3]: a filter with a control character is malformed, in
    SUBSCRIBE and UNSUBSCRIBE: DISCONNECT 0x81 (v5) or a close (3.1.1)."""
    for pkt in (R.subscribe(1, [(filt, 0)], version=version), R.unsubscribe(1, [filt], version=version)):
        r = bad(node, version=version)
        port = r.sock.getsockname()[1]
        r.send(pkt)
        closed_with(r, 0x81 if version == 5 else None)
        assert_logged(node, port)
    healthy.check()


# The main rows of tests/unit/proto/refusals.h, over a socket after a good
# CONNECT: each gets DISCONNECT with the code the spec's words give (v5).
REFUSAL_TABLE = [
    ("wildcard-available-in-subscribe", b"\x82\x09\x00\x01\x02\x28\x01\x00\x01t\x00", 0x81),
    ("server-reference-in-subscribe", b"\x82\x0b\x00\x01\x04\x1c\x00\x01s\x00\x01t\x00", 0x81),
    ("server-reference-in-unsubscribe", b"\xa2\x0a\x00\x01\x04\x1c\x00\x01s\x00\x01t", 0x81),
    ("sub-id-in-unsubscribe", b"\xa2\x08\x00\x01\x02\x0b\x01\x00\x01t", 0x81),
    ("session-expiry-in-publish", b"\x30\x09\x00\x01t\x05\x11\x00\x00\x00\x01", 0x81),
    ("topic-alias-in-disconnect", b"\xe0\x05\x00\x03\x23\x00\x01", 0x81),
    ("unknown-property", b"\x30\x06\x00\x01t\x02\x7f\x00", 0x81),
    ("publish-qos-3", b"\x36\x06\x00\x01t\x00\x01\x00", 0x81),
    ("topic-newline", b"\x30\x05\x00\x02a\n\x00", 0x81),
    ("subscribe-reserved-option-bits", b"\x82\x07\x00\x01\x00\x00\x01t\x40", 0x81),
    ("duplicate-message-expiry", b"\x30\x0e\x00\x01t\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02", 0x82),
    ("subscribe-qos-3", b"\x82\x07\x00\x01\x00\x00\x01t\x03", 0x82),
    ("subscribe-retain-handling-3", b"\x82\x07\x00\x01\x00\x00\x01t\x30", 0x82),
    ("subscribe-no-payload", b"\x82\x03\x00\x01\x00", 0x82),
    ("unsubscribe-no-payload", b"\xa2\x03\x00\x01\x00", 0x82),
    ("subscription-id-0", b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01t\x00", 0x82),
    ("empty-topic-without-alias", b"\x30\x03\x00\x00\x00", 0x82),
    ("topic-alias-0", b"\x30\x07\x00\x01t\x03\x23\x00\x00", 0x94),
    ("payload-not-utf8", b"\x30\x08\x00\x01t\x02\x01\x01\xc3\x28", 0x99),
]


@pytest.mark.parametrize("pkt,rc", [r[1:] for r in REFUSAL_TABLE], ids=[r[0] for r in REFUSAL_TABLE])
def test_refusal_table(node, healthy, pkt, rc):
    r = bad(node, version=5)
    port = r.sock.getsockname()[1]
    r.send(pkt)
    closed_with(r, rc)
    assert R.wait_log_re(node, r"info\s+event=disconnect [^\n]*peer=127\.0\.0\.1:%d [^\n]*rc=0x%02x" % (port, rc)), \
        node.log()[-3000:]
    healthy.check()


def test_invalid_utf8_client_id(node, healthy):
    r = bad(node, connect=False)
    r.send(R.connect(b"\xc3\x28id", version=4))
    seen = r.wait_closed()
    assert not any(p.type == R.CONNACK and p.rc == 0 for p in seen), seen
    healthy.check()


@pytest.mark.parametrize("connect", [False, True], ids=["before-connect", "after-connect"])
def test_oversize_remaining_length(node, healthy, connect):
    r = bad(node, version=5, connect=connect)
    port = r.sock.getsockname()[1]
    r.send(b"\x30\xff\xff\xff\xff\x7f")  # 5-byte remaining length
    seen = r.wait_closed()
    if connect:
        assert len(seen) <= 1 and all(p.type == R.DISCONNECT and p.rc >= 0x80 for p in seen), seen
    else:
        assert seen == []
    assert_logged(node, port)
    healthy.check()


def test_huge_remaining_length_not_allocated(node, healthy):
    """A 256 MB remaining length that never arrives must not stall others."""
    r = bad(node, version=4)
    r.send(b"\x30\xff\xff\xff\x7f" + b"\x00\x03a/b")
    healthy.check()
    r.close()


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_reserved_flags(node, healthy, version):
    r = bad(node, version=version)
    port = r.sock.getsockname()[1]
    r.send(R.subscribe(1, [("a/b", 1)], version=version, flags=0x00))  # 0x80 instead of 0x82
    closed_with(r)
    assert_logged(node, port)
    healthy.check()


def test_unsubscribe_reserved_flags(node, healthy):
    r = bad(node, version=4)
    r.send(b"\xa0\x05\x00\x01\x00\x01a")  # UNSUBSCRIBE flags must be 0010
    closed_with(r)
    healthy.check()


def test_pubrel_wrong_flags(node, healthy):
    r = bad(node, version=4)
    r.send(b"\x60\x02\x00\x01")  # PUBREL must have flags 0010
    closed_with(r)
    healthy.check()


@pytest.mark.parametrize("pkt,name", [
    (b"\xc0\x01\x00", "pingreq-with-body"),
    (b"\x20\x02\x00\x00", "connack-from-client"),
    (b"\x90\x03\x00\x01\x00", "suback-from-client"),
    (b"\x32\x07\x00\x03a/b\x00\x00", "publish-qos1-pid-0"),
    (b"\x30\x02\x00\x05", "topic-length-overrun"),
    (b"\x82\x06\x00\x00\x00\x01a\x00", "subscribe-pid-0"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_packets_v311(node, healthy, pkt, name):
    r = bad(node, version=4)
    port = r.sock.getsockname()[1]
    r.send(pkt)
    closed_with(r)
    assert_logged(node, port)
    healthy.check()


@pytest.mark.parametrize("props,name", [
    ([(R.P_PAYLOAD_FORMAT, 1), (R.P_PAYLOAD_FORMAT, 1)], "duplicate-property"),
    ([(R.P_SESSION_EXPIRY, 5)], "property-not-for-publish"),
    ([(R.P_SUBSCRIPTION_ID, 3)], "sub-id-from-client"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_publish_properties_v5(node, healthy, props, name):
    r = bad(node)
    port = r.sock.getsockname()[1]
    r.send(R.publish("a/b", b"x", qos=0, properties=props))
    closed_with(r)
    assert_logged(node, port)
    healthy.check()


def test_unknown_property_id_v5(node, healthy):
    r = bad(node)
    # PUBLISH a/b, properties length 2: id 0x7F (unknown), one byte.
    r.send(b"\x30\x08\x00\x03a/b\x02\x7f\x00x")
    closed_with(r)
    healthy.check()


def test_properties_length_overrun_v5(node, healthy):
    r = bad(node)
    r.send(b"\x30\x07\x00\x03a/b\x40\x01")  # claims 64 bytes of properties
    closed_with(r)
    healthy.check()


def test_auth_packet_without_method(node, healthy):
    r = bad(node)
    r.send(b"\xf0\x02\x18\x00")
    closed_with(r, 0x82)
    healthy.check()


def test_truncated_packet_then_close(node, healthy):
    r = bad(node, version=4)
    r.send(R.publish("a/b", b"x" * 100, qos=1, pid=1, version=4)[:20])
    r.close()
    healthy.check()


def test_slowloris_half_connect(node_factory):
    n = node_factory("--connect-timeout", "2", "--workers", "2")
    h = Healthy(n)
    try:
        h.check()
        r = R.RawClient(n, version=4)
        port = r.sock.getsockname()[1]
        pkt = R.connect(uid("slow"), version=4)
        r.send(pkt[:len(pkt) // 2])
        t0 = time.time()
        seen = r.wait_closed(15)
        elapsed = time.time() - t0
        assert seen == []
        assert 1.5 <= elapsed <= 6, elapsed
        assert_logged(n, port)
        h.check()
    finally:
        h.close()


def test_silent_connection_dropped(node_factory):
    n = node_factory("--connect-timeout", "2")
    with R.RawClient(n, version=4) as r:
        t0 = time.time()
        assert r.wait_closed(15) == []
        assert 1.5 <= time.time() - t0 <= 6


def test_connect_timeout_does_not_hit_connected_clients(node_factory):
    n = node_factory("--connect-timeout", "1")
    with R.RawClient(n) as r:
        assert r.connect(uid("ok"), keepalive=0).rc == 0
        # Well past the connect timeout, the connected client is still there.
        deadline = time.time() + 3
        while time.time() < deadline:
            r.send(R.pingreq())
            r.expect(R.PINGRESP)
            time.sleep(0.3)


def test_many_bad_clients_at_once(node, healthy):
    ports = []
    socks = []
    for i in range(30):
        s = socket.create_connection((node.host, node.port), timeout=10)
        ports.append(s.getsockname()[1])
        s.sendall([b"\xff\xff\xff\xff\xff", b"\x10\x00", b"\x30\x02\x00\x01"][i % 3])
        socks.append(s)
    healthy.check()
    for s, port in zip(socks, ports):
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        # (socket.timeout propagates: each must be closed promptly)
        s.close()
        assert_logged(node, port)
    healthy.check()


def vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_memory_bounded(node, healthy):
    """A subscriber that never reads while 50 MB of QoS 0 flows to it: the
    broker's memory stays bounded and everyone else keeps working."""
    pid = node.proc.pid
    t = uid("flood")
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect((node.host, node.port))
    slow.sendall(R.connect(uid("slow"), version=4, keepalive=0))
    slow.sendall(R.subscribe(1, [(t, 0)], version=4))
    # Read exactly CONNACK (4) + SUBACK (5), then stop reading forever.
    got = b""
    while len(got) < 9:
        got += slow.recv(9 - len(got))
    assert got[:4] == b"\x20\x02\x00\x00" and got[4] == 0x90
    healthy.check()
    baseline = vmrss_kb(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], vmrss_kb(pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    pub = R.RawClient(node, version=4, timeout=60)
    assert pub.connect(uid("flooder"), version=4, keepalive=0).rc == 0
    chunk = R.publish(t, b"F" * (64 * 1024), qos=0, version=4)
    total = 0
    try:
        while total < 50 * 1024 * 1024:
            pub.send(chunk)
            total += len(chunk)
            if total % (10 * 1024 * 1024) < len(chunk):
                healthy.check()  # others keep working during the flood
        pub.send(R.pingreq())
        pub.expect(R.PINGRESP, timeout=60)  # the broker has read everything
        healthy.check()
    finally:
        stop.set()
        sampler.join()
    growth_mb = (peak[0] - baseline) / 1024
    print("RSS baseline %d kB peak %d kB" % (baseline, peak[0]))
    assert growth_mb < 200, "RSS grew by %.0f MB (baseline %d kB, peak %d kB)" % (growth_mb, baseline, peak[0])
    pub.close()
    # QoS 0 the slow reader could not take was dropped, and counted.
    with Client(node) as c:
        c.subscribe("$SYS/broker/messages/dropped", 0)
        deadline = time.time() + 15
        while int(c.get().payload) == 0:
            assert time.time() < deadline, "$SYS/broker/messages/dropped stayed 0"
    slow.close()
    assert node.proc.poll() is None
