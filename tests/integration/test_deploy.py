# SPDX-License-Identifier: Apache-2.0
"""./deploy/up as a user runs it: one node, and a local cluster behind HAProxy."""
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import json
import urllib.request

import pytest

import mqttraw as R
from conftest import SHOAL_BIN
from pahoclient import Client, uid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
WAIT = 30


def free_port_block(n):
    """A port P with P..P+n and P+100..P+100+n free (deploy/up's layout).

    P is drawn below the kernel's ephemeral range, so no outgoing connection
    of another process (a Kafka client, a test's socket) can take one of
    these ports between this check and deploy/up binding them."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    rng = random.Random()
    for _ in range(200):
        p = rng.randrange(10000, ephemeral_low - 200)
        ok = True
        for q in list(range(p, p + n + 1)) + list(range(p + 100, p + 101 + n)):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return p
    raise RuntimeError("no free port block")


_running = []


@pytest.fixture(autouse=True)
def stop_leftover_up():
    """A test that fails half way still stops the deploy/up it started
    (SIGTERM to that PID: deploy/up then stops its own children)."""
    yield
    while _running:
        up = _running.pop()
        if up.proc.poll() is None:
            up.proc.terminate()
            try:
                up.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                up.proc.kill()
                up.proc.wait()


class Up:
    def __init__(self, *args):
        self.proc = subprocess.Popen([os.path.join(ROOT, "deploy/up"), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        _running.append(self)
        self.err = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        self.ready = None
        deadline = time.time() + 300
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self.ready = line.strip()
                break
            assert time.time() < deadline
        assert self.ready, "deploy/up never printed READY; stderr:\n" + "".join(self.err)
        m = re.search(r":(\d+)", self.ready)
        self.host, self.port = "127.0.0.1", int(m.group(1))

    def stop(self, sig=signal.SIGINT):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    @property
    def work(self):
        """The work directory deploy/up printed at start (cluster mode)."""
        return re.search(r"work directory: (\S+)", "".join(self.err)).group(1)

    def log(self, i):
        with open(os.path.join(self.work, "node-%d.log" % i)) as f:
            return f.read()


def node_metric(http_port, name):
    """An unlabelled sample from a node's /metrics (no proxy: all local)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://127.0.0.1:%d/metrics" % http_port, timeout=WAIT) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError("%s not in /metrics of port %d" % (name, http_port))


def children_alive(work_dir):
    """Processes whose command line names the deploy/up work directory."""
    alive = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if work_dir in cmd and state not in ("Z", "X"):
            alive.append((pid, cmd))
    return alive


def test_single_node_up_serves_and_stops_on_ctrl_c():
    port = free_port_block(0)
    up = Up("--port", str(port), "--", "--http-port", "0")
    assert up.ready.startswith("READY mqtt://")
    topic = uid("up")
    sub = Client(up)
    sub.subscribe(topic, qos=1)
    Client(up, version=4).publish(topic, b"hello", qos=1)
    assert sub.get(WAIT).payload == b"hello"
    sub.disconnect()
    assert up.stop() == 0


def test_cluster_up_behind_haproxy_and_clean_stop():
    port = free_port_block(2)
    up = Up("--nodes", "2", "--port", str(port))
    assert "nodes=2" in up.ready
    work = up.work
    # HAProxy's config comes from the template, round robin over both nodes.
    with open(os.path.join(work, "haproxy.cfg")) as f:
        cfg = f.read()
    assert "balance roundrobin" in cfg and "@" not in cfg, cfg
    assert cfg.count("\n  server node-") == 2, cfg
    topic = uid("lb")
    subs = [Client(up) for _ in range(2)]
    for s in subs:
        s.subscribe(topic, qos=1)
    pub = Client(up, version=4)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    # Whichever node each client landed on, every subscriber gets everything in order.
    for s in subs:
        assert [int(m.payload) for m in s.get_n(10, WAIT)] == list(range(10))
    # HAProxy spread the three clients over both nodes (round robin).
    logs = "".join(open(os.path.join(work, "node-%d.log" % i)).read() for i in (1, 2))
    assert logs.count("event=connect") >= 3
    for i in (1, 2):
        assert "event=connect" in open(os.path.join(work, "node-%d.log" % i)).read(), "node-%d got no client" % i
    for c in subs + [pub]:
        c.disconnect()
    assert up.stop(signal.SIGTERM) == 0
    deadline = time.time() + 30
    while children_alive(work):
        assert time.time() < deadline, children_alive(work)
        time.sleep(0.2)
    for p in (port, port + 1, port + 2, port + 101, port + 102):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p)) != 0, "port %d still open after stop" % p
    # No temporary data is left behind.
    assert not os.path.exists(work), os.listdir(work)


async def _read_packet(reader, version):
    first = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return R.Packet(first, await reader.readexactly(length), version)


async def _swarm(host, port, n, base, publish_all, timeout):
    """n raw clients (alternately MQTT 5 and 3.1.1) each subscribe to their
    own topic and to base/all; once all are subscribed publish_all() runs
    (in a thread) and every client must get its own message and the
    broadcast, each once. Returns the client ids."""
    ids = ["%s-%d" % (base, i) for i in range(n)]
    connect_gate = asyncio.Semaphore(50)

    async def open_one(i):
        version = 5 if i % 2 else 4
        async with connect_gate:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(R.connect(ids[i], version=version))
            p = await _read_packet(reader, version)
            assert (p.type, p.rc) == (R.CONNACK, 0), (ids[i], p)
            writer.write(R.subscribe(1, [("%s/to/%d" % (base, i), 1), (base + "/all", 1)], version=version))
            p = await _read_packet(reader, version)
            assert p.type == R.SUBACK and p.codes == [1, 1], (ids[i], p)
        return reader, writer, version

    async def receive(i, reader, writer, version):
        want = {"%s/to/%d" % (base, i): b"to-%d" % i, base + "/all": b"everyone"}
        got = {}
        while len(got) < len(want):
            p = await _read_packet(reader, version)
            if p.type != R.PUBLISH:
                continue
            assert p.topic in want and p.topic not in got, (ids[i], p, got)
            assert p.payload == want[p.topic], (ids[i], p)
            if p.qos == 1:
                writer.write(R.puback(p.pid, version=version))
            got[p.topic] = p.payload
        return got

    conns = await asyncio.wait_for(asyncio.gather(*(open_one(i) for i in range(n))), timeout)
    tasks = [asyncio.ensure_future(receive(i, *c)) for i, c in enumerate(conns)]
    try:
        await asyncio.to_thread(publish_all)
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        missing = sorted(ids[i] for i, t in enumerate(tasks) if t in pending)
        assert not pending, "%d clients still waiting, e.g. %s" % (len(missing), missing[:5])
        for t in done:
            t.result()  # raises what a client asserted
    finally:
        for t in tasks:
            t.cancel()
        for _, writer, version in conns:
            writer.write(R.disconnect(version=version))
            writer.close()
    return ids


def test_three_nodes_300_clients_behind_haproxy_all_exchange():
    """./deploy/up --nodes 3: 300 clients spread round robin over the nodes;
    each gets the message sent to its own topic and the broadcast, whichever
    node it and the publisher landed on."""
    port = free_port_block(3)
    up = Up("--nodes", "3", "--port", str(port))
    assert "nodes=3" in up.ready
    work = up.work
    base = uid("swarm")
    n = 300
    pub = Client(up, version=5)

    def publish_all():
        infos = [pub.publish("%s/to/%d" % (base, i), b"to-%d" % i, qos=1, wait=False) for i in range(n)]
        infos.append(pub.publish(base + "/all", b"everyone", qos=1, wait=False))
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published()

    started = time.time()
    ids = asyncio.run(_swarm(up.host, up.port, n, base, publish_all, timeout=60))
    assert time.time() - started < 60
    pub.disconnect()
    # HAProxy spread the clients round robin: each node accepted about a
    # third of the connections. Those are the swarm, the publisher and
    # deploy/up's own "is HAProxy listening" probe, which HAProxy forwards
    # too; health checks go to the HTTP port.
    accepted = {i: node_metric(port + 100 + i, "shoal_connections_total") for i in (1, 2, 3)}
    assert n + 1 <= sum(accepted.values()) <= n + 2, accepted
    for i, v in accepted.items():
        assert v >= (n + 1) // 3 - 20, "node-%d accepted %d of %d: %s" % (i, v, n + 1, accepted)
    # ... and its log shows them. The log limits each line kind to 20 a
    # second, so not every connect is there, but no client is on two nodes.
    rx = re.compile(r"event=connect conn=\d+ client=(%s-\d+) " % re.escape(base))
    per_node = {i: set(rx.findall(up.log(i))) for i in (1, 2, 3)}
    for i, v in per_node.items():
        assert v, "node-%d logged no client connect" % i
    assert set().union(*per_node.values()) <= set(ids)
    assert sum(len(v) for v in per_node.values()) == len(set().union(*per_node.values()))
    assert up.stop(signal.SIGTERM) == 0
    assert not os.path.exists(work)


def test_cluster_with_two_kafka_brokers_and_keep():
    """--kafka-brokers 2 starts two brokers and the nodes create their topic
    with replication 2; --keep leaves the work directory after the stop."""
    port = free_port_block(2)
    up = Up("--nodes", "2", "--kafka-brokers", "2", "--keep", "--port", str(port))
    work = up.work
    try:
        err = "".join(up.err)
        bootstrap = re.search(r"kafka (\S+) \(2 broker\(s\), replication 2\)", err).group(1)
        assert len(bootstrap.split(",")) == 2, bootstrap
        topic = uid("kb")
        sub = Client(up)
        sub.subscribe(topic, qos=1)
        pub = Client(up, version=4)
        for i in range(10):
            pub.publish(topic, b"%d" % i, qos=1)
        assert [int(m.payload) for m in sub.get_n(10, WAIT)] == list(range(10))
        md = subprocess.run(["kcat", "-L", "-b", bootstrap, "-t", "shoal.messages"], capture_output=True,
                            text=True, timeout=60, check=True).stdout
        assert re.search(r"^ 2 brokers:", md, re.M), md
        replicas = re.findall(r"replicas: (\d+(?:,\d+)*)", md)
        assert replicas and all(len(r.split(",")) == 2 for r in replicas), md
        for c in (sub, pub):
            c.disconnect()
        assert up.stop(signal.SIGINT) == 0
        deadline = time.time() + 30
        while children_alive(work):
            assert time.time() < deadline, children_alive(work)
            time.sleep(0.2)
        assert os.path.isfile(os.path.join(work, "node-1.log"))
        assert os.path.isfile(os.path.join(work, "kafka", "broker-2", "server.log"))
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


TOKEN = "deploy-admin-token"


def api_nodes(http_port):
    req = urllib.request.Request("http://127.0.0.1:%d/api/v1/nodes" % http_port,
                                 headers={"Authorization": "Bearer " + TOKEN})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=WAIT) as r:
        return {n["node_id"]: n for n in json.loads(r.read())["nodes"]}


def ctl_nodes(http_port):
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_URL", "SHOAL_ADMIN_TOKEN")}
    r = subprocess.run([SHOAL_BIN, "ctl", "--url", "http://127.0.0.1:%d" % http_port, "--token", TOKEN, "nodes"],
                       capture_output=True, text=True, timeout=WAIT, env=env)
    assert r.returncode == 0, r.stderr
    return {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()[1:] if line.strip()}


def test_three_nodes_list_each_other_and_a_killed_node_is_reported_at_once():
    """./deploy/up --nodes 3: every node's /api/v1/nodes and `shoal ctl
    nodes` list the three (this used to kill the node asked); kill -9 of
    one node is reported by deploy/up at once, naming it, its signal and the
    end of its log, while the other two keep serving and drop it from the
    list."""
    port = free_port_block(3)
    up = Up("--nodes", "3", "--port", str(port), "--", "--admin-token", TOKEN)
    names = ["node-%d" % i for i in (1, 2, 3)]
    for i in (1, 2, 3):
        got = {}
        deadline = time.time() + WAIT
        while set(got) != set(names):
            assert time.time() < deadline, got
            got = api_nodes(port + 100 + i)
        for j in (1, 2, 3):
            assert got["node-%d" % j]["address"] == "127.0.0.1:%d" % (port + j), got
            assert got["node-%d" % j]["self"] is (i == j), got
        rows = ctl_nodes(port + 100 + i)
        assert set(rows) == set(names), rows
        assert rows["node-%d" % i] == ["127.0.0.1:%d" % (port + i), "yes"], rows
    with open(os.path.join(up.work, "node-2.pid")) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + WAIT
    want = "node-2 (pid %d) killed by signal 9 (SIGKILL); last lines of %s/node-2.log:" % (pid, up.work)
    while not any(want in line for line in up.err):
        assert time.time() < deadline, "".join(up.err)
        assert up.proc.poll() is None, "deploy/up stopped:\n" + "".join(up.err)
        time.sleep(0.1)
    err = "".join(up.err)
    tail = err[err.index(want):].splitlines()[1:4]
    assert tail and all(line.startswith("    ") for line in tail), err
    # The other two serve on and see node-2 leave within a few heartbeats.
    deadline = time.time() + WAIT
    while "node-2" in ctl_nodes(port + 101):
        assert time.time() < deadline
        time.sleep(0.2)
    assert set(ctl_nodes(port + 103)) == {"node-1", "node-3"}
    topic = uid("after-kill")
    sub = Client(up)
    sub.subscribe(topic, qos=1)
    Client(up, version=4).publish(topic, b"still here", qos=1)
    assert sub.get(WAIT).payload == b"still here"
    sub.disconnect()
    assert up.stop(signal.SIGTERM) == 0
