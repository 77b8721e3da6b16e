# SPDX-License-Identifier: Apache-2.0
"""MQTT 5 enhanced authentication with SCRAM-SHA-256 (RFC 5802 / RFC 7677
carried in AUTH packets, MQTT 5 §4.12): the exchange at CONNECT, refusals,
protocol errors, re-authentication, ACLs and `shoal passwd --scram`.

The client side of SCRAM is written here with hashlib/hmac, independently of
the broker's code."""
import base64
import hashlib
import hmac
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

import mqttraw as R
from conftest import SHOAL_BIN
from pahoclient import Client, uid
from test_auth import paho_login_checks

METHOD = "SCRAM-SHA-256"


def b64(data):
    return base64.b64encode(data).decode()


class Scram:
    """The client's half of one SCRAM-SHA-256 exchange."""

    def __init__(self, user, password, gs2="n,,"):
        self.user, self.password, self.gs2 = user, password, gs2
        self.cnonce = b64(os.urandom(18))
        self.server_key = None

    def first(self):
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        self.bare = "n=%s,r=%s" % (name, self.cnonce)
        return (self.gs2 + self.bare).encode()

    def parse_server_first(self, data):
        text = data.decode()
        attrs = dict(a.split("=", 1) for a in text.split(","))
        assert list(attrs) == ["r", "s", "i"], text
        assert attrs["r"].startswith(self.cnonce) and len(attrs["r"]) > len(self.cnonce)
        return text, attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])

    def final(self, server_first, nonce=None):
        text, server_nonce, salt, iterations = self.parse_server_first(server_first)
        self.salt, self.iterations = salt, iterations
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        without_proof = "c=%s,r=%s" % (b64(self.gs2.encode()), nonce or server_nonce)
        self.auth_message = ",".join([self.bare, text, without_proof]).encode()
        signature = hmac.new(stored_key, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return ("%s,p=%s" % (without_proof, b64(proof))).encode()

    def server_final_ok(self, data):
        expected = "v=" + b64(hmac.new(self.server_key, self.auth_message, "sha256").digest())
        return data is not None and hmac.compare_digest(data, expected.encode())


def method_props(data=None, method=METHOD):
    items = [(R.P_AUTH_METHOD, method)]
    if data is not None:
        items.append((R.P_AUTH_DATA, data))
    return items


def passwd(path, user, password, *flags):
    return subprocess.run([SHOAL_BIN, "passwd", *flags, str(path), user], input=password + "\n", text=True,
                          capture_output=True, timeout=60)


def add_scram_user(path, user, password):
    r = passwd(path, user, password, "--scram")
    assert r.returncode == 0, r.stderr


def metric(node, name):
    body = urllib.request.urlopen(node.http_url + "/metrics", timeout=10).read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def wait_count(node, needle, n, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if node.log().count(needle) >= n:
            return True
        time.sleep(0.02)
    return False


def start_exchange(node, user, password, cid=None, **kw):
    """CONNECT with client-first; returns (client, scram, server's reply)."""
    r = R.RawClient(node)
    sc = Scram(user, password)
    r.send(R.connect(cid or uid("scram"), properties=method_props(sc.first()), **kw))
    return r, sc, r.recv()


def scram_connect(node, user, password, cid=None, **kw):
    """The whole exchange at CONNECT; returns (client, scram, CONNACK)."""
    r, sc, p = start_exchange(node, user, password, cid, **kw)
    assert p.type == R.AUTH, p
    assert p.rc == 0x18 and p.props.get(R.P_AUTH_METHOD) == METHOD
    r.send(R.auth(0x18, method_props(sc.final(p.props.get(R.P_AUTH_DATA)))))
    return r, sc, r.expect(R.CONNACK)


def login(node, user, password, cid=None):
    r, sc, ack = scram_connect(node, user, password, cid)
    assert ack.rc == 0, ack
    assert sc.server_final_ok(ack.props.get(R.P_AUTH_DATA))
    return r


def reauth(r, user, password, method=METHOD):
    """Re-authenticate on an established connection; returns the last reply."""
    sc = Scram(user, password)
    r.send(R.auth(0x19, method_props(sc.first(), method)))
    p = r.recv()
    if p.type != R.AUTH:
        return sc, p
    assert p.rc == 0x18 and p.props.get(R.P_AUTH_METHOD) == METHOD
    r.send(R.auth(0x18, method_props(sc.final(p.props.get(R.P_AUTH_DATA)))))
    return sc, r.recv()


@pytest.fixture
def pwfile(tmp_path):
    p = tmp_path / "passwd"
    add_scram_user(p, "alice", "wonder")
    add_scram_user(p, "bob", "builder")
    r = passwd(p, "olda", "legacy", "-i", "1000")  # a pbkdf2-sha512 entry
    assert r.returncode == 0, r.stderr
    return p


@pytest.fixture
def snode(node_factory, pwfile):
    return node_factory("--password-file", str(pwfile), "--allow-anonymous", "false")


def test_scram_connect_round_trip(snode):
    r, sc, ack = scram_connect(snode, "alice", "wonder")
    with r:
        assert ack.rc == 0
        assert ack.props.get(R.P_AUTH_METHOD) == METHOD
        final = ack.props.get(R.P_AUTH_DATA)
        # The server proved it knows alice's ServerKey; a forged reply would not pass.
        assert sc.server_final_ok(final)
        assert not sc.server_final_ok(b"v=" + base64.b64encode(bytes(32)))
        assert sc.iterations == 10000 and len(sc.salt) == 16
        topic = uid("scram/t")
        r.send(R.subscribe(1, [(topic, R.sub_options(1))]))
        assert r.expect(R.SUBACK).codes == [1]
        with login(snode, "bob", "builder") as pub:
            pub.send(R.publish(topic, b"hello", qos=1, pid=7))
            assert pub.expect(R.PUBACK).rc == 0
        m = r.expect(R.PUBLISH)
        assert (m.topic, m.payload) == (topic, b"hello")
    assert snode.wait_log("event=auth_ok")
    assert "wonder" not in snode.log()


def test_escaped_user_name(node_factory, tmp_path):
    p = tmp_path / "passwd"
    add_scram_user(p, "we,ird=name", "pw")
    n = node_factory("--password-file", str(p))
    with login(n, "we,ird=name", "pw") as r:
        r.send(R.pingreq())
        assert r.expect(R.PINGRESP)


def test_wrong_password_0x86(snode):
    r, sc, ack = scram_connect(snode, "alice", "wrong")
    with r:
        assert ack.rc == 0x86
        assert not ack.props.has(R.P_AUTH_DATA)
        assert r.is_closed()
    assert wait_count(snode, "event=auth_failed", 1)
    line = [l for l in snode.log().splitlines() if "event=auth_failed" in l][0]
    assert "username=alice" in line and "method=SCRAM-SHA-256" in line and 'reason="invalid proof"' in line
    assert metric(snode, "shoal_auth_failures_total") == 1
    assert "wrong" not in snode.log()


def test_unknown_user_fails_after_full_exchange(snode):
    # The server answers an unknown user like a real one: a salt of the same
    # size, the same iterations, the same salt again for the same name.
    salts = []
    for _ in range(2):
        r, sc, ack = scram_connect(snode, "mallory", "wonder")
        with r:
            assert ack.rc == 0x86
            assert sc.iterations == 10000 and len(sc.salt) == 16
            salts.append(sc.salt)
            assert r.is_closed()
    assert salts[0] == salts[1]
    other, real, _ = scram_connect(snode, "alice", "x")
    other.close()
    assert real.salt != salts[0]
    assert wait_count(snode, 'reason="unknown user"', 2)
    assert metric(snode, "shoal_auth_failures_total") == 3


def test_pbkdf2_only_user_fails_but_plain_login_works(snode):
    r, sc, ack = scram_connect(snode, "olda", "legacy")
    with r:
        assert ack.rc == 0x86
    assert snode.wait_log("pbkdf2-sha512 only")
    assert snode.log().count("pbkdf2-sha512 only") == 1
    with R.RawClient(snode) as p:
        assert p.connect(uid("plain"), username="olda", password=b"legacy").rc == 0


def test_plain_password_for_scram_entry_with_paho(snode):
    paho_login_checks(snode, "alice", "wonder", "wonder!")


def test_unknown_method_and_no_password_file_0x8c(snode, node):
    with R.RawClient(snode) as r:
        ack = r.connect(uid("m"), properties=method_props(b"x", method="SCRAM-SHA-1"))
        assert ack.rc == 0x8C
        assert r.is_closed()
    # SCRAM credentials live in the password file: without one, no SCRAM.
    r, sc, p = start_exchange(node, "alice", "wonder")
    with r:
        assert (p.type, p.rc) == (R.CONNACK, 0x8C)


@pytest.mark.parametrize("first,why", [
    (b"p=tls-unique,,n=alice,r=abcdef", "channel binding requested"),
    (b"n,,n=alice", "malformed SCRAM message"),
    (b"n,a=bob,n=alice,r=abc", "unsupported SCRAM attribute"),
    (b"n,,m=x,n=alice,r=abc", "unsupported SCRAM attribute"),
    (None, "no client-first message"),
])
def test_bad_client_first_0x87(snode, first, why):
    with R.RawClient(snode) as r:
        r.send(R.connect(uid("bad"), properties=method_props(first)))
        ack = r.expect(R.CONNACK)
        assert ack.rc == 0x87
        assert r.is_closed()
    assert snode.wait_log('reason="%s"' % why)


def test_bad_client_final(snode):
    # Wrong nonce: 0x87; proof that is not base64: 0x87.
    for mangle in (lambda sc, sf: sc.final(sf, nonce=sc.cnonce + "forged"),
                   lambda sc, sf: sc.final(sf).rsplit(b",p=", 1)[0] + b",p=!!!!"):
        r, sc, p = start_exchange(snode, "alice", "wonder")
        with r:
            r.send(R.auth(0x18, method_props(mangle(sc, p.props.get(R.P_AUTH_DATA)))))
            assert r.expect(R.CONNACK).rc == 0x87
            assert r.is_closed()
    assert snode.wait_log('reason="nonce mismatch"')
    assert snode.wait_log('reason="malformed SCRAM message"')


def test_protocol_errors_during_connect_exchange(snode):
    cases = [
        R.auth(0x18, method_props(b"c=biws,r=x,p=AAAA", method="PLAIN")),  # another method
        R.auth(0x18, [(R.P_AUTH_DATA, b"c=biws")]),                         # no method
        R.auth(0x19, method_props(b"n,,n=alice,r=abc")),                     # re-auth before CONNACK
        R.auth(0),                                                           # Success from a client
        R.publish("t", b"x"),                                                # not AUTH
        R.pingreq(),
        R.subscribe(1, ["t"]),
    ]
    for pkt in cases:
        r, sc, p = start_exchange(snode, "alice", "wonder")
        with r:
            assert p.type == R.AUTH
            r.send(pkt)
            assert r.expect(R.CONNACK).rc == 0x82, pkt
            assert r.is_closed()


def test_auth_on_established_connection_errors(snode):
    # AUTH 0x18 with nothing in progress, AUTH 0x19 with another method, Success from a client.
    for pkt in (R.auth(0x18, method_props(b"c=biws")),
                R.auth(0x19, method_props(b"n,,n=alice,r=abc", method="PLAIN")),
                R.auth(0)):
        with login(snode, "alice", "wonder") as r:
            r.send(pkt)
            assert r.expect(R.DISCONNECT).rc == 0x82
            assert r.is_closed()
    # A connection that logged in with a password cannot re-authenticate (§4.12.1).
    with R.RawClient(snode) as r:
        assert r.connect(uid("pw"), username="alice", password=b"wonder").rc == 0
        r.send(R.auth(0x19, method_props(Scram("alice", "wonder").first())))
        assert r.expect(R.DISCONNECT).rc == 0x82
        assert r.is_closed()


def test_auth_before_connect_closes(snode):
    with R.RawClient(snode) as r:
        r.send(R.auth(0x18, method_props(b"n,,n=alice,r=abc")))
        assert r.wait_closed() == []


def test_reauth_success_traffic_continues(snode):
    with login(snode, "alice", "wonder") as r:
        topic = uid("re/t")
        r.send(R.subscribe(1, [(topic, R.sub_options(1))]))
        assert r.expect(R.SUBACK).codes == [1]
        sc = Scram("alice", "wonder")
        r.send(R.auth(0x19, method_props(sc.first())))
        p = r.expect(R.AUTH)
        assert p.rc == 0x18 and p.props.get(R.P_AUTH_METHOD) == METHOD
        # Mid-exchange, the connection carries traffic as usual.
        r.send(R.publish(topic, b"during", qos=1, pid=3))
        got = [r.recv(), r.recv()]
        assert sorted(x.type for x in got) == [R.PUBLISH, R.PUBACK]
        r.send(R.puback([x for x in got if x.type == R.PUBLISH][0].pid))
        r.send(R.auth(0x18, method_props(sc.final(p.props.get(R.P_AUTH_DATA)))))
        done = r.expect(R.AUTH)
        assert done.rc == 0 and done.props.get(R.P_AUTH_METHOD) == METHOD
        assert sc.server_final_ok(done.props.get(R.P_AUTH_DATA))
        # And again, then still usable.
        _, again = reauth(r, "alice", "wonder")
        assert (again.type, again.rc) == (R.AUTH, 0)
        r.send(R.pingreq())
        assert r.expect(R.PINGRESP)
    assert wait_count(snode, "event=reauth", 2)


def test_reauth_failures(snode):
    with login(snode, "alice", "wonder") as r:
        _, p = reauth(r, "alice", "not-it")
        assert (p.type, p.rc) == (R.DISCONNECT, 0x86)
        assert r.is_closed()
    # The identity of a connection does not change on re-authentication.
    with login(snode, "alice", "wonder") as r:
        _, p = reauth(r, "bob", "builder")
        assert (p.type, p.rc) == (R.DISCONNECT, 0x87)
        assert r.is_closed()
    assert snode.wait_log('reason="re-authentication as another user"')
    assert metric(snode, "shoal_auth_failures_total") == 2


def test_stalled_exchange_bounded_by_connect_timeout(node_factory, pwfile):
    n = node_factory("--password-file", str(pwfile), "--connect-timeout", "1")
    r, sc, p = start_exchange(n, "alice", "wonder")
    with r:
        assert p.type == R.AUTH
        assert r.wait_closed(timeout=15) == []
    assert n.wait_log("authentication not completed within connect timeout")
    # The same bound for a re-authentication left half done.
    with login(n, "alice", "wonder") as r:
        r.send(R.auth(0x19, method_props(Scram("alice", "wonder").first())))
        assert r.expect(R.AUTH).rc == 0x18
        assert [p.rc for p in r.wait_closed(timeout=15) if p.type == R.DISCONNECT] == [0x87]
    assert n.wait_log("re-authentication not completed within connect timeout")


ACL = """\
user alice
topic readwrite alice/#
user bob
topic readwrite bob/#
"""


def test_acl_applies_to_scram_user(node_factory, pwfile, tmp_path):
    a = tmp_path / "acl"
    a.write_text(ACL)
    n = node_factory("--password-file", str(pwfile), "--acl-file", str(a))
    # CONNECT also names bob: the SCRAM-authenticated user is the identity.
    r, sc, ack = scram_connect(n, "alice", "wonder", username="bob")
    with r:
        assert ack.rc == 0
        r.send(R.subscribe(1, [("alice/#", R.sub_options(1)), ("bob/#", R.sub_options(1))]))
        assert r.expect(R.SUBACK).codes == [1, 0x87]
        r.send(R.publish("bob/x", b"no", qos=1, pid=2))
        assert r.expect(R.PUBACK).rc == 0x87
        r.send(R.publish("alice/x", b"yes", qos=1, pid=3))
        assert r.expect(R.PUBACK, skip=(R.PUBLISH,)).rc == 0


def test_passwd_scram_and_sighup_reload(node_factory, tmp_path):
    p = tmp_path / "pw"
    assert passwd(p, "carol", "first", "--scram").returncode == 0
    text = p.read_text()
    assert re.match(r"carol:\$scram-sha-256\$10000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\n$", text), text
    assert (os.stat(p).st_mode & 0o777) == 0o600
    # RFC 7677: at least 4096 iterations.
    bad = passwd(p, "carol", "first", "--scram", "-i", "1000")
    assert bad.returncode == 2 and "4096" in bad.stderr
    n = node_factory("--password-file", str(p))
    login(n, "carol", "first").close()
    assert passwd(p, "carol", "second", "--scram", "-i", "4096").returncode == 0
    assert p.read_text().count("carol:") == 1
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload file=password", 1)
    r, sc, ack = scram_connect(n, "carol", "first")
    with r:
        assert ack.rc == 0x86
    with login(n, "carol", "second") as r:
        r.send(R.pingreq())
        assert r.expect(R.PINGRESP)
    # A SCRAM entry turned back into pbkdf2: SCRAM fails, the password works.
    assert passwd(p, "carol", "third", "-i", "1000").returncode == 0
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload file=password", 2)
    r, sc, ack = scram_connect(n, "carol", "third")
    with r:
        assert ack.rc == 0x86
    with R.RawClient(n) as raw:
        assert raw.connect(uid("p"), username="carol", password=b"third").rc == 0


def test_takeover_connack_carries_server_final(snode):
    # The second login's CONNACK waits for the session to be handed over and
    # still carries its own server-final.
    cid = uid("take")
    with login(snode, "alice", "wonder", cid=cid) as first:
        r, sc, ack = scram_connect(snode, "alice", "wonder", cid=cid)
        with r:
            assert ack.rc == 0 and sc.server_final_ok(ack.props.get(R.P_AUTH_DATA))
            assert first.expect(R.DISCONNECT).rc == 0x8E
            r.send(R.pingreq())
            assert r.expect(R.PINGRESP)
