#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One million concurrent MQTT connections, step by step (bench/million).

Standalone Shoal nodes on their own ports take the connections; shoal-bench
`conn --subscribe` processes open and hold them, one new shoal-bench per step
(its workers keep their connections until the end). Every second: one
progress line on stderr. At the end: million.json, million.md and
million.png in --out and a summary table on stdout.

Memory figures:
  broker    RSS of all node processes, minus their RSS before the first step
  generator PSS of all shoal-bench processes (forked workers share pages)
  kernel    growth of Slab in /proc/meminfo (sockets, files, epoll items of
            both ends of every connection) and TCP buffer pages (sockstat)
  system    drop of MemAvailable since before the first step
"""
import argparse
import datetime
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

GIB = 1 << 30
MIB = 1 << 20
# A node or generator process holds this many connections at most: the fd
# limit here is 20,000 per process, and each needs a few fds of its own.
PER_PROC_MAX = 18000
SRCS = "127.0.0.2-127.0.0.252"  # 251 addresses: a prime, so (source, node) pairs never line up
N_SRCS = 251
T0 = time.monotonic()


def log(msg):
    sys.stderr.write("[million %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---- /proc readers ----

def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def rss_bytes(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def pss_bytes(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss_bytes(pid)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def slabinfo():
    """Bytes per slab cache (objects x object size); empty when unreadable."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                it = line.split()
                if len(it) > 4 and not line.startswith(("slabinfo", "#")):
                    out[it[0]] = int(it[2]) * int(it[3])
    except (OSError, ValueError):
        pass
    return out


def cpu_seconds(pid):
    """User + system CPU seconds of one process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            it = f.read().rsplit(")", 1)[1].split()
        return (int(it[11]) + int(it[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_cpu():
    """Machine-wide CPU seconds: busy (everything but idle and iowait) and softirq."""
    with open("/proc/stat") as f:
        it = [int(x) for x in f.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    return {"busy": (sum(it[:8]) - it[3] - it[4]) / tck, "softirq": it[6] / tck}


def sockstat():
    out = {}
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    it = line.split()[1:]
                    out = {it[i]: int(it[i + 1]) for i in range(0, len(it) - 1, 2)}
    except OSError:
        pass
    return out


def read_sysctl(name):
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().split()
    except OSError:
        return None


def write_sysctl(name, values):
    try:
        with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
            f.write(" ".join(str(v) for v in values))
        return None
    except OSError as e:
        return e.strerror


# ---- kernel settings ----

class Kernel:
    """Checks what the run needs, raises what is too low where it may, and
    puts back what it changed when the run ends."""

    def __init__(self, target, nodes, gens):
        self.target, self.nodes, self.gens = target, nodes, gens
        self.rows = []
        self.changed = []

    def row(self, name, value, need, status, note):
        self.rows.append({"setting": name, "value": value, "needs": need, "status": status, "note": note})

    def at_least(self, name, want, why, index=0):
        cur = read_sysctl(name)
        if cur is None:
            self.row(name, None, want, "absent", why)
            return
        v = int(cur[index])
        if v >= want:
            self.row(name, " ".join(cur), ">= %d" % want, "ok", why)
            return
        new = list(cur)
        new[index] = str(want)
        err = write_sysctl(name, new)
        if err:
            self.row(name, " ".join(cur), ">= %d" % want, "too low",
                     "%s; could not set it (%s): run as root or `sysctl -w %s=%s`" % (why, err, name, " ".join(new)))
        else:
            self.changed.append((name, cur))
            self.row(name, " ".join(new), ">= %d" % want, "set", "%s (was %s; put back at the end)" % (why, " ".join(cur)))

    def check(self):
        t = self.target
        # Both ends of every connection are on this machine.
        self.at_least("fs.file-max", 2 * t + 200000, "both ends of every connection hold a file")
        nr_open = read_sysctl("fs.nr_open")
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        self.row("RLIMIT_NOFILE", "%d (hard %d)" % (soft, hard), ">= %d" % (PER_PROC_MAX + 100),
                 "ok" if hard >= PER_PROC_MAX + 100 else "too low",
                 "per process: hence %d nodes and %d generator processes; fs.nr_open %s" %
                 (self.nodes, self.gens, nr_open[0] if nr_open else "?"))
        rng = read_sysctl("net.ipv4.ip_local_port_range")
        if rng:
            width = int(rng[1]) - int(rng[0]) + 1
            per_pair = math.ceil(t / (N_SRCS * self.nodes)) if self.nodes % N_SRCS else math.ceil(t / self.nodes)
            self.row("net.ipv4.ip_local_port_range", " ".join(rng), "> %d per (source, node)" % per_pair,
                     "ok" if per_pair * 2 < width else "too narrow",
                     "%d ports for each (source address, node port) pair: %d sources x %d nodes" %
                     (width, N_SRCS, self.nodes))
        self.at_least("net.core.somaxconn", 4096, "accept queue of each node (Shoal asks for 1024)")
        self.at_least("net.ipv4.tcp_max_syn_backlog", 8192, "SYNs waiting for accept during the ramp")
        self.at_least("net.core.netdev_max_backlog", 10000, "loopback packets queue per CPU; drops there stall connects")
        mem = read_sysctl("net.ipv4.tcp_mem")
        if mem:
            self.row("net.ipv4.tcp_mem", " ".join(mem), "pages", "ok",
                     "TCP buffer memory limit (pages): idle connections hold no buffers, so far below it")
        cmax = read_sysctl("net.netfilter.nf_conntrack_max")
        if cmax is None:
            self.row("net.netfilter.nf_conntrack_max", None, "-", "absent", "no conntrack: nothing to fill")
        else:
            count = read_sysctl("net.netfilter.nf_conntrack_count")
            self.at_least("net.netfilter.nf_conntrack_max", t + 100000,
                          "a full conntrack table drops new connections (count now %s)" % (count[0] if count else "?"))
        pid_max = read_sysctl("kernel.pid_max")
        self.row("kernel.pid_max", pid_max[0] if pid_max else None, ">= 1000", "ok", "")
        return self.rows

    def restore(self):
        for name, old in reversed(self.changed):
            write_sysctl(name, old)
        self.changed = []

    def print_table(self):
        for r in self.rows:
            log("kernel %-32s %-24s %-9s %s" % (r["setting"], r["value"], r["status"], r["note"]))


# ---- processes ----

class Procs:
    """Every process the run started, and only those, stopped on exit."""

    def __init__(self):
        self.items = []  # (Popen, kind)

    def add(self, p, kind):
        self.items.append((p, kind))
        return p

    def stop(self, kinds, timeout):
        live = [p for p, k in self.items if k in kinds and p.poll() is None]
        # shoal-bench forks its workers: note them now, so none outlives a SIGKILLed parent.
        kids = {p.pid: children(p.pid) for p in live}
        for p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log("pid %d did not stop in %ds: SIGKILL" % (p.pid, timeout))
                p.kill()
                p.wait()
            for kid in kids[p.pid]:
                try:
                    with open("/proc/%d/cmdline" % kid, "rb") as f:
                        mine = f.read().split(b"\0")[:1] == [p.args[0].encode()]
                    if mine:
                        os.kill(kid, signal.SIGKILL)
                except OSError:
                    pass


class Node:
    def __init__(self, procs, shoal, work, i):
        self.i = i
        self.out = open(os.path.join(work, "node%d.out" % i), "w+")
        self.err = open(os.path.join(work, "node%d.log" % i), "w")
        args = [shoal, "--port", "0", "--bind", "127.0.0.1", "--workers", "1", "--http-port", "0",
                "--http-bind", "127.0.0.1", "--log-level", "warn", "--node-id", "million-%d" % i]
        self.args = args
        self.p = procs.add(subprocess.Popen(args, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL), "node")
        self.port = None

    def poll_ready(self):
        if self.port is None:
            self.out.seek(0)
            m = re.search(r"^READY mqtt://[^:]+:(\d+)", self.out.read(), re.M)
            if m:
                self.port = int(m.group(1))
        return self.port


PROGRESS = re.compile(r"conns (\d+)/(\d+) refused (\d+) dropped (\d+) .*errors (\d+) recv (\d+)")
HOLD = re.compile(r"^HOLD connected=(\d+) refused=(\d+) elapsed=([\d.]+)s")


class Gen:
    """One shoal-bench invocation: a step's new connections, kept to the end."""

    def __init__(self, procs, bench, work, step, n, ports, rate, keepalive, qos):
        self.step, self.n = step, n
        self.prefix = "m%d-" % step
        self.procs = max(1, math.ceil(n / PER_PROC_MAX))
        setup = (n / rate if rate else n / 5000.0) * 3 + 120
        args = [bench, "conn", "--conns", str(n), "--procs", str(self.procs), "--port", ",".join(map(str, ports)),
                "--src", SRCS, "--rate", str(rate), "--subscribe", "--qos", str(qos), "--keepalive", str(keepalive),
                "--connect-timeout", "30", "--duration", "86400", "--drain", "1", "--setup-timeout", "%.0f" % setup,
                "--client-prefix", self.prefix]
        self.args = args
        self.log = open(os.path.join(work, "gen%d.log" % step), "w")
        self.json_path = os.path.join(work, "gen%d.json" % step)
        self.jout = open(self.json_path, "w")
        self.started = time.monotonic()
        self.p = procs.add(subprocess.Popen(args, stdout=self.jout, stderr=subprocess.PIPE, text=True,
                                            stdin=subprocess.DEVNULL), "gen")
        self.live = {"held": 0, "attempted": 0, "refused": 0, "dropped": 0, "errors": 0, "recv": 0}
        self.hold = None  # (connected, refused, elapsed) once every worker holds
        self.t = threading.Thread(target=self.pump, daemon=True)
        self.t.start()

    def pump(self):
        for line in self.p.stderr:
            self.log.write(line)
            self.log.flush()
            m = PROGRESS.search(line)
            if m:
                held, att, ref, drop, err, recv = map(int, m.groups())
                self.live = {"held": held, "attempted": att, "refused": ref, "dropped": drop, "errors": err,
                             "recv": recv}
                continue
            m = HOLD.search(line)
            if m:
                self.hold = (int(m.group(1)), int(m.group(2)), float(m.group(3)))
            elif "shoal-bench:" in line:
                log("gen%d: %s" % (self.step, line.strip()))

    def pids(self):
        if self.p.poll() is not None:
            return []
        return [self.p.pid] + children(self.p.pid)

    def result(self):
        try:
            with open(self.json_path) as f:
                return json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            return None


# ---- the sample: raw MQTT 3.1.1, QoS 1 ----

def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def mqtt_packet(kind, body):
    n, rl = len(body), b""
    while True:
        d, n = n % 128, n // 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    return bytes([kind]) + rl + body


def read_packet(s):
    def exact(k):
        buf = b""
        while len(buf) < k:
            chunk = s.recv(k - len(buf))
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return buf
    head = exact(1)[0]
    mult, n = 1, 0
    while True:
        d = exact(1)[0]
        n += (d & 0x7F) * mult
        mult *= 128
        if not d & 0x80:
            break
    return head, exact(n) if n else b""


def publish_sample(port, topics, tag):
    """Publishes one QoS 1 message to each topic on the node at port and
    returns how many the node acknowledged."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(mqtt_packet(0x10, mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) +
                              mqtt_str("million-sample-%s-%d" % (tag, port))))
        head, body = read_packet(s)
        if head != 0x20 or body[1] != 0:
            raise OSError("CONNACK refused: %r" % body)
        out = b""
        for pid, t in enumerate(topics, 1):
            out += mqtt_packet(0x32, mqtt_str(t) + struct.pack("!H", pid) + b"sample")
        s.sendall(out)
        acked = 0
        while acked < len(topics):
            head, _ = read_packet(s)
            if head >> 4 == 4:
                acked += 1
        s.sendall(b"\xe0\x00")
        return acked
    finally:
        s.close()


# ---- the run ----

class Run:
    def __init__(self, a):
        self.a = a
        self.procs = Procs()
        self.nodes = []
        self.gens = []
        self.steps = []
        self.samples = []  # per-second series for the JSON
        self.stop_reason = None
        self.kernel = None
        self.base = None
        self.work = tempfile.mkdtemp(prefix="shoal-million.")
        # CPU seconds of exited generator processes are lost; stopped ones are read before they go.

    def cpu(self):
        m = machine_cpu()
        return {"wall": time.monotonic(), "broker": sum(cpu_seconds(n.p.pid) for n in self.nodes),
                "generator": sum(cpu_seconds(pid) for g in self.gens for pid in g.pids()),
                "busy": m["busy"], "softirq": m["softirq"]}

    @staticmethod
    def cpu_delta(a, b, conns):
        """CPU used between two cpu() readings: ours, the machine's, and
        what that leaves for everything else running here."""
        d = {k: b[k] - a[k] for k in a}
        cores = os.cpu_count() or 1
        other = d["busy"] - d["broker"] - d["generator"] - d["softirq"]
        out = {"wall_seconds": round(d["wall"], 1), "broker_cpu_seconds": round(d["broker"], 1),
               "generator_cpu_seconds": round(d["generator"], 1), "softirq_cpu_seconds": round(d["softirq"], 1),
               "other_cpu_seconds": round(max(other, 0.0), 1),
               "machine_busy_percent": round(100 * d["busy"] / max(d["wall"] * cores, 1e-3))}
        if conns > 0:
            out["broker_cpu_us_per_conn"] = round(1e6 * d["broker"] / conns)
            out["generator_cpu_us_per_conn"] = round(1e6 * d["generator"] / conns)
        return out

    # -- measuring --

    def totals(self):
        t = {"held": 0, "attempted": 0, "refused": 0, "dropped": 0, "errors": 0, "recv": 0}
        for g in self.gens:
            for k in t:
                t[k] += g.live[k]
        return t

    def broker_rss(self):
        return sum(rss_bytes(n.p.pid) for n in self.nodes)

    def gen_mem(self, pss=True):
        return sum((pss_bytes if pss else rss_bytes)(pid) for g in self.gens for pid in g.pids())

    def snapshot(self):
        mi = meminfo()
        ss = sockstat()
        return {"t": round(time.monotonic() - T0, 1), "broker_rss": self.broker_rss(), "gen_pss": self.gen_mem(),
                "mem_available": mi["MemAvailable"], "slab": mi.get("Slab", 0),
                "tcp_mem": ss.get("mem", 0) * os.sysconf("SC_PAGE_SIZE"), "tcp_inuse": ss.get("inuse", 0),
                "slabs": slabinfo()}

    def tick_line(self, label, last):
        """One progress line; returns the state for the next one."""
        now = time.monotonic()
        tot = self.totals()
        mi = meminfo()
        rate = 0.0
        if last:
            rate = (tot["held"] - last[1]) / max(now - last[0], 1e-3)
        brss = self.broker_rss()
        ss = sockstat()
        log("%s held %d (%+.0f/s) refused %d dropped %d | broker RSS %.2f GiB | generators RSS %.2f GiB | "
            "MemAvailable %.2f GiB | TCP in use %d, buffers %.1f MiB" %
            (label, tot["held"], rate, tot["refused"], tot["dropped"], brss / GIB, self.gen_mem(pss=False) / GIB,
             mi["MemAvailable"] / GIB, ss.get("inuse", 0), ss.get("mem", 0) * 4096 / MIB))
        self.samples.append({"t": round(now - T0, 1), "phase": label, "held": tot["held"], "conn_per_s": round(rate),
                             "broker_rss": brss, "mem_available": mi["MemAvailable"]})
        return (now, tot["held"])

    def mem_low(self):
        return meminfo()["MemAvailable"] < self.a.mem_limit * GIB

    # -- phases --

    def start_nodes(self):
        log("starting %d nodes (%s --workers 1 each)" % (self.a.nodes, self.a.shoal))
        for i in range(self.a.nodes):
            self.nodes.append(Node(self.procs, self.a.shoal, self.work, i))
        deadline = time.monotonic() + 60 + self.a.nodes
        while not all(n.poll_ready() for n in self.nodes):
            dead = [n for n in self.nodes if n.p.poll() is not None]
            if dead or time.monotonic() > deadline:
                n = dead[0] if dead else [n for n in self.nodes if not n.port][0]
                raise RuntimeError("node %d did not start; see %s" % (n.i, n.err.name))
            time.sleep(0.1)
        log("nodes ready on ports %s" % ",".join(str(n.port) for n in self.nodes))

    def project(self, base, held, next_target):
        """MemAvailable after the next step, at the memory per connection seen so far."""
        avail = meminfo()["MemAvailable"]
        if held <= 0:
            return avail
        per_conn = max(base["mem_available"] - avail, 0) / held
        return avail - per_conn * (next_target - held) * 1.1

    def step(self, k, target, base, prev_target):
        a = self.a
        n = target - prev_target
        g = Gen(self.procs, a.bench, self.work, k, n, [x.port for x in self.nodes], a.rate, a.keepalive, 1)
        self.gens.append(g)
        log("step %d: +%d connections to %d (shoal-bench, %d processes, %s conn/s)" %
            (k, n, target, g.procs, a.rate or "max"))
        cpu0 = self.cpu()
        last = None
        t0 = time.monotonic()
        while g.hold is None:
            if g.p.poll() is not None:
                time.sleep(0.5)
                if g.hold is None:
                    self.stop_reason = "generator of step %d exited (status %s); see %s" % (k, g.p.returncode, g.log.name)
                    return None
            if self.mem_low():
                self.stop_reason = ("memory guard: MemAvailable below %.1f GiB during step %d" % (a.mem_limit, k))
                return None
            time.sleep(1.0)
            last = self.tick_line("step %d/%d ->%d" % (k, len(a.steps), target), last)
        ramp_s = time.monotonic() - t0
        connected, refused, elapsed = g.hold
        cpu = self.cpu_delta(cpu0, self.cpu(), connected)
        # Let transient buffers go and the counters catch up before measuring.
        settle_until = time.monotonic() + (2 if a.quick else 5)
        while time.monotonic() < settle_until:
            time.sleep(1.0)
            last = self.tick_line("step %d/%d settle" % (k, len(a.steps)), last)
        snap = self.snapshot()
        tot = self.totals()
        held = tot["held"]
        st = {
            "step": k, "target": target, "new": n, "held": held, "connected_in_step": connected,
            "refused": tot["refused"], "failed_in_step": n - connected, "dropped": tot["dropped"],
            "connect_seconds": round(elapsed, 2), "connects_per_s": round(connected / elapsed) if elapsed else None,
            "ramp_seconds": round(ramp_s, 1), "generator_processes": g.procs, "cpu": cpu,
        }
        st.update(self.per_conn(base, snap, held))
        st["snapshot"] = {k: v for k, v in snap.items() if k != "slabs"}
        self.steps.append(st)
        log("step %d held %d: %s conn/s, broker %.0f B/conn, generator %.0f B/conn, kernel %.0f B/conn, "
            "system %.0f B/conn; CPU: brokers %.0fs, generators %.0fs, softirq %.0fs, others %.0fs (machine %d%% busy)" %
            (k, held, st["connects_per_s"], st["broker_bytes_per_conn"], st["generator_bytes_per_conn"],
             st["kernel_slab_bytes_per_conn"], st["system_bytes_per_conn"], cpu["broker_cpu_seconds"],
             cpu["generator_cpu_seconds"], cpu["softirq_cpu_seconds"], cpu["other_cpu_seconds"],
             cpu["machine_busy_percent"]))
        return st

    @staticmethod
    def per_conn(base, snap, held):
        h = max(held, 1)
        return {
            "broker_rss_bytes": snap["broker_rss"],
            "broker_bytes_per_conn": round((snap["broker_rss"] - base["broker_rss"]) / h),
            "generator_pss_bytes": snap["gen_pss"],
            "generator_bytes_per_conn": round(snap["gen_pss"] / h),
            "kernel_slab_bytes": snap["slab"] - base["slab"],
            "kernel_slab_bytes_per_conn": round((snap["slab"] - base["slab"]) / h),
            "kernel_tcp_buffer_bytes": snap["tcp_mem"],
            "system_bytes_per_conn": round((base["mem_available"] - snap["mem_available"]) / h),
            "mem_available_bytes": snap["mem_available"],
            # The slab caches that grew most, per connection: where kernel memory goes.
            "kernel_slab_top_per_conn": dict(sorted(
                ((k, round((v - base["slabs"].get(k, 0)) / h)) for k, v in snap["slabs"].items()),
                key=lambda kv: -kv[1])[:8]),
        }

    def sample(self):
        """Publishes one message to each of a random subset of the held
        connections' topics and waits until they have all arrived."""
        a = self.a
        rng = random.Random(a.seed)
        pool = [(g, gid) for g in self.gens for gid in rng.sample(range(g.n), min(g.n, a.sample))]
        picks = rng.sample(pool, min(a.sample, len(pool)))
        by_port = {}
        nports = len(self.nodes)
        for g, gid in picks:
            port = self.nodes[gid % nports].port
            by_port.setdefault(port, []).append("bench/%s/c/%d" % (g.prefix.rstrip("-"), gid))
        before = self.totals()["recv"]
        t0 = time.monotonic()
        acked = 0
        for port, topics in sorted(by_port.items()):
            try:
                acked += publish_sample(port, topics, str(os.getpid()))
            except OSError as e:
                log("sample: publishing on port %d failed: %s" % (port, e))
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            # Progress lines come once a second: wait for one that counts everything.
            time.sleep(1.0)
            last = self.tick_line("sample", last)
            if self.totals()["recv"] - before >= len(picks):
                break
        got = self.totals()["recv"] - before
        res = {"published": len(picks), "acknowledged": acked, "arrived": got, "nodes": len(by_port),
               "seconds": round(time.monotonic() - t0, 1)}
        log("sample: %d published to random connections on %d nodes, %d acknowledged, %d arrived" %
            (len(picks), len(by_port), acked, got))
        return res

    def hold(self, base):
        a = self.a
        start = self.totals()
        log("holding %ds with keep alive %ds (each connection pings every %ds)" % (a.hold, a.keepalive, a.keepalive // 2))
        end = time.monotonic() + a.hold
        last = None
        cpu0 = self.cpu()
        while time.monotonic() < end:
            if self.mem_low():
                self.stop_reason = "memory guard: MemAvailable below %.1f GiB while holding" % a.mem_limit
                break
            if any(g.p.poll() is not None for g in self.gens):
                self.stop_reason = "a generator exited while holding"
                break
            time.sleep(1.0)
            last = self.tick_line("hold", last)
        cpu = self.cpu_delta(cpu0, self.cpu(), 0)
        snap = self.snapshot()
        fin = self.totals()
        res = {"cpu": cpu, "seconds": a.hold, "keepalive": a.keepalive, "held_before": start["held"], "held_after": fin["held"],
               "dropped": fin["dropped"] - start["dropped"], "errors": fin["errors"] - start["errors"]}
        res.update(self.per_conn(base, snap, fin["held"]))
        log("hold: %d held before, %d after, %d dropped" % (res["held_before"], res["held_after"], res["dropped"]))
        return res

    def execute(self):
        a = self.a
        gens = sum(max(1, math.ceil((t - p) / PER_PROC_MAX)) for p, t in zip([0] + a.steps[:-1], a.steps))
        self.kernel = Kernel(a.target, a.nodes, gens)
        krows = self.kernel.check()
        self.kernel.print_table()
        self.start_nodes()
        time.sleep(1.0)
        base = self.base = self.snapshot()
        base["broker_rss_idle_per_node"] = base["broker_rss"] // max(len(self.nodes), 1)
        log("baseline: nodes RSS %.1f MiB, MemAvailable %.2f GiB, Slab %.0f MiB" %
            (base["broker_rss"] / MIB, base["mem_available"] / GIB, base["slab"] / MIB))
        prev = 0
        for k, target in enumerate(a.steps, 1):
            proj = self.project(base, self.totals()["held"], target)
            if proj < a.mem_limit * GIB:
                self.stop_reason = ("memory guard: step to %d would leave %.1f GiB available (limit %.1f GiB)" %
                                    (target, proj / GIB, a.mem_limit))
                log(self.stop_reason)
                break
            st = self.step(k, target, base, prev)
            if st is None:
                log("stopped: %s" % self.stop_reason)
                break
            prev = target
            lost = st["failed_in_step"] + st["dropped"]
            if lost > 0.005 * target and k < len(a.steps):
                # A machine that cannot keep what it has will not keep more.
                self.stop_reason = ("step %d: %d connections failed or dropped; not stepping further" % (k, lost))
                log(self.stop_reason)
                break
        sample = hold = None
        if self.steps and (self.stop_reason is None or self.stop_reason.startswith(("memory guard: step", "step "))):
            sample = self.sample()
            hold = self.hold(base)
        return {"kernel": krows, "baseline": base, "sample": sample, "hold": hold}

    def stop_all(self):
        """Generators first (their DISCONNECTs reach live nodes), then nodes."""
        gens_live = [g for g in self.gens if g.p.poll() is None]
        if gens_live:
            log("stopping %d generators" % len(gens_live))
        self.procs.stop({"gen"}, 180)
        if any(n.p.poll() is None for n in self.nodes):
            log("stopping %d nodes" % len(self.nodes))
        self.procs.stop({"node"}, 60)
        if self.kernel:
            self.kernel.restore()


# ---- reporting ----

def fmt_int(v):
    return "—" if v is None else "{:,}".format(int(v))


def summary_rows(res):
    rows = []
    for s in res["steps"]:
        rows.append([fmt_int(s["target"]), fmt_int(s["held"]), fmt_int(s["connects_per_s"]),
                     fmt_int(s["refused"]), fmt_int(s["dropped"]), fmt_int(s["broker_bytes_per_conn"]),
                     "%.2f" % (s["broker_rss_bytes"] / GIB), fmt_int(s["generator_bytes_per_conn"]),
                     fmt_int(s["kernel_slab_bytes_per_conn"]), "%.1f" % (s["kernel_tcp_buffer_bytes"] / MIB),
                     fmt_int(s["system_bytes_per_conn"]), "%.1f" % (s["mem_available_bytes"] / GIB)])
    return rows


HEAD = ["step target", "held", "connect/s", "refused", "dropped", "broker B/conn", "broker RSS GiB",
        "generator B/conn", "kernel slab B/conn", "TCP buffers MiB", "system B/conn", "MemAvailable GiB"]


def markdown(res):
    m = res["meta"]
    L = ["# One million connections — %s" % m["date"], ""]
    L.append("Machine: %s, %d cores, %.1f GiB, kernel %s. Shared with other builds while it ran." %
             (m["cpu"], m["cores"], m["mem_total"] / GIB, m["kernel"]))
    L.append("")
    L.append("Command: `%s`" % m["command"])
    L.append("")
    L.append("%d Shoal nodes (`%s`), %d shoal-bench processes, %d source addresses; each connection is MQTT "
             "3.1.1, clean session, keep alive %d s, subscribed at QoS 1 to its own topic." %
             (m["nodes"], " ".join(m["node_args"]), m["generator_processes"], N_SRCS, m["keepalive"]))
    L.append("")
    L.append("**Result: %s connections held** (target %s)%s." %
             (fmt_int(res["reached"]), fmt_int(m["target"]),
              "" if not res["stop_reason"] else "; stopped: " + res["stop_reason"]))
    L.append("")
    L.append("| " + " | ".join(HEAD) + " |")
    L.append("|" + "---:|" * len(HEAD))
    for r in summary_rows(res):
        L.append("| " + " | ".join(r) + " |")
    L.append("")
    s, h = res["sample"], res["hold"]
    if s:
        L.append("Sample: %d QoS 1 messages published to random held connections on %d nodes: %d acknowledged, "
                 "**%d arrived** (%.1f s)." % (s["published"], s["nodes"], s["acknowledged"], s["arrived"], s["seconds"]))
    if h:
        L.append("Hold: %d s at keep alive %d s: %s connections before, %s after, **%d dropped**; "
                 "broker %s B/conn, system %s B/conn at the end." %
                 (h["seconds"], h["keepalive"], fmt_int(h["held_before"]), fmt_int(h["held_after"]), h["dropped"],
                  fmt_int(h["broker_bytes_per_conn"]), fmt_int(h["system_bytes_per_conn"])))
    L.append("")
    cpu_rows = [(s["target"], s["cpu"]) for s in res["steps"] if "cpu" in s]
    if h and "cpu" in h:
        cpu_rows.append(("hold", h["cpu"]))
    if cpu_rows:
        L.append("CPU seconds while each step ran (2 cores, shared; 'others' is everything else on the machine):")
        L.append("")
        L.append("| step | seconds | brokers | generators | softirq | others | machine busy | broker µs/conn | generator µs/conn |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, c in cpu_rows:
            L.append("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %d %% | %s | %s |" % (
                fmt_int(name) if isinstance(name, int) else name, c["wall_seconds"], c["broker_cpu_seconds"],
                c["generator_cpu_seconds"], c["softirq_cpu_seconds"], c["other_cpu_seconds"],
                c["machine_busy_percent"], fmt_int(c.get("broker_cpu_us_per_conn")),
                fmt_int(c.get("generator_cpu_us_per_conn"))))
        L.append("")
    if res["steps"] and res["steps"][-1].get("kernel_slab_top_per_conn"):
        top = res["steps"][-1]["kernel_slab_top_per_conn"]
        L.append("Kernel slab growth per connection at the top, largest caches: %s." %
                 ", ".join("%s %s B" % (k, fmt_int(v)) for k, v in top.items()))
        L.append("")
    L.append("- connect/s: connections of the step divided by the time from its first attempt to every one "
             "of them subscribed (CONNECT, CONNACK, SUBSCRIBE, SUBACK).")
    L.append("- broker B/conn: RSS of all node processes minus their RSS before the first step, per held "
             "connection (includes one subscription per connection).")
    L.append("- generator B/conn: PSS of all shoal-bench processes per held connection.")
    L.append("- kernel slab B/conn: growth of Slab (/proc/meminfo) per connection, i.e. both sockets, files "
             "and epoll entries of a loopback connection; TCP buffers: sockstat `mem`.")
    L.append("- system B/conn: drop of MemAvailable per connection, everything included.")
    L.append("")
    L.append("Kernel settings:")
    L.append("")
    L.append("| setting | value | needs | status | why |")
    L.append("|---|---|---|---|---|")
    for r in res["kernel"]:
        L.append("| %s | %s | %s | %s | %s |" % (r["setting"], r["value"], r["needs"], r["status"], r["note"]))
    L.append("")
    return "\n".join(L)


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = res["steps"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    if steps:
        x = [s["held"] / 1000.0 for s in steps]
        ax1.plot(x, [s["broker_rss_bytes"] / GIB for s in steps], "o-", label="broker RSS (all nodes)")
        ax1.plot(x, [s["generator_pss_bytes"] / GIB for s in steps], "s-", label="generators PSS")
        ax1.plot(x, [s["kernel_slab_bytes"] / GIB for s in steps], "^-", label="kernel slab growth")
        ax1.plot(x, [(res["baseline"]["mem_available"] - s["mem_available_bytes"]) / GIB for s in steps], "d--",
                 label="MemAvailable drop (all)")
        ax1.set_xlabel("connections held (thousands)")
        ax1.set_ylabel("GiB")
        ax1.set_title("Memory per step")
        ax1.grid(alpha=0.3)
        ax1.legend(fontsize=8)
        labels = ["%dk" % (s["target"] // 1000) for s in steps]
        ax2.bar(labels, [s["connects_per_s"] or 0 for s in steps], color="tab:green")
        ax2.set_xlabel("step")
        ax2.set_ylabel("connections/s (connect + subscribe)")
        ax2.set_title("Connect rate per step")
        ax2.grid(axis="y", alpha=0.3)
    fig.suptitle("Shoal: %s connections held, %s" % (fmt_int(res["reached"]), res["meta"]["date"]))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdict(res):
    """Problems that make the run not a full success."""
    p = []
    m = res["meta"]
    if res["reached"] < m["target"]:
        p.append("held %d of %d connections" % (res["reached"], m["target"]))
    if res["steps"]:
        last = res["steps"][-1]
        if last["refused"] or any(s["failed_in_step"] for s in res["steps"]):
            p.append("%d connections refused or failed" % last["refused"])
        if last["dropped"]:
            p.append("%d connections lost during the steps" % last["dropped"])
    s, h = res["sample"], res["hold"]
    if not s or s["arrived"] != s["published"] or s["acknowledged"] != s["published"]:
        p.append("sample: %s" % (s if s else "not run"))
    if not h or h["dropped"] or h["held_after"] != h["held_before"]:
        p.append("hold: %s" % ({k: h[k] for k in ("held_before", "held_after", "dropped")} if h else "not run"))
    if res["stop_reason"]:
        p.append("stopped: %s" % res["stop_reason"])
    return p


def verify(out):
    """The quick run's test: files present and the run a full success."""
    try:
        with open(os.path.join(out, "million.json")) as f:
            res = json.load(f)
        with open(os.path.join(out, "million.png"), "rb") as f:
            png = f.read(8)
        with open(os.path.join(out, "million.md")) as f:
            md = f.read()
    except (OSError, ValueError) as e:
        print("verify: %s" % e)
        return 1
    problems = verdict(res)
    if png != b"\x89PNG\r\n\x1a\n":
        problems.append("million.png is not a PNG")
    if "connections held" not in md:
        problems.append("million.md has no result line")
    if res["reached"] <= 0 or len(res["steps"]) != len(res["meta"]["steps"]):
        problems.append("not every step ran")
    for p in problems:
        print("verify: %s" % p)
    print("verify: %s (%s connections held, sample %s)" %
          ("ok" if not problems else "FAILED", fmt_int(res["reached"]), res.get("sample")))
    return 0 if not problems else 1


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/million", description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--target", type=int, default=None, help="connections to reach [1000000]")
    ap.add_argument("--steps", default=None, help="comma list of step targets [100000,250000,500000,1000000]")
    ap.add_argument("--nodes", type=int, default=None, help="Shoal nodes [target / --conns-per-node]")
    ap.add_argument("--conns-per-node", type=int, default=PER_PROC_MAX,
                    help="connections per node, below the per-process fd limit [%d]" % PER_PROC_MAX)
    ap.add_argument("--rate", type=int, default=None, help="connects per second per step, 0 = as fast as possible [2000; --quick 10000]")
    ap.add_argument("--hold", type=int, default=None, help="seconds to hold at the top [keepalive / 2 + 30; --quick 8]")
    ap.add_argument("--keepalive", type=int, default=None, help="MQTT keep alive of every connection, s; pings go at half of it [600; --quick 4]")
    ap.add_argument("--sample", type=int, default=1000, help="messages published to random connections at the top [1000]")
    ap.add_argument("--mem-limit", type=float, default=3.0,
                    help="GiB of MemAvailable to keep: no step whose projection would cross it, and stop if it does [3]")
    ap.add_argument("--out", default=None, help="result directory [bench/results/<date>]")
    ap.add_argument("--quick", action="store_true", help="20k connections on 3 nodes, steps 5k,10k,20k, short hold")
    ap.add_argument("--shoal", default=None)
    ap.add_argument("--bench", default=None)
    ap.add_argument("--seed", type=int, default=None, help="random seed of the sample")
    ap.add_argument("--verify", metavar="DIR", help="check the result in DIR (what the ctest asserts) and exit")
    a = ap.parse_args(argv)
    if a.verify:
        return a
    q = a.quick
    a.target = a.target or (20000 if q else 1000000)
    if a.steps:
        a.steps = [int(x) for x in a.steps.split(",") if x.strip()]
    else:
        a.steps = [5000, 10000, 20000] if q else [100000, 250000, 500000, 1000000]
        a.steps = [s for s in a.steps if s < a.target] + [a.target]
    a.steps = sorted(set(s for s in a.steps if 0 < s <= a.target))
    a.target = a.steps[-1]
    if a.conns_per_node > PER_PROC_MAX:
        ap.error("--conns-per-node above %d would exceed the per-process fd limit" % PER_PROC_MAX)
    a.nodes = a.nodes or (3 if q else math.ceil(a.target / a.conns_per_node))
    if math.ceil(a.target / a.nodes) > PER_PROC_MAX:
        ap.error("%d nodes would hold %d connections each; the limit is %d (use more --nodes)" %
                 (a.nodes, math.ceil(a.target / a.nodes), PER_PROC_MAX))
    if a.nodes > 256:
        ap.error("at most 256 nodes")
    # Full run: what 2 shared cores sustain. A connection (CONNECT + SUBSCRIBE)
    # costs ~0.5 ms of CPU here all told and a keep-alive round trip ~0.1 ms,
    # so 1M connections pinging every 30 s would need 3 cores for pings alone.
    a.rate = (10000 if q else 2000) if a.rate is None else a.rate
    a.keepalive = a.keepalive or (4 if q else 600)
    # Long enough for every connection to ping at least once (at keepalive / 2).
    a.hold = a.hold if a.hold is not None else (8 if q else a.keepalive // 2 + 30)
    a.sample = min(a.sample, 200) if q else a.sample
    a.seed = a.seed if a.seed is not None else int(time.time())
    a.shoal = a.shoal or os.path.join(a.root, "build/node/shoal")
    a.bench = a.bench or os.path.join(a.root, "build/bench/shoal-bench")
    a.out = a.out or os.path.join(a.root, "bench/results", datetime.date.today().isoformat())
    return a


def main(argv):
    a = parse_args(argv)
    if a.verify:
        return verify(a.verify)
    run = Run(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = datetime.datetime.now()
    info = {}
    interrupted = False
    try:
        info = run.execute()
    except KeyboardInterrupt:
        interrupted = True
        run.stop_reason = "interrupted"
        log("interrupted")
    except RuntimeError as e:
        run.stop_reason = str(e)
        log("error: %s" % e)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.stop_all()
    gen_results = [g.result() for g in run.gens]
    reached = max([s["held"] for s in run.steps] + [info["hold"]["held_after"] if info.get("hold") else 0])
    res = {
        "meta": {
            "date": started.strftime("%Y-%m-%d %H:%M"), "command": "bench/million " + " ".join(argv[2:] if argv[:1] == ["--root"] else argv),
            "target": a.target, "steps": a.steps, "nodes": a.nodes, "rate": a.rate, "keepalive": a.keepalive,
            "hold": a.hold, "mem_limit_gib": a.mem_limit, "quick": a.quick, "sample_seed": a.seed,
            "node_args": run.nodes[0].args[1:-1] + ["million-<i>"] if run.nodes else [],
            "generator_processes": sum(g.procs for g in run.gens),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "mem_total": meminfo()["MemTotal"], "kernel": platform.release(),
            "seconds": round(time.monotonic() - T0, 1),
        },
        "reached": reached,
        "stop_reason": run.stop_reason,
        "kernel": info.get("kernel") or (run.kernel.rows if run.kernel else []),
        "baseline": {k: v for k, v in (run.base or {}).items() if k != "slabs"},
        "steps": run.steps,
        "sample": info.get("sample"),
        "hold": info.get("hold"),
        "generators": [{"step": g.step, "args": g.args[1:], "result_counts": (r or {}).get("counts"),
                        "connect_latency_us": (r or {}).get("connect_latency_us")} for g, r in zip(run.gens, gen_results)],
        "series": run.samples,
    }
    res["problems"] = verdict(res)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "million.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(a.out, "million.md"), "w") as f:
        f.write(markdown(res))
    plot(res, os.path.join(a.out, "million.png"))
    rows = [HEAD] + summary_rows(res)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print()
    print("reached %s of %s connections%s" % (fmt_int(reached), fmt_int(a.target),
                                              "" if not run.stop_reason else " (stopped: %s)" % run.stop_reason))
    if res["sample"]:
        print("sample: %(published)d published, %(arrived)d arrived" % res["sample"])
    if res["hold"]:
        print("hold: %(seconds)ds, %(dropped)d dropped" % res["hold"])
    print("results: %s/million.{json,md,png}" % a.out)
    for p in res["problems"]:
        print("problem: %s" % p)
    if res["problems"]:
        print("node and generator logs kept in %s" % run.work)
    else:
        shutil.rmtree(run.work, ignore_errors=True)
    if interrupted:
        return 130
    if not res["problems"]:
        return 0
    return 3 if run.stop_reason and run.stop_reason.startswith("memory guard") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
