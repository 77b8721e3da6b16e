# SPDX-License-Identifier: Apache-2.0
"""MQTT over TLS (--tls-port): paho and mosquitto clients, client
certificates, certificate reload on SIGHUP, and the handshake timeout.

Keys and certificates are made with the openssl command at test time in a
temporary directory; none are committed."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import types

import pytest

import mqttraw as R
from certs import make_ca, make_cert, rotate_server_cert
from pahoclient import Client, uid
from test_mosquitto_clients import Sub, pub


WAIT = 15


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """CA 'ca1' with server 'localhost' and client 'client1'; an unrelated CA 'other'."""
    d = str(tmp_path_factory.mktemp("pki"))
    p = types.SimpleNamespace(dir=d)
    p.ca = make_ca(d, "ca1")
    p.cert, p.key = make_cert(d, "ca1", "server", "localhost", True)
    p.client_cert, p.client_key = make_cert(d, "ca1", "client1", "client1", False)
    p.other_ca = make_ca(d, "other")
    p.other_client_cert, p.other_client_key = make_cert(d, "other", "stranger", "stranger", False)
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tls_node(node_factory, pki, *extra, cert=None, key=None):
    return node_factory("--workers", "2", "--tls-port", str(free_port()), "--tls-cert", cert or pki.cert,
                        "--tls-key", key or pki.key, *extra)


def tls_client(node, ca, version=5, certfile=None, keyfile=None, connect=True):
    """A paho Client (pahoclient) on the node's TLS port."""
    target = types.SimpleNamespace(host="127.0.0.1", port=node.tls_port)
    c = Client(target, version=version, connect=False)
    c.c.tls_set(ca_certs=ca, certfile=certfile, keyfile=keyfile)
    if connect:
        c.connect()
    return c


def roundtrip(c):
    topic = uid("tls")
    c.subscribe(topic, 1)
    c.publish(topic, b"over tls", qos=1)
    m = c.get()
    assert (m.topic, m.payload) == (topic, b"over tls")


def raw_tls(node, ca, certfile=None, keyfile=None):
    """A TLS socket to the node (raises on a failed handshake)."""
    ctx = ssl.create_default_context(cafile=ca)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    s = socket.create_connection(("127.0.0.1", node.tls_port), timeout=WAIT)
    return ctx.wrap_socket(s, server_hostname="localhost")


def refused_after_handshake(node, ca, certfile=None, keyfile=None):
    """True when the server ends the connection instead of answering CONNECT
    (with TLS 1.3 the client's handshake completes before the server has
    checked the client certificate)."""
    try:
        s = raw_tls(node, ca, certfile, keyfile)
        s.sendall(R.connect(uid("raw"), version=4))
        data = s.recv(16)
        s.close()
        return data == b""
    except (ssl.SSLError, ConnectionError, OSError):
        return True


def wait_for(cond, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def tls_metrics(node):
    """(shoal_tls_handshakes_total, shoal_tls_handshake_failures_total)."""
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(node.http_url + "/metrics", timeout=WAIT) as r:
        lines = r.read().decode().splitlines()
    got = {l.split()[0]: float(l.split()[1]) for l in lines if l.startswith("shoal_tls_handshake")}
    return got["shoal_tls_handshakes_total"], got["shoal_tls_handshake_failures_total"]


@pytest.mark.parametrize("version", [5, 4])
def test_paho_roundtrip(node_factory, pki, version):
    n = tls_node(node_factory, pki)
    assert n.tls_port
    c = tls_client(n, pki.ca, version=version)
    roundtrip(c)
    c.disconnect()
    assert n.wait_log("event=tls_handshake conn=")
    assert tls_metrics(n) == (1, 0)  # completed, failed
    # Plain TCP on --port keeps working alongside.
    with Client(n, version=version) as plain:
        roundtrip(plain)


def test_tls_and_tcp_clients_talk(node_factory, pki):
    n = tls_node(node_factory, pki)
    topic = uid("mix")
    with Client(n) as plain:
        plain.subscribe(topic, 1)
        c = tls_client(n, pki.ca)
        c.publish(topic, b"from tls", qos=1)
        assert plain.get().payload == b"from tls"
        c.disconnect()


@pytest.mark.skipif(not shutil.which("mosquitto_sub"), reason="mosquitto-clients not installed")
def test_mosquitto_clients_cafile(node_factory, pki):
    n = tls_node(node_factory, pki)
    target = types.SimpleNamespace(host="127.0.0.1", port=n.tls_port)
    t = uid("mqs")
    s = Sub(target, "--cafile", pki.ca, "-t", t, "-C", "1")
    pub(target, "--cafile", pki.ca, "-t", t, "-m", "hello mqtts")
    assert s.finish() == ["hello mqtts"]


def test_wrong_ca_refused(node_factory, pki):
    n = tls_node(node_factory, pki)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(n, pki.other_ca)
    # The client aborts the handshake; the broker counts and logs it.
    assert n.wait_log("event=tls_handshake_failed")
    assert tls_metrics(n) == (0, 1)


def test_require_client_cert_refuses_without(node_factory, pki):
    n = tls_node(node_factory, pki, "--tls-ca", pki.ca, "--tls-require-client-cert")
    assert refused_after_handshake(n, pki.ca)
    assert n.wait_log("event=tls_handshake_failed")
    # A certificate from another CA is refused too.
    assert refused_after_handshake(n, pki.ca, pki.other_client_cert, pki.other_client_key)


def test_require_client_cert_accepts_with(node_factory, pki):
    n = tls_node(node_factory, pki, "--tls-ca", pki.ca, "--tls-require-client-cert")
    c = tls_client(n, pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)
    roundtrip(c)
    c.disconnect()
    assert n.wait_log("cn=client1")


def test_cert_as_username(node_factory, pki):
    n = tls_node(node_factory, pki, "--tls-ca", pki.ca, "--tls-require-client-cert", "--tls-cert-as-username")
    c = tls_client(n, pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)
    c.disconnect()
    assert n.wait_log("cn=client1 username=client1")
    line = next(l for l in n.log().splitlines() if "event=tls_handshake " in l)
    conn = line.split("conn=", 1)[1].split()[0]
    # The same connection then CONNECTs.
    assert n.wait_log("event=connect conn=%s " % conn)


def test_bad_cert_file_exits(node_factory, pki, tmp_path):
    from conftest import SHOAL_BIN
    missing = str(tmp_path / "missing.pem")
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1", "--tls-port",
                        str(free_port()), "--tls-cert", missing, "--tls-key", pki.key],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "event=tls_error" in r.stderr and "missing.pem" in r.stderr
    assert "READY" not in r.stdout
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", "--bind", "127.0.0.1", "--tls-port",
                        str(free_port()), "--tls-cert", pki.cert],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "event=tls_error" in r.stderr


def test_sighup_reload(node_factory, pki, tmp_path):
    d = str(tmp_path)
    cert, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    n = tls_node(node_factory, pki, cert=cert, key=key)
    old = tls_client(n, pki.ca)
    topic = uid("hup")
    old.subscribe(topic, 1)

    # A new CA and a server certificate from it replace the files.
    new_ca = rotate_server_cert(d, cert, key)
    n.proc.send_signal(signal.SIGHUP)
    assert n.wait_log("event=tls_reloaded")

    fresh = tls_client(n, new_ca)
    fresh.publish(topic, b"after reload", qos=1)
    # The connection made before the reload still works.
    assert old.get().payload == b"after reload"
    old.publish(topic, b"old still talks", qos=1)
    assert old.get().payload == b"old still talks"
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(n, pki.ca)
    fresh.disconnect()
    old.disconnect()


def test_sighup_bad_file_keeps_old(node_factory, pki, tmp_path):
    d = str(tmp_path)
    cert, key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    n = tls_node(node_factory, pki, cert=cert, key=key)
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    n.proc.send_signal(signal.SIGHUP)
    assert n.wait_log("event=tls_reload_failed")
    c = tls_client(n, pki.ca)
    roundtrip(c)
    c.disconnect()
    assert n.proc.poll() is None


def test_silent_client_dropped_after_connect_timeout(node_factory, pki):
    n = tls_node(node_factory, pki, "--connect-timeout", "1")
    s = socket.create_connection(("127.0.0.1", n.tls_port), timeout=WAIT)
    start = time.time()
    # Sends nothing: no TLS ClientHello. The broker closes it.
    assert s.recv(1) == b""
    assert time.time() - start < 5
    s.close()
    assert n.wait_log("no TLS handshake within connect timeout")
    # The listener still serves.
    c = tls_client(n, pki.ca)
    c.disconnect()


def test_handshake_then_silence_dropped(node_factory, pki):
    n = tls_node(node_factory, pki, "--connect-timeout", "1")
    s = raw_tls(n, pki.ca)
    # Handshake done, no CONNECT: the ordinary connect timeout applies.
    assert s.recv(1) == b""
    s.close()
    assert n.wait_log("no CONNECT within connect timeout")
