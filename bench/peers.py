# SPDX-License-Identifier: Apache-2.0
"""The brokers bench/compare runs: Shoal, Mosquitto and the peers it installs
on first use from the package registries (cached under
${SHOAL_CACHE:-~/.cache/shoal}/peers, like deploy/kafka/fetch caches Kafka).

Each broker gets the same limits (LIMITS); what a broker cannot raise is said
in its `not_raised` list, which compare.py prints and puts under the table.
A broker is started with start(), which returns the Popen of the broker
process itself (never a shell), so compare.py stops exactly that PID."""
import fcntl
import hashlib
import os
import shutil
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("SHOAL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "shoal"))
PEERS_CACHE = os.path.join(CACHE, "peers")

MOCHI_VERSION = "2.7.9"
RUMQTTD_VERSION = "0.20.0"
HIVEMQ_VERSION = "2025.5"
HIVEMQ_HEAP = "4g"

# The same generous limits for every broker. In-flight is 100 because
# rumqttd's outgoing window is a constant of 100 (router/iobufs.rs
# MAX_INFLIGHT); every other broker is set to match it.
LIMITS = {
    "connections": "unlimited",
    "inflight": 100,  # QoS 1/2 messages unacknowledged towards one client
    "queue": 10000000,  # messages queued for one client beyond in-flight
    "packet": 268435455,  # largest MQTT packet (the protocol's own limit)
}
PEER_NAMES = ("mosquitto", "mochi", "rumqttd", "hivemq", "nanomq")


class Unavailable(Exception):
    """The broker cannot be installed or started here; the message says why."""


def log(msg):
    print("[compare %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sources_hash(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def run_logged(cmd, logpath, timeout, env=None, cwd=None):
    """Runs an install step with its output in logpath; raises Unavailable
    with the last lines on failure or timeout."""
    with open(logpath, "ab") as out:
        try:
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise Unavailable("%s timed out after %d s (log: %s)" % (cmd[0], timeout, logpath))
        except OSError as e:
            raise Unavailable("%s: %s" % (cmd[0], e))
    if r.returncode != 0:
        with open(logpath, errors="replace") as f:
            tail = [line.strip() for line in f.read().splitlines() if line.strip()][-3:]
        raise Unavailable("%s exited %d: %s (log: %s)" % (cmd[0], r.returncode, " | ".join(tail), logpath))


class Cached:
    """A cache directory filled once under a lock; `.complete` holds a key
    (version and source hash) so a changed main is rebuilt."""

    def __init__(self, name, key):
        self.dir = os.path.join(PEERS_CACHE, name)
        self.key = key
        self.marker = os.path.join(self.dir, ".complete")

    def ready(self):
        try:
            with open(self.marker) as f:
                return f.read().strip() == self.key
        except OSError:
            return False

    def fill(self, what, fn):
        if self.ready():
            return
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once must not both install
            if self.ready():
                return
            log("installing %s into %s (first use)" % (what, self.dir))
            t0 = time.time()
            if os.path.exists(self.marker):
                os.unlink(self.marker)
            fn()
            with open(self.marker, "w") as f:
                f.write(self.key + "\n")
            log("installed %s in %.0f s" % (what, time.time() - t0))


def need(tool, hint):
    path = shutil.which(tool)
    if not path:
        raise Unavailable("no %s on PATH (%s)" % (tool, hint))
    return path


class Broker:
    name = "?"
    version = "?"
    not_raised = ()  # "limit: what it stays at and why"
    ready_line = None  # a stdout line that says the broker is up, or None to poll the port

    def install(self):
        """Makes the broker runnable (installing it on first use)."""

    def argv(self, work, port):
        raise NotImplementedError

    def env(self):
        return None

    def settings(self):
        """A short description of how the broker was configured, for the table's notes."""
        return ""

    def start(self, work, port):
        argv = self.argv(work, port)
        out = open(os.path.join(work, "%s.out" % self.name), "w")
        err = open(os.path.join(work, "%s.log" % self.name), "w")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env(),
                                     start_new_session=True)
        out.close()
        err.close()
        return self.proc


class Shoal(Broker):
    name = "shoal"
    ready_line = "READY"

    def __init__(self, binary):
        self.binary = binary
        self.args = ["--bind", "127.0.0.1", "--workers", "2", "--log-level", "warn",
                     "--max-queued", str(LIMITS["queue"]), "--max-inflight", str(LIMITS["inflight"]),
                     "--max-packet-size", str(LIMITS["packet"]), "--max-connections", "0"]
        # Keep an HTTP endpoint (when this build has one) off fixed ports.
        h = subprocess.run([binary, "--help"], capture_output=True, text=True)
        if "--http-port" in h.stdout + h.stderr:
            self.args += ["--http-port", "0", "--http-bind", "127.0.0.1"]
        r = subprocess.run([binary, "--version"], capture_output=True, text=True)
        self.version = ((r.stdout or r.stderr).splitlines() or ["shoal"])[0].strip()

    def argv(self, work, port):
        return [self.binary, "--port", str(port), *self.args]

    def settings(self):
        return "`%s`" % " ".join(self.args)


class Mosquitto(Broker):
    name = "mosquitto"

    def __init__(self, binary="/usr/sbin/mosquitto"):
        self.binary = binary

    def install(self):
        if not os.access(self.binary, os.X_OK):
            raise Unavailable("no mosquitto at %s (apt-get install mosquitto)" % self.binary)
        r = subprocess.run([self.binary, "-h"], capture_output=True, text=True)
        self.version = ((r.stdout + r.stderr).splitlines() or ["mosquitto"])[0].strip()

    def conf_lines(self, port):
        return ["listener %d 127.0.0.1" % port, "allow_anonymous true", "persistence false",
                "max_queued_messages %d" % LIMITS["queue"], "max_inflight_messages %d" % LIMITS["inflight"],
                "max_connections -1", "max_packet_size %d" % LIMITS["packet"], "set_tcp_nodelay true",
                "log_dest none"]

    def argv(self, work, port):
        conf = os.path.join(work, "mosquitto.conf")
        self.conf = self.conf_lines(port)
        with open(conf, "w") as f:
            f.write("\n".join(self.conf) + "\n")
        return [self.binary, "-c", conf]

    def settings(self):
        return "`%s`" % "; ".join(line for line in self.conf if not line.startswith("listener"))


class Mochi(Broker):
    """github.com/mochi-mqtt/server/v2 with bench/peers/mochi/main.go."""
    name = "mochi"
    version = "Mochi MQTT %s" % MOCHI_VERSION
    ready_line = "READY"
    # Mochi makes each client's write queue as a channel of this many
    # pointers at connect time: 10 M would cost 80 MB per connection.
    pending = 8192
    not_raised = ("queue: %d packets per client (Mochi allocates a channel of that many pointers at connect; "
                  "10 M would be 80 MB per connection)" % 8192,)

    def __init__(self):
        src = os.path.join(ROOT, "bench", "peers", "mochi")
        self.files = [os.path.join(src, f) for f in ("go.mod", "go.sum", "main.go")]
        self.src = src
        self.cache = Cached("mochi-%s" % MOCHI_VERSION, "%s %s" % (MOCHI_VERSION, sources_hash(*self.files)))
        self.binary = os.path.join(self.cache.dir, "mochi")

    def install(self):
        go = need("go", "the Go toolchain")

        def build():
            env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
            run_logged([go, "build", "-o", self.binary + ".tmp", "."], os.path.join(self.cache.dir, "build.log"),
                       600, env=env, cwd=self.src)
            os.replace(self.binary + ".tmp", self.binary)

        self.cache.fill("Mochi MQTT %s (go build, module proxy)" % MOCHI_VERSION, build)

    def argv(self, work, port):
        return [self.binary, "-addr", "127.0.0.1:%d" % port, "-inflight", str(LIMITS["inflight"]),
                "-writes-pending", str(self.pending)]

    def env(self):
        return dict(os.environ, GOMAXPROCS=str(os.cpu_count() or 2))

    def settings(self):
        return ("bench/peers/mochi/main.go: auth.AllowHook, MaximumInflight %d, ReceiveMaximum 65535, "
                "MaximumClientWritesPending %d, MaximumPacketSize 0 (none), MaximumClients max" %
                (LIMITS["inflight"], self.pending))


class Rumqttd(Broker):
    """rumqttd from crates.io (cargo install), with a config that raises its limits."""
    name = "rumqttd"
    version = "rumqttd %s" % RUMQTTD_VERSION
    not_raised = (
        "inflight: 100 (a constant in rumqttd, router/iobufs.rs MAX_INFLIGHT; the other brokers are set to 100 "
        "to match)",
        "queue: no per-client queue; a subscriber reads the topic's commit log, here %d segments of 100 MiB; "
        "a subscriber further behind skips messages" % 10,
        "connections: %d (a number is required; the router's slabs are sized from it)" % 100000,
    )

    def __init__(self):
        self.cache = Cached("rumqttd-%s" % RUMQTTD_VERSION, RUMQTTD_VERSION)
        self.binary = os.path.join(self.cache.dir, "bin", "rumqttd")

    def install(self):
        cargo = need("cargo", "Rust by rustup")

        def build():
            # --locked would pin metrics 0.22.1, which today's rustc rejects (E0521).
            run_logged([cargo, "install", "rumqttd", "--version", RUMQTTD_VERSION, "--no-default-features",
                        "--root", self.cache.dir, "--force"],
                       os.path.join(self.cache.dir, "build.log"), 1800)

        self.cache.fill("rumqttd %s (cargo install, crates.io; a few minutes)" % RUMQTTD_VERSION, build)

    def argv(self, work, port):
        conf = os.path.join(work, "rumqttd.toml")
        with open(conf, "w") as f:
            f.write("""id = 0

[router]
id = 0
max_connections = 100000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:%d"
# The default (1 ms between accepts) caps connects at 1,000/s.
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = %d
    max_inflight_count = %d
    dynamic_filters = true
""" % (port, LIMITS["packet"], LIMITS["inflight"]))
        return [self.binary, "--quiet", "--config", conf]

    def settings(self):
        return ("max_connections 100000, next_connection_delay_ms 0, max_payload_size %d, max_inflight_count %d, "
                "commit log 10 × 100 MiB segments" % (LIMITS["packet"], LIMITS["inflight"]))


class HiveMQ(Broker):
    """HiveMQ CE embedded from Maven Central with bench/peers/hivemq/ShoalHiveMQ.java."""
    name = "hivemq"
    version = "HiveMQ CE %s (embedded)" % HIVEMQ_VERSION
    ready_line = "READY"
    not_raised = ("heap: -Xmx%s (everything a JVM broker queues lives in it)" % HIVEMQ_HEAP,)

    def __init__(self):
        src = os.path.join(ROOT, "bench", "peers", "hivemq")
        self.pom = os.path.join(src, "pom.xml")
        self.main = os.path.join(src, "ShoalHiveMQ.java")
        self.cache = Cached("hivemq-%s" % HIVEMQ_VERSION, "%s %s" % (HIVEMQ_VERSION, sources_hash(self.pom, self.main)))
        self.libs = os.path.join(self.cache.dir, "libs")
        self.classes = os.path.join(self.cache.dir, "classes")

    def install(self):
        mvn = need("mvn", "apt-get install maven")
        javac = need("javac", "apt-get install openjdk-17-jdk-headless")
        self.java = need("java", "apt-get install openjdk-17-jre-headless")

        def fetch():
            logpath = os.path.join(self.cache.dir, "build.log")
            for d in (self.libs, self.classes):
                shutil.rmtree(d, ignore_errors=True)
            run_logged([mvn, "-q", "-B", "-f", self.pom, "-Dhivemq.version=" + HIVEMQ_VERSION,
                        "dependency:copy-dependencies", "-DoutputDirectory=" + self.libs, "-DincludeScope=runtime"],
                       logpath, 900)
            run_logged([javac, "-d", self.classes, "-cp", os.path.join(self.libs, "*"), self.main], logpath, 300)

        self.cache.fill("HiveMQ CE %s embedded (maven, Maven Central)" % HIVEMQ_VERSION, fetch)

    def argv(self, work, port):
        conf = os.path.join(work, "hivemq-conf")
        data = os.path.join(work, "hivemq-data")
        os.makedirs(conf, exist_ok=True)
        os.makedirs(os.path.join(data, "extensions"), exist_ok=True)
        with open(os.path.join(conf, "config.xml"), "w") as f:
            f.write("""<?xml version="1.0"?>
<hivemq>
    <listeners>
        <tcp-listener><port>%d</port><bind-address>127.0.0.1</bind-address></tcp-listener>
    </listeners>
    <mqtt>
        <queued-messages><max-queue-size>%d</max-queue-size><strategy>discard</strategy></queued-messages>
        <packets><max-packet-size>%d</max-packet-size></packets>
        <receive-maximum><server-receive-maximum>65535</server-receive-maximum></receive-maximum>
    </mqtt>
    <restrictions>
        <max-connections>-1</max-connections>
        <incoming-bandwidth-throttling>0</incoming-bandwidth-throttling>
    </restrictions>
    <persistence><mode>in-memory</mode></persistence>
    <anonymous-usage-statistics><enabled>false</enabled></anonymous-usage-statistics>
</hivemq>
""" % (port, LIMITS["queue"], LIMITS["packet"]))
        return [self.java, "-Xms%s" % HIVEMQ_HEAP, "-Xmx%s" % HIVEMQ_HEAP, "-XX:+UseParallelGC",
                "-cp", "%s:%s" % (self.classes, os.path.join(self.libs, "*")),
                "ShoalHiveMQ", conf, data, str(LIMITS["inflight"])]

    def settings(self):
        return ("persistence in-memory, max-queue-size %d, max-packet-size %d, server-receive-maximum 65535, "
                "max-connections -1, in-flight window %d (InternalConfigurations), allow-all authenticator, "
                "-Xmx%s" % (LIMITS["queue"], LIMITS["packet"], LIMITS["inflight"], HIVEMQ_HEAP))


class NanoMQ(Broker):
    name = "nanomq"

    def install(self):
        path = shutil.which("nanomq")
        if not path:
            raise Unavailable("not installable here: no nanomq package in Debian 12, crates.io, PyPI, npm, "
                              "Maven Central or the Go module proxy, and other downloads are closed")
        raise Unavailable("nanomq at %s is not wired into bench/compare yet" % path)


def make(name, mosquitto_bin):
    return {"mosquitto": lambda: Mosquitto(mosquitto_bin), "mochi": Mochi, "rumqttd": Rumqttd,
            "hivemq": HiveMQ, "nanomq": NanoMQ}[name]()
