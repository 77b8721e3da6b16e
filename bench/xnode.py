#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Cross-node latency on a local cluster: starts ./deploy/up --nodes 2
(Redis, Kafka, two nodes), runs `shoal-bench xnode` (a publisher on node 1,
a subscriber on node 2) --runs times, and writes xnode.json, xnode.md and
xnode.png into --out. Next to each run's end-to-end latency it reports
where the time went: Kafka's produce acknowledgement on node 1
(shoal_kafka_produce_latency_seconds), the delay from a record's produce
timestamp to node 2 reading it (shoal_kafka_consume_delay_seconds), and the
Kafka JVM's GC pauses during the run (its gc.log, copied to kafka-gc.log).

Exit status: 0 when every run finished with nothing lost (QoS >= 1),
1 otherwise, 2 for bad arguments."""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

READY_TIMEOUT = 300
PROXYLESS = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg):
    print("[xnode %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_base():
    """A port P with P..P+2 and P+100..P+102 free: deploy/up --nodes 2's layout."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p + 103 > 65000:
            continue
        held = []
        try:
            for q in (p, p + 1, p + 2, p + 100, p + 101, p + 102):
                t = socket.socket()
                held.append(t)
                t.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
    raise SystemExit("xnode: no free block of ports")


# ---- node metrics ----

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def histogram(port, name):
    """{upper bound (float, inf for +Inf): cumulative count} of one histogram."""
    with PROXYLESS.open("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1) == name + "_bucket":
            le = re.search(r'le="([^"]*)"', m.group(2) or "")
            if le:
                out[float("inf") if le.group(1) == "+Inf" else float(le.group(1))] = float(m.group(3))
    return out


def hist_summary(before, after):
    """Count and p50/p99 (as the bucket's upper bound, in ms: 'under X ms')
    of what a histogram gained between two scrapes."""
    bounds = sorted(after)
    delta = [after[b] - before.get(b, 0.0) for b in bounds]
    total = delta[-1] if delta else 0.0
    res = {"count": int(total)}
    for q, key in ((0.5, "p50_under_ms"), (0.99, "p99_under_ms")):
        res[key] = None
        for b, c in zip(bounds, delta):
            if total and c >= q * total:
                res[key] = None if b == float("inf") else b * 1000.0
                break
    return res


# ---- Kafka GC log ----

PAUSE = re.compile(r'\[([0-9.]+)s\].*GC\(\d+\) (Pause \S+).* ([0-9.]+)ms$')


def gc_pauses(path, offset):
    """(new offset, [pause ms, ...]) of the pauses logged after offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset, []
    pauses = []
    for line in data.decode(errors="replace").splitlines():
        m = PAUSE.search(line.strip())
        if m:
            pauses.append(float(m.group(3)))
    return offset + len(data), pauses


# ---- CPU use ----

def proc_cpu(pid):
    """CPU seconds a process has run, all threads (schedstat: exact, where
    /proc/PID/stat's tick sampling over-charges timer-driven programs), or
    None once it is gone."""
    try:
        total = 0
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, IndexError, ValueError):
        return None


def cluster_procs(work, base):
    """{role: pid} of what deploy/up started for this cluster: Redis and
    Kafka from their pid files, the nodes and HAProxy from /proc."""
    roles = {}
    for role, pidfile in (("redis", "redis/redis.pid"), ("kafka", "kafka/broker-1.pid")):
        try:
            with open(os.path.join(work or "/nonexistent", pidfile)) as f:
                roles[role] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                text = " ".join(x.decode(errors="replace") for x in f.read().split(b"\0")) + " "
        except OSError:
            continue
        if work and work in text and text.startswith("haproxy "):
            roles["haproxy"] = int(d)
        for i in (1, 2):
            if "--port %d " % (base + i) in text and "--node-id node-%d " % i in text:
                roles["node %d" % i] = int(d)
    return roles


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_snapshot(roles, bench_pid):
    snap = {role: proc_cpu(pid) for role, pid in roles.items()}
    # shoal-bench forks its workers: the generator is the parent and them.
    gen = [proc_cpu(p) for p in [bench_pid, *children(bench_pid)]]
    snap["generator"] = sum(g for g in gen if g is not None) if gen[0] is not None else None
    return snap


def cpu_share(before, after, seconds):
    """CPU use over the run in % of one core, per role and in all."""
    out = {}
    for role, v in after.items():
        if v is not None and before.get(role) is not None:
            out[role] = round(100.0 * (v - before[role]) / seconds, 1)
    out["all"] = round(sum(out.values()), 1)
    return out


# ---- the cluster ----

class Cluster:
    def __init__(self, root, base, kafka_brokers, node_args):
        self.base = base
        self.work = None
        self.ready = False
        self.lines = []
        # Clients connect to each node's own port, not through HAProxy.
        cmd = [os.path.join(root, "deploy/up"), "--nodes", "2", "--port", str(base), "--no-proxy-protocol"]
        if kafka_brokers > 1:
            cmd += ["--kafka-brokers", str(kafka_brokers)]
        if node_args:
            cmd += ["--", *node_args]
        log("starting: %s" % " ".join(cmd[1:]))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ready_event = threading.Event()
        threading.Thread(target=self._stdout, daemon=True).start()
        self.err_thread = threading.Thread(target=self._stderr, daemon=True)
        self.err_thread.start()

    def _stdout(self):
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self.ready = True
                self.ready_event.set()
        self.ready_event.set()

    def _stderr(self):
        for line in self.proc.stderr:
            line = line.rstrip()
            self.lines.append(line)
            m = re.search(r"work directory: (\S+)", line)
            if m:
                self.work = m.group(1)

    def wait_ready(self):
        if not self.ready_event.wait(READY_TIMEOUT) or not self.ready:
            self.stop()
            self.err_thread.join(timeout=10)
            tail = "\n".join(self.lines[-30:])
            raise RuntimeError("deploy/up did not print READY within %ds:\n%s" % (READY_TIMEOUT, tail))
        log("cluster ready: nodes on %d and %d (work directory %s)" % (self.base + 1, self.base + 2, self.work))

    def gc_log(self):
        return os.path.join(self.work or "/nonexistent", "kafka", "broker-1", "gc.log")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                log("deploy/up did not stop within 120 s; killing it")
                self.proc.kill()
                self.proc.wait()


CURRENT = {}


def on_term(signum, frame):
    for key in ("bench", "cluster"):
        obj = CURRENT.get(key)
        if obj is None:
            continue
        if key == "bench" and obj.poll() is None:
            obj.terminate()
            try:
                obj.wait(timeout=15)
            except subprocess.TimeoutExpired:
                obj.kill()
        if key == "cluster":
            obj.stop()
    sys.exit(128 + signum)


def start_cluster(a, attempts=3):
    """A ready cluster. Another program may take one of the free ports
    before deploy/up binds it: then try another block."""
    for attempt in range(1, attempts + 1):
        cluster = Cluster(a.root, free_base(), a.kafka_brokers, a.node_arg)
        CURRENT["cluster"] = cluster
        try:
            cluster.wait_ready()
            return cluster
        except RuntimeError as e:
            cluster.stop()
            CURRENT.pop("cluster", None)
            if attempt == attempts or not any("Address already in use" in l for l in cluster.lines):
                raise
            log("a port was taken before deploy/up bound it; trying other ports")
    raise AssertionError("unreachable")


def run_once(a, cluster, i, duration, persistent):
    p1, p2 = cluster.base + 1, cluster.base + 2
    prod_name, cons_name = "shoal_kafka_produce_latency_seconds", "shoal_kafka_consume_delay_seconds"
    prod0, cons0 = histogram(p1 + 100, prod_name), histogram(p2 + 100, cons_name)
    gc_off, _ = gc_pauses(cluster.gc_log(), 0)
    cmd = [a.bench, "xnode", "--port", "%d,%d" % (p1, p2), "--qos", str(a.qos), "--rate", str(a.rate),
           "--duration", str(duration), "--inflight", str(a.inflight), "--size", str(a.size),
           "--client-prefix", "xnode-%d-" % i] + (["--persistent"] if persistent else [])
    log("%s: %s" % ("run %d/%d" % (i, a.runs * len(a.modes)) if i else "warm-up", " ".join(cmd[1:])))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CURRENT["bench"] = proc

    def pump():
        for line in proc.stderr:
            print("    run %d  %s" % (i, line.rstrip()), file=sys.stderr, flush=True)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    roles = cluster_procs(cluster.work, cluster.base)
    cpu0, t0 = cpu_snapshot(roles, proc.pid), time.monotonic()
    # The generator's CPU is read just before it exits: sample at the end
    # of the publishing phase (the drain adds little).
    cpu1 = {}

    def sample_end():
        cpu1.update(cpu_snapshot(roles, proc.pid), _t=time.monotonic())

    sampler = threading.Timer(duration, sample_end)
    sampler.start()
    limit = duration + 120
    killer = threading.Timer(limit, proc.kill)
    killer.start()
    out = proc.stdout.read()
    proc.wait()
    killer.cancel()
    sampler.cancel()
    t.join(timeout=5)
    cpu = cpu_share(cpu0, cpu1, cpu1.pop("_t") - t0) if cpu1 else {}
    CURRENT.pop("bench", None)
    _, pauses = gc_pauses(cluster.gc_log(), gc_off)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log("run %d: no JSON result (exit %s)" % (i, proc.returncode))
        result = None
    return {
        "run": i,
        "sessions": "persistent" if persistent else "clean",
        "result": result,
        "kafka_produce_ack": hist_summary(prod0, histogram(p1 + 100, prod_name)),
        "kafka_consume_delay": hist_summary(cons0, histogram(p2 + 100, cons_name)),
        "cpu_percent": cpu,
        "kafka_gc": {"pauses": len(pauses), "total_ms": round(sum(pauses), 1),
                     "max_ms": round(max(pauses), 1) if pauses else 0.0},
    }


# ---- the report ----

def ms(us):
    return "–" if us is None else ("%.1f ms" % (us / 1000.0) if us < 100000 else "%.0f ms" % (us / 1000.0))


def under(v):
    return "–" if v is None else "≤ %g ms" % v


def markdown(res):
    c = res["config"]
    lines = [
        "# Cross-node latency, %s" % res["date"],
        "",
        "`bench/xnode %s`: `shoal-bench xnode`, a QoS %d publisher on node 1 and its subscriber on node 2 "
        "of `./deploy/up --nodes 2` (one local Kafka broker, RF 1), %d msg/s for %d s, %d B payloads, "
        "in-flight window %d, after %d s of unreported warm-up traffic. Latency is from the intended send time "
        "(open loop). Machine: %s, %d cores."
        % (" ".join(c["argv"]), c["qos"], c["rate"], c["duration"], c["size"], c["inflight"], c.get("warmup", 0),
           res["machine"]["cpu"], res["machine"]["cores"]),
        "",
        "| run | sessions | delivered | lost | dropped | p50 | p90 | p99 | p99.9 | max | Kafka produce ack p50 / p99 "
        "| Kafka consume delay p50 / p99 | Kafka GC pauses (max) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in res["runs"]:
        x = r["result"]
        if not x:
            lines.append("| %d | %s | no result | | | | | | | | | | |" % (r["run"], r.get("sessions", "")))
            continue
        cnt, lat = x["counts"], x["latency_us"]
        pa, cd, gc = r["kafka_produce_ack"], r["kafka_consume_delay"], r["kafka_gc"]
        row = "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %d, %.0f ms in all (%.0f ms) |"
        lines.append(row % (
            r["run"], r.get("sessions", ""), format(cnt["received"], ","), cnt["lost"], cnt.get("dropped", 0),
            ms(lat["p50"]),
            ms(lat["p90"]), ms(lat["p99"]), ms(lat["p99_9"]), ms(lat["max"]), under(pa["p50_under_ms"]),
            under(pa["p99_under_ms"]), under(cd["p50_under_ms"]), under(cd["p99_under_ms"]), gc["pauses"],
            gc["total_ms"], gc["max_ms"]))
    roles = ["node 1", "node 2", "kafka", "redis", "haproxy", "generator", "all"]
    lines += ["", "CPU use while publishing, in %% of one core (the machine has %d):" % res["machine"]["cores"], "",
              "| run | " + " | ".join(roles) + " |", "|---:|" + "---:|" * len(roles)]
    for r in res["runs"]:
        c = r.get("cpu_percent") or {}
        lines.append("| %d | " % r["run"] + " | ".join("–" if c.get(k) is None else "%.0f" % c[k] for k in roles) + " |")
    lines += [
        "",
        "Kafka columns come from the nodes' histograms (bucket bounds 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250 ms…), "
        "so they read as \"at most\". GC pauses are those of the Kafka JVM during the run (its gc.log).",
        "",
    ]
    return "\n".join(lines)


def plot(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing: no plot")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in res["runs"]:
        x = r["result"]
        if not x or not x["latency_us"]["count"]:
            continue
        pts = [(p, v) for p, v in x["latency_cdf"] if p < 100]
        ax.plot([1.0 / (1.0 - p / 100.0) for p, _ in pts], [v / 1000.0 for _, v in pts], label="run %d" % r["run"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.axhline(10, color="grey", linestyle=":", label="10 ms")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Cross-node QoS %d latency at %d msg/s" % (res["config"]["qos"], res["config"]["rate"]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def problems(res):
    """What makes a result not sane (not: slow)."""
    out = []
    if not res["runs"]:
        out.append("no runs")
    for r in res["runs"]:
        x = r["result"]
        if not x:
            out.append("run %d: no result" % r["run"])
            continue
        cnt = x["counts"]
        if x.get("status") != "ok":
            out.append("run %d: status %s" % (r["run"], x.get("status")))
        if cnt["received"] == 0:
            out.append("run %d: nothing received" % r["run"])
        if res["config"]["qos"] >= 1 and cnt["lost"]:
            out.append("run %d: %d acknowledged messages lost" % (r["run"], cnt["lost"]))
        if r["kafka_produce_ack"]["count"] == 0:
            out.append("run %d: node 1 produced nothing to Kafka" % r["run"])
        if r["kafka_consume_delay"]["count"] == 0:
            out.append("run %d: node 2 consumed nothing from Kafka" % r["run"])
    return out


def verify(out):
    try:
        with open(os.path.join(out, "xnode.json")) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        print("verify: %s" % e)
        return 1
    bad = problems(res)
    for p in ("xnode.md", "xnode.png"):
        path = os.path.join(out, p)
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            bad.append("missing or empty %s" % p)
    for b in bad:
        print("verify: %s" % b)
    if not bad:
        print("verify: %d runs, p99 %s" % (len(res["runs"]), ", ".join(
            ms(r["result"]["latency_us"]["p99"]) for r in res["runs"])))
    return 1 if bad else 0


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/xnode", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--bench", help="shoal-bench binary (default ROOT/build/bench/shoal-bench)")
    ap.add_argument("--quick", action="store_true", help="one 5 s run at 1,000 msg/s (the ctest smoke)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=10000, help="messages per second (default 10000)")
    ap.add_argument("--duration", type=int, default=30, help="seconds of publishing per run (default 30)")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    ap.add_argument("--persistent", action="store_true",
                    help="persistent sessions (a QoS 2 PUBLISH then waits for the session store, docs/architecture.md)")
    ap.add_argument("--sessions", choices=("clean", "persistent", "both"),
                    help="clean, persistent (= --persistent), or both: each run once with clean sessions, then "
                         "once with persistent ones, on the same cluster, so the two compare under the same load")
    ap.add_argument("--inflight", type=int, default=200, help="publisher's in-flight window (default 200)")
    ap.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    ap.add_argument("--warmup", type=int, default=10,
                    help="seconds of unreported traffic first, so a new Kafka's JIT has compiled (default 10)")
    ap.add_argument("--kafka-brokers", type=int, default=1)
    ap.add_argument("--node-arg", action="append", default=[], help="extra shoal flag (repeatable)")
    ap.add_argument("--out", help="result directory (default bench/results/<date>)")
    ap.add_argument("--verify", metavar="DIR", help="check the result in DIR (what the ctest asserts) and exit")
    a = ap.parse_args(argv)
    if a.verify:
        return verify(a.verify)
    if a.sessions and a.persistent and a.sessions != "persistent":
        ap.error("--persistent and --sessions %s disagree" % a.sessions)
    a.modes = {"clean": [False], "persistent": [True], "both": [False, True]}[a.sessions or (
        "persistent" if a.persistent else "clean")]
    if a.quick:
        a.runs, a.rate, a.duration, a.warmup = 1, 1000, 5, 0
    if a.runs < 1 or a.rate < 1 or a.duration < 1:
        ap.error("--runs, --rate and --duration must be positive")
    a.bench = a.bench or os.path.join(a.root, "build/bench/shoal-bench")
    out = a.out or os.path.join(a.root, "bench/results", datetime.date.today().isoformat())
    os.makedirs(out, exist_ok=True)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    res = {
        "date": datetime.date.today().isoformat(),
        "config": {"argv": user_args(argv), "qos": a.qos, "rate": a.rate,
                   "duration": a.duration, "warmup": a.warmup, "size": a.size, "inflight": a.inflight,
                   "kafka_brokers": a.kafka_brokers, "node_args": a.node_arg},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "runs": [],
    }
    cluster = start_cluster(a)
    try:
        if a.warmup > 0:
            w = run_once(a, cluster, 0, a.warmup, a.modes[0])
            res["warmup"] = {"seconds": a.warmup, "latency_us": (w["result"] or {}).get("latency_us"),
                             "kafka_gc": w["kafka_gc"]}
        for i in range(1, a.runs * len(a.modes) + 1):
            r = run_once(a, cluster, i, a.duration, a.modes[(i - 1) % len(a.modes)])
            res["runs"].append(r)
            x = r["result"]
            if x:
                log("run %d (%s sessions): %d delivered, %d lost, p50 %s p99 %s max %s; "
                    "Kafka GC %d pauses, max %.0f ms" % (
                    i, r["sessions"], x["counts"]["received"], x["counts"]["lost"], ms(x["latency_us"]["p50"]),
                    ms(x["latency_us"]["p99"]), ms(x["latency_us"]["max"]), r["kafka_gc"]["pauses"],
                    r["kafka_gc"]["max_ms"]))
    finally:
        try:
            shutil.copyfile(cluster.gc_log(), os.path.join(out, "kafka-gc.log"))
        except OSError:
            pass
        cluster.stop()
        CURRENT.pop("cluster", None)
    for r in res["runs"]:
        if r["result"]:
            r["result"].pop("config", None)
    with open(os.path.join(out, "xnode.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "xnode.md"), "w") as f:
        f.write(markdown(res))
    plot(res, os.path.join(out, "xnode.png"))
    log("wrote %s/xnode.{json,md,png}" % out)
    print(markdown(res))
    bad = problems(res)
    for b in bad:
        log("NOT SANE: %s" % b)
    return 1 if bad else 0


def user_args(argv):
    """argv without the --root the wrapper adds."""
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x == "--root":
            skip = True
        elif not x.startswith("--root="):
            out.append(x)
    return out


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
