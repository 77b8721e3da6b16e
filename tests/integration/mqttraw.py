# SPDX-License-Identifier: Apache-2.0
"""Hand-built MQTT packets for tests where the exact bytes matter.

Encoders return bytes; `RawClient` wraps a socket and reads one packet at a
time with a timeout. Everything here follows MQTT 3.1.1 (level 4), MQTT 3.1
(level 3, "MQIsdp") and MQTT 5.0 (level 5) as written in the specs.
"""
import socket
import struct
import time

# Packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 8, 9, 10, 11, 12, 13, 14, 15
TYPE_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
              8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
              14: "DISCONNECT", 15: "AUTH"}

# MQTT 5 properties: id -> (name, type)
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_CONTENT_TYPE = 0x03
P_RESPONSE_TOPIC = 0x08
P_CORRELATION_DATA = 0x09
P_SUBSCRIPTION_ID = 0x0B
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_AUTH_METHOD = 0x15
P_AUTH_DATA = 0x16
P_REQUEST_PROBLEM_INFO = 0x17
P_WILL_DELAY = 0x18
P_REQUEST_RESPONSE_INFO = 0x19
P_RESPONSE_INFO = 0x1A
P_SERVER_REFERENCE = 0x1C
P_REASON_STRING = 0x1F
P_RECEIVE_MAX = 0x21
P_TOPIC_ALIAS_MAX = 0x22
P_TOPIC_ALIAS = 0x23
P_MAX_QOS = 0x24
P_RETAIN_AVAILABLE = 0x25
P_USER_PROPERTY = 0x26
P_MAX_PACKET_SIZE = 0x27
P_WILDCARD_AVAILABLE = 0x28
P_SUB_ID_AVAILABLE = 0x29
P_SHARED_AVAILABLE = 0x2A

_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROP_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STR, 0x08: _STR, 0x09: _BIN, 0x0B: _VARINT, 0x11: _U32, 0x12: _STR,
    0x13: _U16, 0x15: _STR, 0x16: _BIN, 0x17: _BYTE, 0x18: _U32, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR,
    0x1F: _STR, 0x21: _U16, 0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}


class ProtocolError(Exception):
    pass


# ---- primitives ----

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def read_varint(buf, pos):
    mult, value = 1, 0
    for i in range(4):
        if pos + i >= len(buf):
            raise ProtocolError("truncated varint")
        b = buf[pos + i]
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, pos + i + 1
        mult *= 128
    raise ProtocolError("varint longer than 4 bytes")


def s(text):
    """A UTF-8 string field (bytes are taken as they are, for bad input)."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    return struct.pack(">H", len(data)) + data


def b16(data):
    return struct.pack(">H", len(data)) + bytes(data)


def fixed(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


# ---- properties ----

def props(items=None):
    """Encode a property list: [(id, value), ...] (order kept) or {id: value}.

    A pair for User Property is (name, value); a Subscription Identifier is
    an int. Returns the length-prefixed block."""
    if items is None:
        items = []
    if isinstance(items, dict):
        items = list(items.items())
    body = bytearray()
    for pid, v in items:
        t = PROP_TYPES[pid]
        body += varint(pid)
        if t == _BYTE:
            body.append(v)
        elif t == _U16:
            body += struct.pack(">H", v)
        elif t == _U32:
            body += struct.pack(">I", v)
        elif t == _VARINT:
            body += varint(v)
        elif t == _STR:
            body += s(v)
        elif t == _BIN:
            body += b16(v)
        elif t == _PAIR:
            body += s(v[0]) + s(v[1])
    return varint(len(body)) + bytes(body)


class Props:
    """Decoded properties, in wire order."""

    def __init__(self, items):
        self.items = items

    def get(self, pid, default=None):
        for k, v in self.items:
            if k == pid:
                return v
        return default

    def all(self, pid):
        return [v for k, v in self.items if k == pid]

    def has(self, pid):
        return any(k == pid for k, _ in self.items)

    def __repr__(self):
        return "Props(%r)" % [("0x%02x" % k, v) for k, v in self.items]


def decode_props(buf, pos):
    plen, pos = read_varint(buf, pos)
    end = pos + plen
    if end > len(buf):
        raise ProtocolError("properties overrun")
    items = []
    while pos < end:
        pid, pos = read_varint(buf, pos)
        t = PROP_TYPES.get(pid)
        if t is None:
            raise ProtocolError("unknown property 0x%02x" % pid)
        if t == _BYTE:
            v = buf[pos]
            pos += 1
        elif t == _U16:
            v = struct.unpack_from(">H", buf, pos)[0]
            pos += 2
        elif t == _U32:
            v = struct.unpack_from(">I", buf, pos)[0]
            pos += 4
        elif t == _VARINT:
            v, pos = read_varint(buf, pos)
        elif t in (_STR, _BIN):
            n = struct.unpack_from(">H", buf, pos)[0]
            raw = bytes(buf[pos + 2:pos + 2 + n])
            v = raw.decode("utf-8") if t == _STR else raw
            pos += 2 + n
        else:
            n = struct.unpack_from(">H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + n]).decode()
            pos += 2 + n
            n = struct.unpack_from(">H", buf, pos)[0]
            val = bytes(buf[pos + 2:pos + 2 + n]).decode()
            pos += 2 + n
            v = (k, val)
        items.append((pid, v))
    if pos != end:
        raise ProtocolError("properties length mismatch")
    return Props(items), end


# ---- encoders ----

def connect(client_id="", version=5, clean=True, keepalive=60, properties=None, will=None,
            username=None, password=None, proto_name=None, flags=None):
    """CONNECT. `will` is a dict: topic, payload, qos, retain, properties (v5).
    `flags` overrides the computed connect flags byte (for bad input)."""
    if proto_name is None:
        proto_name = "MQIsdp" if version == 3 else "MQTT"
    f = 0
    if clean:
        f |= 0x02
    if will:
        f |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        f |= 0x80
    if password is not None:
        f |= 0x40
    if flags is not None:
        f = flags
    body = s(proto_name) + bytes([version, f]) + struct.pack(">H", keepalive)
    if version == 5:
        body += props(properties)
    body += s(client_id)
    if will:
        if version == 5:
            body += props(will.get("properties"))
        body += s(will["topic"]) + b16(will.get("payload", b""))
    if username is not None:
        body += s(username)
    if password is not None:
        body += b16(password)
    return fixed(CONNECT, 0, body)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=None, version=5, properties=None):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = s(topic)
    if qos:
        body += struct.pack(">H", pid if pid is not None else 1)
    if version == 5:
        body += props(properties)
    return fixed(PUBLISH, flags, body + payload)


def ack(ptype, pid, rc=None, version=5, properties=None):
    """PUBACK/PUBREC/PUBREL/PUBCOMP. PUBREL has flags 0x02."""
    body = struct.pack(">H", pid)
    if version == 5 and (rc is not None or properties):
        body += bytes([rc or 0])
        if properties:
            body += props(properties)
    return fixed(ptype, 0x02 if ptype == PUBREL else 0, body)


def puback(pid, **kw):
    return ack(PUBACK, pid, **kw)


def pubrec(pid, **kw):
    return ack(PUBREC, pid, **kw)


def pubrel(pid, **kw):
    return ack(PUBREL, pid, **kw)


def pubcomp(pid, **kw):
    return ack(PUBCOMP, pid, **kw)


def sub_options(qos=0, no_local=False, rap=False, retain_handling=0):
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (retain_handling << 4)


def subscribe(pid, filters, version=5, properties=None, flags=0x02):
    """filters: [(filter, options_byte)] or [filter] (QoS 0)."""
    body = struct.pack(">H", pid)
    if version == 5:
        body += props(properties)
    for f in filters:
        if isinstance(f, (str, bytes)):
            f = (f, 0)
        body += s(f[0]) + bytes([f[1]])
    return fixed(SUBSCRIBE, flags, body)


def unsubscribe(pid, filters, version=5, properties=None):
    body = struct.pack(">H", pid)
    if version == 5:
        body += props(properties)
    for f in filters:
        body += s(f)
    return fixed(UNSUBSCRIBE, 0x02, body)


def pingreq():
    return b"\xc0\x00"


def disconnect(rc=None, version=5, properties=None):
    if version != 5 or (rc is None and not properties):
        return b"\xe0\x00"
    body = bytes([rc or 0])
    if properties:
        body += props(properties)
    return fixed(DISCONNECT, 0, body)


def auth(rc=0, properties=None):
    """AUTH (v5 only). rc 0 without properties is the two-byte short form."""
    if rc == 0 and not properties:
        return b"\xf0\x00"
    return fixed(AUTH, 0, bytes([rc]) + props(properties))


# ---- decoded packets ----

class Packet:
    def __init__(self, first, body, version):
        self.type = first >> 4
        self.flags = first & 0x0F
        self.body = body
        self.version = version
        self.props = Props([])
        self._decode()

    def __repr__(self):
        extra = {k: v for k, v in self.__dict__.items() if k not in ("body", "version") and not k.startswith("_")}
        if self.type == PUBLISH and len(self.payload) > 64:
            extra["payload"] = "<%d bytes>" % len(self.payload)
        return "<%s %r>" % (TYPE_NAMES.get(self.type, "?%d" % self.type), extra)

    def _decode(self):
        b, v5 = self.body, self.version == 5
        t = self.type
        if t == CONNACK:
            self.session_present = bool(b[0] & 1)
            self.rc = b[1]
            if v5 and len(b) > 2:
                self.props, _ = decode_props(b, 2)
        elif t == PUBLISH:
            self.qos = (self.flags >> 1) & 3
            self.dup = bool(self.flags & 8)
            self.retain = bool(self.flags & 1)
            n = struct.unpack_from(">H", b, 0)[0]
            self.topic = bytes(b[2:2 + n]).decode("utf-8", "replace")
            pos = 2 + n
            self.pid = None
            if self.qos:
                self.pid = struct.unpack_from(">H", b, pos)[0]
                pos += 2
            if v5:
                self.props, pos = decode_props(b, pos)
            self.payload = bytes(b[pos:])
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = struct.unpack_from(">H", b, 0)[0]
            self.rc = b[2] if len(b) > 2 else 0
            if v5 and len(b) > 3:
                self.props, _ = decode_props(b, 3)
        elif t in (SUBACK, UNSUBACK):
            self.pid = struct.unpack_from(">H", b, 0)[0]
            pos = 2
            if v5:
                self.props, pos = decode_props(b, pos)
            self.codes = list(b[pos:])
        elif t == DISCONNECT or t == AUTH:
            self.rc = b[0] if len(b) > 0 else 0
            if v5 and len(b) > 1:
                self.props, _ = decode_props(b, 1)


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    """A socket speaking MQTT by hand. `version` selects how replies decode."""

    def __init__(self, node, version=5, timeout=10):
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((node.host, node.port), timeout=timeout)
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError("no packet within timeout")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no packet within timeout")
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            raise Closed("connection closed by server")
        self.buf += data

    def recv(self, timeout=None):
        """Read one packet. Raises TimeoutError or Closed."""
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                try:
                    rl, pos = read_varint(self.buf, 1)
                except ProtocolError as e:
                    if "truncated" not in str(e):
                        raise
                    rl = None
                if rl is not None and len(self.buf) >= pos + rl:
                    first = self.buf[0]
                    body = bytes(self.buf[pos:pos + rl])
                    del self.buf[:pos + rl]
                    return Packet(first, body, self.version)
            self._fill(deadline)

    def expect(self, ptype, timeout=None, skip=()):
        """Read packets until one of `ptype` (skipping types in `skip`)."""
        while True:
            p = self.recv(timeout)
            if p.type == ptype:
                return p
            if p.type not in skip:
                raise AssertionError("expected %s, got %r" % (TYPE_NAMES[ptype], p))

    def connect(self, client_id="", **kw):
        kw.setdefault("version", self.version)
        self.send(connect(client_id, **kw))
        return self.expect(CONNACK)

    def wait_closed(self, timeout=None):
        """Read until the server closes; return the packets seen meanwhile.
        Raises TimeoutError if the connection stays open."""
        seen = []
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                seen.append(self.recv(max(0.01, deadline - time.time())))
            except Closed:
                return seen
            except TimeoutError:
                if time.time() >= deadline:
                    raise TimeoutError("connection still open; got %r" % seen)

    def is_closed(self, timeout=10):
        try:
            self.wait_closed(timeout)
            return True
        except TimeoutError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_log_re(node, pattern, timeout=10):
    """Wait until the node's log matches the regex; return the match or None."""
    import re
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        m = rx.search(node.log())
        if m or time.time() >= deadline:
            return m
        time.sleep(0.02)


def wait_disconnect_logged(node, client_id, timeout=10):
    import re
    return wait_log_re(node, r"event=disconnect conn=\d+ client=%s " % re.escape(client_id), timeout)
