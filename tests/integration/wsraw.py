# SPDX-License-Identifier: Apache-2.0
"""A minimal WebSocket client (RFC 6455) built on a socket, for tests where
the exact frames matter: it can send unmasked, text, oversize or split
frames, and it reads MQTT packets (mqttraw.Packet) out of binary frames.

    ws = WsClient(node.host, node.ws_port)        # handshake done
    ws.send_mqtt(R.connect("id"))                 # one binary frame
    ack = ws.expect(R.CONNACK)
"""
import base64
import hashlib
import os
import socket
import struct
import time

import mqttraw as R

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    def __init__(self, status, headers, body):
        super().__init__("HTTP %d %r" % (status, body))
        self.status, self.headers, self.body = status, headers, body


class Closed(Exception):
    """The server's close frame (code, or None without one) or a bare EOF."""

    def __init__(self, code=None, eof=False):
        super().__init__("closed code=%s eof=%s" % (code, eof))
        self.code, self.eof = code, eof


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One client frame. `length` overrides the encoded payload length (for
    oversize announcements); `mask=False` leaves it unmasked."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def request(host, port, path="/mqtt", protocols=("mqtt",), origin=None, key=None, version="13", extra=None,
            upgrade="websocket", connection="Upgrade"):
    """The bytes of an upgrade request; None drops a header."""
    lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port)]
    if upgrade is not None:
        lines.append("Upgrade: " + upgrade)
    if connection is not None:
        lines.append("Connection: " + connection)
    if key is not False:
        lines.append("Sec-WebSocket-Key: " + (key or base64.b64encode(os.urandom(16)).decode()))
    if version is not None:
        lines.append("Sec-WebSocket-Version: " + version)
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    if origin:
        lines.append("Origin: " + origin)
    lines += extra or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class WsClient:
    """A socket that has done the WebSocket handshake (unless handshake=False).
    `wrap`: a function turning the TCP socket into a TLS one (wss)."""

    def __init__(self, host, port, path="/mqtt", protocols=("mqtt",), origin=None, timeout=10, wrap=None,
                 handshake=True, version=5):
        self.host, self.port, self.timeout, self.version = host, port, timeout, version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if wrap:
            self.sock = wrap(self.sock)
        self.buf = bytearray()     # raw bytes from the socket
        self.stream = bytearray()  # MQTT bytes from binary frames
        self.pongs = []
        self.close_code = None
        self.protocol = None
        if handshake:
            self.handshake(path=path, protocols=protocols, origin=origin)

    # ---- bytes ----
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.time()
        if left <= 0:
            raise TimeoutError("nothing within timeout")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("nothing within timeout")
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            raise Closed(eof=True)
        self.buf += data

    # ---- handshake ----
    def handshake(self, path="/mqtt", protocols=("mqtt",), origin=None, raw=None):
        """Send the upgrade and read the response head. Raises
        HandshakeRefused for anything but 101; checks Sec-WebSocket-Accept."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.send(raw or request(self.host, self.port, path, protocols, origin, key=key))
        status, headers, body = self.read_response()
        if status != 101:
            raise HandshakeRefused(status, headers, body)
        if raw is None:
            assert headers.get("sec-websocket-accept") == accept_of(key), headers
        assert headers.get("upgrade", "").lower() == "websocket", headers
        self.protocol = headers.get("sec-websocket-protocol")
        return status, headers

    def read_response(self, timeout=None):
        deadline = time.time() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill(deadline)
        body, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return status, headers, body

    # ---- frames ----
    def send_frame(self, opcode, payload=b"", **kw):
        self.send(frame(opcode, payload, **kw))

    def send_mqtt(self, data, pieces=1):
        """MQTT bytes as one binary message: one frame, or `pieces` fragments
        (binary then continuations)."""
        if pieces <= 1:
            self.send_frame(BINARY, data)
            return
        step = max(1, -(-len(data) // pieces))
        chunks = [data[i:i + step] for i in range(0, len(data), step)]
        out = b""
        for i, ch in enumerate(chunks):
            out += frame(BINARY if i == 0 else CONT, ch, fin=i == len(chunks) - 1)
        self.send(out)

    def recv_frame(self, timeout=None):
        """(fin, opcode, payload) of the next server frame. Server frames
        must be unmasked with RSV 0."""
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while True:
            b = self.buf
            if len(b) >= 2:
                assert b[0] & 0x70 == 0, "RSV bits from the server"
                assert b[1] & 0x80 == 0, "the server masked a frame"
                n, pos = b[1] & 0x7F, 2
                if n == 126 and len(b) >= 4:
                    n, pos = struct.unpack_from("!H", b, 2)[0], 4
                elif n == 127 and len(b) >= 10:
                    n, pos = struct.unpack_from("!Q", b, 2)[0], 10
                if n < 126 or pos > 2:
                    if len(b) >= pos + n:
                        fin, op = bool(b[0] & 0x80), b[0] & 0x0F
                        payload = bytes(b[pos:pos + n])
                        del b[:pos + n]
                        return fin, op, payload
            self._fill(deadline)

    def recv(self, timeout=None):
        """The next MQTT packet from binary frames. Pongs are kept in
        self.pongs; a close frame raises Closed(code)."""
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.stream) >= 2:
                try:
                    rl, pos = R.read_varint(self.stream, 1)
                except R.ProtocolError:
                    rl = None
                if rl is not None and len(self.stream) >= pos + rl:
                    first, body = self.stream[0], bytes(self.stream[pos:pos + rl])
                    del self.stream[:pos + rl]
                    return R.Packet(first, body, self.version)
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.time()))
            if op in (BINARY, CONT):
                self.stream += payload
            elif op == PONG:
                self.pongs.append(payload)
            elif op == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(self.close_code)
            else:
                raise AssertionError("unexpected opcode %d from the server" % op)

    def expect(self, ptype, timeout=None):
        p = self.recv(timeout)
        assert p.type == ptype, "expected %s, got %r" % (R.TYPE_NAMES[ptype], p)
        return p

    def connect(self, client_id, **kw):
        kw.setdefault("version", self.version)
        self.send_mqtt(R.connect(client_id, **kw))
        return self.expect(R.CONNACK)

    def wait_close(self, timeout=None):
        """Read until the server's close frame; returns (packets seen, code).
        Raises AssertionError on EOF without a close frame."""
        seen = []
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                seen.append(self.recv(max(0.01, deadline - time.time())))
            except Closed as e:
                assert not e.eof, "EOF without a close frame; got %r" % seen
                return seen, e.code

    def wait_eof(self, timeout=None):
        """After the close handshake: the server ends the TCP connection."""
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
