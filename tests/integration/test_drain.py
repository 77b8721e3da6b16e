# SPDX-License-Identifier: Apache-2.0
"""Drain on one node (issue 19): SIGTERM and POST /api/v1/drain close the
listeners, report not ready, stop reading the clients, disconnect them on a
schedule (MQTT 5: 0x8B, or 0x9C with a Server Reference; 3.1.1: the close)
and, for SIGTERM, exit 0 within --drain-timeout. The cluster cases (a QoS 1
publish waiting for Kafka, sessions moving, a rolling restart) are in
test_drain_cluster.py."""
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

import mqttraw as R
from test_http import TOKEN, ctl, metric, uid

WAIT = 30
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(node, path, token=None):
    """(status, JSON body); HTTP errors are returned, not raised."""
    req = urllib.request.Request(node.http_url + path, method="GET")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with _opener.open(req, timeout=WAIT) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def post(node, path, token=TOKEN):
    req = urllib.request.Request(node.http_url + path, method="POST", data=b"",
                                 headers={"Authorization": "Bearer " + token})
    try:
        with _opener.open(req, timeout=WAIT) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def wait_for(cond, what, timeout=WAIT):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def clients(node, n, version=5):
    out = []
    for _ in range(n):
        r = R.RawClient(node, version=version, timeout=WAIT)
        assert r.connect(uid("drain"), version=version).rc == 0
        out.append(r)
    return out


def logfmt(node, event):
    """The first logfmt line of this event, as a dict."""
    m = R.wait_log_re(node, r"(?m)^.*event=%s\b.*$" % event, timeout=WAIT)
    assert m, "no event=%s in\n%s" % (event, node.log()[-3000:])
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(0)))


def slow_drain_node(node_factory, *extra):
    """One worker and --drain-rate 1: with N clients the disconnects take
    about N seconds, long enough to look at the node while it drains."""
    return node_factory("--workers", "1", "--log-format", "logfmt", "--admin-token", TOKEN, "--drain-rate", "1",
                        "--drain-timeout", "20", *extra)


def test_sigterm_drains_v5_and_311_clients_and_exits_0(node_factory):
    """Before the drain: SIGTERM closed every client at once, readiness
    never went to 503, and there were no drain_* lines."""
    n = slow_drain_node(node_factory)
    v5 = clients(n, 3)
    old = clients(n, 2, version=4)
    # A QoS 1 publish taken before the signal is acknowledged (the local
    # backplane answers at once: the PUBACK precedes the DISCONNECT).
    v5[0].send(R.publish(uid("t"), b"before", qos=1, pid=7))
    assert v5[0].expect(R.PUBACK).pid == 7
    t0 = time.time()
    n.proc.send_signal(signal.SIGTERM)
    start = logfmt(n, "drain_start")
    assert start["connections"] == "5" and start["rc"] == "0x8b", start
    # Not ready at once, alive meanwhile, and no longer accepting.
    status, body = get(n, "/health/ready")
    assert (status, body) == (503, {"status": "fail", "reason": "draining"})
    assert get(n, "/health/live")[0] == 200
    assert metric(n, "shoal_draining") == 1
    with pytest.raises(OSError):
        socket.create_connection((n.host, n.port), timeout=WAIT).close()
    # Input is no longer read: a publish sent now is never acknowledged.
    try:
        v5[1].send(R.publish(uid("t"), b"too late", qos=1, pid=8))
    except OSError:
        pass  # already disconnected by the drain
    for r in v5:
        seen = r.wait_closed(WAIT)
        assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x8B)], seen
    for r in old:
        assert r.wait_closed(WAIT) == []
    assert n.proc.wait(timeout=WAIT) == 0
    assert time.time() - t0 < 20 + 5  # --drain-timeout and the stop after it
    assert logfmt(n, "drain_progress")["phase"] in ("disconnect", "flush")
    done = logfmt(n, "drain_done")
    assert done["disconnected"] == "5" and done["forced"] == "0" and int(done["elapsed_ms"]) > 0, done
    assert "event=stopped" in n.log()


def test_server_reference_sends_0x9c(node_factory):
    n = node_factory("--workers", "2", "--server-reference", "mqtt-b.example:1883")
    [v5] = clients(n, 1)
    [old] = clients(n, 1, version=4)
    n.proc.send_signal(signal.SIGTERM)
    seen = v5.wait_closed(WAIT)
    assert [(p.type, p.rc) for p in seen] == [(R.DISCONNECT, 0x9C)], seen
    assert seen[0].props.get(R.P_SERVER_REFERENCE) == "mqtt-b.example:1883"
    assert old.wait_closed(WAIT) == []
    assert n.proc.wait(timeout=WAIT) == 0


def test_bad_server_reference_is_refused(node_factory):
    import subprocess
    from conftest import SHOAL_BIN
    r = subprocess.run([SHOAL_BIN, "--check-config", "/dev/null", "--server-reference", "x" * 1025],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode != 0 and "--server-reference" in r.stderr
    r = subprocess.run([SHOAL_BIN, "--help"], capture_output=True, text=True, timeout=WAIT)
    for flag in ("--drain-timeout", "--drain-rate", "--server-reference"):
        assert flag in r.stdout


def test_acks_sent_during_a_drain_are_read(node_factory):
    """A subscriber's PUBACKs sent while its node drains still count: with
    a receive maximum of 2 and 6 messages for it, acking what it holds
    brings the next ones, all 6 before its DISCONNECT. Before: the drain
    stopped reading every connection at once, so the acks were never read
    and the subscriber got only the DISCONNECT; what it had acknowledged
    stayed in flight (a shared member's went to another member at its
    close, a session's was sent again after it moved: failover
    rolling-restart)."""
    n = slow_drain_node(node_factory)
    topic = uid("drain/acks")
    # The oldest connection: the drain closes the newest first, so this one
    # is closed last, seconds after the drain begins (--drain-rate 1).
    sub = R.RawClient(n, timeout=WAIT)
    assert sub.connect(uid("drain-sub"), properties={R.P_RECEIVE_MAX: 2}).rc == 0
    sub.send(R.subscribe(1, [(topic, 1)]))
    assert sub.expect(R.SUBACK).codes == [1]
    [pub] = clients(n, 1)
    for i in range(6):
        pub.send(R.publish(topic, b"m%d" % i, qos=1, pid=i + 1))
        assert pub.expect(R.PUBACK).pid == i + 1
    held = [sub.expect(R.PUBLISH) for _ in range(2)]
    clients(n, 3)
    status, body = post(n, "/api/v1/drain")
    assert status == 200 and body["started"] is True, body
    got = [p.payload for p in held]
    for p in held:
        sub.send(R.puback(p.pid))
    seen = []
    while True:
        try:
            p = sub.recv(WAIT)
        except R.Closed:
            break
        seen.append(p)
        if p.type == R.PUBLISH:
            got.append(p.payload)
            sub.send(R.puback(p.pid))
        elif p.type == R.DISCONNECT:
            break
    assert got == [b"m%d" % i for i in range(6)], seen
    assert seen[-1].type == R.DISCONNECT and seen[-1].rc == 0x8B, seen


def test_second_sigterm_stops_at_once(node_factory):
    n = slow_drain_node(node_factory)
    v5 = clients(n, 6)
    n.proc.send_signal(signal.SIGTERM)
    logfmt(n, "drain_start")
    n.proc.send_signal(signal.SIGTERM)
    # Whoever the drain had not reached yet is closed by the stop, with 0x8B.
    for r in v5:
        assert [(p.type, p.rc) for p in r.wait_closed(WAIT)] == [(R.DISCONNECT, 0x8B)]
    assert n.proc.wait(timeout=WAIT) == 0
    assert logfmt(n, "drain_aborted")["signal"] == "SIGTERM"
    assert "event=drain_done" not in n.log()


def test_api_drain_disconnects_and_stays_up(node_factory):
    n = slow_drain_node(node_factory)
    v5 = clients(n, 2)
    old = clients(n, 1, version=4)
    status, body = post(n, "/api/v1/drain")
    assert status == 200 and body["status"] == "draining" and body["started"] is True, body
    assert body["drain"]["state"] == "running" and body["drain"]["connections"] == 3, body
    assert get(n, "/health/ready") == (503, {"status": "fail", "reason": "draining"})
    assert get(n, "/health/live")[0] == 200
    for r in v5:
        assert [(p.type, p.rc) for p in r.wait_closed(WAIT)] == [(R.DISCONNECT, 0x8B)]
    assert old[0].wait_closed(WAIT) == []
    node = wait_for(lambda: (lambda b: b if b["drain"]["state"] == "done" else None)(
        get(n, "/api/v1/node", TOKEN)[1]), "the drain to finish")
    assert node["drain"]["disconnected"] == 3 and node["ready"] is False and node["draining"] is True, node
    # Still up, still not ready; a second drain starts nothing.
    assert n.proc.poll() is None
    assert get(n, "/health/ready")[0] == 503
    assert metric(n, "shoal_drain_done") == 1 and metric(n, "shoal_drain_disconnected_total") == 3
    status, body = post(n, "/api/v1/drain")
    assert status == 200 and body["started"] is False
    # SIGTERM after it: nothing left to drain, exit 0.
    n.proc.send_signal(signal.SIGTERM)
    assert n.proc.wait(timeout=WAIT) == 0


def test_ctl_drain_waits_until_done(node_factory):
    n = node_factory("--workers", "2", "--admin-token", TOKEN)
    v5 = clients(n, 2)
    r = ctl(n, "drain")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "draining: 2 connections, timeout 30000 ms", lines
    assert re.fullmatch(r"drained: 2 clients disconnected, 0 closed at the timeout, in \d+ ms", lines[1]), lines
    for c in v5:
        assert [(p.type, p.rc) for p in c.wait_closed(WAIT)] == [(R.DISCONNECT, 0x8B)]
    r = ctl(n, "--json", "drain")
    assert r.returncode == 0 and json.loads(r.stdout)["drain"]["state"] == "done", r.stdout
    r = ctl(n, "status")
    assert re.search(r"^state\s+draining$", r.stdout, re.M), r.stdout


def test_ctl_drain_keep_clients_only_closes_listeners(node_factory):
    n = node_factory("--workers", "2", "--admin-token", TOKEN)
    [c] = clients(n, 1)
    r = ctl(n, "drain", "--keep-clients")
    assert r.returncode == 0 and r.stdout.strip() == "draining: 2 listeners closed, 0 clients disconnected", r
    c.send(R.pingreq())
    assert c.expect(R.PINGRESP).type == R.PINGRESP
    assert get(n, "/health/ready")[0] == 503
