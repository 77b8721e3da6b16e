# SPDX-License-Identifier: Apache-2.0
"""MQTT over WebSocket (--ws-port) and over secure WebSocket (--wss-port).

Real clients: paho-mqtt with transport="websockets", MQTT.js in Node and
MQTT.js in headless Chromium (tests/js), and a raw WebSocket client
(wsraw.py) for the frame-level edges of RFC 6455. Certificates for wss are
made with the openssl command at test time."""
import os
import shutil
import signal
import ssl
import struct
import subprocess
import types

import pytest

import mqttraw as R
import wsraw as W
from pahoclient import Client, uid
from certs import make_ca, make_cert, rotate_server_cert
from test_tls import free_port

WAIT = 15
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
JS = os.path.join(ROOT, "tests/js")


def ws_node(node_factory, *args, wss=False, pki=None):
    """A node with a WebSocket listener (and a wss one when asked) on free
    ports; tried again if another process took a port in between."""
    for attempt in range(3):
        extra = ["--ws-port", str(free_port())]
        if wss:
            extra += ["--wss-port", str(free_port()), "--tls-cert", pki.cert, "--tls-key", pki.key]
        try:
            return node_factory("--workers", "2", *extra, *args)
        except RuntimeError as e:
            if "listen_error" not in str(e) or attempt == 2:
                raise


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("wspki"))
    p = types.SimpleNamespace(dir=d)
    p.ca = make_ca(d, "ca1")
    p.cert, p.key = make_cert(d, "ca1", "server", "localhost", True)
    p.client_cert, p.client_key = make_cert(d, "ca1", "client1", "client1", False)
    return p


def tls_wrap(ca, certfile=None, keyfile=None):
    ctx = ssl.create_default_context(cafile=ca)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return lambda s: ctx.wrap_socket(s, server_hostname="localhost")


def ws(node, **kw):
    return W.WsClient(node.host, node.ws_port, path=node.ws_path, **kw)


def paho_ws(node, version=5, tls_ca=None, certfile=None, keyfile=None, **kw):
    """A paho client over ws (or wss with tls_ca), connected."""
    port = node.wss_port if tls_ca else node.ws_port
    c = Client(types.SimpleNamespace(host="127.0.0.1", port=port), version=version, connect=False,
               transport="websockets", **kw)
    c.c.ws_set_options(path=node.ws_path)
    if tls_ca:
        c.c.tls_set(ca_certs=tls_ca, certfile=certfile, keyfile=keyfile)
    c.connect()
    return c


def roundtrip(c, payload=b"over websocket"):
    topic = uid("ws")
    c.subscribe(topic, 1)
    c.publish(topic, payload, qos=1)
    m = c.get()
    assert (m.topic, m.payload) == (topic, payload)


# ---- real clients ----

@pytest.mark.parametrize("version", [5, 4, 3])
def test_paho_over_ws(node_factory, version):
    n = ws_node(node_factory)
    assert n.ws_port and n.ws_path == "/mqtt"
    c = paho_ws(n, version=version)
    roundtrip(c)
    # 100 KB each way: 64-bit frame lengths in both directions.
    roundtrip(c, os.urandom(100 * 1024))
    # Plain TCP keeps working alongside, and reaches WebSocket clients.
    topic = uid("mix")
    c.subscribe(topic, 1)
    with Client(n, version=version) as plain:
        plain.publish(topic, b"from tcp", qos=1)
    assert c.get().payload == b"from tcp"
    c.disconnect()
    assert n.wait_log("event=ws_upgrade conn=")
    assert n.wait_log("protocol=mqtt ")  # paho offers "mqtt" for every version


@pytest.mark.parametrize("version", [5, 4])
def test_paho_over_wss(node_factory, pki, version):
    n = ws_node(node_factory, wss=True, pki=pki)
    assert n.wss_port and not n.tls_port
    c = paho_ws(n, version=version, tls_ca=pki.ca)
    roundtrip(c)
    roundtrip(c, os.urandom(200 * 1024))
    with paho_ws(n, version=version) as plain_ws:
        topic = uid("mix")
        c.subscribe(topic, 1)
        plain_ws.publish(topic, b"ws to wss", qos=1)
        assert c.get().payload == b"ws to wss"
    c.disconnect()
    assert n.wait_log("event=tls_handshake conn=")


def test_wss_client_certificate_as_username(node_factory, pki, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user client1\ntopic readwrite certs/#\n")
    n = ws_node(node_factory, "--tls-ca", pki.ca, "--tls-require-client-cert", "--tls-cert-as-username",
                "--acl-file", str(acl), wss=True, pki=pki)
    c = paho_ws(n, tls_ca=pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)
    # The ACL grants certs/# to user client1 only: the CN became the username.
    assert c.subscribe("certs/a", 1) == [1]
    assert c.subscribe("other/a", 1) == [0x87]
    c.publish("certs/a", b"by cert", qos=1)
    assert c.get().payload == b"by cert"
    c.disconnect()
    assert n.wait_log("cn=client1 username=client1")
    # Without a client certificate the TLS layer refuses before any upgrade.
    with pytest.raises((ssl.SSLError, ConnectionError, W.Closed, OSError)):
        w = W.WsClient("127.0.0.1", n.wss_port, wrap=tls_wrap(pki.ca))
        w.connect(uid("nocert"))


def test_wss_sighup_reload(node_factory, pki, tmp_path):
    d = str(tmp_path)
    cert, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    n = ws_node(node_factory, "--tls-cert", cert, "--tls-key", key, wss=True, pki=pki)
    old = paho_ws(n, tls_ca=pki.ca)
    topic = uid("hup")
    old.subscribe(topic, 1)
    # A new CA and a server certificate from it replace the files.
    new_ca = rotate_server_cert(d, cert, key)
    n.proc.send_signal(signal.SIGHUP)
    assert n.wait_log("event=tls_reloaded")
    fresh = paho_ws(n, tls_ca=new_ca)
    fresh.publish(topic, b"after reload", qos=1)
    assert old.get().payload == b"after reload"
    with pytest.raises(ssl.SSLCertVerificationError):
        W.WsClient("127.0.0.1", n.wss_port, wrap=tls_wrap(pki.ca))
    fresh.disconnect()
    old.disconnect()


def node_js(script, *args, timeout=90):
    if not shutil.which("node"):
        pytest.fail("node (Node.js) is not installed; ./tests/run installs it")
    if not os.path.isdir(os.path.join(JS, "node_modules/mqtt")):
        pytest.fail("tests/js/node_modules is missing; run npm ci in tests/js (./tests/run does)")
    r = subprocess.run(["node", os.path.join(JS, script), *args], capture_output=True, text=True,
                       timeout=timeout, cwd=JS)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("version", [5, 4])
def test_mqttjs_node_ws_and_wss(node_factory, pki, version):
    n = ws_node(node_factory, wss=True, pki=pki)
    rc, out, err = node_js("node_client.mjs", "ws://127.0.0.1:%d/mqtt" % n.ws_port, "--version", str(version))
    assert rc == 0 and "OK hello from MQTT.js / 102400 bytes" in out, (out, err, n.log()[-3000:])
    rc, out, err = node_js("node_client.mjs", "wss://127.0.0.1:%d/mqtt" % n.wss_port, "--version", str(version),
                           "--ca", pki.ca)
    assert rc == 0 and "OK hello from MQTT.js / 102400 bytes" in out, (out, err, n.log()[-3000:])
    assert n.wait_log("event=connect conn=") and n.wait_log("version=%d " % version)


def chromium():
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(path):
        pytest.fail("%s not found; ./tests/run installs the chromium package" % path)


def test_mqttjs_in_chromium_ws(node_factory):
    chromium()
    n = ws_node(node_factory)
    rc, out, err = node_js("browser_client.mjs", "ws://127.0.0.1:%d/mqtt" % n.ws_port)
    assert rc == 0 and "OK hello from MQTT.js / 102400 bytes" in out, (out, err[-2000:], n.log()[-3000:])
    # The browser sent its page's Origin.
    assert n.wait_log('origin="http://127.0.0.1:')


def test_mqttjs_in_chromium_wss(node_factory, pki):
    chromium()
    n = ws_node(node_factory, wss=True, pki=pki)
    rc, out, err = node_js("browser_client.mjs", "wss://127.0.0.1:%d/mqtt" % n.wss_port, "--ignore-cert",
                           "--version", "4")
    assert rc == 0 and "OK hello from MQTT.js / 102400 bytes" in out, (out, err[-2000:], n.log()[-3000:])
    assert n.wait_log("event=tls_handshake conn=")


def test_chromium_origin_not_allowed(node_factory):
    chromium()
    n = ws_node(node_factory, "--ws-origins", "https://app.example.com")
    rc, out, err = node_js("browser_client.mjs", "ws://127.0.0.1:%d/mqtt" % n.ws_port, "--timeout", "8000")
    assert rc == 1 and "ERROR" in out, out
    assert n.wait_log("event=ws_refused") and n.wait_log("status=403")
    assert "event=connect conn=" not in n.log()


# ---- raw frames ----

@pytest.fixture
def wsn(node_factory):
    return ws_node(node_factory, "--ws-max-frame", "4096", "--sys-interval", "0")


def test_packets_split_across_frames(wsn):
    with ws(wsn) as a:
        # CONNECT as a fragmented message of three frames.
        a.send_mqtt(R.connect(uid("split")), pieces=3)
        assert a.expect(R.CONNACK).rc == 0
        # SUBSCRIBE one byte per frame, a ping between the fragments.
        sub = R.subscribe(1, [("split/t", 1)])
        out = b""
        for i in range(len(sub)):
            out += W.frame(W.BINARY if i == 0 else W.CONT, sub[i:i + 1], fin=i == len(sub) - 1)
            if i == 2:
                out += W.frame(W.PING, b"mid")
        a.send(out)
        assert a.expect(R.SUBACK).codes == [1]
        # A PUBLISH split over two separate binary messages: the stream, not
        # the message, carries MQTT.
        pub = R.publish("split/t", b"x" * 300, qos=1, pid=7)
        a.send(W.frame(W.BINARY, pub[:100]) + W.frame(W.BINARY, pub[100:]))
        got = [a.recv(), a.recv()]
        types_ = sorted(p.type for p in got)
        assert types_ == [R.PUBLISH, R.PUBACK], got
        msg = next(p for p in got if p.type == R.PUBLISH)
        assert msg.payload == b"x" * 300
        assert a.pongs == [b"mid"]


def test_several_packets_in_one_frame(wsn):
    with ws(wsn) as a:
        a.send_frame(W.BINARY, R.connect(uid("many")) + R.subscribe(1, [("many/t", 0)]) +
                     R.publish("many/t", b"one") + R.publish("many/t", b"two") + R.pingreq())
        got = [a.recv() for _ in range(5)]
        assert [p.type for p in got] == [R.CONNACK, R.SUBACK, R.PUBLISH, R.PUBLISH, R.PINGRESP], got
        assert [p.payload for p in got[2:4]] == [b"one", b"two"]
        # The handshake and a first frame may share a segment too.
        b = W.WsClient(wsn.host, wsn.ws_port, handshake=False)
        b.send(W.request(wsn.host, wsn.ws_port) + W.frame(W.BINARY, R.connect(uid("eager"))))
        assert b.read_response()[0] == 101
        assert b.expect(R.CONNACK).rc == 0
        b.close()


def test_ping_pong(wsn):
    with ws(wsn) as a:
        a.connect(uid("ping"))
        a.send_frame(W.PING, b"are you there")
        a.send_frame(W.PONG, b"unsolicited")  # allowed, ignored
        a.send_mqtt(R.pingreq())
        assert a.expect(R.PINGRESP)
        assert a.pongs == [b"are you there"]
        a.send_frame(W.PING, b"")
        a.send_mqtt(R.pingreq())
        assert a.expect(R.PINGRESP)
        assert a.pongs == [b"are you there", b""]


def test_close_from_client(wsn):
    with ws(wsn) as sub:
        sub.connect(uid("wsub"))
        sub.send_mqtt(R.subscribe(1, [("will/ws", 0)]))
        sub.expect(R.SUBACK)
        a = ws(wsn)
        a.connect(uid("closer"), will={"topic": "will/ws", "payload": b"gone", "qos": 0})
        # A close frame without MQTT DISCONNECT: the server answers with a
        # close frame echoing the code, ends the TCP connection, and the will
        # goes out as for any connection lost.
        a.send_frame(W.CLOSE, struct.pack("!H", 4000) + b"bye")
        seen, code = a.wait_close()
        assert (seen, code) == ([], 4000)
        assert a.wait_eof()
        assert sub.expect(R.PUBLISH).payload == b"gone"
        assert wsn.wait_log('reason="WebSocket close from peer"')
        # A close frame without a code is answered with 1000.
        b = ws(wsn)
        b.connect(uid("closer"))
        b.send_frame(W.CLOSE, b"")
        assert b.wait_close() == ([], 1000)
        # An MQTT DISCONNECT right before the close frame is handled first:
        # no will.
        c = ws(wsn)
        c.connect(uid("polite"), will={"topic": "will/ws", "payload": b"not sent", "qos": 0})
        c.send(W.frame(W.BINARY, R.disconnect(0)) + W.frame(W.CLOSE, struct.pack("!H", 1000)))
        assert c.wait_close()[1] == 1000
        sub.send_mqtt(R.pingreq())
        assert sub.expect(R.PINGRESP)
        for x in (a, b, c):
            x.close()


def test_close_from_server(wsn, node_factory):
    with ws(wsn) as a:
        # DISCONNECT from the client: the server closes with 1000.
        a.connect(uid("bye"))
        a.send_mqtt(R.disconnect(0))
        assert a.wait_close() == ([], 1000)
        assert a.wait_eof()
    # Takeover: the old connection gets DISCONNECT 0x8E, then a close frame.
    cid = uid("taken")
    old = ws(wsn)
    old.connect(cid)
    new = ws(wsn)
    assert new.connect(cid).rc == 0
    seen, code = old.wait_close()
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x8E)] and code == 1000
    old.close()
    new.close()
    # Shutdown: DISCONNECT 0x8B and 1001 Going Away.
    n = ws_node(node_factory)
    c = ws(n)
    c.connect(uid("shut"))
    n.proc.send_signal(signal.SIGTERM)
    seen, code = c.wait_close()
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x8B)] and code == 1001
    c.close()


def refused(node, **kw):
    c = W.WsClient(node.host, node.ws_port, handshake=False)
    with pytest.raises(W.HandshakeRefused) as e:
        c.handshake(**kw)
    # The server ends the connection after the error response.
    assert c.wait_eof()
    c.close()
    return e.value


def test_handshake_refusals(wsn, node_factory):
    assert refused(wsn, path="/other").status == 404
    for raw, why in [
        (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "plain GET"),
        (W.request("h", 1, key="tooshort=="), "bad key"),
        (W.request("h", 1, key=False), "no key"),
        (W.request("h", 1, upgrade=None), "no Upgrade"),
        (W.request("h", 1, connection="keep-alive"), "no Connection: Upgrade"),
        (W.request("h", 1, protocols=("chat",)), "unsupported subprotocol"),
        (b"POST /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "POST"),
        (b"GET /mqtt HTTP/1.1\nHost: x\n\n", "bare LF"),
        (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n", "head too long"),
    ]:
        e = refused(wsn, raw=raw)
        assert e.status == 400, (why, e.status, e.body)
    e = refused(wsn, raw=W.request("h", 1, version="8"))
    assert e.status == 400 and e.headers.get("sec-websocket-version") == "13"
    # MQTT bytes straight to the WebSocket port are not an HTTP request.
    c = W.WsClient(wsn.host, wsn.ws_port, handshake=False)
    c.send(R.connect(uid("tcp")) + b"\r\n\r\n")
    assert c.read_response()[0] == 400
    c.close()
    assert wsn.wait_log("event=ws_refused") and wsn.wait_log("status=404")
    # No subprotocol offered: accepted without the header (like Mosquitto).
    with ws(wsn, protocols=()) as a:
        assert a.protocol is None
        assert a.connect(uid("noproto")).rc == 0
    with ws(wsn, protocols=("mqttv3.1",)) as a:
        assert a.protocol == "mqttv3.1"
    # The Origin allow-list: 403 for others, browsers from listed origins
    # and clients that send no Origin pass.
    n = ws_node(node_factory, "--ws-origins", "https://app.example.com,http://localhost:8080")
    assert refused(n, origin="https://evil.example.com").status == 403
    with ws(n, origin="http://localhost:8080") as a:
        assert a.connect(uid("origin")).rc == 0
    with ws(n) as a:
        assert a.connect(uid("noorigin")).rc == 0


def test_handshake_arriving_in_pieces(wsn):
    c = W.WsClient(wsn.host, wsn.ws_port, handshake=False)
    req = W.request(wsn.host, wsn.ws_port)
    for i in range(0, len(req), 7):
        c.send(req[i:i + 7])
    assert c.read_response()[0] == 101
    c.send_mqtt(R.connect(uid("pieces")))
    assert c.expect(R.CONNACK).rc == 0
    c.close()


def bad_frame(node, data, code, version=5, connect=True):
    """Send data after CONNECT; the server must answer with close `code`
    (v5: after DISCONNECT with the matching reason) and end the TCP stream."""
    c = ws(node, version=version)
    cid = uid("bad")
    if connect:
        assert c.connect(cid, version=version).rc == 0
    c.send(data)
    seen, got = c.wait_close()
    assert got == code, (got, seen)
    assert c.wait_eof()
    c.close()
    return seen


def test_frame_errors_close_with_the_right_code(wsn):
    healthy = ws(wsn)
    healthy.connect(uid("healthy"))
    healthy.send_mqtt(R.subscribe(1, [("ok/t", 0)]))
    healthy.expect(R.SUBACK)

    # Unmasked client frame: 1002 (v5 gets DISCONNECT 0x82 first).
    seen = bad_frame(wsn, W.frame(W.BINARY, R.pingreq(), mask=False), 1002)
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x82)]
    assert wsn.wait_log('reason="unmasked frame"')
    # 3.1.1: no DISCONNECT, the close frame alone.
    assert bad_frame(wsn, W.frame(W.BINARY, R.pingreq(), mask=False), 1002, version=4) == []
    # Before CONNECT too.
    assert bad_frame(wsn, W.frame(W.BINARY, b"\x10", mask=False), 1002, connect=False) == []
    # Text frame: 1003.
    bad_frame(wsn, W.frame(W.TEXT, b"hello"), 1003)
    # Oversize frame (--ws-max-frame 4096): 1009 from the header alone.
    seen = bad_frame(wsn, W.frame(W.BINARY, b"", length=4097)[:8], 1009)
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x95)]
    # RSV bits, unknown opcodes, a fragmented ping, a long ping.
    bad_frame(wsn, W.frame(W.BINARY, R.pingreq(), rsv=4), 1002)
    bad_frame(wsn, W.frame(0x3, b""), 1002)
    bad_frame(wsn, W.frame(0xB, b""), 1002)
    bad_frame(wsn, W.frame(W.PING, b"", fin=False), 1002)
    bad_frame(wsn, W.frame(W.PING, b"p" * 126), 1002)
    # Continuation without a message, a new message inside a fragmented one.
    bad_frame(wsn, W.frame(W.CONT, R.pingreq()), 1002)
    bad_frame(wsn, W.frame(W.BINARY, b"\xc0", fin=False) + W.frame(W.BINARY, b"\x00"), 1002)
    # Bad close frames: a 1-byte payload, a reserved code, a reason not UTF-8.
    bad_frame(wsn, W.frame(W.CLOSE, b"\x03"), 1002)
    bad_frame(wsn, W.frame(W.CLOSE, struct.pack("!H", 1005)), 1002)
    bad_frame(wsn, W.frame(W.CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007)
    # Valid packets before a bad frame in the same segment are handled first.
    c = ws(wsn)
    c.connect(uid("before"))
    c.send(W.frame(W.BINARY, R.publish("ok/t", b"just before")) + W.frame(W.TEXT, b"x"))
    assert c.wait_close()[1] == 1003
    c.close()
    assert healthy.expect(R.PUBLISH).payload == b"just before"

    # MQTT-level errors inside good frames close with MQTT's reason and 1000.
    seen = bad_frame(wsn, W.frame(W.BINARY, b"\x30\x02\x00\x05"), 1000)  # topic longer than the packet
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x81)]

    # The healthy client noticed nothing.
    healthy.send_mqtt(R.publish("ok/t", b"still here"))
    assert healthy.expect(R.PUBLISH).payload == b"still here"
    healthy.close()


def test_large_publish_over_many_frames(wsn):
    """A 1 MB PUBLISH in 4 KiB frames (the frame limit), delivered to a
    WebSocket subscriber and a TCP one."""
    payload = os.urandom(1 << 20)
    with ws(wsn) as a, Client(wsn) as tcp:
        a.connect(uid("big"))
        a.send_mqtt(R.subscribe(1, [("big/t", 1)]))
        a.expect(R.SUBACK)
        tcp.subscribe("big/t", 1)
        a.send_mqtt(R.publish("big/t", payload, qos=1, pid=1), pieces=(len(payload) // 4000) + 1)
        got = [a.recv(timeout=30), a.recv(timeout=30)]
        msg = next(p for p in got if p.type == R.PUBLISH)
        assert msg.payload == payload
        assert tcp.get().payload == payload


def test_handshake_timeout(node_factory):
    n = ws_node(node_factory, "--connect-timeout", "1")
    c = W.WsClient(n.host, n.ws_port, handshake=False)
    c.send(b"GET /mqtt HTTP/1.1\r\n")  # and never the rest
    assert c.wait_eof(timeout=WAIT)
    assert n.wait_log("no WebSocket handshake within connect timeout")
    # Upgraded but no CONNECT: the usual connect timeout, with a close frame.
    d = ws(n)
    assert d.wait_close(timeout=WAIT) == ([], 1000)
    assert n.wait_log("no CONNECT within connect timeout")
    c.close()
    d.close()


def test_help_and_bad_path():
    from conftest import SHOAL_BIN
    r = subprocess.run([SHOAL_BIN, "--help"], capture_output=True, text=True, timeout=20)
    for flag in ("--ws-port", "--wss-port", "--ws-path", "--ws-max-frame", "--ws-origins"):
        assert flag in r.stdout
    r = subprocess.run([SHOAL_BIN, "--ws-path", "mqtt", "--port", "0", "--http-port", "0"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2 and "--ws-path" in r.stderr
    r = subprocess.run([SHOAL_BIN, "--wss-port", "18884", "--port", "0", "--http-port", "0"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1 and "--wss-port need --tls-cert" in r.stderr


def test_custom_path(node_factory):
    n = ws_node(node_factory, "--ws-path", "/broker/ws")
    assert n.ws_path == "/broker/ws"
    with ws(n) as a:
        assert a.connect(uid("path")).rc == 0
    assert refused(n, path="/mqtt").status == 404
