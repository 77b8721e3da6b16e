# SPDX-License-Identifier: Apache-2.0
"""The HTTP endpoint: /metrics, /health, the admin API, `shoal ctl`, a real
Prometheus scraping the node, and the Grafana dashboard's metric names."""
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import SHOAL_BIN
from pahoclient import Client, uid

TOKEN = "t0ken-" + str(os.getpid())
WAIT = 30  # seconds: generous, the machine is a noisy 2-core box
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "helm", "shoal", "dashboards", "shoal.json")

# Never go through a proxy from the environment: everything is on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(node, method, path, token=None, timeout=WAIT):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    req = urllib.request.Request(node.http_url + path, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with _opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api(node, method, path, token=TOKEN):
    status, headers, body = http(node, method, path, token)
    assert headers.get("Content-Type") == "application/json", (path, headers)
    return status, json.loads(body)


def wait_for(cond, what, timeout=WAIT):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{name: [(labels dict, value)]} plus {name: type} from the text format."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        labels = dict(LABEL.findall(m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return samples, types


def scrape(node):
    status, headers, body = http(node, "GET", "/metrics")
    assert status == 200, body
    assert headers.get("Content-Type").startswith("text/plain; version=0.0.4"), headers
    return parse_metrics(body.decode())[0]


def value(samples, name, **labels):
    for got, v in samples.get(name, []):
        if all(got.get(k) == str(want) for k, want in labels.items()):
            return v
    return None


def metric(node, name, **labels):
    return value(scrape(node), name, **labels)


@pytest.fixture
def admin_node(node_factory):
    return node_factory("--workers", "2", "--admin-token", TOKEN)


def ctl(node, *args, token=TOKEN, url=None):
    cmd = [SHOAL_BIN, "ctl", "--url", url or node.http_url]
    if token is not None:
        cmd += ["--token", token]
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_URL", "SHOAL_ADMIN_TOKEN")}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=WAIT, env=env)


# --- /metrics ------------------------------------------------------------------


def test_http_line_before_ready_and_node_info(admin_node):
    assert admin_node.http_url and re.match(r"^http://127\.0\.0\.1:\d+$", admin_node.http_url)
    status, body = api(admin_node, "GET", "/api/v1/node")
    assert status == 200
    assert body["port"] == admin_node.port
    assert body["http_port"] == int(admin_node.http_url.rsplit(":", 1)[1])
    assert body["workers"] == 2 and body["backplane"] == "local" and body["ready"] is True
    assert body["version"] and body["node_id"]


def test_metrics_text_format_is_valid(admin_node):
    status, _, body = http(admin_node, "GET", "/metrics")
    assert status == 200
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian package prometheus (./tests/run does)"
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=WAIT)
    assert r.returncode == 0, (r.stdout, r.stderr)
    samples, types = parse_metrics(body.decode())
    for name in samples:
        assert name.startswith("shoal_"), name
    for name, typ in types.items():
        if typ == "counter":
            assert name.endswith("_total"), name
    info = samples["shoal_build_info"]
    assert len(info) == 1 and info[0][1] == 1 and re.match(r"^\d+\.\d+\.\d+", info[0][0]["version"])
    for w in ("0", "1"):
        assert value(samples, "shoal_worker_loop_lag_seconds", worker=w) is not None
        assert value(samples, "shoal_worker_connections_online", worker=w) is not None
    assert value(samples, "shoal_process_resident_memory_bytes") > 1 << 20
    assert value(samples, "shoal_process_open_fds") >= 5
    assert value(samples, "shoal_heap_bytes") > 0
    assert value(samples, "shoal_uptime_seconds") >= 0
    assert value(samples, "shoal_workers") == 2
    for name in ("shoal_connections_current", "shoal_connections_total", "shoal_connections_refused_total",
                 "shoal_messages_out_total", "shoal_messages_dropped_total", "shoal_received_bytes_total",
                 "shoal_sent_bytes_total", "shoal_retained_messages", "shoal_subscriptions",
                 "shoal_shared_groups", "shoal_sessions", "shoal_connections_online", "shoal_ready",
                 "shoal_sessions_persistent", "shoal_queued_messages", "shoal_inflight_messages",
                 "shoal_tls_handshakes_total", "shoal_tls_handshake_failures_total"):
        assert value(samples, name) is not None, name
    # Every reason and limit has a series from the start, so rate() works.
    for reason in ("queue-full", "queue-full-qos0-evicted", "output-buffer-full", "expired",
                   "too-large-for-client", "acl-denied", "session-ended"):
        assert value(samples, "shoal_messages_dropped_total", reason=reason) == 0, reason
    for limit in ("max-connections", "connect-timeout", "packet-size", "publish-rate", "publish-bytes-rate",
                  "subscriptions", "topic-levels", "topic-length", "receive-maximum"):
        assert value(samples, "shoal_limit_refusals_total", limit=limit) == 0, limit
    assert types["shoal_messages_dropped_total"] == "counter"
    assert types["shoal_queued_messages"] == "gauge"
    assert value(samples, "shoal_http_request_duration_seconds_count", handler="/metrics") is not None


def test_messages_in_rises_by_published_count(admin_node):
    n = admin_node
    before = metric(n, "shoal_messages_in_total")
    before_q = {q: metric(n, "shoal_messages_in_by_qos_total", qos=q) for q in (0, 1, 2)}
    per_qos = {0: 20, 1: 15, 2: 5}
    with Client(n) as c:
        for q, count in per_qos.items():
            for i in range(count):
                c.publish("metrics/%s/%d" % (uid("t"), i), b"x" * 10, qos=q)
        c.barrier()  # everything before it has been handled
    total = sum(per_qos.values())
    # The barrier's own QoS 1 publish is one more.
    wait_for(lambda: metric(n, "shoal_messages_in_total") == before + total + 1, "messages_in to rise")
    after_q = {q: metric(n, "shoal_messages_in_by_qos_total", qos=q) for q in (0, 1, 2)}
    assert after_q[0] - before_q[0] == per_qos[0]
    assert after_q[1] - before_q[1] == per_qos[1] + 1
    assert after_q[2] - before_q[2] == per_qos[2]
    s = scrape(n)
    assert value(s, "shoal_received_bytes_total") > total * 10
    assert value(s, "shoal_messages_out_by_qos_total", qos=1) >= 1  # the barrier came back


def test_connection_gauges_follow_clients(admin_node):
    n = admin_node
    clients = [Client(n) for _ in range(3)]
    try:
        wait_for(lambda: metric(n, "shoal_connections_online") == 3, "3 online at the next tick")
        assert metric(n, "shoal_connections_current") == 3
        s = scrape(n)
        assert value(s, "shoal_sessions", state="online") == 3
        assert value(s, "shoal_sessions", state="offline") == 0
    finally:
        for c in clients:
            c.disconnect()
    wait_for(lambda: metric(n, "shoal_connections_current") == 0, "sockets to close")
    wait_for(lambda: metric(n, "shoal_disconnects_total", code="0x00") == 3, "3 normal disconnects counted")
    wait_for(lambda: metric(n, "shoal_connections_online") == 0, "0 online at the next tick")


def test_session_queue_and_drop_metrics_follow_traffic(node_factory):
    """An offline persistent session with queued messages shows in the
    session, queue and drop figures; reconnecting and acking clears them."""
    n = node_factory("--workers", "2", "--max-queued", "5", "--max-inflight", "3")
    import mqttraw as R
    cid, t = uid("offline"), uid("q")
    r = R.RawClient(n, timeout=WAIT)
    assert r.connect(cid, clean=True, properties={R.P_SESSION_EXPIRY: 300}).rc == 0
    r.send(R.subscribe(1, [(t, 1)]))
    r.expect(R.SUBACK)
    wait_for(lambda: metric(n, "shoal_sessions", state="online") == 1, "1 online session")
    s = scrape(n)
    assert value(s, "shoal_sessions", state="offline") == 0 and value(s, "shoal_sessions_persistent") == 1
    r.send(R.disconnect(0))
    assert r.is_closed()
    wait_for(lambda: metric(n, "shoal_sessions", state="offline") == 1, "the session to go offline")
    s = scrape(n)
    assert value(s, "shoal_sessions", state="online") == 0 and value(s, "shoal_sessions_persistent") == 1
    full0 = value(s, "shoal_messages_dropped_total", reason="queue-full")
    with Client(n) as pub:
        for i in range(8):
            pub.publish(t, b"m%d" % i, qos=1)
        # The publisher itself is an online, non-persistent session.
        s = scrape(n)
        assert value(s, "shoal_sessions", state="online") == 1 and value(s, "shoal_sessions_persistent") == 1
    wait_for(lambda: metric(n, "shoal_messages_dropped_total", reason="queue-full") == full0 + 3, "3 dropped")
    assert metric(n, "shoal_queued_messages") == 5
    # Back online and not acking: the window (3) is in flight, 2 wait.
    r = R.RawClient(n, timeout=WAIT)
    assert r.connect(cid, clean=False, properties={R.P_SESSION_EXPIRY: 300}).session_present
    pubs = [r.expect(R.PUBLISH) for _ in range(3)]
    wait_for(lambda: metric(n, "shoal_inflight_messages") == 3, "3 in flight")
    s = scrape(n)
    assert value(s, "shoal_queued_messages") == 2
    assert value(s, "shoal_sessions", state="online") == 1 and value(s, "shoal_sessions", state="offline") == 0
    for p in pubs:
        r.send(R.puback(p.pid))
    for _ in range(2):
        r.send(R.puback(r.expect(R.PUBLISH).pid))
    wait_for(lambda: metric(n, "shoal_inflight_messages") == 0 and metric(n, "shoal_queued_messages") == 0,
             "window and queue to empty")
    # A clean start drops what a session still held, and says why.
    with Client(n) as pub:
        r.send(R.disconnect(0))
        assert r.is_closed()
        wait_for(lambda: metric(n, "shoal_sessions", state="offline") == 1, "offline again")
        pub.publish(t, b"late", qos=1)
    wait_for(lambda: metric(n, "shoal_queued_messages") == 1, "1 queued")
    ended0 = metric(n, "shoal_messages_dropped_total", reason="session-ended")
    r = R.RawClient(n, timeout=WAIT)
    assert not r.connect(cid, clean=True).session_present
    wait_for(lambda: metric(n, "shoal_messages_dropped_total", reason="session-ended") == ended0 + 1,
             "the queued message counted as dropped")
    s = scrape(n)
    assert value(s, "shoal_queued_messages") == 0 and value(s, "shoal_sessions_persistent") == 0
    r.close()
    wait_for(lambda: metric(n, "shoal_sessions", state="online") == 0 and
             metric(n, "shoal_sessions", state="offline") == 0, "no sessions left")


# --- /health ---------------------------------------------------------------------


def test_health_live_and_ready(admin_node):
    for path in ("/health/live", "/health/ready"):
        status, body = api(admin_node, "GET", path, token=None)
        assert (status, body) == (200, {"status": "ok"}), path


def test_metrics_and_health_are_open_without_metrics_auth(admin_node):
    assert http(admin_node, "GET", "/metrics")[0] == 200
    assert http(admin_node, "GET", "/metrics", token="wrong")[0] == 200


def test_metrics_auth_protects_metrics_and_health(node_factory):
    n = node_factory("--admin-token", TOKEN, "--metrics-auth")
    for path in ("/metrics", "/health/live", "/health/ready"):
        status, headers, body = http(n, "GET", path)
        assert status == 401, path
        assert json.loads(body)["error"]
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert http(n, "GET", path, token="nope")[0] == 401
        assert http(n, "GET", path, token=TOKEN)[0] == 200


def test_metrics_auth_needs_a_token():
    r = subprocess.run([SHOAL_BIN, "--metrics-auth", "--port", "0", "--http-port", "0"], capture_output=True,
                       text=True, timeout=WAIT, env={k: v for k, v in os.environ.items()
                                                     if k != "SHOAL_ADMIN_TOKEN"})
    assert r.returncode == 2 and "--admin-token" in r.stderr, r.stderr
    assert "READY" not in r.stdout


def test_http_port_taken_fails_startup():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        port = s.getsockname()[1]
        r = subprocess.run([SHOAL_BIN, "--port", "0", "--bind", "127.0.0.1", "--http-bind", "127.0.0.1",
                            "--http-port", str(port)], capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 1, r.stderr
        assert "listen_error" in r.stderr and "what=http" in r.stderr, r.stderr
        assert "READY" not in r.stdout
    finally:
        s.close()


def test_help_lists_http_options():
    r = subprocess.run([SHOAL_BIN, "--help"], capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0
    assert re.search(r"--http-port N .*\[8080\]", r.stdout), r.stdout
    for flag in ("--http-bind", "--admin-token", "--metrics-auth"):
        assert flag in r.stdout


def test_slow_http_client_stalls_neither_scrapes_nor_mqtt(admin_node):
    n = admin_node
    host, port = n.http_url[len("http://"):].rsplit(":", 1)
    slow = socket.create_connection((host, int(port)), timeout=WAIT)
    try:
        slow.sendall(b"GET /metr")  # and never finish the request
        assert http(n, "GET", "/health/live", timeout=10)[0] == 200
        assert metric(n, "shoal_workers") == 2
        with Client(n) as c:
            t = uid("slow")
            c.subscribe(t, 1)
            c.publish(t, b"still here", qos=1)
            assert c.get().payload == b"still here"
    finally:
        slow.close()


# --- /api/v1: auth -----------------------------------------------------------------


def test_api_disabled_without_token(node):
    status, headers, body = http(node, "GET", "/api/v1/node")
    assert status == 403
    assert json.loads(body) == {"error": "admin API disabled: set --admin-token"}
    assert http(node, "GET", "/api/v1/node", token="anything")[0] == 403
    # Metrics and health stay open.
    assert http(node, "GET", "/metrics")[0] == 200
    assert http(node, "GET", "/health/live")[0] == 200


@pytest.mark.parametrize("path,method", [("/api/v1/node", "GET"), ("/api/v1/clients", "GET"),
                                         ("/api/v1/clients/x", "DELETE"), ("/api/v1/drain", "POST"),
                                         ("/api/v1/retained", "GET"), ("/api/v1/nope", "GET")])
def test_api_needs_the_token(admin_node, path, method):
    status, body = api(admin_node, method, path, token=None)
    assert status == 401 and body["error"] == "missing bearer token"
    status, body = api(admin_node, method, path, token=TOKEN + "x")
    assert status == 401 and body["error"] == "invalid token"
    status, headers, raw = http(admin_node, method, path, token=TOKEN[:-1])
    assert status == 401


def test_api_errors_are_json(admin_node):
    status, body = api(admin_node, "GET", "/api/v1/nope")
    assert status == 404 and "error" in body
    status, headers, raw = http(admin_node, "POST", "/api/v1/node", token=TOKEN)
    assert status == 405 and json.loads(raw)["error"] and headers.get("Allow") == "GET"
    status, headers, raw = http(admin_node, "PUT", "/api/v1/drain", token=TOKEN)
    assert status == 405 and json.loads(raw)["error"] and headers.get("Allow") == "POST"
    status, headers, raw = http(admin_node, "DELETE", "/api/v1/clients", token=TOKEN)
    assert status == 405 and headers.get("Allow") == "GET"
    status, body = api(admin_node, "GET", "/api/v1/clients?limit=abc")
    assert status == 400 and "limit" in body["error"]
    status, body = api(admin_node, "GET", "/api/v1/retained?filter=a/%23/b")
    assert status == 400 and "filter" in body["error"]
    status, body = api(admin_node, "GET", "/api/v1/clients/" + uid("nobody"))
    assert status == 404
    status, _, raw = http(admin_node, "GET", "/nothing-here")
    assert status == 404 and json.loads(raw)["error"]


# --- /api/v1: clients and kick --------------------------------------------------------


def test_clients_list_filter_paging_and_detail(admin_node):
    n = admin_node
    prefix = uid("lst")
    ids = ["%s-%d" % (prefix, i) for i in range(5)]
    clients = [Client(n, client_id=cid, keepalive=42) for cid in ids]
    try:
        clients[0].subscribe("detail/+/x", 1)
        status, body = api(n, "GET", "/api/v1/clients?filter=" + urllib.parse.quote(prefix))
        assert status == 200 and body["total"] == 5
        got = body["clients"]
        assert [c["client_id"] for c in got] == ids  # sorted by id
        for c in got:
            assert c["connected"] is True and c["version"] == "5.0" and c["keepalive"] == 42
            assert c["peer"].startswith("127.0.0.1:")
            assert abs(c["connected_at"] - time.time()) < 120
        status, body = api(n, "GET", "/api/v1/clients?filter=%s&limit=2&offset=3" % urllib.parse.quote(prefix))
        assert body["total"] == 5 and [c["client_id"] for c in body["clients"]] == ids[3:5]
        status, body = api(n, "GET", "/api/v1/clients/" + urllib.parse.quote(ids[0]))
        assert status == 200 and body["client_id"] == ids[0]
        assert body["subscription_list"] == [{"filter": "detail/+/x", "qos": 1}]
    finally:
        for c in clients:
            c.disconnect()


def test_offline_persistent_session_is_listed(admin_node):
    cid = uid("off")
    c = Client(admin_node, client_id=cid, version=4, clean=False)
    c.disconnect()
    wait_for(lambda: api(admin_node, "GET", "/api/v1/clients/" + cid)[1].get("connected") is False,
             "the session to go offline")
    status, body = api(admin_node, "GET", "/api/v1/clients?filter=" + cid)
    assert body["clients"] == [{"client_id": cid, "connected": False}]


def test_client_id_with_slash_and_unicode(admin_node):
    cid = uid("we/ird ü")
    with Client(admin_node, client_id=cid):
        status, body = api(admin_node, "GET", "/api/v1/clients/" + urllib.parse.quote(cid, safe=""))
        assert status == 200 and body["client_id"] == cid


def test_kick_v5_gets_disconnect_0x98(admin_node):
    n = admin_node
    c = Client(n, client_id=uid("kick5"))
    status, body = api(n, "DELETE", "/api/v1/clients/" + c.client_id)
    assert status == 200 and body == {"kicked": c.client_id, "connections": 1}
    assert c.disconnected.wait(WAIT), "no disconnect after kick"
    assert getattr(c.disconnect_rc, "value", c.disconnect_rc) == 0x98
    c.disconnect()
    assert n.wait_log("event=admin_kick client=%s" % c.client_id)
    wait_for(lambda: metric(n, "shoal_disconnects_total", code="0x98", reason="admin-action") == 1,
             "the kick to be counted")
    status, body = api(n, "DELETE", "/api/v1/clients/" + c.client_id)
    assert status == 404 and "not connected" in body["error"]


def test_kick_v311_closes_the_connection(admin_node):
    c = Client(admin_node, client_id=uid("kick4"), version=4)
    status, _ = api(admin_node, "DELETE", "/api/v1/clients/" + c.client_id)
    assert status == 200
    assert c.disconnected.wait(WAIT)
    c.disconnect()


# --- /api/v1: retained --------------------------------------------------------------------


def test_retained_list_and_delete(admin_node):
    n = admin_node
    base = uid("ret")
    with Client(n) as c:
        for i in range(3):
            c.publish("%s/%d" % (base, i), b"payload-%d" % i, qos=1, retain=True)
        c.publish(base + "/bin", b"\x00\x01ok", qos=0, retain=True)
        c.barrier()
    status, body = api(n, "GET", "/api/v1/retained?filter=" + urllib.parse.quote(base + "/#"))
    assert status == 200 and body["total"] == 4
    topics = [r["topic"] for r in body["retained"]]
    assert topics == sorted(topics)
    first = body["retained"][0]
    assert first == {"topic": base + "/0", "qos": 1, "payload_bytes": 9, "payload_preview": "payload-0",
                     "expiry_s": None}
    binary = [r for r in body["retained"] if r["topic"].endswith("/bin")][0]
    assert binary["payload_preview"] == "..ok"
    status, body = api(n, "DELETE", "/api/v1/retained/" + urllib.parse.quote(base + "/1", safe=""))
    assert status == 200 and body == {"deleted": base + "/1"}
    # A topic with '/' in the path, not encoded, works too.
    status, body = api(n, "DELETE", "/api/v1/retained/" + base + "/2")
    assert status == 200
    status, body = api(n, "DELETE", "/api/v1/retained/" + base + "/2")
    assert status == 404
    status, body = api(n, "GET", "/api/v1/retained?filter=" + urllib.parse.quote(base + "/#"))
    assert [r["topic"] for r in body["retained"]] == [base + "/0", base + "/bin"]
    with Client(n) as sub:
        sub.subscribe(base + "/#", 1)
        got = sorted(m.topic for m in sub.get_n(2))
        assert got == [base + "/0", base + "/bin"]
        sub.none(0.3)
    status, body = api(n, "DELETE", "/api/v1/retained/" + urllib.parse.quote("a/+/b", safe=""))
    assert status == 400


# --- /api/v1: drain -------------------------------------------------------------------------


def test_drain_stops_accepting_and_marks_not_ready(admin_node):
    n = admin_node
    with Client(n) as c:
        t = uid("drain")
        c.subscribe(t, 1)
        # disconnect=0: the listeners only (the full drain is test_drain.py's).
        status, body = api(n, "POST", "/api/v1/drain?disconnect=0")
        assert status == 200
        assert body == {"status": "draining", "listeners_closed": 2, "clients_disconnected": 0}
        status, body = api(n, "GET", "/health/ready", token=None)
        assert status == 503 and body == {"status": "fail", "reason": "draining"}
        assert api(n, "GET", "/health/live", token=None)[0] == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((n.host, n.port), timeout=WAIT).close()
        # Existing clients keep working.
        c.publish(t, b"after drain", qos=1)
        assert c.get().payload == b"after drain"
        assert metric(n, "shoal_ready") == 0 and metric(n, "shoal_draining") == 1
        # Again: nothing left to close.
        assert api(n, "POST", "/api/v1/drain?disconnect=0")[1]["listeners_closed"] == 0
    assert n.wait_log("event=drain listeners_closed=2")


def test_drain_with_disconnect_sends_0x8b(admin_node):
    n = admin_node
    c = Client(n)
    status, body = api(n, "POST", "/api/v1/drain?disconnect=1")
    assert status == 200 and body["started"] is True and body["drain"]["connections"] == 1, body
    assert c.disconnected.wait(WAIT)
    assert getattr(c.disconnect_rc, "value", c.disconnect_rc) == 0x8B
    c.disconnect()


# --- shoal ctl ---------------------------------------------------------------------------------


def test_ctl_status_table_and_json(admin_node):
    r = ctl(admin_node, "status")
    assert r.returncode == 0, r.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in r.stdout.strip().splitlines())
    assert rows["state"] == "ready" and rows["backplane"] == "local" and rows["workers"] == "2"
    assert rows["mqtt port"] == str(admin_node.port)
    r = ctl(admin_node, "--json", "status")
    assert r.returncode == 0 and json.loads(r.stdout)["port"] == admin_node.port


def test_ctl_nodes(admin_node):
    r = ctl(admin_node, "nodes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split() == ["NODE", "ADDRESS", "SELF"] and lines[1].split()[-1] == "yes"
    r = ctl(admin_node, "nodes", "--json")
    assert json.loads(r.stdout)["nodes"][0]["self"] is True


def test_ctl_clients_kick_and_exit_codes(admin_node):
    n = admin_node
    prefix = uid("ctl")
    a = Client(n, client_id=prefix + "-a", keepalive=30)
    b = Client(n, client_id=prefix + "-b", version=4)
    try:
        r = ctl(n, "clients", "--filter", prefix)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.strip().splitlines()
        assert lines[0].split() == ["CLIENT_ID", "CONNECTED", "VERSION", "PEER", "KEEPALIVE", "SUBS"]
        assert [l.split()[:3] for l in lines[1:]] == [[prefix + "-a", "yes", "5.0"], [prefix + "-b", "yes", "3.1.1"]]
        r = ctl(n, "--json", "clients", "--filter", prefix + "-b")
        body = json.loads(r.stdout)
        assert body["total"] == 1 and body["clients"][0]["client_id"] == prefix + "-b"
        r = ctl(n, "clients", "--filter", prefix, "--limit", "1")
        assert "(1 of 2 shown" in r.stdout
        r = ctl(n, "kick", prefix + "-a")
        assert r.returncode == 0 and r.stdout.strip() == "kicked %s-a" % prefix
        assert a.disconnected.wait(WAIT)
        assert getattr(a.disconnect_rc, "value", a.disconnect_rc) == 0x98
        r = ctl(n, "kick", prefix + "-a")
        assert r.returncode == 1 and "not connected" in r.stderr and "HTTP 404" in r.stderr
    finally:
        a.disconnect()
        b.disconnect()
    r = ctl(n, "status", token="wrong")
    assert r.returncode == 1 and "invalid token (HTTP 401)" in r.stderr
    r = ctl(n, "status", token=None)
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    for bad in (["frobnicate"], [], ["kick"], ["retained"], ["retained", "rm"], ["status", "--nope"]):
        r = ctl(n, *bad)
        assert r.returncode == 2, (bad, r.stderr)
        assert "Usage: shoal ctl" in r.stderr
    r = ctl(n, "status", url="ftp://x")
    assert r.returncode == 2
    # Nothing listens on the MQTT port for HTTP... use a closed port instead.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    r = ctl(n, "status", url="http://127.0.0.1:%d" % closed)
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_ctl_token_and_url_from_environment(admin_node):
    env = {**os.environ, "SHOAL_URL": admin_node.http_url, "SHOAL_ADMIN_TOKEN": TOKEN}
    r = subprocess.run([SHOAL_BIN, "ctl", "--json", "status"], capture_output=True, text=True, timeout=WAIT,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["port"] == admin_node.port


def test_ctl_retained_and_drain(admin_node):
    n = admin_node
    base = uid("ctlret")
    with Client(n) as c:
        c.publish(base + "/a", b"hello", qos=1, retain=True)
        c.publish(base + "/b", b"world", qos=0, retain=True)
        c.barrier()
    r = ctl(n, "retained", "ls", base + "/#")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split() == ["TOPIC", "QOS", "BYTES", "PAYLOAD"]
    assert [l.split() for l in lines[1:]] == [[base + "/a", "1", "5", "hello"], [base + "/b", "0", "5", "world"]]
    r = ctl(n, "--json", "retained", "ls", base + "/#")
    assert json.loads(r.stdout)["total"] == 2
    r = ctl(n, "retained", "rm", base + "/a")
    assert r.returncode == 0 and base + "/a" in r.stdout
    r = ctl(n, "retained", "rm", base + "/a")
    assert r.returncode == 1 and "HTTP 404" in r.stderr
    r = ctl(n, "retained", "ls", "bad/#/filter")
    assert r.returncode == 1 and "HTTP 400" in r.stderr
    r = ctl(n, "drain", "--keep-clients")
    assert r.returncode == 0 and r.stdout.strip() == "draining: 2 listeners closed, 0 clients disconnected"
    r = ctl(n, "--json", "drain", "--keep-clients")
    assert json.loads(r.stdout)["status"] == "draining"
    r = ctl(n, "status")
    assert re.search(r"^state\s+draining$", r.stdout, re.M), r.stdout


# --- Prometheus and Grafana ------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def prom_get(port, path):
    with _opener.open("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read()


def test_prometheus_scrapes_published_count(admin_node, tmp_path):
    prometheus = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus")
                                                else None)
    assert prometheus, ("prometheus is missing: install the Debian package 'prometheus' "
                        "(./tests/run installs it)")
    n = admin_node
    target = n.http_url[len("http://"):]
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                   "scrape_configs:\n  - job_name: shoal\n    static_configs:\n"
                   "      - targets: ['%s']\n" % target)
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen([prometheus, "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % (tmp_path / "data"),
                             "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready():
            assert proc.poll() is None, "prometheus exited: %s" % (tmp_path / "prometheus.log").read_text()
            try:
                return prom_get(port, "/-/ready")
            except OSError:
                return None
        wait_for(ready, "prometheus to be ready", timeout=60)
        published = 25
        with Client(n) as c:
            for i in range(published):
                c.publish(uid("prom"), b"m%d" % i, qos=1)
        expected = metric(n, "shoal_messages_in_total")
        assert expected >= published

        def scraped():
            ready()
            q = urllib.parse.quote('shoal_messages_in_total{job="shoal"}')
            res = json.loads(prom_get(port, "/api/v1/query?query=" + q))
            vals = [float(r["value"][1]) for r in res["data"]["result"]]
            return vals and vals[0] == expected
        wait_for(scraped, "prometheus to see shoal_messages_in_total == %d" % expected, timeout=60)
        # The scrape was healthy and the dashboard's instance variable has a value.
        res = json.loads(prom_get(port, "/api/v1/query?query=" + urllib.parse.quote('up{job="shoal"}')))
        assert res["data"]["result"][0]["value"][1] == "1"
        res = json.loads(prom_get(port, "/api/v1/label/instance/values"))
        assert target in res["data"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# Exported only by a node with the cluster backplane (test_cluster_metrics
# checks the dashboard's use of them against such a node).
CLUSTER_ONLY = re.compile(r"^shoal_(kafka|redis)_|^shoal_backend_up$")


def dashboard_exprs():
    """Every PromQL expression in the dashboard and the shoal_* metrics they use."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "expr" or (k == "definition" and isinstance(x, str)):
                    exprs.append(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(dash)
    used = set()
    for e in exprs:
        used.update(re.findall(r"\bshoal_[a-zA-Z0-9_]+", e))
    return dash, exprs, used


def test_dashboard_uses_only_live_metrics(admin_node):
    dash, exprs, used = dashboard_exprs()
    assert len(exprs) >= 10
    status, _, body = http(admin_node, "GET", "/metrics")
    samples, types = parse_metrics(body.decode())
    live = set(samples) | set(types)
    missing = sorted(m for m in used if m not in live and not CLUSTER_ONLY.search(m))
    assert not missing, "dashboard uses metrics the node does not export: %s" % missing
    for want in ("shoal_connections_online", "shoal_messages_in_total", "shoal_messages_dropped_total",
                 "shoal_process_resident_memory_bytes", "shoal_worker_loop_lag_seconds"):
        assert want in used, want
    names = [v["name"] for v in dash["templating"]["list"]]
    assert "instance" in names
    # Every panel follows the node selector.
    for e in exprs:
        if "shoal_" in e and "label_values" not in e:
            assert 'instance=~"$instance"' in e, e
