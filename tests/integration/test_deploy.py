"""./deploy/up as a user runs it: one node, and a local cluster behind HAProxy."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

from pahoclient import Client, uid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
WAIT = 30


def free_port_block(n):
    """A port P with P..P+n and P+100..P+100+n free (deploy/up's layout)."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p + 200 > 65000:
            continue
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


class Up:
    def __init__(self, *args):
        self.proc = subprocess.Popen([os.path.join(ROOT, "deploy/up"), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
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
    work = re.search(r"work directory: (\S+)", "".join(up.err)).group(1)
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
    # HAProxy spread the three clients over both nodes (leastconn).
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
