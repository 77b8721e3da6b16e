# SPDX-License-Identifier: Apache-2.0
"""PROXY protocol (--proxy-protocol, --proxy-trusted) with a real HAProxy in
front (send-proxy-v2 / send-proxy), and raw headers sent by hand.

Clients connect from 127.0.0.2 (bound source address); HAProxy connects to
the node from 127.0.0.1. The node must show the client's own address in its
logs, the admin API's client list and `shoal ctl clients`."""
import json
import os
import socket
import ssl
import struct
import subprocess
import time
import types

import pytest

import mqttraw as R
import wsraw as W
from certs import make_ca, make_cert
from conftest import SHOAL_BIN
from test_http import TOKEN, api, ctl, parse_metrics, http

WAIT = 30
CLIENT_SRC = "127.0.0.2"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond, what, timeout=WAIT):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    p = types.SimpleNamespace(dir=d)
    p.ca = make_ca(d, "ca1")
    p.cert, p.key = make_cert(d, "ca1", "server", "localhost", True)
    return p


class HAProxy:
    """haproxy -db with one TCP frontend per (name, backend port, send-proxy option)."""

    def __init__(self, tmp_path, routes):
        self.ports = {}
        lines = ["global", "  maxconn 200", "defaults", "  mode tcp", "  timeout connect 5s",
                 "  timeout client 60s", "  timeout server 60s"]
        for name, port, send in routes:
            self.ports[name] = free_port()
            lines += ["frontend f_%s" % name, "  bind 127.0.0.1:%d" % self.ports[name],
                      "  default_backend b_%s" % name, "backend b_%s" % name,
                      "  server n 127.0.0.1:%d %s" % (port, send)]
        cfg = os.path.join(str(tmp_path), "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(str(tmp_path), "haproxy.log"), "w")
        self.proc = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=self.log, stderr=self.log)
        for port in self.ports.values():
            def listening():
                assert self.proc.poll() is None, open(self.log.name).read()
                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", port)) == 0
            wait_for(listening, "haproxy on %d" % port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=WAIT)
        self.log.close()


@pytest.fixture
def haproxy_factory(tmp_path):
    started = []

    def make(routes):
        h = HAProxy(tmp_path, routes)
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()


def sock_from(port, src=CLIENT_SRC):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(src, 0))
    s.settimeout(WAIT)
    return s


def raw_client(sock, version=5):
    """A mqttraw.RawClient over a socket made here (bound source, TLS, ...)."""
    c = R.RawClient.__new__(R.RawClient)
    c.version, c.timeout, c.sock, c.buf, c.closed = version, WAIT, sock, bytearray(), False
    return c


def connected(c, client_id):
    c.send(R.connect(client_id))
    ack = c.expect(R.CONNACK)
    assert ack.rc == 0, ack
    return c


def clients(node):
    status, body = api(node, "GET", "/api/v1/clients")
    assert status == 200, body
    return {row["client_id"]: row for row in body["clients"] if row.get("connected", True)}


def peer_of(node, client_id):
    return clients(node).get(client_id, {}).get("peer")


def metric(node, name):
    status, _, body = http(node, "GET", "/metrics")
    assert status == 200
    samples, _ = parse_metrics(body.decode())
    assert name in samples, "no metric " + name
    return samples[name][0][1]


def v2_header(src, sport, dst="127.0.0.1", dport=1883):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def v1_header(src, sport, dst="127.0.0.1", dport=1883):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def proxied_node(node_factory, *extra):
    return node_factory("--workers", "2", "--admin-token", TOKEN, "--connect-timeout", "3", *extra)


# --- through HAProxy ----------------------------------------------------------


def test_haproxy_v2_client_address_in_logs_api_and_ctl(node_factory, haproxy_factory):
    node = proxied_node(node_factory, "--proxy-protocol", "v2", "--proxy-trusted", "127.0.0.1/32")
    hp = haproxy_factory([("mqtt", node.port, "send-proxy-v2")])
    s = sock_from(hp.ports["mqtt"])
    here = s.getsockname()
    c = connected(raw_client(s), "px-v2")
    want = "%s:%d" % here
    assert here[0] == CLIENT_SRC
    wait_for(lambda: peer_of(node, "px-v2") == want, "client list peer %s: %r" % (want, clients(node)))
    out = ctl(node, "clients")
    assert out.returncode == 0, out.stderr
    assert want in out.stdout, out.stdout
    assert node.wait_log("event=accept conn="), node.log()
    assert "peer=%s" % want in node.log()
    assert metric(node, "shoal_proxy_headers_total") >= 1
    # HAProxy's own address (127.0.0.1) is nowhere as this client's peer.
    assert not peer_of(node, "px-v2").startswith("127.0.0.1:")
    c.send(R.disconnect())


def test_haproxy_auth_failed_line_names_the_client(node_factory, haproxy_factory, tmp_path):
    pw = os.path.join(str(tmp_path), "passwd")
    r = subprocess.run([SHOAL_BIN, "passwd", "-i", "1000", pw, "alice"], input="secret\n", text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    node = proxied_node(node_factory, "--proxy-protocol", "v2", "--proxy-trusted", "127.0.0.1",
                        "--password-file", pw)
    hp = haproxy_factory([("mqtt", node.port, "send-proxy-v2")])
    s = sock_from(hp.ports["mqtt"])
    here = "%s:%d" % s.getsockname()
    c = raw_client(s)
    c.send(R.connect("px-bad", username="alice", password=b"wrong"))
    ack = c.expect(R.CONNACK)
    assert ack.rc != 0
    assert node.wait_log("event=auth_failed"), node.log()
    line = [l for l in node.log().splitlines() if "event=auth_failed" in l][-1]
    assert here in line, line


def test_haproxy_from_untrusted_address_refused_and_node_serves(node_factory, haproxy_factory):
    # Only 127.0.0.5 may send headers; HAProxy connects from 127.0.0.1.
    node = proxied_node(node_factory, "--proxy-protocol", "v2", "--proxy-trusted", "127.0.0.5/32")
    hp = haproxy_factory([("mqtt", node.port, "send-proxy-v2")])
    s = sock_from(hp.ports["mqtt"])
    c = raw_client(s)
    c.send(R.connect("px-untrusted"))
    with pytest.raises((R.Closed, ConnectionError)):
        c.expect(R.CONNACK)
    assert node.wait_log('event=proxy_refused peer=127.0.0.1:'), node.log()
    assert 'reason="source not in --proxy-trusted"' in node.log()
    assert wait_for(lambda: metric(node, "shoal_proxy_untrusted_total") >= 1, "untrusted counted")
    assert "px-untrusted" not in clients(node)
    # A trusted source with a valid header still gets in.
    s2 = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT, source_address=("127.0.0.5", 0))
    s2.sendall(v2_header("10.9.8.7", 4242))
    connected(raw_client(s2), "px-trusted")
    assert peer_of(node, "px-trusted") == "10.9.8.7:4242"


def test_haproxy_tls_passthrough(node_factory, haproxy_factory, pki):
    node = proxied_node(node_factory, "--proxy-protocol", "mqtts=v2", "--proxy-trusted", "127.0.0.1/32",
                        "--tls-port", str(free_port()), "--tls-cert", pki.cert, "--tls-key", pki.key)
    hp = haproxy_factory([("tls", node.tls_port, "send-proxy-v2")])
    ctx = ssl.create_default_context(cafile=pki.ca)
    s = sock_from(hp.ports["tls"])
    here = "%s:%d" % s.getsockname()
    t = ctx.wrap_socket(s, server_hostname="localhost")
    connected(raw_client(t), "px-tls")
    wait_for(lambda: peer_of(node, "px-tls") == here, "TLS client peer %s" % here)
    assert node.wait_log("event=tls_handshake conn="), node.log()
    assert [l for l in node.log().splitlines() if "event=tls_handshake " in l and here in l], node.log()
    # The plain MQTT listener was left off: no header expected there.
    connected(raw_client(sock_from(node.port)), "px-plain")


def test_haproxy_v1_websocket(node_factory, haproxy_factory):
    node = proxied_node(node_factory, "--proxy-protocol", "ws=v1", "--proxy-trusted", "127.0.0.1/32",
                        "--ws-port", str(free_port()))
    hp = haproxy_factory([("ws", node.ws_port, "send-proxy")])
    s = sock_from(hp.ports["ws"])
    here = "%s:%d" % s.getsockname()
    ws = W.WsClient.__new__(W.WsClient)
    ws.host, ws.port, ws.timeout, ws.version = "127.0.0.1", hp.ports["ws"], WAIT, 5
    ws.sock, ws.buf, ws.stream, ws.pongs, ws.close_code, ws.protocol = s, bytearray(), bytearray(), [], None, None
    ws.handshake(path=node.ws_path)
    ws.connect("px-ws")
    wait_for(lambda: peer_of(node, "px-ws") == here, "WebSocket client peer %s" % here)


# --- raw headers: refused ones, and the node keeps serving ----------------------


def refused(node, data, reason, counted_before):
    s = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    if data:
        s.sendall(data)
    s.settimeout(WAIT)
    try:
        got = s.recv(100)
    except ConnectionResetError:
        got = b""
    assert got == b"", got
    s.close()
    assert node.wait_log('reason="%s"' % reason), node.log()
    wait_for(lambda: metric(node, "shoal_proxy_bad_header_total") > counted_before, "bad header counted")


def test_no_header_garbage_and_silence_refused_node_keeps_serving(node_factory):
    node = proxied_node(node_factory, "--proxy-protocol", "v2", "--proxy-trusted", "127.0.0.0/8")
    # Plain MQTT straight away: refused at its first byte.
    n0 = metric(node, "shoal_proxy_bad_header_total")
    refused(node, R.connect("px-nohdr"), "signature", n0)
    # Garbage after a valid start of the signature.
    refused(node, b"\r\n\r\n\x00\r\nQUIX\n", "signature", metric(node, "shoal_proxy_bad_header_total"))
    # A v1 header on a v2-only listener (closed with the bytes unread: EOF or reset).
    refused(node, v1_header("10.0.0.1", 1), "version not enabled", metric(node, "shoal_proxy_bad_header_total"))
    # Half a header, then nothing: closed by --connect-timeout (3 s).
    n1 = metric(node, "shoal_proxy_bad_header_total")
    refused(node, v2_header("10.0.0.2", 2)[:20], "no PROXY header within connect timeout", n1)
    # The node still serves: a good header, split in two writes, then MQTT.
    s = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    h = v2_header("10.1.2.3", 5555)
    s.sendall(h[:7])
    time.sleep(0.1)  # lets the node see the first part alone (not a timing assertion)
    s.sendall(h[7:] + R.connect("px-after"))
    c = raw_client(s)
    assert c.expect(R.CONNACK).rc == 0
    assert peer_of(node, "px-after") == "10.1.2.3:5555"
    lines = [l for l in node.log().splitlines() if "event=proxy_refused" in l]
    assert len(lines) >= 4, lines


def v2_with_tlvs(src, sport, body_len):
    """A v2 PROXY header whose address block is followed by TLVs (ALPN,
    authority, NOOP padding) up to a body of exactly body_len bytes."""
    body = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 1883)
    body += bytes([0x01]) + struct.pack("!H", 4) + b"mqtt"           # PP2_TYPE_ALPN
    body += bytes([0x02]) + struct.pack("!H", 9) + b"a.example"      # PP2_TYPE_AUTHORITY
    pad = body_len - len(body) - 3
    assert pad >= 0
    body += bytes([0x04]) + struct.pack("!H", pad) + b"\0" * pad      # PP2_TYPE_NOOP
    assert len(body) == body_len
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_v2_tlvs_at_the_length_limit_and_one_over(node_factory):
    """The v2 body limit's edge (2,048 bytes, MQTT_PROXY_V2_MAX_BODY): a
    header of exactly that, TLVs included, sent in pieces across several
    reads, is taken; one byte more is refused with its reason and a log
    line, and the node keeps serving."""
    node = proxied_node(node_factory, "--proxy-protocol", "v2", "--proxy-trusted", "127.0.0.0/8")
    h = v2_with_tlvs("10.9.8.7", 4242, 2048)
    s = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Pieces cut inside the signature, the length and a TLV; the pauses
    # let the node read them apart (not a timing assertion).
    cuts = [0, 5, 13, 15, 17, 30, 40, 1000, len(h)]
    for a, b in zip(cuts, cuts[1:]):
        s.sendall(h[a:b])
        time.sleep(0.05)
    s.sendall(R.connect("px-tlv-max"))
    assert raw_client(s).expect(R.CONNACK).rc == 0
    assert peer_of(node, "px-tlv-max") == "10.9.8.7:4242"
    n0 = metric(node, "shoal_proxy_bad_header_total")
    over = v2_with_tlvs("10.9.8.7", 4243, 2049)
    refused(node, over + R.connect("px-tlv-over"), "v2 length above the limit", n0)
    assert "px-tlv-over" not in clients(node)
    # A TLV that runs past the header's end.
    bad = bytearray(v2_with_tlvs("10.9.8.7", 4244, 64))
    bad[16 + 12 + 7 + 12 + 1:16 + 12 + 7 + 12 + 3] = struct.pack("!H", 200)
    refused(node, bytes(bad), "v2 TLV past the end", metric(node, "shoal_proxy_bad_header_total"))
    c = raw_client(sock_from(node.port, "127.0.0.1"))
    c.sock.sendall(v2_header("10.1.1.1", 1))
    assert connected(c, "px-after-tlv")
    assert peer_of(node, "px-after-tlv") == "10.1.1.1:1"


def test_v1_header_and_local_command(node_factory):
    node = proxied_node(node_factory, "--proxy-protocol", "v1", "--proxy-trusted", "127.0.0.1/32,::1")
    s = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    s.sendall(v1_header("192.0.2.7", 61000) + R.connect("px-v1"))
    assert raw_client(s).expect(R.CONNACK).rc == 0
    assert peer_of(node, "px-v1") == "192.0.2.7:61000"
    # v1 UNKNOWN: valid, no address: the connection keeps its own.
    s = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    s.sendall(b"PROXY UNKNOWN\r\n" + R.connect("px-unknown"))
    assert raw_client(s).expect(R.CONNACK).rc == 0
    assert peer_of(node, "px-unknown") == "127.0.0.1:%d" % s.getsockname()[1]


@pytest.mark.parametrize("value", ["v3", "mqtt=v9", "http=v1", "on"])
def test_bad_values_refused_at_start(value):
    out = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--proxy-protocol", value],
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 2, out
    assert "--proxy-protocol" in out.stderr


@pytest.mark.parametrize("value", ["10.0.0.0/33", "nonsense", "1.2.3.4/x"])
def test_bad_trusted_refused_at_start(value):
    out = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--proxy-protocol", "v2",
                          "--proxy-trusted", value], capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 2, out
    assert "--proxy-trusted" in out.stderr


def test_env_and_config_file_keys(node_factory, tmp_path):
    cfgf = os.path.join(str(tmp_path), "shoal.conf")
    with open(cfgf, "w") as f:
        f.write("proxy-protocol v2\n")
    node = node_factory("--config", cfgf, "--admin-token", TOKEN, env={"SHOAL_PROXY_TRUSTED": "127.0.0.1/32"})
    s = socket.create_connection(("127.0.0.1", node.port), timeout=WAIT)
    s.sendall(v2_header("198.51.100.4", 7) + R.connect("px-cfg"))
    assert raw_client(s).expect(R.CONNACK).rc == 0
    assert peer_of(node, "px-cfg") == "198.51.100.4:7"


def test_proxy_protocol_without_a_trusted_list_is_refused_at_start(tmp_path):
    """Anyone who can reach a PROXY listener could claim any address, so the
    balancers must be named (0.0.0.0/0,::/0 names everyone, on purpose)."""
    out = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--proxy-protocol", "v2"],
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 2, out
    assert "--proxy-protocol needs --proxy-trusted" in out.stderr
    cfgf = tmp_path / "shoal.conf"
    cfgf.write_text("proxy-protocol mqtt=v1\n")
    out = subprocess.run([SHOAL_BIN, "--check-config", str(cfgf)], capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 1, out
    assert "--proxy-trusted" in out.stderr
    cfgf.write_text("proxy-protocol mqtt=v1\nproxy-trusted 0.0.0.0/0,::/0\n")
    out = subprocess.run([SHOAL_BIN, "--check-config", str(cfgf)], capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0, out
