# SPDX-License-Identifier: Apache-2.0
"""A local Shoal cluster for the failover suite, built from the project's own
scripts: deploy/redis/start, deploy/kafka/start (KRaft), N shoal nodes and
HAProxy configured from deploy/haproxy/haproxy.cfg.in exactly as deploy/up
does. Unlike deploy/up it keeps every PID, so faults can be injected
(SIGKILL a node and restart it on its port, SIGSTOP/SIGCONT Redis, stop and
start Redis, kill Kafka brokers) and everything it started is stopped by PID.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
ADMIN_TOKEN = "failover-suite-token"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def run_env(cmd, timeout=240):
    """Run a deploy/* start script and parse its KEY=VALUE lines."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(cond, what, timeout):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise TimeoutError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.1)


def http_json(url, token=ADMIN_TOKEN, timeout=5):
    """GET url as JSON with the admin token; None on any error."""
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with _opener.open(req, timeout=timeout) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def rss_kb(pid):
    """VmRSS of a process in KiB (None once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class NodeSpec:
    """Where a node listens (the MQTT and HTTP ports stay across restarts)."""

    def __init__(self, name, port, http_port):
        self.name, self.port, self.http_port = name, port, http_port
        self.http_url = "http://127.0.0.1:%d" % http_port
        self.proc = None
        self.log_path = None
        self.starts = 0


class LocalCluster:
    def __init__(self, shoal_bin, nodes=3, kafka_brokers=1, extra=(), log=print):
        self.shoal_bin = os.path.abspath(shoal_bin)
        self.log = log
        self.extra = list(extra)
        self.kafka_brokers = kafka_brokers
        self.work = tempfile.mkdtemp(prefix="shoal-failover.")
        self.redis_dir = os.path.join(self.work, "redis")
        self.kafka_dir = os.path.join(self.work, "kafka")
        self.redis_running = self.kafka_started = False
        self.redis_stopped_sig = False
        self.haproxy = None
        self.nodes = [NodeSpec("node-%d" % (i + 1), free_port(), free_port()) for i in range(nodes)]
        self.port = free_port()  # HAProxy
        self.redis_port = free_port()
        self.redis_url = self.bootstrap = None
        self.kafka_port = None
        self.killed_brokers = {}  # broker -> command line of a SIGKILLed broker
        self.broker_children = []  # brokers this process restarted
        self.cleanups = []  # callables stop() runs first (namespaces, forwarders)
        self.failed = False

    # ---- start / stop ----------------------------------------------------
    def start(self):
        t0 = time.time()
        try:
            self.start_redis()
            env, kport = self._start_kafka()
            self.kafka_started = True
            self.kafka_port = kport
            self.bootstrap = env["KAFKA_BOOTSTRAP"]
            for n in self.nodes:
                self._first_start(n)
            self._start_haproxy()
        except BaseException:
            self.failed = True
            self.stop()
            raise
        self.log("cluster up in %.0fs: HAProxy 127.0.0.1:%d, nodes %s, redis %s, kafka %s (work %s)" % (
            time.time() - t0, self.port, ", ".join("%s:%d" % (n.name, n.port) for n in self.nodes),
            self.redis_url, self.bootstrap, self.work))

    def _start_kafka(self, tries=3):
        """deploy/kafka/start on a free block of ports; again on another
        block when a broker found one of them taken meanwhile (seen
        2026-12-07 with other suites running: 'Socket server failed to
        bind ... Address already in use'; the script stops what it started)."""
        for attempt in range(tries):
            kport = self._port_block(2 * self.kafka_brokers)
            try:
                return run_env([os.path.join(ROOT, "deploy/kafka/start"), "--brokers", str(self.kafka_brokers),
                                "--port", str(kport), "--controller-port", str(kport + self.kafka_brokers),
                                "--dir", self.kafka_dir]), kport
            except subprocess.CalledProcessError:
                logs = [os.path.join(self.kafka_dir, "broker-%d" % (b + 1), "server.log")
                        for b in range(self.kafka_brokers)]
                taken = any(os.path.exists(f) and "Address already in use" in open(f, errors="replace").read()
                            for f in logs)
                if not taken or attempt == tries - 1:
                    raise
            shutil.rmtree(self.kafka_dir, ignore_errors=True)
            self.log("  kafka: a port was taken before it started; again on another block")

    def _port_block(self, n):
        for _ in range(200):
            p = free_port()
            if p + n < 65000 and all(not port_open(q) for q in range(p, p + n)):
                try:
                    held = []
                    for q in range(p, p + n):
                        s = socket.socket()
                        held.append(s)
                        s.bind(("127.0.0.1", q))
                    return p
                except OSError:
                    continue
                finally:
                    for s in held:
                        s.close()
        raise RuntimeError("no block of %d free ports" % n)

    def start_redis(self):
        env = run_env([os.path.join(ROOT, "deploy/redis/start"), "--port", str(self.redis_port),
                       "--dir", self.redis_dir])
        self.redis_url = env["REDIS_URL"]
        self.redis_running = True

    def stop_redis(self):
        if self.redis_running:
            if self.redis_stopped_sig:
                self.redis_signal(signal.SIGCONT)
            subprocess.run([os.path.join(ROOT, "deploy/redis/stop"), "--dir", self.redis_dir],
                           check=True, capture_output=True, timeout=60)
            self.redis_running = False

    def redis_pid(self):
        with open(os.path.join(self.redis_dir, "redis.pid")) as f:
            return int(f.read().strip())

    def redis_signal(self, sig):
        os.kill(self.redis_pid(), sig)
        self.redis_stopped_sig = sig == signal.SIGSTOP

    def kafka_pid(self, i):
        with open(os.path.join(self.kafka_dir, "broker-%d.pid" % i)) as f:
            return int(f.read().strip())

    def kafka_ports(self):
        return [self.kafka_port + i for i in range(self.kafka_brokers)]

    def kill_broker(self, i, sig=signal.SIGKILL):
        """SIGKILL Kafka broker i (a crash), keeping its command line for
        restart_broker."""
        pid = self.kafka_pid(i)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        if not any("broker-%d/server.properties" % i in a for a in argv):
            raise RuntimeError("pid %d is not Kafka broker %d: %r" % (pid, i, argv))
        self.killed_brokers[i] = argv
        os.kill(pid, sig)
        wait_for(lambda: _gone(pid), "broker %d (pid %d) gone" % (i, pid), 60)

    def restart_broker(self, i):
        """Start a killed broker again with its own command line, data and
        ports; its PID goes where deploy/kafka/stop looks."""
        bd = os.path.join(self.kafka_dir, "broker-%d" % i)
        with open(os.path.join(bd, "stdout.log"), "ab") as out:
            p = subprocess.Popen(self.killed_brokers.pop(i), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.broker_children.append(p)
        with open(os.path.join(self.kafka_dir, "broker-%d.pid" % i), "w") as f:
            f.write("%d\n" % p.pid)

    def kafka_partitions(self, topic):
        """[(leader, {isr})] per partition of topic, as a live broker sees them."""
        live = ",".join("127.0.0.1:%d" % (self.kafka_port + i - 1) for i in range(1, self.kafka_brokers + 1)
                        if i not in self.killed_brokers)
        try:
            out = subprocess.run(["kcat", "-b", live, "-L", "-t", topic, "-m", "5"], capture_output=True, text=True,
                                 timeout=60).stdout
        except subprocess.TimeoutExpired:
            return []
        parts = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("partition ") and "isrs:" in line:
                leader = int(line.split("leader ", 1)[1].split(",", 1)[0])
                isr = {int(x) for x in line.split("isrs:", 1)[1].strip().split(",") if x.strip()}
                parts.append((leader, isr))
        return parts

    def kafka_in_sync(self, topic="shoal.messages"):
        parts = self.kafka_partitions(topic)
        return bool(parts) and all(l > 0 and isr == set(range(1, self.kafka_brokers + 1)) for l, isr in parts)

    def node_args(self, n, bind="127.0.0.1"):
        return [self.shoal_bin, "--port", str(n.port), "--http-port", str(n.http_port), "--bind", bind,
                "--node-id", n.name, "--advertise", "127.0.0.1:%d" % n.port, "--redis", self.redis_url,
                "--kafka", self.bootstrap, "--kafka-replication", str(min(self.kafka_brokers, 3)),
                "--kafka-partitions", "4", "--workers", "2", "--sys-interval", "0",
                "--admin-token", ADMIN_TOKEN, *self.extra]

    def _first_start(self, n, tries=3):
        """A node's first start. Its ports were free when the cluster was
        made, but Kafka's start takes a while and any connection on the
        machine may get one of them as its local port meanwhile (a node
        then exits with listen_error "Address already in use", seen
        2026-12-07 with other suites running): new ports, before HAProxy
        names them."""
        for attempt in range(tries):
            try:
                return self.start_node(n)
            except RuntimeError:
                with open(n.log_path) as f:
                    taken = "Address already in use" in f.read()
                if not taken or attempt == tries - 1:
                    raise
            n.port, n.http_port = free_port(), free_port()
            n.http_url = "http://127.0.0.1:%d" % n.http_port
            self.log("  %s: a port was taken before it started; again on %d/%d" % (n.name, n.port, n.http_port))

    def start_node(self, n, timeout=120, env=None, preexec_fn=None, bind="127.0.0.1"):
        """Start node n on its ports and wait for READY. env: extra
        environment (a faked clock); preexec_fn runs in the child before
        exec (entering a network namespace, with bind 0.0.0.0)."""
        n.starts += 1
        out = os.path.join(self.work, "%s.out.%d" % (n.name, n.starts))
        err = os.path.join(self.work, "%s.log.%d" % (n.name, n.starts))
        with open(out, "w") as fo, open(err, "w") as fe:
            n.proc = subprocess.Popen(self.node_args(n, bind), stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                      env=dict(os.environ, **env) if env else None, preexec_fn=preexec_fn)
        n.log_path = err

        def ready():
            if n.proc.poll() is not None:
                raise RuntimeError("%s exited with %s; log %s" % (n.name, n.proc.returncode, err))
            with open(out) as f:
                return any(line.startswith("READY") for line in f)
        wait_for(ready, "%s READY" % n.name, timeout)

    def node_ready(self, n):
        """The node's own /health/ready says 200 (what HAProxy checks)."""
        try:
            with _opener.open(n.http_url + "/health/ready", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill_node(self, n, sig=signal.SIGKILL):
        if n.proc and n.proc.poll() is None:
            n.proc.send_signal(sig)
            n.proc.wait(timeout=60)

    def _start_haproxy(self):
        """On a port chosen now: one chosen at the start can be taken by
        another process while Kafka starts (seen: "cannot bind socket");
        a bind failure tries another port."""
        for attempt in range(3):
            self.port = free_port()
            try:
                return self._start_haproxy_on_port()
            except RuntimeError:
                with open(os.path.join(self.work, "haproxy.log")) as f:
                    if "cannot bind" not in f.read() or attempt == 2:
                        raise

    def _start_haproxy_on_port(self):
        tmpl = os.path.join(ROOT, "deploy/haproxy/haproxy.cfg.in")
        lines = []
        with open(tmpl) as f:
            for line in f.read().splitlines():
                if line == "@SERVERS@":
                    lines += ["  server %s 127.0.0.1:%d check port %d inter 1s fall 2 rise 1" % (n.name, n.port,
                                                                                                 n.http_port)
                              for n in self.nodes]
                else:
                    lines.append(line.replace("@PORT@", str(self.port)))
        cfg = os.path.join(self.work, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.work, "haproxy.log"), "w") as fe:
            self.haproxy = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=fe, stderr=fe,
                                            stdin=subprocess.DEVNULL)
        def listening():
            if self.haproxy.poll() is not None:
                raise RuntimeError("haproxy exited; see %s/haproxy.log" % self.work)
            return port_open(self.port)
        wait_for(listening, "HAProxy listening", 30)

    def stop(self):
        """Stop everything started, by PID; keep the work dir if anything failed."""
        problems = []
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:
                problems.append("cleanup %s: %r" % (getattr(fn, "__name__", fn), e))
        self.cleanups = []
        if self.haproxy and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=30)
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.terminate()
                try:
                    n.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()
                    problems.append("%s needed SIGKILL" % n.name)
        if self.kafka_started:
            for i in list(self.killed_brokers):  # killed, never restarted: no pid to stop
                os.remove(os.path.join(self.kafka_dir, "broker-%d.pid" % i))
                self.killed_brokers.pop(i)
            if self.kafka_brokers > 0:
                for i in range(1, self.kafka_brokers + 1):
                    try:
                        os.kill(self.kafka_pid(i), signal.SIGCONT)
                    except (OSError, ValueError):
                        pass
            r = subprocess.run([os.path.join(ROOT, "deploy/kafka/stop"), "--dir", self.kafka_dir],
                               capture_output=True, text=True, timeout=180)
            if r.returncode != 0:
                problems.append("kafka stop: " + r.stderr.strip()[-300:])
            for p in self.broker_children:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    problems.append("restarted broker pid %d needed SIGKILL" % p.pid)
            self.kafka_started = False
        try:
            self.stop_redis()
        except subprocess.CalledProcessError as e:
            problems.append("redis stop: %s" % e)
        if problems or self.failed:
            self.log("cluster stopped; logs kept in %s %s" % (self.work, "; ".join(problems)))
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return problems

