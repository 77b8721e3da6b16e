# SPDX-License-Identifier: Apache-2.0
"""Passwords (--password-file, shoal passwd) and ACLs (--acl-file): every
refusal as it appears on the wire, for 3.1.1 and 5.0, and SIGHUP reloads."""
import base64
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

ITER = "1000"  # fast hashing for tests; the default is 100000


def passwd(path, user, password, *flags):
    return subprocess.run([SHOAL_BIN, "passwd", *flags, str(path), user], input=password + "\n", text=True,
                          capture_output=True, timeout=60)


def add_user(path, user, password):
    r = passwd(path, user, password, "-i", ITER)
    assert r.returncode == 0, r.stderr


def wait_count(node, needle, n, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if node.log().count(needle) >= n:
            return True
        time.sleep(0.02)
    return False


def connack(node, version, **kw):
    with R.RawClient(node, version=version) as r:
        return r.connect(uid("a"), **kw).rc


def metric(node, name):
    body = urllib.request.urlopen(node.http_url + "/metrics", timeout=10).read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


@pytest.fixture
def pwfile(tmp_path):
    p = tmp_path / "passwd"
    add_user(p, "alice", "wonder")
    add_user(p, "bob", "builder")
    return p


def test_anonymous_by_default_without_password_file(node):
    assert connack(node, 5) == 0
    assert connack(node, 4) == 0
    # Bound to loopback: no warning about anonymous access.
    assert "event=anonymous_access" not in node.log()


def test_refusals_v5_and_v311(node_factory, pwfile):
    n = node_factory("--password-file", str(pwfile))
    # No username: anonymous is off by default once a password file is set.
    assert connack(n, 5) == 0x87
    assert connack(n, 4) == 5
    # Wrong password and unknown user: Bad User Name or Password.
    assert connack(n, 5, username="alice", password=b"nope") == 0x86
    assert connack(n, 4, username="alice", password=b"nope") == 4
    assert connack(n, 5, username="mallory", password=b"wonder") == 0x86
    assert connack(n, 4, username="mallory", password=b"wonder") == 4
    assert connack(n, 5, username="alice") == 0x86  # no password at all
    assert connack(n, 5, username="alice", password=b"wonder") == 0
    assert connack(n, 4, username="bob", password=b"builder") == 0
    assert wait_count(n, "event=auth_failed", 7)
    log = n.log()
    assert "username=mallory" in log and 'reason="unknown user"' in log
    assert "nope" not in log and "wonder" not in log  # passwords are never logged
    # CONNACKs by reason code, 3.1.1 return codes counted as their v5 codes.
    body = urllib.request.urlopen(n.http_url + "/metrics", timeout=10).read().decode()
    connacks = {m.group(1): float(m.group(3)) for m in
                re.finditer(r'^shoal_connacks_total\{code="(0x..)",reason="([^"]*)"\} (\S+)$', body, re.M)}
    assert connacks.get("0x00") == 2 and connacks.get("0x86") == 5 and connacks.get("0x87") == 2, connacks
    assert metric(n, "shoal_auth_failures_total") == 7


def test_allow_anonymous_flags(node_factory, pwfile):
    n = node_factory("--password-file", str(pwfile), "--allow-anonymous", "true")
    assert connack(n, 5) == 0
    assert connack(n, 5, username="alice", password=b"bad") == 0x86  # a given name is still checked
    m = node_factory("--allow-anonymous", "false")
    assert connack(m, 5) == 0x87
    assert connack(m, 4) == 5


@pytest.mark.parametrize("content,flag", [
    ("alice:plaintext\n", "--password-file"),
    ("alice:$pbkdf2-sha512$10$!!$aGFzaA==\n", "--password-file"),
    ("topic read a\nbogus line\n", "--acl-file"),
    ("topic read a/#/b\n", "--acl-file"),
])
def test_bad_files_exit_2(tmp_path, content, flag):
    p = tmp_path / "f"
    p.write_text(content)
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--bind", "127.0.0.1", "--http-port", "0", flag, str(p)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert flag in r.stderr and "line" in r.stderr
    r = subprocess.run([SHOAL_BIN, "--port", "0", "--http-port", "0", flag, str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cannot read" in r.stderr


ACL = """\
# anonymous clients
topic read public/#
user alice
topic readwrite alice/#
topic read secret/#
topic write secret/ok
user bob
topic write secret/#
topic write alice/inbox
pattern readwrite users/%u/#
pattern write clients/%c/out
pattern read clients/%c/in
"""


@pytest.fixture
def aclnode(node_factory, pwfile, tmp_path):
    a = tmp_path / "acl"
    a.write_text(ACL)
    return node_factory("--password-file", str(pwfile), "--acl-file", str(a), "--allow-anonymous", "true")


def login(version, node, user, pw, cid=None):
    r = R.RawClient(node, version=version)
    ack = r.connect(cid or uid("acl"), username=user, password=pw.encode() if pw else None)
    assert ack.rc == 0
    return r


@pytest.mark.parametrize("version,denied", [(5, 0x87), (4, 0x80)])
def test_subscribe_denied_per_filter(aclnode, version, denied):
    with login(version, aclnode, "alice", "wonder") as r:
        r.send(R.subscribe(1, [("alice/#", R.sub_options(1) if version == 5 else 1),
                               ("bob/#", R.sub_options(1) if version == 5 else 1),
                               ("secret/+", R.sub_options(0) if version == 5 else 0),
                               ("#", R.sub_options(0) if version == 5 else 0)], version=version))
        assert r.expect(R.SUBACK).codes == [1, denied, 0, denied]
    with R.RawClient(aclnode, version=version) as anon:
        assert anon.connect(uid("anon")).rc == 0
        anon.send(R.subscribe(2, [("public/x", R.sub_options(0) if version == 5 else 0),
                                  ("alice/#", R.sub_options(0) if version == 5 else 0)], version=version))
        assert anon.expect(R.SUBACK).codes == [0, denied]
    # The log reaches the test through a reader thread: wait for the line.
    assert aclnode.wait_log("event=acl_denied action=subscribe")


def test_publish_denied_v5_not_delivered(aclnode):
    with login(5, aclnode, "alice", "wonder") as sub, login(5, aclnode, "alice", "wonder") as pub:
        sub.send(R.subscribe(1, [("secret/#", R.sub_options(1))]))
        assert sub.expect(R.SUBACK).codes == [1]
        pub.send(R.publish("secret/x", b"q1", qos=1, pid=1))
        assert pub.expect(R.PUBACK).rc == 0x87
        pub.send(R.publish("secret/x", b"q2", qos=2, pid=2))
        assert pub.expect(R.PUBREC).rc == 0x87
        pub.send(R.publish("secret/x", b"q0", qos=0))
        pub.send(R.publish("secret/ok", b"fine", qos=1, pid=3))
        assert pub.expect(R.PUBACK).rc == 0
        # Same publisher, in order: the allowed message is the first to arrive.
        m = sub.expect(R.PUBLISH)
        assert (m.topic, m.payload) == ("secret/ok", b"fine")
    assert aclnode.wait_log("event=acl_denied action=publish")


def test_publish_denied_v311_acked_and_dropped(aclnode):
    with login(4, aclnode, "alice", "wonder") as sub, login(4, aclnode, "alice", "wonder") as pub:
        sub.send(R.subscribe(1, [("secret/#", 1)], version=4))
        assert sub.expect(R.SUBACK).codes == [1]
        pub.send(R.publish("secret/x", b"q1", qos=1, pid=1, version=4))
        assert pub.expect(R.PUBACK).pid == 1
        pub.send(R.publish("secret/x", b"q2", qos=2, pid=2, version=4))
        assert pub.expect(R.PUBREC).pid == 2
        pub.send(R.pubrel(2, version=4))
        assert pub.expect(R.PUBCOMP).pid == 2
        pub.send(R.publish("secret/ok", b"fine", qos=1, pid=3, version=4))
        assert pub.expect(R.PUBACK).pid == 3
        m = sub.expect(R.PUBLISH)
        assert (m.topic, m.payload) == ("secret/ok", b"fine")


def test_patterns_user_and_client_id(aclnode):
    with login(5, aclnode, "bob", "builder", cid="bobcid") as bob:
        bob.send(R.subscribe(1, [("users/bob/#", R.sub_options(1)), ("users/alice/#", R.sub_options(1)),
                                 ("clients/bobcid/in", R.sub_options(1)), ("clients/other/in", R.sub_options(1))]))
        assert bob.expect(R.SUBACK).codes == [1, 0x87, 1, 0x87]
        bob.send(R.publish("clients/bobcid/out", b"x", qos=1, pid=2))
        assert bob.expect(R.PUBACK).rc == 0x10  # allowed; no subscriber
        bob.send(R.publish("clients/other/out", b"x", qos=1, pid=3))
        assert bob.expect(R.PUBACK).rc == 0x87
        bob.send(R.publish("users/bob/a", b"self", qos=1, pid=4))
        assert bob.expect(R.PUBACK, skip=(R.PUBLISH,)).rc == 0
    # An anonymous client never matches a %u pattern, but %c applies to it.
    with R.RawClient(aclnode) as anon:
        assert anon.connect("anoncid").rc == 0
        anon.send(R.subscribe(1, [("users/%u/#", R.sub_options(0)), ("clients/anoncid/in", R.sub_options(0))]))
        assert anon.expect(R.SUBACK).codes == [0x87, 0]


def test_passwd_round_trip_with_mosquitto_clients(node_factory, tmp_path):
    p = tmp_path / "pw"
    assert passwd(p, "carol", "first", "-i", ITER).returncode == 0
    assert (os.stat(p).st_mode & 0o777) == 0o600
    n = node_factory("--password-file", str(p))

    def mpub(user, pw, version="mqttv5"):
        return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(n.port), "-V", version, "-u", user,
                               "-P", pw, "-t", "t/" + uid(), "-m", "x", "-q", "1"],
                              capture_output=True, text=True, timeout=30).returncode

    assert mpub("carol", "first") == 0
    assert mpub("carol", "first", "mqttv311") == 0
    assert mpub("carol", "wrong") != 0
    # Update, reload, and only the new password works.
    assert passwd(p, "carol", "second", "-i", ITER).returncode == 0
    assert p.read_text().count("carol:") == 1
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload file=password", 1)
    assert mpub("carol", "first") != 0
    assert mpub("carol", "second") == 0
    # Delete: the user is gone; deleting again is an error; bad usage is 2.
    assert passwd(p, "carol", "", "-D").returncode == 0
    assert "carol" not in p.read_text()
    assert passwd(p, "carol", "", "-D").returncode == 1
    assert subprocess.run([SHOAL_BIN, "passwd", str(p)], capture_output=True, timeout=30).returncode == 2
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload file=password", 2)
    assert mpub("carol", "second") != 0


def test_sighup_reload_keeps_old_on_error(aclnode, tmp_path):
    n = aclnode
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    # Password file: add dave, reload, dave logs in.
    assert connack(n, 5, username="dave", password=b"d") == 0x86
    add_user(pw, "dave", "d")
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload file=password", 1)
    assert connack(n, 5, username="dave", password=b"d") == 0
    # ACL: grant dave read on dave/#.
    acl.write_text(ACL + "user dave\ntopic read dave/#\n")
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload file=acl", 2)
    with login(5, n, "dave", "d") as r:
        r.send(R.subscribe(1, [("dave/#", R.sub_options(0))]))
        assert r.expect(R.SUBACK).codes == [0]
    # Broken files: both keep the old tables.
    pw.write_text("dave:garbage\n")
    acl.write_text("nonsense\n")
    n.proc.send_signal(signal.SIGHUP)
    assert wait_count(n, "event=auth_reload_failed file=password", 1)
    assert wait_count(n, "event=auth_reload_failed file=acl", 1)
    assert connack(n, 5, username="dave", password=b"d") == 0
    with login(5, n, "dave", "d") as r:
        r.send(R.subscribe(1, [("dave/#", R.sub_options(0)), ("alice/#", R.sub_options(0))]))
        assert r.expect(R.SUBACK).codes == [0, 0x87]


def test_will_topic_needs_write(aclnode):
    assert connack(aclnode, 5, username="alice", password=b"wonder",
                   will={"topic": "public/x", "payload": b"bye"}) == 0x87
    assert connack(aclnode, 5, username="alice", password=b"wonder",
                   will={"topic": "alice/will", "payload": b"bye"}) == 0


def paho_login_checks(n, user, password, wrong):
    """paho 5 and 3.1.1: the right password gets a working session, a wrong
    one 0x86."""
    for version in (5, 4):
        c = Client(n, version=version, connect=False)
        c.c.username_pw_set(user, password)
        c.connect()
        topic = uid("paho")
        c.subscribe(topic, 1)
        c.publish(topic, b"hi", qos=1)
        assert c.get().payload == b"hi"
        c.disconnect()
        bad = Client(n, version=version, connect=False)
        bad.c.username_pw_set(user, wrong)
        bad.connect(expect_rc=None)
        # paho 2.x reports the 3.1.1 return code 4 as ReasonCode 0x86 too;
        # the raw tests check the byte on the wire.
        assert int(getattr(bad.connack[1], "value", bad.connack[1])) == 0x86
        bad.disconnect()


def test_paho_login(node_factory, pwfile):
    paho_login_checks(node_factory("--password-file", str(pwfile)), "alice", "wonder", "wrong")


# ---- password checks off the event loop (node/auth/hash.c) ----

SLOW_ITER = "2000000"  # ~1 s of PBKDF2 per check here (more when loaded): long enough to see who waits for it


@pytest.fixture(scope="module")
def slowfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("slow") / "passwd"
    r = passwd(p, "slow", "tortoise", "-i", SLOW_ITER)
    assert r.returncode == 0, r.stderr
    return p


def send_connects(node, n, version, password=b"tortoise"):
    cs = []
    for _ in range(n):
        r = R.RawClient(node, version=version, timeout=120)
        r.send(R.connect(uid("slow"), version=version, username="slow", password=password))
        cs.append(r)
    return cs


def outcome(r, timeout=120):
    """CONNACK's rc, or None when closed without one."""
    try:
        return r.expect(R.CONNACK, timeout=timeout).rc
    except R.Closed:
        return None


def test_password_checks_do_not_stall_other_clients(node_factory, slowfile):
    # One worker: before, it ran each check itself and answered nothing else
    # meanwhile; the PINGRESP came after the first CONNACK.
    n = node_factory("--password-file", str(slowfile), "--allow-anonymous", "true", "--workers", "1",
                     "--connect-timeout", "300")
    with R.RawClient(n, version=4, timeout=60) as other:
        assert other.connect(uid("other")).rc == 0
        slow = send_connects(n, 3, 4)
        other.send(R.pingreq())
        other.expect(R.PINGRESP, timeout=60)
        for r in slow:
            with pytest.raises(TimeoutError):
                r.recv(timeout=0.05)  # still being checked
        assert [outcome(r) for r in slow] == [0, 0, 0]
        for r in slow:
            r.close()


@pytest.mark.parametrize("version,busy", [(5, 0x89), (4, 3)])
def test_password_queue_full_is_server_busy(node_factory, slowfile, version, busy):
    n = node_factory("--password-file", str(slowfile), "--workers", "1", "--auth-queue", "1",
                     "--auth-threads", "1", "--connect-timeout", "300")
    # One check runs and at most one waits: of four, two at least are refused.
    slow = send_connects(n, 4, version)
    got = [outcome(r) for r in slow]
    assert set(got) <= {0, busy}, got
    assert got.count(busy) >= 2 and got.count(0) >= 1, got
    assert wait_count(n, 'reason="password checks queued at --auth-queue"', got.count(busy))
    for r in slow:
        r.close()
    assert outcome(send_connects(n, 1, version)[0]) == 0  # the queue empties again


def test_connection_closed_while_its_password_is_checked(node_factory, slowfile):
    n = node_factory("--password-file", str(slowfile), "--workers", "1", "--connect-timeout", "300")
    gone = send_connects(n, 2, 5)
    for r in gone:
        r.close()  # before the answers: they find no connection
    wrong = send_connects(n, 1, 5, password=b"hare")
    kept = send_connects(n, 1, 5)
    assert outcome(wrong[0]) == 0x86
    assert outcome(kept[0]) == 0
    kept[0].close()
    wrong[0].close()
    assert wait_count(n, "event=connect ", 1)
    assert n.log().count("event=connect ") == 1


def test_connect_timeout_covers_a_queued_password_check(node_factory, slowfile):
    n = node_factory("--password-file", str(slowfile), "--allow-anonymous", "true", "--workers", "1",
                     "--connect-timeout", "1")
    # ~1 s per check, one at a time: the first may finish in time, the
    # ones queued behind it wait past the timeout and are closed unanswered.
    slow = send_connects(n, 6, 4)
    got = [outcome(r, timeout=60) for r in slow]
    assert set(got) <= {0, None} and got.count(None) >= 3, got
    assert wait_count(n, "authentication not completed within connect timeout", got.count(None))
    assert connack(n, 4) == 0  # anonymous, meanwhile
    for r in slow:
        r.close()


# ---- stopping with password checks (node/auth/hash.c) ----

def test_stop_joins_the_password_threads(node_factory, tmp_path):
    # Every --auth-threads thread hashes once (so each has OpenSSL thread
    # state), then the node stops. Before, the threads were detached and
    # still exiting when main() returned: OPENSSL_cleanup ran under them
    # (LeakSanitizer: 904 bytes from CRYPTO_zalloc per thread, their error
    # queues; or a SEGV in OPENSSL_cleanup). Not every stop lost the race,
    # hence a few rounds; a report makes the node exit non-zero under ASan.
    p = tmp_path / "passwd"
    assert passwd(p, "bob", "builder", "-i", "20000").returncode == 0
    for _ in range(3):
        n = node_factory("--password-file", str(p), "--workers", "2", "--auth-threads", "32",
                         "--connect-timeout", "300")
        cs = []
        for _ in range(64):
            r = R.RawClient(n, version=5, timeout=120)
            r.send(R.connect(uid("j"), version=5, username="bob", password=b"builder"))
            cs.append(r)
        assert [outcome(r) for r in cs] == [0] * 64
        for r in cs:
            r.close()
        assert n.stop() == 0, n.log()[-4000:]
        assert "Sanitizer" not in n.log()


def test_stop_cancels_a_password_check_under_way(node_factory, tmp_path):
    # 2e9 PBKDF2 iterations: most of an hour. The stop cancels the check
    # (the thread is joined, not left running under exit); waiting for it
    # would have the fixture kill the node after 20 s (exit -9).
    p = tmp_path / "passwd"
    salt, digest = base64.b64encode(os.urandom(16)).decode(), base64.b64encode(os.urandom(64)).decode()
    p.write_text("huge:$pbkdf2-sha512$2000000000$%s$%s\n" % (salt, digest))
    n = node_factory("--password-file", str(p), "--workers", "1", "--connect-timeout", "300")
    with R.RawClient(n, version=5, timeout=60) as r:
        r.send(R.connect(uid("huge"), version=5, username="huge", password=b"pw"))
        assert n.wait_log("event=auth_hash_check", timeout=60)
        assert n.stop() == 0, n.log()[-4000:]
    assert "event=stopped" in n.log()
