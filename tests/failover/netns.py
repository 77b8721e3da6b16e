# SPDX-License-Identifier: Apache-2.0
"""A network partition for one node, with namespaces and a veth pair the
suite creates and removes itself (scenario `partition`).

  node ns  (the Shoal node, bound to 0.0.0.0 there)
    10.200.0.2/30 --veth-- 10.200.0.1/30
  gw ns    (only the forwarder's listening sockets)

No address outside 127.0.0.0/8 exists in the host's own namespace: the two
private addresses live only inside the two namespaces. One forwarder process
(`python netns.py forward RULES`) creates each socket in the namespace it
belongs to (setns per socket, then back), and pipes bytes:

  node:127.0.0.1:P -> node:10.200.0.1:P   Redis and Kafka ports: what the node dials
  gw:10.200.0.1:P  -> host:127.0.0.1:P    (crosses the veth)
  host:127.0.0.1:Q -> gw:10.200.0.2:Q     the node's MQTT and HTTP ports, for
                                          clients, HAProxy and its checks
  host:127.0.0.1:A -> node:127.0.0.1:H    the admin API without the veth, so the
                                          suite still sees the node's clients
                                          while it is cut off

Cutting the veth (link down on the node's end) stops everything that
crosses it; the TCP connections stay open and resume when it comes up.
"""
import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
NODE_ADDR, GW_ADDR = "10.200.0.2", "10.200.0.1"
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def can_create():
    """None when this process can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN)"
    for tool in ("ip",):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return "no `%s` (iproute2)" % tool
    name = "shfo%dt" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns add failed: %s" % r.stderr.strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))


class Partition:
    """Two namespaces, a veth pair between them and the forwarder. remove()
    undoes all of it, whatever state create() reached."""

    def __init__(self, work):
        tag = "%d" % os.getpid()
        self.node_ns, self.gw_ns = "shfo%sn" % tag, "shfo%sg" % tag
        self.node_if, self.gw_if = "shfo%sa" % tag, "shfo%sb" % tag
        self.work = work
        self.forwarder = None
        self.created = []

    def create(self):
        for ns in (self.node_ns, self.gw_ns):
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", self.node_if, "type", "veth", "peer", "name", self.gw_if)
        _ip("link", "set", self.node_if, "netns", self.node_ns)
        _ip("link", "set", self.gw_if, "netns", self.gw_ns)
        _ip("-n", self.node_ns, "addr", "add", NODE_ADDR + "/30", "dev", self.node_if)
        _ip("-n", self.gw_ns, "addr", "add", GW_ADDR + "/30", "dev", self.gw_if)
        _ip("-n", self.node_ns, "link", "set", self.node_if, "up")
        _ip("-n", self.gw_ns, "link", "set", self.gw_if, "up")

    def enter(self):
        """A preexec_fn: the child joins the node namespace."""
        path = "/var/run/netns/" + self.node_ns

        def fn():
            fd = os.open(path, os.O_RDONLY)
            setns(fd)
            os.close(fd)
        return fn

    def start_forwarder(self, backend_ports, node_ports, admin_port, http_port, python=sys.executable):
        rules = [("node", "127.0.0.1", p, "node", GW_ADDR, p) for p in backend_ports]
        rules += [("gw", GW_ADDR, p, "host", "127.0.0.1", p) for p in backend_ports]
        rules += [("host", "127.0.0.1", p, "gw", NODE_ADDR, p) for p in node_ports]
        rules += [("host", "127.0.0.1", admin_port, "node", "127.0.0.1", http_port)]
        log = open(os.path.join(self.work, "forwarder.log"), "w")
        self.forwarder = subprocess.Popen([python, "-u", os.path.abspath(__file__), "forward", self.node_ns,
                                           self.gw_ns, json.dumps(rules)], stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL)
        log.close()
        end = time.time() + 30
        path = os.path.join(self.work, "forwarder.log")
        while time.time() < end:
            if self.forwarder.poll() is not None:
                raise RuntimeError("forwarder exited: %s" % open(path).read()[-500:])
            if "READY" in open(path).read():
                return
            time.sleep(0.05)
        raise RuntimeError("forwarder not ready in 30 s")

    def cut(self):
        _ip("-n", self.node_ns, "link", "set", self.node_if, "down")

    def heal(self):
        _ip("-n", self.node_ns, "link", "set", self.node_if, "up")

    def remove(self):
        if self.forwarder and self.forwarder.poll() is None:
            self.forwarder.terminate()
            try:
                self.forwarder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.forwarder.kill()
                self.forwarder.wait()
        self.forwarder = None
        # Deleting a namespace deletes the veth end in it (and so its peer).
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.created = []


# ---- the forwarder process ---------------------------------------------------

def _pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
        try:
            s.shutdown(how)
        except OSError:
            pass


def _serve(lsock, make, addr):
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=_connect, args=(c, make, addr), daemon=True).start()


def _connect(c, make, addr):
    u = make()
    u.settimeout(30)
    try:
        u.connect(addr)
    except OSError:
        c.close()
        u.close()
        return
    u.settimeout(None)
    for s in (c, u):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = threading.Thread(target=_pipe, args=(u, c), daemon=True)
    t.start()
    _pipe(c, u)
    t.join()
    c.close()
    u.close()


def forward(node_ns, gw_ns, rules):
    fds = {"host": os.open("/proc/self/ns/net", os.O_RDONLY),
           "node": os.open("/var/run/netns/" + node_ns, os.O_RDONLY),
           "gw": os.open("/var/run/netns/" + gw_ns, os.O_RDONLY)}
    lock = threading.Lock()

    def sock_in(ns):
        # setns is per thread: switch, create, switch back.
        with lock:
            setns(fds[ns])
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                setns(fds["host"])

    for lns, lhost, lport, cns, chost, cport in rules:
        ls = sock_in(lns)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((lhost, lport))
        ls.listen(128)
        threading.Thread(target=_serve, args=(ls, lambda ns=cns: sock_in(ns), (chost, cport)), daemon=True).start()
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "forward":
        forward(sys.argv[2], sys.argv[3], [tuple(r) for r in json.loads(sys.argv[4])])
    else:
        sys.exit("usage: netns.py forward NODE_NS GW_NS RULES_JSON")
